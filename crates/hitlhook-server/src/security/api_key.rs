//! API keys: `hhk_` + 40 random alphanumerics (the prefix lets secret scanners find leaks). Only
//! the SHA-256 of a key is stored; the key itself is shown once, at creation.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use hitlhook_domain::{Scope, Timestamp};
use hitlhook_store::{ApiKey, NewApiKey, Store, StoreError};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::http::AppState;

pub const KEY_PREFIX: &str = "hhk_";

/// Generates a new random key.
#[must_use]
pub fn generate() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{body}")
}

/// The stored form of a key.
#[must_use]
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key in the store and returns it with its one-time secret.
/// What a key may be named: a label (`check_label`), not shaped like a key id (`DELETE
/// /v1/keys/{id or name}` must name one key), and not the environment key's audit name.
pub fn check_name(name: &str) -> Result<(), String> {
    hitlhook_domain::checkpoint::check_label("name", name).map_err(|e| e.to_string())?;
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err(
            "name: must not look like a key id (a UUID): keys are revoked by id or name".into(),
        );
    }
    if name.eq_ignore_ascii_case(ENV_ADMIN_NAME) {
        return Err(format!(
            "name: {ENV_ADMIN_NAME} is the audit name of the environment's admin key"
        ));
    }
    Ok(())
}

/// How the `WEBHOOK_API_KEY` caller is recorded in the audit trail (`key:WEBHOOK_API_KEY`).
pub const ENV_ADMIN_NAME: &str = "WEBHOOK_API_KEY";

pub async fn create(
    store: &dyn Store,
    name: &str,
    scope: Scope,
) -> Result<(ApiKey, String), StoreError> {
    let secret = generate();
    let new = NewApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        scope,
        hash_hex: hash(&secret),
        prefix: secret.chars().take(KEY_PREFIX.len() + 4).collect(),
        created_at: Timestamp::now(),
    };
    Ok((store.create_api_key(new).await?, secret))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name, recorded as `key:<name>` in the audit trail.
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// Refuses with 403 unless this caller's scope covers `needed`.
    pub fn require(&self, needed: Scope, what: &str) -> Result<(), ApiError> {
        if self.scope.allows(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                detail: format!(
                    "{what} needs {} {needed} or higher key; key {:?} has scope {}",
                    article(needed),
                    self.name,
                    self.scope
                ),
            })
        }
    }

    /// How this caller appears in `decided_by` and event sources.
    #[must_use]
    pub fn label(&self) -> String {
        format!("key:{}", self.name)
    }
}

/// "an admin", "a reviewer": the article for a scope's name.
fn article(scope: Scope) -> &'static str {
    if scope.to_string().starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Callers whose key has at least the named scope. Routes take one of these before their other
/// extractors, so a key without the scope is refused (403) before the path, query or body is
/// read: an unauthorised caller learns nothing from validation errors.
macro_rules! scoped_caller {
    ($($name:ident => $scope:expr),* $(,)?) => {$(
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($scope, &format!("{} {}", parts.method, parts.uri.path()))?;
                Ok($name(caller))
            }
        }
    )*};
}

scoped_caller!(Ingest => Scope::Ingest, Reviewer => Scope::Reviewer, Admin => Scope::Admin);

/// Reads the key from `Authorization: Bearer <key>` or `X-API-Key: <key>`; an empty one is no
/// key at all.
#[must_use]
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let key = if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let (scheme, key) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    } else {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    key.filter(|k| !k.is_empty())
}

/// Resolves a presented key to a caller: the configured admin key, or an active stored key.
pub async fn authenticate(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let digest = hash(key);
    if let Some(admin) = &state.admin_key_hash
        && bool::from(digest.as_bytes().ct_eq(admin.as_bytes()))
    {
        return Ok(Caller {
            name: ENV_ADMIN_NAME.to_owned(),
            scope: Scope::Admin,
        });
    }
    match state.store.find_api_key(&digest).await? {
        Some(found) => Ok(Caller {
            name: found.name,
            scope: found.scope,
        }),
        None => Err(ApiError::unauthorized(
            "invalid_api_key",
            "the API key is unknown or revoked; create one with `hitlhook keys create`",
        )),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(key) = presented_key(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "unauthorized",
                "this endpoint needs an API key: send Authorization: Bearer <api key>",
            ));
        };
        authenticate(state, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("hhk_") && a.len() == 44);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }
}
