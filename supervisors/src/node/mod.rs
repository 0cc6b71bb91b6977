//! The runtime of a supervisor node in distributed mode: the tier-1 side of the bus. A node
//! (role `supervisor`, or role `all` with NATS) takes task messages for its local supervisors
//! from a work queue, runs them on the same Supervisor actors as the embedded mode, and
//! reports every transition, progress report and usage record back as events. Every decision
//! is made here; what is specific to NATS JetStream or gRPC is behind the traits of
//! [`transport`], implemented in `cadre_bus` (`node_transport`, `peers`).
//!
//! - Capacity: each local supervisor holds at most `bus.max_inflight` task messages; it pulls
//!   only when it has room, most urgent first ([`WorkQueue::fetch`]), and with nothing there
//!   waits for the doorbell or a second ([`WorkQueue::wait_for_work`]).
//! - A task message is acked only after the task's terminal event is durable
//!   ([`OnDurable`]); while it runs, heartbeats (every third of `bus.ack_wait_ms`) keep it
//!   from being delivered again. If this node dies, the message is delivered again to another
//!   replica after the ack wait: each earlier delivery counts as a lost attempt
//!   (RETRYING "worker lost during attempt N; redelivered"), and a task out of attempts
//!   FAILS ("worker lost").
//! - After `bus.max_deliver` deliveries the message is dead-lettered and the task FAILS with
//!   reason `dead-lettered`, without running again.
//! - Cancels: the replica holding the task stops it; the others remember the id (the last
//!   10,000) so they never start it.
//! - Delegation: a sub-task delegated to this node is stored through the events stream and
//!   run here, its caller waiting ([`NodeRuntime::run_delegated`]); a sub-task an executor
//!   here delegates goes to a peer ([`DelegateToPeers`] over [`PeerDelegation`]).
//! - Stop: [`NodeRuntime::drain`] waits for queued events, [`NodeRuntime::release`] hands
//!   every held message back for another replica at once.
//!
//! Layout: [`runtime`] (the [`NodeRuntime`], its settings, start and stop, [`TaskSource`]),
//! [`transport`] (the traits), [`wire`] (the JSON messages, the contract with tier 0),
//! `intake` (pull loops, the decision about each delivery, cancels, heartbeats), `publish`
//! (events out, acks and waiters once durable), [`sink`] ([`NodeSink`]), [`delegate`]
//! (delegation both ways), `held` (what the node holds and the cancels it remembers).
//!
//! [`TaskSource`]: crate::TaskSource

pub mod delegate;
mod held;
mod intake;
mod publish;
pub mod runtime;
pub mod sink;
pub mod transport;
pub mod wire;

pub use delegate::{DelegateToPeers, DelegatedError};
pub use runtime::{NodeRuntime, NodeSettings};
pub use sink::NodeSink;
pub use transport::{
    Acker, Cancel, Delivery, OnDurable, Outgoing, PeerDelegation, PeerError, TransportError, WorkQueue,
    WorkTransport,
};
