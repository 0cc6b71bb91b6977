//! The node: the one value every face (gRPC, HTTP, MCP, workers) calls, on top of the store,
//! the writer, the event hub and the root actor; one per tier-0 process. Its operations live
//! in the modules named for what they do ([`crate::intake`], [`crate::tasks`],
//! [`crate::admin`], [`crate::credentials`], [`crate::access`]); this file holds what it is
//! made of and its housekeeping.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cadre_proto::SpecLimits;
use cadre_store::Store;
use cadre_supervisors::{OrchestratorMsg, Router};
use ractor::ActorRef;

use crate::auth::Authenticator;
use crate::budget::Budgets;
use crate::config::{Config, ConfigSource};
use crate::hub::Hub;
use crate::quota::Quotas;
use crate::writer::Writer;

/// The node's shared core.
pub struct Node {
    /// This node's id.
    pub node_id: String,
    pub(crate) config: RwLock<Config>,
    pub(crate) source: ConfigSource,
    pub(crate) limits: SpecLimits,
    /// Checks credentials and permissions.
    pub auth: Arc<Authenticator>,
    /// Per-tenant rate limits and caps.
    pub(crate) quotas: Quotas,
    /// Prices, daily caps and today's spend.
    pub(crate) budgets: Arc<Budgets>,
    pub(crate) store: Arc<dyn Store>,
    /// Task reads, coalesced into batches where the store prefers that.
    pub(crate) reads: cadre_store::reads::Reads,
    pub(crate) writer: Writer,
    pub(crate) hub: Hub,
    pub(crate) orchestrator: ActorRef<OrchestratorMsg>,
    /// Routes and executors: intake resolves types and builds runnable tasks with it.
    pub(crate) router: Router,
    /// How tasks reach supervisors: in process, or over NATS.
    pub(crate) bus: Arc<dyn cadre_bus::Bus>,
    /// Workflow definitions, parsed and compiled.
    pub(crate) workflows: crate::workflows::Workflows,
    /// The pause set last read from the store (kept in step by `crate::pauses`).
    pub(crate) pauses: crate::paused::Paused,
    /// Debounced tasks waiting for their window to end.
    pub(crate) debouncer: crate::debounce::due::Debouncer,
    /// Each pool's queue depth, sampled for the dashboard (`crate::depths`).
    pub(crate) depths: crate::depths::DepthHistory,
}

/// Everything a node is made of, assembled by the binary at start ([`Node::start`]).
pub struct NodeParts {
    /// The configuration in force at start.
    pub config: Config,
    /// Where a reload reads the configuration again.
    pub source: ConfigSource,
    /// The durable record.
    pub store: Arc<dyn Store>,
    /// The group-commit writer in front of it.
    pub writer: Writer,
    /// Live event fan-out.
    pub hub: Hub,
    /// The root actor of this process's supervisors.
    pub orchestrator: ActorRef<OrchestratorMsg>,
    /// Routes and executors.
    pub router: Router,
    /// Credentials and permissions.
    pub auth: Arc<Authenticator>,
    /// Prices, caps and today's spend (shared with the writer).
    pub budgets: Arc<Budgets>,
    /// How tasks reach supervisors.
    pub bus: Arc<dyn cadre_bus::Bus>,
}

/// How often idle tenants' rate buckets are forgotten.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);
/// How often `cadre_store_up` and `cadre_bus_up` are refreshed.
const PROBE_EVERY: Duration = Duration::from_secs(5);

impl Node {
    /// Assembles a node from its parts and starts its housekeeping: idle tenants' rate buckets
    /// forgotten every minute, the `cadre_store_up`/`cadre_bus_up` gauges refreshed every 5 s.
    /// Both hold only a weak reference, so the node can still be dropped at shutdown.
    pub fn start(parts: NodeParts) -> Arc<Node> {
        let node = Arc::new(Node {
            node_id: parts.config.node.id.clone(),
            limits: parts.config.spec_limits(),
            quotas: Quotas::new(&parts.config.quotas),
            config: RwLock::new(parts.config),
            source: parts.source,
            reads: cadre_store::reads::Reads::spawn(parts.store.clone()),
            store: parts.store,
            writer: parts.writer,
            hub: parts.hub,
            orchestrator: parts.orchestrator,
            router: parts.router,
            auth: parts.auth,
            budgets: parts.budgets,
            bus: parts.bus,
            workflows: Default::default(),
            pauses: Default::default(),
            debouncer: Default::default(),
            depths: Default::default(),
        });
        crate::depths::spawn_sampler(Arc::downgrade(&node));
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FORGET_IDLE_EVERY).await;
                let Some(node) = weak.upgrade() else { return };
                node.quotas.forget_idle();
            }
        });
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            loop {
                let Some(node) = weak.upgrade() else { return };
                node.probe_dependencies().await;
                drop(node);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        node
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the node can accept work (store reachable, bus connected).
    pub async fn ready(&self) -> bool {
        self.bus.ready() && self.store.ping().await.is_ok()
    }

    /// Sets the `cadre_store_up` and `cadre_bus_up` gauges (1 reachable, 0 not).
    pub async fn probe_dependencies(&self) {
        let store = self.store.ping().await.is_ok();
        metrics::gauge!("cadre_store_up").set(f64::from(u8::from(store)));
        metrics::gauge!("cadre_bus_up").set(f64::from(u8::from(self.bus.ready())));
    }
}

#[async_trait::async_trait]
impl crate::system_tasks::NodeView for Node {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    fn bus_ready(&self) -> bool {
        self.bus.ready()
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.config().node.data_dir
    }

    fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        self.source.load()
    }
}
