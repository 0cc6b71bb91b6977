//! How events go out: the publisher hands queued events to the transport in order, and once
//! a task's terminal event is durable its message is acked and its waiter answered.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::node::held::Inflight;
use crate::node::runtime::NodeRuntime;
use crate::node::transport::{OnDurable, Outgoing, WorkTransport};
use crate::node::wire::EventMsg;

/// Most events handed to the transport at once.
const PUBLISH_BATCH: usize = 256;

impl NodeRuntime {
    /// Hands queued events to `transport` in batches, in order (it packs, publishes and
    /// retries them; see [`WorkTransport::publish`]).
    pub(super) async fn publish_events(
        self: Arc<Self>,
        transport: Arc<dyn WorkTransport>,
        mut rx: mpsc::Receiver<Outgoing>,
    ) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            transport
                .publish(std::mem::take(&mut batch), &Durability(self.as_ref()))
                .await;
        }
    }
}

/// What the transport tells about durable events (private, so only the transport the
/// runtime runs on acks its messages).
struct Durability<'a>(&'a NodeRuntime);

#[async_trait]
impl OnDurable for Durability<'_> {
    /// Once a terminal transition is durable, the task's message is acked (it is never run
    /// again) and a caller waiting for the task is answered.
    async fn durable(&self, event: &EventMsg) {
        let Some(t) = event.terminal() else { return };
        let node = self.0;
        let done = node.held.lock().remove(&t.task_id);
        if let Some(Inflight { acker: Some(a), .. }) = &done
            && let Err(e) = a.ack().await
        {
            tracing::debug!(task_id = %t.task_id, error = %e, "ack failed; the task may be redelivered (stored once)");
        }
        let waiter = node
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&t.task_id);
        if let Some(w) = waiter {
            let _ = w.send(t.clone().into());
        }
    }
}
