//! The lifecycle states of an operation, spelled as Icarus spells them on the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `PENDING -> RUNNING -> COMPLETED | FAILED | CANCELLED`; a pending operation may also be cancelled directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationState {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl OperationState {
    pub const ALL: [OperationState; 5] = [
        OperationState::Pending,
        OperationState::Running,
        OperationState::Completed,
        OperationState::Failed,
        OperationState::Cancelled,
    ];

    /// Terminal operations never change again and are the only ones that expire.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::Completed | OperationState::Failed | OperationState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "PENDING",
            OperationState::Running => "RUNNING",
            OperationState::Completed => "COMPLETED",
            OperationState::Failed => "FAILED",
            OperationState::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given was not one of the five states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state '{0}'; expected one of PENDING, RUNNING, COMPLETED, FAILED, CANCELLED")]
pub struct UnknownState(pub String);

impl FromStr for OperationState {
    type Err = UnknownState;

    /// Case-insensitive, because clients written against Icarus send both `FAILED` and `failed`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperationState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_and_rejects_unknown_names() {
        assert_eq!("running".parse(), Ok(OperationState::Running));
        assert_eq!("CANCELLED".parse(), Ok(OperationState::Cancelled));
        assert_eq!(
            "DONE".parse::<OperationState>(),
            Err(UnknownState("DONE".into()))
        );
    }

    #[test]
    fn only_finished_states_are_terminal() {
        let terminal: Vec<_> = OperationState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                OperationState::Completed,
                OperationState::Failed,
                OperationState::Cancelled
            ]
        );
    }
}
