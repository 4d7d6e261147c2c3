//! The values that cross the store boundary: what goes in, what comes out.

use hitlhook_domain::amp::{AuthMode, EmitMap, KickoffHooks};
use hitlhook_domain::{
    Checkpoint, CheckpointStatus, DecideError, DeliveryKind, DeliveryState, EventEnvelope,
    EventIdentity, ExecutionStatus, Scope, SpecError, Timestamp,
};

/// One authenticated incoming event, ready to be written.
#[derive(Debug, Clone)]
pub struct IngestItem {
    pub identity: EventIdentity,
    pub envelope: EventEnvelope,
    /// The body exactly as received (already known to be JSON).
    pub payload: String,
    /// Who sent it, for the audit trail: `signature`, `key:<name>`, ...
    pub source: String,
    pub received_at: Timestamp,
}

/// What the sender is told about a stored event; identical on every redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub identity: String,
    pub event_type: String,
    pub kickoff_id: Option<String>,
    pub checkpoint_id: Option<String>,
}

/// The per-item result of [`crate::Store::ingest`].
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// Newly stored. `created` is the new checkpoint, `closed` the checkpoints this event closed
    /// (an execution that ended cancels its pending checkpoints).
    Accepted {
        receipt: Receipt,
        created: Option<Box<Checkpoint>>,
        closed: Vec<Checkpoint>,
    },
    /// Seen before: nothing changed.
    Duplicate(Receipt),
    /// Refused: nothing was written for this item.
    Rejected(IngestRejection),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestRejection {
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(SpecError),
    #[error("checkpoint {0:?} already exists with a different name, execution or context")]
    CheckpointConflict(String),
    #[error("could not store this event: {0}")]
    Failed(String),
}

/// The result of [`crate::Store::decide`].
#[derive(Debug, Clone)]
pub enum DecideOutcome {
    /// Decided now. `cancelled` are the execution's other checkpoints closed by a `stop`.
    Decided {
        checkpoint: Checkpoint,
        seq: i64,
        cancelled: Vec<Checkpoint>,
    },
    /// The same decision was already recorded.
    Unchanged(Checkpoint),
    /// Refused by the state machine; carries the checkpoint as it is.
    Refused {
        checkpoint: Checkpoint,
        error: DecideError,
    },
    NotFound,
}

/// Listing order by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    OldestFirst,
    NewestFirst,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointQuery {
    pub status: Option<CheckpointStatus>,
    pub kickoff_id: Option<String>,
    pub order: Order,
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionQuery {
    pub status: Option<ExecutionStatus>,
    pub limit: u32,
    pub cursor: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub kickoff_id: Option<String>,
    pub checkpoint_id: Option<String>,
    /// Oldest first (the default, for replay) or newest first (for "latest events").
    pub order: Order,
    /// Only events after this sequence number (oldest first) or before it (newest first).
    pub cursor: Option<i64>,
    pub limit: u32,
}

/// A page of results and the cursor of the next one, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

/// An event from the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub identity: String,
    pub event_type: String,
    pub kickoff_id: Option<String>,
    pub checkpoint_id: Option<String>,
    pub source: String,
    pub received_at: Timestamp,
    pub occurred_at: Option<Timestamp>,
    /// JSON text.
    pub payload: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events_total: i64,
    pub checkpoints_pending: i64,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// SHA-256 hex of the secret; the secret itself is never stored.
    pub hash_hex: String,
    /// The first characters of the secret, to recognise it in listings.
    pub prefix: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// One row of the delivery outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    /// Also the idempotency key: the same on every attempt (`webhook-id`, email `Message-ID`).
    pub id: String,
    pub kind: DeliveryKind,
    pub checkpoint_id: Option<String>,
    pub kickoff_id: Option<String>,
    pub event_type: String,
    pub target: String,
    /// JSON text.
    pub payload: String,
    pub state: DeliveryState,
    /// Attempts started so far (a claim counts as an attempt, even if the worker then crashed).
    pub attempts: i64,
    pub max_attempts: i64,
    /// When the next attempt is due; while leased, when the lease ends.
    pub next_at: Timestamp,
    /// The worker holding the lease, while one does.
    pub lease_owner: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// JSON the receiver answered that later deliveries need (a Slack message's channel and ts).
    pub result: Option<String>,
}

/// How an attempt ended, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: Option<u16>,
        result: Option<String>,
    },
    /// Failed; retried at `next_at`, or a dead letter when `next_at` is `None`.
    Failed {
        status: Option<u16>,
        error: String,
        next_at: Option<Timestamp>,
    },
    /// Not sent, because it no longer made sense.
    Skipped { reason: String },
    /// The receiver said the question was answered elsewhere: final, not retried.
    ResolvedElsewhere { status: Option<u16>, detail: String },
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    pub checkpoint_id: Option<String>,
    pub kind: Option<DeliveryKind>,
    pub limit: u32,
    /// Newest first; the `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// The result of [`crate::Store::retry_delivery`].
#[derive(Debug, Clone)]
pub enum RetryOutcome {
    /// Due again now, with a fresh set of attempts.
    Revived(Delivery),
    /// Still pending: nothing to revive.
    Pending(Delivery),
    NotFound,
}

#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub created_at: Timestamp,
}

/// A webhook subscriber. The secret is kept because every delivery is signed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// A CrewAI AMP source: how its inbound requests authenticate, and how to reach its deployment.
/// Secrets that are only verified are hashes; those hitlhook must re-send are kept as given.
#[derive(Clone, PartialEq, Eq)]
pub struct AmpSource {
    pub name: String,
    pub auth: AuthMode,
    /// Bearer mode: SHA-256 hex of the token.
    pub token_hash: Option<String>,
    pub basic_username: Option<String>,
    /// Basic mode: SHA-256 hex of the password.
    pub password_hash: Option<String>,
    /// HMAC mode: the signing secret.
    pub signing_secret: Option<String>,
    /// The unguessable token of the URLs hitlhook gives AMP (legacy webhooks, kickoffs).
    pub url_token: String,
    pub deployment_url: Option<String>,
    pub deployment_token: Option<String>,
    pub emit_map: EmitMap,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for AmpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material, even hashes.
        f.debug_struct("AmpSource")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("basic_username", &self.basic_username)
            .field("deployment_url", &self.deployment_url)
            .field("emit_map", &self.emit_map)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// An AMP execution hitlhook started or resumes: its source, the webhook URLs every `/resume`
/// re-sends, and the last status AMP reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmpExecution {
    pub kickoff_id: String,
    pub source: String,
    pub hooks: KickoffHooks,
    pub remote_status: Option<String>,
    /// JSON: the last `/status` answer.
    pub remote_detail: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
