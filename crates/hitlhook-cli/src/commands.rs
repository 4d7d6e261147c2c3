//! The subcommands' bodies. Human-readable output goes to stderr; what a script captures (a new
//! key, signature headers, the listening address) goes to stdout.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use hitlhook_domain::{Scope, Timestamp};
use hitlhook_server::bootstrap;
use hitlhook_server::config::Secret;
use hitlhook_server::security::{api_key, signature};
use hitlhook_server::{App, Config};
use hitlhook_store::Store;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    hitlhook_server::telemetry::init_logs(config.log_format);
    let app = App::build(config).await?;
    // Before "listening on": from then on a SIGTERM is a graceful stop.
    let shutdown = hitlhook_server::app::shutdown_signal();
    let mut stdout = std::io::stdout();
    if let Some(banner) = app.first_run_banner() {
        writeln!(stdout, "{banner}")?;
    }
    writeln!(stdout, "listening on http://{}", app.local_addr()?)?;
    stdout.flush()?;
    app.run_until_stopped(shutdown).await
}

pub async fn open_store(config: &Config) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let url = config.database_url();
    let store = hitlhook_store::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", hitlhook_store::redact_url(&url)))?;
    store
        .migrate()
        .await
        .context("running database migrations")?;
    Ok(store)
}

pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    eprintln!(
        "migrations applied to {} ({})",
        hitlhook_store::redact_url(&config.database_url()),
        store.backend()
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it once on stdout (the only time it is shown).
    Create {
        /// A name to recognise the key by (a person, a service).
        #[arg(long)]
        name: String,
        /// ingest: send events and read their checkpoints; reviewer: read and decide;
        /// admin: everything, including key management.
        #[arg(long, default_value = "reviewer")]
        scope: Scope,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id or name; it stops working at once.
    Revoke {
        /// The key's id or name.
        key: String,
    },
}

pub async fn keys(config: Config, action: KeysAction) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match action {
        KeysAction::Create { name, scope } => {
            api_key::check_name(&name).map_err(anyhow::Error::msg)?;
            let (key, secret) = api_key::create(store.as_ref(), &name, scope).await.map_err(|e| match e {
                hitlhook_store::StoreError::Duplicate(_) => {
                    anyhow::anyhow!("an active key named {name:?} exists; revoke it first or pick another name")
                }
                other => anyhow::Error::new(other),
            })?;
            eprintln!(
                "Created API key {:?} (scope {}, id {}). It is shown only now:",
                key.name, key.scope, key.id
            );
            println!("{secret}");
            eprintln!("Use it as:  Authorization: Bearer <key>");
        }
        KeysAction::List => {
            let keys = store.list_api_keys().await?;
            println!(
                "{:<38} {:<24} {:<9} {:<10} {:<25} revoked",
                "id", "name", "scope", "prefix", "created"
            );
            for k in keys {
                let revoked = k
                    .revoked_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
                println!(
                    "{:<38} {:<24} {:<9} {:<10} {:<25} {revoked}",
                    k.id,
                    k.name,
                    k.scope.to_string(), // Display ignores width; a String pads
                    k.prefix,
                    k.created_at.to_rfc3339()
                );
            }
        }
        KeysAction::Revoke { key } => {
            if store.revoke_api_key(&key, Timestamp::now()).await? {
                eprintln!("revoked {key}");
            } else {
                bail!("no active key with id or name {key:?} (see `hitlhook keys list`)");
            }
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The body to sign; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// The webhook-id to sign with (default: a fresh msg_<uuid>). Re-using an id makes the
    /// server treat the request as a redelivery.
    #[arg(long)]
    pub webhook_id: Option<String>,
    /// Directory holding the generated secret, when WEBHOOK_SECRET is not set.
    #[arg(long, env = "HITLHOOK_DATA_DIR", default_value = "hitlhook-data")]
    pub data_dir: PathBuf,
    /// The secret to sign with (default: the first of WEBHOOK_SECRET, else the generated one).
    #[arg(
        long = "webhook-secret",
        env = "WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_secrets: Vec<Secret>,
}

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let mut body = Vec::new();
    match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from stdin")?;
        }
    }
    let mut config = Config::for_data_dir(args.data_dir);
    config.webhook_secrets = args.webhook_secrets;
    let secrets = bootstrap::stored_secrets(&config)?;
    let Some(secret) = secrets.first() else {
        bail!(
            "no webhook secret: set WEBHOOK_SECRET, or run `hitlhook serve` once to generate {}",
            config.data_dir.join(bootstrap::SECRET_FILE).display()
        );
    };
    let id = args
        .webhook_id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    for (name, value) in
        signature::sign_headers(secret, &body, &id, Timestamp::now().unix_seconds())
    {
        println!("{name}: {value}");
    }
    Ok(())
}

pub fn print_config(config: &Config) -> anyhow::Result<()> {
    let secrets = bootstrap::stored_secrets(config)?;
    let secret_source = if !config.webhook_secrets.is_empty() {
        "from WEBHOOK_SECRET".to_owned()
    } else if secrets.is_empty() {
        "none yet: generated on first `serve`".to_owned()
    } else {
        format!(
            "from {}",
            config.data_dir.join(bootstrap::SECRET_FILE).display()
        )
    };
    let shown: Vec<String> = secrets.iter().map(Secret::redacted).collect();
    let lines = [
        ("HITLHOOK_BIND", config.bind.clone()),
        ("HITLHOOK_DATA_DIR", config.data_dir.display().to_string()),
        (
            "DATABASE_URL",
            hitlhook_store::redact_url(&config.database_url()),
        ),
        (
            "WEBHOOK_SECRET",
            format!("{} ({secret_source})", shown.join(",")),
        ),
        (
            "WEBHOOK_API_KEY",
            config
                .admin_api_key
                .as_ref()
                .map_or_else(|| "not set".to_owned(), Secret::redacted),
        ),
        (
            "WEBHOOK_BASE_URL",
            config
                .base_url
                .clone()
                .unwrap_or_else(|| format!("not set (http://{})", config.bind)),
        ),
        ("HITLHOOK_MAX_BODY_BYTES", config.max_body_bytes.to_string()),
        (
            "HITLHOOK_SIGNATURE_TOLERANCE_SECS",
            config.signature_tolerance_secs.to_string(),
        ),
        ("HITLHOOK_MAX_WAIT_SECS", config.max_wait_secs.to_string()),
        (
            "HITLHOOK_SWEEP_INTERVAL_MS",
            config.sweep_interval_ms.to_string(),
        ),
        (
            "HITLHOOK_AMP_RECONCILE_SECS",
            config.amp_reconcile_secs.to_string(),
        ),
        (
            "HITLHOOK_SKIP_MIGRATIONS",
            config.skip_migrations.to_string(),
        ),
        (
            "HITLHOOK_LOG_FORMAT",
            format!("{:?}", config.log_format).to_lowercase(),
        ),
        (
            "HITLHOOK_STREAM_HEARTBEAT_MS",
            config.stream_heartbeat_ms.to_string(),
        ),
        ("HITLHOOK_STREAM_QUEUE", config.stream_queue.to_string()),
        (
            "HITLHOOK_STREAM_SEND_TIMEOUT_MS",
            config.stream_send_timeout_ms.to_string(),
        ),
        (
            "HITLHOOK_STREAM_TOKEN_TTL_SECS",
            config.stream_token_ttl_secs.to_string(),
        ),
        (
            "HITLHOOK_STREAM_TOKEN_SECRET",
            config.stream_token_secret.as_ref().map_or_else(
                || "not set (random per process)".to_owned(),
                Secret::redacted,
            ),
        ),
    ];
    let d = &config.delivery;
    let set = |s: Option<&Secret>| s.map_or_else(|| "not set".to_owned(), Secret::redacted);
    let or_unset = |s: Option<&String>| s.cloned().unwrap_or_else(|| "not set".to_owned());
    let delivery_lines = [
        ("SLACK_WEBHOOK_URL", set(d.slack_webhook_url.as_ref())),
        ("SLACK_BOT_TOKEN", set(d.slack_bot_token.as_ref())),
        ("SLACK_CHANNEL", or_unset(d.slack_channel.as_ref())),
        ("SLACK_SIGNING_SECRET", set(d.slack_signing_secret.as_ref())),
        ("SLACK_API_URL", d.slack_api_url.clone()),
        ("SLACK_ALLOWED_USERS", d.slack_allowed_users.join(",")),
        ("SMTP_HOST", or_unset(d.smtp_host.as_ref())),
        ("SMTP_PORT", d.smtp_port().to_string()),
        ("SMTP_USER", or_unset(d.smtp_user.as_ref())),
        ("SMTP_PASSWORD", set(d.smtp_password.as_ref())),
        ("SMTP_TLS", format!("{:?}", d.smtp_tls).to_lowercase()),
        ("SMTP_FROM", or_unset(d.smtp_from.as_ref())),
        ("EMAIL_RECIPIENTS", d.email_recipients.join(",")),
        (
            "HITLHOOK_EMAIL_LINK_TTL_SECS",
            d.email_link_ttl_secs.to_string(),
        ),
        ("HITLHOOK_DELIVERY_MAX_ATTEMPTS", d.max_attempts.to_string()),
        ("HITLHOOK_DELIVERY_SCHEDULE", d.schedule.clone()),
        (
            "HITLHOOK_DELIVERY_RETRY_AFTER_MAX_SECS",
            d.retry_after_max_secs.to_string(),
        ),
        (
            "HITLHOOK_DELIVERY_CONNECT_TIMEOUT_MS",
            d.connect_timeout_ms.to_string(),
        ),
        ("HITLHOOK_DELIVERY_TIMEOUT_MS", d.timeout_ms.to_string()),
        ("HITLHOOK_DELIVERY_CONCURRENCY", d.concurrency.to_string()),
        ("HITLHOOK_DELIVERY_POLL_MS", d.poll_ms.to_string()),
        ("HITLHOOK_OUTBOUND_ALLOW", d.outbound_allow.join(",")),
        ("HITLHOOK_DELIVERY_WORKER", d.worker_enabled.to_string()),
    ];
    let lines = lines.into_iter().chain(delivery_lines);
    for (name, value) in lines {
        println!("{name}={value}");
    }
    // What `serve` would refuse or warn about, said here too.
    match config.check_credentials() {
        Ok(warnings) => warnings.iter().for_each(|w| eprintln!("warning: {w}")),
        Err(problem) => eprintln!("error: `serve` would refuse to start: {problem}"),
    }
    Ok(())
}
