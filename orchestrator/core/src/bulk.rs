//! Bulk operations: cancel, or replay, every task a query matches (TaskService.BulkCancel and
//! BulkReplay, `POST /v1/bulk/cancel` and `/v1/bulk/replay`, `cadre tasks cancel-all` and
//! `cadre tasks replay`, the dashboard's bulk form).
//!
//! What is decided here, once for every face:
//! - **Roles**: BulkCancel needs what Cancel needs ([`Action::CancelTask`]), BulkReplay what
//!   Submit needs ([`Action::SubmitTask`]): the operator role. A bulk call does nothing the
//!   caller could not do task by task.
//! - **Tenants**: non-commanders match their own tenant's tasks only, and naming another tenant
//!   is PERMISSION_DENIED; commanders match every tenant's or the one they name.
//! - **No accidents**: a query must name at least one filter (INVALID_ARGUMENT otherwise), and
//!   the states it names must be ones the action applies to (cancel: unfinished; replay:
//!   finished). With no states, every state the action applies to.
//! - **Bounded**: at most `limit` tasks (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) per
//!   call, read from the store in pages of [`PAGE`], newest first; `more` says the rest is left
//!   for the next call. The answer's lists are capped too.
//! - **Dry run**: counts and lists what a real call would act on; nothing changes, nothing is
//!   audited (it is a read).
//! - **Cancel** takes each task the way [`Node::cancel`] does (its supervisor stops it, its
//!   sub-tasks go with it, one `task.cancel` act each) but does not wait for each to stop.
//! - **Replay** submits a copy of each task's spec (type, params, priority, timeout, retry,
//!   security level, concurrency key; no idempotency or debounce key, no parent) in the task's
//!   own tenant through the whole intake pipeline ([`Node::submit_replay`]: quotas, budgets, a
//!   type no longer routed...), with `replay_of` set. A refused copy is reported with its
//!   reason; the batch goes on.
//! - **Audit**: one `task.bulk_cancel` / `task.bulk_replay` act per real call (target: the
//!   query; detail: the counts), besides the acts of each cancel and submit.

use cadre_proto::{SpecError, TaskId, TaskRecord, TaskState, v1};
use cadre_store::TaskFilter;

use crate::auth::{Action, Principal};
use crate::error::{Error, Result};
use crate::node::Node;

/// Tasks one call acts on when the request says 0.
pub const DEFAULT_LIMIT: u32 = 1000;
/// The most tasks one call may act on.
pub const MAX_LIMIT: u32 = 10_000;
/// Tasks read from the store at a time.
pub const PAGE: u32 = 200;
/// Failures listed in an answer (all are counted).
pub const MAX_FAILURES: usize = 100;
/// New tasks listed in a replay's answer (all are counted).
pub const MAX_REPLAYS: usize = 1000;
/// Matched ids listed in an answer.
pub const MAX_IDS: usize = 100;
/// Longest `error_contains` and `reason`, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// What a bulk call does to each matched task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkAction {
    /// Cancel unfinished tasks.
    Cancel,
    /// Submit copies of finished tasks.
    Replay,
}

impl BulkAction {
    /// The permission it needs (that of doing it to one task).
    pub fn action(self) -> Action {
        match self {
            BulkAction::Cancel => Action::CancelTask,
            BulkAction::Replay => Action::SubmitTask,
        }
    }

    /// Its name in the audit chain.
    pub fn audit_name(self) -> &'static str {
        match self {
            BulkAction::Cancel => "task.bulk_cancel",
            BulkAction::Replay => "task.bulk_replay",
        }
    }

    /// Whether it applies to a task in state `s`.
    fn applies_to(self, s: TaskState) -> bool {
        match self {
            BulkAction::Cancel => !s.is_terminal(),
            BulkAction::Replay => s.is_terminal(),
        }
    }
}

/// A request checked and turned into a store filter (without paging).
struct Plan {
    filter: TaskFilter,
    limit: u32,
    /// The query as the audit act's target.
    described: String,
    reason: String,
}

impl Node {
    /// Cancels or replays every task `req.query` matches, at most `req.limit` (see the module
    /// docs); with `req.dry_run`, only counts.
    pub async fn bulk(
        &self,
        p: &Principal,
        action: BulkAction,
        req: &v1::BulkRequest,
    ) -> Result<v1::BulkResponse> {
        self.permit(p, action.action()).await?;
        let plan = match plan(p, action, req) {
            Ok(plan) => plan,
            Err(e @ Error::PermissionDenied(_)) => {
                self.audit(Some(p), action.audit_name(), "", "denied", &e.to_string())
                    .await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut out = v1::BulkResponse {
            dry_run: req.dry_run,
            ..Default::default()
        };
        let res = self.walk(p, action, &plan, req.dry_run, &mut out).await;
        if !req.dry_run {
            // What was done before a store failure is on record too.
            let (outcome, why) = match &res {
                Ok(()) => ("ok", String::new()),
                Err(e) => ("failed", format!("; stopped: {e}")),
            };
            let detail = format!(
                "matched {}, acted {}, failed {}, more {}, limit {}{why}",
                out.matched, out.acted, out.failed, out.more, plan.limit
            );
            self.audit(Some(p), action.audit_name(), &plan.described, outcome, &detail)
                .await;
        }
        res.map(|()| out)
    }

    /// Reads the matches page by page (at most the plan's limit, one more to know whether more
    /// match) and acts on each unless `dry_run`, counting in `out`.
    async fn walk(
        &self,
        p: &Principal,
        action: BulkAction,
        plan: &Plan,
        dry_run: bool,
        out: &mut v1::BulkResponse,
    ) -> Result<()> {
        let mut before: Option<TaskId> = None;
        loop {
            // One more than the limit, to know whether more match.
            let want = PAGE.min(plan.limit - out.matched + 1);
            let filter = TaskFilter {
                before,
                limit: want,
                ..plan.filter.clone()
            };
            let page = self.store.list(&filter).await?;
            for record in &page {
                if out.matched == plan.limit {
                    out.more = true;
                    return Ok(());
                }
                out.matched += 1;
                if out.task_ids.len() < MAX_IDS {
                    out.task_ids.push(record.id.to_string());
                }
                if !dry_run {
                    self.act(p, action, record, &plan.reason, out).await;
                }
            }
            match page.last() {
                Some(last) if page.len() as u32 == want => before = Some(last.id),
                _ => return Ok(()),
            }
        }
    }

    /// Cancels or replays one matched task, counting the outcome in `out`.
    async fn act(
        &self,
        p: &Principal,
        action: BulkAction,
        record: &TaskRecord,
        reason: &str,
        out: &mut v1::BulkResponse,
    ) {
        let res = match action {
            BulkAction::Cancel => self.cancel_matched(p, record.id, reason).await,
            BulkAction::Replay => self.replay_matched(p, record).await.map(|new| {
                if out.replays.len() < MAX_REPLAYS {
                    out.replays.push(v1::BulkReplayed {
                        original_id: record.id.to_string(),
                        task_id: new.id.to_string(),
                    });
                }
            }),
        };
        match res {
            Ok(()) => out.acted += 1,
            Err(e) => {
                out.failed += 1;
                if out.failures.len() < MAX_FAILURES {
                    let status = tonic::Status::from(e);
                    out.failures.push(v1::BulkFailure {
                        task_id: record.id.to_string(),
                        code: code_name(status.code()),
                        message: status.message().to_string(),
                    });
                }
            }
        }
    }

    /// Asks task `id` and its unfinished sub-tasks to stop, as [`Node::cancel`] does, without
    /// waiting; audited as `task.cancel` like a single cancel. A task that finished since it
    /// was matched is FAILED_PRECONDITION.
    async fn cancel_matched(&self, p: &Principal, id: TaskId, reason: &str) -> Result<()> {
        let record = self.get_record(id).await?;
        if record.state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "task {id} is already {}",
                record.state
            )));
        }
        self.stop_one(&record, reason).await?;
        for child in &record.children {
            if let Ok(c) = self.get_record(*child).await
                && !c.state.is_terminal()
            {
                self.stop_tree(&c, &format!("parent {id} cancelled")).await;
            }
        }
        self.audit(Some(p), "task.cancel", &id.to_string(), "ok", reason)
            .await;
        Ok(())
    }

    /// Submits a copy of finished task `record` in its own tenant, linked to it.
    async fn replay_matched(&self, p: &Principal, record: &TaskRecord) -> Result<TaskRecord> {
        let on_behalf = Principal {
            tenant: record.tenant.clone(),
            ..p.clone()
        };
        self.submit_replay(&on_behalf, &replay_spec(record), record.id)
            .await
    }
}

/// The wire spec of a replay of `record`: its spec without idempotency key, debounce or
/// parent (a replay stands on its own); a workflow instance's without timeout and retry,
/// which instances do not take.
fn replay_spec(record: &TaskRecord) -> v1::TaskSpec {
    let mut wire = record.spec.to_wire();
    wire.idempotency_key.clear();
    wire.parent_id.clear();
    wire.debounce_key.clear();
    wire.debounce_window_ms = 0;
    if cadre_workflow::workflow_of(&record.spec.task_type).is_some() {
        wire.timeout_ms = 0;
        wire.retry = None;
    }
    wire
}

/// Checks a request: who may match which tenant, a non-empty query, the states, the range,
/// the limit and the texts.
fn plan(p: &Principal, action: BulkAction, req: &v1::BulkRequest) -> Result<Plan> {
    let q = req.query.clone().unwrap_or_default();
    if q.states.is_empty()
        && q.task_type_prefix.is_empty()
        && q.tenant.is_empty()
        && q.created_after_ms == 0
        && q.created_before_ms == 0
        && q.error_contains.is_empty()
    {
        return Err(SpecError::invalid(
            "query",
            "name at least one filter (states, task_type_prefix, tenant, created_after_ms, \
             created_before_ms or error_contains)",
        )
        .into());
    }
    let tenant = match (p.tenant_scope(), q.tenant.as_str()) {
        (Some(own), "") => Some(own.to_string()),
        (Some(own), named) if named != own => {
            return Err(Error::PermissionDenied(format!(
                "tenant {named:?} is not yours: only commanders act on other tenants' tasks"
            )));
        }
        (_, "") => None,
        (_, named) => Some(named.to_string()),
    };
    let states = states_of(action, &q.states)?;
    let range = |field: &str, ms: i64| match ms {
        0 => Ok(None),
        ms if ms < 0 => Err(SpecError::invalid(field, format!("{ms} is negative"))),
        ms => Ok(Some(ms)),
    };
    let after = range("query.created_after_ms", q.created_after_ms)?;
    let before = range("query.created_before_ms", q.created_before_ms)?;
    if let (Some(a), Some(b)) = (after, before)
        && a >= b
    {
        return Err(SpecError::invalid(
            "query.created_before_ms",
            format!("{b} is not after created_after_ms {a}: the range is empty"),
        )
        .into());
    }
    for (field, text) in [
        ("query.error_contains", &q.error_contains),
        ("reason", &req.reason),
    ] {
        if text.len() > MAX_TEXT_BYTES {
            return Err(SpecError::invalid(field, format!("must be at most {MAX_TEXT_BYTES} bytes")).into());
        }
    }
    let limit = match req.limit {
        0 => DEFAULT_LIMIT,
        n if n > MAX_LIMIT => {
            return Err(SpecError::invalid("limit", format!("{n} is over the maximum {MAX_LIMIT}")).into());
        }
        n => n,
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let filter = TaskFilter {
        tenant,
        states,
        type_prefix: some(&q.task_type_prefix),
        created_after_ms: after,
        created_before_ms: before,
        error_contains: some(&q.error_contains),
        ..Default::default()
    };
    let reason = match req.reason.as_str() {
        "" => "cancelled by bulk request".to_string(),
        r => r.to_string(),
    };
    Ok(Plan {
        described: describe(&filter),
        filter,
        limit,
        reason,
    })
}

/// The states a query names, each one the action applies to; none: all of those.
fn states_of(action: BulkAction, wire: &[i32]) -> Result<Vec<TaskState>> {
    if wire.is_empty() {
        return Ok(TaskState::ALL
            .into_iter()
            .filter(|s| action.applies_to(*s))
            .collect());
    }
    let mut states = Vec::with_capacity(wire.len());
    for w in wire {
        let s = TaskState::from_wire(*w)?;
        if !action.applies_to(s) {
            let which = match action {
                BulkAction::Cancel => "cancel applies to unfinished tasks only (QUEUED, RUNNING, RETRYING)",
                BulkAction::Replay => {
                    "replay applies to finished tasks only (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)"
                }
            };
            return Err(SpecError::invalid("query.states", format!("{s}: {which}")).into());
        }
        if !states.contains(&s) {
            states.push(s);
        }
    }
    Ok(states)
}

/// A filter as the bulk act's audit target, e.g. `tenant=a states=FAILED type_prefix=x.`.
fn describe(f: &TaskFilter) -> String {
    let mut parts = vec![format!("tenant={}", f.tenant.as_deref().unwrap_or("*"))];
    let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
    parts.push(format!("states={}", states.join(",")));
    if let Some(p) = &f.type_prefix {
        parts.push(format!("type_prefix={p:?}"));
    }
    if let Some(t) = f.created_after_ms {
        parts.push(format!("created_after_ms={t}"));
    }
    if let Some(t) = f.created_before_ms {
        parts.push(format!("created_before_ms={t}"));
    }
    if let Some(e) = &f.error_contains {
        parts.push(format!("error_contains={e:?}"));
    }
    parts.join(" ")
}

/// A gRPC code as its canonical name (`RESOURCE_EXHAUSTED`).
fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadre_proto::Role;

    fn who(role: Role) -> Principal {
        Principal {
            subject: "s".into(),
            tenant: "a".into(),
            role,
        }
    }

    fn req(q: v1::TaskQuery) -> v1::BulkRequest {
        v1::BulkRequest {
            query: Some(q),
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_query_is_refused() {
        let e = plan(
            &who(Role::Operator),
            BulkAction::Cancel,
            &v1::BulkRequest::default(),
        );
        assert!(matches!(e, Err(Error::Spec(_))));
        assert!(e.err().unwrap().to_string().contains("name at least one filter"));
    }

    #[test]
    fn tenants_states_ranges_and_limits_are_checked() {
        let op = who(Role::Operator);
        let prefix = v1::TaskQuery {
            task_type_prefix: "x".into(),
            ..Default::default()
        };
        let p = plan(&op, BulkAction::Cancel, &req(prefix.clone())).ok().unwrap();
        assert_eq!(p.filter.tenant.as_deref(), Some("a"));
        assert_eq!(
            p.filter.states,
            vec![TaskState::Queued, TaskState::Running, TaskState::Retrying]
        );
        assert_eq!(p.limit, DEFAULT_LIMIT);
        let other = v1::TaskQuery {
            tenant: "b".into(),
            ..prefix.clone()
        };
        assert!(matches!(
            plan(&op, BulkAction::Cancel, &req(other.clone())),
            Err(Error::PermissionDenied(_))
        ));
        let cmd = plan(&who(Role::Commander), BulkAction::Replay, &req(other))
            .ok()
            .unwrap();
        assert_eq!(cmd.filter.tenant.as_deref(), Some("b"));
        assert_eq!(cmd.filter.states.len(), 4);
        let done = v1::TaskQuery {
            states: vec![v1::TaskState::Succeeded as i32],
            ..Default::default()
        };
        assert!(plan(&op, BulkAction::Cancel, &req(done.clone())).is_err());
        assert!(plan(&op, BulkAction::Replay, &req(done)).is_ok());
        let empty_range = v1::TaskQuery {
            created_after_ms: 10,
            created_before_ms: 10,
            ..Default::default()
        };
        assert!(plan(&op, BulkAction::Cancel, &req(empty_range)).is_err());
        let too_many = v1::BulkRequest {
            limit: MAX_LIMIT + 1,
            ..req(prefix)
        };
        assert!(plan(&op, BulkAction::Cancel, &too_many).is_err());
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(tonic::Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
    }
}
