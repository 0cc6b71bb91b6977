//! The two listeners' servers: gRPC (TaskService, AdminService, WorkflowService,
//! ScheduleService and
//! SupervisorPeer on tier 0;
//! SupervisorPeer on a supervisor node; WorkerService where supervisors run; health and
//! reflection everywhere) and HTTP (probes and metrics everywhere; the JSON API, sockets, MCP
//! and dashboard on tier 0).

use std::sync::Arc;
use std::time::Duration;

use cadre_core::config::ServerConfig;
use cadre_core::node::Node;
use cadre_faces::grpc::{AdminApi, PeerApi, TaskApi};
use cadre_faces::http;
use cadre_faces::peer_service::PeerService;
use cadre_faces::schedule_service::ScheduleApi;
use cadre_faces::workers::WorkerApi;
use cadre_faces::workflow_service::WorkflowApi;
use cadre_proto::v1::schedule_service_server::ScheduleServiceServer;
use cadre_proto::v1::{
    admin_service_server::AdminServiceServer, supervisor_peer_server::SupervisorPeerServer,
    task_service_server::TaskServiceServer, worker_service_server::WorkerServiceServer,
    workflow_service_server::WorkflowServiceServer,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::server::grpc_listener::{self, GrpcOptions};
use crate::server::http_listener::{self, HttpOptions};
use crate::server::inflight::{GrpcInflightLayer, InflightGate, http_gate};
use crate::server::listeners::Sockets;

/// The gRPC services a process serves.
pub(crate) enum Services {
    /// Tier 0: TaskService, AdminService and SupervisorPeer.
    Node(Arc<Node>),
    /// A supervisor node: SupervisorPeer only. Either may also serve WorkerService.
    Peer(PeerService),
}

/// Serves gRPC on `listener` until `shutdown`: `services`, WorkerService if `workers`, health
/// and reflection (v1 and v1alpha), with the per-connection bounds of `cfg`.
async fn serve_grpc(
    services: Services,
    workers: Option<WorkerApi>,
    listener: TcpListener,
    cfg: ServerConfig,
    tls: Option<TlsAcceptor>,
    gate: Arc<InflightGate>,
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
            health.set_serving::<WorkflowServiceServer<WorkflowApi>>().await;
            health.set_serving::<ScheduleServiceServer<ScheduleApi>>().await;
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
    // The connection cap, TLS and the handshake deadline are the incoming stream's.
    let incoming = grpc_listener::incoming(listener, GrpcOptions::new(&cfg, tls), shutdown.clone());
    // Bounds per connection (calls in flight, streams) and dead-peer detection (HTTP/2 pings,
    // idle connections included); each service also bounds decoded message size.
    let mut builder = tonic::transport::Server::builder().load_shed(cfg.load_shed);
    if cfg.request_timeout_ms > 0 {
        builder = builder.timeout(Duration::from_millis(cfg.request_timeout_ms));
    }
    let router = builder
        .layer(GrpcInflightLayer(gate))
        .concurrency_limit_per_connection(cfg.max_calls_per_connection)
        .max_concurrent_streams(Some(cfg.max_streams_per_connection))
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
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
            .add_service(
                WorkflowServiceServer::new(WorkflowApi(node.clone())).max_decoding_message_size(max_message),
            )
            .add_service(
                ScheduleServiceServer::new(ScheduleApi(node.clone())).max_decoding_message_size(max_message),
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

/// Starts every server of a process on `sockets` until `shutdown`: gRPC with `services` (and
/// WorkerService with `workers`), HTTP with `face` (and the task routes with `tasks`), and the
/// probe listener if one is bound; all behind one node-wide [`InflightGate`].
pub(crate) fn spawn_servers(
    services: Services,
    workers: Option<WorkerApi>,
    face: Arc<dyn http::HttpFace>,
    tasks: Option<Arc<Node>>,
    sockets: Sockets,
    cfg: &ServerConfig,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let gate = InflightGate::new(cfg.max_inflight_calls);
    let mut servers = vec![
        tokio::spawn(serve_grpc(
            services,
            workers,
            sockets.grpc,
            cfg.clone(),
            sockets.tls,
            gate.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(serve_http(
            face.clone(),
            tasks,
            sockets.http,
            HttpOptions::new(cfg, sockets.http_tls),
            gate.clone(),
            shutdown.clone(),
        )),
    ];
    if let Some(probe) = sockets.probe {
        // Probes only (no task routes), plain HTTP whatever `[tls]` says.
        servers.push(tokio::spawn(serve_http(
            face,
            None,
            probe,
            HttpOptions::new(cfg, None),
            gate,
            shutdown.clone(),
        )));
    }
    servers
}

/// Serves HTTP on `listener` until `shutdown`: probes and metrics through `face`, and, with
/// `tasks`, the JSON API, event sockets, MCP and the dashboard; TLS, the connection cap and
/// the header and idle deadlines of `opts`.
async fn serve_http(
    face: Arc<dyn http::HttpFace>,
    tasks: Option<Arc<Node>>,
    listener: TcpListener,
    opts: HttpOptions,
    gate: Arc<InflightGate>,
    shutdown: CancellationToken,
) {
    let router = http::router(face, tasks).layer(axum::middleware::from_fn_with_state(gate, http_gate));
    http_listener::serve(listener, router, opts, shutdown).await;
}
