//! What a supervisor runs: a stored task made runnable on a worker kind.

use std::sync::Arc;
use std::time::Duration;

use cadre_agents::Executor;
use cadre_proto::{Priority, RetryPolicy, TaskId};
use serde_json::Value;

/// A task handed to a supervisor, ready to run on its worker kind.
#[derive(Clone)]
pub struct QueuedTask {
    /// The task.
    pub id: TaskId,
    /// Its tenant (fair share key).
    pub tenant: String,
    /// Its type.
    pub task_type: String,
    /// The pool that runs it.
    pub worker_kind: String,
    /// What the worker runs.
    pub executor: Arc<dyn Executor>,
    /// Its params.
    pub params: Value,
    /// Its priority.
    pub priority: Priority,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Its retry policy.
    pub retry: RetryPolicy,
    /// Attempts already started (0 for a new task).
    pub attempts_started: u32,
    /// Whether its result is signed (security level verified).
    pub verified: bool,
    /// A `fortress` task: its worker runs it only in a sandbox (see
    /// `cadre_agents::Executor::sandboxed`).
    pub fortress: bool,
    /// The W3C trace context of its submission; every attempt's span is its child. None when
    /// spans are not exported, or for a task recovered from the store (a new trace).
    pub traceparent: Option<String>,
    /// Its concurrency key (`spec.concurrency_key`): running limits per (tenant, key) apply
    /// ([`crate::key_limits`]).
    pub concurrency_key: Option<String>,
    /// Times an upstream rate-limited it and it was put back without counting the attempt
    /// (in memory: a recovered task starts again at 0); bounded by `upstream.max_requeues`.
    pub rate_limited: u32,
}
