//! AMP runs over HTTP (admin): `POST /v1/amp/sources/{name}/kickoff` starts a run on the source's
//! deployment with hitlhook's webhooks injected and records it; `POST
//! /v1/executions/{kickoff_id}/reconcile` reads the run's status from AMP and records a finished
//! run on hitlhook's execution.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use hitlhook_domain::amp::KickoffHooks;
use hitlhook_domain::{Execution, Timestamp};
use hitlhook_store::AmpSource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::amp::kickoff::{self, CallError};
use crate::amp::reconcile::{self, ReconcileError};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::extract::{JsonBody, Path, Query};
use crate::security::api_key::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/amp/sources/{name}/kickoff", post(start_run))
        .route("/v1/executions/{kickoff_id}/reconcile", post(reconcile))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickoffIn {
    inputs: Map<String, Value>,
    #[serde(default)]
    meta: Option<Value>,
}

#[derive(Debug, Serialize)]
struct KickoffOut {
    kickoff_id: String,
    source: String,
    /// The legacy webhook URLs given to AMP, re-sent on every `/resume`.
    #[serde(flatten)]
    hooks: KickoffHooks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileQuery {
    /// The source, for runs hitlhook did not start itself.
    source: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReconcileOut {
    kickoff_id: String,
    source: String,
    /// What AMP reports: running, completed or error.
    remote_status: String,
    /// AMP's whole `/status` answer.
    remote: Value,
    /// hitlhook's view of the execution, after recording a finished run.
    execution: Option<Execution>,
}

fn upstream(e: CallError) -> ApiError {
    match e {
        CallError::NoDeployment(_) => {
            ApiError::unprocessable("amp_source_incomplete", e.to_string())
        }
        CallError::Answered {
            status: 422,
            message,
        } => ApiError::unprocessable("amp_rejected", message),
        other => ApiError::Upstream {
            detail: other.to_string(),
        },
    }
}

async fn source(state: &AppState, name: &str) -> ApiResult<AmpSource> {
    state
        .store
        .get_amp_source(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no AMP source {name:?}")))
}

async fn start_run(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<KickoffIn>,
) -> ApiResult<(StatusCode, axum::Json<KickoffOut>)> {
    let source = source(&state, &name).await?;
    let execution = kickoff::start(
        &state.delivery.outbound,
        &source,
        &state.delivery.base_url,
        &Value::Object(body.inputs),
        body.meta.as_ref(),
        Timestamp::now(),
    )
    .await
    .map_err(upstream)?;
    // The run is started: if recording it fails, the caller must still learn its id.
    if let Err(e) = state.store.save_amp_execution(&execution).await {
        tracing::error!(source = %name, kickoff_id = %execution.kickoff_id, error = %e, "AMP run started but not recorded");
        return Err(ApiError::Unavailable {
            detail: format!(
                "AMP started run {} but hitlhook could not record it (the database failed; see \
                 the server log): its resumes will not re-send the webhook URLs. Reconcile it \
                 with POST /v1/executions/{}/reconcile?source={name} once the database is back",
                execution.kickoff_id, execution.kickoff_id
            ),
        });
    }
    tracing::info!(source = %name, kickoff_id = %execution.kickoff_id, by = %caller.name, "AMP run started");
    Ok((
        StatusCode::CREATED,
        axum::Json(KickoffOut {
            kickoff_id: execution.kickoff_id,
            source: execution.source,
            hooks: execution.hooks,
        }),
    ))
}

async fn reconcile(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(kickoff_id): Path<String>,
    Query(query): Query<ReconcileQuery>,
) -> ApiResult<axum::Json<ReconcileOut>> {
    let done = reconcile::reconcile(
        state.store.as_ref(),
        &state.delivery.outbound,
        &kickoff_id,
        query.source,
        Timestamp::now(),
    )
    .await
    .map_err(|e| match e {
        ReconcileError::UnknownRun(_) => ApiError::not_found(format!(
            "no AMP run {kickoff_id:?} was started here; pass ?source=NAME to name its source"
        )),
        ReconcileError::UnknownSource(name) => {
            ApiError::not_found(format!("no AMP source {name:?}"))
        }
        ReconcileError::Call(e) => upstream(e),
        ReconcileError::Store(e) => e.into(),
    })?;
    if done.recorded {
        state.hub.committed();
    }
    Ok(axum::Json(ReconcileOut {
        execution: state.store.get_execution(&kickoff_id).await?,
        kickoff_id,
        source: done.source,
        remote_status: done.remote_status,
        remote: done.remote,
    }))
}
