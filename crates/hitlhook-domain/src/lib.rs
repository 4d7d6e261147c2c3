//! The pure domain of hitlhook: what a checkpoint, a decision, an execution and an event are, and
//! how they change. Nothing here performs I/O or reads the clock: callers pass `now` in, so every
//! transition is deterministic and tested with tables.

pub mod access;
pub mod action;
pub mod amp;
pub mod checkpoint;
pub mod delivery;
pub mod event;
pub mod execution;
pub mod time;

pub use access::Scope;
pub use action::{Action, ParseActionError};
pub use checkpoint::{
    Checkpoint, CheckpointSpec, CheckpointStatus, DecideError, Decided, Decision, DecisionRequest,
    SpecError,
};
pub use delivery::{
    DeliveryKind, DeliveryPlan, DeliveryState, NewDelivery, Occurrence, RetryPolicy,
    SubscriptionFilter,
};
pub use event::{
    Batch, BatchEvent, EnvelopeError, EventEnvelope, EventIdentity, EventKind, Incoming,
};
pub use execution::{CheckpointClosed, Effects, Execution, ExecutionStatus};
pub use time::Timestamp;
