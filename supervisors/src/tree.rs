//! The root of the actor tree in every process that runs supervisors: the design's tier-0
//! `Orchestrator` actor. It spawns the tier-1 supervisors from their specs, routes dispatched
//! tasks and cancels to them, forwards scaling and status calls, and restarts a supervisor that
//! fails (restart intensity exceeded, or any crash), re-dispatching that supervisor's unfinished
//! tasks from its [`TaskSource`].
//!
//! It lives in tier 1 because two kinds of process run it: a tier-0 node (its task source is
//! the store, through the core's recovery) and a supervisor-only node (its task source is the
//! task messages the node runtime holds, [`crate::node`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskState};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::config::SupervisorSpec;
use crate::dispatch_gates::Gates;
use crate::pause::PauseSet;
use crate::sink::{TaskSink, Transition};
use crate::supervisor::{MAX_POOL_SIZE, Supervisor, SupervisorArgs, SupervisorMsg};
use crate::task::QueuedTask;

/// How long status and scale calls to one supervisor may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Delay before retrying a supervisor whose restart failed.
const RESPAWN_DELAY: Duration = Duration::from_secs(1);

/// Why unfinished tasks could not be read back (the store or the node runtime said so).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where a (re)started supervisor's unfinished tasks come from: the store in tier 0
/// (the core's recovery), or the task messages a supervisor node holds ([`crate::node`]).
#[async_trait::async_trait]
pub trait TaskSource: Send + Sync + 'static {
    /// Unfinished tasks of `supervisor` (or all), as (supervisor, task) pairs ready to enqueue.
    async fn unfinished(&self, supervisor: Option<&str>) -> Result<Vec<(String, QueuedTask)>, SourceError>;
}

/// Messages the orchestrator accepts.
pub enum OrchestratorMsg {
    /// Hand a stored task to its supervisor.
    Dispatch {
        /// Target supervisor.
        supervisor: String,
        /// The task.
        task: Box<QueuedTask>,
    },
    /// Cancel a task on its supervisor.
    Cancel {
        /// The supervisor holding it.
        supervisor: String,
        /// The task.
        task_id: TaskId,
        /// Why.
        reason: String,
    },
    /// Resize a pool.
    Scale {
        /// Supervisor name.
        supervisor: String,
        /// Worker kind.
        kind: String,
        /// New size.
        size: usize,
        /// The pool after the change.
        reply: RpcReplyPort<Result<PoolStatus, ScaleError>>,
    },
    /// The whole tree.
    Status(RpcReplyPort<Vec<SupervisorStatus>>),
    /// Apply new supervisor specs (config reload); replies with what changed.
    Apply {
        /// Supervisors by name.
        specs: BTreeMap<String, SupervisorSpec>,
        /// One line per change.
        reply: RpcReplyPort<Vec<String>>,
    },
    /// Retry spawning a supervisor whose restart failed.
    Respawn(String),
    /// The pauses in force now (the whole set): sent to every supervisor, and remembered for
    /// the ones (re)spawned later.
    SetPauses(PauseSet),
    /// Stop every supervisor gracefully (their running tasks are re-queued) and stop
    /// restarting them; replies when they are down.
    Shutdown(RpcReplyPort<()>),
}

/// Why a Scale was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScaleError {
    /// No such supervisor or worker kind.
    #[error("{0}")]
    NotFound(String),
    /// The size is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Start-up arguments of the [`Orchestrator`].
pub struct OrchestratorArgs {
    /// Supervisors to spawn.
    pub specs: BTreeMap<String, SupervisorSpec>,
    /// How long a cancelled executor may take to stop.
    pub cancel_grace: Duration,
    /// Where transitions go.
    pub sink: Arc<dyn TaskSink>,
    /// Reads unfinished tasks back (at start and when a supervisor restarts).
    pub recovery: Arc<dyn TaskSource>,
    /// How executors delegate sub-tasks.
    pub delegate: Option<cadre_agents::SharedDelegate>,
    /// Tenant weights, concurrency-key limits (one table for all the supervisors),
    /// rate-limit bounds, and the pauses in force at start.
    pub gates: Gates,
}

/// The root actor (see the module docs).
pub struct Orchestrator;

/// The orchestrator's state.
pub struct OrchestratorState {
    shutting_down: bool,
    entries: BTreeMap<String, Entry>,
    by_actor: HashMap<ActorId, String>,
    cancel_grace: Duration,
    sink: Arc<dyn TaskSink>,
    recovery: Arc<dyn TaskSource>,
    delegate: Option<cadre_agents::SharedDelegate>,
    /// What every supervisor is spawned with; its pauses follow `SetPauses`.
    gates: Gates,
}

struct Entry {
    spec: SupervisorSpec,
    actor: Option<ActorRef<SupervisorMsg>>,
    restarts: u64,
}

impl Actor for Orchestrator {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<OrchestratorMsg>,
        args: OrchestratorArgs,
    ) -> Result<OrchestratorState, ActorProcessingErr> {
        let mut state = OrchestratorState {
            shutting_down: false,
            entries: BTreeMap::new(),
            by_actor: HashMap::new(),
            cancel_grace: args.cancel_grace,
            sink: args.sink,
            recovery: args.recovery,
            delegate: args.delegate,
            gates: args.gates,
        };
        for (name, spec) in args.specs {
            state.entries.insert(
                name.clone(),
                Entry {
                    spec,
                    actor: None,
                    restarts: 0,
                },
            );
            state.spawn(&me, &name).await?;
        }
        // Start-up recovery: everything the store holds unfinished runs again.
        let recovered = state.recovery.unfinished(None).await?;
        if !recovered.is_empty() {
            tracing::info!(tasks = recovered.len(), "recovering unfinished tasks");
        }
        for (supervisor, task) in recovered {
            state.dispatch(&supervisor, task);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        me: ActorRef<OrchestratorMsg>,
        msg: OrchestratorMsg,
        state: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OrchestratorMsg::Dispatch { supervisor, task } => state.dispatch(&supervisor, *task),
            OrchestratorMsg::Cancel {
                supervisor,
                task_id,
                reason,
            } => {
                match state.entries.get(&supervisor).and_then(|e| e.actor.as_ref()) {
                    Some(a) => {
                        let _ = a.cast(SupervisorMsg::Cancel { task_id, reason });
                    }
                    // Restarting: record the cancel directly; recovery will not pick the task up.
                    None => {
                        state
                            .sink
                            .record(Transition::new(task_id, TaskState::Cancelled, 0, reason))
                            .await
                    }
                }
            }
            OrchestratorMsg::Scale {
                supervisor,
                kind,
                size,
                reply,
            } => {
                let _ = reply.send(state.scale(&supervisor, &kind, size, false).await);
            }
            OrchestratorMsg::Status(reply) => {
                let _ = reply.send(state.status().await);
            }
            OrchestratorMsg::Apply { specs, reply } => {
                let _ = reply.send(state.apply(&me, specs).await);
            }
            OrchestratorMsg::Respawn(name) => state.restart(&me, &name).await,
            OrchestratorMsg::SetPauses(set) => {
                for actor in state.entries.values().filter_map(|e| e.actor.as_ref()) {
                    // A supervisor that just died gets the set when it is spawned again.
                    let _ = actor.cast(SupervisorMsg::SetPauses(set.clone()));
                }
                state.gates.pauses = set;
            }
            OrchestratorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let stopping =
                    state
                        .entries
                        .values_mut()
                        .filter_map(|e| e.actor.take())
                        .map(|a| async move {
                            let _ = a.stop_and_wait(Some("shutdown".into()), Some(CALL_TIMEOUT)).await;
                        });
                futures::future::join_all(stopping).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<OrchestratorMsg>,
        evt: SupervisionEvent,
        state: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(name) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.shutting_down {
            return Ok(());
        }
        tracing::error!(supervisor = %name, reason = %why, "supervisor exited; restarting it and its pools");
        if let Some(e) = state.entries.get_mut(&name) {
            e.actor = None;
            e.restarts += 1;
        }
        metrics::counter!("cadre_supervisor_restarts_total", "supervisor" => name.clone()).increment(1);
        state.restart(&me, &name).await;
        Ok(())
    }
}

impl OrchestratorState {
    async fn spawn(&mut self, me: &ActorRef<OrchestratorMsg>, name: &str) -> Result<(), ActorProcessingErr> {
        let entry = self.entries.get_mut(name).expect("entry exists");
        let args = SupervisorArgs {
            name: name.to_string(),
            spec: entry.spec.clone(),
            sink: self.sink.clone(),
            cancel_grace: self.cancel_grace,
            delegate: self.delegate.clone(),
            gates: self.gates.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Supervisor, args, me.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), name.to_string());
        entry.actor = Some(actor);
        Ok(())
    }

    /// Respawns a supervisor if it is down, then re-dispatches its unfinished tasks from the
    /// store. If either step fails, the whole restart is tried again after a delay (tasks the
    /// supervisor already holds are ignored when dispatched twice).
    async fn restart(&mut self, me: &ActorRef<OrchestratorMsg>, name: &str) {
        if self.shutting_down || !self.entries.contains_key(name) {
            return;
        }
        let spawned = match self.entries[name].actor {
            Some(_) => Ok(()),
            None => self
                .spawn(me, name)
                .await
                .map_err(|e| SourceError(format!("spawn failed: {e}"))),
        };
        let recovered = match spawned {
            Ok(()) => self.recovery.unfinished(Some(name)).await,
            Err(e) => Err(e),
        };
        match recovered {
            Ok(tasks) => {
                tracing::info!(supervisor = %name, tasks = tasks.len(), "supervisor restarted");
                for (supervisor, task) in tasks {
                    self.dispatch(&supervisor, task);
                }
            }
            Err(e) => {
                tracing::error!(supervisor = %name, error = %e, "supervisor restart incomplete; retrying");
                let me = me.clone();
                let name = name.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(RESPAWN_DELAY).await;
                    let _ = me.cast(OrchestratorMsg::Respawn(name));
                });
            }
        }
    }

    fn dispatch(&mut self, supervisor: &str, task: QueuedTask) {
        match self.entries.get(supervisor).and_then(|e| e.actor.as_ref()) {
            Some(a) => {
                // A failed send means the supervisor just died: its restart re-reads the store.
                let _ = a.cast(SupervisorMsg::Enqueue(Box::new(task)));
            }
            None => {
                tracing::warn!(%supervisor, task_id = %task.id, "supervisor down; task waits for its restart")
            }
        }
    }

    async fn scale(
        &mut self,
        supervisor: &str,
        kind: &str,
        size: usize,
        create: bool,
    ) -> Result<PoolStatus, ScaleError> {
        if size > MAX_POOL_SIZE {
            return Err(ScaleError::Invalid(format!(
                "replicas: must be at most {MAX_POOL_SIZE}, got {size}"
            )));
        }
        let Some(entry) = self.entries.get_mut(supervisor) else {
            let known: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            return Err(ScaleError::NotFound(format!(
                "no supervisor {supervisor:?} (known: {})",
                known.join(", ")
            )));
        };
        let Some(actor) = entry.actor.clone() else {
            return Err(ScaleError::NotFound(format!(
                "supervisor {supervisor} is restarting; try again"
            )));
        };
        let res = actor
            .call(
                |reply| SupervisorMsg::Scale {
                    kind: kind.to_string(),
                    size,
                    create,
                    reply,
                },
                Some(CALL_TIMEOUT),
            )
            .await
            .map_err(|e| ScaleError::NotFound(format!("supervisor {supervisor} unreachable: {e}")))?;
        match res {
            ractor::rpc::CallResult::Success(Ok(status)) => {
                // Remember the size so a restarted supervisor comes back at it.
                entry.spec.pools.insert(kind.to_string(), size);
                Ok(status)
            }
            ractor::rpc::CallResult::Success(Err(e)) => Err(ScaleError::NotFound(e)),
            _ => Err(ScaleError::NotFound(format!(
                "supervisor {supervisor} did not answer"
            ))),
        }
    }

    /// Asks every supervisor at once; one that does not answer in time shows as "restarting"
    /// if it is down and "unresponsive" otherwise.
    async fn status(&mut self) -> Vec<SupervisorStatus> {
        let asks = self.entries.iter().map(|(name, e)| async move {
            let answered = match &e.actor {
                Some(a) => match a.call(SupervisorMsg::Status, Some(CALL_TIMEOUT)).await {
                    Ok(ractor::rpc::CallResult::Success(s)) => Some(s),
                    _ => None,
                },
                None => None,
            };
            let mut s = answered.unwrap_or_else(|| SupervisorStatus {
                name: name.clone(),
                state: if e.actor.is_some() {
                    "unresponsive"
                } else {
                    "restarting"
                }
                .into(),
                max_restarts: e.spec.restart.max_restarts,
                ..Default::default()
            });
            s.restarts = e.restarts;
            s
        });
        futures::future::join_all(asks).await
    }

    async fn apply(
        &mut self,
        me: &ActorRef<OrchestratorMsg>,
        specs: BTreeMap<String, SupervisorSpec>,
    ) -> Vec<String> {
        let mut changes = Vec::new();
        for (name, spec) in specs {
            let Some(entry) = self.entries.get(&name) else {
                self.entries.insert(
                    name.clone(),
                    Entry {
                        spec,
                        actor: None,
                        restarts: 0,
                    },
                );
                match self.spawn(me, &name).await {
                    Ok(()) => changes.push(format!("supervisor {name}: started")),
                    Err(e) => changes.push(format!("supervisor {name}: failed to start: {e}")),
                }
                continue;
            };
            let old = entry.spec.clone();
            if old.restart != spec.restart {
                if let Some(a) = &entry.actor {
                    let _ = a.cast(SupervisorMsg::SetRestartIntensity(spec.restart));
                }
                self.entries.get_mut(&name).expect("entry").spec.restart = spec.restart;
                changes.push(format!("supervisor {name}: restart intensity {:?}", spec.restart));
            }
            let mut kinds: Vec<(String, usize)> = spec.pools.clone().into_iter().collect();
            // Kinds dropped from the file drain to zero rather than vanish with tasks queued.
            kinds.extend(
                old.pools
                    .keys()
                    .filter(|k| !spec.pools.contains_key(*k))
                    .map(|k| (k.clone(), 0)),
            );
            for (kind, size) in kinds {
                if old.pools.get(&kind) == Some(&size) {
                    continue;
                }
                match self.scale(&name, &kind, size, true).await {
                    Ok(_) => changes.push(format!(
                        "pool {name}/{kind}: {} -> {size}",
                        old.pools.get(&kind).copied().unwrap_or(0)
                    )),
                    Err(e) => changes.push(format!("pool {name}/{kind}: not changed: {e}")),
                }
            }
        }
        changes
    }
}
