//! Executor for webhook calls (`http`). Not built yet: this module only holds its config section.

use serde::{Deserialize, Serialize};

use crate::ExecutorRegistry;

/// Config section for webhook calls (`http`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {}

impl WebhookConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Registers this module's executors, configured by `config`.
pub(crate) fn register(_r: &mut ExecutorRegistry, _config: &WebhookConfig) {}
