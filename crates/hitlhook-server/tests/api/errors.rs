//! Every error class answers a precise problem+json and leaves the store unchanged.

use hitlhook_domain::Timestamp;
use hitlhook_store::testing::TestDb;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    bad_events_are_refused_precisely,
    bad_decisions_and_queries_are_refused_precisely
);

async fn send_signed_bytes(
    app: &TestApp,
    body: &[u8],
    content_type: Option<&'static str>,
) -> reqwest::Response {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let mut headers = TestApp::signed_headers(SECRET, body, &id, Timestamp::now().unix_seconds());
    match content_type {
        Some(ct) => headers.insert("content-type", HeaderValue::from_static(ct)),
        None => headers.remove("content-type"),
    };
    app.post_event_raw(headers, body.to_vec()).await
}

async fn bad_events_are_refused_precisely(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let before = app.snapshot().await;
    let big = json!({"event_type": "task.started", "blob": "x".repeat(70 * 1024)}).to_string();
    let conflicting = json!({"event_type": "checkpoint.required", "checkpoint_id": "cp-1", "checkpoint_name": "other", "kickoff_id": "k-1"}).to_string();
    let json_ct = Some("application/json");
    let cases: Vec<(&str, Vec<u8>, Option<&'static str>, u16, &str, &str)> = vec![
        ("truncated JSON", b"{\"event_type\": \"task.started\",".to_vec(), json_ct, 400, "malformed_json", "line"),
        ("not JSON", b"hello".to_vec(), json_ct, 400, "malformed_json", "line"),
        ("invalid UTF-8", b"{\"event_type\": \"task.started\", \"x\": \"\xff\"}".to_vec(), json_ct, 400, "malformed_json", ""),
        ("over the body limit", big.into_bytes(), json_ct, 413, "payload_too_large", "65536"),
        ("form content type", b"{\"event_type\": \"task.started\"}".to_vec(), Some("application/x-www-form-urlencoded"), 415, "unsupported_media_type", "application/json"),
        ("no content type", b"{\"event_type\": \"task.started\"}".to_vec(), None, 415, "unsupported_media_type", ""),
        ("no event_type", b"{\"kickoff_id\": \"k-1\"}".to_vec(), json_ct, 422, "invalid_event", "event_type"),
        ("array body", b"[1, 2]".to_vec(), json_ct, 422, "invalid_event", "body"),
        ("string body", b"\"hello\"".to_vec(), json_ct, 422, "invalid_event", "body"),
        ("wrong type", b"{\"event_type\": \"task.started\", \"kickoff_id\": 7}".to_vec(), json_ct, 422, "invalid_event", "kickoff_id"),
        ("reserved type", b"{\"event_type\": \"checkpoint.decided\"}".to_vec(), json_ct, 422, "invalid_event", "written by hitlhook"),
        ("checkpoint without name", b"{\"event_type\": \"checkpoint.required\"}".to_vec(), json_ct, 422, "invalid_event", "checkpoint_name"),
        ("unknown action", b"{\"event_type\": \"checkpoint.required\", \"checkpoint_name\": \"n\", \"allowed_actions\": [\"approve\"]}".to_vec(), json_ct, 422, "invalid_event", "allowed_actions[0]"),
        ("expiry in the past", b"{\"event_type\": \"checkpoint.required\", \"checkpoint_name\": \"n\", \"expires_at\": \"2020-01-01T00:00:00Z\"}".to_vec(), json_ct, 422, "invalid_event", "expires_at"),
        ("revise on timeout", b"{\"event_type\": \"checkpoint.required\", \"checkpoint_name\": \"n\", \"expires_in\": 60, \"on_timeout\": \"revise\"}".to_vec(), json_ct, 422, "invalid_event", "on_timeout"),
        ("checkpoint id reused", conflicting.into_bytes(), json_ct, 409, "checkpoint_conflict", "cp-1"),
    ];
    for (name, body, content_type, status, code, mention) in cases {
        let response = send_signed_bytes(&app, &body, content_type).await;
        let problem = assert_problem(response, status, code).await;
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(mention),
            "{name}: detail {problem}"
        );
        assert_eq!(app.snapshot().await, before, "{name}: store unchanged");
    }
    let truncated = send_signed_bytes(&app, b"{\n\"a\": 1,\n}", json_ct).await;
    let problem = assert_problem(truncated, 400, "malformed_json").await;
    assert_eq!(
        (problem["line"].as_u64(), problem["column"].as_u64()),
        (Some(3), Some(1)),
        "says where"
    );
}

async fn bad_decisions_and_queries_are_refused_precisely(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let mut limited = checkpoint_body("cp-1", "k-1");
    limited["allowed_actions"] = json!(["continue", "revise"]);
    assert_eq!(app.send_event(&limited).await.status(), 200);
    app.send_checkpoint("cp-2", "k-2").await;
    app.decide(ADMIN_KEY, "cp-2", "continue", None).await;
    let before = app.snapshot().await;
    let post = |path: &str, body: Vec<u8>, ct: &'static str| {
        app.client
            .post(app.url(path))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "revise without feedback",
            app.decide(ADMIN_KEY, "cp-1", "revise", None).await,
            422,
            "feedback_required",
        ),
        (
            "revise with blank feedback",
            app.decide(ADMIN_KEY, "cp-1", "revise", Some("   ")).await,
            422,
            "feedback_required",
        ),
        (
            "action not allowed",
            app.decide(ADMIN_KEY, "cp-1", "stop", None).await,
            422,
            "action_not_allowed",
        ),
        (
            "unknown action",
            app.decide(ADMIN_KEY, "cp-1", "approve", None).await,
            422,
            "invalid_request",
        ),
        (
            "unknown checkpoint",
            app.decide(ADMIN_KEY, "nope", "continue", None).await,
            404,
            "not_found",
        ),
        (
            "conflicting decision",
            app.decide(ADMIN_KEY, "cp-2", "stop", None).await,
            409,
            "already_decided",
        ),
        (
            "malformed body",
            post(
                "/webhook/feedback",
                b"{\"checkpoint_id\":".to_vec(),
                "application/json",
            )
            .await
            .expect("req"),
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            post(
                "/webhook/feedback",
                br#"{"checkpoint_id":"cp-1","action":"continue","feedbak":"x"}"#.to_vec(),
                "application/json",
            )
            .await
            .expect("req"),
            422,
            "invalid_request",
        ),
        (
            "array body",
            post(
                "/webhook/feedback",
                br#"["cp-1", "continue"]"#.to_vec(),
                "application/json",
            )
            .await
            .expect("req"),
            422,
            "invalid_request",
        ),
        (
            "missing action",
            post(
                "/webhook/feedback",
                br#"{"checkpoint_id":"cp-1"}"#.to_vec(),
                "application/json",
            )
            .await
            .expect("req"),
            422,
            "invalid_request",
        ),
        (
            "form body",
            post(
                "/webhook/feedback",
                b"action=continue".to_vec(),
                "application/x-www-form-urlencoded",
            )
            .await
            .expect("req"),
            415,
            "unsupported_media_type",
        ),
        (
            "huge body",
            post(
                "/webhook/feedback",
                vec![b' '; 70 * 1024],
                "application/json",
            )
            .await
            .expect("req"),
            413,
            "payload_too_large",
        ),
        (
            "negative wait",
            app.get(ADMIN_KEY, "/webhook/checkpoint/cp-1?wait=-1").await,
            400,
            "invalid_query",
        ),
        (
            "non-numeric wait",
            app.get(ADMIN_KEY, "/webhook/checkpoint/cp-1?wait=soon")
                .await,
            400,
            "invalid_query",
        ),
        (
            "bad cursor",
            app.get(ADMIN_KEY, "/v1/checkpoints?cursor=abc").await,
            400,
            "invalid_query",
        ),
        (
            "bad status",
            app.get(ADMIN_KEY, "/v1/checkpoints?status=approved").await,
            400,
            "invalid_query",
        ),
        (
            "unknown query field",
            app.get(ADMIN_KEY, "/v1/checkpoints?colour=red").await,
            400,
            "invalid_query",
        ),
        (
            "unknown checkpoint read",
            app.get(ADMIN_KEY, "/webhook/checkpoint/nope").await,
            404,
            "not_found",
        ),
        (
            "unknown route",
            app.get(ADMIN_KEY, "/v2/everything").await,
            404,
            "not_found",
        ),
        (
            "wrong method",
            app.client
                .delete(app.url("/webhook/crewai"))
                .send()
                .await
                .expect("req"),
            405,
            "method_not_allowed",
        ),
        (
            "duplicate key name",
            app.client
                .post(app.url("/v1/keys"))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"name": "WEBHOOK_API_KEY-x", "scope": "admin"}))
                .send()
                .await
                .expect("req"),
            201,
            "",
        ),
    ];
    for (name, response, status, code) in cases {
        if status == 201 {
            continue;
        }
        let problem: Value = assert_problem(response, status, code).await;
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
    }
    // The key created by the last case is the only change; drop it from the comparison.
    let dup = app
        .client
        .post(app.url("/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "WEBHOOK_API_KEY-x", "scope": "admin"}))
        .send()
        .await
        .expect("req");
    assert_problem(dup, 409, "key_name_taken").await;
    let revoke = app
        .client
        .delete(app.url("/v1/keys/WEBHOOK_API_KEY-x"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("req");
    assert_eq!(revoke.status(), 204);
    let after = app.snapshot().await;
    assert_eq!(
        after.lines().take(3).collect::<Vec<_>>(),
        before.lines().take(3).collect::<Vec<_>>(),
        "no checkpoint or execution changed"
    );
}
