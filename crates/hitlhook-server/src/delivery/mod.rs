//! The delivery worker: claims due rows of the outbox with a lease (committed before any network
//! I/O), sends each through its channel with bounded concurrency, and records the outcome. The
//! retry policy decides when a failed delivery is due again, or that it is a dead letter.
//!
//! Guarantees: at-least-once. A worker that crashes mid-send leaves a lease that expires, and the
//! row comes due again; each delivery carries one idempotency key on every attempt (`webhook-id`,
//! email `Message-ID`). The worker looks at the outbox after committed events (the hub) that
//! came with deliveries this process planned, on an explicit [`Wake`] (deliveries enqueued
//! without an event), when the next row is due, and on a poll timer (rows written by other nodes
//! or the CLI).

pub mod amp;
pub mod config;
pub mod email;
pub mod http;
pub mod slack;
pub mod slack_blocks;
pub mod ssrf;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use hitlhook_domain::{DeliveryKind, RetryPolicy, Timestamp};
use hitlhook_store::{AttemptOutcome, Delivery, Store};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::hub::Hub;

/// What one attempt came to, as a channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the receiver; `result` is JSON later deliveries need (a Slack message's ts).
    Delivered {
        status: Option<u16>,
        result: Option<String>,
    },
    /// Failed in a way worth retrying; `retry_after` is the receiver's wish, if any.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Failed for good (refused target, invalid token, 410): a dead letter at once.
    Permanent { status: Option<u16>, error: String },
    /// Not sent because it no longer makes sense.
    Skipped(String),
    /// The receiver had its answer from elsewhere (an AMP run no longer waiting): final.
    ResolvedElsewhere { status: Option<u16>, detail: String },
}

impl SendOutcome {
    pub(crate) fn retry(error: impl Into<String>) -> Self {
        SendOutcome::Retry {
            status: None,
            error: error.into(),
            retry_after: None,
        }
    }

    pub(crate) fn permanent(error: impl Into<String>) -> Self {
        SendOutcome::Permanent {
            status: None,
            error: error.into(),
        }
    }
}

/// Wakes the local worker after writing deliveries that no event announces.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Every channel, ready to send.
pub struct Channels {
    pub store: Arc<dyn Store>,
    pub webhook: webhook::Webhooks,
    pub slack: Option<slack::Slack>,
    pub email: Option<email::Mailer>,
    pub amp: amp::Amp,
}

impl Channels {
    /// One attempt of `d`.
    pub async fn send(&self, d: &Delivery) -> SendOutcome {
        match d.kind {
            DeliveryKind::Webhook => self.webhook.send(self.store.as_ref(), d).await,
            DeliveryKind::SlackMessage
            | DeliveryKind::SlackUpdate
            | DeliveryKind::SlackRespond
            | DeliveryKind::SlackModal => match &self.slack {
                Some(slack) => slack.send(self.store.as_ref(), d).await,
                None => SendOutcome::permanent("Slack is not configured on this node"),
            },
            DeliveryKind::Email => match &self.email {
                Some(mailer) => mailer.send(self.store.as_ref(), d).await,
                None => SendOutcome::permanent("email (SMTP_HOST) is not configured on this node"),
            },
            DeliveryKind::AmpResume | DeliveryKind::AmpStop | DeliveryKind::AmpFeedback => {
                self.amp.send(self.store.as_ref(), d).await
            }
        }
    }
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub policy: RetryPolicy,
    pub lease: Duration,
    pub concurrency: u32,
    pub poll: Duration,
}

/// The delivery worker of one node.
pub struct Worker {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    settings: WorkerSettings,
    hub: Arc<Hub>,
    owner: String,
}

impl Worker {
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        channels: Arc<Channels>,
        settings: WorkerSettings,
        hub: Arc<Hub>,
    ) -> Self {
        Worker {
            store,
            channels,
            settings,
            hub,
            owner: format!("worker-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Runs until cancelled, then waits for the attempts in flight (bounded by their timeouts)
    /// so their outcomes are recorded rather than left to lease expiry.
    pub async fn run(self, wake: Wake, cancel: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1) as usize));
        let mut in_flight = JoinSet::new();
        let mut events = Some(self.hub.subscribe());
        let mut planned_seen = 0;
        let mut look = true;
        let mut deadline = tokio::time::Instant::now();
        loop {
            if look {
                // Read before looking: a delivery planned during the look moves it again.
                planned_seen = self.store.deliveries_planned();
                self.look(&permits, &mut in_flight).await;
                while in_flight.try_join_next().is_some() {}
                // With every permit taken, a due row must wait for an attempt to finish (the
                // join_next branch below), not spin on a zero sleep.
                let wait = if permits.available_permits() == 0 {
                    self.settings.poll
                } else {
                    self.until_next_due().await
                };
                deadline = tokio::time::Instant::now() + wait;
            }
            look = tokio::select! {
                () = cancel.cancelled() => break,
                () = wake.0.notified() => true,
                received = next_event(&mut events) => {
                    if matches!(received, Err(broadcast::error::RecvError::Closed)) {
                        events = None;
                    }
                    // Coalesce a burst of events into one look at the outbox, and look only
                    // when this process planned deliveries since the last look: under ingest
                    // with no channel configured, the outbox is not read after every commit.
                    // Rows other nodes planned are their workers' (or found by the poll).
                    if let Some(rx) = events.as_mut() {
                        while rx.try_recv().is_ok() {}
                    }
                    self.store.deliveries_planned() != planned_seen
                }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => true,
                () = tokio::time::sleep_until(deadline) => true,
            };
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Claims what is due, as far as permits allow, and starts an attempt for each.
    async fn look(&self, permits: &Arc<Semaphore>, in_flight: &mut JoinSet<()>) {
        loop {
            let free = permits.available_permits();
            if free == 0 {
                return;
            }
            match self.claim_if_due(free).await {
                Ok(batch) => {
                    let claimed = batch.len();
                    for d in batch {
                        let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
                            return;
                        };
                        let attempt = Attempt {
                            store: Arc::clone(&self.store),
                            channels: Arc::clone(&self.channels),
                            policy: self.settings.policy.clone(),
                            hub: Arc::clone(&self.hub),
                        };
                        in_flight.spawn(async move {
                            attempt.run(d).await;
                            drop(permit);
                        });
                    }
                    if claimed == 0 || permits.available_permits() == 0 || !self.due_now().await {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = ?e, "claiming deliveries failed; retrying");
                    // Do not spin on a failing database.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    return;
                }
            }
        }
    }

    /// Claims up to `max` rows, but only after a cheap read shows one is due: the claim is a
    /// write, and on SQLite every write queues behind ingest.
    async fn claim_if_due(&self, max: usize) -> anyhow::Result<Vec<Delivery>> {
        if !self.due_now().await {
            return Ok(Vec::new());
        }
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        Ok(self
            .store
            .claim_deliveries(Timestamp::now(), self.settings.lease, max, &self.owner)
            .await?)
    }

    async fn due_now(&self) -> bool {
        matches!(self.store.next_delivery_due().await, Ok(Some(at)) if at <= Timestamp::now())
    }

    /// How long to sleep: until the next row is due, at most the poll interval.
    async fn until_next_due(&self) -> Duration {
        match self.store.next_delivery_due().await {
            Ok(Some(at)) => {
                let ms = at.millis().saturating_sub(Timestamp::now().millis()).max(0);
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(self.settings.poll)
            }
            _ => self.settings.poll,
        }
    }
}

async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<crate::hub::Published>>>,
) -> Result<(), broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await.map(|_| ()).or_else(|e| match e {
            broadcast::error::RecvError::Lagged(_) => Ok(()),
            closed @ broadcast::error::RecvError::Closed => Err(closed),
        }),
        None => std::future::pending().await,
    }
}

/// One attempt of one claimed delivery, and the recording of its outcome.
struct Attempt {
    store: Arc<dyn Store>,
    channels: Arc<Channels>,
    policy: RetryPolicy,
    hub: Arc<Hub>,
}

impl Attempt {
    async fn run(self, d: Delivery) {
        let started = std::time::Instant::now();
        let outcome = if d.attempts > d.max_attempts {
            // Only after leases expired with no recorded outcome (crashed workers).
            SendOutcome::permanent("the last attempt's worker stopped before recording an outcome")
        } else {
            self.channels.send(&d).await
        };
        let now = Timestamp::now();
        let attempts = u32::try_from(d.attempts).unwrap_or(u32::MAX);
        let max = u32::try_from(d.max_attempts).unwrap_or(u32::MAX);
        let (record, label) = match outcome {
            SendOutcome::Delivered { status, result } => {
                info!(delivery_id = %d.id, kind = d.kind.as_str(), attempt = d.attempts, "delivered");
                (AttemptOutcome::Delivered { status, result }, "delivered")
            }
            SendOutcome::Retry {
                status,
                error,
                retry_after,
            } => {
                let next_at =
                    self.policy
                        .next_at(now, attempts, max, retry_after, rand::random::<f64>());
                match next_at {
                    Some(at) => {
                        warn!(delivery_id = %d.id, kind = d.kind.as_str(), attempt = d.attempts, error = %error, next_at = %at, "delivery failed; will retry");
                    }
                    None => {
                        error!(delivery_id = %d.id, kind = d.kind.as_str(), attempt = d.attempts, error = %error, "delivery failed for the last time: dead letter");
                    }
                }
                let label = if next_at.is_some() { "retry" } else { "dead" };
                (
                    AttemptOutcome::Failed {
                        status,
                        error,
                        next_at,
                    },
                    label,
                )
            }
            SendOutcome::Permanent { status, error } => {
                error!(delivery_id = %d.id, kind = d.kind.as_str(), attempt = d.attempts, error = %error, "delivery failed permanently: dead letter");
                (
                    AttemptOutcome::Failed {
                        status,
                        error,
                        next_at: None,
                    },
                    "dead",
                )
            }
            SendOutcome::Skipped(reason) => {
                info!(delivery_id = %d.id, kind = d.kind.as_str(), reason = %reason, "delivery skipped");
                (AttemptOutcome::Skipped { reason }, "skipped")
            }
            SendOutcome::ResolvedElsewhere { status, detail } => {
                info!(delivery_id = %d.id, kind = d.kind.as_str(), detail = %detail, "resolved elsewhere; not retried");
                (
                    AttemptOutcome::ResolvedElsewhere { status, detail },
                    "resolved_elsewhere",
                )
            }
        };
        metrics::counter!("hitlhook_deliveries_total", "kind" => d.kind.as_str(), "outcome" => label).increment(1);
        metrics::histogram!("hitlhook_delivery_duration_seconds", "kind" => d.kind.as_str())
            .record(started.elapsed().as_secs_f64());
        match self.store.record_attempt(&d, record, now).await {
            Ok(true) if label == "dead" || label == "resolved_elsewhere" => self.hub.committed(),
            Ok(true) => {}
            Ok(false) => {
                warn!(delivery_id = %d.id, "the lease expired before the outcome was recorded; the delivery will be attempted again");
            }
            Err(e) => {
                error!(delivery_id = %d.id, error = ?e, "recording a delivery outcome failed; it will be attempted again when its lease ends");
            }
        }
    }
}

/// What request handlers need from the delivery engine.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    /// Wakes the local worker after enqueueing.
    pub wake: Wake,
    /// Vets subscriber URLs at creation.
    pub guard: Arc<ssrf::Guard>,
    /// Signs and verifies email decision links.
    pub links: crate::security::links::LinkSigner,
    /// The public URL of this server, for links.
    pub base_url: String,
    /// Verifies Slack interactions; `None` refuses them.
    pub slack_signing_secret: Option<crate::config::Secret>,
    /// Slack user ids allowed to decide; empty means anyone.
    pub slack_allowed_users: Vec<String>,
    /// A bot token is set: modals can be opened and messages are edited by the store's plan.
    pub slack_bot: bool,
    /// The guarded outbound client, for calls made while answering a request (AMP kickoffs).
    pub outbound: http::Outbound,
}
