//! Outbound webhooks and the delivery engine: retries with one idempotency key, Retry-After,
//! dead letters revived by a retry, a restart in the middle of a schedule, no redirects.

use std::time::Duration;

use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::SigningKeys;
use hitlhook_store::testing::TestDb;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use crate::peers::{Receiver, Reply};

on_both_backends!(
    a_receiver_failing_n_times_gets_n_plus_one_attempts_with_one_idempotency_key,
    retry_after_is_honoured_on_429,
    an_always_failing_receiver_ends_dead_and_a_retry_revives_it,
    a_server_stopped_mid_schedule_delivers_after_restart,
    redirects_are_not_followed,
    execution_changes_reach_subscribers,
);

/// Fast schedule for tests; loopback allowed explicitly.
pub fn fast(
    schedule: &'static str,
    max_attempts: u32,
) -> impl Fn(&mut hitlhook_server::Config) + Send + Sync {
    move |cfg| {
        cfg.delivery.schedule = schedule.into();
        cfg.delivery.max_attempts = max_attempts;
        cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
        cfg.delivery.poll_ms = 50;
    }
}

pub async fn subscribe(app: &TestApp, url: &str, types: Value) -> Value {
    let response = app
        .client
        .post(app.url("/v1/subscriptions"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"url": url, "event_types": types, "description": "test receiver"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

/// Verifies a received webhook with the subscriber's secret, as a receiver would.
fn verify(secret: &str, r: &crate::peers::Recorded) {
    let keys = SigningKeys::new(&[Secret(secret.into())]).expect("keys");
    let mut h = HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        h.insert(name, HeaderValue::from_str(r.header(name)).expect("header"));
    }
    let now = hitlhook_domain::Timestamp::now().unix_seconds();
    keys.verify(&h, &r.body, now, 300)
        .expect("the signature verifies with the subscriber's secret");
}

async fn a_receiver_failing_n_times_gets_n_plus_one_attempts_with_one_idempotency_key(db: TestDb) {
    let receiver = Receiver::start(|_, i| Reply::status(if i < 3 { 500 } else { 200 })).await;
    let app = TestApp::spawn_with(db, fast("40ms", 10)).await;
    let sub = subscribe(&app, &receiver.url("/hook"), json!(["checkpoint.created"])).await;
    let sent = std::time::Instant::now();
    app.send_checkpoint("cp-1", "k-1").await;
    let got = receiver.wait_for("/hook", 4, 15).await;
    println!(
        "webhook: first attempt {:?} after the event was sent; 4 attempts over {:?}",
        got[0].at.duration_since(sent),
        got[3].at.duration_since(got[0].at)
    );
    let delivery = app.delivery_in_state("cp-1", "webhook", "delivered").await;
    assert_eq!(
        receiver.to("/hook").len(),
        4,
        "failed 3 times: delivered on the 4th attempt, no more"
    );
    let id = got[0].header("webhook-id").to_owned();
    assert_eq!(id, delivery["id"], "the idempotency key is the delivery id");
    for (n, r) in got.iter().enumerate() {
        assert_eq!(
            r.header("webhook-id"),
            id,
            "attempt {n} carries the same webhook-id"
        );
        assert_eq!(r.body, got[0].body, "attempt {n} sends the same bytes");
        assert_eq!(
            (r.method.as_str(), r.header("content-type")),
            ("POST", "application/json")
        );
        verify(sub["secret"].as_str().expect("secret"), r);
        if n > 0 {
            let gap = r.at.duration_since(got[n - 1].at);
            assert!(
                gap >= Duration::from_millis(30),
                "attempt {n} came {gap:?} after the previous one: backoff with bounded jitter"
            );
        }
    }
    let body = got[0].json();
    assert_eq!(body["type"], "checkpoint.created");
    assert_eq!(body["data"]["checkpoint_id"], "cp-1");
    assert_eq!(body["data"]["context"]["plan"], "1. research 2. write");
    assert_eq!(
        (
            delivery["attempts"].as_i64(),
            delivery["last_status"].as_i64()
        ),
        (Some(4), Some(200))
    );
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 500")),
        "the last error is kept: {delivery}"
    );
    assert!(delivery["next_attempt_at"].is_null());
}

async fn retry_after_is_honoured_on_429(db: TestDb) {
    let receiver = Receiver::start(|_, i| {
        if i == 0 {
            Reply::status(429).with_header("retry-after", "1")
        } else {
            Reply::status(204)
        }
    })
    .await;
    let app = TestApp::spawn_with(db, fast("20ms", 5)).await;
    subscribe(&app, &receiver.url("/hook"), json!(["checkpoint.*"])).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let got = receiver.wait_for("/hook", 2, 10).await;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 pushed the 20 ms retry to {gap:?}"
    );
    assert!(gap < Duration::from_secs(3), "but not much later: {gap:?}");
    app.delivery_in_state("cp-1", "webhook", "delivered").await;
}

async fn an_always_failing_receiver_ends_dead_and_a_retry_revives_it(db: TestDb) {
    let receiver = Receiver::answering(503).await;
    let app = TestApp::spawn_with(db, fast("10ms", 3)).await;
    subscribe(&app, &receiver.url("/hook"), json!(["checkpoint.created"])).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let dead = app.delivery_in_state("cp-1", "webhook", "dead").await;
    assert_eq!(
        receiver.to("/hook").len(),
        3,
        "max_attempts 3: exactly three attempts"
    );
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 503")),
        "{dead}"
    );
    let id = dead["id"].as_str().expect("id").to_owned();
    // The dead letter is on the audit trail too.
    let events: Value = app.get_json(ADMIN_KEY, "/v1/events?limit=100").await;
    assert!(
        events["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["event_type"] == "delivery.dead"
                && e["payload"]["delivery_id"] == id.as_str()),
        "{events}"
    );
    // Listing by state finds it; bad filters are refused precisely.
    let listed: Value = app.get_json(ADMIN_KEY, "/v1/deliveries?state=dead").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_problem(
        app.get(ADMIN_KEY, "/v1/deliveries?state=failed").await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get(ADMIN_KEY, "/v1/deliveries?kind=sms").await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get(ADMIN_KEY, "/v1/deliveries?cursor=abc").await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get(ADMIN_KEY, "/v1/deliveries?surprise=1").await,
        400,
        "invalid_query",
    )
    .await;
    assert_problem(
        app.get(ADMIN_KEY, "/v1/deliveries/nope").await,
        404,
        "not_found",
    )
    .await;
    // Only admins revive; unknown ids are 404.
    let reviewer = app.create_key("rev", "reviewer").await;
    let post = |key: String, id: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url(&format!("/v1/deliveries/{id}/retry")))
                .bearer_auth(key)
                .send()
                .await
                .expect("request")
        }
    };
    assert_problem(post(reviewer, id.clone()).await, 403, "forbidden").await;
    assert_problem(
        post(ADMIN_KEY.into(), "nope".into()).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.client
            .post(app.url(&format!("/v1/deliveries/{id}/retry")))
            .send()
            .await
            .expect("request"),
        401,
        "unauthorized",
    )
    .await;
    receiver.respond_with(|_, _| Reply::status(200));
    let revived = post(ADMIN_KEY.into(), id.clone()).await;
    assert_eq!(revived.status(), 200);
    let revived: Value = revived.json().await.expect("json");
    assert_eq!(
        (revived["state"].as_str(), revived["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    let delivered = app.delivery_in_state("cp-1", "webhook", "delivered").await;
    assert_eq!(delivered["id"], id.as_str());
    let got = receiver.wait_for("/hook", 4, 5).await;
    assert_eq!(
        got[3].header("webhook-id"),
        id,
        "the revived delivery keeps its idempotency key"
    );
    // A pending delivery cannot be revived.
    receiver.respond_with(|_, _| Reply::status(500));
    app.send_checkpoint("cp-2", "k-2").await;
    let pending = app.delivery_in_state("cp-2", "webhook", "pending").await;
    let conflict = post(
        ADMIN_KEY.into(),
        pending["id"].as_str().expect("id").to_owned(),
    )
    .await;
    if conflict.status() == 409 {
        assert_problem(conflict, 409, "delivery_pending").await;
    } else {
        // It may have died in between (10 ms schedule): then it was revivable, which is right.
        assert_eq!(conflict.status(), 200);
    }
}

async fn a_server_stopped_mid_schedule_delivers_after_restart(db: TestDb) {
    let receiver = Receiver::answering(500).await;
    let app = TestApp::spawn_with(db, fast("1500ms", 5)).await;
    subscribe(&app, &receiver.url("/hook"), json!(["checkpoint.created"])).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let first = receiver.wait_for("/hook", 1, 10).await;
    let waiting = eventually(10, "the failure to be recorded", || async {
        app.deliveries("cp-1")
            .await
            .into_iter()
            .find(|d| d["kind"] == "webhook" && d["attempts"] == 1 && d["last_error"].is_string())
    })
    .await;
    assert_eq!(waiting["state"], "pending");
    // Stop in the middle of the schedule; the receiver recovers while the server is down.
    let mut app = app;
    app.stop_server().await;
    receiver.respond_with(|_, _| Reply::status(200));
    let app = app.restart().await;
    let got = receiver.wait_for("/hook", 2, 10).await;
    assert_eq!(got.len(), 2, "delivered once after the restart");
    assert_eq!(got[1].header("webhook-id"), first[0].header("webhook-id"));
    let delivered = app.delivery_in_state("cp-1", "webhook", "delivered").await;
    assert_eq!(delivered["attempts"], 2);
}

async fn redirects_are_not_followed(db: TestDb) {
    let elsewhere = Receiver::answering(200).await;
    let target = elsewhere.url("/stolen");
    let receiver =
        Receiver::start(move |_, _| Reply::status(307).with_header("location", &target)).await;
    let app = TestApp::spawn_with(db, fast("20ms", 2)).await;
    subscribe(&app, &receiver.url("/hook"), json!(["*"])).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let dead = app.delivery_in_state("cp-1", "webhook", "dead").await;
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("redirects are not followed")),
        "{dead}"
    );
    assert_eq!(dead["last_status"], 307);
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target got nothing"
    );
}

async fn execution_changes_reach_subscribers(db: TestDb) {
    let receiver = Receiver::answering(200).await;
    let app = TestApp::spawn_with(db, fast("20ms", 3)).await;
    subscribe(
        &app,
        &receiver.url("/hook"),
        json!(["execution.updated", "checkpoint.decided"]),
    )
    .await;
    app.send_checkpoint("cp-1", "k-1").await;
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-1", "stop", Some("wrong plan"))
            .await
            .status(),
        200
    );
    let got = receiver.wait_for("/hook", 3, 10).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            let detail = if b["type"] == "checkpoint.decided" {
                b["data"]["decision"]["action"].clone()
            } else {
                b["data"]["status"].clone()
            };
            (
                b["type"].as_str().unwrap_or_default().to_owned(),
                detail.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("checkpoint.decided".to_owned(), "stop".to_owned()),
            ("execution.updated".to_owned(), "stopped".to_owned()),
            (
                "execution.updated".to_owned(),
                "waiting_for_human".to_owned()
            ),
        ]
    );
}
