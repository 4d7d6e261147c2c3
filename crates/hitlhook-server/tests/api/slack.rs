//! Slack: a stand-in for Slack (a real HTTP server on loopback) receives the Block Kit messages
//! and edits; interaction requests are signed the way Slack signs them. Clicks decide as the
//! Slack user; repeated and late clicks change nothing and are answered politely; Revise opens a
//! modal whose submission decides with the feedback; unsigned, stale and tampered requests are
//! refused with the store unchanged.

use std::time::{Duration, Instant};

use hitlhook_domain::Timestamp;
use hitlhook_server::Config;
use hitlhook_server::config::Secret;
use hitlhook_server::security::slack::sign;
use hitlhook_store::testing::TestDb;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use crate::peers::{Receiver, Recorded, slack_stand_in};

on_both_backends!(
    the_bot_posts_block_kit_and_a_click_decides_and_edits_the_message,
    repeated_and_late_clicks_change_nothing_and_are_answered_politely,
    a_decision_elsewhere_edits_the_slack_message,
    revise_opens_a_modal_whose_submission_decides_with_the_feedback,
    unsigned_stale_or_tampered_interactions_are_refused,
    only_allowed_responders_may_decide,
    an_incoming_webhook_posts_and_a_click_edits_through_response_url,
);

pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const TOKEN: &str = "xoxb-test-token";

pub fn bot(api: String) -> impl Fn(&mut Config) + Send + Sync {
    move |cfg| {
        cfg.delivery.slack_bot_token = Some(Secret(TOKEN.into()));
        cfg.delivery.slack_channel = Some("C0REVIEW".into());
        cfg.delivery.slack_signing_secret = Some(Secret(SLACK_SECRET.into()));
        cfg.delivery.slack_api_url = api.clone();
        cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
        cfg.delivery.schedule = "20ms".into();
        cfg.delivery.poll_ms = 50;
    }
}

/// A `block_actions` payload as Slack sends it for a button click.
pub fn click(user: &str, action: &str, checkpoint: &str, response_url: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": "alice", "name": "alice", "team_id": "T0001"},
        "api_app_id": "A0001",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1700000000.000000", "channel_id": "C0REVIEW", "is_ephemeral": false},
        "trigger_id": "1234.5678.abcdef",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": "C0REVIEW", "name": "reviews"},
        "message": {"type": "message", "ts": "1700000000.000000", "text": "Review needed"},
        "response_url": response_url,
        "actions": [{"action_id": format!("decide:{action}"), "block_id": "hitlhook_decision",
            "text": {"type": "plain_text", "text": action}, "value": checkpoint, "type": "button",
            "action_ts": "1700000001.000000"}]
    })
}

fn form(payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// Posts a raw form body signed with `secret` at `ts`, as Slack does.
async fn post_signed(app: &TestApp, body: &str, secret: &str, ts: i64) -> reqwest::Response {
    let ts = ts.to_string();
    app.client
        .post(app.url("/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(secret, &ts, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

async fn interact(app: &TestApp, payload: &Value) -> reqwest::Response {
    post_signed(
        app,
        &form(payload),
        SLACK_SECRET,
        Timestamp::now().unix_seconds(),
    )
    .await
}

/// Clicks a button as `user`, with the reply going to `reply_path` on the stand-in, and checks
/// Slack got its 200 (it needs one within 3 s).
pub async fn click_ok(
    app: &TestApp,
    slack: &Receiver,
    user: &str,
    action: &str,
    checkpoint: &str,
    reply_path: &str,
) {
    let response = interact(
        app,
        &click(user, action, checkpoint, &slack.url(reply_path)),
    )
    .await;
    assert_eq!(
        response.status(),
        200,
        "click {action} on {checkpoint} by {user}"
    );
}

fn blocks_text(r: &Recorded) -> String {
    r.json()["blocks"].to_string()
}

fn has_buttons(r: &Recorded) -> bool {
    r.json()["blocks"]
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["type"] == "actions"))
}

async fn the_bot_posts_block_kit_and_a_click_decides_and_edits_the_message(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let app = TestApp::spawn_with(db, bot(slack.url("/api"))).await;
    let sent = Instant::now();
    app.send_checkpoint("cp-1", "k-1").await;
    let posted = slack
        .wait_for("/api/chat.postMessage", 1, 10)
        .await
        .remove(0);
    println!(
        "slack: message posted {:?} after the checkpoint was sent",
        posted.at.duration_since(sent)
    );
    assert_eq!(posted.header("authorization"), format!("Bearer {TOKEN}"));
    let msg = posted.json();
    assert_eq!(msg["channel"], "C0REVIEW");
    assert!(
        msg["text"]
            .as_str()
            .is_some_and(|t| t.contains("after_planning")),
        "fallback text: {msg}"
    );
    let blocks = &msg["blocks"];
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "Review needed: after_planning");
    let all = blocks.to_string();
    assert!(
        all.contains("*Execution*\\n`k-1`") && all.contains("*Checkpoint*\\n`cp-1`"),
        "{all}"
    );
    assert!(
        all.contains("*plan*: 1. research 2. write") && all.contains("*score*: 0.93"),
        "context summary: {all}"
    );
    assert!(
        all.contains(&format!(
            "<{}/#/pending/cp-1|Open in the hitlhook inbox>",
            app.base
        )),
        "inbox link: {all}"
    );
    let buttons = blocks
        .as_array()
        .and_then(|b| b.iter().find(|b| b["type"] == "actions"))
        .expect("buttons");
    let labels: Vec<&str> = buttons["elements"]
        .as_array()
        .expect("elements")
        .iter()
        .filter_map(|e| e["text"]["text"].as_str())
        .collect();
    assert_eq!(labels, ["Continue", "Revise", "Skip", "Stop"]);
    assert!(
        buttons["elements"]
            .as_array()
            .expect("elements")
            .iter()
            .all(|e| e["value"] == "cp-1")
    );
    let message = app
        .delivery_in_state("cp-1", "slack.message", "delivered")
        .await;
    assert_eq!(message["attempts"], 1);

    let started = Instant::now();
    let response = interact(
        &app,
        &click("U0ALICE", "continue", "cp-1", &slack.url("/response/1")),
    )
    .await;
    let answered_in = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        answered_in < Duration::from_secs(3),
        "Slack needs an answer within 3 s; took {answered_in:?}"
    );
    let cp = app.checkpoint("cp-1").await;
    assert_eq!(cp["status"], "decided");
    assert_eq!(cp["decision"]["action"], "continue");
    assert_eq!(cp["decision"]["decided_by"], "alice (slack:U0ALICE)");
    assert_eq!(cp["decision"]["channel"], "slack");
    let edit = slack.wait_for("/api/chat.update", 1, 10).await.remove(0);
    println!(
        "slack: click answered in {answered_in:?}; message edited {:?} after the click",
        edit.at.duration_since(started)
    );
    let e = edit.json();
    assert_eq!(
        (e["channel"].as_str(), e["ts"].as_str()),
        (Some("C0REVIEW"), Some("1700000000.000000")),
        "edits the posted message"
    );
    assert!(!has_buttons(&edit), "buttons gone: {e}");
    let text = blocks_text(&edit);
    assert!(
        text.contains("Decided: after_planning")
            && text.contains("*Continue* by <@U0ALICE> via slack"),
        "{text}"
    );
    assert!(
        slack.to("/response/1").is_empty(),
        "a successful click needs no reply"
    );
}

async fn repeated_and_late_clicks_change_nothing_and_are_answered_politely(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let app = TestApp::spawn_with(db, bot(slack.url("/api"))).await;
    app.send_checkpoint("cp-1", "k-1").await;
    slack.wait_for("/api/chat.postMessage", 1, 10).await;
    click_ok(&app, &slack, "U0ALICE", "continue", "cp-1", "/response/1").await;
    slack.wait_for("/api/chat.update", 1, 10).await;
    let before = app.snapshot().await;
    // The same click again (a double click), and a late click by someone else on Stop.
    click_ok(&app, &slack, "U0ALICE", "continue", "cp-1", "/response/2").await;
    let mut late = click("U0BOB", "stop", "cp-1", &slack.url("/response/3"));
    late["user"]["username"] = "bob".into();
    assert_eq!(interact(&app, &late).await.status(), 200);
    for path in ["/response/2", "/response/3"] {
        let reply = slack.wait_for(path, 1, 10).await.remove(0).json();
        assert_eq!(reply["response_type"], "ephemeral", "{reply}");
        assert_eq!(reply["replace_original"], false);
        let text = reply["text"].as_str().expect("text");
        assert!(
            text.contains("Already decided: *continue* by <@U0ALICE> via slack"),
            "{text}"
        );
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "repeated and late clicks change nothing"
    );
    // Clicking a checkpoint that does not exist is answered too.
    click_ok(&app, &slack, "U0ALICE", "skip", "nope", "/response/4").await;
    let reply = slack.wait_for("/response/4", 1, 10).await.remove(0).json();
    assert!(
        reply["text"]
            .as_str()
            .is_some_and(|t| t.contains("no longer exists")),
        "{reply}"
    );
    assert_eq!(slack.to("/api/chat.update").len(), 1, "one edit only");
}

async fn a_decision_elsewhere_edits_the_slack_message(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let app = TestApp::spawn_with(db, bot(slack.url("/api"))).await;
    app.send_checkpoint("cp-1", "k-1").await;
    app.send_checkpoint("cp-2", "k-2").await;
    slack.wait_for("/api/chat.postMessage", 2, 10).await;
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-1", "revise", Some("Cite two sources."))
            .await
            .status(),
        200
    );
    let edit = slack.wait_for("/api/chat.update", 1, 10).await.remove(0);
    let text = blocks_text(&edit);
    assert!(!has_buttons(&edit));
    assert!(
        text.contains("*Revise* by key:WEBHOOK_API_KEY via api")
            && text.contains(">Cite two sources."),
        "{text}"
    );
    // A crew that finishes cancels its pending checkpoint: its message loses its buttons too.
    let done = json!({"event_type": "crew.completed", "kickoff_id": "k-2"});
    assert_eq!(app.send_event(&done).await.status(), 200);
    let edits = slack.wait_for("/api/chat.update", 2, 10).await;
    let cancelled = edits
        .iter()
        .find(|r| blocks_text(r).contains("Cancelled: after_planning"))
        .expect("cancelled edit");
    assert!(!has_buttons(cancelled));
    assert!(blocks_text(cancelled).contains("execution completed"));
}

async fn revise_opens_a_modal_whose_submission_decides_with_the_feedback(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let app = TestApp::spawn_with(db, bot(slack.url("/api"))).await;
    app.send_checkpoint("cp-1", "k-1").await;
    slack.wait_for("/api/chat.postMessage", 1, 10).await;
    let before = app.snapshot().await;
    click_ok(&app, &slack, "U0ALICE", "revise", "cp-1", "/response/1").await;
    let open = slack
        .wait_for("/api/views.open", 1, 10)
        .await
        .remove(0)
        .json();
    assert_eq!(open["trigger_id"], "1234.5678.abcdef");
    assert_eq!(open["view"]["callback_id"], "hitlhook_revise");
    assert_eq!(open["view"]["private_metadata"], "cp-1");
    assert_eq!(
        app.snapshot().await,
        before,
        "opening the modal decides nothing"
    );
    let submission = |feedback: Value| {
        json!({
            "type": "view_submission",
            "user": {"id": "U0ALICE", "username": "alice"},
            "view": {"id": "V1", "callback_id": "hitlhook_revise", "private_metadata": "cp-1",
                "state": {"values": {"feedback": {"feedback_input": {"type": "plain_text_input", "value": feedback}}}}}
        })
    };
    let empty = interact(&app, &submission(Value::Null)).await;
    assert_eq!(empty.status(), 200);
    let body: Value = empty.json().await.expect("json");
    assert_eq!(
        body["response_action"], "errors",
        "the modal shows why: {body}"
    );
    assert!(
        body["errors"]["feedback"]
            .as_str()
            .is_some_and(|e| e.contains("what to change"))
    );
    assert_eq!(app.snapshot().await, before);
    let ok = interact(&app, &submission(json!("Use the 2025 figures."))).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.text().await.expect("body"),
        "",
        "an empty 200 closes the modal"
    );
    let cp = app.checkpoint("cp-1").await;
    assert_eq!(
        (
            cp["decision"]["action"].as_str(),
            cp["decision"]["feedback"].as_str()
        ),
        (Some("revise"), Some("Use the 2025 figures."))
    );
    assert_eq!(cp["decision"]["decided_by"], "alice (slack:U0ALICE)");
    let edit = slack.wait_for("/api/chat.update", 1, 10).await.remove(0);
    assert!(blocks_text(&edit).contains(">Use the 2025 figures."));
    // A second submission (another open modal) is told in the modal, and changes nothing.
    let after = app.snapshot().await;
    let late: Value = interact(&app, &submission(json!("Something else.")))
        .await
        .json()
        .await
        .expect("json");
    assert!(
        late["errors"]["feedback"]
            .as_str()
            .is_some_and(|e| e.contains("Already decided")),
        "{late}"
    );
    assert_eq!(app.snapshot().await, after);
    // Revise on a decided checkpoint opens no modal.
    click_ok(&app, &slack, "U0ALICE", "revise", "cp-1", "/response/9").await;
    slack.wait_for("/response/9", 1, 10).await;
    assert_eq!(slack.to("/api/views.open").len(), 1);
}

async fn unsigned_stale_or_tampered_interactions_are_refused(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let app = TestApp::spawn_with(db, bot(slack.url("/api"))).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let before = app.snapshot().await;
    let body = form(&click("U0ALICE", "stop", "cp-1", &slack.url("/response/1")));
    let now = Timestamp::now().unix_seconds();
    let tampered = body.replace("stop", "continue");
    let signed_other = form(&click("U0ALICE", "skip", "cp-1", &slack.url("/response/1")));
    let raw = |headers: Vec<(&'static str, String)>, body: String, content_type: &'static str| {
        let app = &app;
        async move {
            let mut r = app
                .client
                .post(app.url("/slack/interactions"))
                .header("content-type", content_type)
                .body(body);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send().await.expect("request")
        }
    };
    let sig = |b: &str, ts: i64| sign(SLACK_SECRET, &ts.to_string(), b.as_bytes());
    let form_ct = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        ("unsigned", raw(vec![], body.clone(), form_ct).await, 401, "missing_signature"),
        ("stale", post_signed(&app, &body, SLACK_SECRET, now - 301).await, 401, "stale_timestamp"),
        ("from the future", post_signed(&app, &body, SLACK_SECRET, now + 310).await, 401, "future_timestamp"),
        ("wrong secret", post_signed(&app, &body, "not-the-secret", now).await, 401, "invalid_signature"),
        ("tampered body", raw(vec![("x-slack-request-timestamp", now.to_string()), ("x-slack-signature", sig(&body, now))], tampered, form_ct).await, 401, "invalid_signature"),
        ("signature of another body", raw(vec![("x-slack-request-timestamp", now.to_string()), ("x-slack-signature", sig(&signed_other, now))], body.clone(), form_ct).await, 401, "invalid_signature"),
        ("timestamp changed", raw(vec![("x-slack-request-timestamp", (now - 1).to_string()), ("x-slack-signature", sig(&body, now))], body.clone(), form_ct).await, 401, "invalid_signature"),
        ("not v0", raw(vec![("x-slack-request-timestamp", now.to_string()), ("x-slack-signature", sig(&body, now).replace("v0=", "v1="))], body.clone(), form_ct).await, 401, "malformed_signature"),
        ("timestamp not a number", raw(vec![("x-slack-request-timestamp", "soon".into()), ("x-slack-signature", sig(&body, now))], body.clone(), form_ct).await, 401, "malformed_signature"),
        ("signed JSON instead of a form", raw(vec![("x-slack-request-timestamp", now.to_string()), ("x-slack-signature", sig("{}", now))], "{}".into(), "application/json").await, 415, "unsupported_media_type"),
        ("no payload field", post_signed(&app, "token=x&team_id=T1", SLACK_SECRET, now).await, 400, "invalid_payload"),
        ("payload not JSON", post_signed(&app, "payload=%7Bnope", SLACK_SECRET, now).await, 400, "invalid_payload"),
        ("unknown action", post_signed(&app, &form(&click("U0ALICE", "approve", "cp-1", "")), SLACK_SECRET, now).await, 400, "invalid_payload"),
        ("no user", post_signed(&app, &form(&json!({"type": "block_actions", "actions": [{"action_id": "decide:stop", "value": "cp-1"}]})), SLACK_SECRET, now).await, 400, "invalid_payload"),
        ("bad user id", post_signed(&app, &form(&click("U0<script>", "stop", "cp-1", "")), SLACK_SECRET, now).await, 400, "invalid_payload"),
    ];
    for (name, response, status, code) in cases {
        let body = assert_problem(response, status, code).await;
        assert!(body["detail"].is_string(), "{name}");
    }
    let huge = "payload=".to_owned() + &"a".repeat(70 * 1024);
    assert_problem(
        post_signed(&app, &huge, SLACK_SECRET, now).await,
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(app.snapshot().await, before, "nothing was decided");
    assert_eq!(app.checkpoint("cp-1").await["status"], "pending");
    // Unknown interaction types are acknowledged, as Slack requires, and change nothing.
    assert_eq!(
        interact(
            &app,
            &json!({"type": "shortcut", "user": {"id": "U0ALICE"}})
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.snapshot().await, before);
    // A server without a signing secret refuses every interaction.
    let plain = TestApp::spawn(TestDb::sqlite()).await;
    assert_problem(
        post_signed(&plain, &body, SLACK_SECRET, now).await,
        404,
        "not_found",
    )
    .await;
}

async fn only_allowed_responders_may_decide(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let api = slack.url("/api");
    let app = TestApp::spawn_with(db, move |cfg| {
        bot(api.clone())(cfg);
        cfg.delivery.slack_allowed_users = vec!["U0BOSS".into()];
    })
    .await;
    app.send_checkpoint("cp-1", "k-1").await;
    slack.wait_for("/api/chat.postMessage", 1, 10).await;
    let before = app.snapshot().await;
    click_ok(&app, &slack, "U0ALICE", "continue", "cp-1", "/response/1").await;
    let reply = slack.wait_for("/response/1", 1, 10).await.remove(0).json();
    assert!(
        reply["text"]
            .as_str()
            .is_some_and(|t| t.contains("not on the list")),
        "{reply}"
    );
    assert_eq!(app.snapshot().await, before);
    click_ok(&app, &slack, "U0BOSS", "skip", "cp-1", "/response/2").await;
    assert_eq!(
        app.checkpoint("cp-1").await["decision"]["decided_by"],
        "alice (slack:U0BOSS)"
    );
}

async fn an_incoming_webhook_posts_and_a_click_edits_through_response_url(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let hook = slack.url("/webhook");
    let app = TestApp::spawn_with(db, move |cfg| {
        cfg.delivery.slack_webhook_url = Some(Secret(hook.clone()));
        cfg.delivery.slack_signing_secret = Some(Secret(SLACK_SECRET.into()));
        cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
        cfg.delivery.schedule = "20ms".into();
    })
    .await;
    app.send_checkpoint("cp-1", "k-1").await;
    let posted = slack.wait_for("/webhook", 1, 10).await.remove(0);
    assert!(has_buttons(&posted), "{}", blocks_text(&posted));
    assert!(
        posted.header("authorization").is_empty(),
        "no token is sent to a webhook"
    );
    // Revise without a bot token cannot open a modal: the clicker is sent to the inbox.
    click_ok(&app, &slack, "U0ALICE", "revise", "cp-1", "/response/1").await;
    let hint = slack.wait_for("/response/1", 1, 10).await.remove(0).json();
    assert!(
        hint["text"]
            .as_str()
            .is_some_and(|t| t.contains("/#/pending/cp-1")),
        "{hint}"
    );
    assert!(slack.to("/api/views.open").is_empty());
    click_ok(&app, &slack, "U0ALICE", "skip", "cp-1", "/response/2").await;
    let edit = slack.wait_for("/response/2", 1, 10).await.remove(0);
    let e = edit.json();
    assert_eq!(e["replace_original"], true);
    assert!(!has_buttons(&edit));
    assert!(blocks_text(&edit).contains("*Skip* by <@U0ALICE> via slack"));
    let respond = app
        .delivery_in_state("cp-1", "slack.respond", "delivered")
        .await;
    assert_eq!(
        respond["target"], "response_url",
        "response URLs are not shown"
    );
    assert!(
        slack.to("/api/chat.update").is_empty(),
        "no bot token: no chat.update"
    );
}

on_both_backends!(a_rejected_bot_token_is_a_dead_letter_at_once);

async fn a_rejected_bot_token_is_a_dead_letter_at_once(db: TestDb) {
    let slack = slack_stand_in("xoxb-the-right-token").await;
    let app = TestApp::spawn_with(db, bot(slack.url("/api"))).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let dead = app.delivery_in_state("cp-1", "slack.message", "dead").await;
    assert_eq!(
        dead["attempts"], 1,
        "invalid_auth is permanent: not retried"
    );
    assert_eq!(
        dead["last_error"], "chat.postMessage: invalid_auth",
        "Slack's own error is kept"
    );
    assert!(
        !dead.to_string().contains(TOKEN),
        "the token never appears in the delivery"
    );
}
