//! The test harness: `TestApp::spawn` runs the real server on port 0 against a fresh database,
//! with typed helpers to sign, send, decide and inspect the store.

use std::path::PathBuf;
use std::sync::Arc;

use hitlhook_domain::{DeliveryKind, Timestamp};
use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::sign_headers;
use hitlhook_server::{App, Config};
use hitlhook_store::testing::TestDb;
use hitlhook_store::{CheckpointQuery, DeliveryQuery, ExecutionQuery, Store};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-webhook-secret";
pub const OLD_SECRET: &str = "whsec_b2xkLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM=";
pub const ADMIN_KEY: &str = "test-admin-key";

/// Runs `case` on SQLite and, when reachable, on PostgreSQL: one test per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                super::$case(hitlhook_store::testing::TestDb::sqlite()).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = hitlhook_store::testing::TestDb::postgres().await {
                    super::$case(db).await;
                }
            }
        }
    )*};
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub db: TestDb,
    data_dir: PathBuf,
    /// Settings changes of this app, kept for `restart`.
    tweak: Arc<dyn Fn(&mut Config) + Send + Sync>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

fn config(db: &TestDb, data_dir: PathBuf) -> Config {
    let mut config = Config::for_data_dir(data_dir);
    config.database_url = Some(db.url.clone());
    config.webhook_secrets = vec![Secret(SECRET.into()), Secret(OLD_SECRET.into())];
    config.admin_api_key = Some(Secret(ADMIN_KEY.into()));
    config.max_body_bytes = 64 * 1024;
    config.sweep_interval_ms = 50;
    config
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> TestApp {
        Self::spawn_with(db, |_| {}).await
    }

    /// Spawns with changed settings (channels, schedules, allow-lists).
    pub async fn spawn_with(
        db: TestDb,
        tweak: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> TestApp {
        let data_dir = std::env::temp_dir().join(format!("hitlhook-app-{}", uuid::Uuid::new_v4()));
        Self::start(db, data_dir, None, Arc::new(tweak)).await
    }

    async fn start(
        db: TestDb,
        data_dir: PathBuf,
        bind: Option<String>,
        tweak: Arc<dyn Fn(&mut Config) + Send + Sync>,
    ) -> TestApp {
        hitlhook_server::delivery::http::install_crypto();
        let mut cfg = config(&db, data_dir.clone());
        tweak(&mut cfg);
        if let Some(bind) = bind {
            cfg.bind = bind;
        }
        let app = App::build(cfg).await.expect("app builds");
        let base = format!("http://{}", app.local_addr().expect("addr"));
        let store = app.store();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestApp {
            base,
            client: reqwest::Client::new(),
            store,
            db,
            data_dir,
            tweak,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and starts it again on the same database and port.
    pub async fn restart(mut self) -> TestApp {
        self.stop_server().await;
        let bind = self.base.trim_start_matches("http://").to_owned();
        let db = std::mem::replace(&mut self.db, TestDb::sqlite());
        let data_dir = self.data_dir.clone();
        Self::start(db, data_dir, Some(bind), Arc::clone(&self.tweak)).await
    }

    pub async fn stop_server(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Standard Webhooks + seed headers for `body`, signed now with `secret`.
    pub fn signed_headers(secret: &str, body: &[u8], webhook_id: &str, ts: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in sign_headers(&Secret(secret.into()), body, webhook_id, ts) {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(&value).expect("value"),
            );
        }
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers
    }

    /// Posts raw bytes to `/webhook/crewai` with the given headers.
    pub async fn post_event_raw(&self, headers: HeaderMap, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/webhook/crewai"))
            .headers(headers)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Sends a correctly signed event with a fresh webhook-id.
    pub async fn send_event(&self, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).expect("json");
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let headers = Self::signed_headers(SECRET, &bytes, &id, Timestamp::now().unix_seconds());
        self.post_event_raw(headers, bytes).await
    }

    pub async fn send_checkpoint(&self, id: &str, kickoff: &str) -> Value {
        let response = self.send_event(&checkpoint_body(id, kickoff)).await;
        assert_eq!(response.status(), 200, "checkpoint accepted");
        response.json().await.expect("json")
    }

    pub async fn decide(
        &self,
        key: &str,
        id: &str,
        action: &str,
        feedback: Option<&str>,
    ) -> reqwest::Response {
        let mut body = serde_json::json!({"checkpoint_id": id, "action": action});
        if let Some(f) = feedback {
            body["feedback"] = f.into();
        }
        self.client
            .post(self.url("/webhook/feedback"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// `GET path` with `key`, as JSON.
    pub async fn get_json(&self, key: &str, path: &str) -> Value {
        self.get(key, path).await.json().await.expect("json")
    }

    pub async fn checkpoint(&self, id: &str) -> Value {
        let response = self
            .get(ADMIN_KEY, &format!("/webhook/checkpoint/{id}"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// The event types of an audit trail page (`/v1/events?...` or an execution's events), in
    /// order.
    pub async fn trail(&self, path: &str) -> Vec<String> {
        let page = self.get_json(ADMIN_KEY, path).await;
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
            .collect()
    }

    /// Creates a key through the API and returns it.
    pub async fn create_key(&self, name: &str, scope: &str) -> String {
        let response = self
            .client
            .post(self.url("/v1/keys"))
            .bearer_auth(ADMIN_KEY)
            .json(&serde_json::json!({"name": name, "scope": scope}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        body["key"].as_str().expect("key").to_owned()
    }

    /// Everything observable in the store, to prove a refused request changed nothing.
    pub async fn snapshot(&self) -> String {
        let stats = self.store.stats().await.expect("stats");
        let checkpoints = self
            .store
            .list_checkpoints(&CheckpointQuery {
                limit: 1000,
                ..CheckpointQuery::default()
            })
            .await
            .expect("checkpoints");
        let executions = self
            .store
            .list_executions(&ExecutionQuery {
                limit: 1000,
                ..ExecutionQuery::default()
            })
            .await
            .expect("executions");
        let keys = self.store.list_api_keys().await.expect("keys");
        // Which deliveries exist, not how far along they are: the worker moves those meanwhile.
        // Slack's replies to a click (on its response_url, or the modal it opens) answer that
        // click; they change nothing.
        let deliveries: Vec<_> = self
            .store
            .list_deliveries(&DeliveryQuery {
                limit: 1000,
                ..DeliveryQuery::default()
            })
            .await
            .expect("deliveries")
            .items
            .into_iter()
            .filter(|d| {
                !matches!(
                    d.kind,
                    DeliveryKind::SlackRespond | DeliveryKind::SlackModal
                )
            })
            .map(|d| (d.id, d.kind, d.checkpoint_id, d.target, d.payload))
            .collect();
        let mut origins = Vec::new();
        for cp in &checkpoints.items {
            origins.push(self.store.get_amp_origin(&cp.id).await.expect("origin"));
        }
        let sources = self.store.list_amp_sources().await.expect("sources");
        let subscriptions = self
            .store
            .list_subscriptions()
            .await
            .expect("subscriptions");
        format!(
            "{stats:?}\n{:?}\n{:?}\n{keys:?}\n{deliveries:?}\n{origins:?}\n{sources:?}\n{subscriptions:?}",
            checkpoints.items, executions.items
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn checkpoint_body(id: &str, kickoff: &str) -> Value {
    serde_json::json!({
        "event_type": "checkpoint.required",
        "checkpoint_id": id,
        "checkpoint_name": "after_planning",
        "kickoff_id": kickoff,
        "context": {"plan": "1. research 2. write", "score": 0.93}
    })
}

/// Asserts a problem+json error with the given status and code; returns the body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// The deliveries of a checkpoint through the API, oldest first.
    pub async fn deliveries(&self, checkpoint_id: &str) -> Vec<Value> {
        let response = self
            .get(
                ADMIN_KEY,
                &format!("/v1/deliveries?checkpoint_id={checkpoint_id}&limit=500"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        let mut items = body["items"].as_array().cloned().unwrap_or_default();
        items.reverse();
        items
    }

    /// Waits until the checkpoint's delivery of `kind` reaches `state`; returns it.
    pub async fn delivery_in_state(&self, checkpoint_id: &str, kind: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let all = self.deliveries(checkpoint_id).await;
            if let Some(d) = all
                .iter()
                .find(|d| d["kind"] == kind && d["state"] == state)
            {
                return d.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {kind} delivery of {checkpoint_id} to be {state}; \
                 deliveries: {all:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A batch answer's `received`, `accepted` and `duplicates` counts.
pub fn batch_counts(answer: &Value) -> [u64; 3] {
    ["received", "accepted", "duplicates"].map(|k| answer[k].as_u64().unwrap_or(u64::MAX))
}
