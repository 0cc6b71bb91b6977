//! The writer task: a loop of named steps over batches of writes, until every handle is gone
//! and the queue is drained.
//!
//! 1. [`Inbox::collect`]: the next batch from the queue (`collect.rs`);
//! 2. [`seal`]: verified results signed (`commit.rs`);
//! 3. [`apply`]: the batch stored in one transaction, retried until it commits, with what was
//!    queued meanwhile added before each retry (`commit.rs`);
//! 4. then, per committed write in batch order ([`WriterTask::settle`]): [`account`] for it
//!    (`account.rs`), publish its event ([`HubFeed::publish`], `publish.rs`) and answer its
//!    waiter; after the batch, wake the tailer ([`HubFeed::committed`]) and write the signed
//!    audit head ([`write_head`]).

use std::sync::{Arc, Mutex};

use cadre_store::chain::Sealer;
use cadre_store::{Store, WriteOutcome};
use tokio::sync::mpsc;

use super::account::{account, sealed_head, write_head};
use super::collect::Inbox;
use super::commit::{apply, seal};
use super::pending::Pending;
use super::publish::HubFeed;
use super::request::Request;
use crate::budget::Budgets;
use crate::hub::Hub;

/// Everything the writer task works with besides its queue.
pub(super) struct WriterTask {
    /// Where batches are committed.
    pub(super) store: Arc<dyn Store>,
    /// Signs verified results and the audit records the store seals (None: neither).
    pub(super) sealer: Option<Sealer>,
    /// Live subscribers of committed events.
    pub(super) hub: Hub,
    /// How committed events reach the hub.
    pub(super) feed: HubFeed,
    /// Unfinished tasks, shared with the handles (which read them).
    pub(super) pending: Arc<Mutex<Pending>>,
    /// Today's spend, shared with the handles (which price usage).
    pub(super) budgets: Arc<Budgets>,
    /// Most writes in one batch (`store.batch_max`).
    pub(super) batch_max: usize,
}

impl WriterTask {
    /// Runs the writer: collects, seals, applies and settles batches from `rx` until every
    /// sender is dropped and all it sent is settled.
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Request>) {
        let mut inbox = Inbox::new(self.batch_max);
        let mut batch: Vec<Request> = Vec::with_capacity(self.batch_max);
        while inbox.collect(&mut rx, &mut batch).await {
            seal(&mut batch, self.sealer.as_ref());
            let top_up = |batch: &mut Vec<Request>| inbox.top_up(&mut rx, batch);
            if let Some(outcomes) = apply(&*self.store, self.sealer.as_ref(), &mut batch, top_up).await {
                self.settle(&mut batch, outcomes);
            }
        }
        tracing::debug!("writer drained and stopped");
    }

    /// Everything after a commit, in batch order: for each write, its accounting, its event to
    /// the hub and its waiter's answer (a barrier is answered `Ignored`); then the tailer is
    /// woken and the signed audit head written. Empties `batch`.
    fn settle(&self, batch: &mut Vec<Request>, outcomes: Vec<WriteOutcome>) {
        let head = sealed_head(&outcomes);
        let mut outcomes = outcomes.into_iter();
        for req in batch.drain(..) {
            let Some(op) = &req.op else {
                if let Some(reply) = req.reply {
                    let _ = reply.send(Ok(WriteOutcome::Ignored));
                }
                continue;
            };
            let Some(outcome) = outcomes.next() else { break };
            account(
                op,
                &outcome,
                &req.span,
                req.trace_id,
                &self.pending,
                &self.budgets,
            );
            self.feed.publish(&self.hub, &outcome);
            if let Some(reply) = req.reply {
                let _ = reply.send(Ok(outcome));
            }
        }
        self.feed.committed();
        write_head(head, self.sealer.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use cadre_proto::TaskId;
    use cadre_store::WriteOp;
    use cadre_store::sqlite::SqliteStore;
    use tokio::sync::oneshot;

    use super::*;
    use crate::budget::BudgetConfig;

    #[tokio::test]
    async fn settling_answers_in_batch_order_then_announces_the_commit_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), false).await.unwrap();
        let announced = Arc::new(AtomicUsize::new(0));
        let counted = announced.clone();
        let task = WriterTask {
            store: Arc::new(store),
            sealer: None,
            hub: Hub::new(8),
            feed: HubFeed::Tail {
                wake: Arc::new(tokio::sync::Notify::new()),
                announce: Arc::new(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                }),
            },
            pending: Arc::new(Mutex::new(Pending::new(HashMap::new()))),
            budgets: Arc::new(Budgets::new(BudgetConfig::default(), "d".into(), HashMap::new())),
            batch_max: 8,
        };
        let progress = || WriteOp::Progress {
            task_id: TaskId::new(),
            attempt: 1,
            fraction: 0.5,
            message: String::new(),
        };
        let (barrier, barrier_rx) = oneshot::channel();
        let (waiter, waiter_rx) = oneshot::channel();
        let mut batch = vec![
            Request::new(Some(progress()), None),
            Request::new(None, Some(barrier)),
            Request::new(Some(progress()), Some(waiter)),
        ];
        let audited = WriteOutcome::Audited {
            seq: 1,
            hash: "h".into(),
        };
        task.settle(&mut batch, vec![WriteOutcome::Ignored, audited.clone()]);
        assert!(batch.is_empty());
        assert_eq!(
            barrier_rx.await.unwrap().unwrap(),
            WriteOutcome::Ignored,
            "a barrier"
        );
        assert_eq!(
            waiter_rx.await.unwrap().unwrap(),
            audited,
            "the second write's outcome"
        );
        assert_eq!(announced.load(Ordering::SeqCst), 1);
    }
}
