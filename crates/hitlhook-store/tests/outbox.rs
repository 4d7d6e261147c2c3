//! The outbox contract: deliveries are written in the same transaction as the state change that
//! causes them (and never on a refusal), claims are leases that never hand one row to two
//! workers and come due again when they expire, failures retry then die, a retry revives. Every
//! case runs on SQLite and PostgreSQL (when reachable).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hitlhook_domain::{Action, DeliveryKind, DeliveryPlan, DeliveryState, NewDelivery};
use hitlhook_store::*;

mod common;
use common::*;

// ---- Delivery outbox ----------------------------------------------------------------------

fn everything() -> DeliveryPlan {
    DeliveryPlan {
        slack_post: true,
        slack_edit: true,
        email: true,
        default_recipients: vec!["ops@example.com".into()],
    }
}

async fn all_deliveries(store: &Arc<dyn Store>) -> Vec<(String, String, String)> {
    let mut page = store
        .list_deliveries(&DeliveryQuery {
            limit: 1000,
            ..DeliveryQuery::default()
        })
        .await
        .expect("list");
    page.items.reverse();
    page.items
        .into_iter()
        .map(|d| (d.kind.as_str().to_owned(), d.event_type, d.target))
        .collect()
}

fn subscription(id: &str, types: &[&str]) -> NewSubscription {
    NewSubscription {
        id: id.into(),
        url: "https://receiver.example.com/hook".into(),
        secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into(),
        event_types: types.iter().map(|s| (*s).to_owned()).collect(),
        description: None,
        created_at: T0,
    }
}

fn note(kind: DeliveryKind, target: &str) -> NewDelivery {
    NewDelivery {
        kind,
        checkpoint_id: None,
        kickoff_id: None,
        event_type: "test".into(),
        target: target.into(),
        payload: "{}".into(),
        max_attempts: None,
    }
}

#[tokio::test]
async fn outbox_rows_are_written_with_the_state_change_and_never_on_refusal() {
    each_backend(|name, store| async move {
        store.set_delivery_plan(everything(), 5);
        store.create_subscription(subscription("sub-all", &["*"])).await.expect("sub");
        store.create_subscription(subscription("sub-gone", &["*"])).await.expect("sub");
        assert!(store.remove_subscription("sub-gone", T0).await.expect("remove"));
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        let created = [
            ("slack.message", "checkpoint.created", "slack"),
            ("email", "checkpoint.created", "ops@example.com"),
            ("webhook", "checkpoint.created", "sub-all"),
            ("webhook", "execution.updated", "sub-all"),
        ];
        let owned = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
            rows.iter().map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into())).collect()
        };
        assert_eq!(all_deliveries(&store).await, owned(&created), "{name}");
        // Refused: a conflicting checkpoint and an invalid one write no deliveries.
        let mut conflicting = checkpoint_event("cp-1", "k-1");
        conflicting["context"] = serde_json::json!({"draft": "other"});
        let invalid = serde_json::json!({"event_type": "checkpoint.required", "checkpoint_name": "x",
            "kickoff_id": "k-2", "expires_in": 0});
        store.ingest(&[item("ev:2", &conflicting), item("ev:3", &invalid)]).await.expect("ingest");
        // A redelivery is a duplicate: nothing new either.
        ingest_one(&store, item("ev:1", &checkpoint_event("cp-1", "k-1"))).await;
        assert_eq!(all_deliveries(&store).await.len(), 4, "{name}");
        // A refused decision writes nothing; the accepted one writes the edit and the webhooks.
        let refused = store.decide("cp-1", decision(Action::Revise, None), "test", T0).await.expect("decide");
        assert!(matches!(refused, DecideOutcome::Refused { .. }), "{name}");
        assert_eq!(all_deliveries(&store).await.len(), 4, "{name}");
        store.decide("cp-1", decision(Action::Continue, None), "test", T0).await.expect("decide");
        let mut after = owned(&created);
        after.extend(owned(&[
            ("slack.update", "checkpoint.decided", "slack"),
            ("webhook", "checkpoint.decided", "sub-all"),
            ("webhook", "execution.updated", "sub-all"),
        ]));
        assert_eq!(all_deliveries(&store).await, after, "{name}");
        // The same decision again changes nothing and plans nothing.
        store.decide("cp-1", decision(Action::Continue, None), "test", T0).await.expect("decide");
        assert_eq!(all_deliveries(&store).await.len(), 7, "{name}");
        // Recipients named by the checkpoint replace the default list.
        let mut named = checkpoint_event("cp-2", "k-1");
        named["recipients"] = serde_json::json!(["Bob@Example.com"]);
        ingest_one(&store, item("ev:4", &named)).await;
        let emails: Vec<String> = all_deliveries(&store).await.into_iter()
            .filter(|(k, e, _)| k == "email" && e == "checkpoint.created").map(|(_, _, t)| t).collect();
        assert_eq!(emails, ["ops@example.com", "Bob@Example.com"], "{name}");
        let page = store.list_deliveries(&DeliveryQuery {
            checkpoint_id: Some("cp-2".into()), kind: Some(DeliveryKind::Email), limit: 10, ..DeliveryQuery::default()
        }).await.expect("list");
        assert_eq!(page.items.len(), 1, "{name}");
        assert_eq!(page.items[0].max_attempts, 5, "{name}");
    })
    .await;
}

#[tokio::test]
async fn expiry_and_cancellation_plan_edits_and_webhooks() {
    each_backend(|name, store| async move {
        store.set_delivery_plan(
            DeliveryPlan {
                slack_edit: true,
                ..DeliveryPlan::default()
            },
            5,
        );
        store
            .create_subscription(subscription("sub-cp", &["checkpoint.*"]))
            .await
            .expect("sub");
        let mut expiring = checkpoint_event("cp-1", "k-1");
        expiring["expires_in"] = 10.into();
        ingest_one(&store, item("ev:1", &expiring)).await;
        ingest_one(&store, item("ev:2", &checkpoint_event("cp-2", "k-2"))).await;
        store
            .expire_due(T0.plus_seconds(10), 100)
            .await
            .expect("sweep");
        let done = serde_json::json!({"event_type": "crew.completed", "kickoff_id": "k-2"});
        ingest_one(&store, item("ev:3", &done)).await;
        let closing: Vec<(String, String, String)> = all_deliveries(&store)
            .await
            .into_iter()
            .filter(|(_, e, _)| e != "checkpoint.created")
            .collect();
        let want = [
            ("slack.update", "checkpoint.expired", "slack"),
            ("webhook", "checkpoint.expired", "sub-cp"),
            ("slack.update", "checkpoint.cancelled", "slack"),
            ("webhook", "checkpoint.cancelled", "sub-cp"),
        ];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
            .collect();
        assert_eq!(closing, want, "{name}");
    })
    .await;
}

#[tokio::test]
async fn concurrent_claims_never_return_the_same_row() {
    each_backend(|name, store| async move {
        let batch: Vec<NewDelivery> = (0..60)
            .map(|i| note(DeliveryKind::Webhook, &format!("t{i}")))
            .collect();
        store.enqueue_deliveries(&batch, T0).await.expect("enqueue");
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let got = store
                            .claim_deliveries(T0, Duration::from_secs(60), 7, &format!("w{w}"))
                            .await
                            .expect("claim");
                        if got.is_empty() {
                            return mine;
                        }
                        mine.extend(got.into_iter().map(|d| d.id));
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut total = 0;
        for w in workers {
            for id in w.await.expect("join") {
                total += 1;
                assert!(seen.insert(id), "{name}: a row was claimed twice");
            }
        }
        assert_eq!((total, seen.len()), (60, 60), "{name}");
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_comes_due_again_and_the_old_claim_is_void() {
    each_backend(|name, store| async move {
        store
            .enqueue_deliveries(&[note(DeliveryKind::Webhook, "t")], T0)
            .await
            .expect("enqueue");
        assert_eq!(
            store.next_delivery_due().await.expect("due"),
            Some(T0),
            "{name}"
        );
        let lease = Duration::from_secs(30);
        let first = store
            .claim_deliveries(T0, lease, 10, "crashed")
            .await
            .expect("claim");
        assert_eq!((first.len(), first[0].attempts), (1, 1), "{name}");
        let until = T0.plus_seconds(30);
        assert_eq!(
            store.next_delivery_due().await.expect("due"),
            Some(until),
            "{name}"
        );
        assert!(
            store
                .claim_deliveries(T0.plus_seconds(29), lease, 10, "w2")
                .await
                .expect("claim")
                .is_empty(),
            "{name}: leased"
        );
        let again = store
            .claim_deliveries(until, lease, 10, "w2")
            .await
            .expect("claim");
        assert_eq!(again.len(), 1, "{name}: due again when the lease ends");
        assert_eq!(
            (again[0].id.as_str(), again[0].attempts),
            (first[0].id.as_str(), 2),
            "{name}"
        );
        let ok = AttemptOutcome::Delivered {
            status: Some(200),
            result: None,
        };
        assert!(
            !store
                .record_attempt(&first[0], ok.clone(), until)
                .await
                .expect("record"),
            "{name}: stale claim"
        );
        assert!(
            store
                .record_attempt(&again[0], ok, until)
                .await
                .expect("record"),
            "{name}"
        );
        let d = store
            .get_delivery(&first[0].id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (d.state, d.last_status, d.lease_owner),
            (DeliveryState::Delivered, Some(200), None),
            "{name}"
        );
        assert_eq!(
            store.next_delivery_due().await.expect("due"),
            None,
            "{name}"
        );
    })
    .await;
}

#[tokio::test]
async fn failures_retry_then_die_with_the_last_error_and_a_retry_revives() {
    each_backend(|name, store| async move {
        let mut d = note(DeliveryKind::Webhook, "t");
        d.checkpoint_id = Some("cp-9".into());
        store.enqueue_deliveries(&[d], T0).await.expect("enqueue");
        let lease = Duration::from_secs(30);
        let c1 = store
            .claim_deliveries(T0, lease, 1, "w")
            .await
            .expect("claim")
            .remove(0);
        let later = T0.plus_seconds(5);
        let retry = AttemptOutcome::Failed {
            status: Some(503),
            error: "HTTP 503".into(),
            next_at: Some(later),
        };
        assert!(
            store.record_attempt(&c1, retry, T0).await.expect("record"),
            "{name}"
        );
        assert!(
            store
                .claim_deliveries(T0.plus_seconds(4), lease, 1, "w")
                .await
                .expect("claim")
                .is_empty(),
            "{name}"
        );
        let c2 = store
            .claim_deliveries(later, lease, 1, "w")
            .await
            .expect("claim")
            .remove(0);
        let dead = AttemptOutcome::Failed {
            status: None,
            error: "connection refused".into(),
            next_at: None,
        };
        assert!(
            store
                .record_attempt(&c2, dead, later)
                .await
                .expect("record"),
            "{name}"
        );
        let got = store
            .get_delivery(&c1.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            (
                got.state,
                got.attempts,
                got.last_error.as_deref(),
                got.last_status
            ),
            (
                DeliveryState::Dead,
                2,
                Some("connection refused"),
                Some(503)
            ),
            "{name}"
        );
        let dead_list = store
            .list_deliveries(&DeliveryQuery {
                state: Some(DeliveryState::Dead),
                checkpoint_id: Some("cp-9".into()),
                limit: 10,
                ..DeliveryQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(dead_list.items.len(), 1, "{name}");
        let trail = store
            .list_events(&EventQuery {
                checkpoint_id: Some("cp-9".into()),
                limit: 10,
                ..EventQuery::default()
            })
            .await
            .expect("events");
        assert_eq!(
            trail
                .items
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
            ["delivery.dead"],
            "{name}"
        );
        let RetryOutcome::Revived(revived) =
            store.retry_delivery(&c1.id, later).await.expect("retry")
        else {
            panic!("{name}: revived")
        };
        assert_eq!(
            (revived.state, revived.attempts, revived.next_at),
            (DeliveryState::Pending, 0, later),
            "{name}"
        );
        assert!(
            matches!(
                store.retry_delivery(&c1.id, later).await.expect("retry"),
                RetryOutcome::Pending(_)
            ),
            "{name}"
        );
        assert!(
            matches!(
                store.retry_delivery("nope", later).await.expect("retry"),
                RetryOutcome::NotFound
            ),
            "{name}"
        );
        let c3 = store
            .claim_deliveries(later, lease, 1, "w")
            .await
            .expect("claim")
            .remove(0);
        let skipped = AttemptOutcome::Skipped {
            reason: "checkpoint already decided".into(),
        };
        assert!(
            store
                .record_attempt(&c3, skipped, later)
                .await
                .expect("record"),
            "{name}"
        );
        let got = store
            .get_delivery(&c1.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(got.state, DeliveryState::Skipped, "{name}");
        assert!(
            got.result
                .as_deref()
                .is_some_and(|r| r.contains("already decided")),
            "{name}"
        );
    })
    .await;
}

#[tokio::test]
async fn subscriptions_are_created_listed_and_removed() {
    each_backend(|name, store| async move {
        let s = store
            .create_subscription(subscription("s1", &["checkpoint.decided", "execution.*"]))
            .await
            .expect("create");
        assert_eq!(
            s.event_types,
            ["checkpoint.decided", "execution.*"],
            "{name}"
        );
        assert!(
            matches!(
                store.create_subscription(subscription("s1", &["*"])).await,
                Err(StoreError::Duplicate(_))
            ),
            "{name}"
        );
        assert_eq!(
            store.list_subscriptions().await.expect("list").len(),
            1,
            "{name}"
        );
        assert!(
            store.remove_subscription("s1", T0).await.expect("remove"),
            "{name}"
        );
        assert!(
            !store.remove_subscription("s1", T0).await.expect("remove"),
            "{name}"
        );
        assert!(
            store.list_subscriptions().await.expect("list").is_empty(),
            "{name}"
        );
        let gone = store
            .get_subscription("s1")
            .await
            .expect("get")
            .expect("kept for its deliveries");
        assert_eq!(gone.disabled_at, Some(T0), "{name}");
        assert_eq!(
            gone.secret, "",
            "{name}: a removed subscription's signing secret is wiped"
        );
    })
    .await;
}

#[tokio::test]
async fn a_batch_plans_the_same_deliveries_as_its_events_one_by_one() {
    each_backend(|name, store| async move {
        store.set_delivery_plan(
            DeliveryPlan {
                slack_post: true,
                slack_edit: true,
                ..DeliveryPlan::default()
            },
            5,
        );
        store
            .create_subscription(subscription("sub-all", &["*"]))
            .await
            .expect("sub");
        let batch = vec![
            item("ev:1", &checkpoint_event("cp-1", "k-1")),
            item(
                "ev:2",
                &serde_json::json!({"event_type": "task.started", "kickoff_id": "k-1"}),
            ),
            item("ev:3", &checkpoint_event("cp-2", "k-2")),
            item(
                "ev:4",
                &serde_json::json!({"event_type": "crew.completed", "kickoff_id": "k-2"}),
            ),
            item(
                "ev:5",
                &serde_json::json!({"event_type": "task.started", "kickoff_id": "k-3"}),
            ),
            item("ev:1", &checkpoint_event("cp-1", "k-1")),
        ];
        store.ingest(&batch).await.expect("ingest");
        let mut got = all_deliveries(&store).await;
        got.sort();
        let mut want: Vec<(String, String, String)> = [
            ("slack.message", "checkpoint.created", "slack"),
            ("webhook", "checkpoint.created", "sub-all"),
            ("webhook", "execution.updated", "sub-all"), // k-1: new, waiting_for_human
            ("slack.message", "checkpoint.created", "slack"),
            ("webhook", "checkpoint.created", "sub-all"),
            ("webhook", "execution.updated", "sub-all"), // k-2: new, waiting_for_human
            ("slack.update", "checkpoint.cancelled", "slack"),
            ("webhook", "checkpoint.cancelled", "sub-all"),
            ("webhook", "execution.updated", "sub-all"), // k-2: completed
            ("webhook", "execution.updated", "sub-all"), // k-3: new, running
        ]
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
        want.sort();
        assert_eq!(got, want, "{name}");
        let statuses: Vec<String> = store
            .list_deliveries(&DeliveryQuery {
                kind: Some(DeliveryKind::Webhook),
                limit: 100,
                ..DeliveryQuery::default()
            })
            .await
            .expect("list")
            .items
            .iter()
            .filter(|d| d.event_type == "execution.updated")
            .map(|d| {
                let body: serde_json::Value = serde_json::from_str(&d.payload).expect("json");
                format!(
                    "{}:{}>{}",
                    body["data"]["kickoff_id"].as_str().unwrap_or(""),
                    body["data"]["previous_status"].as_str().unwrap_or("new"),
                    body["data"]["status"].as_str().unwrap_or("")
                )
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            statuses,
            [
                "k-1:new>waiting_for_human",
                "k-2:new>waiting_for_human",
                "k-2:waiting_for_human>completed",
                "k-3:new>running"
            ],
            "{name}"
        );
    })
    .await;
}
