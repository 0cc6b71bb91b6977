//! The in-process bus (the embedded default): tasks go to the root actor of this process.

use async_trait::async_trait;
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskRecord};
use cadre_supervisors::{OrchestratorMsg, PauseSet, QueuedTask, ScaleError};
use ractor::ActorRef;

use crate::error::{BusError, BusResult};
use crate::seam::Bus;

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

    async fn cancel(
        &self,
        supervisor: &str,
        task_id: TaskId,
        _attempt: u32,
        reason: String,
    ) -> BusResult<()> {
        let msg = OrchestratorMsg::Cancel {
            supervisor: supervisor.to_string(),
            task_id,
            reason,
        };
        self.orchestrator
            .cast(msg)
            .map_err(|_| BusError::Unavailable("node is shutting down".into()))
    }

    async fn status(&self) -> BusResult<Vec<SupervisorStatus>> {
        local_status(&self.orchestrator).await
    }

    async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> BusResult<Vec<PoolStatus>> {
        local_scale(&self.orchestrator, supervisor, kind, size)
            .await
            .map(|p| vec![p])
    }

    async fn set_pauses(&self, set: &PauseSet) -> BusResult<()> {
        self.orchestrator
            .cast(OrchestratorMsg::SetPauses(set.clone()))
            .map_err(|_| BusError::Unavailable("node is shutting down".into()))
    }

    async fn set_credentials(&self, _: &cadre_proto::v1::SetCredentialsRequest) -> BusResult<()> {
        // Every supervisor runs in this process and checks tokens with tier 0's authenticator.
        Ok(())
    }

    fn ready(&self) -> bool {
        true
    }
}

/// Status of the supervisors the local orchestrator actor runs.
pub async fn local_status(orchestrator: &ActorRef<OrchestratorMsg>) -> BusResult<Vec<SupervisorStatus>> {
    orchestrator
        .call(OrchestratorMsg::Status, Some(CALL_TIMEOUT))
        .await
        .ok()
        .and_then(|r| r.success_or(()).ok())
        .ok_or_else(|| BusError::Unavailable("orchestrator did not answer".into()))
}

/// Resizes a pool of a supervisor the local orchestrator actor runs.
pub async fn local_scale(
    orchestrator: &ActorRef<OrchestratorMsg>,
    supervisor: &str,
    kind: &str,
    size: usize,
) -> BusResult<PoolStatus> {
    let (supervisor, kind) = (supervisor.to_string(), kind.to_string());
    let res: Result<PoolStatus, ScaleError> = orchestrator
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
        .ok_or_else(|| BusError::Unavailable("orchestrator did not answer".into()))?;
    Ok(res?)
}
