//! Planning one write batch: which transitions and progress reports apply, the events they
//! produce (with their cursors), how each task row changes, and the audit records the batch's
//! drafts become (sealed after the chain's end, in op order).
//!
//! Both SQL stores plan the same way and differ only in where the starting view of unfinished
//! tasks comes from: [`crate::sqlite::SqliteStore`] keeps it in memory between batches (it is
//! the only writer of its file), [`crate::postgres::PgStore`] reads and locks the rows a batch
//! touches inside the batch's transaction (several replicas write one database). Both walk a
//! batch's ops with [`Plan::walk`]; what that walk reads from or writes to the database on the
//! way differs between them and sits behind [`PlanIo`].

use std::collections::{HashMap, HashSet};

use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskState};
use cadre_supervisors::Transition;

use crate::chain::{AuditDraft, AuditRecord, ChainTail, Sealer};
use crate::{StoreResult, WriteOp, WriteOutcome};

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

/// A task as a late transition finds it: its row (`task.seq` its last event's) and its events
/// in seq order.
#[derive(Clone, Debug)]
pub(super) struct Past {
    /// The row.
    pub task: Live,
    /// The events.
    pub events: Vec<TaskEvent>,
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
    pub(super) fn of(l: &Live, at_ms: i64) -> Self {
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
    /// The cursor of the batch's first event: events below it are stored already.
    pub start: u64,
    /// Stored events that late transitions placed new content in, by cursor (`late.rs`).
    pub rewritten: Vec<TaskEvent>,
    /// Tasks finished before the batch whose row seq moves one up per entry (a late event).
    pub seq_bumps: Vec<TaskId>,
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
            start: next_cursor,
            rewritten: Vec::new(),
            seq_bumps: Vec::new(),
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
    pub(super) fn row(&mut self, id: TaskId, update: RowUpdate) {
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

/// The tasks a batch inserts, in op order.
pub(super) fn new_tasks(ops: &[WriteOp]) -> Vec<&TaskRecord> {
    ops.iter()
        .filter_map(|op| match op {
            WriteOp::Insert(r) => Some(&**r),
            _ => None,
        })
        .collect()
}

/// A new task taking its tenant's debounce key ([`WriteOp::Supersede`]).
pub(super) struct Hold<'a> {
    /// The new task.
    pub task_id: TaskId,
    /// Its tenant.
    pub tenant: &'a str,
    /// Its debounce key.
    pub key: &'a str,
    /// When its window ends, Unix milliseconds.
    pub until_ms: i64,
}

/// A usage report to store: a [`WriteOp::Usage`] with its task's tenant and UTC day.
pub(super) struct UsageRecord<'a> {
    /// The task.
    pub task_id: TaskId,
    /// The task's tenant.
    pub tenant: &'a str,
    /// Model and tokens.
    pub usage: &'a cadre_agents::Usage,
    /// USD.
    pub cost_usd: f64,
    /// UTC date of `at_ms`.
    pub day: &'a str,
    /// When it was reported, Unix milliseconds.
    pub at_ms: i64,
}

/// What [`Plan::walk`] needs from the database while it walks a batch, where the stores
/// differ: SQLite runs these as statements in the batch's transaction, in op order;
/// PostgreSQL answers them from the rows it read (and locked) before planning and writes usage
/// with the rest of the batch.
pub(super) trait PlanIo {
    /// The task that holds idempotency key `key`, for `rec`, an insert of this batch that
    /// inserted nothing.
    async fn existing(&mut self, rec: &TaskRecord, key: &str) -> StoreResult<TaskId>;

    /// The tenant of a task the plan does not know as unfinished (None: no such task).
    async fn tenant_of(&mut self, task_id: TaskId) -> StoreResult<Option<String>>;

    /// Stores (or stages) one usage report.
    async fn usage(&mut self, record: UsageRecord<'_>) -> StoreResult<()>;

    /// `draft` with its text as the store keeps it, so the hash sealed over it matches the
    /// record read back.
    fn stored_draft(&self, draft: &AuditDraft) -> AuditDraft;

    /// A task as a late transition finds it: its row and its stored events in seq order (None:
    /// no such task). See `late.rs`.
    async fn history(&mut self, task_id: TaskId) -> StoreResult<Option<Past>>;

    /// Debounce: makes task `hold.task_id` hold its tenant's key in place of the task that
    /// held it, returned (see [`crate::debounce`]).
    async fn supersede(&mut self, hold: Hold<'_>) -> StoreResult<Option<TaskId>> {
        Err(crate::StoreError(format!(
            "this store cannot debounce task {}",
            hold.task_id
        )))
    }
}

impl Plan<'_> {
    /// Plans `ops` in order and returns what each did. `inserted` holds the ids of the batch's
    /// inserts the database took (the others lost an idempotency race, or are `Ignored`
    /// without a key); `now` stamps the events; `sealer` seals audit drafts (without one they
    /// are `Ignored`).
    pub async fn walk(
        &mut self,
        ops: &[WriteOp],
        inserted: &HashSet<String>,
        now: i64,
        sealer: Option<&Sealer>,
        io: &mut impl PlanIo,
    ) -> StoreResult<Vec<WriteOutcome>> {
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut replaced = HashMap::new();
        for op in ops {
            let outcome = match op {
                WriteOp::Supersede { .. } | WriteOp::AuditOfSupersede { .. } => {
                    self.debounce(op, inserted, now, sealer, io, &mut replaced)
                        .await?
                }
                WriteOp::Insert(rec) if inserted.contains(&rec.id.to_string()) => self.insert(rec),
                WriteOp::Insert(rec) => match rec.spec.idempotency_key.as_deref() {
                    Some(key) => WriteOutcome::Existing(io.existing(rec, key).await?),
                    None => WriteOutcome::Ignored,
                },
                WriteOp::Transition(t) if self.is_late(t) => self.late(t, now, io).await?,
                WriteOp::Transition(t) => self.transition(t, now),
                WriteOp::Progress {
                    task_id,
                    attempt,
                    fraction,
                    message,
                } => self.progress(*task_id, *attempt, *fraction, message, now),
                WriteOp::AuditDraft(d) => self.audit(io.stored_draft(d), sealer),
                WriteOp::AuditOfInsert { task_id, draft } if inserted.contains(&task_id.to_string()) => {
                    self.audit(io.stored_draft(draft), sealer)
                }
                WriteOp::AuditOfInsert { .. } => WriteOutcome::Ignored,
                WriteOp::Usage {
                    task_id,
                    usage,
                    cost_usd,
                    at_ms,
                } => self.usage(*task_id, usage, *cost_usd, *at_ms, io).await?,
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// A usage report: stored with the task's tenant, also when the task is no longer
    /// unfinished (usage may arrive after the task finished: it is never dropped); `Ignored`
    /// for an unknown task.
    async fn usage(
        &self,
        task_id: TaskId,
        usage: &cadre_agents::Usage,
        cost_usd: f64,
        at_ms: i64,
        io: &mut impl PlanIo,
    ) -> StoreResult<WriteOutcome> {
        let tenant = match self.current(task_id) {
            Some(l) => Some(l.tenant),
            None => io.tenant_of(task_id).await?,
        };
        let Some(tenant) = tenant else {
            return Ok(WriteOutcome::Ignored);
        };
        let day = cadre_proto::clock::utc_day(at_ms);
        io.usage(UsageRecord {
            task_id,
            tenant: &tenant,
            usage,
            cost_usd,
            day: &day,
            at_ms,
        })
        .await?;
        Ok(crate::ops::usage_outcome(tenant, day, usage, cost_usd))
    }
}

#[cfg(test)]
mod tests {
    use cadre_proto::TaskId;

    use super::*;
    use crate::StoreError;
    use crate::testing::record;

    /// A [`PlanIo`] that logs each call; `finished` is the one task it knows beyond the plan.
    struct Logged {
        calls: Vec<String>,
        existing: TaskId,
        finished: TaskId,
        fail_existing: bool,
    }

    impl Logged {
        /// Knows `existing` as the holder of any lost key and `finished` as a finished task.
        fn new(existing: TaskId, finished: TaskId) -> Self {
            Logged {
                calls: Vec::new(),
                existing,
                finished,
                fail_existing: false,
            }
        }
    }

    impl PlanIo for Logged {
        async fn existing(&mut self, rec: &TaskRecord, key: &str) -> StoreResult<TaskId> {
            self.calls.push(format!("existing {key}"));
            if self.fail_existing {
                return Err(StoreError(format!("task {} conflicts", rec.id)));
            }
            Ok(self.existing)
        }

        async fn tenant_of(&mut self, task_id: TaskId) -> StoreResult<Option<String>> {
            let known = task_id == self.finished;
            self.calls.push(format!(
                "tenant_of {}",
                if known { "finished" } else { "unknown" }
            ));
            Ok(known.then(|| "u".to_string()))
        }

        async fn usage(&mut self, u: UsageRecord<'_>) -> StoreResult<()> {
            self.calls.push(format!(
                "usage {} {} {} {}",
                u.tenant, u.usage.model, u.day, u.cost_usd
            ));
            Ok(())
        }

        async fn history(&mut self, _: TaskId) -> StoreResult<Option<Past>> {
            Ok(None)
        }

        fn stored_draft(&self, draft: &AuditDraft) -> AuditDraft {
            AuditDraft {
                detail: "stored".into(),
                ..draft.clone()
            }
        }
    }

    fn usage(task_id: TaskId) -> WriteOp {
        WriteOp::Usage {
            task_id,
            usage: cadre_agents::Usage {
                model: "m".into(),
                tokens_in: 2,
                tokens_out: 3,
                ..Default::default()
            },
            cost_usd: 0.25,
            at_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_walk_plans_each_op_in_order_and_asks_the_store_only_what_it_must() {
        let (a, b, c) = (record(None), record(Some("k")), record(None));
        let (finished, unknown) = (TaskId::new(), TaskId::new());
        let ops = [
            WriteOp::Insert(Box::new(a.clone())),
            WriteOp::Insert(Box::new(b.clone())),
            WriteOp::Insert(Box::new(c.clone())),
            usage(a.id),
            usage(unknown),
            usage(finished),
            WriteOp::AuditDraft(Box::new(AuditDraft::new("act", "target", "ok", ""))),
            WriteOp::Transition(Transition::new(a.id, TaskState::Running, 1, "")),
        ];
        let inserted = HashSet::from([a.id.to_string()]);
        let base = HashMap::new();
        let mut plan = Plan::new(&base, 7, ChainTail::default());
        let mut io = Logged::new(a.id, finished);
        let out = plan.walk(&ops, &inserted, 5, None, &mut io).await.unwrap();
        assert_eq!(
            io.calls,
            [
                "existing k",
                "usage t m 1970-01-01 0.25",
                "tenant_of unknown",
                "tenant_of finished",
                "usage u m 1970-01-01 0.25"
            ],
            "the store is asked for the winner of a lost key and the tenant of a task the plan \
             does not know, in op order"
        );
        let usage = |tenant: &str| WriteOutcome::Usage {
            tenant: tenant.into(),
            day: "1970-01-01".into(),
            tokens: 5,
            cost_usd: 0.25,
        };
        assert!(matches!(&out[0], WriteOutcome::Event { event, .. } if event.cursor == 7));
        assert_eq!(out[1], WriteOutcome::Existing(a.id), "lost its key to a");
        assert_eq!(out[2], WriteOutcome::Ignored, "lost without a key");
        assert_eq!(out[3..6], [usage("t"), WriteOutcome::Ignored, usage("u")]);
        assert_eq!(out[6], WriteOutcome::Ignored, "no sealer");
        assert!(matches!(&out[7], WriteOutcome::Event { event, .. }
                if event.cursor == 8 && event.at_ms == 5 && event.state == TaskState::Running));
        assert_eq!(out.len(), ops.len());
    }

    #[tokio::test]
    async fn an_audit_draft_is_sealed_as_the_store_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(ed25519_dalek::SigningKey::from_bytes(&[9; 32]), dir.path());
        let ops = [WriteOp::AuditDraft(Box::new(AuditDraft::new(
            "act", "target", "ok", "raw",
        )))];
        let base = HashMap::new();
        let mut plan = Plan::new(&base, 1, ChainTail::default());
        let mut io = Logged::new(TaskId::new(), TaskId::new());
        let out = plan
            .walk(&ops, &HashSet::new(), 0, Some(&sealer), &mut io)
            .await
            .unwrap();
        assert_eq!(plan.audit.len(), 1);
        assert_eq!(plan.audit[0].draft.detail, "stored");
        let WriteOutcome::Audited { seq, hash } = &out[0] else {
            panic!("expected a sealed record, got {:?}", out[0]);
        };
        assert_eq!((*seq, hash), (1, &plan.audit[0].hash));
    }

    #[tokio::test]
    async fn an_insert_s_audit_is_sealed_only_if_the_insert_stored_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(ed25519_dalek::SigningKey::from_bytes(&[9; 32]), dir.path());
        let (won, lost) = (record(Some("k1")), record(Some("k2")));
        let act = |id: TaskId| WriteOp::AuditOfInsert {
            task_id: id,
            draft: Box::new(AuditDraft::new("task.submit", &id.to_string(), "ok", "")),
        };
        let ops = [
            WriteOp::Insert(Box::new(won.clone())),
            act(won.id),
            WriteOp::Insert(Box::new(lost.clone())),
            act(lost.id),
        ];
        let base = HashMap::new();
        let mut plan = Plan::new(&base, 1, ChainTail::default());
        let mut io = Logged::new(won.id, TaskId::new());
        let inserted = HashSet::from([won.id.to_string()]);
        let out = plan
            .walk(&ops, &inserted, 0, Some(&sealer), &mut io)
            .await
            .unwrap();
        assert!(
            matches!(&out[1], WriteOutcome::Audited { seq: 1, .. }),
            "{:?}",
            out[1]
        );
        assert_eq!(out[2], WriteOutcome::Existing(won.id));
        assert_eq!(
            out[3],
            WriteOutcome::Ignored,
            "no record for a task this batch did not store"
        );
        assert_eq!(plan.audit.len(), 1);
        assert_eq!(plan.audit[0].draft.target, won.id.to_string());
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_the_walk() {
        let b = record(Some("k"));
        let base = HashMap::new();
        let mut plan = Plan::new(&base, 1, ChainTail::default());
        let mut io = Logged {
            fail_existing: true,
            ..Logged::new(TaskId::new(), TaskId::new())
        };
        let ops = [WriteOp::Insert(Box::new(b))];
        let err = plan
            .walk(&ops, &HashSet::new(), 0, None, &mut io)
            .await
            .unwrap_err();
        assert!(err.0.contains("conflicts"), "{err}");
    }
}
