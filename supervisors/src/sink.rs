//! How supervisors report what happens to tasks without knowing where it is stored.

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskState};
use serde_json::Value;

/// One state change of one task, as decided by its supervisor.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The task.
    pub task_id: TaskId,
    /// The new state.
    pub state: TaskState,
    /// The attempt it concerns.
    pub attempt: u32,
    /// Detail: error text, retry delay, cancel reason.
    pub message: String,
    /// The result, with SUCCEEDED.
    pub result: Option<Value>,
    /// Whether the result must be signed (verified tasks).
    pub sign: bool,
    /// The node's signature of the result, filled in by tier 0 before it is stored.
    pub signature: Option<String>,
}

impl Transition {
    /// A transition without result.
    pub fn new(task_id: TaskId, state: TaskState, attempt: u32, message: impl Into<String>) -> Self {
        Transition {
            task_id,
            state,
            attempt,
            message: message.into(),
            result: None,
            sign: false,
            signature: None,
        }
    }
}

/// Where transitions and progress go. Tier 0 implements it on the durable store and event hub;
/// a transition for a task that is already terminal must be ignored there, which is what makes
/// at-least-once execution safe (a task never finishes twice).
#[async_trait]
pub trait TaskSink: Send + Sync + 'static {
    /// Records a transition. Waits while the sink's bounded queue is full (backpressure);
    /// does not wait for the write to be durable.
    async fn record(&self, transition: Transition);

    /// Reports progress of a running attempt. Never blocks: progress may be dropped under load.
    fn progress(&self, task_id: TaskId, attempt: u32, fraction: f64, message: String);

    /// Records tokens a task used. Never blocks and never drops: budgets depend on it.
    fn usage(&self, task_id: TaskId, usage: cadre_agents::Usage);
}
