//! Hostile input at the edges: NUL and control characters, trailing or deeply nested JSON,
//! out-of-range numbers, wrong scopes with broken bodies, spoofed provenance. Each is refused
//! with a precise problem+json and leaves the store unchanged, on both backends (PostgreSQL is
//! the one that cannot store NUL).

use hitlhook_domain::Timestamp;
use hitlhook_store::testing::TestDb;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    nul_and_control_characters_are_refused,
    trailing_and_deep_json_is_refused,
    out_of_range_numbers_are_answered,
    scope_is_checked_before_the_body,
    decisions_cannot_claim_hitlhook_provenance,
    small_query_and_body_rules,
    email_link_errors_are_pages_for_people,
    slack_refusals_speak_of_slack,
    amp_bodies_follow_the_same_rules,
    nul_feedback_from_an_email_form_is_refused,
);

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    request.send().await.expect("request")
}

async fn send_signed(app: &TestApp, body: &[u8], webhook_id: &str) -> reqwest::Response {
    let headers =
        TestApp::signed_headers(SECRET, body, webhook_id, Timestamp::now().unix_seconds());
    app.post_event_raw(headers, body.to_vec()).await
}

async fn assert_mentions(
    response: reqwest::Response,
    status: u16,
    code: &str,
    mention: &str,
    name: &str,
) {
    let problem = assert_problem(response, status, code).await;
    let detail = problem["detail"].as_str().unwrap_or("");
    assert!(detail.contains(mention), "{name}: detail {problem}");
}

async fn nul_and_control_characters_are_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let before = app.snapshot().await;

    let events: &[(&str, &str, &str)] = &[
        (
            "NUL kickoff_id",
            r#"{"event_type":"task.started","kickoff_id":"a\u0000b"}"#,
            "kickoff_id",
        ),
        (
            "tab kickoff_id",
            r#"{"event_type":"task.started","kickoff_id":"a\tb"}"#,
            "kickoff_id",
        ),
        (
            "NUL event_id",
            r#"{"event_type":"task.started","event_id":"a\u0000b"}"#,
            "event_id",
        ),
        (
            "NUL event type",
            r#"{"event_type":"task\u0000started"}"#,
            "event_type",
        ),
        (
            "NUL checkpoint id",
            r#"{"event_type":"checkpoint.required","checkpoint_name":"n","checkpoint_id":"a\u0000b"}"#,
            "checkpoint_id",
        ),
        (
            "NUL checkpoint name",
            r#"{"event_type":"checkpoint.required","checkpoint_name":"a\u0000b"}"#,
            "checkpoint_name",
        ),
        (
            "right-to-left override in a checkpoint name",
            r#"{"event_type":"checkpoint.required","checkpoint_name":"approve\u202egnp.exe"}"#,
            "checkpoint_name",
        ),
        (
            "bidirectional isolate in a kickoff_id",
            r#"{"event_type":"task.started","kickoff_id":"run\u2066-7"}"#,
            "kickoff_id",
        ),
        (
            "NUL in a batch",
            r#"{"events":[{"type":"task_started","execution_id":"a\u0000b"}]}"#,
            "events[0].kickoff_id",
        ),
    ];
    for (name, body, field) in events {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let response = send_signed(&app, body.as_bytes(), &id).await;
        assert_mentions(response, 422, "invalid_event", field, name).await;
    }
    let long = json!({"event_type": "task.started", "kickoff_id": "k".repeat(1000)}).to_string();
    let response = send_signed(&app, long.as_bytes(), "msg_long").await;
    assert_mentions(
        response,
        422,
        "invalid_event",
        "kickoff_id",
        "long kickoff_id",
    )
    .await;
    let body = br#"{"event_type":"task.started"}"#;
    let response = send_signed(&app, body, &"w".repeat(300)).await;
    assert_mentions(
        response,
        400,
        "invalid_header",
        "webhook-id",
        "long webhook-id",
    )
    .await;

    for path in [
        "/webhook/checkpoint/a%00b",
        "/v1/checkpoints/a%00b",
        "/webhook/status/a%00b",
        "/v1/executions/a%00b",
        "/v1/executions/a%00b/events",
        "/v1/deliveries/a%00b",
        "/v1/subscriptions/a%00b",
        "/v1/amp/sources/a%00b",
    ] {
        let response = app.get(ADMIN_KEY, path).await;
        assert_mentions(response, 404, "not_found", "control characters", path).await;
    }
    for path in [
        "/v1/checkpoints?kickoff_id=a%00b",
        "/v1/events?kickoff_id=a%00b",
        "/v1/deliveries?checkpoint_id=a%00b",
        "/v1/stream?kickoff_id=a%00b",
    ] {
        let response = app.get(ADMIN_KEY, path).await;
        assert_mentions(response, 400, "invalid_query", "control characters", path).await;
    }
    let response = send(&app, Method::DELETE, "/v1/keys/a%00b", ADMIN_KEY, None).await;
    assert_mentions(response, 404, "not_found", "control characters", "revoke").await;
    let decision = r#"{"action":"continue"}"#;
    let response = send(
        &app,
        Method::POST,
        "/v1/checkpoints/a%00b/decision",
        ADMIN_KEY,
        Some(decision),
    )
    .await;
    assert_mentions(
        response,
        404,
        "not_found",
        "control characters",
        "decide path",
    )
    .await;
    let response = send(
        &app,
        Method::POST,
        "/amp/a%00b/events",
        ADMIN_KEY,
        Some("{}"),
    )
    .await;
    assert_mentions(response, 404, "not_found", "control characters", "amp path").await;
    let bodies: &[(&str, &str, &str)] = &[
        (
            "/v1/checkpoints/cp-1/decision",
            r#"{"action":"revise","feedback":"a\u0000b"}"#,
            "feedback",
        ),
        (
            "/v1/checkpoints/cp-1/decision",
            r#"{"action":"continue","decided_by":"a\u0000b"}"#,
            "decided_by",
        ),
        (
            "/v1/checkpoints/cp-1/decision",
            r#"{"action":"continue","channel":"a\u0000b"}"#,
            "channel",
        ),
        (
            "/webhook/feedback",
            r#"{"checkpoint_id":"a\u0000b","action":"continue"}"#,
            "checkpoint_id",
        ),
        (
            "/v1/keys",
            r#"{"name":"a\u0000b","scope":"reviewer"}"#,
            "name",
        ),
        // Not shaped like a key id (keys are revoked by id or name), not the env key's name.
        (
            "/v1/keys",
            r#"{"name":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","scope":"reviewer"}"#,
            "name",
        ),
        (
            "/v1/keys",
            r#"{"name":"webhook_api_key","scope":"reviewer"}"#,
            "name",
        ),
        // Valid JSON of the wrong type where one of a set of strings is expected.
        ("/v1/keys", r#"{"name":"t","scope":1}"#, "scope"),
        ("/v1/checkpoints/cp-1/decision", r#"{"action":1}"#, "action"),
        (
            "/v1/checkpoints/cp-1/decision",
            r#"{"action":null}"#,
            "action",
        ),
        (
            "/v1/checkpoints/cp-1/decision",
            r#"{"action":["stop"]}"#,
            "action",
        ),
    ];
    for (path, body, field) in bodies {
        let response = send(&app, Method::POST, path, ADMIN_KEY, Some(body)).await;
        assert_mentions(response, 422, "invalid_request", field, path).await;
    }
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");

    // NUL deep inside a context is kept as JSON text (the six-character escape): stored, served.
    let body = br#"{"event_type":"checkpoint.required","checkpoint_name":"n","checkpoint_id":"cp-nul","context":{"a":"x\u0000y"}}"#;
    let response = send_signed(&app, body, "msg_nul_context").await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.checkpoint("cp-nul").await["context"]["a"], "x\u{0}y");
}

async fn trailing_and_deep_json_is_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let before = app.snapshot().await;
    let deep = format!(
        r#"{{"event_type":"checkpoint.required","checkpoint_name":"n","context":{}{}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "garbage after",
            "{\"event_type\":\"x\",\"a\":1}\n\n  garbage".into(),
            400,
            "malformed_json",
        ),
        (
            "two objects",
            r#"{"event_type":"a","kickoff_id":"k2"}{"event_type":"b"}"#.into(),
            400,
            "malformed_json",
        ),
        (
            "checkpoint then text",
            r#"{"event_type":"checkpoint.required","checkpoint_name":"n"} x"#.into(),
            400,
            "malformed_json",
        ),
        ("nested 1000 deep", deep, 422, "too_deep"),
        (
            "batch nested deep",
            format!(
                r#"{{"events":[{{"type":"x","data":{}{}}}]}}"#,
                "[".repeat(100),
                "]".repeat(100)
            ),
            422,
            "too_deep",
        ),
    ];
    for (name, body, status, code) in cases {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let response = send_signed(&app, body.as_bytes(), &id).await;
        let problem = assert_problem(response, status, code).await;
        if code == "malformed_json" {
            assert!(problem["line"].is_number(), "{name}: {problem}");
        } else {
            assert!(
                problem["detail"].as_str().unwrap_or("").contains("64"),
                "{name}: {problem}"
            );
        }
    }
    let response = send(
        &app,
        Method::POST,
        "/v1/keys",
        ADMIN_KEY,
        Some(r#"{"name":"x","scope":"admin"} x"#),
    )
    .await;
    assert_problem(response, 400, "malformed_json").await;
    let deep_key = format!(
        r#"{{"name":"x","scope":"admin","x":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let response = send(&app, Method::POST, "/v1/keys", ADMIN_KEY, Some(&deep_key)).await;
    assert_problem(response, 422, "too_deep").await;
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
    // 63 levels inside the body still fit.
    let ok = format!(
        r#"{{"event_type":"checkpoint.required","checkpoint_name":"n","context":{}{}}}"#,
        "[".repeat(63),
        "]".repeat(63)
    );
    let response = send_signed(&app, ok.as_bytes(), "msg_deep_ok").await;
    assert_eq!(response.status(), 200);
}

async fn out_of_range_numbers_are_answered(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-1", "continue", None)
            .await
            .status(),
        200
    );
    // Decided already, so the clamped wait answers at once.
    let response = app
        .get(
            ADMIN_KEY,
            "/webhook/checkpoint/cp-1?wait=99999999999999999999",
        )
        .await;
    assert_eq!(response.status(), 200);
    let before = app.snapshot().await;
    let body = br#"{"event_type":"task.started"}"#;
    for (ts, code) in [
        (i64::MIN, "stale_timestamp"),
        (i64::MAX, "future_timestamp"),
    ] {
        for (sig, ts_header) in [
            ("x-crewai-signature", "x-crewai-timestamp"),
            ("x-signature", "x-timestamp"),
        ] {
            let response = app
                .client
                .post(app.url("/webhook/crewai"))
                .header("content-type", "application/json")
                .header(sig, "sha256=00")
                .header(ts_header, ts.to_string())
                .body(body.to_vec())
                .send()
                .await
                .expect("request");
            let problem = assert_problem(response, 401, code).await;
            // i64::MIN is far in the past, never "ahead" (as wrapping arithmetic made it).
            let side = if ts < 0 { "older" } else { "ahead" };
            assert!(
                problem["detail"].as_str().unwrap_or("").contains(side),
                "{problem}"
            );
        }
        let response = app
            .client
            .post(app.url("/webhook/crewai"))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_1")
            .header("webhook-signature", "v1,AAAA")
            .header("webhook-timestamp", ts.to_string())
            .body(body.to_vec())
            .send()
            .await
            .expect("request");
        assert_problem(response, 401, code).await;
    }
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
}

async fn scope_is_checked_before_the_body(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let reviewer = app.create_key("rev", "reviewer").await;
    let ingest = app.create_key("ing", "ingest").await;
    let before = app.snapshot().await;
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/subscriptions", "reviewer", r#"{"x":1}"#),
        ("/v1/keys", "reviewer", "{"),
        ("/v1/keys", "ingest", r#"{"x":1}"#),
        ("/v1/amp/sources", "reviewer", r#"{"x":1}"#),
        ("/v1/amp/sources/s/kickoff", "reviewer", "{"),
        ("/v1/checkpoints/cp-1/decision", "ingest", "{"),
        ("/webhook/feedback", "ingest", r#"{"x":1}"#),
    ];
    for (path, who, body) in cases {
        let key = if *who == "reviewer" {
            &reviewer
        } else {
            &ingest
        };
        let response = send(&app, Method::POST, path, key, Some(body)).await;
        assert_mentions(response, 403, "forbidden", "key", path).await;
    }
    // Queries and path ids come after the scope too.
    for (path, key) in [
        ("/v1/checkpoints?limit=abc", &ingest),
        ("/v1/events?after=-1", &ingest),
        ("/v1/executions/a%00b/events", &ingest),
        ("/v1/subscriptions/a%00b", &reviewer),
        ("/v1/deliveries?limit=0", &ingest),
    ] {
        let response = app.get(key, path).await;
        assert_mentions(response, 403, "forbidden", "key", path).await;
    }
    let response = app.get(&reviewer, "/v1/keys").await;
    assert_mentions(response, 403, "forbidden", "needs an admin", "grammar").await;
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
}

async fn decisions_cannot_claim_hitlhook_provenance(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let reviewer = app.create_key("rev", "reviewer").await;
    let before = app.snapshot().await;
    let cases: &[(&str, &str)] = &[
        (
            r#"{"action":"continue","channel":"system","decided_by":"system:timeout"}"#,
            "decided_by",
        ),
        (
            r#"{"action":"continue","decided_by":"System:timeout"}"#,
            "decided_by",
        ),
        (r#"{"action":"continue","channel":"system"}"#, "channel"),
        (r#"{"action":"continue","channel":"Slack"}"#, "channel"),
        (r#"{"action":"continue","channel":"email"}"#, "channel"),
    ];
    for (body, field) in cases {
        let response = send(
            &app,
            Method::POST,
            "/v1/checkpoints/cp-1/decision",
            &reviewer,
            Some(body),
        )
        .await;
        assert_mentions(response, 422, "invalid_request", field, body).await;
    }
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
    // What the inbox sends still works.
    let body = r#"{"action":"continue","channel":"inbox","decided_by":"ann"}"#;
    let response = send(
        &app,
        Method::POST,
        "/v1/checkpoints/cp-1/decision",
        &reviewer,
        Some(body),
    )
    .await;
    assert_eq!(response.status(), 200);
    let cp: Value = response.json().await.expect("json");
    assert_eq!(cp["decision"]["channel"], "inbox");
}

async fn small_query_and_body_rules(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let before = app.snapshot().await;
    for path in [
        "/v1/checkpoints?limit=0",
        "/v1/executions?limit=0",
        "/v1/events?limit=0",
        "/v1/deliveries?limit=0",
        "/v1/checkpoints?cursor=-1",
        "/v1/events?cursor=-1",
        "/v1/events?after=-1",
    ] {
        let response = app.get(ADMIN_KEY, path).await;
        assert_problem(response, 400, "invalid_query").await;
    }
    let response = send(&app, Method::POST, "/v1/keys", ADMIN_KEY, Some("\"str\"")).await;
    let problem = assert_problem(response, 422, "invalid_request").await;
    let detail = problem["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("expected a JSON object") && !detail.contains("struct"),
        "{problem}"
    );
    let response = send_signed(&app, b"\"str\"", "msg_str").await;
    let problem = assert_problem(response, 422, "invalid_event").await;
    assert!(
        !problem["detail"].as_str().unwrap_or("").contains("Wire"),
        "{problem}"
    );
    // JSON is UTF-8: another declared charset is refused, utf-8 is fine.
    let body = br#"{"event_type":"task.started"}"#;
    let mut headers =
        TestApp::signed_headers(SECRET, body, "msg_latin1", Timestamp::now().unix_seconds());
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=latin1"),
    );
    assert_problem(
        app.post_event_raw(headers, body.to_vec()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let response = app
        .client
        .post(app.url("/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json; charset=ISO-8859-1")
        .body(r#"{"name":"x","scope":"reviewer"}"#)
        .send()
        .await
        .expect("request");
    assert_problem(response, 415, "unsupported_media_type").await;
    // A broken chunked body is a bad request, not an oversized one.
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed_body"), "{answer}");
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
}

async fn email_link_errors_are_pages_for_people(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let url = app.url("/email/decision?token=bad");
    for accept in [
        None,
        Some("*/*"),
        Some("text/html,application/xhtml+xml,*/*;q=0.8"),
    ] {
        let mut request = app.client.get(&url);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 400, "{accept:?}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{accept:?}: {content_type}"
        );
        assert!(response.text().await.expect("body").contains("<h1>"));
    }
    let response = app
        .client
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    assert_problem(response, 400, "invalid_link").await;
}

async fn slack_refusals_speak_of_slack(db: TestDb) {
    let app = TestApp::spawn_with(db, |cfg| {
        cfg.delivery.slack_signing_secret =
            Some(hitlhook_server::config::Secret("slack-secret".into()));
    })
    .await;
    let before = app.snapshot().await;
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .client
            .post(app.url("/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("payload=%7B%7D");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let response = post(vec![]).await.expect("request");
    let problem = assert_problem(response, 401, "missing_signature").await;
    let detail = problem["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("X-Slack-Signature") && !detail.contains("CrewAI"),
        "{problem}"
    );
    let response = post(vec![
        ("x-slack-signature", "v0=00".into()),
        ("x-slack-request-timestamp", i64::MIN.to_string()),
    ])
    .await
    .expect("request");
    assert_problem(response, 401, "stale_timestamp").await;
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
}

async fn amp_bodies_follow_the_same_rules(db: TestDb) {
    use crate::amp::{HMAC_SECRET, bearer, create_source, post_amp, signed};
    let app = TestApp::spawn(db).await;
    create_source(
        &app,
        &json!({"name": "prod", "auth": "bearer", "token": "amp-inbound-token-1"}),
    )
    .await;
    create_source(
        &app,
        &json!({"name": "sig", "auth": "hmac", "signing_secret": HMAC_SECRET}),
    )
    .await;
    let before = app.snapshot().await;
    let auth = bearer("amp-inbound-token-1");
    let long = "e".repeat(1000);
    let deep = format!(
        r#"{{"execution_id":"e1","task_id":"t","output":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "NUL execution id",
            r#"{"execution_id":"a\u0000b","task_id":"t","output":"o"}"#.into(),
            422,
            "invalid_event",
            "execution_id",
        ),
        (
            "NUL deep in output",
            r#"{"execution_id":"e1","task_id":"t","output":{"x":["a\u0000b"]}}"#.into(),
            422,
            "invalid_event",
            "output.x[0]",
        ),
        (
            "long execution id",
            json!({"execution_id": long, "task_id": "t", "output": "o"}).to_string(),
            422,
            "invalid_event",
            "execution_id",
        ),
        (
            "control task id",
            r#"{"execution_id":"e1","task_id":"a\tb","output":"o"}"#.into(),
            422,
            "invalid_event",
            "task_id",
        ),
        (
            "trailing text",
            r#"{"execution_id":"e1","task_id":"t","output":"o"} x"#.into(),
            400,
            "malformed_json",
            "",
        ),
        ("nested deep", deep, 422, "too_deep", "64"),
    ];
    for (name, body, status, code, mention) in cases {
        let response = post_amp(&app, "/amp/prod/human-input", &auth, body.as_bytes()).await;
        assert_mentions(response, status, code, mention, name).await;
    }
    let response = post_amp(
        &app,
        "/amp/prod/events",
        &auth,
        br#"{"events":[{"type":"task_started","execution_id":"a\u0000b"}]}"#,
    )
    .await;
    assert_mentions(
        response,
        422,
        "invalid_event",
        "kickoff_id",
        "NUL in an event stream",
    )
    .await;
    let body = br#"{"event":"new_request"}"#;
    for ts in [i64::MIN, i64::MAX] {
        let mut headers = signed(body, ts, false);
        headers.push(("x-signature", "sha256=00".into()));
        let response = post_amp(&app, "/amp/sig/flow-hitl", &headers, body).await;
        let code = if ts < 0 {
            "stale_timestamp"
        } else {
            "future_timestamp"
        };
        assert_problem(response, 401, code).await;
    }
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
}

async fn nul_feedback_from_an_email_form_is_refused(db: TestDb) {
    use hitlhook_domain::Action;
    use hitlhook_server::security::links::{LinkClaims, LinkSigner};
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("cp-1", "k-1").await;
    let before = app.snapshot().await;
    // The test server's first webhook secret signs links, as in production.
    let token = LinkSigner::new(SECRET.as_bytes()).sign(&LinkClaims {
        checkpoint_id: "cp-1".into(),
        recipient: "carol@example.com".into(),
        action: Action::Revise,
        expires_at: Timestamp::now().millis() + 60_000,
        delivery_id: "d-test".into(),
    });
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", token.as_str()), ("feedback", "a\u{0}b")])
        .finish();
    let response = app
        .client
        .post(app.url("/email/decision"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_mentions(response, 422, "invalid_request", "feedback", "email form").await;
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");
}
