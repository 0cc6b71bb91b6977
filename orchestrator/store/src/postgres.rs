//! The distributed-mode store: PostgreSQL, shared by several orchestrator replicas.
//!
//! Unlike [`crate::sqlite::SqliteStore`], this store keeps no view of task state in memory:
//! another replica may have changed any task since the last batch. Each [`crate::Store::apply`] batch
//! runs in one transaction that
//!
//! 1. takes the event-log lock (`pg_advisory_xact_lock`, see [`EVENT_LOG_LOCK`]), so
//!    event-producing transactions run one at a time across all replicas;
//! 2. inserts the batch's new tasks in one `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO
//!    NOTHING` (the unique index on `(tenant, idempotency_key)` decides which insert wins, on
//!    this replica or another) and looks up the winners of lost idempotency races in one query;
//! 3. reads and row-locks (`FOR UPDATE`) every task the batch's transitions, progress reports
//!    and usage touch, in one query;
//! 4. plans the batch over those rows with the same planner as SQLite (`store/plan.rs`,
//!    `Plan::walk`, with what it asks answered from the rows read in steps 2 and 3):
//!    terminal tasks are left alone, stale progress is dropped, events get cursors `MAX + 1 ...`,
//!    and audit drafts are sealed after the chain's last record (read under the lock, with
//!    the next cursor) with this replica's key, so all replicas extend one chain;
//! 5. writes events, usage, audit records and task rows in one statement (multi-row inserts in
//!    `WITH` clauses, then one multi-row update); the task update is conditional on the `seq`
//!    the batch read, and a mismatch fails the batch rather than let a task change twice;
//! 6. commits. Nothing is remembered afterwards.
//!
//! So a batch costs about seven round trips whatever its size (up to the writer's 512 ops):
//! BEGIN, the lock, the inserts, the row locks, the cursor and chain heads, the writes, COMMIT.
//!
//! Text columns cannot hold NUL in PostgreSQL; NUL characters in text written by a batch (or
//! an API key) are stored as U+FFFD instead of failing the batch for ever, and lookups and
//! filters map NUL the same way, so what was written is found again.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use cadre_proto::{TaskId, TaskRecord};
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::chain::{AuditDraft, ChainTail, Sealer};
use crate::plan::{Live, Plan, PlanIo, UsageRecord, new_tasks};
use crate::query::impl_sql_store;
use crate::rows::{LIVE_COLUMNS, LiveRow, TASK_COLUMNS, parse_id};
use crate::{StoreError, StoreResult, WriteOp, WriteOutcome};
use cadre_proto::clock::now_ms;

/// Pooled connections when the caller does not choose (see [`crate::open()`]).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long an operation waits for a pooled connection (or for PostgreSQL to accept a new one)
/// before it fails with a [`StoreError`]. The writer retries failed batches, so an outage shows
/// up as errors every few seconds, not as a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a batch may take, lock wait included, before it is abandoned with a
/// [`StoreError`] (see [`PgStore::with_apply_timeout`]).
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A transaction left idle this long (its client hung or vanished) is ended by the server, so
/// it cannot hold the event-log lock and stall every replica.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// A pooled connection idle longer than this is pinged before it is used again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// Key of the advisory lock every `apply` transaction takes before it allocates event cursors
/// (the bytes of "cadre-ev").
///
/// Why: cursors are `MAX(cursor) + 1, + 2, ...` read inside the transaction. Without the lock,
/// two replicas would read the same MAX and collide; with a sequence instead, replica A could
/// take cursor 10 and replica B cursor 11, B commit first, and a watcher that read up to 11
/// would never see 10 when A commits later. Holding one transaction-scoped lock from before
/// the MAX is read until the commit makes cursors gap-free and makes them become visible in
/// cursor order (PostgreSQL releases transaction locks only after the commit is visible). It
/// also serialises the idempotency-key checks and the task row decisions of concurrent
/// batches. The price is that batches from all replicas commit one at a time; group commit
/// keeps that at one lock hold per batch of up to 512 ops, not per task.
pub const EVENT_LOG_LOCK: i64 = i64::from_be_bytes(*b"cadre-ev");

/// PostgreSQL-backed [`crate::Store`], safe for several orchestrator replicas on one database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// How long one batch may take (see [`PgStore::with_apply_timeout`]).
    apply_timeout: Duration,
}

/// [`PgStore::stored_text`], owned.
fn text(s: &str) -> String {
    PgStore::stored_text(s).into_owned()
}

/// One column of `rows`, for binding as an array to `UNNEST`.
fn col<T, U>(rows: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// A usage record waiting to be inserted with the rest of the batch.
struct UsageInsert {
    task_id: String,
    tenant: String,
    model: String,
    tokens_in: i64,
    tokens_out: i64,
    cost_usd: f64,
    day: String,
    at_ms: i64,
}

/// The tasks a batch touches, read and locked inside its transaction.
struct Touched {
    /// Unfinished tasks that existed before the batch: the planner's base view.
    base: HashMap<TaskId, Live>,
    /// The tenant of every touched task that exists, finished or not (for usage).
    tenants: HashMap<TaskId, String>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://...`) with at most `max_connections`
    /// pooled connections, and creates or upgrades the schema (`migrations/postgres`; safe
    /// when several replicas start at once: sqlx migrates under an advisory lock).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError(format!("bad PostgreSQL URL: {e}")))?
            .application_name("cadre")
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT)]);
        // sqlx pings every connection given back to the pool, so a connection that broke in
        // use is dropped then; a second ping before each use would add a round trip to every
        // query. Only a connection idle for a while (which a restarted server, an idle-session
        // timeout or a load balancer may have closed meanwhile) is pinged before it is used.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError(format!("cannot connect to PostgreSQL: {e}")))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = PgStore {
            pool,
            apply_timeout: DEFAULT_APPLY_TIMEOUT,
        };
        for problem in store.durability_problems().await? {
            tracing::warn!(problem = %problem, "PostgreSQL may lose acknowledged tasks");
        }
        Ok(store)
    }

    /// The server settings that break the promise that an acknowledged task survives a crash:
    /// `fsync` off (a power loss or OS crash can corrupt or lose anything), `synchronous_commit`
    /// off (the last commits of a crash are lost), `full_page_writes` off (torn pages after an
    /// OS crash). Empty when none is set; logged as warnings when the store connects.
    pub async fn durability_problems(&self) -> StoreResult<Vec<String>> {
        let (fsync, commit, pages): (String, String, String) = sqlx::query_as(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'), \
             current_setting('full_page_writes')",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut problems = Vec::new();
        if fsync == "off" {
            problems.push(
                "fsync = off: a power loss or OS crash can lose or corrupt committed tasks".to_string(),
            );
        }
        if commit == "off" {
            problems.push(
                "synchronous_commit = off: a crash of the database server loses its last commits, tasks \
                 already acknowledged included"
                    .to_string(),
            );
        }
        if pages == "off" {
            problems.push("full_page_writes = off: an OS crash can leave torn pages".to_string());
        }
        Ok(problems)
    }

    /// Sets how long one `apply` may take, waiting for the event-log lock included, before it
    /// is abandoned with a [`StoreError`] (default [`DEFAULT_APPLY_TIMEOUT`]). Without it a
    /// server that stops answering without closing the connection (a network partition) would
    /// stall the writer for ever instead of surfacing as an error. An abandoned batch may still
    /// commit on the server, like one whose commit reply is lost; the writer's retries and the
    /// idempotency keys make that harmless. The server ends the abandoned transaction when the
    /// connection is closed, or after `idle_in_transaction_session_timeout`.
    pub fn with_apply_timeout(mut self, timeout: Duration) -> Self {
        self.apply_timeout = timeout;
        self
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Text as PostgreSQL can store it: NUL becomes U+FFFD.
    fn stored_text(s: &str) -> Cow<'_, str> {
        if s.contains('\0') {
            Cow::Owned(s.replace('\0', "\u{FFFD}"))
        } else {
            Cow::Borrowed(s)
        }
    }

    /// Inserts new tasks in one statement, in batch order (so the first of two inserts with one
    /// idempotency key wins); returns the ids actually inserted. A conflict (idempotency key
    /// or id, from this batch or any replica's committed one) inserts nothing. No task, no
    /// statement.
    async fn insert_tasks(conn: &mut PgConnection, records: &[&TaskRecord]) -> StoreResult<HashSet<String>> {
        if records.is_empty() {
            return Ok(HashSet::new());
        }
        let specs = records
            .iter()
            .map(|r| serde_json::to_string(&r.spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError(format!("cannot encode task spec: {e}")))?;
        let ids: Vec<String> = sqlx::query_scalar(
            "INSERT INTO tasks (id, tenant, task_type, supervisor, worker_kind, spec, state, attempt, seq, \
             parent_id, idempotency_key, created_at_ms, updated_at_ms, depth) \
             SELECT id, tenant, task_type, supervisor, worker_kind, spec, 'QUEUED', 0, 1, parent_id, \
             idempotency_key, created_at_ms, created_at_ms, \
             COALESCE((SELECT p.depth + 1 FROM tasks p WHERE p.id = v.parent_id), 0) \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::bigint[]) WITH ORDINALITY \
             AS v(id, tenant, task_type, supervisor, worker_kind, spec, parent_id, idempotency_key, created_at_ms, n) \
             ORDER BY n \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(col(records, |r| r.id.to_string()))
        .bind(col(records, |r| text(&r.tenant)))
        .bind(col(records, |r| text(&r.spec.task_type)))
        .bind(col(records, |r| text(&r.supervisor)))
        .bind(col(records, |r| text(&r.worker_kind)))
        .bind(specs)
        .bind(col(records, |r| r.spec.parent_id.map(|p| p.to_string())))
        .bind(col(records, |r| r.spec.idempotency_key.as_deref().map(text)))
        .bind(col(records, |r| r.created_at_ms))
        .fetch_all(&mut *conn)
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// The tasks that hold the idempotency keys of inserts that lost, by (tenant, key).
    async fn existing_keys(
        conn: &mut PgConnection,
        lost: &[(String, String)],
    ) -> StoreResult<HashMap<(String, String), TaskId>> {
        if lost.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT t.tenant, t.idempotency_key, t.id FROM tasks t \
             JOIN UNNEST($1::text[], $2::text[]) AS v(tenant, key) \
             ON t.tenant = v.tenant AND t.idempotency_key = v.key",
        )
        .bind(col(lost, |(t, _)| t.clone()))
        .bind(col(lost, |(_, k)| k.clone()))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(tenant, key, id)| Ok(((tenant, key), parse_id(&id)?)))
            .collect()
    }

    /// Reads and row-locks the touched tasks (in id order, so two lockers never deadlock).
    /// Tasks inserted by this batch stay out of the base view: the planner learns of them from
    /// their insert op, as in SQLite, so an op before the insert in the batch does not see them.
    async fn lock_tasks(
        conn: &mut PgConnection,
        ids: Vec<String>,
        inserted: &HashSet<String>,
    ) -> StoreResult<Touched> {
        let mut touched = Touched {
            base: HashMap::new(),
            tenants: HashMap::new(),
        };
        if ids.is_empty() {
            return Ok(touched);
        }
        let rows: Vec<LiveRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {LIVE_COLUMNS} FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
        )))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let (id, live) = row.into_live()?;
            touched.tenants.insert(id, live.tenant.clone());
            if !live.state.is_terminal() && !inserted.contains(&id.to_string()) {
                touched.base.insert(id, live);
            }
        }
        Ok(touched)
    }

    /// The next event cursor (`MAX + 1`) and the audit chain's last record, in one query, read
    /// under the event-log lock (every replica appends only under it), so the batch's events
    /// follow and its drafts are sealed after what is committed.
    async fn heads(conn: &mut PgConnection) -> StoreResult<(i64, ChainTail)> {
        // The chain's end is its last record (or a prune's checkpoint if none is left).
        let sql = format!(
            "SELECT (SELECT COALESCE(MAX(cursor), 0) + 1 FROM events), e.seq, e.hash \
             FROM (SELECT 1) AS one LEFT JOIN ({}) AS e ON true",
            crate::audit_prune::CHAIN_END
        );
        let (next, seq, hash): (i64, Option<i64>, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await?;
        Ok((next, crate::ops::audit_tail_of(seq.zip(hash))))
    }

    /// A draft with its text as PostgreSQL stores it, so the hash sealed over it matches the
    /// record read back.
    fn stored_draft(d: &AuditDraft) -> AuditDraft {
        AuditDraft {
            at_ms: d.at_ms,
            actor: text(&d.actor),
            tenant: text(&d.tenant),
            role: text(&d.role),
            action: text(&d.action),
            target: text(&d.target),
            outcome: text(&d.outcome),
            detail: text(&d.detail),
        }
    }

    /// Writes a planned batch in one statement: its events, usage and audit records (inserts
    /// in data-modifying `WITH` clauses) and its changed task rows. Each task update applies
    /// only if the row still has the `seq` the batch read and is unfinished; if any does not,
    /// the batch fails (and rolls back) instead of changing a task that changed meanwhile.
    /// Under the event-log lock that never happens; the check makes the invariant independent
    /// of the lock.
    async fn write(
        conn: &mut PgConnection,
        plan: &Plan<'_>,
        usage: &[UsageInsert],
        base: &HashMap<TaskId, Live>,
    ) -> StoreResult<()> {
        let (events, audit, rows) = (&plan.events, &plan.audit, &plan.rows);
        if events.is_empty() && usage.is_empty() && audit.is_empty() && rows.is_empty() {
            return Ok(());
        }
        let n = sqlx::query(
            "WITH e AS (INSERT INTO events (cursor, task_id, seq, state, attempt, message, progress, \
             result, at_ms, task_type, tenant, is_progress, parent_id) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], \
             $6::text[], $7::float8[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::bool[], \
             $13::text[])), \
             u AS (INSERT INTO usage (task_id, tenant, model, tokens_in, tokens_out, cost_usd, day, at_ms) \
             SELECT * FROM UNNEST($14::text[], $15::text[], $16::text[], $17::bigint[], $18::bigint[], \
             $19::float8[], $20::text[], $21::bigint[])), \
             a AS (INSERT INTO audit (seq, at_ms, actor, tenant, role, action, target, outcome, detail, \
             prev_hash, hash, signature, signer) \
             SELECT * FROM UNNEST($22::bigint[], $23::bigint[], $24::text[], $25::text[], $26::text[], \
             $27::text[], $28::text[], $29::text[], $30::text[], $31::text[], $32::text[], $33::text[], \
             $34::text[])) \
             UPDATE tasks AS t SET state = v.state, attempt = v.attempt, seq = v.seq, \
             updated_at_ms = v.updated_at_ms, result = COALESCE(v.result, t.result), \
             error = CASE v.error_mode WHEN 0 THEN t.error WHEN 1 THEN v.error ELSE NULL END, \
             result_signature = COALESCE(v.signature, t.result_signature) \
             FROM UNNEST($35::text[], $36::text[], $37::bigint[], $38::bigint[], $39::bigint[], $40::text[], \
             $41::int4[], $42::text[], $43::text[], $44::bigint[]) \
             AS v(id, state, attempt, seq, updated_at_ms, result, error_mode, error, signature, prev_seq) \
             WHERE t.id = v.id AND t.seq = v.prev_seq AND (t.state || '') IN ('QUEUED', 'RUNNING', 'RETRYING')",
            // `state || ''` keeps the planner on the primary key: the partial index on unfinished
            // tasks holds dead entries until vacuum and made this update scan them.
        )
        .bind(col(events, |e| e.cursor as i64))
        .bind(col(events, |e| e.task_id.to_string()))
        .bind(col(events, |e| e.seq as i64))
        .bind(col(events, |e| e.state.as_str()))
        .bind(col(events, |e| e.attempt as i64))
        .bind(col(events, |e| text(&e.message)))
        .bind(col(events, |e| e.progress))
        .bind(col(events, |e| e.result.as_ref().map(|v| v.to_string())))
        .bind(col(events, |e| e.at_ms))
        .bind(col(events, |e| text(&e.task_type)))
        .bind(col(events, |e| text(&e.tenant)))
        .bind(col(events, |e| e.is_progress))
        .bind(col(events, |e| e.parent_id.map(|p| p.to_string())))
        .bind(col(usage, |u| u.task_id.clone()))
        .bind(col(usage, |u| u.tenant.clone()))
        .bind(col(usage, |u| u.model.clone()))
        .bind(col(usage, |u| u.tokens_in))
        .bind(col(usage, |u| u.tokens_out))
        .bind(col(usage, |u| u.cost_usd))
        .bind(col(usage, |u| u.day.clone()))
        .bind(col(usage, |u| u.at_ms))
        .bind(col(audit, |r| r.seq as i64))
        .bind(col(audit, |r| r.draft.at_ms))
        .bind(col(audit, |r| text(&r.draft.actor)))
        .bind(col(audit, |r| text(&r.draft.tenant)))
        .bind(col(audit, |r| text(&r.draft.role)))
        .bind(col(audit, |r| text(&r.draft.action)))
        .bind(col(audit, |r| text(&r.draft.target)))
        .bind(col(audit, |r| text(&r.draft.outcome)))
        .bind(col(audit, |r| text(&r.draft.detail)))
        .bind(col(audit, |r| r.prev_hash.clone()))
        .bind(col(audit, |r| r.hash.clone()))
        .bind(col(audit, |r| r.signature.clone()))
        .bind(col(audit, |r| r.signer.clone()))
        .bind(col(rows, |(id, _)| id.to_string()))
        .bind(col(rows, |(_, u)| u.state.as_str()))
        .bind(col(rows, |(_, u)| u.attempt as i64))
        .bind(col(rows, |(_, u)| u.seq as i64))
        .bind(col(rows, |(_, u)| u.updated_at_ms))
        .bind(col(rows, |(_, u)| u.result.clone()))
        .bind(col(rows, |(_, u)| u.error as i32))
        .bind(col(rows, |(_, u)| u.error_text.as_deref().map(text)))
        .bind(col(rows, |(_, u)| u.signature.clone()))
        // A task missing from the base view was inserted by this batch, with seq 1.
        .bind(col(rows, |(id, _)| base.get(id).map_or(1, |l| l.seq as i64)))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if n != rows.len() as u64 {
            return Err(StoreError(format!(
                "{} of {} task rows changed under the batch; rolled back",
                rows.len() as u64 - n,
                rows.len()
            )));
        }
        Ok(())
    }

    /// Applies the batch in one transaction as the module docs describe; on an error the
    /// transaction rolls back and nothing of the batch is written (except after the time limit
    /// ran out, see [`Self::with_apply_timeout`]).
    async fn apply_batch(&self, ops: &[WriteOp], sealer: Option<&Sealer>) -> StoreResult<Vec<WriteOutcome>> {
        tokio::time::timeout(self.apply_timeout, self.apply_in_transaction(ops, sealer))
            .await
            .map_err(|_| {
                StoreError(format!(
                    "PostgreSQL did not finish the batch within {:?}; abandoned",
                    self.apply_timeout
                ))
            })?
    }

    /// [`Self::apply_batch`] without the time limit: the steps of the module docs, in order.
    async fn apply_in_transaction(
        &self,
        ops: &[WriteOp],
        sealer: Option<&Sealer>,
    ) -> StoreResult<Vec<WriteOutcome>> {
        let mut tx = self.pool.begin().await?;
        Self::lock_event_log(&mut tx).await?;
        let records = new_tasks(ops);
        let inserted = Self::insert_tasks(&mut tx, &records).await?;
        let existing = Self::existing_keys(&mut tx, &lost_keys(&records, &inserted)).await?;
        let holds = crate::debounce::PgHolds::read(&mut tx, ops).await?;
        let ids = touched_ids(ops).into_iter().chain(holds.ids()).collect();
        let touched = Self::lock_tasks(&mut tx, ids, &inserted).await?;
        let (next, chain) = Self::heads(&mut tx).await?;

        let now = now_ms();
        let mut plan = Plan::new(&touched.base, next as u64, chain);
        let mut read = ReadBefore {
            existing: &existing,
            tenants: &touched.tenants,
            usage: Vec::new(),
            calls: Vec::new(),
            holds,
            conn: &mut tx,
        };
        let outcomes = plan.walk(ops, &inserted, now, sealer, &mut read).await?;
        let ReadBefore {
            usage, calls, holds, ..
        } = read;
        crate::late::pg_sql::rewrite(&mut tx, &plan, text).await?;
        Self::write(&mut tx, &plan, &usage, &touched.base).await?;
        crate::llm_calls::pg_insert(&mut tx, &calls).await?;
        holds.write(&mut tx).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// A transaction that changes the audit chain outside a batch (a prune), holding the
    /// event-log lock as sealing does, so it never interleaves with another replica's prune or
    /// with a batch sealing records.
    async fn begin_chain_write(&self) -> StoreResult<((), sqlx::Transaction<'static, sqlx::Postgres>)> {
        let mut tx = self.pool.begin().await?;
        Self::lock_event_log(&mut tx).await?;
        Ok(((), tx))
    }

    /// Takes the event-log lock ([`EVENT_LOG_LOCK`]) for the rest of the transaction.
    async fn lock_event_log(conn: &mut PgConnection) -> StoreResult<()> {
        // A statement of its own: the MAX(cursor) read after it (`heads`) must take its snapshot
        // after the lock is granted, so that it sees the commit of the transaction it waited
        // for. (Not sent with the BEGIN as one simple query: sqlx would not see that statement
        // fail, nor roll back a BEGIN it did not count, and could pool a connection left inside
        // it.)
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EVENT_LOG_LOCK)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// The (tenant, idempotency key) of every insert of `records` the database did not take, as
/// stored; the inserts without a key lost nothing to look up.
fn lost_keys(records: &[&TaskRecord], inserted: &HashSet<String>) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| !inserted.contains(&r.id.to_string()))
        .filter_map(|r| Some((text(&r.tenant), text(r.spec.idempotency_key.as_deref()?))))
        .collect()
}

/// The tasks the batch's transitions, progress reports and usage touch, once each.
fn touched_ids(ops: &[WriteOp]) -> Vec<String> {
    let mut ids = HashSet::new();
    for op in ops {
        match op {
            WriteOp::Transition(t) => ids.insert(t.task_id),
            WriteOp::Progress { task_id, .. } | WriteOp::Usage { task_id, .. } => ids.insert(*task_id),
            _ => false,
        };
    }
    ids.iter().map(TaskId::to_string).collect()
}

/// What a PostgreSQL batch needs while it is planned, all read before planning (under the
/// lock): nothing is read then but the history of a finished task a late transition is for
/// ([`crate::late`]), and usage waits to be written with the rest of the batch.
struct ReadBefore<'a> {
    /// The tasks that hold the idempotency keys of lost inserts, by (tenant, key) as stored.
    existing: &'a HashMap<(String, String), TaskId>,
    /// The tenant of every touched task that exists.
    tenants: &'a HashMap<TaskId, String>,
    /// Usage records to insert, in op order.
    usage: Vec<UsageInsert>,
    /// LLM call records to insert (one per usage report), in op order.
    calls: Vec<crate::llm_calls::CallInsert>,
    /// The debounce holds the batch reads and changes.
    holds: crate::debounce::PgHolds,
    /// The batch's transaction, for [`PlanIo::history`].
    conn: &'a mut PgConnection,
}

impl PlanIo for ReadBefore<'_> {
    async fn existing(&mut self, rec: &TaskRecord, key: &str) -> StoreResult<TaskId> {
        match self.existing.get(&(text(&rec.tenant), text(key))) {
            Some(id) => Ok(*id),
            None => Err(StoreError(format!(
                "task {} conflicts with a stored task but not on its idempotency key",
                rec.id
            ))),
        }
    }

    async fn tenant_of(&mut self, task_id: TaskId) -> StoreResult<Option<String>> {
        Ok(self.tenants.get(&task_id).cloned())
    }

    async fn usage(&mut self, u: UsageRecord<'_>) -> StoreResult<()> {
        self.calls.push(crate::llm_calls::CallInsert::new(&u, text));
        if u.usage.cache_hit {
            // A cached reply used no tokens: its call is recorded, no usage row.
            return Ok(());
        }
        self.usage.push(UsageInsert {
            task_id: u.task_id.to_string(),
            tenant: text(u.tenant),
            model: text(&u.usage.model),
            tokens_in: u.usage.tokens_in as i64,
            tokens_out: u.usage.tokens_out as i64,
            cost_usd: u.cost_usd,
            day: u.day.to_string(),
            at_ms: u.at_ms,
        });
        Ok(())
    }

    async fn history(&mut self, task_id: TaskId) -> StoreResult<Option<crate::plan::Past>> {
        crate::late::pg_sql::history(self.conn, task_id).await
    }

    fn stored_draft(&self, draft: &AuditDraft) -> AuditDraft {
        PgStore::stored_draft(draft)
    }

    async fn supersede(&mut self, hold: crate::plan::Hold<'_>) -> StoreResult<Option<TaskId>> {
        Ok(self.holds.supersede(hold))
    }
}

/// A task row with its children's ids and its usage rows (see [`PgStore::get_task`]).
#[derive(sqlx::FromRow)]
struct TaskWithExtras {
    #[sqlx(flatten)]
    task: crate::rows::TaskRow,
    children: Vec<String>,
    /// `[[tenant, model, tokens_in, tokens_out, cost_usd], ...]` as JSON text, or NULL.
    usage: Option<String>,
}

impl PgStore {
    /// Concurrent reads go through [`crate::reads::Reads`] batches: each statement is a round
    /// trip to the server.
    const READS_IN_BATCHES: bool = true;

    /// One task with its children and usage ([`crate::Store::get`]).
    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        Ok(self.get_tasks(&[id]).await?.pop())
    }

    /// Tasks with their children and usage ([`crate::Store::get_many`]) in one statement. The
    /// usage rows come as one JSON array per task (one aggregate over the `usage_task` index,
    /// no join or sort) and are summed here per tenant and model, ordered by their bytes (as
    /// SQLite orders them; [`crate::Store::usage`] on PostgreSQL uses the database's
    /// collation, which may order mixed case differently).
    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
        type UsageTuple = (String, String, i64, i64, f64);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<TaskWithExtras> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS}, \
             ARRAY(SELECT c.id FROM tasks c WHERE c.parent_id = t.id AND c.tenant = t.tenant \
             ORDER BY c.id) AS children, \
             (SELECT json_agg(json_build_array(u.tenant, u.model, u.tokens_in, u.tokens_out, u.cost_usd)) \
             FROM usage u WHERE u.task_id = t.id)::text AS usage \
             FROM tasks t WHERE t.id = ANY($1::text[])"
        )))
        .bind(ids.iter().map(TaskId::to_string).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let children = row
                .children
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<_, _>>()?;
            let mut record = row.task.into_record(children)?;
            let usage: Vec<UsageTuple> = match &row.usage {
                Some(json) => serde_json::from_str(json)
                    .map_err(|e| StoreError(format!("task {}: unreadable usage rows: {e}", record.id)))?,
                None => Vec::new(),
            };
            let mut sums: std::collections::BTreeMap<(String, String), (u64, u64, f64)> = Default::default();
            for (tenant, model, tokens_in, tokens_out, cost_usd) in usage {
                let s = sums.entry((tenant, model)).or_default();
                s.0 += tokens_in.max(0) as u64;
                s.1 += tokens_out.max(0) as u64;
                s.2 += cost_usd;
            }
            record.usage = sums
                .into_iter()
                .map(
                    |((tenant, model), (tokens_in, tokens_out, cost_usd))| cadre_proto::v1::ModelUsage {
                        tenant,
                        model,
                        tokens_in,
                        tokens_out,
                        cost_usd,
                    },
                )
                .collect();
            out.push(record);
        }
        Ok(out)
    }
}

impl_sql_store!(PgStore, sqlx::Postgres);
crate::workflows::impl_workflow_store!(PgStore, sqlx::Postgres);
crate::debounce::impl_debounce_store!(PgStore, "$1");
crate::pauses::impl_pause_store!(PgStore, sqlx::Postgres);
crate::retention::impl_retention_store!(postgres: PgStore);
crate::revocations::impl_revocation_store!(PgStore, sqlx::Postgres);
crate::schedules::impl_schedule_store!(PgStore, sqlx::Postgres);
crate::audit_prune::impl_audit_prune_store!(PgStore, sqlx::Postgres);
crate::llm_calls::impl_llm_call_store!(PgStore, sqlx::Postgres);
crate::stats::impl_stats_store!(PgStore, sqlx::Postgres);

/// The advisory lock class of the workflow engine's leadership (`cadr` as a 32-bit number; the
/// two-key lock space is apart from the event log's one-key lock).
const LEAD_LOCK_CLASS: i32 = 0x6361_6472;
/// The key of that lock within its class.
const LEAD_LOCK_WORKFLOWS: i32 = 1;

impl PgStore {
    /// Tries the workflow engine's session advisory lock on a connection of its own (taken out
    /// of the pool): held until the lease drops or the session ends, so a replica killed with
    /// -9 gives it up as soon as PostgreSQL notices the connection is gone.
    async fn take_lead(&self) -> StoreResult<Option<crate::workflows::Lease>> {
        let mut conn = self.pool.acquire().await?.detach();
        let (won,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LEAD_LOCK_CLASS)
            .bind(LEAD_LOCK_WORKFLOWS)
            .fetch_one(&mut conn)
            .await?;
        Ok(won.then(|| crate::workflows::Lease::session(conn)))
    }
}
