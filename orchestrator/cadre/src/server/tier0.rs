//! A tier-0 process (role `all`, the default, or `orchestrator`): the store and its writer,
//! the hub, auth, the node core, the bus to the supervisors, and every face. With role `all`
//! it also runs the supervisors (in process, or fed from NATS like any supervisor node).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cadre_bus::nats::NatsBus;
use cadre_bus::peers::{PeerEntry, Peers};
use cadre_bus::{Bus, LocalBus};
use cadre_core::audit;
use cadre_core::auth::Authenticator;
use cadre_core::budget::Budgets;
use cadre_core::config::{Config, ConfigSource};
use cadre_core::delegate::NodeDelegate;
use cadre_core::hub::Hub;
use cadre_core::node::{Node, NodeParts};
use cadre_core::recovery::StoreRecovery;
use cadre_core::writer::{HubFeed, Writer};
use cadre_faces::workers::WorkerApi;
use cadre_store::Store;
use cadre_store::chain::Sealer;
use cadre_store::sqlite::SqliteStore;
use cadre_supervisors::node::{NodeRuntime, NodeSink};
use cadre_supervisors::{Orchestrator, OrchestratorArgs, OrchestratorMsg, TaskSink, TaskSource};
use ractor::{Actor, ActorRef};

use crate::server::listeners::{Bound, lock_store_url, write_endpoints};
use crate::server::parts::{Parts, node_runtime, run_node};
use crate::server::running::Running;
use crate::server::serving::{Services, spawn_servers};

/// How often a tier-0 replica in distributed mode replaces its unfinished-task counters
/// (`limits.max_pending_tasks`, per-tenant caps) with the shared store's count.
pub const PENDING_REFRESH: Duration = Duration::from_secs(1);

/// Starts a tier-0 process on `bound` listeners.
pub(crate) async fn start(
    config: Config,
    source: ConfigSource,
    mut bound: Bound,
    parts: Parts,
) -> anyhow::Result<Running> {
    let nats = config.bus.is_nats();
    let durable = Durable::open(&config).await?;
    let recovery = StoreRecovery {
        store: durable.store.clone(),
        router: parts.router.clone(),
        sink: Arc::new(durable.writer.clone()),
    };
    let auth = authenticator(&config, durable.store.clone()).await?;
    let node_delegate = Arc::new(NodeDelegate(std::sync::OnceLock::new()));
    let peers = nats.then(|| parts.peers(&config, &auth));
    let runtime = local_runtime(&config, &parts, peers.as_ref());
    let orchestrator = actor_tree(
        &config,
        &parts,
        &recovery,
        runtime.as_ref(),
        node_delegate.clone(),
    )
    .await?;
    let bus: Arc<dyn Bus> = match peers {
        Some(peers) => nats_bus(&config, &durable, &recovery, peers, runtime.clone(), &bound.url),
        None => Arc::new(LocalBus {
            orchestrator: orchestrator.clone(),
        }),
    };
    let node = Node::start(NodeParts {
        config: config.clone(),
        source,
        store: durable.store.clone(),
        writer: durable.writer.clone(),
        hub: durable.hub.clone(),
        orchestrator: orchestrator.clone(),
        router: parts.router.clone(),
        auth,
        budgets: durable.budgets.clone(),
        bus,
    });
    let _ = node_delegate.0.set(Arc::downgrade(&node));
    // Debounced tasks are dispatched when their window ends (stored ones included).
    cadre_core::debounce::spawn(&node);
    cadre_core::pauses::spawn_delivery(&node).await;
    // Credentials every second; with NATS (replicas may share the store) budgets and the
    // replica count that splits submit rates too.
    let replica = format!("{}-{:08x}", config.node.id, fastrand::u32(..));
    cadre_core::replicas::spawn(&node, replica, nats, parts.shutdown.clone());
    node.register_workflow_files(&config.workflows.files)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let workflow_engine = cadre_core::workflows::engine::spawn(node.clone())
        .await
        .context("cannot start the workflow engine")?;
    cadre_core::schedules::scheduler::spawn(&node, parts.shutdown.clone());
    // Finished tasks and audit records past their time to live (`[retention]`); prunes'
    // checkpoints are signed with the node key, like the records this node seals.
    let pruner = Sealer::new(audit::node_key(&config.node.data_dir)?, &config.node.data_dir);
    cadre_core::retention::sweeper::spawn(&node, pruner, parts.shutdown.clone());
    let view: Arc<dyn cadre_core::system_tasks::NodeView> = node.clone();
    let _ = parts.node_cell.set(Arc::downgrade(&view));
    // Remote workers are served where supervisors run.
    let workers = (!config.local_supervisors().is_empty()).then(|| WorkerApi {
        hub: parts.remote_hub,
        auth: node.auth.clone(),
        node: Some(node.clone()),
        shutdown: parts.shutdown.clone(),
    });
    let sockets = bound.sockets.take().expect("the listeners are bound once");
    let servers = spawn_servers(
        Services::Node(node.clone()),
        workers,
        node.clone(),
        Some(node.clone()),
        sockets,
        &config.server,
        &parts.shutdown,
    );
    let endpoints_file = write_endpoints(&config, &bound)?;
    tracing::info!(grpc = %bound.grpc_addr, http = %bound.http_addr, data_dir = %config.node.data_dir.display(), role = ?config.node.role, "cadre serving");
    Ok(Running {
        workflow_engine: Some(workflow_engine),
        grpc_addr: bound.grpc_addr,
        http_addr: bound.http_addr,
        node: Some(node),
        runtime,
        orchestrator,
        writer: Some(durable.writer),
        grace: Duration::from_millis(config.server.shutdown_grace_ms),
        shutdown: parts.shutdown,
        servers,
        writer_task: Some(durable.writer_task),
        endpoints_file,
        _lock: bound.lock,
        _store_lock: durable.store_lock,
    })
}

/// The durable side of tier 0: the store, the writer in front of it, the hub it feeds and the
/// budgets it records into.
struct Durable {
    store: Arc<dyn Store>,
    hub: Hub,
    writer: Writer,
    writer_task: tokio::task::JoinHandle<()>,
    budgets: Arc<Budgets>,
    /// With NATS: woken when this replica or another one commits (the hub's tailer reads).
    wake: Arc<tokio::sync::Notify>,
    /// With NATS: the bus, once it exists, to tell other replicas about this one's commits.
    announce: Arc<tokio::sync::OnceCell<Arc<NatsBus>>>,
    store_lock: Option<std::fs::File>,
}

impl Durable {
    /// Opens the store and starts the writer. With NATS, several tier-0 replicas may share the
    /// store: the hub is then fed by a tailer that reads every replica's commits back in
    /// cursor order, and the unfinished-task counters are refreshed from the store.
    async fn open(config: &Config) -> anyhow::Result<Durable> {
        let nats = config.bus.is_nats();
        let store_lock = lock_store_url(&config.store.url)?;
        let store = open_store(config).await?;
        let hub = Hub::new(config.limits.event_buffer);
        let pending = store.count_unfinished().await?;
        let sealer = Sealer::new(audit::node_key(&config.node.data_dir)?, &config.node.data_dir);
        let budgets = Arc::new(todays_budgets(config, store.as_ref()).await?);
        let wake = Arc::new(tokio::sync::Notify::new());
        let announce: Arc<tokio::sync::OnceCell<Arc<NatsBus>>> = Arc::new(tokio::sync::OnceCell::new());
        let feed = if nats {
            let start = store.max_cursor().await?;
            tokio::spawn(cadre_core::hub::tail(
                store.clone(),
                hub.clone(),
                wake.clone(),
                start,
            ));
            let announce = announce.clone();
            HubFeed::Tail {
                wake: wake.clone(),
                announce: Arc::new(move || {
                    if let Some(b) = announce.get() {
                        b.announce_commit()
                    }
                }),
            }
        } else {
            HubFeed::Direct
        };
        let (writer, writer_task) = Writer::spawn(
            store.clone(),
            hub.clone(),
            config.store.batch_max,
            config.store.queue_capacity,
            pending,
            Some(sealer),
            budgets.clone(),
            feed,
        );
        let calls = cadre_core::llm_calls::CallCapture::new(&config.llm_calls).map_err(anyhow::Error::msg)?;
        let writer = writer.with_llm_calls(calls);
        if nats {
            // Other tier-0 replicas may share the store: their intake and finishes move the
            // unfinished-task counts too.
            writer.refresh_pending(store.clone(), PENDING_REFRESH);
        }
        Ok(Durable {
            store,
            hub,
            writer,
            writer_task,
            budgets,
            wake,
            announce,
            store_lock,
        })
    }
}

/// The store `store.url` names, or `<data_dir>/cadre.db`.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let full = config.store.synchronous == "full";
    if config.store.url.is_empty() {
        let path = config.node.data_dir.join("cadre.db");
        let store = SqliteStore::open(&path, full)
            .await
            .with_context(|| format!("cannot open store {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    cadre_store::open(&config.store.url, full)
        .await
        .with_context(|| format!("cannot open store {}", redact_url(&config.store.url)))
}

/// A URL with its password replaced, for messages and logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The budgets with today's spend, read from the store's usage records.
async fn todays_budgets(config: &Config, store: &dyn Store) -> anyhow::Result<Budgets> {
    let today = cadre_proto::clock::utc_day(cadre_proto::clock::now_ms());
    let spent = cadre_core::replicas::todays_spend(store, &today).await?;
    Ok(Budgets::new(config.budgets.clone(), today, spent))
}

/// The authenticator on the store's API keys; writes the commander credential to the data
/// dir on first start (unless auth is off, which it warns about).
async fn authenticator(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Arc<Authenticator>> {
    let auth = Arc::new(Authenticator::open(&config.auth, &config.node.data_dir, Some(store)).await?);
    if auth.disabled() {
        tracing::warn!("auth.mode = \"none\": every caller is an unauthenticated commander");
    } else {
        let path = auth.bootstrap(&config.node.data_dir).await?;
        tracing::info!(credentials = %path.display(), algorithm = %config.auth.algorithm, "authentication on; commander credential in the data dir");
    }
    Ok(auth)
}

/// With NATS, a process that runs supervisors (role `all`) feeds them from NATS like any
/// supervisor node, through a node runtime of its own.
fn local_runtime(config: &Config, parts: &Parts, peers: Option<&Peers>) -> Option<Arc<NodeRuntime>> {
    let peers = peers?;
    (!config.local_supervisors().is_empty()).then(|| node_runtime(config, parts, peers))
}

/// The root actor of this process's supervisors. In process it recovers from the store;
/// with NATS it runs only the supervisors of an `all` process, fed by `runtime`.
async fn actor_tree(
    config: &Config,
    parts: &Parts,
    recovery: &StoreRecovery,
    runtime: Option<&Arc<NodeRuntime>>,
    delegate: Arc<NodeDelegate>,
) -> anyhow::Result<ActorRef<OrchestratorMsg>> {
    let (sink, source): (Arc<dyn TaskSink>, Arc<dyn TaskSource>) = match runtime {
        Some(r) => (Arc::new(NodeSink(r.clone())), r.clone()),
        None if config.bus.is_nats() => (recovery.sink.clone(), Arc::new(NoRecovery)),
        None => (recovery.sink.clone(), Arc::new(recovery.clone())),
    };
    let args = OrchestratorArgs {
        specs: config.local_supervisors(),
        cancel_grace: parts.cancel_grace,
        sink,
        recovery: source,
        delegate: Some(delegate),
        // The pauses stored when the tree starts, so recovered tasks are held from the first
        // moment; later changes arrive as OrchestratorMsg::SetPauses.
        gates: cadre_supervisors::Gates {
            dispatch: Arc::new(cadre_supervisors::Dispatch::new(&config.dispatch())),
            pauses: cadre_core::pauses::stored_set(recovery.store.as_ref())
                .await
                .context("cannot read the pause set")?,
        },
    };
    let (orchestrator, _) = Actor::spawn(None, Orchestrator, args)
        .await
        .context("cannot start the actor tree")?;
    if let Some(r) = runtime {
        r.set_orchestrator(orchestrator.clone());
    }
    Ok(orchestrator)
}

/// The NATS bus of tier 0; with local supervisors, their node runtime is started too.
fn nats_bus(
    config: &Config,
    durable: &Durable,
    recovery: &StoreRecovery,
    peers: Peers,
    runtime: Option<Arc<NodeRuntime>>,
    url: &str,
) -> Arc<dyn Bus> {
    let bus = NatsBus::start(
        config.bus.clone(),
        Arc::new(durable.writer.clone()),
        peers.clone(),
        config.limits.max_pending_tasks.min(1 << 20) as usize + 1024,
        durable.wake.clone(),
        recovery.store.clone(),
        recovery.router.clone(),
    );
    let _ = durable.announce.set(bus.clone());
    if let Some(r) = runtime {
        let entry = PeerEntry {
            node_id: config.node.id.clone(),
            url: url.to_string(),
            supervisors: config.local_supervisors().keys().cloned().collect(),
        };
        run_node(r, peers, config.bus.clone(), entry, false);
    }
    bus
}

/// A tier-0 process with NATS runs no local supervisors, so nothing to recover locally (the
/// store's unfinished tasks are republished by the bus).
struct NoRecovery;

#[async_trait::async_trait]
impl TaskSource for NoRecovery {
    async fn unfinished(
        &self,
        _supervisor: Option<&str>,
    ) -> Result<Vec<(String, cadre_supervisors::QueuedTask)>, cadre_supervisors::SourceError> {
        Ok(Vec::new())
    }
}
