//! Driving one instance: read what is stored, reconcile, carry out the actions, and again,
//! until there is nothing to do now. Everything the engine does is idempotent (sub-tasks are
//! submitted under keys made of the instance and the step, records settle once), so a drive
//! cut short by a crash is simply driven again.

use std::collections::BTreeSet;

use cadre_proto::clock::now_ms;
use cadre_proto::{Role, TaskId, TaskRecord, TaskState, v1};
use cadre_store::WriteOp;
use cadre_supervisors::Transition;
use cadre_workflow::{Action, Done, Outcome, Submission, reconcile, workflow_of};
use serde_json::{Value, json};

use super::kind_version;
use super::report::{changes, fraction_done};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::node::Node;

/// Reconciles within one drive before the engine comes back later (a definition whose steps
/// keep producing work is not allowed to hold a drive for ever).
const MAX_ROUNDS: usize = 64;
/// Largest instance result, as JSON bytes.
pub const MAX_RESULT_BYTES: usize = 4 << 20;
/// When a refused submission that passes (a rate limit, a full node) is tried again.
const RETRY_REFUSED_MS: i64 = 1_000;

/// What the engine does with an instance after a drive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// It is finished (or gone): forget it.
    Finished,
    /// Nothing to do until one of its events, a signal, or this time (Unix ms).
    WaitUntil(Option<i64>),
}

/// What the engine remembers of an instance between drives: the step states its last
/// progress event reported (lost on a restart: the next drive reports them again).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    steps: Vec<(String, String)>,
}

/// The instance's attempt: an instance runs once (its steps retry, not it).
const ATTEMPT: u32 = 1;

impl Node {
    /// Drives instance `id` (see the module docs).
    pub(crate) async fn drive(&self, id: TaskId, memory: &mut Memory) -> Result<Next> {
        let mut applied = BTreeSet::new();
        for _ in 0..MAX_ROUNDS {
            let Some(rec) = self.store.get(id).await? else {
                return Ok(Next::Finished);
            };
            if rec.state.is_terminal() {
                self.stop_steps(&rec).await;
                return Ok(Next::Finished);
            }
            let name = workflow_of(&rec.spec.task_type).unwrap_or_default().to_string();
            let loaded = match self.loaded(&name, kind_version(&rec.worker_kind)).await {
                Ok(l) => l,
                Err(Error::Spec(e)) => {
                    self.finish(&rec, Err(format!("its definition is gone: {e}")))
                        .await?;
                    return Ok(Next::Finished);
                }
                Err(e) => return Err(e),
            };
            if rec.state != TaskState::Running {
                let started = format!("workflow {name} version {} started", loaded.def.version);
                self.writer
                    .transition(Transition::new(id, TaskState::Running, ATTEMPT, started))
                    .await?;
            }
            let snap = self.snapshot(&rec, &loaded.def).await?;
            let plan = reconcile(&loaded.def, &snap.observed(now_ms()));
            self.report_progress(id, &plan.steps, memory).await;
            let fresh: Vec<Action> = plan
                .actions
                .into_iter()
                .filter(|a| applied.insert(action_key(a)))
                .collect();
            for action in &fresh {
                if let Some(later) = self.apply(&rec, action).await? {
                    return Ok(Next::WaitUntil(Some(later)));
                }
            }
            match plan.outcome {
                Outcome::Succeeded(v) => {
                    self.finish(&rec, Ok(v)).await?;
                    return Ok(Next::Finished);
                }
                Outcome::Failed(why) => {
                    self.finish(&rec, Err(why)).await?;
                    return Ok(Next::Finished);
                }
                Outcome::Running { wake_at_ms } if fresh.is_empty() => {
                    return Ok(Next::WaitUntil(wake_at_ms));
                }
                Outcome::Running { .. } => {}
            }
        }
        Ok(Next::WaitUntil(Some(now_ms() + 100)))
    }

    /// Carries out one action. Some(time): a submission was refused for now (a rate limit, a
    /// full node, an unreachable store); drive again then.
    async fn apply(&self, rec: &TaskRecord, action: &Action) -> Result<Option<i64>> {
        match action {
            Action::Submit(s) => return self.submit_step(rec, s).await,
            Action::Open { record, due_at_ms } => {
                self.store
                    .open_record(rec.id, record, now_ms(), *due_at_ms)
                    .await?;
            }
            Action::Close {
                record,
                done,
                consume,
            } => {
                self.store.close_record(rec.id, record, done, *consume).await?;
            }
            Action::Cancel { task_id, reason } => {
                if let Ok(id) = task_id.parse()
                    && let Ok(task) = self.get_record(id).await
                {
                    self.stop_tree(&task, reason).await;
                }
            }
        }
        Ok(None)
    }

    /// Submits a step's sub-task through intake, as the instance's tenant (subject
    /// `workflow:<id>`, operator role): every check applies. A refusal that passes waits; one
    /// that does not settles the sub-task's record as failed, with why.
    async fn submit_step(&self, rec: &TaskRecord, s: &Submission) -> Result<Option<i64>> {
        let p = Principal {
            subject: crate::intake::engine_subject(rec.id),
            tenant: rec.tenant.clone(),
            role: Role::Operator,
        };
        let wire = v1::TaskSpec {
            task_type: s.task_type.clone(),
            params_json: s.params.to_string(),
            priority: i32::from(rec.spec.priority.get()),
            timeout_ms: s.timeout_ms.map_or(0, |t| t.min(i64::MAX as u64) as i64),
            retry: s.retry.as_ref().map(|r| r.to_wire()),
            idempotency_key: s.key.clone(),
            parent_id: rec.id.to_string(),
            security_level: v1::SecurityLevel::Standard as i32,
        };
        let refused = match self.submit(&p, Some(&wire)).await {
            Ok(_) => return Ok(None),
            Err(Error::RateLimited { retry_after, .. }) => {
                return Ok(Some(now_ms() + retry_after.as_millis().min(60_000) as i64));
            }
            Err(Error::Exhausted(_) | Error::Unavailable(_)) => {
                return Ok(Some(now_ms() + RETRY_REFUSED_MS));
            }
            // The instance finished while the step was being submitted.
            Err(Error::FailedPrecondition(_)) if self.finished(rec.id).await => return Ok(None),
            Err(Error::OverBudget(why)) => Done {
                ok: false,
                output: json!({"refused": "budget"}),
                error: Some(why),
                at_ms: now_ms(),
            },
            Err(e) => {
                let error = format!("the {} task was refused: {e}", s.task_type);
                let code = tonic::Status::from(e).code();
                Done {
                    ok: false,
                    output: json!({"refused": format!("{code:?}")}),
                    error: Some(error),
                    at_ms: now_ms(),
                }
            }
        };
        tracing::info!(instance = %rec.id, step = %s.step, error = ?refused.error, "workflow step refused");
        self.store.close_record(rec.id, &s.key, &refused, None).await?;
        Ok(None)
    }

    /// Whether task `id` is finished (or gone).
    async fn finished(&self, id: TaskId) -> bool {
        self.store
            .get(id)
            .await
            .ok()
            .flatten()
            .is_none_or(|t| t.state.is_terminal())
    }

    /// Ends the instance: SUCCEEDED with its result, or FAILED with why.
    async fn finish(&self, rec: &TaskRecord, outcome: std::result::Result<Value, String>) -> Result<()> {
        let t = match outcome {
            Ok(v) if v.to_string().len() > MAX_RESULT_BYTES => Transition::new(
                rec.id,
                TaskState::Failed,
                ATTEMPT,
                format!("the workflow's result is over {MAX_RESULT_BYTES} bytes"),
            ),
            Ok(v) => Transition {
                result: Some(v),
                sign: rec.spec.security_level != cadre_proto::SecurityLevel::Standard,
                ..Transition::new(rec.id, TaskState::Succeeded, ATTEMPT, "")
            },
            Err(why) => Transition::new(rec.id, TaskState::Failed, ATTEMPT, why),
        };
        self.writer.transition(t).await?;
        Ok(())
    }

    /// Stops the unfinished steps of a finished instance (a cancel, or a step submitted while
    /// it finished).
    async fn stop_steps(&self, rec: &TaskRecord) {
        let reason = format!("workflow {} is {}", rec.id, rec.state);
        for child in &rec.children {
            if let Ok(c) = self.get_record(*child).await
                && !c.state.is_terminal()
            {
                self.stop_tree(&c, &reason).await;
            }
        }
    }

    /// A progress event on the instance when its steps changed since the last one.
    async fn report_progress(&self, id: TaskId, steps: &[cadre_workflow::StepReport], memory: &mut Memory) {
        let Some(message) = changes(&memory.steps, steps) else {
            return;
        };
        let op = WriteOp::Progress {
            task_id: id,
            attempt: ATTEMPT,
            fraction: fraction_done(steps),
            message,
        };
        if self.writer.write_together(vec![(op, None)]).await.is_ok() {
            memory.steps = steps.iter().map(|s| (s.id.clone(), s.state.clone())).collect();
        }
    }
}

/// What makes an action the same action again within one drive (a cancel asked for again
/// while the task is still stopping is not new work).
fn action_key(a: &Action) -> String {
    match a {
        Action::Submit(s) => format!("submit {}", s.key),
        Action::Open { record, .. } => format!("open {record}"),
        Action::Close { record, .. } => format!("close {record}"),
        Action::Cancel { task_id, .. } => format!("cancel {task_id}"),
    }
}
