//! `hitlhook amp`: manage CrewAI AMP sources on the database directly (like `subscriptions`), so
//! they also work while the server is down.

use anyhow::bail;
use clap::Subcommand;
use hitlhook_domain::Timestamp;
use hitlhook_domain::amp::EmitMap;
use hitlhook_server::Config;
use hitlhook_server::amp::kickoff;
use hitlhook_server::amp::reconcile::{self, ReconcileError};
use hitlhook_server::amp::source::{SourceRequest, build};
use hitlhook_server::config::Secret;
use hitlhook_server::delivery::http::Outbound;
use hitlhook_server::delivery::ssrf::Guard;
use hitlhook_store::{AmpSource, Store, StoreError};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum AmpAction {
    /// Manage the AMP sources hitlhook accepts webhooks from and resumes runs on.
    Sources {
        #[command(subcommand)]
        action: SourcesAction,
    },
    /// Start a run on a source's deployment with hitlhook's webhooks injected (human input,
    /// event streaming, task/step/crew); prints the kickoff id. Needs WEBHOOK_BASE_URL.
    Kickoff {
        #[arg(long)]
        source: String,
        /// The run's inputs, a JSON object.
        #[arg(long)]
        inputs: String,
        /// JSON echoed by AMP in every legacy webhook.
        #[arg(long)]
        meta: Option<String>,
    },
    /// Read a run's status from AMP and record a finished run (completed or error).
    Status {
        kickoff_id: String,
        /// The run's source, for runs not started with `amp kickoff`.
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourcesAction {
    /// Add a source; prints its inbound URLs and, once, its secrets.
    Add(Box<AddSource>),
    /// List sources (never their secrets).
    List,
    /// Remove a source: its URLs answer 404 from now on.
    Remove { name: String },
}

#[derive(Debug, clap::Args)]
pub struct AddSource {
    /// Name used in the URLs: /amp/NAME/human-input, /amp/NAME/flow-hitl, ...
    #[arg(long)]
    name: String,
    /// How AMP authenticates: bearer, basic or hmac.
    #[arg(long)]
    auth: String,
    /// bearer: the token AMP sends (generated when absent).
    #[arg(long, env = "HITLHOOK_AMP_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
    /// basic: the username.
    #[arg(long)]
    username: Option<String>,
    /// basic: the password (generated when absent).
    #[arg(long, env = "HITLHOOK_AMP_PASSWORD", hide_env_values = true)]
    password: Option<Secret>,
    /// hmac: the webhook's signing secret from AMP (generated when absent).
    #[arg(long, env = "HITLHOOK_AMP_SIGNING_SECRET", hide_env_values = true)]
    signing_secret: Option<Secret>,
    /// The deployment's base URL (https://<crew>.crewai.com), for /resume, /stop, /kickoff.
    #[arg(long)]
    deployment_url: Option<String>,
    /// The deployment's Bearer token.
    #[arg(long, env = "HITLHOOK_AMP_DEPLOYMENT_TOKEN", hide_env_values = true)]
    deployment_token: Option<Secret>,
    /// The flow emit option `continue` sends.
    #[arg(long)]
    emit_continue: Option<String>,
    /// The flow emit option `stop` sends.
    #[arg(long)]
    emit_stop: Option<String>,
    /// The flow emit option `skip` sends (default: the request's default_outcome).
    #[arg(long)]
    emit_skip: Option<String>,
}

fn base_url(config: &Config) -> String {
    config
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.bind))
        .trim_end_matches('/')
        .to_owned()
}

pub async fn run(store: &dyn Store, config: &Config, action: AmpAction) -> anyhow::Result<()> {
    match action {
        AmpAction::Sources { action } => sources(store, config, action).await,
        AmpAction::Kickoff {
            source,
            inputs,
            meta,
        } => start(store, config, &source, &inputs, meta.as_deref()).await,
        AmpAction::Status { kickoff_id, source } => {
            status(store, config, &kickoff_id, source).await
        }
    }
}

fn outbound(config: &Config) -> anyhow::Result<Outbound> {
    let cfg = &config.delivery;
    let guard = Guard::new(&cfg.outbound_allow).map_err(anyhow::Error::msg)?;
    Outbound::new(Arc::new(guard), cfg.connect_timeout(), cfg.timeout())
}

async fn load_source(store: &dyn Store, name: &str) -> anyhow::Result<AmpSource> {
    store
        .get_amp_source(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no AMP source {name:?} (see `hitlhook amp sources list`)"))
}

async fn start(
    store: &dyn Store,
    config: &Config,
    name: &str,
    inputs: &str,
    meta: Option<&str>,
) -> anyhow::Result<()> {
    let Some(base) = &config.base_url else {
        bail!("set WEBHOOK_BASE_URL to hitlhook's public URL: AMP calls it back");
    };
    let inputs: Value =
        serde_json::from_str(inputs).map_err(|e| anyhow::anyhow!("--inputs: {e}"))?;
    if !inputs.is_object() {
        bail!("--inputs must be a JSON object");
    }
    let meta: Option<Value> = meta
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--meta: {e}"))?;
    let source = load_source(store, name).await?;
    let execution = kickoff::start(
        &outbound(config)?,
        &source,
        base,
        &inputs,
        meta.as_ref(),
        Timestamp::now(),
    )
    .await?;
    // The run is started: if recording it fails, the operator must still learn its id.
    store.save_amp_execution(&execution).await.map_err(|e| {
        anyhow::anyhow!(
            "AMP started run {} but it could not be recorded ({e}); reconcile it with \
             `hitlhook amp status {} --source {}` once the database is back",
            execution.kickoff_id,
            execution.kickoff_id,
            source.name
        )
    })?;
    eprintln!("started a run on {} with hitlhook's webhooks", source.name);
    println!("{}", execution.kickoff_id);
    Ok(())
}

async fn status(
    store: &dyn Store,
    config: &Config,
    kickoff_id: &str,
    source: Option<String>,
) -> anyhow::Result<()> {
    let done = reconcile::reconcile(
        store,
        &outbound(config)?,
        kickoff_id,
        source,
        Timestamp::now(),
    )
    .await
    .map_err(|e| match e {
        ReconcileError::UnknownRun(_) => {
            anyhow::anyhow!("no AMP run {kickoff_id:?} was started here; pass --source NAME")
        }
        other => other.into(),
    })?;
    println!("{}", done.remote_status);
    println!("{}", done.remote);
    Ok(())
}

async fn sources(store: &dyn Store, config: &Config, action: SourcesAction) -> anyhow::Result<()> {
    match action {
        SourcesAction::Add(add) => {
            let AddSource {
                name,
                auth,
                token,
                username,
                password,
                signing_secret,
                deployment_url,
                deployment_token,
                emit_continue,
                emit_stop,
                emit_skip,
            } = *add;
            let guard = Guard::new(&config.delivery.outbound_allow).map_err(anyhow::Error::msg)?;
            let request = SourceRequest {
                name,
                auth,
                token,
                username,
                password,
                signing_secret,
                deployment_url,
                deployment_token,
                emit_map: Some(EmitMap {
                    on_continue: emit_continue,
                    on_stop: emit_stop,
                    on_skip: emit_skip,
                }),
            };
            let (source, shown) = build(&guard, request, Timestamp::now())
                .map_err(|(field, problem)| anyhow::anyhow!("{field}: {problem}"))?;
            let source = match store.create_amp_source(source).await {
                Err(StoreError::Duplicate(_)) => bail!("an AMP source with this name exists"),
                other => other?,
            };
            let base = format!("{}/amp/{}", base_url(config), source.name);
            eprintln!(
                "Added AMP source {} (auth {}). Its secrets are shown only now:",
                source.name,
                source.auth.as_str()
            );
            if let Some(token) = &shown.token {
                println!("token           {}", token.expose());
            }
            if let Some(password) = &shown.password {
                println!("password        {}", password.expose());
            }
            if let Some(secret) = &shown.signing_secret {
                println!("signing_secret  {}", secret.expose());
            }
            println!("url_token       {}", shown.url_token.expose());
            println!("events          {base}/events");
            println!("human_input     {base}/human-input");
            println!("flow_hitl       {base}/flow-hitl");
            for hook in ["task", "step", "crew"] {
                println!(
                    "{hook:<15} {base}/{hook}?token={}",
                    shown.url_token.expose()
                );
            }
        }
        SourcesAction::List => {
            println!("{:<20} {:<7} {:<40} created", "name", "auth", "deployment");
            for s in store.list_amp_sources().await? {
                println!(
                    "{:<20} {:<7} {:<40} {}",
                    s.name,
                    s.auth.as_str(),
                    s.deployment_url.as_deref().unwrap_or("-"),
                    s.created_at.to_rfc3339()
                );
            }
        }
        SourcesAction::Remove { name } => {
            if store.remove_amp_source(&name).await? {
                eprintln!("removed {name}");
            } else {
                bail!("no AMP source {name:?} (see `hitlhook amp sources list`)");
            }
        }
    }
    Ok(())
}
