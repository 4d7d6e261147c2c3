//! The JSON shapes of the API (`XxxIn` in, `XxxOut` out), kept apart from domain types so the wire
//! format can stay stable while the domain evolves. Field names follow the seed README.

use hitlhook_domain::{Action, Checkpoint, Decision, Execution, Timestamp};
use hitlhook_store::{ApiKey, Receipt, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Stored JSON text, emitted verbatim (never re-serialised).
fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap_or_else(|_| {
        RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!())
    })
}

#[derive(Debug, Serialize)]
pub struct CheckpointOut {
    pub checkpoint_id: String,
    pub checkpoint_name: String,
    pub kickoff_id: Option<String>,
    pub context: Box<RawValue>,
    pub allowed_actions: Vec<Action>,
    pub status: &'static str,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub on_timeout: Option<Action>,
    pub decision: Option<Decision>,
    pub closed_reason: Option<String>,
}

impl From<&Checkpoint> for CheckpointOut {
    fn from(cp: &Checkpoint) -> Self {
        CheckpointOut {
            checkpoint_id: cp.id.clone(),
            checkpoint_name: cp.name.clone(),
            kickoff_id: cp.kickoff_id.clone(),
            context: raw(&cp.context_json),
            allowed_actions: cp.allowed_actions.clone(),
            status: cp.status.as_str(),
            created_at: cp.created_at,
            expires_at: cp.expires_at,
            on_timeout: cp.on_timeout,
            decision: cp.decision.clone(),
            closed_reason: cp.closed_reason.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventOut {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub kickoff_id: Option<String>,
    pub checkpoint_id: Option<String>,
    pub source: String,
    pub received_at: Timestamp,
    pub occurred_at: Option<Timestamp>,
    pub payload: Box<RawValue>,
}

impl From<&StoredEvent> for EventOut {
    fn from(e: &StoredEvent) -> Self {
        EventOut {
            seq: e.seq,
            event_id: e.identity.clone(),
            event_type: e.event_type.clone(),
            kickoff_id: e.kickoff_id.clone(),
            checkpoint_id: e.checkpoint_id.clone(),
            source: e.source.clone(),
            received_at: e.received_at,
            occurred_at: e.occurred_at,
            payload: raw(&e.payload),
        }
    }
}

/// The answer to an ingested event; identical on every redelivery.
#[derive(Debug, Serialize)]
pub struct ReceiptOut {
    pub status: &'static str,
    pub event_id: String,
    pub seq: i64,
    pub event_type: String,
    pub kickoff_id: Option<String>,
    pub checkpoint_id: Option<String>,
}

impl From<&Receipt> for ReceiptOut {
    fn from(r: &Receipt) -> Self {
        ReceiptOut {
            status: "accepted",
            event_id: r.identity.clone(),
            seq: r.seq,
            event_type: r.event_type.clone(),
            kickoff_id: r.kickoff_id.clone(),
            checkpoint_id: r.checkpoint_id.clone(),
        }
    }
}

/// An execution with its checkpoints and latest events.
#[derive(Debug, Serialize)]
pub struct ExecutionStatusOut {
    pub execution: Execution,
    pub checkpoints: Vec<CheckpointOut>,
    pub recent_events: Vec<EventOut>,
}

/// A page of items and the cursor for the next one (`null` on the last page).
#[derive(Debug, Serialize)]
pub struct PageOut<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The seed's feedback body (`POST /webhook/feedback`): a decision naming its checkpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackIn {
    pub checkpoint_id: String,
    pub action: Action,
    #[serde(default)]
    pub feedback: Option<String>,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
}

impl FeedbackIn {
    #[must_use]
    pub fn split(self) -> (String, DecisionIn) {
        let decision = DecisionIn {
            action: self.action,
            feedback: self.feedback,
            decided_by: self.decided_by,
            channel: self.channel,
        };
        (self.checkpoint_id, decision)
    }
}

/// A decision (`POST /v1/checkpoints/{id}/decision`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionIn {
    pub action: Action,
    #[serde(default)]
    pub feedback: Option<String>,
    /// Who decided, when a trusted integration decides for a person. Default: the API key.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// Where the decision was made. Default: `api`.
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyIn {
    pub name: String,
    pub scope: hitlhook_domain::Scope,
}

#[derive(Debug, Serialize)]
pub struct KeyOut {
    pub id: String,
    pub name: String,
    pub scope: hitlhook_domain::Scope,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Present only in the answer to creation: the key itself, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<&ApiKey> for KeyOut {
    fn from(k: &ApiKey) -> Self {
        KeyOut {
            id: k.id.clone(),
            name: k.name.clone(),
            scope: k.scope,
            prefix: k.prefix.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}
