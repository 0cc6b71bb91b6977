//! cadre tier 0's bus: how tier 0 hands tasks to supervisors and how their events come back.
//!
//! Layer: 5.
//! May import: cadre-store, cadre-trace, cadre-supervisors, cadre-agents, cadre-proto.
//!
//! Two implementations behind one trait, [`Bus`]:
//! - [`LocalBus`] (the embedded default, `bus.nats_url` empty): tasks go to the in-process
//!   orchestrator actor, events go straight to the writer.
//! - [`nats::NatsBus`] (distributed mode): tasks go through a JetStream work-queue stream with
//!   one subject per supervisor and priority band; supervisor nodes pull them with durable
//!   consumers shared by all replicas of a kind, run them on the same Supervisor actors, and
//!   publish every transition to a JetStream events stream that tier 0 persists and fans out.
//!   Peers find each other in a NATS KV bucket ([`peers`]).
//!
//! A supervisor node's runtime is tier 1's ([`cadre_supervisors::node`]); this crate gives it
//! its NATS transport ([`node_transport::NatsTransport`]) and its way to peers
//! ([`peers::Peers`] is its `PeerDelegation`).
//!
//! Both modes run the same supervisor, worker and store code; only the transport differs.
//!
//! Layout: [`seam`] (the trait), [`local`], [`nats`] (tier 0's side: dispatch outbox, event
//! persistence through a [`journal::Journal`], cancel broadcast), [`node_transport`] (a
//! supervisor node's NATS transport), [`peers`] (the registry and clients of supervisor
//! nodes), [`wire`] (NATS names, event packing, the cancel message; the task and event
//! messages are re-exported from the node runtime), [`conn`] (the NATS connection and
//! streams), [`pause_wire`] (pause sets as wire messages), [`config`] (`[bus]`), [`error`].

#![forbid(unsafe_code)]

pub mod config;
pub mod conn;
pub mod error;
pub mod journal;
pub mod local;
pub mod nats;
pub mod node_transport;
pub mod pause_wire;
pub mod peers;
pub mod seam;
pub mod wire;

pub use config::BusConfig;
pub use error::{BusError, BusResult};
pub use journal::Journal;
pub use local::LocalBus;
pub use seam::Bus;
