//! Assembling and running the server: open the store, bootstrap credentials, bind (first, so port
//! 0 works and the address is known), then serve until shutdown, finishing in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hitlhook_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::amp;
use crate::bootstrap::{self, FirstRun};
use crate::config::Config;
use crate::delivery::amp::Amp;
use crate::delivery::email::Mailer;
use crate::delivery::http::Outbound;
use crate::delivery::slack::Slack;
use crate::delivery::ssrf::Guard;
use crate::delivery::webhook::Webhooks;
use crate::delivery::{Channels, DeliveryContext, Wake, Worker, WorkerSettings};
use crate::http::{self, AppState, Shared};
use crate::hub::Hub;
use crate::ingest::Ingestor;
use crate::security::links::LinkSigner;
use crate::security::stream_token::StreamTokens;
use crate::security::{api_key, signature::SigningKeys};
use crate::serve::{ConnectionLimits, serve};
use crate::sweeper;
use crate::waiters::Waiters;

/// A built server, bound and ready to run.
pub struct App {
    listener: TcpListener,
    state: AppState,
    first_run: FirstRun,
    /// The delivery worker, started by `run_until_stopped` unless disabled.
    worker: Option<Worker>,
    /// SQLite: this server's hold on the database (`sqlite_lock`), released when it stops.
    _sqlite_lock: Option<std::fs::File>,
}

impl App {
    /// Opens the database (migrating unless told not to), makes sure credentials exist and binds
    /// the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::telemetry::metrics();
        for warning in config.check_credentials().map_err(anyhow::Error::msg)? {
            tracing::warn!("{warning}");
        }
        config
            .delivery
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid delivery settings: {e}"))?;
        let url = config.database_url();
        let store = hitlhook_store::connect(&url).await.with_context(|| {
            format!("opening the database {}", hitlhook_store::redact_url(&url))
        })?;
        let sqlite_lock = hitlhook_store::sqlite_path(&url)
            .map(|db| crate::sqlite_lock::lock(&db))
            .transpose()?;
        if !config.skip_migrations {
            store
                .migrate()
                .await
                .context("running database migrations")?;
        }
        // Credentials are generated only once the database works, so a failed start leaves
        // nothing behind.
        let mut first_run = FirstRun::default();
        let secrets = bootstrap::ensure_secrets(&config, &mut first_run)?;
        let keys = SigningKeys::new(&secrets).map_err(anyhow::Error::msg)?;
        bootstrap::ensure_admin_key(&config, store.as_ref(), &mut first_run).await?;
        store.set_delivery_plan(config.delivery.plan(), config.delivery.max_attempts);
        let listener = TcpListener::bind(&config.bind).await.with_context(|| {
            format!("binding {} (is another server running there?)", config.bind)
        })?;
        let waiters = Arc::new(Waiters::default());
        let hub = Arc::new(Hub::new(store.stats().await?.events_total));
        let base_url = match (&config.base_url, listener.local_addr()) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Ok(addr)) => format!("http://{addr}"),
            (None, Err(_)) => config.bind.clone(),
        };
        // Email links are signed with a key derived from the first (signing) webhook secret.
        let link_secret = secrets
            .first()
            .map(|s| s.expose().as_bytes().to_vec())
            .unwrap_or_default();
        let (delivery, worker) = delivery_engine(
            &config,
            Arc::clone(&store),
            Arc::clone(&hub),
            base_url,
            LinkSigner::new(&link_secret),
        )?;
        let state = AppState::new(Shared {
            amp_replay: Arc::default(),
            ingestor: Ingestor::spawn(Arc::clone(&store), Arc::clone(&hub)),
            store,
            waiters,
            keys: Arc::new(keys),
            admin_key_hash: config
                .admin_api_key
                .as_ref()
                .map(|k| Arc::from(api_key::hash(k.expose()))),
            hub,
            stream_tokens: Arc::new(StreamTokens::new(
                config.stream_token_secret.as_ref(),
                config.stream_token_ttl_secs,
            )),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            delivery,
        });
        Ok(App {
            listener,
            state,
            first_run,
            worker,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The URL people and links should use: `WEBHOOK_BASE_URL`, else the bound address.
    pub fn base_url(&self) -> String {
        match (&self.state.config.base_url, self.listener.local_addr()) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Ok(addr)) => format!("http://{addr}"),
            (None, Err(_)) => self.state.config.bind.clone(),
        }
    }

    /// The one-time credentials banner of a first run, if credentials were generated.
    pub fn first_run_banner(&self) -> Option<String> {
        self.first_run.banner(&self.state.config, &self.base_url())
    }

    /// The store, for tests and embedding.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.state.store)
    }

    /// Serves until `shutdown` resolves, then stops accepting, releases long-polls and waits for
    /// in-flight requests to finish.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = self.state.shutdown.clone();
        let sweeper = tokio::spawn(sweeper::run(
            Arc::clone(&self.state.store),
            Arc::clone(&self.state.hub),
            self.state.config.sweep_interval(),
            cancel.clone(),
        ));
        // Runs started here that still look running are checked on AMP now and then.
        let amp_reconciler = (self.state.config.amp_reconcile_secs > 0).then(|| {
            tokio::spawn(amp::reconcile::run(
                Arc::clone(&self.state.store),
                self.state.delivery.outbound.clone(),
                Arc::clone(&self.state.hub),
                Duration::from_secs(self.state.config.amp_reconcile_secs),
                cancel.clone(),
            ))
        });
        let worker = self
            .worker
            .take()
            .map(|w| tokio::spawn(w.run(self.state.delivery.wake.clone(), cancel.clone())));
        // With PostgreSQL other nodes may write too: poll for their commits.
        let poll = (self.state.store.backend() == "postgres").then(|| Duration::from_millis(200));
        let tail = tokio::spawn(Arc::clone(&self.state.hub).run(
            Arc::clone(&self.state.store),
            Arc::clone(&self.state.waiters),
            poll,
            cancel.clone(),
        ));
        info!(addr = %self.local_addr()?, backend = self.state.store.backend(), "hitlhook listening");
        let config_header_timeout = self.state.config.header_read_timeout_secs;
        let config_max_connections = self.state.config.max_connections;
        let router = http::router(self.state);
        let signal = cancel.clone();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(config_header_timeout.max(1)),
            max_connections: config_max_connections,
        };
        serve(self.listener, router, limits, async move {
            shutdown.await;
            info!("shutting down: finishing in-flight requests");
            signal.cancel();
        })
        .await;
        cancel.cancel();
        let _ = sweeper.await;
        if let Some(reconciler) = amp_reconciler {
            let _ = reconciler.await;
        }
        let _ = tail.await;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        info!("stopped");
        Ok(())
    }
}

/// Builds the channels, the handlers' delivery context and (unless disabled) the worker.
fn delivery_engine(
    config: &Config,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    base_url: String,
    links: LinkSigner,
) -> anyhow::Result<(Arc<DeliveryContext>, Option<Worker>)> {
    let cfg = &config.delivery;
    let guard = Arc::new(Guard::new(&cfg.outbound_allow).map_err(anyhow::Error::msg)?);
    let outbound = Outbound::new(Arc::clone(&guard), cfg.connect_timeout(), cfg.timeout())
        .context("building the outbound HTTP client")?;
    let slack_bot = cfg.slack_bot_token.is_some() && cfg.slack_channel.is_some();
    let slack = (slack_bot
        || cfg.slack_webhook_url.is_some()
        || cfg.slack_signing_secret.is_some())
    .then(|| Slack {
        outbound: outbound.clone(),
        api_url: cfg.slack_api_url.clone(),
        bot_token: cfg.slack_bot_token.clone(),
        channel: cfg.slack_channel.clone(),
        webhook_url: cfg.slack_webhook_url.clone(),
        base_url: base_url.clone(),
    });
    let email = Mailer::from_config(cfg, links.clone(), base_url.clone())
        .context("building the SMTP transport")?;
    let channels = Arc::new(Channels {
        store: Arc::clone(&store),
        webhook: Webhooks {
            outbound: outbound.clone(),
        },
        slack,
        email,
        amp: Amp {
            outbound: outbound.clone(),
        },
    });
    let worker = cfg.worker_enabled.then(|| {
        Worker::new(
            store,
            channels,
            WorkerSettings {
                policy: cfg.retry_policy().unwrap_or_default(),
                lease: cfg.lease(),
                concurrency: cfg.concurrency,
                poll: cfg.poll(),
            },
            hub,
        )
    });
    let context = DeliveryContext {
        wake: Wake::default(),
        guard,
        links,
        base_url,
        slack_signing_secret: cfg.slack_signing_secret.clone(),
        slack_allowed_users: cfg.slack_allowed_users.clone(),
        slack_bot,
        outbound,
    };
    Ok((Arc::new(context), worker))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a SIGTERM that arrives just after the server says it is
/// listening (a supervisor, a test) must stop it gracefully, not kill it by the default action.
/// Call it inside the runtime, before announcing the server.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn received(signal: std::io::Result<Signal>) {
        match signal {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without that handler the signal keeps its default action.
            Err(_) => std::future::pending().await,
        }
    }
    let interrupt = received(signal(SignalKind::interrupt()));
    let terminate = received(signal(SignalKind::terminate()));
    async move {
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
    }
}
