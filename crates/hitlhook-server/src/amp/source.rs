//! Validating a new AMP source and generating the secrets it needs. Inbound secrets that are only
//! verified (bearer token, Basic password) are stored as SHA-256 hashes and shown once; the HMAC
//! secret, the URL token and the deployment token are kept as given, since hitlhook computes or
//! re-sends them. The same rules serve the API and the CLI.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hitlhook_domain::Timestamp;
use hitlhook_domain::amp::{AuthMode, EmitMap, check_source_name};
use hitlhook_store::AmpSource;
use rand::distr::Alphanumeric;
use rand::{Rng, RngCore};
use serde::Deserialize;

use crate::config::Secret;
use crate::delivery::http::{literal_ip, parse_target};
use crate::delivery::ssrf::Guard;
use crate::security::api_key::hash;
use crate::security::signature::SigningKeys;

/// What an operator asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    pub name: String,
    /// `bearer`, `basic` or `hmac`.
    pub auth: String,
    /// Bearer: the token AMP sends; generated when absent.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Basic: the username (required) and password (generated when absent).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// HMAC: the webhook's signing secret from AMP's settings; generated when absent.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// The deployment's base URL (`https://<crew>.crewai.com`) and its bearer token, for
    /// `/resume`, `/stop`, `/kickoff` and `/status`.
    #[serde(default)]
    pub deployment_url: Option<String>,
    #[serde(default)]
    pub deployment_token: Option<Secret>,
    #[serde(default)]
    pub emit_map: Option<EmitMap>,
}

/// The secrets of a new source, shown once: the only place their values are written out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Revealed {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shown")]
    pub token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shown")]
    pub password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shown")]
    pub signing_secret: Option<Secret>,
    #[serde(serialize_with = "shown_one")]
    pub url_token: Secret,
}

fn shown<S: serde::Serializer>(secret: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_some(secret.expose()),
        None => s.serialize_none(),
    }
}

fn shown_one<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

fn random_text(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn checked_secret(
    field: &'static str,
    value: &str,
    min: usize,
) -> Result<(), (&'static str, String)> {
    if value.len() < min || value.len() > 512 {
        return Err((field, format!("must be {min} to 512 characters")));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err((
            field,
            "must not contain spaces or control characters".into(),
        ));
    }
    Ok(())
}

fn unexpected(
    field: &'static str,
    given: bool,
    mode: AuthMode,
) -> Result<(), (&'static str, String)> {
    if given {
        Err((field, format!("does not apply to auth {}", mode.as_str())))
    } else {
        Ok(())
    }
}

/// Validates `req` and builds the source to store, with the secrets to show once. Errors name
/// the field.
pub fn build(
    guard: &Guard,
    req: SourceRequest,
    now: Timestamp,
) -> Result<(AmpSource, Revealed), (&'static str, String)> {
    check_source_name(&req.name).map_err(|e| ("name", e))?;
    let auth = AuthMode::parse(&req.auth).ok_or((
        "auth",
        format!("{:?} is not bearer, basic or hmac", req.auth),
    ))?;
    let mut revealed = Revealed {
        url_token: Secret(random_text(40)),
        token: None,
        password: None,
        signing_secret: None,
    };
    let mut source = AmpSource {
        name: req.name,
        auth,
        token_hash: None,
        basic_username: None,
        password_hash: None,
        signing_secret: None,
        url_token: revealed.url_token.expose().to_owned(),
        deployment_url: None,
        deployment_token: None,
        emit_map: req.emit_map.unwrap_or_default(),
        created_at: now,
    };
    match auth {
        AuthMode::Bearer => {
            unexpected("username", req.username.is_some(), auth)?;
            unexpected("password", req.password.is_some(), auth)?;
            unexpected("signing_secret", req.signing_secret.is_some(), auth)?;
            let token = req
                .token
                .unwrap_or_else(|| Secret(format!("amp_{}", random_text(40))));
            checked_secret("token", token.expose(), 16)?;
            source.token_hash = Some(hash(token.expose()));
            revealed.token = Some(token);
        }
        AuthMode::Basic => {
            unexpected("token", req.token.is_some(), auth)?;
            unexpected("signing_secret", req.signing_secret.is_some(), auth)?;
            let user = req
                .username
                .ok_or(("username", "is required for auth basic".to_owned()))?;
            if user.is_empty()
                || user.contains(':')
                || user.len() > 128
                || user.chars().any(char::is_control)
            {
                return Err(("username", "must be 1 to 128 characters without ':'".into()));
            }
            let password = req.password.unwrap_or_else(|| Secret(random_text(32)));
            checked_secret("password", password.expose(), 12)?;
            source.basic_username = Some(user);
            source.password_hash = Some(hash(password.expose()));
            revealed.password = Some(password);
        }
        AuthMode::Hmac => {
            unexpected("token", req.token.is_some(), auth)?;
            unexpected("username", req.username.is_some(), auth)?;
            unexpected("password", req.password.is_some(), auth)?;
            let secret = req.signing_secret.unwrap_or_else(|| {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                Secret(format!("whsec_{}", STANDARD.encode(bytes)))
            });
            checked_secret("signing_secret", secret.expose(), 16)?;
            SigningKeys::new(std::slice::from_ref(&secret)).map_err(|_| {
                (
                    "signing_secret",
                    "whsec_ must be followed by base64".to_owned(),
                )
            })?;
            source.signing_secret = Some(secret.expose().to_owned());
            revealed.signing_secret = Some(secret);
        }
    }
    match (req.deployment_url, req.deployment_token) {
        (Some(url), Some(token)) => {
            let parsed = parse_target(&url).map_err(|e| ("deployment_url", e))?;
            if let Some(ip) = literal_ip(&parsed) {
                guard
                    .check(ip)
                    .map_err(|e| ("deployment_url", e.to_string()))?;
            }
            checked_secret("deployment_token", token.expose(), 8)?;
            source.deployment_url = Some(parsed.to_string().trim_end_matches('/').to_owned());
            source.deployment_token = Some(token.0);
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(("deployment_token", "is required with deployment_url".into()));
        }
        (None, Some(_)) => {
            return Err(("deployment_url", "is required with deployment_token".into()));
        }
    }
    for (field, label) in [
        ("emit_map.continue", &source.emit_map.on_continue),
        ("emit_map.stop", &source.emit_map.on_stop),
        ("emit_map.skip", &source.emit_map.on_skip),
    ] {
        if let Some(l) = label
            && (l.is_empty() || l.len() > 256)
        {
            return Err((field, "must be 1 to 256 characters".into()));
        }
    }
    Ok((source, revealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: &str) -> SourceRequest {
        SourceRequest {
            name: "prod".into(),
            auth: auth.into(),
            ..SourceRequest::default()
        }
    }

    #[test]
    fn generated_secrets_are_stored_hashed_or_kept_as_needed() {
        let guard = Guard::new(&[]).expect("guard");
        let (s, shown) = build(&guard, req("bearer"), Timestamp(1)).expect("bearer");
        let token = shown.token.expect("token shown");
        assert_eq!(s.token_hash.as_deref(), Some(hash(token.expose()).as_str()));
        assert_eq!(s.url_token, shown.url_token.expose());
        let (s, shown) = build(
            &guard,
            SourceRequest {
                username: Some("amp".into()),
                ..req("basic")
            },
            Timestamp(1),
        )
        .expect("basic");
        assert_eq!(
            s.password_hash,
            shown.password.as_ref().map(|p| hash(p.expose())),
            "only the hash is stored"
        );
        let (s, shown) = build(&guard, req("hmac"), Timestamp(1)).expect("hmac");
        assert_eq!(
            s.signing_secret.as_deref(),
            shown.signing_secret.as_ref().map(Secret::expose)
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let guard = Guard::new(&[]).expect("guard");
        let cases: Vec<(&str, SourceRequest)> = vec![
            (
                "name",
                SourceRequest {
                    name: "Bad Name".into(),
                    ..req("bearer")
                },
            ),
            ("auth", req("oauth")),
            ("username", req("basic")),
            (
                "token",
                SourceRequest {
                    token: Some("short".into()),
                    ..req("bearer")
                },
            ),
            (
                "signing_secret",
                SourceRequest {
                    token: None,
                    signing_secret: Some("whsec_!!!!!!!!!!!!!!!!".into()),
                    ..req("hmac")
                },
            ),
            (
                "password",
                SourceRequest {
                    password: Some("p".repeat(20).into()),
                    ..req("bearer")
                },
            ),
            (
                "deployment_token",
                SourceRequest {
                    deployment_url: Some("https://crew.crewai.com".into()),
                    ..req("bearer")
                },
            ),
            (
                "deployment_url",
                SourceRequest {
                    deployment_url: Some("http://10.1.2.3".into()),
                    deployment_token: Some("t".repeat(20).into()),
                    ..req("bearer")
                },
            ),
        ];
        for (field, r) in cases {
            let got = build(&guard, r, Timestamp(1))
                .map(|_| ())
                .map_err(|(f, _)| f);
            assert_eq!(got, Err(field));
        }
    }
}
