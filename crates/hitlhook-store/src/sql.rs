//! The one implementation of [`Store`], over sqlx's `Any` driver. Both backends run the same SQL
//! (`$n` placeholders, `on conflict`, `returning`), so there is a single code path to review and
//! the contract tests prove it on each. What differs — connection setup, migrations, pool shape —
//! is decided in [`SqlStore::open`]. One exception, for speed: SQLite's common ingest batches are
//! written by `sqlite_ingest`, which declines the rest back to this path. The steps transactions
//! are made of live in `writes`, the listing queries in `reads`, SQLite's file and connection
//! setup in `sqlite_file`.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use hitlhook_domain::{
    Checkpoint, Decided, DecisionRequest, DeliveryPlan, Execution, NewDelivery, Timestamp,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Acquire, AnyPool, AssertSqlSafe, Executor};
use tracing::warn;

use crate::batch;
use crate::model::*;
use crate::outbox::{self, OutboxSettings, Planner};
use crate::reads::{self, clamp_limit};
use crate::rows::{self, API_KEY_COLUMNS, CHECKPOINT_COLUMNS};
use crate::sqlite_file::{
    SQLITE_INGEST_PRAGMAS, SQLITE_PRAGMAS, SQLITE_WRITER_PRAGMAS, opens_read_write, preflight,
    sqlite_url,
};
use crate::sqlite_ingest::SqliteIngest;
use crate::writes::{Step, apply_close, begin_write, ingest_one, load_checkpoint, load_execution};
use crate::{Durable, Store, StoreError, StoreResult};
use hitlhook_domain::amp::Origin;

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
    /// Reached through `writer()`, which refuses once SQLite's WAL could not be synced.
    write_pool: AnyPool,
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
                write_pool: writer,
                reader,
                outbox: RwLock::default(),
                planned: Arc::default(),
                sqlite_ingest,
                thread_batches: AtomicU64::new(0),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres_preflight(url).await?;
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            Ok(Self {
                backend: Backend::Postgres,
                write_pool: pool.clone(),
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

    /// For a write committed through the general path: PostgreSQL's commit and SQLite's
    /// `synchronous=FULL` are durable on return, but a batch of SQLite's ingest thread committed
    /// just before may still wait for its sync, and this write may answer for it (a redelivery
    /// found in the store writes nothing at all): wait for a sync that covers it too.
    fn durable_after_commit(&self) -> Durable {
        match &self.sqlite_ingest {
            Some(thread) => Box::pin(thread.synced_after_now().wait()),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    /// Fails once a sync of SQLite's WAL has failed: nothing written since is known to be on
    /// disk, so every write (through `writer()`) and the health checks say so until restart.
    fn refuse_after_failed_sync(&self) -> StoreResult<()> {
        match self.sqlite_ingest.as_ref().and_then(SqliteIngest::failure) {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// The pool every write goes through (one connection on SQLite: the process's write lock).
    fn writer(&self) -> StoreResult<&AnyPool> {
        self.refuse_after_failed_sync()?;
        Ok(&self.write_pool)
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

/// Connects once before the pool does: the pool retries a failing connect until its 30 s
/// timeout and then says only "pool timed out", hiding "connection refused" or "database does
/// not exist". Says what to check.
async fn postgres_preflight(url: &str) -> StoreResult<()> {
    let unreachable = |cause: String, hint: &str| StoreError::Unreachable {
        cause,
        hint: hint.to_owned(),
    };
    let connect = <sqlx::AnyConnection as sqlx::Connection>::connect(url);
    let connection = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Err(_) => {
            return Err(unreachable(
                "no answer within 10 s".into(),
                "check the host and port, and that no firewall drops the connection",
            ));
        }
        Ok(Err(sqlx::Error::Database(db))) => {
            let hint = match db.code().as_deref() {
                Some("3D000") => "create it first (createdb, or psql -c 'create database ...')",
                Some("28P01" | "28000") => "check the user and password in DATABASE_URL",
                _ => "",
            };
            return Err(unreachable(db.message().to_owned(), hint));
        }
        Ok(Err(sqlx::Error::Io(e))) => {
            return Err(unreachable(
                e.to_string(),
                "is PostgreSQL running and listening on that host and port?",
            ));
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string(), "")),
        Ok(Ok(connection)) => connection,
    };
    sqlx::Connection::close(connection).await?;
    Ok(())
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
        migrator.run(&self.write_pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.refuse_after_failed_sync()?;
        sqlx::query("select 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn ingest_committed(
        &self,
        batch: &[IngestItem],
    ) -> StoreResult<(Vec<IngestOutcome>, Durable)> {
        // Held throughout: on SQLite the one writer connection is also the lock that keeps the
        // ingest thread's writes from overlapping with every other write.
        let mut writer = self.writer()?.acquire().await?;
        if let Some(thread) = &self.sqlite_ingest {
            match thread.write(batch, self.outbox_settings()).await {
                Ok(Some(written)) => {
                    self.thread_batches.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("hitlhook_ingest_batches_total", "path" => "sqlite_thread")
                        .increment(1);
                    // The delivery worker hears of the batch's deliveries once it is durable.
                    let planned = Arc::clone(&self.planned);
                    let durable = async move {
                        written.synced.wait().await?;
                        planned.fetch_add(written.deliveries, Ordering::Release);
                        Ok(())
                    };
                    return Ok((written.outcomes, Box::pin(durable)));
                }
                Ok(None) => {}
                Err(error) => {
                    warn!(error = ?error, events = batch.len(), "SQLite ingest thread failed; writing through the general path");
                }
            }
        }
        // Operators see how often SQLite's batches leave the fast thread (redeliveries, AMP,
        // cascades) and whether it runs at all.
        metrics::counter!("hitlhook_ingest_batches_total", "path" => "general").increment(1);
        let mut tx = begin_write(&mut writer, self.backend).await?;
        let mut planner = self.planner();
        match batch::ingest_fast(&mut tx, self.backend, &mut planner, batch).await {
            Ok(outcomes) => {
                tx.commit().await?;
                planner.committed();
                return Ok((outcomes, self.durable_after_commit()));
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
        Ok((outcomes, self.durable_after_commit()))
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
            let mut writer = self.writer()?.acquire().await?;
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
        let mut writer = self.writer()?.acquire().await?;
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
        reads::list_checkpoints(&self.reader, q).await
    }

    async fn get_execution(&self, kickoff_id: &str) -> StoreResult<Option<Execution>> {
        let mut c = self.reader.acquire().await?;
        load_execution(&mut c, kickoff_id).await
    }

    async fn list_executions(&self, q: &ExecutionQuery) -> StoreResult<Page<Execution>> {
        reads::list_executions(&self.reader, q).await
    }

    async fn list_events(&self, q: &EventQuery) -> StoreResult<Page<StoredEvent>> {
        reads::list_events(&self.reader, q).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        // `/health` says unhealthy while writes are refused.
        self.refuse_after_failed_sync()?;
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
        .execute(self.writer()?)
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
        // One key: the one with this id, else the active one with this name (a name may not
        // look like an id, but keys named so before that rule may exist).
        let done = sqlx::query(
            "update api_keys set revoked_at = $1 where revoked_at is null and id = coalesce(\
             (select id from api_keys where id = $2 and revoked_at is null), \
             (select id from api_keys where name = $2 and revoked_at is null))",
        )
        .bind(now.millis())
        .bind(id_or_name)
        .execute(self.writer()?)
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
        let mut writer = self.writer()?.acquire().await?;
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
        outbox::claim(self.writer()?, self.backend, now, lease_ms, max, owner).await
    }

    async fn record_attempt(
        &self,
        claimed: &Delivery,
        outcome: AttemptOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut writer = self.writer()?.acquire().await?;
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
        outbox::retry(self.writer()?, id, now).await
    }

    async fn create_amp_source(&self, source: AmpSource) -> StoreResult<AmpSource> {
        crate::amp::create_source(self.writer()?, source).await
    }

    async fn get_amp_source(&self, name: &str) -> StoreResult<Option<AmpSource>> {
        let mut c = self.reader.acquire().await?;
        crate::amp::get_source(&mut c, name).await
    }

    async fn list_amp_sources(&self) -> StoreResult<Vec<AmpSource>> {
        crate::amp::list_sources(&self.reader).await
    }

    async fn remove_amp_source(&self, name: &str) -> StoreResult<bool> {
        crate::amp::remove_source(self.writer()?, name).await
    }

    async fn get_amp_origin(&self, checkpoint_id: &str) -> StoreResult<Option<Origin>> {
        let mut c = self.reader.acquire().await?;
        crate::amp::load_origin(&mut c, checkpoint_id).await
    }

    async fn save_amp_execution(&self, execution: &AmpExecution) -> StoreResult<()> {
        crate::amp::save_execution(self.writer()?, execution).await
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
        outbox::create_subscription(self.writer()?, new).await
    }

    async fn get_subscription(&self, id: &str) -> StoreResult<Option<Subscription>> {
        outbox::get_subscription(&self.reader, id).await
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        outbox::list_subscriptions(&self.reader).await
    }

    async fn remove_subscription(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        outbox::remove_subscription(self.writer()?, id, now).await
    }

    async fn count_admin_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "select count(*) from api_keys where scope = 'admin' and revoked_at is null",
        )
        .fetch_one(&self.reader)
        .await?)
    }
}
