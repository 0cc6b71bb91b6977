//! Driving one instance: read what is stored, reconcile, carry out the actions, and again,
//! until there is nothing to do now. Everything the engine does is idempotent (sub-tasks are
//! submitted under keys made of the instance and the step, records settle once), so a drive
//! cut short by a crash is simply driven again.

use std::collections::BTreeSet;
use std::sync::Arc;

use cadre_proto::clock::now_ms;
use cadre_proto::{Role, TaskEvent, TaskId, TaskRecord, TaskState, v1};
use cadre_store::WriteOp;
use cadre_supervisors::Transition;
use cadre_workflow::{Action, Done, Outcome, Submission, reconcile, workflow_of};
use serde_json::{Value, json};

use super::kind_version;
use super::report::{Snapshot, changes, fraction_done};
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

/// What the engine remembers of an instance between drives (all lost on a restart, and
/// rebuilt by the next drive from the store).
#[derive(Default)]
pub struct Memory {
    /// The step states its last progress event reported.
    steps: Vec<(String, String)>,
    /// The instance as last read (its tenant, input and version never change).
    instance: Option<Box<TaskRecord>>,
    /// Its stored state as the last drive left it, sub-tasks it submitted included.
    snapshot: Option<Snapshot>,
    /// Terminal events of its sub-tasks since the last drive, which bring `snapshot` up to
    /// date.
    pub(crate) news: Vec<Arc<TaskEvent>>,
    /// Something else happened since (a signal, a timer, a cancel, a sweep): read it all.
    pub(crate) stale: bool,
}

impl Memory {
    /// The last drive's snapshot brought up to date by the news, when that is all that
    /// happened since (None: read the store).
    fn cached(&mut self) -> Option<Snapshot> {
        let news = std::mem::take(&mut self.news);
        let snapshot = self.snapshot.take();
        if std::mem::take(&mut self.stale) || self.instance.is_none() {
            return None;
        }
        snapshot?.patched(&news)
    }
}

/// What carrying out one action did.
enum Applied {
    /// A sub-task was submitted (or was there already): it as intake returned it.
    Submitted(Box<TaskRecord>),
    /// Something another reconcile round may act on (a record settled, a cancel).
    Changed,
    /// A submission was refused for now (a rate limit, a full node, an unreachable store):
    /// drive again at this time (Unix ms).
    Later(i64),
}

/// The instance's attempt: an instance runs once (its steps retry, not it).
const ATTEMPT: u32 = 1;

impl Node {
    /// Drives instance `id` (see the module docs), then reports what changed in its steps as
    /// one progress event.
    pub(crate) async fn drive(&self, id: TaskId, memory: &mut Memory) -> Result<Next> {
        let mut steps = None;
        let next = self.drive_rounds(id, &mut steps, memory).await;
        // A finished instance reported its steps before its terminal event.
        if let (Some(steps), Ok(Next::WaitUntil(_))) = (steps, &next) {
            self.report_progress(id, &steps, memory);
        }
        next
    }

    /// The reconcile rounds of a drive; `steps` ends as the last round's step reports.
    async fn drive_rounds(
        &self,
        id: TaskId,
        steps: &mut Option<Vec<cadre_workflow::StepReport>>,
        memory: &mut Memory,
    ) -> Result<Next> {
        let mut applied = BTreeSet::new();
        let mut cached = memory.cached();
        for _ in 0..MAX_ROUNDS {
            let Some((rec, early)) = self.read(id, memory, cached.take()).await? else {
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
            // The instance turns RUNNING while this round goes on: its event usually commits
            // with the first step's. (Should the instance end first, the writer ignores it.)
            let starting = (rec.state != TaskState::Running).then(|| {
                let started = format!("workflow {name} version {} started", loaded.def.version);
                let t = Transition::new(id, TaskState::Running, ATTEMPT, started);
                let writer = self.writer.clone();
                tokio::spawn(async move { writer.transition(t).await.map(|_| ()) })
            });
            let mut snap = match early {
                Some(snap) => snap,
                None => self.snapshot(&rec, &loaded.def).await?,
            };
            let plan = reconcile(&loaded.def, &snap.observed(now_ms()));
            *steps = Some(plan.steps);
            let fresh: Vec<Action> = plan
                .actions
                .into_iter()
                .filter(|a| applied.insert(action_key(a)))
                .collect();
            // Accepted submissions change nothing another round could act on (their sub-tasks'
            // events drive the instance again); anything else may.
            let mut only_submitted = true;
            for action in &fresh {
                match (self.apply(&rec, action).await?, action) {
                    (Applied::Later(at), _) => return Ok(Next::WaitUntil(Some(at))),
                    (Applied::Submitted(t), Action::Submit(s)) => snap.submitted(&s.key, &t),
                    _ => only_submitted = false,
                }
            }
            if let Some(started) = starting {
                started
                    .await
                    .map_err(|e| Error::Unavailable(format!("the instance did not start: {e}")))??;
                if let Some(known) = memory.instance.as_mut() {
                    known.state = TaskState::Running;
                }
            }
            match plan.outcome {
                Outcome::Succeeded(v) => {
                    self.finish_reported(&rec, Ok(v), steps, memory).await?;
                    return Ok(Next::Finished);
                }
                Outcome::Failed(why) => {
                    self.finish_reported(&rec, Err(why), steps, memory).await?;
                    return Ok(Next::Finished);
                }
                Outcome::Running { wake_at_ms } if only_submitted => {
                    memory.snapshot = Some(snap);
                    return Ok(Next::WaitUntil(wake_at_ms));
                }
                Outcome::Running { .. } => {}
            }
        }
        Ok(Next::WaitUntil(Some(now_ms() + 100)))
    }

    /// The instance and, when at hand, its snapshot: `cached` if there is one (nothing read),
    /// else both read at once when the instance's unchanging parts (tenant, input, version)
    /// are known from an earlier read, else the instance alone. None: it is gone.
    async fn read(
        &self,
        id: TaskId,
        memory: &mut Memory,
        cached: Option<Snapshot>,
    ) -> Result<Option<(TaskRecord, Option<Snapshot>)>> {
        if let (Some(snap), Some(known)) = (cached, memory.instance.as_deref()) {
            return Ok(Some((known.clone(), Some(snap))));
        }
        let (rec, early) = match memory.instance.as_deref() {
            Some(k) => futures::join!(self.store.get(id), self.early_snapshot(k)),
            None => (self.store.get(id).await, None),
        };
        let Some(rec) = rec? else {
            return Ok(None);
        };
        memory.instance = Some(Box::new(rec.clone()));
        Ok(Some((rec, early)))
    }

    /// The snapshot of an instance read earlier, if its definition is at hand (None: read it
    /// the long way, which also says why not).
    async fn early_snapshot(&self, known: &TaskRecord) -> Option<Snapshot> {
        let name = workflow_of(&known.spec.task_type)?;
        let loaded = self.loaded(name, kind_version(&known.worker_kind)).await.ok()?;
        self.snapshot(known, &loaded.def).await.ok()
    }

    /// Carries out one action.
    async fn apply(&self, rec: &TaskRecord, action: &Action) -> Result<Applied> {
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
        Ok(Applied::Changed)
    }

    /// Submits a step's sub-task through intake, as the instance's tenant (subject
    /// `workflow:<id>`, operator role): every check applies. A refusal that passes waits; one
    /// that does not settles the sub-task's record as failed, with why.
    async fn submit_step(&self, rec: &TaskRecord, s: &Submission) -> Result<Applied> {
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
            ..Default::default()
        };
        let refused = match self.submit(&p, Some(&wire)).await {
            Ok((t, _)) => return Ok(Applied::Submitted(Box::new(t))),
            Err(Error::RateLimited { retry_after, .. }) => {
                return Ok(Applied::Later(
                    now_ms() + retry_after.as_millis().min(60_000) as i64,
                ));
            }
            Err(Error::Exhausted(_) | Error::Unavailable(_)) => {
                return Ok(Applied::Later(now_ms() + RETRY_REFUSED_MS));
            }
            // The instance finished while the step was being submitted.
            Err(Error::FailedPrecondition(_)) if self.finished(rec.id).await => return Ok(Applied::Changed),
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
        Ok(Applied::Changed)
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

    /// Ends the instance after a last progress event of how its steps ended: both are handed
    /// to the writer at once, the progress first, so they usually share one commit (a watcher
    /// sees the steps' end, then the instance's).
    async fn finish_reported(
        &self,
        rec: &TaskRecord,
        outcome: std::result::Result<Value, String>,
        steps: &mut Option<Vec<cadre_workflow::StepReport>>,
        memory: &mut Memory,
    ) -> Result<()> {
        let report = steps.take().and_then(|now| progress_op(rec.id, memory, &now));
        let last = async {
            if let Some(op) = report
                && let Err(e) = self.writer.write_together(vec![(op, None)]).await
            {
                tracing::warn!(task_id = %rec.id, error = %e, "workflow progress event not stored");
            }
        };
        let ((), finished) = futures::join!(last, self.finish(rec, outcome));
        finished
    }

    /// A progress event on the instance when its steps changed since the last one. It is
    /// written off the drive's path (it commits with the next writes of the batch; the steps
    /// themselves are in the store already, and Get reads them from there): a drive does not
    /// wait for its report.
    fn report_progress(&self, id: TaskId, steps: &[cadre_workflow::StepReport], memory: &mut Memory) {
        let Some(op) = progress_op(id, memory, steps) else {
            return;
        };
        let writer = self.writer.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.write_together(vec![(op, None)]).await {
                tracing::warn!(task_id = %id, error = %e, "workflow progress event not stored");
            }
        });
    }
}

/// The progress event that reports what changed in `now` since `memory` (None: nothing did),
/// and `now` remembered as reported.
fn progress_op(id: TaskId, memory: &mut Memory, now: &[cadre_workflow::StepReport]) -> Option<WriteOp> {
    let message = changes(&memory.steps, now)?;
    memory.steps = now.iter().map(|s| (s.id.clone(), s.state.clone())).collect();
    Some(WriteOp::Progress {
        task_id: id,
        attempt: ATTEMPT,
        fraction: fraction_done(now),
        message,
    })
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
