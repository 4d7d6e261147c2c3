//! AMP sources over HTTP (admin): `POST/GET /v1/amp/sources`, `GET/DELETE
//! /v1/amp/sources/{name}`. A source's inbound secrets and URL token appear only in the answer
//! to its creation; the deployment token never appears.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hitlhook_domain::Timestamp;
use hitlhook_domain::amp::{AuthMode, EmitMap};
use hitlhook_store::{AmpSource, StoreError};
use serde::Serialize;

use crate::amp::source::{Revealed, SourceRequest, build};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::dto::PageOut;
use crate::http::extract::{JsonBody, Path};
use crate::security::api_key::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/amp/sources", get(list_sources).post(create_source))
        .route(
            "/v1/amp/sources/{name}",
            get(get_source).delete(remove_source),
        )
}

/// The inbound URLs of a source (legacy ones carry the URL token only when it is shown).
#[derive(Debug, Serialize)]
pub struct EndpointsOut {
    pub events: String,
    pub human_input: String,
    pub flow_hitl: String,
    pub task: String,
    pub step: String,
    pub crew: String,
}

impl EndpointsOut {
    #[must_use]
    pub fn new(base_url: &str, name: &str, url_token: Option<&str>) -> Self {
        let base = base_url.trim_end_matches('/');
        let url = |path: &str| format!("{base}/amp/{name}/{path}");
        let legacy = |path: &str| match url_token {
            Some(token) => format!("{base}/amp/{name}/{path}?token={token}"),
            None => url(path),
        };
        EndpointsOut {
            events: url("events"),
            human_input: url("human-input"),
            flow_hitl: url("flow-hitl"),
            task: legacy("task"),
            step: legacy("step"),
            crew: legacy("crew"),
        }
    }
}

/// A source as the API shows it.
#[derive(Debug, Serialize)]
pub struct SourceOut {
    pub name: String,
    pub auth: AuthMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub deployment_url: Option<String>,
    pub has_deployment_token: bool,
    pub emit_map: EmitMap,
    pub created_at: Timestamp,
    pub endpoints: EndpointsOut,
    /// Only in the answer to creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Revealed>,
}

impl SourceOut {
    fn new(s: &AmpSource, base_url: &str, credentials: Option<Revealed>) -> Self {
        let token = credentials.as_ref().map(|c| c.url_token.expose());
        SourceOut {
            name: s.name.clone(),
            auth: s.auth,
            username: s.basic_username.clone(),
            deployment_url: s.deployment_url.clone(),
            has_deployment_token: s.deployment_token.is_some(),
            emit_map: s.emit_map.clone(),
            created_at: s.created_at,
            endpoints: EndpointsOut::new(base_url, &s.name, token),
            credentials,
        }
    }
}

async fn create_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(body): JsonBody<SourceRequest>,
) -> ApiResult<(StatusCode, axum::Json<SourceOut>)> {
    let (source, revealed) =
        build(&state.delivery.guard, body, Timestamp::now()).map_err(|(field, problem)| {
            ApiError::unprocessable("invalid_request", format!("{field}: {problem}"))
        })?;
    let name = source.name.clone();
    let created = match state.store.create_amp_source(source).await {
        Ok(created) => created,
        Err(StoreError::Duplicate(_)) => {
            return Err(ApiError::Conflict {
                code: "source_exists",
                detail: format!(
                    "an AMP source named {name:?} exists; remove it first or pick another name"
                ),
                extra: serde_json::Map::new(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(source = %created.name, auth = created.auth.as_str(), by = %caller.name, "AMP source created");
    Ok((
        StatusCode::CREATED,
        axum::Json(SourceOut::new(
            &created,
            &state.delivery.base_url,
            Some(revealed),
        )),
    ))
}

async fn list_sources(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> ApiResult<axum::Json<PageOut<SourceOut>>> {
    let sources = state.store.list_amp_sources().await?;
    Ok(axum::Json(PageOut {
        items: sources
            .iter()
            .map(|s| SourceOut::new(s, &state.delivery.base_url, None))
            .collect(),
        next_cursor: None,
    }))
}

async fn get_source(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<SourceOut>> {
    let source = state
        .store
        .get_amp_source(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no AMP source {name:?}")))?;
    Ok(axum::Json(SourceOut::new(
        &source,
        &state.delivery.base_url,
        None,
    )))
}

async fn remove_source(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.remove_amp_source(&name).await? {
        tracing::info!(source = %name, by = %caller.name, "AMP source removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no AMP source {name:?}")))
    }
}
