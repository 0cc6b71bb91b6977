//! Debounce in tier 0 (`spec.debounce_key`, `spec.debounce_window_ms`): trailing-edge, per
//! tenant and key.
//!
//! A debounced task is stored QUEUED like any other but not dispatched: it *holds* its key
//! (see [`cadre_store::debounce`]) until its window (from its submit) has passed. A submit
//! with the same tenant and key meanwhile replaces it: intake's insert batch carries a
//! [`WriteOp::Supersede`], so the holder is CANCELLED (`debounced: replaced by <new id>`,
//! audited as `task.cancel` by the submitter) in the transaction that stores the new task,
//! which then holds the key for its own window. Once a window has passed, the debouncer
//! releases the hold ([`cadre_store::DebounceStore::release_debounce`]) and dispatches the
//! task only if the release won; a released task is no longer replaceable (a later submit
//! starts a new hold). The store decides which of a replacement and a release wins, so
//! several tier-0 replicas on one PostgreSQL store agree.
//!
//! Each replica's debouncer ([`spawn`], started by the binary after the node; its timers in
//! [`due::Debouncer`]) wakes for the holds it stored itself at their window's end, and sweeps
//! the store every [`SWEEP_EVERY`] for holds whose window passed (those of a replica that
//! stopped, or of this one before a restart). Recovery and the NATS republish at start
//! skip held tasks: the debouncer dispatches them, never before their window ends.
//!
//! An idempotent resubmit (a known idempotency key) returns the existing task before any of
//! this: it replaces nothing. A workflow instance cannot be debounced (INVALID_ARGUMENT).

use std::sync::Arc;
use std::time::Duration;

use cadre_proto::clock::now_ms;
use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_store::chain::AuditDraft;
use cadre_store::debounce::REPLACED_BY;
use cadre_store::{Release, WriteOp, WriteOutcome};
use cadre_supervisors::Transition;

use crate::auth::Principal;
use crate::error::Result;
use crate::node::Node;

pub(crate) mod due;

/// How often each replica sweeps the store for holds whose window has passed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Most holds one sweep reads (soonest first; the next sweep takes the rest).
const SWEEP_LIMIT: u32 = 512;

/// Refuses a debounced workflow instance: no supervisor dispatches one, so it could not be
/// held.
pub(crate) fn refuse_for_instance(spec: &cadre_proto::TaskSpec) -> Result<()> {
    match spec.debounce {
        Some(_) => Err(cadre_proto::SpecError::invalid(
            "spec.debounce_key",
            "a workflow instance cannot be debounced",
        )
        .into()),
        None => Ok(()),
    }
}

impl Node {
    /// Stores a debounced task with its `task.submit` act, replacing the holder of its key
    /// (CANCELLED, its act `task.cancel` by `p`), in one transaction; the insert's outcome.
    pub(crate) async fn insert_debounced(
        &self,
        p: &Principal,
        record: &TaskRecord,
        act: AuditDraft,
    ) -> Result<WriteOutcome> {
        let Some(d) = &record.spec.debounce else {
            return Ok(self.writer.insert_audited(record.clone(), act).await?);
        };
        let task_id = record.id;
        let until_ms = record.created_at_ms + d.window.as_millis() as i64;
        let cancel = crate::audit::draft(
            Some(p),
            "task.cancel",
            "",
            "ok",
            &format!("{REPLACED_BY}{task_id}"),
        );
        let writes = vec![
            WriteOp::Insert(Box::new(record.clone())),
            WriteOp::AuditOfInsert {
                task_id,
                draft: Box::new(act),
            },
            WriteOp::Supersede {
                task_id,
                tenant: record.tenant.clone(),
                key: d.key.clone(),
                until_ms,
            },
            WriteOp::AuditOfSupersede {
                task_id,
                draft: Box::new(cancel),
            },
        ];
        let mut outcomes = self
            .writer
            .send_together(writes.into_iter().map(|w| (w, None)).collect())
            .await?;
        Ok(outcomes.swap_remove(0))
    }

    /// After a stored task's insert: true if it is debounced, so it waits for its window (the
    /// debouncer dispatches it), false if intake dispatches it now.
    pub(crate) fn held(&self, record: &TaskRecord) -> bool {
        let Some(d) = &record.spec.debounce else {
            return false;
        };
        let until_ms = record.created_at_ms + d.window.as_millis() as i64;
        self.debouncer.expect(record.id, until_ms);
        true
    }

    /// Releases each of `ids` and dispatches those whose release won.
    async fn release(&self, ids: Vec<TaskId>) {
        for id in ids {
            match self.store.release_debounce(id).await {
                Ok(Release::Released) => self.dispatch_released(id).await,
                Ok(Release::Free | Release::Gone) => {}
                Err(e) => {
                    // Still held: the next sweep tries again.
                    tracing::warn!(task = %id, error = %e, "cannot release a debounced task");
                }
            }
        }
    }

    /// Dispatches a task whose hold this replica released, as intake would have.
    async fn dispatch_released(&self, id: TaskId) {
        let record = match self.get_record(id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(task = %id, error = %e, "released debounced task unreadable; it waits for a restart");
                return;
            }
        };
        let routes = self.router.routes();
        let queued = routes
            .resolve(&record.spec.task_type)
            .and_then(|route| self.router.queued(&record, route));
        match queued {
            Some(queued) => self.bus.dispatch(&record, queued),
            None => {
                let why = format!(
                    "no route or executor for {} at the end of its debounce window",
                    record.spec.task_type
                );
                let t = Transition::new(id, TaskState::Failed, record.attempt, why);
                if let Err(e) = self.writer.transition(t).await {
                    tracing::error!(task = %id, error = %e, "cannot fail a debounced task");
                }
            }
        }
    }

    /// One sweep of the store: releases the holds whose window has passed and remembers the
    /// others' ends.
    async fn sweep(&self, now: i64) {
        match self.store.held_debounces(SWEEP_LIMIT).await {
            Ok(held) => {
                let mut due = Vec::new();
                for (id, until) in held {
                    if until <= now {
                        due.push(id);
                    } else {
                        self.debouncer.expect(id, until);
                    }
                }
                self.release(due).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read debounced tasks"),
        }
    }
}

/// Starts `node`'s debouncer loop (see the module docs); it holds only a weak reference and
/// ends with the node.
pub fn spawn(node: &Arc<Node>) {
    let weak = Arc::downgrade(node);
    tokio::spawn(async move {
        let mut next_sweep = 0;
        loop {
            let Some(node) = weak.upgrade() else { return };
            let now = now_ms();
            if now >= next_sweep {
                node.sweep(now).await;
                next_sweep = now + SWEEP_EVERY.as_millis() as i64;
            }
            let (due, next) = node.debouncer.take_due(now_ms());
            node.release(due).await;
            let wake_at = next.map_or(next_sweep, |n| n.min(next_sweep));
            let wait = Duration::from_millis((wake_at - now_ms()).max(0) as u64);
            let wake = node.debouncer.wake.clone();
            drop(node);
            // A hold added meanwhile has notified (Notify keeps one permit).
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        }
    });
}
