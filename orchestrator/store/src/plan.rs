//! Planning one write batch: which transitions and progress reports apply, the events they
//! produce (with their cursors), how each task row changes, and the audit records the batch's
//! drafts become (sealed after the chain's end, in op order).
//!
//! Both SQL stores plan the same way and differ only in where the starting view of unfinished
//! tasks comes from: [`crate::sqlite::SqliteStore`] keeps it in memory between batches (it is
//! the only writer of its file), [`crate::postgres::PgStore`] reads and locks the rows a batch
//! touches inside the batch's transaction (several replicas write one database).

use std::collections::HashMap;

use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskState};
use cadre_supervisors::Transition;

use crate::WriteOutcome;
use crate::chain::{AuditDraft, AuditRecord, ChainTail, Sealer};

/// What the planner knows about an unfinished task: enough to decide whether a transition
/// applies and to build its event without reading the database.
#[derive(Clone, Debug)]
pub(super) struct Live {
    /// Sequence number of the task's latest event.
    pub seq: u64,
    /// Current state (never terminal here).
    pub state: TaskState,
    /// Current attempt.
    pub attempt: u32,
    /// The task's type, copied into its events.
    pub task_type: String,
    /// The task's tenant, copied into its events.
    pub tenant: String,
    /// For the duration metric.
    pub created_at_ms: i64,
    /// The delegating task, copied into its events.
    pub parent_id: Option<TaskId>,
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
            parent_id: self.parent_id,
        }
    }
}

/// How a batch changes one task row (the last change of the batch wins).
#[derive(Clone, Debug)]
pub(super) struct RowUpdate {
    /// New state.
    pub state: TaskState,
    /// New attempt.
    pub attempt: u32,
    /// New sequence number.
    pub seq: u64,
    /// Time of the last event.
    pub updated_at_ms: i64,
    /// New result, JSON text (None keeps the column).
    pub result: Option<String>,
    /// 0 keep the error column, 1 set it to `error_text`, 2 clear it.
    pub error: u8,
    /// The error text with `error` 1.
    pub error_text: Option<String>,
    /// Set with a verified task's result.
    pub signature: Option<String>,
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

/// One batch being planned: changes staged over a base view of unfinished tasks.
pub(super) struct Plan<'a> {
    /// Unfinished tasks as they were before the batch.
    base: &'a HashMap<TaskId, Live>,
    /// Some = new state of an unfinished task, None = finished in this batch.
    pub staged: HashMap<TaskId, Option<Live>>,
    /// The cursor the next event gets.
    pub cursor: u64,
    /// Events of the batch, in cursor order.
    pub events: Vec<TaskEvent>,
    /// Changed task rows, in the order they were first changed.
    pub rows: Vec<(TaskId, RowUpdate)>,
    /// The audit chain's end after the records sealed so far.
    pub chain: ChainTail,
    /// Audit records sealed by the batch, in seq order.
    pub audit: Vec<AuditRecord>,
}

impl<'a> Plan<'a> {
    /// An empty plan over `base` whose first event gets cursor `next_cursor` and whose first
    /// audit record follows `chain` (the chain's last committed record).
    pub fn new(base: &'a HashMap<TaskId, Live>, next_cursor: u64, chain: ChainTail) -> Self {
        Plan {
            base,
            staged: HashMap::new(),
            cursor: next_cursor,
            events: Vec::new(),
            rows: Vec::new(),
            chain,
            audit: Vec::new(),
        }
    }

    /// An audit draft: sealed as the chain's next record with `sealer`; ignored without a
    /// sealer. The caller passes the draft with its text as the store will keep it, so the
    /// hash matches the record read back.
    pub fn audit(&mut self, draft: AuditDraft, sealer: Option<&Sealer>) -> WriteOutcome {
        let Some(sealer) = sealer else {
            return WriteOutcome::Ignored;
        };
        let record = sealer.seal(&mut self.chain, draft);
        let outcome = WriteOutcome::Audited {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        self.audit.push(record);
        outcome
    }

    /// The task as the batch has left it so far (None: unknown or terminal).
    pub fn current(&self, id: TaskId) -> Option<Live> {
        match self.staged.get(&id) {
            Some(staged) => staged.clone(),
            None => self.base.get(&id).cloned(),
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

    /// A task inserted by this batch: its QUEUED event.
    pub fn insert(&mut self, rec: &TaskRecord) -> WriteOutcome {
        let l = Live {
            seq: 1,
            state: TaskState::Queued,
            attempt: 0,
            task_type: rec.spec.task_type.clone(),
            tenant: rec.tenant.clone(),
            created_at_ms: rec.created_at_ms,
            parent_id: rec.spec.parent_id,
        };
        let outcome = self.push(
            l.event(rec.id, rec.created_at_ms, String::new()),
            rec.created_at_ms,
        );
        self.staged.insert(rec.id, Some(l));
        outcome
    }

    /// A state change: applied unless the task is unknown or already terminal.
    pub fn transition(&mut self, t: &Transition, now: i64) -> WriteOutcome {
        let Some(mut l) = self.current(t.task_id) else {
            return WriteOutcome::Ignored;
        };
        // A repeat (the same event delivered twice, e.g. a pack of events published again after
        // a lost acknowledgement): the task is already there.
        if l.state == t.state && l.attempt == t.attempt {
            return WriteOutcome::Ignored;
        }
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

    /// A progress report: applied only while that very attempt is running.
    pub fn progress(
        &mut self,
        id: TaskId,
        attempt: u32,
        fraction: f64,
        message: &str,
        now: i64,
    ) -> WriteOutcome {
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
