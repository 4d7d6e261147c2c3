//! Real peers on loopback for the delivery tests: an HTTP receiver that records every request
//! and answers as a test scripts it (webhook subscribers, Slack's Web API, incoming webhooks and
//! `response_url`s), and Slack-style request signing for interaction requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Notify;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// An answer the receiver gives.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn json(body: &Value) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Responder = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

/// A real HTTP server on 127.0.0.1 that records requests.
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    arrived: Arc<Notify>,
    responder: Arc<Mutex<Responder>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering with `respond(request, index)`.
    pub async fn start(
        respond: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let responder: Arc<Mutex<Responder>> = Arc::new(Mutex::new(Arc::new(respond)));
        let (s, a, r) = (
            Arc::clone(&seen),
            Arc::clone(&arrived),
            Arc::clone(&responder),
        );
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                let (seen, arrived, responder) = (Arc::clone(&s), Arc::clone(&a), Arc::clone(&r));
                async move {
                    let recorded = Recorded {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        headers,
                        body,
                        at: Instant::now(),
                    };
                    let index = {
                        let mut list = seen.lock().expect("lock");
                        list.push(recorded.clone());
                        list.len() - 1
                    };
                    let respond = Arc::clone(&*responder.lock().expect("lock"));
                    let reply = respond(&recorded, index);
                    arrived.notify_waiters();
                    let mut response: Response = (
                        StatusCode::from_u16(reply.status).expect("status"),
                        reply.body,
                    )
                        .into_response();
                    for (k, v) in reply.headers {
                        response.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                            v.parse().expect("value"),
                        );
                    }
                    response
                }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            seen,
            arrived,
            responder,
            task,
        }
    }

    /// Always answers `status`.
    pub async fn answering(status: u16) -> Self {
        Self::start(move |_, _| Reply::status(status)).await
    }

    /// Changes how it answers from now on.
    pub fn respond_with(
        &self,
        respond: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
    ) {
        *self.responder.lock().expect("lock") = Arc::new(respond);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }

    /// Requests to `path`.
    pub fn to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `n` requests to `path` arrived (at most `secs`), and returns them.
    pub async fn wait_for(&self, path: &str, n: usize, secs: u64) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let notified = self.arrived.notified();
            let got = self.to(path);
            if got.len() >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} requests to {path}; got {}: {:?}",
                got.len(),
                got.iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect::<Vec<_>>()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Slack stand-in: the Web API (`/api/chat.postMessage`, `/api/chat.update`,
/// `/api/views.open`, answering like Slack and checking the bot token), an incoming webhook
/// (`/webhook`) and `response_url`s (`/response/...`).
pub async fn slack_stand_in(token: &'static str) -> Receiver {
    Receiver::start(move |r, i| {
        if r.path.starts_with("/api/") {
            if r.header("authorization") != format!("Bearer {token}") {
                return Reply::json(&serde_json::json!({"ok": false, "error": "invalid_auth"}));
            }
            let body = r.json();
            return match r.path.as_str() {
                "/api/chat.postMessage" => Reply::json(&serde_json::json!({
                    "ok": true, "channel": body["channel"], "ts": format!("1700000000.{i:06}"),
                    "message": {"text": body["text"]}})),
                "/api/chat.update" => Reply::json(
                    &serde_json::json!({"ok": true, "channel": body["channel"], "ts": body["ts"]}),
                ),
                "/api/views.open" => {
                    Reply::json(&serde_json::json!({"ok": true, "view": {"id": "V1"}}))
                }
                _ => Reply::json(&serde_json::json!({"ok": false, "error": "unknown_method"})),
            };
        }
        Reply {
            status: 200,
            headers: Vec::new(),
            body: "ok".into(),
        }
    })
    .await
}

/// A real SMTP server (Python's aiosmtpd, see `tests/smtp/server.py`) on 127.0.0.1. It parses
/// each message with Python's MIME parser and records it as JSON.
pub struct SmtpServer {
    pub port: u16,
    out: std::path::PathBuf,
    _child: tokio::process::Child,
}

impl SmtpServer {
    /// Starts the server, or returns `None` (loudly) when its virtualenv is missing; under
    /// `CI=true` a missing server is a failure. `scripts/test.sh` creates the virtualenv.
    pub async fn start() -> Option<Self> {
        use tokio::io::AsyncBufReadExt;
        let manifest = env!("CARGO_MANIFEST_DIR");
        let python = std::env::var("HITLHOOK_TEST_SMTP_PYTHON").ok().or_else(|| {
            let default = format!("{manifest}/../../target/smtp-venv/bin/python");
            std::path::Path::new(&default).exists().then_some(default)
        });
        let Some(python) = python else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "the SMTP test server is required under CI=true: run crates/hitlhook-server/tests/smtp/setup.sh"
            );
            eprintln!(
                "\n!!!! SKIPPING email tests: no SMTP test server. Run crates/hitlhook-server/tests/smtp/setup.sh (scripts/test.sh does).\n"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let out =
            std::env::temp_dir().join(format!("hitlhook-smtp-{}.jsonl", uuid::Uuid::new_v4()));
        let mut child = tokio::process::Command::new(&python)
            .arg(format!("{manifest}/tests/smtp/server.py"))
            .arg(&out)
            .arg(port.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP test server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts within 20 s")
            .expect("read")
            .expect("a READY line");
        assert!(ready.starts_with("READY"), "{ready}");
        Some(SmtpServer {
            port,
            out,
            _child: child,
        })
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// Waits for `n` messages (at most `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} emails; got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.out);
    }
}
