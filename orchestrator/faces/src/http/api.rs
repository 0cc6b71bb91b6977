//! The JSON HTTP API beside gRPC (docs/HTTP_API.md): submit, get, events, list, cancel,
//! status, scale, usage and whoami, with the same roles, tenant isolation and audit as gRPC.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cadre_proto::v1;
use cadre_proto::{SpecError, TaskEvent, TaskRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use cadre_core::auth::{Action, Principal};
use cadre_core::error::Error;
use cadre_core::node::Node;

type Shared = Arc<Node>;

/// Query parameters as a list of pairs, so repeated keys (`state=A&state=B`) survive.
pub(crate) type Pairs = Vec<(String, String)>;

/// The JSON API routes.
pub fn routes(node: Shared) -> Router {
    let body_limit = node.config().limits.max_params_bytes + 16 * 1024;
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/events", get(task_events))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/status", get(status))
        .route("/v1/supervisors/{name}/pools/{kind}/scale", post(scale))
        .route("/v1/usage", get(usage))
        .route("/v1/types", get(task_types))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(node)
}

/// An error as JSON `{"error": {"code", "message"}}` with the matching HTTP status.
pub enum ApiError {
    /// A refusal or failure of the node.
    Node(Error),
    /// A request the HTTP layer refused before the node saw it (e.g. a body over the limit).
    Http(StatusCode, &'static str, String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Node(e)
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::Node(e.into())
    }
}

/// A request body, or the error for one that could not be read (over the limit: 413).
pub(crate) fn body_bytes(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_argument"
        };
        ApiError::Http(status, code, format!("body: {}", e.body_text()))
    })
}

/// The HTTP status and stable code of an error.
pub fn status_of(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::Spec(SpecError::Invalid { .. }) => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Error::Spec(SpecError::TooLarge { .. }) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::Exhausted(_) | Error::OverBudget(_) | Error::RateLimited { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted")
        }
        Error::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Error::FailedPrecondition(_) => (StatusCode::CONFLICT, "failed_precondition"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::DeadlineExceeded(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Error::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Node(e) => e,
            ApiError::Http(status, code, message) => {
                let body = json!({ "error": { "code": code, "message": message } });
                return (status, axum::Json(body)).into_response();
            }
        };
        let (status, code) = status_of(&e);
        let body = json!({ "error": { "code": code, "message": e.to_string() } });
        let mut resp = (status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        match &e {
            Error::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::RateLimited { retry_after, .. } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// A bad request body or query, as INVALID_ARGUMENT naming `what`.
pub(crate) fn invalid(what: &str, why: impl std::fmt::Display) -> ApiError {
    SpecError::invalid(what, why.to_string()).into()
}

/// The bearer header of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// Authenticates the request and checks `action` (refusals are logged and audited by the node).
pub(crate) async fn authorize(
    node: &Node,
    headers: &HeaderMap,
    action: Action,
) -> Result<Principal, ApiError> {
    node.authorize(bearer(headers), action)
        .await
        .map_err(ApiError::Node)
}

/// A task as JSON.
pub fn task_json(t: &TaskRecord) -> Value {
    json!({
        "id": t.id.to_string(),
        "tenant": t.tenant,
        "task_type": t.spec.task_type,
        "params": t.spec.params,
        "priority": t.spec.priority.get(),
        "timeout_ms": t.spec.timeout.as_millis() as u64,
        "retry": t.spec.retry,
        "idempotency_key": t.spec.idempotency_key,
        "security_level": t.spec.security_level,
        "state": t.state,
        "attempt": t.attempt,
        "supervisor": t.supervisor,
        "worker_kind": t.worker_kind,
        "result": t.result,
        "error": t.error,
        "parent_id": t.spec.parent_id.map(|p| p.to_string()),
        "children": t.children.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created_at_ms": t.created_at_ms,
        "updated_at_ms": t.updated_at_ms,
        "seq": t.seq,
        "result_signature": t.result_signature,
        "usage": t.usage.iter().map(usage_json).collect::<Vec<_>>(),
        "steps": t.steps.iter().map(step_json).collect::<Vec<_>>(),
    })
}

/// A workflow instance's step as JSON (`steps` of a task).
pub fn step_json(s: &v1::WorkflowStep) -> Value {
    let output: Value = if s.output_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&s.output_json).unwrap_or(Value::Null)
    };
    json!({
        "id": s.id,
        "kind": s.kind,
        "state": s.state,
        "output": output,
        "error": (!s.error.is_empty()).then_some(&s.error),
        "task_ids": s.task_ids,
        "waiting": s.waiting.iter().map(|w| json!({
            "signal": w.signal,
            "kind": w.kind,
            "role": (!w.role.is_empty()).then_some(&w.role),
            "prompt": (!w.prompt.is_empty()).then_some(&w.prompt),
            "due_at_ms": (w.due_at_ms > 0).then_some(w.due_at_ms),
        })).collect::<Vec<_>>(),
        "started_at_ms": (s.started_at_ms > 0).then_some(s.started_at_ms),
        "ended_at_ms": (s.ended_at_ms > 0).then_some(s.ended_at_ms),
    })
}

/// An event as JSON (`"type": "event"`), as the JSON API, WebSocket and SSE send it.
pub fn event_json(e: &TaskEvent) -> Value {
    json!({
        "type": "event",
        "cursor": e.cursor,
        "task_id": e.task_id.to_string(),
        "seq": e.seq,
        "state": e.state,
        "attempt": e.attempt,
        "message": e.message,
        "progress": e.progress,
        "result": e.result,
        "at_ms": e.at_ms,
        "task_type": e.task_type,
        "tenant": e.tenant,
        "parent_id": e.parent_id.map(|p| p.to_string()),
        "is_progress": e.is_progress,
    })
}

fn usage_json(u: &v1::ModelUsage) -> Value {
    let mut v = json!({
        "model": u.model,
        "tokens_in": u.tokens_in,
        "tokens_out": u.tokens_out,
        "cost_usd": u.cost_usd,
    });
    if !u.tenant.is_empty() {
        v["tenant"] = json!(u.tenant);
    }
    v
}

fn pool_json(p: &v1::PoolStatus) -> Value {
    json!({
        "worker_kind": p.worker_kind,
        "target_size": p.target_size,
        "live_workers": p.live_workers,
        "busy_workers": p.busy_workers,
        "queue_depth": p.queue_depth,
        "restarts": p.restarts,
    })
}

/// The supervisor tree as JSON.
pub fn status_json(s: &v1::StatusResponse) -> Value {
    let supervisors: Vec<Value> = s
        .supervisors
        .iter()
        .map(|sup| {
            json!({
                "name": sup.name,
                "state": sup.state,
                "restarts": sup.restarts,
                "recent_restarts": sup.recent_restarts,
                "max_restarts": sup.max_restarts,
                "node_id": sup.node_id,
                "address": sup.address,
                "pools": sup.pools.iter().map(pool_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "node_id": s.node_id,
        "version": s.version,
        "pending_tasks": s.pending_tasks,
        "supervisors": supervisors,
    })
}

pub(crate) fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// Parses a JSON body into `T`, as INVALID_ARGUMENT naming the body on failure.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    empty_ok: bool,
) -> Result<T, ApiError> {
    if body.is_empty() && empty_ok {
        return serde_json::from_str("{}").map_err(|e| invalid("body", e));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.starts_with("application/json")
    {
        return Err(invalid(
            "body",
            format!("content type {ct:?}: send application/json"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| invalid("body", e))
}

/// The last value of query key `key`.
pub(crate) fn query_one<'a>(q: &'a Pairs, key: &str) -> Option<&'a str> {
    q.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A numeric query value, or INVALID_ARGUMENT.
pub(crate) fn query_num<T: std::str::FromStr>(q: &Pairs, key: &str) -> Result<Option<T>, ApiError> {
    query_one(q, key)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| invalid(key, format!("{v:?} is not a number")))
        })
        .transpose()
}

/// Every value of `key` (repeated or comma separated) as task states on the wire.
pub fn query_states(q: &Pairs, key: &str) -> Result<Vec<i32>, ApiError> {
    q.iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(|s| state_wire(s.trim()))
        .collect()
}

/// A state name (`RUNNING`, case-insensitive) as the wire enum value.
pub fn state_wire(name: &str) -> Result<i32, ApiError> {
    let upper = name.to_ascii_uppercase();
    cadre_proto::TaskState::ALL
        .iter()
        .find(|s| s.as_str() == upper)
        .map(|s| s.to_wire() as i32)
        .ok_or_else(|| {
            invalid(
                "state",
                format!(
                    "{name:?} is not a state (QUEUED RUNNING RETRYING SUCCEEDED FAILED CANCELLED TIMED_OUT)"
                ),
            )
        })
}

pub(crate) fn query(q: Result<Query<Pairs>, QueryRejection>) -> Result<Pairs, ApiError> {
    q.map(|Query(p)| p).map_err(|e| invalid("query", e.body_text()))
}

async fn whoami(State(node): State<Shared>, headers: HeaderMap) -> ApiResult {
    let p = authorize(&node, &headers, Action::GetTask).await?;
    ok(
        StatusCode::OK,
        json!({ "subject": p.subject, "role": p.role.as_str(), "tenant": p.tenant }),
    )
}

/// A submitted task as the JSON API takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    task_type: String,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    timeout_ms: i64,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    retry: Option<RetryBody>,
    #[serde(default)]
    security_level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    initial_backoff_ms: u64,
    #[serde(default)]
    max_backoff_ms: u64,
    #[serde(default)]
    multiplier: f64,
}

impl SubmitBody {
    fn into_wire(self) -> Result<v1::TaskSpec, ApiError> {
        let security_level = match self.security_level.as_deref().unwrap_or("standard") {
            "standard" => v1::SecurityLevel::Standard,
            "verified" => v1::SecurityLevel::Verified,
            "fortress" => v1::SecurityLevel::Fortress,
            other => {
                return Err(invalid(
                    "security_level",
                    format!("{other:?} is not standard, verified or fortress"),
                ));
            }
        };
        Ok(v1::TaskSpec {
            task_type: self.task_type,
            params_json: self.params.unwrap_or_else(|| json!({})).to_string(),
            priority: self.priority,
            timeout_ms: self.timeout_ms,
            retry: self.retry.map(|r| v1::RetryPolicy {
                max_attempts: r.max_attempts,
                initial_backoff_ms: r.initial_backoff_ms,
                max_backoff_ms: r.max_backoff_ms,
                multiplier: r.multiplier,
            }),
            idempotency_key: self.idempotency_key,
            parent_id: String::new(),
            security_level: security_level as i32,
        })
    }
}

async fn submit(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::SubmitTask).await?;
    let body = body_bytes(body)?;
    let spec = parse_body::<SubmitBody>(&headers, &body, false)?.into_wire()?;
    let wait = match query_one(&q, "wait") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => return Err(invalid("wait", format!("{other:?} is not true or false"))),
    };
    if wait {
        let wait_ms = query_num::<u64>(&q, "wait_ms")?.unwrap_or(0);
        let task = node.submit_and_wait(&p, Some(&spec), wait_ms).await?;
        return ok(StatusCode::OK, json!({ "task": task_json(&task) }));
    }
    let (task, created) = node.submit(&p, Some(&spec)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, json!({ "task": task_json(&task), "created": created }))
}

async fn get_task(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::GetTask).await?;
    let task = node.get(&p, &id).await?;
    ok(StatusCode::OK, json!({ "task": task_json(&task) }))
}

async fn task_events(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::GetTask).await?;
    let after = query_num::<u64>(&q, "after")?.unwrap_or(0);
    let limit = query_num::<u32>(&q, "limit")?.unwrap_or(200);
    let events = node.task_events(&p, &id, after, limit).await?;
    ok(
        StatusCode::OK,
        json!({ "events": events.iter().map(event_json).collect::<Vec<_>>() }),
    )
}

async fn list(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::ListTasks).await?;
    let req = v1::ListRequest {
        states: query_states(&q, "state")?,
        task_type_prefix: query_one(&q, "type_prefix").unwrap_or_default().to_string(),
        parent_id: query_one(&q, "parent_id").unwrap_or_default().to_string(),
        page_size: query_num::<u32>(&q, "page_size")?.unwrap_or(0),
        page_token: query_one(&q, "page_token").unwrap_or_default().to_string(),
    };
    let (tasks, next) = node.list(&p, &req).await?;
    ok(
        StatusCode::OK,
        json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>(), "next_page_token": next }),
    )
}

/// `GET /v1/types[?type_prefix=...]`: the task types with where they run and their schemas.
async fn task_types(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::GetTask).await?;
    let prefix = query_one(&q, "type_prefix").unwrap_or_default();
    let types: Vec<Value> = node
        .task_types_with_prefix(&p, prefix)
        .await?
        .into_iter()
        .map(|t| {
            json!({
                "task_type": t.task_type,
                "supervisor": t.supervisor,
                "worker_kind": t.worker_kind,
                "executor": t.executor,
                "params_schema": t.params_schema,
                "result_schema": t.result_schema,
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "types": types }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: String,
}

async fn cancel(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::CancelTask).await?;
    let body: CancelBody = parse_body(&headers, &body_bytes(body)?, true)?;
    let task = node.cancel(&p, &id, &body.reason).await?;
    ok(StatusCode::OK, json!({ "task": task_json(&task) }))
}

async fn status(State(node): State<Shared>, headers: HeaderMap) -> ApiResult {
    let p = authorize(&node, &headers, Action::Status).await?;
    ok(StatusCode::OK, status_json(&node.status(&p).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: u32,
}

async fn scale(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path((name, kind)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::Scale).await?;
    let body: ScaleBody = parse_body(&headers, &body_bytes(body)?, false)?;
    let pool = node.scale(&p, &name, &kind, body.replicas).await?;
    ok(StatusCode::OK, json!({ "pool": pool_json(&pool) }))
}

async fn usage(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::ReadUsage).await?;
    let r = node
        .usage(
            &p,
            query_one(&q, "tenant").unwrap_or_default(),
            query_one(&q, "day").unwrap_or_default(),
        )
        .await?;
    ok(
        StatusCode::OK,
        json!({ "day": r.day, "usage": r.usage.iter().map(usage_json).collect::<Vec<_>>() }),
    )
}
