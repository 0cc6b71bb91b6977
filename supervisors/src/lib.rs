//! cadre tier 1: supervisor actors and the worker pools they own.
//!
//! Layout:
//! - [`attempt_span`]: the span each attempt runs in, parented on its task's trace.
//! - [`config`]: what a supervisor is made of (pools per worker kind, restart intensity) and the
//!   routing table from task type to supervisor, worker kind and executor.
//! - [`priority_queue`]: the per-pool queue: priorities 0-9, FIFO within a priority, and
//!   round-robin across tenants within a priority so one tenant's flood cannot starve another.
//! - [`restart_policy`]: OTP-style restart intensity (at most N restarts in T).
//! - [`sink`]: the [`TaskSink`] seam through which supervisors report task transitions; tier 0
//!   implements it on top of the durable store.
//! - [`supervisor`]: the [`Supervisor`] actor: dispatch, retries with backoff, cancel, scaling,
//!   one-for-one worker restarts and escalation.
#![forbid(unsafe_code)]

pub mod attempt_span;
pub mod config;
pub mod priority_queue;
pub mod restart_policy;
pub mod sink;
pub mod supervisor;

pub use config::{Route, RoutingTable, SupervisorSpec};
pub use priority_queue::FairQueue;
pub use restart_policy::{RestartIntensity, RestartTracker};
pub use sink::{TaskSink, Transition};
pub use supervisor::{QueuedTask, Supervisor, SupervisorArgs, SupervisorMsg};
