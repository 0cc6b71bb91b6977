//! The retention sweeper every tier-0 replica runs (roles `all` and `orchestrator`). Every
//! `[retention] interval_secs` it reads the config in force and, for each terminal state with
//! a time to live, deletes the tasks that finished longer ago than that, `batch_size` at a
//! time, oldest first; then, with `audit_secs`, prunes the audit records sealed longer ago.
//!
//! Each batch is one transaction in the store (which holds the writer's lock while it runs,
//! see [`cadre_store::retention`]); after each, the sweeper waits as long as the batch took
//! (at least [`MIN_PAUSE`]), so write batches from intake and the supervisors always get at
//! least half the store's time while a large backlog is deleted.
//!
//! Replicas sharing one PostgreSQL database sweep independently: a task another replica
//! deleted first is simply not deleted again (the store counts only what it removed), and a
//! batch that removed nothing ends that state's sweep until the next interval. Errors are
//! logged and the next sweep tries again.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cadre_proto::TaskState;
use cadre_proto::clock::now_ms;
use cadre_store::Deleted;
use cadre_store::chain::Sealer;
use tokio_util::sync::CancellationToken;

use super::{RetentionConfig, TERMINAL_STATES};
use crate::error::Result;
use crate::node::Node;

/// The shortest pause between two batches.
pub const MIN_PAUSE: Duration = Duration::from_millis(10);

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Tasks, their events and usage rows.
    pub tasks: Deleted,
    /// Audit records.
    pub audit: u64,
}

/// Starts the sweeper on `node` until `shutdown` (or until the node is dropped). `sealer`
/// signs the checkpoints of audit prunes (the node's key, as for the records it seals).
pub fn spawn(node: &Arc<Node>, sealer: Sealer, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Node> = Arc::downgrade(node);
    tokio::spawn(async move {
        loop {
            let Some(node) = weak.upgrade() else { return };
            let wait = node.config().retention.interval();
            drop(node);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let Some(node) = weak.upgrade() else { return };
            let config = node.config().retention;
            if config.enabled() {
                node.retention_sweep(&config, &sealer, &shutdown).await;
            }
        }
    })
}

impl Node {
    /// One sweep with `config`, as of now: logs what it deleted and any error.
    pub async fn retention_sweep(
        &self,
        config: &RetentionConfig,
        sealer: &Sealer,
        stop: &CancellationToken,
    ) -> Swept {
        let now = now_ms();
        let mut swept = Swept::default();
        for state in TERMINAL_STATES {
            let Some(ttl) = config.task_ttl(state) else {
                continue;
            };
            let before = now - ttl.as_millis() as i64;
            match self
                .sweep_expired_tasks(state, before, config.batch_size, stop)
                .await
            {
                Ok(d) => swept.tasks.add(d),
                Err((d, e)) => {
                    swept.tasks.add(d);
                    tracing::warn!(state = state.as_str(), error = %e, "retention: cannot delete expired tasks");
                }
            }
        }
        if let Some(ttl) = config.audit_ttl() {
            let before = now - ttl.as_millis() as i64;
            match self.sweep_audit(before, config.batch_size, sealer, stop).await {
                Ok(n) => swept.audit = n,
                Err((n, e)) => {
                    swept.audit = n;
                    tracing::warn!(error = %e, "retention: cannot prune the audit chain");
                }
            }
        }
        if swept != Swept::default() {
            tracing::info!(
                tasks = swept.tasks.tasks,
                events = swept.tasks.events,
                usage = swept.tasks.usage,
                audit = swept.audit,
                "retention: deleted what outlived its time to live"
            );
        }
        swept
    }

    /// Deletes the tasks finished in `state` before `before` (Unix ms), `batch` at a time;
    /// on an error, what was deleted before it and the error.
    async fn sweep_expired_tasks(
        &self,
        state: TaskState,
        before: i64,
        batch: u32,
        stop: &CancellationToken,
    ) -> std::result::Result<Deleted, (Deleted, crate::error::Error)> {
        let mut total = Deleted::default();
        while !stop.is_cancelled() {
            let started = Instant::now();
            let step: Result<(usize, Deleted)> = async {
                let page = self.store.expired_tasks(state, before, None, batch).await?;
                let ids: Vec<_> = page.iter().map(|e| e.id).collect();
                Ok((page.len(), self.store.delete_tasks(&ids).await?))
            }
            .await;
            let (found, deleted) = step.map_err(|e| (total, e))?;
            for (kind, n) in [
                ("tasks", deleted.tasks),
                ("events", deleted.events),
                ("usage", deleted.usage),
            ] {
                metrics::counter!("cadre_retention_deleted_total", "kind" => kind).increment(n);
            }
            total.add(deleted);
            // A short page was the last; a page another replica emptied first ends this
            // state's sweep (it is sweeping the same tasks).
            if found < batch as usize || deleted.tasks == 0 {
                break;
            }
            tokio::time::sleep(started.elapsed().max(MIN_PAUSE)).await;
        }
        Ok(total)
    }

    /// Prunes the audit records sealed before `before` (Unix ms), `batch` at a time, behind a
    /// checkpoint signed by `sealer`; on an error, what was pruned before it and the error.
    async fn sweep_audit(
        &self,
        before: i64,
        batch: u32,
        sealer: &Sealer,
        stop: &CancellationToken,
    ) -> std::result::Result<u64, (u64, crate::error::Error)> {
        let mut total = 0;
        while !stop.is_cancelled() {
            let started = Instant::now();
            let n = self
                .store
                .prune_audit(before, batch, sealer)
                .await
                .map_err(|e| (total, e.into()))?;
            metrics::counter!("cadre_retention_deleted_total", "kind" => "audit").increment(n);
            total += n;
            if n < u64::from(batch) {
                break;
            }
            tokio::time::sleep(started.elapsed().max(MIN_PAUSE)).await;
        }
        Ok(total)
    }
}
