//! Webhook subscribers: managed through the API (admin), and the SSRF guard on their URLs —
//! private targets are refused at creation (IP literals) or at send time (after resolution).

use std::time::Duration;

use hitlhook_store::testing::TestDb;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use crate::peers::Receiver;
use crate::webhooks::{fast, subscribe};

on_both_backends!(
    the_ssrf_guard_refuses_private_targets,
    subscriptions_are_managed_through_the_api,
);

async fn the_ssrf_guard_refuses_private_targets(db: TestDb) {
    let receiver = Receiver::answering(200).await;
    // No allow-list: loopback and every private range are refused.
    let app = TestApp::spawn_with(db, |cfg| {
        cfg.delivery.schedule = "10ms".into();
        cfg.delivery.poll_ms = 50;
    })
    .await;
    let before = app.snapshot().await;
    let refused = [
        receiver.url("/hook"),
        "http://10.0.0.1/hook".into(),
        "http://172.16.5.4/hook".into(),
        "http://192.168.1.1/hook".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://100.64.0.1/".into(),
        "http://0.0.0.0/".into(),
        "http://224.0.0.1/".into(),
        "http://240.0.0.1/".into(),
        "http://192.0.2.1/".into(),
        "http://198.51.100.1/".into(),
        "http://[::1]/".into(),
        "http://[fe80::1]/".into(),
        "http://[fd00::1]/".into(),
        "http://[::ffff:127.0.0.1]/".into(),
        "http://[::ffff:a9fe:a9fe]/".into(),
        "http://[64:ff9b::7f00:1]/".into(),
        "http://[64:ff9b::a00:1]/".into(),
        "http://2130706433/".into(),
        "http://0x7f.0.0.1/".into(),
    ];
    for url in &refused {
        let response = app
            .client
            .post(app.url("/v1/subscriptions"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"url": url}))
            .send()
            .await
            .expect("request");
        let body = assert_problem(response, 422, "invalid_request").await;
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("url:")),
            "{url}: {body}"
        );
    }
    assert!(
        app.client
            .get(app.url("/v1/subscriptions"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("req")
            .json::<Value>()
            .await
            .expect("json")["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    assert_eq!(app.snapshot().await, before);
    // A hostname is checked when sending, after resolution: localhost resolves to loopback.
    let port = receiver.addr.port();
    subscribe(&app, &format!("http://localhost:{port}/hook"), json!(["*"])).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let dead = app.delivery_in_state("cp-1", "webhook", "dead").await;
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused outbound address") && e.contains("loopback")),
        "{dead}"
    );
    assert_eq!(dead["attempts"], 1, "a refused target is not retried");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the private address"
    );
}

async fn subscriptions_are_managed_through_the_api(db: TestDb) {
    let app = TestApp::spawn_with(db, fast("1s", 3)).await;
    let created = subscribe(
        &app,
        "https://hooks.example.com/hitl",
        json!(["checkpoint.decided", "execution.*"]),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "the secret is shown once: {created}"
    );
    let listed: Value = app.get_json(ADMIN_KEY, "/v1/subscriptions").await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert!(
        listed["items"][0].get("secret").is_none(),
        "never shown again"
    );
    let one: Value = app
        .get_json(ADMIN_KEY, &format!("/v1/subscriptions/{id}"))
        .await;
    assert_eq!(
        one["event_types"],
        json!(["checkpoint.decided", "execution.*"])
    );
    let before = app.snapshot().await;
    let count = || async {
        app.get_json(ADMIN_KEY, "/v1/subscriptions").await["items"]
            .as_array()
            .map(Vec::len)
    };
    let post = |body: &'static str, content_type: &'static str, key: &'static str| {
        let app = &app;
        async move {
            let mut r = app
                .client
                .post(app.url("/v1/subscriptions"))
                .header("content-type", content_type)
                .body(body);
            if !key.is_empty() {
                r = r.bearer_auth(key);
            }
            r.send().await.expect("request")
        }
    };
    let reviewer: &'static str =
        Box::leak(app.create_key("rev", "reviewer").await.into_boxed_str());
    let cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        (
            r#"{"url": "ftp://x.example.com/"}"#,
            "application/json",
            ADMIN_KEY,
            422,
            "invalid_request",
        ),
        (
            r#"{"url": "https://x.example.com/", "event_types": ["task.started"]}"#,
            "application/json",
            ADMIN_KEY,
            422,
            "invalid_request",
        ),
        (
            r#"{"url": "https://x.example.com/", "event_types": []}"#,
            "application/json",
            ADMIN_KEY,
            422,
            "invalid_request",
        ),
        (
            r#"{"url": "https://x.example.com/", "secret": "hunter2"}"#,
            "application/json",
            ADMIN_KEY,
            422,
            "invalid_request",
        ),
        (
            r#"{"url": "https://x.example.com/", "colour": "red"}"#,
            "application/json",
            ADMIN_KEY,
            422,
            "invalid_request",
        ),
        (
            r#"{"url": 5}"#,
            "application/json",
            ADMIN_KEY,
            422,
            "invalid_request",
        ),
        (
            r#"{"url": "#,
            "application/json",
            ADMIN_KEY,
            400,
            "malformed_json",
        ),
        (
            r#"{"url": "https://x.example.com/"}"#,
            "text/plain",
            ADMIN_KEY,
            415,
            "unsupported_media_type",
        ),
        (
            r#"{"url": "https://x.example.com/"}"#,
            "application/json",
            reviewer,
            403,
            "forbidden",
        ),
        (
            r#"{"url": "https://x.example.com/"}"#,
            "application/json",
            "",
            401,
            "unauthorized",
        ),
        (
            r#"{"url": "https://x.example.com/"}"#,
            "application/json",
            "hhk_wrong",
            401,
            "invalid_api_key",
        ),
    ];
    for (body, content_type, key, status, code) in cases {
        assert_problem(post(body, content_type, key).await, status, code).await;
    }
    assert_eq!(count().await, Some(1), "refused requests created nothing");
    let gone = app
        .client
        .delete(app.url(&format!("/v1/subscriptions/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("req");
    assert_eq!(gone.status(), 204);
    let again = app
        .client
        .delete(app.url(&format!("/v1/subscriptions/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("req");
    assert_problem(again, 404, "not_found").await;
    assert_problem(
        app.get(ADMIN_KEY, &format!("/v1/subscriptions/{id}")).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(count().await, Some(0));
    let _ = before;
}
