//! The [`Store`] trait: the seam between tier 0 and its database.

use async_trait::async_trait;
use cadre_proto::{TaskEvent, TaskId, TaskRecord};

use crate::chain::{AuditRecord, ChainTail, Sealer};
use crate::error::StoreResult;
use crate::filters::{EventFilter, TaskFilter, UsageFilter};
use crate::keys::ApiKeyRecord;
use crate::ops::{WriteOp, WriteOutcome};

#[async_trait]
/// Durable storage of tasks and events (and, through [`crate::workflows::WorkflowStore`], of
/// workflows).
pub trait Store:
    crate::workflows::WorkflowStore
    + crate::audit_prune::AuditPruneStore
    + crate::debounce::DebounceStore
    + crate::pauses::PauseStore
    + crate::retention::RetentionStore
    + crate::revocations::RevocationStore
    + crate::schedules::ScheduleStore
    + crate::llm_calls::LlmCallStore
    + crate::stats::StatsStore
    + Send
    + Sync
    + 'static
{
    /// Applies `ops` in order in one transaction; one outcome per op. On error nothing is written.
    /// Audit drafts are sealed with `sealer` after the chain's last record as committed (by
    /// any replica), so records get gap-free seqs in commit order.
    async fn apply(&self, ops: &[WriteOp], sealer: Option<&Sealer>) -> StoreResult<Vec<WriteOutcome>>;
    /// One task with its children's ids.
    async fn get(&self, id: TaskId) -> StoreResult<Option<TaskRecord>>;
    /// The tasks of `ids` that exist, each as [`Store::get`] returns it, in no particular
    /// order ([`crate::reads::Reads`] coalesces concurrent reads into this). PostgreSQL reads them
    /// in one statement, SQLite one by one.
    async fn get_many(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>>;
    /// How many delegations below its root task `id` is (0: submitted on its own; a
    /// sub-task's is its parent's + 1, set by the store when it inserts the task).
    async fn depth(&self, id: TaskId) -> StoreResult<Option<u32>>;
    /// Whether concurrent reads are cheaper as one [`Store::get_many`] (a database server,
    /// where each statement costs a round trip) than one by one (a local file).
    fn reads_in_batches(&self) -> bool;
    /// The task a tenant submitted with this idempotency key.
    async fn find_idempotent(&self, tenant: &str, key: &str) -> StoreResult<Option<TaskRecord>>;
    /// A page of tasks, newest first.
    async fn list(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>>;
    /// Events with cursor > `after` matching the filter's task id and type prefix, oldest first,
    /// at most `limit`; the caller applies the rest of the filter.
    async fn events_after(&self, after: u64, filter: &EventFilter, limit: u32)
    -> StoreResult<Vec<TaskEvent>>;
    /// Unfinished (QUEUED, RUNNING, RETRYING) tasks, of one supervisor or all.
    async fn unfinished(&self, supervisor: Option<&str>) -> StoreResult<Vec<TaskRecord>>;
    /// Number of unfinished tasks per tenant.
    async fn count_unfinished(&self) -> StoreResult<std::collections::HashMap<String, u64>>;
    /// Cheap reachability check for /ready.
    async fn ping(&self) -> StoreResult<()>;
    /// The newest event's cursor (0 when there is none): where a tailer starts.
    async fn max_cursor(&self) -> StoreResult<u64>;
    /// The last audit record's seq and hash (0 and GENESIS for an empty chain).
    async fn audit_tail(&self) -> StoreResult<ChainTail>;
    /// Audit records in seq order: all, or those whose target is `target`.
    async fn audit_records(&self, target: Option<&str>) -> StoreResult<Vec<AuditRecord>>;
    /// Usage per tenant and model on a UTC day (one tenant or all), or of one task (any day).
    async fn usage(&self, filter: &UsageFilter) -> StoreResult<Vec<cadre_proto::v1::ModelUsage>>;
    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Every API key, revoked ones included.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Marks a key revoked; false if there is no such unrevoked key.
    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> StoreResult<bool>;
}
