//! Extractors that turn every malformed request into a precise [`ApiError`]: body size (413),
//! content type (415), JSON syntax with its position (400), schema with the offending field
//! (422), and query strings (400).

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::http::AppState;

/// Reads the whole body, refusing anything over `limit` bytes without reading past it.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })
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
        Ok(())
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
/// with the field path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from an array too; request bodies must be objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "body: must be a JSON object, not an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_owned();
        if inner.is_data() {
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::unprocessable("invalid_request", format!("{field}: {message}"))
        } else {
            ApiError::MalformedJson {
                line: inner.line(),
                column: inner.column(),
                message,
            }
        }
    })
}

/// A JSON request body with the checks above, in that order.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, state.config.max_body_bytes).await?;
        require_json(&parts.headers)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Query parameters; a malformed query answers 400 `invalid_query` saying what is wrong.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}
