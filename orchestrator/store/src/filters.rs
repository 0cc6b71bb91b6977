//! What reads select: tasks for `List`, events for watchers, usage for budgets and reports.

use cadre_proto::{TaskEvent, TaskId, TaskState};

/// Which tasks `List` returns.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only these tenants' tasks (None = all).
    pub tenant: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<TaskState>,
    /// Only types starting with this.
    pub type_prefix: Option<String>,
    /// Only sub-tasks of this parent.
    pub parent_id: Option<TaskId>,
    /// Only tasks with a smaller id (paging, newest first).
    pub before: Option<TaskId>,
    /// Page size.
    pub limit: u32,
    /// Only tasks created at or after this time, Unix milliseconds (bulk operations).
    pub created_after_ms: Option<i64>,
    /// Only tasks created before this time, Unix milliseconds (bulk operations).
    pub created_before_ms: Option<i64>,
    /// Only tasks whose error contains this text, case-insensitively (bulk operations; a plain
    /// substring: LIKE's wildcards in it are escaped).
    pub error_contains: Option<String>,
}

/// Which events a watcher wants.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// One task only.
    pub task_id: Option<TaskId>,
    /// Types starting with this.
    pub type_prefix: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<TaskState>,
    /// Only this tenant's events (None = all).
    pub tenant: Option<String>,
    /// Only events of sub-tasks of this task.
    pub parent_id: Option<TaskId>,
}

impl EventFilter {
    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &TaskEvent) -> bool {
        self.task_id.is_none_or(|id| id == e.task_id)
            && self
                .type_prefix
                .as_deref()
                .is_none_or(|p| e.task_type.starts_with(p))
            && (self.states.is_empty() || self.states.contains(&e.state))
            && self.tenant.as_deref().is_none_or(|t| t == e.tenant)
            && self.parent_id.is_none_or(|p| e.parent_id == Some(p))
    }
}

/// Which usage to sum.
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    /// One task (all days).
    pub task_id: Option<TaskId>,
    /// One tenant.
    pub tenant: Option<String>,
    /// One UTC day.
    pub day: Option<String>,
}

impl UsageFilter {
    /// One task's usage, all days.
    pub fn task(id: TaskId) -> Self {
        UsageFilter {
            task_id: Some(id),
            ..Default::default()
        }
    }
}
