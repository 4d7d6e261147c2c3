//! A decision on an AMP checkpoint, turned into the call that resumes the run: crews get
//! `POST {deployment}/resume` (or `/stop/{kickoff_id}` for stop), flows get their
//! `callback_url` with the `emit` outcome the action maps to. The result is an outbox delivery,
//! planned in the decision's transaction.

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::amp::{EmitMap, KickoffHooks, Origin, OriginKind};
use crate::checkpoint::Decision;
use crate::delivery::{DeliveryKind, NewDelivery};

/// What `skip` tells a crew: approve, and say plainly that nobody reviewed it (AMP adds any
/// feedback text to the task's context, so it must not read like an instruction).
pub const SKIP_NOTE: &str = "Review skipped; no changes requested.";
/// What `continue` tells a crew when the reviewer wrote nothing.
pub const APPROVE_NOTE: &str = "Approved.";

/// Labels read as approval / rejection when picking an `emit` option.
const APPROVING: [&str; 8] = [
    "approved", "approve", "accept", "accepted", "yes", "continue", "publish", "ok",
];
const REJECTING: [&str; 8] = [
    "rejected", "reject", "declined", "decline", "denied", "deny", "no", "stop",
];

/// The body of `POST /resume`, field names exactly as AMP documents them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeBody {
    pub execution_id: String,
    pub task_id: String,
    pub human_feedback: String,
    pub is_approve: bool,
    #[serde(flatten)]
    pub hooks: KickoffHooks,
}

/// The payload of an `amp.stop` delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopCall {
    pub kickoff_id: String,
}

/// The payload of an `amp.feedback` delivery: where to POST, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackCall {
    pub callback_url: String,
    pub body: FeedbackBody,
}

/// A flow callback body as AMP documents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackBody {
    pub feedback: String,
    pub source: String,
}

/// The feedback a flow decision sends: revise → the reviewer's text; continue → the mapped or
/// an approving option (else the first); stop → the mapped or a rejecting option; skip → the
/// mapped option or the request's default outcome. Free-text flows (no `emit`) get the text.
#[must_use]
pub fn flow_feedback(origin: &Origin, map: &EmitMap, decision: &Decision) -> String {
    let options = &origin.emit_options;
    let text = decision.feedback.clone().unwrap_or_default();
    let configured = |label: &Option<String>| {
        label
            .as_ref()
            .filter(|l| options.is_empty() || options.contains(l))
            .cloned()
    };
    let find = |words: &[&str]| {
        options
            .iter()
            .find(|o| words.contains(&o.to_ascii_lowercase().as_str()))
            .cloned()
    };
    match decision.action {
        Action::Revise => text,
        Action::Continue => configured(&map.on_continue)
            .or_else(|| find(&APPROVING))
            .or_else(|| options.first().cloned())
            .unwrap_or_else(|| non_empty(text, APPROVE_NOTE)),
        Action::Stop => configured(&map.on_stop)
            .or_else(|| find(&REJECTING))
            .or_else(|| (options.len() > 1).then(|| options[options.len() - 1].clone()))
            .unwrap_or_else(|| non_empty(text, "Rejected.")),
        Action::Skip => configured(&map.on_skip)
            .or_else(|| origin.default_outcome.clone())
            .unwrap_or_default(),
    }
}

fn non_empty(text: String, fallback: &str) -> String {
    if text.trim().is_empty() {
        fallback.to_owned()
    } else {
        text
    }
}

/// The delivery that sends `decision` back to AMP, or `None` when the origin lacks what the
/// call needs (a crew without task id, a flow without callback URL).
#[must_use]
pub fn plan(
    origin: &Origin,
    hooks: &KickoffHooks,
    map: &EmitMap,
    checkpoint_id: &str,
    decision: &Decision,
) -> Option<NewDelivery> {
    let (kind, payload) = match origin.kind {
        OriginKind::Crew => {
            let execution_id = origin.execution_id.clone()?;
            if decision.action == Action::Stop {
                let call = StopCall {
                    kickoff_id: execution_id,
                };
                (DeliveryKind::AmpStop, serde_json::to_string(&call).ok()?)
            } else {
                let feedback = decision.feedback.clone().unwrap_or_default();
                let (human_feedback, is_approve) = match decision.action {
                    Action::Revise => (feedback, false),
                    Action::Skip => (SKIP_NOTE.to_owned(), true),
                    _ => (non_empty(feedback, APPROVE_NOTE), true),
                };
                let body = ResumeBody {
                    execution_id,
                    task_id: origin.task_id.clone()?,
                    human_feedback,
                    is_approve,
                    hooks: hooks.clone(),
                };
                (DeliveryKind::AmpResume, serde_json::to_string(&body).ok()?)
            }
        }
        OriginKind::Flow => {
            let call = FeedbackCall {
                callback_url: origin.callback_url.clone()?,
                body: FeedbackBody {
                    feedback: flow_feedback(origin, map, decision),
                    source: "hitlhook".to_owned(),
                },
            };
            (
                DeliveryKind::AmpFeedback,
                serde_json::to_string(&call).ok()?,
            )
        }
    };
    Some(NewDelivery {
        kind,
        checkpoint_id: Some(checkpoint_id.to_owned()),
        kickoff_id: origin.execution_id.clone(),
        event_type: "checkpoint.decided".to_owned(),
        target: origin.source.clone(),
        payload,
        max_attempts: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn decision(action: Action, feedback: Option<&str>) -> Decision {
        Decision {
            action,
            feedback: feedback.map(str::to_owned),
            decided_by: "alice".into(),
            channel: "slack".into(),
            decided_at: Timestamp(1),
        }
    }

    fn crew() -> Origin {
        Origin {
            source: "prod".into(),
            kind: OriginKind::Crew,
            execution_id: Some("k1".into()),
            task_id: Some("research_task".into()),
            request_id: None,
            callback_url: None,
            emit_options: Vec::new(),
            default_outcome: None,
            assignee: None,
        }
    }

    fn flow(options: &[&str], default: Option<&str>) -> Origin {
        Origin {
            kind: OriginKind::Flow,
            task_id: None,
            callback_url: Some("https://amp/cb?token=t".into()),
            emit_options: options.iter().map(|s| (*s).to_owned()).collect(),
            default_outcome: default.map(str::to_owned),
            ..crew()
        }
    }

    #[test]
    fn crew_decisions_map_to_resume_and_stop() {
        let hooks = KickoffHooks {
            task_webhook_url: Some("https://h/amp/prod/task?token=x".into()),
            step_webhook_url: None,
            crew_webhook_url: Some("https://h/amp/prod/crew?token=x".into()),
        };
        let cases = [
            (Action::Continue, None, "Approved.", true),
            (Action::Continue, Some("Looks good"), "Looks good", true),
            (Action::Revise, Some("Add sources"), "Add sources", false),
            (Action::Skip, None, SKIP_NOTE, true),
        ];
        for (action, feedback, want_text, want_approve) in cases {
            let d = plan(
                &crew(),
                &hooks,
                &EmitMap::default(),
                "cp",
                &decision(action, feedback),
            )
            .expect("planned");
            assert_eq!(d.kind, DeliveryKind::AmpResume);
            assert_eq!(d.target, "prod");
            let body: serde_json::Value = serde_json::from_str(&d.payload).expect("json");
            assert_eq!(
                body,
                serde_json::json!({"execution_id": "k1", "task_id": "research_task",
                    "human_feedback": want_text, "is_approve": want_approve,
                    "taskWebhookUrl": "https://h/amp/prod/task?token=x",
                    "crewWebhookUrl": "https://h/amp/prod/crew?token=x"}),
                "{action}"
            );
        }
        let stop = plan(
            &crew(),
            &hooks,
            &EmitMap::default(),
            "cp",
            &decision(Action::Stop, None),
        )
        .expect("stop");
        assert_eq!(stop.kind, DeliveryKind::AmpStop);
        assert_eq!(stop.payload, r#"{"kickoff_id":"k1"}"#);
    }

    #[test]
    fn flow_feedback_table() {
        let none = EmitMap::default();
        let custom = EmitMap {
            on_continue: Some("publish".into()),
            on_stop: Some("kill".into()),
            on_skip: None,
        };
        let cases: Vec<(Origin, &EmitMap, Action, Option<&str>, &str)> = vec![
            (
                flow(&["approved", "rejected", "request_changes"], None),
                &none,
                Action::Continue,
                None,
                "approved",
            ),
            (
                flow(&["request_changes", "Approve"], None),
                &none,
                Action::Continue,
                None,
                "Approve",
            ),
            (
                flow(&["ship", "hold"], None),
                &none,
                Action::Continue,
                None,
                "ship",
            ),
            (
                flow(&["approved", "rejected", "request_changes"], None),
                &none,
                Action::Stop,
                None,
                "rejected",
            ),
            (
                flow(&["ship", "hold"], None),
                &none,
                Action::Stop,
                None,
                "hold",
            ),
            (
                flow(&["approved", "rejected"], Some("rejected")),
                &none,
                Action::Skip,
                None,
                "rejected",
            ),
            (
                flow(&["approved", "rejected"], None),
                &none,
                Action::Revise,
                Some("fix the title"),
                "fix the title",
            ),
            (
                flow(&[], None),
                &none,
                Action::Continue,
                Some("fine"),
                "fine",
            ),
            (flow(&[], None), &none, Action::Stop, None, "Rejected."),
            (
                flow(&["publish", "kill", "approved"], None),
                &custom,
                Action::Continue,
                None,
                "publish",
            ),
            (
                flow(&["publish", "kill", "approved"], None),
                &custom,
                Action::Stop,
                None,
                "kill",
            ),
            // A mapped label the request does not offer falls back to the defaults.
            (
                flow(&["approved", "rejected"], None),
                &custom,
                Action::Continue,
                None,
                "approved",
            ),
        ];
        for (origin, map, action, feedback, want) in cases {
            assert_eq!(
                flow_feedback(&origin, map, &decision(action, feedback)),
                want,
                "{action} with {:?}",
                origin.emit_options
            );
        }
        let d = plan(
            &flow(&["approved"], None),
            &KickoffHooks::default(),
            &none,
            "cp",
            &decision(Action::Continue, None),
        )
        .expect("planned");
        assert_eq!(d.kind, DeliveryKind::AmpFeedback);
        assert_eq!(
            d.payload,
            r#"{"callback_url":"https://amp/cb?token=t","body":{"feedback":"approved","source":"hitlhook"}}"#
        );
    }
}
