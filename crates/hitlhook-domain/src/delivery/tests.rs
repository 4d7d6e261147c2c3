use super::*;
use crate::checkpoint::{CheckpointSpec, Decided, DecisionRequest};

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn pending() -> Checkpoint {
    CheckpointSpec {
        id: Some("cp-1".into()),
        name: "after_planning".into(),
        kickoff_id: Some("k-1".into()),
        context_json: r#"{"plan": "x"}"#.into(),
        ..CheckpointSpec::default()
    }
    .into_checkpoint("unused".into(), T0, 1)
    .expect("valid")
}

fn decided() -> Checkpoint {
    let request = DecisionRequest {
        action: Action::Continue,
        feedback: None,
        decided_by: "alice".into(),
        channel: "slack".into(),
    };
    match pending().decide(request, T0).expect("decides") {
        Decided::New(cp) => *cp,
        Decided::Unchanged => panic!("new"),
    }
}

fn sub(id: &str, types: &[&str]) -> SubscriptionFilter {
    SubscriptionFilter {
        id: id.into(),
        event_types: types.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn kinds(out: &[NewDelivery]) -> Vec<(&'static str, &str)> {
    out.iter()
        .map(|d| (d.kind.as_str(), d.target.as_str()))
        .collect()
}

#[test]
fn planning_table() {
    let cp = pending();
    let closed = decided();
    let ex = Execution::new("k-1".into(), T0);
    let everything = DeliveryPlan {
        slack_post: true,
        slack_edit: true,
        email: true,
        default_recipients: vec!["ops@example.com".into()],
    };
    let webhook_only = DeliveryPlan {
        slack_post: true,
        ..DeliveryPlan::default()
    };
    let asked = vec![
        "a@example.com".to_owned(),
        "A@example.com".to_owned(),
        "b@example.com".to_owned(),
    ];
    let subs = vec![
        sub("s-all", &["*"]),
        sub("s-cp", &["checkpoint.*"]),
        sub("s-ex", &["execution.updated"]),
    ];
    let created = Occurrence::CheckpointCreated {
        checkpoint: &cp,
        recipients: &[],
    };
    let created_for = Occurrence::CheckpointCreated {
        checkpoint: &cp,
        recipients: &asked,
    };
    let escalated = Occurrence::CheckpointEscalated {
        checkpoint: &cp,
        recipients: &asked,
    };
    let escalated_to_nobody = Occurrence::CheckpointEscalated {
        checkpoint: &cp,
        recipients: &[],
    };
    let closing = Occurrence::CheckpointClosed {
        checkpoint: &closed,
    };
    let changed = Occurrence::ExecutionChanged {
        execution: &ex,
        previous: None,
    };
    let nothing = DeliveryPlan::default();
    let cases: Vec<(
        &str,
        &DeliveryPlan,
        Occurrence<'_>,
        &[SubscriptionFilter],
        Vec<(&str, &str)>,
    )> = vec![
        ("nothing configured", &nothing, created, &[], vec![]),
        (
            "created, everything, default recipients",
            &everything,
            created,
            &subs,
            vec![
                ("slack.message", "slack"),
                ("email", "ops@example.com"),
                ("webhook", "s-all"),
                ("webhook", "s-cp"),
            ],
        ),
        (
            "recipients named by the checkpoint replace the default; case-insensitive duplicates dropped",
            &everything,
            created_for,
            &[],
            vec![
                ("slack.message", "slack"),
                ("email", "a@example.com"),
                ("email", "b@example.com"),
            ],
        ),
        (
            "escalated: email to the new people only, no second Slack post",
            &everything,
            escalated,
            &subs,
            vec![
                ("email", "a@example.com"),
                ("email", "b@example.com"),
                ("webhook", "s-all"),
                ("webhook", "s-cp"),
            ],
        ),
        (
            "escalated to nobody: never the default recipients again",
            &everything,
            escalated_to_nobody,
            &[],
            vec![],
        ),
        (
            "closed with a bot token edits the message",
            &everything,
            closing,
            &subs[1..2],
            vec![("slack.update", "slack"), ("webhook", "s-cp")],
        ),
        (
            "closed with only an incoming webhook cannot edit",
            &webhook_only,
            closing,
            &[],
            vec![],
        ),
        (
            "execution change goes to subscribers only",
            &everything,
            changed,
            &subs,
            vec![("webhook", "s-all"), ("webhook", "s-ex")],
        ),
    ];
    for (name, plan, occurrence, subscribers, want) in cases {
        let out = plan.plan(&occurrence, subscribers, T0);
        assert_eq!(kinds(&out), want, "case {name}");
        for d in &out {
            assert_eq!(d.event_type, occurrence.event_type(), "case {name}");
        }
    }
}

#[test]
fn webhook_bodies_follow_standard_webhooks() {
    let closed = decided();
    let body: serde_json::Value = serde_json::from_str(&webhook_body(
        &Occurrence::CheckpointClosed {
            checkpoint: &closed,
        },
        T0,
    ))
    .expect("json");
    assert_eq!(body["type"], "checkpoint.decided");
    assert_eq!(body["timestamp"], "2023-11-14T22:13:20.000Z");
    assert_eq!(body["data"]["checkpoint_id"], "cp-1");
    assert_eq!(body["data"]["context"]["plan"], "x");
    assert_eq!(body["data"]["decision"]["decided_by"], "alice");
    assert_eq!(body["data"]["decision"]["channel"], "slack");
    let ex = Execution::new("k-1".into(), T0);
    let body: serde_json::Value = serde_json::from_str(&webhook_body(
        &Occurrence::ExecutionChanged {
            execution: &ex,
            previous: Some(ExecutionStatus::WaitingForHuman),
        },
        T0,
    ))
    .expect("json");
    assert_eq!(body["type"], "execution.updated");
    assert_eq!(body["data"]["kickoff_id"], "k-1");
    assert_eq!(body["data"]["status"], "running");
    assert_eq!(body["data"]["previous_status"], "waiting_for_human");
}

#[test]
fn closing_event_types() {
    let mut cp = pending();
    cp.status = CheckpointStatus::Expired;
    assert_eq!(
        Occurrence::CheckpointClosed { checkpoint: &cp }.event_type(),
        "checkpoint.expired"
    );
    cp.status = CheckpointStatus::Cancelled;
    assert_eq!(
        Occurrence::CheckpointClosed { checkpoint: &cp }.event_type(),
        "checkpoint.cancelled"
    );
}

#[test]
fn subscription_filters() {
    let s = sub("s", &["checkpoint.*", "execution.updated"]);
    assert!(s.wants("checkpoint.created"));
    assert!(s.wants("execution.updated"));
    assert!(!s.wants("checkpointx.created"));
    assert!(!sub("s", &["checkpoint.decided"]).wants("checkpoint.created"));
    assert!(sub("s", &["*"]).wants("anything"));
    assert!(!sub("s", &[]).wants("checkpoint.created"));
    for ok in [
        "*",
        "checkpoint.*",
        "execution.*",
        "checkpoint.decided",
        "execution.updated",
    ] {
        assert_eq!(check_event_filter(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "checkpoint",
        "task.*",
        "checkpoint.required",
        "CHECKPOINT.DECIDED",
        "**",
    ] {
        assert!(check_event_filter(bad).is_err(), "{bad}");
    }
}

#[test]
fn kinds_and_states_round_trip() {
    for k in DeliveryKind::ALL {
        assert_eq!(DeliveryKind::parse(k.as_str()), Some(k));
    }
    for s in [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Dead,
        DeliveryState::Skipped,
    ] {
        assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
    }
    assert_eq!(DeliveryKind::parse("sms"), None);
    assert_eq!(DeliveryState::parse("failed"), None);
}

#[test]
fn email_addresses() {
    for ok in [
        "a@example.com",
        "first.last+tag@sub.example.org",
        "x@localhost",
    ] {
        assert_eq!(check_email(ok), Ok(()), "{ok}");
    }
    let long = format!("{}@example.com", "a".repeat(250));
    for bad in [
        "",
        "a",
        "@example.com",
        "a@",
        "a@@b",
        "a b@example.com",
        "a@example.com\n",
        "<a@b>",
        "a@.com",
        "a@com.",
        long.as_str(),
    ] {
        assert!(check_email(bad).is_err(), "{bad:?}");
    }
}
