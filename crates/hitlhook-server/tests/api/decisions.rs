//! Deciding: the long-poll cycle, first-decision-wins, scopes, expiry and restarts.

use std::time::{Duration, Instant};

use hitlhook_store::testing::TestDb;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_waiting_client_wakes_with_the_decision,
    the_first_decision_wins,
    scopes_limit_what_a_key_may_do,
    expiry_applies_on_timeout_and_wakes_waiters,
    state_survives_a_restart,
    stop_cancels_the_executions_other_checkpoints,
);

async fn a_waiting_client_wakes_with_the_decision(db: TestDb) {
    let app = std::sync::Arc::new(TestApp::spawn(db).await);
    app.send_checkpoint("cp-1", "k-1").await;
    let reviewer = app.create_key("alice", "reviewer").await;
    let ingest = app.create_key("crew", "ingest").await;
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            let response = app.get(&ingest, "/webhook/checkpoint/cp-1?wait=30").await;
            (
                Instant::now(),
                response.json::<Value>().await.expect("json"),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the client is still waiting before anyone decides"
    );
    let decided_at = Instant::now();
    let response = app
        .decide(&reviewer, "cp-1", "revise", Some("Cite two sources."))
        .await;
    assert_eq!(response.status(), 200);
    let (woke_at, seen) = waiter.await.expect("join");
    assert!(
        woke_at.duration_since(decided_at) < Duration::from_secs(2),
        "woken by the decision, not a timeout"
    );
    assert_eq!(seen["status"], "decided");
    assert_eq!(seen["decision"]["action"], "revise");
    assert_eq!(seen["decision"]["feedback"], "Cite two sources.");
    assert_eq!(seen["decision"]["decided_by"], "key:alice");
    assert_eq!(seen["decision"]["channel"], "api");
    // A wait on a decided checkpoint answers at once; a short wait on a pending one times out.
    let started = Instant::now();
    assert_eq!(
        app.get(ADMIN_KEY, "/webhook/checkpoint/cp-1?wait=30")
            .await
            .status(),
        200
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    app.send_checkpoint("cp-2", "k-1").await;
    let pending: Value = app
        .get_json(ADMIN_KEY, "/webhook/checkpoint/cp-2?wait=0.3")
        .await;
    assert_eq!(pending["status"], "pending");
}

async fn the_first_decision_wins(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let first = app.decide(ADMIN_KEY, "cp-1", "continue", None).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    let before = app.snapshot().await;
    let same = app.decide(ADMIN_KEY, "cp-1", "continue", None).await;
    assert_eq!(
        same.status(),
        200,
        "the identical decision repeated is fine"
    );
    assert_eq!(same.json::<Value>().await.expect("json"), first);
    let conflict = assert_problem(
        app.decide(ADMIN_KEY, "cp-1", "stop", None).await,
        409,
        "already_decided",
    )
    .await;
    assert_eq!(conflict["decision"]["action"], "continue");
    assert_eq!(conflict["decision"]["decided_by"], "key:WEBHOOK_API_KEY");
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused decision changes nothing"
    );
    // The REST form, with a person named by a trusted integration.
    app.send_checkpoint("cp-2", "k-2").await;
    let response = app
        .client
        .post(app.url("/v1/checkpoints/cp-2/decision"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"action": "skip", "decided_by": "bob@example.com", "channel": "inbox"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        (
            body["decision"]["decided_by"].as_str(),
            body["decision"]["channel"].as_str()
        ),
        (Some("bob@example.com"), Some("inbox"))
    );
    // The same action from someone else is not a repeat: they are told who decided.
    let response = app
        .client
        .post(app.url("/v1/checkpoints/cp-2/decision"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"action": "skip", "decided_by": "carol@example.com", "channel": "inbox"}))
        .send()
        .await
        .expect("request");
    let conflict = assert_problem(response, 409, "already_decided").await;
    assert_eq!(conflict["decision"]["decided_by"], "bob@example.com");
}

async fn scopes_limit_what_a_key_may_do(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let ingest = app.create_key("crew", "ingest").await;
    let reviewer = app.create_key("alice", "reviewer").await;
    let before = app.snapshot().await;
    assert_problem(
        app.decide(&ingest, "cp-1", "continue", None).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(app.get(&ingest, "/v1/checkpoints").await, 403, "forbidden").await;
    assert_eq!(
        app.get(&ingest, "/webhook/checkpoint/cp-1").await.status(),
        200,
        "ingest keys read what they wait on"
    );
    assert_eq!(app.get(&ingest, "/webhook/status/k-1").await.status(), 200);
    assert_problem(app.get(&reviewer, "/v1/keys").await, 403, "forbidden").await;
    let no_key = app
        .client
        .get(app.url("/webhook/checkpoint/cp-1"))
        .send()
        .await
        .expect("request");
    assert_problem(no_key, 401, "unauthorized").await;
    assert_problem(
        app.get("hhk_not_a_key", "/webhook/checkpoint/cp-1").await,
        401,
        "invalid_api_key",
    )
    .await;
    assert_eq!(app.snapshot().await, before, "refusals change nothing");
    assert_eq!(
        app.get(&reviewer, "/v1/checkpoints?status=pending")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.decide(&reviewer, "cp-1", "continue", None)
            .await
            .status(),
        200
    );
    let revoke = app
        .client
        .delete(app.url("/v1/keys/alice"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(revoke.status(), 204);
    assert_problem(
        app.get(&reviewer, "/v1/checkpoints").await,
        401,
        "invalid_api_key",
    )
    .await;
    // X-API-Key works as well as Authorization: Bearer.
    let alt = app
        .client
        .get(app.url("/v1/checkpoints"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(alt.status(), 200);
    // An empty key is no key, by either header.
    for (header, value) in [
        ("x-api-key", ""),
        ("x-api-key", "  "),
        ("authorization", "Bearer "),
    ] {
        let empty = app
            .client
            .get(app.url("/v1/checkpoints"))
            .header(header, value)
            .send()
            .await
            .expect("request");
        assert_eq!(empty.status(), 401, "{header}: {value:?}");
    }
}

async fn expiry_applies_on_timeout_and_wakes_waiters(db: TestDb) {
    let app = std::sync::Arc::new(TestApp::spawn(db).await);
    let mut with_default = checkpoint_body("cp-default", "k-1");
    with_default["expires_in"] = 1.into();
    with_default["on_timeout"] = "skip".into();
    let mut plain = checkpoint_body("cp-plain", "k-2");
    plain["expires_in"] = 1.into();
    assert_eq!(app.send_event(&with_default).await.status(), 200);
    assert_eq!(app.send_event(&plain).await.status(), 200);
    let created: Value = app.checkpoint("cp-default").await;
    assert!(created["expires_at"].is_string());
    assert_eq!(created["on_timeout"], "skip");
    let started = Instant::now();
    let seen: Value = app
        .get_json(ADMIN_KEY, "/webhook/checkpoint/cp-default?wait=20")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the sweeper"
    );
    assert_eq!(seen["status"], "decided");
    assert_eq!(seen["decision"]["action"], "skip");
    assert_eq!(seen["decision"]["decided_by"], "system:timeout");
    let plain: Value = app
        .get_json(ADMIN_KEY, "/webhook/checkpoint/cp-plain?wait=20")
        .await;
    assert_eq!(plain["status"], "expired");
    assert_problem(
        app.decide(ADMIN_KEY, "cp-plain", "continue", None).await,
        409,
        "checkpoint_closed",
    )
    .await;
}

async fn state_survives_a_restart(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-done", "k-1").await;
    app.send_checkpoint("cp-open", "k-1").await;
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-done", "revise", Some("again"))
            .await
            .status(),
        200
    );
    let key = app.create_key("alice", "reviewer").await;
    let before = app.snapshot().await;
    let app = std::sync::Arc::new(app.restart().await);
    assert_eq!(app.snapshot().await, before, "everything is still there");
    assert_eq!(
        app.checkpoint("cp-done").await["decision"]["feedback"],
        "again"
    );
    // A client waiting after the restart is woken by a decision made after it.
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            app.get_json(ADMIN_KEY, "/webhook/checkpoint/cp-open?wait=30")
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.decide(&key, "cp-open", "continue", None).await.status(),
        200,
        "keys survive restarts"
    );
    assert_eq!(
        waiter.await.expect("join")["decision"]["decided_by"],
        "key:alice"
    );
}

async fn stop_cancels_the_executions_other_checkpoints(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    app.send_checkpoint("cp-2", "k-1").await;
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-1", "stop", Some("wrong direction"))
            .await
            .status(),
        200
    );
    let other = app.checkpoint("cp-2").await;
    assert_eq!(other["status"], "cancelled");
    assert_eq!(other["closed_reason"], "execution stopped");
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/k-1").await;
    assert_eq!(status["execution"]["status"], "stopped");
}
