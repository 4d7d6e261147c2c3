//! Outbound webhooks to subscribers: the Standard Webhooks body planned with the event, signed at
//! each attempt with the subscriber's secret (`webhook-id` = the delivery id on every attempt, a
//! fresh `webhook-timestamp`), POSTed through the guarded client.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hitlhook_domain::Timestamp;
use hitlhook_domain::delivery::check_event_filter;
use hitlhook_store::{Delivery, Store};
use rand::RngCore;

use crate::delivery::SendOutcome;
use crate::delivery::http::{Outbound, outcome_of, parse_target};
use crate::delivery::ssrf::Guard;
use crate::security::signature::{standard_headers, whsec_key};

/// The webhook channel.
#[derive(Clone)]
pub struct Webhooks {
    pub outbound: Outbound,
}

impl Webhooks {
    pub async fn send(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let sub = match store.get_subscription(&d.target).await {
            Ok(Some(sub)) => sub,
            Ok(None) => return SendOutcome::permanent("the subscription no longer exists"),
            Err(e) => return SendOutcome::retry(format!("reading the subscription failed: {e}")),
        };
        if sub.disabled_at.is_some() {
            return SendOutcome::Skipped("the subscription was removed".into());
        }
        let body = d.payload.as_bytes();
        let mut headers =
            standard_headers(&sub.secret, body, &d.id, Timestamp::now().unix_seconds());
        headers.push(("content-type".into(), "application/json".into()));
        match self.outbound.post(&sub.url, &headers, body.to_vec()).await {
            Ok(answer) => outcome_of(&answer, Timestamp::now()),
            Err(failure) => failure.into(),
        }
    }
}

/// A validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
}

/// Checks a subscription's URL, filters and secret (generating a `whsec_` secret when none is
/// given). An IP-literal URL the guard refuses is refused here already; hostnames are checked at
/// each send, since DNS answers change. Errors name the field.
pub fn validate_subscription(
    guard: &Guard,
    url: &str,
    event_types: Option<Vec<String>>,
    secret: Option<String>,
) -> Result<SubscriptionSpec, (&'static str, String)> {
    let parsed = parse_target(url).map_err(|e| ("url", e))?;
    if let Some(ip) = crate::delivery::http::literal_ip(&parsed) {
        guard.check(ip).map_err(|e| ("url", e.to_string()))?;
    }
    if url.len() > 2048 {
        return Err(("url", "must be at most 2048 characters".into()));
    }
    let event_types = event_types.unwrap_or_else(|| vec!["*".to_owned()]);
    if event_types.is_empty() {
        return Err((
            "event_types",
            "must name at least one event type (or *)".into(),
        ));
    }
    for filter in &event_types {
        check_event_filter(filter).map_err(|e| ("event_types", e))?;
    }
    let secret = match secret {
        Some(s) => {
            let key =
                whsec_key(&s).ok_or(("secret", "must be whsec_ followed by base64".to_owned()))?;
            if !(24..=64).contains(&key.len()) {
                return Err((
                    "secret",
                    "must decode to 24 to 64 bytes (Standard Webhooks)".into(),
                ));
            }
            s
        }
        None => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            format!("whsec_{}", STANDARD.encode(bytes))
        }
    };
    Ok(SubscriptionSpec {
        url: parsed.to_string(),
        event_types,
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_validation_table() {
        let guard = Guard::new(&["127.0.0.1".into()]).expect("guard");
        let ok = validate_subscription(&guard, "https://example.com/hook", None, None).expect("ok");
        assert_eq!(ok.event_types, ["*"]);
        assert!(
            ok.secret.starts_with("whsec_") && whsec_key(&ok.secret).map(|k| k.len()) == Some(32)
        );
        assert!(
            validate_subscription(
                &guard,
                "http://127.0.0.1:9/x",
                Some(vec!["checkpoint.*".into()]),
                None
            )
            .is_ok()
        );
        let cases: Vec<(&str, &str, Option<Vec<String>>, Option<String>)> = vec![
            ("url", "not a url", None, None),
            ("url", "ftp://example.com/", None, None),
            ("url", "http://10.0.0.1/hook", None, None),
            ("url", "http://[::ffff:169.254.169.254]/", None, None),
            ("url", "https://user:pw@example.com/", None, None),
            ("event_types", "https://example.com/", Some(vec![]), None),
            (
                "event_types",
                "https://example.com/",
                Some(vec!["task.started".into()]),
                None,
            ),
            ("secret", "https://example.com/", None, Some("plain".into())),
            (
                "secret",
                "https://example.com/",
                None,
                Some("whsec_c2hvcnQ=".into()),
            ),
        ];
        for (field, url, types, secret) in cases {
            let got = validate_subscription(&guard, url, types, secret)
                .map(|_| ())
                .map_err(|(f, _)| f);
            assert_eq!(got, Err(field), "{url}");
        }
    }
}
