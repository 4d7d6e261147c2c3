//! AMP's inbound webhooks, one explicit path per payload shape and source:
//! `POST /amp/{source}/events` (event-stream batches), `/human-input` (crew `humanInputWebhook`),
//! `/flow-hitl` (flow HITL `new_request`/`escalation`), and the legacy `/task`, `/step`, `/crew`
//! webhooks; the source's URL token may also be the last path segment. Checks in order: route
//! (404), size (413), source (404), authentication (401), content type (415), JSON (400/422);
//! then the events are committed through the group-commit writer before the 2xx, with the same
//! idempotency as `/webhook/crewai`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use hitlhook_domain::amp::AuthMode;
use hitlhook_domain::amp::inbound::{self, AmpEvent, FlowEvent, FlowHook, Key, LegacyHook};
use hitlhook_domain::{Batch, EventIdentity, EventKind, Timestamp};
use hitlhook_store::{AmpSource, IngestItem};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::delivery::http::Failure;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::amp_stream;
use crate::http::extract::{Path, Query, read_body, require_json};
use crate::http::ingest::{Answer, commit, envelope_error, respond};
use crate::security::amp::{Presented, authenticate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/amp/{source}/{endpoint}", post(receive))
        .route("/amp/{source}/{endpoint}/{token}", post(receive_with_token))
}

/// The inbound endpoints of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Events,
    HumanInput,
    FlowHitl,
    Legacy(LegacyHook),
}

impl Endpoint {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "events" => Endpoint::Events,
            "human-input" => Endpoint::HumanInput,
            "flow-hitl" => Endpoint::FlowHitl,
            "task" => Endpoint::Legacy(LegacyHook::Task),
            "step" => Endpoint::Legacy(LegacyHook::Step),
            "crew" => Endpoint::Legacy(LegacyHook::Crew),
            _ => return None,
        })
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn receive(
    State(state): State<AppState>,
    Path((source, endpoint)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Request {
        source: &source,
        endpoint: &endpoint,
        url_token: query.token.as_deref(),
        headers: &headers,
    };
    respond(handle(&state, request, body).await)
}

async fn receive_with_token(
    State(state): State<AppState>,
    Path((source, endpoint, token)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Request {
        source: &source,
        endpoint: &endpoint,
        url_token: Some(&token),
        headers: &headers,
    };
    respond(handle(&state, request, body).await)
}

struct Request<'a> {
    source: &'a str,
    endpoint: &'a str,
    url_token: Option<&'a str>,
    headers: &'a HeaderMap,
}

async fn handle(state: &AppState, request: Request<'_>, body: Body) -> ApiResult<Answer> {
    let endpoint = Endpoint::parse(request.endpoint).ok_or_else(|| {
        ApiError::not_found(format!(
            "no AMP endpoint {:?}: use events, human-input, flow-hitl, task, step or crew",
            request.endpoint
        ))
    })?;
    let bytes = read_body(request.headers, body, &state.config).await?;
    let source = state
        .store
        .get_amp_source(request.source)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no AMP source {:?} (see /v1/amp/sources)",
                request.source
            ))
        })?;
    let now = Timestamp::now();
    let tolerance = i64::try_from(state.config.signature_tolerance_secs).unwrap_or(i64::MAX);
    let authenticated = authenticate(
        &source,
        &Presented {
            headers: request.headers,
            url_token: request.url_token,
            body: &bytes,
            signature_only: matches!(endpoint, Endpoint::FlowHitl) && source.auth == AuthMode::Hmac,
        },
        now.unix_seconds(),
        tolerance,
        &state.amp_replay,
    )?;
    require_json(request.headers)?;
    let answer = ingest(
        state,
        &source,
        endpoint,
        request,
        &bytes,
        authenticated.how,
        now,
    )
    .await;
    // A signed message counts as used only once it is stored: refused, it may be sent again.
    if answer.is_ok()
        && let Some(key) = &authenticated.replay_key
    {
        state
            .amp_replay
            .first_use(key, now.unix_seconds(), tolerance);
    }
    answer
}

/// Turns an authenticated request into events and commits them.
async fn ingest(
    state: &AppState,
    source: &AmpSource,
    endpoint: Endpoint,
    request: Request<'_>,
    bytes: &Bytes,
    how: &str,
    now: Timestamp,
) -> ApiResult<Answer> {
    let label = format!("amp:{}:{how}", source.name);
    let item = |event: AmpEvent, round: i64| -> ApiResult<IngestItem> {
        let identity = match event.key {
            Key::Id(id) => EventIdentity::from_event_id(&format!("amp:{}:{id}", source.name)),
            Key::Body => {
                let mut digest = Sha256::new();
                digest.update(format!("amp:{}:{}:", source.name, request.endpoint));
                if round > 0 {
                    digest.update(format!("round {round}:"));
                }
                digest.update(bytes);
                EventIdentity::from_body_hash(&hex::encode(digest.finalize()))
            }
        };
        let payload = match event.stored_body {
            Some(stored) => stored,
            None => String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::MalformedJson {
                line: 1,
                column: 1,
                message: "the body is not valid UTF-8".into(),
            })?,
        };
        Ok(IngestItem {
            identity,
            envelope: event.envelope,
            payload,
            source: label.clone(),
            received_at: now,
        })
    };
    let event = match endpoint {
        Endpoint::Events => {
            let batch = Batch::parse(bytes).map_err(envelope_error)?;
            let items = amp_stream::items(state, &source.name, batch.events, &label, now).await?;
            return Ok(commit(state, items, false)
                .await?
                .with_repeated(batch.repeated));
        }
        Endpoint::HumanInput => {
            let event = inbound::human_input(&source.name, bytes).map_err(envelope_error)?;
            // A task asks again after each revision, possibly with the very same body (a
            // deterministic model): the rounds closed before it keep it from being a duplicate.
            let round = closed_rounds(state, &event).await?;
            return commit(state, vec![item(event, round)?], true).await;
        }
        Endpoint::Legacy(hook) => {
            let mut event = inbound::legacy(hook, bytes).map_err(envelope_error)?;
            // Recorded, but another source's run is not ended by this source's crew webhook.
            if amp_stream::started_elsewhere(
                state,
                &source.name,
                event.envelope.kickoff_id.as_deref(),
            )
            .await?
            {
                event.envelope.kind = EventKind::Other(event.envelope.event_type.clone());
            }
            event
        }
        Endpoint::FlowHitl => {
            let mut request =
                match inbound::flow_hook(&source.name, bytes).map_err(envelope_error)? {
                    FlowHook::Request(request) => request,
                    FlowHook::Notification(event) => {
                        return commit(state, vec![item(event, 0)?], true).await;
                    }
                };
            // A source that maps skip to an outcome can skip requests without a default one.
            if source.emit_map.on_skip.is_some() {
                request.spec.allowed_actions = None;
            }
            // The decision goes there later: an unusable URL, or one the outbound guard would
            // refuse (a private address given literally), is refused now, not dead-lettered
            // after a reviewer decided. Hostnames are checked when the answer is sent.
            if let Some(url) = request
                .spec
                .origin
                .as_ref()
                .and_then(|o| o.callback_url.as_deref())
                && let Err(Failure::BadUrl(e) | Failure::Refused(e) | Failure::Transport(e)) =
                    state.delivery.outbound.check_url(url)
            {
                return Err(ApiError::unprocessable(
                    "invalid_event",
                    format!("callback_url: {e}"),
                ));
            }
            // An escalation of a request already here annotates it instead of asking again, and
            // so does a new_request arriving after its escalation asked with other content: AMP
            // does not resend a refused post, so a 409 would lose it. The stored body is the
            // request's without its answering secrets (they stay in the origin, not the trail).
            let existing = state.store.get_checkpoint(&request.checkpoint_id).await?;
            if existing.is_some_and(|cp| {
                request.event == FlowEvent::Escalation || !cp.same_request(&request.spec)
            }) {
                request.annotation()
            } else {
                request.creating()
            }
        }
    };
    commit(state, vec![item(event, 0)?], true).await
}

/// How many of the execution's checkpoints are closed already: read from the execution's own
/// counters (a crew waiting for input has no other checkpoint closing meanwhile).
async fn closed_rounds(state: &AppState, event: &AmpEvent) -> ApiResult<i64> {
    let Some(kickoff) = &event.envelope.kickoff_id else {
        return Ok(0);
    };
    Ok(state
        .store
        .get_execution(kickoff)
        .await?
        .map_or(0, |ex| ex.checkpoints_total - ex.checkpoints_pending))
}
