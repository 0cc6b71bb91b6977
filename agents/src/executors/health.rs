//! Executor for health probes of HTTP/TCP/NATS endpoints (`health`). Not built yet: this module
//! only holds its config section.

use serde::{Deserialize, Serialize};

use crate::ExecutorRegistry;

/// Config section for health probes (`health`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {}

impl HealthConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Registers this module's executors, configured by `config`.
pub(crate) fn register(_r: &mut ExecutorRegistry, _config: &HealthConfig) {}
