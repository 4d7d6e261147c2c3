//! `hitlhook bench`: a load generator that drives a running server over real HTTP and WebSocket
//! on loopback and prints JSON figures, the "ceiling" receiver that only verifies the HMAC (so
//! ingest can be reported as a ratio to it), and the seeder of the scale scenario's large store.
//! `scripts/bench.sh` runs the whole method of BENCHMARKS.md.

mod ceiling;
mod client;
mod fanout;
mod ingest;
mod scale;
mod seed;
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
    /// Open N WebSocket subscribers, then send one event per round and measure the time until
    /// it has reached every one; reports the server's memory given --server-pid.
    Fanout(fanout::FanoutArgs),
    /// Fill an EMPTY database with checkpoints (some pending), their events and executions,
    /// written in bulk with the values the server would write; prints its size.
    Seed(seed::SeedArgs),
    /// Against a seeded server: first and deep page of pending, get by id, execution status;
    /// client and server (Server-Timing) latency.
    Scale(scale::ScaleArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    let report = match command {
        BenchCommand::Ingest(args) => serde_json::to_value(ingest::run(&args).await?)?,
        BenchCommand::Ceiling(args) => return ceiling::run(args).await,
        BenchCommand::Wake(args) => serde_json::to_value(wake::run(&args).await?)?,
        BenchCommand::Fanout(args) => serde_json::to_value(fanout::run(&args).await?)?,
        BenchCommand::Seed(args) => serde_json::to_value(seed::run(&args).await?)?,
        BenchCommand::Scale(args) => serde_json::to_value(scale::run(&args).await?)?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
