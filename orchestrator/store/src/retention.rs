//! Retention ([`RetentionStore`]): finished tasks whose time to live has passed, and their
//! deletion with everything that hangs off them (events, usage rows, a workflow instance's
//! engine records and signals). The core's sweeper (`cadre_core::retention`) asks for the
//! expired tasks of one terminal state a batch at a time and deletes each batch in one
//! transaction; `cadre tasks export` reads the same list.
//!
//! What is never deleted, whatever its age:
//! - a task that is not in a terminal state (the DELETE re-checks the state, so a task read
//!   as finished but somehow live by then stays);
//! - a task with an unfinished sub-task (it goes with a later sweep, once they finished);
//! - the task that holds the event log's newest event: event cursors are allocated after the
//!   largest one stored (`MAX(cursor) + 1`), so removing it would hand the same cursors out
//!   again and a watcher resuming after one would miss events. It goes once a newer event
//!   exists.
//!
//! Deletion is serialised with the store's writer: SQLite under the writer's own lock (one
//! writer, no conflicting transactions), PostgreSQL under the event-log lock every batch
//! takes ([`crate::postgres::EVENT_LOG_LOCK`]), so a racing idempotent submit, a task
//! transition or a cursor allocation sees the task either whole or gone. A batch is small
//! (the sweeper's `batch_size`), so the lock is held about as long as one write batch.
//!
//! Both SQL stores implement [`RetentionStore`] with the same statements
//! (`impl_retention_store!`), built once for either database by [`RetentionSql`].

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskState};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::StoreResult;
use crate::rows::UNFINISHED;

/// The terminal states, as the `tasks_finished` index's predicate names them (the queries
/// repeat it word for word so either database can use the index).
pub(crate) const TERMINAL: &str = "('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')";

/// Most tasks one [`RetentionStore::delete_tasks`] or [`RetentionStore::expired_tasks`] call
/// handles.
pub const MAX_BATCH: usize = 10_000;

/// How long one delete may take before it is abandoned (and rolled back).
pub(crate) const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// A finished task the retention policy may delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The task.
    pub id: TaskId,
    /// When it reached its terminal state, Unix milliseconds.
    pub finished_at_ms: i64,
}

/// What one [`RetentionStore::delete_tasks`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Task rows.
    pub tasks: u64,
    /// Their events.
    pub events: u64,
    /// Their usage rows.
    pub usage: u64,
}

impl Deleted {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: Deleted) {
        self.tasks += other.tasks;
        self.events += other.events;
        self.usage += other.usage;
    }
}

#[async_trait]
/// Finding and deleting finished tasks past their time to live.
pub trait RetentionStore: Send + Sync {
    /// Tasks in `state` (a terminal state; any other lists nothing) that finished before
    /// `finished_before_ms` and may be deleted (see the module docs), oldest finish first,
    /// after `after` (a page's last entry; None: from the oldest), at most `limit`
    /// (1 to [`MAX_BATCH`]).
    async fn expired_tasks(
        &self,
        state: TaskState,
        finished_before_ms: i64,
        after: Option<Expired>,
        limit: u32,
    ) -> StoreResult<Vec<Expired>>;

    /// Deletes the tasks of `ids` (at most [`MAX_BATCH`]) that are finished and may be
    /// deleted now, with their events, usage rows and workflow engine records and signals,
    /// in one transaction; the others are left alone. Deleting a task that is gone already
    /// deletes nothing, so replicas sweeping together are safe.
    async fn delete_tasks(&self, ids: &[TaskId]) -> StoreResult<Deleted>;
}

/// Query builders for database `DB` (only used as `RetentionSql::<DB>::...`).
pub(crate) struct RetentionSql<DB>(PhantomData<DB>);

impl<DB> RetentionSql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// `AND` the conditions under which a finished row of `tasks` may go: finished, no
    /// unfinished sub-task, not the holder of the newest event.
    fn push_deletable(qb: &mut QueryBuilder<DB>) {
        qb.push(format!(
            " AND tasks.state IN {TERMINAL} \
             AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = tasks.id AND c.state IN {UNFINISHED}) \
             AND tasks.id <> COALESCE((SELECT e.task_id FROM events e ORDER BY e.cursor DESC LIMIT 1), '')"
        ));
    }

    /// The page of [`RetentionStore::expired_tasks`]: (id, updated_at_ms) rows. `state` must
    /// be terminal (the caller checks): it is written into the statement as a literal, so the
    /// partial index applies whatever plan the database picks.
    pub fn expired(state: TaskState, before_ms: i64, after: Option<Expired>, limit: u32) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT tasks.id, tasks.updated_at_ms FROM tasks WHERE tasks.state IN {TERMINAL} \
             AND tasks.state = '{}' AND tasks.updated_at_ms < ",
            state.as_str()
        ));
        qb.push_bind(before_ms);
        if let Some(a) = after {
            qb.push(" AND (tasks.updated_at_ms, tasks.id) > (")
                .push_bind(a.finished_at_ms)
                .push(", ")
                .push_bind(a.id.to_string())
                .push(")");
        }
        Self::push_deletable(&mut qb);
        qb.push(" ORDER BY tasks.updated_at_ms, tasks.id LIMIT ")
            .push_bind(i64::from(limit));
        qb
    }

    /// Deletes the task rows of `ids` that may go; returns the ids deleted.
    pub fn delete_tasks(ids: &[TaskId]) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("DELETE FROM tasks WHERE tasks.id IN (");
        Self::push_ids(&mut qb, ids.iter().map(TaskId::to_string));
        qb.push(")");
        Self::push_deletable(&mut qb);
        qb.push(" RETURNING tasks.id");
        qb
    }

    /// Deletes the rows of `table` whose `column` is one of `ids` (rows of deleted tasks).
    pub fn delete_rows(table: &str, column: &str, ids: &[String]) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("DELETE FROM {table} WHERE {column} IN ("));
        Self::push_ids(&mut qb, ids.iter().cloned());
        qb.push(")");
        qb
    }

    fn push_ids(qb: &mut QueryBuilder<DB>, ids: impl Iterator<Item = String>) {
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id);
        }
    }
}

/// The rows that hang off a task by its id alone, as (table, column), besides the task row:
/// deleted with it.
pub(crate) const DEPENDENT_ROWS: [(&str, &str); 5] = [
    ("events", "task_id"),
    ("usage", "task_id"),
    ("llm_calls", "task_id"),
    ("workflow_records", "instance"),
    ("workflow_signals", "instance"),
];

/// Checks the arguments every implementation takes.
pub(crate) fn check_batch(len: usize) -> StoreResult<()> {
    if len > MAX_BATCH {
        return Err(crate::StoreError(format!(
            "{len} tasks in one retention batch; at most {MAX_BATCH}"
        )));
    }
    Ok(())
}

/// Implements [`RetentionStore`] for a SQL store type: `sqlite: Type` deletes under the
/// SQLite writer's lock (`cache`), `postgres: Type` under the event-log lock
/// (`lock_event_log`). The statements are [`RetentionSql`]'s.
macro_rules! impl_retention_store {
    (sqlite: $store:ty) => {
        impl $store {
            /// [`crate::retention::RetentionStore::delete_tasks`] under the writer's lock: no
            /// write batch runs meanwhile.
            async fn delete_expired(&self, ids: &[cadre_proto::TaskId]) -> $crate::StoreResult<$crate::retention::Deleted> {
                let _writer = self.cache.lock().await;
                let mut tx = self.pool.begin().await?;
                let deleted = $crate::retention::impl_retention_store!(@delete tx, sqlx::Sqlite, ids);
                tx.commit().await?;
                Ok(deleted)
            }
        }
        $crate::retention::impl_retention_store!(@trait $store, sqlx::Sqlite);
    };
    (postgres: $store:ty) => {
        impl $store {
            /// [`crate::retention::RetentionStore::delete_tasks`] under the event-log lock: no
            /// write batch of any replica runs meanwhile.
            async fn delete_expired(&self, ids: &[cadre_proto::TaskId]) -> $crate::StoreResult<$crate::retention::Deleted> {
                let mut tx = self.pool.begin().await?;
                Self::lock_event_log(&mut tx).await?;
                let deleted = $crate::retention::impl_retention_store!(@delete tx, sqlx::Postgres, ids);
                tx.commit().await?;
                Ok(deleted)
            }
        }
        $crate::retention::impl_retention_store!(@trait $store, sqlx::Postgres);
    };
    (@delete $tx:ident, $db:ty, $ids:ident) => {{
        use $crate::retention::RetentionSql;
        // The task rows first: the statement takes the write lock at once (SQLite), and
        // what it deleted decides the rest.
        let gone: Vec<String> = RetentionSql::<$db>::delete_tasks($ids)
            .build_query_scalar()
            .fetch_all(&mut *$tx)
            .await?;
        let mut deleted = $crate::retention::Deleted {
            tasks: gone.len() as u64,
            ..Default::default()
        };
        if !gone.is_empty() {
            for (table, column) in $crate::retention::DEPENDENT_ROWS {
                let n = RetentionSql::<$db>::delete_rows(table, column, &gone)
                    .build()
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
                match table {
                    "events" => deleted.events = n,
                    "usage" => deleted.usage = n,
                    _ => {}
                }
            }
        }
        deleted
    }};
    (@trait $store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::retention::RetentionStore for $store {
            async fn expired_tasks(
                &self,
                state: cadre_proto::TaskState,
                finished_before_ms: i64,
                after: Option<$crate::retention::Expired>,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::retention::Expired>> {
                $crate::retention::check_batch(limit as usize)?;
                if !state.is_terminal() || limit == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<(String, i64)> =
                    $crate::retention::RetentionSql::<$db>::expired(state, finished_before_ms, after, limit)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|(id, at)| {
                        Ok($crate::retention::Expired {
                            id: $crate::rows::parse_id(&id)?,
                            finished_at_ms: at,
                        })
                    })
                    .collect()
            }

            async fn delete_tasks(
                &self,
                ids: &[cadre_proto::TaskId],
            ) -> $crate::StoreResult<$crate::retention::Deleted> {
                $crate::retention::check_batch(ids.len())?;
                if ids.is_empty() {
                    return Ok(Default::default());
                }
                tokio::time::timeout($crate::retention::DELETE_TIMEOUT, self.delete_expired(ids))
                    .await
                    .map_err(|_| {
                        $crate::StoreError(format!(
                            "retention: deleting {} tasks took over {:?}; abandoned",
                            ids.len(),
                            $crate::retention::DELETE_TIMEOUT
                        ))
                    })?
            }
        }
    };
}
pub(crate) use impl_retention_store;
