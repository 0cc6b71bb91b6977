//! The bus seam: how tier 0 hands tasks to supervisors and how their events come back.
//!
//! Two implementations behind one trait, [`Bus`]:
//! - [`LocalBus`] (the embedded default, `bus.nats_url` empty): tasks go to the in-process
//!   orchestrator actor, events go straight to the writer.
//! - [`nats::NatsBus`] (distributed mode): tasks go through a JetStream work-queue stream with
//!   one subject per supervisor and priority band; supervisor nodes ([`host::Host`]) pull them
//!   with durable consumers shared by all replicas of a kind, run them on the same Supervisor
//!   actors, and publish every transition to a JetStream events stream that tier 0 persists
//!   and fans out. Peers find each other in a NATS KV bucket ([`peers`]).
//!
//! Both modes run the same supervisor, worker and store code; only the transport differs.

pub mod host;
pub mod nats;
pub mod peer_service;
pub mod peers;
pub mod wire;

use async_trait::async_trait;
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskRecord};
use cadre_supervisors::QueuedTask;
use ractor::ActorRef;

use crate::error::{Error, Result};
use cadre_supervisors::{OrchestratorMsg, ScaleError};

/// Where tier 0 sends tasks, cancels, status and scaling requests.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Hands a durably stored task to its supervisor. Never waits for the task to run; if the
    /// transport is down the task waits (in the store and an outbox) until it is back.
    fn dispatch(&self, record: &TaskRecord, task: QueuedTask);
    /// Stops a task wherever it runs (or makes sure it never starts).
    async fn cancel(&self, supervisor: &str, task_id: TaskId, attempt: u32, reason: String) -> Result<()>;
    /// Every supervisor replica, wherever it runs.
    async fn status(&self) -> Result<Vec<SupervisorStatus>>;
    /// Resizes `kind` of `supervisor` on every replica; one pool status per replica.
    async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> Result<Vec<PoolStatus>>;
    /// Whether tasks can travel now (part of /ready).
    fn ready(&self) -> bool;
}

/// The in-process bus: the orchestrator actor and its supervisors in this process.
pub struct LocalBus {
    /// The tier-0 actor.
    pub orchestrator: ActorRef<OrchestratorMsg>,
}

/// How long status and scale calls may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl Bus for LocalBus {
    fn dispatch(&self, record: &TaskRecord, task: QueuedTask) {
        let msg = OrchestratorMsg::Dispatch {
            supervisor: record.supervisor.clone(),
            task: Box::new(task),
        };
        // If the orchestrator is gone the node is shutting down; the task is stored and
        // recovered at the next start.
        let _ = self.orchestrator.cast(msg);
    }

    async fn cancel(&self, supervisor: &str, task_id: TaskId, _attempt: u32, reason: String) -> Result<()> {
        let msg = OrchestratorMsg::Cancel {
            supervisor: supervisor.to_string(),
            task_id,
            reason,
        };
        self.orchestrator
            .cast(msg)
            .map_err(|_| Error::Unavailable("node is shutting down".into()))
    }

    async fn status(&self) -> Result<Vec<SupervisorStatus>> {
        local_status(&self.orchestrator).await
    }

    async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> Result<Vec<PoolStatus>> {
        local_scale(&self.orchestrator, supervisor, kind, size)
            .await
            .map(|p| vec![p])
    }

    fn ready(&self) -> bool {
        true
    }
}

/// Status of the supervisors the local orchestrator actor runs.
pub async fn local_status(orchestrator: &ActorRef<OrchestratorMsg>) -> Result<Vec<SupervisorStatus>> {
    orchestrator
        .call(OrchestratorMsg::Status, Some(CALL_TIMEOUT))
        .await
        .ok()
        .and_then(|r| r.success_or(()).ok())
        .ok_or_else(|| Error::Unavailable("orchestrator did not answer".into()))
}

/// Resizes a pool of a supervisor the local orchestrator actor runs.
pub async fn local_scale(
    orchestrator: &ActorRef<OrchestratorMsg>,
    supervisor: &str,
    kind: &str,
    size: usize,
) -> Result<PoolStatus> {
    let (supervisor, kind) = (supervisor.to_string(), kind.to_string());
    let res: std::result::Result<PoolStatus, ScaleError> = orchestrator
        .call(
            |reply| OrchestratorMsg::Scale {
                supervisor,
                kind,
                size,
                reply,
            },
            Some(CALL_TIMEOUT),
        )
        .await
        .ok()
        .and_then(|r| r.success_or(()).ok())
        .ok_or_else(|| Error::Unavailable("orchestrator did not answer".into()))?;
    Ok(res?)
}

/// The result of a finished sub-task, or an error naming it.
pub fn delegated_result(
    task_type: &str,
    task: &cadre_proto::v1::Task,
) -> std::result::Result<serde_json::Value, cadre_agents::ExecError> {
    use cadre_agents::ExecError;
    let state = cadre_proto::TaskState::from_wire(task.state).unwrap_or(cadre_proto::TaskState::Failed);
    match state {
        cadre_proto::TaskState::Succeeded => serde_json::from_str(&task.result_json)
            .map_err(|e| ExecError::Fatal(format!("sub-task {task_type} {}: bad result: {e}", task.id))),
        cadre_proto::TaskState::Cancelled => Err(ExecError::Cancelled),
        s => Err(ExecError::Fatal(format!(
            "sub-task {task_type} {} ended {}: {}",
            task.id, s, task.error
        ))),
    }
}

/// Delegation inside a tier-0 process: the sub-task is submitted like any task (stored with
/// its parent, dispatched wherever it routes) and awaited; cancelling the parent's attempt
/// cancels it.
pub struct NodeDelegate(pub std::sync::OnceLock<std::sync::Weak<crate::node::Node>>);

#[async_trait]
impl cadre_agents::Delegate for NodeDelegate {
    async fn delegate(
        &self,
        parent: TaskId,
        task_type: String,
        params: serde_json::Value,
        cancel: tokio_util::sync::CancellationToken,
    ) -> std::result::Result<serde_json::Value, cadre_agents::ExecError> {
        use cadre_agents::ExecError;
        let node = self
            .0
            .get()
            .and_then(|w| w.upgrade())
            .ok_or_else(|| ExecError::Retryable("node stopping".into()))?;
        let spec = cadre_proto::v1::TaskSpec {
            task_type: task_type.clone(),
            params_json: params.to_string(),
            parent_id: parent.to_string(),
            ..Default::default()
        };
        let tenant = node
            .store
            .get(parent)
            .await
            .map_err(|e| ExecError::Retryable(e.to_string()))?
            .map(|t| t.tenant)
            .ok_or_else(|| ExecError::Fatal(format!("parent {parent} is not stored")))?;
        let p = crate::auth::Principal {
            subject: format!("task-{parent}"),
            tenant,
            role: crate::auth::Role::Supervisor,
        };
        let (child, _) = node
            .submit(&p, Some(&spec))
            .await
            .map_err(|e| ExecError::Fatal(format!("sub-task {task_type} refused: {e}")))?;
        let wait = child.wait_budget();
        let done = tokio::select! {
            d = node.wait_terminal(child.id, wait) => d,
            _ = cancel.cancelled() => {
                let _ = node.cancel(&p, &child.id.to_string(), "parent cancelled").await;
                return Err(ExecError::Cancelled);
            }
        };
        let done =
            done.map_err(|e| ExecError::Retryable(format!("sub-task {task_type} {}: {e}", child.id)))?;
        delegated_result(&task_type, &done.to_wire())
    }
}
