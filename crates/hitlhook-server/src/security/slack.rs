//! Slack request signing (`v0`): `X-Slack-Signature: v0=<hex HMAC-SHA256(secret,
//! "v0:{ts}:{raw body}")>` with `X-Slack-Request-Timestamp` within ±300 s. The signing secret's
//! UTF-8 bytes are the key (it is not hex-decoded). Verified over the raw bytes before anything
//! is parsed; the comparison is constant-time. Errors reuse [`SignatureError`]'s stable codes.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::security::signature::{SignatureError, hmac};

/// Slack's replay window, both ways (the official SDKs use 5 minutes).
pub const TOLERANCE_SECS: i64 = 300;

/// The `X-Slack-Signature` value for `body` sent at `timestamp` (for tests and tools).
#[must_use]
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = hmac(
        secret.as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    format!("v0={}", hex::encode(tag))
}

/// Verifies a request from Slack at `now_secs`.
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let text = |name: &'static str| -> Result<&str, SignatureError> {
        headers
            .get(name)
            .ok_or(SignatureError::Missing)?
            .to_str()
            .map(str::trim)
            .map_err(|_| SignatureError::Malformed {
                header: name,
                problem: "not ASCII",
            })
    };
    let signature = text("x-slack-signature")?;
    let timestamp = text("x-slack-request-timestamp")?;
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed {
        header: "x-slack-request-timestamp",
        problem: "expected integer Unix seconds",
    })?;
    crate::security::signature::check_window(ts, now_secs, TOLERANCE_SECS)?;
    let given = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed {
            header: "x-slack-signature",
            problem: "expected v0=<hex>",
        })?;
    let expected = hmac(
        secret.as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    if bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Slack's published example (api.slack.com "Verifying requests from Slack", also the test
    /// vector of Slack's own Python SDK).
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const EXPECTED: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(sig: &str, ts: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-signature", HeaderValue::from_str(sig).expect("v"));
        h.insert(
            "x-slack-request-timestamp",
            HeaderValue::from_str(ts).expect("v"),
        );
        h
    }

    #[test]
    fn slacks_published_example() {
        assert_eq!(sign(SECRET, TS, BODY.as_bytes()), EXPECTED);
        assert_eq!(
            verify(
                SECRET,
                &headers(EXPECTED, TS),
                BODY.as_bytes(),
                1_531_420_618
            ),
            Ok(())
        );
    }

    #[test]
    fn refusal_table() {
        let now = 1_531_420_618;
        let body = BODY.as_bytes();
        let fresh = |ts: i64| headers(&sign(SECRET, &ts.to_string(), body), &ts.to_string());
        let cases: Vec<(&str, HeaderMap, &[u8], Result<(), &str>)> = vec![
            ("at the edge of the window", fresh(now - 300), body, Ok(())),
            ("stale", fresh(now - 301), body, Err("stale_timestamp")),
            ("future", fresh(now + 301), body, Err("future_timestamp")),
            // Any i64 can arrive; the distance must not overflow.
            ("i64::MIN", fresh(i64::MIN), body, Err("stale_timestamp")),
            ("i64::MAX", fresh(i64::MAX), body, Err("future_timestamp")),
            (
                "tampered body",
                headers(EXPECTED, TS),
                b"token=other",
                Err("invalid_signature"),
            ),
            (
                "wrong secret",
                headers(&sign("other", TS, body), TS),
                body,
                Err("invalid_signature"),
            ),
            (
                "timestamp swapped",
                headers(EXPECTED, "1531420619"),
                body,
                Err("invalid_signature"),
            ),
            (
                "no v0 prefix",
                headers(EXPECTED.trim_start_matches("v0="), TS),
                body,
                Err("malformed_signature"),
            ),
            (
                "not hex",
                headers("v0=zz", TS),
                body,
                Err("malformed_signature"),
            ),
            (
                "bad timestamp",
                headers(EXPECTED, "yesterday"),
                body,
                Err("malformed_signature"),
            ),
            ("unsigned", HeaderMap::new(), body, Err("missing_signature")),
        ];
        for (name, h, b, want) in cases {
            assert_eq!(
                verify(SECRET, &h, b, now).map_err(|e| e.code()),
                want,
                "{name}"
            );
        }
    }
}
