//! Scale: reads against a large seeded store (`hitlhook bench seed`). Four queries, each
//! repeated on one keep-alive connection: the first page of pending checkpoints, a deep page
//! (a keyset cursor at least 90% into the pending list, found by walking it once), a checkpoint
//! by id and an execution's status. Each is timed by the client and by the server's own
//! `Server-Timing: app;dur=` header.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hitlhook_server::config::Secret;
use hitlhook_store::seed::{checkpoint_id, kickoff_id};
use hyper::{HeaderMap, Method};
use serde::Serialize;

use super::client::{Conn, parse_base};
use super::stats::Latency;

#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub url: String,
    /// A reviewer or admin API key.
    #[arg(long, env = "WEBHOOK_API_KEY", hide_env_values = true)]
    pub api_key: Secret,
    /// The seeded checkpoints (as given to `bench seed`): ids are picked among them.
    #[arg(long, default_value_t = 1_000_000)]
    pub checkpoints: u64,
    /// The seeded executions (as given to `bench seed`).
    #[arg(long, default_value_t = 100_000)]
    pub executions: u64,
    /// Requests per query.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Checkpoints per page.
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
}

/// One query's figures.
#[derive(Debug, Serialize)]
pub struct Query {
    pub path_example: String,
    /// The server's own time (Server-Timing).
    pub server: Latency,
    /// Round trip seen by the client.
    pub client: Latency,
}

#[derive(Debug, Serialize)]
pub struct Walk {
    pub pages: usize,
    pub pending_listed: usize,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub scenario: &'static str,
    pub url: String,
    pub first_page: Query,
    pub deep_page: Query,
    pub get_by_id: Query,
    pub execution_status: Query,
    /// The walk through every pending checkpoint that found the deep cursors.
    pub walk: Walk,
}

/// A well-spread pseudo-random index below `n` (SplitMix64 of `i`): ids from all over the table.
fn spread(i: u64, n: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % n.max(1)
}

fn server_time(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("server-timing")?.to_str().ok()?;
    let ms: f64 = value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("dur="))?
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

struct Client {
    conn: Conn,
    auth: Vec<(String, String)>,
}

impl Client {
    /// GETs `path` (must answer 200); returns the body and the client and server times.
    async fn get(&mut self, path: &str) -> anyhow::Result<(Bytes, Duration, Duration)> {
        let sent = Instant::now();
        let (status, headers, body) = self
            .conn
            .exchange(Method::GET, path, &self.auth, Bytes::new())
            .await?;
        let client = sent.elapsed();
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body:?}");
        let server = server_time(&headers).context("no Server-Timing header")?;
        Ok((body, client, server))
    }

    /// Runs `paths` and summarises the times.
    async fn measure(&mut self, paths: Vec<String>) -> anyhow::Result<Query> {
        let mut server = Vec::with_capacity(paths.len());
        let mut client = Vec::with_capacity(paths.len());
        for path in &paths {
            let (_, c, s) = self.get(path).await?;
            client.push(c);
            server.push(s);
        }
        Ok(Query {
            path_example: paths.first().cloned().unwrap_or_default(),
            server: Latency::from_samples(&mut server),
            client: Latency::from_samples(&mut client),
        })
    }
}

pub async fn run(args: &ScaleArgs) -> anyhow::Result<ScaleReport> {
    let addr = parse_base(&args.url)?;
    let mut client = Client {
        conn: Conn::open(addr).await?,
        auth: vec![(
            "authorization".to_owned(),
            format!("Bearer {}", args.api_key.expose()),
        )],
    };
    let list = format!("/v1/checkpoints?status=pending&limit={}", args.page_size);

    // Walk the whole pending list once, keeping every page's cursor.
    let started = Instant::now();
    let mut cursors = Vec::new();
    let mut pending_listed = 0;
    let mut path = list.clone();
    loop {
        let (body, _, _) = client.get(&path).await?;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        pending_listed += page["items"].as_array().map_or(0, Vec::len);
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        cursors.push(cursor.to_owned());
        path = format!("{list}&cursor={cursor}");
    }
    let walk = Walk {
        pages: cursors.len() + 1,
        pending_listed,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    anyhow::ensure!(
        !cursors.is_empty(),
        "the pending list fits in one page: seed more"
    );
    let deep = &cursors[cursors.len() * 9 / 10..];

    let n = args.requests as u64;
    let first_page = client.measure(vec![list.clone(); args.requests]).await?;
    let deep_page = client
        .measure(
            (0..n)
                .map(|i| {
                    let cursor = &deep[spread(i, deep.len() as u64) as usize];
                    format!("{list}&cursor={cursor}")
                })
                .collect(),
        )
        .await?;
    let get_by_id = client
        .measure(
            (0..n)
                .map(|i| {
                    format!(
                        "/v1/checkpoints/{}",
                        checkpoint_id(spread(i, args.checkpoints))
                    )
                })
                .collect(),
        )
        .await?;
    let execution_status = client
        .measure(
            (0..n)
                .map(|i| format!("/webhook/status/{}", kickoff_id(spread(i, args.executions))))
                .collect(),
        )
        .await?;
    Ok(ScaleReport {
        scenario: "scale",
        url: args.url.clone(),
        first_page,
        deep_page,
        get_by_id,
        execution_status,
        walk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_range() {
        let picks: std::collections::HashSet<u64> = (0..1000).map(|i| spread(i, 100)).collect();
        assert!(picks.len() > 90, "{}", picks.len());
        assert!(picks.iter().all(|p| *p < 100));
    }

    #[test]
    fn server_timing_is_read_in_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("server-timing", "app;dur=1.250".parse().expect("value"));
        assert_eq!(server_time(&headers), Some(Duration::from_micros(1250)));
    }
}
