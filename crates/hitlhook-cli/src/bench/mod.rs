//! `hitlhook bench`: a load generator that drives a running server over real HTTP on loopback
//! and prints JSON figures, plus the "ceiling" receiver that only verifies the HMAC, so ingest
//! can be reported as a ratio to it. `scripts/bench.sh` runs the whole method of BENCHMARKS.md.

mod ceiling;
mod client;
mod ingest;
mod stats;
mod wake;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send uniquely signed events from N connections for S seconds; print throughput and
    /// latency percentiles as JSON.
    Ingest(ingest::IngestArgs),
    /// Run the ceiling receiver: verifies the HMAC of each POST /webhook/crewai and answers 202,
    /// storing nothing. Prints `listening on http://ADDR` and runs until killed.
    Ceiling(ceiling::CeilingArgs),
    /// Park N long-poll waiters, decide their checkpoints one by one and measure the time from
    /// each decision's response to its waiter's wake-up.
    Wake(wake::WakeArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    let report = match command {
        BenchCommand::Ingest(args) => serde_json::to_value(ingest::run(&args).await?)?,
        BenchCommand::Ceiling(args) => return ceiling::run(args).await,
        BenchCommand::Wake(args) => serde_json::to_value(wake::run(&args).await?)?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
