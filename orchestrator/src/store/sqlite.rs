//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL` by default so an accepted task survives power loss; throughput comes from
//! group commit (many writes per transaction), not from weaker fsync.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskSpec, TaskState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{EventFilter, Store, StoreError, StoreResult, TaskFilter, WriteOp, WriteOutcome};

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const TASK_COLUMNS: &str = "id, tenant, task_type, supervisor, worker_kind, spec, state, attempt, seq, result, \
                            error, created_at_ms, updated_at_ms";
const EVENT_COLUMNS: &str =
    "cursor, task_id, seq, state, attempt, message, progress, result, at_ms, task_type, tenant, is_progress";
const UNFINISHED: &str = "('QUEUED', 'RUNNING', 'RETRYING')";

#[derive(sqlx::FromRow)]
struct TaskRow {
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
}

#[derive(sqlx::FromRow)]
struct EventRow {
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
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("corrupt {what} in store: {e}"))
}

fn parse_json(s: Option<String>) -> StoreResult<Option<serde_json::Value>> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt("result", e)))
        .transpose()
}

impl TaskRow {
    fn into_record(self, children: Vec<TaskId>) -> StoreResult<TaskRecord> {
        let spec: TaskSpec = serde_json::from_str(&self.spec).map_err(|e| corrupt("spec", e))?;
        Ok(TaskRecord {
            id: self.id.parse().map_err(|e| corrupt("task id", e))?,
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
        })
    }
}

impl EventRow {
    fn into_event(self) -> StoreResult<TaskEvent> {
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
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite:PATH`) or `path`, and migrates it.
    pub async fn open(path: &Path, synchronous_full: bool) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::new().filename(path);
        Self::open_with(opts, synchronous_full).await
    }

    /// Opens a `sqlite:` URL.
    pub async fn open_url(url: &str, synchronous_full: bool) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        Self::open_with(opts, synchronous_full).await
    }

    async fn open_with(opts: SqliteConnectOptions, synchronous_full: bool) -> StoreResult<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn insert_event(conn: &mut SqliteConnection, e: &mut TaskEvent) -> StoreResult<()> {
        let cursor: i64 = sqlx::query_scalar(
            "INSERT INTO events (task_id, seq, state, attempt, message, progress, result, at_ms, task_type, tenant, \
             is_progress) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING cursor",
        )
        .bind(e.task_id.to_string())
        .bind(e.seq as i64)
        .bind(e.state.as_str())
        .bind(e.attempt as i64)
        .bind(&e.message)
        .bind(e.progress)
        .bind(e.result.as_ref().map(|v| v.to_string()))
        .bind(e.at_ms)
        .bind(&e.task_type)
        .bind(&e.tenant)
        .bind(e.is_progress)
        .fetch_one(&mut *conn)
        .await?;
        e.cursor = cursor as u64;
        Ok(())
    }

    async fn apply_one(conn: &mut SqliteConnection, op: &WriteOp) -> StoreResult<WriteOutcome> {
        let now = now_ms();
        match op {
            WriteOp::Insert(rec) => {
                let spec = serde_json::to_string(&rec.spec).map_err(|e| StoreError(e.to_string()))?;
                let inserted = sqlx::query(
                    "INSERT INTO tasks (id, tenant, task_type, supervisor, worker_kind, spec, state, attempt, seq, \
                     parent_id, idempotency_key, created_at_ms, updated_at_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, 'QUEUED', 0, 1, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(rec.id.to_string())
                .bind(&rec.tenant)
                .bind(&rec.spec.task_type)
                .bind(&rec.supervisor)
                .bind(&rec.worker_kind)
                .bind(spec)
                .bind(rec.spec.parent_id.map(|p| p.to_string()))
                .bind(rec.spec.idempotency_key.as_deref())
                .bind(rec.created_at_ms)
                .bind(rec.created_at_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if inserted == 0 {
                    let Some(key) = rec.spec.idempotency_key.as_deref() else {
                        return Ok(WriteOutcome::Ignored);
                    };
                    let id: String =
                        sqlx::query_scalar("SELECT id FROM tasks WHERE tenant = ? AND idempotency_key = ?")
                            .bind(&rec.tenant)
                            .bind(key)
                            .fetch_one(&mut *conn)
                            .await?;
                    return Ok(WriteOutcome::Existing(
                        id.parse().map_err(|e| corrupt("task id", e))?,
                    ));
                }
                let mut event = TaskEvent {
                    cursor: 0,
                    task_id: rec.id,
                    seq: 1,
                    state: TaskState::Queued,
                    attempt: 0,
                    message: String::new(),
                    progress: 0.0,
                    result: None,
                    at_ms: rec.created_at_ms,
                    task_type: rec.spec.task_type.clone(),
                    tenant: rec.tenant.clone(),
                    is_progress: false,
                };
                Self::insert_event(conn, &mut event).await?;
                Ok(WriteOutcome::Event {
                    event,
                    created_at_ms: rec.created_at_ms,
                })
            }
            WriteOp::Transition(t) => {
                type Row = (i64, String, String, i64, i64);
                let error = match t.state {
                    TaskState::Failed | TaskState::Cancelled | TaskState::TimedOut | TaskState::Retrying => {
                        Some(t.message.as_str())
                    }
                    _ => None,
                };
                let row: Option<Row> = sqlx::query_as(
                    "UPDATE tasks SET state = ?1, \
                     attempt = CASE WHEN ?1 = 'QUEUED' THEN ?2 ELSE MAX(attempt, ?2) END, \
                     seq = seq + 1, updated_at_ms = ?3, result = COALESCE(?4, result), \
                     error = CASE WHEN ?1 = 'SUCCEEDED' THEN NULL ELSE COALESCE(?5, error) END \
                     WHERE id = ?6 AND state IN ('QUEUED', 'RUNNING', 'RETRYING') \
                     RETURNING seq, task_type, tenant, created_at_ms, attempt",
                )
                .bind(t.state.as_str())
                .bind(t.attempt as i64)
                .bind(now)
                .bind(t.result.as_ref().map(|v| v.to_string()))
                .bind(error)
                .bind(t.task_id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                let Some((seq, task_type, tenant, created_at_ms, attempt)) = row else {
                    return Ok(WriteOutcome::Ignored);
                };
                let mut event = TaskEvent {
                    cursor: 0,
                    task_id: t.task_id,
                    seq: seq as u64,
                    state: t.state,
                    attempt: attempt as u32,
                    message: t.message.clone(),
                    progress: if t.state == TaskState::Succeeded { 1.0 } else { 0.0 },
                    result: t.result.clone(),
                    at_ms: now,
                    task_type,
                    tenant,
                    is_progress: false,
                };
                Self::insert_event(conn, &mut event).await?;
                Ok(WriteOutcome::Event { event, created_at_ms })
            }
            WriteOp::Progress {
                task_id,
                attempt,
                fraction,
                message,
            } => {
                let row: Option<(i64, String, String, i64)> = sqlx::query_as(
                    "UPDATE tasks SET seq = seq + 1, updated_at_ms = ? \
                     WHERE id = ? AND state = 'RUNNING' AND attempt = ? \
                     RETURNING seq, task_type, tenant, created_at_ms",
                )
                .bind(now)
                .bind(task_id.to_string())
                .bind(*attempt as i64)
                .fetch_optional(&mut *conn)
                .await?;
                let Some((seq, task_type, tenant, created_at_ms)) = row else {
                    return Ok(WriteOutcome::Ignored);
                };
                let mut event = TaskEvent {
                    cursor: 0,
                    task_id: *task_id,
                    seq: seq as u64,
                    state: TaskState::Running,
                    attempt: *attempt,
                    message: message.clone(),
                    progress: *fraction,
                    result: None,
                    at_ms: now,
                    task_type,
                    tenant,
                    is_progress: true,
                };
                Self::insert_event(conn, &mut event).await?;
                Ok(WriteOutcome::Event { event, created_at_ms })
            }
        }
    }

    async fn children(&self, id: TaskId) -> StoreResult<Vec<TaskId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tasks WHERE parent_id = ? ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        ids.iter()
            .map(|s| s.parse().map_err(|e| corrupt("child id", e)))
            .collect()
    }

    fn records(rows: Vec<TaskRow>) -> StoreResult<Vec<TaskRecord>> {
        rows.into_iter().map(|r| r.into_record(Vec::new())).collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(&self, ops: &[WriteOp]) -> StoreResult<Vec<WriteOutcome>> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(Self::apply_one(&mut tx, op).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn get(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = "));
        qb.push_bind(id.to_string());
        let Some(row) = qb.build_query_as::<TaskRow>().fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let children = self.children(id).await?;
        row.into_record(children).map(Some)
    }

    async fn find_idempotent(&self, tenant: &str, key: &str) -> StoreResult<Option<TaskRecord>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM tasks WHERE tenant = ? AND idempotency_key = ?")
                .bind(tenant)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        match id {
            Some(id) => self.get(id.parse().map_err(|e| corrupt("task id", e))?).await,
            None => Ok(None),
        }
    }

    async fn list(&self, f: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        if !f.states.is_empty() {
            qb.push(" AND state IN (");
            let mut sep = qb.separated(", ");
            for s in &f.states {
                sep.push_bind(s.as_str());
            }
            qb.push(")");
        }
        if let Some(p) = &f.type_prefix {
            qb.push(" AND substr(task_type, 1, length(")
                .push_bind(p.clone())
                .push(")) = ")
                .push_bind(p.clone());
        }
        if let Some(p) = f.parent_id {
            qb.push(" AND parent_id = ").push_bind(p.to_string());
        }
        if let Some(b) = f.before {
            qb.push(" AND id < ").push_bind(b.to_string());
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit as i64);
        Self::records(qb.build_query_as::<TaskRow>().fetch_all(&self.pool).await?)
    }

    async fn events_after(&self, after: u64, f: &EventFilter, limit: u32) -> StoreResult<Vec<TaskEvent>> {
        let mut qb =
            QueryBuilder::<Sqlite>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE cursor > "));
        qb.push_bind(after as i64);
        if let Some(id) = f.task_id {
            qb.push(" AND task_id = ").push_bind(id.to_string());
        }
        if let Some(p) = &f.type_prefix {
            qb.push(" AND substr(task_type, 1, length(")
                .push_bind(p.clone())
                .push(")) = ")
                .push_bind(p.clone());
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        qb.push(" ORDER BY cursor LIMIT ").push_bind(limit as i64);
        let rows = qb.build_query_as::<EventRow>().fetch_all(&self.pool).await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    async fn unfinished(&self, supervisor: Option<&str>) -> StoreResult<Vec<TaskRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN {UNFINISHED}"
        ));
        if let Some(s) = supervisor {
            qb.push(" AND supervisor = ").push_bind(s.to_string());
        }
        qb.push(" ORDER BY id");
        Self::records(qb.build_query_as::<TaskRow>().fetch_all(&self.pool).await?)
    }

    async fn count_unfinished(&self) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state IN ('QUEUED', 'RUNNING', 'RETRYING')")
                .fetch_one(&self.pool)
                .await?;
        Ok(n as u64)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
