//! Pruning the start of the audit chain ([`AuditPruneStore`]): the oldest records go, and a
//! signed [`Checkpoint`] naming the last one removed takes their place (one row in
//! `audit_checkpoint`), so `cadre audit verify` still checks the rest from there
//! ([`crate::chain::verify_from`]).
//!
//! A prune runs in one transaction that takes the same lock sealing takes (PostgreSQL's
//! event-log lock; on SQLite the single writer's lock), so two replicas pruning, or a prune
//! and a batch sealing records, never interleave. It deletes only a prefix of the chain (the
//! oldest seqs) and never the newest record, so the chain's end ([`crate::Store::audit_tail`])
//! stays where it was; should the table ever be empty, the end is the checkpoint. Before it
//! deletes anything it checks that the records it removes follow the current checkpoint (or
//! start at record 1) and link up and match their hashes, with the first record kept after
//! them, so a checkpoint never stands for a chain that was already broken: such a prune fails
//! and removes nothing.
//!
//! Both SQL stores implement [`AuditPruneStore`] with the same statements
//! (`impl_audit_prune_store!`); each store supplies `begin_chain_write`, its transaction under
//! that lock.

use std::marker::PhantomData;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::chain::{AuditRecord, Checkpoint};
use crate::error::{StoreError, StoreResult};
use crate::rows::AUDIT_COLUMNS;

/// `(seq, hash)` of the chain's end: its last record, or the checkpoint when no record is left
/// (a prune never removes the last record, so only a tampered table gets there).
pub(crate) const CHAIN_END: &str = "SELECT seq, hash FROM (SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) AS a \
     UNION ALL SELECT seq, hash FROM audit_checkpoint ORDER BY seq DESC LIMIT 1";

/// Most records one prune removes, whatever `limit` asks (a prune holds the sealing lock).
pub const MAX_PRUNE_BATCH: u32 = 10_000;

#[async_trait]
/// Removing the oldest audit records behind a signed checkpoint.
pub trait AuditPruneStore: Send + Sync {
    /// Deletes up to `limit` of the oldest audit records sealed before `before_ms` (never the newest record), and in the same transaction replaces the checkpoint with one signed by `sealer` naming the last record deleted. Returns how many were deleted.
    async fn prune_audit(
        &self,
        before_ms: i64,
        limit: u32,
        sealer: &crate::chain::Sealer,
    ) -> StoreResult<u64>;
    /// The checkpoint that stands for the pruned start of the chain, if any was pruned.
    async fn audit_checkpoint(&self) -> StoreResult<Option<crate::chain::Checkpoint>>;
}

/// A stored checkpoint row: (seq, hash, at_ms, signature, signer).
pub(crate) type CheckpointRow = (i64, String, i64, String, String);

/// The checkpoint of a stored row.
pub(crate) fn checkpoint_of((seq, hash, at_ms, signature, signer): CheckpointRow) -> Checkpoint {
    Checkpoint {
        seq: seq.max(0) as u64,
        hash,
        at_ms,
        signature,
        signer,
    }
}

/// How many of `oldest` (the chain's first records in seq order, one more than the prune may
/// remove) to remove: the prefix sealed before `before_ms`, never the last one given (the
/// newest record when fewer were loaded, else the first that stays). The records removed and
/// the one after them must follow `checkpoint` and link up; if they do not, nothing is pruned.
pub(crate) fn prunable(
    checkpoint: Option<&Checkpoint>,
    oldest: &[AuditRecord],
    before_ms: i64,
) -> StoreResult<usize> {
    let candidates = &oldest[..oldest.len().saturating_sub(1)];
    let n = candidates
        .iter()
        .take_while(|r| r.draft.at_ms < before_ms)
        .count();
    if n > 0 {
        crate::chain::check_links(checkpoint, &oldest[..=n]).map_err(|t| {
            StoreError(format!(
                "not pruning the audit chain, it is broken: {t} (run `cadre audit verify`)"
            ))
        })?;
    }
    Ok(n)
}

/// Query builders for database `DB` (only used as `PruneSql::<DB>::...`).
pub(crate) struct PruneSql<DB>(PhantomData<DB>);

impl<DB> PruneSql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// The checkpoint row, if any.
    pub fn checkpoint() -> QueryBuilder<DB> {
        QueryBuilder::new("SELECT seq, hash, at_ms, signature, signer FROM audit_checkpoint WHERE id = 1")
    }

    /// The first `limit` (at most [`MAX_PRUNE_BATCH`]) records of the chain, and the one after
    /// them.
    pub fn oldest(limit: u32) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq LIMIT "));
        qb.push_bind(i64::from(limit.min(MAX_PRUNE_BATCH)) + 1);
        qb
    }

    /// Deletes the records up to `seq`.
    pub fn delete_through(seq: u64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("DELETE FROM audit WHERE seq <= ");
        qb.push_bind(seq as i64);
        qb
    }

    /// Stores `c` as the checkpoint, replacing the one before.
    pub fn put(c: &Checkpoint) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO audit_checkpoint (id, seq, hash, at_ms, signature, signer) VALUES (1, ",
        );
        qb.push_bind(c.seq as i64)
            .push(", ")
            .push_bind(c.hash.clone())
            .push(", ")
            .push_bind(c.at_ms)
            .push(", ")
            .push_bind(c.signature.clone())
            .push(", ")
            .push_bind(c.signer.clone())
            .push(
                ") ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
                 at_ms = excluded.at_ms, signature = excluded.signature, signer = excluded.signer",
            );
        qb
    }
}

/// Implements [`AuditPruneStore`] for a SQL store type with the [`PruneSql`] statements, on
/// its `pool` (of database `$db`) and in the transaction its `begin_chain_write` opens under
/// the sealing lock.
macro_rules! impl_audit_prune_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::audit_prune::AuditPruneStore for $store {
            async fn prune_audit(
                &self,
                before_ms: i64,
                limit: u32,
                sealer: &$crate::chain::Sealer,
            ) -> $crate::StoreResult<u64> {
                use $crate::audit_prune::{CheckpointRow, PruneSql, checkpoint_of, prunable};
                use $crate::rows::AuditRow;
                if limit == 0 {
                    return Ok(0);
                }
                let (_writer, mut tx) = self.begin_chain_write().await?;
                let row: Option<CheckpointRow> = PruneSql::<$db>::checkpoint()
                    .build_query_as()
                    .fetch_optional(&mut *tx)
                    .await?;
                let checkpoint = row.map(checkpoint_of);
                let rows: Vec<AuditRow> = PruneSql::<$db>::oldest(limit)
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
                let oldest: Vec<_> = rows.into_iter().map(AuditRow::into_record).collect();
                let n = prunable(checkpoint.as_ref(), &oldest, before_ms)?;
                let Some(last) = n.checked_sub(1).map(|i| &oldest[i]) else {
                    return Ok(0);
                };
                PruneSql::<$db>::delete_through(last.seq)
                    .build()
                    .execute(&mut *tx)
                    .await?;
                PruneSql::<$db>::put(&sealer.checkpoint(last))
                    .build()
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(n as u64)
            }

            async fn audit_checkpoint(&self) -> $crate::StoreResult<Option<$crate::chain::Checkpoint>> {
                let row: Option<$crate::audit_prune::CheckpointRow> =
                    $crate::audit_prune::PruneSql::<$db>::checkpoint()
                        .build_query_as()
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map($crate::audit_prune::checkpoint_of))
            }
        }
    };
}
pub(crate) use impl_audit_prune_store;
