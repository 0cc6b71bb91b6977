//! The group-commit writer: the only path by which tasks and events reach the store.
//!
//! Callers send [`WriteOp`]s over a bounded channel; one task drains up to `store.batch_max`
//! of them, commits them in one transaction, then publishes the resulting events to the hub
//! in cursor order and answers the callers that wait. Intake waits for its insert to be durable
//! (so an accepted task is never lost); supervisors only wait for room in the queue.
//!
//! If a commit fails, waiting inserts are answered with the error (the client sees UNAVAILABLE,
//! never a false accept) and the remaining transitions are retried with backoff until the
//! store takes them, so no decided transition is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use cadre_proto::{TaskEvent, TaskId, TaskRecord, TaskState};
use cadre_supervisors::{TaskSink, Transition};
use opentelemetry::trace::TraceId;
use tokio::sync::{mpsc, oneshot};

use crate::budget::Budgets;
use crate::hub::Hub;
use cadre_proto::clock::now_ms;
use cadre_store::chain::{AuditDraft, ChainTail, Sealer};
use cadre_store::{Store, StoreError, WriteOp, WriteOutcome};

struct Request {
    /// None is a barrier: answered once everything sent before it is durable.
    op: Option<WriteOp>,
    reply: Option<oneshot::Sender<Result<WriteOutcome, StoreError>>>,
    /// A terminal transition's `task.record` span (while spans are exported): open from the
    /// supervisor's decision until the commit, in the trace of the attempt that decided it.
    span: tracing::Span,
    /// The trace a transition was decided in (while spans are exported), for its log line.
    trace_id: Option<TraceId>,
    /// Writes that commit in the same transaction as this one, right after it
    /// ([`Writer::write_together`]).
    with: Vec<Request>,
}

impl Request {
    fn new(op: Option<WriteOp>, reply: Option<oneshot::Sender<Result<WriteOutcome, StoreError>>>) -> Self {
        Request {
            op,
            reply,
            span: tracing::Span::none(),
            trace_id: None,
            with: Vec::new(),
        }
    }
}

/// Handle to the writer; cheap to clone. Implements [`TaskSink`] for the supervisors.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    /// Unfinished tasks known to this node (bounds intake).
    pending: Arc<Mutex<Pending>>,
    /// Prices usage and keeps today's spend.
    budgets: Arc<Budgets>,
    /// Most writes committed in one transaction (`store.batch_max`).
    batch_max: usize,
}

/// Unfinished tasks, in total and per tenant (bounds intake and per-tenant caps).
#[derive(Default)]
struct Pending {
    total: u64,
    by_tenant: HashMap<String, u64>,
}

impl Writer {
    /// Records an audit act; the store seals it into the chain in commit order. Waits only
    /// for room in the queue.
    pub async fn audit(&self, draft: AuditDraft) {
        let req = Request::new(Some(WriteOp::AuditDraft(Box::new(draft))), None);
        if self.tx.send(req).await.is_err() {
            tracing::warn!("writer stopped; audit record dropped");
        }
    }

    /// Starts the writer task. `pending` starts at the store's count of unfinished tasks;
    /// `sealer` signs the audit records the store seals and verified results (None: audit
    /// drafts are dropped and results are not signed).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        store: Arc<dyn Store>,
        hub: Hub,
        batch_max: usize,
        capacity: usize,
        pending: HashMap<String, u64>,
        sealer: Option<Sealer>,
        budgets: Arc<Budgets>,
        feed: HubFeed,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let pending = Arc::new(Mutex::new(Pending {
            total: pending.values().sum(),
            by_tenant: pending,
        }));
        let handle = tokio::spawn(run(
            store,
            hub,
            rx,
            batch_max,
            pending.clone(),
            sealer,
            budgets.clone(),
            feed,
        ));
        (
            Writer {
                tx,
                pending,
                budgets,
                batch_max,
            },
            handle,
        )
    }

    /// Keeps the unfinished-task counters close to the truth when several tier-0 replicas
    /// share the store: every `every`, replaces them with the store's count
    /// ([`Store::count_unfinished`]); in between they move with this replica's own commits
    /// only. So another replica's inserts and finishes show up here within about `every`,
    /// and a commit of this replica that lands between the count and its use is off by one
    /// until the next refresh. The task ends when the writer stops.
    pub fn refresh_pending(&self, store: Arc<dyn Store>, every: Duration) -> tokio::task::JoinHandle<()> {
        let (alive, pending) = (self.tx.downgrade(), self.pending.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if alive.upgrade().is_none() {
                    return;
                }
                match store.count_unfinished().await {
                    Ok(by_tenant) => {
                        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                        p.total = by_tenant.values().sum();
                        p.by_tenant = by_tenant;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot refresh the unfinished-task counters"),
                }
            }
        })
    }

    /// Most writes committed in one transaction: the largest group
    /// [`Writer::write_together`] keeps within it.
    pub fn batch_max(&self) -> usize {
        self.batch_max
    }

    /// Unfinished tasks right now.
    pub fn pending(&self) -> u64 {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Unfinished tasks of one tenant right now.
    pub fn pending_for(&self, tenant: &str) -> u64 {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_tenant
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Stores a new task and waits until it is durable.
    pub async fn insert(&self, record: TaskRecord) -> Result<WriteOutcome, StoreError> {
        self.submit(WriteOp::Insert(Box::new(record))).await
    }

    /// Applies a transition and waits until it is durable.
    pub async fn transition(&self, t: Transition) -> Result<WriteOutcome, StoreError> {
        self.submit(WriteOp::Transition(t)).await
    }

    /// Writes `writes` in one transaction, in this order, and waits until they are durable:
    /// either all of them are stored or none is (every one then gets the same error), so a
    /// caller that writes them again cannot have a later event of a task stored before an
    /// earlier one that failed. Each write may carry the traceparent of the task's trace: a
    /// terminal transition decided in another process then gets its `task.record` span in it. A group is never split; one larger than
    /// [`Writer::batch_max`] is committed alone, above that bound, so callers keep within it.
    pub async fn write_together(&self, writes: Vec<(WriteOp, Option<String>)>) -> Result<(), StoreError> {
        let mut replies = Vec::with_capacity(writes.len());
        let mut requests = writes.into_iter().map(|(op, tp)| {
            let (req, rx) = traced_request(op, tp.as_deref());
            replies.push(rx);
            req
        });
        let Some(mut first) = requests.next() else {
            return Ok(());
        };
        first.with = requests.collect();
        self.tx
            .send(first)
            .await
            .map_err(|_| StoreError("writer stopped".into()))?;
        for rx in replies {
            rx.await.map_err(|_| StoreError("writer stopped".into()))??;
        }
        Ok(())
    }

    /// A usage write priced with today's prices (for [`Writer::write_together`]).
    pub fn priced_usage(&self, task_id: TaskId, usage: cadre_agents::Usage) -> WriteOp {
        let cost_usd = self.budgets.cost(&usage);
        WriteOp::Usage {
            task_id,
            usage,
            cost_usd,
            at_ms: now_ms(),
        }
    }

    /// Waits until every write sent before this call is durable (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.send(None).await.map(|_| ())
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        self.send(Some(op)).await
    }

    async fn send(&self, op: Option<WriteOp>) -> Result<WriteOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::new(op, Some(reply)))
            .await
            .map_err(|_| StoreError("writer stopped".into()))?;
        rx.await.map_err(|_| StoreError("writer stopped".into()))?
    }
}

#[async_trait]
impl TaskSink for Writer {
    fn usage(&self, task_id: TaskId, usage: cadre_agents::Usage) {
        let op = self.priced_usage(task_id, usage);
        // Keep the order with the task's transitions when there is room; otherwise wait for
        // room in a task of its own: usage is never dropped.
        match self.tx.try_send(Request::new(Some(op), None)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(req)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if tx.send(req).await.is_err() {
                        tracing::warn!(%task_id, "writer stopped; usage report lost");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!(%task_id, "writer stopped; usage report lost")
            }
        }
    }

    async fn record(&self, t: Transition) {
        let span = if t.state.is_terminal() {
            record_span(&t)
        } else {
            tracing::Span::none()
        };
        let mut req = Request::new(Some(WriteOp::Transition(t)), None);
        req.span = span;
        // The decider's span: the attempt's, so the task's trace, for an attempt's outcome.
        req.trace_id = cadre_trace::current_trace_id();
        if self.tx.send(req).await.is_err() {
            tracing::warn!("writer stopped; transition dropped (recovered from the store on restart)");
        }
    }

    fn progress(&self, task_id: TaskId, attempt: u32, fraction: f64, message: String) {
        let op = WriteOp::Progress {
            task_id,
            attempt,
            fraction,
            message,
        };
        if self.tx.try_send(Request::new(Some(op), None)).is_err() {
            metrics::counter!("cadre_progress_dropped_total").increment(1);
        }
    }
}

/// How committed events reach the hub.
#[async_trait]
impl cadre_bus::Journal for Writer {
    async fn transition(&self, t: Transition) -> Result<WriteOutcome, StoreError> {
        Writer::transition(self, t).await
    }

    async fn write_together(&self, writes: Vec<(WriteOp, Option<String>)>) -> Result<(), StoreError> {
        Writer::write_together(self, writes).await
    }

    fn batch_max(&self) -> usize {
        Writer::batch_max(self)
    }

    fn priced_usage(&self, task_id: TaskId, usage: cadre_agents::Usage) -> WriteOp {
        Writer::priced_usage(self, task_id, usage)
    }
}

#[derive(Clone)]
pub enum HubFeed {
    /// Published by the writer right after each commit (one tier-0 process).
    Direct,
    /// Read back from the store by a tailer ([`crate::hub::tail`]), which sees every
    /// replica's commits in cursor order; the writer only wakes it (and calls `announce`,
    /// which tells the other replicas).
    Tail {
        /// The local tailer's wake-up.
        wake: Arc<tokio::sync::Notify>,
        /// Tells other replicas a commit happened.
        announce: Arc<dyn Fn() + Send + Sync>,
    },
}

#[allow(clippy::too_many_arguments)]
async fn run(
    store: Arc<dyn Store>,
    hub: Hub,
    mut rx: mpsc::Receiver<Request>,
    batch_max: usize,
    pending: Arc<Mutex<Pending>>,
    sealer: Option<Sealer>,
    budgets: Arc<Budgets>,
    feed: HubFeed,
) {
    let mut received: Vec<Request> = Vec::with_capacity(batch_max);
    let mut inbox: std::collections::VecDeque<Request> = std::collections::VecDeque::with_capacity(batch_max);
    let mut batch: Vec<Request> = Vec::with_capacity(batch_max);
    loop {
        if inbox.is_empty() {
            if rx.recv_many(&mut received, batch_max).await == 0 {
                break;
            }
            inbox.extend(received.drain(..));
        }
        // A group sent with `write_together` is one request here; its writes join the batch
        // together, so they commit (or fail) together. A group that would take the batch past
        // `batch_max` waits for the next one, and so does everything received after it.
        while let Some(req) = inbox.front() {
            if !batch.is_empty() && batch.len() + 1 + req.with.len() > batch_max {
                break;
            }
            let Some(mut req) = inbox.pop_front() else { break };
            let with = std::mem::take(&mut req.with);
            batch.push(req);
            batch.extend(with);
        }
        let mut backoff = Duration::from_millis(50);
        // Verified results are signed by the node before they are stored. Audit drafts are
        // sealed by the store, in commit order; a retried batch seals them again after
        // whatever committed meanwhile.
        for req in &mut batch {
            if let Some(WriteOp::Transition(t)) = &mut req.op
                && t.sign
                && t.signature.is_none()
            {
                let json = t.result.as_ref().map(|v| v.to_string()).unwrap_or_default();
                t.signature = sealer.as_ref().map(|s| s.sign_result(t.task_id, &json));
            }
        }
        loop {
            let ops: Vec<WriteOp> = batch.iter().filter_map(|r| r.op.clone()).collect();
            let applied = if ops.is_empty() {
                Ok(Vec::new())
            } else {
                store.apply(&ops, sealer.as_ref()).await
            };
            match applied {
                Ok(outcomes) => {
                    // The last record this node sealed: its signed head.
                    let head = outcomes.iter().rev().find_map(|o| match o {
                        WriteOutcome::Audited { seq, hash } => Some(ChainTail {
                            seq: *seq,
                            hash: hash.clone(),
                        }),
                        _ => None,
                    });
                    let mut outcomes = outcomes.into_iter();
                    for req in batch.drain(..) {
                        let Some(op) = &req.op else {
                            if let Some(reply) = req.reply {
                                let _ = reply.send(Ok(WriteOutcome::Ignored));
                            }
                            continue;
                        };
                        let Some(outcome) = outcomes.next() else { break };
                        account(op, &outcome, &pending);
                        if let (WriteOp::Transition(_), WriteOutcome::Event { event, .. }) = (op, &outcome) {
                            if !req.span.is_none() {
                                req.span.record("tenant", event.tenant.as_str());
                                req.span.record("task_type", event.task_type.as_str());
                            }
                            log_transition(event, req.trace_id);
                        }
                        if let WriteOutcome::Usage {
                            tenant,
                            day,
                            tokens,
                            cost_usd,
                        } = &outcome
                        {
                            budgets.record(day, tenant, *tokens, *cost_usd);
                            metrics::counter!("cadre_tokens_used_total", "tenant" => tenant.clone())
                                .increment(*tokens);
                            metrics::counter!("cadre_cost_usd_micros_total", "tenant" => tenant.clone())
                                .increment((cost_usd * 1e6) as u64);
                        }
                        if let (WriteOutcome::Event { event, .. }, HubFeed::Direct) = (&outcome, &feed) {
                            hub.publish(event.clone());
                        }
                        if let Some(reply) = req.reply {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    if let HubFeed::Tail { wake, announce } = &feed {
                        wake.notify_one();
                        announce();
                    }
                    if let (Some(head), Some(sealer)) = (head, &sealer)
                        && let Err(e) = sealer.write_head(&head)
                    {
                        tracing::error!(error = %e, "cannot write the signed audit head");
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, ops = batch.len(), "store write failed");
                    // Waiters get the error now; fire-and-forget transitions are retried.
                    batch.retain_mut(|req| match req.reply.take() {
                        Some(reply) => {
                            let _ = reply.send(Err(StoreError(e.0.clone())));
                            false
                        }
                        None => true,
                    });
                    if batch.is_empty() {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    tracing::debug!("writer drained and stopped");
}

/// The request for one write a caller waits for. A terminal transition decided in another
/// process gets its `task.record` span as a child of `traceparent` (the task's trace), open
/// until the commit.
fn traced_request(
    op: WriteOp,
    traceparent: Option<&str>,
) -> (Request, oneshot::Receiver<Result<WriteOutcome, StoreError>>) {
    let span = match (&op, traceparent) {
        (WriteOp::Transition(t), Some(tp)) if t.state.is_terminal() => {
            let span = record_span(t);
            cadre_trace::set_parent_from_traceparent(&span, tp);
            span
        }
        _ => tracing::Span::none(),
    };
    let (reply, rx) = oneshot::channel();
    let mut req = Request::new(Some(op), Some(reply));
    req.span = span;
    req.trace_id = traceparent.and_then(cadre_trace::trace_id_of);
    (req, rx)
}

/// A terminal transition's `task.record` span (none while spans are not exported); `tenant`
/// and `task_type` are recorded at the commit, from the stored task.
fn record_span(t: &Transition) -> tracing::Span {
    cadre_trace::task_span!(
        "task.record",
        task_id = %t.task_id,
        tenant = tracing::field::Empty,
        task_type = tracing::field::Empty,
        state = t.state.as_str(),
        attempt = t.attempt,
    )
}

/// Logs a committed transition with the task's identifiers: FAILED and TIMED_OUT at warn, a
/// scheduled retry at info, SUCCEEDED and CANCELLED at debug (no info line per success: there
/// may be thousands a second). Field values are only computed for enabled levels.
fn log_transition(event: &TaskEvent, trace_id: Option<TraceId>) {
    macro_rules! line {
        ($level:ident, $what:literal) => {
            tracing::$level!(
                task_id = %event.task_id,
                tenant = %event.tenant,
                task_type = %event.task_type,
                trace_id = trace_id.map(tracing::field::display),
                attempt = event.attempt,
                detail = %event.message,
                $what
            )
        };
    }
    match event.state {
        TaskState::Failed => line!(warn, "task failed"),
        TaskState::TimedOut => line!(warn, "task timed out"),
        TaskState::Retrying => line!(info, "task retry scheduled"),
        TaskState::Cancelled => line!(debug, "task cancelled"),
        TaskState::Succeeded => line!(debug, "task succeeded"),
        _ => {}
    }
}

/// Updates counters and metrics for one applied write.
fn account(op: &WriteOp, outcome: &WriteOutcome, pending: &Mutex<Pending>) {
    let WriteOutcome::Event { event, created_at_ms } = outcome else {
        return;
    };
    match op {
        WriteOp::Insert(_) => {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.total += 1;
            *p.by_tenant.entry(event.tenant.clone()).or_default() += 1;
            metrics::counter!("cadre_tasks_submitted_total").increment(1);
        }
        WriteOp::Transition(_) if event.state.is_terminal() => {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.total = p.total.saturating_sub(1);
            if let Some(n) = p.by_tenant.get_mut(&event.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    p.by_tenant.remove(&event.tenant);
                }
            }
            drop(p);
            metrics::counter!("cadre_tasks_completed_total", "state" => event.state.as_str()).increment(1);
            let secs = (now_ms() - created_at_ms).max(0) as f64 / 1000.0;
            metrics::histogram!("cadre_task_duration_seconds", "state" => event.state.as_str()).record(secs);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cadre_proto::TaskState;

    use super::*;
    use crate::budget::BudgetConfig;
    use cadre_store::sqlite::SqliteStore;
    use cadre_store::testing::record;

    /// A writer on a real SQLite store (`dir/s.db`) that drains one request per batch; the
    /// counter counts its commits.
    async fn writer_one_per_batch(dir: &std::path::Path) -> (Writer, Arc<dyn Store>, Arc<AtomicUsize>) {
        writer_on(dir, 1).await
    }

    async fn writer_on(
        dir: &std::path::Path,
        batch_max: usize,
    ) -> (Writer, Arc<dyn Store>, Arc<AtomicUsize>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("s.db"), false).await.unwrap());
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = commits.clone();
        let feed = HubFeed::Tail {
            wake: Arc::new(tokio::sync::Notify::new()),
            announce: Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        };
        let budgets = Arc::new(Budgets::new(BudgetConfig::default(), "d".into(), HashMap::new()));
        let (writer, _task) = Writer::spawn(
            store.clone(),
            Hub::new(64),
            batch_max,
            64,
            HashMap::new(),
            None,
            budgets,
            feed,
        );
        (writer, store, commits)
    }

    fn tr(id: TaskId, state: TaskState, attempt: u32) -> (WriteOp, Option<String>) {
        (
            WriteOp::Transition(Transition::new(id, state, attempt, state.as_str())),
            None,
        )
    }

    #[tokio::test]
    async fn writes_sent_together_commit_in_one_transaction_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, commits) = writer_one_per_batch(dir.path()).await;
        let task = record(None);
        writer.insert(task.clone()).await.unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 1);
        writer
            .write_together(vec![
                tr(task.id, TaskState::Running, 1),
                (
                    WriteOp::Progress {
                        task_id: task.id,
                        attempt: 1,
                        fraction: 0.5,
                        message: "half".into(),
                    },
                    None,
                ),
                tr(task.id, TaskState::Succeeded, 1),
            ])
            .await
            .unwrap();
        assert_eq!(
            commits.load(Ordering::SeqCst),
            2,
            "three writes, one commit, although the writer drains one request per batch"
        );
        let events = store
            .events_after(
                0,
                &cadre_store::EventFilter {
                    task_id: Some(task.id),
                    ..Default::default()
                },
                10,
            )
            .await
            .unwrap();
        let got: Vec<(TaskState, bool)> = events.iter().map(|e| (e.state, e.is_progress)).collect();
        assert_eq!(
            got,
            [
                (TaskState::Queued, false),
                (TaskState::Running, false),
                (TaskState::Running, true),
                (TaskState::Succeeded, false)
            ]
        );
        writer.write_together(Vec::new()).await.unwrap();
        assert_eq!(commits.load(Ordering::SeqCst), 2, "an empty group writes nothing");
    }

    /// States of a task's stored events, in order.
    async fn history(store: &Arc<dyn Store>, id: TaskId) -> Vec<TaskState> {
        let filter = cadre_store::EventFilter {
            task_id: Some(id),
            ..Default::default()
        };
        let events = store.events_after(0, &filter, 10).await.unwrap();
        events.iter().map(|e| e.state).collect()
    }

    #[tokio::test]
    async fn a_group_that_cannot_be_stored_fails_whole_and_is_left_to_its_caller() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, _) = writer_on(dir.path(), 64).await;
        let t = record(None);
        writer.insert(t.clone()).await.unwrap();
        // The events table goes away under the writer: every commit fails until it is back.
        let side = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        sqlx::query("ALTER TABLE events RENAME TO events_away")
            .execute(&side)
            .await
            .unwrap();
        let err = writer
            .write_together(vec![
                tr(t.id, TaskState::Running, 1),
                tr(t.id, TaskState::Succeeded, 1),
            ])
            .await
            .unwrap_err();
        assert!(err.0.contains("events"), "{err}");
        sqlx::query("ALTER TABLE events_away RENAME TO events")
            .execute(&side)
            .await
            .unwrap();
        writer.flush().await.unwrap();
        assert_eq!(
            history(&store, t.id).await,
            [TaskState::Queued],
            "nothing of the failed group is stored, nor written again by the writer"
        );
        // The caller writes the group again: all of it lands, in order.
        writer
            .write_together(vec![
                tr(t.id, TaskState::Running, 1),
                tr(t.id, TaskState::Succeeded, 1),
            ])
            .await
            .unwrap();
        assert_eq!(
            history(&store, t.id).await,
            [TaskState::Queued, TaskState::Running, TaskState::Succeeded]
        );
    }

    #[tokio::test]
    async fn a_group_waits_for_the_next_batch_rather_than_pass_batch_max() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, commits) = writer_on(dir.path(), 3).await;
        let (t, u) = (record(None), record(None));
        writer.insert(t.clone()).await.unwrap();
        writer.insert(u.clone()).await.unwrap();
        let before = commits.load(Ordering::SeqCst);
        // Two groups of two: 4 writes, more than batch_max 3, so two commits of two.
        let (a, b) = tokio::join!(
            writer.write_together(vec![
                tr(t.id, TaskState::Running, 1),
                tr(t.id, TaskState::Succeeded, 1)
            ]),
            writer.write_together(vec![
                tr(u.id, TaskState::Running, 1),
                tr(u.id, TaskState::Failed, 1)
            ]),
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(commits.load(Ordering::SeqCst) - before, 2);
        assert_eq!(
            history(&store, u.id).await,
            [TaskState::Queued, TaskState::Running, TaskState::Failed]
        );
        // A group larger than batch_max is committed whole, alone.
        let v = record(None);
        writer.insert(v.clone()).await.unwrap();
        let before = commits.load(Ordering::SeqCst);
        writer
            .write_together(vec![
                tr(v.id, TaskState::Running, 1),
                tr(v.id, TaskState::Retrying, 1),
                tr(v.id, TaskState::Running, 2),
                tr(v.id, TaskState::Succeeded, 2),
            ])
            .await
            .unwrap();
        assert_eq!(commits.load(Ordering::SeqCst) - before, 1);
        assert_eq!(history(&store, v.id).await.len(), 5);
    }
}
