//! The change feed: a tail of the events table. Every write path (ingest, decisions, the
//! sweeper, later the delivery worker) calls [`Hub::committed`] after its commit; one task then
//! reads the new events in sequence order and (1) wakes long-poll waiters of checkpoints that
//! closed and (2) broadcasts each event to live subscribers (WebSocket, SSE). The database stays
//! the single source of truth: a subscriber that falls behind replays from it by sequence number.
//!
//! With several nodes on PostgreSQL, other nodes' commits are seen by polling, and a sequence gap
//! (a transaction still in flight elsewhere, or a rolled-back insert) is waited for briefly so
//! events are published in order without being skipped.
//!
//! The ingest writer hands over the events it has just committed ([`Hub::committed_events`]), so
//! the busiest path is published without reading its own rows back (profiled: reading them back
//! cost about a sixth of the server's CPU under ingest load). Handed-over events are published
//! only where they continue the sequence exactly; anything else is read from the store.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
/// Handed-over events kept for the tail, at most; past that they are read from the store.
const HANDED_MAX: usize = 8192;

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
    /// Something was committed that only the store can tell (set by [`Hub::committed`]).
    unread: AtomicBool,
    /// Events the ingest writer committed, in sequence order, not yet published.
    handed: Mutex<Vec<StoredEvent>>,
}

impl Hub {
    /// A hub that will publish events after `start_seq` (the store's high-water mark at start).
    #[must_use]
    pub fn new(start_seq: i64) -> Self {
        Hub {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            committed: Notify::new(),
            published: AtomicI64::new(start_seq),
            unread: AtomicBool::new(true),
            handed: Mutex::new(Vec::new()),
        }
    }

    /// Tells the tail task that something was committed: it reads the new events from the store.
    pub fn committed(&self) {
        self.unread.store(true, Ordering::Release);
        self.committed.notify_one();
    }

    /// Tells the tail task that these events, and nothing else, were just committed by one
    /// transaction, in sequence order. It publishes them as they are when they follow the last
    /// published event, and reads the store otherwise.
    pub fn committed_events(&self, events: Vec<StoredEvent>) {
        let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        if handed.len() + events.len() > HANDED_MAX {
            handed.clear();
            self.unread.store(true, Ordering::Release);
        } else {
            handed.extend(events);
        }
        drop(handed);
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
                // The store is read again however the loop wakes next.
                self.unread.store(true, Ordering::Release);
                Some(Duration::from_millis(20))
            } else {
                poll
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.committed.notified() => {}
                // Another node's commits, or a gap to look at again: only the store knows.
                () = sleep_or_forever(wait) => self.unread.store(true, Ordering::Release),
            }
        }
    }

    /// Publishes one event in sequence: wakes the checkpoint's waiters if it closed one.
    fn publish(&self, event: StoredEvent, waiters: &Waiters) {
        self.published.store(event.seq, Ordering::Release);
        if is_closing(&event.event_type)
            && let Some(id) = &event.checkpoint_id
        {
            waiters.wake(id);
        }
        // No subscribers is fine: the event is in the store for whoever comes later.
        let _ = self.sender.send(Arc::new(Published::new(event)));
    }

    /// Publishes the handed-over events that continue the sequence; on a break in it (another
    /// writer's events in between) leaves the rest to the store.
    fn publish_handed(&self, waiters: &Waiters) {
        let handed = std::mem::take(&mut *self.handed.lock().unwrap_or_else(|p| p.into_inner()));
        for event in handed {
            let last = self.published_seq();
            if event.seq <= last {
                continue;
            }
            if event.seq != last + 1 {
                self.unread.store(true, Ordering::Release);
                return;
            }
            self.publish(event, waiters);
        }
    }

    /// Publishes everything committed since the last call; `Ok(true)` when stopped at a gap.
    async fn publish_new(
        &self,
        store: &dyn Store,
        waiters: &Waiters,
        gap_seen: &mut Option<(i64, Instant)>,
    ) -> anyhow::Result<bool> {
        self.publish_handed(waiters);
        if !self.unread.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
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
                self.publish(event, waiters);
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
