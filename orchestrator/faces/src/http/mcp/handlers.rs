//! The `/mcp` endpoint's HTTP handlers: POST carries one JSON-RPC message (initialize, a
//! notification, or a request answered in JSON or SSE), DELETE ends a session, GET is 405.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cadre_core::auth::{Action, Principal};
use cadre_core::node::Node;
use serde_json::{Value, json};

use crate::http::api::bearer;
use crate::http::mcp::protocol::{
    DEFAULT_VERSION, Envelope, INVALID_REQUEST, MAX_BODY, METHOD_NOT_FOUND, PROTOCOL_VERSIONS, Refused,
    RpcOutcome, auth_refused, base_url, denied, http_error, parse_envelope, reply, rpc_error, rpc_result,
};
use crate::http::mcp::resources::{get_prompt, prompts, read_resource, resource_templates, resources};
use crate::http::mcp::sessions::{Sessions, session_header};
use crate::http::mcp::tools::{ToolCall, tools};

/// The endpoint's state: the node and the sessions.
#[derive(Clone)]
struct Mcp {
    node: Arc<Node>,
    sessions: Sessions,
}

/// The `/mcp` route and the protected-resource metadata its 401 points to.
pub fn routes(node: Arc<Node>) -> Router {
    let mcp = Mcp {
        node,
        sessions: Sessions::default(),
    };
    Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(mcp)
}

/// RFC 9728 protected-resource metadata: cadre takes bearer tokens and API keys that its
/// commanders issue (`cadre token issue`, `cadre key create`); there is no OAuth server.
async fn resource_metadata(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    axum::Json(json!({
        "resource": format!("{base}/mcp"),
        "resource_name": "cadre",
        "authorization_servers": [],
        "bearer_methods_supported": ["header"],
    }))
    .into_response()
}

async fn get_mcp() -> Response {
    // No server-initiated messages outside a request: the spec allows 405 here.
    let mut resp = StatusCode::METHOD_NOT_ALLOWED.into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    resp
}

/// Authenticates an MCP request: every request carries the credential (the core logs and
/// audits a refusal); what each method may do is checked by the core operation it calls.
async fn caller(mcp: &Mcp, headers: &HeaderMap) -> Result<Principal, Response> {
    mcp.node
        .authorize(bearer(headers), Action::GetTask)
        .await
        .map_err(|e| auth_refused(headers, &e))
}

async fn delete_mcp(State(mcp): State<Mcp>, headers: HeaderMap) -> Response {
    let p = match caller(&mcp, &headers).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let Some(id) = session_header(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !mcp.sessions.end(&id, &p) {
        return StatusCode::NOT_FOUND.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn post_mcp(
    State(mcp): State<Mcp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match caller(&mcp, &headers).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return http_error(e.status(), &Value::Null, INVALID_REQUEST, e.body_text()),
    };
    let msg = match parse_envelope(&body) {
        Ok(Some(msg)) => msg,
        Ok(None) => return StatusCode::ACCEPTED.into_response(),
        Err(refused) => return *refused,
    };
    if msg.method == "initialize" {
        return initialize(&mcp, &p, msg);
    }
    let session = match in_session(&mcp, &p, &headers, &msg) {
        Ok(session) => session,
        Err(answer) => return *answer,
    };
    let Some(id) = msg.id.clone() else {
        notification(&mcp, &p, &session, &msg);
        return StatusCode::ACCEPTED.into_response();
    };
    if msg.method == "tools/call" {
        let call = ToolCall {
            node: mcp.node.clone(),
            sessions: mcp.sessions.clone(),
            p,
            session,
            id,
        };
        return call.run(msg.params).await;
    }
    let body = match request(&mcp, &p, &msg).await {
        Ok(result) => rpc_result(&id, result),
        Err((code, message)) => rpc_error(&id, code, message),
    };
    reply(StatusCode::OK, body)
}

/// `initialize`: a new session of `p`, in the newest protocol revision both sides speak.
fn initialize(mcp: &Mcp, p: &Principal, msg: Envelope) -> Response {
    let Some(id) = msg.id else {
        return http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "initialize must be a request (with an id)",
        );
    };
    let asked = msg
        .params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == asked)
        .copied()
        .unwrap_or(DEFAULT_VERSION);
    let session = mcp.sessions.new_session(p);
    let result = json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": false },
            "resources": { "subscribe": false, "listChanged": false },
            "prompts": { "listChanged": false },
        },
        "serverInfo": { "name": "cadre", "title": "cadre task orchestrator", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "cadre runs tasks on supervised worker pools. Each task type is a tool: calling it submits the task and returns its result. Use list_tasks, get_task and cancel_task to follow work, and supervisor_status to see capacity.",
    });
    let mut resp = reply(StatusCode::OK, rpc_result(&id, result));
    if let Ok(v) = HeaderValue::from_str(&session) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

/// The live session of `p` a message belongs to, or the answer for one without (a stateless
/// `server/discover` probe gets "method not found", naming the handshake this server speaks).
fn in_session(mcp: &Mcp, p: &Principal, headers: &HeaderMap, msg: &Envelope) -> Result<String, Refused> {
    let id_or_null = msg.id.clone().unwrap_or(Value::Null);
    let Some(session) = session_header(headers) else {
        if msg.method == "server/discover"
            && let Some(id) = &msg.id
        {
            // The stateless 2026-07-28 revision's probe: this server speaks the initialize
            // handshake, which clients fall back to.
            return Err(Box::new(reply(
                StatusCode::OK,
                rpc_error(
                    id,
                    METHOD_NOT_FOUND,
                    format!(
                        "Method not found: server/discover; this server speaks the initialize handshake ({})",
                        PROTOCOL_VERSIONS.join(", ")
                    ),
                ),
            )));
        }
        return Err(Box::new(http_error(
            StatusCode::BAD_REQUEST,
            &id_or_null,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        )));
    };
    if !mcp.sessions.touch(&session, p) {
        return Err(Box::new(http_error(
            StatusCode::NOT_FOUND,
            &id_or_null,
            -32001,
            "Session not found: initialize again",
        )));
    }
    if let Some(v) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !PROTOCOL_VERSIONS.contains(&v)
    {
        return Err(Box::new(http_error(
            StatusCode::BAD_REQUEST,
            &id_or_null,
            INVALID_REQUEST,
            format!(
                "Bad Request: unsupported MCP-Protocol-Version {v:?} (supported: {})",
                PROTOCOL_VERSIONS.join(", ")
            ),
        )));
    }
    Ok(session)
}

/// A notification: `notifications/cancelled` cancels the tool call's task; the rest are
/// accepted with nothing to do.
fn notification(mcp: &Mcp, p: &Principal, session: &str, msg: &Envelope) {
    if msg.method == "notifications/cancelled"
        && let Some(req) = msg.params.get("requestId")
        && let Some(task) = mcp.sessions.cancel_inflight(session, &req.to_string())
    {
        let reason = msg
            .params
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("cancelled by the MCP client")
            .to_string();
        let node = mcp.node.clone();
        let p = p.clone();
        tokio::spawn(async move {
            if let Err(e) = node.cancel(&p, &task.to_string(), &reason).await {
                tracing::info!(task = %task, error = %e, "MCP cancellation not applied");
            }
        });
    }
}

/// A request other than `initialize` and `tools/call`.
async fn request(mcp: &Mcp, p: &Principal, msg: &Envelope) -> RpcOutcome {
    match msg.method.as_str() {
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools(&mcp.node, p).await.map_err(|e| denied(&e))? })),
        "resources/list" => Ok(resources()),
        "resources/templates/list" => Ok(resource_templates()),
        "resources/read" => read_resource(&mcp.node, p, &msg.params).await,
        "prompts/list" => Ok(json!({ "prompts": prompts() })),
        "prompts/get" => get_prompt(&msg.params),
        other => Err((METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    }
}
