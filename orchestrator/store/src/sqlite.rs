//! The embedded default store: one SQLite file in WAL mode.
//!
//! `synchronous=FULL` by default so an accepted task survives power loss; throughput comes from
//! group commit (many writes per transaction), not from weaker fsync.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cadre_proto::{TaskEvent, TaskId, TaskRecord};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::chain::{AuditDraft, AuditRecord, ChainTail, Sealer};
use crate::plan::{Live, Plan, PlanIo, RowUpdate, UsageRecord, new_tasks};
use crate::query::{Sql, impl_sql_store};
use crate::rows::{LIVE_COLUMNS, LiveRow, UNFINISHED, parse_id};
use crate::{StoreError, StoreResult, WriteOp, WriteOutcome};

/// SQLite-backed [`crate::Store`]. It assumes it is the only writer of its file (the data dir lock
/// makes sure of that): the writer's view of unfinished tasks lives in memory.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    cache: Arc<tokio::sync::Mutex<Option<WriterCache>>>,
}

/// Rows per multi-row statement (13 columns each stays far below SQLite's variable limit).
const ROWS_PER_STATEMENT: usize = 500;

/// The writer's in-memory view: unfinished tasks, the next event cursor and the audit chain's
/// end.
struct WriterCache {
    live: HashMap<TaskId, Live>,
    next_cursor: u64,
    chain: ChainTail,
}

use cadre_proto::clock::now_ms;

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
        // A local file's connection does not break while idle: no ping before each use (sqlx
        // still checks each connection given back).
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .after_release(|conn, _| Box::pin(left_outside_transaction(conn)))
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

    /// Text as SQLite keeps it: unchanged.
    fn stored_text(s: &str) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(s)
    }

    /// Reads what the writer keeps in memory: unfinished tasks, the next cursor and the end of
    /// the audit chain.
    async fn load_cache(&self) -> StoreResult<WriterCache> {
        let rows: Vec<LiveRow> = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {LIVE_COLUMNS} FROM tasks WHERE state IN {UNFINISHED}"
        ))
        .build_query_as()
        .fetch_all(&self.pool)
        .await?;
        let live = rows
            .into_iter()
            .map(LiveRow::into_live)
            .collect::<StoreResult<_>>()?;
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(cursor), 0) FROM events")
            .fetch_one(&self.pool)
            .await?;
        let chain: Option<(i64, String)> = Sql::<Sqlite>::audit_tail()
            .build_query_as()
            .fetch_optional(&self.pool)
            .await?;
        Ok(WriterCache {
            live,
            next_cursor: max as u64 + 1,
            chain: crate::ops::audit_tail_of(chain),
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
                 parent_id, idempotency_key, created_at_ms, updated_at_ms, depth) ",
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
                    .push_bind(rec.created_at_ms)
                    // A sub-task is one deeper than its parent (stored before it: intake
                    // checks that), a task on its own depth 0.
                    .push("COALESCE((SELECT p.depth + 1 FROM tasks p WHERE p.id = ")
                    .push_bind_unseparated(rec.spec.parent_id.map(|p| p.to_string()))
                    .push_unseparated("), 0)");
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
                 task_type, tenant, is_progress, parent_id) ",
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
                    .push_bind(e.is_progress)
                    .push_bind(e.parent_id.map(|p| p.to_string()));
            });
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn insert_audit(conn: &mut SqliteConnection, records: &[AuditRecord]) -> StoreResult<()> {
        for chunk in records.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit (seq, at_ms, actor, tenant, role, action, target, outcome, detail, prev_hash, \
                 hash, signature, signer) ",
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
                    .push_bind(r.signature.clone())
                    .push_bind(r.signer.clone());
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

    /// Writes a planned batch: the stored events late transitions rewrote, its events, its
    /// audit records, then its changed task rows.
    async fn write(conn: &mut SqliteConnection, plan: &Plan<'_>) -> StoreResult<()> {
        crate::late::sqlite_sql::rewrite(conn, plan, str::to_string).await?;
        Self::insert_events(conn, &plan.events).await?;
        Self::insert_audit(conn, &plan.audit).await?;
        Self::update_tasks(conn, &plan.rows).await
    }

    /// Plans the whole batch in memory against the writer's view of unfinished tasks and the
    /// audit chain's end (sealing drafts with `sealer`), then writes it with a few multi-row
    /// statements (new tasks, events, audit records, task rows) in one transaction. The view
    /// changes only after the commit succeeds.
    async fn apply_batch(&self, ops: &[WriteOp], sealer: Option<&Sealer>) -> StoreResult<Vec<WriteOutcome>> {
        let mut guard = self.cache.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_cache().await?);
        }
        let cache = guard.as_mut().expect("cache loaded");
        let mut tx = self.pool.begin().await?;
        // No new task: no statement.
        let inserted = Self::insert_tasks(&mut tx, &new_tasks(ops)).await?;
        let now = now_ms();
        let mut plan = Plan::new(&cache.live, cache.next_cursor, cache.chain.clone());
        let outcomes = plan
            .walk(ops, &inserted, now, sealer, &mut InTransaction(&mut tx))
            .await?;
        Self::write(&mut tx, &plan).await?;
        tx.commit().await?;
        let Plan {
            staged,
            cursor,
            chain,
            ..
        } = plan;
        cache.committed(staged, cursor, chain);
        Ok(outcomes)
    }
}

/// Whether a connection given back to the pool may be used again: only if it is outside any
/// transaction. The common case costs nothing: sqlx's depth counter is 0 (it drops only when
/// the worker has run a ROLLBACK or COMMIT, so a queued one cannot be missed). A transaction
/// dropped after an error queues its ROLLBACK (the ping waits for it); when SQLite had already rolled the transaction back itself (it does after SQLITE_FULL
/// or an I/O error at COMMIT: a full disk), that ROLLBACK fails and sqlx still counts the
/// connection inside a transaction. Reused, its next `begin` would be a SAVEPOINT, which
/// starts a real transaction, and whose rollback after the next error (`ROLLBACK TO`) leaves
/// that transaction open for ever, with its old snapshot and its locks: every write then fails
/// with "database is locked" until a restart. Such a connection is closed instead.
async fn left_outside_transaction(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    let outside = !conn.is_in_transaction();
    if !outside {
        tracing::warn!("a SQLite connection was left inside a transaction after an error; closed");
    }
    Ok(outside)
}

impl WriterCache {
    /// Takes in what a committed batch changed: unfinished tasks (None: finished), the next
    /// cursor and the audit chain's end.
    fn committed(&mut self, staged: HashMap<TaskId, Option<Live>>, cursor: u64, chain: ChainTail) {
        self.next_cursor = cursor;
        self.chain = chain;
        for (id, entry) in staged {
            match entry {
                Some(l) => self.live.insert(id, l),
                None => self.live.remove(&id),
            };
        }
    }
}

/// What a SQLite batch reads and writes while it is planned: statements in its transaction,
/// in op order.
struct InTransaction<'c>(&'c mut SqliteConnection);

impl PlanIo for InTransaction<'_> {
    async fn existing(&mut self, rec: &TaskRecord, key: &str) -> StoreResult<TaskId> {
        let id: String = Sql::<Sqlite>::idempotent(&rec.tenant, key)
            .build_query_scalar()
            .fetch_one(&mut *self.0)
            .await?;
        parse_id(&id)
    }

    async fn tenant_of(&mut self, task_id: TaskId) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT tenant FROM tasks WHERE id = ?")
            .bind(task_id.to_string())
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn usage(&mut self, u: UsageRecord<'_>) -> StoreResult<()> {
        let call = crate::llm_calls::CallInsert::new(&u, str::to_string);
        crate::llm_calls::sqlite_insert(self.0, &call).await?;
        if u.usage.cache_hit {
            // A cached reply used no tokens: its call is recorded, no usage row.
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO usage (task_id, tenant, model, tokens_in, tokens_out, cost_usd, day, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.task_id.to_string())
        .bind(u.tenant)
        .bind(&u.usage.model)
        .bind(u.usage.tokens_in as i64)
        .bind(u.usage.tokens_out as i64)
        .bind(u.cost_usd)
        .bind(u.day)
        .bind(u.at_ms)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn history(&mut self, task_id: TaskId) -> StoreResult<Option<crate::plan::Past>> {
        crate::late::sqlite_sql::history(self.0, task_id).await
    }

    /// SQLite keeps text as it is.
    fn stored_draft(&self, draft: &AuditDraft) -> AuditDraft {
        draft.clone()
    }

    async fn supersede(&mut self, hold: crate::plan::Hold<'_>) -> StoreResult<Option<TaskId>> {
        crate::debounce::sqlite_supersede(self.0, hold).await
    }
}

impl SqliteStore {
    /// Reads of a local file are cheap one by one; batching them would only serialise them.
    const READS_IN_BATCHES: bool = false;

    /// Tasks with their children and usage ([`crate::Store::get_many`]): one
    /// [`Self::get_task`] each (reads of a local file are cheap).
    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.get_task(*id).await?);
        }
        Ok(out)
    }

    /// One task with its children and usage ([`crate::Store::get`]): three reads on one
    /// pooled connection.
    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        use crate::rows::{TaskRow, UsageRow};
        let mut conn = self.pool.acquire().await?;
        let row: Option<TaskRow> = Sql::<Sqlite>::task(id)
            .build_query_as()
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let children: Vec<String> = Sql::<Sqlite>::children(id, row.tenant())
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await?;
        let children = children.iter().map(|s| parse_id(s)).collect::<Result<_, _>>()?;
        let mut record = row.into_record(children)?;
        let usage: Vec<UsageRow> = Sql::<Sqlite>::usage(&crate::UsageFilter::task(id))
            .build_query_as()
            .fetch_all(&mut *conn)
            .await?;
        record.usage = usage.into_iter().map(cadre_proto::v1::ModelUsage::from).collect();
        Ok(Some(record))
    }
}

impl_sql_store!(SqliteStore, Sqlite);
crate::workflows::impl_workflow_store!(SqliteStore, Sqlite);
crate::debounce::impl_debounce_store!(SqliteStore, "?");
crate::pauses::impl_pause_store!(SqliteStore, Sqlite);
crate::retention::impl_retention_store!(sqlite: SqliteStore);
crate::revocations::impl_revocation_store!(SqliteStore, Sqlite);
crate::schedules::impl_schedule_store!(SqliteStore, Sqlite);
crate::audit_prune::impl_audit_prune_store!(SqliteStore, Sqlite);
crate::llm_calls::impl_llm_call_store!(SqliteStore, Sqlite);
crate::stats::impl_stats_store!(SqliteStore, Sqlite);

impl SqliteStore {
    /// A transaction that changes the audit chain outside a batch (a prune), holding the
    /// writer's lock so it never interleaves with a batch sealing records.
    async fn begin_chain_write(
        &self,
    ) -> StoreResult<(
        tokio::sync::MutexGuard<'_, Option<WriterCache>>,
        sqlx::Transaction<'static, Sqlite>,
    )> {
        let writer = self.cache.lock().await;
        Ok((writer, self.pool.begin().await?))
    }

    /// The only process on its file always leads the workflow engine.
    async fn take_lead(&self) -> StoreResult<Option<crate::workflows::Lease>> {
        Ok(Some(crate::workflows::Lease::sole()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;
    use cadre_proto::TaskState;
    use cadre_supervisors::Transition;

    use crate::{EventFilter, Store};

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
            .apply(
                &[
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
                ],
                None,
            )
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
            .apply(
                &[tr(c.id, TaskState::Running, 1), tr(c.id, TaskState::Retrying, 1)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            store.get(c.id).await.unwrap().unwrap().error.as_deref(),
            Some("RETRYING")
        );
        store
            .apply(
                &[tr(c.id, TaskState::Running, 2), tr(c.id, TaskState::Queued, 1)],
                None,
            )
            .await
            .unwrap();
        let got = store.get(c.id).await.unwrap().unwrap();
        assert_eq!((got.state, got.attempt), (TaskState::Queued, 1));
        assert_eq!(store.unfinished(None).await.unwrap().len(), 1);
        store.close().await;

        // A reopened store continues the cursor sequence and still knows c is unfinished.
        let store = SqliteStore::open(&dir.path().join("s.db"), false).await.unwrap();
        let out = store
            .apply(
                &[tr(c.id, TaskState::Running, 2), tr(a.id, TaskState::Running, 2)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(cursor(&out[0]), 10);
        assert_eq!(out[1], WriteOutcome::Ignored);
    }
}

#[cfg(test)]
#[path = "sqlite_full_tests.rs"]
mod full_tests;
