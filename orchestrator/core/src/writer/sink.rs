//! The [`Writer`] as the supervisors' [`TaskSink`] and the NATS bus's [`cadre_bus::Journal`].

use async_trait::async_trait;
use cadre_proto::TaskId;
use cadre_store::{StoreError, WriteOp, WriteOutcome};
use cadre_supervisors::{TaskSink, Transition};
use tokio::sync::mpsc;

use super::handle::Writer;
use super::request::{Request, record_span};

/// The supervisors' transitions, progress and usage go to the store through the writer.
#[async_trait]
impl TaskSink for Writer {
    fn usage(&self, task_id: TaskId, usage: cadre_agents::Usage) {
        let op = self.priced_usage(task_id, usage);
        // Keep the order with the task's transitions when there is room; otherwise wait for
        // room in a task of its own: usage is never dropped.
        match self.tx.try_send(Request::new(Some(op), None)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(req)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if tx.send(req).await.is_err() {
                        tracing::warn!(%task_id, "writer stopped; usage report lost");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!(%task_id, "writer stopped; usage report lost")
            }
        }
    }

    async fn record(&self, t: Transition) {
        let span = if t.state.is_terminal() {
            record_span(&t)
        } else {
            tracing::Span::none()
        };
        let mut req = Request::new(Some(WriteOp::Transition(t)), None);
        req.span = span;
        // The decider's span: the attempt's, so the task's trace, for an attempt's outcome.
        req.trace_id = cadre_trace::current_trace_id();
        if self.tx.send(req).await.is_err() {
            tracing::warn!("writer stopped; transition dropped (recovered from the store on restart)");
        }
    }

    fn progress(&self, task_id: TaskId, attempt: u32, fraction: f64, message: String) {
        let op = WriteOp::Progress {
            task_id,
            attempt,
            fraction,
            message,
        };
        if self.tx.try_send(Request::new(Some(op), None)).is_err() {
            metrics::counter!("cadre_progress_dropped_total").increment(1);
        }
    }
}

/// The durable side of the NATS bus: events from supervisor nodes are stored through the
/// writer, and dispatches NATS can never take are failed through it.
#[async_trait]
impl cadre_bus::Journal for Writer {
    async fn transition(&self, t: Transition) -> Result<WriteOutcome, StoreError> {
        Writer::transition(self, t).await
    }

    async fn write_together(&self, writes: Vec<(WriteOp, Option<String>)>) -> Result<(), StoreError> {
        Writer::write_together(self, writes).await
    }

    fn batch_max(&self) -> usize {
        Writer::batch_max(self)
    }

    fn priced_usage(&self, task_id: TaskId, usage: cadre_agents::Usage) -> WriteOp {
        Writer::priced_usage(self, task_id, usage)
    }
}
