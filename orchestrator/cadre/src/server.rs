//! Starting and stopping a node: store, writer, actor tree, gRPC and HTTP listeners.
//!
//! [`start`] binds both listeners first (port 0 picks free ports), recovers unfinished tasks,
//! and writes the bound addresses to `<data_dir>/endpoints.json` so the CLI and tests can find
//! a node started on port 0. [`Running::shutdown`] stops intake, waits up to
//! `server.shutdown_grace_ms` for open calls, stops the actor tree and flushes the writer.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use cadre_executors::{RemoteHub, remote};
use cadre_proto::v1::{
    admin_service_server::AdminServiceServer, supervisor_peer_server::SupervisorPeerServer,
    task_service_server::TaskServiceServer, worker_service_server::WorkerServiceServer,
};
use cadre_supervisors::TaskSink;
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use cadre_bus::host::{Host, HostDelegate, HostSink};
use cadre_bus::nats::NatsBus;
use cadre_bus::peers::{PeerEntry, Peers};
use cadre_bus::{Bus, LocalBus};
use cadre_core::audit;
use cadre_core::auth::Authenticator;
use cadre_core::budget::{self, Budgets};
use cadre_core::config::{Config, ConfigSource, NodeRole, ServerConfig, TlsConfig};
use cadre_core::delegate::NodeDelegate;
use cadre_core::hub::Hub;
use cadre_core::node::{Node, NodeParts};
use cadre_core::recovery::StoreRecovery;
use cadre_core::telemetry;
use cadre_core::writer::{HubFeed, Writer};
use cadre_faces::grpc::{AdminApi, PeerApi, TaskApi};
use cadre_faces::http;
use cadre_faces::peer_service::PeerService;
use cadre_faces::workers::WorkerApi;
use cadre_store::Store;
use cadre_store::UsageFilter;
use cadre_store::chain::Sealer;
use cadre_store::sqlite::SqliteStore;
use cadre_supervisors::{Orchestrator, OrchestratorArgs, OrchestratorMsg, Router, SharedRoutes};

/// How often a tier-0 replica in distributed mode replaces its unfinished-task counters
/// (`limits.max_pending_tasks`, per-tenant caps) with the shared store's count.
pub const PENDING_REFRESH: Duration = Duration::from_secs(1);

/// A started node.
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The node core (None on a supervisor node, which has no store or intake).
    pub node: Option<Arc<Node>>,
    /// The supervisor-node runtime (distributed mode), if this process pulls tasks from NATS.
    pub host: Option<Arc<Host>>,
    orchestrator: ActorRef<OrchestratorMsg>,
    writer: Option<Writer>,
    grace: Duration,
    shutdown: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
    writer_task: Option<tokio::task::JoinHandle<()>>,
    endpoints_file: PathBuf,
    _lock: File,
    _store_lock: Option<File>,
}

/// What `endpoints.json` holds.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Endpoints {
    /// gRPC endpoint URL, e.g. `http://127.0.0.1:50051`.
    pub grpc: String,
    /// HTTP base URL.
    pub http: String,
    /// The serving process.
    pub pid: u32,
}

impl Endpoints {
    /// Reads `<data_dir>/endpoints.json`, if a node wrote one.
    pub fn read(data_dir: &Path) -> Option<Endpoints> {
        let text = std::fs::read_to_string(data_dir.join("endpoints.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Takes the data directory's lock so two nodes never share one store.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    lock_file(&dir.join("lock"), &format!("data dir {}", dir.display()))
}

/// Takes an exclusive lock on `path` (created if missing) for the life of the process.
fn lock_file(path: &Path, what: &str) -> anyhow::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "{what} is in use by another cadre process (lock {})",
            path.display()
        )
    })?;
    Ok(file)
}

/// A `store.url` outside the data dir gets a lock of its own beside the database file, so two
/// nodes never write one SQLite file (the store keeps its view of unfinished tasks in memory).
fn lock_store_url(url: &str) -> anyhow::Result<Option<File>> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let path = rest
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let lock = PathBuf::from(format!("{path}.lock"));
    lock_file(&lock, &format!("store {path}")).map(Some)
}

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

/// The gRPC URL peers use to reach this process.
fn advertised_url(config: &Config, bound: SocketAddr, scheme: &str) -> String {
    if !config.node.advertise_addr.is_empty() {
        return format!("{scheme}://{}", config.node.advertise_addr);
    }
    let host = if bound.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    };
    format!("{scheme}://{}", SocketAddr::new(host, bound.port()))
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
        auth.issue_token(
            &subject,
            "default",
            cadre_core::auth::Role::Commander,
            Duration::from_secs(300),
        )
        .map_err(|e| tracing::warn!(error = %e, "cannot mint a node token"))
        .ok()
    })
}

/// Starts a node with `config`; `source` is re-read by ReloadConfig and SIGHUP. What runs
/// depends on `node.role` and `bus.nats_url` (see [`crate::bus`]).
pub async fn start(config: Config, source: ConfigSource) -> anyhow::Result<Running> {
    config.validate()?;
    telemetry::init_metrics();
    let lock = lock_data_dir(&config.node.data_dir)?;
    let grpc_listener = TcpListener::bind(&config.server.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on server.grpc_addr {}", config.server.grpc_addr))?;
    let http_listener = TcpListener::bind(&config.server.http_addr)
        .await
        .with_context(|| format!("cannot listen on server.http_addr {}", config.server.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let tls = server_tls(&config.tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = advertised_url(&config, grpc_addr, scheme);
    let routes: SharedRoutes = Arc::new(RwLock::new(Arc::new(config.effective_routes())));
    let node_cell = cadre_core::system_tasks::NodeCell::default();
    // Remote workers connect to this process's WorkerService and run the tasks its `remote`
    // executor dispatches: both share one hub.
    let remote_hub = RemoteHub::new(config.executors.remote.clone());
    let mut registry = cadre_executors::configured(&config.executors);
    remote::register_with(&mut registry, remote_hub.clone());
    cadre_core::system_tasks::register(&mut registry, &node_cell);
    let router = Router {
        routes: routes.clone(),
        registry: registry.clone(),
    };
    cadre_faces::workers::record_connected(&remote_hub);
    let cancel_grace = Duration::from_millis(config.limits.cancel_grace_ms);
    let shutdown = CancellationToken::new();
    let nats = config.bus.is_nats();

    // Supervisor node: no store, no intake; tasks come from NATS.
    if config.node.role == NodeRole::Supervisor {
        let auth = Arc::new(Authenticator::open(&config.auth, &config.node.data_dir, None).await?);
        let peers = Peers::new(
            routes.clone(),
            minter(&auth, &config.node.id),
            Duration::from_millis(config.bus.peer_ttl_ms),
        );
        let local = config.local_supervisors();
        let host = Host::new(
            config.bus.clone(),
            registry,
            routes,
            local.keys().cloned().collect(),
            peers.clone(),
        );
        let args = OrchestratorArgs {
            specs: local.clone(),
            cancel_grace,
            sink: Arc::new(HostSink(host.clone())),
            recovery: host.clone(),
            delegate: Some(Arc::new(HostDelegate(Arc::downgrade(&host)))),
        };
        let (orchestrator, _) = Actor::spawn(None, Orchestrator, args)
            .await
            .context("cannot start the actor tree")?;
        host.set_orchestrator(orchestrator.clone());
        let conn = Arc::new(tokio::sync::OnceCell::new());
        {
            let (host, peers, conn, bus) = (host.clone(), peers.clone(), conn.clone(), config.bus.clone());
            let entry = PeerEntry {
                node_id: config.node.id.clone(),
                url: url.clone(),
                supervisors: local.keys().cloned().collect(),
            };
            let key = peer_key(&config.node.id);
            tokio::spawn(async move {
                let c = cadre_bus::conn::connect(&bus, "supervisor node").await;
                let _ = conn.set(c.clone());
                peers.attach(c.clone()).await;
                tokio::spawn(peers.clone().announce_owned(key, entry));
                host.run(c).await;
            });
        }
        let face = Arc::new(SupervisorFace {
            host: host.clone(),
            conn,
            auth: auth.clone(),
            metrics_public: config.auth.metrics_public,
        });
        let workers = WorkerApi {
            hub: remote_hub,
            auth: auth.clone(),
            node: None,
            shutdown: shutdown.clone(),
        };
        let peer = PeerService {
            host: host.clone(),
            orchestrator: orchestrator.clone(),
            auth,
            limits: config.spec_limits(),
            node_id: config.node.id.clone(),
            url: url.clone(),
        };
        let servers = vec![
            tokio::spawn(serve_grpc(
                Services::Peer(peer),
                Some(workers),
                grpc_listener,
                config.server.clone(),
                tls,
                shutdown.clone(),
            )),
            tokio::spawn(serve_http(face, None, http_listener, shutdown.clone())),
        ];
        let endpoints_file = write_endpoints(&config, scheme, grpc_addr, http_addr)?;
        tracing::info!(grpc = %grpc_addr, http = %http_addr, supervisors = ?local.keys().collect::<Vec<_>>(), "cadre supervisor node serving");
        return Ok(Running {
            grpc_addr,
            http_addr,
            node: None,
            host: Some(host),
            orchestrator,
            writer: None,
            grace: Duration::from_millis(config.server.shutdown_grace_ms),
            shutdown,
            servers,
            writer_task: None,
            endpoints_file,
            _lock: lock,
            _store_lock: None,
        });
    }

    let store_lock = lock_store_url(&config.store.url)?;
    let store = open_store(&config).await?;
    let hub = Hub::new(config.limits.event_buffer);
    let pending = store.count_unfinished().await?;
    let sealer = Sealer::new(audit::node_key(&config.node.data_dir)?, &config.node.data_dir);
    let today = cadre_proto::clock::utc_day(cadre_proto::clock::now_ms());
    let filter = UsageFilter {
        day: Some(today.clone()),
        ..Default::default()
    };
    let mut spent: HashMap<String, budget::Spend> = HashMap::new();
    for u in store.usage(&filter).await? {
        let s = spent.entry(u.tenant).or_default();
        s.tokens += u.tokens_in + u.tokens_out;
        s.cost_usd += u.cost_usd;
    }
    let budgets = Arc::new(Budgets::new(config.budgets.clone(), today, spent));
    // With NATS, several tier-0 replicas may share the store: the hub is fed by a tailer that
    // reads every replica's commits back in cursor order.
    let wake = Arc::new(tokio::sync::Notify::new());
    let announce: Arc<tokio::sync::OnceCell<Arc<NatsBus>>> = Arc::new(tokio::sync::OnceCell::new());
    let feed = if nats {
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
    if nats {
        let start = store.max_cursor().await?;
        tokio::spawn(cadre_core::hub::tail(
            store.clone(),
            hub.clone(),
            wake.clone(),
            start,
        ));
    }
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
    if nats {
        // Other tier-0 replicas may share the store: their intake and finishes move the
        // unfinished-task counts too.
        writer.refresh_pending(store.clone(), PENDING_REFRESH);
    }
    let sink: Arc<dyn TaskSink> = Arc::new(writer.clone());
    let recovery = StoreRecovery {
        store: store.clone(),
        router: router.clone(),
        sink,
    };
    let auth = Arc::new(Authenticator::open(&config.auth, &config.node.data_dir, Some(store.clone())).await?);
    if auth.disabled() {
        tracing::warn!("auth.mode = \"none\": every caller is an unauthenticated commander");
    } else {
        let path = auth.bootstrap(&config.node.data_dir).await?;
        tracing::info!(credentials = %path.display(), algorithm = %config.auth.algorithm, "authentication on; commander credential in the data dir");
    }
    let node_delegate = Arc::new(NodeDelegate(std::sync::OnceLock::new()));
    // In process, this actor runs every supervisor and recovers from the store. With NATS it
    // runs only the supervisors of an `all` process, fed from NATS like any supervisor node.
    let (host, peers) = if nats {
        let peers = Peers::new(
            routes.clone(),
            minter(&auth, &config.node.id),
            Duration::from_millis(config.bus.peer_ttl_ms),
        );
        let local = config.local_supervisors();
        let host = (!local.is_empty()).then(|| {
            Host::new(
                config.bus.clone(),
                registry.clone(),
                routes.clone(),
                local.keys().cloned().collect(),
                peers.clone(),
            )
        });
        (host, Some(peers))
    } else {
        (None, None)
    };
    let args = OrchestratorArgs {
        specs: config.local_supervisors(),
        cancel_grace,
        sink: match &host {
            Some(h) => Arc::new(HostSink(h.clone())),
            None => recovery.sink.clone(),
        },
        recovery: match &host {
            Some(h) => h.clone(),
            None if nats => Arc::new(NoRecovery),
            None => Arc::new(recovery.clone()),
        },
        delegate: Some(node_delegate.clone()),
    };
    let (orchestrator, _) = Actor::spawn(None, Orchestrator, args)
        .await
        .context("cannot start the actor tree")?;
    let bus: Arc<dyn Bus> = match &peers {
        Some(peers) => {
            let nb = NatsBus::start(
                config.bus.clone(),
                Arc::new(writer.clone()),
                peers.clone(),
                config.limits.max_pending_tasks.min(1 << 20) as usize + 1024,
                wake.clone(),
                recovery.store.clone(),
                recovery.router.clone(),
            );
            let _ = announce.set(nb.clone());
            if let Some(h) = &host {
                h.set_orchestrator(orchestrator.clone());
                let (h, peers, bus) = (h.clone(), peers.clone(), config.bus.clone());
                let entry = PeerEntry {
                    node_id: config.node.id.clone(),
                    url: url.clone(),
                    supervisors: config.local_supervisors().keys().cloned().collect(),
                };
                let key = peer_key(&config.node.id);
                tokio::spawn(async move {
                    let c = cadre_bus::conn::connect(&bus, "local supervisors").await;
                    tokio::spawn(peers.clone().announce_owned(key, entry));
                    h.run(c).await;
                });
            }
            nb
        }
        None => Arc::new(LocalBus {
            orchestrator: orchestrator.clone(),
        }),
    };
    let node = Node::start(NodeParts {
        config: config.clone(),
        source,
        store,
        writer: writer.clone(),
        hub,
        orchestrator: orchestrator.clone(),
        router,
        auth,
        budgets,
        bus,
    });
    let _ = node_delegate.0.set(Arc::downgrade(&node));
    let _ = node_cell.set(Arc::downgrade(&node));

    // Remote workers are served where supervisors run.
    let workers = (!config.local_supervisors().is_empty()).then(|| WorkerApi {
        hub: remote_hub,
        auth: node.auth.clone(),
        node: Some(node.clone()),
        shutdown: shutdown.clone(),
    });
    let servers = vec![
        tokio::spawn(serve_grpc(
            Services::Node(node.clone()),
            workers,
            grpc_listener,
            config.server.clone(),
            tls,
            shutdown.clone(),
        )),
        tokio::spawn(serve_http(
            node.clone(),
            Some(node.clone()),
            http_listener,
            shutdown.clone(),
        )),
    ];
    let endpoints_file = write_endpoints(&config, scheme, grpc_addr, http_addr)?;
    tracing::info!(grpc = %grpc_addr, http = %http_addr, data_dir = %config.node.data_dir.display(), role = ?config.node.role, "cadre serving");
    Ok(Running {
        grpc_addr,
        http_addr,
        node: Some(node),
        host,
        orchestrator,
        writer: Some(writer),
        grace: Duration::from_millis(config.server.shutdown_grace_ms),
        shutdown,
        servers,
        writer_task: Some(writer_task),
        endpoints_file,
        _lock: lock,
        _store_lock: store_lock,
    })
}

/// Writes `<data_dir>/endpoints.json` (write then rename, so a reader never sees half a file).
fn write_endpoints(
    config: &Config,
    scheme: &str,
    grpc: SocketAddr,
    http: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let endpoints = Endpoints {
        grpc: format!("{scheme}://{grpc}"),
        http: format!("http://{http}"),
        pid: std::process::id(),
    };
    let endpoints_file = config.node.data_dir.join("endpoints.json");
    let tmp = endpoints_file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&endpoints)?)?;
    std::fs::rename(&tmp, &endpoints_file)?;
    Ok(endpoints_file)
}

/// A tier-0 process with NATS runs no local supervisors, so nothing to recover locally (the
/// store's unfinished tasks are republished by the bus).
struct NoRecovery;

#[async_trait::async_trait]
impl cadre_supervisors::TaskSource for NoRecovery {
    async fn unfinished(
        &self,
        _supervisor: Option<&str>,
    ) -> Result<Vec<(String, cadre_supervisors::QueuedTask)>, cadre_supervisors::SourceError> {
        Ok(Vec::new())
    }
}

/// The HTTP face of a supervisor node.
struct SupervisorFace {
    host: Arc<Host>,
    conn: Arc<tokio::sync::OnceCell<cadre_bus::conn::Conn>>,
    auth: Arc<Authenticator>,
    metrics_public: bool,
}

#[async_trait::async_trait]
impl http::HttpFace for SupervisorFace {
    async fn ready(&self) -> bool {
        self.host.ready(self.conn.get())
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

/// The gRPC services a process serves.
enum Services {
    /// Tier 0: TaskService, AdminService and SupervisorPeer.
    Node(Arc<Node>),
    /// A supervisor node: SupervisorPeer only. Either may also serve WorkerService.
    Peer(PeerService),
}

/// Reads the TLS files into tonic's server config (None when TLS is off).
fn server_tls(cfg: &TlsConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    if !cfg.enabled() {
        return Ok(None);
    }
    let read =
        |what: &str, path: &str| std::fs::read(path).with_context(|| format!("cannot read {what} {path}"));
    let identity = Identity::from_pem(
        read("tls.cert_file", &cfg.cert_file)?,
        read("tls.key_file", &cfg.key_file)?,
    );
    let mut tls = ServerTlsConfig::new().identity(identity);
    if !cfg.client_ca_file.is_empty() {
        tls = tls.client_ca_root(Certificate::from_pem(read(
            "tls.client_ca_file",
            &cfg.client_ca_file,
        )?));
    }
    Ok(Some(tls))
}

async fn serve_grpc(
    services: Services,
    workers: Option<WorkerApi>,
    listener: TcpListener,
    cfg: ServerConfig,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
) {
    let max_message = cfg.max_message_bytes;
    let keepalive = Duration::from_secs(cfg.keepalive_secs.max(1));
    let (health, health_svc) = tonic_health::server::health_reporter();
    match &services {
        Services::Node(_) => {
            health.set_serving::<TaskServiceServer<TaskApi>>().await;
            health.set_serving::<AdminServiceServer<AdminApi>>().await;
            health.set_serving::<SupervisorPeerServer<PeerApi>>().await;
        }
        Services::Peer(_) => health.set_serving::<SupervisorPeerServer<PeerService>>().await,
    }
    if workers.is_some() {
        health.set_serving::<WorkerServiceServer<WorkerApi>>().await;
    }
    // Both reflection versions: v1, and v1alpha for clients that only know it (grpcio-reflection's
    // Python client, older grpcurl).
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cadre_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .expect("embedded descriptors are valid");
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .expect("embedded descriptors are valid");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // Bounds per connection (calls in flight, streams) and dead-peer detection; each service
    // also bounds decoded message size.
    let mut builder = tonic::transport::Server::builder().load_shed(cfg.load_shed);
    if cfg.request_timeout_ms > 0 {
        builder = builder.timeout(Duration::from_millis(cfg.request_timeout_ms));
    }
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "TLS setup failed; not serving gRPC");
                return;
            }
        };
    }
    let router = builder
        .concurrency_limit_per_connection(cfg.max_calls_per_connection)
        .max_concurrent_streams(Some(cfg.max_streams_per_connection))
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .tcp_keepalive(Some(keepalive))
        .trace_fn(cadre_trace::grpc_request_span)
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(reflection_v1alpha);
    let router = match services {
        Services::Node(node) => router
            .add_service(TaskServiceServer::new(TaskApi(node.clone())).max_decoding_message_size(max_message))
            .add_service(
                AdminServiceServer::new(AdminApi(node.clone())).max_decoding_message_size(max_message),
            )
            .add_service(SupervisorPeerServer::new(PeerApi(node)).max_decoding_message_size(max_message)),
        Services::Peer(peer) => {
            router.add_service(SupervisorPeerServer::new(peer).max_decoding_message_size(max_message))
        }
    };
    let router = router.add_optional_service(
        workers.map(|w| WorkerServiceServer::new(w).max_decoding_message_size(max_message)),
    );
    let res = router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

async fn serve_http(
    face: Arc<dyn http::HttpFace>,
    tasks: Option<Arc<Node>>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let res = axum::serve(listener, http::router(face, tasks))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

impl Running {
    /// Stops intake, waits up to the grace period for open calls and streams, stops the actor
    /// tree (running tasks are recovered at the next start, or handed back to NATS for another
    /// replica) and flushes the writer.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let grace = self.grace;
        for s in self.servers {
            let abort = s.abort_handle();
            if tokio::time::timeout(grace, s).await.is_err() {
                tracing::warn!("open calls outlived the shutdown grace period; closing them");
                abort.abort();
            }
        }
        let orchestrator = &self.orchestrator;
        let _ = orchestrator
            .call(OrchestratorMsg::Shutdown, Some(grace + Duration::from_secs(5)))
            .await;
        let _ = orchestrator
            .stop_and_wait(Some("shutdown".into()), Some(grace))
            .await;
        if let Some(host) = &self.host {
            host.drain(grace).await;
            host.release().await;
        }
        if let Some(writer) = &self.writer
            && let Err(e) = writer.flush().await
        {
            tracing::warn!(error = %e, "final flush failed");
        }
        drop(self.writer);
        drop(self.node);
        if let Some(t) = self.writer_task {
            let _ = tokio::time::timeout(grace, t).await;
        }
        let _ = std::fs::remove_file(&self.endpoints_file);
        tracing::info!("stopped");
    }
}
