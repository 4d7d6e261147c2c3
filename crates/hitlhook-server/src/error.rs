//! The one error type of the HTTP API, rendered as RFC 7807 `application/problem+json` with a
//! stable snake_case `code`. Internal errors are logged with their cause chain and answered with
//! a generic body: no internals leak.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    MalformedJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{detail}")]
    Forbidden { detail: String },
    #[error("{detail}")]
    NotFound { detail: String },
    #[error("{detail}")]
    MethodNotAllowed { detail: String },
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: String,
        extra: Map<String, Value>,
    },
    #[error("request body larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{detail}")]
    RequestTimeout { detail: String },
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    #[error("{detail}")]
    Unprocessable {
        code: &'static str,
        detail: String,
        extra: Map<String, Value>,
    },
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    #[error("{detail}")]
    Unavailable { detail: String },
    /// A service hitlhook called for this request (an AMP deployment) failed or refused.
    #[error("{detail}")]
    Upstream { detail: String },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            code,
            detail: detail.into(),
        }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            detail: detail.into(),
        }
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// The stable snake_case code clients can match on.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// Status, stable code and title. An exhaustive match: a new variant cannot ship without one.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::MalformedJson { .. } => {
                (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON")
            }
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, "Bad request"),
            ApiError::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code, "Unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code, "Conflict"),
            ApiError::RequestTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            ApiError::Unprocessable { code, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Unprocessable request",
            ),
            ApiError::Gone { code, .. } => (StatusCode::GONE, code, "Gone"),
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            ApiError::Upstream { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", "Bad gateway"),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            ),
        }
    }
}

impl ApiError {
    /// A write the disk would not confirm: the operator must act (the disk), and the client may
    /// send it again once the server is back, so a 503 rather than an internal error.
    pub fn not_durable(e: &hitlhook_store::StoreError) -> Option<Self> {
        matches!(e, hitlhook_store::StoreError::NotDurable { .. }).then(|| ApiError::Unavailable {
            detail: format!(
                "{e}. What it wrote may be stored but is not known to be on disk: send it again once the server is back"
            ),
        })
    }
}

impl From<hitlhook_store::StoreError> for ApiError {
    fn from(e: hitlhook_store::StoreError) -> Self {
        ApiError::not_durable(&e).unwrap_or_else(|| ApiError::Internal(anyhow::Error::new(e)))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        let detail = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "an internal error occurred; the request was not applied. Details are in the server log.".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({
            "type": format!("urn:hitlhook:problem:{code}"),
            "title": title,
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
        });
        if let (
            ApiError::Conflict { extra, .. } | ApiError::Unprocessable { extra, .. },
            Some(obj),
        ) = (&self, body.as_object_mut())
        {
            obj.extend(extra.clone());
        }
        if let (ApiError::MalformedJson { line, column, .. }, Some(obj)) =
            (&self, body.as_object_mut())
        {
            obj.insert("line".into(), json!(line));
            obj.insert("column".into(), json!(column));
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
