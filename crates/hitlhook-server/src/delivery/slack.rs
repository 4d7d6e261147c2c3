//! The Slack channel. With a bot token: `chat.postMessage` (the answer's channel and ts are kept
//! as the delivery's result), `chat.update` when the checkpoint closes, `views.open` for the
//! Revise modal. With only an incoming webhook: the message is posted there and can be edited
//! only through a click's `response_url`. Messages are rendered from the checkpoint as it is at
//! send time, so a late post already shows the decision.

use hitlhook_domain::{CheckpointStatus, DeliveryKind, DeliveryState, Timestamp};
use hitlhook_store::{Delivery, DeliveryQuery, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::delivery::SendOutcome;
use crate::delivery::http::{Outbound, outcome_of, retry_after};
use crate::delivery::slack_blocks;

/// What a `slack.respond` delivery carries: a reply through a click's `response_url`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
pub struct Reply {
    /// Replace the clicked message with the checkpoint's current rendering.
    #[serde(default)]
    pub replace_original: bool,
    /// An ephemeral note to the person who clicked.
    #[serde(default)]
    pub text: Option<String>,
}

/// What a `slack.modal` delivery carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ModalRequest {
    pub trigger_id: String,
}

/// Where a posted message lives (the result of a `chat.postMessage`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// The Slack channel's settings.
#[derive(Clone)]
pub struct Slack {
    pub outbound: Outbound,
    pub api_url: String,
    pub bot_token: Option<Secret>,
    pub channel: Option<String>,
    pub webhook_url: Option<Secret>,
    pub base_url: String,
}

impl Slack {
    pub async fn send(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        match d.kind {
            DeliveryKind::SlackMessage => self.post(store, d).await,
            DeliveryKind::SlackUpdate => self.update(store, d).await,
            DeliveryKind::SlackRespond => self.respond(store, d).await,
            DeliveryKind::SlackModal => self.modal(store, d).await,
            _ => SendOutcome::permanent("not a Slack delivery"),
        }
    }

    async fn checkpoint(
        &self,
        store: &dyn Store,
        d: &Delivery,
    ) -> Result<hitlhook_domain::Checkpoint, SendOutcome> {
        let Some(id) = &d.checkpoint_id else {
            return Err(SendOutcome::permanent("the delivery names no checkpoint"));
        };
        match store.get_checkpoint(id).await {
            Ok(Some(cp)) => Ok(cp),
            Ok(None) => Err(SendOutcome::permanent(format!(
                "checkpoint {id:?} does not exist"
            ))),
            Err(e) => Err(SendOutcome::retry(format!(
                "reading the checkpoint failed: {e}"
            ))),
        }
    }

    async fn post(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let cp = match self.checkpoint(store, d).await {
            Ok(cp) => cp,
            Err(outcome) => return outcome,
        };
        let (text, blocks) = slack_blocks::message(&cp, &self.base_url);
        if let (Some(_), Some(channel)) = (&self.bot_token, &self.channel) {
            let body = json!({"channel": channel, "text": text, "blocks": blocks,
                "unfurl_links": false, "unfurl_media": false});
            return match self.api("chat.postMessage", &body).await {
                Ok(answer) => {
                    let posted = Posted {
                        channel: answer["channel"].as_str().unwrap_or(channel).to_owned(),
                        ts: answer["ts"].as_str().unwrap_or_default().to_owned(),
                    };
                    SendOutcome::Delivered {
                        status: Some(200),
                        result: serde_json::to_string(&posted).ok(),
                    }
                }
                Err(outcome) => outcome,
            };
        }
        let Some(url) = &self.webhook_url else {
            return SendOutcome::permanent("neither SLACK_BOT_TOKEN nor SLACK_WEBHOOK_URL is set");
        };
        let body = json!({"text": text, "blocks": blocks});
        self.post_json(url.expose(), &body).await
    }

    async fn update(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let cp = match self.checkpoint(store, d).await {
            Ok(cp) => cp,
            Err(outcome) => return outcome,
        };
        let query = DeliveryQuery {
            checkpoint_id: Some(cp.id.clone()),
            kind: Some(DeliveryKind::SlackMessage),
            limit: 10,
            ..DeliveryQuery::default()
        };
        let messages = match store.list_deliveries(&query).await {
            Ok(page) => page.items,
            Err(e) => return SendOutcome::retry(format!("finding the Slack message failed: {e}")),
        };
        let posted = messages.iter().find_map(|m| {
            (m.state == DeliveryState::Delivered)
                .then(|| {
                    m.result
                        .as_deref()
                        .and_then(|r| serde_json::from_str::<Posted>(r).ok())
                })
                .flatten()
                .filter(|p| !p.ts.is_empty())
        });
        let Some(posted) = posted else {
            if messages.iter().any(|m| m.state == DeliveryState::Pending) {
                // The edit raced ahead of the post; the post will render the closed state anyway.
                return SendOutcome::retry("the Slack message is not posted yet");
            }
            return SendOutcome::Skipped("no Slack message was posted for this checkpoint".into());
        };
        let (text, blocks) = slack_blocks::message(&cp, &self.base_url);
        let body =
            json!({"channel": posted.channel, "ts": posted.ts, "text": text, "blocks": blocks});
        match self.api("chat.update", &body).await {
            Ok(_) => SendOutcome::Delivered {
                status: Some(200),
                result: None,
            },
            Err(outcome) => outcome,
        }
    }

    async fn respond(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let reply: Reply = serde_json::from_str(&d.payload).unwrap_or_default();
        let body = if reply.replace_original {
            let cp = match self.checkpoint(store, d).await {
                Ok(cp) => cp,
                Err(outcome) => return outcome,
            };
            let (text, blocks) = slack_blocks::message(&cp, &self.base_url);
            json!({"replace_original": true, "text": text, "blocks": blocks})
        } else {
            json!({"response_type": "ephemeral", "replace_original": false,
                "text": reply.text.unwrap_or_default()})
        };
        self.post_json(&d.target, &body).await
    }

    async fn modal(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let cp = match self.checkpoint(store, d).await {
            Ok(cp) => cp,
            Err(outcome) => return outcome,
        };
        if cp.status != CheckpointStatus::Pending {
            return SendOutcome::Skipped(
                "the checkpoint was closed before the modal opened".into(),
            );
        }
        let Ok(request) = serde_json::from_str::<ModalRequest>(&d.payload) else {
            return SendOutcome::permanent("the modal delivery has no trigger_id");
        };
        let body =
            json!({"trigger_id": request.trigger_id, "view": slack_blocks::revise_modal(&cp)});
        match self.api("views.open", &body).await {
            Ok(_) => SendOutcome::Delivered {
                status: Some(200),
                result: None,
            },
            Err(outcome) => outcome,
        }
    }

    async fn post_json(&self, url: &str, body: &Value) -> SendOutcome {
        let headers = [("content-type".to_owned(), "application/json".to_owned())];
        match self
            .outbound
            .post(url, &headers, body.to_string().into_bytes())
            .await
        {
            Ok(answer) => outcome_of(&answer, Timestamp::now()),
            Err(failure) => failure.into(),
        }
    }

    /// Calls a Web API method; Slack answers HTTP 200 with `{"ok": false, "error": ...}` for
    /// most failures, which are told apart here.
    async fn api(&self, method: &str, body: &Value) -> Result<Value, SendOutcome> {
        let Some(token) = &self.bot_token else {
            return Err(SendOutcome::permanent("SLACK_BOT_TOKEN is not set"));
        };
        let url = format!("{}/{method}", self.api_url.trim_end_matches('/'));
        let headers = [
            (
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            ),
            (
                "authorization".to_owned(),
                format!("Bearer {}", token.expose()),
            ),
        ];
        let answer = self
            .outbound
            .post(&url, &headers, body.to_string().into_bytes())
            .await
            .map_err(SendOutcome::from)?;
        if answer.status != 200 {
            return Err(outcome_of(&answer, Timestamp::now()));
        }
        let parsed: Value = serde_json::from_str(&answer.body)
            .map_err(|_| SendOutcome::retry(format!("{method}: the answer is not JSON")))?;
        if parsed["ok"] == Value::Bool(true) {
            return Ok(parsed);
        }
        let error = parsed["error"]
            .as_str()
            .unwrap_or("unknown_error")
            .to_owned();
        let message = format!("{method}: {error}");
        Err(match error.as_str() {
            "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => SendOutcome::Retry {
                status: Some(200),
                error: message,
                retry_after: retry_after(&answer, Timestamp::now()),
            },
            _ => SendOutcome::Permanent {
                status: Some(200),
                error: message,
            },
        })
    }
}
