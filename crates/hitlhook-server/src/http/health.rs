//! Operations endpoints: `/health` (the seed's shape plus the database), `/ready` for load
//! balancers, `/metrics` in Prometheus text, and the OpenAPI document.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::http::AppState;

/// The API description, embedded in the binary.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(get_health))
        .route("/ready", get(get_ready))
        .route("/metrics", get(get_metrics))
        .route("/openapi.json", get(get_openapi))
}

async fn get_health(State(state): State<AppState>) -> impl IntoResponse {
    let queued = state.ingestor.queued();
    match state.store.stats().await {
        Ok(stats) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "healthy",
                "pending_events": queued,
                "processed_events": stats.events_total,
                "pending_checkpoints": stats.checkpoints_pending,
                "waiting_clients": state.waiters.watched(),
                "database": {"backend": state.store.backend(), "status": "ok"},
                "version": env!("CARGO_PKG_VERSION"),
            })),
        ),
        Err(e) => {
            tracing::error!(error = ?e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({
                    "status": "unhealthy",
                    "pending_events": queued,
                    "database": {"backend": state.store.backend(), "status": "unavailable"},
                    "version": env!("CARGO_PKG_VERSION"),
                })),
            )
        }
    }
}

async fn get_ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) if !state.shutdown.is_cancelled() => {
            (StatusCode::OK, axum::Json(json!({"status": "ready"})))
        }
        Ok(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "database_unavailable"})),
        ),
    }
}

async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("hitlhook_ingest_queue_depth").set(state.ingestor.queued() as f64);
    metrics::gauge!("hitlhook_waiting_checkpoints").set(state.waiters.watched() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}

async fn get_openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
