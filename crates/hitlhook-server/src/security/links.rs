//! Signed email decision links. Each link names one checkpoint, one recipient and one action,
//! expires, and is signed with a key derived from the server's webhook secret:
//! `base64url(json claims) "." base64url(HMAC-SHA256(key, "hitlhook-link.v1." + claims))`.
//! Opening a link only shows a confirmation page; the POST from that page decides, as the
//! recipient. A link is single-use by construction: once any decision is recorded the checkpoint
//! is closed, and every link of it only shows who decided.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hitlhook_domain::{Action, Timestamp};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::security::signature::hmac;

const DOMAIN: &[u8] = b"hitlhook-link.v1.";

/// What a link grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The checkpoint.
    #[serde(rename = "c")]
    pub checkpoint_id: String,
    /// The recipient the link was mailed to; becomes `decided_by`.
    #[serde(rename = "r")]
    pub recipient: String,
    #[serde(rename = "a")]
    pub action: Action,
    /// Expiry, Unix milliseconds.
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// The delivery (email) the link was sent in, for the audit trail.
    #[serde(rename = "d")]
    pub delivery_id: String,
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is malformed (was it cut off or changed?)")]
    Malformed,
    #[error("this link's signature is not valid")]
    BadSignature,
    #[error("this link has expired")]
    Expired,
}

impl LinkError {
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::Malformed => "invalid_link",
            LinkError::BadSignature => "invalid_link_signature",
            LinkError::Expired => "link_expired",
        }
    }
}

/// Signs and verifies links.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    /// A signer whose key is derived from `secret` (never the secret itself, so a leaked link key
    /// could not sign webhooks and the other way round).
    #[must_use]
    pub fn new(secret: &[u8]) -> Self {
        LinkSigner {
            key: hmac(secret, &[b"hitlhook email link key"]),
        }
    }

    #[must_use]
    pub fn sign(&self, claims: &LinkClaims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(hmac(&self.key, &[DOMAIN, body.as_bytes()]));
        format!("{body}.{tag}")
    }

    /// The claims of a valid, unexpired link.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<LinkClaims, LinkError> {
        let (body, tag) = token.trim().split_once('.').ok_or(LinkError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| LinkError::Malformed)?;
        let expected = hmac(&self.key, &[DOMAIN, body.as_bytes()]);
        if !bool::from(tag.as_slice().ct_eq(expected.as_slice())) {
            return Err(LinkError::BadSignature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| LinkError::Malformed)?;
        let claims: LinkClaims = serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)?;
        if now.millis() >= claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> LinkClaims {
        LinkClaims {
            checkpoint_id: "cp-1".into(),
            recipient: "alice@example.com".into(),
            action: Action::Continue,
            expires_at: 2_000,
            delivery_id: "d-1".into(),
        }
    }

    #[test]
    fn link_table() {
        let signer = LinkSigner::new(b"secret");
        let token = signer.sign(&claims());
        assert_eq!(signer.verify(&token, Timestamp(1_999)), Ok(claims()));
        let (body, tag) = token.split_once('.').expect("dot");
        let forged_body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&LinkClaims {
                recipient: "mallory@example.com".into(),
                ..claims()
            })
            .expect("json"),
        );
        let cases: Vec<(&str, String, Timestamp, Result<(), LinkError>)> = vec![
            (
                "expired",
                token.clone(),
                Timestamp(2_000),
                Err(LinkError::Expired),
            ),
            (
                "other key",
                LinkSigner::new(b"other").sign(&claims()),
                Timestamp(0),
                Err(LinkError::BadSignature),
            ),
            (
                "forged claims",
                format!("{forged_body}.{tag}"),
                Timestamp(0),
                Err(LinkError::BadSignature),
            ),
            (
                "no dot",
                body.to_owned(),
                Timestamp(0),
                Err(LinkError::Malformed),
            ),
            (
                "bad base64 tag",
                format!("{body}.!!!"),
                Timestamp(0),
                Err(LinkError::Malformed),
            ),
            (
                "cut off",
                token[..token.len() - 3].to_owned(),
                Timestamp(0),
                Err(LinkError::BadSignature),
            ),
            (
                "empty",
                String::new(),
                Timestamp(0),
                Err(LinkError::Malformed),
            ),
        ];
        for (name, t, now, want) in cases {
            assert_eq!(signer.verify(&t, now).map(|_| ()), want, "{name}");
        }
        // A signed body that is not JSON claims is malformed, not trusted.
        let junk = URL_SAFE_NO_PAD.encode(b"not json");
        let tag = URL_SAFE_NO_PAD.encode(hmac(&signer.key, &[DOMAIN, junk.as_bytes()]));
        assert_eq!(
            signer.verify(&format!("{junk}.{tag}"), Timestamp(0)),
            Err(LinkError::Malformed)
        );
    }
}
