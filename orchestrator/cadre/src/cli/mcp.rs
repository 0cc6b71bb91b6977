//! `cadre mcp`: MCP over stdio for an agent that launches cadre as a local MCP server, relayed
//! by [`crate::mcp_stdio`] to the node's `/mcp` endpoint with this command line's credential.

use anyhow::Result;

use super::connect::Target;

/// Relays stdio to the node at `http` (default: `http` in endpoints.json, else
/// `http://127.0.0.1:8080`); exit code 0 when the relay ends without an error.
pub(super) async fn mcp(http: Option<String>, node: Target) -> Result<i32> {
    let http = node.http_endpoint(http);
    let credential = node.credential();
    crate::mcp_stdio::run(&http, credential).await.map(|_| 0)
}
