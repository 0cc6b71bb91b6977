//! Where the node tasks run by default and who may submit them: read by the config (default
//! routes, validation) and by intake, without the executors themselves.

/// The node tasks' executor names.
pub const EXECUTORS: [&str; 4] = ["node_health", "metrics_snapshot", "audit_verify", "config_check"];

/// Executors whose tasks read node-wide state (every tenant's metrics, the audit chain, the
/// node's config file): submitting them needs the supervisor role, like `/metrics`.
pub const SUPERVISOR_ONLY: [&str; 3] = ["metrics_snapshot", "audit_verify", "config_check"];

/// The node tasks' default routes: (task type, worker kind of `system`, executor).
pub const ROUTES: [(&str, &str, &str); 4] = [
    ("system.health.node", "health", "node_health"),
    ("system.monitor.metrics", "monitor", "metrics_snapshot"),
    ("system.audit.verify", "audit", "audit_verify"),
    ("system.config.validate", "config", "config_check"),
];
