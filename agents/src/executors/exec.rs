//! Executor for allow-listed local commands (`exec`). Not built yet: this module only holds its config section.

use serde::{Deserialize, Serialize};

use crate::ExecutorRegistry;

/// Config section for allow-listed local commands (`exec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {}

impl ExecConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Registers this module's executors, configured by `config`.
pub(crate) fn register(_r: &mut ExecutorRegistry, _config: &ExecConfig) {}
