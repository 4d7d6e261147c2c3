//! The expiry sweeper: closes checkpoints whose `expires_at` has passed, applying their
//! `on_timeout` decision (by `system:timeout`) or marking them expired. The change feed then wakes
//! their waiters.

use std::sync::Arc;
use std::time::Duration;

use hitlhook_domain::Timestamp;
use hitlhook_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hub::Hub;

/// Checkpoints closed per transaction; a backlog is worked off in several rounds.
const SWEEP_BATCH: u32 = 500;

/// One sweep at `now`; returns how many checkpoints changed. Tests call this directly.
pub async fn sweep_once(store: &dyn Store, hub: &Hub, now: Timestamp) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let changed = store.expire_due(now, SWEEP_BATCH).await?;
        for cp in &changed {
            info!(checkpoint_id = %cp.id, status = cp.status.as_str(), "checkpoint expired");
            metrics::counter!("hitlhook_checkpoints_expired_total").increment(1);
        }
        if !changed.is_empty() {
            hub.committed();
        }
        total += changed.len();
        if changed.len() < SWEEP_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Runs [`sweep_once`] every `interval` until cancelled.
pub async fn run(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        if let Err(e) = sweep_once(store.as_ref(), &hub, Timestamp::now()).await {
            warn!(error = ?e, "expiry sweep failed; retrying");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
