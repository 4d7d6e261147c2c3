//! The delivery outbox and webhook subscribers, in SQL. Deliveries are inserted by [`Planner`]
//! inside the caller's transaction (the same one as the state change); workers claim due rows
//! with a lease that is committed before any network I/O, then record each attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hitlhook_domain::{
    DeliveryPlan, DeliveryState, Execution, ExecutionStatus, NewDelivery, Occurrence,
    SubscriptionFilter, Timestamp,
};
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};

use crate::model::*;
use crate::rows::{self, DELIVERY_COLUMNS, SUBSCRIPTION_COLUMNS};
use crate::sql::Backend;
use crate::writes::{NewEvent, insert_event};
use crate::{StoreError, StoreResult};

/// What the planner needs from the configuration: the channels and the default attempt limit.
#[derive(Debug, Clone, Default)]
pub struct OutboxSettings {
    pub plan: DeliveryPlan,
    pub max_attempts: u32,
}

/// Plans and inserts deliveries inside one transaction. Subscribers are read once, lazily,
/// the first time an occurrence needs them.
pub(crate) struct Planner {
    settings: Arc<OutboxSettings>,
    subscribers: Option<Vec<SubscriptionFilter>>,
    /// The store's count of deliveries planned (see `Store::deliveries_planned`).
    planned: Arc<AtomicU64>,
    /// Rows inserted in this transaction, added to `planned` only once it commits: a worker
    /// that saw the count move before the rows were visible would look, find nothing, and then
    /// ignore the commit's wake-up.
    inserted: u64,
}

impl Planner {
    pub(crate) fn new(settings: Arc<OutboxSettings>, planned: Arc<AtomicU64>) -> Self {
        Planner {
            settings,
            subscribers: None,
            planned,
            inserted: 0,
        }
    }

    /// Call after the transaction committed: publishes the rows it planned.
    pub(crate) fn committed(self) {
        if self.inserted > 0 {
            self.planned.fetch_add(self.inserted, Ordering::Release);
        }
    }

    /// Writes the deliveries `occurrence` causes.
    pub(crate) async fn emit(
        &mut self,
        c: &mut AnyConnection,
        occurrence: Occurrence<'_>,
        now: Timestamp,
    ) -> StoreResult<()> {
        // A decided AMP checkpoint resumes its run, whatever channels are configured.
        if let Occurrence::CheckpointClosed { checkpoint } = &occurrence
            && let Some(resume) = crate::amp::resume_delivery(c, checkpoint).await?
        {
            insert(c, &resume, now, self.settings.max_attempts).await?;
            self.inserted += 1;
        }
        if self.subscribers.is_none() {
            self.subscribers = Some(active_filters(c).await?);
        }
        let subscribers = self.subscribers.as_deref().unwrap_or_default();
        if subscribers.is_empty() && self.settings.plan.is_empty() {
            return Ok(());
        }
        for d in self.settings.plan.plan(&occurrence, subscribers, now) {
            insert(c, &d, now, self.settings.max_attempts).await?;
            self.inserted += 1;
        }
        Ok(())
    }

    /// Emits `execution.updated` when the execution's status differs from `before`.
    pub(crate) async fn execution_saved(
        &mut self,
        c: &mut AnyConnection,
        before: Option<ExecutionStatus>,
        execution: &Execution,
        now: Timestamp,
    ) -> StoreResult<()> {
        if before == Some(execution.status) {
            return Ok(());
        }
        let occurrence = Occurrence::ExecutionChanged {
            execution,
            previous: before,
        };
        self.emit(c, occurrence, now).await
    }
}

async fn active_filters(c: &mut AnyConnection) -> StoreResult<Vec<SubscriptionFilter>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select id, event_types from subscriptions where disabled_at is null")
            .fetch_all(&mut *c)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, types)| SubscriptionFilter {
            id,
            event_types: rows::event_types(&types),
        })
        .collect())
}

/// One delivery, due now: id, kind, checkpoint, kickoff, event type, target, payload, attempt
/// limit, now. (`$9` thrice: SQLite numbers a repeated parameter once.)
pub(crate) const INSERT_DELIVERY: &str = "insert into deliveries (id, kind, checkpoint_id, \
    kickoff_id, event_type, target, payload, state, attempts, max_attempts, next_at, created_at, \
    updated_at) values ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9, $9, $9)";

/// Inserts one delivery, due now. Returns its id.
pub(crate) async fn insert(
    c: &mut AnyConnection,
    d: &NewDelivery,
    now: Timestamp,
    default_max: u32,
) -> StoreResult<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let max = d.max_attempts.unwrap_or(default_max).max(1);
    sqlx::query(INSERT_DELIVERY)
        .bind(&id)
        .bind(d.kind.as_str())
        .bind(d.checkpoint_id.as_deref())
        .bind(d.kickoff_id.as_deref())
        .bind(&d.event_type)
        .bind(&d.target)
        .bind(&d.payload)
        .bind(i64::from(max))
        .bind(now.millis())
        .execute(&mut *c)
        .await?;
    Ok(id)
}

/// Claims up to `max` due deliveries for `owner`: each gets a lease until `now + lease_ms`
/// (its `next_at`), and its attempt counter goes up. Committed before the caller sends anything.
pub(crate) async fn claim(
    pool: &AnyPool,
    backend: Backend,
    now: Timestamp,
    lease_ms: i64,
    max: u32,
    owner: &str,
) -> StoreResult<Vec<Delivery>> {
    // PostgreSQL: concurrent claimers skip each other's locked rows. SQLite has one writer, so
    // the statement is atomic as it is.
    let lock = match backend {
        Backend::Postgres => " for update skip locked",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "update deliveries set next_at = $1, lease_owner = $2, attempts = attempts + 1, updated_at = $3 \
         where state = 'pending' and next_at <= $3 and id in \
         (select id from deliveries where state = 'pending' and next_at <= $3 order by next_at, seq limit $4{lock}) \
         returning {DELIVERY_COLUMNS}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(now.millis().saturating_add(lease_ms))
        .bind(owner)
        .bind(now.millis())
        .bind(i64::from(max.clamp(1, 1000)))
        .fetch_all(pool)
        .await?;
    let mut claimed = rows
        .iter()
        .map(rows::delivery)
        .collect::<StoreResult<Vec<_>>>()?;
    claimed.sort_by_key(|d| d.seq);
    Ok(claimed)
}

/// Records how the attempt of a claimed delivery ended. `false` when the lease was lost (it
/// expired and someone else claimed the row): the outcome is then dropped.
pub(crate) async fn record(
    c: &mut AnyConnection,
    claimed: &Delivery,
    outcome: &AttemptOutcome,
    now: Timestamp,
) -> StoreResult<bool> {
    let (state, next_at, delivered_at, status, error, result) = match outcome {
        AttemptOutcome::Delivered { status, result } => (
            DeliveryState::Delivered,
            now,
            Some(now.millis()),
            *status,
            None,
            result.clone(),
        ),
        AttemptOutcome::Failed {
            status,
            error,
            next_at: Some(at),
        } => (
            DeliveryState::Pending,
            *at,
            None,
            *status,
            Some(error.clone()),
            None,
        ),
        AttemptOutcome::Failed {
            status,
            error,
            next_at: None,
        } => (
            DeliveryState::Dead,
            now,
            None,
            *status,
            Some(error.clone()),
            None,
        ),
        AttemptOutcome::Skipped { reason } => (
            DeliveryState::Skipped,
            now,
            None,
            None,
            None,
            Some(json!({ "skipped": reason }).to_string()),
        ),
        AttemptOutcome::ResolvedElsewhere { status, detail } => (
            DeliveryState::ResolvedElsewhere,
            now,
            None,
            *status,
            Some(detail.clone()),
            Some(json!({ "resolved_elsewhere": detail }).to_string()),
        ),
    };
    let done = sqlx::query(
        "update deliveries set state = $1, next_at = $2, lease_owner = null, updated_at = $3, \
         delivered_at = coalesce($4, delivered_at), last_status = coalesce($5, last_status), \
         last_error = coalesce($6, last_error), result = coalesce($7, result) \
         where id = $8 and attempts = $9 and lease_owner = $10 and state = 'pending'",
    )
    .bind(state.as_str())
    .bind(next_at.millis())
    .bind(now.millis())
    .bind(delivered_at)
    .bind(status.map(i64::from))
    .bind(error.as_deref())
    .bind(result.as_deref())
    .bind(&claimed.id)
    .bind(claimed.attempts)
    .bind(claimed.lease_owner.as_deref().unwrap_or(""))
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    if state == DeliveryState::ResolvedElsewhere {
        // The receiver had its answer already: the checkpoint's trail says so.
        let payload = json!({
            "event_type": "delivery.resolved_elsewhere",
            "delivery_id": claimed.id,
            "kind": claimed.kind.as_str(),
            "target": claimed.target,
            "checkpoint_id": claimed.checkpoint_id,
            "kickoff_id": claimed.kickoff_id,
            "status": status,
            "detail": error,
        })
        .to_string();
        let key = format!(
            "hitlhook:delivery.resolved_elsewhere:{}:{}",
            claimed.id, claimed.attempts
        );
        insert_event(
            c,
            &NewEvent {
                key: &key,
                event_type: "delivery.resolved_elsewhere",
                kickoff_id: claimed.kickoff_id.as_deref(),
                checkpoint_id: claimed.checkpoint_id.as_deref(),
                source: "hitlhook",
                received_at: now,
                occurred_at: Some(now),
                payload: &payload,
            },
        )
        .await?;
    }
    if state == DeliveryState::Dead {
        // A dead letter is an event: live clients and the audit trail see it.
        let payload = json!({
            "event_type": "delivery.dead",
            "delivery_id": claimed.id,
            "kind": claimed.kind.as_str(),
            "target": claimed.target,
            "checkpoint_id": claimed.checkpoint_id,
            "kickoff_id": claimed.kickoff_id,
            "attempts": claimed.attempts,
            "last_error": error,
        })
        .to_string();
        let key = format!("hitlhook:delivery.dead:{}:{}", claimed.id, claimed.attempts);
        insert_event(
            c,
            &NewEvent {
                key: &key,
                event_type: "delivery.dead",
                kickoff_id: claimed.kickoff_id.as_deref(),
                checkpoint_id: claimed.checkpoint_id.as_deref(),
                source: "hitlhook",
                received_at: now,
                occurred_at: Some(now),
                payload: &payload,
            },
        )
        .await?;
    }
    Ok(true)
}

pub(crate) async fn get(pool: &AnyPool, id: &str) -> StoreResult<Option<Delivery>> {
    let sql = format!("select {DELIVERY_COLUMNS} from deliveries where id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::delivery).transpose()
}

/// Makes a dead, delivered or skipped delivery due now with a fresh set of attempts.
pub(crate) async fn retry(pool: &AnyPool, id: &str, now: Timestamp) -> StoreResult<RetryOutcome> {
    let sql = format!(
        "update deliveries set state = 'pending', attempts = 0, next_at = $1, lease_owner = null, \
         updated_at = $1 where id = $2 and state <> 'pending' returning {DELIVERY_COLUMNS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(now.millis())
        .bind(id)
        .fetch_optional(pool)
        .await?;
    if let Some(row) = row {
        return Ok(RetryOutcome::Revived(rows::delivery(&row)?));
    }
    Ok(match get(pool, id).await? {
        Some(d) => RetryOutcome::Pending(d),
        None => RetryOutcome::NotFound,
    })
}

pub(crate) async fn next_due(pool: &AnyPool) -> StoreResult<Option<Timestamp>> {
    let at: Option<i64> =
        sqlx::query_scalar("select min(next_at) from deliveries where state = 'pending'")
            .fetch_one(pool)
            .await?;
    Ok(at.map(Timestamp))
}

pub(crate) async fn list(pool: &AnyPool, q: &DeliveryQuery) -> StoreResult<Page<Delivery>> {
    let mut sql = format!("select {DELIVERY_COLUMNS} from deliveries where 1 = 1");
    let mut query_args: Vec<crate::reads::Param> = Vec::new();
    if let Some(state) = q.state {
        query_args.push(crate::reads::Param::Text(state.as_str().to_owned()));
        sql += &format!(" and state = ${}", query_args.len());
    }
    if let Some(checkpoint) = &q.checkpoint_id {
        query_args.push(crate::reads::Param::Text(checkpoint.clone()));
        sql += &format!(" and checkpoint_id = ${}", query_args.len());
    }
    if let Some(kind) = q.kind {
        query_args.push(crate::reads::Param::Text(kind.as_str().to_owned()));
        sql += &format!(" and kind = ${}", query_args.len());
    }
    if let Some(cursor) = q.cursor {
        query_args.push(crate::reads::Param::Int(cursor));
        sql += &format!(" and seq < ${}", query_args.len());
    }
    let limit = crate::reads::clamp_limit(q.limit);
    query_args.push(crate::reads::Param::Int(limit + 1));
    sql += &format!(" order by seq desc limit ${}", query_args.len());
    let rows = crate::reads::fetch_dynamic(pool, sql, query_args).await?;
    let items = rows
        .iter()
        .map(rows::delivery)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(crate::reads::page(items, limit, |d| d.seq))
}

pub(crate) async fn create_subscription(
    pool: &AnyPool,
    new: NewSubscription,
) -> StoreResult<Subscription> {
    sqlx::query(
        "insert into subscriptions (id, url, secret, event_types, description, created_at) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&new.id)
    .bind(&new.url)
    .bind(&new.secret)
    .bind(new.event_types.join(","))
    .bind(new.description.as_deref())
    .bind(new.created_at.millis())
    .execute(pool)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate("a subscription with this id exists")
        }
        other => other.into(),
    })?;
    Ok(Subscription {
        id: new.id,
        url: new.url,
        secret: new.secret,
        event_types: new.event_types,
        description: new.description,
        created_at: new.created_at,
        disabled_at: None,
    })
}

pub(crate) async fn get_subscription(
    pool: &AnyPool,
    id: &str,
) -> StoreResult<Option<Subscription>> {
    let sql = format!("select {SUBSCRIPTION_COLUMNS} from subscriptions where id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::subscription).transpose()
}

pub(crate) async fn list_subscriptions(pool: &AnyPool) -> StoreResult<Vec<Subscription>> {
    let sql = format!(
        "select {SUBSCRIPTION_COLUMNS} from subscriptions where disabled_at is null order by created_at, id"
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
    rows.iter().map(rows::subscription).collect()
}

/// Disables a subscriber: it gets nothing new; its pending deliveries are skipped when due.
pub(crate) async fn remove_subscription(
    pool: &AnyPool,
    id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    // The signing secret is wiped: nothing is ever signed for a removed subscription again, and
    // a secret left in the row would outlive the operator's decision to revoke it.
    let done = sqlx::query(
        "update subscriptions set disabled_at = $1, secret = '' where id = $2 and disabled_at is null",
    )
    .bind(now.millis())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
