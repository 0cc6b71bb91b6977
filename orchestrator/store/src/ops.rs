//! What a batch writes ([`WriteOp`]) and what each write did ([`WriteOutcome`]).

use cadre_proto::{TaskEvent, TaskId, TaskRecord};
use cadre_supervisors::Transition;

use crate::chain::{AuditDraft, ChainTail};

/// A write, applied in order within its batch.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// A new task (state QUEUED); its QUEUED event is written with it.
    Insert(Box<TaskRecord>),
    /// A state change decided by a supervisor.
    Transition(Transition),
    /// An audit act: the store seals it into the chain inside the batch's transaction, in
    /// commit order, with the [`crate::chain::Sealer`] passed to [`crate::Store::apply`] (without one it is
    /// [`WriteOutcome::Ignored`]).
    AuditDraft(Box<AuditDraft>),
    /// The audit act of an insert in the same batch (before it): sealed like
    /// [`WriteOp::AuditDraft`] if that insert stored task `task_id`, else
    /// [`WriteOutcome::Ignored`] (the insert lost an idempotency race). So an accepted task and
    /// its audit record are committed in one transaction.
    AuditOfInsert {
        /// The task the insert stores.
        task_id: TaskId,
        /// The act.
        draft: Box<AuditDraft>,
    },
    /// Tokens a task used on one model, with their cost at the configured prices.
    Usage {
        /// The task.
        task_id: TaskId,
        /// Model and tokens.
        usage: cadre_agents::Usage,
        /// USD.
        cost_usd: f64,
        /// When it was reported, Unix milliseconds.
        at_ms: i64,
    },
    /// A progress report of a running attempt (dropped if the attempt is no longer running).
    Progress {
        /// The task.
        task_id: TaskId,
        /// The attempt reporting.
        attempt: u32,
        /// In [0, 1].
        fraction: f64,
        /// Short text.
        message: String,
    },
    /// Debounce: makes the task an insert of the same batch (before it) stores hold its
    /// tenant's debounce `key` until `until_ms`, in place of the task that held it, which is
    /// CANCELLED naming its replacement. The outcome is that task's CANCELLED event;
    /// [`WriteOutcome::Ignored`] when no task held the key or the insert stored nothing (it
    /// lost an idempotency race). See [`crate::debounce`].
    Supersede {
        /// The task the insert stores.
        task_id: TaskId,
        /// Its tenant.
        tenant: String,
        /// Its debounce key.
        key: String,
        /// When its window ends, Unix milliseconds.
        until_ms: i64,
    },
    /// The audit act of a [`WriteOp::Supersede`] of `task_id` in the same batch (before it):
    /// sealed, with the replaced task as its target, if that supersede cancelled a task, else
    /// [`WriteOutcome::Ignored`].
    AuditOfSupersede {
        /// The replacing task.
        task_id: TaskId,
        /// The act (its target is set to the replaced task).
        draft: Box<AuditDraft>,
    },
}

/// What one [`WriteOp`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// The write produced this event (now durable).
    Event {
        /// The event, with its cursor.
        event: TaskEvent,
        /// When its task was created (for the duration metric).
        created_at_ms: i64,
    },
    /// An insert whose idempotency key already names this task; nothing was written.
    Existing(TaskId),
    /// The task is unknown, already terminal, or the progress is stale; nothing was written.
    Ignored,
    /// An audit draft was sealed as this record of the chain (and signed by this node).
    Audited {
        /// Its seq.
        seq: u64,
        /// Its hash.
        hash: String,
    },
    /// Usage was recorded for this tenant on this UTC day.
    Usage {
        /// The task's tenant.
        tenant: String,
        /// UTC date.
        day: String,
        /// Tokens in + out.
        tokens: u64,
        /// USD.
        cost_usd: f64,
    },
}

/// The outcome of recording `usage` for `tenant` on `day`.
pub(crate) fn usage_outcome(
    tenant: String,
    day: String,
    usage: &cadre_agents::Usage,
    cost_usd: f64,
) -> WriteOutcome {
    WriteOutcome::Usage {
        tenant,
        day,
        tokens: usage.tokens_in + usage.tokens_out,
        cost_usd,
    }
}

/// The chain's tail from the last audit row, if any.
pub(crate) fn audit_tail_of(row: Option<(i64, String)>) -> ChainTail {
    row.map(|(s, h)| ChainTail {
        seq: s as u64,
        hash: h,
    })
    .unwrap_or_default()
}
