//! The ceiling: the cheapest receiver that still authenticates. It reads the body, verifies the
//! signature exactly as hitlhook does, answers 202 and stores nothing. hitlhook's ingest rate is
//! reported as a fraction of this one, measured with the same load generator in the same run.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hitlhook_domain::Timestamp;
use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::SigningKeys;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub struct CeilingArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Secret,
}

async fn receive(
    State(keys): State<Arc<SigningKeys>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    match keys.verify(&headers, &body, Timestamp::now().unix_seconds(), 300) {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

pub async fn run(args: CeilingArgs) -> anyhow::Result<()> {
    let keys = Arc::new(SigningKeys::new(&[args.secret]).map_err(anyhow::Error::msg)?);
    let listener = TcpListener::bind(&args.bind).await?;
    let shutdown = hitlhook_server::app::shutdown_signal();
    println!("listening on http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/webhook/crewai", post(receive))
        .with_state(keys);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
