//! CrewAI AMP: sources managed over the admin API; AMP's inbound webhooks (event streams, crew
//! human-input, flow HITL in both shapes, legacy task/step/crew) with each authentication mode and
//! every refusal leaving the store unchanged; decisions resumed through an AMP stand-in that
//! checks exactly what it receives.

use hitlhook_domain::Timestamp;
use hitlhook_server::security::signature::hmac;
use hitlhook_store::testing::TestDb;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    sources_are_managed_by_admins_and_secrets_are_shown_once,
    a_human_input_request_makes_one_checkpoint_per_round,
    each_auth_mode_accepts_its_credentials_and_refuses_the_rest,
    flow_requests_in_both_shapes_and_escalations_make_one_checkpoint,
    event_streams_and_legacy_webhooks_are_recorded,
    sources_are_kept_apart_and_streams_cannot_ask_for_review,
    a_refused_signed_request_may_be_sent_again,
);

async fn amp_origin(app: &TestApp, checkpoint_id: &str) -> hitlhook_domain::amp::Origin {
    app.store
        .get_amp_origin(checkpoint_id)
        .await
        .expect("read")
        .expect("origin")
}

pub const HMAC_SECRET: &str = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLWFtcC10ZXN0cw==";

/// Creates a source through the API and returns the creation answer.
pub async fn create_source(app: &TestApp, body: &Value) -> Value {
    let response = app
        .client
        .post(app.url("/v1/amp/sources"))
        .bearer_auth(ADMIN_KEY)
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "source created");
    response.json().await.expect("json")
}

/// Posts `body` to `path` with `headers` (content type JSON unless given).
pub async fn post_amp(
    app: &TestApp,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> reqwest::Response {
    let mut map = HeaderMap::new();
    map.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    app.client
        .post(app.url(path))
        .headers(map)
        .body(body.to_vec())
        .send()
        .await
        .expect("request")
}

/// Posts `body` to an AMP endpoint, which must accept it (200); returns the answer.
pub async fn accepted(
    app: &TestApp,
    path: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> Value {
    let response = post_amp(app, path, headers, body.to_string().as_bytes()).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

pub fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// AMP's Flow HITL signature headers for `body` at `ts`.
pub fn signed(body: &[u8], ts: i64, alias: bool) -> Vec<(&'static str, String)> {
    let tag = hex::encode(hmac(
        HMAC_SECRET.as_bytes(),
        &[ts.to_string().as_bytes(), b".", body],
    ));
    let (sig, stamp) = if alias {
        ("x-crewai-signature", "x-crewai-timestamp")
    } else {
        ("x-signature", "x-timestamp")
    };
    vec![(sig, format!("sha256={tag}")), (stamp, ts.to_string())]
}

pub fn human_input(execution: &str, output: &str) -> Vec<u8> {
    json!({"execution_id": execution, "task_id": "research_task", "output": output})
        .to_string()
        .into_bytes()
}

pub fn new_request(id: &str, callback: &str) -> Vec<u8> {
    json!({"event": "new_request",
        "request": {"id": id, "flow_id": "flow_abc123", "method_name": "review_article",
            "message": "Please review this article for publication.",
            "emit_options": ["approved", "rejected", "request_changes"],
            "state": {"article_id": 12345, "author": "john@example.com"},
            "metadata": {}, "created_at": "2026-01-14T12:00:00Z"},
        "deployment": {"id": 456, "name": "Content Review Flow", "organization_id": 789},
        "callback_url": callback, "assigned_to_email": "reviewer@company.com"})
    .to_string()
    .into_bytes()
}

async fn sources_are_managed_by_admins_and_secrets_are_shown_once(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = create_source(
        &app,
        &json!({"name": "prod", "auth": "bearer", "deployment_url": "https://crew.crewai.com/",
            "deployment_token": "dep-token-123", "emit_map": {"continue": "publish"}}),
    )
    .await;
    let token = created["credentials"]["token"].as_str().expect("token");
    let url_token = created["credentials"]["url_token"]
        .as_str()
        .expect("url token");
    assert!(token.starts_with("amp_") && url_token.len() >= 32);
    assert_eq!(created["deployment_url"], "https://crew.crewai.com");
    assert_eq!(created["has_deployment_token"], true);
    assert_eq!(
        created["endpoints"]["task"],
        format!("{}/amp/prod/task?token={url_token}", app.base)
    );
    assert_eq!(
        created["endpoints"]["human_input"],
        format!("{}/amp/prod/human-input", app.base)
    );
    let text = created.to_string();
    assert!(
        !text.contains("dep-token-123"),
        "the deployment token is never shown"
    );

    let listed: Value = app.get_json(ADMIN_KEY, "/v1/amp/sources").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let shown: Value = app.get_json(ADMIN_KEY, "/v1/amp/sources/prod").await;
    for secret in [token, url_token, "dep-token-123"] {
        assert!(!listed.to_string().contains(secret) && !shown.to_string().contains(secret));
    }
    assert_eq!(shown["emit_map"], json!({"continue": "publish"}));

    // Refusals: duplicate name, invalid fields, reviewer keys; none stores anything.
    let before = app.store.list_amp_sources().await.expect("list");
    let post = |body: Value, key: String| {
        let client = app.client.clone();
        let url = app.url("/v1/amp/sources");
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("req")
        }
    };
    assert_problem(
        post(json!({"name": "prod", "auth": "bearer"}), ADMIN_KEY.into()).await,
        409,
        "source_exists",
    )
    .await;
    let bad = assert_problem(
        post(json!({"name": "x", "auth": "basic"}), ADMIN_KEY.into()).await,
        422,
        "invalid_request",
    )
    .await;
    assert!(
        bad["detail"].as_str().unwrap_or("").starts_with("username"),
        "{bad}"
    );
    assert_problem(post(json!({"name": "x", "auth": "bearer", "deployment_url": "http://169.254.169.254", "deployment_token": "tttttttttt"}), ADMIN_KEY.into()).await, 422, "invalid_request").await;
    assert_problem(
        post(
            json!({"name": "x", "auth": "bearer", "colour": "red"}),
            ADMIN_KEY.into(),
        )
        .await,
        422,
        "invalid_request",
    )
    .await;
    let reviewer = app.create_key("rita", "reviewer").await;
    assert_problem(
        post(json!({"name": "y", "auth": "bearer"}), reviewer.clone()).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        app.get(&reviewer, "/v1/amp/sources").await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(app.store.list_amp_sources().await.expect("list"), before);

    let removed = app
        .client
        .delete(app.url("/v1/amp/sources/prod"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("req");
    assert_eq!(removed.status(), 204);
    assert_problem(
        app.get(ADMIN_KEY, "/v1/amp/sources/prod").await,
        404,
        "not_found",
    )
    .await;
    // A removed source's URLs answer 404.
    assert_problem(
        post_amp(
            &app,
            "/amp/prod/human-input",
            &bearer(token),
            &human_input("k", "o"),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

async fn a_human_input_request_makes_one_checkpoint_per_round(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = create_source(
        &app,
        &json!({"name": "prod", "auth": "bearer", "token": "amp-inbound-token-1"}),
    )
    .await;
    assert_eq!(created["credentials"]["token"], "amp-inbound-token-1");
    let auth = bearer("amp-inbound-token-1");

    let first = post_amp(
        &app,
        "/amp/prod/human-input",
        &auth,
        &human_input("exec-1", "first draft"),
    )
    .await;
    assert_eq!(first.status(), 200);
    let receipt: Value = first.json().await.expect("json");
    let id = receipt["checkpoint_id"]
        .as_str()
        .expect("checkpoint")
        .to_owned();
    let cp = app.checkpoint(&id).await;
    assert_eq!(cp["kickoff_id"], "exec-1");
    assert_eq!(cp["checkpoint_name"], "research_task");
    assert_eq!(cp["context"]["task_output"], "first draft");
    assert_eq!(cp["status"], "pending");
    let origin = app
        .store
        .get_amp_origin(&id)
        .await
        .expect("origin")
        .expect("stored");
    assert_eq!(
        (origin.source.as_str(), origin.task_id.as_deref()),
        ("prod", Some("research_task"))
    );

    // An identical redelivery is the same event: same answer, nothing new.
    let before = app.snapshot().await;
    let again = post_amp(
        &app,
        "/amp/prod/human-input",
        &auth,
        &human_input("exec-1", "first draft"),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["checkpoint_id"], id.as_str());
    assert_eq!(app.snapshot().await, before);

    // After a revise AMP reruns the task and asks again: a new round, a new checkpoint. The
    // kickoff_id / task_output spelling is read too.
    let rerun =
        json!({"kickoff_id": "exec-1", "task_id": "research_task", "task_output": "second draft"});
    let second = accepted(&app, "/amp/prod/human-input", &auth, &rerun).await;
    assert_ne!(second["checkpoint_id"], id.as_str());
    let cp2 = app
        .checkpoint(second["checkpoint_id"].as_str().expect("id"))
        .await;
    assert_eq!(cp2["context"]["task_output"], "second draft");
    let execution: Value = app.get_json(ADMIN_KEY, "/v1/executions/exec-1").await;
    assert_eq!(execution["execution"]["status"], "waiting_for_human");

    // A deterministic model may produce the very same output after a revision: once the
    // round it answered is closed, the same body asks anew (a redelivery would be ignored and
    // the crew would wait forever).
    let cp2_id = second["checkpoint_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.decide(ADMIN_KEY, &cp2_id, "revise", Some("again"))
            .await
            .status(),
        200
    );
    let third = post_amp(
        &app,
        "/amp/prod/human-input",
        &auth,
        rerun.to_string().as_bytes(),
    )
    .await;
    assert_eq!(third.status(), 200);
    assert!(third.headers().get("idempotent-replayed").is_none());
    let third: Value = third.json().await.expect("json");
    assert_ne!(third["checkpoint_id"], cp2_id.as_str());
    assert_eq!(
        app.checkpoint(third["checkpoint_id"].as_str().expect("id"))
            .await["status"],
        "pending"
    );
}

async fn each_auth_mode_accepts_its_credentials_and_refuses_the_rest(db: TestDb) {
    let app = TestApp::spawn(db).await;
    create_source(
        &app,
        &json!({"name": "tok", "auth": "bearer", "token": "amp-inbound-token-1"}),
    )
    .await;
    create_source(&app, &json!({"name": "pw", "auth": "basic", "username": "amp", "password": "correct-horse-battery"})).await;
    let hmac_src = create_source(
        &app,
        &json!({"name": "sig", "auth": "hmac", "signing_secret": HMAC_SECRET}),
    )
    .await;
    let url_token = hmac_src["credentials"]["url_token"]
        .as_str()
        .expect("url token")
        .to_owned();
    let basic = |user: &str, pw: &str| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        vec![("authorization", format!("Basic {b64}"))]
    };
    let now = Timestamp::now().unix_seconds();
    let body = new_request("req-auth", "https://api.crewai.com/cb?token=t");

    // Every refusal: a precise 401/404/400/413/415/422 and an unchanged store.
    let before = app.snapshot().await;
    let huge = vec![b' '; 70 * 1024];
    let stale = now - 400;
    let signed_flow_with_url_token = format!("/amp/sig/flow-hitl?token={url_token}");
    let refusals: Vec<(&str, &str, Vec<(&str, String)>, Vec<u8>, u16, &str)> = vec![
        (
            "no credentials",
            "/amp/tok/human-input",
            vec![],
            human_input("k", "o"),
            401,
            "missing_credentials",
        ),
        (
            "wrong bearer",
            "/amp/tok/human-input",
            bearer("amp-inbound-token-2"),
            human_input("k", "o"),
            401,
            "invalid_token",
        ),
        (
            "basic on a bearer source",
            "/amp/tok/human-input",
            basic("amp", "x"),
            human_input("k", "o"),
            401,
            "invalid_credentials",
        ),
        (
            "wrong password",
            "/amp/pw/human-input",
            basic("amp", "wrong-horse-battery"),
            human_input("k", "o"),
            401,
            "invalid_credentials",
        ),
        (
            "wrong user",
            "/amp/pw/human-input",
            basic("bob", "correct-horse-battery"),
            human_input("k", "o"),
            401,
            "invalid_credentials",
        ),
        (
            "garbled basic",
            "/amp/pw/human-input",
            vec![("authorization", "Basic %%%".into())],
            human_input("k", "o"),
            401,
            "invalid_credentials",
        ),
        (
            "bad signature",
            "/amp/sig/flow-hitl",
            vec![
                ("x-signature", format!("sha256={}", "0".repeat(64))),
                ("x-timestamp", now.to_string()),
            ],
            body.clone(),
            401,
            "invalid_signature",
        ),
        (
            "stale signature",
            "/amp/sig/flow-hitl",
            signed(&body, stale, false),
            body.clone(),
            401,
            "stale_timestamp",
        ),
        (
            "future signature",
            "/amp/sig/flow-hitl",
            signed(&body, now + 400, true),
            body.clone(),
            401,
            "future_timestamp",
        ),
        (
            "no timestamp",
            "/amp/sig/flow-hitl",
            vec![signed(&body, now, false)[0].clone()],
            body.clone(),
            401,
            "malformed_signature",
        ),
        (
            "signature of other bytes",
            "/amp/sig/flow-hitl",
            signed(b"{}", now, false),
            body.clone(),
            401,
            "invalid_signature",
        ),
        (
            "signature on a bearer source",
            "/amp/tok/flow-hitl",
            signed(&body, now, false),
            body.clone(),
            401,
            "invalid_signature",
        ),
        (
            "url token on a signed flow endpoint",
            &signed_flow_with_url_token,
            vec![],
            body.clone(),
            401,
            "missing_credentials",
        ),
        (
            "url token as bearer on a signed flow endpoint",
            "/amp/sig/flow-hitl",
            bearer(&url_token),
            body.clone(),
            401,
            "missing_credentials",
        ),
        (
            "wrong url token",
            "/amp/sig/task?token=nope",
            vec![],
            br#"{"kickoff_id": "k"}"#.to_vec(),
            401,
            "invalid_token",
        ),
        (
            "wrong path token",
            "/amp/sig/task/nope",
            vec![],
            br#"{"kickoff_id": "k"}"#.to_vec(),
            401,
            "invalid_token",
        ),
        (
            "unknown source",
            "/amp/nope/human-input",
            bearer("amp-inbound-token-1"),
            human_input("k", "o"),
            404,
            "not_found",
        ),
        (
            "unknown endpoint",
            "/amp/tok/whatever",
            bearer("amp-inbound-token-1"),
            human_input("k", "o"),
            404,
            "not_found",
        ),
        (
            "malformed JSON",
            "/amp/tok/human-input",
            bearer("amp-inbound-token-1"),
            b"{\"execution_id\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "missing task_id",
            "/amp/tok/human-input",
            bearer("amp-inbound-token-1"),
            br#"{"execution_id": "k"}"#.to_vec(),
            422,
            "invalid_event",
        ),
        (
            "not a batch",
            "/amp/tok/events",
            bearer("amp-inbound-token-1"),
            br#"{"type": "x"}"#.to_vec(),
            422,
            "invalid_event",
        ),
        (
            "events not an array",
            "/amp/tok/events",
            bearer("amp-inbound-token-1"),
            br#"{"events": null}"#.to_vec(),
            422,
            "invalid_event",
        ),
        (
            "an event without its type",
            "/amp/tok/events",
            bearer("amp-inbound-token-1"),
            br#"{"events": [{"id": "x", "execution_id": "k", "data": {}}]}"#.to_vec(),
            422,
            "invalid_event",
        ),
        (
            "callback not a URL",
            "/amp/tok/flow-hitl",
            bearer("amp-inbound-token-1"),
            new_request("r", "javascript:alert(1)"),
            422,
            "invalid_event",
        ),
        (
            "a flow event without its name",
            "/amp/tok/flow-hitl",
            bearer("amp-inbound-token-1"),
            br#"{"request": {"id": "r"}}"#.to_vec(),
            422,
            "invalid_event",
        ),
        (
            "too large",
            "/amp/tok/human-input",
            bearer("amp-inbound-token-1"),
            huge,
            413,
            "payload_too_large",
        ),
    ];
    for (what, path, headers, body, status, code) in refusals {
        let response = post_amp(&app, path, &headers, &body).await;
        let problem = assert_problem(response, status, code).await;
        assert!(
            !problem.to_string().contains("correct-horse"),
            "{what}: no secrets in errors"
        );
    }
    let wrong_type = app
        .client
        .post(app.url("/amp/tok/human-input"))
        .bearer_auth("amp-inbound-token-1")
        .header("content-type", "text/plain")
        .body(human_input("k", "o"))
        .send()
        .await
        .expect("req");
    assert_problem(wrong_type, 415, "unsupported_media_type").await;
    assert_eq!(app.snapshot().await, before, "refusals changed nothing");

    // Each mode's own credentials, and the URL token, are accepted.
    let ok = [
        post_amp(
            &app,
            "/amp/tok/human-input",
            &bearer("amp-inbound-token-1"),
            &human_input("k1", "o"),
        )
        .await,
        post_amp(
            &app,
            "/amp/pw/human-input",
            &basic("amp", "correct-horse-battery"),
            &human_input("k2", "o"),
        )
        .await,
        post_amp(
            &app,
            "/amp/sig/flow-hitl",
            &signed(&body, now, false),
            &body,
        )
        .await,
        post_amp(
            &app,
            &format!("/amp/sig/human-input?token={url_token}"),
            &[],
            &human_input("k3", "o"),
        )
        .await,
        post_amp(
            &app,
            "/amp/sig/human-input",
            &bearer(&url_token),
            &human_input("k4", "o"),
        )
        .await,
    ];
    for (i, response) in ok.into_iter().enumerate() {
        assert_eq!(response.status(), 200, "accepted #{i}");
    }
    // The same signed request again is a replay: refused, nothing changes.
    let before = app.snapshot().await;
    let replay = post_amp(
        &app,
        "/amp/sig/flow-hitl",
        &signed(&body, now, false),
        &body,
    )
    .await;
    assert_problem(replay, 401, "replayed_signature").await;
    // Respelling the signature (no `sha256=`, upper-case hex) or adding another scheme's
    // headers does not make it a new request.
    let original = signed(&body, now, false);
    let tag = original[0].1.trim_start_matches("sha256=").to_owned();
    let respelt: Vec<Vec<(&str, String)>> = vec![
        vec![("x-signature", tag.clone()), original[1].clone()],
        vec![
            (
                "x-signature",
                format!("sha256={}", tag.to_ascii_uppercase()),
            ),
            original[1].clone(),
        ],
        vec![
            original[0].clone(),
            original[1].clone(),
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", "v1,AAAA".into()),
        ],
    ];
    for headers in respelt {
        let again = post_amp(&app, "/amp/sig/flow-hitl", &headers, &body).await;
        assert_problem(again, 401, "replayed_signature").await;
    }
    // Another scheme's valid-looking headers never stand in for AMP's signature.
    let mut foreign = signed(&body, now + 2, false);
    foreign[0].1 = "sha256=00".into();
    foreign.push(("webhook-id", "msg_2".into()));
    assert_problem(
        post_amp(&app, "/amp/sig/flow-hitl", &foreign, &body).await,
        401,
        "invalid_signature",
    )
    .await;
    // The X-CrewAI-* aliases with a fresh signature are the same request: a duplicate.
    let alias = post_amp(
        &app,
        "/amp/sig/flow-hitl",
        &signed(&body, now + 1, true),
        &body,
    )
    .await;
    assert_eq!(alias.status(), 200);
    assert_eq!(alias.headers()["idempotent-replayed"], "true");
    assert_eq!(app.snapshot().await, before);
}

async fn flow_requests_in_both_shapes_and_escalations_make_one_checkpoint(db: TestDb) {
    // Email configured (a closed port: only the planning is looked at here).
    let app = TestApp::spawn_with(db, |cfg| {
        cfg.delivery.smtp_host = Some("127.0.0.1".into());
        cfg.delivery.smtp_port = Some(9);
        cfg.delivery.smtp_from = Some("hitl@example.com".into());
        cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
    })
    .await;
    // The payload shapes are the point here; signatures are tested above.
    create_source(
        &app,
        &json!({"name": "flows", "auth": "bearer", "token": "flows-inbound-token-1"}),
    )
    .await;
    let auth = bearer("flows-inbound-token-1");
    let body = new_request(
        "550e8400-e29b-41d4-a716-446655440000",
        "https://api.crewai.com/cb?token=t",
    );
    let response = post_amp(&app, "/amp/flows/flow-hitl", &auth, &body).await;
    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.expect("json");
    let id = "amp-flow-550e8400-e29b-41d4-a716-446655440000";
    assert_eq!(receipt["checkpoint_id"], id);
    let cp = app.checkpoint(id).await;
    assert_eq!(cp["checkpoint_name"], "review_article");
    assert_eq!(cp["kickoff_id"], "flow_abc123");
    assert_eq!(
        cp["context"]["message"],
        "Please review this article for publication."
    );
    assert_eq!(cp["context"]["state"]["article_id"], 12345);
    assert_eq!(cp["allowed_actions"], json!(["continue", "stop", "revise"]));
    let origin = amp_origin(&app, id).await;
    assert_eq!(
        origin.callback_url.as_deref(),
        Some("https://api.crewai.com/cb?token=t")
    );
    assert_eq!(
        origin.emit_options,
        ["approved", "rejected", "request_changes"]
    );
    assert_eq!(origin.assignee.as_deref(), Some("reviewer@company.com"));
    // The assignee is the checkpoint's email recipient.
    let emails: Vec<Value> = app
        .deliveries(id)
        .await
        .into_iter()
        .filter(|d| d["kind"] == "email")
        .collect();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["target"], "reviewer@company.com");

    // An escalation (flat shape) of the same request annotates the execution's trail; it does
    // not ask again.
    let escalation = json!({"event_type": "escalation", "id": "550e8400-e29b-41d4-a716-446655440000",
        "status": "pending", "flow_id": "flow_abc123", "flow_class": "ContentFlow",
        "method_name": "review_article", "message": "Please review this article for publication.",
        "emit": ["approved", "rejected", "request_changes"], "callback_url": "https://api.crewai.com/cb?token=t2",
        "assigned_to": {"id": 7, "email": "boss@company.com", "name": "Boss"},
        "escalated_at": "2026-01-14T13:00:00Z", "sla_target_minutes": 60});
    let receipt = accepted(&app, "/amp/flows/flow-hitl", &auth, &escalation).await;
    assert_eq!(receipt["event_type"], "amp.flow_escalation");
    assert_eq!(
        receipt["checkpoint_id"], id,
        "the escalation is about the checkpoint"
    );
    let page = app
        .store
        .list_checkpoints(&hitlhook_store::CheckpointQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1, "one checkpoint per request");
    let types = app.trail("/v1/executions/flow_abc123/events").await;
    assert_eq!(types, ["checkpoint.required", "amp.flow_escalation"]);
    let types = app.trail(&format!("/v1/events?checkpoint_id={id}")).await;
    assert_eq!(
        types,
        ["checkpoint.required", "amp.flow_escalation"],
        "on the checkpoint's trail"
    );
    // An event name hitlhook does not act on is recorded there too (AMP would not resend a
    // refused post), without its answering secrets.
    let other = json!({"event": "request_responded", "request": {"id": "550e8400-e29b-41d4-a716-446655440000",
        "flow_id": "flow_abc123", "response_token": "secret-token"}, "callback_url": "https://api.crewai.com/cb?token=t"});
    let receipt = accepted(&app, "/amp/flows/flow-hitl", &auth, &other).await;
    assert_eq!(receipt["event_type"], "amp.flow_request_responded");
    assert_eq!(receipt["checkpoint_id"], id);
    let trail = app
        .get_json(ADMIN_KEY, &format!("/v1/events?checkpoint_id={id}"))
        .await;
    let stored = trail["items"][2]["payload"].to_string();
    assert!(
        stored.contains("request_responded")
            && !stored.contains("secret-token")
            && !stored.contains("token=t"),
        "{stored}"
    );
    assert_eq!(app.checkpoint(id).await["status"], "pending");
    // The decision will answer at the escalation's callback (AMP may have issued a new token).
    let origin = amp_origin(&app, id).await;
    assert_eq!(
        origin.callback_url.as_deref(),
        Some("https://api.crewai.com/cb?token=t2")
    );
    assert_eq!(origin.assignee.as_deref(), Some("reviewer@company.com"));
    // Its new assignee gets the checkpoint's email.
    let emails: Vec<(Value, Value)> = app
        .deliveries(id)
        .await
        .into_iter()
        .filter(|d| d["kind"] == "email")
        .map(|d| (d["target"].clone(), d["event_type"].clone()))
        .collect();
    assert_eq!(
        emails,
        [
            (json!("reviewer@company.com"), json!("checkpoint.created")),
            (json!("boss@company.com"), json!("checkpoint.escalated"))
        ]
    );

    // An escalation of a request hitlhook never saw asks for it (flat shape with its ids).
    let unseen = json!({"event_type": "escalation", "id": "req-2", "flow_id": "flow_abc123",
        "flow_execution_id": "fx-2", "method_name": "approve_budget", "message": "Budget?",
        "emit": ["approved", "rejected"], "default_outcome": "rejected",
        "callback_url": "https://api.crewai.com/cb2?token=u"});
    accepted(&app, "/amp/flows/flow-hitl", &auth, &unseen).await;
    let cp = app.checkpoint("amp-flow-req-2").await;
    assert_eq!(cp["kickoff_id"], "fx-2");
    assert_eq!(
        cp["allowed_actions"],
        json!(["continue", "stop", "revise", "skip"])
    );
    // Its new_request, arriving late with other text, is recorded on that checkpoint (not a
    // 409: AMP would not send it again), once however often it comes.
    let late = json!({"event_type": "new_request", "id": "req-2", "flow_id": "flow_abc123",
        "flow_execution_id": "fx-2", "method_name": "approve_budget", "message": "Budget for Q3?",
        "emit": ["approved", "rejected"], "default_outcome": "rejected",
        "callback_url": "https://api.crewai.com/cb2?token=u"});
    let receipt = accepted(&app, "/amp/flows/flow-hitl", &auth, &late).await;
    assert_eq!(receipt["event_type"], "amp.flow_new_request");
    assert_eq!(receipt["checkpoint_id"], "amp-flow-req-2");
    let again = post_amp(
        &app,
        "/amp/flows/flow-hitl",
        &auth,
        late.to_string().as_bytes(),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let types = app.trail("/v1/events?checkpoint_id=amp-flow-req-2").await;
    assert_eq!(types, ["checkpoint.required", "amp.flow_new_request"]);
    let cp = app.checkpoint("amp-flow-req-2").await;
    assert_eq!(
        (cp["status"].as_str(), cp["context"]["message"].as_str()),
        (Some("pending"), Some("Budget?")),
        "the checkpoint stays as its escalation asked"
    );
}

async fn event_streams_and_legacy_webhooks_are_recorded(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = create_source(
        &app,
        &json!({"name": "crews", "auth": "bearer", "token": "amp-inbound-token-1"}),
    )
    .await;
    let token = created["credentials"]["url_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let batch = json!({"events": [
        {"id": "e2", "execution_id": "run-1", "timestamp": "2025-02-16T10:58:45+00:00", "type": "task_started", "data": {}},
        {"id": "e1", "execution_id": "run-1", "timestamp": "2025-02-16T10:58:44.965Z", "type": "crew_kickoff_started", "data": {"x": 1}},
        {"id": "e2", "execution_id": "run-1", "timestamp": "2025-02-16T10:58:45", "type": "task_started", "data": {}},
        {"id": "e3", "execution_id": "run-1", "timestamp": "2025-02-16T10:58:46", "type": "llm_call_started", "data": {"model": "gpt-4"}}
    ]});
    let out = accepted(
        &app,
        "/amp/crews/events",
        &bearer("amp-inbound-token-1"),
        &batch,
    )
    .await;
    // The repeated e2 is received and counted as a duplicate, stored once.
    assert_eq!(batch_counts(&out), [4, 3, 1]);

    // Legacy webhooks carry no auth of their own: the URL token, in the query or the path.
    let task = json!({"description": "Research", "name": "research_task", "expected_output": "notes",
        "summary": "Research...", "agent": "Researcher", "output": "notes", "output_json": null,
        "kickoff_id": "run-1", "meta": {"ticket": "T-1"}});
    let step = json!({"prompt": "p", "thought": "t", "tool": "search", "tool_input": "q",
        "result": "r", "kickoff_id": "run-1", "meta": {"ticket": "T-1"}});
    let crew = json!({"kickoff_id": "run-1", "result": "done", "result_json": null,
        "token_usage": {"total_tokens": 10, "prompt_tokens": 6, "completion_tokens": 4}, "meta": {"ticket": "T-1"}});
    for (path, body) in [
        (format!("/amp/crews/task?token={token}"), &task),
        (format!("/amp/crews/step/{token}"), &step),
        (format!("/amp/crews/crew?token={token}"), &crew),
    ] {
        let response = post_amp(&app, &path, &[], body.to_string().as_bytes()).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    // A repeated legacy webhook is a duplicate.
    let again = post_amp(
        &app,
        &format!("/amp/crews/task?token={token}"),
        &[],
        task.to_string().as_bytes(),
    )
    .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");

    let events: Value = app.get_json(ADMIN_KEY, "/v1/executions/run-1/events").await;
    let items = events["items"].as_array().expect("items");
    let types: Vec<&str> = items
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "crew_kickoff_started",
            "task_started",
            "llm_call_started",
            "task.completed",
            "step.completed",
            "crew.completed"
        ]
    );
    assert_eq!(items[3]["payload"]["meta"]["ticket"], "T-1");
    assert_eq!(items[3]["source"], "amp:crews:url-token");
    let execution: Value = app.get_json(ADMIN_KEY, "/v1/executions/run-1").await;
    assert_eq!(execution["execution"]["status"], "completed");
}

async fn sources_are_kept_apart_and_streams_cannot_ask_for_review(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for (name, token) in [
        ("one", "amp-token-one-123456"),
        ("two", "amp-token-two-123456"),
    ] {
        create_source(
            &app,
            &json!({"name": name, "auth": "bearer", "token": token}),
        )
        .await;
    }
    let (one, two) = (
        bearer("amp-token-one-123456"),
        bearer("amp-token-two-123456"),
    );
    // A run hitlhook started through source "one".
    let now = Timestamp::now();
    app.store
        .save_amp_execution(&hitlhook_store::AmpExecution {
            kickoff_id: "run-one".into(),
            source: "one".into(),
            hooks: Default::default(),
            remote_status: Some("running".into()),
            remote_detail: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("run");
    let started = json!({"events": [{"id": "e-1", "execution_id": "run-one",
        "timestamp": "2026-01-01T00:00:00Z", "type": "crew_kickoff_started", "data": {}}]});
    accepted(&app, "/amp/one/events", &one, &started).await;

    // The same event id from another deployment is another event, and it does not end a run
    // started through "one" (it is recorded all the same).
    let failed = json!({"events": [{"id": "e-1", "execution_id": "run-one",
        "timestamp": "2026-01-01T00:00:01Z", "type": "crew_kickoff_failed", "data": {}}]});
    let batch = accepted(&app, "/amp/two/events", &two, &failed).await;
    assert_eq!(
        (batch["accepted"].as_u64(), batch["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let crew = json!({"kickoff_id": "run-one", "result": "done"});
    accepted(&app, "/amp/two/crew", &two, &crew).await;
    let execution: Value = app.get_json(ADMIN_KEY, "/v1/executions/run-one").await;
    assert_eq!(execution["execution"]["status"], "running", "{execution}");
    assert_eq!(
        app.trail("/v1/executions/run-one/events").await.len(),
        3,
        "all three are on the trail"
    );

    // A stream cannot ask for review (nor take a checkpoint id before AMP's real request).
    let before = app.snapshot().await;
    let squat = json!({"events": [{"id": "sq", "execution_id": "x", "type": "checkpoint.required",
        "checkpoint_id": "amp-flow-future", "checkpoint_name": "squat", "context": {}}]});
    let refused = post_amp(&app, "/amp/one/events", &one, squat.to_string().as_bytes()).await;
    let problem = assert_problem(refused, 422, "invalid_event").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("/amp/one/flow-hitl"),
        "{problem}"
    );
    assert_eq!(app.snapshot().await, before);

    // A redelivered batch is a replay as a whole; a repeat inside a batch is counted.
    let response = post_amp(
        &app,
        "/amp/one/events",
        &one,
        started.to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let twice = json!({"events": [
        {"id": "e-2", "execution_id": "run-one", "type": "task_started", "data": {}},
        {"id": "e-2", "execution_id": "run-one", "type": "task_started", "data": {}},
        {"id": "e-3", "execution_id": "run-one", "type": "task_completed", "data": {}}]});
    let response = post_amp(&app, "/amp/one/events", &one, twice.to_string().as_bytes()).await;
    assert!(response.headers().get("idempotent-replayed").is_none());
    let batch: Value = response.json().await.expect("json");
    assert_eq!(batch_counts(&batch), [3, 2, 1]);
}

async fn a_refused_signed_request_may_be_sent_again(db: TestDb) {
    let app = TestApp::spawn(db).await;
    create_source(
        &app,
        &json!({"name": "sig", "auth": "hmac", "signing_secret": HMAC_SECRET}),
    )
    .await;
    let now = Timestamp::now().unix_seconds();
    // A callback at a private address is refused at once (not dead-lettered after a decision).
    let private = new_request("req-p", "http://169.254.169.254/latest/meta-data");
    let refused = post_amp(
        &app,
        "/amp/sig/flow-hitl",
        &signed(&private, now, false),
        &private,
    )
    .await;
    let problem = assert_problem(refused, 422, "invalid_event").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("callback_url"),
        "{problem}"
    );

    let body = new_request("req-again", "https://api.crewai.com/cb?token=t");
    let headers = signed(&body, now, false);
    let mut wrong_type = headers.clone();
    wrong_type.push(("content-type", "text/plain".into()));
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in &wrong_type {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let refused = app
        .client
        .post(app.url("/amp/sig/flow-hitl"))
        .headers(map)
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_problem(refused, 415, "unsupported_media_type").await;
    // The same signed message, now sent right, is accepted once, then refused as a replay.
    let accepted = post_amp(&app, "/amp/sig/flow-hitl", &headers, &body).await;
    assert_eq!(accepted.status(), 200);
    let replay = post_amp(&app, "/amp/sig/flow-hitl", &headers, &body).await;
    assert_problem(replay, 401, "replayed_signature").await;
}
