//! Checkpoints: a point where an execution waits for a human, and the state machine that takes it
//! from `pending` to `decided`, `expired` or `cancelled`. The first decision wins.

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::time::Timestamp;

/// Longest id, name or `decided_by` we accept; they are shown in Slack, mail and the inbox.
pub const MAX_LABEL_LEN: usize = 256;
/// Longest time a checkpoint may wait before it expires (one year).
pub const MAX_EXPIRES_IN_SECONDS: i64 = 366 * 24 * 3600;

/// Where a checkpoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointStatus {
    Pending,
    Decided,
    Expired,
    Cancelled,
}

impl CheckpointStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointStatus::Pending => "pending",
            CheckpointStatus::Decided => "decided",
            CheckpointStatus::Expired => "expired",
            CheckpointStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored form; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(CheckpointStatus::Pending),
            "decided" => Some(CheckpointStatus::Decided),
            "expired" => Some(CheckpointStatus::Expired),
            "cancelled" => Some(CheckpointStatus::Cancelled),
            _ => None,
        }
    }
}

/// The human (or system) decision recorded on a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    pub feedback: Option<String>,
    /// Who decided: a person (`alice@example.com`, a Slack user), an API key (`key:ci-bot`) or
    /// `system:timeout`.
    pub decided_by: String,
    /// Where the decision came from: `api`, `slack`, `email`, `inbox`, `system`.
    pub channel: String,
    pub decided_at: Timestamp,
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: String,
    pub name: String,
    pub kickoff_id: Option<String>,
    /// The context shown to reviewers, as the JSON text the sender wrote (never re-serialised).
    pub context_json: String,
    pub allowed_actions: Vec<Action>,
    pub status: CheckpointStatus,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub on_timeout: Option<Action>,
    pub decision: Option<Decision>,
    /// Why a checkpoint was closed without a decision (expired or cancelled).
    pub closed_reason: Option<String>,
    /// The sequence number of the event that created it; the keyset cursor for listings.
    pub created_seq: i64,
}

/// What a sender asks for in a `checkpoint.required` event, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointSpec {
    pub id: Option<String>,
    pub name: String,
    pub kickoff_id: Option<String>,
    pub context_json: String,
    pub allowed_actions: Option<Vec<Action>>,
    pub expires_at: Option<Timestamp>,
    pub expires_in_seconds: Option<i64>,
    pub on_timeout: Option<Action>,
    /// Email addresses to notify about this checkpoint; empty means the configured default list.
    /// Used only when the checkpoint is created (planning its deliveries), never stored.
    pub recipients: Vec<String>,
    /// Where an AMP checkpoint came from (stored beside it, to send the decision back to AMP).
    pub origin: Option<crate::amp::Origin>,
}

/// Why a checkpoint spec was refused (answered as 422, naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// Characters no id or label may hold: control characters, and the bidirectional embeddings,
/// overrides and isolates that make a label display as other text (U+202A–U+202E,
/// U+2066–U+2069). Zero-width joiners and direction marks stay: names in several scripts use them.
pub(crate) fn is_forbidden_in_label(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks an id, name or person label: non-empty, bounded, printable.
pub fn check_label(field: &'static str, value: &str) -> Result<(), SpecError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(invalid(
            field,
            format!("must be at most {MAX_LABEL_LEN} bytes"),
        ));
    }
    if value.chars().any(is_forbidden_in_label) {
        return Err(invalid(
            field,
            "must not contain control characters or bidirectional overrides",
        ));
    }
    Ok(())
}

impl CheckpointSpec {
    /// Validates the spec and builds the pending checkpoint. `generated_id` is used when the sender
    /// gave none; `seq` is the creating event's sequence number.
    pub fn into_checkpoint(
        self,
        generated_id: String,
        now: Timestamp,
        seq: i64,
    ) -> Result<Checkpoint, SpecError> {
        let id = self.id.unwrap_or(generated_id);
        check_label("checkpoint_id", &id)?;
        check_label("checkpoint_name", &self.name)?;
        if let Some(kickoff) = &self.kickoff_id {
            check_label("kickoff_id", kickoff)?;
        }
        let allowed = match self.allowed_actions {
            None => Action::ALL.to_vec(),
            Some(list) if list.is_empty() => {
                return Err(invalid("allowed_actions", "must name at least one action"));
            }
            Some(mut list) => {
                let mut seen = Vec::with_capacity(list.len());
                list.retain(|a| {
                    let fresh = !seen.contains(a);
                    seen.push(*a);
                    fresh
                });
                list
            }
        };
        let expires_at = match (self.expires_at, self.expires_in_seconds) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "expires_in",
                    "give either expires_at or expires_in, not both",
                ));
            }
            (Some(at), None) if at <= now => {
                return Err(invalid("expires_at", "is already in the past"));
            }
            // The same bound as expires_in: a typo'd year would otherwise wait for ever.
            (Some(at), None) if at > now.plus_seconds(MAX_EXPIRES_IN_SECONDS) => {
                return Err(invalid(
                    "expires_at",
                    format!("must be at most {MAX_EXPIRES_IN_SECONDS} seconds (366 days) ahead"),
                ));
            }
            (Some(at), None) => Some(at),
            (None, Some(secs)) if secs <= 0 || secs > MAX_EXPIRES_IN_SECONDS => {
                return Err(invalid(
                    "expires_in",
                    format!("must be between 1 and {MAX_EXPIRES_IN_SECONDS} seconds"),
                ));
            }
            (None, Some(secs)) => Some(now.plus_seconds(secs)),
            (None, None) => None,
        };
        if let Some(action) = self.on_timeout {
            if expires_at.is_none() {
                return Err(invalid("on_timeout", "needs expires_at or expires_in"));
            }
            if action == Action::Revise {
                return Err(invalid("on_timeout", "revise needs feedback from a person"));
            }
            if !allowed.contains(&action) {
                return Err(invalid("on_timeout", "must be one of allowed_actions"));
            }
        }
        Ok(Checkpoint {
            id,
            name: self.name,
            kickoff_id: self.kickoff_id,
            context_json: self.context_json,
            allowed_actions: allowed,
            status: CheckpointStatus::Pending,
            created_at: now,
            expires_at,
            on_timeout: self.on_timeout,
            decision: None,
            closed_reason: None,
            created_seq: seq,
        })
    }
}

/// A request to decide, as it arrives from any channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub action: Action,
    pub feedback: Option<String>,
    pub decided_by: String,
    pub channel: String,
}

/// The result of a successful [`Checkpoint::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// The checkpoint was pending and is now decided: persist it.
    New(Box<Checkpoint>),
    /// The same decision by the same decider was already recorded: nothing to write, answer as
    /// before.
    Unchanged,
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("action {0} is not allowed at this checkpoint")]
    ActionNotAllowed(Action),
    #[error("revise needs non-empty feedback telling the agent what to change")]
    FeedbackRequired,
    #[error("invalid decision: {0}")]
    Invalid(SpecError),
    /// Someone decided differently first; carries their decision.
    #[error("already decided: {} by {} via {}", .0.action, .0.decided_by, .0.channel)]
    AlreadyDecided(Decision),
    #[error("the checkpoint is {} and can no longer be decided", .0.as_str())]
    Closed(CheckpointStatus),
}

impl Checkpoint {
    /// Applies a decision at `now`. The first decision wins; its decider repeating it is a
    /// no-op; anything else after it is refused with the recorded decision.
    pub fn decide(&self, request: DecisionRequest, now: Timestamp) -> Result<Decided, DecideError> {
        match self.status {
            CheckpointStatus::Decided => {
                let existing = self
                    .decision
                    .clone()
                    .ok_or(DecideError::Closed(self.status))?;
                let same_feedback = normalize(existing.feedback.as_deref())
                    == normalize(request.feedback.as_deref());
                // A retry, not a second person agreeing: someone else sending the same action
                // is told who decided, so nobody believes they decided when they did not.
                if existing.action == request.action
                    && same_feedback
                    && existing.decided_by == request.decided_by
                {
                    Ok(Decided::Unchanged)
                } else {
                    Err(DecideError::AlreadyDecided(existing))
                }
            }
            CheckpointStatus::Expired | CheckpointStatus::Cancelled => {
                Err(DecideError::Closed(self.status))
            }
            CheckpointStatus::Pending if self.is_past_expiry(now) => {
                Err(DecideError::Closed(CheckpointStatus::Expired))
            }
            CheckpointStatus::Pending => {
                if !self.allowed_actions.contains(&request.action) {
                    return Err(DecideError::ActionNotAllowed(request.action));
                }
                let feedback = normalize(request.feedback.as_deref()).map(str::to_owned);
                if request.action == Action::Revise && feedback.is_none() {
                    return Err(DecideError::FeedbackRequired);
                }
                // Feedback may hold newlines and tabs, but not NUL: PostgreSQL cannot store it,
                // and it can arrive from any channel (an email form, a Slack modal).
                if feedback.as_deref().is_some_and(|f| f.contains('\0')) {
                    return Err(DecideError::Invalid(invalid(
                        "feedback",
                        "must not contain NUL characters",
                    )));
                }
                check_label("decided_by", &request.decided_by).map_err(DecideError::Invalid)?;
                check_label("channel", &request.channel).map_err(DecideError::Invalid)?;
                let mut next = self.clone();
                next.status = CheckpointStatus::Decided;
                next.decision = Some(Decision {
                    action: request.action,
                    feedback,
                    decided_by: request.decided_by,
                    channel: request.channel,
                    decided_at: now,
                });
                Ok(Decided::New(Box::new(next)))
            }
        }
    }

    /// What the sweeper does at `now`: nothing for a live checkpoint, otherwise the `on_timeout`
    /// decision (by `system:timeout`) or the `expired` status.
    #[must_use]
    pub fn expire(&self, now: Timestamp) -> Option<Checkpoint> {
        if self.status != CheckpointStatus::Pending || !self.is_past_expiry(now) {
            return None;
        }
        let mut next = self.clone();
        match self.on_timeout {
            Some(action) => {
                next.status = CheckpointStatus::Decided;
                next.decision = Some(Decision {
                    action,
                    feedback: None,
                    decided_by: "system:timeout".to_owned(),
                    channel: "system".to_owned(),
                    decided_at: now,
                });
            }
            None => {
                next.status = CheckpointStatus::Expired;
                next.closed_reason = Some("no decision before expires_at".to_owned());
            }
        }
        Some(next)
    }

    /// Closes a pending checkpoint because its execution ended (`reason` says how).
    #[must_use]
    pub fn cancel(&self, reason: &str) -> Option<Checkpoint> {
        (self.status == CheckpointStatus::Pending).then(|| {
            let mut next = self.clone();
            next.status = CheckpointStatus::Cancelled;
            next.closed_reason = Some(reason.to_owned());
            next
        })
    }

    fn is_past_expiry(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// True when the two describe the same request, so a re-sent `checkpoint.required` with a new
    /// event id is a duplicate, not a conflict.
    #[must_use]
    pub fn same_request(&self, spec: &CheckpointSpec) -> bool {
        self.name == spec.name
            && self.kickoff_id == spec.kickoff_id
            && json_equal(&self.context_json, &spec.context_json)
    }
}

fn json_equal(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn normalize(feedback: Option<&str>) -> Option<&str> {
    feedback.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_000_000);

    fn pending() -> Checkpoint {
        CheckpointSpec {
            id: Some("cp-1".into()),
            name: "after_planning".into(),
            kickoff_id: Some("k-1".into()),
            context_json: "{}".into(),
            expires_in_seconds: Some(60),
            ..CheckpointSpec::default()
        }
        .into_checkpoint("unused".into(), T0, 1)
        .expect("valid spec")
    }

    fn req(action: Action, feedback: Option<&str>) -> DecisionRequest {
        DecisionRequest {
            action,
            feedback: feedback.map(str::to_owned),
            decided_by: "alice".into(),
            channel: "api".into(),
        }
    }

    fn decided(action: Action, feedback: Option<&str>) -> Checkpoint {
        match pending()
            .decide(req(action, feedback), T0)
            .expect("decides")
        {
            Decided::New(cp) => *cp,
            Decided::Unchanged => panic!("expected a new decision"),
        }
    }

    #[test]
    fn decide_table() {
        let later = T0.plus_seconds(10);
        let after_expiry = T0.plus_seconds(60);
        let mut only_continue = pending();
        only_continue.allowed_actions = vec![Action::Continue];
        type Case = (
            &'static str,
            Checkpoint,
            DecisionRequest,
            Timestamp,
            Result<&'static str, DecideError>,
        );
        let cases: Vec<Case> = vec![
            (
                "continue",
                pending(),
                req(Action::Continue, None),
                later,
                Ok("new"),
            ),
            (
                "stop",
                pending(),
                req(Action::Stop, Some("no")),
                later,
                Ok("new"),
            ),
            ("skip", pending(), req(Action::Skip, None), later, Ok("new")),
            (
                "revise with text",
                pending(),
                req(Action::Revise, Some("shorter")),
                later,
                Ok("new"),
            ),
            (
                "revise without text",
                pending(),
                req(Action::Revise, None),
                later,
                Err(DecideError::FeedbackRequired),
            ),
            (
                "revise blank text",
                pending(),
                req(Action::Revise, Some("  ")),
                later,
                Err(DecideError::FeedbackRequired),
            ),
            (
                "not allowed",
                only_continue,
                req(Action::Stop, None),
                later,
                Err(DecideError::ActionNotAllowed(Action::Stop)),
            ),
            (
                "at expiry",
                pending(),
                req(Action::Continue, None),
                after_expiry,
                Err(DecideError::Closed(CheckpointStatus::Expired)),
            ),
            (
                "same again",
                decided(Action::Continue, None),
                req(Action::Continue, None),
                later,
                Ok("unchanged"),
            ),
            (
                "same, trimmed",
                decided(Action::Revise, Some("x")),
                req(Action::Revise, Some(" x ")),
                later,
                Ok("unchanged"),
            ),
            (
                "same action by someone else",
                decided(Action::Continue, None),
                DecisionRequest {
                    decided_by: "bob".into(),
                    ..req(Action::Continue, None)
                },
                later,
                Err(DecideError::AlreadyDecided(
                    decided(Action::Continue, None).decision.expect("decision"),
                )),
            ),
            (
                "different later",
                decided(Action::Continue, None),
                req(Action::Stop, None),
                later,
                Err(DecideError::AlreadyDecided(
                    decided(Action::Continue, None).decision.expect("decision"),
                )),
            ),
            (
                "cancelled",
                pending().cancel("crew completed").expect("cancel"),
                req(Action::Continue, None),
                later,
                Err(DecideError::Closed(CheckpointStatus::Cancelled)),
            ),
        ];
        for (name, cp, request, now, want) in cases {
            let got = cp.decide(request, now).map(|d| match d {
                Decided::New(_) => "new",
                Decided::Unchanged => "unchanged",
            });
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn decision_records_who_when_and_trimmed_feedback() {
        let cp = decided(Action::Revise, Some("  be brief "));
        let d = cp.decision.expect("decision");
        assert_eq!(cp.status, CheckpointStatus::Decided);
        assert_eq!(
            (d.action, d.feedback.as_deref()),
            (Action::Revise, Some("be brief"))
        );
        assert_eq!(
            (d.decided_by.as_str(), d.channel.as_str(), d.decided_at),
            ("alice", "api", T0)
        );
    }

    #[test]
    fn expiry_table() {
        let mut with_default = pending();
        with_default.on_timeout = Some(Action::Stop);
        let before = T0.plus_seconds(59);
        let at = T0.plus_seconds(60);
        assert_eq!(pending().expire(before), None);
        let expired = pending().expire(at).expect("expires");
        assert_eq!(
            (expired.status, expired.decision),
            (CheckpointStatus::Expired, None)
        );
        let timed_out = with_default.expire(at).expect("times out");
        let d = timed_out.decision.expect("decision");
        assert_eq!(timed_out.status, CheckpointStatus::Decided);
        assert_eq!(
            (d.action, d.decided_by.as_str(), d.channel.as_str()),
            (Action::Stop, "system:timeout", "system")
        );
        assert_eq!(decided(Action::Continue, None).expire(at), None);
        let mut no_expiry = pending();
        no_expiry.expires_at = None;
        assert_eq!(no_expiry.expire(Timestamp(i64::MAX)), None);
    }

    #[test]
    fn spec_validation_table() {
        let base = || CheckpointSpec {
            name: "n".into(),
            context_json: "{}".into(),
            ..CheckpointSpec::default()
        };
        let cases: Vec<(&str, CheckpointSpec, Option<&str>)> = vec![
            ("minimal", base(), None),
            (
                "empty name",
                CheckpointSpec {
                    name: " ".into(),
                    ..base()
                },
                Some("checkpoint_name"),
            ),
            (
                "long id",
                CheckpointSpec {
                    id: Some("x".repeat(300)),
                    ..base()
                },
                Some("checkpoint_id"),
            ),
            (
                "control char",
                CheckpointSpec {
                    id: Some("a\nb".into()),
                    ..base()
                },
                Some("checkpoint_id"),
            ),
            (
                "no actions",
                CheckpointSpec {
                    allowed_actions: Some(vec![]),
                    ..base()
                },
                Some("allowed_actions"),
            ),
            (
                "both expiries",
                CheckpointSpec {
                    expires_in_seconds: Some(5),
                    expires_at: Some(T0.plus_seconds(9)),
                    ..base()
                },
                Some("expires_in"),
            ),
            (
                "past",
                CheckpointSpec {
                    expires_at: Some(T0),
                    ..base()
                },
                Some("expires_at"),
            ),
            (
                "too far ahead",
                CheckpointSpec {
                    expires_at: Some(T0.plus_seconds(MAX_EXPIRES_IN_SECONDS + 1)),
                    ..base()
                },
                Some("expires_at"),
            ),
            (
                "zero secs",
                CheckpointSpec {
                    expires_in_seconds: Some(0),
                    ..base()
                },
                Some("expires_in"),
            ),
            (
                "timeout w/o expiry",
                CheckpointSpec {
                    on_timeout: Some(Action::Continue),
                    ..base()
                },
                Some("on_timeout"),
            ),
            (
                "timeout revise",
                CheckpointSpec {
                    on_timeout: Some(Action::Revise),
                    expires_in_seconds: Some(5),
                    ..base()
                },
                Some("on_timeout"),
            ),
            (
                "timeout not allowed",
                CheckpointSpec {
                    on_timeout: Some(Action::Skip),
                    expires_in_seconds: Some(5),
                    allowed_actions: Some(vec![Action::Continue]),
                    ..base()
                },
                Some("on_timeout"),
            ),
            (
                "timeout ok",
                CheckpointSpec {
                    on_timeout: Some(Action::Skip),
                    expires_in_seconds: Some(5),
                    ..base()
                },
                None,
            ),
        ];
        for (name, spec, want) in cases {
            let got = spec
                .into_checkpoint("gen".into(), T0, 1)
                .err()
                .map(|SpecError::Invalid { field, .. }| field);
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn generated_id_and_defaults() {
        let cp = CheckpointSpec {
            name: "n".into(),
            context_json: "{}".into(),
            allowed_actions: Some(vec![Action::Stop, Action::Stop]),
            ..CheckpointSpec::default()
        }
        .into_checkpoint("gen-1".into(), T0, 7)
        .expect("valid");
        assert_eq!((cp.id.as_str(), cp.created_seq), ("gen-1", 7));
        assert_eq!(cp.allowed_actions, vec![Action::Stop]);
    }

    #[test]
    fn same_request_compares_json_semantically() {
        let cp = pending();
        let spec = CheckpointSpec {
            name: "after_planning".into(),
            kickoff_id: Some("k-1".into()),
            context_json: "{ }".into(),
            ..CheckpointSpec::default()
        };
        assert!(cp.same_request(&spec));
        assert!(!cp.same_request(&CheckpointSpec {
            context_json: "{\"a\":1}".into(),
            ..spec
        }));
    }
}
