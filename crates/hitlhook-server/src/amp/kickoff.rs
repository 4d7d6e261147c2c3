//! Starting AMP runs with hitlhook's webhooks injected, and reconciling a run's state from AMP's
//! `GET /status/{kickoff_id}`. The injected URLs authenticate with the source's URL token (the
//! source's own bearer token and Basic password are stored only as hashes, so hitlhook cannot
//! hand them out); the legacy webhook URLs are recorded per execution, since every `/resume`
//! must re-send them.

use hitlhook_domain::amp::KickoffHooks;
use hitlhook_domain::{EventEnvelope, EventIdentity, EventKind, Timestamp};
use hitlhook_store::{AmpExecution, AmpSource, IngestItem};
use serde_json::{Value, json};

use crate::delivery::amp::endpoint;
use crate::delivery::http::{Failure, Outbound};

/// The event-bus types a kickoff asks AMP to stream (crew and task lifecycle).
pub const STREAMED_EVENTS: [&str; 6] = [
    "crew_kickoff_started",
    "crew_kickoff_completed",
    "crew_kickoff_failed",
    "task_started",
    "task_completed",
    "task_failed",
];

/// Why a call to the deployment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The source cannot call its deployment (no URL or token configured).
    #[error("AMP source {0:?} has no deployment_url and deployment_token")]
    NoDeployment(String),
    /// AMP answered, but not as hoped; `status` is its HTTP status.
    #[error("{message}")]
    Answered { status: u16, message: String },
    /// No usable answer (connection, timeout, refused address).
    #[error("{0}")]
    Failed(String),
}

fn call_error(status: u16, message: impl Into<String>) -> CallError {
    CallError::Answered {
        status,
        message: message.into(),
    }
}

/// The deployment URL and token of `source`, or why it has none.
fn deployment(source: &AmpSource) -> Result<(&str, &str), CallError> {
    match (&source.deployment_url, &source.deployment_token) {
        (Some(url), Some(token)) => Ok((url, token)),
        _ => Err(CallError::NoDeployment(source.name.clone())),
    }
}

/// The legacy webhook URLs hitlhook gives AMP for `source` (the URL token in the path).
#[must_use]
pub fn hooks(source: &AmpSource, base_url: &str) -> KickoffHooks {
    let base = base_url.trim_end_matches('/');
    let url = |hook: &str| {
        Some(format!(
            "{base}/amp/{}/{hook}/{}",
            source.name, source.url_token
        ))
    };
    KickoffHooks {
        task_webhook_url: url("task"),
        step_webhook_url: url("step"),
        crew_webhook_url: url("crew"),
    }
}

/// The `POST /kickoff` body: the caller's inputs and meta, with hitlhook's webhooks.
#[must_use]
pub fn kickoff_body(
    source: &AmpSource,
    base_url: &str,
    inputs: &Value,
    meta: Option<&Value>,
) -> Value {
    let base = base_url.trim_end_matches('/');
    let auth = json!({"strategy": "bearer", "token": source.url_token});
    let mut body = json!({
        "inputs": inputs,
        "humanInputWebhook": {"url": format!("{base}/amp/{}/human-input", source.name), "authentication": auth},
        "webhooks": {"events": STREAMED_EVENTS, "url": format!("{base}/amp/{}/events", source.name),
            "realtime": false, "authentication": auth},
    });
    if let Some(meta) = meta {
        body["meta"] = meta.clone();
    }
    if let (Some(map), Ok(Value::Object(urls))) = (
        body.as_object_mut(),
        serde_json::to_value(hooks(source, base_url)),
    ) {
        map.extend(urls);
    }
    body
}

fn answer_error(status: u16, body: &str) -> CallError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let said = parsed
        .as_ref()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("detail"))
                .or_else(|| v.get("error"))
        })
        .map_or_else(
            || body.chars().take(200).collect(),
            |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        );
    call_error(status, format!("AMP answered HTTP {status}: {said}"))
}

fn transport(f: Failure) -> CallError {
    match f {
        Failure::Refused(e) | Failure::BadUrl(e) | Failure::Transport(e) => {
            CallError::Failed(format!("calling AMP failed: {e}"))
        }
    }
}

/// Starts a run; returns its kickoff id and the execution record to store.
pub async fn start(
    outbound: &Outbound,
    source: &AmpSource,
    base_url: &str,
    inputs: &Value,
    meta: Option<&Value>,
    now: Timestamp,
) -> Result<AmpExecution, CallError> {
    let (url, token) = deployment(source)?;
    let body = kickoff_body(source, base_url, inputs, meta);
    let headers = [
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let answer = outbound
        .post(
            &endpoint(url, &["kickoff"]),
            &headers,
            body.to_string().into_bytes(),
        )
        .await
        .map_err(transport)?;
    if !(200..300).contains(&answer.status) {
        return Err(answer_error(answer.status, &answer.body));
    }
    let kickoff_id = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["kickoff_id"].as_str().map(str::to_owned))
        .filter(|id| hitlhook_domain::checkpoint::check_label("kickoff_id", id).is_ok())
        .ok_or_else(|| call_error(answer.status, "AMP's answer has no kickoff_id"))?;
    Ok(AmpExecution {
        kickoff_id,
        source: source.name.clone(),
        hooks: hooks(source, base_url),
        remote_status: Some("running".to_owned()),
        remote_detail: None,
        created_at: now,
        updated_at: now,
    })
}

/// Reads a run's status from AMP: `running`, `completed` or `error`, and AMP's whole answer.
pub async fn status(
    outbound: &Outbound,
    source: &AmpSource,
    kickoff_id: &str,
) -> Result<(String, Value), CallError> {
    let (url, token) = deployment(source)?;
    let headers = [("authorization".to_owned(), format!("Bearer {token}"))];
    let answer = outbound
        .get(&endpoint(url, &["status", kickoff_id]), &headers)
        .await
        .map_err(transport)?;
    if !(200..300).contains(&answer.status) {
        return Err(answer_error(answer.status, &answer.body));
    }
    let detail: Value = serde_json::from_str(&answer.body)
        .map_err(|_| call_error(answer.status, "AMP's status answer is not JSON"))?;
    let state = detail["status"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| call_error(answer.status, "AMP's status answer has no status"))?;
    Ok((state, detail))
}

/// AMP's word for a run's state, in hitlhook's: `completed`, `error`, `stopped`, or `running`
/// for anything not finished (AMP's docs show `running`; its task states add `PENDING`,
/// `STARTED`, `SUCCESS`, `FAILURE` and `REVOKED`).
#[must_use]
pub fn run_state(amp_state: &str) -> &'static str {
    match amp_state.to_ascii_lowercase().as_str() {
        "completed" | "success" | "succeeded" => "completed",
        "error" | "failed" | "failure" => "error",
        "revoked" | "stopped" | "cancelled" | "canceled" => "stopped",
        _ => "running",
    }
}

/// The event that records a finished run on hitlhook's execution (`crew.completed`,
/// `crew.failed` or `crew.stopped`); `None` while it runs. Its identity makes reconciling twice
/// a no-op.
#[must_use]
pub fn finished_event(
    source: &str,
    kickoff_id: &str,
    state: &str,
    detail: &Value,
    now: Timestamp,
) -> Option<IngestItem> {
    let kind = match run_state(state) {
        "completed" => EventKind::CrewCompleted,
        "error" => EventKind::CrewFailed,
        "stopped" => EventKind::CrewStopped,
        _ => return None,
    };
    let state = run_state(state);
    let payload =
        json!({"event_type": kind.as_str(), "kickoff_id": kickoff_id, "amp_status": detail});
    Some(IngestItem {
        identity: EventIdentity::from_event_id(&format!(
            "amp:{source}:status:{kickoff_id}:{state}"
        )),
        envelope: EventEnvelope {
            event_type: kind.as_str().to_owned(),
            kind,
            event_id: None,
            kickoff_id: Some(kickoff_id.to_owned()),
            occurred_at: None,
            checkpoint: None,
            checkpoint_ref: None,
            escalate_to: Vec::new(),
            escalated_callback: None,
        },
        payload: payload.to_string(),
        source: format!("amp:{source}:reconcile"),
        received_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitlhook_domain::amp::{AuthMode, EmitMap};

    #[test]
    fn the_kickoff_body_injects_every_webhook() {
        let source = AmpSource {
            name: "prod".into(),
            auth: AuthMode::Bearer,
            token_hash: None,
            basic_username: None,
            password_hash: None,
            signing_secret: None,
            url_token: "UT".into(),
            deployment_url: None,
            deployment_token: None,
            emit_map: EmitMap::default(),
            created_at: Timestamp(0),
        };
        let body = kickoff_body(
            &source,
            "https://hitl.example.com/",
            &json!({"topic": "AI"}),
            None,
        );
        assert_eq!(body["inputs"]["topic"], "AI");
        assert_eq!(
            body["taskWebhookUrl"],
            "https://hitl.example.com/amp/prod/task/UT"
        );
        assert_eq!(
            body["humanInputWebhook"]["url"],
            "https://hitl.example.com/amp/prod/human-input"
        );
        assert_eq!(
            body["humanInputWebhook"]["authentication"],
            json!({"strategy": "bearer", "token": "UT"})
        );
        assert_eq!(
            body["webhooks"]["url"],
            "https://hitl.example.com/amp/prod/events"
        );
        assert!(body.get("meta").is_none());
        assert!(finished_event("prod", "k", "running", &json!({}), Timestamp(0)).is_none());
        let done =
            finished_event("prod", "k", "completed", &json!({}), Timestamp(0)).expect("event");
        assert_eq!(done.envelope.kind, EventKind::CrewCompleted);
    }

    #[test]
    fn amp_run_states_map_to_hitlhooks() {
        for (amp, ours) in [
            ("running", "running"),
            ("PENDING", "running"),
            ("STARTED", "running"),
            ("Pending Human Input", "running"),
            ("completed", "completed"),
            ("SUCCESS", "completed"),
            ("error", "error"),
            ("FAILURE", "error"),
            ("REVOKED", "stopped"),
        ] {
            assert_eq!(run_state(amp), ours, "{amp}");
        }
        let stopped =
            finished_event("prod", "k", "REVOKED", &json!({}), Timestamp(0)).expect("event");
        assert_eq!(stopped.envelope.kind, EventKind::CrewStopped);
        // AMP's two spellings of one end are one event.
        let a = finished_event("prod", "k", "SUCCESS", &json!({}), Timestamp(0)).expect("a");
        let b = finished_event("prod", "k", "completed", &json!({}), Timestamp(0)).expect("b");
        assert_eq!(a.identity, b.identity);
    }
}
