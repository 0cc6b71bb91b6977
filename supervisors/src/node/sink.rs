//! [`NodeSink`]: the [`TaskSink`] of a supervisor node, through which its supervisors'
//! transitions, progress and usage go out as events.

use std::sync::Arc;

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskState};
use tokio::sync::mpsc;

use crate::node::runtime::NodeRuntime;
use crate::node::transport::Outgoing;
use crate::node::wire::{EventMsg, TransitionMsg};
use crate::sink::{TaskSink, Transition};

/// The [`TaskSink`] of a supervisor node: everything goes to the events stream, on the
/// subject of the supervisor holding the task, transitions with the task's trace context.
pub struct NodeSink(pub Arc<NodeRuntime>);

impl NodeSink {
    fn supervisor_of(&self, id: TaskId) -> String {
        self.0
            .held
            .lock()
            .get(&id)
            .map(|i| i.supervisor.clone())
            .unwrap_or_else(|| "unknown".into())
    }
}

#[async_trait]
impl TaskSink for NodeSink {
    /// Queued in order; waits while the event queue is full.
    async fn record(&self, t: Transition) {
        let (s, traceparent, round) = self
            .0
            .held
            .lock()
            .get_mut(&t.task_id)
            .map(|i| {
                // Put back in the queue: what follows is a new round of the same attempt.
                if t.state == TaskState::Queued {
                    i.round += 1;
                }
                (i.supervisor.clone(), i.task.traceparent.clone(), i.round)
            })
            .unwrap_or_else(|| ("unknown".into(), None, 0));
        let mut msg: TransitionMsg = (&t).into();
        msg.traceparent = traceparent;
        msg.round = round;
        self.0.emit(&s, EventMsg::Transition(msg)).await;
    }

    /// Dropped (and counted in `cadre_progress_dropped_total`) when the event queue is full.
    fn progress(&self, task_id: TaskId, attempt: u32, fraction: f64, message: String) {
        let out = Outgoing {
            supervisor: self.supervisor_of(task_id),
            event: EventMsg::Progress {
                task_id,
                attempt,
                fraction,
                message,
            },
        };
        if self.0.events.try_send(out).is_err() {
            metrics::counter!("cadre_progress_dropped_total").increment(1);
        }
    }

    /// Never dropped: with the event queue full, it waits in a task of its own.
    fn usage(&self, task_id: TaskId, usage: cadre_agents::Usage) {
        let out = Outgoing {
            supervisor: self.supervisor_of(task_id),
            event: EventMsg::Usage { task_id, usage },
        };
        if let Err(mpsc::error::TrySendError::Full(out)) = self.0.events.try_send(out) {
            let tx = self.0.events.clone();
            tokio::spawn(async move {
                let _ = tx.send(out).await;
            });
        }
    }
}
