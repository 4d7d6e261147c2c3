//! Deliveries: the notifications and outbound calls a state change causes (Slack messages and
//! their edits, emails, signed webhooks to subscribers). This module decides *what* must be sent
//! for each occurrence; the store writes the result in the same transaction as the change, and a
//! worker sends it later. Nothing here sends anything.

pub mod retry;
pub mod summary;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::action::Action;
use crate::checkpoint::{Checkpoint, CheckpointStatus, Decision};
use crate::execution::{Execution, ExecutionStatus};
use crate::time::Timestamp;

pub use retry::RetryPolicy;

/// What a delivery does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// Post the checkpoint to Slack (bot token `chat.postMessage`, else the incoming webhook).
    SlackMessage,
    /// Edit the posted message after the checkpoint closed (`chat.update`): decision, who, no
    /// buttons.
    SlackUpdate,
    /// Answer a Slack interaction through its `response_url` (e.g. "already decided by X").
    SlackRespond,
    /// Open the feedback modal for Revise (`views.open` with the click's `trigger_id`).
    SlackModal,
    /// One email to one recipient, with that recipient's decision links.
    Email,
    /// One signed webhook to one subscriber.
    Webhook,
    /// Resume a paused AMP crew: `POST {deployment}/resume`.
    AmpResume,
    /// Stop an AMP crew run: `POST {deployment}/stop/{kickoff_id}`.
    AmpStop,
    /// Answer an AMP flow HITL request: `POST {callback_url}`.
    AmpFeedback,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 9] = [
        DeliveryKind::SlackMessage,
        DeliveryKind::SlackUpdate,
        DeliveryKind::SlackRespond,
        DeliveryKind::SlackModal,
        DeliveryKind::Email,
        DeliveryKind::Webhook,
        DeliveryKind::AmpResume,
        DeliveryKind::AmpStop,
        DeliveryKind::AmpFeedback,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::SlackMessage => "slack.message",
            DeliveryKind::SlackUpdate => "slack.update",
            DeliveryKind::SlackRespond => "slack.respond",
            DeliveryKind::SlackModal => "slack.modal",
            DeliveryKind::Email => "email",
            DeliveryKind::Webhook => "webhook",
            DeliveryKind::AmpResume => "amp.resume",
            DeliveryKind::AmpStop => "amp.stop",
            DeliveryKind::AmpFeedback => "amp.feedback",
        }
    }

    /// Parses the stored form; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted under a lease).
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Every attempt failed, or the failure was permanent; the last error is kept.
    Dead,
    /// Not sent because it no longer made sense (e.g. an email for a checkpoint already decided).
    Skipped,
    /// The receiver said the question was already answered elsewhere (an AMP run no longer
    /// waiting for input, a flow request answered in AMP): final, never retried.
    ResolvedElsewhere,
}

impl DeliveryState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Skipped => "skipped",
            DeliveryState::ResolvedElsewhere => "resolved_elsewhere",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            "skipped" => Some(DeliveryState::Skipped),
            "resolved_elsewhere" => Some(DeliveryState::ResolvedElsewhere),
            _ => None,
        }
    }
}

/// A delivery to be written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub kind: DeliveryKind,
    pub checkpoint_id: Option<String>,
    pub kickoff_id: Option<String>,
    /// The occurrence that caused it (`checkpoint.created`, ...).
    pub event_type: String,
    /// Whom it goes to: an email address, a subscription id, `slack`, a `response_url`.
    pub target: String,
    /// JSON: what the sender needs beyond the current checkpoint (webhook body, modal trigger).
    pub payload: String,
    /// Overrides the configured maximum (e.g. a modal trigger is useless after 3 s).
    pub max_attempts: Option<u32>,
}

/// A subscriber as the planner sees it: an id and the event types it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub id: String,
    /// Exact names (`checkpoint.decided`), prefixes (`checkpoint.*`) or `*`.
    pub event_types: Vec<String>,
}

impl SubscriptionFilter {
    /// True when this subscriber wants `event_type`.
    #[must_use]
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|f| {
            f == "*"
                || f == event_type
                || f.strip_suffix(".*").is_some_and(|prefix| {
                    event_type
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.'))
                })
        })
    }
}

/// The event types hitlhook sends to subscribers.
pub const OUTBOUND_EVENT_TYPES: [&str; 6] = [
    "checkpoint.created",
    "checkpoint.escalated",
    "checkpoint.decided",
    "checkpoint.expired",
    "checkpoint.cancelled",
    "execution.updated",
];

/// Checks an event filter given by an operator: known names, `family.*` or `*`.
pub fn check_event_filter(filter: &str) -> Result<(), String> {
    let known_family = |p: &str| {
        OUTBOUND_EVENT_TYPES
            .iter()
            .any(|t| t.starts_with(&format!("{p}.")))
    };
    if filter == "*"
        || OUTBOUND_EVENT_TYPES.contains(&filter)
        || filter.strip_suffix(".*").is_some_and(known_family)
    {
        Ok(())
    } else {
        Err(format!(
            "unknown event type {filter:?}: use one of {}, a family such as checkpoint.*, or *",
            OUTBOUND_EVENT_TYPES.join(", ")
        ))
    }
}

/// Something that happened, as far as deliveries are concerned.
#[derive(Debug, Clone, Copy)]
pub enum Occurrence<'a> {
    /// A checkpoint was created; `recipients` are the emails the sender asked for (may be empty).
    CheckpointCreated {
        checkpoint: &'a Checkpoint,
        recipients: &'a [String],
    },
    /// A checkpoint was decided, expired or cancelled.
    CheckpointClosed { checkpoint: &'a Checkpoint },
    /// A pending checkpoint was escalated to `recipients` (emails; an AMP flow escalation's new
    /// assignee).
    CheckpointEscalated {
        checkpoint: &'a Checkpoint,
        recipients: &'a [String],
    },
    /// An execution's status changed (`previous` is `None` for a new execution).
    ExecutionChanged {
        execution: &'a Execution,
        previous: Option<ExecutionStatus>,
    },
}

impl Occurrence<'_> {
    /// The outbound event type.
    #[must_use]
    pub fn event_type(&self) -> &'static str {
        match self {
            Occurrence::CheckpointCreated { .. } => "checkpoint.created",
            Occurrence::CheckpointEscalated { .. } => "checkpoint.escalated",
            Occurrence::CheckpointClosed { checkpoint } => match checkpoint.status {
                CheckpointStatus::Decided => "checkpoint.decided",
                CheckpointStatus::Cancelled => "checkpoint.cancelled",
                CheckpointStatus::Expired | CheckpointStatus::Pending => "checkpoint.expired",
            },
            Occurrence::ExecutionChanged { .. } => "execution.updated",
        }
    }
}

/// Which channels are configured: what the planner may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPlan {
    /// Post new checkpoints to Slack (a bot token + channel, or an incoming webhook).
    pub slack_post: bool,
    /// Edit the Slack message when a checkpoint closes (needs a bot token: `chat.update`).
    pub slack_edit: bool,
    /// Email is configured (an SMTP host and a from address).
    pub email: bool,
    /// Recipients for checkpoints that name none.
    pub default_recipients: Vec<String>,
}

impl DeliveryPlan {
    /// True when no channel is configured, so only subscribers can cause deliveries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.slack_post && !self.slack_edit && !self.email
    }

    /// The deliveries `occurrence` causes, at `now`, given the active subscribers.
    #[must_use]
    pub fn plan(
        &self,
        occurrence: &Occurrence<'_>,
        subscribers: &[SubscriptionFilter],
        now: Timestamp,
    ) -> Vec<NewDelivery> {
        let event_type = occurrence.event_type();
        let (checkpoint_id, kickoff_id) = match occurrence {
            Occurrence::CheckpointCreated { checkpoint, .. }
            | Occurrence::CheckpointEscalated { checkpoint, .. }
            | Occurrence::CheckpointClosed { checkpoint } => {
                (Some(checkpoint.id.clone()), checkpoint.kickoff_id.clone())
            }
            Occurrence::ExecutionChanged { execution, .. } => {
                (None, Some(execution.kickoff_id.clone()))
            }
        };
        let new = |kind, target: String, payload: String| NewDelivery {
            kind,
            checkpoint_id: checkpoint_id.clone(),
            kickoff_id: kickoff_id.clone(),
            event_type: event_type.to_owned(),
            target,
            payload,
            max_attempts: None,
        };
        // One email per address, however it is capitalised.
        let emails = |list: &[String]| {
            let mut seen: Vec<String> = Vec::new();
            let mut out = Vec::new();
            for to in list {
                let key = to.to_ascii_lowercase();
                if !seen.contains(&key) {
                    seen.push(key);
                    out.push(new(DeliveryKind::Email, to.clone(), "{}".into()));
                }
            }
            out
        };
        let mut out = Vec::new();
        match occurrence {
            Occurrence::CheckpointCreated { recipients, .. } => {
                if self.slack_post {
                    out.push(new(DeliveryKind::SlackMessage, "slack".into(), "{}".into()));
                }
                if self.email {
                    let list = if recipients.is_empty() {
                        &self.default_recipients[..]
                    } else {
                        recipients
                    };
                    out.extend(emails(list));
                }
            }
            Occurrence::CheckpointEscalated { recipients, .. } => {
                if self.email {
                    out.extend(emails(recipients));
                }
            }
            Occurrence::CheckpointClosed { .. } => {
                if self.slack_edit {
                    out.push(new(DeliveryKind::SlackUpdate, "slack".into(), "{}".into()));
                }
            }
            Occurrence::ExecutionChanged { .. } => {}
        }
        let interested: Vec<&SubscriptionFilter> =
            subscribers.iter().filter(|s| s.wants(event_type)).collect();
        if !interested.is_empty() {
            let body = webhook_body(occurrence, now);
            for sub in interested {
                out.push(new(DeliveryKind::Webhook, sub.id.clone(), body.clone()));
            }
        }
        out
    }
}

/// A checkpoint as subscribers see it: the same field names as the HTTP API, the context as
/// the sender wrote it.
#[derive(Serialize)]
struct CheckpointData<'a> {
    checkpoint_id: &'a str,
    checkpoint_name: &'a str,
    kickoff_id: Option<&'a str>,
    context: &'a RawValue,
    allowed_actions: &'a [Action],
    status: &'static str,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    decision: Option<&'a Decision>,
    closed_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ExecutionData<'a> {
    #[serde(flatten)]
    execution: &'a Execution,
    previous_status: Option<ExecutionStatus>,
}

/// The Standard Webhooks body (`{type, timestamp, data}`) for an occurrence.
#[must_use]
pub fn webhook_body(occurrence: &Occurrence<'_>, now: Timestamp) -> String {
    let event_type = occurrence.event_type();
    let data = match occurrence {
        Occurrence::CheckpointCreated { checkpoint, .. }
        | Occurrence::CheckpointEscalated { checkpoint, .. }
        | Occurrence::CheckpointClosed { checkpoint } => {
            let fallback;
            let context: &RawValue =
                match serde_json::from_str::<&RawValue>(&checkpoint.context_json) {
                    Ok(raw) => raw,
                    Err(_) => {
                        fallback = RawValue::from_string("null".to_owned()).ok();
                        match &fallback {
                            Some(raw) => raw,
                            None => return String::from("{}"),
                        }
                    }
                };
            serde_json::to_value(CheckpointData {
                checkpoint_id: &checkpoint.id,
                checkpoint_name: &checkpoint.name,
                kickoff_id: checkpoint.kickoff_id.as_deref(),
                context,
                allowed_actions: &checkpoint.allowed_actions,
                status: checkpoint.status.as_str(),
                created_at: checkpoint.created_at,
                expires_at: checkpoint.expires_at,
                decision: checkpoint.decision.as_ref(),
                closed_reason: checkpoint.closed_reason.as_deref(),
            })
        }
        Occurrence::ExecutionChanged {
            execution,
            previous,
        } => serde_json::to_value(ExecutionData {
            execution,
            previous_status: *previous,
        }),
    };
    serde_json::json!({
        "type": event_type,
        "timestamp": now,
        "data": data.unwrap_or(serde_json::Value::Null),
    })
    .to_string()
}

/// Most recipients one checkpoint may name.
pub const MAX_RECIPIENTS: usize = 50;

/// A plausible email address: one `@`, a local part and a dotted-or-plain domain, no spaces or
/// control characters, at most 254 bytes. The SMTP server has the final word.
pub fn check_email(address: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{address:?} is not an email address: {why}"));
    if address.len() > 254 {
        return bad("longer than 254 bytes");
    }
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
    {
        return bad("contains spaces, control characters or <>,;\"");
    }
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => bad("expected local@domain"),
    }
}

#[cfg(test)]
mod tests;
