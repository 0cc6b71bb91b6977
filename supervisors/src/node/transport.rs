//! What a supervisor node needs from the world outside its process, as traits, so the runtime
//! ([`super::NodeRuntime`]) holds every decision and the transport only moves bytes. The NATS
//! JetStream implementation is `cadre_bus::node_transport`; the peer registry
//! (`cadre_bus::peers::Peers`) implements [`PeerDelegation`]; the runtime's tests use an
//! in-memory fake.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cadre_proto::TaskId;
use cadre_proto::v1;
use futures::stream::BoxStream;

use crate::node::wire::EventMsg;

/// Why a transport operation failed (the transport's own words; the runtime logs them).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Where task messages come from and events go to: the work queue of each local supervisor,
/// the cancel broadcast, the events stream and the dead-letter place.
#[async_trait]
pub trait WorkTransport: Send + Sync + 'static {
    /// Gets ready to take `supervisor`'s task messages (its consumers and its doorbell). The
    /// runtime retries, every second, until it works.
    async fn open(&self, supervisor: &str) -> Result<Box<dyn WorkQueue>, TransportError>;

    /// The cancels broadcast to `supervisor`'s replicas, as they arrive (unreadable ones are
    /// left out). The runtime retries, every second, until it gets the stream.
    async fn cancels(&self, supervisor: &str) -> Result<BoxStream<'static, Cancel>, TransportError>;

    /// Publishes `events` in order, retrying what the other side does not take (under the
    /// same deduplication ids) until everything is taken, and tells `durable` about each event
    /// as soon as it is durable there, in order. An event the transport can never carry is
    /// replaced by its smaller form or dropped (both logged), never retried forever.
    async fn publish(&self, events: Vec<Outgoing>, durable: &dyn OnDurable);

    /// Copies an unrunnable task message of `supervisor` (undecodable, or delivered too many
    /// times) to the dead-letter place, best effort.
    async fn dead_letter(&self, supervisor: &str, payload: Bytes);

    /// Whether the transport is connected now (part of the node's readiness).
    fn connected(&self) -> bool;
}

/// The task messages of one supervisor, as one pull loop takes them.
#[async_trait]
pub trait WorkQueue: Send + 'static {
    /// Up to `max` task messages waiting now, the most urgent first, without waiting for more
    /// to be published. Each call is bounded in time; an empty answer means nothing is there
    /// (or the transport cannot be reached now).
    async fn fetch(&mut self, max: usize) -> Vec<Delivery>;

    /// Waits until new work may be there: a ring of the supervisor's doorbell, or a second at
    /// most (shorter without a doorbell).
    async fn wait_for_work(&mut self);
}

/// One delivery of one task message.
pub struct Delivery {
    /// The message body (a JSON [`crate::node::wire::WorkMsg`], unless something is wrong).
    pub payload: Bytes,
    /// How many times this message has been delivered, this delivery included (>= 1).
    pub delivered: u32,
    /// What the runtime tells the transport about it.
    pub acker: Arc<dyn Acker>,
}

/// The runtime's answers about one delivered task message.
#[async_trait]
pub trait Acker: Send + Sync + 'static {
    /// Done with: the message is removed and never delivered again.
    async fn ack(&self) -> Result<(), TransportError>;
    /// Not done here: deliver it again at once (to any replica).
    async fn nak(&self) -> Result<(), TransportError>;
    /// Still being worked on: do not deliver it again yet (restarts its ack timer).
    async fn progress(&self) -> Result<(), TransportError>;
    /// Never deliver it again, although it did not run (dead-lettered or unreadable).
    async fn terminate(&self) -> Result<(), TransportError>;
}

/// A cancel broadcast to a supervisor's replicas.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel {
    /// The task.
    pub task_id: TaskId,
    /// Why.
    pub reason: String,
}

/// One event on its way out, with the supervisor whose subject it goes on.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The supervisor that reports it.
    pub supervisor: String,
    /// The event.
    pub event: EventMsg,
}

/// Told by [`WorkTransport::publish`] about each event once it is durable.
#[async_trait]
pub trait OnDurable: Send + Sync {
    /// `event` is durable on the other side.
    async fn durable(&self, event: &EventMsg);
}

/// How a sub-task reaches another supervisor node: find a live node running a supervisor and
/// call its SupervisorPeer.Delegate.
#[async_trait]
pub trait PeerDelegation: Send + Sync + 'static {
    /// Sends `request` to a live node running `supervisor` and answers with the sub-task as
    /// that node finished it (or as it was when the node stopped waiting).
    async fn delegate(&self, supervisor: &str, request: v1::DelegateRequest) -> Result<v1::Task, PeerError>;
}

/// Why a delegation to a peer failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    /// No live node runs the supervisor.
    #[error("no live node runs the supervisor")]
    NoNode,
    /// The registry or the chosen node cannot be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The node answered the call with an error (its message).
    #[error("{0}")]
    Refused(String),
}
