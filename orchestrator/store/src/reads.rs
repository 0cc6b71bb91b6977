//! Coalesced task reads: concurrent [`Store::get`]s become one [`Store::get_many`].
//!
//! Every SubmitAndWait answer reads its task once it is terminal, and tasks finish in batches
//! (one writer commit ends dozens of them), so under load those reads arrive together. Sent
//! one by one, each costs PostgreSQL a statement (executor start, a round trip, and the ping
//! sqlx sends when a connection goes back to the pool); taken together, a batch costs one.

use std::collections::HashMap;
use std::sync::Arc;

use cadre_proto::{TaskId, TaskRecord};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Store, StoreError, StoreResult};

type Reply = oneshot::Sender<StoreResult<Option<TaskRecord>>>;

/// Most tasks read by one `get_many`.
const BATCH: usize = 256;
/// `get_many` calls in flight at once; further reads wait and join the next batch.
const IN_FLIGHT: usize = 4;
/// Reads waiting for a batch (callers wait for room beyond this).
const QUEUE: usize = 4096;

/// A handle that reads tasks through batches; cheap to clone. The batching task ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Reads {
    store: Arc<dyn Store>,
    /// None: the store reads one by one ([`Store::reads_in_batches`] is false).
    tx: Option<mpsc::Sender<(TaskId, Reply)>>,
}

impl Reads {
    /// Reads through `store`: in batches, by a task started here, if the store prefers that.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        if !store.reads_in_batches() {
            return Reads { store, tx: None };
        }
        Self::batched(store)
    }

    /// Reads through `store` in batches, whatever the store prefers.
    fn batched(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(TaskId, Reply)>(QUEUE);
        let batches = store.clone();
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = Vec::with_capacity(BATCH);
                if rx.recv_many(&mut batch, BATCH).await == 0 {
                    return;
                }
                let store = batches.clone();
                tokio::spawn(async move {
                    answer(&*store, batch).await;
                    drop(permit);
                });
            }
        });
        Reads { store, tx: Some(tx) }
    }

    /// One task with its children and usage, as [`Store::get`] returns it.
    pub async fn get(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        let Some(tx) = &self.tx else {
            return self.store.get(id).await;
        };
        let (reply, rx) = oneshot::channel();
        let stopped = || StoreError("task reader stopped".into());
        tx.send((id, reply)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Reads one batch and answers each caller (a task asked for twice is answered twice).
async fn answer(store: &dyn Store, batch: Vec<(TaskId, Reply)>) {
    let mut ids: Vec<TaskId> = batch.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    match store.get_many(&ids).await {
        Ok(records) => {
            let mut by_id: HashMap<TaskId, TaskRecord> = records.into_iter().map(|r| (r.id, r)).collect();
            let mut left: HashMap<TaskId, usize> = HashMap::new();
            for (id, _) in &batch {
                *left.entry(*id).or_default() += 1;
            }
            for (id, reply) in batch {
                let n = left.get_mut(&id).map(|n| {
                    *n -= 1;
                    *n
                });
                // The last caller for a task takes the record; earlier ones get a copy.
                let record = match n {
                    Some(0) => by_id.remove(&id),
                    _ => by_id.get(&id).cloned(),
                };
                let _ = reply.send(Ok(record));
            }
        }
        // A connection that broke, or one task that cannot be decoded, must not fail every
        // read of the batch: each is read again on its own and gets its own answer.
        Err(e) => {
            tracing::debug!(error = %e, tasks = batch.len(), "batched read failed; reading one by one");
            let each = batch.into_iter().map(|(id, reply)| async move {
                let _ = reply.send(store.get(id).await);
            });
            futures::future::join_all(each).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::testing::record;
    use crate::{WriteOp, WriteOutcome};

    #[tokio::test]
    async fn concurrent_reads_are_answered_like_get_each() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db"), false).await.unwrap());
        let tasks: Vec<TaskRecord> = (0..40).map(|_| record(None)).collect();
        let ops: Vec<WriteOp> = tasks
            .iter()
            .map(|t| WriteOp::Insert(Box::new(t.clone())))
            .collect();
        let out = store.apply(&ops, None).await.unwrap();
        assert!(out.iter().all(|o| matches!(o, WriteOutcome::Event { .. })));
        // The batching path (PostgreSQL's) run over SQLite, which itself reads one by one.
        let reads = Reads::batched(store.clone());
        assert!(
            Reads::spawn(store.clone()).tx.is_none(),
            "SQLite is read one by one"
        );
        let unknown = TaskId::new();
        // Every task twice and one unknown id, all at once.
        let wanted: Vec<TaskId> = tasks
            .iter()
            .chain(tasks.iter())
            .map(|t| t.id)
            .chain([unknown])
            .collect();
        let got = futures::future::join_all(wanted.iter().map(|id| reads.get(*id))).await;
        for (id, got) in wanted.iter().zip(got) {
            let got = got.unwrap();
            let want = store.get(*id).await.unwrap();
            assert_eq!(got, want, "{id}");
            assert_eq!(got.is_none(), *id == unknown);
        }
    }
}
