//! Delegation on a supervisor node, both ways: a sub-task delegated to this node is stored
//! through the events stream and run here ([`NodeRuntime::run_delegated`]); a sub-task an
//! executor here delegates goes to a peer running its supervisor ([`DelegateToPeers`]).

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::ExecError;
use cadre_proto::{TaskId, TaskRecord};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Route;
use crate::delegation::delegated_result;
use crate::node::held::Inflight;
use crate::node::runtime::NodeRuntime;
use crate::node::transport::PeerError;
use crate::node::wire::EventMsg;
use crate::sink::Transition;

/// Why a sub-task delegated to this node did not come back finished.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DelegatedError {
    /// Its supervisor does not run on this node (the caller picked the wrong node).
    #[error("{0}")]
    NotHere(String),
    /// It cannot run here now: its executor is missing, or the node is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// Waiting ran out before it finished; it goes on.
    #[error("{0}")]
    DeadlineExceeded(String),
}

impl NodeRuntime {
    /// Runs a sub-task delegated to this node: stores it through the events stream (so tier 0
    /// knows it before it runs), runs it here and waits (up to `wait`) for its terminal
    /// transition. `record` is a QUEUED record on `route`, `depth` delegations below its root
    /// (what its own sub-tasks are told); `traceparent` is the caller's trace.
    pub async fn run_delegated(
        &self,
        record: TaskRecord,
        route: &Route,
        depth: u32,
        traceparent: Option<String>,
        wait: Duration,
    ) -> Result<Transition, DelegatedError> {
        let supervisor = record.supervisor.clone();
        if !self.supervisors.contains(&supervisor) {
            return Err(DelegatedError::NotHere(format!(
                "supervisor {supervisor} does not run on this node"
            )));
        }
        let Some(mut task) = self.router.queued(&record, route) else {
            return Err(DelegatedError::Unavailable(format!(
                "executor {} is not available here",
                route.executor
            )));
        };
        task.traceparent = traceparent;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.id, tx);
        let id = record.id;
        self.emit(
            &supervisor,
            EventMsg::Insert {
                record: Box::new(record),
            },
        )
        .await;
        self.held.lock().insert(
            id,
            Inflight {
                supervisor: supervisor.clone(),
                task: task.clone(),
                acker: None,
                _permit: None,
                round: 0,
                depth,
            },
        );
        self.dispatch(&supervisor, task);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(_)) => Err(DelegatedError::Unavailable("node stopping".into())),
            Err(_) => {
                self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Err(DelegatedError::DeadlineExceeded(format!(
                    "sub-task {id} did not finish in time; it goes on"
                )))
            }
        }
    }
}

/// The [`cadre_agents::Delegate`] of a supervisor node: a sub-task goes to a node running its
/// supervisor (found through the runtime's [`crate::node::PeerDelegation`]) over
/// SupervisorPeer.Delegate, in the parent's tenant.
pub struct DelegateToPeers(pub Weak<NodeRuntime>);

#[async_trait]
impl cadre_agents::Delegate for DelegateToPeers {
    async fn delegate(
        &self,
        parent: TaskId,
        task_type: String,
        params: serde_json::Value,
        cancel: CancellationToken,
    ) -> Result<serde_json::Value, ExecError> {
        let node = self
            .0
            .upgrade()
            .ok_or_else(|| ExecError::Retryable("node stopping".into()))?;
        let tenant = node.tenant_of(parent).unwrap_or_default();
        let routes = node.router.routes();
        let route = routes
            .resolve(&task_type)
            .ok_or_else(|| ExecError::Fatal(format!("no route for sub-task type {task_type}")))?;
        let req = cadre_proto::v1::DelegateRequest {
            parent_id: parent.to_string(),
            spec: Some(cadre_proto::v1::TaskSpec {
                task_type: task_type.clone(),
                params_json: params.to_string(),
                ..Default::default()
            }),
            wait_ms: 0,
            tenant,
            parent_depth: node.depth_of(parent),
        };
        let call = node.peers.delegate(&route.supervisor, req);
        let task = tokio::select! {
            r = call => r.map_err(|e| match e {
                PeerError::NoNode => ExecError::Retryable(format!(
                    "no live node runs supervisor {} for {task_type}",
                    route.supervisor
                )),
                PeerError::Unreachable(m) => ExecError::Retryable(m),
                PeerError::Refused(m) => ExecError::Retryable(format!("delegating {task_type}: {m}")),
            })?,
            _ = cancel.cancelled() => return Err(ExecError::Cancelled),
        };
        delegated_result(&task_type, &task)
    }
}
