//! Outbound HTTP for every channel that speaks it (webhooks, Slack): one client with the SSRF
//! guard as its resolver, no redirects, no proxies, connect and total timeouts; and the reading
//! of a receiver's answer into a [`SendOutcome`] (2xx delivered, 410 permanent, 429/503 with
//! `Retry-After`, anything else retried). Error texts never carry the URL: Slack webhook and
//! `response_url` URLs are secrets.

use std::error::Error as _;
use std::sync::{Arc, Once};
use std::time::Duration;

use hitlhook_domain::Timestamp;
use hitlhook_domain::delivery::retry::parse_retry_after;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::delivery::SendOutcome;
use crate::delivery::ssrf::{Guard, GuardedResolver, Refused};

/// Longest response body kept (for errors and Slack's JSON answers).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Installs rustls' ring provider as the process default, once. reqwest is built without a
/// provider of its own so the whole tree uses ring (as sqlx does).
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The outbound HTTP client.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbound")
    }
}

/// A receiver's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most [`MAX_RESPONSE_BYTES`], lossily decoded.
    pub body: String,
}

/// Why a request produced no answer.
#[derive(Debug)]
pub enum Failure {
    /// The SSRF guard refused the target: never retried.
    Refused(String),
    /// The URL itself is unusable: never retried.
    BadUrl(String),
    /// Connection, TLS or timeout: retried.
    Transport(String),
}

impl Outbound {
    pub fn new(
        guard: Arc<Guard>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        install_crypto();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, past the guard.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(Arc::clone(&guard))))
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("hitlhook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Outbound { client, guard })
    }

    /// POSTs `body` to `url` with `headers`.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        self.request(reqwest::Method::POST, url, headers, body)
            .await
    }

    /// GETs `url` with `headers`.
    pub async fn get(&self, url: &str, headers: &[(String, String)]) -> Result<Answer, Failure> {
        self.request(reqwest::Method::GET, url, headers, Vec::new())
            .await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        let url = self.check_url(url)?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Failure::BadUrl(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Failure::BadUrl(format!("invalid value for header {name}")))?;
            map.insert(name, value);
        }
        let response = self
            .client
            .request(method, url)
            .headers(map)
            .body(body)
            .send()
            .await
            .map_err(|e| classify_error(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut response = response;
        // Read at most MAX_RESPONSE_BYTES: a receiver cannot make us buffer gigabytes.
        while let Some(chunk) = response.chunk().await.map_err(|e| classify_error(&e))? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Parses the URL and checks an IP-literal host (hostnames are checked by the resolver).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, Failure> {
        let parsed = parse_target(url).map_err(Failure::BadUrl)?;
        if let Some(ip) = literal_ip(&parsed) {
            self.guard
                .check(ip)
                .map_err(|r| Failure::Refused(r.to_string()))?;
        }
        Ok(parsed)
    }
}

/// Parses an outbound URL: absolute http(s) with a host and no credentials.
pub fn parse_target(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("scheme {} is not http or https", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials in the URL are not supported; use the signing secret".into());
    }
    Ok(parsed)
}

/// The host as an IP address, if it is a literal.
pub fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    }
}

fn classify_error(e: &reqwest::Error) -> Failure {
    // Walk the cause chain: the guard's refusal surfaces as a connect error's source.
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return Failure::Refused(refused.to_string());
        }
        if let Some(crate::delivery::ssrf::ResolveError::Refused(refused)) =
            s.downcast_ref::<crate::delivery::ssrf::ResolveError>()
        {
            return Failure::Refused(refused.to_string());
        }
        source = s.source();
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // without_url: the URL may be a secret (Slack webhook, response_url).
    let mut text = format!("{kind}: {}", error_chain(e));
    text.truncate(500);
    Failure::Transport(text)
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        // reqwest's own Display names the URL; its kind is enough.
        "unknown error".to_owned()
    } else {
        parts.join(": ")
    }
}

impl From<Failure> for SendOutcome {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(e) | Failure::BadUrl(e) => SendOutcome::Permanent {
                status: None,
                error: e,
            },
            Failure::Transport(e) => SendOutcome::Retry {
                status: None,
                error: e,
                retry_after: None,
            },
        }
    }
}

/// Reads a plain HTTP answer (webhooks, incoming webhooks, `response_url`): only 2xx delivers.
#[must_use]
pub fn outcome_of(answer: &Answer, now: Timestamp) -> SendOutcome {
    let status = answer.status;
    let snippet: String = answer.body.chars().take(200).collect();
    match status {
        200..=299 => SendOutcome::Delivered {
            status: Some(status),
            result: None,
        },
        // Standard Webhooks: 410 Gone means "stop sending".
        410 => SendOutcome::Permanent {
            status: Some(status),
            error: format!("HTTP 410 Gone: the receiver asked to stop; {snippet}"),
        },
        300..=399 => SendOutcome::Retry {
            status: Some(status),
            error: format!(
                "HTTP {status}: redirects are not followed (Location: {})",
                answer
                    .headers
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
            ),
            retry_after: None,
        },
        _ => SendOutcome::Retry {
            status: Some(status),
            error: format!("HTTP {status}: {snippet}"),
            retry_after: retry_after(answer, now),
        },
    }
}

/// `Retry-After` on 429 and 503 (elsewhere it is not a throttle signal).
#[must_use]
pub fn retry_after(answer: &Answer, now: Timestamp) -> Option<Duration> {
    if !matches!(answer.status, 429 | 503) {
        return None;
    }
    answer
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)]) -> Answer {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        Answer {
            status,
            headers: map,
            body: "x".repeat(300),
        }
    }

    #[test]
    fn answers_are_classified() {
        let now = Timestamp::parse_rfc3339("2015-10-21T07:28:00Z").expect("time");
        let kind = |o: &SendOutcome| match o {
            SendOutcome::Delivered { .. } => "delivered",
            SendOutcome::Retry { .. } => "retry",
            SendOutcome::Permanent { .. } => "permanent",
            SendOutcome::Skipped(_) => "skipped",
            SendOutcome::ResolvedElsewhere { .. } => "resolved_elsewhere",
        };
        let after = |o: &SendOutcome| match o {
            SendOutcome::Retry { retry_after, .. } => *retry_after,
            _ => None,
        };
        let cases: Vec<(Answer, &str, Option<Duration>)> = vec![
            (answer(200, &[]), "delivered", None),
            (answer(204, &[]), "delivered", None),
            (
                answer(302, &[("location", "http://10.0.0.1/")]),
                "retry",
                None,
            ),
            (answer(410, &[]), "permanent", None),
            (
                answer(429, &[("retry-after", "5")]),
                "retry",
                Some(Duration::from_secs(5)),
            ),
            (
                answer(503, &[("retry-after", "Wed, 21 Oct 2015 07:29:00 GMT")]),
                "retry",
                Some(Duration::from_secs(60)),
            ),
            (answer(500, &[("retry-after", "5")]), "retry", None),
            (answer(429, &[("retry-after", "soon")]), "retry", None),
            (answer(404, &[]), "retry", None),
            (answer(400, &[]), "retry", None),
        ];
        for (a, want, want_after) in cases {
            let got = outcome_of(&a, now);
            assert_eq!(
                (kind(&got), after(&got)),
                (want, want_after),
                "HTTP {}",
                a.status
            );
            if let SendOutcome::Retry { error, .. } | SendOutcome::Permanent { error, .. } = &got {
                assert!(
                    error.len() < 260,
                    "errors keep a short snippet of the body: {error}"
                );
            }
        }
    }

    #[test]
    fn targets_are_checked_before_sending() {
        let guard = Arc::new(Guard::default());
        let out =
            Outbound::new(guard, Duration::from_secs(1), Duration::from_secs(1)).expect("client");
        for (url, refused) in [
            ("http://127.0.0.1:9/", true),
            ("http://[::ffff:10.1.2.3]/", true),
            ("https://example.com/hook", false),
        ] {
            let got = out.check_url(url);
            assert_eq!(matches!(got, Err(Failure::Refused(_))), refused, "{url}");
        }
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "https://u:p@example.com/",
            "http://",
        ] {
            assert!(
                matches!(out.check_url(bad), Err(Failure::BadUrl(_))),
                "{bad}"
            );
        }
    }
}
