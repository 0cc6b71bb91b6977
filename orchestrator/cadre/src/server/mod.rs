//! Starting and stopping a node, one start function per role: [`tier0`] (roles `all` and
//! `orchestrator`) and [`supervisor_node`] (role `supervisor`), on listeners bound by
//! [`listeners`], from the [`parts`] every role shares, serving through [`serving`].
//!
//! [`start`] binds both listeners first (port 0 picks free ports), recovers unfinished tasks,
//! and writes the bound addresses to `<data_dir>/endpoints.json` so the CLI and tests can find
//! a node started on port 0. [`Running::shutdown`] stops intake, waits up to
//! `server.shutdown_grace_ms` for open calls, stops the actor tree and flushes the writer.

mod accept;
mod grpc_listener;
mod http_listener;
mod inflight;
mod listeners;
mod parts;
mod running;
mod serving;
mod supervisor_node;
mod tier0;

pub use listeners::Endpoints;
pub use running::Running;
pub use tier0::PENDING_REFRESH;

use cadre_core::config::{Config, ConfigSource, NodeRole};

/// Starts a node with `config`; `source` is re-read by ReloadConfig and SIGHUP. What runs
/// depends on `node.role` and `bus.nats_url` (see `cadre_bus`).
pub async fn start(config: Config, source: ConfigSource) -> anyhow::Result<Running> {
    config.validate()?;
    cadre_core::telemetry::init_metrics();
    cadre_core::telemetry::export_known_series(&config);
    let bound = listeners::Bound::bind(&config).await?;
    let parts = parts::Parts::new(&config);
    match config.node.role {
        NodeRole::Supervisor => supervisor_node::start(config, bound, parts).await,
        NodeRole::All | NodeRole::Orchestrator => tier0::start(config, source, bound, parts).await,
    }
}
