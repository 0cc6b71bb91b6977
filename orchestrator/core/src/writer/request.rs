//! A write as it travels from a [`super::handle::Writer`] call to the writer task: its op, who
//! waits for it, its `task.record` span and trace, and the writes grouped with it.

use cadre_store::{StoreError, WriteOp, WriteOutcome};
use cadre_supervisors::Transition;
use opentelemetry::trace::TraceId;
use tokio::sync::oneshot;

/// Where the outcome of a write goes to the caller that waits for it.
pub(super) type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

/// One write on the writer's queue (or a barrier), with what it carries to the commit.
pub(super) struct Request {
    /// None is a barrier: answered once everything sent before it is durable.
    pub(super) op: Option<WriteOp>,
    /// The caller waiting for the outcome (None: fire and forget).
    pub(super) reply: Option<Reply>,
    /// A terminal transition's `task.record` span (while spans are exported): open from the
    /// supervisor's decision until the commit, in the trace of the attempt that decided it.
    pub(super) span: tracing::Span,
    /// The trace a transition was decided in (while spans are exported), for its log line.
    pub(super) trace_id: Option<TraceId>,
    /// Writes that commit in the same transaction as this one, right after it
    /// ([`super::Writer::write_together`]).
    pub(super) with: Vec<Request>,
}

impl Request {
    /// A request without span, trace or grouped writes.
    pub(super) fn new(op: Option<WriteOp>, reply: Option<Reply>) -> Self {
        Request {
            op,
            reply,
            span: tracing::Span::none(),
            trace_id: None,
            with: Vec::new(),
        }
    }
}

/// The request for one write a caller waits for. A terminal transition decided in another
/// process gets its `task.record` span as a child of `traceparent` (the task's trace), open
/// until the commit.
pub(super) fn traced_request(
    op: WriteOp,
    traceparent: Option<&str>,
) -> (Request, oneshot::Receiver<Result<WriteOutcome, StoreError>>) {
    let span = match (&op, traceparent) {
        (WriteOp::Transition(t), Some(tp)) if t.state.is_terminal() => {
            let span = record_span(t);
            cadre_trace::set_parent_from_traceparent(&span, tp);
            span
        }
        _ => tracing::Span::none(),
    };
    let (reply, rx) = oneshot::channel();
    let mut req = Request::new(Some(op), Some(reply));
    req.span = span;
    req.trace_id = traceparent.and_then(cadre_trace::trace_id_of);
    (req, rx)
}

/// A terminal transition's `task.record` span (none while spans are not exported); `tenant`
/// and `task_type` are recorded at the commit, from the stored task.
pub(super) fn record_span(t: &Transition) -> tracing::Span {
    cadre_trace::task_span!(
        "task.record",
        task_id = %t.task_id,
        tenant = tracing::field::Empty,
        task_type = tracing::field::Empty,
        state = t.state.as_str(),
        attempt = t.attempt,
    )
}
