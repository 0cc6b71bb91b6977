//! The task calls: submit (retried on UNAVAILABLE under one idempotency key, so a retry
//! never makes a second task), submit-and-wait, get, list (a page, or every page), cancel and
//! the task types. [`TaskRequest`] builds the spec a submit sends.

use std::time::Duration;

use cadre_proto::v1;
use serde::Serialize;

use crate::connect::Client;
use crate::error::{Error, Result};

/// A task to submit: its type, params (JSON) and the optional settings of a spec.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRequest {
    /// The spec as it goes on the wire.
    pub spec: v1::TaskSpec,
}

impl TaskRequest {
    /// A task of `task_type` with `params` serialized as JSON.
    pub fn new(task_type: impl Into<String>, params: &impl Serialize) -> Result<Self> {
        let params_json =
            serde_json::to_string(params).map_err(|e| Error::Config(format!("params are not JSON: {e}")))?;
        Ok(Self::with_params_json(task_type, params_json))
    }

    /// A task of `task_type` with params already written as JSON (checked by the node).
    pub fn with_params_json(task_type: impl Into<String>, params_json: impl Into<String>) -> Self {
        TaskRequest {
            spec: v1::TaskSpec {
                task_type: task_type.into(),
                params_json: params_json.into(),
                ..v1::TaskSpec::default()
            },
        }
    }

    /// Higher runs first (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.spec.priority = priority;
        self
    }

    /// The time one attempt may run (default: the node's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Submitting again with the same key returns the first task instead of a new one.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.spec.idempotency_key = key.into();
        self
    }

    /// Up to `max_attempts` attempts of a failed run, the first retry after `initial_backoff`
    /// (doubling; the node's defaults for the rest).
    pub fn retry(mut self, max_attempts: u32, initial_backoff: Duration) -> Self {
        self.spec.retry = Some(v1::RetryPolicy {
            max_attempts,
            initial_backoff_ms: u64::try_from(initial_backoff.as_millis()).unwrap_or(u64::MAX),
            max_backoff_ms: 0,
            multiplier: 0.0,
            retry_timeouts: false,
        });
        self
    }

    /// Also retries an attempt that ran past its timeout (by default TIMED_OUT is final);
    /// counts against the retry policy's attempts.
    pub fn retry_timeouts(mut self) -> Self {
        self.spec
            .retry
            .get_or_insert_with(v1::RetryPolicy::default)
            .retry_timeouts = true;
        self
    }

    /// Makes the task a sub-task of `parent_id`.
    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.spec.parent_id = parent_id.into();
        self
    }

    /// The security level (default standard).
    pub fn security_level(mut self, level: v1::SecurityLevel) -> Self {
        self.spec.security_level = level as i32;
        self
    }

    /// Shares the running limit the node configures for this key (per tenant).
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.spec.concurrency_key = key.into();
        self
    }

    /// Trailing-edge debounce: the task waits `window` before it runs, and a submit with the
    /// same `key` (same tenant) within that time replaces it (it ends CANCELLED naming its
    /// replacement). A window must be in (0, 1 day].
    pub fn debounce(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.spec.debounce_key = key.into();
        self.spec.debounce_window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// The spec with an idempotency key: the caller's, else a fresh one, so every retry of
    /// this submit names the same task.
    fn keyed(mut self) -> v1::TaskSpec {
        if self.spec.idempotency_key.is_empty() {
            self.spec.idempotency_key = format!("client-{}", uuid::Uuid::now_v7());
        }
        self.spec
    }
}

impl From<v1::TaskSpec> for TaskRequest {
    fn from(spec: v1::TaskSpec) -> Self {
        TaskRequest { spec }
    }
}

/// What a submit answers: the task, and whether this call created it (false: an earlier
/// submit with the same idempotency key did).
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The task as stored.
    pub task: v1::Task,
    /// False when the idempotency key named an existing task.
    pub created: bool,
}

/// Whether a wire state is one a task does not leave.
pub fn is_terminal(state: i32) -> bool {
    cadre_proto::TaskState::from_wire(state).is_ok_and(|s| s.is_terminal())
}

impl Client {
    /// Submits a task once it is durably stored. UNAVAILABLE is retried with the same
    /// idempotency key (a fresh one when the request has none), so at most one task results.
    pub async fn submit(&self, task: TaskRequest) -> Result<Submitted> {
        let req = v1::SubmitRequest {
            spec: Some(task.keyed()),
        };
        let r = self
            .call(&self.tasks, req, |mut c, r| async move { c.submit(r).await })
            .await?;
        let task = r
            .task
            .ok_or_else(|| Error::Config("the node answered no task".into()))?;
        Ok(Submitted {
            task,
            created: r.created,
        })
    }

    /// Submits a task and waits for it to finish (at most the node's wait budget for it).
    pub async fn submit_and_wait(&self, task: TaskRequest) -> Result<v1::Task> {
        self.submit_and_wait_for(task, None).await
    }

    /// Submits a task and waits at most `wait` (None: the node's budget) for it to finish;
    /// DEADLINE_EXCEEDED if it has not. Retried like [`Client::submit`].
    pub async fn submit_and_wait_for(&self, task: TaskRequest, wait: Option<Duration>) -> Result<v1::Task> {
        let req = v1::SubmitAndWaitRequest {
            spec: Some(task.keyed()),
            wait_ms: wait.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX).max(1)),
        };
        self.call(
            &self.tasks,
            req,
            |mut c, r| async move { c.submit_and_wait(r).await },
        )
        .await
    }

    /// One task of the caller's tenant (NOT_FOUND for another tenant's).
    pub async fn get(&self, id: &str) -> Result<v1::Task> {
        let req = v1::GetRequest { id: id.to_string() };
        self.call(&self.tasks, req, |mut c, r| async move { c.get(r).await })
            .await
    }

    /// Cancels a queued or running task; the task as it is after the request.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<v1::Task> {
        let req = v1::CancelRequest {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        self.call(&self.tasks, req, |mut c, r| async move { c.cancel(r).await })
            .await
    }

    /// One page of tasks, newest first.
    pub async fn list(&self, req: v1::ListRequest) -> Result<v1::ListResponse> {
        self.call(&self.tasks, req, |mut c, r| async move { c.list(r).await })
            .await
    }

    /// Every task the filter selects, newest first, following the pages (at most `limit`).
    pub async fn list_all(&self, mut req: v1::ListRequest, limit: usize) -> Result<Vec<v1::Task>> {
        let mut out = Vec::new();
        loop {
            let page = self.list(req.clone()).await?;
            out.extend(page.tasks);
            if page.next_page_token.is_empty() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            req.page_token = page.next_page_token;
        }
    }

    /// The task types the node accepts whose name starts with `prefix` (empty: all).
    pub async fn task_types(&self, prefix: &str) -> Result<Vec<v1::TaskType>> {
        let req = v1::ListTaskTypesRequest {
            task_type_prefix: prefix.to_string(),
        };
        let r = self
            .call(
                &self.tasks,
                req,
                |mut c, r| async move { c.list_task_types(r).await },
            )
            .await?;
        Ok(r.types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_a_key_once_and_keeps_the_callers() {
        let t = TaskRequest::new("a.b.c", &serde_json::json!({"x": 1})).unwrap();
        assert_eq!(t.spec.params_json, r#"{"x":1}"#);
        let k1 = t.clone().keyed().idempotency_key;
        let k2 = t.keyed().idempotency_key;
        assert!(k1.starts_with("client-") && k1 != k2, "{k1} {k2}");
        let mine = TaskRequest::with_params_json("a.b.c", "{}").idempotency_key("mine");
        assert_eq!(mine.keyed().idempotency_key, "mine");
    }

    #[test]
    fn builder_settings_reach_the_spec() {
        let t = TaskRequest::with_params_json("a.b.c", "{}")
            .priority(3)
            .timeout(Duration::from_secs(2))
            .retry(4, Duration::from_millis(50))
            .parent("p")
            .security_level(v1::SecurityLevel::Verified);
        assert_eq!(t.spec.priority, 3);
        assert_eq!(t.spec.timeout_ms, 2000);
        assert_eq!(t.spec.retry.as_ref().unwrap().max_attempts, 4);
        assert_eq!(t.spec.retry.as_ref().unwrap().initial_backoff_ms, 50);
        assert_eq!(t.spec.parent_id, "p");
        assert_eq!(t.spec.security_level, v1::SecurityLevel::Verified as i32);
        assert!(is_terminal(v1::TaskState::Succeeded as i32));
        assert!(!is_terminal(v1::TaskState::Running as i32));
    }
}
