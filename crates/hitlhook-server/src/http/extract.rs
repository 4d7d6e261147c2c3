//! Extractors that turn every malformed request into a precise [`ApiError`]: body size (413),
//! an unreadable body (400), content type (415), JSON syntax with its position (400), schema
//! with the offending field (422), and query strings (400). Ids and query values with control
//! characters are refused here, once for every route: no stored id holds one, and PostgreSQL
//! cannot even compare text holding NUL.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hitlhook_domain::event::{MAX_JSON_DEPTH, check_depth};
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::ApiError;
use crate::http::AppState;

/// Reads the whole body, refusing anything over `HITLHOOK_MAX_BODY_BYTES` without reading past
/// it, and a body that takes longer than `HITLHOOK_HEADER_READ_TIMEOUT_SECS` to arrive. The
/// connection's header timeout does not cover the body: without this, a client announcing a
/// body and sending none would hold its connection (and its slot under the connection cap)
/// forever, before any credential is checked.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    config: &Config,
) -> Result<Bytes, ApiError> {
    let timeout = Duration::from_secs(config.header_read_timeout_secs.max(1));
    tokio::time::timeout(
        timeout,
        read_body_untimed(headers, body, config.max_body_bytes),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::RequestTimeout {
            detail: format!(
                "the request body did not arrive within {} s; send it with the headers",
                timeout.as_secs()
            ),
        })
    })
}

async fn read_body_untimed(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Read frame by frame: only going over `limit` is a 413; a broken chunked encoding or a
    // client that hangs up mid-body is a different failure.
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "reading the request body failed");
            ApiError::bad_request(
                "malformed_body",
                "the request body could not be read (broken chunked encoding, or the connection closed before the body ended); send the request again",
            )
        })?;
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// Refuses bodies that are not declared as JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        // JSON is UTF-8 (RFC 8259); a body declared in another charset would be misread.
        let charset = content_type.split(';').skip(1).find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
        });
        match charset.as_deref() {
            None | Some("utf-8" | "utf8") => Ok(()),
            Some(other) => Err(ApiError::UnsupportedMediaType {
                detail: format!(
                    "JSON must be UTF-8: send Content-Type: application/json (optionally with charset=utf-8), not charset={other}"
                ),
            }),
        }
    } else {
        let got = if content_type.is_empty() {
            "no Content-Type".to_owned()
        } else {
            format!("Content-Type {content_type:?}")
        };
        Err(ApiError::UnsupportedMediaType {
            detail: format!("expected Content-Type: application/json, got {got}"),
        })
    }
}

/// Parses JSON into `T`, telling syntax errors (400, with position) from schema errors (422,
/// with the field path). Nesting beyond [`MAX_JSON_DEPTH`], text after the value and NUL in
/// any string are refused too.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from an array too; request bodies must be objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "body: must be a JSON object, not an array",
        ));
    }
    // The same nesting limit as events, so what is stored stays readable everywhere.
    if let Err(e) = check_depth(bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::unprocessable("too_deep", e.to_string()));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let syntax = |inner: &serde_json::Error| ApiError::MalformedJson {
        line: inner.line(),
        column: inner.column(),
        message: hitlhook_domain::event::json_message(inner),
    };
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = if path == "." { "body".to_owned() } else { path };
        if inner.is_data() {
            let message = hitlhook_domain::event::json_message(&inner);
            ApiError::unprocessable("invalid_request", format!("{field}: {message}"))
        } else if hitlhook_domain::event::is_wrong_type(bytes, &inner) {
            let message = hitlhook_domain::event::EXPECTED_ONE_OF_THE_STRINGS;
            ApiError::unprocessable("invalid_request", format!("{field}: {message}"))
        } else {
            syntax(&inner)
        }
    })?;
    // One JSON value, nothing after it: trailing text means the body is not what was meant.
    de.end().map_err(|e| syntax(&e))?;
    if let Some(field) = nul_field(bytes) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!("{field}: must not contain NUL (\\u0000) characters"),
        ));
    }
    Ok(value)
}

/// The path of the first string (or key) holding NUL, if any. Such text cannot be stored on
/// PostgreSQL, so it is refused naming the field instead of failing later.
fn nul_field(bytes: &[u8]) -> Option<String> {
    // NUL can only arrive as the escape `\u0000` (raw control characters are invalid JSON).
    if !bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    fn walk(value: &serde_json::Value, path: &str) -> Option<String> {
        match value {
            serde_json::Value::String(s) if s.contains('\0') => Some(path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{path}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
                let here = if path == "body" {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.contains('\0') {
                    Some(here)
                } else {
                    walk(v, &here)
                }
            }),
            _ => None,
        }
    }
    walk(&value, "body")
}

/// A JSON request body with the checks above, in that order.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, &state.config).await?;
        require_json(&parts.headers)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Query parameters; a malformed query answers 400 `invalid_query` saying what is wrong.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        if let Some((name, _)) = pairs
            .0
            .iter()
            .find(|(k, v)| has_control(k) || has_control(v))
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("{name}: must not contain control characters (such as %00)"),
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// Path parameters; a malformed path answers 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // No id is stored with a control character (ingest refuses them), so such a path
        // names nothing: 404, before the store is asked.
        if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await
            && let Some((_, value)) = raw.iter().find(|(_, v)| has_control(v))
        {
            return Err(ApiError::not_found(format!(
                "nothing is named {value:?}: ids never contain control characters (such as %00)"
            )));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}
