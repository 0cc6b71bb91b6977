//! MCP tools: one per task type (calling it submits the task with the caller's credential
//! and waits for the end, streaming progress when asked; a registered workflow is one too),
//! and the helpers `get_task`, `cancel_task`, `list_tasks`, `signal_workflow`,
//! `supervisor_status`.

use std::convert::Infallible;

use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use cadre_core::auth::Principal;
use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_proto::{SpecError, TaskId, TaskRecord, v1};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::http::api::{event_json, status_json, task_json};
use crate::http::mcp::protocol::{INVALID_PARAMS, RpcOutcome, reply, rpc_error, rpc_result};
use crate::http::mcp::sessions::Sessions;

/// The tools: one per task type, then the helpers.
pub(crate) async fn tools(node: &Node, p: &Principal) -> Result<Vec<Value>, Error> {
    let mut out: Vec<Value> = node
        .task_types_with_prefix(p, "")
        .await?
        .into_iter()
        .map(|t| {
            let description = if t.supervisor == cadre_proto::WORKFLOW_SUPERVISOR {
                format!(
                    "Runs workflow `{}` ({}): {} Returns the workflow's result (JSON); progress is reported step by step. A workflow waiting for a signal or an approval waits for `signal_workflow`.",
                    t.task_type,
                    t.worker_kind,
                    if t.description.is_empty() { "no description." } else { t.description.as_str() }
                )
            } else {
                format!(
                    "Runs a `{}` task on the {} supervisor's {} workers and returns its result (JSON). Progress is reported while it runs.",
                    t.task_type, t.supervisor, t.worker_kind
                )
            };
            json!({
                "name": t.task_type,
                "title": t.task_type,
                "description": description,
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
            "name": "signal_workflow",
            "title": "Signal a workflow",
            "description": "Sends a signal to a running workflow instance: the signal a wait step waits for, or an approval (payload {\"decision\": \"approve\" or \"reject\", \"comment\": \"...\"}) named by the approval step's id or an agent tool call's approval id. get_task shows what an instance waits for (steps[].waiting).",
            "inputSchema": { "type": "object", "properties": {
                "id": { "type": "string", "description": "the workflow instance's task id" },
                "name": { "type": "string", "description": "the signal name" },
                "payload": { "description": "what the signal carries (any JSON)" },
            }, "required": ["id", "name"], "additionalProperties": false },
        }),
        json!({
            "name": "supervisor_status",
            "title": "Supervisor status",
            "description": "The supervisor tree: pools with size, busy workers, queue depth and restarts.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
        }),
    ]);
    Ok(out)
}

/// A tool result carrying JSON: as text, and as structured content when it is an object.
pub(crate) fn json_tool_result(v: Value, is_error: bool) -> Value {
    let mut r = json!({
        "content": [{ "type": "text", "text": v.to_string() }],
        "isError": is_error,
    });
    if v.is_object() {
        r["structuredContent"] = v;
    }
    r
}

pub(crate) fn text_tool_error(message: String) -> Value {
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
pub(crate) async fn helper_tool(node: &Node, p: &Principal, name: &str, args: &Value) -> Option<RpcOutcome> {
    let known = [
        "get_task",
        "cancel_task",
        "list_tasks",
        "signal_workflow",
        "supervisor_status",
    ];
    if !known.contains(&name) {
        return None;
    }
    Some(helper_tool_inner(node, p, name, args).await)
}

async fn helper_tool_inner(node: &Node, p: &Principal, name: &str, args: &Value) -> RpcOutcome {
    // A malformed argument (an id that is not a task id, a bad approval payload) is a JSON-RPC
    // -32602, as for every other bad argument; what the node refuses or fails is a tool error
    // the agent reads.
    let as_tool = |r: Result<Value, Error>| -> RpcOutcome {
        match r {
            Ok(v) => Ok(json_tool_result(v, false)),
            Err(Error::Spec(e)) => Err((INVALID_PARAMS, format!("Invalid params: {e}"))),
            Err(e) => Ok(text_tool_error(e.to_string())),
        }
    };
    match name {
        "get_task" => {
            let id = arg_str(args, "id", true)?.unwrap_or_default();
            let r = async { Ok(task_json(&node.get(p, id).await?)) }.await;
            as_tool(r)
        }
        "cancel_task" => {
            let id = arg_str(args, "id", true)?.unwrap_or_default();
            let reason = arg_str(args, "reason", false)?.unwrap_or("cancelled through MCP");
            let r = async { Ok(task_json(&node.cancel(p, id, reason).await?)) }.await;
            as_tool(r)
        }
        "signal_workflow" => {
            let id = arg_str(args, "id", true)?.unwrap_or_default();
            let signal = arg_str(args, "name", true)?.unwrap_or_default();
            let payload = args.get("payload").cloned().unwrap_or(Value::Null);
            let r = async {
                let sent = node.signal(p, id, signal, payload).await?;
                Ok(json!({ "seq": sent.seq, "task": task_json(&sent.task) }))
            }
            .await;
            as_tool(r)
        }
        "list_tasks" => {
            let req = list_request(args)?;
            let r = async {
                let (tasks, next) = node.list(p, &req).await?;
                Ok(json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>(), "next_page_token": next }))
            }
            .await;
            as_tool(r)
        }
        _ => {
            let r = async { Ok(status_json(&node.status(p).await?)) }.await;
            as_tool(r)
        }
    }
}

/// `list_tasks` arguments as a List request.
fn list_request(args: &Value) -> Result<v1::ListRequest, (i64, String)> {
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
    Ok(req)
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

/// One `tools/call` request: who asked, in which session, under which JSON-RPC id.
pub(crate) struct ToolCall {
    /// The node.
    pub node: std::sync::Arc<Node>,
    /// The sessions (to track the running call for `notifications/cancelled`).
    pub sessions: Sessions,
    /// The caller.
    pub p: Principal,
    /// Its session.
    pub session: String,
    /// The request id.
    pub id: Value,
}

impl ToolCall {
    /// The reply carrying `outcome`.
    fn done(&self, outcome: RpcOutcome) -> Response {
        let body = match outcome {
            Ok(r) => rpc_result(&self.id, r),
            Err((code, message)) => rpc_error(&self.id, code, message),
        };
        reply(StatusCode::OK, body)
    }

    /// Runs `tools/call` with `params`: a helper tool, or a task type.
    pub(crate) async fn run(self, params: Value) -> Response {
        let Some(name) = params.get("name").and_then(Value::as_str).map(str::to_string) else {
            return self.done(Err((INVALID_PARAMS, "Invalid params: name is required".into())));
        };
        let args = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return self.done(Err((
                    INVALID_PARAMS,
                    "Invalid params: arguments must be an object".into(),
                )));
            }
        };
        if let Some(outcome) = helper_tool(&self.node, &self.p, &name, &args).await {
            return self.done(outcome);
        }
        if !self.node.accepts(&name) {
            return self.done(Err((
                INVALID_PARAMS,
                format!("Invalid params: unknown tool {name:?}"),
            )));
        }
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
            .cloned();
        self.run_task(name, args, progress_token).await
    }

    /// Submits the task of tool `name` and answers with its result: in one JSON body, or as an
    /// SSE stream of progress notifications then the result when `progress_token` is given.
    async fn run_task(self, name: String, args: Value, progress_token: Option<Value>) -> Response {
        let spec = v1::TaskSpec {
            task_type: name,
            params_json: args.to_string(),
            ..Default::default()
        };
        let task = match self.node.submit(&self.p, Some(&spec)).await {
            Ok((t, _)) => t,
            Err(Error::Spec(e @ SpecError::Invalid { .. })) => {
                return self.done(Err((INVALID_PARAMS, format!("Invalid params: arguments: {e}"))));
            }
            Err(e) => return self.done(Ok(text_tool_error(e.to_string()))),
        };
        let request_key = self.id.to_string();
        self.sessions.start(&self.session, &request_key, task.id);
        let watch = v1::WatchRequest {
            task_id: task.id.to_string(),
            ..Default::default()
        };
        let watch = match self.node.watch(&self.p, &watch).await {
            Ok(w) => w,
            Err(e) => {
                self.sessions.finish(&self.session, &request_key);
                return self.done(Ok(text_tool_error(e.to_string())));
            }
        };
        match progress_token {
            None => self.answer_when_done(task.id, watch, request_key).await,
            Some(token) => self.stream_progress(task.id, watch, request_key, token),
        }
    }

    /// No progress wanted: waits for the end, answers in one JSON body.
    async fn answer_when_done(self, task: TaskId, mut watch: Watch, request_key: String) -> Response {
        while let Some(ev) = watch.recv().await {
            if ev.is_err() {
                break;
            }
        }
        self.sessions.finish(&self.session, &request_key);
        match self.node.get(&self.p, &task.to_string()).await {
            Ok(t) if t.state.is_terminal() => self.done(Ok(task_result(&t))),
            Ok(t) => self.done(Ok(text_tool_error(format!(
                "lost track of task {}; call get_task",
                t.id
            )))),
            Err(e) => self.done(Ok(text_tool_error(e.to_string()))),
        }
    }

    /// Progress wanted: an SSE stream of progress notifications, then the result.
    fn stream_progress(self, task: TaskId, mut watch: Watch, request_key: String, token: Value) -> Response {
        let (tx, rx) = mpsc::channel::<Value>(64);
        tokio::spawn(async move {
            let mut sent = 0u64;
            while let Some(ev) = watch.recv().await {
                let Ok(ev) = ev else { break };
                sent += 1;
                if tx.send(progress_note(&token, sent, &ev)).await.is_err() {
                    break;
                }
            }
            // After a client's notifications/cancelled the request gets no response (MCP).
            if self.sessions.finish(&self.session, &request_key) {
                return;
            }
            let body = match self.node.get(&self.p, &task.to_string()).await {
                Ok(t) => rpc_result(&self.id, task_result(&t)),
                Err(e) => rpc_result(&self.id, text_tool_error(e.to_string())),
            };
            let _ = tx.send(body).await;
        });
        // SSE framing of JSON-RPC messages (`event: message`).
        let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |v| {
            Ok::<_, Infallible>(SseEvent::default().event("message").data(v.to_string()))
        });
        Sse::new(stream).into_response()
    }
}

/// A task's live events, as the core's watch gives them.
type Watch = mpsc::Receiver<Result<cadre_proto::TaskEvent, cadre_store::StoreError>>;

/// The `notifications/progress` for the `sent`-th event of a running tool call.
fn progress_note(token: &Value, sent: u64, ev: &cadre_proto::TaskEvent) -> Value {
    let message = if ev.is_progress {
        format!("{:.0}% {}", ev.progress * 100.0, ev.message)
    } else if ev.message.is_empty() {
        format!("{} (attempt {})", ev.state.as_str(), ev.attempt)
    } else {
        format!("{} (attempt {}): {}", ev.state.as_str(), ev.attempt, ev.message)
    };
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": { "progressToken": token, "progress": sent, "message": message, "_meta": { "cadre/event": event_json(ev) } },
    })
}
