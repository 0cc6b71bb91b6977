//! Behaviour of the supervisor-node runtime ([`cadre_supervisors::node::NodeRuntime`]) on an
//! in-memory transport ([`fake`]), with a real actor tree running the tasks: no NATS, no gRPC.
//!
//! - [`delivery`]: a delivered task runs and its message is acked only once its end is
//!   durable; room bounds what is pulled; redeliveries count lost attempts; dead-lettering.
//! - [`cancels`]: cancels of held and unknown tasks, heartbeats, release at shutdown.
//! - [`delegation`]: sub-tasks delegated to the node, and sub-tasks sent to peers.

mod fake;

mod cancels;
mod delegation;
mod delivery;
