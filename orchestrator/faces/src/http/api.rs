//! The JSON HTTP API beside gRPC (docs/HTTP_API.md): submit, get, events, list, cancel,
//! status, scale, usage and whoami, with the same roles, tenant isolation and audit as gRPC.
//! Each handler carries its OpenAPI description (`#[utoipa::path]`) and answers with the typed
//! shapes of [`super::views`]; [`super::openapi`] assembles and serves the description.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cadre_proto::v1;
use cadre_proto::{SpecError, TaskEvent, TaskRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cadre_core::auth::{Action, Principal};
use cadre_core::error::Error;
use cadre_core::node::Node;

use super::views::{
    self, ErrorBody, ErrorCode, ErrorDetail, EventList, PoolAnswer, SecurityLevelName, Submitted, TaskAnswer,
    TaskPage, TaskStateName, TypeList, UsageReport, WhoAmI,
};

type Shared = Arc<Node>;

/// Query parameters as a list of pairs, so repeated keys (`state=A&state=B`) survive.
pub(crate) type Pairs = Vec<(String, String)>;

/// The JSON API routes, each registered with its OpenAPI description (the `#[utoipa::path]`
/// on its handler), bodies up to `body_limit` bytes.
pub fn routes(body_limit: usize) -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(submit, list))
        .routes(routes!(get_task))
        .routes(routes!(task_events))
        .routes(routes!(cancel))
        .routes(routes!(status))
        .routes(routes!(scale))
        .routes(routes!(usage))
        .routes(routes!(task_types))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

/// The body limit of the task routes: the params limit plus room for the rest of the spec.
pub fn body_limit(node: &Node) -> usize {
    node.config().limits.max_params_bytes + 16 * 1024
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
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::InvalidArgument
        };
        ApiError::Http(status, code.as_str(), format!("body: {}", e.body_text()))
    })
}

/// The stable code of an error.
pub fn code_of(e: &Error) -> ErrorCode {
    match e {
        Error::Spec(SpecError::Invalid { .. }) => ErrorCode::InvalidArgument,
        Error::Spec(SpecError::TooLarge { .. }) => ErrorCode::PayloadTooLarge,
        Error::Exhausted(_) | Error::OverBudget(_) | Error::RateLimited { .. } => {
            ErrorCode::ResourceExhausted
        }
        Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
        Error::NotFound(_) => ErrorCode::NotFound,
        Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
        Error::Unavailable(_) => ErrorCode::Unavailable,
        Error::DeadlineExceeded(_) => ErrorCode::DeadlineExceeded,
        Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
        Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
    }
}

/// The HTTP status of an error code.
pub fn status_of_code(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// The HTTP status and stable code of an error.
pub fn status_of(e: &Error) -> (StatusCode, &'static str) {
    let code = code_of(e);
    (status_of_code(code), code.as_str())
}

/// An error body as JSON (`code` is one of [`ErrorCode`]'s).
fn error_body(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = match self {
            ApiError::Node(e) => e,
            ApiError::Http(status, code, message) => return error_body(status, code, message),
        };
        let code = code_of(&e);
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: e.to_string(),
            },
        };
        let mut resp = (status_of_code(code), axum::Json(body)).into_response();
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

/// A value of a view as JSON (views are plain data: serializing them cannot fail).
fn to_json(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("views serialize to JSON")
}

/// A task as JSON ([`views::Task`]).
pub fn task_json(t: &TaskRecord) -> Value {
    to_json(views::Task::from(t))
}

/// An event as JSON (`"type": "event"`, [`views::Event`]), as the JSON API, WebSocket and SSE
/// send it.
pub fn event_json(e: &TaskEvent) -> Value {
    to_json(views::Event::from(e))
}

/// The supervisor tree as JSON ([`views::Status`]).
pub fn status_json(s: &v1::StatusResponse) -> Value {
    to_json(views::Status::from(s))
}

/// A typed answer as JSON with `status`.
pub(crate) fn answer(status: StatusCode, body: impl serde::Serialize) -> ApiResult {
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

/// `GET /v1/whoami`.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "meta",
    operation_id = "whoami",
    summary = "Who the credential is",
    responses((status = 200, description = "The credential's subject, role and tenant", body = WhoAmI)),
)]
async fn whoami(State(node): State<Shared>, headers: HeaderMap) -> ApiResult {
    let p = authorize(&node, &headers, Action::GetTask).await?;
    let who = WhoAmI {
        subject: p.subject,
        role: p.role.as_str().to_string(),
        tenant: p.tenant,
    };
    answer(StatusCode::OK, who)
}

/// A task to submit: the body of `POST /v1/tasks` and the `task` of a socket `submit`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitBody {
    /// `supervisor.domain.action` (`GET /v1/types` lists them), or `workflow.<name>.run`.
    task_type: String,
    /// Its parameters (any JSON that fits the type's params schema; default `{}`).
    #[serde(default)]
    params: Option<Value>,
    /// Scheduling priority, 0 (lowest, default) to 9.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9)]
    priority: i32,
    /// Wall-time limit of one attempt, milliseconds (0: the node's default).
    #[serde(default)]
    timeout_ms: i64,
    /// A per-tenant deduplication key: a repeat answers the first task (200, `created: false`).
    #[serde(default)]
    idempotency_key: String,
    /// How failed attempts are retried (default: the node's policy).
    #[serde(default)]
    retry: Option<RetryBody>,
    /// What the node guarantees about the result (default `standard`).
    #[serde(default)]
    #[schema(value_type = Option<SecurityLevelName>)]
    security_level: Option<String>,
    /// A per-tenant key whose running limit (config) the task shares; at most 256 bytes.
    #[serde(default)]
    concurrency_key: String,
    /// With `debounce_window_ms`: a submit with the same key within the window replaces this
    /// task while it waits (it ends CANCELLED naming its replacement); the last one runs
    /// once its window has passed. At most 256 bytes.
    #[serde(default)]
    debounce_key: String,
    /// The debounce window, milliseconds: required (> 0) with `debounce_key`, at most one day.
    #[serde(default)]
    #[schema(maximum = 86_400_000)]
    debounce_window_ms: u64,
}

/// How failed attempts of a submitted task are retried.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// Total attempts including the first.
    #[serde(default)]
    max_attempts: u32,
    /// Delay before the second attempt, milliseconds.
    #[serde(default)]
    initial_backoff_ms: u64,
    /// Upper bound for one delay, milliseconds.
    #[serde(default)]
    max_backoff_ms: u64,
    /// Growth factor between delays (>= 1).
    #[serde(default)]
    multiplier: f64,
    /// Also retry an attempt that ran past its timeout (default false: TIMED_OUT is final).
    #[serde(default)]
    retry_timeouts: bool,
}

impl SubmitBody {
    /// The wire spec; an unknown security level is INVALID_ARGUMENT (the node checks the rest).
    pub(crate) fn into_wire(self) -> Result<v1::TaskSpec, SpecError> {
        let security_level = match self.security_level.as_deref().unwrap_or("standard") {
            "standard" => v1::SecurityLevel::Standard,
            "verified" => v1::SecurityLevel::Verified,
            "fortress" => v1::SecurityLevel::Fortress,
            other => {
                return Err(SpecError::invalid(
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
                retry_timeouts: r.retry_timeouts,
            }),
            idempotency_key: self.idempotency_key,
            parent_id: String::new(),
            security_level: security_level as i32,
            concurrency_key: self.concurrency_key,
            debounce_key: self.debounce_key,
            debounce_window_ms: self.debounce_window_ms,
        })
    }
}

/// `POST /v1/tasks[?wait=true]`.
#[utoipa::path(
    post,
    path = "/v1/tasks",
    tag = "tasks",
    operation_id = "submit_task",
    summary = "Submit a task",
    description = "Stores a task and routes it to its supervisor's pool. With `wait=true` the \
        answer comes once the task is final (200, no `created`); a wait that ends first is 504.",
    request_body = SubmitBody,
    params(
        ("wait" = Option<bool>, Query, description = "Answer once the task is final (`true`/`false`, `1`/`0`)."),
        ("wait_ms" = Option<u64>, Query, description = "With `wait=true`: the longest wait, milliseconds (default: the task's own timeout and retries)."),
    ),
    responses(
        (status = 201, description = "Created", body = Submitted),
        (status = 200, description = "An idempotent repeat (`created: false`), or with `wait=true` the final task", body = Submitted),
        (status = 429, description = "`resource_exhausted`: a quota, budget or rate limit (`Retry-After` when rate limited)", body = ErrorBody),
        (status = 504, description = "`deadline_exceeded`: the wait ended before the task", body = ErrorBody),
    ),
)]
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
        let done = Submitted {
            task: views::Task::from(&task),
            created: None,
        };
        return answer(StatusCode::OK, done);
    }
    let (task, created) = node.submit(&p, Some(&spec)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let submitted = Submitted {
        task: views::Task::from(&task),
        created: Some(created),
    };
    answer(status, submitted)
}

/// One task's answer.
fn task_answer(task: &TaskRecord) -> ApiResult {
    answer(
        StatusCode::OK,
        TaskAnswer {
            task: views::Task::from(task),
        },
    )
}

/// `GET /v1/tasks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}",
    tag = "tasks",
    operation_id = "get_task",
    summary = "Read a task (a workflow instance with its steps)",
    params(("id" = String, Path, description = "The task's id (a UUID).")),
    responses(
        (status = 200, description = "The task", body = TaskAnswer),
        (status = 404, description = "`not_found`: no such task, or another tenant's", body = ErrorBody),
    ),
)]
async fn get_task(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::GetTask).await?;
    task_answer(&node.get(&p, &id).await?)
}

/// `GET /v1/tasks/{id}/events`.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}/events",
    tag = "tasks",
    operation_id = "list_task_events",
    summary = "A task's stored events, oldest first",
    params(
        ("id" = String, Path, description = "The task's id (a UUID)."),
        ("after" = Option<u64>, Query, description = "Only events after this cursor (default 0)."),
        ("limit" = Option<u32>, Query, description = "At most this many (1-1000, default 200)."),
    ),
    responses(
        (status = 200, description = "The events", body = EventList),
        (status = 404, description = "`not_found`: no such task, or another tenant's", body = ErrorBody),
    ),
)]
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
    let events = events.iter().map(views::Event::from).collect();
    answer(StatusCode::OK, EventList { events })
}

/// `GET /v1/tasks`.
#[utoipa::path(
    get,
    path = "/v1/tasks",
    tag = "tasks",
    operation_id = "list_tasks",
    summary = "List tasks, newest first",
    params(
        ("state" = Option<Vec<TaskStateName>>, Query, explode, description = "Only tasks in these states (repeat the key, or separate with commas)."),
        ("type_prefix" = Option<String>, Query, description = "Only task types starting with this."),
        ("parent_id" = Option<String>, Query, description = "Only sub-tasks of this task."),
        ("page_size" = Option<u32>, Query, description = "At most this many (1-1000, default 50)."),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page."),
    ),
    responses((status = 200, description = "One page of tasks", body = TaskPage)),
)]
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
    let (tasks, next_page_token) = node.list(&p, &req).await?;
    let page = TaskPage {
        tasks: tasks.iter().map(views::Task::from).collect(),
        next_page_token,
    };
    answer(StatusCode::OK, page)
}

/// `GET /v1/types[?type_prefix=...]`: the task types with where they run and their schemas.
#[utoipa::path(
    get,
    path = "/v1/types",
    tag = "tasks",
    operation_id = "list_task_types",
    summary = "The task types, where they run and their JSON Schemas (workflows included)",
    params(("type_prefix" = Option<String>, Query, description = "Only types starting with this.")),
    responses((status = 200, description = "The types, in name order", body = TypeList)),
)]
async fn task_types(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::GetTask).await?;
    let prefix = query_one(&q, "type_prefix").unwrap_or_default();
    let types = node
        .task_types_with_prefix(&p, prefix)
        .await?
        .into_iter()
        .map(|t| views::TaskType {
            task_type: t.task_type,
            supervisor: t.supervisor,
            worker_kind: t.worker_kind,
            executor: t.executor,
            params_schema: t.params_schema,
            result_schema: t.result_schema,
        })
        .collect();
    answer(StatusCode::OK, TypeList { types })
}

/// Why a task is cancelled.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Recorded as the task's error.
    #[serde(default)]
    reason: String,
}

/// `POST /v1/tasks/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/cancel",
    tag = "tasks",
    operation_id = "cancel_task",
    summary = "Cancel a task",
    params(("id" = String, Path, description = "The task's id (a UUID).")),
    request_body(content = Option<CancelBody>, description = "Optional; an empty body is no reason."),
    responses(
        (status = 200, description = "The task, CANCELLED", body = TaskAnswer),
        (status = 404, description = "`not_found`: no such task, or another tenant's", body = ErrorBody),
        (status = 409, description = "`failed_precondition`: the task is final already", body = ErrorBody),
    ),
)]
async fn cancel(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::CancelTask).await?;
    let body: CancelBody = parse_body(&headers, &body_bytes(body)?, true)?;
    task_answer(&node.cancel(&p, &id, &body.reason).await?)
}

/// `GET /v1/status`.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "admin",
    operation_id = "get_status",
    summary = "The supervisor tree and its pools",
    responses((status = 200, description = "The tree", body = views::Status)),
)]
async fn status(State(node): State<Shared>, headers: HeaderMap) -> ApiResult {
    let p = authorize(&node, &headers, Action::Status).await?;
    answer(StatusCode::OK, views::Status::from(&node.status(&p).await?))
}

/// A pool's new size.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    /// Workers wanted.
    replicas: u32,
}

/// `POST /v1/supervisors/{name}/pools/{kind}/scale`.
#[utoipa::path(
    post,
    path = "/v1/supervisors/{name}/pools/{kind}/scale",
    tag = "admin",
    operation_id = "scale_pool",
    summary = "Resize a worker pool (supervisor role and up)",
    params(
        ("name" = String, Path, description = "The supervisor."),
        ("kind" = String, Path, description = "The worker kind (pool)."),
    ),
    request_body = ScaleBody,
    responses(
        (status = 200, description = "The pool after the change", body = PoolAnswer),
        (status = 404, description = "`not_found`: no such supervisor or pool", body = ErrorBody),
    ),
)]
async fn scale(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path((name, kind)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::Scale).await?;
    let body: ScaleBody = parse_body(&headers, &body_bytes(body)?, false)?;
    let pool = node.scale(&p, &name, &kind, body.replicas).await?;
    let pool = views::Pool::from(&pool);
    answer(StatusCode::OK, PoolAnswer { pool })
}

/// `GET /v1/usage`.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "admin",
    operation_id = "get_usage",
    summary = "Tokens and cost of one day, per tenant and model",
    params(
        ("tenant" = Option<String>, Query, description = "Commanders: this tenant only (others always get their own)."),
        ("day" = Option<String>, Query, description = "`YYYY-MM-DD` (default: today, UTC)."),
    ),
    responses((status = 200, description = "The report", body = UsageReport)),
)]
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
    let report = UsageReport {
        day: r.day,
        usage: r.usage.iter().map(views::ModelUsage::from).collect(),
    };
    answer(StatusCode::OK, report)
}
