//! The real `hitlhook` binary, as an operator uses it: first run, restart, keys, sign, config.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hitlhook_store::testing::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_hitlhook");

struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("hitlhook-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command with a clean environment (no WEBHOOK_* from the caller, no .env) in `dir`.
fn hitlhook(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir);
    cmd
}

struct Server {
    child: Child,
    base: String,
    stdout: Vec<String>,
}

impl Server {
    fn start(dir: &Path, envs: &[(&str, &str)]) -> Server {
        let mut cmd = hitlhook(dir);
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hitlhook serve");
        let reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut stdout = Vec::new();
        for line in reader.lines() {
            let line = line.expect("line");
            let done = line.starts_with("listening on ");
            stdout.push(line);
            if done {
                break;
            }
        }
        let base = stdout
            .last()
            .and_then(|l| l.strip_prefix("listening on "))
            .expect("listening line")
            .to_owned();
        Server {
            child,
            base,
            stdout,
        }
    }

    fn banner_value(&self, after: &str) -> Option<String> {
        let i = self.stdout.iter().position(|l| l.contains(after))?;
        self.stdout
            .get(i + 1)
            .map(|l| l.trim().trim_start_matches("WEBHOOK_SECRET=").to_owned())
    }

    /// SIGTERM, then the exit status must be success (graceful shutdown).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own: the server installs ring (as sqlx).
    hitlhook_server::delivery::http::install_crypto();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run hitlhook");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn first_run_generates_credentials_once_and_they_survive_restarts() {
    let dir = Dir::new();
    let server = Server::start(&dir.0, &[]);
    let secret = server
        .banner_value("Webhook signing secret")
        .expect("secret shown");
    let key = server.banner_value("Admin API key").expect("key shown");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(key.starts_with("hhk_"), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join("hitlhook-data/webhook-secret"))
            .expect("secret file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret file is private");
        let dir_mode = std::fs::metadata(dir.0.join("hitlhook-data"))
            .expect("data dir")
            .permissions()
            .mode();
        assert_eq!(
            dir_mode & 0o777,
            0o700,
            "the data directory (database, secrets) is private"
        );
    }
    let http = client();
    let unauthenticated = http
        .get(format!("{}/v1/checkpoints", server.base))
        .send()
        .await
        .expect("req");
    assert_eq!(unauthenticated.status(), 401, "never runs unauthenticated");
    let ok = http
        .get(format!("{}/v1/checkpoints", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("req");
    assert_eq!(ok.status(), 200);

    // An event signed by `hitlhook sign` with the generated secret is accepted.
    let body = r#"{"event_type":"checkpoint.required","checkpoint_id":"cli-1","checkpoint_name":"review","context":{}}"#;
    std::fs::write(dir.0.join("body.json"), body).expect("write body");
    let (ok_sign, headers, _) = run(hitlhook(&dir.0).args(["sign", "body.json"]));
    assert!(ok_sign);
    let mut request = http
        .post(format!("{}/webhook/crewai", server.base))
        .header("content-type", "application/json")
        .body(body);
    for line in headers.lines() {
        let (name, value) = line.split_once(": ").expect("header line");
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.expect("req").status(), 200);
    server.stop();

    let again = Server::start(&dir.0, &[]);
    assert!(
        again.banner_value("Webhook signing secret").is_none(),
        "credentials are shown only once"
    );
    assert!(again.banner_value("Admin API key").is_none());
    let cp = http
        .get(format!("{}/webhook/checkpoint/cli-1", again.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("req");
    assert_eq!(cp.status(), 200, "key and checkpoint survived the restart");
    again.stop();
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_from_the_cli() {
    let dir = Dir::new();
    let (ok, key, _) =
        run(hitlhook(&dir.0).args(["keys", "create", "--name", "alice", "--scope", "reviewer"]));
    assert!(ok);
    let key = key.trim().to_owned();
    assert!(
        key.starts_with("hhk_") && !key.contains('\n'),
        "stdout is only the key: {key:?}"
    );
    let (ok, list, _) = run(hitlhook(&dir.0).args(["keys", "list"]));
    assert!(ok && list.contains("alice") && list.contains("reviewer"));
    assert!(!list.contains(&key), "listings never show the key");
    let (dup_ok, _, dup_err) = run(hitlhook(&dir.0).args(["keys", "create", "--name", "alice"]));
    assert!(!dup_ok && dup_err.contains("revoke it first"), "{dup_err}");
    let (bad_ok, _, bad_err) =
        run(hitlhook(&dir.0).args(["keys", "create", "--name", "bob", "--scope", "root"]));
    assert!(
        !bad_ok && bad_err.contains("ingest, reviewer or admin"),
        "{bad_err}"
    );

    let server = Server::start(&dir.0, &[("WEBHOOK_SECRET", "s3cret")]);
    let http = client();
    let url = format!("{}/v1/checkpoints", server.base);
    assert_eq!(
        http.get(&url)
            .bearer_auth(&key)
            .send()
            .await
            .expect("req")
            .status(),
        200
    );
    let (ok, _, _) = run(hitlhook(&dir.0).args(["keys", "revoke", "alice"]));
    assert!(ok);
    assert_eq!(
        http.get(&url)
            .bearer_auth(&key)
            .send()
            .await
            .expect("req")
            .status(),
        401,
        "revoked at once"
    );
    let (missing_ok, _, missing_err) = run(hitlhook(&dir.0).args(["keys", "revoke", "alice"]));
    assert!(
        !missing_ok && missing_err.contains("no active key"),
        "{missing_err}"
    );
    server.stop();
}

/// Credentials for a server started by a test.
const SERVER_ENVS: [(&str, &str); 2] = [
    ("WEBHOOK_SECRET", "a-webhook-secret-for-tests"),
    ("WEBHOOK_API_KEY", "an-admin-key-for-tests"),
];

#[test]
fn one_server_per_sqlite_database_and_the_cli_beside_it() {
    let dir = Dir::new();
    let first = Server::start(&dir.0, &SERVER_ENVS);
    // A second server on the same data directory would not wake the first one's waiters.
    let mut second = hitlhook(&dir.0);
    second.args(["serve", "--bind", "127.0.0.1:0"]);
    second.envs(SERVER_ENVS);
    let (ok, _, err) = run(&mut second);
    assert!(
        !ok && err.contains("another hitlhook server") && err.contains("PostgreSQL"),
        "{err}"
    );
    // The CLI is not a server: it works beside one.
    let (ok, _, err) = run(hitlhook(&dir.0).args(["keys", "list"]));
    assert!(ok, "{err}");
    first.stop();
    Server::start(&dir.0, &SERVER_ENVS).stop();
}

#[test]
fn sigterm_right_after_listening_is_a_graceful_stop() {
    // The signal handlers are installed before "listening on" is printed; they used to be
    // installed at the shutdown future's first poll, and a SIGTERM in between killed the
    // server by the default action (seen as a flaky non-zero exit).
    let dir = Dir::new();
    for _ in 0..5 {
        Server::start(&dir.0, &SERVER_ENVS).stop();
    }
}

#[test]
fn config_redacts_secrets() {
    let dir = Dir::new();
    let (ok, out, err) = run(hitlhook(&dir.0).arg("config").envs([
        (
            "WEBHOOK_SECRET",
            "topsecretvalue,whsec_b2xkLXNlY3JldC1mb3Itcm90YXRpb24=",
        ),
        ("WEBHOOK_API_KEY", "adminkeyvalue"),
        ("DATABASE_URL", "postgres://app:dbpassword@db.internal/hitl"),
    ]));
    assert!(ok);
    // Short credentials are warned about, without showing them.
    assert!(
        err.contains("WEBHOOK_SECRET entry #1 has only 14 characters")
            && err.contains("WEBHOOK_API_KEY has only 13 characters"),
        "{err}"
    );
    assert!(
        !err.contains("topsecretvalue") && !err.contains("adminkeyvalue"),
        "{err}"
    );
    for secret in [
        "topsecretvalue",
        "b2xkLXNlY3JldC1mb3Itcm90YXRpb24",
        "adminkeyvalue",
        "dbpassword",
    ] {
        assert!(!out.contains(secret), "{secret} leaked in:\n{out}");
    }
    assert!(
        out.contains("DATABASE_URL=postgres://app:***@db.internal/hitl"),
        "{out}"
    );
    assert!(out.contains("whsec_…"), "{out}");
}

#[test]
fn errors_say_how_to_fix_them() {
    let dir = Dir::new();
    let (ok, _, err) = run(hitlhook(&dir.0)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", "mysql://x"));
    assert!(
        !ok && err.contains("sqlite://PATH") && err.contains("postgres://"),
        "{err}"
    );
    let (ok, _, err) = run(hitlhook(&dir.0).args(["sign", "missing.json"]));
    assert!(!ok && err.contains("missing.json"), "{err}");
    let (ok, _, err) = run(hitlhook(&dir.0).arg("sign").arg("-").stdin(Stdio::null()));
    assert!(!ok && err.contains("WEBHOOK_SECRET"), "{err}");
    // Credentials set but empty (a deployment template's unset variable) refuse to start:
    // they would accept signatures made with an empty key, or an empty X-API-Key as admin.
    for (name, value, says) in [
        ("WEBHOOK_SECRET", "", "WEBHOOK_SECRET entry #1 is empty"),
        ("WEBHOOK_SECRET", ",,", "WEBHOOK_SECRET entry #1 is empty"),
        ("WEBHOOK_API_KEY", "", "WEBHOOK_API_KEY is set but empty"),
    ] {
        let (ok, _, err) = run(hitlhook(&dir.0)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env(name, value));
        assert!(!ok && err.contains(says), "{name}={value:?}: {err}");
    }
    let (ok, help, _) = run(hitlhook(&dir.0).arg("--help"));
    assert!(
        ok && help.contains("Quick start") && help.contains("keys"),
        "{help}"
    );
}

/// A quick run of every benchmark scenario, so the benchmark program cannot rot.
#[tokio::test]
async fn benchmark_program_smoke_run() {
    let dir = Dir::new();
    let envs = [
        ("WEBHOOK_SECRET", "bench-secret"),
        ("WEBHOOK_API_KEY", "bench-key"),
    ];
    let server = Server::start(&dir.0, &envs);
    let bench = |args: &[&str]| {
        let (ok, out, err) = run(hitlhook(&dir.0).arg("bench").args(args).envs(envs));
        assert!(ok, "bench {args:?} failed: {err}");
        serde_json::from_str::<serde_json::Value>(&out).expect("bench prints JSON")
    };
    let ingest = bench(&[
        "ingest",
        "--url",
        &server.base,
        "--connections",
        "4",
        "--seconds",
        "0.5",
        "--warmup",
        "0",
        "--mix",
        "mixed",
    ]);
    assert!(ingest["requests"].as_u64().unwrap_or(0) > 10, "{ingest}");
    assert_eq!(ingest["errors"], 0, "{ingest}");
    assert!(ingest["latency"]["p99_ms"].as_f64().unwrap_or(0.0) > 0.0);
    let wake = bench(&["wake", "--url", &server.base, "--waiters", "5"]);
    assert_eq!(wake["wake_after_decision"]["samples"], 5, "{wake}");
    let pid = server.child.id().to_string();
    let fanout = bench(&[
        "fanout",
        "--url",
        &server.base,
        "--subscribers",
        "20",
        "--rounds",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(fanout["arrival"]["samples"], 40, "{fanout}");
    assert_eq!(fanout["lost"], 0, "{fanout}");
    assert!(
        fanout["server_memory_after"]["rss_kb"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    server.stop();

    let seeded = Dir::new();
    let (ok, out, err) = run(hitlhook(&seeded.0).envs(envs).args([
        "bench",
        "seed",
        "--checkpoints",
        "2000",
        "--pending",
        "200",
        "--executions",
        "200",
    ]));
    assert!(ok, "seed failed: {err}");
    let seed: serde_json::Value = serde_json::from_str(&out).expect("seed prints JSON");
    assert_eq!(seed["events"], 3800, "{seed}");
    assert!(seed["bytes_per_checkpoint"].as_f64().unwrap_or(0.0) > 0.0);
    let server = Server::start(&seeded.0, &envs);
    let scale = bench(&[
        "scale",
        "--url",
        &server.base,
        "--checkpoints",
        "2000",
        "--executions",
        "200",
        "--requests",
        "20",
    ]);
    assert_eq!(scale["walk"]["pending_listed"], 200, "{scale}");
    for query in ["first_page", "deep_page", "get_by_id", "execution_status"] {
        assert_eq!(scale[query]["server"]["samples"], 20, "{scale}");
        assert!(scale[query]["server"]["p50_ms"].as_f64().unwrap_or(0.0) > 0.0);
    }
    server.stop();

    let mut ceiling = hitlhook(&dir.0);
    ceiling
        .args(["bench", "ceiling", "--bind", "127.0.0.1:0"])
        .envs(envs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = ceiling.spawn().expect("ceiling");
    let line = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening on "))
        .expect("listening");
    let url = line.trim_start_matches("listening on ").to_owned();
    let report = bench(&[
        "ingest",
        "--url",
        &url,
        "--connections",
        "2",
        "--seconds",
        "0.3",
        "--warmup",
        "0",
    ]);
    assert!(
        report["requests"].as_u64().unwrap_or(0) > 10 && report["errors"] == 0,
        "{report}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Replaces every non-null `*_at` value (times differ between two runs) so two answers compare.
fn without_times(mut value: serde_json::Value) -> serde_json::Value {
    match &mut value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                *v = if key.ends_with("_at") && !v.is_null() {
                    serde_json::Value::String("<time>".into())
                } else {
                    without_times(v.take())
                };
            }
        }
        serde_json::Value::Array(items) => {
            for v in items.iter_mut() {
                *v = without_times(v.take());
            }
        }
        _ => {}
    }
    value
}

/// `bench seed` writes what the server itself would: the same history sent through the API
/// (signed events, then decisions) reads back identically, apart from the times.
#[tokio::test]
async fn seeded_rows_read_back_like_rows_the_server_wrote() {
    seeded_rows_match_rows_written_through_the_api(TestDb::sqlite(), TestDb::sqlite()).await;
    if let (Some(seeded), Some(api)) = (TestDb::postgres().await, TestDb::postgres().await) {
        seeded_rows_match_rows_written_through_the_api(seeded, api).await;
    }
}

async fn seeded_rows_match_rows_written_through_the_api(seeded_db: TestDb, api_db: TestDb) {
    use hitlhook_store::seed::{checkpoint_id, kickoff_id, required_payload, webhook_id};
    let envs = |db: &TestDb| {
        [
            ("WEBHOOK_SECRET", "bench-secret".to_owned()),
            ("WEBHOOK_API_KEY", "bench-key".to_owned()),
            ("DATABASE_URL", db.url.clone()),
        ]
    };
    let (seeded_envs, api_envs) = (envs(&seeded_db), envs(&api_db));
    let (checkpoints, pending, executions) = (6u64, 2u64, 2u64);
    let seeded_dir = Dir::new();
    let (ok, _, err) = run(hitlhook(&seeded_dir.0).envs(seeded_envs.clone()).args([
        "bench",
        "seed",
        "--checkpoints",
        &checkpoints.to_string(),
        "--pending",
        &pending.to_string(),
        "--executions",
        &executions.to_string(),
    ]));
    assert!(ok, "seed failed ({}): {err}", seeded_db.name);
    fn borrowed<'a>(e: &'a [(&'static str, String); 3]) -> [(&'static str, &'a str); 3] {
        e.each_ref().map(|(k, v)| (*k, v.as_str()))
    }
    let seeded = Server::start(&seeded_dir.0, &borrowed(&seeded_envs));

    let api_dir = Dir::new();
    let live = Server::start(&api_dir.0, &borrowed(&api_envs));
    let http = client();
    let secret: hitlhook_server::config::Secret = "bench-secret".parse().expect("secret");
    let plan = hitlhook_store::seed::SeedPlan {
        checkpoints,
        pending,
        executions,
        event_source: String::new(),
        decided_by: String::new(),
    };
    for n in 0..checkpoints {
        let body = required_payload(n, &kickoff_id(plan.execution_of(n)));
        let now = hitlhook_domain::Timestamp::now().unix_seconds();
        let mut request = http
            .post(format!("{}/webhook/crewai", live.base))
            .header("content-type", "application/json");
        for (k, v) in hitlhook_server::security::signature::sign_headers(
            &secret,
            body.as_bytes(),
            &webhook_id(n),
            now,
        ) {
            request = request.header(k, v);
        }
        let answer = request.body(body).send().await.expect("send");
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
        if !plan.is_pending(n) {
            let answer = http
                .post(format!(
                    "{}/v1/checkpoints/{}/decision",
                    live.base,
                    checkpoint_id(n)
                ))
                .bearer_auth("bench-key")
                .json(&serde_json::json!({"action": "continue"}))
                .send()
                .await
                .expect("decide");
            assert!(answer.status().is_success(), "{:?}", answer.text().await);
        }
    }

    let read = |base: String, path: String| {
        let http = http.clone();
        async move {
            let answer = http
                .get(format!("{base}{path}"))
                .bearer_auth("bench-key")
                .send()
                .await
                .expect("get");
            assert!(answer.status().is_success(), "{path}: {}", answer.status());
            without_times(answer.json().await.expect("json"))
        }
    };
    let mut paths = vec![
        "/v1/checkpoints?status=pending".to_owned(),
        "/v1/checkpoints?status=all&order=oldest".to_owned(),
        "/v1/events?limit=100".to_owned(),
        "/v1/executions".to_owned(),
    ];
    paths.extend((0..checkpoints).map(|n| format!("/v1/checkpoints/{}", checkpoint_id(n))));
    paths.extend((0..executions).map(|k| format!("/webhook/status/{}", kickoff_id(k))));
    for path in paths {
        let want = read(live.base.clone(), path.clone()).await;
        let got = read(seeded.base.clone(), path.clone()).await;
        assert_eq!(
            got, want,
            "{path} differs between seeded and API-written rows"
        );
    }
    seeded.stop();
    live.stop();
}
