//! The tasks' side of the core: reading them (one, a page, their events, a live watch),
//! waiting for one to finish, cancelling, and the task types the node accepts.

use std::time::Duration;

use cadre_proto::{SpecError, TaskId, TaskRecord, TaskState, WORKFLOW_SUPERVISOR, v1};
use cadre_store::{EventFilter, StoreError, TaskFilter};
use cadre_supervisors::Transition;
use tokio::sync::mpsc;

use crate::auth::{Action, Principal};
use crate::error::{Error, Result};
use crate::node::Node;

/// Largest page `List` returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A task type as clients (ListTaskTypes, MCP tools) see it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskTypeInfo {
    /// `supervisor.domain.action`.
    pub task_type: String,
    /// The tier-1 supervisor that runs it.
    pub supervisor: String,
    /// The worker kind (pool) inside it.
    pub worker_kind: String,
    /// The executor the worker runs.
    pub executor: String,
    /// JSON Schema of its params.
    pub params_schema: serde_json::Value,
    /// JSON Schema of its result.
    pub result_schema: serde_json::Value,
    /// What it does, when known (a workflow's description).
    pub description: String,
}

impl Node {
    /// One task by id. Another tenant's task is NOT_FOUND, as if it did not exist.
    pub async fn get(&self, p: &Principal, id: &str) -> Result<TaskRecord> {
        self.permit(p, Action::GetTask).await?;
        let id: TaskId = id.parse()?;
        let record = self.get_visible(p, id).await?;
        self.with_steps(record).await
    }

    /// A workflow instance's record with its steps (other tasks as they are).
    pub(crate) async fn with_steps(&self, mut record: TaskRecord) -> Result<TaskRecord> {
        if record.supervisor == WORKFLOW_SUPERVISOR {
            record.steps = self.instance_steps(&record).await?;
        }
        Ok(record)
    }

    pub(crate) async fn get_visible(&self, p: &Principal, id: TaskId) -> Result<TaskRecord> {
        let record = self.get_record(id).await?;
        if !p.sees(&record.tenant) {
            return Err(Error::NotFound(format!("no task {id}")));
        }
        Ok(record)
    }

    pub(crate) async fn get_record(&self, id: TaskId) -> Result<TaskRecord> {
        self.reads
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no task {id}")))
    }

    /// Cancels a task and its sub-tasks: queued ones at once, running ones cooperatively then
    /// forcibly after the grace period. Waits up to the grace period (plus a margin) and
    /// returns the task once it and its sub-tasks are finished; a workflow instance is
    /// CANCELLED at once (no new step starts) and the wait is for its running steps. Audited
    /// as `task.cancel`.
    pub async fn cancel(&self, p: &Principal, id: &str, reason: &str) -> Result<TaskRecord> {
        self.permit(p, Action::CancelTask).await?;
        let task = self.cancel_tree(p, id, reason).await?;
        self.audit(Some(p), "task.cancel", &task.id.to_string(), "ok", reason)
            .await;
        Ok(task)
    }

    /// [`Node::cancel`] of a task and, leaf by leaf, its sub-tasks (only the request itself is
    /// audited).
    async fn cancel_tree(&self, p: &Principal, id: &str, reason: &str) -> Result<TaskRecord> {
        let id: TaskId = id.parse()?;
        let record = self.get_visible(p, id).await?;
        if record.state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "task {} is already {}",
                record.id, record.state
            )));
        }
        let reason = if reason.is_empty() {
            "cancelled by request".to_string()
        } else {
            reason.to_string()
        };
        self.stop_one(&record, &reason).await?;
        // Sub-tasks go with their parent (a tree of delegations is cancelled leaf by leaf).
        for child in &record.children {
            if let Ok(c) = self.get_record(*child).await
                && !c.state.is_terminal()
            {
                self.stop_tree(&c, &format!("parent {} cancelled", record.id))
                    .await;
            }
        }
        let grace = Duration::from_millis(self.config().limits.cancel_grace_ms) + Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + grace;
        let waited = |id| async move {
            match self
                .wait_terminal(
                    id,
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                )
                .await
            {
                Ok(r) => Ok(r),
                Err(Error::DeadlineExceeded(_)) => self.get_record(id).await,
                Err(e) => Err(e),
            }
        };
        let task = waited(record.id).await?;
        // Its sub-tasks too (a workflow instance is CANCELLED at once; its steps are what
        // take time to stop), within the same grace.
        for child in &record.children {
            waited(*child).await?;
        }
        Ok(task)
    }

    /// Asks one task to stop: its supervisor cancels it (queued: at once; running:
    /// cooperatively, then forcibly); a workflow instance, which no supervisor runs, is
    /// CANCELLED here.
    pub(crate) async fn stop_one(&self, record: &TaskRecord, reason: &str) -> Result<()> {
        if record.supervisor == WORKFLOW_SUPERVISOR {
            let t = Transition::new(record.id, TaskState::Cancelled, record.attempt, reason);
            self.writer.transition(t).await?;
            return Ok(());
        }
        Ok(self
            .bus
            .cancel(&record.supervisor, record.id, record.attempt, reason.to_string())
            .await?)
    }

    /// Asks a task and, leaf by leaf, its unfinished sub-tasks to stop, without waiting
    /// (failures are logged: what could not be asked goes on and is asked again by whoever
    /// cancels next).
    pub(crate) async fn stop_tree(&self, record: &TaskRecord, reason: &str) {
        if let Err(e) = self.stop_one(record, reason).await {
            tracing::warn!(task = %record.id, error = %e, "cannot cancel task");
        }
        let reason = format!("parent {} cancelled", record.id);
        for child in &record.children {
            if let Ok(c) = self.get_record(*child).await
                && !c.state.is_terminal()
            {
                Box::pin(self.stop_tree(&c, &reason)).await;
            }
        }
    }

    /// Waits until the task is terminal, then returns it.
    pub async fn wait_terminal(&self, id: TaskId, wait: Duration) -> Result<TaskRecord> {
        let filter = EventFilter {
            task_id: Some(id),
            ..Default::default()
        };
        let mut events = self.hub.watch(self.store.clone(), filter, 0, true);
        let done = tokio::time::timeout(wait, async {
            while let Some(e) = events.recv().await {
                if e?.state.is_terminal() {
                    return Ok::<bool, StoreError>(true);
                }
            }
            Ok(false)
        })
        .await;
        match done {
            Ok(Ok(_)) => self.get_record(id).await,
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(self.still_running(id, wait).await),
        }
    }

    /// The error for a wait of `wait` that ended before task `id` finished.
    pub(crate) async fn still_running(&self, id: TaskId, wait: Duration) -> Error {
        match self.get_record(id).await {
            Ok(record) => Error::DeadlineExceeded(format!(
                "task {id} is still {} after {} ms; it goes on (watch or get it)",
                record.state,
                wait.as_millis()
            )),
            Err(e) => e,
        }
    }

    /// A page of tasks, newest first, and the token of the next page (empty at the end).
    pub async fn list(&self, p: &Principal, req: &v1::ListRequest) -> Result<(Vec<TaskRecord>, String)> {
        self.permit(p, Action::ListTasks).await?;
        let states = req
            .states
            .iter()
            .map(|s| TaskState::from_wire(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = match req.page_size {
            0 => 50,
            n if n > MAX_PAGE_SIZE => {
                return Err(
                    SpecError::invalid("page_size", format!("must be at most {MAX_PAGE_SIZE}")).into(),
                );
            }
            n => n,
        };
        let before = match req.page_token.as_str() {
            "" => None,
            t => Some(
                t.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("page_token", "is not a token from List"))?,
            ),
        };
        let parent_id = match req.parent_id.as_str() {
            "" => None,
            p => Some(
                p.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("parent_id", "is not a task id"))?,
            ),
        };
        let filter = TaskFilter {
            tenant: p.tenant_scope().map(str::to_string),
            states,
            type_prefix: (!req.task_type_prefix.is_empty()).then(|| req.task_type_prefix.clone()),
            parent_id,
            before,
            limit,
            ..Default::default()
        };
        let tasks = self.store.list(&filter).await?;
        let next = if tasks.len() as u32 == limit {
            tasks.last().map(|t| t.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((tasks, next))
    }

    /// A resumable event stream for one task (ends after its terminal event) or a filter.
    pub async fn watch(
        &self,
        p: &Principal,
        req: &v1::WatchRequest,
    ) -> Result<mpsc::Receiver<Result<cadre_proto::TaskEvent, StoreError>>> {
        self.permit(p, Action::WatchTasks).await?;
        let states = req
            .states
            .iter()
            .map(|s| TaskState::from_wire(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let task_id = match req.task_id.as_str() {
            "" => None,
            id => {
                let id: TaskId = id
                    .parse()
                    .map_err(|_| SpecError::invalid("task_id", "is not a task id"))?;
                self.get_visible(p, id).await?;
                Some(id)
            }
        };
        let parent_id = match req.parent_id.as_str() {
            "" => None,
            id => Some(
                id.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("parent_id", "is not a task id"))?,
            ),
        };
        let filter = EventFilter {
            task_id,
            type_prefix: (!req.task_type_prefix.is_empty()).then(|| req.task_type_prefix.clone()),
            states,
            tenant: p.tenant_scope().map(str::to_string),
            parent_id,
        };
        let after = match (req.live_only, req.after_cursor) {
            (false, after) => after,
            (true, 0) => self.head_cursor().await?,
            (true, _) => {
                return Err(SpecError::invalid("live_only", "cannot be combined with after_cursor").into());
            }
        };
        Ok(self
            .hub
            .watch(self.store.clone(), filter, after, task_id.is_some()))
    }

    /// Stored events of one visible task with a cursor after `after`, oldest first (at most
    /// `limit`, 1-1000).
    pub async fn task_events(
        &self,
        p: &Principal,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<cadre_proto::TaskEvent>> {
        self.permit(p, Action::GetTask).await?;
        if !(1..=1000).contains(&limit) {
            return Err(SpecError::invalid("limit", format!("{limit} is not within 1-1000")).into());
        }
        let id: TaskId = id.parse()?;
        self.get_visible(p, id).await?;
        let filter = EventFilter {
            task_id: Some(id),
            ..Default::default()
        };
        Ok(self.store.events_after(after, &filter, limit).await?)
    }

    /// Every task type this node accepts, in name order, with where it runs and the JSON
    /// Schemas of its params and result (`{"type": "object"}` and `{}` when its executor
    /// publishes none).
    fn task_types(&self) -> Vec<TaskTypeInfo> {
        let routes = self.router.routes();
        routes
            .iter()
            .map(|(task_type, route)| {
                let executor = self.router.executor(&route.executor);
                let schema = |f: fn(&dyn cadre_agents::Executor) -> Option<serde_json::Value>,
                              none: serde_json::Value| {
                    executor.as_deref().and_then(f).unwrap_or(none)
                };
                TaskTypeInfo {
                    task_type: task_type.clone(),
                    supervisor: route.supervisor.clone(),
                    worker_kind: route.worker.clone(),
                    executor: route.executor.clone(),
                    params_schema: schema(|e| e.params_schema(), serde_json::json!({ "type": "object" })),
                    result_schema: schema(|e| e.result_schema(), serde_json::json!({})),
                    description: String::new(),
                }
            })
            .collect()
    }

    /// The newest version of every registered workflow, as the task type that starts it: its
    /// params are the workflow's input.
    async fn workflow_task_types(&self) -> Result<Vec<TaskTypeInfo>> {
        let defs = self.store.definitions(None).await?;
        Ok(defs
            .into_iter()
            .map(|d| {
                let def = cadre_workflow::Definition::from_json(&d.body).ok();
                TaskTypeInfo {
                    task_type: cadre_workflow::instance_task_type(&d.name),
                    supervisor: WORKFLOW_SUPERVISOR.to_string(),
                    worker_kind: crate::workflows::version_kind(d.version),
                    executor: WORKFLOW_SUPERVISOR.to_string(),
                    params_schema: def
                        .as_ref()
                        .and_then(|d| d.input_schema.clone())
                        .unwrap_or_else(|| serde_json::json!({ "type": "object" })),
                    result_schema: serde_json::json!({}),
                    description: def.map(|d| d.description).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Whether `task_type` is routed, or names a workflow (cheap: no schemas are built; intake
    /// checks the workflow is registered).
    pub fn accepts(&self, task_type: &str) -> bool {
        self.router.routes().resolve(task_type).is_some() || cadre_workflow::workflow_of(task_type).is_some()
    }

    /// Every task type (routed ones, then workflows) whose name starts with `prefix`.
    pub async fn task_types_with_prefix(&self, p: &Principal, prefix: &str) -> Result<Vec<TaskTypeInfo>> {
        self.permit(p, Action::GetTask).await?;
        let mut types = self.task_types();
        types.extend(self.workflow_task_types().await?);
        types.retain(|t| t.task_type.starts_with(prefix));
        Ok(types)
    }

    /// The newest committed event's cursor: where a subscription "from now" starts.
    pub async fn head_cursor(&self) -> Result<u64> {
        Ok(self.store.max_cursor().await?)
    }
}
