//! The `[executors]` config section: one sub-section per executor that calls out.

use crate::calls::{http, llm, mcp, probe, remote};
use crate::system::exec;

/// The `[executors]` config section: settings of the executors that call out (model providers,
/// commands, webhooks, MCP servers, probe targets). Everything defaults to "nothing configured";
/// the offline executors need no settings.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorsConfig {
    /// Model providers for `llm`.
    pub llm: llm::LlmConfig,
    /// Allow-listed commands for `exec`.
    pub exec: exec::ExecConfig,
    /// Webhooks for `http`.
    pub http: http::WebhookConfig,
    /// External MCP servers for `mcp`.
    pub mcp: mcp::McpClientConfig,
    /// Probe settings for `health`.
    pub health: probe::HealthConfig,
    /// Remote workers for `remote`.
    pub remote: remote::RemoteConfig,
}

impl ExecutorsConfig {
    /// Every problem in the section, each as `executors.<path>: <what>`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = self.llm.validate();
        errs.extend(self.exec.validate());
        errs.extend(self.http.validate());
        errs.extend(self.mcp.validate());
        errs.extend(self.health.validate());
        errs.extend(self.remote.validate());
        errs.into_iter().map(|e| format!("executors.{e}")).collect()
    }
}
