//! The JSON shapes the JSON API sends and takes, as typed structs: the handlers serialize
//! exactly these, and their `ToSchema` derives (field doc comments included) are the schemas
//! of the OpenAPI description ([`super::openapi`]), so the description cannot say one thing
//! while the node sends another. Enumerations (task states, security levels, error codes) are
//! listed from the Rust enums through serde, the same way they are written on the wire.

use cadre_proto::{SecurityLevel, TaskEvent, TaskRecord, TaskState, v1};
use cadre_store::StoredDefinition;
use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A string schema whose values are `values` as serde writes them.
fn string_enum<T: Serialize>(values: &[T], description: &str) -> Object {
    let names = values
        .iter()
        .map(|v| serde_json::to_value(v).expect("a unit variant serializes to a string"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .description(Some(description))
        .build()
}

/// The schema of a task state (`TaskState` as serde writes it).
pub fn task_state_schema() -> Object {
    string_enum(
        &TaskState::ALL,
        "Where a task is in its lifecycle; SUCCEEDED, FAILED, CANCELLED and TIMED_OUT are final.",
    )
}

/// The schema of a security level (`SecurityLevel` as serde writes it).
pub fn security_level_schema() -> Object {
    string_enum(
        &[
            SecurityLevel::Standard,
            SecurityLevel::Verified,
            SecurityLevel::Fortress,
        ],
        "What the node guarantees about the result: `verified` results are signed by the node.",
    )
}

/// The `TaskState` schema: a task state's name, as fields and query parameters take it.
pub struct TaskStateName;

impl PartialSchema for TaskStateName {
    fn schema() -> RefOr<Schema> {
        task_state_schema().into()
    }
}

impl ToSchema for TaskStateName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TaskState")
    }
}

/// The `SecurityLevel` schema: a security level's name.
pub struct SecurityLevelName;

impl PartialSchema for SecurityLevelName {
    fn schema() -> RefOr<Schema> {
        security_level_schema().into()
    }
}

impl ToSchema for SecurityLevelName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SecurityLevel")
    }
}

/// The stable code of an error, one per HTTP status (docs/HTTP_API.md, "Errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a bad body, query, path or parameter.
    InvalidArgument,
    /// 401: no credential, or one the node does not accept (`WWW-Authenticate: Bearer`).
    Unauthenticated,
    /// 403: the credential's role may not do this.
    PermissionDenied,
    /// 404: no such thing, or another tenant's.
    NotFound,
    /// 409: it exists already with another content.
    AlreadyExists,
    /// 409: not possible in the current state (e.g. cancelling a finished task).
    FailedPrecondition,
    /// 413: a body or params over the limit.
    PayloadTooLarge,
    /// 429: a quota, budget or rate limit (`Retry-After` when rate limited).
    ResourceExhausted,
    /// 503: the store or the bus is unreachable, or a limit of connections is reached.
    Unavailable,
    /// 504: the wait ended before the task did.
    DeadlineExceeded,
}

impl ErrorCode {
    /// The code as it is written in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The stable code; the HTTP status follows from it.
    pub code: ErrorCode,
    /// A sentence for people, naming the field or thing at fault.
    pub message: String,
}

/// Every error answer of the JSON API.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Who a credential is.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// The credential's subject (user, service or agent name).
    pub subject: String,
    /// Its role: `viewer`, `operator`, `supervisor` or `commander`.
    pub role: String,
    /// Its tenant.
    pub tenant: String,
}

/// How failed attempts are retried.
#[derive(Serialize, ToSchema)]
pub struct Retry {
    /// Total attempts including the first.
    pub max_attempts: u32,
    /// Delay before the second attempt, milliseconds.
    pub initial_backoff_ms: u64,
    /// Upper bound for one delay, milliseconds.
    pub max_backoff_ms: u64,
    /// Growth factor between delays.
    pub multiplier: f64,
    /// Whether an attempt that ran past its timeout is retried too (false: TIMED_OUT is final).
    pub retry_timeouts: bool,
}

/// Tokens and cost on one model.
#[derive(Serialize, ToSchema)]
pub struct ModelUsage {
    /// The model.
    pub model: String,
    /// Input tokens.
    pub tokens_in: u64,
    /// Output tokens.
    pub tokens_out: u64,
    /// What they cost, US dollars.
    pub cost_usd: f64,
    /// The tenant, in per-tenant reports (`GET /v1/usage`); absent on a task.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub tenant: Option<String>,
}

impl From<&v1::ModelUsage> for ModelUsage {
    fn from(u: &v1::ModelUsage) -> Self {
        ModelUsage {
            model: u.model.clone(),
            tokens_in: u.tokens_in,
            tokens_out: u.tokens_out,
            cost_usd: u.cost_usd,
            tenant: (!u.tenant.is_empty()).then(|| u.tenant.clone()),
        }
    }
}

/// What a workflow step waits for now.
#[derive(Serialize, ToSchema)]
pub struct StepWait {
    /// The signal name that ends the wait (what the signal route takes).
    pub signal: String,
    /// `signal`, `approval` or `timer`.
    pub kind: String,
    /// For an approval: the lowest role that may decide it.
    pub role: Option<String>,
    /// For an approval: what the approver is asked.
    pub prompt: Option<String>,
    /// When it times out or fires, Unix milliseconds.
    pub due_at_ms: Option<i64>,
}

/// One step of a workflow instance, in definition order.
#[derive(Serialize, ToSchema)]
pub struct Step {
    /// The step's id in the definition.
    pub id: String,
    /// `task`, `wait`, `approval`, `sleep` or `agent`.
    pub kind: String,
    /// `PENDING`, `RUNNING`, `WAITING`, `SUCCEEDED`, `FAILED` or `SKIPPED`.
    pub state: String,
    /// Its output once done (any JSON; null before).
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// Its sub-tasks (items, model and tool calls, compensation).
    pub task_ids: Vec<String>,
    /// What it waits for now.
    pub waiting: Vec<StepWait>,
    /// When it started, Unix milliseconds.
    pub started_at_ms: Option<i64>,
    /// When it ended, Unix milliseconds.
    pub ended_at_ms: Option<i64>,
}

/// A non-empty string, or none.
fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A positive time, or none.
fn positive(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

impl From<&v1::WorkflowStep> for Step {
    fn from(s: &v1::WorkflowStep) -> Self {
        Step {
            id: s.id.clone(),
            kind: s.kind.clone(),
            state: s.state.clone(),
            output: serde_json::from_str(&s.output_json).unwrap_or(Value::Null),
            error: some(&s.error),
            task_ids: s.task_ids.clone(),
            waiting: s
                .waiting
                .iter()
                .map(|w| StepWait {
                    signal: w.signal.clone(),
                    kind: w.kind.clone(),
                    role: some(&w.role),
                    prompt: some(&w.prompt),
                    due_at_ms: positive(w.due_at_ms),
                })
                .collect(),
            started_at_ms: positive(s.started_at_ms),
            ended_at_ms: positive(s.ended_at_ms),
        }
    }
}

/// A task (docs/HTTP_API.md, "JSON API").
#[derive(Serialize, ToSchema)]
pub struct Task {
    /// Its id (a UUID).
    #[schema(format = "uuid")]
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// `supervisor.domain.action`, or `workflow.<name>.run` for a workflow instance.
    pub task_type: String,
    /// Its parameters (any JSON).
    pub params: Value,
    /// Scheduling priority, 0 (lowest) to 9.
    #[schema(maximum = 9)]
    pub priority: u8,
    /// Wall-time limit of one attempt, milliseconds.
    pub timeout_ms: u64,
    /// How failed attempts are retried.
    pub retry: Retry,
    /// The per-tenant deduplication key it was submitted with.
    pub idempotency_key: Option<String>,
    /// What the node guarantees about its result.
    #[schema(value_type = SecurityLevelName)]
    pub security_level: SecurityLevel,
    /// Where it is in its lifecycle.
    #[schema(value_type = TaskStateName)]
    pub state: TaskState,
    /// Current or last attempt (0 before the first run).
    pub attempt: u32,
    /// The supervisor it is routed to.
    pub supervisor: String,
    /// The worker kind (pool) that runs it.
    pub worker_kind: String,
    /// Its result once SUCCEEDED (any JSON).
    pub result: Option<Value>,
    /// Why it FAILED, was CANCELLED or TIMED_OUT.
    pub error: Option<String>,
    /// The delegating task, for a sub-task.
    pub parent_id: Option<String>,
    /// Sub-tasks it delegated.
    pub children: Vec<String>,
    /// When it was submitted, Unix milliseconds.
    pub created_at_ms: i64,
    /// When its last event happened, Unix milliseconds.
    pub updated_at_ms: i64,
    /// Sequence number of its latest event.
    pub seq: u64,
    /// The node's signature of the result, for `verified` tasks that succeeded.
    pub result_signature: Option<String>,
    /// Tokens and cost per model.
    pub usage: Vec<ModelUsage>,
    /// A workflow instance's steps where it is read with them (get, submit with wait,
    /// signal); `[]` otherwise.
    pub steps: Vec<Step>,
    /// For a task made by a bulk replay: the task it replays (same spec).
    #[schema(format = "uuid")]
    pub replay_of: Option<String>,
    /// The concurrency key it was submitted with.
    pub concurrency_key: Option<String>,
    /// The debounce key it was submitted with.
    pub debounce_key: Option<String>,
    /// Its debounce window, milliseconds (with `debounce_key`).
    pub debounce_window_ms: Option<u64>,
}

impl From<&TaskRecord> for Task {
    fn from(t: &TaskRecord) -> Self {
        Task {
            id: t.id.to_string(),
            tenant: t.tenant.clone(),
            task_type: t.spec.task_type.clone(),
            params: t.spec.params.clone(),
            priority: t.spec.priority.get(),
            timeout_ms: t.spec.timeout.as_millis() as u64,
            retry: Retry {
                max_attempts: t.spec.retry.max_attempts,
                initial_backoff_ms: t.spec.retry.initial_backoff.as_millis() as u64,
                max_backoff_ms: t.spec.retry.max_backoff.as_millis() as u64,
                multiplier: t.spec.retry.multiplier,
                retry_timeouts: t.spec.retry.retry_timeouts,
            },
            idempotency_key: t.spec.idempotency_key.clone(),
            security_level: t.spec.security_level,
            state: t.state,
            attempt: t.attempt,
            supervisor: t.supervisor.clone(),
            worker_kind: t.worker_kind.clone(),
            result: t.result.clone(),
            error: t.error.clone(),
            parent_id: t.spec.parent_id.map(|p| p.to_string()),
            children: t.children.iter().map(ToString::to_string).collect(),
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            seq: t.seq,
            result_signature: t.result_signature.clone(),
            usage: t.usage.iter().map(ModelUsage::from).collect(),
            steps: t.steps.iter().map(Step::from).collect(),
            replay_of: t.spec.replay_of.map(|r| r.to_string()),
            concurrency_key: t.spec.concurrency_key.clone(),
            debounce_key: t.spec.debounce.as_ref().map(|d| d.key.clone()),
            debounce_window_ms: t.spec.debounce.as_ref().map(|d| d.window.as_millis() as u64),
        }
    }
}

/// The `type` of an event message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A task event.
    Event,
}

/// One transition or progress report of one task, as the JSON API and the event sockets send it.
#[derive(Serialize, ToSchema)]
pub struct Event {
    /// Always `event`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Global, strictly increasing position in the node's event log.
    pub cursor: u64,
    /// The task.
    #[schema(format = "uuid")]
    pub task_id: String,
    /// Per-task sequence, 1 for QUEUED.
    pub seq: u64,
    /// The task's state after this event.
    #[schema(value_type = TaskStateName)]
    pub state: TaskState,
    /// Attempt number at the time of the event.
    pub attempt: u32,
    /// Human-readable detail: progress text, error, retry delay.
    pub message: String,
    /// Progress in [0, 1] for progress reports, otherwise 0.
    pub progress: f64,
    /// The result, on the SUCCEEDED event (any JSON).
    pub result: Option<Value>,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
    /// The task's type.
    pub task_type: String,
    /// The task's tenant.
    pub tenant: String,
    /// The delegating task, for events of sub-tasks.
    pub parent_id: Option<String>,
    /// True for progress reports that do not change the state.
    pub is_progress: bool,
}

impl From<&TaskEvent> for Event {
    fn from(e: &TaskEvent) -> Self {
        Event {
            kind: EventType::Event,
            cursor: e.cursor,
            task_id: e.task_id.to_string(),
            seq: e.seq,
            state: e.state,
            attempt: e.attempt,
            message: e.message.clone(),
            progress: e.progress,
            result: e.result.clone(),
            at_ms: e.at_ms,
            task_type: e.task_type.clone(),
            tenant: e.tenant.clone(),
            parent_id: e.parent_id.map(|p| p.to_string()),
            is_progress: e.is_progress,
        }
    }
}

/// One worker pool of a supervisor.
#[derive(Serialize, ToSchema)]
pub struct Pool {
    /// The worker kind.
    pub worker_kind: String,
    /// Workers asked for (config or scale).
    pub target_size: u32,
    /// Worker actors alive now (above target while a shrink drains).
    pub live_workers: u32,
    /// Workers running a task now.
    pub busy_workers: u32,
    /// Tasks waiting for a worker of this pool.
    pub queue_depth: u32,
    /// Worker restarts so far.
    pub restarts: u64,
    /// Whether its supervisor or the pool itself is paused (queued tasks wait).
    pub paused: bool,
}

impl From<&v1::PoolStatus> for Pool {
    fn from(p: &v1::PoolStatus) -> Self {
        Pool {
            worker_kind: p.worker_kind.clone(),
            target_size: p.target_size,
            live_workers: p.live_workers,
            busy_workers: p.busy_workers,
            queue_depth: p.queue_depth,
            restarts: p.restarts,
            paused: p.paused,
        }
    }
}

/// One supervisor of the tree.
#[derive(Serialize, ToSchema)]
pub struct Supervisor {
    /// Its name.
    pub name: String,
    /// `running`, `restarting` or `unresponsive`.
    pub state: String,
    /// Times the orchestrator restarted it.
    pub restarts: u64,
    /// Worker restarts within the current intensity window.
    pub recent_restarts: u32,
    /// Worker restarts allowed within the window.
    pub max_restarts: u32,
    /// The node (process) this replica runs on.
    pub node_id: String,
    /// Its SupervisorPeer gRPC address, for supervisors on other nodes.
    pub address: String,
    /// Its worker pools.
    pub pools: Vec<Pool>,
}

/// The supervisor tree.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// The node's id.
    pub node_id: String,
    /// The node's version.
    pub version: String,
    /// Non-terminal tasks known to the node.
    pub pending_tasks: u64,
    /// Every supervisor.
    pub supervisors: Vec<Supervisor>,
    /// What is paused (a non-commander sees no other tenant's tenant pause).
    pub pauses: Vec<PauseView>,
}

/// A pause in force (`GET /v1/pauses`, `GET /v1/status`).
#[derive(Serialize, ToSchema)]
pub struct PauseView {
    /// `supervisor`, `pool`, `task_type_prefix` or `tenant`.
    pub scope: String,
    /// Scopes `supervisor` and `pool` (else empty).
    pub supervisor: String,
    /// Scope `pool` (else empty).
    pub worker_kind: String,
    /// Scope `task_type_prefix` (else empty).
    pub prefix: String,
    /// Scope `tenant` (else empty).
    pub tenant: String,
    /// When it was paused, Unix milliseconds.
    pub paused_at_ms: i64,
    /// Who paused it.
    pub paused_by: String,
    /// Why, as they said.
    pub reason: String,
}

impl From<&v1::Pause> for PauseView {
    fn from(p: &v1::Pause) -> Self {
        PauseView {
            scope: p.scope.clone(),
            supervisor: p.supervisor.clone(),
            worker_kind: p.worker_kind.clone(),
            prefix: p.prefix.clone(),
            tenant: p.tenant.clone(),
            paused_at_ms: p.paused_at_ms,
            paused_by: p.paused_by.clone(),
            reason: p.reason.clone(),
        }
    }
}

impl From<&v1::StatusResponse> for Status {
    fn from(s: &v1::StatusResponse) -> Self {
        Status {
            node_id: s.node_id.clone(),
            version: s.version.clone(),
            pending_tasks: s.pending_tasks,
            supervisors: s
                .supervisors
                .iter()
                .map(|sup| Supervisor {
                    name: sup.name.clone(),
                    state: sup.state.clone(),
                    restarts: sup.restarts,
                    recent_restarts: sup.recent_restarts,
                    max_restarts: sup.max_restarts,
                    node_id: sup.node_id.clone(),
                    address: sup.address.clone(),
                    pools: sup.pools.iter().map(Pool::from).collect(),
                })
                .collect(),
            pauses: s.pauses.iter().map(PauseView::from).collect(),
        }
    }
}

/// A task type, where it runs and its schemas.
#[derive(Serialize, ToSchema)]
pub struct TaskType {
    /// `supervisor.domain.action` (or `workflow.<name>.run`).
    pub task_type: String,
    /// The supervisor that runs it (`workflow` for workflows).
    pub supervisor: String,
    /// The worker kind (pool) inside it (`v<version>` for workflows).
    pub worker_kind: String,
    /// The executor the worker runs.
    pub executor: String,
    /// JSON Schema of its params.
    pub params_schema: Value,
    /// JSON Schema of its result.
    pub result_schema: Value,
}

/// A registered workflow definition.
#[derive(Serialize, ToSchema)]
pub struct Workflow {
    /// Its name.
    pub name: String,
    /// Its version (1, 2, ...; immutable once stored).
    pub version: u32,
    /// The task type that starts an instance: `workflow.<name>.run`.
    pub task_type: String,
    /// The definition's description.
    pub description: Option<String>,
    /// When it was registered, Unix milliseconds.
    pub created_at_ms: i64,
    /// The registering credential's subject, or `config` for `[workflows] files`.
    pub created_by: String,
    /// The definition as stored (canonical form, defaults filled in; docs/WORKFLOWS.md).
    pub definition: Value,
}

impl From<&StoredDefinition> for Workflow {
    fn from(d: &StoredDefinition) -> Self {
        let definition: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
        Workflow {
            name: d.name.clone(),
            version: d.version,
            task_type: cadre_workflow::instance_task_type(&d.name),
            description: definition
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            created_at_ms: d.created_at_ms,
            created_by: d.created_by.clone(),
            definition,
        }
    }
}

/// `{"task"}`: one task.
#[derive(Serialize, ToSchema)]
pub struct TaskAnswer {
    /// The task.
    pub task: Task,
}

/// A submitted task.
#[derive(Serialize, ToSchema)]
pub struct Submitted {
    /// The task (with `wait=true`: once it is final).
    pub task: Task,
    /// True when this request created it, false for an idempotent repeat; absent with
    /// `wait=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool, required = false)]
    pub created: Option<bool>,
}

/// One page of tasks, newest first.
#[derive(Serialize, ToSchema)]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<Task>,
    /// Pass as `page_token` for the next page; empty on the last one.
    pub next_page_token: String,
}

/// A task's stored events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    /// The events.
    pub events: Vec<Event>,
}

/// The task types, in name order.
#[derive(Serialize, ToSchema)]
pub struct TypeList {
    /// The types.
    pub types: Vec<TaskType>,
}

/// A pool after a scale request.
#[derive(Serialize, ToSchema)]
pub struct PoolAnswer {
    /// The pool.
    pub pool: Pool,
}

/// Tokens and cost of one day.
#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Per tenant and model.
    pub usage: Vec<ModelUsage>,
}

/// `{"workflow"}`: one definition.
#[derive(Serialize, ToSchema)]
pub struct WorkflowAnswer {
    /// The definition.
    pub workflow: Workflow,
}

/// A registered definition.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    /// The definition as stored.
    pub workflow: Workflow,
    /// True when stored now, false when this very definition was registered before.
    pub created: bool,
}

/// Workflow definitions.
#[derive(Serialize, ToSchema)]
pub struct WorkflowList {
    /// The definitions.
    pub workflows: Vec<Workflow>,
}

/// A signal delivered to a workflow instance.
#[derive(Serialize, ToSchema)]
pub struct Signalled {
    /// The signal's sequence number (increasing; unique in the store, not per instance).
    pub seq: i64,
    /// The instance with its steps.
    pub task: Task,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_written_as_as_str_says() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::FailedPrecondition,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ResourceExhausted,
            ErrorCode::Unavailable,
            ErrorCode::DeadlineExceeded,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn enumerations_list_what_serde_writes() {
        let states = serde_json::to_value(task_state_schema()).unwrap();
        assert_eq!(
            states["enum"],
            serde_json::json!([
                "QUEUED",
                "RUNNING",
                "RETRYING",
                "SUCCEEDED",
                "FAILED",
                "CANCELLED",
                "TIMED_OUT"
            ])
        );
        let levels = serde_json::to_value(security_level_schema()).unwrap();
        assert_eq!(
            levels["enum"],
            serde_json::json!(["standard", "verified", "fortress"])
        );
    }
}
