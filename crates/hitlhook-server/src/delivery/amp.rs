//! Resuming CrewAI AMP runs: `amp.resume` (`POST {deployment}/resume`), `amp.stop`
//! (`POST {deployment}/stop/{kickoff_id}`), both with the source's deployment bearer token, and
//! `amp.feedback` (`POST {callback_url}`, whose token is in the URL). AMP's answers are read as
//! documented: an execution no longer waiting, a flow request answered in AMP or a run already
//! finished is "resolved elsewhere" (final); 401/403/404 are dead at once with what to fix;
//! 5xx, 429 and timeouts are retried.

use hitlhook_domain::amp::resume::{FeedbackCall, StopCall};
use hitlhook_domain::{DeliveryKind, Timestamp};
use hitlhook_store::{AmpSource, Delivery, Store};

use crate::delivery::SendOutcome;
use crate::delivery::http::{Answer, Outbound, outcome_of};

/// The AMP channel.
#[derive(Clone)]
pub struct Amp {
    pub outbound: Outbound,
}

impl Amp {
    pub async fn send(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let json = ("content-type".to_owned(), "application/json".to_owned());
        let (url, headers, body) = match d.kind {
            DeliveryKind::AmpFeedback => {
                let Ok(call) = serde_json::from_str::<FeedbackCall>(&d.payload) else {
                    return SendOutcome::permanent("the stored flow feedback is not readable");
                };
                let Ok(body) = serde_json::to_vec(&call.body) else {
                    return SendOutcome::permanent("the flow feedback cannot be encoded");
                };
                (call.callback_url, vec![json], body)
            }
            DeliveryKind::AmpResume | DeliveryKind::AmpStop => {
                let source = match deployment(store, &d.target).await {
                    Ok(source) => source,
                    Err(outcome) => return outcome,
                };
                let (Some(base), Some(token)) = (&source.deployment_url, &source.deployment_token)
                else {
                    return SendOutcome::permanent(format!(
                        "AMP source {:?} has no deployment_url or deployment_token: re-create it with both, then revive this delivery",
                        d.target
                    ));
                };
                let auth = ("authorization".to_owned(), format!("Bearer {token}"));
                if d.kind == DeliveryKind::AmpResume {
                    (
                        endpoint(base, &["resume"]),
                        vec![auth, json],
                        d.payload.clone().into_bytes(),
                    )
                } else {
                    let Ok(call) = serde_json::from_str::<StopCall>(&d.payload) else {
                        return SendOutcome::permanent("the stored stop call is not readable");
                    };
                    (
                        endpoint(base, &["stop", &call.kickoff_id]),
                        vec![auth],
                        Vec::new(),
                    )
                }
            }
            _ => return SendOutcome::permanent("not an AMP delivery"),
        };
        match self.outbound.post(&url, &headers, body).await {
            Ok(answer) => classify(d.kind, &answer, Timestamp::now()),
            Err(failure) => failure.into(),
        }
    }
}

async fn deployment(store: &dyn Store, name: &str) -> Result<AmpSource, SendOutcome> {
    match store.get_amp_source(name).await {
        Ok(Some(source)) => Ok(source),
        Ok(None) => Err(SendOutcome::permanent(format!(
            "AMP source {name:?} no longer exists: add it again (hitlhook amp sources add), then revive this delivery"
        ))),
        Err(e) => Err(SendOutcome::retry(format!(
            "reading AMP source {name:?} failed: {e}"
        ))),
    }
}

/// `base` with `segments` appended as path segments (each percent-encoded).
#[must_use]
pub fn endpoint(base: &str, segments: &[&str]) -> String {
    let Ok(mut url) = reqwest::Url::parse(base) else {
        return base.to_owned();
    };
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url.to_string()
}

/// AMP's own words from an error body (`message`, `detail` or `error`), for the delivery's
/// last error; never the URL.
fn amp_message(answer: &Answer) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(&answer.body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    field("message")
        .or_else(|| field("detail"))
        .or_else(|| field("error"))
        .unwrap_or_else(|| answer.body.chars().take(200).collect())
}

/// Reads AMP's answer to one attempt.
#[must_use]
pub fn classify(kind: DeliveryKind, answer: &Answer, now: Timestamp) -> SendOutcome {
    let status = answer.status;
    let said = amp_message(answer);
    let lower = answer.body.to_ascii_lowercase();
    let resolved = |detail: String| SendOutcome::ResolvedElsewhere {
        status: Some(status),
        detail,
    };
    let dead = |error: String| SendOutcome::Permanent {
        status: Some(status),
        error,
    };
    match (kind, status) {
        (_, 200..=299) => SendOutcome::Delivered {
            status: Some(status),
            result: serde_json::from_str::<serde_json::Value>(&answer.body)
                .ok()
                .map(|v| v.to_string())
                .filter(|s| s.len() <= 4096),
        },
        (DeliveryKind::AmpResume, 400) if lower.contains("not in pending human input state") => {
            resolved(format!(
                "the execution is no longer waiting for human input (resumed elsewhere): {said}"
            ))
        }
        (DeliveryKind::AmpStop, 400) if lower.contains("cannot stop execution") => {
            resolved(format!("the execution had already finished: {said}"))
        }
        (DeliveryKind::AmpFeedback, 409) => resolved(format!(
            "the request was already answered in AMP (dashboard or email): {said}"
        )),
        (DeliveryKind::AmpFeedback, 401 | 403) => dead(format!(
            "HTTP {status}: AMP refused the callback token ({said}); the request's callback_url is no longer valid"
        )),
        (_, 401 | 403) => dead(format!(
            "HTTP {status}: AMP refused the deployment token ({said}); set the source's deployment_token to the deployment's current Bearer token, then revive this delivery"
        )),
        (DeliveryKind::AmpFeedback, 404) => dead(format!(
            "HTTP 404: AMP does not know this feedback request ({said}); it was removed, or its callback_url is wrong"
        )),
        (_, 404) => dead(format!(
            "HTTP 404: AMP does not know this execution or endpoint ({said}); check the source's deployment_url and the execution id"
        )),
        (_, 408 | 425 | 429 | 500..=599) => outcome_of(answer, now),
        _ => dead(format!("HTTP {status}: AMP refused the call: {said}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn answers_table() {
        let now = Timestamp(0);
        let not_pending = r#"{"error": "Invalid Request", "message": "Execution is not in pending human input state"}"#;
        let cases: Vec<(DeliveryKind, u16, &str, &str)> = vec![
            (
                DeliveryKind::AmpResume,
                200,
                r#"{"status": "resumed"}"#,
                "delivered",
            ),
            (DeliveryKind::AmpResume, 400, not_pending, "resolved"),
            (
                DeliveryKind::AmpResume,
                400,
                r#"{"message": "bad task"}"#,
                "dead",
            ),
            (
                DeliveryKind::AmpResume,
                401,
                r#"{"error": "Unauthorized"}"#,
                "dead",
            ),
            (
                DeliveryKind::AmpResume,
                404,
                r#"{"message": "Execution ID not found"}"#,
                "dead",
            ),
            (DeliveryKind::AmpResume, 500, "{}", "retry"),
            (DeliveryKind::AmpResume, 429, "", "retry"),
            (
                DeliveryKind::AmpStop,
                200,
                r#"{"status": "stopped"}"#,
                "delivered",
            ),
            (
                DeliveryKind::AmpStop,
                400,
                r#"{"detail": "Cannot stop execution. Current state: SUCCESS"}"#,
                "resolved",
            ),
            (
                DeliveryKind::AmpFeedback,
                409,
                r#"{"error": "already_responded"}"#,
                "resolved",
            ),
            (
                DeliveryKind::AmpFeedback,
                401,
                r#"{"error": "unauthorized", "message": "Invalid response token"}"#,
                "dead",
            ),
            (DeliveryKind::AmpFeedback, 503, "", "retry"),
        ];
        for (kind, status, body, want) in cases {
            let got = match classify(kind, &answer(status, body), now) {
                SendOutcome::Delivered { .. } => "delivered",
                SendOutcome::ResolvedElsewhere { .. } => "resolved",
                SendOutcome::Permanent { .. } => "dead",
                SendOutcome::Retry { .. } => "retry",
                SendOutcome::Skipped(_) => "skipped",
            };
            assert_eq!(got, want, "{} {status} {body}", kind.as_str());
        }
    }

    #[test]
    fn dead_letters_say_what_to_fix() {
        let SendOutcome::Permanent { error, .. } =
            classify(DeliveryKind::AmpResume, &answer(401, "{}"), Timestamp(0))
        else {
            panic!("dead");
        };
        assert!(error.contains("deployment_token"), "{error}");
    }

    #[test]
    fn endpoints_join_paths() {
        assert_eq!(
            endpoint("https://crew.crewai.com", &["resume"]),
            "https://crew.crewai.com/resume"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9/base/", &["stop", "a b/c"]),
            "http://127.0.0.1:9/base/stop/a%20b%2Fc"
        );
    }
}
