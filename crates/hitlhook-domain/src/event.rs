//! Incoming events: the seed's event types and the envelope every webhook body is read into.
//! Parsing is strict about types (a string must be a string) and lenient about presence (unknown
//! fields and unknown event types are kept, never rejected).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::action::Action;
use crate::checkpoint::CheckpointSpec;
use crate::delivery::{MAX_RECIPIENTS, check_email};
use crate::time::Timestamp;

/// The event types hitlhook understands; anything else is stored as [`EventKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    TaskStarted,
    TaskCompleted,
    TaskFailed,
    StepStarted,
    StepCompleted,
    CrewStarted,
    CrewCompleted,
    CrewFailed,
    /// The run was stopped before it finished (AMP reports it `REVOKED`).
    CrewStopped,
    CheckpointRequired,
    /// Written by hitlhook itself when a checkpoint is decided, expires or is cancelled.
    CheckpointDecided,
    CheckpointExpired,
    CheckpointCancelled,
    Other(String),
}

impl EventKind {
    /// Reads a type name: the seed's dotted names, and CrewAI's event-bus names (as AMP streams
    /// them) for the same moments, so `crew_kickoff_completed` completes an execution too.
    #[must_use]
    pub fn parse(name: &str) -> Self {
        match name {
            "task.started" | "task_started" => EventKind::TaskStarted,
            "task.completed" | "task_completed" => EventKind::TaskCompleted,
            "task.failed" | "task_failed" => EventKind::TaskFailed,
            "step.started" => EventKind::StepStarted,
            "step.completed" => EventKind::StepCompleted,
            "crew.started" | "crew_kickoff_started" => EventKind::CrewStarted,
            "crew.completed" | "crew_kickoff_completed" => EventKind::CrewCompleted,
            "crew.failed" | "crew_kickoff_failed" => EventKind::CrewFailed,
            "crew.stopped" => EventKind::CrewStopped,
            "checkpoint.required" => EventKind::CheckpointRequired,
            "checkpoint.decided" => EventKind::CheckpointDecided,
            "checkpoint.expired" => EventKind::CheckpointExpired,
            "checkpoint.cancelled" => EventKind::CheckpointCancelled,
            other => EventKind::Other(other.to_owned()),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::TaskStarted => "task.started",
            EventKind::TaskCompleted => "task.completed",
            EventKind::TaskFailed => "task.failed",
            EventKind::StepStarted => "step.started",
            EventKind::StepCompleted => "step.completed",
            EventKind::CrewStarted => "crew.started",
            EventKind::CrewCompleted => "crew.completed",
            EventKind::CrewFailed => "crew.failed",
            EventKind::CrewStopped => "crew.stopped",
            EventKind::CheckpointRequired => "checkpoint.required",
            EventKind::CheckpointDecided => "checkpoint.decided",
            EventKind::CheckpointExpired => "checkpoint.expired",
            EventKind::CheckpointCancelled => "checkpoint.cancelled",
            EventKind::Other(name) => name,
        }
    }

    /// Events only hitlhook may write; a sender using these names is refused so the audit trail
    /// cannot be forged.
    #[must_use]
    pub fn is_reserved(&self) -> bool {
        match self {
            EventKind::CheckpointDecided
            | EventKind::CheckpointExpired
            | EventKind::CheckpointCancelled => true,
            // delivery.dead and any later delivery.* events are hitlhook's own too.
            EventKind::Other(name) => name.starts_with("delivery."),
            _ => false,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's identity for idempotency: the `webhook-id` header, else the body's `event_id`, else
/// a hash of the body. The prefix keeps the three spaces apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventIdentity(pub String);

impl EventIdentity {
    #[must_use]
    pub fn from_webhook_id(id: &str) -> Self {
        Self(format!("wh:{id}"))
    }
    #[must_use]
    pub fn from_event_id(id: &str) -> Self {
        Self(format!("ev:{id}"))
    }
    #[must_use]
    pub fn from_body_hash(hex: &str) -> Self {
        Self(format!("sha256:{hex}"))
    }
}

/// Why a body could not be read as an event. `Syntax` is answered 400, `Schema` 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Schema { path: String, message: String },
    /// Nested deeper than [`MAX_JSON_DEPTH`]: refused before anything is parsed or stored, so no
    /// reader of the stored JSON (the inbox, the SDKs) has to recurse that deep.
    #[error("JSON nested deeper than {limit} levels; flatten the context")]
    TooDeep { limit: usize },
}

/// The deepest nesting of arrays and objects accepted in an event body (the body itself is
/// level 1).
pub const MAX_JSON_DEPTH: usize = 64;

/// Longest id (kickoff, event, checkpoint) accepted, in bytes; as checkpoint labels.
pub const MAX_ID_LEN: usize = crate::checkpoint::MAX_LABEL_LEN;

/// Refuses JSON nested deeper than `limit`. A plain scan, so hostile depth costs no recursion
/// (serde_json's `RawValue` skips its own recursion limit when it captures a value).
pub fn check_depth(body: &[u8], limit: usize) -> Result<(), EnvelopeError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(EnvelopeError::TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks an id that is stored in its own column and used in URLs: 1 to [`MAX_ID_LEN`] bytes,
/// no control characters (PostgreSQL cannot store NUL, and such an id could not be fetched).
pub fn check_id(path: &str, value: &str) -> Result<(), EnvelopeError> {
    // The same rules as a checkpoint's labels (`check_label`), so an id that one event may
    // carry, every event may.
    if value.trim().is_empty() || value.len() > MAX_ID_LEN {
        return Err(schema(
            path,
            format!("must be 1 to {MAX_ID_LEN} bytes, not blank"),
        ));
    }
    if value.chars().any(crate::checkpoint::is_forbidden_in_label) {
        return Err(schema(
            path,
            "must not contain control characters or bidirectional overrides",
        ));
    }
    Ok(())
}

/// serde_json's message without its position (reported separately) and without Rust type names
/// ("expected struct Wire" means nothing to a sender).
#[must_use]
pub fn json_message(e: &serde_json::Error) -> String {
    let message = strip_position(&e.to_string());
    match message.find("expected struct ") {
        Some(i) => format!("{}expected a JSON object", &message[..i]),
        None => message,
    }
}

/// Whether `e`, reported as a syntax error, is really a wrong JSON type in a well-formed body:
/// serde_json answers a number, boolean, null, array or object where a unit enum (an action, a
/// scope) is expected with "expected value", a syntax-class error.
#[must_use]
pub fn is_wrong_type(body: &[u8], e: &serde_json::Error) -> bool {
    !e.is_data() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// The message for a wrong JSON type where one of a set of strings is expected.
pub const EXPECTED_ONE_OF_THE_STRINGS: &str =
    "wrong JSON type: expected a string, one of the documented values";

/// One incoming event, parsed from the raw body without copying the large parts.
#[derive(Debug, Clone)]
pub struct EventEnvelope {
    /// What the event means to hitlhook.
    pub kind: EventKind,
    /// The type name exactly as sent (stored; `kind` may be an alias of it).
    pub event_type: String,
    pub event_id: Option<String>,
    pub kickoff_id: Option<String>,
    /// The sender's own timestamp, if it gave one.
    pub occurred_at: Option<Timestamp>,
    /// Present for `checkpoint.required`.
    pub checkpoint: Option<CheckpointSpec>,
    /// The existing checkpoint an event that creates none is about (an AMP escalation), so it
    /// shows on that checkpoint's trail.
    pub checkpoint_ref: Option<String>,
    /// Whom to tell about `checkpoint_ref` while it is pending (an escalation's new assignee).
    pub escalate_to: Vec<String>,
    /// Where a decision on `checkpoint_ref` is answered from now on, while it is pending: an
    /// AMP flow escalation's `callback_url` (AMP may send a new single-use token with it).
    pub escalated_callback: Option<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kickoff_id: Option<Cow<'a, str>>,
    // AMP's names for the three above (its event stream sends `type`, `id`, `execution_id`).
    // Read only where the canonical field is absent: beside it they are the sender's own data,
    // of any JSON type, not a duplicate.
    #[serde(borrow, rename = "type")]
    type_alias: Option<&'a RawValue>,
    #[serde(borrow, rename = "id")]
    id_alias: Option<&'a RawValue>,
    #[serde(borrow, rename = "execution_id")]
    execution_id_alias: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    checkpoint_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    checkpoint_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    allowed_actions: Option<Vec<Action>>,
    #[serde(borrow)]
    expires_at: Option<Cow<'a, str>>,
    expires_in: Option<i64>,
    on_timeout: Option<Action>,
    recipients: Option<Vec<String>>,
}

/// The text of an alias field that stands in for an absent canonical one.
fn alias_text<'a>(
    raw: Option<&'a RawValue>,
    path: &str,
) -> Result<Option<Cow<'a, str>>, EnvelopeError> {
    raw.map(|raw| {
        serde_json::from_str::<String>(raw.get())
            .map(Cow::Owned)
            .map_err(|e| schema(path, json_message(&e)))
    })
    .transpose()
}

/// A body that is not JSON, with where it stops being JSON.
fn syntax_error(inner: &serde_json::Error) -> EnvelopeError {
    EnvelopeError::Syntax {
        line: inner.line(),
        column: inner.column(),
        message: json_message(inner),
    }
}

pub(crate) fn schema(path: &str, message: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Schema {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl EventEnvelope {
    /// Reads an event from the exact bytes that were signed.
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        // serde reads a struct from an array too; an event must be an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(schema("body", "must be a JSON object, not an array"));
        }
        check_depth(body, MAX_JSON_DEPTH)?;
        let de = &mut serde_json::Deserializer::from_slice(body);
        let wire: Wire<'_> = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let field = if path == "." { "body" } else { &path };
            if inner.is_data() {
                schema(field, json_message(&inner))
            } else if is_wrong_type(body, &inner) {
                schema(field, EXPECTED_ONE_OF_THE_STRINGS)
            } else {
                syntax_error(&inner)
            }
        })?;
        // One JSON value and nothing after it: trailing text would be stored and then served
        // as a payload that does not parse.
        de.end().map_err(|e| syntax_error(&e))?;
        let mut wire = wire;
        if wire.event_type.is_none() {
            wire.event_type = alias_text(wire.type_alias, "type")?;
            // `id` is the event's identity only in AMP's shape (`type`, not `event_type`): beside
            // `event_type` it is the sender's own data (a task's id, say), and taking it as the
            // identity would merge different events into one "redelivery".
            if wire.event_id.is_none() {
                wire.event_id = alias_text(wire.id_alias, "id")?;
            }
        }
        if wire.kickoff_id.is_none() {
            wire.kickoff_id = alias_text(wire.execution_id_alias, "execution_id")?;
        }
        for (path, value) in [
            ("kickoff_id", &wire.kickoff_id),
            ("event_id", &wire.event_id),
            ("checkpoint_id", &wire.checkpoint_id),
            ("checkpoint_name", &wire.checkpoint_name),
        ] {
            if let Some(value) = value {
                check_id(path, value)?;
            }
        }
        let event_type = wire.event_type.ok_or_else(|| {
            schema(
                "event_type",
                "is required, as \"event_type\" or \"type\" (e.g. \"checkpoint.required\")",
            )
        })?;
        if event_type.is_empty()
            || event_type.len() > 128
            || event_type
                .chars()
                .any(crate::checkpoint::is_forbidden_in_label)
        {
            return Err(schema(
                "event_type",
                "must be 1 to 128 printable characters",
            ));
        }
        let kind = EventKind::parse(&event_type);
        if kind.is_reserved() {
            return Err(schema(
                "event_type",
                format!("{kind} is written by hitlhook itself and cannot be sent"),
            ));
        }
        let occurred_at = match wire.timestamp {
            None => None,
            Some(text) => Some(Timestamp::parse_rfc3339(&text).ok_or_else(|| {
                schema(
                    "timestamp",
                    "must be an RFC 3339 time such as 2026-01-31T12:00:00Z",
                )
            })?),
        };
        let checkpoint = if kind == EventKind::CheckpointRequired {
            let name = wire
                .checkpoint_name
                .ok_or_else(|| schema("checkpoint_name", "is required for checkpoint.required"))?;
            let expires_at = match wire.expires_at {
                None => None,
                Some(text) => Some(
                    Timestamp::parse_rfc3339(&text)
                        .ok_or_else(|| {
                            schema(
                                "expires_at",
                                "must be an RFC 3339 time such as 2026-01-31T12:00:00Z (without an offset it is read as UTC)",
                            )
                        })?,
                ),
            };
            let context_json = match wire.context {
                Some(raw)
                    if !raw.get().starts_with('{')
                        && !raw.get().starts_with('[')
                        && raw.get() != "null" =>
                {
                    return Err(schema("context", "must be a JSON object or array"));
                }
                Some(raw) if raw.get() != "null" => raw.get().to_owned(),
                _ => "{}".to_owned(),
            };
            let recipients = wire.recipients.unwrap_or_default();
            if recipients.len() > MAX_RECIPIENTS {
                return Err(schema(
                    "recipients",
                    format!("at most {MAX_RECIPIENTS} addresses"),
                ));
            }
            for (i, address) in recipients.iter().enumerate() {
                check_email(address).map_err(|e| schema(&format!("recipients[{i}]"), e))?;
            }
            Some(CheckpointSpec {
                id: wire.checkpoint_id.map(Cow::into_owned),
                name: name.into_owned(),
                kickoff_id: wire.kickoff_id.clone().map(Cow::into_owned),
                context_json,
                allowed_actions: wire.allowed_actions,
                expires_at,
                expires_in_seconds: wire.expires_in,
                on_timeout: wire.on_timeout,
                recipients,
                origin: None,
            })
        } else {
            None
        };
        Ok(EventEnvelope {
            kind,
            event_type: event_type.into_owned(),
            event_id: wire.event_id.map(Cow::into_owned),
            kickoff_id: wire.kickoff_id.map(Cow::into_owned),
            occurred_at,
            checkpoint,
            checkpoint_ref: None,
            escalate_to: Vec::new(),
            escalated_callback: None,
        })
    }
}

/// One event of a CrewAI AMP event-stream batch.
#[derive(Debug, Clone)]
pub struct BatchEvent {
    pub envelope: EventEnvelope,
    /// The event's own JSON text, stored verbatim.
    pub payload: String,
}

/// A request body: one event, or an AMP event-stream batch `{"events": [...]}`.
#[derive(Debug, Clone)]
pub enum Incoming {
    Single(Box<EventEnvelope>),
    Batch(Batch),
}

/// An event-stream batch in stored order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Its events, without the `repeated` ones whose `id` came earlier in it.
    pub events: Vec<BatchEvent>,
    pub repeated: usize,
}

#[derive(Deserialize)]
struct BatchWire<'a> {
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
    event_type: Option<serde::de::IgnoredAny>,
    #[serde(rename = "type")]
    type_name: Option<serde::de::IgnoredAny>,
}

/// CrewAI's per-emitter counter (`data.emission_sequence`), which orders events that share a
/// timestamp.
#[derive(Deserialize)]
struct SequenceWire {
    data: Option<SequenceData>,
}

#[derive(Deserialize)]
struct SequenceData {
    emission_sequence: Option<serde_json::Value>,
}

fn emission_sequence(raw: &RawValue) -> Option<i64> {
    let wire: SequenceWire = serde_json::from_str(raw.get()).ok()?;
    wire.data?.emission_sequence?.as_i64()
}

/// Most events accepted in one batch request.
pub const MAX_BATCH_EVENTS: usize = 1000;

impl Incoming {
    /// Reads a body as a batch when it is an object with an `events` array and no event type of
    /// its own, otherwise as one event. Batch events are deduplicated by `id` (the first wins)
    /// and ordered by `timestamp` (AMP does not guarantee delivery order); events without a
    /// timestamp keep their place after the timestamped ones.
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        check_depth(body, MAX_JSON_DEPTH)?;
        let probe: Option<BatchWire<'_>> = serde_json::from_slice(body).ok();
        let Some(BatchWire {
            events: Some(events),
            event_type: None,
            type_name: None,
        }) = probe
        else {
            return EventEnvelope::parse(body).map(|e| Incoming::Single(Box::new(e)));
        };
        Batch::read(&events).map(Incoming::Batch)
    }
}

impl Batch {
    /// Reads a body that must be a batch (AMP's event-stream endpoint); see [`Incoming::parse`].
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        check_depth(body, MAX_JSON_DEPTH)?;
        match serde_json::from_slice::<BatchWire<'_>>(body) {
            Ok(BatchWire {
                events: Some(events),
                ..
            }) => Batch::read(&events),
            // Not JSON at all: said with its position, as for any body.
            Err(e) if !e.is_data() => Err(syntax_error(&e)),
            _ => Err(schema(
                "events",
                "must be an array: event streams send {\"events\": [...]}",
            )),
        }
    }

    fn read(events: &[&RawValue]) -> Result<Self, EnvelopeError> {
        if events.is_empty() {
            return Err(schema("events", "must hold at least one event"));
        }
        if events.len() > MAX_BATCH_EVENTS {
            return Err(schema(
                "events",
                format!("at most {MAX_BATCH_EVENTS} events per request"),
            ));
        }
        let mut parsed: Vec<(BatchEvent, Option<i64>)> = Vec::with_capacity(events.len());
        let mut ids = std::collections::HashSet::with_capacity(events.len());
        for (i, raw) in events.iter().enumerate() {
            let envelope = EventEnvelope::parse(raw.get().as_bytes()).map_err(|e| match e {
                EnvelopeError::Schema { path, message } => {
                    schema(&format!("events[{i}].{path}"), message)
                }
                EnvelopeError::Syntax { message, .. } => schema(&format!("events[{i}]"), message),
                too_deep @ EnvelopeError::TooDeep { .. } => too_deep,
            })?;
            let duplicate = envelope
                .event_id
                .as_ref()
                .is_some_and(|id| !ids.insert(id.clone()));
            if !duplicate {
                let sequence = emission_sequence(raw);
                parsed.push((
                    BatchEvent {
                        envelope,
                        payload: raw.get().to_owned(),
                    },
                    sequence,
                ));
            }
        }
        // By timestamp, then CrewAI's emission sequence; the sort is stable, so equal or
        // missing keys keep the sender's order.
        parsed.sort_by_key(|(e, sequence)| {
            (
                e.envelope.occurred_at.map_or(i64::MAX, Timestamp::millis),
                sequence.unwrap_or(i64::MAX),
            )
        });
        Ok(Batch {
            repeated: events.len() - parsed.len(),
            events: parsed.into_iter().map(|(e, _)| e).collect(),
        })
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_checkpoint_body() {
        let body = br#"{"event_type": "checkpoint.required", "checkpoint_id": "test-123",
            "checkpoint_name": "test_checkpoint", "context": {"a": [1, 2]}}"#;
        let env = EventEnvelope::parse(body).expect("parses");
        assert_eq!(env.kind, EventKind::CheckpointRequired);
        let spec = env.checkpoint.expect("spec");
        assert_eq!(spec.id.as_deref(), Some("test-123"));
        assert_eq!(spec.context_json, r#"{"a": [1, 2]}"#);
        assert_eq!(spec.kickoff_id, None);
    }

    #[test]
    fn unknown_types_and_fields_are_kept() {
        let env = EventEnvelope::parse(
            br#"{"type":"llm_call_started","execution_id":"k","data":{"x":1}}"#,
        )
        .expect("parses");
        assert_eq!(env.kind, EventKind::Other("llm_call_started".into()));
        assert_eq!(env.kickoff_id.as_deref(), Some("k"));
    }

    #[test]
    fn error_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "syntax"),
            (b"not json", "syntax"),
            (b"", "syntax"),
            (b"[]", "body"),
            (b"{}", "event_type"),
            (br#"{"event_type": 5}"#, "event_type"),
            (br#"{"event_type": ""}"#, "event_type"),
            (br#"{"event_type": "checkpoint.decided"}"#, "event_type"),
            (br#"{"event_type": "delivery.dead"}"#, "event_type"),
            (br#"{"event_type": "checkpoint.required"}"#, "checkpoint_name"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "context": "text"}"#, "context"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "allowed_actions": ["approve"]}"#, "allowed_actions[0]"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "expires_at": "soon"}"#, "expires_at"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "expires_in": "60"}"#, "expires_in"),
            (br#"{"event_type": "task.started", "timestamp": "noon"}"#, "timestamp"),
            (br#"{"event_type": "task.started", "kickoff_id": {"a": 1}}"#, "kickoff_id"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "recipients": "a@b.c"}"#, "recipients"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "recipients": ["a@b.c", "nope"]}"#, "recipients[1]"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "recipients": ["a@b.c"]}"#, "ok"),
            (br#"{"event_type": "x"} trailing"#, "syntax"),
            (br#"{"event_type": "a"}{"event_type": "b"}"#, "syntax"),
            (br#"{"event_type": "x", "kickoff_id": "a\u0000b"}"#, "kickoff_id"),
            (br#"{"event_type": "x", "kickoff_id": ""}"#, "kickoff_id"),
            (br#"{"event_type": "x", "kickoff_id": "  "}"#, "kickoff_id"),
            (br#"{"event_type": "x", "event_id": "a\nb"}"#, "event_id"),
            (br#"{"event_type": "x", "kickoff_id": "invoice\u202egpj.exe"}"#, "kickoff_id"),
            // Beside the canonical field, an alias name is the sender's own data.
            (br#"{"event_type": "task.completed", "type": {"of": "research"}}"#, "ok"),
            (br#"{"event_type": "task.completed", "id": 7, "event_id": "e-1"}"#, "ok"),
            (br#"{"event_type": "x", "kickoff_id": "k", "execution_id": "other"}"#, "ok"),
            (br#"{"type": 5}"#, "type"),
            (br#"{"type": "x", "execution_id": ["k"]}"#, "execution_id"),
            (br#"{"event_type": "x", "kickoff_id": "a\u2067b"}"#, "kickoff_id"),
            // A wrong type where an action is expected: valid JSON, so not a syntax error.
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "allowed_actions": [1]}"#, "allowed_actions[0]"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "on_timeout": 5}"#, "on_timeout"),
            (br#"{"event_type": "checkpoint.required", "checkpoint_name": "n", "on_timeout": {}}"#, "on_timeout"),
            (br#"{"event_type": "x", "kickoff_id": "\u0915\u094d\u200d\u0937"}"#, "ok"),
            (br#"{"event_type": "x", "context": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#, "too deep"),
            (br#"{"event_type": "x", "note": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"}"#, "ok"),
        ];
        for (body, want) in cases {
            let got = match EventEnvelope::parse(body) {
                Err(EnvelopeError::Syntax { .. }) => "syntax".to_owned(),
                Err(EnvelopeError::Schema { path, .. }) => path,
                Err(EnvelopeError::TooDeep { .. }) => "too deep".to_owned(),
                Ok(_) => "ok".to_owned(),
            };
            assert_eq!(&got, want, "body {}", String::from_utf8_lossy(body));
        }
    }

    /// The ids of a batch's events, in the order they are stored.
    fn batch_ids(body: &[u8]) -> Vec<String> {
        let Ok(Incoming::Batch(Batch { events, .. })) = Incoming::parse(body) else {
            panic!("a batch")
        };
        events
            .iter()
            .map(|e| e.envelope.event_id.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn amp_batches_are_deduplicated_and_ordered() {
        let body = br#"{"events": [
            {"id": "b", "execution_id": "k", "timestamp": "2025-02-16T10:58:45+00:00", "type": "task_completed", "data": {}},
            {"id": "a", "execution_id": "k", "timestamp": "2025-02-16T10:58:44.965Z", "type": "crew_kickoff_started", "data": {"x": 1}},
            {"id": "b", "execution_id": "k", "timestamp": "2025-02-16T10:58:46", "type": "task_completed", "data": {}},
            {"id": "c", "execution_id": "k", "timestamp": "2025-02-16T10:58:46", "type": "my_custom_event", "data": {}}
        ]}"#;
        assert_eq!(batch_ids(body), ["a", "b", "c"]);
        let Ok(Incoming::Batch(Batch { events, .. })) = Incoming::parse(body) else {
            panic!("a batch")
        };
        assert_eq!(events[0].envelope.kind, EventKind::CrewStarted);
        assert_eq!(events[0].envelope.event_type, "crew_kickoff_started");
        assert_eq!(events[0].envelope.kickoff_id.as_deref(), Some("k"));
        assert_eq!(
            events[2].envelope.kind,
            EventKind::Other("my_custom_event".into())
        );
        assert!(events[0].payload.contains(r#""x": 1"#));
    }

    #[test]
    fn a_body_that_must_be_a_batch_says_what_it_lacks() {
        for body in [
            &br#"{"events": null}"#[..],
            br#"{"events": {}}"#,
            br#"{"type": "x"}"#,
            b"[]",
        ] {
            match Batch::parse(body) {
                Err(EnvelopeError::Schema { path, .. }) => assert_eq!(path, "events"),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            Batch::parse(b"{\"events\": ["),
            Err(EnvelopeError::Syntax { .. })
        ));
        assert!(matches!(
            Batch::parse(b"{\"events\": [{\"id\": \"\xff\"}]}"),
            Err(EnvelopeError::Syntax { .. })
        ));
        let batch = Batch::parse(br#"{"events": [{"id": "a", "type": "t"}]}"#).expect("batch");
        assert_eq!((batch.events.len(), batch.repeated), (1, 0));
    }

    #[test]
    fn events_sharing_a_timestamp_follow_their_emission_sequence() {
        let body = br#"{"events": [
            {"id": "3", "execution_id": "k", "timestamp": "2025-02-16T10:58:45Z", "type": "task_completed", "data": {"emission_sequence": 3}},
            {"id": "1", "execution_id": "k", "timestamp": "2025-02-16T10:58:45Z", "type": "task_started", "data": {"emission_sequence": 1}},
            {"id": "x", "execution_id": "k", "timestamp": "2025-02-16T10:58:45Z", "type": "note", "data": {}},
            {"id": "2", "execution_id": "k", "timestamp": "2025-02-16T10:58:45Z", "type": "agent_execution_started", "data": {"emission_sequence": 2}}
        ]}"#;
        assert_eq!(batch_ids(body), ["1", "2", "3", "x"]);
    }

    #[test]
    fn canonical_fields_win_over_amp_aliases() {
        let cases: [(&[u8], [Option<&str>; 3]); 4] = [
            (
                br#"{"event_type": "task.completed", "type": "research", "event_id": "e-1",
                     "id": "t-1", "kickoff_id": "k-1", "execution_id": "x-1"}"#,
                [Some("task.completed"), Some("e-1"), Some("k-1")],
            ),
            (
                br#"{"type": "task.started", "id": "a-1", "execution_id": "x-1"}"#,
                [Some("task.started"), Some("a-1"), Some("x-1")],
            ),
            // Beside `event_type`, `id` is the sender's (two events of one task share it).
            (
                br#"{"event_type": "task.started", "id": "task-1", "execution_id": "x-1"}"#,
                [Some("task.started"), None, Some("x-1")],
            ),
            (
                br#"{"type": "task.started", "event_id": "e-2", "id": "a-2"}"#,
                [Some("task.started"), Some("e-2"), None],
            ),
        ];
        for (body, [event_type, event_id, kickoff_id]) in cases {
            let env = EventEnvelope::parse(body).expect("parses");
            assert_eq!(Some(env.event_type.as_str()), event_type);
            assert_eq!(env.event_id.as_deref(), event_id);
            assert_eq!(env.kickoff_id.as_deref(), kickoff_id);
        }
    }

    #[test]
    fn batch_errors_name_the_event() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"events": []}"#, "events"),
            (br#"{"events": [{"id": "a"}]}"#, "events[0].event_type"),
            (
                br#"{"events": [{"type": "x", "timestamp": "noon"}]}"#,
                "events[0].timestamp",
            ),
        ];
        for (body, want) in cases {
            match Incoming::parse(body) {
                Err(EnvelopeError::Schema { path, .. }) => assert_eq!(&path, want),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            Incoming::parse(br#"{"event_type": "x", "events": []}"#),
            Ok(Incoming::Single(_))
        ));
    }

    #[test]
    fn depth_is_counted_outside_strings() {
        assert_eq!(check_depth(b"[[[]]]", 3), Ok(()));
        assert_eq!(
            check_depth(b"[[[[]]]]", 3),
            Err(EnvelopeError::TooDeep { limit: 3 })
        );
        assert_eq!(check_depth(br#"["[[[[\"[[[["]"#, 1), Ok(()));
        let hostile = "[".repeat(100_000);
        assert!(check_depth(hostile.as_bytes(), MAX_JSON_DEPTH).is_err());
    }

    #[test]
    fn messages_name_no_rust_types() {
        let err = EventEnvelope::parse(br#""str""#).expect_err("a string");
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        assert!(!err.to_string().contains("Wire"), "{err}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = EventEnvelope::parse(b"{\n  \"event_type\": \"x\",,\n}").expect_err("bad");
        assert!(
            matches!(err, EnvelopeError::Syntax { line: 2, .. }),
            "{err:?}"
        );
    }
}
