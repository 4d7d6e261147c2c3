//! The ingest write path with group commit: handlers hand authenticated events to one writer
//! task, which takes every request queued (up to a batch limit) and commits them in a single
//! transaction. Under load many requests share one sync; alone, a request commits at once.
//! A handler answers only after its batch is committed and on disk, so every 2xx is durable;
//! the next batch may be written while the previous one is being synced. A request's events
//! (one, or an AMP batch) always go into the same transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hitlhook_store::{Durable, IngestItem, IngestOutcome, Store, StoreError, StoredEvent};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::hub::Hub;

/// Events written in one transaction, at most (a larger single request still goes alone).
pub const MAX_BATCH: usize = 256;
/// Requests queued before senders wait (backpressure instead of unbounded memory).
const QUEUE_DEPTH: usize = 8192;

type Answer = Result<Vec<IngestOutcome>, Arc<StoreError>>;
type Reply = oneshot::Sender<Answer>;

/// A handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<(Vec<IngestItem>, Reply)>,
    queued: Arc<AtomicUsize>,
}

impl Ingestor {
    /// Starts the writer task. It ends when every `Ingestor` handle is dropped, after draining.
    pub fn spawn(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let (queue, mut rx) = mpsc::channel::<(Vec<IngestItem>, Reply)>(QUEUE_DEPTH);
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queued);
        tokio::spawn(async move {
            let mut requests = Vec::with_capacity(MAX_BATCH);
            // No waiting for more: whatever queued while the last batch committed is the next
            // batch. (Holding a batch open for the rest of a wave of requests helped when each
            // commit was a driver round trip per statement; with SQLite's ingest thread it
            // gained nothing at 8, 64 and 256 connections and cost 4 % at 32.)
            while rx.recv_many(&mut requests, MAX_BATCH).await > 0 {
                let mut items = Vec::new();
                let mut replies = Vec::with_capacity(requests.len());
                for (request_items, reply) in requests.drain(..) {
                    replies.push((request_items.len(), reply));
                    items.extend(request_items);
                }
                counter.fetch_sub(items.len(), Ordering::Relaxed);
                metrics::histogram!("hitlhook_ingest_batch_size").record(items.len() as f64);
                match store.ingest_committed(&items).await {
                    // The next batch is written while this one reaches the disk; its requests
                    // are answered only once it has (SQLite's ingest thread; elsewhere the
                    // commit is already durable).
                    Ok((outcomes, durable)) => {
                        tokio::spawn(answer_when_durable(
                            durable,
                            Arc::clone(&hub),
                            (items, outcomes),
                            replies,
                        ));
                    }
                    Err(e) => {
                        error!(error = ?e, "ingest batch failed; nothing in it was stored");
                        fail(replies, e);
                    }
                }
            }
        });
        Ingestor { queue, queued }
    }

    /// Queues one request's events and waits for the transaction that holds them to commit.
    /// Outcomes come back in the same order as `items`.
    pub async fn submit(
        &self,
        items: Vec<IngestItem>,
    ) -> Result<Vec<IngestOutcome>, Arc<StoreError>> {
        let count = items.len();
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(count, Ordering::Relaxed);
        if self.queue.send((items, tx)).await.is_err() {
            self.queued.fetch_sub(count, Ordering::Relaxed);
            return Err(Arc::new(StoreError::Corrupt(
                "the ingest writer has stopped".into(),
            )));
        }
        rx.await.unwrap_or_else(|_| {
            Err(Arc::new(StoreError::Corrupt(
                "the ingest writer has stopped".into(),
            )))
        })
    }

    /// Events waiting to be written (the seed's `pending_events`).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// Answers a committed batch's requests once it is durable, and hands its events to the hub.
async fn answer_when_durable(
    durable: Durable,
    hub: Arc<Hub>,
    (items, outcomes): (Vec<IngestItem>, Vec<IngestOutcome>),
    replies: Vec<(usize, Reply)>,
) {
    if let Err(e) = durable.await {
        error!(error = ?e, "an ingest batch was committed but is not known to be on disk");
        // It is in the store all the same: let the tail read it.
        hub.committed();
        fail(replies, e);
        return;
    }
    match stored_events(items, &outcomes) {
        Some(events) => hub.committed_events(events),
        None => hub.committed(),
    }
    let mut outcomes = outcomes.into_iter();
    for (count, reply) in replies {
        let _ = reply.send(Ok(outcomes.by_ref().take(count).collect()));
    }
}

fn fail(replies: Vec<(usize, Reply)>, error: StoreError) {
    let error = Arc::new(error);
    for (_, reply) in replies {
        let _ = reply.send(Err(Arc::clone(&error)));
    }
}

/// The events a committed batch stored, in sequence order, for the change feed; `None` when the
/// transaction also wrote events of its own (an execution's end cancelling its checkpoints),
/// which only the store can tell.
fn stored_events(items: Vec<IngestItem>, outcomes: &[IngestOutcome]) -> Option<Vec<StoredEvent>> {
    let mut events = Vec::with_capacity(outcomes.len());
    for (item, outcome) in items.into_iter().zip(outcomes) {
        if let IngestOutcome::Accepted {
            receipt, closed, ..
        } = outcome
        {
            if !closed.is_empty() {
                return None;
            }
            // Stored as given; only the seq and a generated checkpoint id are the store's.
            events.push(StoredEvent {
                seq: receipt.seq,
                identity: item.identity.0,
                event_type: item.envelope.event_type,
                kickoff_id: item.envelope.kickoff_id,
                checkpoint_id: receipt.checkpoint_id.clone(),
                source: item.source,
                received_at: item.received_at,
                occurred_at: item.envelope.occurred_at,
                payload: item.payload,
            });
        }
    }
    events.sort_by_key(|e| e.seq);
    Some(events)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A batch whose sync is controlled by the test, with one request of no events.
    type Sync = oneshot::Sender<Result<(), StoreError>>;

    fn batch() -> (
        Sync,
        Durable,
        Vec<(usize, Reply)>,
        oneshot::Receiver<Answer>,
    ) {
        let (sync, synced) = oneshot::channel();
        let durable: Durable = Box::pin(async move {
            synced
                .await
                .unwrap_or_else(|_| Err(StoreError::Corrupt("test sync dropped".into())))
        });
        let (reply, answer) = oneshot::channel();
        (sync, durable, vec![(0, reply)], answer)
    }

    #[tokio::test]
    async fn requests_are_answered_only_once_their_batch_is_durable() {
        let (sync, durable, replies, mut answer) = batch();
        let hub = Arc::new(Hub::new(0));
        let task = tokio::spawn(answer_when_durable(
            durable,
            hub,
            (Vec::new(), Vec::new()),
            replies,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "answered before the batch was on disk"
        );
        sync.send(Ok(())).expect("waiting");
        task.await.expect("task");
        assert!(matches!(answer.await, Ok(Ok(outcomes)) if outcomes.is_empty()));
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_synced_is_answered_with_an_error() {
        let (sync, durable, replies, answer) = batch();
        sync.send(Err(StoreError::NotDurable {
            path: "hitlhook.db-wal".into(),
            cause: "Input/output error".into(),
        }))
        .expect("waiting");
        answer_when_durable(
            durable,
            Arc::new(Hub::new(0)),
            (Vec::new(), Vec::new()),
            replies,
        )
        .await;
        let error = answer.await.expect("answered").expect_err("not durable");
        assert!(error.to_string().contains("hitlhook.db-wal"), "{error}");
    }
}
