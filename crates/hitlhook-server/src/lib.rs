//! hitlhook's server as a library: configuration, the HTTP API, authentication, the group-commit
//! ingest path, the accept loop with its connection limits, long-poll waiters, the expiry sweeper, the live stream, the web inbox and the
//! delivery engine (Slack, email, outbound webhooks). The `hitlhook` binary is a thin CLI on
//! top; tests build the same [`App`] on port 0.

pub mod amp;
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod delivery;
pub mod error;
pub mod html;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod security;
pub mod serve;
pub mod sqlite_lock;
pub mod stream;
pub mod sweeper;
pub mod telemetry;
pub mod waiters;

pub use app::App;
pub use config::Config;
