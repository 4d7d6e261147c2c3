//! Executions: one crew or flow run (`kickoff_id`), whose status and counters are derived from the
//! events and checkpoint outcomes it has seen.

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::event::EventKind;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Running,
    WaitingForHuman,
    Completed,
    Failed,
    Stopped,
}

impl ExecutionStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::WaitingForHuman => "waiting_for_human",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Stopped => "stopped",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(ExecutionStatus::Running),
            "waiting_for_human" => Some(ExecutionStatus::WaitingForHuman),
            "completed" => Some(ExecutionStatus::Completed),
            "failed" => Some(ExecutionStatus::Failed),
            "stopped" => Some(ExecutionStatus::Stopped),
            _ => None,
        }
    }

    /// Completed, failed and stopped are final: late or out-of-order events do not reopen them.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed | ExecutionStatus::Failed | ExecutionStatus::Stopped
        )
    }
}

/// An execution's derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Execution {
    pub kickoff_id: String,
    pub status: ExecutionStatus,
    pub events_total: i64,
    pub tasks_started: i64,
    pub tasks_completed: i64,
    pub tasks_failed: i64,
    pub steps_completed: i64,
    pub checkpoints_total: i64,
    pub checkpoints_pending: i64,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// How a checkpoint of this execution was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointClosed {
    Decided(Action),
    Expired,
    Cancelled,
}

/// What the store must do besides saving the execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Effects {
    /// The execution just ended: its pending checkpoints must be cancelled.
    pub cancel_pending: bool,
}

impl Execution {
    /// A new execution first seen at `at`.
    #[must_use]
    pub fn new(kickoff_id: String, at: Timestamp) -> Self {
        Execution {
            kickoff_id,
            status: ExecutionStatus::Running,
            events_total: 0,
            tasks_started: 0,
            tasks_completed: 0,
            tasks_failed: 0,
            steps_completed: 0,
            checkpoints_total: 0,
            checkpoints_pending: 0,
            started_at: at,
            updated_at: at,
            finished_at: None,
        }
    }

    /// Counts an incoming event and moves the status.
    pub fn on_event(&mut self, kind: &EventKind, at: Timestamp) -> Effects {
        self.events_total += 1;
        self.updated_at = self.updated_at.max(at);
        match kind {
            EventKind::TaskStarted => self.tasks_started += 1,
            EventKind::TaskCompleted => self.tasks_completed += 1,
            EventKind::TaskFailed => self.tasks_failed += 1,
            EventKind::StepCompleted => self.steps_completed += 1,
            EventKind::CheckpointRequired => {
                self.checkpoints_total += 1;
                self.checkpoints_pending += 1;
            }
            _ => {}
        }
        let next = match kind {
            EventKind::CrewCompleted => Some(ExecutionStatus::Completed),
            EventKind::CrewFailed => Some(ExecutionStatus::Failed),
            EventKind::CrewStopped => Some(ExecutionStatus::Stopped),
            EventKind::CheckpointRequired => Some(ExecutionStatus::WaitingForHuman),
            _ => None,
        };
        let ended = self.status.is_terminal();
        let mut effects = self.move_to(next, at);
        if ended && matches!(kind, EventKind::CheckpointRequired) {
            // A checkpoint arriving after the end (a delayed redelivery, a crew that stopped
            // waiting) is closed at once, as the end closed those pending then: nothing would
            // resume, and it must not wait in the inbox forever.
            effects.cancel_pending = true;
        }
        effects
    }

    /// Records that one of this execution's pending checkpoints was closed.
    pub fn on_checkpoint_closed(&mut self, how: CheckpointClosed, at: Timestamp) -> Effects {
        self.checkpoints_pending = (self.checkpoints_pending - 1).max(0);
        self.updated_at = self.updated_at.max(at);
        let next = match how {
            CheckpointClosed::Decided(Action::Stop) => Some(ExecutionStatus::Stopped),
            _ => None,
        };
        self.move_to(next, at)
    }

    fn move_to(&mut self, next: Option<ExecutionStatus>, at: Timestamp) -> Effects {
        if self.status.is_terminal() {
            return Effects::default();
        }
        match next {
            Some(status) if status.is_terminal() => {
                self.status = status;
                self.finished_at = Some(at);
                Effects {
                    cancel_pending: self.checkpoints_pending > 0,
                }
            }
            Some(status) => {
                self.status = status;
                Effects::default()
            }
            None => {
                self.status = if self.checkpoints_pending > 0 {
                    ExecutionStatus::WaitingForHuman
                } else {
                    ExecutionStatus::Running
                };
                Effects::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionStatus::*;

    const T: Timestamp = Timestamp(5);

    enum Step {
        Ev(EventKind),
        Closed(CheckpointClosed),
    }

    fn run(steps: Vec<Step>) -> (Execution, Vec<Effects>) {
        let mut ex = Execution::new("k".into(), T);
        let effects = steps
            .into_iter()
            .map(|s| match s {
                Step::Ev(k) => ex.on_event(&k, T),
                Step::Closed(c) => ex.on_checkpoint_closed(c, T),
            })
            .collect();
        (ex, effects)
    }

    #[test]
    fn status_table() {
        use Step::{Closed, Ev};
        let cp = || Ev(EventKind::CheckpointRequired);
        let cases: Vec<(&str, Vec<Step>, ExecutionStatus, i64)> = vec![
            ("started", vec![Ev(EventKind::CrewStarted)], Running, 0),
            (
                "checkpoint waits",
                vec![Ev(EventKind::CrewStarted), cp()],
                WaitingForHuman,
                1,
            ),
            (
                "task event while waiting keeps waiting",
                vec![cp(), Ev(EventKind::StepStarted)],
                WaitingForHuman,
                1,
            ),
            (
                "continue resumes",
                vec![cp(), Closed(CheckpointClosed::Decided(Action::Continue))],
                Running,
                0,
            ),
            (
                "one of two decided",
                vec![cp(), cp(), Closed(CheckpointClosed::Decided(Action::Skip))],
                WaitingForHuman,
                1,
            ),
            (
                "stop stops",
                vec![cp(), Closed(CheckpointClosed::Decided(Action::Stop))],
                Stopped,
                0,
            ),
            (
                "expired resumes",
                vec![cp(), Closed(CheckpointClosed::Expired)],
                Running,
                0,
            ),
            (
                "completed",
                vec![Ev(EventKind::CrewStarted), Ev(EventKind::CrewCompleted)],
                Completed,
                0,
            ),
            ("failed", vec![Ev(EventKind::CrewFailed)], Failed, 0),
            ("stopped", vec![Ev(EventKind::CrewStopped)], Stopped, 0),
            (
                "terminal is sticky",
                vec![
                    Ev(EventKind::CrewCompleted),
                    Ev(EventKind::TaskStarted),
                    cp(),
                ],
                Completed,
                1,
            ),
            (
                "unknown types count",
                vec![Ev(EventKind::Other("llm_call_started".into()))],
                Running,
                0,
            ),
        ];
        for (name, steps, want, pending) in cases {
            let (ex, _) = run(steps);
            assert_eq!(
                (ex.status, ex.checkpoints_pending),
                (want, pending),
                "case {name}"
            );
        }
    }

    #[test]
    fn ending_with_pending_checkpoints_cancels_them() {
        let (ex, effects) = run(vec![
            Step::Ev(EventKind::CheckpointRequired),
            Step::Ev(EventKind::CrewFailed),
        ]);
        assert_eq!(ex.finished_at, Some(T));
        assert_eq!(
            effects,
            vec![
                Effects::default(),
                Effects {
                    cancel_pending: true
                }
            ]
        );
        let (_, effects) = run(vec![Step::Ev(EventKind::CrewCompleted)]);
        assert_eq!(effects, vec![Effects::default()]);
    }

    #[test]
    fn a_checkpoint_after_the_end_is_cancelled_at_once() {
        for end in [
            EventKind::CrewCompleted,
            EventKind::CrewFailed,
            EventKind::CrewStopped,
        ] {
            let (ex, effects) = run(vec![
                Step::Ev(end),
                Step::Ev(EventKind::CheckpointRequired),
                Step::Closed(CheckpointClosed::Cancelled),
            ]);
            assert_eq!(
                effects[1],
                Effects {
                    cancel_pending: true
                }
            );
            assert!(ex.status.is_terminal(), "{:?}", ex.status);
            assert_eq!((ex.checkpoints_total, ex.checkpoints_pending), (1, 0));
        }
        let (_, effects) = run(vec![Step::Ev(EventKind::CheckpointRequired)]);
        assert_eq!(effects, vec![Effects::default()], "a running one waits");
    }

    #[test]
    fn counters() {
        let (ex, _) = run(vec![
            Step::Ev(EventKind::TaskStarted),
            Step::Ev(EventKind::TaskCompleted),
            Step::Ev(EventKind::TaskFailed),
            Step::Ev(EventKind::StepCompleted),
            Step::Ev(EventKind::CheckpointRequired),
        ]);
        assert_eq!(
            (
                ex.events_total,
                ex.tasks_started,
                ex.tasks_completed,
                ex.tasks_failed,
                ex.steps_completed,
                ex.checkpoints_total
            ),
            (5, 1, 1, 1, 1, 1)
        );
    }
}
