//! The SQL steps write transactions are made of, on both backends: finding and inserting events,
//! creating, escalating and closing checkpoints, saving executions, and the general (per-event)
//! ingest that batch.rs falls back to. Each step runs inside a transaction its caller owns.

use hitlhook_domain::action;
use hitlhook_domain::amp::OriginKind;
use hitlhook_domain::execution::CheckpointClosed;
use hitlhook_domain::{
    Action, Checkpoint, CheckpointStatus, EventEnvelope, Execution, Occurrence, Timestamp,
};
use serde_json::json;
use sqlx::{Acquire, AnyConnection, AssertSqlSafe};

use crate::model::*;
use crate::outbox::Planner;
use crate::rows::{self, CHECKPOINT_COLUMNS, EXECUTION_COLUMNS};
use crate::sql::Backend;
use crate::{StoreError, StoreResult};

/// Starts a write transaction on `c`. SQLite's takes the write lock up front (`BEGIN
/// IMMEDIATE`, waiting up to `busy_timeout` for another process such as the CLI): a deferred one
/// that has read fails at once with `SQLITE_BUSY` when another process wrote meanwhile.
pub(crate) async fn begin_write(
    c: &mut AnyConnection,
    backend: Backend,
) -> StoreResult<sqlx::Transaction<'_, sqlx::Any>> {
    Ok(match backend {
        Backend::Sqlite => sqlx::Connection::begin_with(c, "BEGIN IMMEDIATE").await?,
        Backend::Postgres => c.begin().await?,
    })
}

/// What to do with an item's savepoint.
pub(crate) enum Step {
    Keep(IngestOutcome),
    Discard(IngestOutcome),
}

pub(crate) fn new_checkpoint_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) async fn find_receipt(c: &mut AnyConnection, key: &str) -> StoreResult<Option<Receipt>> {
    let row = sqlx::query("select seq, event_key, event_type, kickoff_id, checkpoint_id from events where event_key = $1")
        .bind(key)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(rows::receipt).transpose()
}

pub(crate) async fn receipt_by_seq(c: &mut AnyConnection, seq: i64) -> StoreResult<Receipt> {
    let row = sqlx::query(
        "select seq, event_key, event_type, kickoff_id, checkpoint_id from events where seq = $1",
    )
    .bind(seq)
    .fetch_one(&mut *c)
    .await?;
    rows::receipt(&row)
}

/// An escalation tells its new people about the checkpoint it refers to, while that is pending.
pub(crate) async fn escalate(
    c: &mut AnyConnection,
    planner: &mut Planner,
    env: &EventEnvelope,
    at: Timestamp,
) -> StoreResult<()> {
    let Some(id) = env
        .checkpoint_ref
        .as_deref()
        .filter(|_| !env.escalate_to.is_empty() || env.escalated_callback.is_some())
    else {
        return Ok(());
    };
    let Some(checkpoint) = load_checkpoint(c, id)
        .await?
        .filter(|cp| cp.status == CheckpointStatus::Pending)
    else {
        return Ok(());
    };
    if let Some(url) = &env.escalated_callback {
        crate::amp::replace_flow_callback(c, id, url).await?;
    }
    if !env.escalate_to.is_empty() {
        let occurrence = Occurrence::CheckpointEscalated {
            checkpoint: &checkpoint,
            recipients: &env.escalate_to,
        };
        planner.emit(c, occurrence, at).await?;
    }
    Ok(())
}

pub(crate) async fn load_checkpoint(
    c: &mut AnyConnection,
    id: &str,
) -> StoreResult<Option<Checkpoint>> {
    let sql = format!("select {CHECKPOINT_COLUMNS} from checkpoints where id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(rows::checkpoint).transpose()
}

pub(crate) async fn load_execution(
    c: &mut AnyConnection,
    kickoff_id: &str,
) -> StoreResult<Option<Execution>> {
    let sql = format!("select {EXECUTION_COLUMNS} from executions where kickoff_id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(kickoff_id)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(rows::execution).transpose()
}

/// The columns of a new event row.
pub(crate) struct NewEvent<'a> {
    pub key: &'a str,
    pub event_type: &'a str,
    pub kickoff_id: Option<&'a str>,
    pub checkpoint_id: Option<&'a str>,
    pub source: &'a str,
    pub received_at: Timestamp,
    pub occurred_at: Option<Timestamp>,
    pub payload: &'a str,
}

/// Inserts an event; `None` when its key exists already (a concurrent duplicate).
pub(crate) async fn insert_event(
    c: &mut AnyConnection,
    e: &NewEvent<'_>,
) -> StoreResult<Option<i64>> {
    let seq: Option<i64> = sqlx::query_scalar(
        "insert into events (event_key, event_type, kickoff_id, checkpoint_id, source, received_at, occurred_at, payload) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (event_key) do nothing returning seq",
    )
    .bind(e.key)
    .bind(e.event_type)
    .bind(e.kickoff_id)
    .bind(e.checkpoint_id)
    .bind(e.source)
    .bind(e.received_at.millis())
    .bind(e.occurred_at.map(Timestamp::millis))
    .bind(e.payload)
    .fetch_optional(&mut *c)
    .await?;
    Ok(seq)
}

/// Records an event hitlhook itself produced about a checkpoint (decided, expired, cancelled).
pub(crate) async fn insert_own_event(
    c: &mut AnyConnection,
    event_type: &str,
    cp: &Checkpoint,
    source: &str,
    at: Timestamp,
) -> StoreResult<i64> {
    let payload = json!({
        "event_type": event_type,
        "checkpoint_id": cp.id,
        "checkpoint_name": cp.name,
        "kickoff_id": cp.kickoff_id,
        "status": cp.status.as_str(),
        "decision": cp.decision,
        "closed_reason": cp.closed_reason,
    })
    .to_string();
    let key = format!("hitlhook:{event_type}:{}", cp.id);
    let event = NewEvent {
        key: &key,
        event_type,
        kickoff_id: cp.kickoff_id.as_deref(),
        checkpoint_id: Some(&cp.id),
        source,
        received_at: at,
        occurred_at: Some(at),
        payload: &payload,
    };
    insert_event(c, &event).await?.ok_or(StoreError::Duplicate(
        "an event for this checkpoint transition exists already",
    ))
}

pub(crate) async fn insert_checkpoint(c: &mut AnyConnection, cp: &Checkpoint) -> StoreResult<bool> {
    let done = sqlx::query(
        "insert into checkpoints (id, name, kickoff_id, context, allowed_actions, status, created_at, expires_at, on_timeout, created_seq) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict (id) do nothing",
    )
    .bind(&cp.id)
    .bind(&cp.name)
    .bind(cp.kickoff_id.as_deref())
    .bind(&cp.context_json)
    .bind(action::join(&cp.allowed_actions))
    .bind(cp.status.as_str())
    .bind(cp.created_at.millis())
    .bind(cp.expires_at.map(Timestamp::millis))
    .bind(cp.on_timeout.map(|a| a.as_str()))
    .bind(cp.created_seq)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a pending checkpoint to its next state; `false` if someone else closed it first.
pub(crate) async fn close_checkpoint(
    c: &mut AnyConnection,
    next: &Checkpoint,
) -> StoreResult<bool> {
    let d = next.decision.as_ref();
    let done = sqlx::query(
        "update checkpoints set status = $1, decision_action = $2, decision_feedback = $3, decided_by = $4, \
         decision_channel = $5, decided_at = $6, closed_reason = $7 where id = $8 and status = 'pending'",
    )
    .bind(next.status.as_str())
    .bind(d.map(|d| d.action.as_str()))
    .bind(d.and_then(|d| d.feedback.as_deref()))
    .bind(d.map(|d| d.decided_by.as_str()))
    .bind(d.map(|d| d.channel.as_str()))
    .bind(d.map(|d| d.decided_at.millis()))
    .bind(next.closed_reason.as_deref())
    .bind(&next.id)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An execution upsert is `HEAD values (...) TAIL`: the first seq is kept from the first insert.
pub(crate) const EXECUTION_UPSERT_HEAD: &str = "insert into executions (kickoff_id, status, events_total, \
    tasks_started, tasks_completed, tasks_failed, steps_completed, checkpoints_total, checkpoints_pending, \
    started_at, updated_at, finished_at, created_seq)";
pub(crate) const EXECUTION_UPSERT_TAIL: &str = "on conflict (kickoff_id) do update set status = excluded.status, \
    events_total = excluded.events_total, tasks_started = excluded.tasks_started, \
    tasks_completed = excluded.tasks_completed, tasks_failed = excluded.tasks_failed, \
    steps_completed = excluded.steps_completed, checkpoints_total = excluded.checkpoints_total, \
    checkpoints_pending = excluded.checkpoints_pending, updated_at = excluded.updated_at, \
    finished_at = excluded.finished_at";

pub(crate) async fn save_execution(
    c: &mut AnyConnection,
    ex: &Execution,
    first_seq: i64,
) -> StoreResult<()> {
    let sql = format!(
        "{EXECUTION_UPSERT_HEAD} values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) {EXECUTION_UPSERT_TAIL}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(&ex.kickoff_id)
        .bind(ex.status.as_str())
        .bind(ex.events_total)
        .bind(ex.tasks_started)
        .bind(ex.tasks_completed)
        .bind(ex.tasks_failed)
        .bind(ex.steps_completed)
        .bind(ex.checkpoints_total)
        .bind(ex.checkpoints_pending)
        .bind(ex.started_at.millis())
        .bind(ex.updated_at.millis())
        .bind(ex.finished_at.map(Timestamp::millis))
        .bind(first_seq)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Closes `cp` as `next` and records the consequences: the audit event, and the execution's
/// counters and status (which may cancel its other pending checkpoints). Returns the event's seq
/// and every other checkpoint closed on the way, or `None` if `cp` was closed concurrently.
pub(crate) async fn apply_close(
    c: &mut AnyConnection,
    planner: &mut Planner,
    next: &Checkpoint,
    source: &str,
    now: Timestamp,
) -> StoreResult<Option<(i64, Vec<Checkpoint>)>> {
    if !close_checkpoint(c, next).await? {
        return Ok(None);
    }
    let (event_type, how) = match (&next.status, &next.decision) {
        (CheckpointStatus::Decided, Some(d)) => {
            ("checkpoint.decided", CheckpointClosed::Decided(d.action))
        }
        (CheckpointStatus::Cancelled, _) => ("checkpoint.cancelled", CheckpointClosed::Cancelled),
        _ => ("checkpoint.expired", CheckpointClosed::Expired),
    };
    let seq = insert_own_event(c, event_type, next, source, now).await?;
    planner
        .emit(c, Occurrence::CheckpointClosed { checkpoint: next }, now)
        .await?;
    // An AMP flow's "stop" is an answer the flow acts on (the outcome it maps to, sent to its
    // callback); the flow runs on, so its execution and its other requests stay open. Ending
    // them here would leave those requests unanswered in AMP.
    let how = match how {
        CheckpointClosed::Decided(Action::Stop)
            if crate::amp::load_origin(c, &next.id)
                .await?
                .is_some_and(|o| o.kind == OriginKind::Flow) =>
        {
            CheckpointClosed::Decided(Action::Continue)
        }
        how => how,
    };
    let mut cascade = Vec::new();
    if let Some(kickoff) = &next.kickoff_id
        && let Some(mut ex) = load_execution(c, kickoff).await?
    {
        let before = ex.status;
        if ex.on_checkpoint_closed(how, now).cancel_pending {
            cascade = cancel_pending(c, planner, &mut ex, "execution stopped", now).await?;
        }
        save_execution(c, &ex, seq).await?;
        planner.execution_saved(c, Some(before), &ex, now).await?;
    }
    Ok(Some((seq, cascade)))
}

/// Cancels every pending checkpoint of an execution that just ended.
pub(crate) async fn cancel_pending(
    c: &mut AnyConnection,
    planner: &mut Planner,
    ex: &mut Execution,
    reason: &str,
    now: Timestamp,
) -> StoreResult<Vec<Checkpoint>> {
    let sql = format!(
        "select {CHECKPOINT_COLUMNS} from checkpoints where kickoff_id = $1 and status = 'pending'"
    );
    let pending = sqlx::query(AssertSqlSafe(sql))
        .bind(&ex.kickoff_id)
        .fetch_all(&mut *c)
        .await?;
    let mut cancelled = Vec::with_capacity(pending.len());
    for row in &pending {
        let Some(next) = rows::checkpoint(row)?.cancel(reason) else {
            continue;
        };
        if close_checkpoint(c, &next).await? {
            insert_own_event(c, "checkpoint.cancelled", &next, "hitlhook", now).await?;
            planner
                .emit(c, Occurrence::CheckpointClosed { checkpoint: &next }, now)
                .await?;
            let _ = ex.on_checkpoint_closed(CheckpointClosed::Cancelled, now);
            cancelled.push(next);
        }
    }
    Ok(cancelled)
}

pub(crate) async fn ingest_one(
    c: &mut AnyConnection,
    planner: &mut Planner,
    item: &IngestItem,
) -> StoreResult<Step> {
    if let Some(receipt) = find_receipt(c, &item.identity.0).await? {
        return Ok(Step::Discard(IngestOutcome::Duplicate(receipt)));
    }
    let env = &item.envelope;
    let mut created = None;
    if let Some(spec) = &env.checkpoint {
        if let Some(existing) = match &spec.id {
            Some(id) => load_checkpoint(c, id).await?,
            None => None,
        } {
            let outcome = if existing.same_request(spec) {
                IngestOutcome::Duplicate(receipt_by_seq(c, existing.created_seq).await?)
            } else {
                IngestOutcome::Rejected(IngestRejection::CheckpointConflict(existing.id))
            };
            return Ok(Step::Discard(outcome));
        }
        match spec
            .clone()
            .into_checkpoint(new_checkpoint_id(), item.received_at, 0)
        {
            Ok(cp) => created = Some(Box::new(cp)),
            Err(e) => {
                return Ok(Step::Discard(IngestOutcome::Rejected(
                    IngestRejection::InvalidCheckpoint(e),
                )));
            }
        }
    }
    let checkpoint_id = created
        .as_ref()
        .map(|cp| cp.id.clone())
        .or_else(|| env.checkpoint_ref.clone());
    let event = NewEvent {
        key: &item.identity.0,
        event_type: &env.event_type,
        kickoff_id: env.kickoff_id.as_deref(),
        checkpoint_id: checkpoint_id.as_deref(),
        source: &item.source,
        received_at: item.received_at,
        occurred_at: env.occurred_at,
        payload: &item.payload,
    };
    let Some(seq) = insert_event(c, &event).await? else {
        // Another node stored the same event between our lookup and insert.
        let receipt = find_receipt(c, &item.identity.0)
            .await?
            .ok_or(StoreError::NotFound)?;
        return Ok(Step::Discard(IngestOutcome::Duplicate(receipt)));
    };
    if let Some(cp) = created.as_mut() {
        cp.created_seq = seq;
        if !insert_checkpoint(c, cp).await? {
            return Ok(Step::Discard(IngestOutcome::Rejected(
                IngestRejection::CheckpointConflict(cp.id.clone()),
            )));
        }
        if let Some(origin) = env.checkpoint.as_ref().and_then(|s| s.origin.as_ref()) {
            crate::amp::save_origin(c, &cp.id, origin, item.received_at).await?;
        }
        let recipients = env
            .checkpoint
            .as_ref()
            .map_or(&[][..], |spec| &spec.recipients[..]);
        let occurrence = Occurrence::CheckpointCreated {
            checkpoint: cp,
            recipients,
        };
        planner.emit(c, occurrence, item.received_at).await?;
    }
    escalate(c, planner, env, item.received_at).await?;
    let mut closed = Vec::new();
    if let Some(kickoff) = &env.kickoff_id {
        let existing = load_execution(c, kickoff).await?;
        let before = existing.as_ref().map(|ex| ex.status);
        let mut ex = existing.unwrap_or_else(|| Execution::new(kickoff.clone(), item.received_at));
        if ex.on_event(&env.kind, item.received_at).cancel_pending {
            let reason = format!("execution {}", ex.status.as_str());
            closed = cancel_pending(c, planner, &mut ex, &reason, item.received_at).await?;
        }
        save_execution(c, &ex, seq).await?;
        planner
            .execution_saved(c, before, &ex, item.received_at)
            .await?;
    }
    let receipt = Receipt {
        seq,
        identity: item.identity.0.clone(),
        event_type: env.event_type.clone(),
        kickoff_id: env.kickoff_id.clone(),
        checkpoint_id,
    };
    Ok(Step::Keep(IngestOutcome::Accepted {
        receipt,
        created,
        closed,
    }))
}
