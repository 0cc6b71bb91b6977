//! The `[executors.mcp]` config section: the servers tasks may call, and how each is reached.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Largest `max_response_bytes` accepted (the buffer is allocated as the response arrives).
pub const MAX_RESPONSE_BYTES_LIMIT: usize = 256 * 1024 * 1024;

/// Headers the client sets itself; a server's `headers` may not name them.
const MANAGED_HEADERS: [&str; 5] = [
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "content-length",
];

/// Config section for tools on external MCP servers (`[executors.mcp]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpClientConfig {
    /// The servers tasks may call, by the name their params use (`"server": "<name>"`).
    /// Empty by default: every call is then refused as an unknown server.
    pub servers: BTreeMap<String, McpServerConfig>,
}

/// One MCP server: either `command` (stdio) or `url` (streamable HTTP), never both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Stdio: the program to spawn, a fresh process per task (an absolute path is safest;
    /// otherwise it is looked up in `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Stdio: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Stdio: names of variables of the agent's own environment passed on to the child (when
    /// set). The child gets nothing else from the agent's environment, so secrets stay put.
    #[serde(default = "default_inherit_env")]
    pub inherit_env: Vec<String>,
    /// Stdio: variables set in the child's environment (after `inherit_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Stdio: the child's working directory (default: the agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the MCP endpoint, e.g. `https://mcp.example.com/mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Streamable HTTP: name of an environment variable of the agent holding a bearer token,
    /// sent as `Authorization: Bearer <token>` (the token itself never sits in the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// Streamable HTTP: extra headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Tools tasks may call on this server; absent means any tool the server has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// How long spawning or connecting plus the `initialize` handshake may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one `tools/call` may take; then the call is cancelled and the task fails
    /// as retryable.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Largest message accepted from the server (one stdio line, one JSON body, one event of
    /// an event stream); a larger one fails the task.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_inherit_env() -> Vec<String> {
    vec!["PATH".into()]
}

fn default_connect_timeout_ms() -> u64 {
    30_000
}

fn default_call_timeout_ms() -> u64 {
    120_000
}

fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}

impl McpServerConfig {
    /// A stdio server spawning `command` with `args`, everything else at its default.
    pub fn stdio(command: impl Into<String>, args: &[&str]) -> Self {
        McpServerConfig {
            command: Some(command.into()),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Self::blank()
        }
    }

    /// A streamable HTTP server at `url`, everything else at its default.
    pub fn http(url: impl Into<String>) -> Self {
        McpServerConfig {
            url: Some(url.into()),
            ..Self::blank()
        }
    }

    fn blank() -> Self {
        McpServerConfig {
            command: None,
            args: Vec::new(),
            inherit_env: default_inherit_env(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            bearer_token_env: None,
            headers: BTreeMap::new(),
            tools: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            call_timeout_ms: default_call_timeout_ms(),
            max_response_bytes: default_max_response_bytes(),
        }
    }

    /// Problems with this server's settings, each as `<field>: <what>`.
    fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        match (&self.command, &self.url) {
            (None, None) => errs.push("command/url: set one (stdio or streamable HTTP)".into()),
            (Some(_), Some(_)) => errs.push("command/url: set only one (stdio or streamable HTTP)".into()),
            (Some(c), None) => {
                if c.trim().is_empty() {
                    errs.push("command: is empty".into());
                }
                if self.bearer_token_env.is_some() {
                    errs.push("bearer_token_env: only for url servers".into());
                }
                if !self.headers.is_empty() {
                    errs.push("headers: only for url servers".into());
                }
            }
            (None, Some(u)) => {
                match reqwest::Url::parse(u) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                    _ => errs.push(format!("url: {u:?} is not an http:// or https:// URL")),
                }
                if !self.args.is_empty() {
                    errs.push("args: only for command servers".into());
                }
                if !self.env.is_empty() {
                    errs.push("env: only for command servers".into());
                }
                if self.cwd.is_some() {
                    errs.push("cwd: only for command servers".into());
                }
            }
        }
        for name in self.inherit_env.iter().chain(self.env.keys()) {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                errs.push(format!("env: {name:?} is not a variable name"));
            }
        }
        if let Some(v) = &self.bearer_token_env
            && (v.is_empty() || v.contains('='))
        {
            errs.push(format!("bearer_token_env: {v:?} is not a variable name"));
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                errs.push(format!("headers: {k:?} is not a header name"));
            } else if MANAGED_HEADERS.contains(&k.to_ascii_lowercase().as_str())
                || (self.bearer_token_env.is_some() && k.eq_ignore_ascii_case("authorization"))
            {
                errs.push(format!("headers: {k:?} is set by the client itself"));
            }
            if reqwest::header::HeaderValue::from_str(v).is_err() {
                errs.push(format!("headers: the value of {k:?} is not a valid header value"));
            }
        }
        if let Some(tools) = &self.tools
            && tools.iter().any(|t| t.is_empty())
        {
            errs.push("tools: holds an empty name".into());
        }
        if self.connect_timeout_ms == 0 {
            errs.push("connect_timeout_ms: must be above 0".into());
        }
        if self.call_timeout_ms == 0 {
            errs.push("call_timeout_ms: must be above 0".into());
        }
        if !(1024..=MAX_RESPONSE_BYTES_LIMIT).contains(&self.max_response_bytes) {
            errs.push(format!(
                "max_response_bytes: must be in 1024..={MAX_RESPONSE_BYTES_LIMIT}"
            ));
        }
        errs
    }
}

impl McpClientConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, server) in &self.servers {
            if name.trim().is_empty() {
                errs.push("mcp.servers: a server has an empty name".into());
            }
            errs.extend(
                server
                    .problems()
                    .into_iter()
                    .map(|e| format!("mcp.servers.{name}.{e}")),
            );
        }
        errs
    }
}
