//! `POST /webhook/crewai`: receive one signed event. Order of checks: size (413), authentication
//! over the raw bytes (401/403), content type (415), JSON (400/422); then the event is committed
//! through the group-commit writer before the 2xx.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hitlhook_domain::{EnvelopeError, EventEnvelope, EventIdentity, Scope, Timestamp};
use hitlhook_store::{IngestItem, IngestOutcome, IngestRejection};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::dto::ReceiptOut;
use crate::http::extract::{read_body, require_json};
use crate::security::api_key;
use crate::security::signature::Verified;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhook/crewai", post(receive_event))
}

async fn receive_event(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = ingest(&state, &headers, body).await;
    let outcome = match &result {
        Ok((_, replayed)) if *replayed => "duplicate",
        Ok(_) => "accepted",
        Err(_) => "refused",
    };
    let reason = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.code().to_owned(),
    };
    metrics::counter!("hitlhook_ingest_total", "outcome" => outcome, "reason" => reason)
        .increment(1);
    match result {
        Ok((receipt, replayed)) => {
            let mut response = (StatusCode::OK, axum::Json(receipt)).into_response();
            if replayed {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Authenticates the sender: a valid signature in any accepted scheme, or an API key.
async fn authenticate(state: &AppState, headers: &HeaderMap, body: &[u8]) -> ApiResult<String> {
    let signed = ["webhook-signature", "x-crewai-signature", "x-signature"]
        .iter()
        .any(|h| headers.contains_key(*h));
    let key = headers
        .get("authorization")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .strip_prefix("Bearer ")
                .or_else(|| v.trim().strip_prefix("bearer "))
                .unwrap_or(v.trim())
        });
    if !signed && let Some(key) = key {
        let caller = api_key::authenticate(state, key).await?;
        caller.require(Scope::Ingest, "sending events")?;
        return Ok(caller.label());
    }
    let tolerance = i64::try_from(state.config.signature_tolerance_secs).unwrap_or(i64::MAX);
    match state
        .keys
        .verify(headers, body, Timestamp::now().unix_seconds(), tolerance)
    {
        Ok(Verified::CrewAi) => Ok("signature:crewai".to_owned()),
        Ok(Verified::StandardWebhooks { .. }) => Ok("signature:standard-webhooks".to_owned()),
        Err(e) => Err(ApiError::unauthorized(e.code(), e.to_string())),
    }
}

/// The event's identity: `webhook-id`, else the body's `event_id`, else the body's SHA-256.
fn identity(headers: &HeaderMap, envelope: &EventEnvelope, body: &[u8]) -> EventIdentity {
    if let Some(id) = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return EventIdentity::from_webhook_id(id);
    }
    if let Some(id) = &envelope.event_id {
        return EventIdentity::from_event_id(id);
    }
    EventIdentity::from_body_hash(&hex::encode(Sha256::digest(body)))
}

async fn ingest(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(ReceiptOut, bool)> {
    let bytes = read_body(headers, body, state.config.max_body_bytes).await?;
    let source = authenticate(state, headers, &bytes).await?;
    require_json(headers)?;
    let envelope = EventEnvelope::parse(&bytes).map_err(|e| match e {
        EnvelopeError::Syntax {
            line,
            column,
            message,
        } => ApiError::MalformedJson {
            line,
            column,
            message,
        },
        EnvelopeError::Schema { path, message } => {
            ApiError::unprocessable("invalid_event", format!("{path}: {message}"))
        }
    })?;
    let payload = String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::MalformedJson {
        line: 1,
        column: 1,
        message: "the body is not valid UTF-8".into(),
    })?;
    let item = IngestItem {
        identity: identity(headers, &envelope, &bytes),
        envelope,
        payload,
        source,
        received_at: Timestamp::now(),
    };
    let outcome = state
        .ingestor
        .submit(item)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("storing the event failed: {e}")))?;
    match outcome {
        IngestOutcome::Accepted { receipt, .. } => Ok((ReceiptOut::from(&receipt), false)),
        IngestOutcome::Duplicate(receipt) => Ok((ReceiptOut::from(&receipt), true)),
        IngestOutcome::Rejected(IngestRejection::InvalidCheckpoint(e)) => {
            Err(ApiError::unprocessable("invalid_event", e.to_string()))
        }
        IngestOutcome::Rejected(IngestRejection::CheckpointConflict(id)) => {
            Err(ApiError::Conflict {
                code: "checkpoint_conflict",
                detail: format!(
                    "checkpoint {id:?} already exists with a different name, kickoff_id or context; use a new checkpoint_id"
                ),
                extra: serde_json::Map::new(),
            })
        }
        IngestOutcome::Rejected(IngestRejection::Failed(message)) => Err(ApiError::Internal(
            anyhow::anyhow!("storing the event failed: {message}"),
        )),
    }
}
