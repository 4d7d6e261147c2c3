//! Authenticating CrewAI AMP's inbound requests for one source: the source's own mode (bearer
//! token, HTTP Basic, or an HMAC-SHA256 signature over `"{timestamp}.{body}"` with a timestamp
//! inside the tolerance, each signed message accepted once), or the source's URL token (in the
//! path, in `?token=`, or as a bearer token) except where a signature is required. Every
//! comparison is constant-time; error texts never carry secret material.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hitlhook_domain::amp::AuthMode;
use hitlhook_store::AmpSource;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::ApiError;
use crate::security::api_key::hash;
use crate::security::signature::SigningKeys;

/// Signed messages (timestamp and body) seen within the tolerance window: a captured request
/// cannot be replayed, however its signature header is spelled.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// Message key → Unix second after which its signature can no longer verify anyway.
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        match self.seen.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `key` was accepted before and is still within its window.
    pub fn used(&self, key: &str, now: i64) -> bool {
        self.seen().get(key).is_some_and(|until| *until >= now)
    }

    /// Records `key`; `false` when it was seen before and is still within its window. Call it
    /// once the request is committed: a request refused later (415, 422, a failed commit) may be
    /// sent again.
    pub fn first_use(&self, key: &str, now: i64, tolerance: i64) -> bool {
        let mut seen = self.seen();
        seen.retain(|_, until| *until >= now);
        if seen.contains_key(key) {
            return false;
        }
        // A timestamp up to `tolerance` in the future stays valid for twice the tolerance.
        seen.insert(
            key.to_owned(),
            now.saturating_add(tolerance.saturating_mul(2)),
        );
        true
    }
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn refuse(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::unauthorized(code, detail)
}

/// What the request presented, read from its headers and URL.
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    /// The URL token from the path or `?token=`.
    pub url_token: Option<&'a str>,
    pub body: &'a [u8],
    /// Only a valid signature will do (an `hmac` source's flow HITL endpoint, which AMP always
    /// signs): the URL token would let a request skip the signature and its replay check.
    pub signature_only: bool,
}

/// How a request authenticated.
#[derive(Debug)]
pub struct Authenticated {
    /// For the audit trail: `bearer`, `basic`, `hmac` or `url-token`.
    pub how: &'static str,
    /// A signed message, to record with [`ReplayGuard::first_use`] once it is committed.
    pub replay_key: Option<String>,
}

impl From<&'static str> for Authenticated {
    fn from(how: &'static str) -> Self {
        Authenticated {
            how,
            replay_key: None,
        }
    }
}

/// Checks the request against `source`; says how it authenticated.
pub fn authenticate(
    source: &AmpSource,
    presented: &Presented<'_>,
    now: i64,
    tolerance: i64,
    replay: &ReplayGuard,
) -> Result<Authenticated, ApiError> {
    if presented.signature_only {
        return verify_signature(source, presented, now, tolerance, replay);
    }
    if let Some(token) = presented.url_token {
        return if same(token, &source.url_token) {
            Ok("url-token".into())
        } else {
            Err(refuse(
                "invalid_token",
                "the URL token does not match this source's",
            ))
        };
    }
    let headers = presented.headers;
    let signed = ["x-signature", "x-crewai-signature"]
        .iter()
        .any(|h| headers.contains_key(*h));
    // A stray signature header does not stand in the way of a bearer or Basic source's own
    // credentials.
    if signed && (source.auth == AuthMode::Hmac || !headers.contains_key("authorization")) {
        return verify_signature(source, presented, now, tolerance, replay);
    }
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some((scheme, credentials)) = authorization.and_then(|v| v.split_once(' ')) else {
        return Err(refuse("missing_credentials", expected(source)));
    };
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if same(credentials, &source.url_token) {
            return Ok("url-token".into());
        }
        return match (&source.auth, &source.token_hash) {
            (AuthMode::Bearer, Some(want)) if same(&hash(credentials), want) => Ok("bearer".into()),
            _ => Err(refuse(
                "invalid_token",
                "the bearer token is not this source's",
            )),
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let (Some(user), Some(password_hash)) = (&source.basic_username, &source.password_hash)
        else {
            return Err(refuse("invalid_credentials", expected(source)));
        };
        let decoded = STANDARD
            .decode(credentials)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((given_user, given_password)) = decoded.as_deref().and_then(|d| d.split_once(':'))
        else {
            return Err(refuse(
                "invalid_credentials",
                "malformed Basic credentials: expected base64 of username:password",
            ));
        };
        // Both halves are compared, always, so timing tells nothing about which one failed.
        let user_ok = same(given_user, user);
        let password_ok = same(&hash(given_password), password_hash);
        return if user_ok & password_ok {
            Ok("basic".into())
        } else {
            Err(refuse(
                "invalid_credentials",
                "wrong username or password for this source",
            ))
        };
    }
    Err(refuse("missing_credentials", expected(source)))
}

fn expected(source: &AmpSource) -> String {
    let how = match source.auth {
        AuthMode::Bearer => "Authorization: Bearer <token>",
        AuthMode::Basic => "Authorization: Basic <username:password>",
        AuthMode::Hmac => "X-Signature: sha256=<hex> with X-Timestamp",
    };
    format!(
        "source {:?} expects {how}, or its URL token (?token=)",
        source.name
    )
}

fn verify_signature(
    source: &AmpSource,
    presented: &Presented<'_>,
    now: i64,
    tolerance: i64,
    replay: &ReplayGuard,
) -> Result<Authenticated, ApiError> {
    let Some(secret) = source
        .signing_secret
        .as_ref()
        .filter(|_| source.auth == AuthMode::Hmac)
    else {
        return Err(refuse(
            "invalid_signature",
            format!("source {:?} does not use signatures", source.name),
        ));
    };
    let headers = presented.headers;
    if !headers.contains_key("x-signature") && !headers.contains_key("x-crewai-signature") {
        return Err(refuse(
            "missing_credentials",
            format!(
                "source {:?} takes only signed flow HITL webhooks here: X-Signature: sha256=<hex> \
                 with X-Timestamp (the URL token is not accepted on this endpoint)",
                source.name
            ),
        ));
    }
    // AMP always sends its timestamp; without one a signature could be replayed forever.
    let (sig_header, ts_header) = if headers.contains_key("x-signature") {
        ("x-signature", "x-timestamp")
    } else {
        ("x-crewai-signature", "x-crewai-timestamp")
    };
    if !headers.contains_key(ts_header) {
        return Err(refuse(
            "malformed_signature",
            format!("malformed {ts_header} header: missing"),
        ));
    }
    let keys = SigningKeys::new(&[Secret(secret.clone())]).map_err(|_| {
        ApiError::Internal(anyhow::anyhow!(
            "the signing secret of AMP source {:?} is unusable",
            source.name
        ))
    })?;
    // Only the header pair AMP uses counts: other schemes' headers in the same request are
    // ignored, so they cannot carry the request past the replay check below.
    keys.verify_crewai(
        headers,
        presented.body,
        sig_header,
        ts_header,
        now,
        tolerance,
    )
    .map_err(|e| refuse(e.code(), e.to_string()))?;
    // The signed message, not the header's text, is what may be used once: `sha256=` or not,
    // upper or lower case hex, the same message is the same replay.
    let timestamp = headers
        .get(ts_header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let message = hex::encode(Sha256::digest(presented.body));
    let key = format!("{}:{timestamp}:{message}", source.name);
    if replay.used(&key, now) {
        return Err(refuse(
            "replayed_signature",
            "this signed request was already accepted; AMP signs every delivery afresh",
        ));
    }
    Ok(Authenticated {
        how: "hmac",
        replay_key: Some(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_per_window() {
        let guard = ReplayGuard::default();
        assert!(guard.first_use("s:abc", 1000, 300));
        assert!(!guard.first_use("s:abc", 1100, 300));
        assert!(guard.first_use("s:def", 1100, 300));
        // Past its window it could not verify anyway, and is forgotten.
        assert!(guard.first_use("s:abc", 1700, 300));
    }
}
