//! What tier 0's NATS bus writes through: the core's group-commit writer, seen as a trait so
//! the bus does not depend on the core.

use async_trait::async_trait;
use cadre_agents::Usage;
use cadre_proto::TaskId;
use cadre_store::{StoreError, WriteOp, WriteOutcome};
use cadre_supervisors::Transition;

/// The durable side of the bus: events from supervisor nodes are stored through it, and
/// dispatches NATS can never take are failed through it.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Stores one transition; answers once it is durable.
    async fn transition(&self, t: Transition) -> Result<WriteOutcome, StoreError>;
    /// Stores `writes` in one transaction, in order, all or none (each with the W3C trace
    /// context it was decided in, if any); answers once they are durable.
    async fn write_together(&self, writes: Vec<(WriteOp, Option<String>)>) -> Result<(), StoreError>;
    /// Most writes one transaction takes.
    fn batch_max(&self) -> usize;
    /// A usage write for `task_id`, priced at the node's prices.
    fn priced_usage(&self, task_id: TaskId, usage: Usage) -> WriteOp;
}
