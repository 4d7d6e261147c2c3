//! AMP's inbound payloads read into hitlhook events: crew human-input requests, flow HITL
//! requests (the nested `{"event", "request", ...}` shape and the older flat `event_type` one),
//! and the legacy per-URL task, step and crew webhooks. Field names are AMP's; unknown fields
//! are ignored, wrong types are refused naming the field.

use serde_json::{Map, Value, json};

use crate::action::Action;
use crate::amp::{Origin, OriginKind};
use crate::checkpoint::CheckpointSpec;
use crate::delivery::check_email;
use crate::event::{
    EnvelopeError, EventEnvelope, EventKind, MAX_ID_LEN, MAX_JSON_DEPTH, check_depth, check_id,
    schema, strip_position,
};

/// How an AMP event is identified for idempotency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A stable id AMP gave (a flow request id and its event name).
    Id(String),
    /// No id: the exact body is the identity (an identical redelivery is a duplicate).
    Body,
}

/// One AMP request read as a hitlhook event.
#[derive(Debug, Clone)]
pub struct AmpEvent {
    pub envelope: EventEnvelope,
    pub key: Key,
    /// The body to store in place of the one received (secrets taken out); `None`: as received.
    pub stored_body: Option<String>,
}

/// The legacy per-URL webhooks of a kickoff (`taskWebhookUrl`, `stepWebhookUrl`, `crewWebhookUrl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyHook {
    Task,
    Step,
    Crew,
}

impl LegacyHook {
    #[must_use]
    pub fn path(self) -> &'static str {
        match self {
            LegacyHook::Task => "task",
            LegacyHook::Step => "step",
            LegacyHook::Crew => "crew",
        }
    }
}

/// The two flow HITL notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEvent {
    NewRequest,
    Escalation,
}

/// A flow HITL request, from either documented shape.
#[derive(Debug, Clone)]
pub struct FlowRequest {
    pub event: FlowEvent,
    pub request_id: String,
    pub checkpoint_id: String,
    /// The checkpoint it asks for (the same for `new_request` and `escalation` of one request).
    pub spec: CheckpointSpec,
    pub kickoff_id: Option<String>,
    /// The body as it is stored and shown in the audit trail: the callback's token and any
    /// `response_token` removed (they answer the request; reviewers read events).
    pub stored_body: String,
}

/// Marks where a secret was removed from a stored body.
pub const REDACTED: &str = "[redacted]";

/// The body without its answering secrets: every `callback_url` keeps only its scheme and host
/// (the token may be in the query, the path or the fragment), and every `response_token` is
/// replaced, wherever they are in the body.
fn redacted(map: Map<String, Value>) -> String {
    fn scrub(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match (key.as_str(), &*v) {
                        ("callback_url", Value::String(url)) => {
                            *v = Value::String(origin_only(url));
                        }
                        ("response_token", t) if !t.is_null() => {
                            *v = Value::String(REDACTED.into());
                        }
                        _ => scrub(v),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    let mut value = Value::Object(map);
    scrub(&mut value);
    value.to_string()
}

/// `https://host[:port]/[redacted]` for a URL, `[redacted]` for anything else.
fn origin_only(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo before '@' could be a secret too.
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}/{REDACTED}")
}

/// Event type stored for an escalation of a request that already has its checkpoint.
pub const ESCALATION_EVENT: &str = "amp.flow_escalation";
/// Event type stored for a `new_request` that arrives after its checkpoint exists with other
/// content (its escalation came first and asked).
pub const LATE_REQUEST_EVENT: &str = "amp.flow_new_request";

/// A flow request's checkpoint id is this and the request id.
const FLOW_CHECKPOINT_PREFIX: &str = "amp-flow-";

fn object(body: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    check_depth(body, MAX_JSON_DEPTH)?;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            // Values of these bodies end up in columns of their own (ids, origin, deployment);
            // PostgreSQL cannot store NUL, so it is refused anywhere rather than tracked per field.
            match map.iter().find_map(|(k, v)| nul_path(v, k)) {
                Some(path) => Err(schema(&path, "must not contain NUL (\\u0000) characters")),
                None => Ok(map),
            }
        }
        Ok(_) => Err(schema("body", "must be a JSON object")),
        Err(e) => Err(EnvelopeError::Syntax {
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        }),
    }
}

/// The path of the first string below `value` (at `path`) that holds NUL.
fn nul_path(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_path(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(format!("{path}.{k}"))
            } else {
                nul_path(v, &format!("{path}.{k}"))
            }
        }),
        _ => None,
    }
}

/// An optional string field: absent and `null` are `None`, another type is refused.
fn text(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>, EnvelopeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(schema(&format!("{path}{key}"), "must be a string")),
    }
}

fn first_text(
    map: &Map<String, Value>,
    path: &str,
    keys: &[&str],
) -> Result<Option<String>, EnvelopeError> {
    // An empty spelling does not hide a later one (`"execution_id": ""` with a `kickoff_id`).
    for key in keys {
        if let Some(v) = text(map, path, key)?.filter(|v| !v.trim().is_empty()) {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// A required id: present, and usable as a stored id (see [`check_id`]).
fn required(value: Option<String>, field: &str) -> Result<String, EnvelopeError> {
    match value {
        Some(v) if !v.trim().is_empty() => {
            check_id(field, &v)?;
            Ok(v)
        }
        _ => Err(schema(field, "is required")),
    }
}

fn envelope(kind: EventKind, kickoff_id: Option<String>) -> EventEnvelope {
    EventEnvelope {
        event_type: kind.as_str().to_owned(),
        kind,
        event_id: None,
        kickoff_id,
        occurred_at: None,
        checkpoint: None,
        checkpoint_ref: None,
        escalate_to: Vec::new(),
        escalated_callback: None,
    }
}

/// A crew `humanInputWebhook` notification: a checkpoint for the execution's task, with the
/// task output as context. AMP's exact JSON is undocumented, so `execution_id` or `kickoff_id`,
/// and `output`, `task_output` or `result`, are all read.
pub fn human_input(source: &str, body: &[u8]) -> Result<AmpEvent, EnvelopeError> {
    let map = object(body)?;
    let execution = required(
        first_text(&map, "", &["execution_id", "kickoff_id"])?,
        "execution_id",
    )?;
    let task = required(first_text(&map, "", &["task_id"])?, "task_id")?;
    let output = ["output", "task_output", "result"]
        .iter()
        .find_map(|k| map.get(*k).filter(|v| !v.is_null()))
        .cloned()
        .unwrap_or(Value::Null);
    let context = json!({"task_id": task, "execution_id": execution, "task_output": output});
    let spec = CheckpointSpec {
        name: task.clone(),
        kickoff_id: Some(execution.clone()),
        context_json: context.to_string(),
        origin: Some(Origin {
            source: source.to_owned(),
            kind: OriginKind::Crew,
            execution_id: Some(execution.clone()),
            task_id: Some(task),
            request_id: None,
            callback_url: None,
            emit_options: Vec::new(),
            default_outcome: None,
            assignee: None,
        }),
        ..CheckpointSpec::default()
    };
    let mut env = envelope(EventKind::CheckpointRequired, Some(execution));
    env.checkpoint = Some(spec);
    Ok(AmpEvent {
        envelope: env,
        key: Key::Body,
        stored_body: None,
    })
}

/// What a flow HITL webhook asks for.
#[derive(Debug, Clone)]
pub enum FlowHook {
    /// A request (`new_request`) or its escalation.
    Request(FlowRequest),
    /// Any other event name (one AMP added later, a response made elsewhere...): recorded as
    /// `amp.flow_<name>` on the execution's trail and the request's checkpoint, never refused,
    /// since AMP does not resend a refused post.
    Notification(AmpEvent),
}

/// A flow HITL webhook: `{"event", "request": {...}, "deployment", "callback_url",
/// "assigned_to_email"}`, or the flat variant with `event_type` and the request's fields at the
/// top level.
pub fn flow_hook(source: &str, body: &[u8]) -> Result<FlowHook, EnvelopeError> {
    let map = object(body)?;
    let nested = map.contains_key("request");
    let (event_field, event_name) = if nested {
        ("event", text(&map, "", "event")?)
    } else {
        ("event_type", text(&map, "", "event_type")?)
    };
    let event = match event_name.as_deref() {
        Some("new_request") => FlowEvent::NewRequest,
        Some("escalation") => FlowEvent::Escalation,
        Some(other) => return notification(event_field, other, map, nested),
        None => {
            return Err(schema(
                event_field,
                "is required (new_request, escalation or another flow HITL event name)",
            ));
        }
    };
    flow_request(source, map, nested, event).map(FlowHook::Request)
}

/// An event name hitlhook does not act on, kept with its request's ids.
fn notification(
    event_field: &str,
    name: &str,
    map: Map<String, Value>,
    nested: bool,
) -> Result<FlowHook, EnvelopeError> {
    let event_type = format!("amp.flow_{name}");
    check_id(event_field, &event_type)?;
    let request = match map.get("request") {
        Some(Value::Object(r)) if nested => r,
        Some(_) if nested => return Err(schema("request", "must be an object")),
        _ => &map,
    };
    let path = if nested { "request." } else { "" };
    let ids = |key: &str| -> Result<Option<String>, EnvelopeError> {
        let value = text(request, path, key)?;
        if let Some(v) = &value {
            check_id(&format!("{path}{key}"), v)?;
        }
        Ok(value)
    };
    let request_id = ids("id")?;
    let kickoff_id = ids("flow_execution_id")?.or(ids("flow_id")?);
    let mut env = envelope(EventKind::Other(event_type), kickoff_id);
    env.checkpoint_ref = request_id
        .map(|id| format!("{FLOW_CHECKPOINT_PREFIX}{id}"))
        .filter(|id| id.len() <= MAX_ID_LEN);
    Ok(FlowHook::Notification(AmpEvent {
        envelope: env,
        key: Key::Body,
        stored_body: Some(redacted(map)),
    }))
}

fn flow_request(
    source: &str,
    map: Map<String, Value>,
    nested: bool,
    event: FlowEvent,
) -> Result<FlowRequest, EnvelopeError> {
    let (request, path) = if nested {
        match map.get("request") {
            Some(Value::Object(r)) => (r, "request."),
            _ => return Err(schema("request", "must be an object")),
        }
    } else {
        (&map, "")
    };
    let request_id = required(text(request, path, "id")?, &format!("{path}id"))?;
    // The checkpoint id is `amp-flow-{id}`, itself an id of at most MAX_ID_LEN bytes.
    let most = MAX_ID_LEN - FLOW_CHECKPOINT_PREFIX.len();
    if request_id.len() > most {
        return Err(schema(
            &format!("{path}id"),
            format!("must be at most {most} bytes (it names the checkpoint amp-flow-<id>)"),
        ));
    }
    if map
        .get("callback_url")
        .is_some_and(|v| !v.is_string() && !v.is_null())
    {
        return Err(schema("callback_url", "must be a string"));
    }
    let callback_url = required(text(&map, "", "callback_url")?, "callback_url")?;
    let method = text(request, path, "method_name")?.unwrap_or_else(|| "human_feedback".into());
    if method.trim().is_empty() {
        return Err(schema(&format!("{path}method_name"), "must not be empty"));
    }
    let emit_key = if nested { "emit_options" } else { "emit" };
    let emit_options: Vec<String> = match request.get(emit_key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| schema(&format!("{path}{emit_key}"), "must be a list of strings"))?,
        Some(_) => {
            return Err(schema(
                &format!("{path}{emit_key}"),
                "must be a list of strings",
            ));
        }
    };
    // An empty option would be sent as empty feedback, which AMP refuses.
    if emit_options.iter().any(|o| o.trim().is_empty()) {
        return Err(schema(
            &format!("{path}{emit_key}"),
            "options must not be empty",
        ));
    }
    let default_outcome = text(request, path, "default_outcome")?;
    if let Some(default) = &default_outcome {
        if default.trim().is_empty() {
            return Err(schema(
                &format!("{path}default_outcome"),
                "must not be empty",
            ));
        }
        if !emit_options.is_empty() && !emit_options.contains(default) {
            return Err(schema(
                &format!("{path}default_outcome"),
                format!("{default:?} is not one of the emit options {emit_options:?}"),
            ));
        }
    }
    let assignee = if nested {
        text(&map, "", "assigned_to_email")?
    } else {
        match map.get("assigned_to") {
            Some(Value::Object(a)) => text(a, "assigned_to.", "email")?,
            _ => None,
        }
    };
    let flow_id = text(request, path, "flow_id")?;
    if let Some(id) = &flow_id {
        check_id(&format!("{path}flow_id"), id)?;
    }
    let kickoff_id = text(request, path, "flow_execution_id")?.or_else(|| flow_id.clone());
    if let Some(id) = &kickoff_id {
        check_id(&format!("{path}flow_execution_id"), id)?;
    }
    let deployment = if nested {
        map.get("deployment")
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    } else {
        text(&map, "", "deployment_name")?
    };
    // Only what a new_request and its escalations share, so both ask for the same checkpoint.
    let context = json!({
        "message": request.get("message").cloned().unwrap_or(Value::Null),
        "output": request.get("output").cloned().unwrap_or(Value::Null),
        "state": request.get("state").cloned().unwrap_or(Value::Null),
        "method_name": method,
        "flow_id": flow_id,
        "deployment": deployment,
        "emit_options": emit_options,
        "default_outcome": default_outcome,
    });
    // Skip sends the default outcome; without one there is nothing neutral to send.
    let allowed_actions = if default_outcome.is_some() {
        None
    } else {
        Some(vec![Action::Continue, Action::Stop, Action::Revise])
    };
    let recipients = assignee
        .iter()
        .filter(|a| check_email(a).is_ok())
        .cloned()
        .collect();
    let checkpoint_id = format!("{FLOW_CHECKPOINT_PREFIX}{request_id}");
    let spec = CheckpointSpec {
        id: Some(checkpoint_id.clone()),
        name: method,
        kickoff_id: kickoff_id.clone(),
        context_json: context.to_string(),
        allowed_actions,
        recipients,
        origin: Some(Origin {
            source: source.to_owned(),
            kind: OriginKind::Flow,
            execution_id: kickoff_id.clone(),
            task_id: None,
            request_id: Some(request_id.clone()),
            callback_url: Some(callback_url),
            emit_options,
            default_outcome,
            assignee,
        }),
        ..CheckpointSpec::default()
    };
    Ok(FlowRequest {
        event,
        request_id,
        checkpoint_id,
        spec,
        kickoff_id,
        stored_body: redacted(map),
    })
}

impl FlowRequest {
    /// The event that creates the checkpoint (a `new_request`, or an escalation of a request
    /// hitlhook never saw).
    #[must_use]
    pub fn creating(self) -> AmpEvent {
        let key = self.key();
        let mut env = envelope(EventKind::CheckpointRequired, self.kickoff_id);
        env.checkpoint = Some(self.spec);
        AmpEvent {
            envelope: env,
            key,
            stored_body: Some(self.stored_body),
        }
    }

    /// The event recorded for a request whose checkpoint exists (an escalation, or a late
    /// `new_request`): an entry in the execution's audit trail, not a second checkpoint.
    #[must_use]
    pub fn annotation(self) -> AmpEvent {
        let key = self.key();
        let event_type = match self.event {
            FlowEvent::NewRequest => LATE_REQUEST_EVENT,
            FlowEvent::Escalation => ESCALATION_EVENT,
        };
        let mut env = envelope(EventKind::Other(event_type.into()), self.kickoff_id);
        env.checkpoint_ref = Some(self.checkpoint_id);
        if self.event == FlowEvent::Escalation {
            // The assignee, when it is an email address (as for a new request).
            env.escalated_callback = self
                .spec
                .origin
                .as_ref()
                .and_then(|o| o.callback_url.clone());
            env.escalate_to = self.spec.recipients;
        }
        AmpEvent {
            envelope: env,
            key,
            stored_body: Some(self.stored_body),
        }
    }

    /// A request's `new_request` is one event however often it is sent; escalations are told
    /// apart by their bodies.
    fn key(&self) -> Key {
        match self.event {
            FlowEvent::NewRequest => Key::Id(format!("flow:{}:new_request", self.request_id)),
            FlowEvent::Escalation => Key::Body,
        }
    }
}

/// A legacy task, step or crew webhook, recorded as `task.completed`, `step.completed` or
/// `crew.completed` of the execution `kickoff_id` (its `meta` stays in the stored body).
pub fn legacy(hook: LegacyHook, body: &[u8]) -> Result<AmpEvent, EnvelopeError> {
    let map = object(body)?;
    let kickoff = required(text(&map, "", "kickoff_id")?, "kickoff_id")?;
    let kind = match hook {
        LegacyHook::Task => EventKind::TaskCompleted,
        LegacyHook::Step => EventKind::StepCompleted,
        LegacyHook::Crew => EventKind::CrewCompleted,
    };
    Ok(AmpEvent {
        envelope: envelope(kind, Some(kickoff)),
        key: Key::Body,
        stored_body: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request a flow webhook body asks for.
    fn request_of(source: &str, body: &[u8]) -> Result<FlowRequest, EnvelopeError> {
        match flow_hook(source, body)? {
            FlowHook::Request(request) => Ok(request),
            FlowHook::Notification(event) => panic!("a notification: {event:?}"),
        }
    }

    #[test]
    fn other_flow_events_are_notifications_on_the_requests_trail() {
        let cases: [(&[u8], &str, Option<&str>, Option<&str>); 3] = [
            (
                br#"{"event": "request_responded", "request": {"id": "r-1", "flow_id": "f",
                    "flow_execution_id": "fx"}, "callback_url": "https://api.crewai.com/cb?token=t"}"#,
                "amp.flow_request_responded",
                Some("amp-flow-r-1"),
                Some("fx"),
            ),
            (
                br#"{"event_type": "cancelled", "id": "r-2", "flow_id": "f", "response_token": "s"}"#,
                "amp.flow_cancelled",
                Some("amp-flow-r-2"),
                Some("f"),
            ),
            (br#"{"event": "ping", "request": {}}"#, "amp.flow_ping", None, None),
        ];
        for (body, event_type, checkpoint, kickoff) in cases {
            let Ok(FlowHook::Notification(event)) = flow_hook("s", body) else {
                panic!("{}", String::from_utf8_lossy(body))
            };
            assert_eq!(event.envelope.event_type, event_type);
            assert_eq!(event.envelope.checkpoint_ref.as_deref(), checkpoint);
            assert_eq!(event.envelope.kickoff_id.as_deref(), kickoff);
            assert!(event.envelope.checkpoint.is_none(), "asks for nothing");
            let stored = event.stored_body.expect("stored");
            assert!(
                !stored.contains("token=t") && !stored.contains(r#""s""#),
                "{stored}"
            );
        }
        let refused: [(&[u8], &str); 3] = [
            (br#"{"event": "x\u0000", "request": {}}"#, "event"),
            (br#"{"event": "ok", "request": 5}"#, "request"),
            (br#"{"event": "ok", "request": {"id": ""}}"#, "request.id"),
        ];
        for (body, field) in refused {
            match flow_hook("s", body) {
                Err(EnvelopeError::Schema { path, .. }) => assert_eq!(&path, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn human_input_reads_every_alias() {
        for body in [
            br#"{"execution_id": "k1", "task_id": "research_task", "output": "draft"}"#.as_slice(),
            br#"{"kickoff_id": "k1", "task_id": "research_task", "task_output": "draft"}"#,
            br#"{"execution_id": "k1", "task_id": "research_task", "result": "draft"}"#,
            br#"{"execution_id": "", "kickoff_id": "k1", "task_id": "research_task", "output": "draft"}"#,
        ] {
            let ev = human_input("prod", body).expect("parses");
            let spec = ev.envelope.checkpoint.expect("spec");
            assert_eq!(spec.kickoff_id.as_deref(), Some("k1"));
            assert_eq!(spec.name, "research_task");
            let ctx: Value = serde_json::from_str(&spec.context_json).expect("json");
            assert_eq!(ctx["task_output"], "draft");
            let origin = spec.origin.expect("origin");
            assert_eq!(origin.kind, OriginKind::Crew);
            assert_eq!(origin.task_id.as_deref(), Some("research_task"));
            assert_eq!(ev.key, Key::Body);
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"task_id": "t"}"#, "execution_id"),
            (br#"{"execution_id": "k"}"#, "task_id"),
            (
                br#"{"execution_id": ["k"], "task_id": "t"}"#,
                "execution_id",
            ),
            (b"[]", "body"),
        ];
        for (body, field) in cases {
            match human_input("s", body) {
                Err(EnvelopeError::Schema { path, .. }) => assert_eq!(&path, field),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            human_input("s", b"{"),
            Err(EnvelopeError::Syntax { .. })
        ));
    }

    const NESTED: &[u8] = br#"{"event": "new_request",
        "request": {"id": "550e8400", "flow_id": "flow_abc123", "method_name": "review_article",
            "message": "Please review", "emit_options": ["approved", "rejected", "request_changes"],
            "state": {"article_id": 12345}, "metadata": {}, "created_at": "2026-01-14T12:00:00Z"},
        "deployment": {"id": 456, "name": "Content Review Flow", "organization_id": 789},
        "callback_url": "https://api.crewai.com/cb?token=t", "assigned_to_email": "reviewer@company.com"}"#;

    #[test]
    fn both_flow_shapes_ask_for_the_same_checkpoint() {
        let nested = request_of("s", NESTED).expect("nested");
        assert_eq!(nested.event, FlowEvent::NewRequest);
        assert_eq!(nested.checkpoint_id, "amp-flow-550e8400");
        assert_eq!(nested.spec.recipients, ["reviewer@company.com"]);
        let origin = nested.spec.origin.clone().expect("origin");
        assert_eq!(
            origin.emit_options,
            ["approved", "rejected", "request_changes"]
        );
        assert_eq!(
            origin.callback_url.as_deref(),
            Some("https://api.crewai.com/cb?token=t")
        );
        // No default outcome: skip has nothing neutral to send.
        assert_eq!(
            nested.spec.allowed_actions,
            Some(vec![Action::Continue, Action::Stop, Action::Revise])
        );
        let flat = request_of(
            "s",
            br#"{"event_type": "escalation", "id": "550e8400", "status": "pending",
                "flow_id": "flow_abc123", "flow_execution_id": "fx-1", "method_name": "review_article",
                "message": "Please review", "emit": ["approved", "rejected"], "default_outcome": "rejected",
                "callback_url": "https://api.crewai.com/cb?token=u",
                "assigned_to": {"id": 1, "email": "boss@company.com", "name": "Boss"}}"#,
        )
        .expect("flat");
        assert_eq!(flat.event, FlowEvent::Escalation);
        assert_eq!(flat.checkpoint_id, nested.checkpoint_id);
        assert_eq!(flat.kickoff_id.as_deref(), Some("fx-1"));
        assert_eq!(flat.spec.allowed_actions, None);
        let origin = flat.spec.origin.expect("origin");
        assert_eq!(origin.default_outcome.as_deref(), Some("rejected"));
        assert_eq!(origin.assignee.as_deref(), Some("boss@company.com"));
    }

    #[test]
    fn stored_flow_bodies_lose_their_answering_secrets() {
        let nested = request_of("s", NESTED).expect("nested");
        let stored: Value = serde_json::from_str(&nested.stored_body).expect("json");
        assert_eq!(stored["callback_url"], "https://api.crewai.com/[redacted]");
        assert_eq!(stored["request"]["id"], "550e8400");
        assert!(!nested.stored_body.contains("token=t"));
        let flat = request_of(
            "s",
            br#"{"event_type": "new_request", "id": "r", "response_token": "secret-rt",
                "metadata": {"callback_url": "https://x/secret-nested", "list": [{"response_token": "secret-l"}]},
                "callback_url": "https://api.crewai.com/r/respond?token=secret-cb"}"#,
        )
        .expect("flat");
        assert!(!flat.stored_body.contains("secret"), "{}", flat.stored_body);
        assert_eq!(
            flat.spec.origin.and_then(|o| o.callback_url).as_deref(),
            Some("https://api.crewai.com/r/respond?token=secret-cb"),
            "the origin keeps the real URL to answer with"
        );
        for (url, shown) in [
            (
                "https://amp.example/respond/PATHSECRET",
                "https://amp.example/[redacted]",
            ),
            (
                "https://u:pw@amp.example:8443/x#FRAG",
                "https://amp.example:8443/[redacted]",
            ),
            ("not a url", "[redacted]"),
        ] {
            assert_eq!(origin_only(url), shown);
        }
    }

    #[test]
    fn flow_refusals() {
        let long_id = format!(
            r#"{{"event_type": "new_request", "id": "{}", "callback_url": "u"}}"#,
            "r".repeat(250)
        );
        let cases: &[(&[u8], &str)] = &[
            (long_id.as_bytes(), "id"),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": "u", "method_name": " "}"#,
                "method_name",
            ),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": "u", "flow_id": "a\nb"}"#,
                "flow_id",
            ),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": 5}"#,
                "callback_url",
            ),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": "u", "emit": ["a", " "]}"#,
                "emit",
            ),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": "u", "emit": ["a"], "default_outcome": "b"}"#,
                "default_outcome",
            ),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": "u", "default_outcome": ""}"#,
                "default_outcome",
            ),
            (br#"{"event": "new_request", "request": 5}"#, "request"),
            (br#"{"request": {"id": "x"}, "callback_url": "u"}"#, "event"),
            (
                br#"{"event": "new_request", "request": {}, "callback_url": "u"}"#,
                "request.id",
            ),
            (
                br#"{"event_type": "new_request", "id": "x"}"#,
                "callback_url",
            ),
            (
                br#"{"event_type": "new_request", "id": "x", "callback_url": "u", "emit": "a"}"#,
                "emit",
            ),
        ];
        for (body, field) in cases {
            match request_of("s", body) {
                Err(EnvelopeError::Schema { path, .. }) => assert_eq!(&path, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn legacy_hooks_record_completions() {
        let ev = legacy(
            LegacyHook::Task,
            br#"{"description": "d", "name": "research", "output": "o", "kickoff_id": "k", "meta": {"a": 1}}"#,
        )
        .expect("task");
        assert_eq!(ev.envelope.kind, EventKind::TaskCompleted);
        assert_eq!(ev.envelope.kickoff_id.as_deref(), Some("k"));
        assert_eq!(
            legacy(LegacyHook::Crew, br#"{"kickoff_id": "k", "result": "r"}"#)
                .expect("crew")
                .envelope
                .kind,
            EventKind::CrewCompleted
        );
        assert!(legacy(LegacyHook::Step, br#"{"prompt": "p"}"#).is_err());
    }
}
