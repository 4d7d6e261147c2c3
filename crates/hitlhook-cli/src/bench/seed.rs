//! `hitlhook bench seed`: fills an empty database with a large, realistic history for the scale
//! scenario (see `hitlhook_store::seed`), printing progress, then its size on disk.

use std::path::PathBuf;
use std::time::Instant;

use hitlhook_store::seed::{self, SeedPlan};
use serde::Serialize;

#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The database to fill (must be empty); default: the SQLite file of --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The server's data directory (its SQLite file is `hitlhook.db` there), as for `serve`.
    #[arg(long, env = "HITLHOOK_DATA_DIR", default_value = "hitlhook-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    pub checkpoints: u64,
    /// How many stay pending; the others are decided.
    #[arg(long, default_value_t = 100_000)]
    pub pending: u64,
    #[arg(long, default_value_t = 100_000)]
    pub executions: u64,
}

impl SeedArgs {
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| hitlhook_store::sqlite_file_url(&self.data_dir.join("hitlhook.db")))
    }

    pub fn plan(&self) -> SeedPlan {
        SeedPlan {
            checkpoints: self.checkpoints,
            pending: self.pending,
            executions: self.executions,
            // What the server records for an event signed with the webhook secret, and for a
            // decision made with WEBHOOK_API_KEY (as the benchmarks do).
            event_source: "signature:standard-webhooks".to_owned(),
            decided_by: "key:WEBHOOK_API_KEY".to_owned(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SeedReport {
    pub scenario: &'static str,
    pub backend: &'static str,
    pub checkpoints: u64,
    pub pending: u64,
    pub executions: u64,
    pub events: u64,
    pub seconds: f64,
    /// SQLite: the file and its WAL; PostgreSQL: the tables with their indexes and TOAST.
    pub size_bytes: u64,
    pub bytes_per_checkpoint: f64,
}

pub async fn run(args: &SeedArgs) -> anyhow::Result<SeedReport> {
    let url = args.url();
    let started = Instant::now();
    let total = args.checkpoints;
    let mut next_report = 0;
    let written = seed::seed(&url, &args.plan(), |done| {
        if done >= next_report || done == total {
            eprintln!(
                "seeded {done}/{total} checkpoints ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            next_report = done + total / 10;
        }
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let size_bytes = seed::size_bytes(&url).await?;
    Ok(SeedReport {
        scenario: "seed",
        backend: if url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        },
        checkpoints: written.checkpoints,
        pending: written.pending,
        executions: written.executions,
        events: written.events,
        seconds: (seconds * 10.0).round() / 10.0,
        size_bytes,
        bytes_per_checkpoint: (size_bytes as f64 / written.checkpoints as f64).round(),
    })
}
