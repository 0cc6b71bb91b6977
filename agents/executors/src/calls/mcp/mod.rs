//! Calls a tool on an external MCP (Model Context Protocol) server (`mcp`).
//!
//! `{"server": "<name>", "tool": "<tool>", "arguments": {..}}` -> `{"content": [..],
//! "structured_content": {..} | null, "is_error": false}`: the essentials of the server's
//! `CallToolResult`. The servers are named in the `[executors.mcp.servers]` config section,
//! each reached over stdio (a child process this executor spawns) or over streamable HTTP.
//!
//! Every task gets a session of its own: `initialize`, `notifications/initialized`,
//! `tools/call`, then the session ends (stdio: stdin is closed and the child is killed if it
//! has not exited after [`STDIO_EXIT_GRACE`]; HTTP: the session is DELETEd, best effort).
//! No process or connection is pooled, so nothing outlives its task and one task cannot see
//! another's state — at the price of a process start per call for stdio servers.
//!
//! Failure policy (one place):
//!
//! | what happens                                          | error |
//! |-------------------------------------------------------|-------|
//! | unknown server, tool not in the server's allow-list   | `InvalidParams` |
//! | spawn failure, connection refused, server exits early, timeout, HTTP 408/429/5xx, expired session | `Retryable` |
//! | JSON-RPC error answer (e.g. `-32602` bad arguments)   | `Fatal`, with its code and message |
//! | tool result with `isError: true`                      | `Fatal`, with the tool's text content (unless `return_tool_errors`) |
//! | response above `max_response_bytes`, malformed answer, unknown protocol version, HTTP 401/403/other 4xx | `Fatal` |
//! | task cancelled                                         | `notifications/cancelled` is sent for the call, the session ends (the stdio child is killed and reaped), `Cancelled` |
//!
//! Layout: this file holds the executor and the protocol (JSON-RPC over any transport);
//! `config` the config section; [`stdio`] and [`http`] move messages; [`sse`] decodes event
//! streams; `limits` holds the fixed bounds and the errors that quote a server.

mod config;
mod http;
mod limits;
mod sse;
mod stdio;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::ExecutorRegistry;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use config::{MAX_RESPONSE_BYTES_LIMIT, McpClientConfig, McpServerConfig};
pub use limits::STDIO_EXIT_GRACE;

use crate::support::params_schema as schema;
use limits::{GOODBYE_PATIENCE, quote};

/// Protocol versions this client speaks, the one it asks for first.
pub const PROTOCOL_VERSIONS: [&str; 2] = ["2025-06-18", "2025-03-26"];

/// Registers `mcp`, calling the servers of `config` (with none configured it refuses every
/// call as naming an unknown server).
pub(crate) fn register(r: &mut ExecutorRegistry, config: &McpClientConfig) {
    r.register("mcp", Arc::new(McpClient::new(config.clone())));
}

/// The `mcp` executor: `{"server", "tool", "arguments"}` -> the tool's `CallToolResult`
/// essentials, see the [module docs](self).
pub struct McpClient {
    /// The configured servers.
    config: McpClientConfig,
    /// Shared by every HTTP session (connection pool, TLS roots); the error when it could not
    /// be built, reported by HTTP calls.
    client: Result<reqwest::Client, String>,
}

impl McpClient {
    /// An executor calling the servers of `config`.
    pub fn new(config: McpClientConfig) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"));
        McpClient { config, client }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallParams {
    server: String,
    tool: String,
    #[serde(default)]
    arguments: Map<String, Value>,
    #[serde(default)]
    return_tool_errors: bool,
}

#[async_trait]
impl Executor for McpClient {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["server", "tool"],
            &[
                ("server", schema::text("name of a configured MCP server")),
                ("tool", schema::text("name of the tool on that server")),
                (
                    "arguments",
                    json!({ "type": "object", "description": "the tool's arguments (default {})" }),
                ),
                (
                    "return_tool_errors",
                    schema::flag(
                        false,
                        "return a tool result with isError as a result (is_error true) instead of failing",
                    ),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            (
                "content",
                schema::array(
                    json!({
                        "type": "object",
                        "required": ["type"],
                        "properties": { "type": schema::text("text, image, audio, resource_link or resource") },
                    }),
                    "the tool's content blocks, as the server returned them",
                ),
            ),
            (
                "structured_content",
                json!({ "type": ["object", "null"], "description": "the tool's structured result, if it gave one" }),
            ),
            (
                "is_error",
                schema::boolean("whether the tool reported an error (only with return_tool_errors)"),
            ),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: CallParams = decode_params(&params)?;
        let Some(server) = self.config.servers.get(&p.server) else {
            let known: Vec<&str> = self.config.servers.keys().map(String::as_str).collect();
            return Err(ExecError::InvalidParams(format!(
                "no MCP server named {:?} (configured: {})",
                p.server,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        if let Some(allowed) = &server.tools
            && !allowed.contains(&p.tool)
        {
            return Err(ExecError::InvalidParams(format!(
                "tool {:?} is not allowed on MCP server {:?} (allowed: {})",
                p.tool,
                p.server,
                allowed.join(", ")
            )));
        }
        let connect = Duration::from_millis(server.connect_timeout_ms);
        ctx.progress(0.0, format!("connecting to MCP server {}", p.server));
        let opened = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
            r = tokio::time::timeout(connect, self.open(&p.server, server)) => r,
        };
        let mut session = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ExecError::Retryable(format!(
                    "MCP server {:?} did not complete initialize within {connect:?}",
                    p.server
                )));
            }
        };
        match session.call_tool(&ctx, server, &p.tool, p.arguments).await {
            Call::Done(result) => {
                session.close(false).await;
                tool_result(&p.server, &p.tool, result?, p.return_tool_errors)
            }
            Call::Stopped(e) => {
                session.close(true).await;
                Err(e)
            }
            Call::Cancelled => {
                session.close(true).await;
                Err(ExecError::Cancelled)
            }
        }
    }
}

impl McpClient {
    /// Spawns or connects, then runs the `initialize` handshake.
    async fn open(&self, name: &str, server: &McpServerConfig) -> Result<Session, ExecError> {
        let transport = match (&server.command, &server.url) {
            (Some(_), _) => Transport::Stdio(stdio::Stdio::spawn(name, server)?),
            (None, Some(url)) => {
                let client = self.client.clone().map_err(ExecError::Fatal)?;
                Transport::Http(http::Http::new(name, client, url, server)?)
            }
            (None, None) => {
                return Err(ExecError::Fatal(format!(
                    "MCP server {name:?} has neither command nor url"
                )));
            }
        };
        let mut session = Session {
            name: name.to_string(),
            transport,
            next_id: 1,
        };
        session.initialize().await?;
        Ok(session)
    }
}

/// Turns a `CallToolResult` into the task's result, or its error when the tool failed.
fn tool_result(server: &str, tool: &str, result: Value, keep_errors: bool) -> Result<Value, ExecError> {
    let content = match result.get("content") {
        Some(Value::Array(c)) if c.iter().all(|b| b["type"].is_string()) => Value::Array(c.clone()),
        None | Some(Value::Null) => json!([]),
        Some(_) => {
            return Err(ExecError::Fatal(format!(
                "MCP server {server:?} answered tools/call with a content that is not an array of typed blocks"
            )));
        }
    };
    let structured = match result.get("structuredContent") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => Value::Null,
        Some(_) => {
            return Err(ExecError::Fatal(format!(
                "MCP server {server:?} answered tools/call with a structuredContent that is not an object"
            )));
        }
    };
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    if is_error && !keep_errors {
        let text: Vec<&str> = content
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect();
        return Err(ExecError::Fatal(format!(
            "tool {tool:?} on MCP server {server:?} failed: {}",
            quote(&text.join("\n"))
        )));
    }
    Ok(json!({ "content": content, "structured_content": structured, "is_error": is_error }))
}

/// How a `tools/call` ended.
enum Call {
    /// The server answered (a result, or an error to report).
    Done(Result<Value, ExecError>),
    /// The call was abandoned (timeout) after telling the server; the session should be torn
    /// down.
    Stopped(ExecError),
    /// The task was cancelled; the server was told.
    Cancelled,
}

/// The ways messages reach a server.
enum Transport {
    /// A child process speaking newline-delimited JSON on stdin/stdout.
    Stdio(stdio::Stdio),
    /// Streamable HTTP: a POST per message, answers as JSON or an event stream.
    Http(http::Http),
}

impl Transport {
    async fn send(&mut self, msg: &Value) -> Result<(), ExecError> {
        match self {
            Transport::Stdio(t) => t.send(msg).await,
            Transport::Http(t) => t.send(msg).await,
        }
    }

    /// The next message from the server; `Ok(None)` when no more can come (the child exited,
    /// the stream ended).
    async fn next(&mut self) -> Result<Option<Value>, ExecError> {
        match self {
            Transport::Stdio(t) => t.next().await,
            Transport::Http(t) => t.next().await,
        }
    }

    /// The error for a server that stopped answering.
    async fn gone(&mut self) -> ExecError {
        match self {
            Transport::Stdio(t) => t.gone().await,
            Transport::Http(t) => t.gone(),
        }
    }

    async fn close(self, abrupt: bool) {
        match self {
            Transport::Stdio(t) => t.close(abrupt).await,
            Transport::Http(t) => t.close().await,
        }
    }
}

/// One MCP session: JSON-RPC 2.0 requests and notifications over a transport.
struct Session {
    /// The server's name in the config, for messages.
    name: String,
    transport: Transport,
    /// Id of the next request.
    next_id: u64,
}

impl Session {
    /// `initialize` with the newest protocol version, accepting any version the server picks
    /// from [`PROTOCOL_VERSIONS`], then `notifications/initialized`.
    async fn initialize(&mut self) -> Result<(), ExecError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": {},
            "clientInfo": { "name": "cadre", "version": env!("CARGO_PKG_VERSION") },
        });
        let id = self.take_id();
        let result = self.request(id, "initialize", params, &|_: &Value| {}).await?;
        let version = result.get("protocolVersion").and_then(Value::as_str);
        let Some(version) = version.filter(|v| PROTOCOL_VERSIONS.contains(v)) else {
            return Err(ExecError::Fatal(format!(
                "MCP server {:?} speaks protocol version {}, this client knows {}",
                self.name,
                version.unwrap_or("(none given)"),
                PROTOCOL_VERSIONS.join(" and ")
            )));
        };
        if let Transport::Http(t) = &mut self.transport {
            t.set_protocol_version(version)?;
        }
        self.notify("notifications/initialized", json!({})).await
    }

    /// `tools/call`, watching the task's cancel token and the call timeout; progress
    /// notifications become the task's progress.
    async fn call_tool(
        &mut self,
        ctx: &ExecContext,
        server: &McpServerConfig,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Call {
        let id = self.take_id();
        let params = json!({ "name": tool, "arguments": arguments, "_meta": { "progressToken": id } });
        let limit = Duration::from_millis(server.call_timeout_ms);
        let on_message = |msg: &Value| report_progress(ctx, id, msg);
        ctx.progress(0.0, format!("calling {tool} on {}", self.name));
        let done = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => None,
            r = tokio::time::timeout(limit, self.request(id, "tools/call", params, &on_message)) => Some(r),
        };
        let reason = match done {
            Some(Ok(r)) => return Call::Done(r),
            Some(Err(_)) => format!("timed out after {limit:?}"),
            None => "the task was cancelled".to_string(),
        };
        let cancel = json!({ "requestId": id, "reason": reason });
        let told =
            tokio::time::timeout(GOODBYE_PATIENCE, self.notify("notifications/cancelled", cancel)).await;
        if !matches!(told, Ok(Ok(()))) {
            tracing::debug!(server = %self.name, "could not send notifications/cancelled");
        }
        match done {
            None => Call::Cancelled,
            Some(_) => Call::Stopped(ExecError::Retryable(format!(
                "tool {tool:?} on MCP server {:?} {reason}",
                self.name
            ))),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends request `id` and reads messages until its answer: the result, or a `Fatal`
    /// error carrying a JSON-RPC error's code and message. Other messages go to
    /// `on_message` (notifications) or are answered (server requests: `ping`, everything
    /// else refused as unsupported).
    async fn request(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
        on_message: &(dyn Fn(&Value) + Send + Sync),
    ) -> Result<Value, ExecError> {
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.transport.send(&msg).await?;
        loop {
            let Some(msg) = self.transport.next().await? else {
                return Err(self.transport.gone().await);
            };
            // Batches (allowed by 2025-03-26) are unpacked.
            let msgs = match msg {
                Value::Array(items) => items,
                one => vec![one],
            };
            for msg in msgs {
                if let Some(answer) = self.handle(id, method, msg, on_message).await? {
                    return answer;
                }
            }
        }
    }

    /// Deals with one message read while waiting for request `id`: `Some` when it is the
    /// answer.
    async fn handle(
        &mut self,
        id: u64,
        method: &str,
        msg: Value,
        on_message: &(dyn Fn(&Value) + Send + Sync),
    ) -> Result<Option<Result<Value, ExecError>>, ExecError> {
        let msg_id = msg.get("id").filter(|v| !v.is_null());
        match (msg_id, msg.get("method").and_then(Value::as_str)) {
            (Some(their), Some(their_method)) => {
                // A request from the server: this client offers no capabilities but ping.
                let answer = if their_method == "ping" {
                    json!({ "jsonrpc": "2.0", "id": their, "result": {} })
                } else {
                    json!({ "jsonrpc": "2.0", "id": their, "error": {
                        "code": -32601, "message": format!("{their_method} is not supported by this client") } })
                };
                self.transport.send(&answer).await?;
                Ok(None)
            }
            (None, Some(_)) => {
                on_message(&msg);
                Ok(None)
            }
            (Some(their), None) if same_id(their, id) => {
                if let Some(err) = msg.get("error") {
                    let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
                    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
                    return Ok(Some(Err(ExecError::Fatal(format!(
                        "MCP server {:?} refused {method}: {} (JSON-RPC error {code})",
                        self.name,
                        quote(message)
                    )))));
                }
                match msg.get("result") {
                    Some(r @ Value::Object(_)) => Ok(Some(Ok(r.clone()))),
                    _ => Err(ExecError::Fatal(format!(
                        "MCP server {:?} answered {method} without a result object",
                        self.name
                    ))),
                }
            }
            // An answer to something else (e.g. a stale id): not ours.
            _ => Ok(None),
        }
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), ExecError> {
        let msg = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        self.transport.send(&msg).await
    }

    /// Ends the session; `abrupt` after a cancel or failure (the stdio child is killed and
    /// reaped at once).
    async fn close(self, abrupt: bool) {
        self.transport.close(abrupt).await
    }
}

/// Whether a JSON-RPC id is request `id` (servers echo it as sent, a number; a string of the
/// same digits is accepted too).
fn same_id(their: &Value, id: u64) -> bool {
    their.as_u64() == Some(id) || their.as_str() == Some(id.to_string().as_str())
}

/// A `notifications/progress` for the call with progress token `token` becomes the task's
/// progress: `progress / total` when the server gives a total (0 otherwise) and its message.
fn report_progress(ctx: &ExecContext, token: u64, msg: &Value) {
    if msg.get("method").and_then(Value::as_str) != Some("notifications/progress") {
        return;
    }
    let p = &msg["params"];
    if !same_id(&p["progressToken"], token) {
        return;
    }
    let Some(progress) = p["progress"].as_f64() else {
        return;
    };
    let fraction = match p["total"].as_f64() {
        Some(total) if total > 0.0 => progress / total,
        _ => 0.0,
    };
    let message = match p["message"].as_str() {
        Some(m) => quote(m),
        None => format!("progress {progress}"),
    };
    ctx.progress(fraction, message);
}
