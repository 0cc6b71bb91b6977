//! Stored rows as both SQL stores read them, and their conversion into domain types.
//!
//! The two schemas (`migrations/sqlite`, `migrations/postgres`) use the same table and column
//! names, so one set of row structs decodes either.

use cadre_proto::v1::ModelUsage;
use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskSpec};

use crate::chain::{AuditDraft, AuditRecord};
use crate::{ApiKeyRecord, StoreError, StoreResult};

/// The columns [`TaskRow`] reads.
pub(super) const TASK_COLUMNS: &str = "id, tenant, task_type, supervisor, worker_kind, spec, state, attempt, \
                                       seq, result, error, created_at_ms, updated_at_ms, result_signature";
/// The columns [`EventRow`] reads.
pub(super) const EVENT_COLUMNS: &str = "cursor, task_id, seq, state, attempt, message, progress, result, at_ms, task_type, tenant, is_progress, parent_id";
/// The columns [`AuditRow`] reads.
pub(super) const AUDIT_COLUMNS: &str =
    "seq, at_ms, actor, tenant, role, action, target, outcome, detail, prev_hash, hash, signature, signer";
/// The columns [`ApiKeyRow`] reads.
pub(super) const API_KEY_COLUMNS: &str =
    "id, name, tenant, role, salt, hash, created_at_ms, revoked_at_ms, expires_at_ms";
/// The unfinished states, as an SQL list.
pub(super) const UNFINISHED: &str = "('QUEUED', 'RUNNING', 'RETRYING')";

/// A `tasks` row.
#[derive(sqlx::FromRow)]
pub(super) struct TaskRow {
    id: String,
    tenant: String,
    supervisor: String,
    worker_kind: String,
    spec: String,
    state: String,
    attempt: i64,
    seq: i64,
    result: Option<String>,
    error: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    result_signature: Option<String>,
}

/// An `audit` row.
#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    seq: i64,
    #[sqlx(flatten)]
    draft: AuditDraft,
    prev_hash: String,
    hash: String,
    signature: String,
    signer: String,
}

/// An `events` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    cursor: i64,
    task_id: String,
    seq: i64,
    state: String,
    attempt: i64,
    message: String,
    progress: f64,
    result: Option<String>,
    at_ms: i64,
    task_type: String,
    tenant: String,
    is_progress: bool,
    parent_id: Option<String>,
}

/// An `api_keys` row.
#[derive(sqlx::FromRow)]
pub(super) struct ApiKeyRow {
    id: String,
    name: String,
    tenant: String,
    role: String,
    salt: String,
    hash: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
    expires_at_ms: Option<i64>,
}

/// One group of the usage sums (see [`crate::query::usage`]).
#[derive(sqlx::FromRow)]
pub(super) struct UsageRow {
    tenant: String,
    model: String,
    tokens_in: i64,
    tokens_out: i64,
    cost_usd: f64,
}

/// The error for a stored value that does not decode.
pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("corrupt {what} in store: {e}"))
}

/// Parses a stored JSON column.
pub(super) fn parse_json(s: Option<String>) -> StoreResult<Option<serde_json::Value>> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt("result", e)))
        .transpose()
}

/// Parses a stored task id.
pub(super) fn parse_id(s: &str) -> StoreResult<TaskId> {
    s.parse().map_err(|e| corrupt("task id", e))
}

impl TaskRow {
    /// The record, with these children (usage is left empty).
    pub fn into_record(self, children: Vec<TaskId>) -> StoreResult<TaskRecord> {
        let spec: TaskSpec = serde_json::from_str(&self.spec).map_err(|e| corrupt("spec", e))?;
        Ok(TaskRecord {
            id: parse_id(&self.id)?,
            tenant: self.tenant,
            spec,
            state: self.state.parse().map_err(|e| corrupt("state", e))?,
            attempt: self.attempt as u32,
            supervisor: self.supervisor,
            worker_kind: self.worker_kind,
            result: parse_json(self.result)?,
            error: self.error,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            seq: self.seq as u64,
            children,
            result_signature: self.result_signature,
            usage: Vec::new(),
            steps: Vec::new(),
        })
    }

    /// Records without children or usage (for lists).
    pub fn records(rows: Vec<TaskRow>) -> StoreResult<Vec<TaskRecord>> {
        rows.into_iter().map(|r| r.into_record(Vec::new())).collect()
    }

    /// The tenant column.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

impl EventRow {
    /// The event.
    pub fn into_event(self) -> StoreResult<TaskEvent> {
        Ok(TaskEvent {
            cursor: self.cursor as u64,
            task_id: self.task_id.parse().map_err(|e| corrupt("event task id", e))?,
            seq: self.seq as u64,
            state: self.state.parse().map_err(|e| corrupt("event state", e))?,
            attempt: self.attempt as u32,
            message: self.message,
            progress: self.progress,
            result: parse_json(self.result)?,
            at_ms: self.at_ms,
            task_type: self.task_type,
            tenant: self.tenant,
            is_progress: self.is_progress,
            parent_id: self
                .parent_id
                .map(|p| p.parse().map_err(|e| corrupt("event parent id", e)))
                .transpose()?,
        })
    }
}

impl AuditRow {
    /// The record.
    pub fn into_record(self) -> AuditRecord {
        AuditRecord {
            seq: self.seq as u64,
            draft: self.draft,
            prev_hash: self.prev_hash,
            hash: self.hash,
            signature: self.signature,
            signer: self.signer,
        }
    }
}

impl ApiKeyRow {
    /// The record.
    pub fn into_record(self) -> StoreResult<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            role: self
                .role
                .parse()
                .map_err(|e: String| corrupt("api key role", e))?,
            id: self.id,
            name: self.name,
            tenant: self.tenant,
            salt: self.salt,
            hash: self.hash,
            created_at_ms: self.created_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            expires_at_ms: self.expires_at_ms,
        })
    }
}

impl From<UsageRow> for ModelUsage {
    fn from(r: UsageRow) -> Self {
        ModelUsage {
            model: r.model,
            tokens_in: r.tokens_in as u64,
            tokens_out: r.tokens_out as u64,
            cost_usd: r.cost_usd,
            tenant: r.tenant,
        }
    }
}

/// The columns [`LiveRow`] reads.
pub(super) const LIVE_COLUMNS: &str = "id, seq, state, attempt, task_type, tenant, created_at_ms, parent_id";

/// What the planner needs of a task row (see [`crate::plan::Live`]).
#[derive(sqlx::FromRow)]
pub(super) struct LiveRow {
    id: String,
    seq: i64,
    state: String,
    attempt: i64,
    task_type: String,
    tenant: String,
    created_at_ms: i64,
    parent_id: Option<String>,
}

impl LiveRow {
    /// The task's id and planner view.
    pub fn into_live(self) -> StoreResult<(TaskId, crate::plan::Live)> {
        let live = crate::plan::Live {
            seq: self.seq as u64,
            state: self.state.parse().map_err(|e| corrupt("state", e))?,
            attempt: self.attempt as u32,
            task_type: self.task_type,
            tenant: self.tenant,
            created_at_ms: self.created_at_ms,
            parent_id: self.parent_id.as_deref().map(parse_id).transpose()?,
        };
        Ok((parse_id(&self.id)?, live))
    }
}
