//! Starting AMP runs with hitlhook's webhooks injected, and reconciling a run's state from AMP's
//! `/status`: the AMP stand-in checks the exact kickoff body, then plays AMP by calling the
//! injected URLs with the injected credentials.

use hitlhook_store::testing::TestDb;
use serde_json::{Value, json};

use crate::amp::{bearer, create_source, post_amp};
use crate::amp_peer::{AmpStandIn, DEPLOYMENT_TOKEN, Scripted};
use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_kickoff_injects_hitlhooks_webhooks_and_resumes_re_send_them,
    reconcile_records_what_amp_reports,
    runs_that_look_running_are_reconciled_in_the_background,
);

async fn kickoff(app: &TestApp, source: &str, body: &Value, key: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/amp/sources/{source}/kickoff")))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn reconcile(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request")
}

fn fast(cfg: &mut hitlhook_server::Config) {
    cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
    cfg.delivery.schedule = "20ms".into();
    cfg.delivery.poll_ms = 50;
}

async fn a_kickoff_injects_hitlhooks_webhooks_and_resumes_re_send_them(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    let created = create_source(
        &app,
        &json!({"name": "prod", "auth": "basic", "username": "amp", "password": "correct-horse-battery",
            "deployment_url": amp.url("/"), "deployment_token": DEPLOYMENT_TOKEN}),
    )
    .await;
    let token = created["credentials"]["url_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let response = kickoff(
        &app,
        "prod",
        &json!({"inputs": {"topic": "AI agents"}, "meta": {"ticket": "T-1"}}),
        ADMIN_KEY,
    )
    .await;
    assert_eq!(response.status(), 201);
    let started: Value = response.json().await.expect("json");
    let kickoff_id = started["kickoff_id"]
        .as_str()
        .expect("kickoff id")
        .to_owned();
    let task_url = format!("{}/amp/prod/task/{token}", app.base);
    assert_eq!(started["taskWebhookUrl"], task_url.as_str());

    let sent = amp.wait_for("/kickoff", 1, 5).await;
    assert_eq!(
        sent[0].header("authorization"),
        format!("Bearer {DEPLOYMENT_TOKEN}")
    );
    let auth = json!({"strategy": "bearer", "token": token});
    assert_eq!(
        sent[0].json(),
        json!({"inputs": {"topic": "AI agents"}, "meta": {"ticket": "T-1"},
            "taskWebhookUrl": task_url,
            "stepWebhookUrl": format!("{}/amp/prod/step/{token}", app.base),
            "crewWebhookUrl": format!("{}/amp/prod/crew/{token}", app.base),
            "humanInputWebhook": {"url": format!("{}/amp/prod/human-input", app.base), "authentication": auth},
            "webhooks": {"events": ["crew_kickoff_started", "crew_kickoff_completed", "crew_kickoff_failed",
                "task_started", "task_completed", "task_failed"],
                "url": format!("{}/amp/prod/events", app.base), "realtime": false, "authentication": auth}})
    );
    let recorded = app
        .store
        .get_amp_execution(&kickoff_id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(
        recorded.hooks.task_webhook_url.as_deref(),
        Some(task_url.as_str())
    );

    // AMP uses what it was given: the legacy task webhook, then the human-input webhook.
    let task = json!({"name": "research_task", "output": "notes", "kickoff_id": kickoff_id, "meta": {"ticket": "T-1"}});
    assert_eq!(
        post_amp(
            &app,
            &format!("/amp/prod/task/{token}"),
            &[],
            task.to_string().as_bytes()
        )
        .await
        .status(),
        200
    );
    let response = amp
        .ask_for_input(
            &app.url("/amp/prod/human-input"),
            &bearer(&token),
            &kickoff_id,
            "research_task",
            "notes",
        )
        .await;
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.expect("json");
    let id = receipt["checkpoint_id"]
        .as_str()
        .expect("checkpoint")
        .to_owned();
    assert_eq!(
        app.decide(ADMIN_KEY, &id, "revise", Some("Add numbers"))
            .await
            .status(),
        200
    );
    let resumed = amp.wait_for("/resume", 1, 10).await;
    assert_eq!(
        resumed[0].json(),
        json!({"execution_id": kickoff_id, "task_id": "research_task", "human_feedback": "Add numbers",
            "is_approve": false, "taskWebhookUrl": task_url,
            "stepWebhookUrl": format!("{}/amp/prod/step/{token}", app.base),
            "crewWebhookUrl": format!("{}/amp/prod/crew/{token}", app.base)})
    );

    // Refusals: nothing reaches AMP or the store.
    let kickoffs = amp.to("/kickoff").len();
    let reviewer = app.create_key("rita", "reviewer").await;
    assert_problem(
        kickoff(&app, "prod", &json!({"inputs": {}}), &reviewer).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        kickoff(&app, "nope", &json!({"inputs": {}}), ADMIN_KEY).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        kickoff(&app, "prod", &json!({"inputs": "AI"}), ADMIN_KEY).await,
        422,
        "invalid_request",
    )
    .await;
    assert_problem(
        kickoff(&app, "prod", &json!({"meta": {}}), ADMIN_KEY).await,
        422,
        "invalid_request",
    )
    .await;
    assert_eq!(amp.to("/kickoff").len(), kickoffs);
    // AMP refuses (missing inputs): told as AMP said it.
    amp.script(
        "/kickoff",
        vec![Scripted::Answer(
            422,
            json!({"error": "Validation Error",
        "message": "Missing required inputs", "details": {"missing_inputs": ["topic"]}}),
        )],
    );
    let refused = assert_problem(
        kickoff(&app, "prod", &json!({"inputs": {}}), ADMIN_KEY).await,
        422,
        "amp_rejected",
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Missing required inputs")
    );
    amp.script(
        "/kickoff",
        vec![Scripted::Answer(401, json!({"error": "Unauthorized"}))],
    );
    assert_problem(
        kickoff(&app, "prod", &json!({"inputs": {}}), ADMIN_KEY).await,
        502,
        "upstream_error",
    )
    .await;
    // A source without a deployment cannot start runs.
    create_source(&app, &json!({"name": "inbound-only", "auth": "bearer"})).await;
    assert_problem(
        kickoff(&app, "inbound-only", &json!({"inputs": {}}), ADMIN_KEY).await,
        422,
        "amp_source_incomplete",
    )
    .await;
}

async fn reconcile_records_what_amp_reports(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, fast).await;
    create_source(&app, &json!({"name": "prod", "auth": "bearer", "deployment_url": amp.url(""), "deployment_token": DEPLOYMENT_TOKEN})).await;
    let started: Value = kickoff(&app, "prod", &json!({"inputs": {"topic": "AI"}}), ADMIN_KEY)
        .await
        .json()
        .await
        .expect("json");
    let kickoff_id = started["kickoff_id"].as_str().expect("id").to_owned();
    let path = format!("/v1/executions/{kickoff_id}/reconcile");

    let running: Value = reconcile(&app, &path).await.json().await.expect("json");
    assert_eq!(running["remote_status"], "running");
    assert_eq!(running["remote"]["current_task"], "research_task");
    assert!(
        running["execution"].is_null(),
        "nothing to record while it runs"
    );
    let calls = amp.wait_for(&format!("/status/{kickoff_id}"), 1, 5).await;
    assert_eq!(calls[0].method, "GET");
    assert_eq!(
        calls[0].header("authorization"),
        format!("Bearer {DEPLOYMENT_TOKEN}")
    );

    amp.set_status(json!({"status": "completed", "result": {"output": "Report", "tasks": []}, "execution_time": 108.5}));
    let done: Value = reconcile(&app, &path).await.json().await.expect("json");
    assert_eq!(done["remote_status"], "completed");
    assert_eq!(done["execution"]["status"], "completed");
    let recorded = app
        .store
        .get_amp_execution(&kickoff_id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(recorded.remote_status.as_deref(), Some("completed"));
    // Reconciling again records nothing new.
    let before = app.snapshot().await;
    assert_eq!(reconcile(&app, &path).await.status(), 200);
    assert_eq!(app.snapshot().await, before);

    // A run started elsewhere, named by its source: an error ends it as failed.
    amp.knows("run-elsewhere");
    amp.set_status(
        json!({"status": "error", "error": "LLM quota exceeded", "execution_time": 23.1}),
    );
    let failed: Value = reconcile(&app, "/v1/executions/run-elsewhere/reconcile?source=prod")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(failed["execution"]["status"], "failed");
    // Stopped in AMP (REVOKED): the execution is stopped, and AMP's word is what is reported.
    amp.knows("run-revoked");
    amp.set_status(json!({"status": "REVOKED"}));
    let revoked: Value = reconcile(&app, "/v1/executions/run-revoked/reconcile?source=prod")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(revoked["remote_status"], "REVOKED");
    assert_eq!(revoked["execution"]["status"], "stopped");

    let before = app.snapshot().await;
    assert_problem(
        reconcile(&app, "/v1/executions/unknown-run/reconcile").await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        reconcile(&app, "/v1/executions/x/reconcile?source=nope").await,
        404,
        "not_found",
    )
    .await;
    amp.script(
        "/status/",
        vec![Scripted::Answer(
            404,
            json!({"error": "Not Found", "message": "Execution ID not found"}),
        )],
    );
    let missing = assert_problem(reconcile(&app, &path).await, 502, "upstream_error").await;
    assert!(
        missing["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Execution ID not found")
    );
    assert_eq!(app.snapshot().await, before);
}

async fn runs_that_look_running_are_reconciled_in_the_background(db: TestDb) {
    let amp = AmpStandIn::start().await;
    let app = TestApp::spawn_with(db, |cfg| {
        fast(cfg);
        cfg.amp_reconcile_secs = 1;
    })
    .await;
    create_source(&app, &json!({"name": "prod", "auth": "bearer", "deployment_url": amp.url(""), "deployment_token": DEPLOYMENT_TOKEN})).await;
    let started: Value = kickoff(&app, "prod", &json!({"inputs": {"topic": "AI"}}), ADMIN_KEY)
        .await
        .json()
        .await
        .expect("json");
    let kickoff_id = started["kickoff_id"].as_str().expect("id").to_owned();
    // AMP's crew webhook never arrives; the run finished all the same.
    amp.set_status(json!({"status": "completed", "result": {"output": "Report", "tasks": []}}));
    let status = eventually(10, "the run to be reconciled", || async {
        let ex = app.store.get_execution(&kickoff_id).await.expect("read")?;
        (ex.status.as_str() == "completed").then_some(ex.status)
    })
    .await;
    assert_eq!(status.as_str(), "completed");
    let polls = amp.to(&format!("/status/{kickoff_id}")).len();
    assert!(polls >= 1);
    // A finished run is not polled again.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(amp.to(&format!("/status/{kickoff_id}")).len(), polls);
}
