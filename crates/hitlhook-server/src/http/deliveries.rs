//! The outbox and webhook subscribers over HTTP: list and inspect deliveries, revive one
//! (`POST /v1/deliveries/{id}/retry`), and manage subscribers (`/v1/subscriptions`, admin).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hitlhook_domain::{DeliveryKind, DeliveryState, Scope, Timestamp};
use hitlhook_store::{Delivery, DeliveryQuery, NewSubscription, RetryOutcome, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::delivery::webhook::validate_subscription;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::checkpoints::parse_cursor;
use crate::http::dto::PageOut;
use crate::http::extract::{JsonBody, Path, Query};
use crate::security::api_key::Caller;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/deliveries", get(list_deliveries))
        .route("/v1/deliveries/{id}", get(get_delivery))
        .route("/v1/deliveries/{id}/retry", post(retry_delivery))
        .route(
            "/v1/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(get_subscription).delete(remove_subscription),
        )
}

/// A delivery as the API shows it. `response_url` targets are secrets and are not shown.
#[derive(Debug, Serialize)]
pub struct DeliveryOut {
    pub id: String,
    pub kind: &'static str,
    pub state: DeliveryState,
    pub checkpoint_id: Option<String>,
    pub kickoff_id: Option<String>,
    pub event_type: String,
    pub target: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// The webhook body (webhooks only), exactly as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<RawValue>>,
}

impl From<&Delivery> for DeliveryOut {
    fn from(d: &Delivery) -> Self {
        DeliveryOut {
            id: d.id.clone(),
            kind: d.kind.as_str(),
            state: d.state,
            checkpoint_id: d.checkpoint_id.clone(),
            kickoff_id: d.kickoff_id.clone(),
            event_type: d.event_type.clone(),
            target: if d.kind == DeliveryKind::SlackRespond {
                "response_url".to_owned()
            } else {
                d.target.clone()
            },
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            next_attempt_at: (d.state == DeliveryState::Pending).then_some(d.next_at),
            created_at: d.created_at,
            updated_at: d.updated_at,
            delivered_at: d.delivered_at,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            payload: (d.kind == DeliveryKind::Webhook)
                .then(|| RawValue::from_string(d.payload.clone()).ok())
                .flatten(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    checkpoint_id: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<PageOut<DeliveryOut>>> {
    caller.require(Scope::Reviewer, "listing deliveries")?;
    let delivery_state = match q.state.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "state must be pending, delivered, dead, skipped, resolved_elsewhere or all",
            )
        })?),
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(DeliveryKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "kind must be slack.message, slack.update, slack.respond, slack.modal, email, webhook, amp.resume, amp.stop or amp.feedback",
            )
        })?),
    };
    let page = state
        .store
        .list_deliveries(&DeliveryQuery {
            state: delivery_state,
            checkpoint_id: q.checkpoint_id,
            kind,
            limit: q.limit.unwrap_or(50).clamp(1, 500),
            cursor: parse_cursor(q.cursor.as_deref())?,
        })
        .await?;
    Ok(axum::Json(PageOut {
        items: page.items.iter().map(DeliveryOut::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeliveryOut>> {
    caller.require(Scope::Reviewer, "reading a delivery")?;
    let d = state
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no delivery {id:?}")))?;
    Ok(axum::Json(DeliveryOut::from(&d)))
}

async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeliveryOut>> {
    caller.require(Scope::Admin, "retrying a delivery")?;
    match state.store.retry_delivery(&id, Timestamp::now()).await? {
        RetryOutcome::Revived(d) => {
            tracing::info!(delivery_id = %d.id, by = %caller.name, "delivery revived");
            state.delivery.wake.wake();
            Ok(axum::Json(DeliveryOut::from(&d)))
        }
        RetryOutcome::Pending(d) => Err(ApiError::Conflict {
            code: "delivery_pending",
            detail: format!(
                "delivery {id:?} is still pending (attempt {} of {}); it is retried on its own",
                d.attempts, d.max_attempts
            ),
            extra: serde_json::Map::new(),
        }),
        RetryOutcome::NotFound => Err(ApiError::not_found(format!("no delivery {id:?}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionIn {
    url: String,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    /// `whsec_<base64>`; generated when absent.
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A subscriber. The secret appears only in the answer to creation.
#[derive(Debug, Serialize)]
pub struct SubscriptionOut {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<&Subscription> for SubscriptionOut {
    fn from(s: &Subscription) -> Self {
        SubscriptionOut {
            id: s.id.clone(),
            url: s.url.clone(),
            event_types: s.event_types.clone(),
            description: s.description.clone(),
            created_at: s.created_at,
            secret: None,
        }
    }
}

async fn create_subscription(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<SubscriptionIn>,
) -> ApiResult<(StatusCode, axum::Json<SubscriptionOut>)> {
    caller.require(Scope::Admin, "creating subscriptions")?;
    let spec = validate_subscription(
        &state.delivery.guard,
        &body.url,
        body.event_types,
        body.secret,
    )
    .map_err(|(field, problem)| {
        ApiError::unprocessable("invalid_request", format!("{field}: {problem}"))
    })?;
    if let Some(d) = &body.description {
        hitlhook_domain::checkpoint::check_label("description", d)
            .map_err(|e| ApiError::unprocessable("invalid_request", e.to_string()))?;
    }
    let created = state
        .store
        .create_subscription(NewSubscription {
            id: format!("sub_{}", uuid::Uuid::now_v7().simple()),
            url: spec.url,
            secret: spec.secret,
            event_types: spec.event_types,
            description: body.description,
            created_at: Timestamp::now(),
        })
        .await?;
    tracing::info!(subscription_id = %created.id, by = %caller.name, "subscription created");
    let mut out = SubscriptionOut::from(&created);
    out.secret = Some(created.secret);
    Ok((StatusCode::CREATED, axum::Json(out)))
}

async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<PageOut<SubscriptionOut>>> {
    caller.require(Scope::Admin, "listing subscriptions")?;
    let subs = state.store.list_subscriptions().await?;
    Ok(axum::Json(PageOut {
        items: subs.iter().map(SubscriptionOut::from).collect(),
        next_cursor: None,
    }))
}

async fn get_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<SubscriptionOut>> {
    caller.require(Scope::Admin, "reading a subscription")?;
    match state.store.get_subscription(&id).await? {
        Some(s) if s.disabled_at.is_none() => Ok(axum::Json(SubscriptionOut::from(&s))),
        _ => Err(ApiError::not_found(format!("no subscription {id:?}"))),
    }
}

async fn remove_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin, "removing subscriptions")?;
    if state
        .store
        .remove_subscription(&id, Timestamp::now())
        .await?
    {
        tracing::info!(subscription_id = %id, by = %caller.name, "subscription removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no subscription {id:?}")))
    }
}
