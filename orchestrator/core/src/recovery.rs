//! Start-up and restart recovery in tier 0: the store's unfinished tasks, made runnable again.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskState, WORKFLOW_SUPERVISOR};
use cadre_supervisors::{QueuedTask, Router, SourceError, TaskSink, TaskSource, Transition};

use cadre_store::{Store, StoreError};

/// Reads unfinished tasks back from the store: at start-up and whenever a supervisor is
/// restarted (the root actor's [`TaskSource`] in a process that runs tier 0 in process).
#[derive(Clone)]
pub struct StoreRecovery {
    /// Where unfinished tasks are read from.
    pub store: Arc<dyn Store>,
    /// The routes in force and the executors they name.
    pub router: Router,
    /// Where tasks that cannot be recovered are failed.
    pub sink: Arc<dyn TaskSink>,
}

impl StoreRecovery {
    /// Unfinished tasks stored for `supervisor` (or all), as (supervisor, task) pairs ready to
    /// enqueue. A task that was RUNNING on its last attempt is failed instead: it may be what
    /// brought the node down. A task whose type has no route any more is failed too. Workflow
    /// instances are left alone: no supervisor runs them (the workflow engine resumes them).
    /// So are debounced tasks still holding their key: the debouncer dispatches them when
    /// their window ends ([`crate::debounce`]); the holds are read first, so a task released
    /// meanwhile is recovered here.
    pub async fn load(&self, supervisor: Option<&str>) -> Result<Vec<(String, QueuedTask)>, StoreError> {
        let routes = self.router.routes();
        let held: HashSet<TaskId> = self
            .store
            .held_debounces(u32::MAX)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut out = Vec::new();
        for rec in self.store.unfinished(supervisor).await? {
            if rec.supervisor == WORKFLOW_SUPERVISOR || held.contains(&rec.id) {
                continue;
            }
            let fail = |why: String| Transition::new(rec.id, TaskState::Failed, rec.attempt, why);
            let Some(route) = routes.resolve(&rec.spec.task_type) else {
                self.sink
                    .record(fail(format!("no route for {} after restart", rec.spec.task_type)))
                    .await;
                continue;
            };
            if rec.state == TaskState::Running && rec.attempt >= rec.spec.retry.max_attempts {
                let why = format!(
                    "worker lost during attempt {} of {}",
                    rec.attempt, rec.spec.retry.max_attempts
                );
                self.sink.record(fail(why)).await;
                continue;
            }
            if rec.state == TaskState::Running {
                let msg = format!("worker lost during attempt {}; re-queued", rec.attempt);
                self.sink
                    .record(Transition::new(rec.id, TaskState::Retrying, rec.attempt, msg))
                    .await;
            }
            match self.router.queued(&rec, route) {
                Some(task) => out.push((route.supervisor.clone(), task)),
                None => {
                    self.sink
                        .record(fail(format!("executor {} is not available", route.executor)))
                        .await
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl TaskSource for StoreRecovery {
    async fn unfinished(&self, supervisor: Option<&str>) -> Result<Vec<(String, QueuedTask)>, SourceError> {
        self.load(supervisor).await.map_err(|e| SourceError(e.0))
    }
}
