//! The ingest write path with group commit: handlers hand authenticated events to one writer
//! task, which takes everything queued (up to a batch limit) and commits it in a single
//! transaction. Under load many requests share one fsync; alone, a request commits at once.
//! A handler answers only after its batch has committed, so every 2xx is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hitlhook_store::{IngestItem, IngestOutcome, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use crate::hub::Hub;

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 256;
/// Events queued before senders wait (backpressure instead of unbounded memory).
const QUEUE_DEPTH: usize = 8192;

type Reply = oneshot::Sender<Result<IngestOutcome, Arc<StoreError>>>;

/// A handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<(IngestItem, Reply)>,
    queued: Arc<AtomicUsize>,
}

impl Ingestor {
    /// Starts the writer task. It ends when every `Ingestor` handle is dropped, after draining.
    pub fn spawn(store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        let (queue, mut rx) = mpsc::channel::<(IngestItem, Reply)>(QUEUE_DEPTH);
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queued);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                counter.fetch_sub(batch.len(), Ordering::Relaxed);
                metrics::histogram!("hitlhook_ingest_batch_size").record(batch.len() as f64);
                let (items, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                match store.ingest(items).await {
                    Ok(outcomes) => {
                        hub.committed();
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        error!(error = ?e, "ingest batch failed; nothing in it was stored");
                        let e = Arc::new(e);
                        for reply in replies {
                            let _ = reply.send(Err(Arc::clone(&e)));
                        }
                    }
                }
            }
        });
        Ingestor { queue, queued }
    }

    /// Queues one event and waits for its batch to commit.
    pub async fn submit(&self, item: IngestItem) -> Result<IngestOutcome, Arc<StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.send((item, tx)).await.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
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
