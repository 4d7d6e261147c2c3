//! The `hitlhook` binary's delivery commands (`deliveries`, `subscriptions`, delivery settings in
//! `config`), run as a user would, on a real SQLite database.

use std::process::{Command, Output};
use std::time::Duration;

use hitlhook_domain::{DeliveryKind, DeliveryState, NewDelivery, Timestamp};
use hitlhook_store::AttemptOutcome;
use hitlhook_store::testing::TestDb;

fn hitlhook(db: &TestDb, args: &[&str]) -> Output {
    let data_dir = std::env::temp_dir().join(format!("hitlhook-cli-{}", uuid_like()));
    Command::new(env!("CARGO_BIN_EXE_hitlhook"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("HITLHOOK_DATA_DIR", &data_dir)
        .env_remove("HITLHOOK_OUTBOUND_ALLOW")
        .output()
        .expect("run hitlhook")
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn subscriptions_and_deliveries_from_the_command_line() {
    let db = TestDb::sqlite();
    let store = db.store().await;

    let added = hitlhook(
        &db,
        &[
            "subscriptions",
            "add",
            "--url",
            "https://hooks.example.com/hitl",
            "--events",
            "checkpoint.*,execution.updated",
        ],
    );
    let (stdout, stderr) = text(&added);
    assert!(added.status.success(), "{stderr}");
    let mut lines = stdout.lines();
    let id = lines.next().expect("id").to_owned();
    let secret = lines.next().expect("secret");
    assert!(
        id.starts_with("sub_") && secret.starts_with("whsec_"),
        "{stdout}"
    );
    let listed = text(&hitlhook(&db, &["subscriptions", "list"])).0;
    assert!(
        listed.contains(&id)
            && listed.contains("checkpoint.*,execution.updated")
            && !listed.contains(secret),
        "{listed}"
    );

    for (args, want) in [
        (
            vec!["subscriptions", "add", "--url", "http://10.0.0.7/hook"],
            "url: refused outbound address",
        ),
        (
            vec![
                "subscriptions",
                "add",
                "--url",
                "https://x.example.com/",
                "--events",
                "task.started",
            ],
            "event_types:",
        ),
        (
            vec![
                "subscriptions",
                "add",
                "--url",
                "https://x.example.com/",
                "--secret",
                "short",
            ],
            "secret:",
        ),
        (vec!["subscriptions", "remove", "sub_nope"], "no subscriber"),
        (vec!["deliveries", "retry", "nope"], "no delivery"),
        (
            vec!["deliveries", "list", "--state", "failed"],
            "--state must be",
        ),
    ] {
        let out = hitlhook(&db, &args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(text(&out).1.contains(want), "{args:?}: {}", text(&out).1);
    }
    assert_eq!(
        store.list_subscriptions().await.expect("list").len(),
        1,
        "refused adds wrote nothing"
    );

    // A dead letter, made the way the worker makes one.
    let note = NewDelivery {
        kind: DeliveryKind::Webhook,
        checkpoint_id: Some("cp-1".into()),
        kickoff_id: None,
        event_type: "checkpoint.created".into(),
        target: id.clone(),
        payload: "{}".into(),
        max_attempts: Some(1),
    };
    store
        .enqueue_deliveries(&[note], Timestamp::now())
        .await
        .expect("enqueue");
    let claimed = store
        .claim_deliveries(Timestamp::now(), Duration::from_secs(60), 1, "test")
        .await
        .expect("claim")
        .remove(0);
    let dead = AttemptOutcome::Failed {
        status: Some(500),
        error: "HTTP 500: boom".into(),
        next_at: None,
    };
    assert!(
        store
            .record_attempt(&claimed, dead, Timestamp::now())
            .await
            .expect("record")
    );

    let list = text(&hitlhook(&db, &["deliveries", "list", "--state", "dead"])).0;
    assert!(
        list.contains(&claimed.id) && list.contains("HTTP 500: boom") && list.contains("1/1"),
        "{list}"
    );
    let retried = hitlhook(&db, &["deliveries", "retry", &claimed.id]);
    assert!(retried.status.success(), "{}", text(&retried).1);
    let d = store
        .get_delivery(&claimed.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 0));
    let again = hitlhook(&db, &["deliveries", "retry", &claimed.id]);
    assert!(!again.status.success() && text(&again).1.contains("still pending"));

    let removed = hitlhook(&db, &["subscriptions", "remove", &id]);
    assert!(removed.status.success());
    assert!(store.list_subscriptions().await.expect("list").is_empty());
}

#[test]
fn config_shows_delivery_settings_with_secrets_redacted() {
    let db = TestDb::sqlite();
    let out = Command::new(env!("CARGO_BIN_EXE_hitlhook"))
        .arg("config")
        .env("DATABASE_URL", &db.url)
        .env(
            "HITLHOOK_DATA_DIR",
            std::env::temp_dir().join(format!("hitlhook-cli-{}", uuid_like())),
        )
        .env("SLACK_BOT_TOKEN", "xoxb-very-secret-token")
        .env("SLACK_CHANNEL", "C1")
        .env("SMTP_PASSWORD", "hunter2hunter2")
        .env("SMTP_USER", "mailer")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("HITLHOOK_DELIVERY_SCHEDULE=2s,10s,1m,5m,30m,2h,6h,12h,24h"),
        "{stdout}"
    );
    assert!(stdout.contains("HITLHOOK_DELIVERY_MAX_ATTEMPTS=10"));
    assert!(
        stdout.contains("SLACK_BOT_TOKEN=xoxb_…(22 chars)")
            || stdout.contains("SLACK_BOT_TOKEN=…(22 chars)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("xoxb-very-secret-token") && !stdout.contains("hunter2hunter2"),
        "{stdout}"
    );
}

#[tokio::test]
async fn amp_sources_from_the_command_line() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let added = hitlhook(
        &db,
        &[
            "amp",
            "sources",
            "add",
            "--name",
            "prod",
            "--auth",
            "basic",
            "--username",
            "amp",
            "--deployment-url",
            "https://crew.crewai.com",
            "--deployment-token",
            "dep-token-123",
            "--emit-continue",
            "publish",
        ],
    );
    let (stdout, stderr) = text(&added);
    assert!(added.status.success(), "{stderr}");
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password"))
        .map(str::trim)
        .expect("generated password shown");
    let url_token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("url_token"))
        .map(str::trim)
        .expect("url token shown");
    assert!(
        stdout.contains(&format!("/amp/prod/task?token={url_token}")),
        "{stdout}"
    );
    let stored = store
        .get_amp_source("prod")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.basic_username.as_deref(), Some("amp"));
    assert_ne!(
        stored.password_hash.as_deref(),
        Some(password),
        "only a hash is stored"
    );
    assert_eq!(stored.emit_map.on_continue.as_deref(), Some("publish"));

    let listed = text(&hitlhook(&db, &["amp", "sources", "list"])).0;
    assert!(
        listed.contains("prod") && listed.contains("https://crew.crewai.com"),
        "{listed}"
    );
    assert!(
        !listed.contains(password) && !listed.contains("dep-token-123"),
        "{listed}"
    );

    for (args, want) in [
        (
            vec![
                "amp", "sources", "add", "--name", "prod", "--auth", "bearer",
            ],
            "exists",
        ),
        (
            vec!["amp", "sources", "add", "--name", "x", "--auth", "oauth"],
            "auth:",
        ),
        (vec!["amp", "sources", "remove", "nope"], "no AMP source"),
    ] {
        let out = hitlhook(&db, &args);
        assert!(!out.status.success());
        assert!(text(&out).1.contains(want), "{args:?}: {}", text(&out).1);
    }
    assert!(
        hitlhook(&db, &["amp", "sources", "remove", "prod"])
            .status
            .success()
    );
    assert!(store.get_amp_source("prod").await.expect("read").is_none());
}

/// A minimal AMP deployment on loopback for the CLI: `/kickoff` and `/status/{id}`, bearer
/// token checked, requests recorded.
async fn amp_deployment() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Default::default();
    let record = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let record = std::sync::Arc::clone(&record);
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            record
                .lock()
                .expect("lock")
                .push((uri.path().to_owned(), auth.clone(), body));
            if auth != "Bearer dep-token-123" {
                return (
                    StatusCode::UNAUTHORIZED,
                    r#"{"error": "Unauthorized"}"#.to_owned(),
                );
            }
            if uri.path() == "/kickoff" {
                (StatusCode::OK, r#"{"kickoff_id": "kick-1"}"#.to_owned())
            } else {
                (
                    StatusCode::OK,
                    r#"{"status": "completed", "result": {"output": "done"}}"#.to_owned(),
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amp_kickoff_and_status_from_the_command_line() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let (deployment, seen) = amp_deployment().await;
    let run = |args: Vec<String>| {
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_hitlhook"))
                .args(&args)
                .env("DATABASE_URL", url)
                .env("HITLHOOK_OUTBOUND_ALLOW", "127.0.0.1")
                .env("WEBHOOK_BASE_URL", "https://hitl.example.com")
                .output()
                .expect("run hitlhook")
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let added = run(args(&[
        "amp",
        "sources",
        "add",
        "--name",
        "prod",
        "--auth",
        "bearer",
        "--deployment-url",
        &deployment,
        "--deployment-token",
        "dep-token-123",
    ]))
    .await
    .expect("join");
    assert!(added.status.success(), "{}", text(&added).1);
    let url_token = store
        .get_amp_source("prod")
        .await
        .expect("read")
        .expect("source")
        .url_token;

    let started = run(args(&[
        "amp",
        "kickoff",
        "--source",
        "prod",
        "--inputs",
        r#"{"topic": "AI"}"#,
    ]))
    .await
    .expect("join");
    assert!(started.status.success(), "{}", text(&started).1);
    assert_eq!(text(&started).0.trim(), "kick-1");
    let (path, auth, body) = seen.lock().expect("lock")[0].clone();
    assert_eq!(
        (path.as_str(), auth.as_str()),
        ("/kickoff", "Bearer dep-token-123")
    );
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["inputs"]["topic"], "AI");
    assert_eq!(
        body["crewWebhookUrl"],
        format!("https://hitl.example.com/amp/prod/crew/{url_token}")
    );
    assert_eq!(
        body["humanInputWebhook"]["authentication"]["token"],
        url_token.as_str()
    );

    let status = run(args(&["amp", "status", "kick-1"])).await.expect("join");
    assert!(status.status.success(), "{}", text(&status).1);
    assert!(text(&status).0.starts_with("completed"));
    let execution = store
        .get_execution("kick-1")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(execution.status.as_str(), "completed");

    let bad = run(args(&[
        "amp", "kickoff", "--source", "prod", "--inputs", "[1]",
    ]))
    .await
    .expect("join");
    assert!(!bad.status.success() && text(&bad).1.contains("--inputs must be a JSON object"));
    let unknown = run(args(&["amp", "status", "other-run"]))
        .await
        .expect("join");
    assert!(!unknown.status.success() && text(&unknown).1.contains("--source"));
}
