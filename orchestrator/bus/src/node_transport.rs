//! A supervisor node's transport over NATS JetStream: the [`WorkTransport`] the node runtime
//! ([`cadre_supervisors::node::NodeRuntime`]) runs on. The runtime decides; this moves the
//! messages:
//!
//! - task messages: one durable pull consumer per supervisor and priority band, shared by all
//!   replicas, fetched high band first without waiting; with nothing there, the supervisor's
//!   doorbell (core NATS) or a second;
//! - acks, naks, in-progress heartbeats and terminations of task messages;
//! - cancels: a core-NATS subject per supervisor;
//! - events: published pipelined, packed ([`wire::pack_events`]) to fit the server's
//!   `max_payload`, retried under the same message ids until JetStream takes them; an event
//!   NATS refuses as too large is replaced by its smaller form or dropped
//!   ([`wire::refit_for_bus`]);
//! - dead letters: a copy on the supervisor's dead-letter subject.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use async_trait::async_trait;
use bytes::Bytes;
use cadre_supervisors::node::{
    Acker, Cancel, Delivery, OnDurable, Outgoing, TransportError, WorkQueue, WorkTransport,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::config::BusConfig;
use crate::conn::{Conn, back_off};
use crate::wire::{self, CancelMsg, EventPack};

/// Longest one pull request may take before it is given up and sent again.
const FETCH_PATIENCE: Duration = Duration::from_secs(5);

/// The NATS transport of a supervisor node.
pub struct NatsTransport {
    conn: Conn,
    ack_wait: Duration,
    max_deliver: u32,
}

impl NatsTransport {
    /// A transport on `conn`, with the work consumers `cfg` describes (`ack_wait_ms`,
    /// `max_deliver`).
    pub fn new(conn: Conn, cfg: &BusConfig) -> Arc<Self> {
        Arc::new(NatsTransport {
            conn,
            ack_wait: Duration::from_millis(cfg.ack_wait_ms),
            max_deliver: cfg.max_deliver,
        })
    }

    /// The durable consumers of `supervisor`'s bands, high first.
    async fn consumers(&self, supervisor: &str) -> anyhow::Result<Vec<consumer::PullConsumer>> {
        let conn = &self.conn;
        let stream = conn.js.get_stream(conn.names.work_stream()).await?;
        let mut out = Vec::new();
        for band in wire::BANDS {
            let name = conn.names.work_consumer(supervisor, band);
            let c = stream
                .get_or_create_consumer(
                    &name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: conn.names.work_subject(supervisor, band),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: self.ack_wait,
                        // One more than allowed: the last delivery only dead-letters.
                        max_deliver: self.max_deliver as i64 + 1,
                        max_ack_pending: 100_000,
                        ..Default::default()
                    },
                )
                .await?;
            out.push(c);
        }
        Ok(out)
    }

    /// Sends `packs` pipelined, in order. Answers with the packs sent (and their pending
    /// JetStream acks) and, from the first pack NATS refused on, those not sent (so nothing is
    /// published ahead of an event that precedes it); a pack refused as larger than
    /// `max_payload` is replaced by what fits ([`wire::refit_for_bus`]).
    async fn send(&self, packs: Vec<EventPack>, limit: usize) -> (Vec<Sent>, Vec<EventPack>) {
        let mut sent = Vec::with_capacity(packs.len());
        let mut unsent = Vec::new();
        let mut packs_left = packs.into_iter();
        for p in packs_left.by_ref() {
            let publish = jetstream::message::PublishMessage::build()
                .payload(p.body.clone())
                .message_id(p.msg_id.clone());
            match self
                .conn
                .js
                .send_publish(self.conn.names.events_subject(&p.supervisor), publish)
                .await
            {
                Ok(ack) => sent.push((p, ack)),
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                    unsent.extend(wire::refit_for_bus(p, &e.to_string(), limit));
                    break;
                }
                Err(_) => {
                    unsent.push(p);
                    break;
                }
            }
        }
        unsent.extend(packs_left);
        (sent, unsent)
    }
}

/// A pack sent, and JetStream's ack of it to come.
type Sent = (EventPack, jetstream::context::PublishAckFuture);

#[async_trait]
impl WorkTransport for NatsTransport {
    async fn open(&self, supervisor: &str) -> Result<Box<dyn WorkQueue>, TransportError> {
        let consumers = self
            .consumers(supervisor)
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        let doorbell = self
            .conn
            .client
            .subscribe(self.conn.names.doorbell(supervisor))
            .await
            .ok();
        Ok(Box::new(NatsQueue {
            supervisor: supervisor.to_string(),
            consumers,
            doorbell,
        }))
    }

    async fn cancels(&self, supervisor: &str) -> Result<BoxStream<'static, Cancel>, TransportError> {
        let sub = self
            .conn
            .client
            .subscribe(self.conn.names.cancel_subject(supervisor))
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        Ok(sub
            .filter_map(|msg| async move {
                let c = serde_json::from_slice::<CancelMsg>(&msg.payload).ok()?;
                Some(Cancel {
                    task_id: c.task_id,
                    reason: c.reason,
                })
            })
            .boxed())
    }

    /// Publishes pipelined, packed into as few messages as keep their order (see
    /// [`wire::pack_events`]: a fast task's RUNNING and SUCCEEDED usually travel together);
    /// retries what NATS did not take, under the same message ids, with backoff. An event
    /// larger than the server's `max_payload` is never retried: a terminal one is published
    /// as FAILED without its result, others are dropped (logged).
    async fn publish(&self, events: Vec<Outgoing>, durable: &dyn OnDurable) {
        let limit = wire::pack_limit(self.conn.client.server_info().max_payload);
        let mut packs = wire::pack_events(events.into_iter().map(|o| (o.supervisor, o.event)), limit);
        let mut delay = Duration::from_millis(50);
        loop {
            let (sent, unsent) = self.send(packs, limit).await;
            let mut failed = Vec::new();
            for (p, ack) in sent {
                match ack.await {
                    Ok(_) => {
                        for e in &p.events {
                            durable.durable(e).await;
                        }
                    }
                    Err(_) => failed.push(p),
                }
            }
            failed.extend(unsent);
            if failed.is_empty() {
                return;
            }
            tracing::warn!(
                messages = failed.len(),
                retry_in_ms = delay.as_millis() as u64,
                "NATS did not take events; retrying"
            );
            back_off(&mut delay).await;
            packs = failed;
        }
    }

    async fn dead_letter(&self, supervisor: &str, payload: Bytes) {
        let _ = self
            .conn
            .js
            .publish(self.conn.names.dead_subject(supervisor), payload)
            .await;
    }

    fn connected(&self) -> bool {
        self.conn.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// One supervisor's work consumers (high, normal, low) and doorbell.
struct NatsQueue {
    supervisor: String,
    consumers: Vec<consumer::PullConsumer>,
    doorbell: Option<async_nats::Subscriber>,
}

#[async_trait]
impl WorkQueue for NatsQueue {
    async fn fetch(&mut self, max: usize) -> Vec<Delivery> {
        let supervisor = &self.supervisor;
        let mut got = Vec::new();
        for c in &self.consumers {
            let room = max - got.len();
            if room == 0 {
                break;
            }
            // Bounded: a pull whose answer was lost with the connection must not hang the
            // loop (what arrived before the cut is kept; the rest is redelivered).
            let fetched = tokio::time::timeout(FETCH_PATIENCE, async {
                match c.fetch().max_messages(room).messages().await {
                    Ok(mut batch) => {
                        while let Some(m) = batch.next().await {
                            match m {
                                Ok(m) => got.push(delivery(m)),
                                Err(e) => tracing::debug!(error = %e, "pull: message error"),
                            }
                        }
                        true
                    }
                    Err(e) => {
                        tracing::warn!(%supervisor, error = %e, "pull failed; NATS unreachable?");
                        false
                    }
                }
            })
            .await;
            if !matches!(fetched, Ok(true)) {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        got
    }

    async fn wait_for_work(&mut self) {
        // Drain rings that arrived while busy, then wait for the next (or poll).
        if let Some(bell) = self.doorbell.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(1), bell.next()).await;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A delivered JetStream message as the runtime sees it.
fn delivery(m: jetstream::Message) -> Delivery {
    let delivered = m.info().map(|i| i.delivered).unwrap_or(1).max(1) as u32;
    let payload = m.payload.clone();
    let (_, acker) = m.split();
    Delivery {
        payload,
        delivered,
        acker: Arc::new(NatsAcker(acker)),
    }
}

/// Answers about one JetStream message.
struct NatsAcker(jetstream::message::Acker);

impl NatsAcker {
    async fn answer(&self, kind: AckKind) -> Result<(), TransportError> {
        self.0
            .ack_with(kind)
            .await
            .map_err(|e| TransportError(e.to_string()))
    }
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), TransportError> {
        self.0.ack().await.map_err(|e| TransportError(e.to_string()))
    }

    async fn nak(&self) -> Result<(), TransportError> {
        self.answer(AckKind::Nak(None)).await
    }

    async fn progress(&self) -> Result<(), TransportError> {
        self.answer(AckKind::Progress).await
    }

    async fn terminate(&self) -> Result<(), TransportError> {
        self.answer(AckKind::Term).await
    }
}
