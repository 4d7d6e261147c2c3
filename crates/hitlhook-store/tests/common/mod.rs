//! Helpers shared by the store's contract test binaries: run a case on every backend, and build
//! incoming events and decisions.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::sync::Arc;

use hitlhook_domain::{Action, DecisionRequest, EventEnvelope, EventIdentity, Timestamp};
use hitlhook_store::testing::all_backends;
use hitlhook_store::*;

pub const T0: Timestamp = Timestamp(1_700_000_000_000);

pub async fn each_backend<F, Fut>(case: F)
where
    F: Fn(&'static str, Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in all_backends().await {
        let store = db.store().await;
        case(db.name, store).await;
    }
}

pub fn item(identity: &str, body: &serde_json::Value) -> IngestItem {
    let payload = body.to_string();
    IngestItem {
        identity: EventIdentity(identity.to_owned()),
        envelope: EventEnvelope::parse(payload.as_bytes()).expect("valid envelope"),
        payload,
        source: "test".to_owned(),
        received_at: T0,
    }
}

pub fn checkpoint_event(id: &str, kickoff: &str) -> serde_json::Value {
    serde_json::json!({"event_type": "checkpoint.required", "checkpoint_id": id,
        "checkpoint_name": "review", "kickoff_id": kickoff, "context": {"draft": "v1"}})
}

pub fn decision(action: Action, feedback: Option<&str>) -> DecisionRequest {
    DecisionRequest {
        action,
        feedback: feedback.map(str::to_owned),
        decided_by: "alice".into(),
        channel: "api".into(),
    }
}

pub async fn ingest_one(store: &Arc<dyn Store>, it: IngestItem) -> IngestOutcome {
    store
        .ingest(&[it])
        .await
        .expect("ingest")
        .pop()
        .expect("one outcome")
}
