//! Debounce in the store ([`cadre_proto::Debounce`]): which task holds a tenant's debounce key,
//! and the two writes that end a hold.
//!
//! A debounced task is stored QUEUED like any other and then *holds* its key (the
//! `debounce_key` and `debounce_until_ms` columns, NULL for every other task; a unique index
//! on `(tenant, debounce_key)` allows one holder per key) until one of:
//!
//! - **replaced**: a newer submit with the same tenant and key commits [`WriteOp::Supersede`]
//!   in the batch that inserts it. In that one transaction the holder's hold is cleared, it is
//!   CANCELLED (`debounced: replaced by <new id>`) and the new task takes the hold;
//! - **released**: tier 0 calls [`DebounceStore::release_debounce`] once the window has
//!   passed, and dispatches the task only if the call answers [`Release::Released`].
//!
//! Both clear the hold under the same row (PostgreSQL: the batch reads the holder `FOR
//! UPDATE`, under the event-log lock; SQLite: one writer at a time), so exactly one of them
//! wins: a released task is never replaced, and a replaced task is never dispatched.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskState};
use cadre_supervisors::Transition;

use crate::chain::{AuditDraft, Sealer};
use crate::plan::{Hold, Plan, PlanIo};
use crate::rows::parse_id;
use crate::{StoreResult, WriteOp, WriteOutcome};

/// How the CANCELLED message of a replaced task starts (then the replacing task's id).
pub const REPLACED_BY: &str = "debounced: replaced by ";

/// What [`DebounceStore::release_debounce`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The task held its key and is QUEUED: the hold is over, it may be dispatched (by this
    /// caller only).
    Released,
    /// The task is unfinished but held nothing (released earlier, or never debounced).
    Free,
    /// The task is finished (replaced or cancelled) or unknown; a stale hold was cleared.
    Gone,
}

/// Holds of debounce keys (see the module docs). Implemented by both stores.
#[async_trait]
pub trait DebounceStore: Send + Sync {
    /// Tasks that hold a debounce key, with when their window ends, soonest first, at most
    /// `limit`.
    async fn held_debounces(&self, limit: u32) -> StoreResult<Vec<(TaskId, i64)>>;
    /// Ends task `id`'s hold, if it has one (see [`Release`]).
    async fn release_debounce(&self, id: TaskId) -> StoreResult<Release>;
}

/// [`Release`] from the state the release cleared a hold of (None: it cleared none) and, then,
/// the task's state (None: no such task).
pub(super) fn release_of(cleared: Option<String>, state: Option<String>) -> Release {
    let unfinished = |s: &str| matches!(s, "QUEUED" | "RUNNING" | "RETRYING");
    match (cleared, state) {
        (Some(s), _) if s == "QUEUED" => Release::Released,
        (None, Some(s)) if unfinished(&s) => Release::Free,
        _ => Release::Gone,
    }
}

/// Parses `(id, until_ms)` rows.
pub(super) fn held_rows(rows: Vec<(String, Option<i64>)>) -> StoreResult<Vec<(TaskId, i64)>> {
    rows.into_iter()
        .map(|(id, until)| Ok((parse_id(&id)?, until.unwrap_or(0))))
        .collect()
}

/// Implements [`DebounceStore`] for a store with a `pool` field, `$p1` being its first
/// placeholder (invoked where the store is defined, which can see the pool).
macro_rules! impl_debounce_store {
    ($store:ty, $p1:literal) => {
        #[async_trait::async_trait]
        impl $crate::debounce::DebounceStore for $store {
            async fn held_debounces(
                &self,
                limit: u32,
            ) -> $crate::StoreResult<Vec<(cadre_proto::TaskId, i64)>> {
                let rows: Vec<(String, Option<i64>)> = sqlx::query_as(concat!(
                    "SELECT id, debounce_until_ms FROM tasks WHERE debounce_key IS NOT NULL \
                     ORDER BY debounce_until_ms LIMIT ",
                    $p1
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                $crate::debounce::held_rows(rows)
            }

            async fn release_debounce(
                &self,
                id: cadre_proto::TaskId,
            ) -> $crate::StoreResult<$crate::debounce::Release> {
                let cleared: Option<String> = sqlx::query_scalar(concat!(
                    "UPDATE tasks SET debounce_key = NULL, debounce_until_ms = NULL WHERE id = ",
                    $p1,
                    " AND debounce_key IS NOT NULL RETURNING state"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                let state = match cleared {
                    Some(_) => None,
                    None => {
                        sqlx::query_scalar(concat!("SELECT state FROM tasks WHERE id = ", $p1))
                            .bind(id.to_string())
                            .fetch_optional(&self.pool)
                            .await?
                    }
                };
                Ok($crate::debounce::release_of(cleared, state))
            }
        }
    };
}
pub(super) use impl_debounce_store;

impl Plan<'_> {
    /// Plans a [`WriteOp::Supersede`] (the holder of the key CANCELLED, remembered in
    /// `replaced` by the new task's id) or a [`WriteOp::AuditOfSupersede`] (sealed with the
    /// replaced task as its target).
    pub(super) async fn debounce(
        &mut self,
        op: &WriteOp,
        inserted: &HashSet<String>,
        now: i64,
        sealer: Option<&Sealer>,
        io: &mut impl PlanIo,
        replaced: &mut HashMap<TaskId, TaskId>,
    ) -> StoreResult<WriteOutcome> {
        match op {
            WriteOp::Supersede {
                task_id,
                tenant,
                key,
                until_ms,
            } if inserted.contains(&task_id.to_string()) => {
                let hold = Hold {
                    task_id: *task_id,
                    tenant,
                    key,
                    until_ms: *until_ms,
                };
                let Some(old) = io.supersede(hold).await? else {
                    return Ok(WriteOutcome::Ignored);
                };
                // A stale hold of a task that finished otherwise (cancelled by request) is
                // only cleared.
                let Some(live) = self.current(old).filter(|l| l.state == TaskState::Queued) else {
                    return Ok(WriteOutcome::Ignored);
                };
                let why = format!("{REPLACED_BY}{task_id}");
                let outcome = self.transition(
                    &Transition::new(old, TaskState::Cancelled, live.attempt, why),
                    now,
                );
                if matches!(outcome, WriteOutcome::Event { .. }) {
                    replaced.insert(*task_id, old);
                }
                Ok(outcome)
            }
            WriteOp::AuditOfSupersede { task_id, draft } => match replaced.get(task_id) {
                Some(old) => {
                    let draft = AuditDraft {
                        target: old.to_string(),
                        ..(**draft).clone()
                    };
                    Ok(self.audit(io.stored_draft(&draft), sealer))
                }
                None => Ok(WriteOutcome::Ignored),
            },
            _ => Ok(WriteOutcome::Ignored),
        }
    }
}

/// SQLite's [`PlanIo::supersede`], in the batch's transaction (which holds the write lock
/// from its first insert, so no release interleaves): clears the key's hold, returning its
/// holder, and gives it to the new task.
pub(super) async fn sqlite_supersede(
    conn: &mut sqlx::SqliteConnection,
    hold: Hold<'_>,
) -> StoreResult<Option<TaskId>> {
    let old: Option<String> = sqlx::query_scalar(
        "UPDATE tasks SET debounce_key = NULL, debounce_until_ms = NULL \
         WHERE tenant = ? AND debounce_key = ? RETURNING id",
    )
    .bind(hold.tenant)
    .bind(hold.key)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query("UPDATE tasks SET debounce_key = ?, debounce_until_ms = ? WHERE id = ?")
        .bind(hold.key)
        .bind(hold.until_ms)
        .bind(hold.task_id.to_string())
        .execute(&mut *conn)
        .await?;
    old.as_deref().map(parse_id).transpose()
}

/// Text as PostgreSQL stores it (NUL as U+FFFD, as `postgres.rs` writes every text column).
fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// A PostgreSQL batch's holds: the holders of the keys its supersedes name, read and
/// row-locked before planning (under the event-log lock), then changed as the plan walks and
/// written with the batch.
#[derive(Default)]
pub(super) struct PgHolds {
    /// The holder of each (tenant, key) as the batch has left it so far.
    holders: HashMap<(String, String), TaskId>,
    /// The batch's new holders, with when their windows end.
    until: HashMap<TaskId, i64>,
    /// Tasks whose hold the batch ends.
    cleared: Vec<TaskId>,
}

impl PgHolds {
    /// Reads and locks (`FOR UPDATE`, in id order) the holders of the keys `ops` supersede.
    pub(super) async fn read(conn: &mut sqlx::PgConnection, ops: &[WriteOp]) -> StoreResult<Self> {
        let keys: HashSet<(String, String)> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Supersede { tenant, key, .. } => Some((pg_text(tenant), pg_text(key))),
                _ => None,
            })
            .collect();
        let mut holds = PgHolds::default();
        if keys.is_empty() {
            return Ok(holds);
        }
        let (tenants, keys): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT t.tenant, t.debounce_key, t.id FROM tasks t \
             JOIN UNNEST($1::text[], $2::text[]) AS v(tenant, key) \
             ON t.tenant = v.tenant AND t.debounce_key = v.key \
             ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(tenants)
        .bind(keys)
        .fetch_all(&mut *conn)
        .await?;
        for (tenant, key, id) in rows {
            holds.holders.insert((tenant, key), parse_id(&id)?);
        }
        Ok(holds)
    }

    /// The holders read, to lock and plan with the batch's other tasks.
    pub(super) fn ids(&self) -> impl Iterator<Item = String> + '_ {
        self.holders.values().map(TaskId::to_string)
    }

    /// [`PlanIo::supersede`] over what was read.
    pub(super) fn supersede(&mut self, hold: Hold<'_>) -> Option<TaskId> {
        let old = self
            .holders
            .insert((pg_text(hold.tenant), pg_text(hold.key)), hold.task_id);
        self.until.insert(hold.task_id, hold.until_ms);
        if let Some(old) = old {
            self.until.remove(&old);
            self.cleared.push(old);
        }
        old
    }

    /// Writes the holds the batch changed: ended ones cleared first, then its new holders'
    /// set (the unique index fails the batch if another holder appeared meanwhile, which the
    /// event-log lock rules out).
    pub(super) async fn write(&self, conn: &mut sqlx::PgConnection) -> StoreResult<()> {
        if !self.cleared.is_empty() {
            sqlx::query(
                "UPDATE tasks SET debounce_key = NULL, debounce_until_ms = NULL WHERE id = ANY($1::text[])",
            )
            .bind(self.cleared.iter().map(TaskId::to_string).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let held: Vec<(&(String, String), &TaskId)> = self
            .holders
            .iter()
            .filter(|(_, id)| self.until.contains_key(id))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE tasks AS t SET debounce_key = v.key, debounce_until_ms = v.until_ms \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS v(id, key, until_ms) WHERE t.id = v.id",
        )
        .bind(held.iter().map(|(_, id)| id.to_string()).collect::<Vec<_>>())
        .bind(held.iter().map(|((_, key), _)| key.clone()).collect::<Vec<_>>())
        .bind(held.iter().map(|(_, id)| self.until[*id]).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_wins_only_over_a_queued_holder() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(release_of(s("QUEUED"), None), Release::Released);
        assert_eq!(release_of(s("CANCELLED"), None), Release::Gone, "a stale hold");
        assert_eq!(release_of(None, s("QUEUED")), Release::Free);
        assert_eq!(release_of(None, s("RUNNING")), Release::Free);
        assert_eq!(release_of(None, s("CANCELLED")), Release::Gone);
        assert_eq!(release_of(None, None), Release::Gone);
    }
}
