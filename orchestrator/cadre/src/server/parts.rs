//! What every role of process is made of before it differs: the routes and executors (with
//! the node tasks and the remote-worker hub), how it reaches its peers, and how it announces
//! its supervisors in the peer registry.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cadre_bus::config::BusConfig;
use cadre_bus::node_transport::NatsTransport;
use cadre_bus::peers::{PeerEntry, Peers};
use cadre_core::auth::Authenticator;
use cadre_core::config::Config;
use cadre_core::system_tasks::NodeCell;
use cadre_executors::{RemoteHub, remote};
use cadre_supervisors::node::NodeRuntime;
use cadre_supervisors::{Router, SharedRoutes};
use tokio_util::sync::CancellationToken;

/// The parts every role starts from.
pub(crate) struct Parts {
    /// Routes and executors (the configured ones, `remote` on this process's hub, and the node
    /// tasks).
    pub router: Router,
    /// Where remote workers attach; shared by WorkerService and the `remote` executor.
    pub remote_hub: Arc<RemoteHub>,
    /// Filled with the node once it exists (tier 0); the node tasks read through it.
    pub node_cell: NodeCell,
    /// How long a cancelled executor may take to stop.
    pub cancel_grace: Duration,
    /// Cancelled to stop the servers.
    pub shutdown: CancellationToken,
}

impl Parts {
    /// The parts `config` describes.
    pub fn new(config: &Config) -> Parts {
        let routes: SharedRoutes = Arc::new(RwLock::new(Arc::new(config.effective_routes())));
        let node_cell = NodeCell::default();
        // Remote workers connect to this process's WorkerService and run the tasks its
        // `remote` executor dispatches: both share one hub.
        let remote_hub = RemoteHub::new(config.executors.remote.clone());
        // The llm executor sends prompts and replies with its usage only when the node keeps
        // them (`[llm_calls]`).
        let mut executors = config.executors.clone();
        executors.llm.capture_bytes = config.llm_calls.executor_capture_bytes();
        let mut registry = cadre_executors::configured(&executors);
        remote::register_with(&mut registry, remote_hub.clone());
        cadre_core::system_tasks::register(&mut registry, &node_cell);
        cadre_faces::workers::record_connected(&remote_hub);
        Parts {
            router: Router { routes, registry },
            remote_hub,
            node_cell,
            cancel_grace: Duration::from_millis(config.limits.cancel_grace_ms),
            shutdown: CancellationToken::new(),
        }
    }

    /// The peer registry, calling peers with tokens `auth` mints.
    pub fn peers(&self, config: &Config, auth: &Arc<Authenticator>) -> Peers {
        Peers::new(
            self.router.routes.clone(),
            minter(auth, &config.node.id),
            Duration::from_millis(config.bus.peer_ttl_ms),
        )
    }
}

/// A node runtime for this process's local supervisors (by `config.local_supervisors()`),
/// delegating sub-tasks through `peers`; [`run_node`] starts it.
pub(crate) fn node_runtime(config: &Config, parts: &Parts, peers: &Peers) -> Arc<NodeRuntime> {
    NodeRuntime::new(
        config.bus.node_settings(),
        parts.router.clone(),
        config.local_supervisors().keys().cloned().collect(),
        Arc::new(peers.clone()),
    )
}

/// Connects `runtime` to NATS in the background, then announces this node's supervisors in
/// the peer registry (under a per-start key) and starts pulling work. `attach` also gives the
/// registry its connection (a supervisor node; a tier-0 process attached it already).
pub(crate) fn run_node(
    runtime: Arc<NodeRuntime>,
    peers: Peers,
    bus: BusConfig,
    entry: PeerEntry,
    attach: bool,
) {
    let key = peer_key(&entry.node_id);
    let what = if attach {
        "supervisor node"
    } else {
        "local supervisors"
    };
    tokio::spawn(async move {
        let c = cadre_bus::conn::connect(&bus, what).await;
        if attach {
            peers.attach(c.clone()).await;
        }
        tokio::spawn(peers.clone().announce_owned(key, entry));
        runtime.run(NatsTransport::new(c, &bus)).await;
    });
}

/// Registry key of this process: its node id plus a per-start instance tag, so replicas that
/// share an id (or a restart before the old entry expired) never overwrite each other.
fn peer_key(node_id: &str) -> String {
    let clean: String = node_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}-{:08x}", fastrand::u32(..))
}

/// Mints short-lived commander tokens for calls to peers (None when auth is off).
fn minter(auth: &Arc<Authenticator>, node_id: &str) -> cadre_bus::peers::Minter {
    let auth = auth.clone();
    let subject = format!("node-{}", peer_key(node_id));
    Arc::new(move || {
        if auth.disabled() {
            return None;
        }
        auth.issue_node_token(&subject, Duration::from_secs(300))
            .map_err(|e| tracing::warn!(error = %e, "cannot mint a node token"))
            .ok()
    })
}
