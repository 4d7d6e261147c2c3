//! The HTTP API: shared state, the route table (each module opens with its own `router()`), and
//! the layers every request passes through (request ids, metrics, panics as 500s, Server-Timing).

pub mod amp;
pub mod amp_runs;
pub mod amp_sources;
pub mod amp_stream;
pub mod checkpoints;
pub mod deliveries;
pub mod dto;
pub mod email;
pub mod executions;
pub mod extract;
pub mod health;
pub mod inbox;
pub mod ingest;
pub mod keys;
pub mod slack;
pub mod stream;
pub mod timing;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hitlhook_store::Store;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::Config;
use crate::delivery::DeliveryContext;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::ingest::Ingestor;
use crate::security::signature::SigningKeys;
use crate::security::stream_token::StreamTokens;
use crate::waiters::Waiters;

/// What every handler can reach: one shared allocation, so the per-request clone that axum's
/// `State` extractor and the middleware make is a single reference-count increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    #[must_use]
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles `AppState` shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    pub waiters: Arc<Waiters>,
    pub keys: Arc<SigningKeys>,
    /// SHA-256 hex of `WEBHOOK_API_KEY`, when set.
    pub admin_key_hash: Option<Arc<str>>,
    pub config: Arc<Config>,
    /// The change feed: call `committed()` after every write.
    pub hub: Arc<Hub>,
    /// Mints and checks the browser tokens of the live stream.
    pub stream_tokens: Arc<StreamTokens>,
    pub shutdown: CancellationToken,
    /// Delivery engine handles: wake the worker, vet URLs, sign email links, Slack settings.
    pub delivery: Arc<DeliveryContext>,
    /// Signatures AMP sources already used (replay protection).
    pub amp_replay: Arc<crate::security::amp::ReplayGuard>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ingest::router())
        .merge(amp::router())
        .merge(amp_sources::router())
        .merge(amp_runs::router())
        .merge(checkpoints::router())
        .merge(executions::router())
        .merge(keys::router())
        .merge(deliveries::router())
        .merge(slack::router())
        .merge(email::router())
        .merge(health::router())
        .merge(stream::router())
        .merge(inbox::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(timing::server_timing))
        .layer(middleware::from_fn(observe))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}; see /openapi.json", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        detail: format!("{method} is not supported on {}", uri.path()),
    }
}

/// Records request metrics by route template (never the raw path: bounded label cardinality)
/// and logs failures.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!("hitlhook_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.as_u16().to_string()).increment(1);
    metrics::histogram!("hitlhook_http_request_duration_seconds", "method" => method.to_string(), "route" => route.clone()).record(elapsed.as_secs_f64());
    if status.is_server_error() {
        tracing::error!(%method, %route, status = status.as_u16(), ms = elapsed.as_millis() as u64, request_id, "request failed");
    } else if status.is_client_error() {
        tracing::info!(%method, %route, status = status.as_u16(), ms = elapsed.as_millis() as u64, request_id, "request refused");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), ms = elapsed.as_millis() as u64, request_id, "request");
    }
    response
}
