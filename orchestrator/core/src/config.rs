//! Node configuration: built-in defaults < `cadre.toml` (or `--config`) < `CADRE_*` environment
//! variables (`__` separates levels: `CADRE_SERVER__GRPC_ADDR=0.0.0.0:50051`).
//! Every setting has a default, so `cadre serve` runs with no file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cadre_bus::BusConfig;
use cadre_proto::{RetryPolicy, SpecLimits};
use cadre_supervisors::supervisor::MAX_POOL_SIZE;
use cadre_supervisors::{RestartIntensity, Route, RoutingTable, SupervisorSpec};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
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

fn spec(pools: &[(&str, usize)]) -> SupervisorSpec {
    SupervisorSpec {
        pools: pools.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        restart: RestartIntensity::default(),
    }
}

fn route(supervisor: &str, worker: &str, executor: &str) -> Route {
    Route {
        supervisor: supervisor.into(),
        worker: worker.into(),
        executor: executor.into(),
    }
}

/// The diagnostic task types and where they run when `diagnostics.enabled`.
pub const DIAGNOSTIC_TYPES: [(&str, &str); 5] = [
    ("system.debug.echo", "echo"),
    ("system.debug.sleep", "sleep"),
    ("system.debug.fail", "fail"),
    ("system.debug.panic", "panic"),
    ("system.debug.delegate", "delegate"),
];

impl Default for Config {
    fn default() -> Self {
        let supervisors = BTreeMap::from([
            (
                "intelligence".to_string(),
                spec(&[("writer", 4), ("coder", 2), ("research", 2), ("analytics", 2)]),
            ),
            (
                "multimodal".to_string(),
                spec(&[("vision", 2), ("audio", 2), ("artist", 1), ("fusion", 1)]),
            ),
            (
                "system".to_string(),
                spec(&[
                    ("monitor", 4),
                    ("audit", 1),
                    ("config", 1),
                    ("health", 2),
                    ("exec", 2),
                ]),
            ),
        ]);
        let routes = RoutingTable(
            [
                (
                    "intelligence.text.summarize",
                    "intelligence",
                    "writer",
                    "summarize",
                ),
                (
                    "intelligence.text.keywords",
                    "intelligence",
                    "analytics",
                    "keywords",
                ),
                (
                    "intelligence.text.language",
                    "intelligence",
                    "analytics",
                    "language",
                ),
                (
                    "intelligence.text.readability",
                    "intelligence",
                    "analytics",
                    "readability",
                ),
                (
                    "intelligence.text.sentiment",
                    "intelligence",
                    "analytics",
                    "sentiment",
                ),
                (
                    "intelligence.code.metrics",
                    "intelligence",
                    "coder",
                    "code_metrics",
                ),
                (
                    "intelligence.research.describe_image",
                    "intelligence",
                    "research",
                    "describe_image",
                ),
                (
                    "multimodal.vision.analyze",
                    "multimodal",
                    "vision",
                    "image_analyze",
                ),
                ("multimodal.vision.thumbnail", "multimodal", "vision", "thumbnail"),
                ("multimodal.audio.analyze", "multimodal", "audio", "audio_analyze"),
                ("intelligence.llm.chat", "intelligence", "writer", "llm"),
                ("multimodal.artist.chart", "multimodal", "artist", "chart"),
                ("multimodal.fusion.combine", "multimodal", "fusion", "fuse"),
                ("system.health.probe", "system", "health", "probe"),
                ("system.exec.run", "system", "exec", "exec"),
                ("system.http.call", "system", "monitor", "http"),
                ("system.mcp.call", "system", "monitor", "mcp"),
            ]
            .into_iter()
            .chain(
                crate::system_tasks::routes::ROUTES
                    .iter()
                    .map(|(t, w, e)| (*t, "system", *w, *e)),
            )
            .map(|(t, s, w, e)| (t.to_string(), route(s, w, e)))
            .collect(),
        );
        Config {
            node: NodeConfig::default(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            retry: RetryPolicy::default(),
            supervisors,
            routes,
            diagnostics: DiagnosticsConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            quotas: crate::quota::QuotaConfig::default(),
            tls: TlsConfig::default(),
            budgets: crate::budget::BudgetConfig::default(),
            bus: BusConfig::default(),
            executors: Default::default(),
        }
    }
}

/// Where a node's configuration came from: the file and the command-line overrides, so a
/// reload reads it exactly the way start-up did.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// The file given with `--config` (None: `./cadre.toml` if present).
    pub path: Option<PathBuf>,
    /// `serve` flags, applied over file and environment.
    pub overrides: Overrides,
}

/// `cadre serve` flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--grpc-addr`.
    pub grpc_addr: Option<String>,
    /// `--http-addr`.
    pub http_addr: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-json`.
    pub log_json: bool,
    /// `--role`.
    pub role: Option<NodeRole>,
    /// `--supervisor` (repeatable).
    pub supervisors: Vec<String>,
}

impl ConfigSource {
    /// Loads file and environment, applies the overrides, validates.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut cfg = Config::load(self.path.as_deref())?;
        let o = &self.overrides;
        if let Some(a) = &o.grpc_addr {
            cfg.server.grpc_addr = a.clone();
        }
        if let Some(a) = &o.http_addr {
            cfg.server.http_addr = a.clone();
        }
        if let Some(d) = &o.data_dir {
            cfg.node.data_dir = d.clone();
        }
        cfg.log.json |= o.log_json;
        if let Some(r) = o.role {
            cfg.node.role = r;
        }
        if !o.supervisors.is_empty() {
            cfg.node.supervisors = o.supervisors.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Why a configuration was refused: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed.
    #[error("cannot load config: {0}")]
    Load(String),
    /// The values are inconsistent or out of range.
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads defaults < `path` (or `cadre.toml` in the working directory if present) <
    /// `CADRE_*` environment, then validates. Only variables with a `__` (a section and a key,
    /// like `CADRE_SERVER__GRPC_ADDR`) are config; `CADRE_ENDPOINT` and friends belong to the CLI.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(
            path,
            Env::prefixed("CADRE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        )
    }

    /// Like [`Config::load`] with an explicit environment provider (tests use a fixed map).
    pub fn load_from(path: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                if !p.is_file() {
                    return Err(ConfigError::Load(format!(
                        "{} does not exist or is not a file",
                        p.display()
                    )));
                }
                fig = fig.merge(Toml::file_exact(p));
            }
            None => fig = fig.merge(Toml::file("cadre.toml")),
        }
        let cfg: Config = fig
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML document on top of the defaults (no environment), then validates.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The routing table in force: configured routes plus, when enabled, the diagnostic ones.
    pub fn effective_routes(&self) -> RoutingTable {
        let mut routes = self.routes.clone();
        if self.diagnostics.enabled {
            for (task_type, executor) in DIAGNOSTIC_TYPES {
                routes
                    .0
                    .entry(task_type.to_string())
                    .or_insert_with(|| route("system", "monitor", executor));
            }
        }
        routes
    }

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

    /// Checks every cross-reference and range; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        for (name, addr) in [
            ("server.grpc_addr", &self.server.grpc_addr),
            ("server.http_addr", &self.server.http_addr),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                errs.push(format!("{name}: {addr:?} is not an IP:port address"));
            }
        }
        if self.server.max_message_bytes < 1024 || self.server.max_message_bytes > 64 << 20 {
            errs.push("server.max_message_bytes: must be between 1 KiB and 64 MiB".into());
        }
        if !(1..=100_000).contains(&self.server.max_calls_per_connection) {
            errs.push("server.max_calls_per_connection: must be 1 to 100000".into());
        }
        if !(16..=1_000_000).contains(&self.server.ws_buffer) {
            errs.push("server.ws_buffer: must be 16 to 1000000".into());
        }
        if !(10..=600_000).contains(&self.server.lag_grace_ms) {
            errs.push("server.lag_grace_ms: must be 10 to 600000".into());
        }
        if !(100..=3_600_000).contains(&self.server.ws_ping_ms) {
            errs.push("server.ws_ping_ms: must be 100 to 3600000".into());
        }
        if !(1..=1_000_000).contains(&self.server.max_subscribers) {
            errs.push("server.max_subscribers: must be 1 to 1000000".into());
        }
        if !(1..=100_000).contains(&self.server.max_streams_per_connection) {
            errs.push("server.max_streams_per_connection: must be 1 to 100000".into());
        }
        if self.limits.max_params_bytes == 0 || self.limits.max_params_bytes > self.server.max_message_bytes {
            errs.push("limits.max_params_bytes: must be above 0 and at most server.max_message_bytes".into());
        }
        if self.limits.default_timeout_ms == 0 || self.limits.default_timeout_ms > self.limits.max_timeout_ms
        {
            errs.push("limits.default_timeout_ms: must be above 0 and at most limits.max_timeout_ms".into());
        }
        if !(1..=100).contains(&self.limits.max_params_depth) {
            errs.push("limits.max_params_depth: must be 1 to 100".into());
        }
        if self.limits.max_pending_tasks == 0 {
            errs.push("limits.max_pending_tasks: must be above 0".into());
        }
        if !(16..=1 << 20).contains(&self.limits.event_buffer) {
            errs.push("limits.event_buffer: must be 16 to 1048576".into());
        }
        if self.store.batch_max == 0 || self.store.batch_max > 10_000 {
            errs.push("store.batch_max: must be 1 to 10000".into());
        }
        if self.store.queue_capacity == 0 || self.store.queue_capacity > 1 << 20 {
            errs.push("store.queue_capacity: must be 1 to 1048576".into());
        }
        if !["full", "normal"].contains(&self.store.synchronous.as_str()) {
            errs.push(format!(
                "store.synchronous: {:?} is not \"full\" or \"normal\"",
                self.store.synchronous
            ));
        }
        if !self.store.url.is_empty()
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| self.store.url.starts_with(p))
        {
            errs.push(format!(
                "store.url: {:?} is neither sqlite:PATH nor postgres://...",
                self.store.url
            ));
        }
        errs.extend(self.role_problems());
        if !["token", "none"].contains(&self.auth.mode.as_str()) {
            errs.push(format!(
                "auth.mode: {:?} is not \"token\" or \"none\"",
                self.auth.mode
            ));
        }
        if !["HS256", "EdDSA"].contains(&self.auth.algorithm.as_str()) {
            errs.push(format!(
                "auth.algorithm: {:?} is not \"HS256\" or \"EdDSA\"",
                self.auth.algorithm
            ));
        }
        if self.auth.leeway_secs > 300 {
            errs.push("auth.leeway_secs: must be at most 300".into());
        }
        if self.auth.max_token_ttl_secs == 0 {
            errs.push("auth.max_token_ttl_secs: must be above 0".into());
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            errs.push("tls: cert_file and key_file go together".into());
        }
        if !self.tls.client_ca_file.is_empty() && !self.tls.enabled() {
            errs.push("tls.client_ca_file: needs tls.cert_file and tls.key_file".into());
        }
        for (name, path) in [
            ("tls.cert_file", &self.tls.cert_file),
            ("tls.key_file", &self.tls.key_file),
            ("tls.client_ca_file", &self.tls.client_ca_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                errs.push(format!("{name}: {path:?} is not a readable file"));
            }
        }
        errs.extend(self.budgets.problems());
        let bad_tenant = |t: &str| {
            t.is_empty()
                || t.len() > 64
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
        };
        for t in self.quotas.tenants.keys().filter(|t| bad_tenant(t)) {
            errs.push(format!(
                "quotas.tenants.{t:?}: tenant names are 1-64 of A-Z a-z 0-9 _ . @ -"
            ));
        }
        for t in self.budgets.tenants.keys().filter(|t| bad_tenant(t)) {
            errs.push(format!(
                "budgets.tenants.{t:?}: tenant names are 1-64 of A-Z a-z 0-9 _ . @ -"
            ));
        }
        if let Err(e) = self.retry.validate("retry") {
            errs.push(e.to_string());
        }
        if self.supervisors.is_empty() {
            errs.push("supervisors: at least one supervisor is needed".into());
        }
        for (name, s) in &self.supervisors {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                errs.push(format!(
                    "supervisors.{name}: names are lowercase letters, digits, _ and -"
                ));
            }
            for (kind, size) in &s.pools {
                if *size > MAX_POOL_SIZE {
                    errs.push(format!(
                        "supervisors.{name}.pools.{kind}: {size} exceeds the maximum of {MAX_POOL_SIZE}"
                    ));
                }
            }
            if s.restart.within_secs == 0 {
                errs.push(format!("supervisors.{name}.restart.within_secs: must be above 0"));
            }
        }
        errs.extend(self.executors.validate());
        let registry = cadre_executors::configured(&self.executors);
        let mut executors: Vec<&str> = registry.names().collect();
        executors.extend(crate::system_tasks::routes::EXECUTORS);
        executors.sort_unstable();
        for (task_type, r) in self.effective_routes().iter() {
            if let Err(e) = cadre_proto::validate_task_type(task_type) {
                errs.push(format!("routes.{task_type:?}: {e}"));
            }
            match self.supervisors.get(&r.supervisor) {
                None => errs.push(format!(
                    "routes.{task_type:?}: supervisor {:?} is not configured",
                    r.supervisor
                )),
                Some(s) if !s.pools.contains_key(&r.worker) => errs.push(format!(
                    "routes.{task_type:?}: supervisor {:?} has no worker kind {:?}",
                    r.supervisor, r.worker
                )),
                Some(_) => {}
            }
            if !executors.contains(&r.executor.as_str()) {
                errs.push(format!(
                    "routes.{task_type:?}: executor {:?} does not exist (known: {})",
                    r.executor,
                    executors.join(", ")
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
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

    fn role_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let b = &self.bus;
        if b.prefix.is_empty()
            || b.prefix.len() > 32
            || !b
                .prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            errs.push(format!(
                "bus.prefix: {:?} must be 1-32 of A-Z a-z 0-9 _ -",
                b.prefix
            ));
        }
        if !b.nats_url.is_empty() && !b.nats_url.starts_with("nats://") && !b.nats_url.starts_with("tls://") {
            errs.push(format!("bus.nats_url: {:?} is not nats://HOST:PORT", b.nats_url));
        }
        if !(1_000..=3_600_000).contains(&b.ack_wait_ms) {
            errs.push("bus.ack_wait_ms: must be 1000 to 3600000".into());
        }
        if !(1..=100).contains(&b.max_deliver) {
            errs.push("bus.max_deliver: must be 1 to 100".into());
        }
        if !(1..=100_000).contains(&b.max_inflight) {
            errs.push("bus.max_inflight: must be 1 to 100000".into());
        }
        if !(1_000..=600_000).contains(&b.peer_ttl_ms) {
            errs.push("bus.peer_ttl_ms: must be 1000 to 600000".into());
        }
        if !(100..=600_000).contains(&b.reconnect_max_ms) {
            errs.push("bus.reconnect_max_ms: must be 100 to 600000".into());
        }
        for s in &self.node.supervisors {
            if !self.supervisors.contains_key(s) {
                let known: Vec<&str> = self.supervisors.keys().map(String::as_str).collect();
                errs.push(format!(
                    "node.supervisors: {s:?} is not a configured supervisor (known: {})",
                    known.join(", ")
                ));
            }
        }
        match self.node.role {
            NodeRole::All => {}
            NodeRole::Orchestrator => {
                if !b.is_nats() {
                    errs.push(
                        "node.role = \"orchestrator\" needs bus.nats_url (its supervisors run elsewhere)"
                            .into(),
                    );
                }
                if !self.node.supervisors.is_empty() {
                    errs.push("node.supervisors: the orchestrator role runs no supervisors".into());
                }
            }
            NodeRole::Supervisor => {
                if !b.is_nats() {
                    errs.push(
                        "node.role = \"supervisor\" needs bus.nats_url (it takes tasks from NATS)".into(),
                    );
                }
                if self.node.supervisors.is_empty() {
                    errs.push(
                        "node.supervisors: the supervisor role needs at least one supervisor (--supervisor KIND)".into(),
                    );
                }
            }
        }
        if !self.node.advertise_addr.is_empty()
            && self.node.advertise_addr.parse::<SocketAddr>().is_err()
            && !self.node.advertise_addr.contains(':')
        {
            errs.push(format!(
                "node.advertise_addr: {:?} is not HOST:PORT",
                self.node.advertise_addr
            ));
        }
        errs
    }

    /// The effective configuration as TOML, as `cadre config check` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_route_diagnostics() {
        let c = Config::default();
        c.validate().unwrap();
        let routes = c.effective_routes();
        assert_eq!(routes.resolve("system.debug.echo").unwrap().executor, "echo");
        assert_eq!(
            routes.resolve("intelligence.text.summarize").unwrap().worker,
            "writer"
        );
        let off = Config {
            diagnostics: DiagnosticsConfig { enabled: false },
            ..c
        };
        assert!(off.effective_routes().resolve("system.debug.echo").is_none());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cadre.toml");
        std::fs::write(
            &path,
            "[server]\ngrpc_addr = \"127.0.0.1:7000\"\n[supervisors.system.pools]\nmonitor = 9\n",
        )
        .unwrap();
        let env = Env::prefixed("CADRE_TEST_NOTHING_").split("__");
        let c = Config::load_from(Some(&path), env).unwrap();
        assert_eq!(c.server.grpc_addr, "127.0.0.1:7000");
        assert_eq!(c.supervisors["system"].pools["monitor"], 9);
        assert_eq!(
            c.supervisors["system"].pools["audit"], 1,
            "maps merge with the defaults"
        );
        figment::Jail::expect_with(|jail| {
            jail.set_env("CADRE_SERVER__GRPC_ADDR", "127.0.0.1:7001");
            jail.set_env("CADRE_ENDPOINT", "http://elsewhere:1");
            let c = Config::load(Some(&path)).expect("env layered on the file");
            assert_eq!(c.server.grpc_addr, "127.0.0.1:7001");
            Ok(())
        });
    }

    #[test]
    fn inconsistencies_are_all_reported() {
        let err = Config::from_toml_str(
            r#"
            [server]
            grpc_addr = "nope"
            [routes."intelligence.text.translate"]
            supervisor = "intelligence"
            worker = "translator"
            executor = "babel"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.grpc_addr"), "{err}");
        assert!(err.contains("no worker kind \"translator\""), "{err}");
        assert!(err.contains("executor \"babel\" does not exist"), "{err}");
        assert!(
            Config::from_toml_str("[server]\nbogus = 1")
                .unwrap_err()
                .to_string()
                .contains("bogus")
        );
    }
}
