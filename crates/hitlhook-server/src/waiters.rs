//! Long-poll waiters: clients blocked on `GET /webhook/checkpoint/{id}?wait=` park here and are
//! woken when that checkpoint closes. One `Notify` per watched checkpoint, so a decision wakes its
//! own waiters only; thousands of parked waiters cost a map entry and a future each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The registry of checkpoints somebody is waiting on.
#[derive(Debug, Default)]
pub struct Waiters {
    watched: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A registration; dropping it unregisters when it is the last one for its checkpoint.
pub struct WaitGuard<'a> {
    waiters: &'a Waiters,
    id: String,
    pub notify: Arc<Notify>,
}

impl Waiters {
    /// Registers interest in `id`. Create the `notified()` future from the guard *before*
    /// reading the checkpoint, so a decision landing in between is not missed.
    pub fn watch(&self, id: &str) -> WaitGuard<'_> {
        let mut map = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let notify = Arc::clone(map.entry(id.to_owned()).or_default());
        WaitGuard {
            waiters: self,
            id: id.to_owned(),
            notify,
        }
    }

    /// Wakes everybody waiting on `id`.
    pub fn wake(&self, id: &str) {
        let map = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = map.get(id) {
            notify.notify_waiters();
        }
    }

    /// Number of checkpoints being waited on (for metrics).
    pub fn watched(&self) -> usize {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .waiters
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two references left: the map's and ours. Nobody else waits, so forget the entry.
        if Arc::strong_count(&self.notify) == 2 {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_only_the_right_waiters_and_cleans_up() {
        let waiters = Arc::new(Waiters::default());
        let a = waiters.watch("a");
        let b = waiters.watch("b");
        {
            let wait_a = a.notify.notified();
            let wait_b = b.notify.notified();
            tokio::pin!(wait_a, wait_b);
            wait_a.as_mut().enable();
            wait_b.as_mut().enable();
            waiters.wake("a");
            assert!(
                tokio::time::timeout(Duration::from_millis(50), wait_a)
                    .await
                    .is_ok()
            );
            assert!(
                tokio::time::timeout(Duration::from_millis(50), wait_b)
                    .await
                    .is_err()
            );
        }
        let a2 = waiters.watch("a");
        drop(a);
        assert_eq!(waiters.watched(), 2);
        drop((a2, b));
        assert_eq!(waiters.watched(), 0);
    }
}
