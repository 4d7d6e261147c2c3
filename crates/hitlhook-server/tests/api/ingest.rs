//! Receiving events: every signature scheme, refusals, idempotent redelivery, execution state.

use hitlhook_domain::Timestamp;
use hitlhook_server::security::signature::hmac;
use hitlhook_store::testing::TestDb;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_accepted_scheme_stores_the_event,
    bad_signatures_are_refused_and_change_nothing,
    redelivery_gets_the_same_answer_and_changes_nothing,
    events_drive_the_execution_and_the_audit_trail,
    concurrent_events_are_all_committed_in_order,
    events_sharing_a_top_level_id_stay_separate_events,
);

/// A top-level `id` beside `event_type` is the crew's own data (here a task's id), not the
/// event's identity: both events are stored, neither is a "redelivery".
async fn events_sharing_a_top_level_id_stay_separate_events(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for kind in ["task.started", "task.completed"] {
        let body = json!({"event_type": kind, "kickoff_id": "k-1", "id": "research_task"});
        let response = app.send_event(&body).await;
        assert_eq!(response.status(), 200, "{kind}");
        assert!(
            response.headers().get("idempotent-replayed").is_none(),
            "{kind} is new"
        );
    }
    assert_eq!(
        app.trail("/v1/executions/k-1/events").await,
        ["task.started", "task.completed"]
    );
}

fn body_bytes(id: &str) -> Vec<u8> {
    serde_json::to_vec(&checkpoint_body(id, "k-1")).expect("json")
}

fn seed_headers(secret: &str, body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let sig = hex::encode(hmac(secret.as_bytes(), &[body]));
    h.insert(
        "x-crewai-signature",
        HeaderValue::from_str(&format!("sha256={sig}")).expect("hv"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

fn crewai_timestamped(secret: &str, body: &[u8], ts: i64) -> HeaderMap {
    let mut h = HeaderMap::new();
    let sig = hex::encode(hmac(
        secret.as_bytes(),
        &[ts.to_string().as_bytes(), b".", body],
    ));
    h.insert(
        "x-crewai-signature",
        HeaderValue::from_str(&format!("sha256={sig}")).expect("hv"),
    );
    h.insert(
        "x-crewai-timestamp",
        HeaderValue::from_str(&ts.to_string()).expect("hv"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

fn standard_only(secret: &str, body: &[u8], id: &str, ts: i64) -> HeaderMap {
    let mut h = TestApp::signed_headers(secret, body, id, ts);
    h.remove("x-crewai-signature");
    h
}

async fn every_accepted_scheme_stores_the_event(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let now = Timestamp::now().unix_seconds();
    let ingest_key = app.create_key("crew-runner", "ingest").await;
    type Sign = Box<dyn Fn(&[u8]) -> HeaderMap>;
    let cases: Vec<(&str, Sign)> = vec![
        (
            "seed X-CrewAI-Signature",
            Box::new(|b| seed_headers(SECRET, b)),
        ),
        (
            "CrewAI signature with timestamp",
            Box::new(move |b| crewai_timestamped(SECRET, b, now - 200)),
        ),
        (
            "Standard Webhooks",
            Box::new(move |b| standard_only(SECRET, b, "msg_std", now)),
        ),
        (
            "Standard Webhooks, rotated whsec secret",
            Box::new(move |b| standard_only(OLD_SECRET, b, "msg_old", now)),
        ),
        (
            "seed header, rotated secret",
            Box::new(|b| seed_headers(OLD_SECRET, b)),
        ),
        (
            "ingest API key",
            Box::new(move |_| {
                let mut h = HeaderMap::new();
                h.insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {ingest_key}")).expect("hv"),
                );
                h.insert("content-type", HeaderValue::from_static("application/json"));
                h
            }),
        ),
    ];
    for (i, (name, headers)) in cases.iter().enumerate() {
        let id = format!("cp-{i}");
        let body = body_bytes(&id);
        let response = app.post_event_raw(headers(&body), body).await;
        assert_eq!(response.status(), 200, "{name}");
        let receipt: Value = response.json().await.expect("json");
        assert_eq!(receipt["checkpoint_id"], id.as_str(), "{name}");
        assert_eq!(app.checkpoint(&id).await["status"], "pending", "{name}");
    }
}

async fn bad_signatures_are_refused_and_change_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.send_checkpoint("existing", "k-1").await;
    let before = app.snapshot().await;
    let now = Timestamp::now().unix_seconds();
    let body = body_bytes("cp-new");
    let tampered = body_bytes("cp-other");
    let several = {
        let mut h = standard_only(SECRET, &body, "msg_1", now);
        let good = h
            .get("webhook-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(&format!("v1,AAAA {good}")).expect("hv"),
        );
        h
    };
    let cases: Vec<(&str, HeaderMap, &[u8], u16, &str)> = vec![
        (
            "no signature",
            {
                let mut h = HeaderMap::new();
                h.insert("content-type", HeaderValue::from_static("application/json"));
                h
            },
            &body,
            401,
            "missing_signature",
        ),
        (
            "seed: tampered body",
            seed_headers(SECRET, &body),
            &tampered,
            401,
            "invalid_signature",
        ),
        (
            "seed: wrong secret",
            seed_headers("not-the-secret", &body),
            &body,
            401,
            "invalid_signature",
        ),
        (
            "seed: garbage",
            {
                let mut h = seed_headers(SECRET, &body);
                h.insert("x-crewai-signature", HeaderValue::from_static("sha256=xyz"));
                h
            },
            &body,
            401,
            "malformed_signature",
        ),
        (
            "crewai: stale",
            crewai_timestamped(SECRET, &body, now - 301),
            &body,
            401,
            "stale_timestamp",
        ),
        (
            "crewai: future",
            crewai_timestamped(SECRET, &body, now + 310),
            &body,
            401,
            "future_timestamp",
        ),
        (
            "standard: tampered",
            standard_only(SECRET, &body, "msg_1", now),
            &tampered,
            401,
            "invalid_signature",
        ),
        (
            "standard: wrong secret",
            standard_only(
                "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==",
                &body,
                "msg_1",
                now,
            ),
            &body,
            401,
            "invalid_signature",
        ),
        (
            "standard: stale",
            standard_only(SECRET, &body, "msg_1", now - 301),
            &body,
            401,
            "stale_timestamp",
        ),
        (
            "standard: future",
            standard_only(SECRET, &body, "msg_1", now + 310),
            &body,
            401,
            "future_timestamp",
        ),
        (
            "standard: no id",
            {
                let mut h = standard_only(SECRET, &body, "msg_1", now);
                h.remove("webhook-id");
                h
            },
            &body,
            401,
            "malformed_signature",
        ),
        (
            "bearer: unknown key",
            {
                let mut h = HeaderMap::new();
                h.insert("authorization", HeaderValue::from_static("Bearer hhk_nope"));
                h
            },
            &body,
            401,
            "invalid_api_key",
        ),
    ];
    for (name, headers, sent, status, code) in cases {
        let response = app.post_event_raw(headers, sent.to_vec()).await;
        let problem = assert_problem(response, status, code).await;
        assert!(
            !problem["detail"].as_str().unwrap_or("").contains(SECRET),
            "{name}: no secret in errors"
        );
        assert_eq!(app.snapshot().await, before, "{name}: store unchanged");
    }
    // Several signatures, one of them valid, pass.
    assert_eq!(
        app.post_event_raw(several, body.clone()).await.status(),
        200
    );
}

async fn redelivery_gets_the_same_answer_and_changes_nothing(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let now = Timestamp::now().unix_seconds();
    let body = body_bytes("cp-1");
    let first = app
        .post_event_raw(standard_only(SECRET, &body, "msg_same", now), body.clone())
        .await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let before = app.snapshot().await;
    // Same webhook-id, re-signed later: a redelivery.
    let again = app
        .post_event_raw(
            standard_only(SECRET, &body, "msg_same", now + 5),
            body.clone(),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    assert_eq!(app.snapshot().await, before);
    // Seed header only, no ids at all: the body hash is the identity.
    let task = serde_json::to_vec(&json!({"event_type": "task.started", "kickoff_id": "k-1"}))
        .expect("json");
    let a: Value = app
        .post_event_raw(seed_headers(SECRET, &task), task.clone())
        .await
        .json()
        .await
        .expect("json");
    let after_task = app.snapshot().await;
    let b = app
        .post_event_raw(seed_headers(SECRET, &task), task.clone())
        .await;
    assert_eq!(
        b.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(b.json::<Value>().await.expect("json"), a);
    assert_eq!(app.snapshot().await, after_task);
    // event_id in the body is the identity when there is no webhook-id.
    let with_id = |extra: &str| {
        serde_json::to_vec(&json!({"event_type": "step.started", "event_id": "ev-9", "kickoff_id": "k-1", "note": extra})).expect("json")
    };
    let x: Value = app
        .post_event_raw(seed_headers(SECRET, &with_id("a")), with_id("a"))
        .await
        .json()
        .await
        .expect("json");
    let y: Value = app
        .post_event_raw(seed_headers(SECRET, &with_id("b")), with_id("b"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(x, y);
}

async fn events_drive_the_execution_and_the_audit_trail(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for body in [
        json!({"event_type": "crew.started", "kickoff_id": "k-1"}),
        json!({"event_type": "task.started", "kickoff_id": "k-1", "task": "research"}),
        json!({"event_type": "llm_call_started", "kickoff_id": "k-1", "data": {"model": "gpt"}}),
        json!({"event_type": "task.completed", "kickoff_id": "k-1"}),
    ] {
        assert_eq!(app.send_event(&body).await.status(), 200);
    }
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/k-1").await;
    assert_eq!(status["execution"]["status"], "running");
    app.send_checkpoint("cp-1", "k-1").await;
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/k-1").await;
    assert_eq!(status["execution"]["status"], "waiting_for_human");
    assert_eq!(status["execution"]["events_total"], 5);
    assert_eq!(status["execution"]["tasks_completed"], 1);
    assert_eq!(status["checkpoints"][0]["checkpoint_id"], "cp-1");
    let types: Vec<&str> = status["recent_events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "crew.started",
            "task.started",
            "llm_call_started",
            "task.completed",
            "checkpoint.required"
        ]
    );
    assert_eq!(
        status["recent_events"][2]["payload"]["data"]["model"], "gpt",
        "payload kept verbatim"
    );
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-1", "continue", None)
            .await
            .status(),
        200
    );
    app.send_event(&json!({"event_type": "crew.completed", "kickoff_id": "k-1"}))
        .await;
    let trail: Value = app
        .get_json(ADMIN_KEY, "/v1/executions/k-1/events?limit=3")
        .await;
    assert_eq!(trail["items"].as_array().map(Vec::len), Some(3));
    let next = trail["next_cursor"].as_str().expect("cursor").to_owned();
    let rest: Value = app
        .get_json(
            ADMIN_KEY,
            &format!("/v1/executions/k-1/events?cursor={next}"),
        )
        .await;
    let rest_types: Vec<&str> = rest["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        rest_types,
        [
            "task.completed",
            "checkpoint.required",
            "checkpoint.decided",
            "crew.completed"
        ]
    );
    assert_eq!(rest["items"][2]["source"], "key:WEBHOOK_API_KEY");
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/k-1").await;
    assert_eq!(status["execution"]["status"], "completed");
    assert!(status["execution"]["finished_at"].is_string());
    assert_problem(
        app.get(ADMIN_KEY, "/webhook/status/nope").await,
        404,
        "not_found",
    )
    .await;
}

async fn concurrent_events_are_all_committed_in_order(db: TestDb) {
    let app = std::sync::Arc::new(TestApp::spawn(db).await);
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                let body = json!({"event_type": "task.completed", "kickoff_id": "k-load", "n": i});
                let response = app.send_event(&body).await;
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("json")["seq"]
                    .as_i64()
                    .expect("seq")
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for s in sends {
        seqs.push(s.await.expect("join"));
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 200, "every event got its own sequence number");
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/k-load").await;
    assert_eq!(status["execution"]["tasks_completed"], 200);
}

on_both_backends!(amp_event_stream_batches_are_stored_in_order_once);

/// CrewAI AMP streams `{"events": [...]}` batches: deduplicated by `id`, ordered by
/// `timestamp`, CrewAI's own type names kept and understood.
async fn amp_event_stream_batches_are_stored_in_order_once(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let key = app.create_key("amp", "ingest").await;
    let batch = json!({"events": [
        {"id": "e2", "execution_id": "amp-1", "timestamp": "2025-02-16T10:58:45.100+00:00", "type": "task_started", "data": {"task_name": "research"}},
        {"id": "e1", "execution_id": "amp-1", "timestamp": "2025-02-16T10:58:44.965Z", "type": "crew_kickoff_started", "data": {"crew_name": "writers"}},
        {"id": "e3", "execution_id": "amp-1", "timestamp": "2025-02-16T10:58:46", "type": "llm_call_started", "data": {"model": "gpt-4"}},
        {"id": "e2", "execution_id": "amp-1", "timestamp": "2025-02-16T10:58:45.100Z", "type": "task_started", "data": {}}
    ]});
    let send = || {
        app.client
            .post(app.url("/webhook/crewai"))
            .bearer_auth(&key)
            .json(&batch)
            .send()
    };
    let first: Value = send().await.expect("req").json().await.expect("json");
    // Four received; the repeated id is a duplicate, stored once.
    assert_eq!(batch_counts(&first), [4, 3, 1], "{first}");
    let types: Vec<&str> = first["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        ["crew_kickoff_started", "task_started", "llm_call_started"],
        "ordered by timestamp"
    );
    let before = app.snapshot().await;
    let again = send().await.expect("req");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(4))
    );
    assert_eq!(
        app.snapshot().await,
        before,
        "a redelivered batch changes nothing"
    );
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/amp-1").await;
    assert_eq!(status["execution"]["tasks_started"], 1);
    assert_eq!(
        status["recent_events"][2]["payload"]["data"]["model"],
        "gpt-4"
    );
    let done = json!({"events": [{"id": "e9", "execution_id": "amp-1", "timestamp": "2025-02-16T11:00:00Z", "type": "crew_kickoff_completed", "data": {}}]});
    app.client
        .post(app.url("/webhook/crewai"))
        .bearer_auth(&key)
        .json(&done)
        .send()
        .await
        .expect("req");
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/amp-1").await;
    assert_eq!(status["execution"]["status"], "completed");
    // A malformed event refuses the whole batch, naming it; nothing is stored.
    let before = app.snapshot().await;
    let bad = json!({"events": [{"id": "x1", "type": "task_started"}, {"id": "x2", "timestamp": "noon", "type": "t"}]});
    let response = app
        .client
        .post(app.url("/webhook/crewai"))
        .bearer_auth(&key)
        .json(&bad)
        .send()
        .await
        .expect("req");
    let problem = assert_problem(response, 422, "invalid_event").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("events[1].timestamp"),
        "{problem}"
    );
    assert_eq!(app.snapshot().await, before);
}
