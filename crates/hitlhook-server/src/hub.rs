//! The change feed: a tail of the events table. Every write path (ingest, decisions, the
//! sweeper, later the delivery worker) calls [`Hub::committed`] after its commit; one task then
//! reads the new events in sequence order and (1) wakes long-poll waiters of checkpoints that
//! closed and (2) broadcasts each event to live subscribers (WebSocket, SSE). The database stays
//! the single source of truth: a subscriber that falls behind replays from it by sequence number.
//!
//! With several nodes on PostgreSQL, other nodes' commits are seen by polling, and a sequence gap
//! (a transaction still in flight elsewhere, or a rolled-back insert) is waited for briefly so
//! events are published in order without being skipped.

use std::ops::Deref;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use hitlhook_store::{EventQuery, Order, Store, StoredEvent};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::waiters::Waiters;

/// Live subscribers may fall this many events behind before they are told to resync.
const CHANNEL_CAPACITY: usize = 4096;
/// Events read from the store per round.
const READ_BATCH: u32 = 1000;
/// How long a sequence gap is waited for before it is taken as a rolled-back insert.
const GAP_GRACE: Duration = Duration::from_secs(2);

/// A published event and its live-stream message, serialised once by the first subscriber that
/// sends it and then shared (a reference count, not a copy) by every other: with 10,000
/// subscribers, one serialisation per event instead of 10,000.
#[derive(Debug)]
pub struct Published {
    event: StoredEvent,
    message: OnceLock<Utf8Bytes>,
}

impl Published {
    #[must_use]
    pub fn new(event: StoredEvent) -> Self {
        Published {
            event,
            message: OnceLock::new(),
        }
    }

    /// The message every subscriber sends for this event; `make` runs at most once.
    pub fn shared_message(&self, make: impl FnOnce(&StoredEvent) -> String) -> Utf8Bytes {
        self.message
            .get_or_init(|| Utf8Bytes::from(make(&self.event)))
            .clone()
    }
}

impl Deref for Published {
    type Target = StoredEvent;

    fn deref(&self) -> &StoredEvent {
        &self.event
    }
}

pub struct Hub {
    sender: broadcast::Sender<Arc<Published>>,
    committed: Notify,
    published: AtomicI64,
}

impl Hub {
    /// A hub that will publish events after `start_seq` (the store's high-water mark at start).
    #[must_use]
    pub fn new(start_seq: i64) -> Self {
        Hub {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            committed: Notify::new(),
            published: AtomicI64::new(start_seq),
        }
    }

    /// Tells the tail task that something was committed.
    pub fn committed(&self) {
        self.committed.notify_one();
    }

    /// A live feed of events published from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.sender.subscribe()
    }

    /// The sequence number of the last published event.
    #[must_use]
    pub fn published_seq(&self) -> i64 {
        self.published.load(Ordering::Acquire)
    }

    /// Runs the tail until cancelled. `poll` re-reads the store on a timer (several nodes).
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        waiters: Arc<Waiters>,
        poll: Option<Duration>,
        cancel: CancellationToken,
    ) {
        let mut gap_seen: Option<(i64, Instant)> = None;
        loop {
            let retry_gap_soon = match self
                .publish_new(store.as_ref(), &waiters, &mut gap_seen)
                .await
            {
                Ok(gap) => gap,
                Err(e) => {
                    warn!(error = ?e, "reading new events failed; retrying");
                    true
                }
            };
            let wait = if retry_gap_soon {
                Some(Duration::from_millis(20))
            } else {
                poll
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.committed.notified() => {}
                () = sleep_or_forever(wait) => {}
            }
        }
    }

    /// Publishes everything committed since the last call; `Ok(true)` when stopped at a gap.
    async fn publish_new(
        &self,
        store: &dyn Store,
        waiters: &Waiters,
        gap_seen: &mut Option<(i64, Instant)>,
    ) -> anyhow::Result<bool> {
        loop {
            let after = self.published_seq();
            let page = store
                .list_events(&EventQuery {
                    order: Order::OldestFirst,
                    cursor: Some(after),
                    limit: READ_BATCH,
                    ..EventQuery::default()
                })
                .await?;
            let mut last = after;
            for event in page.items {
                if event.seq != last + 1 {
                    let first_seen = match gap_seen {
                        Some((seq, at)) if *seq == last + 1 => *at,
                        _ => {
                            *gap_seen = Some((last + 1, Instant::now()));
                            Instant::now()
                        }
                    };
                    if first_seen.elapsed() < GAP_GRACE {
                        return Ok(true);
                    }
                }
                *gap_seen = None;
                last = event.seq;
                self.published.store(last, Ordering::Release);
                if is_closing(&event.event_type)
                    && let Some(id) = &event.checkpoint_id
                {
                    waiters.wake(id);
                }
                // No subscribers is fine: the event is in the store for whoever comes later.
                let _ = self.sender.send(Arc::new(Published::new(event)));
            }
            if page.next_cursor.is_none() {
                return Ok(false);
            }
        }
    }
}

fn is_closing(event_type: &str) -> bool {
    matches!(
        event_type,
        "checkpoint.decided" | "checkpoint.expired" | "checkpoint.cancelled"
    )
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
