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

use crate::bootstrap::{self, FirstRun};
use crate::config::Config;
use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::ingest::Ingestor;
use crate::security::stream_token::StreamTokens;
use crate::security::{api_key, signature::SigningKeys};
use crate::sweeper;
use crate::waiters::Waiters;

/// A built server, bound and ready to run.
pub struct App {
    listener: TcpListener,
    state: AppState,
    first_run: FirstRun,
}

impl App {
    /// Opens the database (migrating unless told not to), makes sure credentials exist and binds
    /// the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::telemetry::metrics();
        let url = config.database_url();
        let store = hitlhook_store::connect(&url).await.with_context(|| {
            format!("opening the database {}", hitlhook_store::redact_url(&url))
        })?;
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
        let listener = TcpListener::bind(&config.bind).await.with_context(|| {
            format!("binding {} (is another server running there?)", config.bind)
        })?;
        let waiters = Arc::new(Waiters::default());
        let hub = Arc::new(Hub::new(store.stats().await?.events_total));
        let state = AppState {
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
        };
        Ok(App {
            listener,
            state,
            first_run,
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
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = self.state.shutdown.clone();
        let sweeper = tokio::spawn(sweeper::run(
            Arc::clone(&self.state.store),
            Arc::clone(&self.state.hub),
            self.state.config.sweep_interval(),
            cancel.clone(),
        ));
        // With PostgreSQL other nodes may write too: poll for their commits.
        let poll = (self.state.store.backend() == "postgres").then(|| Duration::from_millis(200));
        let tail = tokio::spawn(Arc::clone(&self.state.hub).run(
            Arc::clone(&self.state.store),
            Arc::clone(&self.state.waiters),
            poll,
            cancel.clone(),
        ));
        info!(addr = %self.local_addr()?, backend = self.state.store.backend(), "hitlhook listening");
        let router = http::router(self.state);
        let signal = cancel.clone();
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                info!("shutting down: finishing in-flight requests");
                signal.cancel();
            })
            .await
            .context("serving HTTP")?;
        cancel.cancel();
        let _ = sweeper.await;
        let _ = tail.await;
        info!("stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
