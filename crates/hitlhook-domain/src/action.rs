//! The four things a human can decide at a checkpoint.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A reviewer's decision. The names are the seed README's and travel over every channel unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Accept the work and go on.
    Continue,
    /// End the execution.
    Stop,
    /// Redo the work with the reviewer's feedback (feedback required).
    Revise,
    /// Accept as is without review, recorded as skipped.
    Skip,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Continue, Action::Stop, Action::Revise, Action::Skip];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Stop => "stop",
            Action::Revise => "revise",
            Action::Skip => "skip",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `continue`, `stop`, `revise`, `skip`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?}: expected one of continue, stop, revise, skip")]
pub struct ParseActionError(pub String);

impl FromStr for Action {
    type Err = ParseActionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "continue" => Ok(Action::Continue),
            "stop" => Ok(Action::Stop),
            "revise" => Ok(Action::Revise),
            "skip" => Ok(Action::Skip),
            other => Err(ParseActionError(other.to_owned())),
        }
    }
}

/// Joins actions as `continue,stop` for storage and display.
#[must_use]
pub fn join(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The inverse of [`join`].
pub fn split(text: &str) -> Result<Vec<Action>, ParseActionError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_action() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert_eq!(split(&join(&Action::ALL)), Ok(Action::ALL.to_vec()));
        assert!("approve".parse::<Action>().is_err());
        assert!("Continue".parse::<Action>().is_err());
    }
}
