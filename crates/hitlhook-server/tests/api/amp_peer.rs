//! A CrewAI AMP stand-in: a real HTTP server on 127.0.0.1 that answers the deployment API as
//! AMP documents it (`/kickoff`, `/status/{id}`, `/resume`, `/stop/{id}`, bearer token and JSON
//! content type checked) and flow HITL callbacks (`/callbacks/{request}?token=...`, single-use
//! tokens), records every request, and can be scripted to answer differently (401, 5xx, too
//! slow, ...). It keeps AMP's state too: only executions it started or asked about exist (else
//! 404), `/resume` needs one waiting for human input (else 400 "not in pending human input
//! state"), a used callback token answers 409 `already_responded`, a wrong one 401. Like AMP, it
//! sends the human-input webhook itself ([`AmpStandIn::ask_for_input`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::peers::Recorded;

pub const DEPLOYMENT_TOKEN: &str = "amp-deployment-token-123";

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer with this status and JSON body.
    Answer(u16, Value),
    /// Wait this long before answering as usual (to outlast the client's timeout).
    Slow(Duration),
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Recorded>>,
    /// Path prefix → answers to give, in order, before the documented default.
    script: Mutex<HashMap<String, VecDeque<Scripted>>>,
    /// What `/status/{id}` reports.
    status: Mutex<Value>,
    arrived: Notify,
    runs: Mutex<Runs>,
}

/// AMP's view of its runs and flow requests.
#[derive(Default)]
struct Runs {
    /// Known executions → the task waiting for human input, if one is.
    executions: HashMap<String, Option<String>>,
    stopped: HashSet<String>,
    /// Flow requests → their callback token and the feedback they were answered with.
    callbacks: HashMap<String, (String, Option<String>)>,
}

pub struct AmpStandIn {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl AmpStandIn {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            status: Mutex::new(json!({"status": "running", "current_task": "research_task",
                "progress": {"completed_tasks": 0, "total_tasks": 2}})),
            ..Shared::default()
        });
        let s = Arc::clone(&shared);
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                let shared = Arc::clone(&s);
                async move { answer(&shared, method, uri, headers, body).await }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AmpStandIn { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests whose path starts with `prefix` with `answers`, in order.
    pub fn script(&self, prefix: &str, answers: Vec<Scripted>) {
        self.shared
            .script
            .lock()
            .expect("lock")
            .entry(prefix.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Sends AMP's human-input webhook for `execution`'s `task` to `url` (with `auth` headers),
    /// as AMP does when a task with `human_input=True` finishes; the execution then waits.
    pub async fn ask_for_input(
        &self,
        url: &str,
        auth: &[(&str, String)],
        execution: &str,
        task: &str,
        output: &str,
    ) -> reqwest::Response {
        self.runs()
            .executions
            .insert(execution.to_owned(), Some(task.to_owned()));
        let body = json!({"execution_id": execution, "task_id": task, "output": output});
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "CrewAI-AMP/1.0");
        for (name, value) in auth {
            request = request.header(*name, value);
        }
        request
            .body(body.to_string())
            .send()
            .await
            .expect("human-input webhook")
    }

    /// Makes `execution` a run of this deployment (one started elsewhere, not through
    /// `/kickoff`).
    pub fn knows(&self, execution: &str) {
        self.runs()
            .executions
            .entry(execution.to_owned())
            .or_default();
    }

    /// A new flow HITL request's callback URL, with a fresh single-use token.
    pub fn callback_url(&self, request: &str) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.runs()
            .callbacks
            .insert(request.to_owned(), (token.clone(), None));
        self.url(&format!("/callbacks/{request}?token={token}"))
    }

    /// The feedback a flow request was answered with (accepted answers only).
    pub fn answer_of(&self, request: &str) -> Option<String> {
        self.runs()
            .callbacks
            .get(request)
            .and_then(|(_, a)| a.clone())
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.shared.runs.lock().expect("lock")
    }

    /// Sets what `GET /status/{id}` answers.
    pub fn set_status(&self, status: Value) {
        *self.shared.status.lock().expect("lock") = status;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.seen.lock().expect("lock").clone()
    }

    pub fn to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `n` requests to `path` arrived (at most `secs`).
    pub async fn wait_for(&self, path: &str, n: usize, secs: u64) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.to(path);
            if got.len() >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} requests to {path}; got {}",
                got.len()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }
}

impl Drop for AmpStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(
    shared: &Shared,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let recorded = Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    };
    shared.seen.lock().expect("lock").push(recorded);
    shared.arrived.notify_waiters();
    let scripted = {
        let mut script = shared.script.lock().expect("lock");
        script
            .iter_mut()
            .find(|(prefix, queue)| path.starts_with(prefix.as_str()) && !queue.is_empty())
            .and_then(|(_, queue)| queue.pop_front())
    };
    match scripted {
        Some(Scripted::Answer(status, body)) => return reply(status, &body),
        Some(Scripted::Slow(wait)) => tokio::time::sleep(wait).await,
        None => {}
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if method == axum::http::Method::POST && !body.is_empty() && !is_json {
        return reply(
            415,
            &json!({"error": "Unsupported Media Type", "message": "send application/json"}),
        );
    }
    // Flow callbacks carry their single-use token in the URL, as AMP's do.
    if let Some(request) = path.strip_prefix("/callbacks/") {
        let token = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .unwrap_or("");
        let feedback = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["feedback"].as_str().map(str::to_owned));
        let mut runs = shared.runs.lock().expect("lock");
        let Some((expected, answered)) = runs.callbacks.get_mut(request) else {
            return reply(
                404,
                &json!({"error": "not_found", "message": "No such feedback request"}),
            );
        };
        if token != expected.as_str() {
            return reply(
                401,
                &json!({"error": "unauthorized", "message": "Invalid response token"}),
            );
        }
        if answered.is_some() {
            return reply(
                409,
                &json!({"error": "already_responded", "message": "This request was already answered"}),
            );
        }
        let Some(f) = feedback else {
            return reply(
                422,
                &json!({"error": "invalid", "message": "feedback is required"}),
            );
        };
        *answered = Some(f.clone());
        return reply(
            200,
            &json!({"status": "accepted", "request": {"id": request, "status": "responded",
                "feedback": f, "outcome": f, "responded_via": "api"}}),
        );
    }
    let authorised = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {DEPLOYMENT_TOKEN}"));
    if !authorised {
        return reply(
            401,
            &json!({"error": "Unauthorized", "message": "Invalid or missing bearer token"}),
        );
    }
    let json_body = || serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    match (method.as_str(), path.as_str()) {
        ("POST", "/kickoff") => {
            if !json_body()["inputs"].is_object() {
                return reply(
                    422,
                    &json!({"error": "Validation Error", "message": "inputs is required",
                        "details": {"missing_inputs": ["topic"]}}),
                );
            }
            let id = uuid::Uuid::new_v4().to_string();
            shared
                .runs
                .lock()
                .expect("lock")
                .executions
                .insert(id.clone(), None);
            reply(200, &json!({"kickoff_id": id}))
        }
        ("POST", "/resume") => {
            let b = json_body();
            let valid = b["execution_id"].is_string()
                && b["task_id"].is_string()
                && b["human_feedback"].is_string()
                && b["is_approve"].is_boolean();
            if !valid {
                return reply(
                    400,
                    &json!({"error": "Invalid Request", "message": "execution_id, task_id, human_feedback and is_approve are required"}),
                );
            }
            let mut runs = shared.runs.lock().expect("lock");
            let execution = b["execution_id"].as_str().unwrap_or_default();
            let Some(waiting) = runs.executions.get_mut(execution) else {
                return reply(
                    404,
                    &json!({"error": "Not Found", "message": "Execution ID not found"}),
                );
            };
            if waiting.as_deref() != b["task_id"].as_str() {
                return reply(
                    400,
                    &json!({"error": "Invalid Request", "message": "Execution is not in pending human input state"}),
                );
            }
            // A revision re-runs the task, which asks again with a new webhook.
            *waiting = None;
            {
                let status = if b["is_approve"] == true {
                    "resumed"
                } else {
                    "retrying"
                };
                reply(
                    200,
                    &json!({"status": status, "message": "Execution resumed"}),
                )
            }
        }
        ("POST", p) if p.starts_with("/stop/") => {
            let id = p.trim_start_matches("/stop/");
            let mut runs = shared.runs.lock().expect("lock");
            let Some(waiting) = runs.executions.get_mut(id) else {
                return reply(
                    404,
                    &json!({"error": "Not Found", "message": "Execution ID not found"}),
                );
            };
            *waiting = None;
            if !runs.stopped.insert(id.to_owned()) {
                return reply(
                    400,
                    &json!({"detail": "Cannot stop execution. Current state: REVOKED"}),
                );
            }
            reply(200, &json!({"status": "stopped", "kickoffId": id}))
        }
        ("GET", p) if p.starts_with("/status/") => {
            let id = p.trim_start_matches("/status/");
            if !shared
                .runs
                .lock()
                .expect("lock")
                .executions
                .contains_key(id)
            {
                return reply(
                    404,
                    &json!({"error": "Not Found", "message": "Execution ID not found"}),
                );
            }
            let status = shared.status.lock().expect("lock").clone();
            reply(200, &status)
        }
        _ => reply(
            404,
            &json!({"error": "Not Found", "message": "no such endpoint"}),
        ),
    }
}
