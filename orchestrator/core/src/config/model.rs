//! What a node's configuration is made of: [`Config`] and its sections, each with its
//! built-in defaults, and the views derived from it (the task bounds, the local supervisors).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cadre_bus::BusConfig;
use cadre_proto::{RetryPolicy, SpecLimits};
use cadre_supervisors::{RoutingTable, SupervisorSpec};
use serde::{Deserialize, Serialize};

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity and data directory.
    pub node: NodeConfig,
    /// Listen addresses and transport limits.
    pub server: ServerConfig,
    /// Where tasks and events are kept.
    pub store: StoreConfig,
    /// Input bounds and defaults for tasks.
    pub limits: LimitsConfig,
    /// Default retry policy for tasks that give none.
    pub retry: RetryPolicy,
    /// Tier-1 supervisors by name.
    pub supervisors: BTreeMap<String, SupervisorSpec>,
    /// Task type -> supervisor, worker kind and executor.
    pub routes: RoutingTable,
    /// Diagnostic task types.
    pub diagnostics: DiagnosticsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Per-tenant admission limits.
    pub quotas: crate::quota::QuotaConfig,
    /// TLS for the gRPC API (and mutual TLS when a client CA is set).
    pub tls: TlsConfig,
    /// Model prices and daily token/cost caps.
    pub budgets: crate::budget::BudgetConfig,
    /// How tasks and events travel between tiers: in process, or over NATS JetStream.
    pub bus: BusConfig,
    /// Settings of the executors that call out: model providers, commands, webhooks, MCP
    /// servers, probe targets. Read at start (a reload does not change them).
    pub executors: cadre_executors::ExecutorsConfig,
    /// Workflow definitions registered at start.
    pub workflows: WorkflowsConfig,
    /// Tenant weights in the supervisors' fair queues.
    pub fairness: cadre_supervisors::FairnessConfig,
    /// Running limits per concurrency key (`[[concurrency]]` rules).
    pub concurrency: Vec<cadre_supervisors::ConcurrencyRule>,
    /// How long a task type is held after an upstream rate limit, and how often one task may
    /// be put back for it.
    pub upstream: cadre_supervisors::UpstreamConfig,
    /// Bounds and timing of schedules.
    pub schedules: crate::schedules::ScheduleConfig,
    /// How long finished tasks and audit records are kept (default: for ever).
    pub retention: crate::retention::RetentionConfig,
    /// What each model call's record keeps (prompts and replies: off by default).
    pub llm_calls: crate::llm_calls::LlmCallsConfig,
}

/// Workflow definitions registered at start (the API registers others at any time).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowsConfig {
    /// JSON definition files, registered at start as `config` (relative paths are relative to
    /// the working directory). A file whose name and version are registered with a different
    /// definition stops the start: bump its version instead.
    pub files: Vec<PathBuf>,
}

/// What one `cadre serve` process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Tier 0 and every configured supervisor in one process (the embedded default).
    #[default]
    All,
    /// Tier 0 only: intake, store, events; tasks go to supervisor nodes over NATS.
    Orchestrator,
    /// Tier 1 and 2 only, for the kinds in `node.supervisors`; takes tasks from NATS.
    Supervisor,
}

impl NodeRole {
    /// Whether this process takes in tasks and keeps the store (tier 0).
    pub fn runs_orchestrator(self) -> bool {
        self != NodeRole::Supervisor
    }
}

/// TLS for the gRPC API: set `cert_file` and `key_file` to serve TLS; add `client_ca_file`
/// to require client certificates signed by that CA (mutual TLS, for nodes and services).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert_file: String,
    /// Server private key, PEM.
    pub key_file: String,
    /// CA whose client certificates are required (mTLS), PEM; empty = no client certificates.
    pub client_ca_file: String,
}

impl TlsConfig {
    /// Whether the gRPC API is served over TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// Authentication: JWTs with a pinned algorithm, and API keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `token` (JWT or API key required on every call) or `none` (no authentication: every
    /// caller is a commander of tenant `default`; logged as a warning at start).
    pub mode: String,
    /// The only JWT algorithm accepted and used to issue: `HS256` or `EdDSA`.
    pub algorithm: String,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Longest token lifetime `IssueToken` grants.
    pub max_token_ttl_secs: u64,
    /// Longest lifetime `CreateApiKey` grants (`ttl_secs`); 0 = no cap. With a cap, a key
    /// asked for without a ttl is refused too (every key must expire).
    pub max_api_key_ttl_secs: u64,
    /// How long a signing key keeps verifying after `cadre token rotate` made a newer one;
    /// 0 = `max_token_ttl_secs` (every token it signed stays valid to its expiry).
    pub key_overlap_secs: u64,
    /// HS256 secret file; empty = `<data_dir>/auth/hs256.key`, created on first start.
    pub hs256_secret_file: String,
    /// EdDSA private key (PKCS#8 PEM); empty = `<data_dir>/auth/ed25519-private.pem`, created.
    pub eddsa_private_key_file: String,
    /// EdDSA public key (PEM); empty = `<data_dir>/auth/ed25519-public.pem`, created.
    pub eddsa_public_key_file: String,
    /// Serve /metrics without a credential (otherwise it needs the supervisor role).
    pub metrics_public: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: "token".into(),
            algorithm: "HS256".into(),
            issuer: "cadre".into(),
            audience: "cadre".into(),
            leeway_secs: 5,
            max_token_ttl_secs: 30 * 24 * 3600,
            max_api_key_ttl_secs: 0,
            key_overlap_secs: 0,
            hs256_secret_file: String::new(),
            eddsa_private_key_file: String::new(),
            eddsa_public_key_file: String::new(),
            metrics_public: false,
        }
    }
}

/// Identity and data directory of this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Shown in status and logs.
    pub id: String,
    /// Holds the SQLite database and `endpoints.json` (the addresses actually bound).
    pub data_dir: PathBuf,
    /// What this process runs (`all`, `orchestrator` or `supervisor`).
    pub role: NodeRole,
    /// Supervisors this process runs, by name; empty = every configured one. Only for the
    /// `all` and `supervisor` roles.
    pub supervisors: Vec<String>,
    /// The gRPC address other nodes use to reach this one (SupervisorPeer); empty = the bound
    /// address.
    pub advertise_addr: String,
}

/// Listen addresses and transport limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC API (TaskService, AdminService, SupervisorPeer, health, reflection). Port 0 picks one.
    pub grpc_addr: String,
    /// HTTP side: /health, /ready, /metrics, the JSON API, event sockets and the dashboard.
    /// Port 0 picks one.
    pub http_addr: String,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// How long shutdown waits for open calls and streams before closing them.
    pub shutdown_grace_ms: u64,
    /// Calls one gRPC connection may have in flight (more wait).
    pub max_calls_per_connection: usize,
    /// HTTP/2 streams one gRPC connection may open.
    pub max_streams_per_connection: u32,
    /// Idle connections are pinged this often and closed when a ping goes unanswered.
    pub keepalive_secs: u64,
    /// Calls above `max_calls_per_connection` are refused at once with RESOURCE_EXHAUSTED
    /// instead of waiting (load shedding).
    pub load_shed: bool,
    /// Longest a unary call may run (SubmitAndWait included; use Submit and Watch for longer
    /// tasks); 0 = no limit. Streams are not cut. Clients' own grpc-timeout also applies.
    pub request_timeout_ms: u64,
    /// Messages queued towards one WebSocket or SSE subscriber.
    pub ws_buffer: usize,
    /// How long a subscriber's queue may stay full before it is told it lagged and cut off.
    pub lag_grace_ms: u64,
    /// Ping (WebSocket) or keep-alive comment (SSE) interval; a WebSocket that sends nothing
    /// for two intervals is closed.
    pub ws_ping_ms: u64,
    /// WebSocket and SSE subscribers the node serves at once (more get 503).
    pub max_subscribers: usize,
    /// Task submissions one WebSocket may have in flight (from `submit` until its `result`);
    /// more are refused with RESOURCE_EXHAUSTED for that request.
    pub ws_max_inflight: usize,
    /// Connections the HTTP listener serves at once (WebSockets included); more are accepted
    /// and closed at once, counted in `cadre_http_connections_refused_total`.
    pub http_max_connections: usize,
    /// Time a client has to send a request's headers, from connect (or from the first byte of
    /// a later request on a kept-alive connection), TLS handshake included; slower clients are
    /// cut off (slow-loris protection).
    pub http_header_timeout_ms: u64,
    /// A kept-alive HTTP connection with no request for this long is closed.
    pub http_idle_timeout_ms: u64,
    /// Time a client has to send a request's body once its headers arrived; a slower body
    /// ends the request (400) and its connection.
    pub http_body_timeout_ms: u64,
    /// Connections the gRPC listener serves at once; more are accepted and closed at once,
    /// counted in `cadre_grpc_connections_refused_total`.
    pub grpc_max_connections: usize,
    /// Time a gRPC client has, from connect, to finish the TLS handshake (with `[tls]`) and
    /// send the HTTP/2 connection preface; slower or garbled connections are closed, counted
    /// in `cadre_grpc_handshake_failures_total`.
    pub grpc_handshake_timeout_ms: u64,
    /// Calls the node handles at once over both listeners (gRPC calls, HTTP requests; a
    /// stream counts until its headers went out). More are shed at once: gRPC
    /// RESOURCE_EXHAUSTED, HTTP 503, both with `Retry-After: 1`. Probes are never shed.
    pub max_inflight_calls: usize,
    /// A plain-HTTP listener serving only `/health`, `/ready` and `/metrics`, for probes that
    /// cannot speak the main listeners' TLS or present a client certificate (container
    /// healthchecks, Kubernetes probes with `[tls]` set); empty = none. Port 0 picks one
    /// (written to `endpoints.json` as `probe`).
    pub probe_addr: String,
}

/// Where tasks and events are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH`; empty = `<data_dir>/cadre.db`.
    pub url: String,
    /// Most writes committed in one transaction (group commit).
    pub batch_max: usize,
    /// Writes waiting for the store before writers are made to wait.
    pub queue_capacity: usize,
    /// `full` (an accepted task survives power loss) or `normal` (faster; may lose the last
    /// commits on power loss, never on a process crash).
    pub synchronous: String,
}

/// Input bounds and task defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest `params_json`, in bytes.
    pub max_params_bytes: usize,
    /// Deepest nesting of arrays and objects in params (at most 100).
    pub max_params_depth: usize,
    /// Unfinished tasks the node accepts before Submit answers RESOURCE_EXHAUSTED.
    pub max_pending_tasks: u64,
    /// Timeout of a task that gives none.
    pub default_timeout_ms: u64,
    /// Largest timeout a task may ask for.
    pub max_timeout_ms: u64,
    /// How long a cancelled executor may take to stop before it is dropped.
    pub cancel_grace_ms: u64,
    /// Events buffered per live subscriber before it is told it lagged and re-reads the store.
    pub event_buffer: usize,
    /// Deepest chain of sub-tasks: a task this many delegations below its root takes no
    /// sub-task of its own (FAILED_PRECONDITION), so a delegation loop ends (1 to 64).
    pub max_delegation_depth: u32,
}

/// Diagnostic task types (`system.debug.echo|sleep|fail|panic`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosticsConfig {
    /// Adds routes for the diagnostic task types to the `system` supervisor's `monitor` pool
    /// (unless the routes table already names them).
    pub enabled: bool,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// JSON lines instead of human-readable text.
    pub json: bool,
    /// `tracing` filter, e.g. `info` or `cadre=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: "cadre-1".into(),
            data_dir: PathBuf::from("cadre-data"),
            role: NodeRole::All,
            supervisors: Vec::new(),
            advertise_addr: String::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8080".into(),
            max_message_bytes: 4 << 20,
            shutdown_grace_ms: 5_000,
            max_calls_per_connection: 256,
            max_streams_per_connection: 1024,
            keepalive_secs: 30,
            load_shed: true,
            request_timeout_ms: 1_200_000,
            ws_buffer: 1024,
            lag_grace_ms: 1_000,
            ws_ping_ms: 15_000,
            max_subscribers: 10_000,
            ws_max_inflight: 64,
            http_max_connections: 10_000,
            http_header_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
            http_body_timeout_ms: 60_000,
            grpc_max_connections: 10_000,
            grpc_handshake_timeout_ms: 10_000,
            max_inflight_calls: 4096,
            probe_addr: String::new(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            batch_max: 512,
            queue_capacity: 8192,
            synchronous: "full".into(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_params_bytes: 1 << 20,
            max_params_depth: 32,
            max_pending_tasks: 100_000,
            default_timeout_ms: 300_000,
            max_timeout_ms: 24 * 3_600_000,
            cancel_grace_ms: 5_000,
            event_buffer: 4096,
            max_delegation_depth: 8,
        }
    }
}

impl Default for DiagnosticsConfig {
    fn default() -> Self {
        DiagnosticsConfig { enabled: true }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            json: false,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Task input bounds derived from `limits` and `retry`.
    pub fn spec_limits(&self) -> SpecLimits {
        SpecLimits {
            max_params_bytes: self.limits.max_params_bytes,
            max_params_depth: self.limits.max_params_depth,
            max_timeout: Duration::from_millis(self.limits.max_timeout_ms),
            default_timeout: Duration::from_millis(self.limits.default_timeout_ms),
            default_retry: self.retry.clone(),
        }
    }

    /// The dispatch settings of this process's supervisors (`[fairness]`, `[[concurrency]]`,
    /// `[upstream]`).
    pub fn dispatch(&self) -> cadre_supervisors::DispatchConfig {
        cadre_supervisors::DispatchConfig {
            fairness: self.fairness.clone(),
            concurrency: self.concurrency.clone(),
            upstream: self.upstream.clone(),
        }
    }

    /// Supervisors this process runs: `node.supervisors`, or all of them (none for the
    /// orchestrator role).
    pub fn local_supervisors(&self) -> BTreeMap<String, SupervisorSpec> {
        if self.node.role == NodeRole::Orchestrator {
            return BTreeMap::new();
        }
        self.supervisors
            .iter()
            .filter(|(name, _)| self.node.supervisors.is_empty() || self.node.supervisors.contains(name))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }
}
