//! Checkpoints: read one (optionally long-polling until it is decided), list them, and decide
//! them — through the seed's `POST /webhook/feedback` or `POST /v1/checkpoints/{id}/decision`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use hitlhook_domain::{CheckpointStatus, DecideError, DecisionRequest, Scope, Timestamp};
use hitlhook_store::{CheckpointQuery, DecideOutcome, Order};
use serde::Deserialize;
use serde_json::{Map, json};
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::dto::{CheckpointOut, DecisionIn, FeedbackIn, PageOut};
use crate::http::extract::{JsonBody, Path, Query};
use crate::security::api_key::{Caller, Ingest, Reviewer};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhook/checkpoint/{id}", get(get_checkpoint))
        .route("/webhook/feedback", post(create_feedback))
        .route("/v1/checkpoints", get(list_checkpoints))
        .route("/v1/checkpoints/{id}", get(get_checkpoint))
        .route("/v1/checkpoints/{id}/decision", post(create_decision))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Seconds to wait for a decision; 0 or absent answers at once.
    wait: Option<f64>,
}

async fn get_checkpoint(
    State(state): State<AppState>,
    Ingest(_): Ingest,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<axum::Json<CheckpointOut>> {
    let wait = match q.wait {
        Some(w) if !w.is_finite() || w < 0.0 => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "wait must be a number of seconds, 0 or more",
            ));
        }
        // Clamp before converting: from_secs_f64 panics on values beyond Duration's range.
        Some(w) if w >= state.config.max_wait().as_secs_f64() => state.config.max_wait(),
        Some(w) => Duration::from_secs_f64(w),
        None => Duration::ZERO,
    };
    let missing = || ApiError::not_found(format!("no checkpoint {id:?}"));
    if wait.is_zero() {
        let cp = state.store.get_checkpoint(&id).await?.ok_or_else(missing)?;
        return Ok(axum::Json(CheckpointOut::from(&cp)));
    }
    // Register before reading, so a decision committed in between still wakes us.
    let guard = state.waiters.watch(&id);
    let deadline = Instant::now() + wait;
    loop {
        let notified = guard.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let cp = state.store.get_checkpoint(&id).await?.ok_or_else(missing)?;
        if cp.status != CheckpointStatus::Pending || Instant::now() >= deadline {
            return Ok(axum::Json(CheckpointOut::from(&cp)));
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = state.shutdown.cancelled() => {
                let cp = state.store.get_checkpoint(&id).await?.ok_or_else(missing)?;
                return Ok(axum::Json(CheckpointOut::from(&cp)));
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    kickoff_id: Option<String>,
    /// `newest` (default) or `oldest`.
    order: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) fn parse_cursor(cursor: Option<&str>) -> ApiResult<Option<i64>> {
    cursor
        .map(|c| {
            // Cursors are sequence numbers, never negative.
            c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "cursor must be a next_cursor value from a previous page",
                )
            })
        })
        .transpose()
}

/// A page size: absent means `default`, above `max` means `max`, and 0 is refused rather than
/// quietly read as 1.
pub(crate) fn parse_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {max}"),
        )),
        Some(n) => Ok(n.min(max)),
    }
}

async fn list_checkpoints(
    State(state): State<AppState>,
    Reviewer(_): Reviewer,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<PageOut<CheckpointOut>>> {
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(CheckpointStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "status must be pending, decided, expired, cancelled or all",
            )
        })?),
    };
    let order = match q.order.as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "order must be newest or oldest",
            ));
        }
    };
    let query = CheckpointQuery {
        status,
        kickoff_id: q.kickoff_id,
        order,
        limit: parse_limit(q.limit, 50, 500)?,
        cursor: parse_cursor(q.cursor.as_deref())?,
    };
    let page = state.store.list_checkpoints(&query).await?;
    Ok(axum::Json(PageOut {
        items: page.items.iter().map(CheckpointOut::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn create_feedback(
    State(state): State<AppState>,
    Reviewer(caller): Reviewer,
    JsonBody(body): JsonBody<FeedbackIn>,
) -> ApiResult<axum::Json<CheckpointOut>> {
    let (id, decision) = body.split();
    decide(&state, &caller, &id, decision).await
}

async fn create_decision(
    State(state): State<AppState>,
    Reviewer(caller): Reviewer,
    Path(id): Path<String>,
    JsonBody(decision): JsonBody<DecisionIn>,
) -> ApiResult<axum::Json<CheckpointOut>> {
    decide(&state, &caller, &id, decision).await
}

/// Applies a decision from the API; the change feed then wakes everyone waiting on what it closed.
async fn decide(
    state: &AppState,
    caller: &Caller,
    id: &str,
    d: DecisionIn,
) -> ApiResult<axum::Json<CheckpointOut>> {
    caller.require(Scope::Reviewer, "deciding a checkpoint")?;
    check_provenance(&d)?;
    let request = DecisionRequest {
        action: d.action,
        feedback: d.feedback,
        decided_by: d.decided_by.unwrap_or_else(|| caller.label()),
        channel: d.channel.unwrap_or_else(|| "api".to_owned()),
    };
    match apply_decision(state, id, request, &caller.label()).await? {
        DecideOutcome::Decided { checkpoint, .. } => {
            Ok(axum::Json(CheckpointOut::from(&checkpoint)))
        }
        DecideOutcome::Unchanged(checkpoint) => Ok(axum::Json(CheckpointOut::from(&checkpoint))),
        DecideOutcome::NotFound => Err(ApiError::not_found(format!("no checkpoint {id:?}"))),
        DecideOutcome::Refused { checkpoint, error } => Err(refusal(&checkpoint, error)),
    }
}

/// Channels hitlhook records itself (timeouts, Slack buttons, email links); an API caller naming
/// one would make its decision look like it came from there.
const RESERVED_CHANNELS: &[&str] = &["system", "slack", "email"];

/// Refuses a decision that claims to be one hitlhook made itself.
fn check_provenance(d: &DecisionIn) -> ApiResult<()> {
    if let Some(by) = &d.decided_by
        && by.trim().to_ascii_lowercase().starts_with("system:")
    {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "decided_by: the system: prefix is reserved for decisions hitlhook makes itself (such as system:timeout); name the person or integration instead",
        ));
    }
    if let Some(channel) = &d.channel
        && RESERVED_CHANNELS.contains(&channel.trim().to_ascii_lowercase().as_str())
    {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "channel: {channel:?} is recorded by hitlhook itself ({}); use api, inbox or your integration's own name",
                RESERVED_CHANNELS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Applies a decision from any channel (API, Slack, email): the store's one transaction, then
/// metrics, a log line, and the change feed, which wakes waiters, live clients and the delivery
/// worker (which then edits the Slack message and notifies subscribers).
pub(crate) async fn apply_decision(
    state: &AppState,
    id: &str,
    request: DecisionRequest,
    source: &str,
) -> ApiResult<DecideOutcome> {
    let outcome = state
        .store
        .decide(id, request, source, Timestamp::now())
        .await?;
    if let DecideOutcome::Decided { checkpoint, .. } = &outcome {
        let decision = checkpoint.decision.as_ref();
        metrics::counter!(
            "hitlhook_decisions_total",
            "action" => decision.map_or("none", |d| d.action.as_str()),
            "channel" => decision.map_or_else(String::new, |d| d.channel.clone()),
        )
        .increment(1);
        tracing::info!(checkpoint_id = %checkpoint.id, action = ?decision.map(|d| d.action), by = ?decision.map(|d| &d.decided_by), "checkpoint decided");
        state.hub.committed();
    }
    Ok(outcome)
}

fn refusal(cp: &hitlhook_domain::Checkpoint, error: DecideError) -> ApiError {
    let mut extra = Map::new();
    extra.insert("checkpoint".into(), json!(CheckpointOut::from(cp)));
    match error {
        DecideError::AlreadyDecided(d) => {
            let detail = format!(
                "already decided: {} by {} via {} at {}",
                d.action, d.decided_by, d.channel, d.decided_at
            );
            extra.insert("decision".into(), json!(d));
            ApiError::Conflict {
                code: "already_decided",
                detail,
                extra,
            }
        }
        DecideError::Closed(status) => ApiError::Conflict {
            code: "checkpoint_closed",
            detail: format!(
                "the checkpoint is {} and can no longer be decided",
                status.as_str()
            ),
            extra,
        },
        DecideError::ActionNotAllowed(action) => {
            extra.insert("allowed_actions".into(), json!(cp.allowed_actions));
            ApiError::Unprocessable {
                code: "action_not_allowed",
                detail: format!(
                    "action {action} is not allowed here; allowed: {}",
                    hitlhook_domain::action::join(&cp.allowed_actions)
                ),
                extra,
            }
        }
        DecideError::FeedbackRequired => ApiError::Unprocessable {
            code: "feedback_required",
            detail: "revise needs non-empty feedback telling the agent what to change".into(),
            extra,
        },
        DecideError::Invalid(e) => ApiError::Unprocessable {
            code: "invalid_request",
            detail: e.to_string(),
            extra,
        },
    }
}
