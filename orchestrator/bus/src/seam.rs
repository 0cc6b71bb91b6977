//! The [`Bus`] trait: how tier 0 hands tasks to supervisors, wherever they run.

use async_trait::async_trait;
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskRecord};
use cadre_supervisors::{PauseSet, QueuedTask};

use crate::error::BusResult;

/// Where tier 0 sends tasks, cancels, status and scaling requests.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Hands a durably stored task to its supervisor. Never waits for the task to run; if the
    /// transport is down the task waits (in the store and an outbox) until it is back.
    fn dispatch(&self, record: &TaskRecord, task: QueuedTask);
    /// Stops a task wherever it runs (or makes sure it never starts).
    async fn cancel(&self, supervisor: &str, task_id: TaskId, attempt: u32, reason: String) -> BusResult<()>;
    /// Every supervisor replica, wherever it runs.
    async fn status(&self) -> BusResult<Vec<SupervisorStatus>>;
    /// Resizes `kind` of `supervisor` on every replica; one pool status per replica.
    async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> BusResult<Vec<PoolStatus>>;
    /// Replaces the pause set of every supervisor, wherever it runs (the whole set: tier 0
    /// sends it on every change and again every few seconds, so a restarted supervisor or
    /// supervisor node gets it back). An error names nodes that were not reached.
    async fn set_pauses(&self, set: &PauseSet) -> BusResult<()>;
    /// Sends tier 0's revocations and rotated signing keys to every supervisor node (which
    /// has no store to read them from), whole, as [`Bus::set_pauses`] sends the pause set. A
    /// bus without supervisor nodes has nothing to do.
    async fn set_credentials(&self, credentials: &cadre_proto::v1::SetCredentialsRequest) -> BusResult<()>;
    /// Whether tasks can travel now (part of /ready).
    fn ready(&self) -> bool;
}
