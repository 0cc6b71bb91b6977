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

use crate::task::QueuedTask;

/// Makes a W3C `traceparent` the parent of a span that has not been entered yet.
pub type SetParentFn = fn(&Span, &str);

static SET_PARENT: OnceLock<SetParentFn> = OnceLock::new();

/// Turns attempt spans on for this process; `set_parent` links each to its task's trace.
/// Later calls are ignored.
pub fn install(set_parent: SetParentFn) {
    let _ = SET_PARENT.set(set_parent);
}

/// The trace id of a W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<flags>`), for
/// the `trace_id` field of log lines; None when it is malformed or names the invalid all-zero
/// trace.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    let hex = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && id.bytes().any(|b| b != b'0')).then_some(id)
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

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn trace_id_is_the_second_field_of_a_well_formed_traceparent() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad), None, "{bad:?}");
        }
    }
}
