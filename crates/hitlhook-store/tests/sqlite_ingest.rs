//! SQLite's write paths: the ingest thread against the general path it stands in for (the same
//! batch gives the same outcomes, audit trail, executions and deliveries; batches it declines
//! still land; decisions made while it writes succeed), and a write by another process (the CLI
//! on the same file) makes the server's writes wait for it, not fail with `SQLITE_BUSY`. Also how
//! a database is opened: odd directory names, in-memory and read-only databases refused.

use std::sync::Arc;

use hitlhook_domain::{Action, DeliveryPlan};
use hitlhook_store::testing::TestDb;
use hitlhook_store::*;
use serde_json::json;

mod common;
use common::*;

async fn open(db: &TestDb) -> SqlStore {
    let store = SqlStore::open(&db.url).await.expect("open");
    store.migrate().await.expect("migrate");
    store.set_delivery_plan(
        DeliveryPlan {
            slack_post: true,
            email: true,
            default_recipients: vec!["ops@example.com".into()],
            ..DeliveryPlan::default()
        },
        5,
    );
    store
        .create_subscription(NewSubscription {
            id: "sub-1".into(),
            url: "https://hooks.example.com/in".into(),
            secret: "s3cret".into(),
            event_types: vec!["*".into()],
            description: None,
            created_at: T0,
        })
        .await
        .expect("subscribe");
    store
}

/// What a store holds, without the ids it generates (delivery ids are UUIDs).
async fn contents(store: &SqlStore, kickoffs: &[&str]) -> String {
    let events = store
        .list_events(&EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let mut executions = Vec::new();
    let mut checkpoints = Vec::new();
    for k in kickoffs {
        executions.push(store.get_execution(k).await.expect("execution"));
    }
    for e in &events.items {
        if let Some(id) = &e.checkpoint_id {
            checkpoints.push(store.get_checkpoint(id).await.expect("checkpoint"));
        }
    }
    let deliveries: Vec<String> = store
        .list_deliveries(&DeliveryQuery {
            state: None,
            checkpoint_id: None,
            kind: None,
            limit: 1000,
            cursor: None,
        })
        .await
        .expect("deliveries")
        .items
        .into_iter()
        .map(|d| {
            format!(
                "{} {:?} {:?} {:?} {} {} {} {:?} {} {}",
                d.seq,
                d.kind,
                d.checkpoint_id,
                d.kickoff_id,
                d.event_type,
                d.target,
                d.payload,
                d.state,
                d.max_attempts,
                d.next_at.millis()
            )
        })
        .collect();
    format!("{events:?}\n{executions:?}\n{checkpoints:?}\n{deliveries:#?}")
}

#[tokio::test]
async fn the_ingest_thread_writes_what_the_general_path_writes() {
    let (a, b) = (TestDb::sqlite(), TestDb::sqlite());
    let thread = open(&a).await;
    let general = open(&b).await.without_ingest_thread();
    let earlier = [item(
        "ev:0",
        &json!({"event_type": "task.started", "kickoff_id": "k-1"}),
    )];
    let mut invalid = checkpoint_event("cp-bad", "k-1");
    invalid["allowed_actions"] = json!([]);
    let mut with_recipients = checkpoint_event("cp-2", "k-2");
    with_recipients["recipients"] = json!(["reviewer@example.com"]);
    let batch = [
        item("ev:1", &checkpoint_event("cp-1", "k-1")),
        item(
            "ev:2",
            &json!({"event_type": "task.completed", "kickoff_id": "k-1"}),
        ),
        item("ev:3", &invalid),
        item("ev:4", &with_recipients),
        item(
            "ev:5",
            &json!({"event_type": "step.completed", "kickoff_id": "k-2"}),
        ),
        item(
            "ev:6",
            &json!({"event_type": "crew.log", "detail": "no run"}),
        ),
        item(
            "ev:7",
            &json!({"event_type": "task.failed", "kickoff_id": "k-3"}),
        ),
    ];
    let mut outcomes = Vec::new();
    for store in [&thread, &general] {
        store.ingest(&earlier).await.expect("earlier event");
        outcomes.push(format!("{:?}", store.ingest(&batch).await.expect("batch")));
    }
    assert_eq!(thread.thread_batches(), 2, "the thread wrote both batches");
    assert_eq!(general.thread_batches(), 0);
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(
        outcomes[0].contains("InvalidCheckpoint"),
        "the invalid checkpoint is refused: {}",
        outcomes[0]
    );
    let kickoffs = ["k-1", "k-2", "k-3"];
    let (written, expected) = (
        contents(&thread, &kickoffs).await,
        contents(&general, &kickoffs).await,
    );
    assert_eq!(written, expected);
    assert!(
        written.contains("reviewer@example.com")
            && written.contains("sub-1")
            && written.contains("execution.updated"),
        "email, webhook and status-change deliveries were planned: {written}"
    );
    assert_eq!(thread.deliveries_planned(), general.deliveries_planned());
    assert!(thread.deliveries_planned() > 0);
}

#[tokio::test]
async fn batches_the_thread_declines_are_written_by_the_general_path() {
    let db = TestDb::sqlite();
    let store = open(&db).await;
    let first = item("ev:1", &checkpoint_event("cp-1", "k-1"));
    store
        .ingest(std::slice::from_ref(&first))
        .await
        .expect("ingest");
    assert_eq!(store.thread_batches(), 1);
    // A redelivery beside a new event; an id twice in one batch; an execution that ends with a
    // pending checkpoint (its cancellation cascade); a new event for a stored checkpoint id; a
    // redelivery whose body now holds an invalid checkpoint (still answered as the first time).
    let declined: [Vec<IngestItem>; 5] = [
        vec![first, item("ev:2", &checkpoint_event("cp-2", "k-2"))],
        vec![
            item("ev:3", &checkpoint_event("cp-3", "k-3")),
            item("ev:3", &checkpoint_event("cp-3", "k-3")),
        ],
        vec![item(
            "ev:4",
            &json!({"event_type": "crew.completed", "kickoff_id": "k-1"}),
        )],
        vec![
            item("ev:5", &checkpoint_event("cp-5", "k-5")),
            item("ev:6", &checkpoint_event("cp-2", "k-6")),
        ],
        vec![
            item("ev:7", &checkpoint_event("cp-7", "k-7")),
            item(
                "ev:2",
                &json!({"event_type": "checkpoint.required", "checkpoint_id": "cp-8",
                    "checkpoint_name": "review", "expires_at": "2001-01-01T00:00:00Z"}),
            ),
        ],
    ];
    let mut results = Vec::new();
    for batch in &declined {
        results.push(store.ingest(batch).await.expect("ingest"));
    }
    assert_eq!(store.thread_batches(), 1, "all five declined");
    assert!(matches!(results[0][0], IngestOutcome::Duplicate(_)));
    assert!(matches!(results[0][1], IngestOutcome::Accepted { .. }));
    assert!(matches!(results[1][0], IngestOutcome::Accepted { .. }));
    assert!(matches!(results[1][1], IngestOutcome::Duplicate(_)));
    assert!(matches!(&results[2][0], IngestOutcome::Accepted { closed, .. } if closed.len() == 1));
    assert!(matches!(results[3][0], IngestOutcome::Accepted { .. }));
    assert!(
        matches!(
            results[3][1],
            IngestOutcome::Rejected(IngestRejection::CheckpointConflict(_))
        ),
        "{:?}",
        results[3][1]
    );
    assert!(matches!(results[4][0], IngestOutcome::Accepted { .. }));
    assert!(
        matches!(results[4][1], IngestOutcome::Duplicate(_)),
        "{:?}",
        results[4][1]
    );
    // Nothing a declined batch began is left behind: each event and checkpoint once.
    for id in ["cp-2", "cp-5", "cp-7"] {
        assert!(
            store.get_checkpoint(id).await.expect("get").is_some(),
            "{id}"
        );
    }
    assert!(store.get_checkpoint("cp-8").await.expect("get").is_none());
    let cp = store
        .get_checkpoint("cp-1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(cp.status, hitlhook_domain::CheckpointStatus::Cancelled);
}

#[tokio::test]
async fn decisions_made_while_the_thread_writes_all_succeed() {
    let db = TestDb::sqlite();
    let store: Arc<dyn Store> = Arc::new(open(&db).await);
    let seed: Vec<IngestItem> = (0..40)
        .map(|i| {
            item(
                &format!("ev:seed-{i}"),
                &checkpoint_event(&format!("cp-{i}"), "k-seed"),
            )
        })
        .collect();
    store.ingest(&seed).await.expect("seed");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let writer = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let batch: Vec<IngestItem> = (0..16)
                .map(|j| {
                    let n = i * 16 + j;
                    item(
                        &format!("ev:{n}"),
                        &checkpoint_event(&format!("new-{n}"), &format!("k-{}", n % 7)),
                    )
                })
                .collect();
            let outcomes = writer.ingest(&batch).await.expect("ingest");
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, IngestOutcome::Accepted { .. }))
            );
        }));
        let decider = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let decided = decider
                .decide(
                    &format!("cp-{i}"),
                    decision(Action::Continue, None),
                    "test",
                    T0,
                )
                .await
                .expect("decide");
            assert!(
                matches!(decided, DecideOutcome::Decided { .. }),
                "{decided:?}"
            );
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let ex = store
        .get_execution("k-seed")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((ex.checkpoints_total, ex.checkpoints_pending), (40, 0));
}

#[tokio::test]
async fn a_write_by_another_process_makes_decisions_and_ingest_wait_not_fail() {
    let db = TestDb::sqlite();
    let store = open(&db).await;
    let first = [item("ev:1", &checkpoint_event("cp-1", "k-1"))];
    store.ingest(&first).await.expect("ingest");
    let path = db
        .url
        .strip_prefix("sqlite://")
        .expect("file url")
        .to_owned();
    let (locked, is_locked) = std::sync::mpsc::channel();
    // Another process holds SQLite's write lock for a moment and changes the database.
    let other = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(path).expect("open");
        c.execute_batch(
            "BEGIN IMMEDIATE; insert into api_keys (id, name, scope, key_hash, prefix, created_at) \
             values ('other', 'other-process', 'admin', 'hash', 'pre', 0);",
        )
        .expect("lock");
        locked.send(()).expect("signal");
        std::thread::sleep(std::time::Duration::from_millis(300));
        c.execute_batch("COMMIT").expect("commit");
    });
    is_locked.recv().expect("locked");
    let decided = store
        .decide("cp-1", decision(Action::Continue, None), "test", T0)
        .await
        .expect("the decision waits for the other writer");
    assert!(
        matches!(decided, DecideOutcome::Decided { .. }),
        "{decided:?}"
    );
    let redelivered = store
        .ingest(&first)
        .await
        .expect("the general path waits too");
    assert!(matches!(redelivered[0], IngestOutcome::Duplicate(_)));
    other.join().expect("other process");
}

#[tokio::test]
async fn a_data_directory_may_be_named_anything() {
    let root = std::env::temp_dir().join(format!("hitlhook-odd-{}", uuid::Uuid::new_v4()));
    let dir = root.join("a%20b?c#d e");
    let url = sqlite_file_url(&dir.join("hitlhook.db"));
    let store = SqlStore::open(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    let outcome = store
        .ingest(&[item("ev:1", &checkpoint_event("cp-1", "k-1"))])
        .await
        .expect("ingest");
    assert!(matches!(outcome[0], IngestOutcome::Accepted { .. }));
    assert_eq!(store.thread_batches(), 1, "the thread wrote it");
    assert!(
        store.get_checkpoint("cp-1").await.expect("read").is_some(),
        "readers see what the thread wrote"
    );
    assert!(dir.join("hitlhook.db").is_file(), "{}", dir.display());
    let made: Vec<_> = std::fs::read_dir(&root)
        .expect("root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        made,
        [std::ffi::OsString::from("a%20b?c#d e")],
        "nothing else created"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn an_in_memory_database_is_refused_with_what_to_use_instead() {
    let Err(error) = SqlStore::open("sqlite::memory:").await else {
        panic!("an in-memory database opened");
    };
    assert!(error.to_string().contains("--data-dir"), "{error}");
}

#[tokio::test]
async fn a_database_that_cannot_be_written_is_refused_at_open_with_why() {
    let db = TestDb::sqlite();
    drop(open(&db).await);
    // `mode=ro` stands in for a read-only file system or file (the tests run as any user).
    let started = std::time::Instant::now();
    let Err(error) = SqlStore::open(&format!("{}?mode=ro", db.url)).await else {
        panic!("a read-only database opened");
    };
    assert!(matches!(error, StoreError::NotWritable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("hitlhook.db-wal"), "{message}");
    assert!(message.contains("read-only"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once, not after the pool's timeout"
    );
}
