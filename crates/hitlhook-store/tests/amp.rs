//! The AMP contract: sources round-trip with unique names; an AMP checkpoint's origin is written
//! with the checkpoint (and only then); deciding it plans the resume call in the decision's
//! transaction, with the run's webhook URLs; "resolved elsewhere" is final, recorded as an event,
//! and revivable. Every case runs on SQLite and PostgreSQL (when reachable).

use std::sync::Arc;
use std::time::Duration;

use hitlhook_domain::amp::inbound::human_input;
use hitlhook_domain::amp::{AuthMode, EmitMap, KickoffHooks};
use hitlhook_domain::{Action, DeliveryKind, DeliveryState, EventIdentity, Timestamp};
use hitlhook_store::*;

mod common;
use common::*;

fn source(name: &str) -> AmpSource {
    AmpSource {
        name: name.into(),
        auth: AuthMode::Bearer,
        token_hash: Some("ab".repeat(32)),
        basic_username: None,
        password_hash: None,
        signing_secret: None,
        url_token: "url-token".into(),
        deployment_url: Some("https://crew.crewai.com".into()),
        deployment_token: Some("dep".into()),
        emit_map: EmitMap {
            on_continue: Some("publish".into()),
            ..EmitMap::default()
        },
        created_at: T0,
    }
}

fn ask(execution: &str, output: &str) -> IngestItem {
    let body = serde_json::json!({"execution_id": execution, "task_id": "research_task", "output": output})
        .to_string();
    IngestItem {
        identity: EventIdentity::from_body_hash(&format!("{execution}-{output}")),
        envelope: human_input("prod", body.as_bytes())
            .expect("parses")
            .envelope,
        payload: body,
        source: "amp:prod".into(),
        received_at: T0,
    }
}

async fn amp_deliveries(store: &Arc<dyn Store>) -> Vec<Delivery> {
    let mut all = Vec::new();
    for kind in [
        DeliveryKind::AmpResume,
        DeliveryKind::AmpStop,
        DeliveryKind::AmpFeedback,
    ] {
        let page = store
            .list_deliveries(&DeliveryQuery {
                kind: Some(kind),
                limit: 100,
                ..DeliveryQuery::default()
            })
            .await
            .expect("list");
        all.extend(page.items);
    }
    all
}

#[tokio::test]
async fn sources_round_trip_and_names_are_unique() {
    each_backend(|name, store| async move {
        let created = store
            .create_amp_source(source("prod"))
            .await
            .expect("create");
        assert_eq!(
            store.get_amp_source("prod").await.expect("get"),
            Some(created.clone()),
            "{name}"
        );
        assert!(matches!(
            store.create_amp_source(source("prod")).await,
            Err(StoreError::Duplicate(_))
        ));
        store
            .create_amp_source(source("a-first"))
            .await
            .expect("create");
        let names: Vec<String> = store
            .list_amp_sources()
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a-first", "prod"]);
        assert!(store.remove_amp_source("prod").await.expect("remove"));
        assert!(!store.remove_amp_source("prod").await.expect("remove"));
        assert_eq!(store.get_amp_source("prod").await.expect("get"), None);
        // The Debug form never shows secret material.
        let shown = format!("{created:?}");
        assert!(
            !shown.contains("url-token") && !shown.contains("abab") && !shown.contains("dep\""),
            "{shown}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_decision_plans_the_resume_in_its_own_transaction() {
    each_backend(|name, store| async move {
        store.create_amp_source(source("prod")).await.expect("source");
        let hooks = KickoffHooks {
            task_webhook_url: Some("https://h/amp/prod/task/t".into()),
            step_webhook_url: None,
            crew_webhook_url: Some("https://h/amp/prod/crew/t".into()),
        };
        store
            .save_amp_execution(&AmpExecution {
                kickoff_id: "exec-1".into(),
                source: "prod".into(),
                hooks,
                remote_status: Some("running".into()),
                remote_detail: None,
                created_at: T0,
                updated_at: T0,
            })
            .await
            .expect("execution");
        let IngestOutcome::Accepted { created: Some(cp), .. } = ingest_one(&store, ask("exec-1", "draft")).await else {
            panic!("{name}: accepted with a checkpoint");
        };
        let origin = store.get_amp_origin(&cp.id).await.expect("read").expect("origin written with it");
        assert_eq!(origin.execution_id.as_deref(), Some("exec-1"));
        assert!(amp_deliveries(&store).await.is_empty(), "nothing before the decision");

        // A plain checkpoint has no origin and its decision plans no AMP call.
        ingest_one(&store, item("plain", &checkpoint_event("cp-plain", "k-plain"))).await;
        assert_eq!(store.get_amp_origin("cp-plain").await.expect("read"), None);
        store.decide("cp-plain", decision(Action::Continue, None), "key:a", T0).await.expect("decide");
        assert!(amp_deliveries(&store).await.is_empty());

        store.decide(&cp.id, decision(Action::Revise, Some("More sources")), "key:a", T0).await.expect("decide");
        let planned = amp_deliveries(&store).await;
        assert_eq!(planned.len(), 1, "{name}");
        let d = &planned[0];
        assert_eq!((d.kind, d.target.as_str(), d.checkpoint_id.as_deref()), (DeliveryKind::AmpResume, "prod", Some(cp.id.as_str())));
        let body: serde_json::Value = serde_json::from_str(&d.payload).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"execution_id": "exec-1", "task_id": "research_task",
                "human_feedback": "More sources", "is_approve": false,
                "taskWebhookUrl": "https://h/amp/prod/task/t", "crewWebhookUrl": "https://h/amp/prod/crew/t"})
        );
        // A refused second decision plans nothing.
        let refused = store.decide(&cp.id, decision(Action::Stop, None), "key:b", T0).await.expect("decide");
        assert!(matches!(refused, DecideOutcome::Refused { .. }));
        assert_eq!(amp_deliveries(&store).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn resolved_elsewhere_is_final_recorded_and_revivable() {
    each_backend(|name, store| async move {
        store
            .create_amp_source(source("prod"))
            .await
            .expect("source");
        let IngestOutcome::Accepted {
            created: Some(cp), ..
        } = ingest_one(&store, ask("exec-2", "draft")).await
        else {
            panic!("{name}: accepted");
        };
        store
            .decide(&cp.id, decision(Action::Continue, None), "key:a", T0)
            .await
            .expect("decide");
        let claimed = store
            .claim_deliveries(Timestamp::now(), Duration::from_secs(30), 10, "w1")
            .await
            .expect("claim");
        let d = claimed
            .into_iter()
            .find(|d| d.kind == DeliveryKind::AmpResume)
            .expect("claimed");
        let outcome = AttemptOutcome::ResolvedElsewhere {
            status: Some(400),
            detail: "no longer waiting".into(),
        };
        assert!(
            store
                .record_attempt(&d, outcome, Timestamp::now())
                .await
                .expect("record")
        );
        let stored = store.get_delivery(&d.id).await.expect("get").expect("row");
        assert_eq!(
            (stored.state, stored.last_status),
            (DeliveryState::ResolvedElsewhere, Some(400))
        );
        assert_eq!(
            store.next_delivery_due().await.expect("due"),
            None,
            "{name}: never due again"
        );
        let events = store
            .list_events(&EventQuery {
                checkpoint_id: Some(cp.id.clone()),
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .expect("events");
        let types: Vec<&str> = events.items.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "checkpoint.required",
                "checkpoint.decided",
                "delivery.resolved_elsewhere"
            ]
        );
        assert!(matches!(
            store
                .retry_delivery(&d.id, Timestamp::now())
                .await
                .expect("retry"),
            RetryOutcome::Revived(_)
        ));

        // The reconciler's work list: running runs not looked at since `before`.
        for (id, status, at) in [
            ("r1", "running", 10),
            ("r2", "completed", 10),
            ("r3", "running", 500),
        ] {
            store
                .save_amp_execution(&AmpExecution {
                    kickoff_id: id.into(),
                    source: "prod".into(),
                    hooks: KickoffHooks::default(),
                    remote_status: Some(status.into()),
                    remote_detail: None,
                    created_at: Timestamp(at),
                    updated_at: Timestamp(at),
                })
                .await
                .expect("save");
        }
        let due = store
            .list_amp_executions("running", Timestamp(100), 10)
            .await
            .expect("list");
        let ids: Vec<&str> = due.iter().map(|e| e.kickoff_id.as_str()).collect();
        assert_eq!(ids, ["r1"]);
    })
    .await;
}
