//! Reconciling AMP runs with what AMP reports on `GET /status/{kickoff_id}`: the answer is
//! stored with the run, and a finished run is recorded on hitlhook's execution (`crew.completed`,
//! `crew.failed` or `crew.stopped`, once). Used by the API, the CLI and a background loop that checks the runs
//! started here which still look running (so a lost crew webhook still ends the run).

use std::sync::Arc;
use std::time::Duration;

use hitlhook_domain::Timestamp;
use hitlhook_store::{AmpExecution, IngestOutcome, Store, StoreError};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::amp::kickoff::{self, CallError};
use crate::delivery::http::Outbound;
use crate::hub::Hub;

/// Runs checked per round of the background loop.
const ROUND: u32 = 50;

/// What a reconcile found.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub kickoff_id: String,
    pub source: String,
    /// AMP's own word for the run's state (`running`, `completed`, `error`, `REVOKED`, ...).
    pub remote_status: String,
    pub remote: Value,
    /// A finished run was newly recorded on the execution.
    pub recorded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no AMP run {0:?} was started here; name its source")]
    UnknownRun(String),
    #[error("no AMP source {0:?}")]
    UnknownSource(String),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads `kickoff_id`'s status from AMP (its recorded source, else `source`) and records it.
pub async fn reconcile(
    store: &dyn Store,
    outbound: &Outbound,
    kickoff_id: &str,
    source: Option<String>,
    now: Timestamp,
) -> Result<Reconciled, ReconcileError> {
    let known = store.get_amp_execution(kickoff_id).await?;
    // A run started here keeps the source it was started through.
    let name = known
        .as_ref()
        .map(|ex| ex.source.clone())
        .or(source)
        .ok_or_else(|| ReconcileError::UnknownRun(kickoff_id.to_owned()))?;
    let amp_source = store
        .get_amp_source(&name)
        .await?
        .ok_or_else(|| ReconcileError::UnknownSource(name.clone()))?;
    let (remote_status, remote) = kickoff::status(outbound, &amp_source, kickoff_id).await?;
    store
        .save_amp_execution(&AmpExecution {
            kickoff_id: kickoff_id.to_owned(),
            source: name.clone(),
            hooks: known
                .as_ref()
                .map(|ex| ex.hooks.clone())
                .unwrap_or_default(),
            // Normalised, so the background loop finds every unfinished run under `running`
            // (AMP's own word stays in the detail).
            remote_status: Some(kickoff::run_state(&remote_status).to_owned()),
            remote_detail: Some(remote.to_string()),
            created_at: known.as_ref().map_or(now, |ex| ex.created_at),
            updated_at: now,
        })
        .await?;
    let mut recorded = false;
    if let Some(item) = kickoff::finished_event(&name, kickoff_id, &remote_status, &remote, now) {
        let outcomes = store.ingest(&[item]).await?;
        recorded = matches!(outcomes.first(), Some(IngestOutcome::Accepted { .. }));
    }
    Ok(Reconciled {
        kickoff_id: kickoff_id.to_owned(),
        source: name,
        remote_status,
        remote,
        recorded,
    })
}

/// Checks, every `interval`, the runs started here whose last known status is `running` and
/// that were not looked at for `interval`.
pub async fn run(
    store: Arc<dyn Store>,
    outbound: Outbound,
    hub: Arc<Hub>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let every_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = Timestamp::now();
        let due = match store
            .list_amp_executions(
                "running",
                Timestamp(now.millis().saturating_sub(every_ms)),
                ROUND,
            )
            .await
        {
            Ok(due) => due,
            Err(e) => {
                warn!(error = ?e, "listing AMP runs to reconcile failed; retrying");
                continue;
            }
        };
        for ex in due {
            match reconcile(
                store.as_ref(),
                &outbound,
                &ex.kickoff_id,
                None,
                Timestamp::now(),
            )
            .await
            {
                Ok(done) if done.recorded => {
                    info!(kickoff_id = %done.kickoff_id, status = %done.remote_status, "AMP run reconciled");
                    hub.committed();
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(kickoff_id = %ex.kickoff_id, error = %e, "reconciling an AMP run failed");
                }
            }
        }
    }
}
