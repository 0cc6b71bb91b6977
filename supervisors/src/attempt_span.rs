//! The span each attempt of a task runs in, so one task is one trace.
//!
//! A task carries its trace as a W3C `traceparent` string ([`QueuedTask::traceparent`], taken
//! from the submit span at intake). Each attempt gets a root `task.attempt` span whose parent is
//! that context; the supervisor enters it while it casts the run to the worker, and ractor's
//! message span propagation runs the worker's handler (the executor) inside it.
//!
//! This crate does not depend on OpenTelemetry: tier 0 installs, through [`install`], the
//! function that turns a `traceparent` into a span's parent, and only when it exports spans.
//! Until then [`attempt_span`] returns [`tracing::Span::none`], so a node without a collector
//! pays nothing for it.

use std::sync::OnceLock;

use tracing::Span;

use crate::supervisor::QueuedTask;

/// Makes a W3C `traceparent` the parent of a span that has not been entered yet.
pub type SetParentFn = fn(&Span, &str);

static SET_PARENT: OnceLock<SetParentFn> = OnceLock::new();

/// Turns attempt spans on for this process; `set_parent` links each to its task's trace.
/// Later calls are ignored.
pub fn install(set_parent: SetParentFn) {
    let _ = SET_PARENT.set(set_parent);
}

/// The span attempt `attempt` of `task` runs in, on `supervisor`'s pool of the task's worker
/// kind; [`Span::none`] unless [`install`] was called. A task without a `traceparent` (one
/// recovered after a restart) starts a new trace.
pub(crate) fn attempt_span(supervisor: &str, task: &QueuedTask, attempt: u32) -> Span {
    let Some(set_parent) = SET_PARENT.get() else {
        return Span::none();
    };
    let span = tracing::info_span!(
        parent: None,
        "task.attempt",
        task_id = %task.id,
        task_type = %task.task_type,
        tenant = %task.tenant,
        attempt,
        worker_kind = %task.worker_kind,
        supervisor = %supervisor,
    );
    if let Some(tp) = &task.traceparent {
        set_parent(&span, tp);
    }
    span
}
