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
use cadre_agents::ExecutorRegistry;
use cadre_proto::v1::{
    admin_service_server::AdminServiceServer, supervisor_peer_server::SupervisorPeerServer,
    task_service_server::TaskServiceServer,
};
use cadre_supervisors::TaskSink;
use ractor::Actor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::audit::{self, Sealer};
use crate::auth::Authenticator;
use crate::budget::{self, Budgets};
use crate::config::{Config, ConfigSource, ServerConfig, TlsConfig};
use crate::grpc::{AdminApi, PeerApi, TaskApi};
use crate::hub::Hub;
use crate::node::Node;
use crate::orchestrator::{Orchestrator, OrchestratorArgs, OrchestratorMsg, Recovery};
use crate::quota::Quotas;
use crate::store::Store;
use crate::store::UsageFilter;
use crate::store::sqlite::SqliteStore;
use crate::writer::Writer;
use crate::{http, telemetry};

/// A started node.
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The node core.
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
    writer_task: tokio::task::JoinHandle<()>,
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
    let store = if config.store.url.is_empty() {
        let path = config.node.data_dir.join("cadre.db");
        SqliteStore::open(&path, full)
            .await
            .with_context(|| format!("cannot open store {}", path.display()))?
    } else {
        SqliteStore::open_url(&config.store.url, full)
            .await
            .with_context(|| format!("cannot open store {}", config.store.url))?
    };
    Ok(Arc::new(store))
}

/// Starts a node with `config`; `source` is re-read by ReloadConfig and SIGHUP.
pub async fn start(config: Config, source: ConfigSource) -> anyhow::Result<Running> {
    config.validate()?;
    telemetry::init_metrics();
    let lock = lock_data_dir(&config.node.data_dir)?;
    let store_lock = lock_store_url(&config.store.url)?;
    let grpc_listener = TcpListener::bind(&config.server.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on server.grpc_addr {}", config.server.grpc_addr))?;
    let http_listener = TcpListener::bind(&config.server.http_addr)
        .await
        .with_context(|| format!("cannot listen on server.http_addr {}", config.server.http_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let store = open_store(&config).await?;
    let hub = Hub::new(config.limits.event_buffer);
    let pending = store.count_unfinished().await?;
    let (tail_seq, tail_hash) = store.audit_tail().await?;
    let sealer = Sealer::new(
        audit::node_key(&config.node.data_dir)?,
        &config.node.data_dir,
        tail_seq,
        tail_hash,
    );
    let today = budget::utc_day(crate::store::sqlite::now_ms());
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
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        hub.clone(),
        config.store.batch_max,
        config.store.queue_capacity,
        pending,
        Some(sealer),
        budgets.clone(),
    );
    let sink: Arc<dyn TaskSink> = Arc::new(writer.clone());
    let recovery = Recovery {
        store: store.clone(),
        routes: Arc::new(RwLock::new(Arc::new(config.effective_routes()))),
        registry: ExecutorRegistry::builtin(),
        sink,
    };
    let args = OrchestratorArgs {
        specs: config.supervisors.clone(),
        cancel_grace: Duration::from_millis(config.limits.cancel_grace_ms),
        recovery: recovery.clone(),
        delegate: None,
    };
    let auth = Authenticator::open(&config.auth, &config.node.data_dir, store.clone()).await?;
    if auth.disabled() {
        tracing::warn!("auth.mode = \"none\": every caller is an unauthenticated commander");
    } else {
        let path = auth.bootstrap(&config.node.data_dir).await?;
        tracing::info!(credentials = %path.display(), algorithm = %config.auth.algorithm, "authentication on; commander credential in the data dir");
    }
    let (orchestrator, _) = Actor::spawn(None, Orchestrator, args)
        .await
        .context("cannot start the actor tree")?;
    let node = Arc::new(Node {
        node_id: config.node.id.clone(),
        limits: config.spec_limits(),
        config: RwLock::new(config.clone()),
        source,
        store,
        writer,
        hub,
        orchestrator,
        recovery,
        auth,
        quotas: Quotas::new(&config.quotas),
        budgets,
    });
    // Forget idle tenants' rate buckets now and then; holds only a weak reference, so the
    // node can still be dropped at shutdown.
    let weak = Arc::downgrade(&node);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let Some(node) = weak.upgrade() else { return };
            node.quotas.forget_idle();
        }
    });

    let tls = server_tls(&config.tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shutdown = CancellationToken::new();
    let servers = vec![
        tokio::spawn(serve_grpc(
            node.clone(),
            grpc_listener,
            config.server.clone(),
            tls,
            shutdown.clone(),
        )),
        tokio::spawn(serve_http(node.clone(), http_listener, shutdown.clone())),
    ];
    let endpoints = Endpoints {
        grpc: format!("{scheme}://{grpc_addr}"),
        http: format!("http://{http_addr}"),
        pid: std::process::id(),
    };
    let endpoints_file = config.node.data_dir.join("endpoints.json");
    // Write then rename, so a reader never sees half a file.
    let tmp = endpoints_file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&endpoints)?)?;
    std::fs::rename(&tmp, &endpoints_file)?;
    tracing::info!(grpc = %grpc_addr, http = %http_addr, data_dir = %config.node.data_dir.display(), "cadre serving");
    Ok(Running {
        grpc_addr,
        http_addr,
        node,
        shutdown,
        servers,
        writer_task,
        endpoints_file,
        _lock: lock,
        _store_lock: store_lock,
    })
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
    node: Arc<Node>,
    listener: TcpListener,
    cfg: ServerConfig,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
) {
    let max_message = cfg.max_message_bytes;
    let keepalive = Duration::from_secs(cfg.keepalive_secs.max(1));
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<TaskServiceServer<TaskApi>>().await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<SupervisorPeerServer<PeerApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cadre_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
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
    let res = builder
        .concurrency_limit_per_connection(cfg.max_calls_per_connection)
        .max_concurrent_streams(Some(cfg.max_streams_per_connection))
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .tcp_keepalive(Some(keepalive))
        .trace_fn(crate::trace::grpc_request_span)
        .add_service(health_svc)
        .add_service(reflection)
        .add_service(TaskServiceServer::new(TaskApi(node.clone())).max_decoding_message_size(max_message))
        .add_service(AdminServiceServer::new(AdminApi(node.clone())).max_decoding_message_size(max_message))
        .add_service(SupervisorPeerServer::new(PeerApi(node)).max_decoding_message_size(max_message))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

async fn serve_http(node: Arc<Node>, listener: TcpListener, shutdown: CancellationToken) {
    let res = axum::serve(listener, http::router(node))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

impl Running {
    /// Stops intake, waits up to the grace period for open calls and streams, stops the actor
    /// tree (running tasks are recovered at the next start) and flushes the writer.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let grace = Duration::from_millis(self.node.config().server.shutdown_grace_ms);
        for s in self.servers {
            let abort = s.abort_handle();
            if tokio::time::timeout(grace, s).await.is_err() {
                tracing::warn!("open calls outlived the shutdown grace period; closing them");
                abort.abort();
            }
        }
        let orchestrator = &self.node.orchestrator;
        let _ = orchestrator
            .call(OrchestratorMsg::Shutdown, Some(grace + Duration::from_secs(5)))
            .await;
        let _ = orchestrator
            .stop_and_wait(Some("shutdown".into()), Some(grace))
            .await;
        if let Err(e) = self.node.writer.flush().await {
            tracing::warn!(error = %e, "final flush failed");
        }
        drop(self.node);
        let _ = tokio::time::timeout(grace, self.writer_task).await;
        let _ = std::fs::remove_file(&self.endpoints_file);
        tracing::info!("stopped");
    }
}
