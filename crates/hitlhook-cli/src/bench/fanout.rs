//! Fan-out: N WebSocket subscribers on `/ws`, each waiting for its `ready` message; then one
//! signed event per round, timed from the moment its POST is sent to its arrival at every
//! subscriber. The server's memory is read from `/proc/<pid>/status` when its pid is given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use hitlhook_domain::Timestamp;
use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::sign_headers;
use hyper::Method;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::client::{Conn, parse_base};
use super::stats::Latency;

/// Longest wait for one subscriber's WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// Concurrent WebSocket subscribers.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Events sent, one at a time, each waited for at every subscriber.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// WebSocket handshakes in flight at once while subscribing.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// The server's process id, to report its memory (VmRSS, VmHWM).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds a round may take before the missing arrivals are counted as lost.
    #[arg(long, default_value_t = 30.0)]
    pub round_timeout: f64,
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Secret,
    /// A reviewer or admin API key (the live stream needs one).
    #[arg(long, env = "WEBHOOK_API_KEY", hide_env_values = true)]
    pub api_key: Secret,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
}

#[derive(Debug, Serialize)]
pub struct Round {
    /// From sending the POST to the last subscriber's arrival.
    pub to_all_ms: f64,
    /// From sending the POST to its response.
    pub post_ms: f64,
    pub arrived: usize,
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub subscribers: usize,
    /// Time to open every subscription and receive every `ready`.
    pub subscribe_seconds: f64,
    /// Per subscriber and round: from sending the POST to the event's arrival.
    pub arrival: Latency,
    /// Per round: from sending the POST to the last arrival.
    pub time_to_all: Latency,
    pub rounds: Vec<Round>,
    /// Arrivals that never came (within the round timeout) or subscribers that were dropped.
    pub lost: usize,
    pub server_memory_subscribed: Option<Memory>,
    pub server_memory_after: Option<Memory>,
}

/// Reads VmRSS and VmHWM (peak) of a process.
fn memory(pid: Option<u32>) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kb: field("VmRSS:")?,
        peak_rss_kb: field("VmHWM:")?,
    })
}

/// What a subscriber tells the bench.
enum Signal {
    Ready,
    Event(Instant),
    Gone(String),
}

/// One subscriber: handshake, wait for `ready`, then report every event's arrival time.
async fn subscribe(
    url: String,
    auth: HeaderValue,
    permits: Arc<Semaphore>,
    signals: mpsc::UnboundedSender<Signal>,
) {
    let gone = |why: String| {
        let _ = signals.send(Signal::Gone(why));
    };
    // Held until `ready`: bounds the handshakes (and the server's accept backlog) in flight.
    let mut permit = Some(permits.acquire_owned().await);
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return gone(e.to_string()),
    };
    request.headers_mut().insert("authorization", auth);
    // A server out of file descriptors leaves connections unaccepted: count them, do not hang.
    let handshake =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(request));
    let mut socket = match handshake.await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => return gone(format!("handshake: {e}")),
        Err(_) => return gone("handshake timed out".to_owned()),
    };
    let mut ready = false;
    while let Some(message) = socket.next().await {
        let arrived = Instant::now();
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => return gone(format!("closed: {frame:?}")),
            Ok(_) => continue,
            Err(e) => return gone(e.to_string()),
        };
        // Only the type matters here; a prefix test keeps the client's core free.
        if text.starts_with(r#"{"type":"event""#) {
            let _ = signals.send(Signal::Event(arrived));
        } else if !ready && text.starts_with(r#"{"type":"ready""#) {
            ready = true;
            drop(permit.take());
            let _ = signals.send(Signal::Ready);
        } else if text.starts_with(r#"{"type":"resync""#) {
            return gone(text.to_string());
        }
    }
    gone("stream ended".to_owned());
}

/// The soft and hard limits on open files of this process (Linux `/proc/self/limits`).
fn open_file_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    Some((values.next()?, values.next()?))
}

pub async fn run(args: &FanoutArgs) -> anyhow::Result<FanoutReport> {
    // Each subscriber is a socket: fail early and say how, rather than count EMFILEs as losses.
    // (Raising the limit needs a libc call this workspace keeps out; the shell does it.)
    if let Some((soft, hard)) = open_file_limits() {
        let needed = args.subscribers as u64 + 64;
        anyhow::ensure!(
            soft >= needed,
            "{} subscribers need about {needed} open files but the limit is {soft}: raise it \
             with `ulimit -n` (the hard limit is {hard}) or use fewer subscribers",
            args.subscribers
        );
    }
    let addr = parse_base(&args.url)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let kickoff = format!("fanout-{run_id}");
    let ws_url = format!("ws://{addr}/ws?kickoff_id={kickoff}");
    let auth = HeaderValue::from_str(&format!("Bearer {}", args.api_key.expose()))
        .context("the API key is not a valid header value")?;
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (signals, mut incoming) = mpsc::unbounded_channel();
    let started = Instant::now();
    for _ in 0..args.subscribers {
        tokio::spawn(subscribe(
            ws_url.clone(),
            auth.clone(),
            Arc::clone(&permits),
            signals.clone(),
        ));
    }
    drop(signals);
    let mut ready = 0;
    let mut lost = 0;
    while ready + lost < args.subscribers {
        match incoming.recv().await {
            Some(Signal::Ready) => ready += 1,
            Some(Signal::Gone(why)) => {
                lost += 1;
                if lost == 1 {
                    eprintln!("a subscriber failed: {why}");
                }
            }
            Some(Signal::Event(_)) => {}
            None => break,
        }
    }
    anyhow::ensure!(ready > 0, "no subscriber got ready");
    let subscribe_seconds = started.elapsed().as_secs_f64();
    let server_memory_subscribed = memory(args.server_pid);
    let mut conn = Conn::open(addr).await?;
    let mut arrivals = Vec::with_capacity(ready * args.rounds);
    let mut to_all = Vec::with_capacity(args.rounds);
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        // Let the previous round's writes settle: each round starts from a quiet server.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = format!(
            r#"{{"event_type":"task.started","kickoff_id":"{kickoff}","task":"fan-out","agent":"Bench","round":{round}}}"#
        );
        let mut headers = sign_headers(
            &args.secret,
            body.as_bytes(),
            &format!("msg_{run_id}_{round}"),
            Timestamp::now().unix_seconds(),
        );
        headers.push(("content-type".into(), "application/json".into()));
        let sent = Instant::now();
        let (status, answer) = conn
            .send(Method::POST, "/webhook/crewai", &headers, Bytes::from(body))
            .await?;
        let post_ms = sent.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            status.is_success(),
            "sending the event failed: {status} {answer:?}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.round_timeout);
        let mut arrived = 0;
        let mut last = sent;
        while arrived < ready {
            match tokio::time::timeout_at(deadline, incoming.recv()).await {
                Ok(Some(Signal::Event(at))) => {
                    arrived += 1;
                    last = last.max(at);
                    arrivals.push(at.saturating_duration_since(sent));
                }
                Ok(Some(Signal::Gone(_))) => {
                    ready -= 1;
                    lost += 1;
                }
                Ok(Some(Signal::Ready)) => ready += 1,
                Ok(None) | Err(_) => break,
            }
        }
        lost += ready - arrived;
        let elapsed = last.saturating_duration_since(sent);
        to_all.push(elapsed);
        rounds.push(Round {
            to_all_ms: (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            post_ms: (post_ms * 1000.0).round() / 1000.0,
            arrived,
        });
    }
    Ok(FanoutReport {
        scenario: "fanout",
        subscribers: args.subscribers,
        subscribe_seconds: (subscribe_seconds * 1000.0).round() / 1000.0,
        arrival: Latency::from_samples(&mut arrivals),
        time_to_all: Latency::from_samples(&mut to_all),
        rounds,
        lost,
        server_memory_subscribed,
        server_memory_after: memory(args.server_pid),
    })
}
