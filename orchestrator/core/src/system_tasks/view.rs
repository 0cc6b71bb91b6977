//! What the node tasks see of the node: a [`NodeView`], reached through a cell filled once
//! the node exists (so the executors can be registered before it is built), and the helpers
//! they share.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use cadre_agents::ExecError;
use cadre_store::Store;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Config, ConfigError};

/// The parts of tier 0 the node tasks read.
#[async_trait]
pub trait NodeView: Send + Sync {
    /// This node's id.
    fn node_id(&self) -> &str;
    /// The durable record.
    fn store(&self) -> Arc<dyn Store>;
    /// Whether the bus can carry tasks now.
    fn bus_ready(&self) -> bool;
    /// The data directory (node key, signed audit head).
    fn data_dir(&self) -> PathBuf;
    /// The node's config file as it is now on disk (what a reload would apply).
    fn load_config(&self) -> Result<Config, ConfigError>;
}

/// Where the node tasks find the node once it is built.
pub type NodeCell = Arc<OnceLock<Weak<dyn NodeView>>>;

/// The node, or why this process has none.
pub(crate) fn node(cell: &NodeCell) -> Result<Arc<dyn NodeView>, ExecError> {
    cell.get().and_then(Weak::upgrade).ok_or_else(|| {
        ExecError::Fatal(
            "this task needs tier 0's store, audit chain and config, and this process has none \
             (a supervisor-only node): route it to a supervisor that runs in a tier-0 process"
                .into(),
        )
    })
}

/// Refuses any params (the tasks that take none).
pub(crate) fn no_params(params: &Value) -> Result<(), ExecError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    cadre_agents::executor::decode_params::<Empty>(params).map(drop)
}

/// The params schema of a task that takes none.
pub(crate) fn empty_params_schema() -> Value {
    json!({ "type": "object", "properties": {}, "additionalProperties": false })
}
