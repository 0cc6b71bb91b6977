//! The store seam: where tasks and their events are kept durably.
//!
//! One trait, [`Store`], with two implementations: [`sqlite::SqliteStore`] for the embedded
//! default and [`postgres::PgStore`] for distributed mode, where several orchestrator replicas
//! share one database. [`open`] picks one from the store URL. Writes arrive in batches from the
//! group-commit writer ([`crate::writer`]): one transaction per batch, so durability costs one
//! fsync per batch, not per task.
//!
//! Layout: `plan.rs` decides what a batch does (shared by both), `rows.rs` decodes stored rows,
//! `query.rs` builds the read queries once for either database.
//!
//! Invariant kept by every implementation: a task in a terminal state never changes again.
//! Transitions for it are answered with [`WriteOutcome::Ignored`]. That makes at-least-once
//! execution safe: a task re-run after a crash can finish at most once.

mod plan;
pub mod postgres;
mod query;
pub mod reads;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskState};
use cadre_supervisors::Transition;

use crate::audit::Sealer;

/// A write, applied in order within its batch.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// A new task (state QUEUED); its QUEUED event is written with it.
    Insert(Box<TaskRecord>),
    /// A state change decided by a supervisor.
    Transition(Transition),
    /// An audit act: the store seals it into the chain inside the batch's transaction, in
    /// commit order, with the [`Sealer`] passed to [`Store::apply`] (without one it is
    /// [`WriteOutcome::Ignored`]).
    AuditDraft(Box<crate::audit::AuditDraft>),
    /// Tokens a task used on one model, with their cost at the configured prices.
    Usage {
        /// The task.
        task_id: TaskId,
        /// Model and tokens.
        usage: cadre_agents::Usage,
        /// USD.
        cost_usd: f64,
        /// When it was reported, Unix milliseconds.
        at_ms: i64,
    },
    /// A progress report of a running attempt (dropped if the attempt is no longer running).
    Progress {
        /// The task.
        task_id: TaskId,
        /// The attempt reporting.
        attempt: u32,
        /// In [0, 1].
        fraction: f64,
        /// Short text.
        message: String,
    },
}

/// What one [`WriteOp`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// The write produced this event (now durable).
    Event {
        /// The event, with its cursor.
        event: TaskEvent,
        /// When its task was created (for the duration metric).
        created_at_ms: i64,
    },
    /// An insert whose idempotency key already names this task; nothing was written.
    Existing(TaskId),
    /// The task is unknown, already terminal, or the progress is stale; nothing was written.
    Ignored,
    /// An audit draft was sealed as this record of the chain (and signed by this node).
    Audited {
        /// Its seq.
        seq: u64,
        /// Its hash.
        hash: String,
    },
    /// Usage was recorded for this tenant on this UTC day.
    Usage {
        /// The task's tenant.
        tenant: String,
        /// UTC date.
        day: String,
        /// Tokens in + out.
        tokens: u64,
        /// USD.
        cost_usd: f64,
    },
}

/// Which tasks `List` returns.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Only these tenants' tasks (None = all).
    pub tenant: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<TaskState>,
    /// Only types starting with this.
    pub type_prefix: Option<String>,
    /// Only sub-tasks of this parent.
    pub parent_id: Option<TaskId>,
    /// Only tasks with a smaller id (paging, newest first).
    pub before: Option<TaskId>,
    /// Page size.
    pub limit: u32,
}

/// Which events a watcher wants.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// One task only.
    pub task_id: Option<TaskId>,
    /// Types starting with this.
    pub type_prefix: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<TaskState>,
    /// Only this tenant's events (None = all).
    pub tenant: Option<String>,
    /// Only events of sub-tasks of this task.
    pub parent_id: Option<TaskId>,
}

impl EventFilter {
    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &TaskEvent) -> bool {
        self.task_id.is_none_or(|id| id == e.task_id)
            && self
                .type_prefix
                .as_deref()
                .is_none_or(|p| e.task_type.starts_with(p))
            && (self.states.is_empty() || self.states.contains(&e.state))
            && self.tenant.as_deref().is_none_or(|t| t == e.tenant)
            && self.parent_id.is_none_or(|p| e.parent_id == Some(p))
    }
}

/// An API key as stored: the secret itself is never kept, only a salted SHA-256 of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRecord {
    /// Public id (the part of the key after `cadre_` and before the secret).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The tenant it works on.
    pub tenant: String,
    /// Its ring.
    pub role: crate::auth::Role,
    /// Random salt, hex.
    pub salt: String,
    /// SHA-256 of salt and secret, hex.
    pub hash: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
}

/// Which usage to sum.
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    /// One task (all days).
    pub task_id: Option<TaskId>,
    /// One tenant.
    pub tenant: Option<String>,
    /// One UTC day.
    pub day: Option<String>,
}

impl UsageFilter {
    /// One task's usage, all days.
    pub fn task(id: TaskId) -> Self {
        UsageFilter {
            task_id: Some(id),
            ..Default::default()
        }
    }
}

/// The outcome of recording `usage` for `tenant` on `day`.
fn usage_outcome(tenant: String, day: String, usage: &cadre_agents::Usage, cost_usd: f64) -> WriteOutcome {
    WriteOutcome::Usage {
        tenant,
        day,
        tokens: usage.tokens_in + usage.tokens_out,
        cost_usd,
    }
}

/// The chain's tail from the last audit row, if any.
fn audit_tail_of(row: Option<(i64, String)>) -> crate::audit::ChainTail {
    row.map(|(s, h)| crate::audit::ChainTail {
        seq: s as u64,
        hash: h,
    })
    .unwrap_or_default()
}

/// A store failure: the store is unreachable or refused the operation.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError(format!("migration failed: {e}"))
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Durable storage of tasks and events.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order in one transaction; one outcome per op. On error nothing is written.
    /// Audit drafts are sealed with `sealer` after the chain's last record as committed (by
    /// any replica), so records get gap-free seqs in commit order.
    async fn apply(&self, ops: &[WriteOp], sealer: Option<&Sealer>) -> StoreResult<Vec<WriteOutcome>>;
    /// One task with its children's ids.
    async fn get(&self, id: TaskId) -> StoreResult<Option<TaskRecord>>;
    /// The tasks of `ids` that exist, each as [`Store::get`] returns it, in no particular
    /// order ([`reads::Reads`] coalesces concurrent reads into this). PostgreSQL reads them
    /// in one statement, SQLite one by one.
    async fn get_many(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>>;
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
    async fn audit_tail(&self) -> StoreResult<crate::audit::ChainTail>;
    /// Audit records in seq order: all, or those whose target is `target`.
    async fn audit_records(&self, target: Option<&str>) -> StoreResult<Vec<crate::audit::AuditRecord>>;
    /// Usage per tenant and model on a UTC day (one tenant or all), or of one task (any day).
    async fn usage(&self, filter: &UsageFilter) -> StoreResult<Vec<cadre_proto::v1::ModelUsage>>;
    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Every API key, revoked ones included.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Marks a key revoked; false if there is no such unrevoked key.
    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> StoreResult<bool>;
}

/// Opens the store a URL names: `sqlite:...` gives a [`sqlite::SqliteStore`] (with
/// `synchronous=FULL` if `sqlite_full_sync`), `postgres://...` or `postgresql://...` a
/// [`postgres::PgStore`] with [`postgres::DEFAULT_MAX_CONNECTIONS`] pooled connections. Both
/// create their schema if it is missing.
pub async fn open(url: &str, sqlite_full_sync: bool) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open_url(url, sqlite_full_sync).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PgStore::connect(url, postgres::DEFAULT_MAX_CONNECTIONS).await?,
        ))
    } else {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(StoreError(format!(
            "unsupported store URL scheme {scheme:?}: expected sqlite:PATH, postgres://... or postgresql://..."
        )))
    }
}
