//! Decision → wake: how long after a decision's response a long-polling client has its answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hitlhook_domain::Timestamp;
use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::sign_headers;
use hyper::Method;
use serde::Serialize;

use super::client::{Conn, parse_base};
use super::stats::Latency;

#[derive(Debug, Clone, clap::Args)]
pub struct WakeArgs {
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// Parked long-poll waiters, each on its own connection and checkpoint.
    #[arg(long, default_value_t = 200)]
    pub waiters: usize,
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Secret,
    /// A reviewer or admin API key.
    #[arg(long, env = "WEBHOOK_API_KEY", hide_env_values = true)]
    pub api_key: Secret,
}

#[derive(Debug, Serialize)]
pub struct WakeReport {
    pub scenario: &'static str,
    pub waiters: usize,
    pub decision_latency: Latency,
    /// From the decision's response arriving to the waiter's response arriving.
    pub wake_after_decision: Latency,
}

pub async fn run(args: &WakeArgs) -> anyhow::Result<WakeReport> {
    let addr = parse_base(&args.url)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let auth = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", args.api_key.expose()),
    )];
    let mut setup = Conn::open(addr).await?;
    for i in 0..args.waiters {
        let body = format!(
            r#"{{"event_type":"checkpoint.required","checkpoint_id":"wake-{run_id}-{i}","checkpoint_name":"approve","kickoff_id":"wake-{run_id}","context":{{}}}}"#
        );
        let mut headers = sign_headers(
            &args.secret,
            body.as_bytes(),
            &format!("msg_{run_id}_{i}"),
            Timestamp::now().unix_seconds(),
        );
        headers.push(("content-type".into(), "application/json".into()));
        let (status, answer) = setup
            .send(Method::POST, "/webhook/crewai", &headers, Bytes::from(body))
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "creating a checkpoint failed: {status} {answer:?}"
        );
    }
    let mut waiters = Vec::with_capacity(args.waiters);
    for i in 0..args.waiters {
        let mut conn = Conn::open(addr).await?;
        let auth = auth.clone();
        let path = format!("/webhook/checkpoint/wake-{run_id}-{i}?wait=120");
        waiters.push(tokio::spawn(async move {
            let (status, _) = conn.send(Method::GET, &path, &auth, Bytes::new()).await?;
            anyhow::ensure!(status.is_success(), "waiter got {status}");
            anyhow::Ok(Instant::now())
        }));
    }
    // Let every waiter park before the first decision.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut decide = Conn::open(addr).await?;
    let mut decision_samples = Vec::with_capacity(args.waiters);
    let mut wake_samples = Vec::with_capacity(args.waiters);
    let mut headers = auth.clone();
    headers.push(("content-type".into(), "application/json".into()));
    for (i, waiter) in waiters.into_iter().enumerate() {
        let body = format!(r#"{{"checkpoint_id":"wake-{run_id}-{i}","action":"continue"}}"#);
        let sent = Instant::now();
        let (status, answer) = decide
            .send(
                Method::POST,
                "/webhook/feedback",
                &headers,
                Bytes::from(body),
            )
            .await?;
        let answered = Instant::now();
        anyhow::ensure!(status.is_success(), "decision failed: {status} {answer:?}");
        decision_samples.push(answered - sent);
        let woke = waiter.await??;
        wake_samples.push(woke.saturating_duration_since(answered));
    }
    Ok(WakeReport {
        scenario: "decision_to_wake",
        waiters: args.waiters,
        decision_latency: Latency::from_samples(&mut decision_samples),
        wake_after_decision: Latency::from_samples(&mut wake_samples),
    })
}
