//! The store contract: every case runs against SQLite and PostgreSQL (when reachable), so both
//! backends provably behave the same.

use std::sync::Arc;

use hitlhook_domain::{Action, CheckpointStatus, DecideError, ExecutionStatus, Scope};
use hitlhook_store::*;

mod common;
use common::*;

fn accepted(outcome: &IngestOutcome) -> &Receipt {
    match outcome {
        IngestOutcome::Accepted { receipt, .. } => receipt,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

#[tokio::test]
async fn migrations_are_the_same_versions_on_both_backends() {
    let names = |dir: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let root = env!("CARGO_MANIFEST_DIR");
    assert_eq!(
        names(&format!("{root}/migrations/sqlite")),
        names(&format!("{root}/migrations/postgres"))
    );
}

#[tokio::test]
async fn a_checkpoint_event_creates_a_pending_checkpoint_and_a_waiting_execution() {
    each_backend(|name, store| async move {
        let outcome = ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        let receipt = accepted(&outcome);
        assert_eq!(receipt.checkpoint_id.as_deref(), Some("cp-1"), "{name}");
        let cp = store
            .get_checkpoint("cp-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (cp.status, cp.context_json.as_str()),
            (CheckpointStatus::Pending, r#"{"draft":"v1"}"#),
            "{name}"
        );
        assert_eq!(cp.created_seq, receipt.seq, "{name}");
        let ex = store
            .get_execution("k-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (ex.status, ex.checkpoints_pending),
            (ExecutionStatus::WaitingForHuman, 1),
            "{name}"
        );
    })
    .await;
}

#[tokio::test]
async fn redelivery_is_a_duplicate_that_changes_nothing() {
    each_backend(|name, store| async move {
        let first = ingest_one(&store, item("wh:a", &checkpoint_event("cp-1", "k-1"))).await;
        let before = store.stats().await.expect("stats");
        let again = ingest_one(&store, item("wh:a", &checkpoint_event("cp-1", "k-1"))).await;
        let IngestOutcome::Duplicate(receipt) = again else {
            panic!("{name}: expected duplicate")
        };
        assert_eq!(&receipt, accepted(&first), "{name}");
        // The same checkpoint under a new event id is a duplicate too, answered with the original.
        let resent = ingest_one(&store, item("wh:b", &checkpoint_event("cp-1", "k-1"))).await;
        assert!(
            matches!(resent, IngestOutcome::Duplicate(ref r) if r == accepted(&first)),
            "{name}: {resent:?}"
        );
        assert_eq!(store.stats().await.expect("stats"), before, "{name}");
        let ex = store
            .get_execution("k-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(ex.events_total, 1, "{name}");
    })
    .await;
}

#[tokio::test]
async fn a_bad_item_is_refused_alone_and_leaves_nothing_behind() {
    each_backend(|name, store| async move {
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        let mut conflicting = checkpoint_event("cp-1", "k-1");
        conflicting["context"] = serde_json::json!({"draft": "other"});
        let invalid = serde_json::json!({"event_type": "checkpoint.required", "checkpoint_name": "x",
            "kickoff_id": "k-2", "expires_in": 0});
        let good = serde_json::json!({"event_type": "task.started", "kickoff_id": "k-3"});
        let before = store.stats().await.expect("stats");
        let outcomes = store
            .ingest(&[item("ev:2", &conflicting), item("ev:3", &invalid), item("ev:4", &good)])
            .await
            .expect("ingest");
        assert!(matches!(outcomes[0], IngestOutcome::Rejected(IngestRejection::CheckpointConflict(_))), "{name}");
        assert!(matches!(outcomes[1], IngestOutcome::Rejected(IngestRejection::InvalidCheckpoint(_))), "{name}");
        assert_eq!(accepted(&outcomes[2]).seq, before.events_total + 1, "{name}");
        assert!(store.get_execution("k-2").await.expect("get").is_none(), "{name}: nothing of the refused item");
        let cp = store.get_checkpoint("cp-1").await.expect("get").expect("exists");
        assert_eq!(cp.context_json, r#"{"draft":"v1"}"#, "{name}");
    })
    .await;
}

#[tokio::test]
async fn the_first_decision_wins() {
    each_backend(|name, store| async move {
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        let first = store.decide("cp-1", decision(Action::Revise, Some("shorter")), "test", T0).await.expect("decide");
        let DecideOutcome::Decided { checkpoint, .. } = first else { panic!("{name}: {first:?}") };
        let d = checkpoint.decision.expect("decision");
        assert_eq!((d.action, d.feedback.as_deref(), d.decided_by.as_str()), (Action::Revise, Some("shorter"), "alice"));
        let same = store.decide("cp-1", decision(Action::Revise, Some("shorter")), "test", T0).await.expect("decide");
        assert!(matches!(same, DecideOutcome::Unchanged(_)), "{name}: {same:?}");
        let other = store.decide("cp-1", decision(Action::Continue, None), "test", T0).await.expect("decide");
        assert!(
            matches!(other, DecideOutcome::Refused { error: DecideError::AlreadyDecided(ref d), .. } if d.action == Action::Revise),
            "{name}: {other:?}"
        );
        assert!(matches!(store.decide("nope", decision(Action::Continue, None), "test", T0).await.expect("decide"), DecideOutcome::NotFound));
        let ex = store.get_execution("k-1").await.expect("get").expect("exists");
        assert_eq!((ex.status, ex.checkpoints_pending), (ExecutionStatus::Running, 0), "{name}");
        let trail = store
            .list_events(&EventQuery { checkpoint_id: Some("cp-1".into()), limit: 10, ..EventQuery::default() })
            .await
            .expect("events");
        let types: Vec<&str> = trail.items.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["checkpoint.required", "checkpoint.decided"], "{name}");
    })
    .await;
}

#[tokio::test]
async fn concurrent_decisions_record_exactly_one() {
    each_backend(|name, store| async move {
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                let action = if i % 2 == 0 {
                    Action::Continue
                } else {
                    Action::Stop
                };
                tokio::spawn(async move {
                    store
                        .decide("cp-1", decision(action, None), "test", T0)
                        .await
                        .expect("decide")
                })
            })
            .collect();
        let mut decided = 0;
        for t in tasks {
            if matches!(t.await.expect("join"), DecideOutcome::Decided { .. }) {
                decided += 1;
            }
        }
        assert_eq!(decided, 1, "{name}");
    })
    .await;
}

#[tokio::test]
async fn stop_stops_the_execution_and_cancels_its_other_checkpoints() {
    each_backend(|name, store| async move {
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        ingest_one(&store, item("ev:2", &checkpoint_event("cp-2", "k-1"))).await;
        let out = store
            .decide("cp-1", decision(Action::Stop, None), "test", T0)
            .await
            .expect("decide");
        let DecideOutcome::Decided { cancelled, .. } = out else {
            panic!("{name}")
        };
        assert_eq!(
            cancelled.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["cp-2"],
            "{name}"
        );
        let cp2 = store
            .get_checkpoint("cp-2")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(cp2.status, CheckpointStatus::Cancelled, "{name}");
        let ex = store
            .get_execution("k-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (ex.status, ex.checkpoints_pending),
            (ExecutionStatus::Stopped, 0),
            "{name}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_finished_crew_cancels_pending_checkpoints() {
    each_backend(|name, store| async move {
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        let done = serde_json::json!({"event_type": "crew.completed", "kickoff_id": "k-1"});
        let IngestOutcome::Accepted { closed, .. } = ingest_one(&store, item("ev:2", &done)).await
        else {
            panic!("{name}")
        };
        assert_eq!(closed.len(), 1, "{name}");
        let cp = store
            .get_checkpoint("cp-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (cp.status, cp.closed_reason.as_deref()),
            (CheckpointStatus::Cancelled, Some("execution completed")),
            "{name}"
        );
        let ex = store
            .get_execution("k-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(ex.status, ExecutionStatus::Completed, "{name}");
    })
    .await;
}

#[tokio::test]
async fn a_checkpoint_after_the_end_is_closed_at_once() {
    each_backend(|name, store| async move {
        let done = serde_json::json!({"event_type": "crew.completed", "kickoff_id": "k-1"});
        ingest_one(&store, item("ev:1", &done)).await;
        let IngestOutcome::Accepted {
            created, closed, ..
        } = ingest_one(&store, item("ev:2", &checkpoint_event("cp-late", "k-1"))).await
        else {
            panic!("{name}")
        };
        assert!(created.is_some(), "{name}: recorded, for the audit trail");
        assert_eq!(closed.len(), 1, "{name}");
        // In one batch too (SQLite's ingest thread hands it to the general path).
        let stopped = serde_json::json!({"event_type": "crew.stopped", "kickoff_id": "k-2"});
        let task = serde_json::json!({"event_type": "task.started", "kickoff_id": "k-2"});
        let outcomes = store
            .ingest(&[
                item("ev:3", &stopped),
                item("ev:4", &checkpoint_event("cp-batch", "k-2")),
                item("ev:5", &task),
            ])
            .await
            .expect("ingest");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, IngestOutcome::Accepted { .. })),
            "{name}: {outcomes:?}"
        );
        for (id, kickoff, reason, status) in [
            (
                "cp-late",
                "k-1",
                "execution completed",
                ExecutionStatus::Completed,
            ),
            (
                "cp-batch",
                "k-2",
                "execution stopped",
                ExecutionStatus::Stopped,
            ),
        ] {
            let cp = store
                .get_checkpoint(id)
                .await
                .expect("get")
                .expect("exists");
            assert_eq!(
                (cp.status, cp.closed_reason.as_deref()),
                (CheckpointStatus::Cancelled, Some(reason)),
                "{name} {id}"
            );
            let ex = store
                .get_execution(kickoff)
                .await
                .expect("get")
                .expect("exists");
            assert_eq!(
                (ex.status, ex.checkpoints_total, ex.checkpoints_pending),
                (status, 1, 0),
                "{name} {id}"
            );
        }
        let decided = store
            .decide("cp-late", decision(Action::Continue, None), "key:a", T0)
            .await
            .expect("decide");
        assert!(
            !matches!(decided, DecideOutcome::Decided { .. }),
            "{name}: {decided:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn expiry_applies_on_timeout_or_marks_expired() {
    each_backend(|name, store| async move {
        let mut with_default = checkpoint_event("cp-1", "k-1");
        with_default["expires_in"] = 10.into();
        with_default["on_timeout"] = "skip".into();
        let mut plain = checkpoint_event("cp-2", "k-2");
        plain["expires_in"] = 10.into();
        let mut later = checkpoint_event("cp-3", "k-3");
        later["expires_in"] = 1000.into();
        store
            .ingest(&[
                item("ev:1", &with_default),
                item("ev:2", &plain),
                item("ev:3", &later),
            ])
            .await
            .expect("ingest");
        assert!(
            store
                .expire_due(T0.plus_seconds(9), 100)
                .await
                .expect("sweep")
                .is_empty(),
            "{name}"
        );
        let changed = store
            .expire_due(T0.plus_seconds(10), 100)
            .await
            .expect("sweep");
        assert_eq!(changed.len(), 2, "{name}");
        let cp1 = store
            .get_checkpoint("cp-1")
            .await
            .expect("get")
            .expect("exists");
        let d = cp1.decision.expect("timeout decision");
        assert_eq!(
            (d.action, d.decided_by.as_str()),
            (Action::Skip, "system:timeout"),
            "{name}"
        );
        let cp2 = store
            .get_checkpoint("cp-2")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(cp2.status, CheckpointStatus::Expired, "{name}");
        assert!(
            store
                .expire_due(T0.plus_seconds(10), 100)
                .await
                .expect("sweep")
                .is_empty(),
            "{name}: idempotent"
        );
    })
    .await;
}

#[tokio::test]
async fn listings_page_by_keyset() {
    each_backend(|name, store| async move {
        let items: Vec<_> = (0..5)
            .map(|i| {
                item(
                    &format!("ev:{i}"),
                    &checkpoint_event(&format!("cp-{i}"), "k-1"),
                )
            })
            .collect();
        store.ingest(&items).await.expect("ingest");
        store
            .decide("cp-2", decision(Action::Continue, None), "test", T0)
            .await
            .expect("decide");
        let mut q = CheckpointQuery {
            status: Some(CheckpointStatus::Pending),
            order: Order::NewestFirst,
            limit: 2,
            ..CheckpointQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list_checkpoints(&q).await.expect("list");
            seen.extend(page.items.iter().map(|c| c.id.clone()));
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ["cp-4", "cp-3", "cp-1", "cp-0"], "{name}");
        let oldest = store
            .list_checkpoints(&CheckpointQuery {
                order: Order::OldestFirst,
                limit: 1,
                ..CheckpointQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(oldest.items[0].id, "cp-0", "{name}");
        let events = store
            .list_events(&EventQuery {
                kickoff_id: Some("k-1".into()),
                cursor: Some(2),
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .expect("events");
        assert_eq!(events.items.first().map(|e| e.seq), Some(3), "{name}");
        let executions = store
            .list_executions(&ExecutionQuery {
                limit: 10,
                ..ExecutionQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(executions.items.len(), 1, "{name}");
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_found_by_hash_and_revoked() {
    each_backend(|name, store| async move {
        let new = |id: &str, name: &str, hash: &str| NewApiKey {
            id: id.into(),
            name: name.into(),
            scope: Scope::Admin,
            hash_hex: hash.into(),
            prefix: "hhk_abc".into(),
            created_at: T0,
        };
        store
            .create_api_key(new("k1", "ops", "aa"))
            .await
            .expect("create");
        assert!(
            matches!(
                store.create_api_key(new("k2", "ops", "bb")).await,
                Err(StoreError::Duplicate(_))
            ),
            "{name}"
        );
        assert_eq!(
            store
                .find_api_key("aa")
                .await
                .expect("find")
                .map(|k| k.name),
            Some("ops".into()),
            "{name}"
        );
        assert_eq!(store.count_admin_keys().await.expect("count"), 1, "{name}");
        assert!(
            store.revoke_api_key("ops", T0).await.expect("revoke"),
            "{name}"
        );
        assert!(
            !store.revoke_api_key("ops", T0).await.expect("revoke"),
            "{name}"
        );
        assert_eq!(
            store.find_api_key("aa").await.expect("find"),
            None,
            "{name}"
        );
        store
            .create_api_key(new("k3", "ops", "cc"))
            .await
            .expect("name is free again");
        assert_eq!(
            store.list_api_keys().await.expect("list").len(),
            2,
            "{name}"
        );
        // Revoking by id touches that key only, even if another is named like it.
        store
            .create_api_key(new("k4", "k3", "dd"))
            .await
            .expect("named like k3's id");
        assert!(
            store.revoke_api_key("k3", T0).await.expect("revoke"),
            "{name}"
        );
        let active: Vec<String> = store
            .list_api_keys()
            .await
            .expect("list")
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| k.id)
            .collect();
        assert_eq!(active, ["k4"], "{name}");
    })
    .await;
}

#[tokio::test]
async fn one_batch_behaves_like_its_events_one_by_one() {
    each_backend(|name, store| async move {
        let mut other_context = checkpoint_event("cp-1", "k-1");
        other_context["context"] = serde_json::json!({"draft": "v2"});
        let outcomes = store
            .ingest(&[
                item("ev:1", &checkpoint_event("cp-1", "k-1")),
                item("ev:1", &checkpoint_event("cp-1", "k-1")),
                item("ev:2", &checkpoint_event("cp-1", "k-1")),
                item("ev:3", &other_context),
                item(
                    "ev:4",
                    &serde_json::json!({"event_type": "task.started", "kickoff_id": "k-1"}),
                ),
                item("ev:5", &checkpoint_event("cp-2", "k-1")),
                item(
                    "ev:6",
                    &serde_json::json!({"event_type": "crew.completed", "kickoff_id": "k-1"}),
                ),
                item(
                    "ev:7",
                    &serde_json::json!({"event_type": "task.completed", "kickoff_id": "k-1"}),
                ),
                item(
                    "ev:8",
                    &serde_json::json!({"event_type": "task.started", "kickoff_id": "k-2"}),
                ),
            ])
            .await
            .expect("ingest");
        let first = accepted(&outcomes[0]).clone();
        assert!(
            matches!(&outcomes[1], IngestOutcome::Duplicate(r) if *r == first),
            "{name}: same id in one batch"
        );
        assert!(
            matches!(&outcomes[2], IngestOutcome::Duplicate(r) if *r == first),
            "{name}: same checkpoint, new id"
        );
        assert!(
            matches!(
                &outcomes[3],
                IngestOutcome::Rejected(IngestRejection::CheckpointConflict(_))
            ),
            "{name}"
        );
        let seqs: Vec<i64> = [4, 5, 6, 7, 8]
            .iter()
            .map(|&i| accepted(&outcomes[i]).seq)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]) && first.seq < seqs[0],
            "{name}: seq follows batch order {seqs:?}"
        );
        // crew.completed in the middle of the batch cancelled both checkpoints created before it.
        for id in ["cp-1", "cp-2"] {
            let cp = store
                .get_checkpoint(id)
                .await
                .expect("get")
                .expect("exists");
            assert_eq!(cp.status, CheckpointStatus::Cancelled, "{name}: {id}");
        }
        let ex = store
            .get_execution("k-1")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (
                ex.status,
                ex.events_total,
                ex.tasks_started,
                ex.tasks_completed,
                ex.checkpoints_total,
                ex.checkpoints_pending
            ),
            (ExecutionStatus::Completed, 5, 1, 1, 2, 0),
            "{name}"
        );
        assert_eq!(
            store
                .get_execution("k-2")
                .await
                .expect("get")
                .expect("exists")
                .tasks_started,
            1,
            "{name}"
        );
        let trail = store
            .list_events(&EventQuery {
                kickoff_id: Some("k-1".into()),
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .expect("events");
        let types: Vec<&str> = trail.items.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "checkpoint.required",
                "task.started",
                "checkpoint.required",
                "crew.completed",
                "checkpoint.cancelled",
                "checkpoint.cancelled",
                "task.completed"
            ],
            "{name}"
        );
    })
    .await;
}
