//! Intake: the one pipeline every submission takes, whatever face it came from (gRPC Submit
//! and SubmitAndWait, the JSON API, MCP tools, SupervisorPeer.Delegate on a tier-0 node, and
//! the sub-tasks executors delegate in process).
//!
//! The checks, in order, each refusing with a clear error before anything is stored:
//!
//! | step | what it refuses | error |
//! |------|-----------------|-------|
//! | permission | a principal below the operator role | PERMISSION_DENIED |
//! | parse | malformed or out-of-range fields ([`cadre_supervisors::admission::parse`]) | INVALID_ARGUMENT / RESOURCE_EXHAUSTED |
//! | route | an unknown task type, naming the known ones; for a workflow instance (`workflow.<name>.run`), an unregistered workflow or input that does not fit its input schema ([`crate::workflows::admission`]) | INVALID_ARGUMENT |
//! | node-wide types | node tasks that read every tenant's state, below the supervisor role | PERMISSION_DENIED |
//! | sandbox | a `fortress` task whose executor does not sandbox it | FAILED_PRECONDITION |
//! | schema | params that do not fit the executor's params schema | INVALID_ARGUMENT |
//! | reserved keys | an idempotency key starting `wf:` (workflow steps' keys) from anyone but the workflow engine | INVALID_ARGUMENT |
//! | idempotency | nothing: a known key returns its task (`created = false`) | |
//! | parent | a parent the caller cannot see; a parent already finished, or already `limits.max_delegation_depth` delegations below its root; a workflow instance (only its engine adds steps) | INVALID_ARGUMENT / FAILED_PRECONDITION |
//! | quota | the tenant's submit rate, then its unfinished-task cap | RESOURCE_EXHAUSTED |
//! | budget | a tenant past a budget cap (near one, an opted-in task falls back to a cheaper model) | RESOURCE_EXHAUSTED |
//! | capacity | the node's unfinished-task limit | RESOURCE_EXHAUSTED |
//! | durable insert | nothing: the task and its `task.submit` act are stored in one transaction (group commit), then it is dispatched; a debounced task replaces the queued one with its key in that transaction and waits for its window ([`crate::debounce`]) | UNAVAILABLE if the store fails |
//!
//! The first five steps are shared with supervisor nodes ([`cadre_supervisors::admission`]).

use std::time::Duration;

use cadre_proto::clock::{now_ms, utc_day};
use cadre_proto::{Role, TaskRecord, TaskSpec, v1};
use cadre_store::WriteOutcome;
use cadre_supervisors::Route;
use cadre_supervisors::admission::{self, Admission, Refusal};

use crate::auth::{Action, Principal};
use crate::budget::Verdict;
use crate::error::{Error, Result};
use crate::hub::TaskWatch;
use crate::node::Node;

/// A submission admitted by intake: the task, whether it was created now (false: its
/// idempotency key named an earlier task, which is returned), and the live watch asked for.
type Admitted = (TaskRecord, bool, Option<TaskWatch>);

/// Where an admitted task goes.
enum Target {
    /// To the supervisor and pool its route names.
    Route(Route),
    /// Nowhere: a workflow instance, driven by the workflow engine.
    Instance(crate::workflows::admission::InstanceRoute),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Spec(e) => Error::Spec(e),
            Refusal::Precondition(m) => Error::FailedPrecondition(m),
        }
    }
}

impl Node {
    /// Validates, stores durably and dispatches a task. Returns the task and whether it was
    /// created (false when its idempotency key matched an earlier task, which is returned).
    /// A refusal is logged at debug with the tenant and task type (the caller is told why; a
    /// client retrying against a full node must not flood the log).
    pub async fn submit(&self, p: &Principal, wire: Option<&v1::TaskSpec>) -> Result<(TaskRecord, bool)> {
        self.submit_watched(p, wire, false)
            .await
            .map(|(record, created, _)| (record, created))
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
        let done = self.wait_submitted(record, live, wait_ms).await?;
        self.with_steps(done).await
    }

    /// The submitted task once it is finished, or DEADLINE_EXCEEDED after `wait_ms` (0: its
    /// wait budget).
    async fn wait_submitted(
        &self,
        record: TaskRecord,
        live: Option<TaskWatch>,
        wait_ms: u64,
    ) -> Result<TaskRecord> {
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

    /// SupervisorPeer.Delegate on a tier-0 node: `wire` as a sub-task of `parent`, waited for
    /// like SubmitAndWait. Node credentials (scoped to every tenant) delegate on behalf of the
    /// parent's `tenant`. `parent_depth` is the depth the calling node knows the parent at: a
    /// parent that deep (or stored that deep) takes no sub-task past
    /// `limits.max_delegation_depth`.
    pub async fn delegate(
        &self,
        p: &Principal,
        parent: &str,
        tenant: &str,
        parent_depth: u32,
        wire: Option<&v1::TaskSpec>,
        wait_ms: u64,
    ) -> Result<TaskRecord> {
        self.permit(p, Action::Delegate).await?;
        Admission::within_depth(parent, parent_depth, self.config().limits.max_delegation_depth)?;
        let mut spec = wire
            .cloned()
            .ok_or_else(|| cadre_proto::SpecError::invalid("spec", "is required"))?;
        if parent.is_empty() {
            return Err(cadre_proto::SpecError::invalid("parent_id", "is required").into());
        }
        spec.parent_id = parent.to_string();
        let on_behalf = match p.tenant_scope() {
            None if !tenant.is_empty() => Principal {
                tenant: tenant.to_string(),
                ..p.clone()
            },
            _ => p.clone(),
        };
        self.submit_and_wait(&on_behalf, Some(&spec), wait_ms).await
    }

    /// [`Node::submit`]; with `watch`, a created task also comes with a live watch of its
    /// events taken before it was stored.
    pub(crate) async fn submit_watched(
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

    /// A bulk replay's copy of finished task `original` ([`crate::bulk`]): `wire` through the
    /// whole pipeline, stored with `replay_of` set.
    pub(crate) async fn submit_replay(
        &self,
        p: &Principal,
        wire: &v1::TaskSpec,
        original: cadre_proto::TaskId,
    ) -> Result<TaskRecord> {
        let (record, _, _) = self.admit_as(p, Some(wire), false, Some(original)).await?;
        Ok(record)
    }

    /// The pipeline (see the module docs), without its refusal log line.
    async fn admit(&self, p: &Principal, wire: Option<&v1::TaskSpec>, watch: bool) -> Result<Admitted> {
        self.admit_as(p, wire, watch, None).await
    }

    /// [`Self::admit`] of a task that replays `replay_of` (None: an ordinary submit).
    async fn admit_as(
        &self,
        p: &Principal,
        wire: Option<&v1::TaskSpec>,
        watch: bool,
        replay_of: Option<cadre_proto::TaskId>,
    ) -> Result<Admitted> {
        self.permit(p, Action::SubmitTask).await?;
        let mut spec = admission::parse(wire, &self.limits)?;
        spec.replay_of = replay_of;
        let (spec, target) = match cadre_workflow::workflow_of(&spec.task_type) {
            Some(name) => {
                instance_asks_no_policy(wire)?;
                crate::debounce::refuse_for_instance(&spec)?;
                let route = self.instance_route(&spec, name).await?;
                (spec, Target::Instance(route))
            }
            None => {
                let admission = Admission::route(spec, &self.router)?;
                node_wide_types(p, &admission)?;
                admission.sandboxed(&self.router)?;
                admission.fits_schema(&self.router)?;
                (admission.spec, Target::Route(admission.route))
            }
        };
        engine_key_reserved(p, &spec)?;
        // Both read the store; at once, they cost one read's time (a known key wins: its task
        // is the answer whatever became of the parent since).
        let (existing, parent) = futures::join!(self.idempotent(p, &spec), self.parent_visible(p, &spec));
        if let Some(existing) = existing? {
            return Ok((existing, false, None));
        }
        parent?;
        self.within_quota(&p.tenant)?;
        let spec = self.within_budget(&p.tenant, spec)?;
        self.within_capacity()?;
        self.store_durably(p, spec, &target, watch).await
    }

    /// The task a tenant already submitted with this spec's idempotency key, if any. The
    /// workflow engine is not asked: it submits a step's key only when its snapshot of the
    /// instance holds none, and the durable insert still answers a key that exists with its
    /// task (so a race costs nothing but the quota check).
    async fn idempotent(&self, p: &Principal, spec: &TaskSpec) -> Result<Option<TaskRecord>> {
        let Some(key) = &spec.idempotency_key else {
            return Ok(None);
        };
        if p.subject.starts_with(ENGINE_SUBJECT_PREFIX) {
            return Ok(None);
        }
        Ok(self.store.find_idempotent(&p.tenant, key).await?)
    }

    /// A parent must be a stored task the caller may see (another tenant's is "no task", like
    /// a missing one) that has not finished: a finished task takes no new sub-tasks (so a
    /// workflow cancelled while a step is being submitted gets no step after it). Nor does a
    /// task already `limits.max_delegation_depth` delegations below its root (its depth is
    /// stored with it: one more read, at the same time).
    async fn parent_visible(&self, p: &Principal, spec: &TaskSpec) -> Result<()> {
        let Some(parent) = spec.parent_id else {
            return Ok(());
        };
        let (task, depth) = futures::join!(self.store.get(parent), self.store.depth(parent));
        let task = task?;
        if let Some(t) = &task
            && p.sees(&t.tenant)
        {
            let max = self.config().limits.max_delegation_depth;
            Admission::within_depth(&parent.to_string(), depth?.unwrap_or(0), max)?;
        }
        match task {
            Some(t) if p.sees(&t.tenant) && t.state.is_terminal() => Err(Error::FailedPrecondition(format!(
                "parent task {parent} is already {}; it takes no new sub-tasks",
                t.state
            ))),
            Some(t)
                if p.sees(&t.tenant)
                    && cadre_workflow::workflow_of(&t.spec.task_type).is_some()
                    && p.subject != engine_subject(parent) =>
            {
                Err(cadre_proto::SpecError::invalid(
                    "spec.parent_id",
                    format!("task {parent} is a workflow instance; only its workflow adds its steps"),
                )
                .into())
            }
            Some(t) if p.sees(&t.tenant) => Ok(()),
            _ => Err(cadre_proto::SpecError::invalid("spec.parent_id", format!("no task {parent}")).into()),
        }
    }

    /// The tenant's submit rate, then its cap of unfinished tasks.
    fn within_quota(&self, tenant: &str) -> Result<()> {
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
        Ok(())
    }

    /// The tenant's budgets today: past a cap refused; near one, an opted-in task falls back to
    /// a cheaper model (the returned spec says so).
    fn within_budget(&self, tenant: &str, mut spec: TaskSpec) -> Result<TaskSpec> {
        match self.budgets.check(&utc_day(now_ms()), tenant) {
            Verdict::Ok => {}
            Verdict::Exceeded(why) => return Err(Error::OverBudget(why)),
            Verdict::NearCap(why) => self.fall_back(&mut spec, &why),
        }
        Ok(spec)
    }

    /// The node's limit on unfinished tasks.
    fn within_capacity(&self) -> Result<()> {
        let max = self.config().limits.max_pending_tasks;
        if self.writer.pending() >= max {
            return Err(Error::Exhausted(format!(
                "the node holds {max} unfinished tasks (limits.max_pending_tasks); retry later"
            )));
        }
        Ok(())
    }

    /// Stores the new task (QUEUED) and its `task.submit` act through the group-commit writer,
    /// in one transaction, and waits until both are durable, then dispatches it (an instance
    /// has no supervisor: the workflow engine sees its QUEUED event). A lost idempotency race
    /// returns the winner. With `watch`, the live watch is taken before the insert, so it sees
    /// every event.
    async fn store_durably(
        &self,
        p: &Principal,
        spec: TaskSpec,
        target: &Target,
        watch: bool,
    ) -> Result<Admitted> {
        let record = match target {
            Target::Route(route) => TaskRecord::queued(&p.tenant, spec, &route.supervisor, &route.worker),
            Target::Instance(i) => TaskRecord::queued(&p.tenant, spec, i.supervisor(), &i.worker_kind()),
        };
        let queued = match target {
            Target::Route(route) => {
                let mut queued = self.router.queued(&record, route).ok_or_else(|| {
                    Error::Unavailable(format!("executor {} is not available", route.executor))
                })?;
                queued.traceparent = cadre_trace::current_traceparent();
                Some(queued)
            }
            Target::Instance(_) => None,
        };
        // One task, one trace: its attempts become children of the submit span.
        tracing::Span::current().record("task_id", tracing::field::display(record.id));
        let live = watch.then(|| self.hub.watch_new(record.id));
        // The act is committed with the task: no accepted task without its record.
        let detail = match record.spec.parent_id {
            Some(parent) => format!("{} (sub-task of {parent})", record.spec.task_type),
            None => record.spec.task_type.clone(),
        };
        let act = crate::audit::draft(Some(p), "task.submit", &record.id.to_string(), "ok", &detail);
        let stored = match record.spec.debounce {
            Some(_) => {
                let stored = self.insert_debounced(p, &record, act).await?;
                if matches!(stored, WriteOutcome::Event { .. }) {
                    // A debounced task waits for its window (crate::debounce).
                    self.held(&record);
                }
                stored
            }
            None => self.insert_and_dispatch(record.clone(), act, queued).await?,
        };
        match stored {
            WriteOutcome::Event { .. } => Ok((record, true, live)),
            WriteOutcome::Existing(id) => Ok((self.get_record(id).await?, false, None)),
            WriteOutcome::Ignored | WriteOutcome::Usage { .. } | WriteOutcome::Audited { .. } => {
                Err(Error::Unavailable("the store refused the task; retry".into()))
            }
        }
    }

    /// Stores `record` with its act and, once both are durable, dispatches it (`queued`; None:
    /// an instance, which the workflow engine drives), in a task of its own that finishes even
    /// if the caller goes away: a client that gives up on a slow submit (its deadline, a cut
    /// connection) drops the call, and a commit that lands after that must still be
    /// dispatched, or the task stays QUEUED until a restart (the client's retry with the same
    /// key is answered from the store, `created = false`, and dispatches nothing).
    async fn insert_and_dispatch(
        &self,
        record: TaskRecord,
        act: cadre_store::chain::AuditDraft,
        queued: Option<cadre_supervisors::QueuedTask>,
    ) -> Result<WriteOutcome> {
        use tracing::Instrument;
        let (writer, bus) = (self.writer.clone(), self.bus.clone());
        let job = tokio::spawn(
            async move {
                let stored = writer.insert_audited(record.clone(), act).await?;
                if let (WriteOutcome::Event { .. }, Some(queued)) = (&stored, queued) {
                    bus.dispatch(&record, queued);
                }
                Ok::<_, cadre_store::StoreError>(stored)
            }
            .instrument(tracing::Span::current()),
        );
        match job.await {
            Ok(stored) => Ok(stored?),
            Err(e) => Err(Error::Unavailable(format!("the submit did not finish: {e}"))),
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
}

/// Node tasks that read every tenant's state (metrics, the audit chain, the node's config)
/// need the supervisor role to submit, like `/metrics`.
fn node_wide_types(p: &Principal, admission: &Admission) -> Result<()> {
    if crate::system_tasks::routes::SUPERVISOR_ONLY.contains(&admission.route.executor.as_str())
        && p.role < Role::Supervisor
    {
        return Err(Error::PermissionDenied(format!(
            "{} reads node-wide state (every tenant's metrics, the audit chain or the node's \
             config) and needs the supervisor role",
            admission.spec.task_type
        )));
    }
    Ok(())
}

/// What the subjects the workflow engine submits steps as start with.
const ENGINE_SUBJECT_PREFIX: &str = "workflow:";

/// The subject the workflow engine submits instance `id`'s steps as.
pub(crate) fn engine_subject(id: cadre_proto::TaskId) -> String {
    format!("{ENGINE_SUBJECT_PREFIX}{id}")
}

/// Idempotency keys starting `wf:` name workflow steps: only the engine submits them (a
/// client's task under such a key would be taken for the step).
fn engine_key_reserved(p: &Principal, spec: &TaskSpec) -> Result<()> {
    match &spec.idempotency_key {
        Some(key)
            if key.starts_with(cadre_workflow::keys::RESERVED)
                && !p.subject.starts_with(ENGINE_SUBJECT_PREFIX) =>
        {
            Err(cadre_proto::SpecError::invalid(
                "spec.idempotency_key",
                "keys starting with \"wf:\" are reserved for workflow steps",
            )
            .into())
        }
        _ => Ok(()),
    }
}

/// A workflow instance is not one attempt of anything: a timeout or retry policy on it would
/// be silently ignored, so it is refused (its steps take their own).
fn instance_asks_no_policy(wire: Option<&v1::TaskSpec>) -> Result<()> {
    let Some(w) = wire else { return Ok(()) };
    let field = if w.timeout_ms != 0 {
        "spec.timeout_ms"
    } else if w.retry.as_ref().is_some_and(|r| *r != v1::RetryPolicy::default()) {
        "spec.retry"
    } else {
        return Ok(());
    };
    Err(cadre_proto::SpecError::invalid(
        field,
        format!(
            "{} is a workflow instance, which has no timeout or retry policy of its own; give its \
             steps `timeout_ms` and `retry` in the definition",
            w.task_type
        ),
    )
    .into())
}
