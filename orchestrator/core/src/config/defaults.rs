//! The built-in defaults of the whole config: the three supervisors and their pools, and the
//! routes of every built-in task type; the routes in force add the diagnostic types.

use std::collections::BTreeMap;

use cadre_bus::BusConfig;
use cadre_proto::RetryPolicy;
use cadre_supervisors::{RestartIntensity, Route, RoutingTable, SupervisorSpec};

use crate::config::model::{
    AuthConfig, Config, DiagnosticsConfig, LimitsConfig, LogConfig, NodeConfig, ServerConfig, StoreConfig,
    TlsConfig,
};

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

/// The built-in task types' routes: (task type, supervisor, worker kind, executor); the node
/// tasks' routes ([`crate::system_tasks::routes::ROUTES`]) are added to them.
pub const DEFAULT_ROUTES: [(&str, &str, &str, &str); 17] = [
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
];

/// The built-in supervisors and their pools.
fn default_supervisors() -> BTreeMap<String, SupervisorSpec> {
    BTreeMap::from([
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
    ])
}

impl Default for Config {
    fn default() -> Self {
        let routes = RoutingTable(
            DEFAULT_ROUTES
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
            supervisors: default_supervisors(),
            routes,
            diagnostics: DiagnosticsConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            quotas: crate::quota::QuotaConfig::default(),
            tls: TlsConfig::default(),
            budgets: crate::budget::BudgetConfig::default(),
            bus: BusConfig::default(),
            executors: Default::default(),
            workflows: Default::default(),
            fairness: Default::default(),
            concurrency: Vec::new(),
            upstream: Default::default(),
            schedules: Default::default(),
            retention: Default::default(),
            llm_calls: Default::default(),
        }
    }
}

impl Config {
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
}
