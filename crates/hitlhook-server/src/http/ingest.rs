//! `POST /webhook/crewai`: receive one signed event, or a CrewAI AMP event-stream batch
//! `{"events": [...]}`. Order of checks: size (413), authentication over the raw bytes (401/403),
//! content type (415), JSON (400/422); then the request's events are committed together through
//! the group-commit writer before the 2xx.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hitlhook_domain::event::{MAX_ID_LEN, check_id};
use hitlhook_domain::{
    BatchEvent, EnvelopeError, EventEnvelope, EventIdentity, Incoming, Scope, Timestamp,
};
use hitlhook_store::{IngestItem, IngestOutcome, IngestRejection};
use serde::Serialize;
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
    respond(ingest(&state, &headers, body).await)
}

/// The HTTP answer to an ingest request (counted in `hitlhook_ingest_total`).
pub(crate) fn respond(result: ApiResult<Answer>) -> Response {
    let (outcome, reason) = match &result {
        Ok(Answer::Single { replayed: true, .. }) => ("duplicate", "ok"),
        Ok(_) => ("accepted", "ok"),
        Err(e) => ("refused", e.code()),
    };
    metrics::counter!("hitlhook_ingest_total", "outcome" => outcome, "reason" => reason)
        .increment(1);
    let answer = match result {
        Ok(answer) => answer,
        Err(e) => return e.into_response(),
    };
    let replayed = answer.replayed();
    let mut response = match answer {
        Answer::Single { receipt, .. } => (StatusCode::OK, axum::Json(receipt)).into_response(),
        Answer::Batch(batch) => (StatusCode::OK, axum::Json(batch)).into_response(),
    };
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// What a successful request is told.
pub(crate) enum Answer {
    Single { receipt: ReceiptOut, replayed: bool },
    Batch(BatchOut),
}

impl Answer {
    /// Nothing in the request was new: a redelivery, answered as the first time.
    fn replayed(&self) -> bool {
        match self {
            Answer::Single { replayed, .. } => *replayed,
            Answer::Batch(b) => b.received > 0 && b.duplicates == b.received,
        }
    }

    /// Counts a batch's events whose `id` came earlier in the same batch: received, and
    /// duplicates (they were not stored twice).
    pub(crate) fn with_repeated(mut self, repeated: usize) -> Self {
        if let Answer::Batch(out) = &mut self {
            out.received += repeated;
            out.duplicates += repeated;
        }
        self
    }
}

/// The answer to an AMP event-stream batch: one entry per event, in stored order.
#[derive(Debug, Serialize)]
pub(crate) struct BatchOut {
    status: &'static str,
    received: usize,
    accepted: usize,
    duplicates: usize,
    events: Vec<BatchItemOut>,
}

#[derive(Debug, Serialize)]
pub(crate) struct BatchItemOut {
    /// `accepted`, `duplicate` or `rejected`.
    result: &'static str,
    #[serde(flatten)]
    receipt: Option<ReceiptOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Authenticates the sender: a valid signature in any accepted scheme, or an API key.
async fn authenticate(state: &AppState, headers: &HeaderMap, body: &[u8]) -> ApiResult<String> {
    let signed = ["webhook-signature", "x-crewai-signature", "x-signature"]
        .iter()
        .any(|h| headers.contains_key(*h));
    // An explicit signature is always checked: a bad one is not rescued by a key.
    if !signed && let Some(key) = api_key::presented_key(headers) {
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
/// A `webhook-id` is stored like any other id, so it follows the same rules.
fn identity(
    headers: &HeaderMap,
    envelope: &EventEnvelope,
    body: &[u8],
) -> ApiResult<EventIdentity> {
    if let Some(value) = headers.get("webhook-id").filter(|v| !v.is_empty()) {
        let id = value
            .to_str()
            .ok()
            .filter(|id| check_id("webhook-id", id).is_ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_header",
                    format!(
                        "webhook-id: must be 1 to {MAX_ID_LEN} bytes of printable ASCII (a unique id per message, e.g. msg_2b3c)"
                    ),
                )
            })?;
        return Ok(EventIdentity::from_webhook_id(id));
    }
    if let Some(id) = &envelope.event_id {
        return Ok(EventIdentity::from_event_id(id));
    }
    Ok(EventIdentity::from_body_hash(&hex::encode(Sha256::digest(
        body,
    ))))
}

pub(crate) fn envelope_error(e: EnvelopeError) -> ApiError {
    match e {
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
        e @ EnvelopeError::TooDeep { .. } => ApiError::unprocessable("too_deep", e.to_string()),
    }
}

fn rejection(r: IngestRejection) -> ApiError {
    match r {
        IngestRejection::InvalidCheckpoint(e) => {
            ApiError::unprocessable("invalid_event", e.to_string())
        }
        IngestRejection::CheckpointConflict(id) => ApiError::Conflict {
            code: "checkpoint_conflict",
            detail: format!(
                "checkpoint {id:?} already exists with a different name, kickoff_id or context; use a new checkpoint_id"
            ),
            extra: serde_json::Map::new(),
        },
        IngestRejection::Failed(message) => {
            ApiError::Internal(anyhow::anyhow!("storing the event failed: {message}"))
        }
    }
}

async fn ingest(state: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<Answer> {
    let bytes = read_body(headers, body, &state.config).await?;
    let source = authenticate(state, headers, &bytes).await?;
    require_json(headers)?;
    let incoming = Incoming::parse(&bytes).map_err(envelope_error)?;
    let received_at = Timestamp::now();
    let single = matches!(incoming, Incoming::Single(_));
    let items = match incoming {
        Incoming::Single(envelope) => {
            let identity = identity(headers, &envelope, &bytes)?;
            // The whole body is the stored payload; batch events carry their own text instead.
            let payload =
                String::from_utf8(Vec::from(bytes)).map_err(|_| ApiError::MalformedJson {
                    line: 1,
                    column: 1,
                    message: "the body is not valid UTF-8".into(),
                })?;
            vec![IngestItem {
                identity,
                envelope: *envelope,
                payload,
                source,
                received_at,
            }]
        }
        Incoming::Batch(batch) => {
            let items = batch_items(batch.events, &source, received_at);
            return Ok(commit(state, items, false)
                .await?
                .with_repeated(batch.repeated));
        }
    };
    commit(state, items, single).await
}

/// The items of an event-stream batch: each event is identified by its own `id` (a batch
/// shares one webhook-id), else by the hash of its text.
pub(crate) fn batch_items(
    events: Vec<BatchEvent>,
    source: &str,
    received_at: Timestamp,
) -> Vec<IngestItem> {
    events
        .into_iter()
        .map(|e| IngestItem {
            identity: match &e.envelope.event_id {
                Some(id) => EventIdentity::from_event_id(id),
                None => EventIdentity::from_body_hash(&hex::encode(Sha256::digest(
                    e.payload.as_bytes(),
                ))),
            },
            envelope: e.envelope,
            payload: e.payload,
            source: source.to_owned(),
            received_at,
        })
        .collect()
}

/// Commits `items` through the group-commit writer and tells the sender what happened: one
/// receipt for a `single` event, a per-event list for a batch. Returns after the commit.
pub(crate) async fn commit(
    state: &AppState,
    items: Vec<IngestItem>,
    single: bool,
) -> ApiResult<Answer> {
    let outcomes = state.ingestor.submit(items).await.map_err(|e| {
        ApiError::not_durable(&e)
            .unwrap_or_else(|| ApiError::Internal(anyhow::anyhow!("storing the event failed: {e}")))
    })?;
    if single {
        return match outcomes.into_iter().next() {
            Some(IngestOutcome::Accepted { receipt, .. }) => Ok(Answer::Single {
                receipt: ReceiptOut::from(&receipt),
                replayed: false,
            }),
            Some(IngestOutcome::Duplicate(receipt)) => Ok(Answer::Single {
                receipt: ReceiptOut::from(&receipt),
                replayed: true,
            }),
            Some(IngestOutcome::Rejected(r)) => Err(rejection(r)),
            None => Err(ApiError::Internal(anyhow::anyhow!(
                "the writer returned no outcome"
            ))),
        };
    }
    let mut out = BatchOut {
        status: "accepted",
        received: outcomes.len(),
        accepted: 0,
        duplicates: 0,
        events: Vec::new(),
    };
    for outcome in outcomes {
        out.events.push(match outcome {
            IngestOutcome::Accepted { receipt, .. } => {
                out.accepted += 1;
                BatchItemOut {
                    result: "accepted",
                    receipt: Some(ReceiptOut::from(&receipt)),
                    error: None,
                }
            }
            IngestOutcome::Duplicate(receipt) => {
                out.duplicates += 1;
                BatchItemOut {
                    result: "duplicate",
                    receipt: Some(ReceiptOut::from(&receipt)),
                    error: None,
                }
            }
            IngestOutcome::Rejected(r) => BatchItemOut {
                result: "rejected",
                receipt: None,
                error: Some(r.to_string()),
            },
        });
    }
    Ok(Answer::Batch(out))
}
