//! Who may do what: the scopes an API key carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An API key's scope. Scopes are ordered: each one may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Sends events and reads back the checkpoints and executions it created (to wait for
    /// decisions). Cannot decide, list or manage keys.
    Ingest,
    /// Reads everything and decides checkpoints.
    Reviewer,
    /// Everything, including key management.
    Admin,
}

impl Scope {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Reviewer => "reviewer",
            Scope::Admin => "admin",
        }
    }

    /// True when a key of this scope may do what `needed` requires.
    #[must_use]
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Scope::Ingest),
            "reviewer" => Ok(Scope::Reviewer),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: expected ingest, reviewer or admin"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest() {
        assert!(Scope::Admin.allows(Scope::Reviewer));
        assert!(Scope::Reviewer.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Reviewer));
        assert!(!Scope::Reviewer.allows(Scope::Admin));
        assert_eq!("reviewer".parse(), Ok(Scope::Reviewer));
        assert!("root".parse::<Scope>().is_err());
    }
}
