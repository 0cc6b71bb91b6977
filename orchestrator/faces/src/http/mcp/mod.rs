//! The Model Context Protocol face: a streamable HTTP endpoint at `/mcp` (JSON-RPC 2.0, MCP
//! revisions 2025-03-26 to 2025-11-25), so AI agents use cadre directly (docs/MCP.md).
//!
//! - Every task type is a tool whose input schema is the type's params schema; calling it
//!   submits the task with the caller's credential and waits for the end. With a
//!   `progressToken` the answer is an SSE stream of `notifications/progress` (from the task's
//!   events) followed by the result; `notifications/cancelled` cancels the task. Extra tools:
//!   `get_task`, `cancel_task`, `list_tasks`, `supervisor_status`.
//! - Resources `cadre://supervisors` and `cadre://tasks/{id}` (a template); two prompts.
//! - Sessions (`Mcp-Session-Id`) are bound to the credential's subject, bounded in number and
//!   dropped when idle. Every request carries the bearer credential (same roles and tenants as
//!   gRPC); without one the answer is 401 with `WWW-Authenticate`.
//!
//! Layout: [`protocol`] (JSON-RPC envelopes, codes, replies), `sessions.rs`, `tools.rs`,
//! `resources.rs` (resources and prompts), `handlers.rs` (the HTTP handlers).

mod handlers;
pub mod protocol;
mod resources;
mod sessions;
mod tools;

pub use handlers::routes;
pub use protocol::PROTOCOL_VERSIONS;
