//! Config validation: every cross-reference and range, each section by its own function,
//! every problem reported at once.

use std::net::SocketAddr;
use std::path::Path;

use cadre_supervisors::supervisor::MAX_POOL_SIZE;

use crate::config::load::ConfigError;
use crate::config::model::{Config, NodeRole};

impl Config {
    /// Checks every cross-reference and range; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = self.server_problems();
        errs.extend(self.limits_problems());
        errs.extend(self.store_problems());
        errs.extend(self.role_problems());
        errs.extend(self.auth_problems());
        errs.extend(self.tenant_problems());
        errs.extend(self.retry_problems());
        errs.extend(self.supervisor_problems());
        errs.extend(self.route_problems());
        errs.extend(self.workflow_problems());
        errs.extend(self.dispatch().problems());
        errs.extend(self.retention.problems());
        errs.extend(self.llm_calls.problems());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    /// `[server]`: listen addresses, message and stream bounds, socket settings.
    fn server_problems(&self) -> Vec<String> {
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
        if !(1..=100_000).contains(&self.server.ws_max_inflight) {
            errs.push("server.ws_max_inflight: must be 1 to 100000".into());
        }
        if !(1..=1_000_000).contains(&self.server.http_max_connections) {
            errs.push("server.http_max_connections: must be 1 to 1000000".into());
        }
        if !(100..=600_000).contains(&self.server.http_header_timeout_ms) {
            errs.push("server.http_header_timeout_ms: must be 100 to 600000".into());
        }
        if !(100..=3_600_000).contains(&self.server.http_idle_timeout_ms) {
            errs.push("server.http_idle_timeout_ms: must be 100 to 3600000".into());
        }
        if !(1..=1_000_000).contains(&self.server.grpc_max_connections) {
            errs.push("server.grpc_max_connections: must be 1 to 1000000".into());
        }
        if !(100..=600_000).contains(&self.server.grpc_handshake_timeout_ms) {
            errs.push("server.grpc_handshake_timeout_ms: must be 100 to 600000".into());
        }
        if !(1..=1_000_000).contains(&self.server.max_inflight_calls) {
            errs.push("server.max_inflight_calls: must be 1 to 1000000".into());
        }
        if !(100..=3_600_000).contains(&self.server.http_body_timeout_ms) {
            errs.push("server.http_body_timeout_ms: must be 100 to 3600000".into());
        }
        if !(1..=100_000).contains(&self.server.max_streams_per_connection) {
            errs.push("server.max_streams_per_connection: must be 1 to 100000".into());
        }
        errs
    }

    /// `[limits]`: task input bounds, pending tasks, event buffer.
    fn limits_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
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
        if !(1..=64).contains(&self.limits.max_delegation_depth) {
            errs.push("limits.max_delegation_depth: must be 1 to 64".into());
        }
        errs
    }

    /// `[store]`: batching, durability mode, URL scheme.
    fn store_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
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
        errs
    }

    /// `[auth]` and `[tls]`.
    fn auth_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
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
        errs
    }

    /// `[budgets]`, and tenant names in `[quotas]` and `[budgets]`.
    fn tenant_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
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
        errs
    }

    /// `[retry]`.
    fn retry_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = self.retry.validate("retry") {
            errs.push(e.to_string());
        }
        errs
    }

    /// `[supervisors]`: names, pool sizes, restart windows.
    fn supervisor_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.supervisors.is_empty() {
            errs.push("supervisors: at least one supervisor is needed".into());
        }
        if self.supervisors.contains_key(cadre_proto::WORKFLOW_SUPERVISOR) {
            errs.push(format!(
                "supervisors.{}: the name is reserved for workflow instances",
                cadre_proto::WORKFLOW_SUPERVISOR
            ));
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
        errs
    }

    /// `[workflows]`: every file readable and a definition in shape (the full checks against
    /// task types run when the node registers them at start).
    fn workflow_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for f in &self.workflows.files {
            match std::fs::read_to_string(f) {
                Err(e) => errs.push(format!("workflows.files: cannot read {}: {e}", f.display())),
                Ok(body) => {
                    if let Err(e) = cadre_workflow::Definition::from_json(&body) {
                        errs.push(format!("workflows.files: {}: {e}", f.display()));
                    }
                }
            }
        }
        errs
    }

    /// `[executors]` and the routes in force: type shape, supervisor and worker kind, executor.
    fn route_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        errs.extend(self.executors.validate());
        let registry = cadre_executors::configured(&self.executors);
        let mut executors: Vec<&str> = registry.names().collect();
        executors.extend(crate::system_tasks::routes::EXECUTORS);
        executors.sort_unstable();
        for (task_type, r) in self.effective_routes().iter() {
            if let Err(e) = cadre_proto::validate_task_type(task_type) {
                errs.push(format!("routes.{task_type:?}: {e}"));
            }
            if task_type.starts_with("workflow.") {
                errs.push(format!(
                    "routes.{task_type:?}: task types workflow.* are workflow instances (register a workflow instead)"
                ));
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
        errs
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
}
