//! What an AMP source's event stream may do: record CrewAI's events and drive the lifecycle of
//! that source's runs, nothing more. Event ids are namespaced by source (two deployments may
//! use the same id), review requests come only through `/human-input` and `/flow-hitl` (so a
//! stream cannot take a checkpoint id before AMP's real request), and a run hitlhook started
//! through another source is not moved by this one's events.

use std::collections::HashSet;

use hitlhook_domain::{BatchEvent, EventIdentity, EventKind, Timestamp};
use hitlhook_store::IngestItem;

use crate::amp::kickoff::STREAMED_EVENTS;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::ingest::batch_items;

/// The items a source's batch becomes; 422 for an event that asks for review.
pub(crate) async fn items(
    state: &AppState,
    source: &str,
    events: Vec<BatchEvent>,
    label: &str,
    now: Timestamp,
) -> ApiResult<Vec<IngestItem>> {
    // Named by id: the batch is already in stored order, not the sender's.
    if let Some(e) = events
        .iter()
        .find(|e| e.envelope.kind == EventKind::CheckpointRequired)
    {
        return Err(ApiError::unprocessable(
            "invalid_event",
            format!(
                "events: the event {:?} is a {}, which is not an AMP stream event; AMP asks for \
                 review through /amp/{source}/human-input or /amp/{source}/flow-hitl",
                e.envelope.event_id.as_deref().unwrap_or("without id"),
                e.envelope.event_type
            ),
        ));
    }
    let foreign = runs_of_other_sources(state, source, &events).await?;
    let mut items = batch_items(events, label, now);
    for item in &mut items {
        let env = &mut item.envelope;
        if let Some(id) = &env.event_id {
            item.identity = EventIdentity::from_event_id(&format!("amp:{source}:{id}"));
        }
        // Only CrewAI's crew and task lifecycle names move a run (the types a kickoff streams).
        let moves_run = STREAMED_EVENTS.contains(&env.event_type.as_str())
            && !env.kickoff_id.as_ref().is_some_and(|k| foreign.contains(k));
        if !moves_run {
            env.kind = EventKind::Other(env.event_type.clone());
        }
        env.checkpoint = None;
        env.checkpoint_ref = None;
    }
    Ok(items)
}

/// The batch's executions that hitlhook started through a different source.
async fn runs_of_other_sources(
    state: &AppState,
    source: &str,
    events: &[BatchEvent],
) -> ApiResult<HashSet<String>> {
    let ids: HashSet<&str> = events
        .iter()
        .filter_map(|e| e.envelope.kickoff_id.as_deref())
        .collect();
    let mut foreign = HashSet::new();
    for id in ids {
        if started_elsewhere(state, source, Some(id)).await? {
            foreign.insert(id.to_owned());
        }
    }
    Ok(foreign)
}

/// Whether `kickoff` is a run hitlhook started through a source other than `source`.
pub(crate) async fn started_elsewhere(
    state: &AppState,
    source: &str,
    kickoff: Option<&str>,
) -> ApiResult<bool> {
    let Some(id) = kickoff else {
        return Ok(false);
    };
    Ok(state
        .store
        .get_amp_execution(id)
        .await?
        .is_some_and(|run| run.source != source))
}
