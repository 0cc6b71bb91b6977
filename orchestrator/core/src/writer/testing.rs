//! Helpers for the writer's unit tests.

use cadre_proto::{TaskEvent, TaskId, TaskState};
use cadre_store::WriteOutcome;

/// The outcome of a committed write of task `task_id` (tenant `t`): its event in `state`, at
/// `cursor`.
pub(super) fn committed(task_id: TaskId, state: TaskState, cursor: u64) -> WriteOutcome {
    let event = TaskEvent {
        cursor,
        task_id,
        seq: 1,
        state,
        attempt: 1,
        message: String::new(),
        progress: 0.0,
        result: None,
        at_ms: 0,
        task_type: "system.debug.echo".into(),
        tenant: "t".into(),
        is_progress: false,
        parent_id: None,
    };
    WriteOutcome::Event {
        event,
        created_at_ms: 0,
    }
}
