//! CrewAI AMP (the hosted platform): the sources AMP sends from, the resume metadata a checkpoint
//! keeps about where it came from, and the pure mapping between AMP's payloads, hitlhook's
//! events and AMP's resume API. Parsing lives in [`inbound`], the decision → call mapping in
//! [`resume`].

pub mod inbound;
pub mod resume;

use serde::{Deserialize, Serialize};

/// How a source proves an inbound request is AMP's. The URL token is accepted on top of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `Authorization: Bearer <token>` (AMP's `authentication.strategy: "bearer"`).
    Bearer,
    /// HTTP Basic (AMP's `authentication.strategy: "basic"`).
    Basic,
    /// HMAC-SHA256 over `"{timestamp}.{body}"` in `X-Signature`/`X-Timestamp` (Flow HITL webhooks).
    Hmac,
}

impl AuthMode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Bearer => "bearer",
            AuthMode::Basic => "basic",
            AuthMode::Hmac => "hmac",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "bearer" => Some(AuthMode::Bearer),
            "basic" => Some(AuthMode::Basic),
            "hmac" => Some(AuthMode::Hmac),
            _ => None,
        }
    }
}

/// Which `emit` option a flow decision sends; unset entries use the defaults of
/// [`resume::flow_feedback`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitMap {
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub on_continue: Option<String>,
    #[serde(rename = "stop", default, skip_serializing_if = "Option::is_none")]
    pub on_stop: Option<String>,
    #[serde(rename = "skip", default, skip_serializing_if = "Option::is_none")]
    pub on_skip: Option<String>,
}

/// What kind of AMP run a checkpoint pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginKind {
    /// A crew task with `human_input=True` (resumed through `POST /resume`).
    Crew,
    /// A flow `@human_feedback` request (answered through its `callback_url`).
    Flow,
}

/// Where a checkpoint came from, kept so the decision can be sent back to AMP.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub source: String,
    pub kind: OriginKind,
    /// The AMP execution (crews: the kickoff id; flows: the flow execution id, if given).
    pub execution_id: Option<String>,
    pub task_id: Option<String>,
    /// The flow HITL request id.
    pub request_id: Option<String>,
    /// Where a flow decision is POSTed (its token is in the URL: a secret).
    pub callback_url: Option<String>,
    #[serde(default)]
    pub emit_options: Vec<String>,
    pub default_outcome: Option<String>,
    pub assignee: Option<String>,
}

/// The callback URL's query (its single-use token) is left out: `Debug` output reaches logs.
impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let callback = self
            .callback_url
            .as_deref()
            .map(|url| url.split('?').next().unwrap_or_default());
        f.debug_struct("Origin")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("execution_id", &self.execution_id)
            .field("task_id", &self.task_id)
            .field("request_id", &self.request_id)
            .field("callback_url", &callback)
            .field("emit_options", &self.emit_options)
            .field("default_outcome", &self.default_outcome)
            .field("assignee", &self.assignee)
            .finish()
    }
}

/// The legacy webhook URLs of a kickoff, re-sent on every `/resume` (AMP does not keep them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KickoffHooks {
    #[serde(rename = "taskWebhookUrl", skip_serializing_if = "Option::is_none")]
    pub task_webhook_url: Option<String>,
    #[serde(rename = "stepWebhookUrl", skip_serializing_if = "Option::is_none")]
    pub step_webhook_url: Option<String>,
    #[serde(rename = "crewWebhookUrl", skip_serializing_if = "Option::is_none")]
    pub crew_webhook_url: Option<String>,
}

/// Checks a source name: it appears in URLs, so 1 to 64 of `a-z 0-9 - _`, starting alphanumeric.
pub fn check_source_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid source name: use 1 to 64 of a-z, 0-9, - and _, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        for good in ["prod", "crew-1", "a_b", "9lives"] {
            assert!(check_source_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "Prod", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_source_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emit_map_reads_action_names() {
        let map: EmitMap =
            serde_json::from_str(r#"{"continue": "publish", "stop": "kill"}"#).expect("map");
        assert_eq!(map.on_continue.as_deref(), Some("publish"));
        assert_eq!(map.on_stop.as_deref(), Some("kill"));
        assert!(serde_json::from_str::<EmitMap>(r#"{"revise": "x"}"#).is_err());
    }
}
