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

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cadre_proto::v1;
use cadre_proto::{SpecError, TaskId, TaskRecord};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::{bearer, event_json, status_json, task_json};
use cadre_core::auth::{Action, Principal};
use cadre_core::error::Error;
use cadre_core::node::Node;

/// Protocol revisions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The revision offered to a client that asks for one we do not speak.
const DEFAULT_VERSION: &str = "2025-06-18";
/// Sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 1024;
/// A session unused this long is forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Largest JSON-RPC message accepted.
const MAX_BODY: usize = 2 << 20;

// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// MCP: the resource does not exist.
const RESOURCE_NOT_FOUND: i64 = -32002;
/// cadre: the credential's role or tenant does not allow this.
const PERMISSION_DENIED: i64 = -32001;

/// One client session.
struct Session {
    subject: String,
    last_used: Instant,
    /// Running tool calls: JSON-RPC request id (as JSON text) -> task.
    inflight: HashMap<String, TaskId>,
    /// Running tool calls the client cancelled (they get no response).
    cancelled: HashSet<String>,
}

#[derive(Clone)]
struct Mcp {
    node: Arc<Node>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

/// The `/mcp` route and the protected-resource metadata its 401 points to.
pub fn routes(node: Arc<Node>) -> Router {
    let mcp = Mcp {
        node,
        sessions: Arc::default(),
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

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
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

/// 401/403 for a request without a usable credential, with the headers MCP clients expect.
fn auth_refused(headers: &HeaderMap, e: &Error) -> Response {
    let status = match e {
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let challenge = format!(
        "Bearer realm=\"cadre\", resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        base_url(headers)
    );
    let mut resp = (
        status,
        axum::Json(json!({ "error": { "code": if status == StatusCode::FORBIDDEN { "permission_denied" } else { "unauthenticated" }, "message": e.to_string() } })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message.into() } })
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A protocol error answered at the HTTP level (bad JSON, bad envelope, session problems).
fn http_error(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> Response {
    reply(status, rpc_error(id, code, message))
}

impl Mcp {
    fn new_session(&self, p: &Principal) -> String {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                subject: p.subject.clone(),
                last_used: Instant::now(),
                inflight: HashMap::new(),
                cancelled: HashSet::new(),
            },
        );
        id
    }

    /// Whether `id` is a live session of `p` (touching it).
    fn touch(&self, id: &str, p: &Principal) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(id) {
            Some(s) if s.subject == p.subject && s.last_used.elapsed() < SESSION_IDLE => {
                s.last_used = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn start(&self, session: &str, request: &str, task: TaskId) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get_mut(session) {
            s.inflight.insert(request.to_string(), task);
        }
    }

    /// Marks a running tool call cancelled by the client; returns its task.
    fn cancel_inflight(&self, session: &str, request: &str) -> Option<TaskId> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(session)?;
        let task = s.inflight.get(request).copied()?;
        s.cancelled.insert(request.to_string());
        Some(task)
    }

    /// Forgets a finished tool call; true when the client had cancelled it.
    fn finish(&self, session: &str, request: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(session) {
            Some(s) => {
                s.inflight.remove(request);
                s.cancelled.remove(request)
            }
            None => false,
        }
    }
}

async fn get_mcp() -> Response {
    // No server-initiated messages outside a request: the spec allows 405 here.
    let mut resp = StatusCode::METHOD_NOT_ALLOWED.into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    resp
}

async fn delete_mcp(State(mcp): State<Mcp>, headers: HeaderMap) -> Response {
    let p = match mcp.node.authorize(bearer(&headers), Action::GetTask).await {
        Ok(p) => p,
        Err(e) => return auth_refused(&headers, &e),
    };
    let Some(id) = session_header(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !mcp.touch(&id, &p) {
        return StatusCode::NOT_FOUND.into_response();
    }
    mcp.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

fn session_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn post_mcp(
    State(mcp): State<Mcp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let p = match mcp.node.authorize(bearer(&headers), Action::GetTask).await {
        Ok(p) => p,
        Err(e) => return auth_refused(&headers, &e),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return http_error(e.status(), &Value::Null, INVALID_REQUEST, e.body_text()),
    };
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                PARSE_ERROR,
                format!("Parse error: {e}"),
            );
        }
    };
    if msg.is_array() {
        return http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "Invalid Request: batches are not supported; send one message per POST",
        );
    }
    let Some(obj) = msg.as_object() else {
        return http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "Invalid Request: not an object",
        );
    };
    let id = obj.get("id").cloned();
    let id_or_null = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return http_error(
            StatusCode::BAD_REQUEST,
            &id_or_null,
            INVALID_REQUEST,
            "Invalid Request: jsonrpc must be \"2.0\"",
        );
    }
    if let Some(i) = &id
        && !(i.is_string() || i.is_i64() || i.is_u64())
    {
        return http_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "Invalid Request: id must be a string or an integer",
        );
    }
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &id_or_null,
                INVALID_REQUEST,
                "Invalid Request: method must be a string",
            );
        }
        // A response to a server request: cadre sends none, so there is nothing to match.
        None if obj.contains_key("result") || obj.contains_key("error") => {
            return StatusCode::ACCEPTED.into_response();
        }
        None => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &id_or_null,
                INVALID_REQUEST,
                "Invalid Request: no method",
            );
        }
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    if !(params.is_null() || params.is_object()) {
        return http_error(
            StatusCode::BAD_REQUEST,
            &id_or_null,
            INVALID_REQUEST,
            "Invalid Request: params must be an object",
        );
    }

    if method == "initialize" {
        let Some(id) = id else {
            return http_error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                INVALID_REQUEST,
                "initialize must be a request (with an id)",
            );
        };
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = PROTOCOL_VERSIONS
            .iter()
            .find(|v| **v == asked)
            .copied()
            .unwrap_or(DEFAULT_VERSION);
        let session = mcp.new_session(&p);
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
        return resp;
    }

    let Some(session) = session_header(&headers) else {
        if method == "server/discover"
            && let Some(id) = &id
        {
            // The stateless 2026-07-28 revision's probe: this server speaks the initialize
            // handshake, which clients fall back to.
            return reply(
                StatusCode::OK,
                rpc_error(
                    id,
                    METHOD_NOT_FOUND,
                    format!(
                        "Method not found: server/discover; this server speaks the initialize handshake ({})",
                        PROTOCOL_VERSIONS.join(", ")
                    ),
                ),
            );
        }
        return http_error(
            StatusCode::BAD_REQUEST,
            &id_or_null,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required (send initialize first)",
        );
    };
    if !mcp.touch(&session, &p) {
        return http_error(
            StatusCode::NOT_FOUND,
            &id_or_null,
            -32001,
            "Session not found: initialize again",
        );
    }
    if let Some(v) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !PROTOCOL_VERSIONS.contains(&v)
    {
        return http_error(
            StatusCode::BAD_REQUEST,
            &id_or_null,
            INVALID_REQUEST,
            format!(
                "Bad Request: unsupported MCP-Protocol-Version {v:?} (supported: {})",
                PROTOCOL_VERSIONS.join(", ")
            ),
        );
    }

    let Some(id) = id else {
        // A notification: act on cancellation, accept the rest.
        if method == "notifications/cancelled"
            && let Some(req) = params.get("requestId")
            && let Some(task) = mcp.cancel_inflight(&session, &req.to_string())
        {
            let reason = params
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("cancelled by the MCP client")
                .to_string();
            let node = mcp.node.clone();
            let p = p.clone();
            tokio::spawn(async move {
                match node.cancel(&p, &task.to_string(), &reason).await {
                    Ok(t) => {
                        node.audit(Some(&p), "task.cancel", &t.id.to_string(), "ok", &reason)
                            .await
                    }
                    Err(e) => tracing::info!(task = %task, error = %e, "MCP cancellation not applied"),
                }
            });
        }
        return StatusCode::ACCEPTED.into_response();
    };

    let outcome = match method.as_str() {
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools(&mcp.node) })),
        "tools/call" => return call_tool(mcp, p, session, id, params).await,
        "resources/list" => Ok(json!({ "resources": [{
            "uri": "cadre://supervisors",
            "name": "supervisors",
            "title": "Supervisor tree",
            "description": "Every supervisor with its pools: size, busy workers, queue depth, restarts.",
            "mimeType": "application/json",
        }] })),
        "resources/templates/list" => Ok(json!({ "resourceTemplates": [{
            "uriTemplate": "cadre://tasks/{id}",
            "name": "task",
            "title": "A task with its events",
            "description": "The task (state, params, result, children) and its event timeline.",
            "mimeType": "application/json",
        }] })),
        "resources/read" => read_resource(&mcp.node, &p, &params).await,
        "prompts/list" => Ok(json!({ "prompts": prompts() })),
        "prompts/get" => get_prompt(&params),
        other => Err((METHOD_NOT_FOUND, format!("Method not found: {other}"))),
    };
    let body = match outcome {
        Ok(result) => rpc_result(&id, result),
        Err((code, message)) => rpc_error(&id, code, message),
    };
    reply(StatusCode::OK, body)
}

type RpcOutcome = Result<Value, (i64, String)>;

fn denied(e: &Error) -> (i64, String) {
    match e {
        Error::PermissionDenied(_) | Error::Unauthenticated(_) => (PERMISSION_DENIED, e.to_string()),
        Error::NotFound(_) => (RESOURCE_NOT_FOUND, format!("Resource not found: {e}")),
        Error::Spec(_) => (INVALID_PARAMS, e.to_string()),
        _ => (INTERNAL_ERROR, e.to_string()),
    }
}

/// The tools: one per task type, then the helpers.
fn tools(node: &Node) -> Vec<Value> {
    let mut out: Vec<Value> = node
        .task_types()
        .into_iter()
        .map(|t| {
            json!({
                "name": t.task_type,
                "title": t.task_type,
                "description": format!(
                    "Runs a `{}` task on the {} supervisor's {} workers and returns its result (JSON). Progress is reported while it runs.",
                    t.task_type, t.supervisor, t.worker_kind
                ),
                "inputSchema": t.params_schema,
            })
        })
        .collect();
    out.extend([
        json!({
            "name": "get_task",
            "title": "Get a task",
            "description": "A task by id: state, params, result or error, children.",
            "inputSchema": { "type": "object", "properties": { "id": { "type": "string", "description": "task id" } }, "required": ["id"], "additionalProperties": false },
        }),
        json!({
            "name": "cancel_task",
            "title": "Cancel a task",
            "description": "Cancels a queued or running task.",
            "inputSchema": { "type": "object", "properties": { "id": { "type": "string" }, "reason": { "type": "string" } }, "required": ["id"], "additionalProperties": false },
        }),
        json!({
            "name": "list_tasks",
            "title": "List tasks",
            "description": "Tasks newest first, filtered by states, type prefix or parent.",
            "inputSchema": { "type": "object", "properties": {
                "states": { "type": "array", "items": { "type": "string", "enum": ["QUEUED", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"] } },
                "type_prefix": { "type": "string" },
                "parent_id": { "type": "string" },
                "page_size": { "type": "integer", "minimum": 1, "maximum": 1000 },
                "page_token": { "type": "string" },
            }, "additionalProperties": false },
        }),
        json!({
            "name": "supervisor_status",
            "title": "Supervisor status",
            "description": "The supervisor tree: pools with size, busy workers, queue depth and restarts.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
        }),
    ]);
    out
}

/// A tool result carrying JSON: as text, and as structured content when it is an object.
fn json_tool_result(v: Value, is_error: bool) -> Value {
    let mut r = json!({
        "content": [{ "type": "text", "text": v.to_string() }],
        "isError": is_error,
    });
    if v.is_object() {
        r["structuredContent"] = v;
    }
    r
}

fn text_tool_error(message: String) -> Value {
    json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

fn arg_str<'a>(args: &'a Value, key: &str, required: bool) -> Result<Option<&'a str>, (i64, String)> {
    match args.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) => Err((INVALID_PARAMS, format!("Invalid params: {key} is required"))),
        Some(_) => Err((INVALID_PARAMS, format!("Invalid params: {key} must be a string"))),
    }
}

/// The helper tools (not task types); None when `name` is not one.
async fn helper_tool(node: &Node, p: &Principal, name: &str, args: &Value) -> Option<RpcOutcome> {
    let known = ["get_task", "cancel_task", "list_tasks", "supervisor_status"];
    if !known.contains(&name) {
        return None;
    }
    Some(helper_tool_inner(node, p, name, args).await)
}

async fn helper_tool_inner(node: &Node, p: &Principal, name: &str, args: &Value) -> RpcOutcome {
    let as_tool = |r: Result<Value, Error>| -> RpcOutcome {
        Ok(match r {
            Ok(v) => json_tool_result(v, false),
            Err(e) => text_tool_error(e.to_string()),
        })
    };
    match name {
        "get_task" => {
            let id = arg_str(args, "id", true)?.unwrap_or_default();
            let r = async {
                node.permit(p, Action::GetTask).await?;
                Ok(task_json(&node.get(p, id).await?))
            }
            .await;
            as_tool(r)
        }
        "cancel_task" => {
            let id = arg_str(args, "id", true)?.unwrap_or_default();
            let reason = arg_str(args, "reason", false)?.unwrap_or("cancelled through MCP");
            let r = async {
                node.permit(p, Action::CancelTask).await?;
                let t = node.cancel(p, id, reason).await?;
                node.audit(Some(p), "task.cancel", &t.id.to_string(), "ok", reason)
                    .await;
                Ok(task_json(&t))
            }
            .await;
            as_tool(r)
        }
        "list_tasks" => {
            let states = match args.get("states") {
                None | Some(Value::Null) => vec![],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .and_then(|s| cadre_proto::TaskState::ALL.iter().find(|t| t.as_str() == s))
                            .map(|t| t.to_wire() as i32)
                            .ok_or_else(|| {
                                (
                                    INVALID_PARAMS,
                                    format!("Invalid params: states: {s} is not a task state"),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err((INVALID_PARAMS, "Invalid params: states must be an array".into())),
            };
            let page_size = match args.get("page_size") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_u64().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    (
                        INVALID_PARAMS,
                        "Invalid params: page_size must be 1-1000".to_string(),
                    )
                })? as u32,
            };
            let req = v1::ListRequest {
                states,
                task_type_prefix: arg_str(args, "type_prefix", false)?
                    .unwrap_or_default()
                    .to_string(),
                parent_id: arg_str(args, "parent_id", false)?.unwrap_or_default().to_string(),
                page_size,
                page_token: arg_str(args, "page_token", false)?
                    .unwrap_or_default()
                    .to_string(),
            };
            let r = async {
                node.permit(p, Action::ListTasks).await?;
                let (tasks, next) = node.list(p, &req).await?;
                Ok(json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>(), "next_page_token": next }))
            }
            .await;
            as_tool(r)
        }
        _ => {
            let r = async {
                node.permit(p, Action::Status).await?;
                Ok(status_json(&node.status().await?))
            }
            .await;
            as_tool(r)
        }
    }
}

/// What a finished task tells the calling agent.
fn task_result(t: &TaskRecord) -> Value {
    match (&t.state, &t.result) {
        (cadre_proto::TaskState::Succeeded, Some(result)) => {
            let mut r = json_tool_result(result.clone(), false);
            r["_meta"] = json!({ "cadre/task_id": t.id.to_string() });
            r
        }
        _ => {
            let mut r = text_tool_error(format!(
                "task {} ended {}: {}",
                t.id,
                t.state.as_str(),
                t.error.clone().unwrap_or_default()
            ));
            r["_meta"] = json!({ "cadre/task_id": t.id.to_string() });
            r
        }
    }
}

async fn call_tool(mcp: Mcp, p: Principal, session: String, id: Value, params: Value) -> Response {
    let done = |outcome: RpcOutcome| {
        let body = match outcome {
            Ok(r) => rpc_result(&id, r),
            Err((code, message)) => rpc_error(&id, code, message),
        };
        reply(StatusCode::OK, body)
    };
    let Some(name) = params.get("name").and_then(Value::as_str).map(str::to_string) else {
        return done(Err((INVALID_PARAMS, "Invalid params: name is required".into())));
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return done(Err((
                INVALID_PARAMS,
                "Invalid params: arguments must be an object".into(),
            )));
        }
    };
    if let Some(outcome) = helper_tool(&mcp.node, &p, &name, &args).await {
        return done(outcome);
    }
    if !mcp.node.accepts(&name) {
        return done(Err((
            INVALID_PARAMS,
            format!("Invalid params: unknown tool {name:?}"),
        )));
    }
    if let Err(e) = mcp.node.permit(&p, Action::SubmitTask).await {
        return done(Ok(text_tool_error(e.to_string())));
    }
    let spec = v1::TaskSpec {
        task_type: name.clone(),
        params_json: args.to_string(),
        ..Default::default()
    };
    let task = match mcp.node.submit(&p, Some(&spec)).await {
        Ok((t, _)) => t,
        Err(Error::Spec(e @ SpecError::Invalid { .. })) => {
            return done(Err((INVALID_PARAMS, format!("Invalid params: arguments: {e}"))));
        }
        Err(e) => return done(Ok(text_tool_error(e.to_string()))),
    };
    let request_key = id.to_string();
    mcp.start(&session, &request_key, task.id);
    let progress_token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
        .cloned();
    let watch = mcp
        .node
        .watch(
            &p,
            &v1::WatchRequest {
                task_id: task.id.to_string(),
                ..Default::default()
            },
        )
        .await;
    let mut watch = match watch {
        Ok(w) => w,
        Err(e) => {
            mcp.finish(&session, &request_key);
            return done(Ok(text_tool_error(e.to_string())));
        }
    };
    let Some(token) = progress_token else {
        // No progress wanted: wait for the end, answer in one JSON body.
        while let Some(ev) = watch.recv().await {
            if ev.is_err() {
                break;
            }
        }
        mcp.finish(&session, &request_key);
        return match mcp.node.get(&p, &task.id.to_string()).await {
            Ok(t) if t.state.is_terminal() => done(Ok(task_result(&t))),
            Ok(t) => done(Ok(text_tool_error(format!(
                "lost track of task {}; call get_task",
                t.id
            )))),
            Err(e) => done(Ok(text_tool_error(e.to_string()))),
        };
    };
    // Progress wanted: an SSE stream of progress notifications, then the result.
    let (tx, rx) = mpsc::channel::<Value>(64);
    tokio::spawn(async move {
        let mut sent = 0u64;
        while let Some(ev) = watch.recv().await {
            let Ok(ev) = ev else { break };
            sent += 1;
            let e = event_json(&ev);
            let message = if ev.is_progress {
                format!("{:.0}% {}", ev.progress * 100.0, ev.message)
            } else if ev.message.is_empty() {
                format!("{} (attempt {})", ev.state.as_str(), ev.attempt)
            } else {
                format!("{} (attempt {}): {}", ev.state.as_str(), ev.attempt, ev.message)
            };
            let note = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": { "progressToken": token, "progress": sent, "message": message, "_meta": { "cadre/event": e } },
            });
            if tx.send(note).await.is_err() {
                break;
            }
        }
        // After a client's notifications/cancelled the request gets no response (MCP).
        if mcp.finish(&session, &request_key) {
            return;
        }
        let body = match mcp.node.get(&p, &task.id.to_string()).await {
            Ok(t) => rpc_result(&id, task_result(&t)),
            Err(e) => rpc_result(&id, text_tool_error(e.to_string())),
        };
        let _ = tx.send(body).await;
    });
    // SSE framing of JSON-RPC messages (`event: message`).
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |v| {
        Ok::<_, Infallible>(SseEvent::default().event("message").data(v.to_string()))
    });
    Sse::new(stream).into_response()
}

async fn read_resource(node: &Node, p: &Principal, params: &Value) -> RpcOutcome {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| (INVALID_PARAMS, "Invalid params: uri is required".to_string()))?;
    let content = |v: Value| json!({ "contents": [{ "uri": uri, "mimeType": "application/json", "text": v.to_string() }] });
    if uri == "cadre://supervisors" {
        node.permit(p, Action::Status).await.map_err(|e| denied(&e))?;
        let status = node.status().await.map_err(|e| denied(&e))?;
        return Ok(content(status_json(&status)));
    }
    if let Some(id) = uri.strip_prefix("cadre://tasks/") {
        let task = node.get(p, id).await.map_err(|e| match e {
            Error::Spec(_) | Error::NotFound(_) => (RESOURCE_NOT_FOUND, format!("Resource not found: {uri}")),
            other => denied(&other),
        })?;
        let events = node.task_events(p, id, 0, 1000).await.map_err(|e| denied(&e))?;
        return Ok(content(json!({
            "task": task_json(&task),
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
        })));
    }
    Err((RESOURCE_NOT_FOUND, format!("Resource not found: {uri}")))
}

fn prompts() -> Vec<Value> {
    vec![
        json!({
            "name": "delegate_to_cadre",
            "title": "Delegate work to cadre",
            "description": "Plan a piece of work as cadre tasks, run them, and report the results.",
            "arguments": [
                { "name": "goal", "description": "What should be achieved", "required": true },
                { "name": "type_prefix", "description": "Only use task types starting with this (e.g. intelligence.)", "required": false },
            ],
        }),
        json!({
            "name": "triage_failed_tasks",
            "title": "Triage failed tasks",
            "description": "Look at recent FAILED and TIMED_OUT tasks, group them by cause and suggest fixes.",
            "arguments": [
                { "name": "type_prefix", "description": "Only tasks whose type starts with this", "required": false },
            ],
        }),
    ]
}

fn get_prompt(params: &Value) -> RpcOutcome {
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let arg = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let text = match name {
        "delegate_to_cadre" => {
            let goal = arg("goal");
            if goal.is_empty() {
                return Err((INVALID_PARAMS, "Invalid params: argument goal is required".into()));
            }
            let scope = match arg("type_prefix").as_str() {
                "" => String::new(),
                p => format!(" Only use tools whose name starts with `{p}`."),
            };
            format!(
                "Goal: {goal}\n\nYou can run work on cadre: each task-type tool (named like `supervisor.domain.action`) runs one task and returns its result.{scope} Break the goal into independent tasks, call the tools (in parallel where they do not depend on each other), check each result, use get_task for details of anything that failed, and report what was done with the task ids."
            )
        }
        "triage_failed_tasks" => {
            let prefix = arg("type_prefix");
            format!(
                "Call list_tasks with states [\"FAILED\", \"TIMED_OUT\"]{} and page_size 50. Group the tasks by task type and error, read a representative task of each group with get_task, and for each group say what went wrong and what to change (params, timeouts, retries, capacity from supervisor_status).",
                if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" and type_prefix \"{prefix}\"")
                }
            )
        }
        other => {
            return Err((
                INVALID_PARAMS,
                format!("Invalid params: unknown prompt {other:?}"),
            ));
        }
    };
    Ok(json!({
        "description": name,
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
    }))
}
