//! Executions and the audit trail: status of one kickoff (the seed's `/webhook/status`), lists,
//! and the ordered events behind them.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use hitlhook_domain::ExecutionStatus;
use hitlhook_store::{CheckpointQuery, EventQuery, ExecutionQuery, Order};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::checkpoints::{parse_cursor, parse_limit};
use crate::http::dto::{CheckpointOut, EventOut, ExecutionStatusOut, PageOut};
use crate::http::extract::{Path, Query};
use crate::security::api_key::{Ingest, Reviewer};

/// How many checkpoints and events the status view shows.
const STATUS_CHECKPOINTS: u32 = 100;
const STATUS_EVENTS: u32 = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhook/status/{kickoff_id}", get(get_status))
        .route("/v1/executions", get(list_executions))
        .route("/v1/executions/{kickoff_id}", get(get_status))
        .route(
            "/v1/executions/{kickoff_id}/events",
            get(list_execution_events),
        )
        .route("/v1/events", get(list_events))
}

async fn get_status(
    State(state): State<AppState>,
    Ingest(_): Ingest,
    Path(kickoff_id): Path<String>,
) -> ApiResult<axum::Json<ExecutionStatusOut>> {
    let execution = state
        .store
        .get_execution(&kickoff_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no execution {kickoff_id:?}")))?;
    let checkpoints = state
        .store
        .list_checkpoints(&CheckpointQuery {
            kickoff_id: Some(kickoff_id.clone()),
            order: Order::NewestFirst,
            limit: STATUS_CHECKPOINTS,
            ..CheckpointQuery::default()
        })
        .await?;
    let events = state
        .store
        .list_events(&EventQuery {
            kickoff_id: Some(kickoff_id),
            order: Order::NewestFirst,
            limit: STATUS_EVENTS,
            ..EventQuery::default()
        })
        .await?;
    Ok(axum::Json(ExecutionStatusOut {
        execution,
        checkpoints: checkpoints.items.iter().map(CheckpointOut::from).collect(),
        recent_events: events.items.iter().rev().map(EventOut::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutionsQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list_executions(
    State(state): State<AppState>,
    Reviewer(_): Reviewer,
    Query(q): Query<ExecutionsQuery>,
) -> ApiResult<axum::Json<PageOut<hitlhook_domain::Execution>>> {
    let status = match q.status.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "status must be running, waiting_for_human, completed, failed, stopped or all",
            )
        })?),
    };
    let page = state
        .store
        .list_executions(&ExecutionQuery {
            status,
            limit: parse_limit(q.limit, 50, 500)?,
            cursor: parse_cursor(q.cursor.as_deref())?,
        })
        .await?;
    Ok(axum::Json(PageOut {
        items: page.items,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only events with a larger sequence number (resume a previous read).
    after: Option<i64>,
    kickoff_id: Option<String>,
    checkpoint_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn events_page(
    state: &AppState,
    q: EventsQuery,
    kickoff: Option<String>,
) -> ApiResult<axum::Json<PageOut<EventOut>>> {
    // `after` is a sequence number like the live stream's, refused there too when negative.
    if q.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "after must be a sequence number, 0 or more",
        ));
    }
    let cursor = parse_cursor(q.cursor.as_deref())?.or(q.after);
    let page = state
        .store
        .list_events(&EventQuery {
            kickoff_id: kickoff.or(q.kickoff_id),
            checkpoint_id: q.checkpoint_id,
            order: Order::OldestFirst,
            cursor,
            limit: parse_limit(q.limit, 100, 1000)?,
        })
        .await?;
    Ok(axum::Json(PageOut {
        items: page.items.iter().map(EventOut::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn list_execution_events(
    State(state): State<AppState>,
    Reviewer(_): Reviewer,
    Path(kickoff_id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<axum::Json<PageOut<EventOut>>> {
    events_page(&state, q, Some(kickoff_id)).await
}

async fn list_events(
    State(state): State<AppState>,
    Reviewer(_): Reviewer,
    Query(q): Query<EventsQuery>,
) -> ApiResult<axum::Json<PageOut<EventOut>>> {
    events_page(&state, q, None).await
}
