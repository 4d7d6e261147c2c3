//! API tests: the real app on 127.0.0.1:0, driven over HTTP, on SQLite and on PostgreSQL.

mod amp;
mod amp_peer;
mod amp_resume;
mod amp_runs;
mod helpers;
mod peers;

mod decisions;
mod email;
mod errors;
mod ingest;
mod operations;
mod outbox;
mod slack;
mod sse;
mod stream_auth;
mod subscriptions;
mod webhooks;
mod ws;
