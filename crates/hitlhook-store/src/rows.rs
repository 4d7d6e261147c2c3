//! Reading rows into domain values. Column lists live next to the readers so they cannot drift.

use hitlhook_domain::action;
use hitlhook_domain::{
    Action, Checkpoint, CheckpointStatus, Decision, DeliveryKind, DeliveryState, Execution,
    ExecutionStatus, Scope, Timestamp,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::StoreError;
use crate::model::{ApiKey, Delivery, Receipt, StoredEvent, Subscription};

pub const CHECKPOINT_COLUMNS: &str = "id, name, kickoff_id, context, allowed_actions, status, \
    created_at, expires_at, on_timeout, decision_action, decision_feedback, decided_by, \
    decision_channel, decided_at, closed_reason, created_seq";

pub const EXECUTION_COLUMNS: &str = "kickoff_id, status, events_total, tasks_started, \
    tasks_completed, tasks_failed, steps_completed, checkpoints_total, checkpoints_pending, \
    started_at, updated_at, finished_at";

pub const EVENT_COLUMNS: &str = "seq, event_key, event_type, kickoff_id, checkpoint_id, source, received_at, occurred_at, payload";

pub const API_KEY_COLUMNS: &str = "id, name, scope, prefix, created_at, revoked_at";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

fn ts(row: &AnyRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp(row.try_get::<i64, _>(col)?))
}

fn opt_ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

fn opt_action(value: Option<String>) -> Result<Option<Action>, StoreError> {
    value
        .map(|a| a.parse().map_err(|_| corrupt("action", &a)))
        .transpose()
}

pub fn checkpoint(row: &AnyRow) -> Result<Checkpoint, StoreError> {
    let status_text: String = row.try_get("status")?;
    let status = CheckpointStatus::parse(&status_text)
        .ok_or_else(|| corrupt("checkpoint status", &status_text))?;
    let allowed_text: String = row.try_get("allowed_actions")?;
    let allowed_actions =
        action::split(&allowed_text).map_err(|_| corrupt("allowed_actions", &allowed_text))?;
    let decision = match opt_action(row.try_get("decision_action")?)? {
        None => None,
        Some(action) => Some(Decision {
            action,
            feedback: row.try_get("decision_feedback")?,
            decided_by: row
                .try_get::<Option<String>, _>("decided_by")?
                .unwrap_or_default(),
            channel: row
                .try_get::<Option<String>, _>("decision_channel")?
                .unwrap_or_default(),
            decided_at: opt_ts(row, "decided_at")?.unwrap_or(Timestamp(0)),
        }),
    };
    Ok(Checkpoint {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kickoff_id: row.try_get("kickoff_id")?,
        context_json: row.try_get("context")?,
        allowed_actions,
        status,
        created_at: ts(row, "created_at")?,
        expires_at: opt_ts(row, "expires_at")?,
        on_timeout: opt_action(row.try_get("on_timeout")?)?,
        decision,
        closed_reason: row.try_get("closed_reason")?,
        created_seq: row.try_get("created_seq")?,
    })
}

pub fn execution(row: &AnyRow) -> Result<Execution, StoreError> {
    let status_text: String = row.try_get("status")?;
    Ok(Execution {
        kickoff_id: row.try_get("kickoff_id")?,
        status: ExecutionStatus::parse(&status_text)
            .ok_or_else(|| corrupt("execution status", &status_text))?,
        events_total: row.try_get("events_total")?,
        tasks_started: row.try_get("tasks_started")?,
        tasks_completed: row.try_get("tasks_completed")?,
        tasks_failed: row.try_get("tasks_failed")?,
        steps_completed: row.try_get("steps_completed")?,
        checkpoints_total: row.try_get("checkpoints_total")?,
        checkpoints_pending: row.try_get("checkpoints_pending")?,
        started_at: ts(row, "started_at")?,
        updated_at: ts(row, "updated_at")?,
        finished_at: opt_ts(row, "finished_at")?,
    })
}

pub fn event(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        identity: row.try_get("event_key")?,
        event_type: row.try_get("event_type")?,
        kickoff_id: row.try_get("kickoff_id")?,
        checkpoint_id: row.try_get("checkpoint_id")?,
        source: row.try_get("source")?,
        received_at: ts(row, "received_at")?,
        occurred_at: opt_ts(row, "occurred_at")?,
        payload: row.try_get("payload")?,
    })
}

pub fn receipt(row: &AnyRow) -> Result<Receipt, StoreError> {
    Ok(Receipt {
        seq: row.try_get("seq")?,
        identity: row.try_get("event_key")?,
        event_type: row.try_get("event_type")?,
        kickoff_id: row.try_get("kickoff_id")?,
        checkpoint_id: row.try_get("checkpoint_id")?,
    })
}

pub fn api_key(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let scope_text: String = row.try_get("scope")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scope: scope_text
            .parse::<Scope>()
            .map_err(|_| corrupt("scope", &scope_text))?,
        prefix: row.try_get("prefix")?,
        created_at: ts(row, "created_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
    })
}

pub const DELIVERY_COLUMNS: &str = "seq, id, kind, checkpoint_id, kickoff_id, event_type, target, \
    payload, state, attempts, max_attempts, next_at, lease_owner, created_at, updated_at, \
    delivered_at, last_status, last_error, result";

pub const SUBSCRIPTION_COLUMNS: &str =
    "id, url, secret, event_types, description, created_at, disabled_at";

pub fn delivery(row: &AnyRow) -> Result<Delivery, StoreError> {
    let kind_text: String = row.try_get("kind")?;
    let state_text: String = row.try_get("state")?;
    Ok(Delivery {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        kind: DeliveryKind::parse(&kind_text)
            .ok_or_else(|| corrupt("delivery kind", &kind_text))?,
        checkpoint_id: row.try_get("checkpoint_id")?,
        kickoff_id: row.try_get("kickoff_id")?,
        event_type: row.try_get("event_type")?,
        target: row.try_get("target")?,
        payload: row.try_get("payload")?,
        state: DeliveryState::parse(&state_text)
            .ok_or_else(|| corrupt("delivery state", &state_text))?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        next_at: ts(row, "next_at")?,
        lease_owner: row.try_get("lease_owner")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        delivered_at: opt_ts(row, "delivered_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        result: row.try_get("result")?,
    })
}

/// Splits the stored comma-separated filter list.
pub fn event_types(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn subscription(row: &AnyRow) -> Result<Subscription, StoreError> {
    let types: String = row.try_get("event_types")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        event_types: event_types(&types),
        description: row.try_get("description")?,
        created_at: ts(row, "created_at")?,
        disabled_at: opt_ts(row, "disabled_at")?,
    })
}
