//! The outbox end to end: a worker that dies holding a lease delays a delivery only until the
//! lease ends; deliveries sent late render the checkpoint as it is then (a Slack post already
//! decided, no email for a closed checkpoint); a checkpoint arriving after its execution ended is
//! closed at once and mailed to nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hitlhook_domain::Timestamp;
use hitlhook_server::config::Secret;
use hitlhook_server::delivery::config::SmtpTls;
use hitlhook_store::testing::TestDb;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use crate::peers::{Receiver, SmtpServer, slack_stand_in};
use crate::webhooks::{fast, subscribe};

on_both_backends!(
    a_crashed_workers_rows_come_due_again_when_its_lease_ends,
    late_deliveries_render_the_current_state,
    a_checkpoint_after_the_end_is_closed_and_mailed_to_nobody,
);

async fn a_crashed_workers_rows_come_due_again_when_its_lease_ends(db: TestDb) {
    let receiver = Receiver::answering(200).await;
    let worker_on = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&worker_on);
    let app = TestApp::spawn_with(db, move |cfg| {
        fast("20ms", 5)(cfg);
        cfg.delivery.worker_enabled = flag.load(Ordering::SeqCst);
    })
    .await;
    subscribe(&app, &receiver.url("/hook"), json!(["checkpoint.created"])).await;
    app.send_checkpoint("cp-1", "k-1").await;
    // A worker on another node claims the row, then dies before sending or recording anything.
    let lease = Duration::from_millis(1500);
    let claimed = app
        .store
        .claim_deliveries(Timestamp::now(), lease, 10, "worker-that-crashed")
        .await
        .expect("claim");
    let claimed_at = Instant::now();
    assert_eq!(claimed.len(), 1);
    let mut app = app;
    app.stop_server().await;
    worker_on.store(true, Ordering::SeqCst);
    let app = app.restart().await;
    let got = receiver.wait_for("/hook", 1, 10).await;
    let waited = got[0].at.duration_since(claimed_at);
    assert!(
        waited >= Duration::from_millis(1400),
        "not before the lease ended: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "soon after it: {waited:?}");
    assert_eq!(got[0].header("webhook-id"), claimed[0].id);
    let delivered = app.delivery_in_state("cp-1", "webhook", "delivered").await;
    assert_eq!(
        delivered["attempts"], 2,
        "the crashed claim counts as an attempt"
    );
    assert_eq!(receiver.to("/hook").len(), 1);
}

async fn late_deliveries_render_the_current_state(db: TestDb) {
    let smtp = SmtpServer::start().await;
    let slack = slack_stand_in("xoxb-late").await;
    let worker_on = Arc::new(AtomicBool::new(false));
    let (flag, api) = (Arc::clone(&worker_on), slack.url("/api"));
    let smtp_port = smtp.as_ref().map(|s| s.port);
    let app = TestApp::spawn_with(db, move |cfg| {
        cfg.delivery.slack_bot_token = Some(Secret("xoxb-late".into()));
        cfg.delivery.slack_channel = Some("C0LATE".into());
        cfg.delivery.slack_api_url = api.clone();
        if let Some(port) = smtp_port {
            cfg.delivery.smtp_host = Some("127.0.0.1".into());
            cfg.delivery.smtp_port = Some(port);
            cfg.delivery.smtp_tls = SmtpTls::None;
            cfg.delivery.smtp_from = Some("hitl@example.com".into());
            cfg.delivery.email_recipients = vec!["alice@example.com".into()];
        }
        cfg.delivery.outbound_allow = vec!["127.0.0.1".into()];
        cfg.delivery.schedule = "20ms".into();
        cfg.delivery.worker_enabled = flag.load(Ordering::SeqCst);
    })
    .await;
    app.send_checkpoint("cp-1", "k-1").await;
    assert_eq!(
        app.decide(ADMIN_KEY, "cp-1", "skip", None).await.status(),
        200
    );
    // The worker was down until now: everything is sent after the decision.
    let mut app = app;
    app.stop_server().await;
    worker_on.store(true, Ordering::SeqCst);
    let app = app.restart().await;
    let post = slack
        .wait_for("/api/chat.postMessage", 1, 10)
        .await
        .remove(0)
        .json();
    let text = post["blocks"].to_string();
    assert!(
        text.contains("Decided: after_planning")
            && text.contains("*Skip* by key:WEBHOOK_API_KEY via api"),
        "{text}"
    );
    assert!(
        !text.contains("\"actions\""),
        "a late post has no buttons: {text}"
    );
    let edit = slack
        .wait_for("/api/chat.update", 1, 10)
        .await
        .remove(0)
        .json();
    assert_eq!(
        edit["channel"], "C0LATE",
        "the edit waited for the post and edits it"
    );
    app.delivery_in_state("cp-1", "slack.update", "delivered")
        .await;
    if let Some(smtp) = smtp {
        let skipped = app.delivery_in_state("cp-1", "email", "skipped").await;
        assert_eq!(skipped["target"], "alice@example.com");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            smtp.messages().is_empty(),
            "no links are mailed for a decided checkpoint"
        );
    }
}

async fn a_checkpoint_after_the_end_is_closed_and_mailed_to_nobody(db: TestDb) {
    let Some(smtp) = SmtpServer::start().await else {
        return;
    };
    let port = smtp.port;
    let app = TestApp::spawn_with(db, move |cfg| {
        cfg.delivery.smtp_host = Some("127.0.0.1".into());
        cfg.delivery.smtp_port = Some(port);
        cfg.delivery.smtp_tls = SmtpTls::None;
        cfg.delivery.smtp_from = Some("hitlhook <hitl@example.com>".into());
        cfg.delivery.email_recipients = vec!["ops@example.com".into()];
        cfg.delivery.schedule = "20ms".into();
    })
    .await;
    let done = json!({"event_type": "crew.completed", "kickoff_id": "k-1"});
    assert_eq!(app.send_event(&done).await.status(), 200);
    assert_eq!(
        app.send_event(&checkpoint_body("cp-late", "k-1"))
            .await
            .status(),
        200,
        "recorded: the trail keeps it"
    );
    let cp = app.checkpoint("cp-late").await;
    assert_eq!(cp["status"], "cancelled");
    assert_eq!(cp["closed_reason"], "execution completed");
    assert_eq!(
        app.trail("/v1/executions/k-1/events").await,
        [
            "crew.completed",
            "checkpoint.required",
            "checkpoint.cancelled"
        ]
    );
    let pending: Value = app
        .get_json(ADMIN_KEY, "/v1/checkpoints?status=pending")
        .await;
    assert_eq!(pending["items"], json!([]), "nothing waits in the inbox");
    let status: Value = app.get_json(ADMIN_KEY, "/webhook/status/k-1").await;
    assert_eq!(status["execution"]["status"], "completed");
    assert_eq!(status["execution"]["checkpoints_pending"], 0);
    let skipped = app.delivery_in_state("cp-late", "email", "skipped").await;
    assert_eq!(skipped["target"], "ops@example.com");
    assert!(
        smtp.messages().is_empty(),
        "no links for a closed checkpoint"
    );
}
