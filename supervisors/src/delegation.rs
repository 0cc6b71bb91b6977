//! Delegation's common ground: how a finished sub-task's record becomes the delegating
//! executor's answer, wherever the sub-task ran (in process, or on another node over
//! SupervisorPeer.Delegate).

use cadre_agents::ExecError;
use cadre_proto::TaskState;
use cadre_proto::v1::Task;

/// The result of a finished sub-task, or an error naming it.
pub fn delegated_result(task_type: &str, task: &Task) -> Result<serde_json::Value, ExecError> {
    let state = TaskState::from_wire(task.state).unwrap_or(TaskState::Failed);
    match state {
        TaskState::Succeeded => serde_json::from_str(&task.result_json)
            .map_err(|e| ExecError::Fatal(format!("sub-task {task_type} {}: bad result: {e}", task.id))),
        TaskState::Cancelled => Err(ExecError::Cancelled),
        s => Err(ExecError::Fatal(format!(
            "sub-task {task_type} {} ended {}: {}",
            task.id, s, task.error
        ))),
    }
}
