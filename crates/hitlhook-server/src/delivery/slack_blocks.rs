//! Slack Block Kit for checkpoints: the review message (name, execution, a readable summary of
//! the context, buttons Continue / Revise / Skip / Stop, an inbox link), the same message once
//! closed (decision, who, when, no buttons), and the Revise feedback modal. Pure rendering.

use hitlhook_domain::delivery::summary::{self, shorten};
use hitlhook_domain::{Action, Checkpoint, CheckpointStatus, Timestamp};
use serde_json::{Value, json};

use crate::html::inbox_link;

/// `action_id` prefix of the decision buttons: `decide:continue`, ...
pub const ACTION_PREFIX: &str = "decide:";
/// `callback_id` of the Revise modal.
pub const REVISE_CALLBACK: &str = "hitlhook_revise";
/// Block and action ids of the modal's feedback input.
pub const FEEDBACK_BLOCK: &str = "feedback";
pub const FEEDBACK_ACTION: &str = "feedback_input";

/// Escapes text for Slack mrkdwn (`&`, `<`, `>` only, as Slack documents).
#[must_use]
pub fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack user mention for `decided_by` values made by Slack clicks, else the text.
#[must_use]
pub fn who(decided_by: &str) -> String {
    let id = decided_by
        .rsplit_once("(slack:")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .or_else(|| decided_by.strip_prefix("slack:"));
    match id {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            format!("<@{id}>")
        }
        _ => mrkdwn(decided_by),
    }
}

fn date(at: Timestamp) -> String {
    // Slack renders this in each reader's time zone; the fallback is UTC.
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        at.unix_seconds(),
        at.to_rfc3339()
    )
}

fn label(action: Action) -> &'static str {
    match action {
        Action::Continue => "Continue",
        Action::Revise => "Revise",
        Action::Skip => "Skip",
        Action::Stop => "Stop",
    }
}

/// The message for a checkpoint in its current state: `(fallback text, blocks)`.
#[must_use]
pub fn message(cp: &Checkpoint, base_url: &str) -> (String, Value) {
    let name = shorten(&cp.name, 120);
    let (title, text) = match cp.status {
        CheckpointStatus::Pending => (
            format!("Review needed: {name}"),
            format!("Review needed: {name} ({})", cp.id),
        ),
        CheckpointStatus::Decided => {
            let d = cp.decision.as_ref();
            (
                format!("Decided: {name}"),
                format!(
                    "{name}: {} by {}",
                    d.map_or("decided", |d| d.action.as_str()),
                    d.map_or("?", |d| d.decided_by.as_str())
                ),
            )
        }
        CheckpointStatus::Expired => (format!("Expired: {name}"), format!("{name} expired")),
        CheckpointStatus::Cancelled => (
            format!("Cancelled: {name}"),
            format!("{name} was cancelled"),
        ),
    };
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Execution*\n{}", cp.kickoff_id.as_deref().map_or("—".to_owned(), |k| format!("`{}`", mrkdwn(&shorten(k, 80)))))}),
        json!({"type": "mrkdwn", "text": format!("*Checkpoint*\n`{}`", mrkdwn(&shorten(&cp.id, 80)))}),
    ];
    if let (CheckpointStatus::Pending, Some(at)) = (cp.status, cp.expires_at) {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Expires*\n{}", date(at))}));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": shorten(&title, 150), "emoji": true}}),
        json!({"type": "section", "fields": fields}),
    ];
    let lines: Vec<String> = summary::summarize(&cp.context_json, 10, 280)
        .into_iter()
        .map(|f| format!("*{}*: {}", mrkdwn(&f.label), mrkdwn(&f.value)))
        .collect();
    if !lines.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": shorten(&lines.join("\n"), 2900)}}));
    }
    match (cp.status, &cp.decision) {
        (CheckpointStatus::Pending, _) => blocks.push(buttons(cp)),
        (_, Some(d)) => {
            let icon = match d.action {
                Action::Continue => ":white_check_mark:",
                Action::Revise => ":pencil2:",
                Action::Skip => ":fast_forward:",
                Action::Stop => ":octagonal_sign:",
            };
            let mut line = format!(
                "{icon} *{}* by {} via {} · {}",
                label(d.action),
                who(&d.decided_by),
                mrkdwn(&d.channel),
                date(d.decided_at)
            );
            if let Some(feedback) = &d.feedback {
                line.push_str(&format!(
                    "\n>{}",
                    mrkdwn(&shorten(feedback, 1500)).replace('\n', "\n>")
                ));
            }
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": line}}));
        }
        (_, None) => {
            let reason = cp
                .closed_reason
                .as_deref()
                .unwrap_or("closed without a decision");
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(":hourglass: *{}* · {}", cp.status.as_str(), mrkdwn(reason))}}));
        }
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{}|Open in the hitlhook inbox>", inbox_link(base_url, &cp.id))}]}));
    (text, Value::Array(blocks))
}

fn buttons(cp: &Checkpoint) -> Value {
    let order = [Action::Continue, Action::Revise, Action::Skip, Action::Stop];
    let elements: Vec<Value> = order
        .into_iter()
        .filter(|a| cp.allowed_actions.contains(a))
        .map(|a| {
            let mut button = json!({
                "type": "button",
                "action_id": format!("{ACTION_PREFIX}{}", a.as_str()),
                "text": {"type": "plain_text", "text": label(a)},
                "value": cp.id,
            });
            match a {
                Action::Continue => button["style"] = json!("primary"),
                Action::Stop => {
                    button["style"] = json!("danger");
                    button["confirm"] = json!({
                        "title": {"type": "plain_text", "text": "Stop the execution?"},
                        "text": {"type": "plain_text", "text": "The agent run ends here."},
                        "confirm": {"type": "plain_text", "text": "Stop"},
                        "deny": {"type": "plain_text", "text": "Cancel"},
                    });
                }
                _ => {}
            }
            button
        })
        .collect();
    json!({"type": "actions", "block_id": "hitlhook_decision", "elements": elements})
}

/// The Revise modal: asks for the feedback the agent needs.
#[must_use]
pub fn revise_modal(cp: &Checkpoint) -> Value {
    json!({
        "type": "modal",
        "callback_id": REVISE_CALLBACK,
        "private_metadata": cp.id,
        "title": {"type": "plain_text", "text": "Revise"},
        "submit": {"type": "plain_text", "text": "Send feedback"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\nTell the agent what to change.", mrkdwn(&shorten(&cp.name, 200)))}},
            {"type": "input", "block_id": FEEDBACK_BLOCK,
             "label": {"type": "plain_text", "text": "Feedback"},
             "element": {"type": "plain_text_input", "action_id": FEEDBACK_ACTION, "multiline": true, "max_length": 3000}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitlhook_domain::{CheckpointSpec, Decided, DecisionRequest};

    fn pending() -> Checkpoint {
        CheckpointSpec {
            id: Some("cp-1".into()),
            name: "after <planning>".into(),
            kickoff_id: Some("k-1".into()),
            context_json: r#"{"plan": "a & b", "score": 0.9}"#.into(),
            allowed_actions: Some(vec![Action::Stop, Action::Continue]),
            expires_in_seconds: Some(60),
            ..CheckpointSpec::default()
        }
        .into_checkpoint("x".into(), Timestamp(1_700_000_000_000), 1)
        .expect("valid")
    }

    #[test]
    fn the_review_message_has_everything_a_reviewer_needs() {
        let (text, blocks) = message(&pending(), "https://h.example");
        let all = blocks.to_string();
        assert!(text.contains("after <planning>"));
        assert_eq!(blocks[0]["text"]["text"], "Review needed: after <planning>");
        assert!(all.contains("after &lt;planning&gt;") || all.contains("Review needed"));
        assert!(all.contains("`k-1`") && all.contains("`cp-1`"), "{all}");
        assert!(all.contains("*plan*: a &amp; b"), "escaped summary: {all}");
        assert!(all.contains("https://h.example/#/pending/cp-1"));
        assert!(all.contains("<!date^1700000060^"));
        let actions = blocks
            .as_array()
            .and_then(|b| b.iter().find(|b| b["type"] == "actions"))
            .expect("buttons");
        let ids: Vec<&str> = actions["elements"]
            .as_array()
            .expect("elements")
            .iter()
            .filter_map(|e| e["action_id"].as_str())
            .collect();
        assert_eq!(
            ids,
            ["decide:continue", "decide:stop"],
            "allowed actions only, in reading order"
        );
        assert!(
            actions["elements"][1]["confirm"].is_object(),
            "stop asks first"
        );
    }

    #[test]
    fn a_decided_message_shows_who_and_has_no_buttons() {
        let request = DecisionRequest {
            action: Action::Continue,
            feedback: Some("looks <good>".into()),
            decided_by: "alice (slack:U123ABC)".into(),
            channel: "slack".into(),
        };
        let Ok(Decided::New(cp)) = pending().decide(request, Timestamp(1_700_000_001_000)) else {
            panic!("decides")
        };
        let (text, blocks) = message(&cp, "https://h.example");
        let all = blocks.to_string();
        assert!(text.contains("continue by alice"));
        assert_eq!(blocks[0]["text"]["text"], "Decided: after <planning>");
        assert!(!all.contains("\"actions\""), "buttons gone: {all}");
        assert!(all.contains("*Continue* by <@U123ABC> via slack"), "{all}");
        assert!(all.contains(">looks &lt;good&gt;"), "{all}");
        let mut expired = pending();
        expired.status = CheckpointStatus::Expired;
        expired.closed_reason = Some("no decision before expires_at".into());
        let all = message(&expired, "https://h.example").1.to_string();
        assert!(
            !all.contains("\"actions\"") && all.contains("expired"),
            "{all}"
        );
    }

    #[test]
    fn who_mentions_slack_users_only() {
        assert_eq!(who("alice (slack:U1)"), "<@U1>");
        assert_eq!(who("slack:U1"), "<@U1>");
        assert_eq!(who("bob@example.com"), "bob@example.com");
        assert_eq!(who("<!channel>"), "&lt;!channel&gt;");
        assert_eq!(who("x (slack:U1>)"), "x (slack:U1&gt;)");
    }

    #[test]
    fn the_modal_carries_the_checkpoint() {
        let v = revise_modal(&pending());
        assert_eq!(v["callback_id"], REVISE_CALLBACK);
        assert_eq!(v["private_metadata"], "cp-1");
        assert_eq!(v["blocks"][1]["block_id"], FEEDBACK_BLOCK);
    }
}
