//! How task messages come in: one pull loop per local supervisor (room first, then what is
//! waiting), the decision about each delivery (run, count lost attempts, dead-letter, skip a
//! cancelled task), cancels, and heartbeats for what is held.

use std::sync::Arc;
use std::time::Duration;

use cadre_proto::TaskState;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::node::held::Inflight;
use crate::node::runtime::NodeRuntime;
use crate::node::transport::{Acker, Delivery, WorkQueue, WorkTransport};
use crate::node::wire::{EventMsg, WorkMsg};
use crate::sink::Transition;
use crate::task::QueuedTask;
use crate::tree::OrchestratorMsg;

/// Most task messages pulled at once.
pub(super) const PULL_BATCH: usize = 64;

impl NodeRuntime {
    /// Pull loop of one supervisor: waits for room, takes what is there, and when nothing is
    /// waits for new work before looking again.
    pub(super) async fn pull(self: Arc<Self>, transport: Arc<dyn WorkTransport>, supervisor: String) {
        let sem = Arc::new(Semaphore::new(self.settings.max_inflight));
        let mut queue = open_queue(transport.as_ref(), &supervisor).await;
        self.await_pauses().await;
        loop {
            let Ok(first) = sem.clone().acquire_owned().await else {
                return;
            };
            let mut permits = vec![first];
            while permits.len() < PULL_BATCH {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let got = queue.fetch(permits.len()).await;
            if got.is_empty() {
                drop(permits);
                queue.wait_for_work().await;
                continue;
            }
            for (d, permit) in got.into_iter().zip(permits) {
                self.take(transport.as_ref(), &supervisor, d, permit).await;
            }
        }
    }

    /// One delivered task message.
    pub(super) async fn take(
        &self,
        transport: &dyn WorkTransport,
        supervisor: &str,
        d: Delivery,
        permit: OwnedSemaphorePermit,
    ) {
        let Delivery {
            payload,
            delivered,
            acker,
        } = d;
        let delivered = delivered.max(1);
        let work: WorkMsg = match serde_json::from_slice(&payload) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(%supervisor, error = %e, "undecodable task message; dead-lettered");
                transport.dead_letter(supervisor, payload).await;
                let _ = acker.terminate().await;
                return;
            }
        };
        let id = work.id;
        if self.held.was_cancelled(id) {
            let _ = acker.ack().await;
            return;
        }
        if let Some(existing) = self.held.lock().get_mut(&id) {
            // Redelivered while still running here (a missed heartbeat): keep running it,
            // ack the newest delivery when it finishes.
            existing.acker = Some(acker);
            return;
        }
        if delivered > self.settings.max_deliver {
            tracing::warn!(task_id = %id, delivered, "task dead-lettered");
            transport.dead_letter(supervisor, payload).await;
            self.dead_letter(supervisor, work, delivered, acker, permit).await;
            return;
        }
        // Every earlier delivery may have started an attempt on a replica that is gone.
        let started = work.attempt + delivered - 1;
        let Some(task) = work.queued(&self.router.registry, started) else {
            let why = format!("executor {} is not available on this node", work.executor);
            self.fail(supervisor, id, started, why).await;
            let _ = acker.ack().await;
            return;
        };
        if delivered > 1 {
            let lost = format!("worker lost during attempt {started}");
            if started >= task.retry.max_attempts {
                // Held first, so the publisher finds it and acks once the FAILED event is durable.
                self.hold(supervisor, task, acker, permit);
                self.fail(supervisor, id, started, lost).await;
                return;
            }
            let t = Transition::new(id, TaskState::Retrying, started, format!("{lost}; redelivered"));
            self.emit(supervisor, EventMsg::Transition((&t).into())).await;
        }
        self.hold(supervisor, task.clone(), acker, permit);
        self.dispatch(supervisor, task);
    }

    /// A message delivered more than `max_deliver` times (already copied to the dead-letter
    /// place): its task FAILS without running again.
    async fn dead_letter(
        &self,
        supervisor: &str,
        work: WorkMsg,
        delivered: u32,
        acker: Arc<dyn Acker>,
        permit: OwnedSemaphorePermit,
    ) {
        let id = work.id;
        let why = format!("dead-lettered after {} deliveries", delivered - 1);
        let attempt = work.attempt + delivered - 1;
        match work.queued(&self.router.registry, work.attempt) {
            // Held first, so the publisher finds it and acks once the FAILED event is durable.
            Some(task) => {
                self.hold(supervisor, task, acker, permit);
                self.fail(supervisor, id, attempt, why).await;
            }
            None => {
                self.fail(supervisor, id, attempt, why).await;
                let _ = acker.terminate().await;
            }
        }
    }

    /// Holds a delivered task message until its terminal event is durable.
    fn hold(&self, supervisor: &str, task: QueuedTask, acker: Arc<dyn Acker>, permit: OwnedSemaphorePermit) {
        self.held.lock().insert(
            task.id,
            Inflight {
                supervisor: supervisor.to_string(),
                task,
                acker: Some(acker),
                _permit: Some(permit),
                round: 0,
                depth: 0,
            },
        );
    }

    /// Cancels for `supervisor`: a held task is stopped, any other is remembered so it never
    /// starts here.
    pub(super) async fn listen_cancels(
        self: Arc<Self>,
        transport: Arc<dyn WorkTransport>,
        supervisor: String,
    ) {
        let mut cancels = loop {
            match transport.cancels(&supervisor).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to cancels; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        while let Some(c) = cancels.next().await {
            let held = self.held.lock().contains_key(&c.task_id);
            if !held {
                self.held.remember_cancel(c.task_id);
            } else if let Some(o) = self.orchestrator.get() {
                let _ = o.cast(OrchestratorMsg::Cancel {
                    supervisor: supervisor.clone(),
                    task_id: c.task_id,
                    reason: c.reason,
                });
            }
        }
    }

    /// Keeps held tasks' messages from being delivered again.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        let every = self.settings.heartbeat_every();
        loop {
            tokio::time::sleep(every).await;
            let ackers: Vec<_> = self
                .held
                .lock()
                .values()
                .filter_map(|i| i.acker.clone())
                .collect();
            for a in ackers {
                let _ = a.progress().await;
            }
        }
    }
}

/// `supervisor`'s work queue, retried every second until the transport opens it.
async fn open_queue(transport: &dyn WorkTransport, supervisor: &str) -> Box<dyn WorkQueue> {
    loop {
        match transport.open(supervisor).await {
            Ok(q) => return q,
            Err(e) => {
                tracing::error!(%supervisor, error = %e, "cannot create work consumers; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
