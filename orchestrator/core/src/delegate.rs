//! Delegation inside a tier-0 process: an executor's sub-task is submitted like any task.

use std::sync::{OnceLock, Weak};

use async_trait::async_trait;
use cadre_agents::{Delegate, ExecError};
use cadre_proto::{Role, TaskId};
use cadre_supervisors::delegation::delegated_result;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::node::Node;

/// Delegation inside a tier-0 process: the sub-task is submitted like any task (stored with
/// its parent, dispatched wherever it routes) and awaited; cancelling the parent's attempt
/// cancels it.
pub struct NodeDelegate(pub OnceLock<Weak<Node>>);

#[async_trait]
impl Delegate for NodeDelegate {
    async fn delegate(
        &self,
        parent: TaskId,
        task_type: String,
        params: serde_json::Value,
        cancel: CancellationToken,
    ) -> Result<serde_json::Value, ExecError> {
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
        let p = Principal {
            subject: format!("task-{parent}"),
            tenant,
            role: Role::Supervisor,
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
