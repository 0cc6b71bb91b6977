//! The node: everything the faces (gRPC, HTTP, CLI) call, on top of the store, the writer, the
//! event hub and the orchestrator actor. One `Node` per process.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cadre_proto::v1::{self, PoolStatus, StatusResponse, SupervisorStatus};
use cadre_proto::{SecurityLevel, SpecError, SpecLimits, TaskId, TaskRecord, TaskSpec, TaskState};
use ractor::ActorRef;
use tokio::sync::mpsc;

use crate::auth::{Action, Authenticator, Principal};
use crate::budget::{Budgets, Verdict};
use crate::config::{Config, ConfigSource};
use crate::error::{Error, Result};
use crate::hub::{Hub, TaskWatch};
use crate::quota::Quotas;
use crate::writer::Writer;
use cadre_proto::clock::now_ms;
use cadre_store::{EventFilter, Store, StoreError, TaskFilter, UsageFilter, WriteOutcome};
use cadre_supervisors::{OrchestratorMsg, Router};

/// Largest page `List` returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// How long orchestrator calls may take before the node answers UNAVAILABLE.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's shared core.
pub struct Node {
    /// This node's id.
    pub node_id: String,
    pub(crate) config: RwLock<Config>,
    pub(crate) source: ConfigSource,
    pub(crate) limits: SpecLimits,
    /// Checks credentials and permissions.
    pub auth: Arc<Authenticator>,
    /// Per-tenant rate limits and caps.
    pub(crate) quotas: Quotas,
    /// Prices, daily caps and today's spend.
    pub(crate) budgets: Arc<Budgets>,
    pub(crate) store: Arc<dyn Store>,
    /// Task reads, coalesced into batches where the store prefers that.
    pub(crate) reads: cadre_store::reads::Reads,
    pub(crate) writer: Writer,
    pub(crate) hub: Hub,
    pub(crate) orchestrator: ActorRef<OrchestratorMsg>,
    /// Routes and executors: intake resolves types and builds runnable tasks with it.
    pub(crate) router: Router,
    /// How tasks reach supervisors: in process, or over NATS.
    pub(crate) bus: Arc<dyn cadre_bus::Bus>,
}

/// A task type as clients (ListTaskTypes, MCP tools) see it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskTypeInfo {
    /// `supervisor.domain.action`.
    pub task_type: String,
    /// The tier-1 supervisor that runs it.
    pub supervisor: String,
    /// The worker kind (pool) inside it.
    pub worker_kind: String,
    /// The executor the worker runs.
    pub executor: String,
    /// JSON Schema of its params.
    pub params_schema: serde_json::Value,
    /// JSON Schema of its result.
    pub result_schema: serde_json::Value,
}

/// Everything a node is made of, assembled by the binary at start ([`Node::start`]).
pub struct NodeParts {
    /// The configuration in force at start.
    pub config: Config,
    /// Where a reload reads the configuration again.
    pub source: ConfigSource,
    /// The durable record.
    pub store: Arc<dyn Store>,
    /// The group-commit writer in front of it.
    pub writer: Writer,
    /// Live event fan-out.
    pub hub: Hub,
    /// The root actor of this process's supervisors.
    pub orchestrator: ActorRef<OrchestratorMsg>,
    /// Routes and executors.
    pub router: Router,
    /// Credentials and permissions.
    pub auth: Arc<Authenticator>,
    /// Prices, caps and today's spend (shared with the writer).
    pub budgets: Arc<Budgets>,
    /// How tasks reach supervisors.
    pub bus: Arc<dyn cadre_bus::Bus>,
}

/// How often idle tenants' rate buckets are forgotten.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);
/// How often `cadre_store_up` and `cadre_bus_up` are refreshed.
const PROBE_EVERY: Duration = Duration::from_secs(5);

impl Node {
    /// Assembles a node from its parts and starts its housekeeping: idle tenants' rate buckets
    /// forgotten every minute, the `cadre_store_up`/`cadre_bus_up` gauges refreshed every 5 s.
    /// Both hold only a weak reference, so the node can still be dropped at shutdown.
    pub fn start(parts: NodeParts) -> Arc<Node> {
        let NodeParts {
            config,
            source,
            store,
            writer,
            hub,
            orchestrator,
            router,
            auth,
            budgets,
            bus,
        } = parts;
        let node = Arc::new(Node {
            node_id: config.node.id.clone(),
            limits: config.spec_limits(),
            quotas: Quotas::new(&config.quotas),
            config: RwLock::new(config),
            source,
            reads: cadre_store::reads::Reads::spawn(store.clone()),
            store,
            writer,
            hub,
            orchestrator,
            router,
            auth,
            budgets,
            bus,
        });
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FORGET_IDLE_EVERY).await;
                let Some(node) = weak.upgrade() else { return };
                node.quotas.forget_idle();
            }
        });
        let weak = Arc::downgrade(&node);
        tokio::spawn(async move {
            loop {
                let Some(node) = weak.upgrade() else { return };
                node.probe_dependencies().await;
                drop(node);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
        node
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Validates, stores durably and dispatches a task. Returns the task and whether it was
    /// created (false when its idempotency key matched an earlier task, which is returned).
    /// A refusal is logged at debug with the tenant and task type (the caller is told why; a
    /// client retrying against a full node must not flood the log).
    pub async fn submit(&self, p: &Principal, wire: Option<&v1::TaskSpec>) -> Result<(TaskRecord, bool)> {
        self.submit_watched(p, wire, false)
            .await
            .map(|(record, created, _)| (record, created))
    }

    /// [`Node::submit`]; with `watch`, a created task also comes with a live watch of its
    /// events taken before it was stored.
    async fn submit_watched(
        &self,
        p: &Principal,
        wire: Option<&v1::TaskSpec>,
        watch: bool,
    ) -> Result<(TaskRecord, bool, Option<TaskWatch>)> {
        let res = self.admit(p, wire, watch).await;
        if let Err(e) = &res {
            tracing::debug!(
                tenant = %p.tenant,
                task_type = wire.map(|s| s.task_type.as_str()).unwrap_or_default(),
                error = %e,
                "submission refused"
            );
        }
        res
    }

    /// [`Node::submit`] without its refusal log line.
    async fn admit(
        &self,
        p: &Principal,
        wire: Option<&v1::TaskSpec>,
        watch: bool,
    ) -> Result<(TaskRecord, bool, Option<TaskWatch>)> {
        let tenant = p.tenant.as_str();
        let spec = TaskSpec::from_wire(wire, &self.limits)?;
        let routes = self.router.routes();
        let Some(route) = routes.resolve(&spec.task_type) else {
            let known: Vec<&str> = routes.iter().map(|(t, _)| t.as_str()).collect();
            return Err(SpecError::invalid(
                "spec.task_type",
                format!(
                    "unknown task type {:?} (known: {})",
                    spec.task_type,
                    known.join(", ")
                ),
            )
            .into());
        };
        if crate::system_tasks::routes::SUPERVISOR_ONLY.contains(&route.executor.as_str())
            && p.role < crate::auth::Role::Supervisor
        {
            return Err(Error::PermissionDenied(format!(
                "{} reads node-wide state (every tenant's metrics, the audit chain or the node's \
                 config) and needs the supervisor role",
                spec.task_type
            )));
        }
        if spec.security_level == SecurityLevel::Fortress {
            self.fortress_sandbox(&spec.task_type, &route.executor, &spec.params)?;
        }
        // Intake validation: params that do not fit the executor's schema are refused here,
        // naming the failing path, before anything is stored.
        if let Some(schema) = self
            .router
            .executor(&route.executor)
            .and_then(|e| e.params_schema())
            && let Err(e) = cadre_agents::schema::validate(&schema, &spec.params)
        {
            return Err(SpecError::invalid("spec.params_json", e.to_string()).into());
        }
        if let Some(key) = &spec.idempotency_key
            && let Some(existing) = self.store.find_idempotent(tenant, key).await?
        {
            return Ok((existing, false, None));
        }
        if let Some(parent) = spec.parent_id
            && !self.store.get(parent).await?.is_some_and(|t| p.sees(&t.tenant))
        {
            return Err(SpecError::invalid("spec.parent_id", format!("no task {parent}")).into());
        }
        if let Err(retry_after) = self.quotas.admit(tenant) {
            return Err(Error::RateLimited {
                message: format!(
                    "tenant {tenant} exceeds its submit rate (quotas); retry in {} ms",
                    retry_after.as_millis().max(1)
                ),
                retry_after,
            });
        }
        if let Some(cap) = self.quotas.cap(tenant)
            && self.writer.pending_for(tenant) >= cap
        {
            return Err(Error::Exhausted(format!(
                "tenant {tenant} holds {cap} unfinished tasks, its cap (quotas); retry when some finish"
            )));
        }
        let mut spec = spec;
        match self.budgets.check(&cadre_proto::clock::utc_day(now_ms()), tenant) {
            Verdict::Ok => {}
            Verdict::Exceeded(why) => return Err(Error::Exhausted(why)),
            Verdict::NearCap(why) => self.fall_back(&mut spec, &why),
        }
        let max = self.config().limits.max_pending_tasks;
        if self.writer.pending() >= max {
            return Err(Error::Exhausted(format!(
                "the node holds {max} unfinished tasks (limits.max_pending_tasks); retry later"
            )));
        }
        let record = TaskRecord::queued(tenant, spec, &route.supervisor, &route.worker);
        let mut queued = self
            .router
            .queued(&record, route)
            .ok_or_else(|| Error::Unavailable(format!("executor {} is not available", route.executor)))?;
        // One task, one trace: its attempts become children of the submit span.
        tracing::Span::current().record("task_id", tracing::field::display(record.id));
        queued.traceparent = cadre_trace::current_traceparent();
        // Before the insert: the watch then sees every event of the task.
        let live = watch.then(|| self.hub.watch_new(record.id));
        match self.writer.insert(record.clone()).await? {
            WriteOutcome::Event { .. } => {
                self.bus.dispatch(&record, queued);
                let detail = match record.spec.parent_id {
                    Some(parent) => format!("{} (sub-task of {parent})", record.spec.task_type),
                    None => record.spec.task_type.clone(),
                };
                self.audit(Some(p), "task.submit", &record.id.to_string(), "ok", &detail)
                    .await;
                Ok((record, true, live))
            }
            WriteOutcome::Existing(id) => Ok((self.get_record(id).await?, false, None)),
            WriteOutcome::Ignored | WriteOutcome::Usage { .. } | WriteOutcome::Audited { .. } => {
                Err(Error::Unavailable("the store refused the task; retry".into()))
            }
        }
    }

    /// Submits and waits for the terminal state (or `wait`, default: long enough for every
    /// attempt and backoff).
    pub async fn submit_and_wait(
        &self,
        p: &Principal,
        wire: Option<&v1::TaskSpec>,
        wait_ms: u64,
    ) -> Result<TaskRecord> {
        let (record, _, live) = self.submit_watched(p, wire, true).await?;
        let wait = if wait_ms > 0 {
            Duration::from_millis(wait_ms)
        } else {
            record.wait_budget()
        };
        let Some(live) = live else {
            return self.wait_terminal(record.id, wait).await;
        };
        // The common case: the live watch sees the terminal event, no store read to catch up.
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(wait, live.terminal()).await {
            Ok(Some(_)) => self.get_record(record.id).await,
            // The watch fell behind: the store has the events.
            Ok(None) => {
                self.wait_terminal(record.id, wait.saturating_sub(started.elapsed()))
                    .await
            }
            Err(_) => Err(self.still_running(record.id, wait).await),
        }
    }

    /// Near a budget cap: a task whose params name a `model` with a cheaper fallback and set
    /// `"allow_fallback": true` runs on the fallback; its params record the switch.
    fn fall_back(&self, spec: &mut TaskSpec, why: &str) {
        let Some(params) = spec.params.as_object_mut() else {
            return;
        };
        if params.get("allow_fallback").and_then(|v| v.as_bool()) != Some(true) {
            return;
        }
        let Some(model) = params.get("model").and_then(|m| m.as_str()).map(str::to_string) else {
            return;
        };
        if let Some(cheaper) = self.budgets.fallback(&model) {
            tracing::info!(from = %model, to = %cheaper, reason = %why, "budget fallback");
            params.insert("model".into(), cheaper.into());
            params.insert("fallback_from".into(), model.into());
        }
    }

    /// Usage per tenant and model on `day` (default today), within the principal's scope.
    pub async fn usage(&self, p: &Principal, tenant: &str, day: &str) -> Result<v1::UsageResponse> {
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
            cadre_proto::clock::utc_day(now_ms())
        } else {
            day.to_string()
        };
        let tenant = match p.tenant_scope() {
            Some(own) => Some(own.to_string()),
            None => (!tenant.is_empty()).then(|| tenant.to_string()),
        };
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

    /// Waits until the task is terminal, then returns it.
    pub async fn wait_terminal(&self, id: TaskId, wait: Duration) -> Result<TaskRecord> {
        let filter = EventFilter {
            task_id: Some(id),
            ..Default::default()
        };
        let mut events = self.hub.watch(self.store.clone(), filter, 0, true);
        let done = tokio::time::timeout(wait, async {
            while let Some(e) = events.recv().await {
                if e?.state.is_terminal() {
                    return Ok::<bool, StoreError>(true);
                }
            }
            Ok(false)
        })
        .await;
        match done {
            Ok(Ok(_)) => self.get_record(id).await,
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(self.still_running(id, wait).await),
        }
    }

    /// The error for a wait of `wait` that ended before task `id` finished.
    async fn still_running(&self, id: TaskId, wait: Duration) -> Error {
        match self.get_record(id).await {
            Ok(record) => Error::DeadlineExceeded(format!(
                "task {id} is still {} after {} ms; it goes on (watch or get it)",
                record.state,
                wait.as_millis()
            )),
            Err(e) => e,
        }
    }

    /// One task by id. Another tenant's task is NOT_FOUND, as if it did not exist.
    pub async fn get(&self, p: &Principal, id: &str) -> Result<TaskRecord> {
        let id: TaskId = id.parse()?;
        self.get_visible(p, id).await
    }

    async fn get_visible(&self, p: &Principal, id: TaskId) -> Result<TaskRecord> {
        let record = self.get_record(id).await?;
        if !p.sees(&record.tenant) {
            return Err(Error::NotFound(format!("no task {id}")));
        }
        Ok(record)
    }

    async fn get_record(&self, id: TaskId) -> Result<TaskRecord> {
        self.reads
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no task {id}")))
    }

    /// Cancels a task: queued ones at once, running ones cooperatively then forcibly after the
    /// grace period. Waits up to the grace period (plus a margin) and returns the task.
    pub async fn cancel(&self, p: &Principal, id: &str, reason: &str) -> Result<TaskRecord> {
        let record = self.get(p, id).await?;
        if record.state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "task {} is already {}",
                record.id, record.state
            )));
        }
        let reason = if reason.is_empty() {
            "cancelled by request".to_string()
        } else {
            reason.to_string()
        };
        self.bus
            .cancel(&record.supervisor, record.id, record.attempt, reason.clone())
            .await?;
        // Sub-tasks go with their parent (a tree of delegations is cancelled leaf by leaf).
        for child in &record.children {
            match Box::pin(self.cancel(p, &child.to_string(), &format!("parent {} cancelled", record.id)))
                .await
            {
                Ok(_) | Err(Error::FailedPrecondition(_)) | Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!(parent = %record.id, %child, error = %e, "cannot cancel sub-task"),
            }
        }
        let grace = Duration::from_millis(self.config().limits.cancel_grace_ms) + Duration::from_secs(2);
        match self.wait_terminal(record.id, grace).await {
            Ok(r) => Ok(r),
            Err(Error::DeadlineExceeded(_)) => self.get_record(record.id).await,
            Err(e) => Err(e),
        }
    }

    /// A page of tasks, newest first, and the token of the next page (empty at the end).
    pub async fn list(&self, p: &Principal, req: &v1::ListRequest) -> Result<(Vec<TaskRecord>, String)> {
        let states = req
            .states
            .iter()
            .map(|s| TaskState::from_wire(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = match req.page_size {
            0 => 50,
            n if n > MAX_PAGE_SIZE => {
                return Err(
                    SpecError::invalid("page_size", format!("must be at most {MAX_PAGE_SIZE}")).into(),
                );
            }
            n => n,
        };
        let before = match req.page_token.as_str() {
            "" => None,
            t => Some(
                t.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("page_token", "is not a token from List"))?,
            ),
        };
        let parent_id = match req.parent_id.as_str() {
            "" => None,
            p => Some(
                p.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("parent_id", "is not a task id"))?,
            ),
        };
        let filter = TaskFilter {
            tenant: p.tenant_scope().map(str::to_string),
            states,
            type_prefix: (!req.task_type_prefix.is_empty()).then(|| req.task_type_prefix.clone()),
            parent_id,
            before,
            limit,
        };
        let tasks = self.store.list(&filter).await?;
        let next = if tasks.len() as u32 == limit {
            tasks.last().map(|t| t.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((tasks, next))
    }

    /// A resumable event stream for one task (ends after its terminal event) or a filter.
    pub async fn watch(
        &self,
        p: &Principal,
        req: &v1::WatchRequest,
    ) -> Result<mpsc::Receiver<Result<cadre_proto::TaskEvent, StoreError>>> {
        let states = req
            .states
            .iter()
            .map(|s| TaskState::from_wire(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let task_id = match req.task_id.as_str() {
            "" => None,
            id => {
                let id: TaskId = id
                    .parse()
                    .map_err(|_| SpecError::invalid("task_id", "is not a task id"))?;
                self.get_visible(p, id).await?;
                Some(id)
            }
        };
        let parent_id = match req.parent_id.as_str() {
            "" => None,
            id => Some(
                id.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("parent_id", "is not a task id"))?,
            ),
        };
        let filter = EventFilter {
            task_id,
            type_prefix: (!req.task_type_prefix.is_empty()).then(|| req.task_type_prefix.clone()),
            states,
            tenant: p.tenant_scope().map(str::to_string),
            parent_id,
        };
        Ok(self
            .hub
            .watch(self.store.clone(), filter, req.after_cursor, task_id.is_some()))
    }

    /// Stored events of one visible task with a cursor after `after`, oldest first (at most
    /// `limit`, 1-1000).
    pub async fn task_events(
        &self,
        p: &Principal,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<cadre_proto::TaskEvent>> {
        if !(1..=1000).contains(&limit) {
            return Err(SpecError::invalid("limit", format!("{limit} is not within 1-1000")).into());
        }
        let id: TaskId = id.parse()?;
        self.get_visible(p, id).await?;
        let filter = EventFilter {
            task_id: Some(id),
            ..Default::default()
        };
        Ok(self.store.events_after(after, &filter, limit).await?)
    }

    /// Every task type this node accepts, in name order, with where it runs and the JSON
    /// Schemas of its params and result (`{"type": "object"}` and `{}` when its executor
    /// publishes none).
    pub fn task_types(&self) -> Vec<TaskTypeInfo> {
        let routes = self.router.routes();
        routes
            .iter()
            .map(|(task_type, route)| {
                let executor = self.router.executor(&route.executor);
                let schema = |f: fn(&dyn cadre_agents::Executor) -> Option<serde_json::Value>,
                              none: serde_json::Value| {
                    executor.as_deref().and_then(f).unwrap_or(none)
                };
                TaskTypeInfo {
                    task_type: task_type.clone(),
                    supervisor: route.supervisor.clone(),
                    worker_kind: route.worker.clone(),
                    executor: route.executor.clone(),
                    params_schema: schema(|e| e.params_schema(), serde_json::json!({ "type": "object" })),
                    result_schema: schema(|e| e.result_schema(), serde_json::json!({})),
                }
            })
            .collect()
    }

    /// Whether `task_type` is routed (cheap: no schemas are built).
    pub fn accepts(&self, task_type: &str) -> bool {
        self.router.routes().resolve(task_type).is_some()
    }

    /// [`Node::task_types`] whose names start with `prefix`.
    pub fn task_types_with_prefix(&self, prefix: &str) -> Vec<TaskTypeInfo> {
        let mut types = self.task_types();
        types.retain(|t| t.task_type.starts_with(prefix));
        types
    }

    /// The newest committed event's cursor: where a subscription "from now" starts.
    pub async fn head_cursor(&self) -> Result<u64> {
        Ok(self.store.max_cursor().await?)
    }

    /// The supervisor tree.
    pub async fn status(&self) -> Result<StatusResponse> {
        let mut supervisors: Vec<SupervisorStatus> = self.bus.status().await?;
        for s in supervisors.iter_mut().filter(|s| s.node_id.is_empty()) {
            s.node_id = self.node_id.clone();
        }
        Ok(StatusResponse {
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            supervisors,
            pending_tasks: self.writer.pending(),
        })
    }

    /// Resizes a pool live.
    /// In distributed mode every replica of the supervisor is resized; the first one's pool
    /// is returned.
    pub async fn scale(&self, supervisor: &str, kind: &str, replicas: u32) -> Result<PoolStatus> {
        let pools = self.bus.scale(supervisor, kind, replicas as usize).await?;
        pools
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("no replica of supervisor {supervisor}")))
    }

    /// Re-reads the config file (and environment) and applies what can change live: pool sizes,
    /// restart intensity, new supervisors and routes. Reports each change; settings that need a
    /// restart are reported as such and left alone.
    pub async fn reload(&self) -> Result<Vec<String>> {
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
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = keep;
        tracing::info!(?changes, "config reloaded");
        Ok(changes)
    }

    /// Records a security-relevant act in the audit chain (sealed in commit order).
    pub async fn audit(
        &self,
        p: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.writer
            .audit(crate::audit::draft(p, action, target, outcome, detail))
            .await;
    }

    /// Authenticates an `authorization` header and checks `action`; refusals are audited.
    pub async fn authorize(&self, header: Option<&str>, action: Action) -> Result<Principal> {
        let p = match self.auth.authenticate(header) {
            Ok(p) => p,
            Err(e) => {
                self.audit(None, action.name(), "", "unauthenticated", &e.to_string())
                    .await;
                return Err(e);
            }
        };
        if let Err(e) = Authenticator::check(&p, action) {
            self.audit(Some(&p), action.name(), "", "denied", &e.to_string())
                .await;
            return Err(e);
        }
        Ok(p)
    }

    /// Checks that an already authenticated principal may do `action` (a refusal is audited),
    /// for faces that authenticate once and then act several ways (MCP).
    pub async fn permit(&self, p: &Principal, action: Action) -> Result<()> {
        if let Err(e) = Authenticator::check(p, action) {
            self.audit(Some(p), action.name(), "", "denied", &e.to_string())
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Refuses a `fortress` task unless its executor sandboxes its params (today: `exec`, on a
    /// command with no network and a memory limit; the wall-time limit is always on), as the
    /// executor itself was configured at start. The worker checks again before it runs, so a
    /// route changed by a reload cannot take it out of the sandbox. Its result is signed like a
    /// `verified` one.
    fn fortress_sandbox(&self, task_type: &str, executor: &str, params: &serde_json::Value) -> Result<()> {
        let check = match self.router.executor(executor) {
            Some(e) => e.sandboxed(params),
            None => Err(format!("executor {executor:?} does not exist")),
        };
        check.map_err(|why| {
            Error::FailedPrecondition(format!(
                "spec.security_level: fortress {why} (task type {task_type} runs on executor {executor:?})"
            ))
        })
    }

    /// Whether the node can accept work (store reachable, bus connected).
    pub async fn ready(&self) -> bool {
        self.bus.ready() && self.store.ping().await.is_ok()
    }

    /// Sets the `cadre_store_up` and `cadre_bus_up` gauges (1 reachable, 0 not).
    pub async fn probe_dependencies(&self) {
        let store = self.store.ping().await.is_ok();
        metrics::gauge!("cadre_store_up").set(f64::from(u8::from(store)));
        metrics::gauge!("cadre_bus_up").set(f64::from(u8::from(self.bus.ready())));
    }
}

#[async_trait::async_trait]
impl crate::system_tasks::NodeView for Node {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    fn bus_ready(&self) -> bool {
        self.bus.ready()
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.config().node.data_dir
    }

    fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        self.source.load()
    }
}
