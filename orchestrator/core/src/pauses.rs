//! Pause and resume: an operator holds back a supervisor, a pool, a task-type prefix or a
//! tenant. Held tasks stay QUEUED (and new ones are accepted); running ones finish; a resume
//! lets them run in the usual order. Supervisors decide what to start; tier 0 only decides
//! what is paused.
//!
//! The pause set lives in the store ([`cadre_store::PauseStore`]), so it survives restarts.
//! Every tier-0 process keeps the set it last read ([`crate::paused::Paused`]) and a delivery
//! loop ([`spawn_delivery`]) re-reads the store and sends the whole set through the bus to
//! every supervisor ([`cadre_bus::Bus::set_pauses`]): at start, at once after a change made
//! here, and every [`DELIVER_EVERY`] otherwise. So a pause made on another tier-0 replica
//! sharing the database, or a supervisor node that restarted with an empty set, is brought up
//! to date within that period.
//!
//! Checks: the supervisor role ([`Action::Pause`], [`Action::Resume`]); a named supervisor or
//! pool must be configured (NOT_FOUND); names, prefixes and reasons are bounded; a
//! non-commander may pause only their own tenant (an empty tenant means their own) and sees
//! no other tenant's tenant pause. Pausing what is paused, or resuming what is not, changes
//! nothing and succeeds. Both are audited (`admin.pause`, `admin.resume`, target
//! `<scope>:<name>`).

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cadre_bus::pause_wire::{self, scope_name, target_name};
use cadre_proto::SpecError;
use cadre_proto::clock::now_ms;
use cadre_proto::v1;
use cadre_store::StoredPause;
use cadre_supervisors::Pause;

use crate::auth::{Action, Principal};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::node::Node;

/// How often the delivery loop re-reads the store and re-sends the set (the longest a pause
/// made on another replica, or lost by a restarted supervisor node, takes to apply).
pub const DELIVER_EVERY: Duration = Duration::from_secs(2);
/// Most pauses in force at once (more are refused with RESOURCE_EXHAUSTED).
pub const MAX_PAUSES: usize = 1_000;
/// Longest task-type prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 256;
/// Longest tenant name, in bytes.
pub const MAX_TENANT_BYTES: usize = 128;
/// Longest reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1_024;

/// Delivers the set (and the credentials supervisor nodes check tokens against,
/// [`Node::deliver_credentials`]) once, then starts the delivery loop of `node`: the binary calls it once
/// after [`Node::start`], before serving. The loop re-reads and re-sends every
/// [`DELIVER_EVERY`] (a change made here is sent by the operation itself); it holds only a
/// weak reference, so the node can still be dropped at shutdown.
pub async fn spawn_delivery(node: &Arc<Node>) {
    node.deliver_pauses().await;
    node.deliver_credentials().await;
    let weak: Weak<Node> = Arc::downgrade(node);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(DELIVER_EVERY).await;
            let Some(node) = weak.upgrade() else { return };
            node.deliver_pauses().await;
            node.deliver_credentials().await;
        }
    });
}

/// Sets `cadre_pool_paused` to 0 for every configured pool (so the series exist from start).
pub fn export_series(config: &Config) {
    for (supervisor, spec) in &config.supervisors {
        for kind in spec.pools.keys() {
            metrics::gauge!("cadre_pool_paused", "supervisor" => supervisor.clone(), "kind" => kind.clone())
                .set(0.0);
        }
    }
}

/// The pause set as stored now (for the actor tree at start, before any task is recovered).
pub async fn stored_set(store: &dyn cadre_store::Store) -> Result<cadre_supervisors::PauseSet> {
    Ok(cadre_supervisors::PauseSet {
        pauses: store.pauses().await?.into_iter().map(|p| p.pause).collect(),
    })
}

/// A stored pause as a wire message.
pub fn stored_to_wire(p: &StoredPause) -> v1::Pause {
    v1::Pause {
        paused_at_ms: p.paused_at_ms,
        paused_by: p.paused_by.clone(),
        reason: p.reason.clone(),
        ..pause_wire::to_wire(&p.pause)
    }
}

/// Whether `set` holds pool `kind` of `supervisor` (a supervisor or pool pause).
fn pool_held(set: &[StoredPause], supervisor: &str, kind: &str) -> bool {
    set.iter().any(|s| s.pause.holds_pool(supervisor, kind))
}

/// The audit target of a pause: `<scope>:<name>`.
fn audit_target(p: &Pause) -> String {
    format!("{}:{}", scope_name(p), target_name(p))
}

impl Node {
    /// Pauses a scope (supervisor role; audited as `admin.pause`). Returns the pause in force
    /// and whether it was made now (false: it was paused already, nothing changed).
    pub async fn pause(&self, p: &Principal, wire: Option<&v1::Pause>) -> Result<(v1::Pause, bool)> {
        self.permit(p, Action::Pause).await?;
        let wire = wire.ok_or_else(|| SpecError::invalid("pause", "is required"))?;
        let pause = self.checked_pause(p, wire)?;
        if wire.reason.len() > MAX_REASON_BYTES {
            return Err(SpecError::invalid(
                "pause.reason",
                format!("is longer than {MAX_REASON_BYTES} bytes"),
            )
            .into());
        }
        let known = self.pauses.current();
        if known.len() >= MAX_PAUSES && !known.iter().any(|k| k.pause == pause) {
            return Err(Error::Exhausted(format!(
                "{MAX_PAUSES} pauses are in force; resume some first"
            )));
        }
        let stored = StoredPause {
            pause: pause.clone(),
            paused_at_ms: now_ms(),
            paused_by: p.subject.clone(),
            reason: wire.reason.clone(),
        };
        let created = self.store.add_pause(&stored).await?;
        let detail = match (created, wire.reason.is_empty()) {
            (false, _) => "already paused".to_string(),
            (true, true) => String::new(),
            (true, false) => format!("reason: {}", cut(&wire.reason, 200)),
        };
        self.audit(Some(p), "admin.pause", &audit_target(&pause), "ok", &detail)
            .await;
        tracing::info!(by = %p.subject, scope = scope_name(&pause), name = %target_name(&pause), created, "paused");
        self.deliver_pauses().await;
        let in_force = self
            .pauses
            .current()
            .into_iter()
            .find(|k| k.pause == pause)
            .unwrap_or(stored);
        Ok((stored_to_wire(&in_force), created))
    }

    /// Ends a pause (supervisor role; audited as `admin.resume`). False when the scope was not
    /// paused (nothing changed).
    pub async fn resume(&self, p: &Principal, wire: Option<&v1::Pause>) -> Result<bool> {
        self.permit(p, Action::Resume).await?;
        let wire = wire.ok_or_else(|| SpecError::invalid("pause", "is required"))?;
        let pause = self.checked_pause(p, wire)?;
        let resumed = self.store.remove_pause(&pause).await?;
        let detail = if resumed { "" } else { "was not paused" };
        self.audit(Some(p), "admin.resume", &audit_target(&pause), "ok", detail)
            .await;
        tracing::info!(by = %p.subject, scope = scope_name(&pause), name = %target_name(&pause), resumed, "resumed");
        self.deliver_pauses().await;
        Ok(resumed)
    }

    /// What is paused, as `p` may see it (supervisor role): every supervisor, pool and prefix
    /// pause, and tenant pauses of their own tenant only (commanders: all).
    pub async fn list_pauses(&self, p: &Principal) -> Result<Vec<v1::Pause>> {
        self.permit(p, Action::Pause).await?;
        self.read_pauses().await;
        Ok(self.visible_pauses(p))
    }

    /// The pauses `p` may see, without a permission check (for Status).
    pub(crate) fn visible_pauses(&self, p: &Principal) -> Vec<v1::Pause> {
        self.pauses
            .current()
            .iter()
            .filter(|s| match &s.pause {
                Pause::Tenant { tenant } => p.sees(tenant),
                _ => true,
            })
            .map(stored_to_wire)
            .collect()
    }

    /// Whether a pool is held by a supervisor or pool pause (for Status).
    pub(crate) fn pool_paused(&self, supervisor: &str, kind: &str) -> bool {
        pool_held(&self.pauses.current(), supervisor, kind)
    }

    /// The pause a request names, checked: a configured supervisor and pool (NOT_FOUND), a
    /// bounded prefix, the caller's own tenant unless a commander (PERMISSION_DENIED).
    fn checked_pause(&self, p: &Principal, wire: &v1::Pause) -> Result<Pause> {
        let mut pause = pause_wire::from_wire(wire)
            .map_err(|(field, m)| SpecError::invalid(format!("pause.{field}"), m))?;
        match &mut pause {
            Pause::Supervisor { supervisor } => {
                self.configured(supervisor, None)?;
            }
            Pause::Pool {
                supervisor,
                worker_kind,
            } => {
                self.configured(supervisor, Some(worker_kind))?;
            }
            Pause::TaskTypePrefix { prefix } => {
                if prefix.len() > MAX_PREFIX_BYTES || prefix.chars().any(char::is_control) {
                    return Err(SpecError::invalid(
                        "pause.prefix",
                        format!("must be 1 to {MAX_PREFIX_BYTES} bytes without control characters"),
                    )
                    .into());
                }
            }
            Pause::Tenant { tenant } => {
                if tenant.is_empty() {
                    *tenant = p.tenant.clone();
                }
                if tenant.len() > MAX_TENANT_BYTES || tenant.chars().any(char::is_control) {
                    return Err(SpecError::invalid(
                        "pause.tenant",
                        format!("must be at most {MAX_TENANT_BYTES} bytes without control characters"),
                    )
                    .into());
                }
                if !p.sees(tenant) {
                    return Err(Error::PermissionDenied(format!(
                        "only a commander may pause another tenant than {:?}",
                        p.tenant
                    )));
                }
            }
        }
        Ok(pause)
    }

    /// NOT_FOUND unless `supervisor` (and its pool `kind`) is configured.
    fn configured(&self, supervisor: &str, kind: Option<&str>) -> Result<()> {
        let config = self.config();
        let spec = config
            .supervisors
            .get(supervisor)
            .ok_or_else(|| Error::NotFound(format!("no supervisor {supervisor:?}")))?;
        match kind {
            Some(k) if !spec.pools.contains_key(k) => Err(Error::NotFound(format!(
                "supervisor {supervisor:?} has no pool {k:?} (it has {})",
                spec.pools.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Re-reads the set from the store (keeping the last one if it cannot), updates the
    /// gauges and sends the set to every supervisor.
    pub(crate) async fn deliver_pauses(&self) {
        let _one_at_a_time = self.pauses.delivering.lock().await;
        let read = self.read_pauses().await;
        let set = cadre_supervisors::PauseSet {
            pauses: read.iter().map(|p| p.pause.clone()).collect(),
        };
        match self.bus.set_pauses(&set).await {
            Ok(()) => *self.pauses.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None,
            Err(e) => self.delivery_problem(format!("cannot deliver the pause set: {e}")),
        }
        // After sending: the gauges say what this process has sent.
        self.export_pauses(&read);
    }

    /// Replaces the known set with the store's and returns it (the known one when the store
    /// cannot be read).
    pub(crate) async fn read_pauses(&self) -> Vec<StoredPause> {
        match self.store.pauses().await {
            Ok(read) => {
                *self.pauses.current.write().unwrap_or_else(|e| e.into_inner()) = read.clone();
                read
            }
            Err(e) => {
                self.delivery_problem(format!("cannot read the pause set: {e}"));
                self.pauses.current()
            }
        }
    }

    /// Logs a delivery problem unless it is the one logged last.
    fn delivery_problem(&self, message: String) {
        let mut last = self.pauses.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, "pauses: retrying every {DELIVER_EVERY:?}");
            *last = Some(message);
        }
    }

    /// Sets `cadre_paused{scope,name}` (1 paused, 0 once resumed) and
    /// `cadre_pool_paused{supervisor,kind}` for every configured pool.
    fn export_pauses(&self, set: &[StoredPause]) {
        let now: BTreeSet<(&'static str, String)> = set
            .iter()
            .map(|s| (scope_name(&s.pause), target_name(&s.pause)))
            .collect();
        let mut exported = self.pauses.exported.lock().unwrap_or_else(|e| e.into_inner());
        for (scope, name) in exported.difference(&now) {
            metrics::gauge!("cadre_paused", "scope" => *scope, "name" => name.clone()).set(0.0);
        }
        for (scope, name) in &now {
            metrics::gauge!("cadre_paused", "scope" => *scope, "name" => name.clone()).set(1.0);
        }
        *exported = now;
        drop(exported);
        for (supervisor, spec) in &self.config().supervisors {
            for kind in spec.pools.keys() {
                let paused = f64::from(u8::from(pool_held(set, supervisor, kind)));
                metrics::gauge!("cadre_pool_paused", "supervisor" => supervisor.clone(), "kind" => kind.clone())
                    .set(paused);
            }
        }
    }

    /// Replaces this process's own supervisors' pause set (SupervisorPeer.SetPauses on a
    /// tier-0 process that runs supervisors fed from NATS; tier 0's node credential only).
    pub async fn apply_pauses(&self, p: &Principal, wire: &[v1::Pause]) -> Result<()> {
        self.permit(p, Action::ApplyPauses).await?;
        let set = pause_wire::set_from_wire(wire).map_err(|m| SpecError::invalid("pauses", m))?;
        self.orchestrator
            .cast(cadre_supervisors::OrchestratorMsg::SetPauses(set))
            .map_err(|_| Error::Unavailable("node is shutting down".into()))
    }
}

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
