//! The `[bus]` config section.

use std::time::Duration;

use cadre_supervisors::node::NodeSettings;
use serde::{Deserialize, Serialize};

/// How long a supervisor node waits after it starts for tier 0's pause set (sent every 2 s
/// to every registered node) before it takes work without one.
pub const NODE_PAUSES_WAIT: Duration = Duration::from_secs(10);

/// The bus between tier 0 and the supervisors. With `nats_url` empty everything stays in
/// one process; with it set, tasks go through a JetStream work queue per supervisor kind and
/// events come back through a JetStream events stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`; empty = in-process bus.
    pub nats_url: String,
    /// Prefix of every stream, subject, consumer and KV bucket, so several clusters (and
    /// tests) can share one NATS server. Letters, digits, `_` and `-`.
    pub prefix: String,
    /// How long JetStream waits for a task's ack before delivering it again; running tasks
    /// are kept alive by in-progress heartbeats sent every third of it.
    pub ack_wait_ms: u64,
    /// Deliveries of one task message before it is dead-lettered (the task FAILED with reason
    /// `dead-lettered`).
    pub max_deliver: u32,
    /// Task messages one supervisor replica holds at once (running and locally queued).
    pub max_inflight: usize,
    /// A supervisor node's entry in the peer registry expires this long after its last
    /// heartbeat.
    pub peer_ttl_ms: u64,
    /// Longest wait between attempts to reach NATS (at start and after losing it).
    pub reconnect_max_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            nats_url: String::new(),
            prefix: "cadre".into(),
            ack_wait_ms: 30_000,
            max_deliver: 5,
            max_inflight: 256,
            peer_ttl_ms: 10_000,
            reconnect_max_ms: 5_000,
        }
    }
}

impl BusConfig {
    /// Whether tasks travel over NATS.
    pub fn is_nats(&self) -> bool {
        !self.nats_url.is_empty()
    }

    /// What a supervisor node's runtime follows of this section (and how long it waits for
    /// tier 0's pause set after it starts: [`NODE_PAUSES_WAIT`]).
    pub fn node_settings(&self) -> NodeSettings {
        NodeSettings {
            max_inflight: self.max_inflight,
            max_deliver: self.max_deliver,
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            pauses_wait: NODE_PAUSES_WAIT,
        }
    }
}
