//! [`Writer`], the handle every caller holds: its public API puts writes on the writer task's
//! queue ([`super::run::WriterTask`]) and reads the unfinished-task counters it keeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cadre_proto::{TaskId, TaskRecord};
use cadre_supervisors::Transition;
use tokio::sync::{mpsc, oneshot};

use super::pending::Pending;
use super::publish::HubFeed;
use super::request::{Request, traced_request};
use super::run::WriterTask;
use crate::budget::Budgets;
use crate::hub::Hub;
use cadre_proto::clock::now_ms;
use cadre_store::chain::{AuditDraft, Sealer};
use cadre_store::{Store, StoreError, WriteOp, WriteOutcome};

/// Handle to the writer; cheap to clone. Implements [`cadre_supervisors::TaskSink`] for the
/// supervisors and [`cadre_bus::Journal`] for the NATS bus (`sink.rs`).
#[derive(Clone)]
pub struct Writer {
    /// The writer task's queue.
    pub(super) tx: mpsc::Sender<Request>,
    /// Unfinished tasks known to this node (bounds intake).
    pending: Arc<Mutex<Pending>>,
    /// Prices usage and keeps today's spend.
    budgets: Arc<Budgets>,
    /// Most writes committed in one transaction (`store.batch_max`).
    batch_max: usize,
    /// What of each model call's prompt and reply is stored (`[llm_calls]`; default: none).
    calls: Arc<crate::llm_calls::CallCapture>,
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
        let pending = Arc::new(Mutex::new(Pending::new(pending)));
        let task = WriterTask {
            store,
            sealer,
            hub,
            feed,
            pending: pending.clone(),
            budgets: budgets.clone(),
            batch_max,
        };
        let handle = tokio::spawn(task.run(rx));
        (
            Writer {
                tx,
                pending,
                budgets,
                batch_max,
                calls: Arc::default(),
            },
            handle,
        )
    }

    /// The same writer, storing model call records as `calls` says (prompts and replies
    /// redacted and bounded, or dropped).
    pub fn with_llm_calls(mut self, calls: crate::llm_calls::CallCapture) -> Self {
        self.calls = Arc::new(calls);
        self
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
                        *pending.lock().unwrap_or_else(|e| e.into_inner()) = Pending::new(by_tenant);
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
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).total()
    }

    /// Unfinished tasks of one tenant right now.
    pub fn pending_for(&self, tenant: &str) -> u64 {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).of(tenant)
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
        self.send_together(writes).await.map(drop)
    }

    /// Stores a new task and its audit act in one transaction and waits until both are
    /// durable: the task's outcome (the act is sealed only if this insert stored the task, not
    /// when its idempotency key named an existing one).
    pub async fn insert_audited(
        &self,
        record: TaskRecord,
        draft: AuditDraft,
    ) -> Result<WriteOutcome, StoreError> {
        let task_id = record.id;
        let writes = vec![
            (WriteOp::Insert(Box::new(record)), None),
            (
                WriteOp::AuditOfInsert {
                    task_id,
                    draft: Box::new(draft),
                },
                None,
            ),
        ];
        let mut outcomes = self.send_together(writes).await?;
        Ok(outcomes.swap_remove(0))
    }

    /// [`Writer::write_together`], answering each write's outcome in order.
    pub(crate) async fn send_together(
        &self,
        writes: Vec<(WriteOp, Option<String>)>,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut replies = Vec::with_capacity(writes.len());
        let mut requests = writes.into_iter().map(|(op, tp)| {
            let (req, rx) = traced_request(op, tp.as_deref());
            replies.push(rx);
            req
        });
        let Some(mut first) = requests.next() else {
            return Ok(Vec::new());
        };
        first.with = requests.collect();
        self.tx
            .send(first)
            .await
            .map_err(|_| StoreError("writer stopped".into()))?;
        let mut outcomes = Vec::with_capacity(replies.len());
        for rx in replies {
            outcomes.push(rx.await.map_err(|_| StoreError("writer stopped".into()))??);
        }
        Ok(outcomes)
    }

    /// A usage write priced with today's prices (for [`Writer::write_together`]).
    pub fn priced_usage(&self, task_id: TaskId, mut usage: cadre_agents::Usage) -> WriteOp {
        self.calls.apply(&mut usage);
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
