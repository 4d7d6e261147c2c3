//! API key management (admin only). Keys are shown once, at creation.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use hitlhook_domain::Timestamp;
use hitlhook_store::StoreError;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::dto::{KeyOut, NewKeyIn, PageOut};
use crate::http::extract::{JsonBody, Path};
use crate::security::api_key::{self, Admin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id_or_name}", delete(revoke_key))
}

async fn list_keys(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> ApiResult<axum::Json<PageOut<KeyOut>>> {
    let keys = state.store.list_api_keys().await?;
    Ok(axum::Json(PageOut {
        items: keys.iter().map(KeyOut::from).collect(),
        next_cursor: None,
    }))
}

async fn create_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(body): JsonBody<NewKeyIn>,
) -> ApiResult<(StatusCode, axum::Json<KeyOut>)> {
    api_key::check_name(&body.name).map_err(|e| ApiError::unprocessable("invalid_request", e))?;
    match api_key::create(state.store.as_ref(), &body.name, body.scope).await {
        Ok((key, secret)) => {
            tracing::info!(name = %key.name, scope = %key.scope, by = %caller.name, "API key created");
            let mut out = KeyOut::from(&key);
            out.key = Some(secret);
            Ok((StatusCode::CREATED, axum::Json(out)))
        }
        Err(StoreError::Duplicate(_)) => Err(ApiError::Conflict {
            code: "key_name_taken",
            detail: format!(
                "an active key named {:?} exists; revoke it first or pick another name",
                body.name
            ),
            extra: serde_json::Map::new(),
        }),
        Err(e) => Err(e.into()),
    }
}

async fn revoke_key(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.revoke_api_key(&id, Timestamp::now()).await? {
        tracing::info!(key = %id, by = %caller.name, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no active key with id or name {id:?}"
        )))
    }
}
