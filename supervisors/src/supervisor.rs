//! The tier-1 supervisor actor.
//!
//! It owns one pool of [`Worker`] actors per worker kind, each with a [`FairQueue`]; a pool's
//! size is its concurrency limit. It decides every transition of the tasks it holds (RUNNING,
//! RETRYING, terminal) and reports them through its [`TaskSink`].
//!
//! Failure policy, in one place:
//!
//! | what happened                        | task                                  | worker            |
//! |--------------------------------------|---------------------------------------|-------------------|
//! | executor returned a retryable error  | RETRYING with backoff, or FAILED last | kept              |
//! | executor returned a fatal error      | FAILED                                | kept              |
//! | attempt ran past its timeout         | TIMED_OUT                             | kept              |
//! | cancel (cooperative or after grace)  | CANCELLED                             | kept              |
//! | worker panicked or died              | RETRYING with backoff, or FAILED last | restarted (1:1)   |
//! | restarts exceed the intensity        | left to recovery from the store       | supervisor fails  |
//! | an upstream said "retry after T"     | QUEUED, attempt given back; type held | kept              |
//!
//! What may start next is decided in one place, [`crate::dispatch_gates::decide`]: pauses,
//! rate-limit holds of a task type, and concurrency-key limits park a task (still queued,
//! still counted) until its reason ends; everything else keeps its priority, fair-share and
//! FIFO order. A rate-limited attempt does not count against `max_attempts`; a task put back
//! more than `upstream.max_requeues` times FAILS.
//!
//! When the supervisor fails, ractor kills its workers with it, and the orchestrator restarts
//! it and re-dispatches the supervisor's unfinished tasks from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadre_agents::{Assignment, Outcome, Worker, WorkerMsg, worker::WorkerArgs};
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskState};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio_util::sync::CancellationToken;

use crate::attempt_report::AttemptReport;
use crate::config::SupervisorSpec;
use crate::dispatch_gates::{
    Decision, Dispatch, Entry, Gates, ParkedFor, RateLimitStep, after_rate_limit, decide,
};
use crate::key_limits::{KeyId, KeyPermit, Wake};
use crate::pause::PauseSet;
use crate::pool::{Pool, Slot};
use crate::restart_policy::{RestartIntensity, RestartTracker};
use crate::sink::{TaskSink, Transition};
use crate::task::QueuedTask;

/// Largest pool a single worker kind may have.
pub const MAX_POOL_SIZE: usize = 1024;

/// Messages a supervisor accepts.
pub enum SupervisorMsg {
    /// Queue a task (ignored if the task is already known here).
    Enqueue(Box<QueuedTask>),
    /// Cancel a task wherever it is (queued, running, waiting to retry).
    Cancel {
        /// The task.
        task_id: TaskId,
        /// Recorded on the CANCELLED event.
        reason: String,
    },
    /// Resize a pool. `create` allows a new worker kind (config reload).
    Scale {
        /// The worker kind.
        kind: String,
        /// The new size.
        size: usize,
        /// Whether an unknown kind becomes a new pool.
        create: bool,
        /// The pool after the change, or why it was refused.
        reply: RpcReplyPort<Result<PoolStatus, String>>,
    },
    /// Change the restart intensity (config reload).
    SetRestartIntensity(RestartIntensity),
    /// Report the supervisor's pools.
    Status(RpcReplyPort<SupervisorStatus>),
    /// Sent by a worker when its attempt ends.
    WorkerDone {
        /// The slot.
        worker_id: u64,
        /// The task it ran.
        task_id: TaskId,
        /// How it ended.
        outcome: Outcome,
    },
    /// A task's backoff elapsed.
    RetryDue(TaskId),
    /// The pauses in force now (the whole set): tasks they hold stay queued, others start.
    SetPauses(PauseSet),
    /// A slot of a concurrency key this supervisor waits for was given back.
    KeyFreed(KeyId),
    /// A task type's rate-limit hold may have ended.
    HoldEnded {
        /// The pool.
        kind: String,
        /// The type.
        task_type: String,
    },
}

/// Start-up arguments of a [`Supervisor`].
pub struct SupervisorArgs {
    /// Its name (`intelligence`, `multimodal`, `system`, ...).
    pub name: String,
    /// Its pools and restart intensity.
    pub spec: SupervisorSpec,
    /// Where transitions go.
    pub sink: Arc<dyn TaskSink>,
    /// How long a cancelled executor may take to stop by itself.
    pub cancel_grace: Duration,
    /// How its executors delegate sub-tasks to other supervisors (None: they cannot).
    pub delegate: Option<cadre_agents::SharedDelegate>,
    /// Tenant weights, concurrency limits, rate-limit bounds and the pauses in force.
    pub gates: Gates,
}

/// The supervisor actor.
pub struct Supervisor;

/// The supervisor's state.
pub struct SupervisorState {
    name: String,
    sink: Arc<dyn TaskSink>,
    cancel_grace: Duration,
    delegate: Option<cadre_agents::SharedDelegate>,
    restarts: RestartTracker,
    pools: BTreeMap<String, Pool>,
    tasks: HashMap<TaskId, Tracked>,
    /// Worker actor id -> (kind, slot id).
    slots_by_actor: HashMap<ActorId, (String, u64)>,
    /// The pauses in force.
    pauses: PauseSet,
    /// Weights, key limits and rate-limit bounds, shared with the process's other supervisors.
    dispatch: Arc<Dispatch>,
    /// This supervisor as a waiter of concurrency keys: its id and how it is woken.
    waiter: (u64, Wake),
}

struct Tracked {
    task: QueuedTask,
    phase: Phase,
}

enum Phase {
    Queued,
    /// Taken from the queue but held back (see [`crate::dispatch_gates`]).
    Parked(ParkedFor, Entry),
    Running {
        slot: u64,
        cancel: CancellationToken,
        cancel_reason: Option<String>,
        /// Where it stood in the queue (a rate-limited attempt puts it back there).
        entry: Entry,
        /// Its concurrency key's slot, given back when the attempt ends.
        _permit: Option<KeyPermit>,
    },
    Backoff,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let waker = me.clone();
        let wake: Wake = Arc::new(move |id| {
            let _ = waker.cast(SupervisorMsg::KeyFreed(id));
        });
        let mut state = SupervisorState {
            name: args.name,
            sink: args.sink,
            cancel_grace: args.cancel_grace,
            delegate: args.delegate,
            restarts: RestartTracker::new(args.spec.restart),
            pools: BTreeMap::new(),
            tasks: HashMap::new(),
            slots_by_actor: HashMap::new(),
            pauses: args.gates.pauses,
            dispatch: args.gates.dispatch,
            waiter: (crate::key_limits::next_waiter_id(), wake),
        };
        for (kind, size) in args.spec.pools {
            let pool = Pool::new(size.min(MAX_POOL_SIZE), &state.dispatch);
            state.pools.insert(kind.clone(), pool);
            state.fill_pool(&me, &kind).await?;
        }
        tracing::info!(supervisor = %state.name, "supervisor started");
        Ok(state)
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Enqueue(task) => state.enqueue(*task).await,
            SupervisorMsg::Cancel { task_id, reason } => state.cancel(task_id, reason).await,
            SupervisorMsg::Scale {
                kind,
                size,
                create,
                reply,
            } => {
                let res = state.scale(&me, &kind, size, create).await;
                let _ = reply.send(res);
            }
            SupervisorMsg::SetRestartIntensity(i) => state.restarts.set_intensity(i),
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(state.status());
            }
            SupervisorMsg::WorkerDone {
                worker_id,
                task_id,
                outcome,
            } => state.worker_done(&me, worker_id, task_id, outcome).await,
            SupervisorMsg::RetryDue(task_id) => state.retry_due(task_id).await,
            SupervisorMsg::SetPauses(set) => state.set_pauses(set).await,
            SupervisorMsg::KeyFreed(id) => state.key_freed(id).await,
            SupervisorMsg::HoldEnded { kind, task_type } => state.hold_ended(&kind, &task_type).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("worker crashed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("worker stopped: {}", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let Some((kind, slot_id)) = state.slots_by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.worker_exited(&me, &kind, slot_id, why).await
    }

    /// On a graceful stop (node shutdown) the running attempts are interrupted, not failed:
    /// they go back to QUEUED with the attempt given back (the attempt before it), so the next
    /// start runs the same attempt number again and the interruption does not count against
    /// the retry policy. (A crash leaves them RUNNING; recovery treats that as a lost worker.)
    async fn post_stop(
        &self,
        _me: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        for (id, t) in &state.tasks {
            if let Phase::Running { .. } = t.phase {
                let msg = "node shutting down; re-queued";
                state
                    .sink
                    .record(Transition::new(
                        *id,
                        TaskState::Queued,
                        t.task.attempts_started.saturating_sub(1),
                        msg,
                    ))
                    .await;
            }
        }
        for kind in state.pools.keys() {
            metrics::gauge!("cadre_pool_size", "supervisor" => state.name.clone(), "kind" => kind.clone())
                .set(0.0);
        }
        metrics::gauge!("cadre_queue_depth", "supervisor" => state.name.clone()).set(0.0);
        Ok(())
    }
}

impl SupervisorState {
    /// Spawns a worker linked to this supervisor into slot `slot_id` of pool `kind`.
    async fn spawn_worker(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        kind: &str,
        slot_id: u64,
    ) -> Result<(), ActorProcessingErr> {
        let parent = me.clone();
        let on_done: cadre_agents::DoneFn = Arc::new(move |worker_id, task_id, outcome| {
            // A dead supervisor means its tasks are recovered from the store: dropping is safe.
            let _ = parent.cast(SupervisorMsg::WorkerDone {
                worker_id,
                task_id,
                outcome,
            });
        });
        let (actor, _) =
            Actor::spawn_linked(None, Worker, WorkerArgs { id: slot_id, on_done }, me.get_cell()).await?;
        self.slots_by_actor
            .insert(actor.get_id(), (kind.to_string(), slot_id));
        let pool = self.pools.get_mut(kind).expect("pool exists");
        pool.slots.insert(
            slot_id,
            Slot {
                actor,
                running: None,
                retiring: false,
            },
        );
        Ok(())
    }

    /// Brings the pool up to its target: un-retires draining workers first, then spawns.
    async fn fill_pool(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        kind: &str,
    ) -> Result<(), ActorProcessingErr> {
        loop {
            let pool = self.pools.get_mut(kind).expect("pool exists");
            if pool.active() >= pool.target {
                break;
            }
            if let Some(slot) = pool.slots.values_mut().find(|s| s.retiring) {
                slot.retiring = false;
                continue;
            }
            let slot_id = pool.next_slot;
            pool.next_slot += 1;
            self.spawn_worker(me, kind, slot_id).await?;
        }
        self.publish_gauges(kind);
        Ok(())
    }

    /// Retires workers above the target: idle ones stop now, busy ones after their task.
    fn shrink_pool(&mut self, kind: &str) {
        let pool = &self.pools[kind];
        let mut excess = pool.active().saturating_sub(pool.target);
        // Idle first, so no running task is disturbed when an idle worker can go instead.
        let mut order: Vec<u64> = pool
            .slots
            .iter()
            .filter(|(_, s)| !s.retiring)
            .map(|(id, _)| *id)
            .collect();
        order.sort_by_key(|id| pool.slots[id].running.is_some());
        for id in order {
            if excess == 0 {
                break;
            }
            let slot = self
                .pools
                .get_mut(kind)
                .and_then(|p| p.slots.get_mut(&id))
                .expect("slot exists");
            if slot.running.is_none() {
                self.retire_now(kind, id);
            } else {
                slot.retiring = true;
            }
            excess -= 1;
        }
        self.publish_gauges(kind);
    }

    /// Removes an idle slot and stops its worker. The worker is forgotten first, so its exit
    /// is not mistaken for a crash, and a later grow spawns a fresh worker instead of reviving it.
    fn retire_now(&mut self, kind: &str, slot_id: u64) {
        let Some(slot) = self.pools.get_mut(kind).and_then(|p| p.slots.remove(&slot_id)) else {
            return;
        };
        self.slots_by_actor.remove(&slot.actor.get_id());
        slot.actor.stop(Some("pool shrunk".into()));
    }

    async fn scale(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        kind: &str,
        size: usize,
        create: bool,
    ) -> Result<PoolStatus, String> {
        if size > MAX_POOL_SIZE {
            return Err(format!("replicas must be at most {MAX_POOL_SIZE}"));
        }
        if !self.pools.contains_key(kind) {
            if !create {
                let known: Vec<&str> = self.pools.keys().map(String::as_str).collect();
                return Err(format!(
                    "supervisor {} has no worker kind {kind:?} (known: {})",
                    self.name,
                    known.join(", ")
                ));
            }
            self.pools
                .insert(kind.to_string(), Pool::new(size, &self.dispatch));
        }
        self.pools.get_mut(kind).expect("pool exists").target = size;
        self.fill_pool(me, kind)
            .await
            .map_err(|e| format!("spawning workers failed: {e}"))?;
        self.shrink_pool(kind);
        self.pump(kind).await;
        tracing::info!(supervisor = %self.name, kind, size, "pool scaled");
        Ok(self.pool_status(kind))
    }

    async fn enqueue(&mut self, task: QueuedTask) {
        if self.tasks.contains_key(&task.id) {
            return; // already here: recovery and a live dispatch may both deliver a task
        }
        let kind = task.worker_kind.clone();
        if !self.pools.contains_key(&kind) {
            // Routes and pools disagree (e.g. a reload removed the pool): fail loudly, lose nothing silently.
            let msg = format!("supervisor {} has no worker kind {kind:?}", self.name);
            self.sink
                .record(Transition::new(
                    task.id,
                    TaskState::Failed,
                    task.attempts_started,
                    msg,
                ))
                .await;
            return;
        }
        self.push_queue(task);
        self.pump(&kind).await;
    }

    fn push_queue(&mut self, task: QueuedTask) {
        let pool = self.pools.get_mut(&task.worker_kind).expect("pool exists");
        pool.queue.push(task.priority, &task.tenant, task.id);
        pool.queued += 1;
        self.tasks.insert(
            task.id,
            Tracked {
                task,
                phase: Phase::Queued,
            },
        );
        self.publish_queue_depth();
    }

    /// Starts queued tasks on idle workers of `kind` while both exist.
    async fn pump(&mut self, kind: &str) {
        while let Some((slot_id, entry, permit)) = self.take_next(kind) {
            self.start(kind, slot_id, entry, permit).await;
        }
    }

    /// The next task of `kind` that may start and an idle worker for it; tasks held back on
    /// the way are parked ([`crate::dispatch_gates`]).
    fn take_next(&mut self, kind: &str) -> Option<(u64, Entry, Option<KeyPermit>)> {
        loop {
            let pool = self.pools.get_mut(kind)?;
            let slot_id = pool
                .slots
                .iter()
                .find(|(_, s)| s.running.is_none() && !s.retiring)
                .map(|(id, _)| *id)?;
            let entry = pool.queue.pop_entry()?;
            let Some(tracked) = self.tasks.get_mut(&entry.item) else {
                continue; // cancelled while queued
            };
            if !matches!(tracked.phase, Phase::Queued) {
                continue;
            }
            let waiter = (self.waiter.0, &self.waiter.1);
            match decide(
                &pool.parking,
                &self.pauses,
                &self.name,
                &tracked.task,
                &entry,
                &self.dispatch.keys,
                waiter,
            ) {
                Decision::Start(permit) => {
                    pool.queued -= 1;
                    return Some((slot_id, entry, permit));
                }
                Decision::Park(why) => {
                    tracked.phase = Phase::Parked(why.clone(), entry.clone());
                    pool.parking.park(&why, entry);
                }
                Decision::HoldExpired => {
                    let back = pool
                        .parking
                        .end_hold(&tracked.task.task_type, tokio::time::Instant::now());
                    pool.queue.restore(entry);
                    self.unpark(kind, back);
                }
            }
        }
    }

    /// Runs `entry`'s task on worker `slot_id` of `kind`.
    async fn start(&mut self, kind: &str, slot_id: u64, entry: Entry, permit: Option<KeyPermit>) {
        let task_id = entry.item;
        let (Some(pool), Some(tracked)) = (self.pools.get_mut(kind), self.tasks.get_mut(&task_id)) else {
            return;
        };
        let cancel = CancellationToken::new();
        tracked.phase = Phase::Running {
            slot: slot_id,
            cancel: cancel.clone(),
            cancel_reason: None,
            entry,
            _permit: permit,
        };
        tracked.task.attempts_started += 1;
        let t = &tracked.task;
        let attempt = t.attempts_started;
        let sink = self.sink.clone();
        let assignment = Assignment {
            task_id,
            task_type: t.task_type.clone(),
            tenant: t.tenant.clone(),
            fortress: t.fortress,
            params: t.params.clone(),
            attempt,
            timeout: t.timeout,
            executor: t.executor.clone(),
            cancel,
            delegate: self.delegate.clone(),
            cancel_grace: self.cancel_grace,
            progress: Arc::new(AttemptReport::new(
                sink,
                task_id,
                attempt,
                t.traceparent.as_deref(),
            )),
        };
        let slot = pool.slots.get_mut(&slot_id).expect("slot exists");
        slot.running = Some(task_id);
        self.sink
            .record(Transition::new(
                task_id,
                TaskState::Running,
                attempt,
                format!("on {kind}/{slot_id}"),
            ))
            .await;
        // Entered for the cast only: ractor carries the span to the worker's handler.
        let span = crate::attempt_span::attempt_span(&self.name, t, attempt);
        if let Err(e) = span.in_scope(|| slot.actor.cast(WorkerMsg::Run(Box::new(assignment)))) {
            // The worker died between its exit and our noticing: its supervision event will
            // arrive and treat the task as crashed, which retries it.
            tracing::warn!(supervisor = %self.name, kind, slot_id, %task_id, error = %e, "worker unreachable");
        }
        self.publish_queue_depth();
    }

    /// Puts parked `entries` of pool `kind` back in its queue at their old places.
    fn unpark(&mut self, kind: &str, entries: Vec<Entry>) {
        let Some(pool) = self.pools.get_mut(kind) else {
            return;
        };
        for e in entries {
            if let Some(t) = self.tasks.get_mut(&e.item)
                && matches!(t.phase, Phase::Parked(..))
            {
                t.phase = Phase::Queued;
                pool.queue.restore(e);
            }
        }
    }

    async fn worker_done(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        worker_id: u64,
        task_id: TaskId,
        outcome: Outcome,
    ) {
        let Some(kind) = self.free_slot(task_id, worker_id) else {
            return;
        };
        let Some(tracked) = self.tasks.remove(&task_id) else {
            return;
        };
        let attempt = tracked.task.attempts_started;
        let cancel_reason = match &tracked.phase {
            Phase::Running { cancel_reason, .. } => cancel_reason.clone(),
            _ => None,
        };
        match outcome {
            Outcome::Succeeded(result) => {
                let mut t = Transition::new(task_id, TaskState::Succeeded, attempt, "");
                t.result = Some(result);
                t.sign = tracked.task.verified;
                self.sink.record(t).await;
            }
            Outcome::Failed { message, retryable } => {
                self.fail_attempt(me, tracked, message, retryable).await;
            }
            Outcome::Cancelled { forced } => {
                let reason = cancel_reason.unwrap_or_else(|| "cancelled".into());
                let msg = if forced {
                    format!("{reason} (forced after grace period)")
                } else {
                    reason
                };
                self.sink
                    .record(Transition::new(task_id, TaskState::Cancelled, attempt, msg))
                    .await;
            }
            Outcome::RateLimited { message, retry_after } => {
                self.rate_limited(me, &kind, tracked, message, retry_after).await
            }
            Outcome::TimedOut => {
                let msg = format!(
                    "attempt {attempt} exceeded its timeout of {} ms",
                    tracked.task.timeout.as_millis()
                );
                if tracked.task.retry.retry_timeouts {
                    self.end_attempt(me, tracked, msg, true, TaskState::TimedOut)
                        .await;
                } else {
                    self.sink
                        .record(Transition::new(task_id, TaskState::TimedOut, attempt, msg))
                        .await;
                }
            }
        }
        self.pump(&kind).await;
    }

    /// Marks the slot that ran `task_id` idle (or stops it if retiring); returns its kind.
    fn free_slot(&mut self, task_id: TaskId, worker_id: u64) -> Option<String> {
        let kind = match &self.tasks.get(&task_id)?.phase {
            Phase::Running { slot, .. } if *slot == worker_id => {
                self.tasks[&task_id].task.worker_kind.clone()
            }
            _ => return None, // stale report (e.g. from before a restart)
        };
        let slot = self.pools.get_mut(&kind)?.slots.get_mut(&worker_id)?;
        slot.running = None;
        if slot.retiring {
            self.retire_now(&kind, worker_id);
        }
        Some(kind)
    }

    /// An attempt failed: retry after a backoff if the policy allows, else FAILED.
    async fn fail_attempt(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        tracked: Tracked,
        message: String,
        retryable: bool,
    ) {
        self.end_attempt(me, tracked, message, retryable, TaskState::Failed)
            .await;
    }

    /// An attempt ended without success: retry after a backoff if `retryable` and the policy
    /// allows, else end the task in `last` (FAILED, or TIMED_OUT for a timed-out attempt of a
    /// task that retries timeouts).
    async fn end_attempt(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        mut tracked: Tracked,
        message: String,
        retryable: bool,
        last: TaskState,
    ) {
        let task_id = tracked.task.id;
        let attempt = tracked.task.attempts_started;
        let max = tracked.task.retry.max_attempts;
        if !retryable || attempt >= max {
            let why = if retryable {
                format!("{message} (attempt {attempt} of {max})")
            } else {
                message
            };
            self.sink
                .record(Transition::new(task_id, last, attempt, why))
                .await;
            return;
        }
        let delay = tracked.task.retry.backoff(attempt + 1, fastrand::f64());
        let msg = format!(
            "{message}; attempt {} of {max} in {} ms",
            attempt + 1,
            delay.as_millis()
        );
        self.sink
            .record(Transition::new(task_id, TaskState::Retrying, attempt, msg))
            .await;
        tracked.phase = Phase::Backoff;
        self.tasks.insert(task_id, tracked);
        let me = me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(SupervisorMsg::RetryDue(task_id));
        });
    }

    async fn retry_due(&mut self, task_id: TaskId) {
        let Some(tracked) = self.tasks.remove(&task_id) else {
            return;
        };
        if !matches!(tracked.phase, Phase::Backoff) {
            self.tasks.insert(task_id, tracked);
            return;
        }
        let kind = tracked.task.worker_kind.clone();
        self.push_queue(tracked.task);
        self.pump(&kind).await;
    }

    async fn cancel(&mut self, task_id: TaskId, reason: String) {
        let reason = if reason.is_empty() {
            "cancelled by request".to_string()
        } else {
            reason
        };
        match self.tasks.get_mut(&task_id).map(|t| &mut t.phase) {
            Some(Phase::Running {
                cancel,
                cancel_reason,
                ..
            }) => {
                // The worker reports Cancelled (or its result, if it finished first).
                *cancel_reason = Some(reason);
                cancel.cancel();
                return;
            }
            Some(Phase::Queued) => {
                let kind = self.tasks[&task_id].task.worker_kind.clone();
                if let Some(pool) = self.pools.get_mut(&kind) {
                    pool.queued -= 1; // its queue entry is skipped when popped
                }
            }
            Some(Phase::Parked(why, entry)) => {
                let (why, order) = (why.clone(), entry.order());
                let kind = self.tasks[&task_id].task.worker_kind.clone();
                if let Some(pool) = self.pools.get_mut(&kind)
                    && pool.parking.remove(&why, order)
                {
                    pool.queued -= 1;
                }
                if let ParkedFor::Key(id) = why {
                    self.unwatch_if_done(&id);
                }
            }
            Some(Phase::Backoff) | None => {}
        }
        let attempt = self
            .tasks
            .remove(&task_id)
            .map(|t| t.task.attempts_started)
            .unwrap_or(0);
        self.publish_queue_depth();
        // Unknown here too: the sink ignores it if the task already finished.
        self.sink
            .record(Transition::new(task_id, TaskState::Cancelled, attempt, reason))
            .await;
    }

    /// A worker exited. Retiring workers leave; any other exit is a crash: its task's attempt
    /// fails (retryable), the restart is counted, and the worker is restarted one-for-one
    /// unless the restart intensity is exceeded, which fails this supervisor.
    async fn worker_exited(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        kind: &str,
        slot_id: u64,
        why: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(pool) = self.pools.get_mut(kind) else {
            return Ok(());
        };
        // Retired workers were forgotten before they were stopped: any exit seen here is a crash.
        let Some(slot) = pool.slots.remove(&slot_id) else {
            return Ok(());
        };
        pool.restarts += 1;
        if let Some(task_id) = slot.running
            && let Some(tracked) = self.tasks.remove(&task_id)
        {
            let t = &tracked.task;
            tracing::warn!(
                supervisor = %self.name,
                kind,
                slot_id,
                task_id = %t.id,
                tenant = %t.tenant,
                task_type = %t.task_type,
                trace_id = t.traceparent.as_deref().and_then(crate::attempt_span::trace_id),
                attempt = t.attempts_started,
                %why,
                "worker crashed running a task; its attempt fails (retryable)"
            );
            // A cancel asked for while the task ran still wins: the crash happened while it
            // was stopping, and running it again would undo the cancel.
            if let Phase::Running {
                cancel_reason: Some(reason),
                ..
            } = &tracked.phase
            {
                let msg = format!("{reason} (worker crashed while stopping: {why})");
                let t = Transition::new(task_id, TaskState::Cancelled, tracked.task.attempts_started, msg);
                self.sink.record(t).await;
            } else {
                self.fail_attempt(me, tracked, why.clone(), true).await;
            }
        }
        metrics::counter!("cadre_worker_restarts_total", "supervisor" => self.name.clone(), "kind" => kind.to_string())
            .increment(1);
        if !self.restarts.record(Instant::now()) {
            let i = self.restarts.intensity();
            tracing::error!(supervisor = %self.name, kind, "restart intensity exceeded ({} in {} s): escalating", i.max_restarts, i.within_secs);
            return Err(format!(
                "supervisor {}: restart intensity exceeded ({} restarts in {} s); last: {why}",
                self.name, i.max_restarts, i.within_secs
            )
            .into());
        }
        tracing::warn!(supervisor = %self.name, kind, slot_id, %why, "restarting worker");
        if !slot.retiring {
            self.spawn_worker(me, kind, slot_id).await?;
        }
        self.publish_gauges(kind);
        self.pump(kind).await;
        Ok(())
    }

    /// An upstream said to wait: the attempt is given back and the task goes back to its place
    /// in the queue, parked with every other task of its type until the hold ends; after
    /// `upstream.max_requeues` such returns it FAILS (with 0, it is an ordinary retryable
    /// failure).
    async fn rate_limited(
        &mut self,
        me: &ActorRef<SupervisorMsg>,
        kind: &str,
        mut tracked: Tracked,
        message: String,
        asked: Duration,
    ) {
        let t = &mut tracked.task;
        metrics::counter!("cadre_rate_limited_total", "supervisor" => self.name.clone(), "task_type" => t.task_type.clone())
            .increment(1);
        let hold = match after_rate_limit(t, &self.dispatch.upstream, &message, asked) {
            RateLimitStep::Retry => return self.fail_attempt(me, tracked, message, true).await,
            RateLimitStep::Fail(why) => {
                let failed = Transition::new(t.id, TaskState::Failed, t.attempts_started, why);
                return self.sink.record(failed).await;
            }
            RateLimitStep::Requeue { hold, message } => {
                let queued = Transition::new(t.id, TaskState::Queued, t.attempts_started, message);
                self.sink.record(queued).await;
                hold
            }
        };
        let task_type = t.task_type.clone();
        let Phase::Running { entry, .. } = std::mem::replace(&mut tracked.phase, Phase::Queued) else {
            return;
        };
        let Some(pool) = self.pools.get_mut(kind) else {
            return;
        };
        if pool
            .parking
            .hold_type(&task_type, tokio::time::Instant::now() + hold)
        {
            let (me, kind) = (me.clone(), kind.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                let _ = me.cast(SupervisorMsg::HoldEnded { kind, task_type });
            });
        }
        let why = ParkedFor::Type(tracked.task.task_type.clone());
        tracked.phase = Phase::Parked(why.clone(), entry.clone());
        pool.parking.park(&why, entry);
        pool.queued += 1;
        self.tasks.insert(tracked.task.id, tracked);
        self.publish_queue_depth();
    }

    /// A type's hold timer fired: if the hold has ended, its tasks go back to the queue.
    async fn hold_ended(&mut self, kind: &str, task_type: &str) {
        let Some(pool) = self.pools.get_mut(kind) else {
            return;
        };
        let back = pool.parking.end_hold(task_type, tokio::time::Instant::now());
        self.unpark(kind, back);
        self.pump(kind).await;
    }

    /// A new pause set: paused tasks it no longer holds go back to their queues (in order),
    /// queued tasks it holds are parked as the pump reaches them.
    async fn set_pauses(&mut self, set: PauseSet) {
        self.pauses = set;
        let kinds: Vec<String> = self.pools.keys().cloned().collect();
        for kind in kinds {
            let (name, pauses, tasks) = (&self.name, &self.pauses, &self.tasks);
            let pool = self.pools.get_mut(&kind).expect("pool exists");
            let back = pool.parking.unpause(|e| {
                tasks.get(&e.item).is_some_and(|t| {
                    pauses.holds(crate::pause::PauseProbe {
                        supervisor: name,
                        worker_kind: &t.task.worker_kind,
                        task_type: &t.task.task_type,
                        tenant: &t.task.tenant,
                    })
                })
            });
            self.unpark(&kind, back);
            self.pump(&kind).await;
        }
        tracing::info!(supervisor = %self.name, pauses = self.pauses.pauses.len(), "pauses set");
    }

    /// A slot of `id` was given back: the oldest parked tasks of that key (as many as there
    /// are free slots, per pool) go back to their queues.
    async fn key_freed(&mut self, id: KeyId) {
        let kinds: Vec<String> = self
            .pools
            .iter()
            .filter(|(_, p)| p.parking.waits_for(&id))
            .map(|(k, _)| k.clone())
            .collect();
        for kind in kinds {
            let room = self.dispatch.keys.room(&id);
            if room == 0 {
                break;
            }
            let pool = self.pools.get_mut(&kind).expect("pool exists");
            let back = pool.parking.take_key(&id, room);
            self.unpark(&kind, back);
            self.pump(&kind).await;
        }
        self.unwatch_if_done(&id);
    }

    /// Stops waiting for `id` once no pool has a task of it parked.
    fn unwatch_if_done(&self, id: &KeyId) {
        if !self.pools.values().any(|p| p.parking.waits_for(id)) {
            self.dispatch.keys.unwatch(id, self.waiter.0);
        }
    }

    fn pool_status(&self, kind: &str) -> PoolStatus {
        let pool = &self.pools[kind];
        PoolStatus {
            worker_kind: kind.to_string(),
            target_size: pool.target as u32,
            live_workers: pool.slots.len() as u32,
            busy_workers: pool.busy() as u32,
            queue_depth: pool.queued as u32,
            restarts: pool.restarts,
            ..Default::default()
        }
    }

    fn status(&mut self) -> SupervisorStatus {
        let intensity = self.restarts.intensity();
        SupervisorStatus {
            name: self.name.clone(),
            state: "running".into(),
            restarts: 0,
            pools: self.pools.keys().map(|k| self.pool_status(k)).collect(),
            recent_restarts: self.restarts.recent(Instant::now()),
            max_restarts: intensity.max_restarts,
            ..Default::default()
        }
    }

    fn publish_gauges(&self, kind: &str) {
        if let Some(pool) = self.pools.get(kind) {
            metrics::gauge!("cadre_pool_size", "supervisor" => self.name.clone(), "kind" => kind.to_string())
                .set(pool.slots.len() as f64);
        }
    }

    fn publish_queue_depth(&self) {
        let depth: usize = self.pools.values().map(|p| p.queued).sum();
        metrics::gauge!("cadre_queue_depth", "supervisor" => self.name.clone()).set(depth as f64);
    }
}

impl Drop for SupervisorState {
    /// A supervisor that stops (or fails) no longer waits for any key.
    fn drop(&mut self) {
        for pool in self.pools.values() {
            for id in pool.parking.waited_keys() {
                self.dispatch.keys.unwatch(id, self.waiter.0);
            }
        }
    }
}
