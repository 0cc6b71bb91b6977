//! A supervisor-only node (`--role supervisor`): tiers 1 and 2 for its supervisors, fed from
//! NATS by the node runtime; SupervisorPeer and WorkerService over gRPC; probes and metrics
//! over HTTP. No store, no intake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cadre_bus::peers::PeerEntry;
use cadre_core::auth::Authenticator;
use cadre_core::config::Config;
use cadre_faces::http;
use cadre_faces::peer_service::PeerService;
use cadre_faces::workers::WorkerApi;
use cadre_supervisors::node::{DelegateToPeers, NodeRuntime, NodeSink};
use cadre_supervisors::{Orchestrator, OrchestratorArgs};
use ractor::Actor;

use crate::server::listeners::{Bound, write_endpoints};
use crate::server::parts::{Parts, node_runtime, run_node};
use crate::server::running::Running;
use crate::server::serving::{Services, spawn_servers};

/// Starts a supervisor node on `bound` listeners.
pub(crate) async fn start(config: Config, mut bound: Bound, parts: Parts) -> anyhow::Result<Running> {
    let auth = Arc::new(Authenticator::open(&config.auth, &config.node.data_dir, None).await?);
    let peers = parts.peers(&config, &auth);
    let local = config.local_supervisors();
    let runtime = node_runtime(&config, &parts, &peers);
    let args = OrchestratorArgs {
        specs: local.clone(),
        cancel_grace: parts.cancel_grace,
        sink: Arc::new(NodeSink(runtime.clone())),
        recovery: runtime.clone(),
        delegate: Some(Arc::new(DelegateToPeers(Arc::downgrade(&runtime)))),
        gates: cadre_supervisors::Gates {
            dispatch: Arc::new(cadre_supervisors::Dispatch::new(&config.dispatch())),
            pauses: runtime.pauses(),
        },
    };
    let (orchestrator, _) = Actor::spawn(None, Orchestrator, args)
        .await
        .context("cannot start the actor tree")?;
    runtime.set_orchestrator(orchestrator.clone());
    let entry = PeerEntry {
        node_id: config.node.id.clone(),
        url: bound.url.clone(),
        supervisors: local.keys().cloned().collect(),
    };
    run_node(runtime.clone(), peers, config.bus.clone(), entry, true);
    let face = Arc::new(SupervisorFace {
        runtime: runtime.clone(),
        auth: auth.clone(),
        metrics_public: config.auth.metrics_public,
    });
    let workers = WorkerApi {
        hub: parts.remote_hub,
        auth: auth.clone(),
        node: None,
        shutdown: parts.shutdown.clone(),
    };
    let peer = PeerService {
        runtime: runtime.clone(),
        orchestrator: orchestrator.clone(),
        auth,
        limits: config.spec_limits(),
        max_delegation_depth: config.limits.max_delegation_depth,
        node_id: config.node.id.clone(),
        url: bound.url.clone(),
    };
    let sockets = bound.sockets.take().expect("the listeners are bound once");
    let servers = spawn_servers(
        Services::Peer(peer),
        Some(workers),
        face,
        None,
        sockets,
        &config.server,
        &parts.shutdown,
    );
    let endpoints_file = write_endpoints(&config, &bound)?;
    tracing::info!(grpc = %bound.grpc_addr, http = %bound.http_addr, supervisors = ?local.keys().collect::<Vec<_>>(), "cadre supervisor node serving");
    Ok(Running {
        workflow_engine: None,
        grpc_addr: bound.grpc_addr,
        http_addr: bound.http_addr,
        node: None,
        runtime: Some(runtime),
        orchestrator,
        writer: None,
        grace: Duration::from_millis(config.server.shutdown_grace_ms),
        shutdown: parts.shutdown,
        servers,
        writer_task: None,
        endpoints_file,
        _lock: bound.lock,
        _store_lock: None,
    })
}

/// The HTTP face of a supervisor node.
struct SupervisorFace {
    runtime: Arc<NodeRuntime>,
    auth: Arc<Authenticator>,
    metrics_public: bool,
}

#[async_trait::async_trait]
impl http::HttpFace for SupervisorFace {
    async fn ready(&self) -> bool {
        self.runtime.ready()
    }

    fn metrics_public(&self) -> bool {
        self.metrics_public
    }

    async fn authorize(
        &self,
        header: Option<&str>,
        action: cadre_core::auth::Action,
    ) -> Result<cadre_core::auth::Principal, cadre_core::error::Error> {
        self.auth.authorize(header, action)
    }
}
