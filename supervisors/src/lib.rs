//! cadre tier 1: supervisor actors and the worker pools they own, the root actor that
//! restarts them, and the runtime of a supervisor-only node.
//!
//! Layer: 3.
//! May import: cadre-agents, cadre-proto.
//!
//! Layout:
//! - [`admission`]: the intake checks that need only routes and executors (parse, route,
//!   fortress sandbox, params schema), shared by tier 0 and supervisor nodes.
//! - `attempt_report`: an attempt's progress and usage, forwarded to the sink.
//! - [`attempt_span`]: the span each attempt runs in, parented on its task's trace.
//! - [`config`]: what a supervisor is made of (pools per worker kind, restart intensity) and the
//!   routing table from task type to supervisor, worker kind and executor.
//! - [`dispatch_config`]: `[fairness]` tenant weights, `[[concurrency]]` key limits and
//!   `[upstream]` rate-limit bounds, as configured, with their checks.
//! - [`dispatch_gates`]: whether a queued task may start now (pauses, rate-limit holds of its
//!   type, its concurrency key) and where the tasks that may not wait, still queued.
//! - [`key_limits`]: running limits per (tenant, concurrency key), shared by every supervisor
//!   of a process.
//! - [`pause`]: what an operator paused ([`PauseSet`]): supervisors, pools, task-type prefixes,
//!   tenants; consulted before a queued task starts.
//! - `pool`: the shape of one pool of a supervisor (its workers, queue and parked tasks).
//! - [`priority_queue`]: the per-pool queue: priorities 0-9, FIFO within a tenant, and
//!   weighted fair shares across tenants within a priority (stride scheduling), so one
//!   tenant's flood cannot starve another.
//! - [`restart_policy`]: OTP-style restart intensity (at most N restarts in T).
//! - [`sink`]: the [`TaskSink`] seam through which supervisors report task transitions; tier 0
//!   implements it on top of the durable store, a supervisor node with [`node::NodeSink`].
//! - [`supervisor`]: the [`Supervisor`] actor: dispatch, retries with backoff, cancel, scaling,
//!   one-for-one worker restarts and escalation.
//! - [`delegation`]: a finished sub-task's record as the delegating executor's answer.
//! - [`node`]: the runtime of a supervisor node in distributed mode ([`node::NodeRuntime`]):
//!   takes task messages for its supervisors from a work queue (room-bounded, redeliveries
//!   counted as lost attempts, dead-lettering, cancels, heartbeats), reports events back and
//!   acks a message once its task's end is durable, runs and sends delegated sub-tasks. What
//!   is specific to NATS or gRPC is behind its traits ([`node::transport`]), which tier 0's
//!   bus implements; its messages ([`node::wire`]) are the contract with tier 0.
//! - [`task`]: [`QueuedTask`], a stored task made runnable on a worker kind.
//! - [`router`]: the [`Router`]: routes in force, executors by name, stored task -> runnable.
//! - [`tree`]: the root actor ([`Orchestrator`]) that spawns and restarts the supervisors of a
//!   process and re-dispatches a restarted supervisor's tasks from a [`TaskSource`].
#![forbid(unsafe_code)]

pub mod admission;
mod attempt_report;
pub mod attempt_span;
pub mod config;
pub mod delegation;
pub mod dispatch_config;
pub mod dispatch_gates;
pub mod key_limits;
pub mod node;
pub mod pause;
mod pool;
pub mod priority_queue;
pub mod restart_policy;
pub mod router;
pub mod sink;
pub mod supervisor;
pub mod task;
pub mod tree;

pub use config::{Route, RoutingTable, SupervisorSpec};
pub use dispatch_config::{ConcurrencyRule, DispatchConfig, FairnessConfig, UpstreamConfig};
pub use dispatch_gates::{Dispatch, Gates};
pub use pause::{Pause, PauseProbe, PauseSet};
pub use priority_queue::FairQueue;
pub use restart_policy::{RestartIntensity, RestartTracker};
pub use router::{Router, SharedRoutes, UnknownType};
pub use sink::{TaskSink, Transition};
pub use supervisor::{Supervisor, SupervisorArgs, SupervisorMsg};
pub use task::QueuedTask;
pub use tree::{Orchestrator, OrchestratorArgs, OrchestratorMsg, ScaleError, SourceError, TaskSource};
