//! The `system` supervisor's node tasks: executors that need tier 0's own parts (store, bus,
//! audit chain, config, metrics), so they live here rather than in `cadre-agents`.
//!
//! | executor          | task type                  | what it does |
//! |-------------------|----------------------------|--------------|
//! | `node_health`     | `system.health.node`       | store and bus reachability with latency, readiness |
//! | `metrics_snapshot`| `system.monitor.metrics`   | the node's Prometheus metrics as JSON, optionally by name prefix |
//! | `audit_verify`    | `system.audit.verify`      | checks every link and signature of the audit chain and the signed head |
//! | `config_check`    | `system.config.validate`   | validates a TOML config (given, or the node's own file) |
//!
//! `metrics_snapshot`, `audit_verify` and `config_check` need the supervisor role to submit
//! ([`routes::SUPERVISOR_ONLY`]): they show node-wide state. They reach the node through a [`view::NodeView`] in a cell filled once the node exists. On a supervisor-only node
//! (`--role supervisor`) there is no store, audit chain or intake, and they fail with a clear
//! error: route these types to a supervisor that runs in a tier-0 process.

mod audit_verify;
mod config_check;
mod metrics_snapshot;
mod node_health;
pub mod routes;
pub mod view;

use std::sync::Arc;

use cadre_agents::ExecutorRegistry;

pub use audit_verify::AuditVerify;
pub use config_check::{ConfigCheck, MAX_CONFIG_BYTES};
pub use metrics_snapshot::{MAX_SAMPLES, MetricsSnapshot};
pub use node_health::NodeHealth;
pub use routes::{EXECUTORS, ROUTES, SUPERVISOR_ONLY};
pub use view::{NodeCell, NodeView};

/// Registers the node tasks' executors, reaching the node through `cell`.
pub fn register(r: &mut ExecutorRegistry, cell: &NodeCell) {
    r.register("node_health", Arc::new(NodeHealth(cell.clone())));
    r.register("metrics_snapshot", Arc::new(MetricsSnapshot));
    r.register("audit_verify", Arc::new(AuditVerify(cell.clone())));
    r.register("config_check", Arc::new(ConfigCheck(cell.clone())));
}
