//! Bulk seeding for the scale benchmark: a large history written straight into the real schema
//! (the migrations of [`crate::SqlStore`]) in big multi-row transactions, because a million
//! checkpoints through HTTP would take hours. Every value is built by the same domain code the
//! server runs — the envelope parser, the checkpoint spec, the decision and execution state
//! machines — so the rows are the ones ingest and decisions would have written; a test in the
//! CLI's suite compares them with rows written through the API.
//!
//! The shape: `checkpoints` spread evenly over `executions` (contiguous runs), each announced by
//! a signed `checkpoint.required` event; `pending` of them, spread evenly, stay pending and the
//! others are decided `continue` through the API, with their `checkpoint.decided` event.

use std::str::FromStr;

use hitlhook_domain::action;
use hitlhook_domain::execution::CheckpointClosed;
use hitlhook_domain::{
    Action, Checkpoint, Decided, DecisionRequest, EventEnvelope, EventIdentity, Execution,
    Timestamp,
};
use serde_json::json;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AssertSqlSafe, ConnectOptions, Connection, Executor};

use crate::reads::Param;
use crate::rows::{CHECKPOINT_COLUMNS, EVENT_COLUMNS};
use crate::sqlite_file::sqlite_url;
use crate::writes::EXECUTION_UPSERT_HEAD;
use crate::{SqlStore, Store, StoreError, StoreResult};

/// Bound parameters per multi-row `insert`. Small on purpose: sqlx's SQLite driver looks each
/// parameter's name up as it binds it, and SQLite finds it by a linear scan, so a statement
/// costs the square of its parameter count (at 3,600 parameters that lookup was 84% of the
/// seeding time).
const PARAMS_PER_INSERT: usize = 512;
/// Checkpoints per transaction.
const CHECKPOINTS_PER_TRANSACTION: u64 = 20_000;
/// The seeded history ends now and spans this long (ordering and time filters look real).
const HISTORY_MS: i64 = 30 * 24 * 3600 * 1000;

/// What to write.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub checkpoints: u64,
    /// How many stay pending (the others are decided).
    pub pending: u64,
    pub executions: u64,
    /// The `source` of the incoming events, as the server records a signed webhook.
    pub event_source: String,
    /// The API key label that decides (the server records `key:<name>`).
    pub decided_by: String,
}

/// The id of the `n`th seeded checkpoint (the sender's own id, as CrewAI flows give them).
#[must_use]
pub fn checkpoint_id(n: u64) -> String {
    format!("scale-cp-{n:07}")
}

/// The kickoff id of the `k`th seeded execution.
#[must_use]
pub fn kickoff_id(k: u64) -> String {
    format!("scale-run-{k:06}")
}

/// The `webhook-id` the `n`th `checkpoint.required` event was signed with.
#[must_use]
pub fn webhook_id(n: u64) -> String {
    format!("msg_seed_{n}")
}

/// The body of the `n`th `checkpoint.required` event, as a CrewAI flow would send it.
#[must_use]
pub fn required_payload(n: u64, kickoff: &str) -> String {
    let id = checkpoint_id(n);
    format!(
        r#"{{"event_type":"checkpoint.required","checkpoint_id":"{id}","checkpoint_name":"review_draft","kickoff_id":"{kickoff}","context":{{"draft":"Rivers carry sediment to the sea; deltas form where they slow.","score":0.87,"n":{n}}}}}"#
    )
}

impl SeedPlan {
    /// Which execution the `n`th checkpoint belongs to (contiguous runs of equal size).
    #[must_use]
    pub fn execution_of(&self, n: u64) -> u64 {
        n * self.executions / self.checkpoints
    }

    /// Whether the `n`th checkpoint stays pending (exactly `pending` of them, spread evenly).
    #[must_use]
    pub fn is_pending(&self, n: u64) -> bool {
        (n + 1) * self.pending / self.checkpoints != n * self.pending / self.checkpoints
    }

    fn check(&self) -> StoreResult<()> {
        let bad = |what: &str| Err(StoreError::Corrupt(format!("seed plan: {what}")));
        if self.checkpoints == 0 || self.executions == 0 {
            return bad("checkpoints and executions must be at least 1");
        }
        if self.executions > self.checkpoints || self.pending > self.checkpoints {
            return bad("executions and pending must not exceed checkpoints");
        }
        Ok(())
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub checkpoints: u64,
    pub pending: u64,
    pub executions: u64,
    pub events: u64,
}

/// The rows of one transaction, as bound parameters.
#[derive(Default)]
struct Rows {
    events: Vec<Vec<Param>>,
    checkpoints: Vec<Vec<Param>>,
    executions: Vec<Vec<Param>>,
}

/// Seeds an EMPTY database at `url` (migrating it first). `progress` is called after each
/// transaction with the number of checkpoints written so far.
pub async fn seed(
    url: &str,
    plan: &SeedPlan,
    mut progress: impl FnMut(u64),
) -> StoreResult<SeedReport> {
    plan.check()?;
    let store = SqlStore::open(url).await?;
    store.migrate().await?;
    let sqlite = url.starts_with("sqlite:");
    drop(store);
    let mut c = if sqlite {
        AnyConnectOptions::from_str(&sqlite_url(url)?)?
            .connect()
            .await?
    } else {
        AnyConnection::connect(url).await?
    };
    if sqlite {
        // Seeding is not a client's write: losing it to a crash only means seeding again.
        c.execute("PRAGMA synchronous = OFF").await?;
    }
    let existing: i64 = sqlx::query_scalar("select count(*) from checkpoints")
        .fetch_one(&mut c)
        .await?;
    if existing > 0 {
        return Err(StoreError::Duplicate(
            "seeding needs an empty database (this one has checkpoints)",
        ));
    }
    let last_seq: Option<i64> = sqlx::query_scalar("select max(seq) from events")
        .fetch_one(&mut c)
        .await?;
    let total_events = plan.checkpoints * 2 - plan.pending;
    let step = (HISTORY_MS / i64::try_from(total_events).unwrap_or(i64::MAX)).max(1);
    let mut writer = Writer {
        plan,
        seq: last_seq.unwrap_or(0),
        start: Timestamp::now().millis() - HISTORY_MS,
        step,
        events: 0,
    };
    let mut n = 0;
    while n < plan.checkpoints {
        // A transaction holds whole executions, so each execution row is written once.
        let mut end = (n + CHECKPOINTS_PER_TRANSACTION).min(plan.checkpoints);
        while end < plan.checkpoints && plan.execution_of(end) == plan.execution_of(end - 1) {
            end += 1;
        }
        let rows = writer.build(n, end)?;
        let mut tx = c.begin().await?;
        insert(&mut tx, "events", EVENT_COLUMNS, rows.events).await?;
        insert(&mut tx, "checkpoints", CHECKPOINT_COLUMNS, rows.checkpoints).await?;
        let head = EXECUTION_UPSERT_HEAD
            .strip_prefix("insert into executions (")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_default();
        insert(&mut tx, "executions", head, rows.executions).await?;
        tx.commit().await?;
        n = end;
        progress(n);
    }
    if sqlite {
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    } else {
        // Explicit seqs do not move the sequence: the server's next event must come after them.
        c.execute(
            "select setval(pg_get_serial_sequence('events', 'seq'), (select max(seq) from events))",
        )
        .await?;
        // What autovacuum would do shortly after such a load anyway.
        c.execute("analyze events, checkpoints, executions").await?;
    }
    c.close().await?;
    Ok(SeedReport {
        checkpoints: plan.checkpoints,
        pending: plan.pending,
        executions: plan.executions,
        events: writer.events,
    })
}

/// Bytes on disk: SQLite's file and WAL, or PostgreSQL's tables with their indexes and TOAST.
pub async fn size_bytes(url: &str) -> StoreResult<u64> {
    if url.starts_with("sqlite:") {
        let normalised = sqlite_url(url)?;
        let path = normalised
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let len = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
        return Ok(len(path.clone()) + len(format!("{path}-wal")));
    }
    let mut c = AnyConnection::connect(url).await?;
    let bytes: i64 = sqlx::query_scalar(
        "select cast(sum(pg_total_relation_size(t)) as bigint) from \
         unnest(array['events', 'checkpoints', 'executions', 'deliveries']) as t",
    )
    .fetch_one(&mut c)
    .await?;
    c.close().await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

struct Writer<'a> {
    plan: &'a SeedPlan,
    /// The last sequence number used.
    seq: i64,
    start: i64,
    step: i64,
    events: u64,
}

impl Writer<'_> {
    /// The next event's sequence number and time.
    fn next_event(&mut self) -> (i64, Timestamp) {
        self.seq += 1;
        self.events += 1;
        let at = self.start + i64::try_from(self.events).unwrap_or(i64::MAX) * self.step;
        (self.seq, Timestamp::from_millis(at))
    }

    /// The rows of checkpoints `from..to` (whole executions).
    fn build(&mut self, from: u64, to: u64) -> StoreResult<Rows> {
        let mut rows = Rows::default();
        let mut execution: Option<(Execution, i64)> = None;
        for n in from..to {
            let k = self.plan.execution_of(n);
            let kickoff = kickoff_id(k);
            if execution
                .as_ref()
                .is_some_and(|(ex, _)| ex.kickoff_id != kickoff)
                && let Some((ex, first)) = execution.take()
            {
                rows.executions.push(execution_row(&ex, first));
            }
            let (seq, at) = self.next_event();
            let (event, cp) = self.required(n, &kickoff, seq, at)?;
            rows.events.push(event);
            let (ex, _) = execution.get_or_insert_with(|| (Execution::new(kickoff, at), seq));
            let _ = ex.on_event(&hitlhook_domain::EventKind::CheckpointRequired, at);
            let cp = if self.plan.is_pending(n) {
                cp
            } else {
                let (seq, at) = self.next_event();
                let decided = self.decide(&cp, at)?;
                rows.events.push(self.decided_event(&decided, seq, at));
                let _ = ex.on_checkpoint_closed(CheckpointClosed::Decided(Action::Continue), at);
                decided
            };
            rows.checkpoints.push(checkpoint_row(&cp));
        }
        if let Some((ex, first)) = execution {
            rows.executions.push(execution_row(&ex, first));
        }
        Ok(rows)
    }

    /// The signed `checkpoint.required` event and the pending checkpoint it creates.
    fn required(
        &self,
        n: u64,
        kickoff: &str,
        seq: i64,
        at: Timestamp,
    ) -> StoreResult<(Vec<Param>, Checkpoint)> {
        let id = checkpoint_id(n);
        let payload = required_payload(n, kickoff);
        let envelope = EventEnvelope::parse(payload.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("seed event: {e}")))?;
        let spec = envelope
            .checkpoint
            .clone()
            .ok_or_else(|| StoreError::Corrupt("seed event without a checkpoint".into()))?;
        let cp = spec
            .into_checkpoint(id.clone(), at, seq)
            .map_err(|e| StoreError::Corrupt(format!("seed checkpoint: {e}")))?;
        let event = vec![
            Param::Int(seq),
            Param::Text(EventIdentity::from_webhook_id(&webhook_id(n)).0),
            Param::Text(envelope.event_type),
            Param::OptText(envelope.kickoff_id),
            Param::OptText(Some(id)),
            Param::Text(self.plan.event_source.clone()),
            Param::Int(at.millis()),
            Param::OptInt(envelope.occurred_at.map(Timestamp::millis)),
            Param::Text(payload),
        ];
        Ok((event, cp))
    }

    fn decide(&self, cp: &Checkpoint, at: Timestamp) -> StoreResult<Checkpoint> {
        let request = DecisionRequest {
            action: Action::Continue,
            feedback: None,
            decided_by: self.plan.decided_by.clone(),
            channel: "api".to_owned(),
        };
        match cp.decide(request, at) {
            Ok(Decided::New(next)) => Ok(*next),
            other => Err(StoreError::Corrupt(format!("seed decision: {other:?}"))),
        }
    }

    /// The `checkpoint.decided` event, exactly as the store records a decision.
    fn decided_event(&self, cp: &Checkpoint, seq: i64, at: Timestamp) -> Vec<Param> {
        let event_type = "checkpoint.decided";
        let payload = json!({
            "event_type": event_type,
            "checkpoint_id": cp.id,
            "checkpoint_name": cp.name,
            "kickoff_id": cp.kickoff_id,
            "status": cp.status.as_str(),
            "decision": cp.decision,
            "closed_reason": cp.closed_reason,
        })
        .to_string();
        vec![
            Param::Int(seq),
            Param::Text(format!("hitlhook:{event_type}:{}", cp.id)),
            Param::Text(event_type.to_owned()),
            Param::OptText(cp.kickoff_id.clone()),
            Param::OptText(Some(cp.id.clone())),
            Param::Text(self.plan.decided_by.clone()),
            Param::Int(at.millis()),
            Param::OptInt(Some(at.millis())),
            Param::Text(payload),
        ]
    }
}

fn checkpoint_row(cp: &Checkpoint) -> Vec<Param> {
    let d = cp.decision.as_ref();
    vec![
        Param::Text(cp.id.clone()),
        Param::Text(cp.name.clone()),
        Param::OptText(cp.kickoff_id.clone()),
        Param::Text(cp.context_json.clone()),
        Param::Text(action::join(&cp.allowed_actions)),
        Param::Text(cp.status.as_str().to_owned()),
        Param::Int(cp.created_at.millis()),
        Param::OptInt(cp.expires_at.map(Timestamp::millis)),
        Param::OptText(cp.on_timeout.map(|a| a.as_str().to_owned())),
        Param::OptText(d.map(|d| d.action.as_str().to_owned())),
        Param::OptText(d.and_then(|d| d.feedback.clone())),
        Param::OptText(d.map(|d| d.decided_by.clone())),
        Param::OptText(d.map(|d| d.channel.clone())),
        Param::OptInt(d.map(|d| d.decided_at.millis())),
        Param::OptText(cp.closed_reason.clone()),
        Param::Int(cp.created_seq),
    ]
}

fn execution_row(ex: &Execution, first_seq: i64) -> Vec<Param> {
    vec![
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
        Param::Int(first_seq),
    ]
}

/// Writes `rows` into `table` with multi-row inserts of about [`PARAMS_PER_INSERT`] parameters.
async fn insert(
    c: &mut AnyConnection,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Param>>,
) -> StoreResult<()> {
    let width = columns.split(',').count();
    let per_insert = (PARAMS_PER_INSERT / width).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Param>> = rows.by_ref().take(per_insert).collect();
        let mut sql = format!("insert into {table} ({columns}) values ");
        for i in 0..chunk.len() {
            let placeholders: Vec<String> =
                (1..=width).map(|j| format!("${}", i * width + j)).collect();
            if i > 0 {
                sql.push(',');
            }
            sql += &format!("({})", placeholders.join(", "));
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for p in chunk.into_iter().flatten() {
            query = match p {
                Param::Int(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
                Param::OptInt(v) => query.bind(v),
                Param::OptText(v) => query.bind(v),
            };
        }
        query.execute(&mut *c).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spreads_pending_and_executions_evenly() {
        let plan = SeedPlan {
            checkpoints: 1000,
            pending: 100,
            executions: 100,
            event_source: String::new(),
            decided_by: String::new(),
        };
        assert_eq!((0..1000).filter(|n| plan.is_pending(*n)).count(), 100);
        assert!(plan.is_pending(9) && !plan.is_pending(8) && !plan.is_pending(10));
        assert_eq!(
            (
                plan.execution_of(0),
                plan.execution_of(9),
                plan.execution_of(10)
            ),
            (0, 0, 1)
        );
        assert_eq!(plan.execution_of(999), 99);
    }
}
