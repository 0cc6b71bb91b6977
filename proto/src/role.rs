//! Roles: the rings a credential can hold, innermost first. What each ring may call is the
//! tier-0 core's permission table; the rings themselves are part of the contract (tokens, API
//! keys, stored key rows and workflow steps name them).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A principal's ring. Each ring may do everything the rings inside it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and watches its tenant's tasks.
    Observer,
    /// Also submits and cancels within its tenant.
    Operator,
    /// Also sees the supervisor tree, scales pools and reloads config.
    Supervisor,
    /// Everything, across all tenants, including credentials.
    Commander,
}

impl Role {
    /// Every role, innermost first.
    pub const ALL: [Role; 4] = [Role::Observer, Role::Operator, Role::Supervisor, Role::Commander];

    /// The name used in tokens, keys and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Observer => "observer",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Commander => "commander",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{s:?} is not a role (observer, operator, supervisor, commander)"))
    }
}
