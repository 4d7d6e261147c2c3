//! `hitlhook`: the human-in-the-loop server for AI agent workflows, and the commands an operator
//! needs around it. Settings come from flags, the environment and a `.env` file in the current
//! directory (flags win, then the environment, then `.env`).

mod amp;
mod bench;
mod commands;
mod delivery;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hitlhook_server::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hitlhook: signed webhooks in, human decisions out.
///
/// A CrewAI crew or flow sends a signed `checkpoint.required` webhook; hitlhook stores it, people
/// decide (continue, stop, revise, skip), and the waiting execution resumes.
///
/// Quick start:
///   hitlhook serve                       # SQLite in ./hitlhook-data, credentials printed once
///   hitlhook sign body.json > headers    # signature headers for curl -H @headers
///   hitlhook keys create --name alice --scope reviewer
///   hitlhook subscriptions add --url https://example.com/hook --events 'checkpoint.*'
///   hitlhook deliveries list --state dead
///   hitlhook amp sources add --name prod --auth bearer
#[derive(Debug, Parser)]
#[command(
    name = "hitlhook",
    version,
    propagate_version = true,
    verbatim_doc_comment
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (migrates the database first unless --skip-migrations).
    Serve(Config),
    /// Apply database migrations and exit (a deploy step for several nodes on PostgreSQL).
    Migrate(Config),
    /// Manage API keys (stored only as hashes; a key is shown once, when created).
    Keys {
        #[command(flatten)]
        config: Config,
        #[command(subcommand)]
        action: commands::KeysAction,
    },
    /// Inspect the delivery outbox (Slack, email, webhooks) and revive dead letters.
    Deliveries {
        #[command(flatten)]
        config: Config,
        #[command(subcommand)]
        action: delivery::DeliveriesAction,
    },
    /// Manage webhook subscribers (signed Standard Webhooks deliveries of hitlhook's events).
    Subscriptions {
        #[command(flatten)]
        config: Config,
        #[command(subcommand)]
        action: delivery::SubscriptionsAction,
    },
    /// CrewAI AMP: the sources hitlhook accepts AMP's webhooks from and resumes runs on.
    Amp {
        #[command(flatten)]
        config: Config,
        #[command(subcommand)]
        action: amp::AmpAction,
    },
    /// Print signature headers for a webhook body, for curl users.
    ///
    /// Reads the body from FILE (or stdin) and prints, one per line, the seed's
    /// X-CrewAI-Signature header and the Standard Webhooks headers. Sign the exact bytes you send:
    ///   hitlhook sign body.json > headers.txt
    ///   curl -H @headers.txt -H 'Content-Type: application/json' --data-binary @body.json \
    ///        http://localhost:8001/webhook/crewai
    #[command(verbatim_doc_comment)]
    Sign(commands::SignArgs),
    /// Print the effective configuration, secrets redacted.
    Config(Config),
    /// Benchmarks against a running server (see BENCHMARKS.md and scripts/bench.sh).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: ignoring .env: {e}");
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => commands::serve(config).await,
            Command::Migrate(config) => commands::migrate(config).await,
            Command::Keys { config, action } => commands::keys(config, action).await,
            Command::Deliveries { config, action } => {
                let store = commands::open_store(&config).await?;
                delivery::deliveries(store.as_ref(), action).await
            }
            Command::Subscriptions { config, action } => {
                let store = commands::open_store(&config).await?;
                delivery::subscriptions(store.as_ref(), &config.delivery.outbound_allow, action)
                    .await
            }
            Command::Amp { config, action } => {
                let store = commands::open_store(&config).await?;
                amp::run(store.as_ref(), &config, action).await
            }
            Command::Sign(args) => commands::sign(args),
            Command::Config(config) => commands::print_config(&config),
            Command::Bench(command) => bench::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
