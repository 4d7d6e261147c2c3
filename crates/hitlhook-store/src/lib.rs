//! hitlhook's storage. One [`Store`] trait whose methods are domain verbs, implemented for SQLite
//! (the embedded default) and PostgreSQL (several nodes). Only this crate speaks SQL; the state
//! transitions themselves come from `hitlhook-domain`, so both backends behave identically.

mod amp;
mod batch;
mod model;
mod outbox;
mod reads;
mod rows;
pub mod seed;
mod sql;
mod sqlite_file;
mod sqlite_ingest;
#[cfg(feature = "testing")]
pub mod testing;
mod writes;

use std::sync::Arc;

use async_trait::async_trait;
use std::time::Duration;

use hitlhook_domain::amp::Origin;
use hitlhook_domain::{
    Checkpoint, DecisionRequest, DeliveryPlan, Execution, NewDelivery, Timestamp,
};

pub use model::*;
pub use outbox::OutboxSettings;
pub use sql::{Backend, SqlStore};
pub use sqlite_file::{create_private_dir, sqlite_file_url, sqlite_path};

/// Errors the store reports. Domain refusals are not errors here: they are outcomes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("duplicate: {0}")]
    Duplicate(&'static str),
    #[error("unsupported DATABASE_URL {0:?}: use sqlite://PATH, sqlite:PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error(
        "an in-memory SQLite database cannot be shared by the server's connections: use a file \
         (--data-dir or DATABASE_URL=sqlite:///path/hitlhook.db)"
    )]
    InMemory,
    #[error(
        "the SQLite database {path} cannot be written ({cause}). hitlhook writes the file and \
         creates {path}-wal and {path}-shm beside it: check that this user may write the \
         directory, that its file system is not mounted read-only, and that DATABASE_URL does \
         not say mode=ro"
    )]
    NotWritable { path: String, cause: String },
    /// PostgreSQL could not be reached (the caller's context names the redacted URL).
    #[error("cannot connect: {cause}{}", if hint.is_empty() { String::new() } else { format!(" ({hint})") })]
    Unreachable { cause: String, hint: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Committed, but the disk did not confirm it: a power failure could still lose it.
    #[error(
        "syncing {path} to disk failed ({cause}); the write is not known to be durable: check \
         the disk and the file system"
    )]
    NotDurable { path: String, cause: String },
    #[error("database error")]
    Backend(#[from] sqlx::Error),
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Resolves once a committed write is on disk (see [`Store::ingest_committed`]).
pub type Durable = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<()>> + Send>>;

/// Everything hitlhook persists.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite` or `postgres`), for logs and `/health`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    /// Cheap liveness query for `/ready`.
    async fn ping(&self) -> StoreResult<()>;

    /// Writes a batch of incoming events in ONE transaction (group commit). Each item gets its
    /// own outcome; an item that is refused or fails leaves nothing behind, and never affects the
    /// others. Returns only after the commit is durable.
    async fn ingest(&self, batch: &[IngestItem]) -> StoreResult<Vec<IngestOutcome>> {
        let (outcomes, durable) = self.ingest_committed(batch).await?;
        durable.await?;
        Ok(outcomes)
    }

    /// [`Store::ingest`] in two steps, so a writer can commit the next batch while this one
    /// reaches the disk: returns once the batch is committed, with a future that resolves once
    /// it is durable. Nothing in the batch may be acknowledged before that future resolves.
    async fn ingest_committed(
        &self,
        batch: &[IngestItem],
    ) -> StoreResult<(Vec<IngestOutcome>, Durable)>;

    /// Applies a decision to a checkpoint (first decision wins) with its audit event and the
    /// execution's new state, in one transaction. `source` is the authenticated principal that
    /// made the request (`key:<name>`, `slack`, ...), kept on the audit event.
    async fn decide(
        &self,
        checkpoint_id: &str,
        request: DecisionRequest,
        source: &str,
        now: Timestamp,
    ) -> StoreResult<DecideOutcome>;

    /// Closes every pending checkpoint whose `expires_at` is at or before `now` (applying its
    /// `on_timeout`), at most `limit` per call. Returns the changed checkpoints.
    async fn expire_due(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Checkpoint>>;

    async fn get_checkpoint(&self, id: &str) -> StoreResult<Option<Checkpoint>>;

    /// Lists checkpoints newest first with keyset pagination.
    async fn list_checkpoints(&self, query: &CheckpointQuery) -> StoreResult<Page<Checkpoint>>;

    async fn get_execution(&self, kickoff_id: &str) -> StoreResult<Option<Execution>>;

    /// Lists executions, most recently updated first.
    async fn list_executions(&self, query: &ExecutionQuery) -> StoreResult<Page<Execution>>;

    /// The audit trail in sequence order, optionally for one execution.
    async fn list_events(&self, query: &EventQuery) -> StoreResult<Page<StoredEvent>>;

    /// Counts for `/health`.
    async fn stats(&self) -> StoreResult<Stats>;

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKey>;
    /// Looks up an active (not revoked) key by the SHA-256 hex of the secret.
    async fn find_api_key(&self, hash_hex: &str) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Revokes by id or by name; `false` when no active key matched.
    async fn revoke_api_key(&self, id_or_name: &str, now: Timestamp) -> StoreResult<bool>;
    /// Number of active admin keys (to decide whether a first-run key is needed).
    async fn count_admin_keys(&self) -> StoreResult<i64>;

    /// Sets the channels deliveries are planned for, and the default attempt limit. Every state
    /// change after this writes its deliveries in the same transaction.
    fn set_delivery_plan(&self, plan: DeliveryPlan, max_attempts: u32);

    /// Writes deliveries that follow no state change (a Slack modal, a reply to a click), due
    /// now. Returns their ids.
    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now: Timestamp,
    ) -> StoreResult<Vec<String>>;

    /// Claims up to `max` due deliveries for `owner` with a lease of `lease` (committed before
    /// returning, so the caller may then do network I/O). Each claim counts as an attempt. A row
    /// whose lease ends without a recorded outcome comes due again.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease: Duration,
        max: u32,
        owner: &str,
    ) -> StoreResult<Vec<Delivery>>;

    /// Records the outcome of a claimed attempt; `false` if the lease was lost meanwhile (the
    /// outcome is then ignored). A dead letter also writes a `delivery.dead` event.
    async fn record_attempt(
        &self,
        claimed: &Delivery,
        outcome: AttemptOutcome,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// When the earliest pending delivery is due (leased ones: when their lease ends).
    /// How many deliveries this process has planned with its state changes so far (rolled-back
    /// transactions included: an over-count only costs a look). The delivery worker looks at the
    /// outbox after an event only when this moved, instead of reading it after every commit.
    fn deliveries_planned(&self) -> u64;

    async fn next_delivery_due(&self) -> StoreResult<Option<Timestamp>>;

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<Delivery>>;

    /// Lists deliveries newest first.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Page<Delivery>>;

    /// Makes a finished delivery (dead, delivered or skipped) due now with fresh attempts.
    async fn retry_delivery(&self, id: &str, now: Timestamp) -> StoreResult<RetryOutcome>;

    /// Adds a CrewAI AMP source; `Duplicate` when the name is taken.
    async fn create_amp_source(&self, source: AmpSource) -> StoreResult<AmpSource>;
    async fn get_amp_source(&self, name: &str) -> StoreResult<Option<AmpSource>>;
    async fn list_amp_sources(&self) -> StoreResult<Vec<AmpSource>>;
    /// Deletes a source; `false` when none has that name.
    async fn remove_amp_source(&self, name: &str) -> StoreResult<bool>;
    /// Where an AMP checkpoint came from (`None` for other checkpoints).
    async fn get_amp_origin(&self, checkpoint_id: &str) -> StoreResult<Option<Origin>>;
    /// Records an AMP execution's source and webhook URLs, or its last remote status.
    async fn save_amp_execution(&self, execution: &AmpExecution) -> StoreResult<()>;
    async fn get_amp_execution(&self, kickoff_id: &str) -> StoreResult<Option<AmpExecution>>;
    /// AMP executions whose last known remote status is `status` and that were last updated
    /// before `updated_before`, oldest first (the background reconciler's work list).
    async fn list_amp_executions(
        &self,
        status: &str,
        updated_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<AmpExecution>>;

    async fn create_subscription(&self, new: NewSubscription) -> StoreResult<Subscription>;
    /// A subscription by id, removed ones included (their pending deliveries need to know).
    async fn get_subscription(&self, id: &str) -> StoreResult<Option<Subscription>>;
    /// Active subscriptions.
    async fn list_subscriptions(&self) -> StoreResult<Vec<Subscription>>;
    /// Removes (disables) a subscription; `false` when no active one matched.
    async fn remove_subscription(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
}

/// Opens the store named by a `DATABASE_URL`: `sqlite://path`, `sqlite:path` or `postgres://...`.
/// Migrations are not run here; call [`Store::migrate`].
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    Ok(Arc::new(SqlStore::open(url).await?))
}

/// The URL with any password replaced by `***`, for logs and `hitlhook config`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
