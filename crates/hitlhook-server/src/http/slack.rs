//! `POST /slack/interactions`: Slack's interactivity endpoint. The signature (`v0`, ±300 s) is
//! verified over the raw form body before anything is parsed; then the `payload` field's JSON is
//! read. A button click decides with `decided_by` = the Slack user and `channel` = slack, through
//! the same path as the API. Slack wants an answer within 3 s, so nothing slow happens here:
//! replies to the clicker, the Revise modal and message edits are outbox deliveries.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hitlhook_domain::checkpoint::check_label;
use hitlhook_domain::{
    Action, Checkpoint, CheckpointStatus, DecideError, DecisionRequest, DeliveryKind, NewDelivery,
    Timestamp,
};
use hitlhook_store::DecideOutcome;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::delivery::slack::{ModalRequest, Reply};
use crate::delivery::slack_blocks::{
    ACTION_PREFIX, FEEDBACK_ACTION, FEEDBACK_BLOCK, REVISE_CALLBACK, who,
};
use crate::error::{ApiError, ApiResult};
use crate::html::{closed_sentence, inbox_link};
use crate::http::AppState;
use crate::http::checkpoints::apply_decision;
use crate::http::extract::read_body;
use crate::security::signature::SignatureError;
use crate::security::slack;

pub fn router() -> Router<AppState> {
    Router::new().route("/slack/interactions", post(receive_interaction))
}

#[derive(Debug, Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: String,
    user: Option<User>,
    #[serde(default)]
    actions: Vec<ClickedAction>,
    response_url: Option<String>,
    trigger_id: Option<String>,
    view: Option<View>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClickedAction {
    action_id: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct View {
    callback_id: Option<String>,
    private_metadata: Option<String>,
    state: Option<Value>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_payload", detail)
}

async fn receive_interaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Some(secret) = state.delivery.slack_signing_secret.clone() else {
        return Err(ApiError::not_found(
            "Slack interactivity is not configured: set SLACK_SIGNING_SECRET",
        ));
    };
    let bytes = read_body(&headers, body, &state.config).await?;
    slack::verify(
        secret.expose(),
        &headers,
        &bytes,
        Timestamp::now().unix_seconds(),
    )
    .map_err(|e| {
        let code = e.code();
        // SignatureError::Missing's text is about the webhook schemes; Slack has its own headers.
        let detail = match e {
            SignatureError::Missing => "Slack signature: missing; Slack signs every request with X-Slack-Signature and X-Slack-Request-Timestamp (check the app's Request URL and signing secret)".to_owned(),
            other => format!("Slack signature: {other}"),
        };
        ApiError::unauthorized(code, detail)
    })?;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(ApiError::UnsupportedMediaType {
            detail: format!(
                "expected application/x-www-form-urlencoded (as Slack sends), got {content_type:?}"
            ),
        });
    }
    let payload = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| invalid("the form has no payload field"))?;
    let interaction: Interaction = serde_json::from_str(&payload)
        .map_err(|e| invalid(format!("payload is not an interaction: {e}")))?;
    match interaction.kind.as_str() {
        "block_actions" => block_actions(&state, interaction).await,
        "view_submission" => view_submission(&state, interaction).await,
        other => {
            // Slack wants every interaction acknowledged; we act on two kinds only.
            tracing::debug!(kind = other, "Slack interaction ignored");
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// The clicker as `decided_by`: `name (slack:U123)`, or `slack:U123`.
fn decided_by(user: &User) -> ApiResult<String> {
    if user.id.is_empty() || !user.id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid("user.id must be a Slack user id"));
    }
    let plain = format!("slack:{}", user.id);
    Ok(match user.username.as_deref().or(user.name.as_deref()) {
        Some(name) => {
            let full = format!("{name} (slack:{})", user.id);
            if check_label("decided_by", &full).is_ok() {
                full
            } else {
                plain
            }
        }
        None => plain,
    })
}

fn allowed(state: &AppState, user: &User) -> bool {
    let list = &state.delivery.slack_allowed_users;
    list.is_empty() || list.iter().any(|u| u == &user.id)
}

async fn block_actions(state: &AppState, i: Interaction) -> ApiResult<Response> {
    let user = i.user.as_ref().ok_or_else(|| invalid("user is missing"))?;
    let by = decided_by(user)?;
    let clicked = i
        .actions
        .first()
        .ok_or_else(|| invalid("actions is empty"))?;
    let Some(action_name) = clicked.action_id.strip_prefix(ACTION_PREFIX) else {
        // Not one of our buttons: acknowledge and do nothing.
        return Ok(StatusCode::OK.into_response());
    };
    let action: Action = action_name
        .parse()
        .map_err(|e: hitlhook_domain::ParseActionError| invalid(e.to_string()))?;
    let checkpoint_id = clicked
        .value
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("the button carries no checkpoint id"))?;
    let reply_to = i.response_url.as_deref();
    if !allowed(state, user) {
        tracing::info!(user = %user.id, checkpoint_id, "Slack click refused: not an allowed responder");
        reply(
            state,
            &checkpoint_id,
            reply_to,
            "Sorry, you are not on the list of people who may decide here.",
        )
        .await?;
        return Ok(StatusCode::OK.into_response());
    }
    if action == Action::Revise {
        let current = state.store.get_checkpoint(&checkpoint_id).await?;
        match current {
            None => {
                reply(
                    state,
                    &checkpoint_id,
                    reply_to,
                    "This checkpoint no longer exists.",
                )
                .await?;
            }
            Some(cp) if cp.status != CheckpointStatus::Pending => {
                reply(state, &checkpoint_id, reply_to, &already(&cp)).await?;
            }
            Some(_) => match (&i.trigger_id, state.delivery.slack_bot) {
                (Some(trigger_id), true) => {
                    let modal = NewDelivery {
                        kind: DeliveryKind::SlackModal,
                        checkpoint_id: Some(checkpoint_id.clone()),
                        kickoff_id: None,
                        event_type: "slack.interaction".into(),
                        target: "slack".into(),
                        payload: json!(ModalRequest {
                            trigger_id: trigger_id.clone()
                        })
                        .to_string(),
                        // A trigger_id expires after 3 s: one retry at most.
                        max_attempts: Some(2),
                    };
                    enqueue(state, modal).await?;
                }
                _ => {
                    let link = inbox_link(&state.delivery.base_url, &checkpoint_id);
                    let text = format!(
                        "Revise needs feedback for the agent: <{link}|open the checkpoint in the inbox> and write it there."
                    );
                    reply(state, &checkpoint_id, reply_to, &text).await?;
                }
            },
        }
        return Ok(StatusCode::OK.into_response());
    }
    let request = DecisionRequest {
        action,
        feedback: None,
        decided_by: by,
        channel: "slack".into(),
    };
    let outcome = apply_decision(
        state,
        &checkpoint_id,
        request,
        &format!("slack:{}", user.id),
    )
    .await?;
    match outcome {
        DecideOutcome::Decided { .. } => {
            if !state.delivery.slack_bot
                && let Some(url) = reply_to
            {
                // No bot token: the click's response_url is the only way to edit the message.
                let edit = Reply {
                    replace_original: true,
                    text: None,
                };
                enqueue(state, respond(&checkpoint_id, url, &edit)).await?;
            }
        }
        DecideOutcome::Unchanged(cp) => {
            reply(state, &checkpoint_id, reply_to, &already(&cp)).await?;
        }
        DecideOutcome::Refused { checkpoint, error } => {
            let text = match error {
                DecideError::ActionNotAllowed(a) => {
                    format!("{a} is not allowed at this checkpoint.")
                }
                _ => already(&checkpoint),
            };
            reply(state, &checkpoint_id, reply_to, &text).await?;
        }
        DecideOutcome::NotFound => {
            reply(
                state,
                &checkpoint_id,
                reply_to,
                "This checkpoint no longer exists.",
            )
            .await?;
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// "Already decided by X via Y", in Slack's words.
fn already(cp: &Checkpoint) -> String {
    match &cp.decision {
        Some(d) => format!(
            "Already decided: *{}* by {} via {} — nothing was changed.",
            d.action,
            who(&d.decided_by),
            d.channel
        ),
        None => format!("{} Nothing was changed.", closed_sentence(cp)),
    }
}

fn respond(checkpoint_id: &str, url: &str, reply: &Reply) -> NewDelivery {
    NewDelivery {
        kind: DeliveryKind::SlackRespond,
        checkpoint_id: Some(checkpoint_id.to_owned()),
        kickoff_id: None,
        event_type: "slack.interaction".into(),
        target: url.to_owned(),
        payload: json!(reply).to_string(),
        // response_url is valid for 30 minutes: a few quick retries only.
        max_attempts: Some(3),
    }
}

/// An ephemeral note to the clicker through the click's `response_url`.
async fn reply(
    state: &AppState,
    checkpoint_id: &str,
    url: Option<&str>,
    text: &str,
) -> ApiResult<()> {
    let Some(url) = url else {
        tracing::info!(
            checkpoint_id,
            "Slack interaction without response_url: no reply sent"
        );
        return Ok(());
    };
    let note = Reply {
        replace_original: false,
        text: Some(text.to_owned()),
    };
    enqueue(state, respond(checkpoint_id, url, &note)).await
}

async fn enqueue(state: &AppState, d: NewDelivery) -> ApiResult<()> {
    state
        .store
        .enqueue_deliveries(&[d], Timestamp::now())
        .await?;
    state.delivery.wake.wake();
    Ok(())
}

/// The Revise modal's submission: decides with the feedback, or shows why not in the modal.
async fn view_submission(state: &AppState, i: Interaction) -> ApiResult<Response> {
    let view = i.view.as_ref().ok_or_else(|| invalid("view is missing"))?;
    if view.callback_id.as_deref() != Some(REVISE_CALLBACK) {
        return Ok(StatusCode::OK.into_response());
    }
    let user = i.user.as_ref().ok_or_else(|| invalid("user is missing"))?;
    let by = decided_by(user)?;
    let checkpoint_id = view
        .private_metadata
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("view.private_metadata carries no checkpoint id"))?;
    let feedback = view
        .state
        .as_ref()
        .and_then(|s| s["values"][FEEDBACK_BLOCK][FEEDBACK_ACTION]["value"].as_str())
        .map(str::to_owned);
    let errors = |text: String| {
        axum::Json(json!({"response_action": "errors", "errors": {FEEDBACK_BLOCK: text}}))
            .into_response()
    };
    if !allowed(state, user) {
        return Ok(errors(
            "You are not on the list of people who may decide here.".into(),
        ));
    }
    let request = DecisionRequest {
        action: Action::Revise,
        feedback,
        decided_by: by,
        channel: "slack".into(),
    };
    Ok(
        match apply_decision(
            state,
            &checkpoint_id,
            request,
            &format!("slack:{}", user.id),
        )
        .await?
        {
            DecideOutcome::Decided { .. } | DecideOutcome::Unchanged(_) => {
                StatusCode::OK.into_response()
            }
            DecideOutcome::Refused {
                error: DecideError::FeedbackRequired,
                ..
            } => errors("Tell the agent what to change.".into()),
            DecideOutcome::Refused { checkpoint, .. } => {
                errors(already(&checkpoint).replace('*', ""))
            }
            DecideOutcome::NotFound => errors("This checkpoint no longer exists.".into()),
        },
    )
}
