//! SQLite's ingest writer: a thread of its own with a second connection and cached prepared
//! statements, so a batch costs one hand-off instead of a driver round trip per statement and
//! per returned row. Profiled on one core: the sqlx path spent about two thirds of its CPU on
//! those hand-offs (a thread switch each), argument conversions and copies, not in SQLite.
//!
//! It writes the common batch (new events, new checkpoints, no execution ending with pending
//! checkpoints) exactly as `batch.rs` would. Anything else (a redelivery, an id repeated within
//! the batch, an AMP checkpoint, a cascade) it declines before writing anything, and the caller
//! runs the general path. The caller holds the sqlx writer connection, the process's write lock,
//! while this thread writes: the two connections never wait on each other's `SQLITE_BUSY`.
//!
//! Durability is pipelined: the thread commits without waiting for the disk
//! (`synchronous=NORMAL` on its connection only) and hands the commit to a second thread, which
//! syncs the WAL file once for every commit queued behind it and only then tells their callers.
//! A batch's callers are answered after a sync that began after its commit, so every answer is
//! as durable as with `synchronous=FULL`; meanwhile the next batch is already being written
//! instead of the thread sleeping in `fsync` (measured: about a fifth of its wall time).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use hitlhook_domain::action;
use hitlhook_domain::{
    Execution, ExecutionStatus, NewDelivery, Occurrence, SubscriptionFilter, Timestamp,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::model::{IngestItem, IngestOutcome, IngestRejection, Receipt};
use crate::outbox::{INSERT_DELIVERY, OutboxSettings};
use crate::rows::{self, EXECUTION_COLUMNS};
use crate::writes::{EXECUTION_UPSERT_HEAD, EXECUTION_UPSERT_TAIL, new_checkpoint_id};
use crate::{StoreError, StoreResult};

/// A batch as written: committed, and on disk once `synced` says so.
pub(crate) struct Written {
    pub outcomes: Vec<IngestOutcome>,
    /// Deliveries inserted with it (for `Store::deliveries_planned`).
    pub deliveries: u64,
    pub synced: WalSynced,
}

/// What the sync thread tells each commit waiting for it: synced, or why not.
type SyncReply = oneshot::Sender<Result<(), String>>;

/// Resolves once a sync of the WAL that began after a given moment (a commit) has finished.
pub(crate) struct WalSynced {
    synced: oneshot::Receiver<Result<(), String>>,
    wal: Arc<Path>,
}

impl WalSynced {
    pub(crate) async fn wait(self) -> StoreResult<()> {
        let cause = match self.synced.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(cause)) => cause,
            Err(_) => "the sync thread has stopped".to_owned(),
        };
        Err(StoreError::NotDurable {
            path: self.wal.display().to_string(),
            cause,
        })
    }
}

struct Job {
    items: Vec<IngestItem>,
    outbox: Arc<OutboxSettings>,
    reply: oneshot::Sender<StoreResult<Option<Written>>>,
}

/// A handle to the writer thread; the thread ends when the handle is dropped.
pub(crate) struct SqliteIngest {
    jobs: mpsc::Sender<Job>,
    sync: Syncer,
}

/// The sync thread's queue, and its first failure: once a sync has failed nothing is known to
/// be durable any more (the kernel may have dropped the dirty pages it could not write, and the
/// WAL's chained checksums end recovery at the first lost frame), so every later sync fails too
/// and the store refuses writes until restarted.
#[derive(Clone)]
struct Syncer {
    queue: mpsc::Sender<SyncReply>,
    failed: Arc<std::sync::OnceLock<String>>,
    wal: Arc<Path>,
}

impl Syncer {
    /// A future that resolves once a sync that begins after this call has finished: it covers
    /// every commit made before the call, by any connection.
    fn after_now(&self) -> WalSynced {
        let (tell, synced) = oneshot::channel();
        // A stopped sync thread drops `tell`: the caller hears it as failure.
        let _ = self.queue.send(tell);
        WalSynced {
            synced,
            wal: Arc::clone(&self.wal),
        }
    }
}

impl SqliteIngest {
    /// Opens `path` (which sqlx has already created) with `pragmas` (`SQLITE_INGEST_PRAGMAS`), and
    /// starts the writer and sync threads.
    pub(crate) fn start(path: &Path, pragmas: &str) -> StoreResult<Self> {
        // Never create: a path sqlx spells differently (percent escapes) must fail here rather
        // than give the thread an empty database of its own.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.execute_batch(pragmas)?;
        conn.set_prepared_statement_cache_capacity(16);
        let wal: Arc<Path> = Arc::from(wal_path(path));
        let sync = start_sync_thread(Arc::clone(&wal))?;
        let syncer = sync.clone();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-ingest".into())
            .spawn(move || {
                for job in queue {
                    let result = write(&mut conn, &job.items, &job.outbox).map(|written| {
                        // Asked only now, after the commit: the sync it waits for covers it.
                        written.map(|(outcomes, deliveries)| Written {
                            outcomes,
                            deliveries,
                            synced: syncer.after_now(),
                        })
                    });
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the ingest thread: {e}")))?;
        Ok(SqliteIngest { jobs, sync })
    }

    /// Resolves once everything committed so far, by any connection, is on disk. A write that
    /// committed through another connection, or wrote nothing (a redelivery answered from the
    /// store), may only be acknowledged after this: an earlier batch of this thread that it
    /// answers for may still be waiting for its sync.
    pub(crate) fn synced_after_now(&self) -> WalSynced {
        self.sync.after_now()
    }

    /// Why writes are refused: a sync of the WAL has failed since the server started.
    pub(crate) fn failure(&self) -> Option<StoreError> {
        self.sync.failed.get().map(|cause| StoreError::NotDurable {
            path: self.sync.wal.display().to_string(),
            cause: format!("{cause}; writes are refused until the server is restarted"),
        })
    }

    /// Writes `items` in one committed transaction, or declines (`None`, nothing written). The
    /// caller must wait for `Written::synced` before telling anyone the batch is stored.
    pub(crate) async fn write(
        &self,
        items: &[IngestItem],
        outbox: Arc<OutboxSettings>,
    ) -> StoreResult<Option<Written>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Corrupt("the SQLite ingest thread has stopped".into());
        self.jobs
            .send(Job {
                items: items.to_vec(),
                outbox,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// SQLite's write-ahead log beside the database file.
fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// The thread that makes commits durable: it takes every commit waiting, syncs the WAL once
/// (`fdatasync` through a descriptor of its own: it flushes the file, whoever wrote it) and
/// tells them all. After a failed sync it syncs no more and fails every request (see `Syncer`).
fn start_sync_thread(wal: Arc<Path>) -> StoreResult<Syncer> {
    let (queue, waiting) = mpsc::channel::<SyncReply>();
    let failed: Arc<std::sync::OnceLock<String>> = Arc::default();
    let syncer = Syncer {
        queue,
        failed: Arc::clone(&failed),
        wal: Arc::clone(&wal),
    };
    std::thread::Builder::new()
        .name("sqlite-sync".into())
        .spawn(move || {
            while let Ok(first) = waiting.recv() {
                let mut group = vec![first];
                group.extend(waiting.try_iter());
                let synced = match failed.get() {
                    Some(cause) => Err(format!("an earlier sync failed: {cause}")),
                    None => std::fs::File::open(&wal)
                        .and_then(|f| f.sync_data())
                        .map_err(|e| e.to_string()),
                };
                if let Err(e) = &synced
                    && failed.set(e.clone()).is_ok()
                {
                    tracing::error!(wal = %wal.display(), error = %e, "syncing the SQLite WAL failed: the writes it holds are not known to be on disk, and every write is refused until the server is restarted; check the disk and the file system");
                }
                for tell in group {
                    let _ = tell.send(synced.clone());
                }
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the WAL sync thread: {e}")))?;
    Ok(syncer)
}

/// Commits the batch (outcomes and deliveries planned), or declines it (`None`).
fn write(
    conn: &mut Connection,
    items: &[IngestItem],
    outbox: &OutboxSettings,
) -> StoreResult<Option<(Vec<IngestOutcome>, u64)>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Declining drops `tx`, which rolls back (nothing was written yet).
    if !is_common(&tx, items)? {
        return Ok(None);
    }
    let Some(written) = write_common(&tx, items, outbox)? else {
        return Ok(None);
    };
    tx.commit()?;
    Ok(Some(written))
}

/// Every event and every checkpoint id is new, and none repeats within the batch; no AMP
/// checkpoint or escalation (their origin rows and emails are the general path's).
fn is_common(c: &Connection, items: &[IngestItem]) -> StoreResult<bool> {
    let mut event_known = c.prepare_cached("select 1 from events where event_key = ?1")?;
    let mut checkpoint_known = c.prepare_cached("select 1 from checkpoints where id = ?1")?;
    let mut events = HashSet::new();
    let mut checkpoints = HashSet::new();
    for item in items {
        let spec = item.envelope.checkpoint.as_ref();
        if spec.is_some_and(|s| s.origin.is_some())
            || !item.envelope.escalate_to.is_empty()
            || item.envelope.escalated_callback.is_some()
            || !events.insert(item.identity.0.as_str())
            || event_known.exists([&item.identity.0])?
        {
            return Ok(false);
        }
        if let Some(id) = spec.and_then(|s| s.id.as_deref())
            && (!checkpoints.insert(id) || checkpoint_known.exists([id])?)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An execution as the batch leaves it.
struct ExecState {
    execution: Execution,
    /// The seq of its first event; `None` until this batch writes the event that creates it.
    first_seq: Option<i64>,
    dirty: bool,
}

/// An execution's status change, for `execution.updated` deliveries.
struct StatusChange {
    execution: Execution,
    previous: Option<ExecutionStatus>,
    at: Timestamp,
}

/// Writes a batch `is_common` accepted; `None` if an event ends an execution that has pending
/// checkpoints (the cascade is the general path's).
fn write_common(
    c: &Connection,
    items: &[IngestItem],
    outbox: &OutboxSettings,
) -> StoreResult<Option<(Vec<IngestOutcome>, u64)>> {
    let mut load_execution = c.prepare_cached(&format!(
        "select {EXECUTION_COLUMNS}, created_seq from executions where kickoff_id = ?1"
    ))?;
    let mut insert_event = c.prepare_cached(
        "insert into events (event_key, event_type, kickoff_id, checkpoint_id, source, received_at, \
         occurred_at, payload) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_checkpoint = c.prepare_cached(
        "insert into checkpoints (id, name, kickoff_id, context, allowed_actions, status, created_at, \
         expires_at, on_timeout, created_seq) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut executions: HashMap<&str, ExecState> = HashMap::new();
    let mut changes = Vec::new();
    let mut outcomes = Vec::with_capacity(items.len());

    for item in items {
        let env = &item.envelope;
        let mut checkpoint = match &env.checkpoint {
            None => None,
            Some(spec) => {
                match spec
                    .clone()
                    .into_checkpoint(new_checkpoint_id(), item.received_at, 0)
                {
                    Ok(cp) => Some(Box::new(cp)),
                    Err(e) => {
                        outcomes.push(IngestOutcome::Rejected(IngestRejection::InvalidCheckpoint(
                            e,
                        )));
                        continue;
                    }
                }
            }
        };
        if let Some(kickoff) = env.kickoff_id.as_deref() {
            if !executions.contains_key(kickoff) {
                let stored = load_execution
                    .query_row([kickoff], stored_execution)
                    .optional()?;
                let state = match stored {
                    Some((status, mut execution, first_seq)) => {
                        execution.status = ExecutionStatus::parse(&status).ok_or_else(|| {
                            StoreError::Corrupt(format!("execution status: {status:?}"))
                        })?;
                        ExecState {
                            execution,
                            first_seq: Some(first_seq),
                            dirty: false,
                        }
                    }
                    None => ExecState {
                        execution: Execution::new(kickoff.to_owned(), item.received_at),
                        first_seq: None,
                        dirty: false,
                    },
                };
                executions.insert(kickoff, state);
            }
            let Some(state) = executions.get_mut(kickoff) else {
                continue;
            };
            let mut next = state.execution.clone();
            if next.on_event(&env.kind, item.received_at).cancel_pending {
                return Ok(None);
            }
            // New only when this very item creates it (as in the other paths).
            let previous = state.first_seq.map(|_| state.execution.status);
            if previous != Some(next.status) {
                changes.push(StatusChange {
                    execution: next.clone(),
                    previous,
                    at: item.received_at,
                });
            }
            state.execution = next;
            state.dirty = true;
        }
        let checkpoint_id = checkpoint
            .as_ref()
            .map(|cp| cp.id.clone())
            .or_else(|| env.checkpoint_ref.clone());
        let seq = insert_event.insert(params![
            item.identity.0,
            env.event_type,
            env.kickoff_id,
            checkpoint_id,
            item.source,
            item.received_at.millis(),
            env.occurred_at.map(Timestamp::millis),
            item.payload,
        ])?;
        if let Some(state) = env
            .kickoff_id
            .as_deref()
            .and_then(|k| executions.get_mut(k))
        {
            state.first_seq.get_or_insert(seq);
        }
        if let Some(cp) = checkpoint.as_mut() {
            cp.created_seq = seq;
            insert_checkpoint.execute(params![
                cp.id,
                cp.name,
                cp.kickoff_id,
                cp.context_json,
                action::join(&cp.allowed_actions),
                cp.status.as_str(),
                cp.created_at.millis(),
                cp.expires_at.map(Timestamp::millis),
                cp.on_timeout.map(|a| a.as_str()),
                cp.created_seq,
            ])?;
        }
        outcomes.push(IngestOutcome::Accepted {
            receipt: Receipt {
                seq,
                identity: item.identity.0.clone(),
                event_type: env.event_type.clone(),
                kickoff_id: env.kickoff_id.clone(),
                checkpoint_id,
            },
            created: checkpoint,
            closed: Vec::new(),
        });
    }

    let mut upsert = c.prepare_cached(&format!(
        "{EXECUTION_UPSERT_HEAD} values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         {EXECUTION_UPSERT_TAIL}"
    ))?;
    for state in executions.values().filter(|s| s.dirty) {
        let (ex, first_seq) = (&state.execution, state.first_seq);
        upsert.execute(params![
            ex.kickoff_id,
            ex.status.as_str(),
            ex.events_total,
            ex.tasks_started,
            ex.tasks_completed,
            ex.tasks_failed,
            ex.steps_completed,
            ex.checkpoints_total,
            ex.checkpoints_pending,
            ex.started_at.millis(),
            ex.updated_at.millis(),
            ex.finished_at.map(Timestamp::millis),
            first_seq,
        ])?;
    }

    let deliveries = plan_deliveries(c, items, &outcomes, &changes, outbox)?;
    Ok(Some((outcomes, deliveries)))
}

/// The deliveries the batch causes, in the order the other paths plan them: each created
/// checkpoint's, then each execution status change's.
fn plan_deliveries(
    c: &Connection,
    items: &[IngestItem],
    outcomes: &[IngestOutcome],
    changes: &[StatusChange],
    outbox: &OutboxSettings,
) -> StoreResult<u64> {
    let subscribers = active_filters(c)?;
    if subscribers.is_empty() && outbox.plan.is_empty() {
        return Ok(0);
    }
    let mut occurrences = Vec::new();
    for (item, outcome) in items.iter().zip(outcomes) {
        if let IngestOutcome::Accepted {
            created: Some(checkpoint),
            ..
        } = outcome
        {
            let spec = item.envelope.checkpoint.as_ref();
            let recipients = spec.map_or(&[][..], |s| &s.recipients[..]);
            let occurrence = Occurrence::CheckpointCreated {
                checkpoint,
                recipients,
            };
            occurrences.push((occurrence, item.received_at));
        }
    }
    for change in changes {
        let occurrence = Occurrence::ExecutionChanged {
            execution: &change.execution,
            previous: change.previous,
        };
        occurrences.push((occurrence, change.at));
    }
    let planned: Vec<(NewDelivery, Timestamp)> = occurrences
        .iter()
        .flat_map(|(occurrence, at)| {
            let deliveries = outbox.plan.plan(occurrence, &subscribers, *at);
            deliveries.into_iter().map(|d| (d, *at))
        })
        .collect();
    let mut insert = c.prepare_cached(INSERT_DELIVERY)?;
    for (d, now) in &planned {
        let max = d.max_attempts.unwrap_or(outbox.max_attempts).max(1);
        insert.execute(params![
            uuid::Uuid::now_v7().to_string(),
            d.kind.as_str(),
            d.checkpoint_id,
            d.kickoff_id,
            d.event_type,
            d.target,
            d.payload,
            i64::from(max),
            now.millis(),
        ])?;
    }
    Ok(planned.len() as u64)
}

fn active_filters(c: &Connection) -> StoreResult<Vec<SubscriptionFilter>> {
    let mut select =
        c.prepare_cached("select id, event_types from subscriptions where disabled_at is null")?;
    let filters = select
        .query_map([], |row| {
            Ok(SubscriptionFilter {
                id: row.get(0)?,
                event_types: rows::event_types(&row.get::<_, String>(1)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(filters)
}

/// A stored execution row: its status text (parsed by the caller), the execution with a
/// placeholder status, and its first event's seq.
fn stored_execution(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Execution, i64)> {
    Ok((
        row.get(1)?,
        Execution {
            kickoff_id: row.get(0)?,
            status: ExecutionStatus::Running,
            events_total: row.get(2)?,
            tasks_started: row.get(3)?,
            tasks_completed: row.get(4)?,
            tasks_failed: row.get(5)?,
            steps_completed: row.get(6)?,
            checkpoints_total: row.get(7)?,
            checkpoints_pending: row.get(8)?,
            started_at: Timestamp(row.get(9)?),
            updated_at: Timestamp(row.get(10)?),
            finished_at: row.get::<_, Option<i64>>(11)?.map(Timestamp),
        },
        row.get(12)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_sync_is_reported_and_every_later_sync_fails_too() {
        let dir = std::env::temp_dir().join(format!("hitlhook-nosync-{}", std::process::id()));
        let wal: Arc<Path> = Arc::from(dir.join("hitlhook.db-wal"));
        let sync = start_sync_thread(Arc::clone(&wal)).expect("thread");
        let error = sync.after_now().wait().await.expect_err("no such file");
        assert!(
            matches!(&error, StoreError::NotDurable { path, .. } if path.ends_with("hitlhook.db-wal")),
            "{error}"
        );
        // Sticky: the WAL appearing afterwards does not make anything durable again.
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(&wal, b"frames").expect("wal");
        let again = sync.after_now().wait().await.expect_err("still failed");
        assert!(
            again.to_string().contains("an earlier sync failed"),
            "{again}"
        );
        assert!(sync.failed.get().is_some());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn one_sync_answers_every_commit_waiting_for_it() {
        let dir = std::env::temp_dir().join(format!("hitlhook-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let wal: Arc<Path> = Arc::from(dir.join("test.db-wal"));
        std::fs::write(&wal, b"frames").expect("wal");
        let sync = start_sync_thread(Arc::clone(&wal)).expect("thread");
        let waiting: Vec<_> = (0..5).map(|_| sync.after_now()).collect();
        for durable in waiting {
            durable.wait().await.expect("synced");
        }
        assert!(sync.failed.get().is_none());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
