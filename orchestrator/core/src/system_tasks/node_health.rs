//! `node_health` (`system.health.node`).

use std::time::Instant;

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor};
use serde_json::{Value, json};

use crate::system_tasks::view::{NodeCell, empty_params_schema, no_params, node};

/// `node_health`: is the store reachable (and how fast), is the bus connected, is the node
/// ready. An unreachable store is a result (`store_up: false`), not a failure.
pub struct NodeHealth(pub NodeCell);

#[async_trait]
impl Executor for NodeHealth {
    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        no_params(&params)?;
        let node = node(&self.0)?;
        let started = Instant::now();
        let store = node.store().ping().await;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        let bus_up = node.bus_ready();
        let store_up = store.is_ok();
        Ok(json!({
            "node_id": node.node_id(),
            "store_up": store_up,
            "store_latency_ms": (latency * 1000.0).round() / 1000.0,
            "store_error": store.err().map(|e| e.to_string()),
            "bus_up": bus_up,
            // What `Node::ready` (and /ready) answers, from the probes above rather than a
            // second store round trip.
            "ready": store_up && bus_up,
        }))
    }

    fn params_schema(&self) -> Option<Value> {
        Some(empty_params_schema())
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "node_id": { "type": "string" },
                "store_up": { "type": "boolean" },
                "store_latency_ms": { "type": "number", "minimum": 0 },
                "store_error": { "type": ["string", "null"] },
                "bus_up": { "type": "boolean" },
                "ready": { "type": "boolean", "description": "What /ready answers" },
            },
            "required": ["node_id", "store_up", "store_latency_ms", "store_error", "bus_up", "ready"],
            "additionalProperties": false,
        }))
    }
}
