//! Operating the node: the supervisor tree, scaling pools, reloading the config, usage, and
//! remote workers attaching.

use std::time::Duration;

use cadre_proto::SpecError;
use cadre_proto::clock::{now_ms, utc_day};
use cadre_proto::v1::{self, PoolStatus, StatusResponse, SupervisorStatus};
use cadre_store::UsageFilter;
use cadre_supervisors::OrchestratorMsg;

use crate::auth::{Action, Principal};
use crate::error::{Error, Result};
use crate::node::Node;

/// How long orchestrator calls may take before the node answers UNAVAILABLE.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    /// The supervisor tree.
    pub async fn status(&self, p: &Principal) -> Result<StatusResponse> {
        self.permit(p, Action::Status).await?;
        let mut supervisors: Vec<SupervisorStatus> = self.bus.status().await?;
        for s in supervisors.iter_mut().filter(|s| s.node_id.is_empty()) {
            s.node_id = self.node_id.clone();
        }
        self.read_pauses().await;
        for s in supervisors.iter_mut() {
            for pool in s.pools.iter_mut() {
                pool.paused = self.pool_paused(&s.name, &pool.worker_kind);
            }
        }
        Ok(StatusResponse {
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            supervisors,
            pending_tasks: self.writer.pending(),
            pauses: self.visible_pauses(p),
        })
    }

    /// Resizes a pool live. In distributed mode every replica of the supervisor is resized;
    /// the first one's pool is returned. Audited as `admin.scale`.
    pub async fn scale(
        &self,
        p: &Principal,
        supervisor: &str,
        kind: &str,
        replicas: u32,
    ) -> Result<PoolStatus> {
        self.permit(p, Action::Scale).await?;
        let pools = self.bus.scale(supervisor, kind, replicas as usize).await?;
        let pool = pools
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("no replica of supervisor {supervisor}")))?;
        let target = format!("{supervisor}/{kind}");
        self.audit(
            Some(p),
            "admin.scale",
            &target,
            "ok",
            &format!("replicas {replicas}"),
        )
        .await;
        Ok(pool)
    }

    /// Re-reads the config file (and environment) and applies what can change live: pool sizes,
    /// restart intensity, new supervisors and routes. Reports each change; settings that need a
    /// restart are reported as such and left alone.
    /// Audited as `admin.reload` (`ok` with the changes, or `failed` with why).
    pub async fn reload(&self, p: &Principal) -> Result<Vec<String>> {
        self.permit(p, Action::Reload).await?;
        let res = self.reload_config().await;
        match &res {
            Ok(changes) => {
                self.audit(Some(p), "admin.reload", "config", "ok", &changes.join("; "))
                    .await
            }
            Err(e) => {
                self.audit(Some(p), "admin.reload", "config", "failed", &e.to_string())
                    .await
            }
        }
        res
    }

    /// [`Node::reload`] without its permission check and audit.
    async fn reload_config(&self) -> Result<Vec<String>> {
        let new = self
            .source
            .load()
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        let old = self.config();
        let specs = new.local_supervisors();
        let mut changes: Vec<String> = self
            .orchestrator
            .call(
                |reply| OrchestratorMsg::Apply { specs, reply },
                Some(CALL_TIMEOUT),
            )
            .await
            .ok()
            .and_then(|r| r.success_or(()).ok())
            .ok_or_else(|| Error::Unavailable("orchestrator did not answer".into()))?;
        let routes = new.effective_routes();
        if routes != *self.router.routes() {
            changes.push(format!("routes: {} task types", routes.0.len()));
            self.router.replace(routes);
        }
        for (section, same) in [
            ("node", old.node == new.node),
            ("server", old.server == new.server),
            ("store", old.store == new.store),
            ("limits", old.limits == new.limits),
            ("retry", old.retry == new.retry),
            ("log", old.log == new.log),
            ("auth", old.auth == new.auth),
            ("quotas", old.quotas == new.quotas),
            ("tls", old.tls == new.tls),
            ("budgets", old.budgets == new.budgets),
            ("executors", old.executors == new.executors),
            ("bus", old.bus == new.bus),
            ("workflows", old.workflows == new.workflows),
            ("fairness", old.fairness == new.fairness),
            ("concurrency", old.concurrency == new.concurrency),
            ("upstream", old.upstream == new.upstream),
            ("llm_calls", old.llm_calls == new.llm_calls),
        ] {
            if !same {
                changes.push(format!(
                    "{section}: changed in the file; takes effect after a restart"
                ));
            }
        }
        let mut keep = new;
        keep.node = old.node;
        keep.server = old.server;
        keep.store = old.store;
        keep.limits = old.limits;
        keep.retry = old.retry;
        keep.log = old.log;
        keep.auth = old.auth;
        keep.quotas = old.quotas;
        keep.tls = old.tls;
        keep.budgets = old.budgets;
        keep.executors = old.executors;
        keep.bus = old.bus;
        keep.workflows = old.workflows;
        keep.fairness = old.fairness;
        keep.concurrency = old.concurrency;
        keep.upstream = old.upstream;
        keep.llm_calls = old.llm_calls;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = keep;
        tracing::info!(?changes, "config reloaded");
        Ok(changes)
    }

    /// Usage per tenant and model on `day` (default today), within the principal's scope.
    pub async fn usage(&self, p: &Principal, tenant: &str, day: &str) -> Result<v1::UsageResponse> {
        self.permit(p, Action::ReadUsage).await?;
        let well_formed = day.len() == 10
            && day.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !day.is_empty() && !well_formed {
            return Err(SpecError::invalid("day", format!("{day:?} is not a UTC date YYYY-MM-DD")).into());
        }
        let day = if day.is_empty() {
            utc_day(now_ms())
        } else {
            day.to_string()
        };
        let tenant = p.reads_tenant(tenant);
        let usage = self
            .store
            .usage(&UsageFilter {
                task_id: None,
                tenant,
                day: Some(day.clone()),
            })
            .await?;
        Ok(v1::UsageResponse { day, usage })
    }

    /// A remote worker attached to WorkerService: `p` must hold the supervisor role; audited
    /// as `worker.connect` with the kinds it serves.
    pub async fn worker_connected(&self, p: &Principal, worker_id: &str, kinds: &str) -> Result<()> {
        self.permit(p, Action::ConnectWorker).await?;
        let detail = format!("kinds {kinds}");
        self.audit(Some(p), Action::ConnectWorker.name(), worker_id, "ok", &detail)
            .await;
        Ok(())
    }
}
