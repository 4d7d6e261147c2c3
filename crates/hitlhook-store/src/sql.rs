//! The one implementation of [`Store`], over sqlx's `Any` driver. Both backends run the same SQL
//! (`$n` placeholders, `on conflict`, `returning`), so there is a single code path to review and
//! the contract tests prove it on each. What differs — connection setup, migrations, pool shape —
//! is decided in [`SqlStore::open`]. One exception, for speed: SQLite's common ingest batches are
//! written by `sqlite_ingest`, which declines the rest back to this path.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use hitlhook_domain::action;
use hitlhook_domain::execution::CheckpointClosed;
use hitlhook_domain::{
    Action, Checkpoint, CheckpointStatus, Decided, DecisionRequest, DeliveryPlan, EventEnvelope,
    Execution, NewDelivery, Occurrence, Timestamp,
};
use serde_json::json;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Acquire, AnyConnection, AnyPool, AssertSqlSafe, Executor};
use tracing::warn;

use crate::batch;
use crate::model::*;
use crate::outbox::{self, OutboxSettings, Planner};
use crate::rows::{self, API_KEY_COLUMNS, CHECKPOINT_COLUMNS, EVENT_COLUMNS, EXECUTION_COLUMNS};
use crate::sqlite_file::{
    SQLITE_INGEST_PRAGMAS, SQLITE_PRAGMAS, SQLITE_WRITER_PRAGMAS, opens_read_write, preflight,
    sqlite_url,
};
use crate::sqlite_ingest::SqliteIngest;
use crate::{Store, StoreError, StoreResult};
use hitlhook_domain::amp::{Origin, OriginKind};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store. SQLite gets one writer connection (SQLite allows one writer at a time, so queueing
/// in the pool is cheaper than retrying on `SQLITE_BUSY`) and a few readers; PostgreSQL one pool.
pub struct SqlStore {
    backend: Backend,
    writer: AnyPool,
    reader: AnyPool,
    /// Channels and limits for planning deliveries; replaced by `set_delivery_plan`.
    outbox: RwLock<Arc<OutboxSettings>>,
    /// Deliveries planned by this process (see `Store::deliveries_planned`).
    planned: Arc<AtomicU64>,
    /// SQLite's ingest writer thread (file databases only).
    sqlite_ingest: Option<SqliteIngest>,
    /// Batches that thread wrote; the others went through the general path.
    thread_batches: AtomicU64,
}

impl SqlStore {
    /// Connects to `sqlite://path`, `sqlite:path` or `postgres://...`, creating the SQLite file
    /// and its directory if needed.
    pub async fn open(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = sqlite_url(url)?;
            preflight(&url).await?;
            let options = AnyConnectOptions::from_str(&url)?;
            let pool = |max: u32, writer: bool| {
                AnyPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(30))
                    // A connection to a local file cannot go stale; the default ping before each
                    // acquire cost a round trip to sqlx's worker thread per ingest batch.
                    .test_before_acquire(false)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_PRAGMAS).await?;
                            if writer {
                                conn.execute(SQLITE_WRITER_PRAGMAS).await?;
                            }
                            Ok(())
                        })
                    })
            };
            let writer = pool(1, true).connect_with(options.clone()).await?;
            let reader = pool(4, false).connect_with(options).await?;
            let pragmas = format!("{SQLITE_PRAGMAS} {SQLITE_INGEST_PRAGMAS}");
            // The file as SQLite itself opened it (sqlx decodes the URL; a path spelt from the URL
            // could name another file).
            let file: String =
                sqlx::query_scalar("select file from pragma_database_list where name = 'main'")
                    .fetch_one(&writer)
                    .await?;
            let writable = opens_read_write(&url);
            let sqlite_ingest = writable.then(|| std::path::PathBuf::from(file)).and_then(|path| {
                SqliteIngest::start(&path, &pragmas)
                    .inspect_err(|e| {
                        warn!(error = ?e, path = %path.display(), "SQLite ingest thread not started: every batch goes through the general (slower) path");
                    })
                    .ok()
            });
            Ok(Self {
                backend: Backend::Sqlite,
                writer,
                reader,
                outbox: RwLock::default(),
                planned: Arc::default(),
                sqlite_ingest,
                thread_batches: AtomicU64::new(0),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            Ok(Self {
                backend: Backend::Postgres,
                writer: pool.clone(),
                reader: pool,
                outbox: RwLock::default(),
                planned: Arc::default(),
                sqlite_ingest: None,
                thread_batches: AtomicU64::new(0),
            })
        } else {
            Err(StoreError::UnsupportedUrl(crate::redact_url(url)))
        }
    }

    #[must_use]
    pub fn kind(&self) -> Backend {
        self.backend
    }

    fn planner_max_attempts(&self) -> u32 {
        match self.outbox.read() {
            Ok(guard) => guard.max_attempts,
            Err(poisoned) => poisoned.into_inner().max_attempts,
        }
    }

    /// The same store, writing every batch through the general path (tests compare the two).
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn without_ingest_thread(mut self) -> Self {
        self.sqlite_ingest = None;
        self
    }

    /// Batches SQLite's ingest thread has written.
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn thread_batches(&self) -> u64 {
        self.thread_batches.load(Ordering::Relaxed)
    }

    fn outbox_settings(&self) -> Arc<OutboxSettings> {
        // A poisoned lock only means a panic elsewhere mid-write of an Arc: the value is whole.
        match self.outbox.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn planner(&self) -> Planner {
        Planner::new(self.outbox_settings(), Arc::clone(&self.planned))
    }
}

/// Starts a write transaction on `c`. SQLite's takes the write lock up front (`BEGIN
/// IMMEDIATE`, waiting up to `busy_timeout` for another process such as the CLI): a deferred one
/// that has read fails at once with `SQLITE_BUSY` when another process wrote meanwhile.
async fn begin_write(
    c: &mut AnyConnection,
    backend: Backend,
) -> StoreResult<sqlx::Transaction<'_, sqlx::Any>> {
    Ok(match backend {
        Backend::Sqlite => sqlx::Connection::begin_with(c, "BEGIN IMMEDIATE").await?,
        Backend::Postgres => c.begin().await?,
    })
}

/// A bound parameter of a dynamically built query.
pub(crate) enum Param {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
}

pub(crate) async fn fetch_dynamic(
    pool: &AnyPool,
    sql: String,
    params: Vec<Param>,
) -> StoreResult<Vec<sqlx::any::AnyRow>> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for p in params {
        query = match p {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::OptInt(v) => query.bind(v),
            Param::OptText(v) => query.bind(v),
        };
    }
    Ok(query.fetch_all(pool).await?)
}

/// What to do with an item's savepoint.
pub(crate) enum Step {
    Keep(IngestOutcome),
    Discard(IngestOutcome),
}

pub(crate) fn new_checkpoint_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn find_receipt(c: &mut AnyConnection, key: &str) -> StoreResult<Option<Receipt>> {
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
        .filter(|_| !env.escalate_to.is_empty())
    else {
        return Ok(());
    };
    if let Some(checkpoint) = load_checkpoint(c, id).await?
        && checkpoint.status == CheckpointStatus::Pending
    {
        let occurrence = Occurrence::CheckpointEscalated {
            checkpoint: &checkpoint,
            recipients: &env.escalate_to,
        };
        planner.emit(c, occurrence, at).await?;
    }
    Ok(())
}

async fn load_checkpoint(c: &mut AnyConnection, id: &str) -> StoreResult<Option<Checkpoint>> {
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
async fn insert_own_event(
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

async fn insert_checkpoint(c: &mut AnyConnection, cp: &Checkpoint) -> StoreResult<bool> {
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
async fn close_checkpoint(c: &mut AnyConnection, next: &Checkpoint) -> StoreResult<bool> {
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

async fn save_execution(c: &mut AnyConnection, ex: &Execution, first_seq: i64) -> StoreResult<()> {
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
async fn apply_close(
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
async fn cancel_pending(
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

pub(crate) fn clamp_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 1000))
}

/// Splits a fetched `limit + 1` rows into a page and the next cursor.
pub(crate) fn page<T>(mut items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> i64) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn ingest(&self, batch: &[IngestItem]) -> StoreResult<Vec<IngestOutcome>> {
        // Held throughout: on SQLite the one writer connection is also the lock that keeps the
        // ingest thread's writes from overlapping with every other write.
        let mut writer = self.writer.acquire().await?;
        if let Some(thread) = &self.sqlite_ingest {
            match thread.write(batch, self.outbox_settings()).await {
                Ok(Some(written)) => {
                    self.planned
                        .fetch_add(written.deliveries, Ordering::Release);
                    self.thread_batches.fetch_add(1, Ordering::Relaxed);
                    return Ok(written.outcomes);
                }
                Ok(None) => {}
                Err(error) => {
                    warn!(error = ?error, events = batch.len(), "SQLite ingest thread failed; writing through the general path");
                }
            }
        }
        let mut tx = begin_write(&mut writer, self.backend).await?;
        let mut planner = self.planner();
        match batch::ingest_fast(&mut tx, self.backend, &mut planner, batch).await {
            Ok(outcomes) => {
                tx.commit().await?;
                planner.committed();
                return Ok(outcomes);
            }
            Err(error) => {
                // Replay the batch event by event: slower, exact, and isolates a bad item.
                tx.rollback().await?;
                warn!(error = ?error, events = batch.len(), "batch fast path abandoned; writing per event");
            }
        }
        let mut tx = begin_write(&mut writer, self.backend).await?;
        // Deliveries planned by the abandoned attempt were rolled back with it: plan afresh.
        let mut planner = self.planner();
        let mut outcomes = Vec::with_capacity(batch.len());
        for item in batch {
            // A savepoint per item: one bad item is rolled back alone and the batch goes on.
            let mut sp = (&mut tx).begin().await?;
            match ingest_one(&mut sp, &mut planner, item).await {
                Ok(Step::Keep(outcome)) => {
                    sp.commit().await?;
                    outcomes.push(outcome);
                }
                Ok(Step::Discard(outcome)) => {
                    sp.rollback().await?;
                    outcomes.push(outcome);
                }
                Err(error) => {
                    sp.rollback().await?;
                    warn!(error = ?error, event = %item.identity.0, "event not stored");
                    outcomes.push(IngestOutcome::Rejected(IngestRejection::Failed(
                        error.to_string(),
                    )));
                }
            }
        }
        tx.commit().await?;
        planner.committed();
        Ok(outcomes)
    }

    async fn decide(
        &self,
        checkpoint_id: &str,
        request: DecisionRequest,
        source: &str,
        now: Timestamp,
    ) -> StoreResult<DecideOutcome> {
        // Two rounds at most: a lost race (PostgreSQL, several nodes) re-reads and re-decides,
        // which then yields Unchanged or Refused.
        for _ in 0..2 {
            let mut writer = self.writer.acquire().await?;
            let mut tx = begin_write(&mut writer, self.backend).await?;
            let mut planner = self.planner();
            let Some(current) = load_checkpoint(&mut tx, checkpoint_id).await? else {
                return Ok(DecideOutcome::NotFound);
            };
            let next = match current.decide(request.clone(), now) {
                Err(error) => {
                    return Ok(DecideOutcome::Refused {
                        checkpoint: current,
                        error,
                    });
                }
                Ok(Decided::Unchanged) => return Ok(DecideOutcome::Unchanged(current)),
                Ok(Decided::New(next)) => *next,
            };
            if let Some((seq, cancelled)) =
                apply_close(&mut tx, &mut planner, &next, source, now).await?
            {
                tx.commit().await?;
                planner.committed();
                return Ok(DecideOutcome::Decided {
                    checkpoint: next,
                    seq,
                    cancelled,
                });
            }
        }
        Err(StoreError::Duplicate(
            "the checkpoint changed concurrently; retry",
        ))
    }

    async fn expire_due(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Checkpoint>> {
        let mut writer = self.writer.acquire().await?;
        let mut tx = begin_write(&mut writer, self.backend).await?;
        let mut planner = self.planner();
        let sql = format!(
            "select {CHECKPOINT_COLUMNS} from checkpoints where status = 'pending' and expires_at is not null \
             and expires_at <= $1 order by expires_at limit $2"
        );
        let due = sqlx::query(AssertSqlSafe(sql))
            .bind(now.millis())
            .bind(clamp_limit(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut changed = Vec::with_capacity(due.len());
        for row in &due {
            let Some(next) = rows::checkpoint(row)?.expire(now) else {
                continue;
            };
            if let Some((_, cascade)) =
                apply_close(&mut tx, &mut planner, &next, "hitlhook", now).await?
            {
                changed.push(next);
                changed.extend(cascade);
            }
        }
        tx.commit().await?;
        planner.committed();
        Ok(changed)
    }

    async fn get_checkpoint(&self, id: &str) -> StoreResult<Option<Checkpoint>> {
        let mut c = self.reader.acquire().await?;
        load_checkpoint(&mut c, id).await
    }

    async fn list_checkpoints(&self, q: &CheckpointQuery) -> StoreResult<Page<Checkpoint>> {
        let mut sql = format!("select {CHECKPOINT_COLUMNS} from checkpoints where 1 = 1");
        let mut params = Vec::new();
        if let Some(status) = q.status {
            params.push(Param::Text(status.as_str().to_owned()));
            sql += &format!(" and status = ${}", params.len());
        }
        if let Some(kickoff) = &q.kickoff_id {
            params.push(Param::Text(kickoff.clone()));
            sql += &format!(" and kickoff_id = ${}", params.len());
        }
        let (cmp, dir) = match q.order {
            Order::NewestFirst => ("<", "desc"),
            Order::OldestFirst => (">", "asc"),
        };
        if let Some(cursor) = q.cursor {
            params.push(Param::Int(cursor));
            sql += &format!(" and created_seq {cmp} ${}", params.len());
        }
        let limit = clamp_limit(q.limit);
        params.push(Param::Int(limit + 1));
        sql += &format!(" order by created_seq {dir} limit ${}", params.len());
        let rows = fetch_dynamic(&self.reader, sql, params).await?;
        let items = rows
            .iter()
            .map(rows::checkpoint)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, limit, |cp| cp.created_seq))
    }

    async fn get_execution(&self, kickoff_id: &str) -> StoreResult<Option<Execution>> {
        let mut c = self.reader.acquire().await?;
        load_execution(&mut c, kickoff_id).await
    }

    async fn list_executions(&self, q: &ExecutionQuery) -> StoreResult<Page<Execution>> {
        let mut sql =
            format!("select {EXECUTION_COLUMNS}, created_seq from executions where 1 = 1");
        let mut params = Vec::new();
        if let Some(status) = q.status {
            params.push(Param::Text(status.as_str().to_owned()));
            sql += &format!(" and status = ${}", params.len());
        }
        if let Some(cursor) = q.cursor {
            params.push(Param::Int(cursor));
            sql += &format!(" and created_seq < ${}", params.len());
        }
        let limit = clamp_limit(q.limit);
        params.push(Param::Int(limit + 1));
        sql += &format!(" order by created_seq desc limit ${}", params.len());
        let rows = fetch_dynamic(&self.reader, sql, params).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push((
                rows::execution(row)?,
                sqlx::Row::try_get::<i64, _>(row, "created_seq")?,
            ));
        }
        let page = page(items, limit, |(_, seq)| *seq);
        Ok(Page {
            items: page.items.into_iter().map(|(ex, _)| ex).collect(),
            next_cursor: page.next_cursor,
        })
    }

    async fn list_events(&self, q: &EventQuery) -> StoreResult<Page<StoredEvent>> {
        let mut sql = format!("select {EVENT_COLUMNS} from events where 1 = 1");
        let mut params = Vec::new();
        if let Some(kickoff) = &q.kickoff_id {
            params.push(Param::Text(kickoff.clone()));
            sql += &format!(" and kickoff_id = ${}", params.len());
        }
        if let Some(checkpoint) = &q.checkpoint_id {
            params.push(Param::Text(checkpoint.clone()));
            sql += &format!(" and checkpoint_id = ${}", params.len());
        }
        let (cmp, dir) = match q.order {
            Order::OldestFirst => (">", "asc"),
            Order::NewestFirst => ("<", "desc"),
        };
        if let Some(cursor) = q.cursor {
            params.push(Param::Int(cursor));
            sql += &format!(" and seq {cmp} ${}", params.len());
        }
        let limit = clamp_limit(q.limit);
        params.push(Param::Int(limit + 1));
        sql += &format!(" order by seq {dir} limit ${}", params.len());
        let rows = fetch_dynamic(&self.reader, sql, params).await?;
        let items = rows
            .iter()
            .map(rows::event)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(items, limit, |e| e.seq))
    }

    async fn stats(&self) -> StoreResult<Stats> {
        // max(seq) rather than count(*): constant time on a million rows.
        let events_total: Option<i64> = sqlx::query_scalar("select max(seq) from events")
            .fetch_one(&self.reader)
            .await?;
        let checkpoints_pending: i64 =
            sqlx::query_scalar("select count(*) from checkpoints where status = 'pending'")
                .fetch_one(&self.reader)
                .await?;
        Ok(Stats {
            events_total: events_total.unwrap_or(0),
            checkpoints_pending,
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKey> {
        let result = sqlx::query(
            "insert into api_keys (id, name, scope, key_hash, prefix, created_at) values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.scope.as_str())
        .bind(&key.hash_hex)
        .bind(&key.prefix)
        .bind(key.created_at.millis())
        .execute(&self.writer)
        .await;
        match result {
            Ok(_) => Ok(ApiKey {
                id: key.id,
                name: key.name,
                scope: key.scope,
                prefix: key.prefix,
                created_at: key.created_at,
                revoked_at: None,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Duplicate(
                "an active API key with this name exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn find_api_key(&self, hash_hex: &str) -> StoreResult<Option<ApiKey>> {
        let sql = format!(
            "select {API_KEY_COLUMNS} from api_keys where key_hash = $1 and revoked_at is null"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(hash_hex)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let sql = format!("select {API_KEY_COLUMNS} from api_keys order by created_at, id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::api_key).collect()
    }

    async fn revoke_api_key(&self, id_or_name: &str, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query("update api_keys set revoked_at = $1 where (id = $2 or name = $2) and revoked_at is null")
            .bind(now.millis())
            .bind(id_or_name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    fn set_delivery_plan(&self, plan: DeliveryPlan, max_attempts: u32) {
        let settings = Arc::new(OutboxSettings { plan, max_attempts });
        match self.outbox.write() {
            Ok(mut guard) => *guard = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let max = self.planner_max_attempts();
        let mut writer = self.writer.acquire().await?;
        let mut tx = begin_write(&mut writer, self.backend).await?;
        let mut ids = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            ids.push(outbox::insert(&mut tx, d, now, max).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease: Duration,
        max: u32,
        owner: &str,
    ) -> StoreResult<Vec<Delivery>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        outbox::claim(&self.writer, self.backend, now, lease_ms, max, owner).await
    }

    async fn record_attempt(
        &self,
        claimed: &Delivery,
        outcome: AttemptOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut writer = self.writer.acquire().await?;
        let mut tx = begin_write(&mut writer, self.backend).await?;
        let applied = outbox::record(&mut tx, claimed, &outcome, now).await?;
        tx.commit().await?;
        Ok(applied)
    }

    fn deliveries_planned(&self) -> u64 {
        self.planned.load(Ordering::Acquire)
    }

    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>> {
        outbox::next_due(&self.reader).await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<Delivery>> {
        outbox::get(&self.reader, id).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Page<Delivery>> {
        outbox::list(&self.reader, query).await
    }

    async fn retry_delivery(&self, id: &str, now: Timestamp) -> StoreResult<RetryOutcome> {
        outbox::retry(&self.writer, id, now).await
    }

    async fn create_amp_source(&self, source: AmpSource) -> StoreResult<AmpSource> {
        crate::amp::create_source(&self.writer, source).await
    }

    async fn get_amp_source(&self, name: &str) -> StoreResult<Option<AmpSource>> {
        let mut c = self.reader.acquire().await?;
        crate::amp::get_source(&mut c, name).await
    }

    async fn list_amp_sources(&self) -> StoreResult<Vec<AmpSource>> {
        crate::amp::list_sources(&self.reader).await
    }

    async fn remove_amp_source(&self, name: &str) -> StoreResult<bool> {
        crate::amp::remove_source(&self.writer, name).await
    }

    async fn get_amp_origin(&self, checkpoint_id: &str) -> StoreResult<Option<Origin>> {
        let mut c = self.reader.acquire().await?;
        crate::amp::load_origin(&mut c, checkpoint_id).await
    }

    async fn save_amp_execution(&self, execution: &AmpExecution) -> StoreResult<()> {
        crate::amp::save_execution(&self.writer, execution).await
    }

    async fn get_amp_execution(&self, kickoff_id: &str) -> StoreResult<Option<AmpExecution>> {
        let mut c = self.reader.acquire().await?;
        crate::amp::get_execution(&mut c, kickoff_id).await
    }

    async fn list_amp_executions(
        &self,
        status: &str,
        updated_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<AmpExecution>> {
        crate::amp::list_executions(&self.reader, status, updated_before, clamp_limit(limit)).await
    }

    async fn create_subscription(&self, new: NewSubscription) -> StoreResult<Subscription> {
        outbox::create_subscription(&self.writer, new).await
    }

    async fn get_subscription(&self, id: &str) -> StoreResult<Option<Subscription>> {
        outbox::get_subscription(&self.reader, id).await
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        outbox::list_subscriptions(&self.reader).await
    }

    async fn remove_subscription(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        outbox::remove_subscription(&self.writer, id, now).await
    }

    async fn count_admin_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "select count(*) from api_keys where scope = 'admin' and revoked_at is null",
        )
        .fetch_one(&self.reader)
        .await?)
    }
}
