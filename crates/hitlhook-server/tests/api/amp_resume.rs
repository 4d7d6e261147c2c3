//! Resuming AMP runs: a decision on an AMP checkpoint is sent back through the outbox to the AMP
//! stand-in, which checks exactly what it receives. Crews get `/resume` (with the kickoff's
//! webhook URLs every time) or `/stop/{id}`; flows get their `callback_url` with the mapped emit
//! option. AMP's answers decide what happens next: 5xx/timeouts retry, "resolved elsewhere" is
//! final and recorded, 401/404 are dead at once and revivable.

use std::time::Duration;

use hitlhook_domain::Timestamp;
use hitlhook_domain::amp::KickoffHooks;
use hitlhook_server::Config;
use hitlhook_store::AmpExecution;
use hitlhook_store::testing::TestDb;
use serde_json::{Value, json};

use crate::amp::{bearer, create_source, human_input, new_request, post_amp};
use crate::amp_peer::{AmpStandIn, DEPLOYMENT_TOKEN, Scripted};
use crate::helpers::*;
use crate::on_both_backends;
use crate::peers::slack_stand_in;
use crate::slack::{TOKEN, bot, click_ok};

on_both_backends!(
    a_slack_click_resumes_the_crew_after_two_failed_attempts,
    crew_decisions_map_to_resume_and_stop_and_finished_runs_are_resolved_elsewhere,
    a_flow_decision_answers_its_callback_and_an_answer_in_amp_is_not_retried,
    a_flow_stop_answers_its_request_and_leaves_the_flows_other_requests_open,
    a_sources_emit_map_decides_what_a_flow_hears_and_lets_it_skip,
    flow_callbacks_retry_failures_and_dead_letter_refused_tokens,
    refused_tokens_dead_letter_at_once_and_revive_once_fixed,
);

const INBOUND: &str = "amp-inbound-token-1";

fn fast(cfg: &mut Config) {
    cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
    cfg.delivery.schedule = "20ms".into();
    cfg.delivery.poll_ms = 50;
    cfg.delivery.timeout_ms = 500;
}

async fn crew_source(app: &TestApp, amp: &AmpStandIn, token: &str) {
    create_source(
        app,
        &json!({"name": "prod", "auth": "bearer", "token": INBOUND,
            "deployment_url": amp.url(""), "deployment_token": token}),
    )
    .await;
}

/// AMP asks for review of `execution`'s research task; returns the checkpoint id.
async fn ask(app: &TestApp, amp: &AmpStandIn, execution: &str, output: &str) -> String {
    let response = amp
        .ask_for_input(
            &app.url("/amp/prod/human-input"),
            &bearer(INBOUND),
            execution,
            "research_task",
            output,
        )
        .await;
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.expect("json");
    receipt["checkpoint_id"]
        .as_str()
        .expect("checkpoint")
        .to_owned()
}

/// A bearer source for flows (AMP's token is `INBOUND`), with `emit_map`.
async fn flow_source(app: &TestApp, name: &str, emit_map: Value) {
    create_source(
        app,
        &json!({"name": name, "auth": "bearer", "token": INBOUND, "emit_map": emit_map}),
    )
    .await;
}

/// AMP's flow HITL webhook for request `id`, to be answered at `callback`; it must be accepted.
async fn ask_flow(app: &TestApp, source: &str, id: &str, callback: &str) {
    let response = post_amp(
        app,
        &format!("/amp/{source}/flow-hitl"),
        &bearer(INBOUND),
        &new_request(id, callback),
    )
    .await;
    assert_eq!(response.status(), 200, "flow request {id}");
}

/// Waits for `checkpoint`'s `kind` delivery to reach `state`, and checks that its last error
/// says why (names `because`).
async fn ended(app: &TestApp, checkpoint: &str, kind: &str, state: &str, because: &str) -> Value {
    let d = app.delivery_in_state(checkpoint, kind, state).await;
    let error = d["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains(because),
        "{kind} {state}: {because:?} expected in {d}"
    );
    d
}

fn hooks(app: &TestApp) -> KickoffHooks {
    KickoffHooks {
        task_webhook_url: Some(app.url("/amp/prod/task?token=t")),
        step_webhook_url: Some(app.url("/amp/prod/step?token=t")),
        crew_webhook_url: Some(app.url("/amp/prod/crew?token=t")),
    }
}

async fn a_slack_click_resumes_the_crew_after_two_failed_attempts(db: TestDb) {
    let slack = slack_stand_in(TOKEN).await;
    let amp = AmpStandIn::start().await;
    let slack_cfg = bot(slack.url("/api"));
    let app = TestApp::spawn_with(db, move |cfg| {
        slack_cfg(cfg);
        fast(cfg);
    })
    .await;
    crew_source(&app, &amp, DEPLOYMENT_TOKEN).await;
    // The kickoff's webhook URLs, as `hitlhook amp kickoff` records them.
    let now = Timestamp::now();
    app.store
        .save_amp_execution(&AmpExecution {
            kickoff_id: "exec-1".into(),
            source: "prod".into(),
            hooks: hooks(&app),
            remote_status: None,
            remote_detail: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("execution");
    amp.script(
        "/resume",
        vec![
            Scripted::Answer(
                503,
                json!({"error": "Service Unavailable", "message": "try later"}),
            ),
            Scripted::Answer(
                500,
                json!({"error": "Internal Server Error", "message": "boom"}),
            ),
        ],
    );

    // AMP's human-input webhook → a checkpoint → a Slack message.
    let id = ask(&app, &amp, "exec-1", "Three findings about AI agents").await;
    let posted = slack.wait_for("/api/chat.postMessage", 1, 10).await;
    assert!(posted[0].json()["blocks"].to_string().contains(&id));

    // A reviewer clicks Continue in Slack.
    click_ok(&app, &slack, "U0ALICE", "continue", &id, "/response/1").await;

    // AMP fails twice, then takes the third attempt; every attempt carries the same body.
    let calls = amp.wait_for("/resume", 3, 15).await;
    let want = json!({"execution_id": "exec-1", "task_id": "research_task",
        "human_feedback": "Approved.", "is_approve": true,
        "taskWebhookUrl": app.url("/amp/prod/task?token=t"),
        "stepWebhookUrl": app.url("/amp/prod/step?token=t"),
        "crewWebhookUrl": app.url("/amp/prod/crew?token=t")});
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_eq!(
            call.header("authorization"),
            format!("Bearer {DEPLOYMENT_TOKEN}")
        );
        assert_eq!(call.header("content-type"), "application/json");
        assert_eq!(call.json(), want);
    }
    let delivery = app.delivery_in_state(&id, "amp.resume", "delivered").await;
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["target"], "prod");
    assert_eq!(delivery["last_status"], 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(amp.to("/resume").len(), 3, "no attempt after the delivery");
    let cp = app.checkpoint(&id).await;
    assert_eq!(cp["decision"]["action"], "continue");
    assert_eq!(cp["decision"]["channel"], "slack");
}

async fn crew_decisions_map_to_resume_and_stop_and_finished_runs_are_resolved_elsewhere(
    db: TestDb,
) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    crew_source(&app, &amp, DEPLOYMENT_TOKEN).await;

    // Revise: is_approve false with the feedback (no kickoff recorded: no webhook URLs).
    let revise = ask(&app, &amp, "exec-r", "draft").await;
    assert_eq!(
        app.decide(ADMIN_KEY, &revise, "revise", Some("Cite sources"))
            .await
            .status(),
        200
    );
    let calls = amp.wait_for("/resume", 1, 10).await;
    assert_eq!(
        calls[0].json(),
        json!({"execution_id": "exec-r", "task_id": "research_task",
            "human_feedback": "Cite sources", "is_approve": false})
    );
    app.delivery_in_state(&revise, "amp.resume", "delivered")
        .await;

    // Skip: approve with a neutral note.
    let skip = ask(&app, &amp, "exec-s", "draft").await;
    assert_eq!(
        app.decide(ADMIN_KEY, &skip, "skip", None).await.status(),
        200
    );
    let calls = amp.wait_for("/resume", 2, 10).await;
    assert_eq!(calls[1].json()["is_approve"], true);
    assert_eq!(
        calls[1].json()["human_feedback"],
        "Review skipped; no changes requested."
    );

    // Stop: POST /stop/{kickoff_id}, no body.
    let stop = ask(&app, &amp, "exec-t", "draft").await;
    assert_eq!(
        app.decide(ADMIN_KEY, &stop, "stop", None).await.status(),
        200
    );
    let calls = amp.wait_for("/stop/exec-t", 1, 10).await;
    assert_eq!(
        calls[0].header("authorization"),
        format!("Bearer {DEPLOYMENT_TOKEN}")
    );
    assert!(calls[0].body.is_empty());
    app.delivery_in_state(&stop, "amp.stop", "delivered").await;

    // Someone resumed it in AMP first: "not in pending human input state" is final.
    amp.script(
        "/resume",
        vec![Scripted::Answer(
            400,
            json!({"error": "Invalid Request",
            "message": "Execution is not in pending human input state"}),
        )],
    );
    let late = ask(&app, &amp, "exec-l", "draft").await;
    assert_eq!(
        app.decide(ADMIN_KEY, &late, "continue", None)
            .await
            .status(),
        200
    );
    let d = ended(
        &app,
        &late,
        "amp.resume",
        "resolved_elsewhere",
        "no longer waiting",
    )
    .await;
    assert_eq!(
        (d["attempts"].as_i64(), d["last_status"].as_i64()),
        (Some(1), Some(400))
    );

    // A stop for a run that already finished is final too.
    amp.script(
        "/stop/",
        vec![Scripted::Answer(
            400,
            json!({"detail": "Cannot stop execution. Current state: SUCCESS"}),
        )],
    );
    let finished = ask(&app, &amp, "exec-f", "draft").await;
    assert_eq!(
        app.decide(ADMIN_KEY, &finished, "stop", None)
            .await
            .status(),
        200
    );
    ended(&app, &finished, "amp.stop", "resolved_elsewhere", "SUCCESS").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        amp.to("/resume").len(),
        3,
        "resolved elsewhere is never retried"
    );
    assert_eq!(amp.to("/stop/exec-f").len(), 1);
}

async fn a_flow_decision_answers_its_callback_and_an_answer_in_amp_is_not_retried(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    flow_source(&app, "flows", json!({})).await;

    ask_flow(&app, "flows", "req-1", &amp.callback_url("req-1")).await;
    let id = "amp-flow-req-1";
    assert_eq!(
        app.decide(ADMIN_KEY, id, "continue", None).await.status(),
        200
    );
    let calls = amp.wait_for("/callbacks/req-1", 1, 10).await;
    assert_eq!(
        calls[0].json(),
        json!({"feedback": "approved", "source": "hitlhook"})
    );
    assert_eq!(calls[0].header("content-type"), "application/json");
    assert_eq!(
        calls[0].header("authorization"),
        "",
        "the token is in the URL only"
    );
    app.delivery_in_state(id, "amp.feedback", "delivered").await;

    // Revise sends the reviewer's words.
    ask_flow(&app, "flows", "req-2", &amp.callback_url("req-2")).await;
    app.decide(ADMIN_KEY, "amp-flow-req-2", "revise", Some("Shorter title"))
        .await;
    let calls = amp.wait_for("/callbacks/req-2", 1, 10).await;
    assert_eq!(calls[0].json()["feedback"], "Shorter title");

    // Answered in AMP's dashboard first: 409 already_responded, recorded, never retried.
    amp.script(
        "/callbacks/req-3",
        vec![Scripted::Answer(
            409,
            json!({"error": "already_responded",
            "message": "This request was already answered via email"}),
        )],
    );
    ask_flow(&app, "flows", "req-3", &amp.callback_url("req-3")).await;
    app.decide(ADMIN_KEY, "amp-flow-req-3", "stop", None).await;
    let d = ended(
        &app,
        "amp-flow-req-3",
        "amp.feedback",
        "resolved_elsewhere",
        "already answered",
    )
    .await;
    assert_eq!(d["attempts"], 1);
    let types = app.trail("/v1/events?checkpoint_id=amp-flow-req-3").await;
    assert_eq!(
        types,
        [
            "checkpoint.required",
            "checkpoint.decided",
            "delivery.resolved_elsewhere"
        ]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(amp.to("/callbacks/req-3").len(), 1);
    assert_eq!(amp.to("/callbacks/req-3")[0].json()["feedback"], "rejected");
}

async fn a_flow_stop_answers_its_request_and_leaves_the_flows_other_requests_open(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    flow_source(&app, "flows", json!({})).await;
    // Two requests of one flow run (both carry flow_id "flow_abc123").
    for id in ["req-a", "req-b"] {
        ask_flow(&app, "flows", id, &amp.callback_url(id)).await;
    }
    // The callback token answers the request: reviewers reading the trail never see it.
    let reviewer = app.create_key("reviewer", "reviewer").await;
    let events: Value = app
        .get(&reviewer, "/v1/events?checkpoint_id=amp-flow-req-a")
        .await
        .json()
        .await
        .expect("json");
    let shown = events.to_string();
    assert!(shown.contains(&amp.url("/[redacted]")), "{shown}");
    assert!(!shown.contains("token="), "{shown}");
    assert!(!shown.contains("/callbacks/"), "{shown}");

    assert_eq!(
        app.decide(ADMIN_KEY, "amp-flow-req-a", "stop", None)
            .await
            .status(),
        200
    );
    let calls = amp.wait_for("/callbacks/req-a", 1, 10).await;
    assert_eq!(calls[0].json()["feedback"], "rejected");
    app.delivery_in_state("amp-flow-req-a", "amp.feedback", "delivered")
        .await;
    assert_eq!(amp.answer_of("req-a").as_deref(), Some("rejected"));
    // The flow runs on: its other request is still open and answerable.
    assert_eq!(app.checkpoint("amp-flow-req-b").await["status"], "pending");
    let execution: Value = app.get_json(ADMIN_KEY, "/v1/executions/flow_abc123").await;
    assert_ne!(execution["status"], "stopped", "{execution}");
    assert_eq!(
        app.decide(ADMIN_KEY, "amp-flow-req-b", "continue", None)
            .await
            .status(),
        200
    );
    app.delivery_in_state("amp-flow-req-b", "amp.feedback", "delivered")
        .await;
    assert_eq!(amp.answer_of("req-b").as_deref(), Some("approved"));
}

async fn a_sources_emit_map_decides_what_a_flow_hears_and_lets_it_skip(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    flow_source(
        &app,
        "mapped",
        json!({"continue": "request_changes", "skip": "approved"}),
    )
    .await;
    for id in ["m-1", "m-2"] {
        ask_flow(&app, "mapped", id, &amp.callback_url(id)).await;
    }
    // No default_outcome in the request, but the source says what skip sends.
    let cp = app.checkpoint("amp-flow-m-1").await;
    assert!(
        cp["allowed_actions"]
            .as_array()
            .expect("actions")
            .contains(&json!("skip")),
        "{cp}"
    );
    assert_eq!(
        app.decide(ADMIN_KEY, "amp-flow-m-1", "skip", None)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.decide(ADMIN_KEY, "amp-flow-m-2", "continue", None)
            .await
            .status(),
        200
    );
    for (id, want) in [("m-1", "approved"), ("m-2", "request_changes")] {
        app.delivery_in_state(&format!("amp-flow-{id}"), "amp.feedback", "delivered")
            .await;
        assert_eq!(amp.answer_of(id).as_deref(), Some(want), "{id}");
    }
}

async fn flow_callbacks_retry_failures_and_dead_letter_refused_tokens(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    flow_source(&app, "flows", json!({})).await;
    // A 503, then a reply slower than the client waits: both retried, then delivered.
    amp.script(
        "/callbacks/f-retry",
        vec![
            Scripted::Answer(503, json!({"error": "unavailable", "message": "try later"})),
            Scripted::Slow(Duration::from_millis(1500)),
        ],
    );
    ask_flow(&app, "flows", "f-retry", &amp.callback_url("f-retry")).await;
    // A token AMP does not accept (the request was re-issued): dead at once.
    let wrong = amp.callback_url("f-token").replace("token=", "token=stale");
    ask_flow(&app, "flows", "f-token", &wrong).await;
    // A request AMP does not know: dead at once.
    ask_flow(
        &app,
        "flows",
        "f-gone",
        &amp.url("/callbacks/f-gone?token=t"),
    )
    .await;
    for id in ["f-retry", "f-token", "f-gone"] {
        let cp = format!("amp-flow-{id}");
        assert_eq!(
            app.decide(ADMIN_KEY, &cp, "continue", None).await.status(),
            200
        );
    }
    let d = app
        .delivery_in_state("amp-flow-f-retry", "amp.feedback", "delivered")
        .await;
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(amp.answer_of("f-retry").as_deref(), Some("approved"));
    let d = ended(
        &app,
        "amp-flow-f-token",
        "amp.feedback",
        "dead",
        "callback token",
    )
    .await;
    assert_eq!(
        (d["attempts"].as_i64(), d["last_status"].as_i64()),
        (Some(1), Some(401))
    );
    assert!(
        !d.to_string().contains("token=stale"),
        "never the token: {d}"
    );
    let d = ended(
        &app,
        "amp-flow-f-gone",
        "amp.feedback",
        "dead",
        "feedback request",
    )
    .await;
    assert_eq!(d["last_status"], 404);
    assert_eq!(amp.answer_of("f-token"), None);
}

async fn refused_tokens_dead_letter_at_once_and_revive_once_fixed(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    crew_source(&app, &amp, "stale-deployment-token").await;
    let id = ask(&app, &amp, "exec-1", "draft").await;
    assert_eq!(
        app.decide(ADMIN_KEY, &id, "continue", None).await.status(),
        200
    );
    let dead = app.delivery_in_state(&id, "amp.resume", "dead").await;
    assert_eq!(
        (dead["attempts"].as_i64(), dead["last_status"].as_i64()),
        (Some(1), Some(401))
    );
    let error = dead["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("deployment_token"),
        "says what to fix: {error}"
    );
    assert!(!error.contains("stale-deployment-token"), "never the token");
    let events: Value = app
        .get_json(ADMIN_KEY, &format!("/v1/events?checkpoint_id={id}"))
        .await;
    assert!(events.to_string().contains("delivery.dead"));

    // Fix the token (re-create the source), then revive: the same call goes out again.
    let removed = app
        .client
        .delete(app.url("/v1/amp/sources/prod"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("req");
    assert_eq!(removed.status(), 204);
    crew_source(&app, &amp, DEPLOYMENT_TOKEN).await;
    // A slow answer first: the attempt times out and is retried.
    amp.script("/resume", vec![Scripted::Slow(Duration::from_millis(1500))]);
    let revived = app
        .client
        .post(app.url(&format!(
            "/v1/deliveries/{}/retry",
            dead["id"].as_str().expect("id")
        )))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("req");
    assert_eq!(revived.status(), 200);
    let delivered = app.delivery_in_state(&id, "amp.resume", "delivered").await;
    assert_eq!(
        delivered["attempts"], 2,
        "the timed-out attempt, then the delivered one"
    );
    let calls = amp.wait_for("/resume", 3, 10).await;
    assert_eq!(
        calls[0].json(),
        calls[2].json(),
        "the same body after reviving"
    );

    // 404: the execution is unknown to this deployment (it asked through another one) → dead
    // at once, saying what to check.
    let response = post_amp(
        &app,
        "/amp/prod/human-input",
        &bearer(INBOUND),
        &human_input("exec-404", "draft"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.expect("json");
    let other = receipt["checkpoint_id"].as_str().expect("checkpoint");
    app.decide(ADMIN_KEY, other, "continue", None).await;
    let dead = ended(&app, other, "amp.resume", "dead", "deployment_url").await;
    assert_eq!(dead["attempts"], 1);
}
