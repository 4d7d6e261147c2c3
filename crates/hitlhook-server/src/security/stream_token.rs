//! Short-lived tokens that let a browser open the live stream without putting an API key in a
//! URL. `POST /v1/stream-tokens` (API key in a header) mints one; `GET /ws?token=` spends it.
//!
//! A token is `hst_<payload>.<mac>`: the payload (base64url JSON) names the key it was minted
//! with, that key's scope, an expiry and a random nonce; the mac is HMAC-SHA256 over the payload
//! with a server-side key that never leaves the process. Tokens are single-use on the node that
//! checks them (a leaked URL cannot be replayed there) and live `--stream-token-ttl-secs` (60 s).
//! They only open a stream: the connection outlives the token, and nothing else accepts one.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hitlhook_domain::{Scope, Timestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::security::api_key::Caller;
use crate::security::signature::hmac;

/// What distinguishes these tokens from API keys (`hhk_`) for people and secret scanners.
pub const TOKEN_PREFIX: &str = "hst_";

/// Why a token was refused; each maps to a stable API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the stream token is malformed or was not issued by this server")]
    Invalid,
    #[error("the stream token has expired; get a new one from POST /v1/stream-tokens")]
    Expired,
    #[error("the stream token was used already; get a new one for every connection")]
    Used,
}

impl TokenError {
    /// The stable error code for the API.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Invalid => "invalid_stream_token",
            TokenError::Expired => "expired_stream_token",
            TokenError::Used => "used_stream_token",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Name of the API key the token was minted with.
    n: String,
    /// Its scope at minting time.
    s: Scope,
    /// Expiry, Unix milliseconds.
    e: i64,
    /// Random nonce: makes every token distinct and lets a node refuse a second use.
    j: String,
}

/// Mints and checks stream tokens.
pub struct StreamTokens {
    key: Vec<u8>,
    ttl_ms: i64,
    /// Nonces already spent, with their expiry (pruned as they expire).
    spent: Mutex<HashMap<String, i64>>,
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct Minted {
    /// `hst_<payload>.<mac>`.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl StreamTokens {
    /// Tokens signed with a key derived from `secret`, or with a random key when `None`.
    #[must_use]
    pub fn new(secret: Option<&Secret>, ttl_secs: u64) -> Self {
        let key = match secret {
            // Derive rather than use the secret itself, so the key is specific to this purpose.
            Some(s) => hmac(s.expose().as_bytes(), &[b"hitlhook:stream-token:v1"]),
            None => {
                let mut key = vec![0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            }
        };
        StreamTokens {
            key,
            ttl_ms: i64::try_from(ttl_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX),
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// How long a token lives, in seconds.
    #[must_use]
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_ms / 1000
    }

    /// A token for `caller`, valid from `now` for the configured lifetime.
    #[must_use]
    pub fn mint(&self, caller: &Caller, now: Timestamp) -> Minted {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let expires_at = Timestamp::from_millis(now.millis().saturating_add(self.ttl_ms));
        let claims = Claims {
            n: caller.name.clone(),
            s: caller.scope,
            e: expires_at.millis(),
            j: hex::encode(nonce),
        };
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = URL_SAFE_NO_PAD.encode(hmac(&self.key, &[payload.as_bytes()]));
        Minted {
            token: format!("{TOKEN_PREFIX}{payload}.{mac}"),
            expires_at,
        }
    }

    /// Checks a token and spends it. The caller must still check that the key it names is
    /// active (see `http::stream`), so a revoked key's tokens stop working at once.
    pub fn redeem(&self, token: &str, now: Timestamp) -> Result<Caller, TokenError> {
        let body = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::Invalid)?;
        let (payload, mac) = body.split_once('.').ok_or(TokenError::Invalid)?;
        let presented = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Invalid)?;
        let expected = hmac(&self.key, &[payload.as_bytes()]);
        if !bool::from(presented.ct_eq(&expected)) {
            return Err(TokenError::Invalid);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        if now.millis() >= claims.e {
            return Err(TokenError::Expired);
        }
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spent.retain(|_, expiry| *expiry > now.millis());
        if spent.insert(claims.j, claims.e).is_some() {
            return Err(TokenError::Used);
        }
        Ok(Caller {
            name: claims.n,
            scope: claims.s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Caller {
        Caller {
            name: "alice".into(),
            scope: Scope::Reviewer,
        }
    }

    #[test]
    fn a_token_works_once_and_only_before_it_expires() {
        let tokens = StreamTokens::new(None, 60);
        let now = Timestamp::from_millis(1_000_000);
        let minted = tokens.mint(&alice(), now);
        assert!(minted.token.starts_with("hst_"));
        assert_eq!(minted.expires_at.millis(), 1_060_000);
        assert_eq!(tokens.redeem(&minted.token, now), Ok(alice()));
        assert_eq!(tokens.redeem(&minted.token, now), Err(TokenError::Used));
        let late = tokens.mint(&alice(), now);
        assert_eq!(
            tokens.redeem(&late.token, Timestamp::from_millis(1_060_000)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let now = Timestamp::from_millis(1_000_000);
        let ours = StreamTokens::new(Some(&Secret("k1".into())), 60);
        let theirs = StreamTokens::new(Some(&Secret("k2".into())), 60);
        let token = theirs.mint(&alice(), now).token;
        assert_eq!(ours.redeem(&token, now), Err(TokenError::Invalid));
        // Same key on two nodes: a token from one works on the other.
        let twin = StreamTokens::new(Some(&Secret("k2".into())), 60);
        assert_eq!(twin.redeem(&token, now), Ok(alice()));
        // Raising the scope in the payload breaks the mac.
        let (payload, mac) = token[4..].split_once('.').expect("shape");
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        claims["s"] = "admin".into();
        let forged = format!(
            "hst_{}.{mac}",
            URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes())
        );
        assert_eq!(theirs.redeem(&forged, now), Err(TokenError::Invalid));
        for junk in ["", "hst_", "hst_a.b", "hhk_abc", "hst_!!!.???"] {
            assert_eq!(ours.redeem(junk, now), Err(TokenError::Invalid), "{junk}");
        }
    }
}
