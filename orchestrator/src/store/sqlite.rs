//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL` by default so an accepted task survives power loss; throughput comes from
//! group commit (many writes per transaction), not from weaker fsync.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskSpec, TaskState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use cadre_supervisors::Transition;

use crate::audit::{AuditDraft, AuditRecord};

use cadre_proto::v1::ModelUsage;

use super::{
    ApiKeyRecord, EventFilter, Store, StoreError, StoreResult, TaskFilter, UsageFilter, WriteOp, WriteOutcome,
};

/// SQLite-backed [`Store`]. It assumes it is the only writer of its file (the data dir lock
/// makes sure of that): the writer's view of unfinished tasks lives in memory.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    cache: Arc<tokio::sync::Mutex<Option<WriterCache>>>,
}

/// Rows per multi-row statement (13 columns each stays far below SQLite's variable limit).
const ROWS_PER_STATEMENT: usize = 500;

/// What the writer knows about an unfinished task: enough to decide whether a transition
/// applies and to build its event without reading the database.
#[derive(Clone, Debug)]
struct Live {
    seq: u64,
    state: TaskState,
    attempt: u32,
    task_type: String,
    tenant: String,
    created_at_ms: i64,
}

impl Live {
    /// A plain state event for the task as it is now (the cursor comes from [`Plan::push`]).
    fn event(&self, id: TaskId, at_ms: i64, message: String) -> TaskEvent {
        TaskEvent {
            cursor: 0,
            task_id: id,
            seq: self.seq,
            state: self.state,
            attempt: self.attempt,
            message,
            progress: 0.0,
            result: None,
            at_ms,
            task_type: self.task_type.clone(),
            tenant: self.tenant.clone(),
            is_progress: false,
        }
    }
}

/// The writer's in-memory view: unfinished tasks and the next event cursor.
struct WriterCache {
    live: HashMap<TaskId, Live>,
    next_cursor: u64,
}

/// How a batch changes one task row (the last change of the batch wins).
#[derive(Clone, Debug)]
struct RowUpdate {
    state: TaskState,
    attempt: u32,
    seq: u64,
    updated_at_ms: i64,
    result: Option<String>,
    /// 0 keep the error column, 1 set it to `error_text`, 2 clear it.
    error: u8,
    error_text: Option<String>,
    /// Set with a verified task's result.
    signature: Option<String>,
}

impl RowUpdate {
    /// The row as `l` says, changing nothing else.
    fn of(l: &Live, at_ms: i64) -> Self {
        RowUpdate {
            state: l.state,
            attempt: l.attempt,
            seq: l.seq,
            updated_at_ms: at_ms,
            result: None,
            error: 0,
            error_text: None,
            signature: None,
        }
    }
}

/// One batch being planned: changes staged over the cache until the commit.
struct Plan<'a> {
    cache: &'a mut WriterCache,
    /// Some = new state of an unfinished task, None = finished in this batch.
    staged: HashMap<TaskId, Option<Live>>,
    cursor: u64,
    events: Vec<TaskEvent>,
    rows: Vec<(TaskId, RowUpdate)>,
}

impl Plan<'_> {
    fn current(&self, id: TaskId) -> Option<Live> {
        match self.staged.get(&id) {
            Some(staged) => staged.clone(),
            None => self.cache.live.get(&id).cloned(),
        }
    }

    /// Gives `event` the next cursor and adds it to the batch.
    fn push(&mut self, mut event: TaskEvent, created_at_ms: i64) -> WriteOutcome {
        event.cursor = self.cursor;
        self.cursor += 1;
        self.events.push(event.clone());
        WriteOutcome::Event { event, created_at_ms }
    }

    /// Merges `update` into the batch's change of that task row (the last change wins; a
    /// result, error or signature set earlier in the batch is kept unless replaced).
    fn row(&mut self, id: TaskId, update: RowUpdate) {
        match self.rows.iter_mut().find(|(rid, _)| *rid == id) {
            Some((_, prev)) => {
                let result = update.result.clone().or(prev.result.take());
                let signature = update.signature.clone().or(prev.signature.take());
                let (error, error_text) = if update.error == 0 {
                    (prev.error, prev.error_text.take())
                } else {
                    (update.error, update.error_text.clone())
                };
                *prev = RowUpdate {
                    result,
                    error,
                    error_text,
                    signature,
                    ..update
                };
            }
            None => self.rows.push((id, update)),
        }
    }

    fn insert(&mut self, rec: &TaskRecord) -> WriteOutcome {
        let l = Live {
            seq: 1,
            state: TaskState::Queued,
            attempt: 0,
            task_type: rec.spec.task_type.clone(),
            tenant: rec.tenant.clone(),
            created_at_ms: rec.created_at_ms,
        };
        let outcome = self.push(
            l.event(rec.id, rec.created_at_ms, String::new()),
            rec.created_at_ms,
        );
        self.staged.insert(rec.id, Some(l));
        outcome
    }

    fn transition(&mut self, t: &Transition, now: i64) -> WriteOutcome {
        let Some(mut l) = self.current(t.task_id) else {
            return WriteOutcome::Ignored;
        };
        l.seq += 1;
        l.state = t.state;
        // A QUEUED transition may give an interrupted attempt back; others never lower it.
        l.attempt = if t.state == TaskState::Queued {
            t.attempt
        } else {
            l.attempt.max(t.attempt)
        };
        let (error, error_text) = match t.state {
            TaskState::Succeeded => (2, None),
            TaskState::Failed | TaskState::Cancelled | TaskState::TimedOut | TaskState::Retrying => {
                (1, Some(t.message.clone()))
            }
            _ => (0, None),
        };
        let progress = if t.state == TaskState::Succeeded { 1.0 } else { 0.0 };
        let event = TaskEvent {
            progress,
            result: t.result.clone(),
            ..l.event(t.task_id, now, t.message.clone())
        };
        let outcome = self.push(event, l.created_at_ms);
        let update = RowUpdate {
            result: t.result.as_ref().map(|v| v.to_string()),
            error,
            error_text,
            signature: t.signature.clone(),
            ..RowUpdate::of(&l, now)
        };
        self.row(t.task_id, update);
        let terminal = l.state.is_terminal();
        self.staged.insert(t.task_id, (!terminal).then_some(l));
        outcome
    }

    fn progress(&mut self, id: TaskId, attempt: u32, fraction: f64, message: &str, now: i64) -> WriteOutcome {
        let Some(mut l) = self.current(id) else {
            return WriteOutcome::Ignored;
        };
        if l.state != TaskState::Running || l.attempt != attempt {
            return WriteOutcome::Ignored;
        }
        l.seq += 1;
        let event = TaskEvent {
            progress: fraction,
            is_progress: true,
            ..l.event(id, now, message.to_string())
        };
        let outcome = self.push(event, l.created_at_ms);
        self.row(id, RowUpdate::of(&l, now));
        self.staged.insert(id, Some(l));
        outcome
    }
}

const TASK_COLUMNS: &str = "id, tenant, task_type, supervisor, worker_kind, spec, state, attempt, seq, result, \
                            error, created_at_ms, updated_at_ms, result_signature";
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
    result_signature: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    seq: i64,
    #[sqlx(flatten)]
    draft: AuditDraft,
    prev_hash: String,
    hash: String,
    signature: String,
}

impl AuditRow {
    fn into_record(self) -> AuditRecord {
        AuditRecord {
            seq: self.seq as u64,
            draft: self.draft,
            prev_hash: self.prev_hash,
            hash: self.hash,
            signature: self.signature,
        }
    }
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
            result_signature: self.result_signature,
            usage: Vec::new(),
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

    /// Opens an existing database read-only, without migrating (for `cadre audit`, even while
    /// a node runs on it).
    pub async fn open_read_only(path: &Path) -> StoreResult<Self> {
        if !path.is_file() {
            return Err(StoreError(format!("no database at {}", path.display())));
        }
        let opts = SqliteConnectOptions::new().filename(path).read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        Ok(SqliteStore {
            pool,
            cache: Arc::default(),
        })
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
        Ok(SqliteStore {
            pool,
            cache: Arc::default(),
        })
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads what the writer keeps in memory: unfinished tasks and the next cursor.
    async fn load_cache(&self) -> StoreResult<WriterCache> {
        let rows: Vec<(String, i64, String, i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, seq, state, attempt, task_type, tenant, created_at_ms FROM tasks \
             WHERE state IN ('QUEUED', 'RUNNING', 'RETRYING')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut live = HashMap::with_capacity(rows.len());
        for (id, seq, state, attempt, task_type, tenant, created_at_ms) in rows {
            let entry = Live {
                seq: seq as u64,
                state: state.parse().map_err(|e| corrupt("state", e))?,
                attempt: attempt as u32,
                task_type,
                tenant,
                created_at_ms,
            };
            live.insert(id.parse().map_err(|e| corrupt("task id", e))?, entry);
        }
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(cursor), 0) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(WriterCache {
            live,
            next_cursor: max as u64 + 1,
        })
    }

    /// Inserts new tasks in multi-row statements; returns the ids actually inserted (an
    /// idempotency-key conflict inserts nothing).
    async fn insert_tasks(
        conn: &mut SqliteConnection,
        records: &[&TaskRecord],
    ) -> StoreResult<HashSet<String>> {
        let mut inserted = HashSet::new();
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO tasks (id, tenant, task_type, supervisor, worker_kind, spec, state, attempt, seq, \
                 parent_id, idempotency_key, created_at_ms, updated_at_ms) ",
            );
            let mut bad = None;
            qb.push_values(chunk, |mut b, rec| {
                let spec = serde_json::to_string(&rec.spec).unwrap_or_else(|e| {
                    bad = Some(e.to_string());
                    String::new()
                });
                b.push_bind(rec.id.to_string())
                    .push_bind(rec.tenant.clone())
                    .push_bind(rec.spec.task_type.clone())
                    .push_bind(rec.supervisor.clone())
                    .push_bind(rec.worker_kind.clone())
                    .push_bind(spec)
                    .push_bind("QUEUED")
                    .push_bind(0i64)
                    .push_bind(1i64)
                    .push_bind(rec.spec.parent_id.map(|p| p.to_string()))
                    .push_bind(rec.spec.idempotency_key.clone())
                    .push_bind(rec.created_at_ms)
                    .push_bind(rec.created_at_ms);
            });
            if let Some(e) = bad {
                return Err(StoreError(format!("cannot encode task spec: {e}")));
            }
            qb.push(" ON CONFLICT DO NOTHING RETURNING id");
            let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
            inserted.extend(ids);
        }
        Ok(inserted)
    }

    async fn insert_events(conn: &mut SqliteConnection, events: &[TaskEvent]) -> StoreResult<()> {
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (cursor, task_id, seq, state, attempt, message, progress, result, at_ms, \
                 task_type, tenant, is_progress) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.cursor as i64)
                    .push_bind(e.task_id.to_string())
                    .push_bind(e.seq as i64)
                    .push_bind(e.state.as_str())
                    .push_bind(e.attempt as i64)
                    .push_bind(e.message.clone())
                    .push_bind(e.progress)
                    .push_bind(e.result.as_ref().map(|v| v.to_string()))
                    .push_bind(e.at_ms)
                    .push_bind(e.task_type.clone())
                    .push_bind(e.tenant.clone())
                    .push_bind(e.is_progress);
            });
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn insert_audit(conn: &mut SqliteConnection, records: &[&AuditRecord]) -> StoreResult<()> {
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit (seq, at_ms, actor, tenant, role, action, target, outcome, detail, prev_hash, \
                 hash, signature) ",
            );
            qb.push_values(chunk, |mut b, r| {
                let d = &r.draft;
                b.push_bind(r.seq as i64)
                    .push_bind(d.at_ms)
                    .push_bind(d.actor.clone())
                    .push_bind(d.tenant.clone())
                    .push_bind(d.role.clone())
                    .push_bind(d.action.clone())
                    .push_bind(d.target.clone())
                    .push_bind(d.outcome.clone())
                    .push_bind(d.detail.clone())
                    .push_bind(r.prev_hash.clone())
                    .push_bind(r.hash.clone())
                    .push_bind(r.signature.clone());
            });
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn update_tasks(conn: &mut SqliteConnection, rows: &[(TaskId, RowUpdate)]) -> StoreResult<()> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "WITH v(id, state, attempt, seq, updated_at_ms, result, error_mode, error, signature) AS (",
            );
            qb.push_values(chunk, |mut b, (id, u)| {
                b.push_bind(id.to_string())
                    .push_bind(u.state.as_str())
                    .push_bind(u.attempt as i64)
                    .push_bind(u.seq as i64)
                    .push_bind(u.updated_at_ms)
                    .push_bind(u.result.clone())
                    .push_bind(u.error as i64)
                    .push_bind(u.error_text.clone())
                    .push_bind(u.signature.clone());
            });
            qb.push(
                ") UPDATE tasks SET state = v.state, attempt = v.attempt, seq = v.seq, \
                 updated_at_ms = v.updated_at_ms, result = COALESCE(v.result, tasks.result), \
                 error = CASE v.error_mode WHEN 0 THEN tasks.error WHEN 1 THEN v.error ELSE NULL END, \
                 result_signature = COALESCE(v.signature, tasks.result_signature) \
                 FROM v WHERE tasks.id = v.id",
            );
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Sub-tasks of `id` in the parent's own tenant (a child another tenant made is not listed).
    async fn children(&self, id: TaskId, tenant: &str) -> StoreResult<Vec<TaskId>> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM tasks WHERE parent_id = ? AND tenant = ? ORDER BY id")
                .bind(id.to_string())
                .bind(tenant)
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
    /// Plans the whole batch in memory against the writer's view of unfinished tasks, then
    /// writes it with a few multi-row statements (new tasks, events, task rows) in one
    /// transaction. The view changes only after the commit succeeds.
    async fn apply(&self, ops: &[WriteOp]) -> StoreResult<Vec<WriteOutcome>> {
        let mut guard = self.cache.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_cache().await?);
        }
        let cache = guard.as_mut().expect("cache loaded");
        let mut tx = self.pool.begin().await?;
        let records: Vec<&TaskRecord> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Insert(r) => Some(&**r),
                _ => None,
            })
            .collect();
        let inserted = if records.is_empty() {
            HashSet::new()
        } else {
            Self::insert_tasks(&mut tx, &records).await?
        };

        let now = now_ms();
        let mut plan = Plan {
            cache,
            staged: HashMap::new(),
            cursor: 0,
            events: Vec::new(),
            rows: Vec::new(),
        };
        plan.cursor = plan.cache.next_cursor;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut audit: Vec<&AuditRecord> = Vec::new();
        for op in ops {
            let outcome = match op {
                WriteOp::Insert(rec) if inserted.contains(&rec.id.to_string()) => plan.insert(rec),
                WriteOp::Insert(rec) => match rec.spec.idempotency_key.as_deref() {
                    Some(key) => {
                        let id: String = sqlx::query_scalar(
                            "SELECT id FROM tasks WHERE tenant = ? AND idempotency_key = ?",
                        )
                        .bind(&rec.tenant)
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                        WriteOutcome::Existing(id.parse().map_err(|e| corrupt("task id", e))?)
                    }
                    None => WriteOutcome::Ignored,
                },
                WriteOp::Transition(t) => plan.transition(t, now),
                WriteOp::Progress {
                    task_id,
                    attempt,
                    fraction,
                    message,
                } => plan.progress(*task_id, *attempt, *fraction, message, now),
                WriteOp::Audit(r) => {
                    audit.push(&**r);
                    WriteOutcome::Ignored
                }
                WriteOp::AuditDraft(_) => WriteOutcome::Ignored, // the writer seals drafts first
                WriteOp::Usage {
                    task_id,
                    usage,
                    cost_usd,
                    at_ms,
                } => {
                    let tenant = match plan.current(*task_id) {
                        Some(l) => Some(l.tenant),
                        // Usage may arrive after the task finished: it is never dropped.
                        None => {
                            sqlx::query_scalar("SELECT tenant FROM tasks WHERE id = ?")
                                .bind(task_id.to_string())
                                .fetch_optional(&mut *tx)
                                .await?
                        }
                    };
                    match tenant {
                        Some(tenant) => {
                            let day = crate::budget::utc_day(*at_ms);
                            sqlx::query(
                                "INSERT INTO usage (task_id, tenant, model, tokens_in, tokens_out, cost_usd, day, at_ms) \
                                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            )
                            .bind(task_id.to_string())
                            .bind(&tenant)
                            .bind(&usage.model)
                            .bind(usage.tokens_in as i64)
                            .bind(usage.tokens_out as i64)
                            .bind(cost_usd)
                            .bind(&day)
                            .bind(at_ms)
                            .execute(&mut *tx)
                            .await?;
                            let tokens = usage.tokens_in + usage.tokens_out;
                            WriteOutcome::Usage {
                                tenant,
                                day,
                                tokens,
                                cost_usd: *cost_usd,
                            }
                        }
                        None => WriteOutcome::Ignored,
                    }
                }
            };
            outcomes.push(outcome);
        }
        Self::insert_events(&mut tx, &plan.events).await?;
        Self::insert_audit(&mut tx, &audit).await?;
        let rows: Vec<(TaskId, RowUpdate)> = plan.rows.drain(..).collect();
        Self::update_tasks(&mut tx, &rows).await?;
        tx.commit().await?;
        let Plan {
            cache,
            staged,
            cursor,
            ..
        } = plan;
        cache.next_cursor = cursor;
        for (id, entry) in staged {
            match entry {
                Some(l) => cache.live.insert(id, l),
                None => cache.live.remove(&id),
            };
        }
        Ok(outcomes)
    }

    async fn get(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = "));
        qb.push_bind(id.to_string());
        let Some(row) = qb.build_query_as::<TaskRow>().fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let children = self.children(id, &row.tenant).await?;
        let usage = self
            .usage(&UsageFilter {
                task_id: Some(id),
                ..Default::default()
            })
            .await?;
        let mut record = row.into_record(children)?;
        record.usage = usage;
        Ok(Some(record))
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

    async fn count_unfinished(&self) -> StoreResult<HashMap<String, u64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tenant, COUNT(*) FROM tasks WHERE state IN ('QUEUED', 'RUNNING', 'RETRYING') GROUP BY tenant",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(t, n)| (t, n as u64)).collect())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn max_cursor(&self) -> StoreResult<u64> {
        let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(cursor) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0).max(0) as u64)
    }

    async fn audit_tail(&self) -> StoreResult<(u64, String)> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .map(|(s, h)| (s as u64, h))
            .unwrap_or((0, crate::audit::GENESIS.to_string())))
    }

    async fn audit_records(&self, target: Option<&str>) -> StoreResult<Vec<AuditRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT seq, at_ms, actor, tenant, role, action, target, outcome, detail, prev_hash, hash, signature \
             FROM audit",
        );
        if let Some(t) = target {
            qb.push(" WHERE target = ").push_bind(t.to_string());
        }
        qb.push(" ORDER BY seq");
        let rows: Vec<AuditRow> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(AuditRow::into_record).collect())
    }

    async fn usage(&self, f: &UsageFilter) -> StoreResult<Vec<ModelUsage>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT tenant, model, SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) FROM usage WHERE 1 = 1",
        );
        if let Some(id) = f.task_id {
            qb.push(" AND task_id = ").push_bind(id.to_string());
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        if let Some(d) = &f.day {
            qb.push(" AND day = ").push_bind(d.clone());
        }
        qb.push(" GROUP BY tenant, model ORDER BY tenant, model");
        let rows: Vec<(String, String, i64, i64, f64)> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, model, tokens_in, tokens_out, cost_usd)| ModelUsage {
                model,
                tokens_in: tokens_in as u64,
                tokens_out: tokens_out as u64,
                cost_usd,
                tenant,
            })
            .collect())
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, tenant, role, salt, hash, created_at_ms, revoked_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.id)
        .bind(&k.name)
        .bind(&k.tenant)
        .bind(k.role.as_str())
        .bind(&k.salt)
        .bind(&k.hash)
        .bind(k.created_at_ms)
        .bind(k.revoked_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<(String, String, String, String, String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, tenant, role, salt, hash, created_at_ms, revoked_at_ms FROM api_keys ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(id, name, tenant, role, salt, hash, created_at_ms, revoked_at_ms)| {
                    Ok(ApiKeyRecord {
                        role: role.parse().map_err(|e: String| corrupt("api key role", e))?,
                        id,
                        name,
                        tenant,
                        salt,
                        hash,
                        created_at_ms,
                        revoked_at_ms,
                    })
                },
            )
            .collect()
    }

    async fn revoke_api_key(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadre_proto::{Priority, RetryPolicy};

    fn record(key: Option<&str>) -> TaskRecord {
        TaskRecord {
            id: TaskId::new(),
            tenant: "t".into(),
            spec: TaskSpec {
                task_type: "system.debug.echo".into(),
                params: serde_json::json!({}),
                priority: Priority::default(),
                timeout: Duration::from_secs(1),
                retry: RetryPolicy::default(),
                idempotency_key: key.map(str::to_string),
                parent_id: None,
                security_level: Default::default(),
            },
            state: TaskState::Queued,
            attempt: 0,
            supervisor: "system".into(),
            worker_kind: "monitor".into(),
            result: None,
            error: None,
            created_at_ms: now_ms(),
            updated_at_ms: now_ms(),
            seq: 1,
            children: vec![],
            result_signature: None,
            usage: Vec::new(),
        }
    }

    fn tr(id: TaskId, state: TaskState, attempt: u32) -> WriteOp {
        WriteOp::Transition(Transition::new(id, state, attempt, state.as_str()))
    }

    fn cursor(o: &WriteOutcome) -> u64 {
        match o {
            WriteOutcome::Event { event, .. } => event.cursor,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_batch_applies_in_order_and_terminal_states_stick() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), false).await.unwrap();
        let (a, b, c) = (record(Some("k")), record(Some("k")), record(None));
        let out = store
            .apply(&[
                WriteOp::Insert(Box::new(a.clone())),
                WriteOp::Insert(Box::new(b.clone())),
                WriteOp::Insert(Box::new(c.clone())),
                tr(a.id, TaskState::Running, 1),
                WriteOp::Progress {
                    task_id: a.id,
                    attempt: 1,
                    fraction: 0.5,
                    message: "half".into(),
                },
                WriteOp::Progress {
                    task_id: a.id,
                    attempt: 2,
                    fraction: 0.5,
                    message: "stale".into(),
                },
                tr(a.id, TaskState::Succeeded, 1),
                tr(a.id, TaskState::Failed, 1),
            ])
            .await
            .unwrap();
        assert_eq!(
            out[1],
            WriteOutcome::Existing(a.id),
            "same key in one batch: the first wins"
        );
        assert_eq!(out[5], WriteOutcome::Ignored, "progress of another attempt");
        assert_eq!(out[7], WriteOutcome::Ignored, "terminal is sticky");
        let cursors: Vec<u64> = [0, 2, 3, 4, 6].iter().map(|i| cursor(&out[*i])).collect();
        assert_eq!(cursors, vec![1, 2, 3, 4, 5], "cursors follow op order");
        let got = store.get(a.id).await.unwrap().unwrap();
        assert_eq!((got.state, got.seq, got.attempt), (TaskState::Succeeded, 4, 1));
        assert!(store.get(b.id).await.unwrap().is_none());
        let events = store
            .events_after(
                0,
                &EventFilter {
                    task_id: Some(a.id),
                    ..Default::default()
                },
                100,
            )
            .await
            .unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(events[2].is_progress);

        // Errors are kept while retrying, cleared on success; QUEUED may give an attempt back.
        store
            .apply(&[tr(c.id, TaskState::Running, 1), tr(c.id, TaskState::Retrying, 1)])
            .await
            .unwrap();
        assert_eq!(
            store.get(c.id).await.unwrap().unwrap().error.as_deref(),
            Some("RETRYING")
        );
        store
            .apply(&[tr(c.id, TaskState::Running, 2), tr(c.id, TaskState::Queued, 1)])
            .await
            .unwrap();
        let got = store.get(c.id).await.unwrap().unwrap();
        assert_eq!((got.state, got.attempt), (TaskState::Queued, 1));
        assert_eq!(store.unfinished(None).await.unwrap().len(), 1);
        store.close().await;

        // A reopened store continues the cursor sequence and still knows c is unfinished.
        let store = SqliteStore::open(&dir.path().join("s.db"), false).await.unwrap();
        let out = store
            .apply(&[tr(c.id, TaskState::Running, 2), tr(a.id, TaskState::Running, 2)])
            .await
            .unwrap();
        assert_eq!(cursor(&out[0]), 10);
        assert_eq!(out[1], WriteOutcome::Ignored);
    }
}
