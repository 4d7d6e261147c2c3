//! The fast path of group commit: a whole batch of incoming events written with a handful of
//! multi-row statements instead of several statements per event. Every database round trip
//! costs a hop to the driver's connection thread; at thousands of events per second those hops,
//! not SQL, are the cost (profiled: about half of the CPU in context switches).
//!
//! The result is exactly what the per-event path in `writes.rs` computes, in the same order:
//! lookups are prefetched, the domain decides in memory, and rows are written in bulk. Two rare
//! cases leave the fast path: an event that ends an execution with pending checkpoints (a
//! cascade) is applied on its own through the per-event path, and any surprise (a concurrent
//! writer on another node) aborts the fast attempt so the caller replays the batch per event.

use std::collections::HashMap;

use hitlhook_domain::action;
use hitlhook_domain::{Checkpoint, Execution, ExecutionStatus, Occurrence, Timestamp};
use sqlx::{Acquire, AnyConnection, AssertSqlSafe, Row};

use crate::model::{IngestItem, IngestOutcome, IngestRejection, Receipt};
use crate::outbox::Planner;
use crate::reads::{Param, bind_all};
use crate::rows::{self, CHECKPOINT_COLUMNS, EXECUTION_COLUMNS};
use crate::sql::Backend;
use crate::writes::{Step, ingest_one, new_checkpoint_id, receipt_by_seq};
use crate::{StoreError, StoreResult};

/// Rows per multi-row statement: well under both backends' bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 100;

/// Why the fast path gave up; the caller replays the batch per event.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error("a concurrent writer touched the same rows")]
    Raced,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for FastPathError {
    fn from(e: sqlx::Error) -> Self {
        FastPathError::Store(e.into())
    }
}

/// What one item comes to, before sequence numbers are known.
enum Planned {
    Done(IngestOutcome),
    /// Accepted; written with the segment it belongs to.
    Accept {
        checkpoint: Option<Box<Checkpoint>>,
    },
    /// The same event or checkpoint as an accepted item earlier in this batch.
    DuplicateOf(usize),
}

/// In-memory state of an execution during the batch.
struct ExecState {
    execution: Execution,
    /// The seq of the execution's first event, once known (set for executions already stored).
    first_seq: Option<i64>,
    /// The batch item that created it, for new executions.
    first_item: Option<usize>,
    dirty: bool,
}

/// `rows` tuples of `cols` parameters. SQLite gets anonymous `?`: it looks a named parameter up
/// by scanning a list, which made binding a 1,000-parameter statement quadratic (10 % of the
/// server's CPU in the profile). PostgreSQL needs numbered `$n`.
fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols)
                .map(|c| match backend {
                    Backend::Sqlite => "?".to_owned(),
                    Backend::Postgres => format!("${}", r * cols + c),
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `select ... where column in (...)` over many keys, chunked.
async fn fetch_in(
    c: &mut AnyConnection,
    backend: Backend,
    select: &str,
    column: &str,
    keys: &[&str],
) -> StoreResult<Vec<sqlx::any::AnyRow>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT * 4) {
        let marks = placeholders(backend, 1, chunk.len());
        let sql = format!("{select} where {column} in {marks}");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(*key);
        }
        out.extend(query.fetch_all(&mut *c).await?);
    }
    Ok(out)
}

/// An execution's status change seen in the batch, for `execution.updated` deliveries.
struct StatusChange {
    execution: Execution,
    previous: Option<ExecutionStatus>,
    at: Timestamp,
}

/// Writes `items` inside the caller's transaction, with the deliveries they cause (planned by
/// `planner`, exactly as the per-event path does). On `Err` the caller must roll back.
pub async fn ingest_fast(
    c: &mut AnyConnection,
    backend: Backend,
    planner: &mut Planner,
    items: &[IngestItem],
) -> Result<Vec<IngestOutcome>, FastPathError> {
    let keys: Vec<&str> = items.iter().map(|i| i.identity.0.as_str()).collect();
    let mut known_events: HashMap<String, Receipt> = HashMap::new();
    for row in fetch_in(
        c,
        backend,
        "select seq, event_key, event_type, kickoff_id, checkpoint_id from events",
        "event_key",
        &keys,
    )
    .await?
    {
        let receipt = rows::receipt(&row)?;
        known_events.insert(receipt.identity.clone(), receipt);
    }
    let given_ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i.envelope.checkpoint.as_ref().and_then(|s| s.id.as_deref()))
        .collect();
    let mut known_checkpoints: HashMap<String, Checkpoint> = HashMap::new();
    let select = format!("select {CHECKPOINT_COLUMNS} from checkpoints");
    for row in fetch_in(c, backend, &select, "id", &given_ids).await? {
        let cp = rows::checkpoint(&row)?;
        known_checkpoints.insert(cp.id.clone(), cp);
    }
    let kickoffs: Vec<&str> = items
        .iter()
        .filter_map(|i| i.envelope.kickoff_id.as_deref())
        .collect();
    let mut executions: HashMap<String, ExecState> = HashMap::new();
    let select = format!("select {EXECUTION_COLUMNS}, created_seq from executions");
    for row in fetch_in(c, backend, &select, "kickoff_id", &kickoffs).await? {
        let execution = rows::execution(&row)?;
        let first_seq = Some(row.try_get::<i64, _>("created_seq")?);
        executions.insert(
            execution.kickoff_id.clone(),
            ExecState {
                execution,
                first_seq,
                first_item: None,
                dirty: false,
            },
        );
    }

    let mut planned: Vec<Planned> = Vec::with_capacity(items.len());
    let mut batch_events: HashMap<&str, usize> = HashMap::new();
    let mut batch_checkpoints: HashMap<String, usize> = HashMap::new();
    let mut segment: Vec<usize> = Vec::new();
    let mut seqs: HashMap<usize, i64> = HashMap::new();
    let mut changes: Vec<StatusChange> = Vec::new();

    for (i, item) in items.iter().enumerate() {
        let env = &item.envelope;
        if let Some(receipt) = known_events.get(&item.identity.0) {
            planned.push(Planned::Done(IngestOutcome::Duplicate(receipt.clone())));
            continue;
        }
        if let Some(&first) = batch_events.get(item.identity.0.as_str()) {
            planned.push(Planned::DuplicateOf(first));
            continue;
        }
        let mut checkpoint = None;
        if let Some(spec) = &env.checkpoint {
            if let Some(existing) = spec.id.as_ref().and_then(|id| known_checkpoints.get(id)) {
                planned.push(Planned::Done(if existing.same_request(spec) {
                    IngestOutcome::Duplicate(receipt_by_seq(c, existing.created_seq).await?)
                } else {
                    IngestOutcome::Rejected(IngestRejection::CheckpointConflict(
                        existing.id.clone(),
                    ))
                }));
                continue;
            }
            if let Some(&first) = spec.id.as_ref().and_then(|id| batch_checkpoints.get(id)) {
                let same = matches!(&planned[first], Planned::Accept { checkpoint: Some(cp) } if cp.same_request(spec));
                planned.push(if same {
                    Planned::DuplicateOf(first)
                } else {
                    Planned::Done(IngestOutcome::Rejected(
                        IngestRejection::CheckpointConflict(spec.id.clone().unwrap_or_default()),
                    ))
                });
                continue;
            }
            match spec
                .clone()
                .into_checkpoint(new_checkpoint_id(), item.received_at, 0)
            {
                Ok(cp) => checkpoint = Some(Box::new(cp)),
                Err(e) => {
                    planned.push(Planned::Done(IngestOutcome::Rejected(
                        IngestRejection::InvalidCheckpoint(e),
                    )));
                    continue;
                }
            }
        }
        if let Some(kickoff) = &env.kickoff_id {
            let state = executions
                .entry(kickoff.clone())
                .or_insert_with(|| ExecState {
                    execution: Execution::new(kickoff.clone(), item.received_at),
                    first_seq: None,
                    first_item: Some(i),
                    dirty: false,
                });
            let mut next = state.execution.clone();
            if next.on_event(&env.kind, item.received_at).cancel_pending {
                // The cascade reads and closes stored checkpoints: write what came before,
                // then apply this event alone through the exact per-event path.
                flush(
                    c,
                    backend,
                    items,
                    &mut planned,
                    &segment,
                    &mut executions,
                    &mut seqs,
                )
                .await?;
                segment.clear();
                let mut sp = (&mut *c).begin().await?;
                let outcome = match ingest_one(&mut sp, planner, item).await? {
                    Step::Keep(outcome) => {
                        sp.commit().await?;
                        outcome
                    }
                    Step::Discard(outcome) => {
                        sp.rollback().await?;
                        outcome
                    }
                };
                let reloaded = crate::writes::load_execution(c, kickoff)
                    .await?
                    .ok_or(FastPathError::Raced)?;
                if let Some(state) = executions.get_mut(kickoff) {
                    state.execution = reloaded;
                    state.dirty = false;
                }
                if let IngestOutcome::Accepted { receipt, .. } = &outcome {
                    seqs.insert(i, receipt.seq);
                    if let Some(state) = executions.get_mut(kickoff) {
                        state.first_seq.get_or_insert(receipt.seq);
                    }
                }
                batch_events.insert(&item.identity.0, i);
                planned.push(Planned::Done(outcome));
                continue;
            }
            // New only when this very item creates it (as in the per-event path).
            let created_here = state.first_item == Some(i) && state.first_seq.is_none();
            let before = (!created_here).then_some(state.execution.status);
            if before != Some(next.status) {
                changes.push(StatusChange {
                    execution: next.clone(),
                    previous: before,
                    at: item.received_at,
                });
            }
            state.execution = next;
            state.dirty = true;
        }
        if let Some(cp) = &checkpoint {
            batch_checkpoints.insert(cp.id.clone(), i);
        }
        batch_events.insert(&item.identity.0, i);
        planned.push(Planned::Accept { checkpoint });
        segment.push(i);
    }
    flush(
        c,
        backend,
        items,
        &mut planned,
        &segment,
        &mut executions,
        &mut seqs,
    )
    .await?;

    // Deliveries, in the same transaction, as the per-event path plans them.
    for (item, plan) in items.iter().zip(&planned) {
        let Planned::Accept { checkpoint } = plan else {
            continue;
        };
        let Some(cp) = checkpoint else {
            crate::writes::escalate(c, planner, &item.envelope, item.received_at).await?;
            continue;
        };
        let spec = item.envelope.checkpoint.as_ref();
        if let Some(origin) = spec.and_then(|s| s.origin.as_ref()) {
            crate::amp::save_origin(c, &cp.id, origin, item.received_at).await?;
        }
        let recipients = spec.map_or(&[][..], |spec| &spec.recipients[..]);
        let occurrence = Occurrence::CheckpointCreated {
            checkpoint: cp,
            recipients,
        };
        planner.emit(c, occurrence, item.received_at).await?;
    }
    for change in &changes {
        let occurrence = Occurrence::ExecutionChanged {
            execution: &change.execution,
            previous: change.previous,
        };
        planner.emit(c, occurrence, change.at).await?;
    }

    let mut outcomes: Vec<Option<IngestOutcome>> = Vec::with_capacity(items.len());
    for (i, plan) in planned.iter_mut().enumerate() {
        outcomes.push(match plan {
            Planned::Done(outcome) => Some(outcome.clone()),
            Planned::Accept { checkpoint } => {
                let env = &items[i].envelope;
                let seq = *seqs.get(&i).ok_or(FastPathError::Raced)?;
                let receipt = Receipt {
                    seq,
                    identity: items[i].identity.0.clone(),
                    event_type: env.event_type.clone(),
                    kickoff_id: env.kickoff_id.clone(),
                    checkpoint_id: checkpoint
                        .as_ref()
                        .map(|cp| cp.id.clone())
                        .or_else(|| env.checkpoint_ref.clone()),
                };
                Some(IngestOutcome::Accepted {
                    receipt,
                    created: checkpoint.take(),
                    closed: Vec::new(),
                })
            }
            Planned::DuplicateOf(_) => None,
        });
    }
    for i in 0..planned.len() {
        if let Planned::DuplicateOf(first) = planned[i] {
            let receipt = match &outcomes[first] {
                Some(
                    IngestOutcome::Accepted { receipt, .. } | IngestOutcome::Duplicate(receipt),
                ) => receipt.clone(),
                _ => return Err(FastPathError::Raced),
            };
            outcomes[i] = Some(IngestOutcome::Duplicate(receipt));
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or(FastPathError::Raced))
        .collect()
}

/// Writes the accepted items of `segment`: their events, their checkpoints, and the executions
/// they changed, with three multi-row statements (per hundred rows).
async fn flush(
    c: &mut AnyConnection,
    backend: Backend,
    items: &[IngestItem],
    planned: &mut [Planned],
    segment: &[usize],
    executions: &mut HashMap<String, ExecState>,
    seqs: &mut HashMap<usize, i64>,
) -> Result<(), FastPathError> {
    for chunk in segment.chunks(ROWS_PER_STATEMENT) {
        let mut params = Vec::with_capacity(chunk.len() * 8);
        for &i in chunk {
            let (item, env) = (&items[i], &items[i].envelope);
            let checkpoint_id = match &planned[i] {
                Planned::Accept { checkpoint } => checkpoint
                    .as_ref()
                    .map(|cp| cp.id.clone())
                    .or_else(|| env.checkpoint_ref.clone()),
                _ => None,
            };
            params.extend([
                Param::Text(item.identity.0.clone()),
                Param::Text(env.event_type.clone()),
                Param::OptText(env.kickoff_id.clone()),
                Param::OptText(checkpoint_id),
                Param::Text(item.source.clone()),
                Param::Int(item.received_at.millis()),
                Param::OptInt(env.occurred_at.map(Timestamp::millis)),
                Param::Text(item.payload.clone()),
            ]);
        }
        let sql = format!(
            "insert into events (event_key, event_type, kickoff_id, checkpoint_id, source, received_at, occurred_at, payload) \
             values {} on conflict (event_key) do nothing returning seq, event_key",
            placeholders(backend, chunk.len(), 8)
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), params)
            .fetch_all(&mut *c)
            .await?;
        let by_key: HashMap<String, i64> = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("event_key")?,
                    r.try_get::<i64, _>("seq")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        for &i in chunk {
            let seq = *by_key
                .get(&items[i].identity.0)
                .ok_or(FastPathError::Raced)?;
            seqs.insert(i, seq);
        }
    }

    for &i in segment {
        if let Planned::Accept {
            checkpoint: Some(cp),
        } = &mut planned[i]
        {
            cp.created_seq = seqs[&i];
        }
    }
    let checkpoints: Vec<&Checkpoint> = segment
        .iter()
        .filter_map(|&i| match &planned[i] {
            Planned::Accept {
                checkpoint: Some(cp),
            } => Some(cp.as_ref()),
            _ => None,
        })
        .collect();
    for chunk in checkpoints.chunks(ROWS_PER_STATEMENT) {
        let mut params = Vec::with_capacity(chunk.len() * 10);
        for cp in chunk {
            params.extend([
                Param::Text(cp.id.clone()),
                Param::Text(cp.name.clone()),
                Param::OptText(cp.kickoff_id.clone()),
                Param::Text(cp.context_json.clone()),
                Param::Text(action::join(&cp.allowed_actions)),
                Param::Text(cp.status.as_str().to_owned()),
                Param::Int(cp.created_at.millis()),
                Param::OptInt(cp.expires_at.map(Timestamp::millis)),
                Param::OptText(cp.on_timeout.map(|a| a.as_str().to_owned())),
                Param::Int(cp.created_seq),
            ]);
        }
        let sql = format!(
            "insert into checkpoints (id, name, kickoff_id, context, allowed_actions, status, created_at, expires_at, on_timeout, created_seq) \
             values {} on conflict (id) do nothing",
            placeholders(backend, chunk.len(), 10)
        );
        let done = bind_all(sqlx::query(AssertSqlSafe(sql)), params)
            .execute(&mut *c)
            .await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Err(FastPathError::Raced);
        }
    }

    let mut dirty: Vec<(Execution, i64)> = Vec::new();
    for state in executions.values_mut().filter(|s| s.dirty) {
        let first_seq = match (state.first_seq, state.first_item) {
            (Some(seq), _) => seq,
            (None, Some(i)) => *seqs.get(&i).ok_or(FastPathError::Raced)?,
            (None, None) => return Err(FastPathError::Raced),
        };
        state.first_seq = Some(first_seq);
        state.dirty = false;
        dirty.push((state.execution.clone(), first_seq));
    }
    for chunk in dirty.chunks(ROWS_PER_STATEMENT) {
        let mut params = Vec::with_capacity(chunk.len() * 13);
        for (ex, first_seq) in chunk {
            params.extend([
                Param::Text(ex.kickoff_id.clone()),
                Param::Text(ex.status.as_str().to_owned()),
                Param::Int(ex.events_total),
                Param::Int(ex.tasks_started),
                Param::Int(ex.tasks_completed),
                Param::Int(ex.tasks_failed),
                Param::Int(ex.steps_completed),
                Param::Int(ex.checkpoints_total),
                Param::Int(ex.checkpoints_pending),
                Param::Int(ex.started_at.millis()),
                Param::Int(ex.updated_at.millis()),
                Param::OptInt(ex.finished_at.map(Timestamp::millis)),
                Param::Int(*first_seq),
            ]);
        }
        let sql = format!(
            "{} values {} {}",
            crate::writes::EXECUTION_UPSERT_HEAD,
            placeholders(backend, chunk.len(), 13),
            crate::writes::EXECUTION_UPSERT_TAIL
        );
        bind_all(sqlx::query(AssertSqlSafe(sql)), params)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}
