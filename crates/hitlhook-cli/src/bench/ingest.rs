//! The ingest scenario: closed-loop connections, each sending uniquely signed events as fast as
//! the server answers, for a fixed duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hitlhook_domain::Timestamp;
use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::sign_headers;
use hyper::Method;
use serde::Serialize;

use super::client::{Conn, parse_base};
use super::stats::Latency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventMix {
    /// Only `checkpoint.required` (each creates a checkpoint and updates an execution).
    Checkpoint,
    /// Only `task.started` / `task.completed`.
    Task,
    /// Half and half.
    Mixed,
}

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// The server, e.g. http://127.0.0.1:8001.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Measured seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// The webhook secret to sign with.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Secret,
    #[arg(long, value_enum, default_value = "checkpoint")]
    pub mix: EventMix,
    /// Executions the events are spread over.
    #[arg(long, default_value_t = 1000)]
    pub executions: u64,
}

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub scenario: &'static str,
    pub url: String,
    pub mix: EventMix,
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub throughput_per_sec: f64,
    pub latency: Latency,
}

fn event(mix: EventMix, n: u64, run: &str, executions: u64) -> String {
    let kickoff = format!("bench-{run}-{}", n % executions.max(1));
    let checkpoint = match mix {
        EventMix::Checkpoint => true,
        EventMix::Task => false,
        EventMix::Mixed => n.is_multiple_of(2),
    };
    if checkpoint {
        format!(
            r#"{{"event_type":"checkpoint.required","checkpoint_id":"{run}-{n}","checkpoint_name":"review_draft","kickoff_id":"{kickoff}","context":{{"draft":"Rivers carry sediment to the sea; deltas form where they slow.","score":0.87,"n":{n}}}}}"#
        )
    } else {
        let kind = if n % 4 < 2 {
            "task.started"
        } else {
            "task.completed"
        };
        format!(
            r#"{{"event_type":"{kind}","kickoff_id":"{kickoff}","task":"research","agent":"Researcher","n":{n}}}"#
        )
    }
}

pub async fn run(args: &IngestArgs) -> anyhow::Result<IngestReport> {
    let addr = parse_base(&args.url)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(args.warmup);
    let deadline = measure_from + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let counter = Arc::clone(&counter);
        let (secret, mix, run_id, executions) = (
            args.secret.clone(),
            args.mix,
            run_id.clone(),
            args.executions,
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut samples = Vec::with_capacity(16 * 1024);
            let mut errors = 0u64;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = event(mix, n, &run_id, executions);
                let mut headers = sign_headers(
                    &secret,
                    body.as_bytes(),
                    &format!("msg_{run_id}_{n}"),
                    Timestamp::now().unix_seconds(),
                );
                headers.push(("content-type".into(), "application/json".into()));
                let sent = Instant::now();
                let result = conn
                    .send(Method::POST, "/webhook/crewai", &headers, Bytes::from(body))
                    .await;
                let elapsed = sent.elapsed();
                let ok = matches!(&result, Ok((status, _)) if status.is_success());
                if sent >= measure_from {
                    if ok {
                        samples.push(elapsed);
                    } else {
                        errors += 1;
                    }
                }
                if result.is_err() {
                    conn = Conn::open(addr).await?;
                }
            }
            anyhow::Ok((samples, errors))
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await??;
        samples.extend(s);
        errors += e;
    }
    let requests = samples.len() as u64;
    Ok(IngestReport {
        scenario: "ingest",
        url: args.url.clone(),
        mix: args.mix,
        connections: args.connections,
        seconds: args.seconds,
        requests,
        errors,
        throughput_per_sec: (requests as f64 / args.seconds).round(),
        latency: Latency::from_samples(&mut samples),
    })
}
