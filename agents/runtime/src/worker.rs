//! The tier-2 worker actor: runs one task at a time and reports how it ended.

use std::sync::Arc;
use std::time::Duration;

use cadre_proto::TaskId;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecContext, ExecError, Executor, SharedReport};

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The executor returned a result.
    Succeeded(Value),
    /// The executor failed; `retryable` says whether the retry policy applies.
    Failed {
        /// The executor's error text.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// The task was cancelled; `forced` when the executor ignored the token for the whole grace
    /// period and its future was dropped.
    Cancelled {
        /// True when the grace period ran out.
        forced: bool,
    },
    /// The attempt ran past the task's timeout and was dropped.
    TimedOut,
    /// An upstream said to wait ([`ExecError::RateLimited`]): the attempt does not count.
    RateLimited {
        /// The executor's error text.
        message: String,
        /// How long the upstream asked to wait.
        retry_after: Duration,
    },
}

/// Called by a worker when its attempt ends: (worker id, task id, outcome).
pub type DoneFn = Arc<dyn Fn(u64, TaskId, Outcome) + Send + Sync>;

/// One attempt of one task, handed to a worker by its supervisor.
pub struct Assignment {
    /// The task.
    pub task_id: TaskId,
    /// Its type.
    pub task_type: String,
    /// Its tenant.
    pub tenant: String,
    /// A `fortress` task: it runs only if the executor sandboxes these params
    /// ([`crate::Executor::sandboxed`]), checked again here whatever intake saw.
    pub fortress: bool,
    /// Its params.
    pub params: Value,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Wall-time limit for this attempt.
    pub timeout: Duration,
    /// What to run.
    pub executor: Arc<dyn Executor>,
    /// Cancelled by the supervisor when the task is cancelled.
    pub cancel: CancellationToken,
    /// How the executor may delegate sub-tasks (None: it cannot).
    pub delegate: Option<crate::SharedDelegate>,
    /// How long a cancelled executor may take to stop by itself.
    pub cancel_grace: Duration,
    /// Where progress reports go.
    pub progress: SharedReport,
}

/// Messages a worker accepts.
pub enum WorkerMsg {
    /// Run one attempt. The supervisor sends this only to an idle worker.
    Run(Box<Assignment>),
}

/// The worker actor. Its state is its identity; all task state travels in the [`Assignment`].
pub struct Worker;

/// Start-up arguments of a [`Worker`].
pub struct WorkerArgs {
    /// Supervisor-assigned id, stable across restarts of this slot.
    pub id: u64,
    /// Reports the end of each attempt.
    pub on_done: DoneFn,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerArgs;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<WorkerArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut WorkerArgs,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Run(a) = msg;
        let task_id = a.task_id;
        let outcome = run_attempt(*a).await;
        (state.on_done)(state.id, task_id, outcome);
        Ok(())
    }
}

/// Runs one attempt under its timeout and cancel grace. A panic in the executor propagates,
/// failing the worker actor, which is what its supervisor's restart policy acts on.
pub async fn run_attempt(a: Assignment) -> Outcome {
    if a.fortress
        && let Err(why) = a.executor.sandboxed(&a.params)
    {
        return Outcome::Failed {
            message: format!("fortress: {why}"),
            retryable: false,
        };
    }
    let ctx = ExecContext::new(a.task_id, a.task_type, a.attempt, a.cancel.clone(), a.progress)
        .with_delegate(a.delegate)
        .with_tenant(a.tenant);
    let run = a.executor.execute(ctx, a.params);
    let cancel = a.cancel.clone();
    let grace = a.cancel_grace;
    tokio::select! {
        res = run => match res {
            Ok(v) => Outcome::Succeeded(v),
            Err(ExecError::Cancelled) => Outcome::Cancelled { forced: false },
            Err(e) if a.cancel.is_cancelled() => {
                tracing::debug!(task_id = %a.task_id, error = %e, "executor failed after cancel");
                Outcome::Cancelled { forced: false }
            }
            Err(ExecError::RateLimited { message, retry_after }) => Outcome::RateLimited { message, retry_after },
            Err(e) => Outcome::Failed { retryable: e.is_retryable(), message: e.to_string() },
        },
        _ = tokio::time::sleep(a.timeout) => Outcome::TimedOut,
        _ = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => Outcome::Cancelled { forced: true },
    }
}
