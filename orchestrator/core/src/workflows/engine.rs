//! The workflow engine: the actor that drives every unfinished workflow instance, under a
//! supervisor actor of its own that restarts it when it fails, like the supervisors of the
//! task tree.
//!
//! One tier-0 replica leads ([`cadre_store::WorkflowStore::lead`]: always the only process on
//! SQLite, the holder of an advisory lock on PostgreSQL; the others try again every few
//! seconds and take over when the leader's session ends). The leader:
//!
//! 1. follows the event log from the moment it took the lead (the hub's resumable watch: live
//!    events, and the store when it falls behind);
//! 2. reads every unfinished instance from the store and drives each ([`super::drive`]);
//! 3. drives an instance again when it is submitted, when one of its sub-tasks ends, when a
//!    signal arrives (the signal's progress event), when it is cancelled, and when its
//!    earliest timer or timeout is due;
//! 4. every few minutes drives every unfinished instance again (a safety net for a notice
//!    lost in a crash; drives are idempotent).
//!
//! Nothing the engine keeps in memory matters for correctness: a restarted engine, or a new
//! leader, rebuilds everything from the store. At most [`MAX_DRIVES`] instances are driven at
//! once; an instance is never driven twice at the same time (an event during a drive makes it
//! run again after).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cadre_proto::clock::now_ms;
use cadre_proto::{TaskEvent, TaskId, TaskState, WORKFLOW_SUPERVISOR};
use cadre_store::{EventFilter, Lease};
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::task::JoinHandle;

use super::drive::{Memory, Next};
use crate::node::Node;

/// Sub-task ends kept for one instance between drives; past this its next drive reads it
/// whole.
const MAX_NEWS: usize = 256;
/// Instances driven at once.
pub const MAX_DRIVES: usize = 32;
/// How often a replica that does not lead tries to.
const LEAD_RETRY: Duration = Duration::from_secs(2);
/// How often the leader checks it still holds the lead.
const TICK: Duration = Duration::from_secs(5);
/// How often every unfinished instance is driven again.
const SWEEP_EVERY: Duration = Duration::from_secs(300);
/// How long a failed drive waits before it is tried again.
const DRIVE_RETRY_MS: i64 = 2_000;
/// How long the engine's supervisor waits before it restarts a failed engine.
const RESTART_DELAY: Duration = Duration::from_millis(500);

/// The engine actor.
pub struct Engine;

/// What the engine is told.
pub enum EngineMsg {
    /// Try to take the lead.
    Lead,
    /// Check the lead is still held; sweep when it is time.
    Tick,
    /// Drive this instance (something happened to it).
    Touch(TaskId),
    /// An event of the log (only those that may concern an instance are sent).
    Event(Arc<TaskEvent>),
    /// A drive ended.
    Driven(TaskId, Result<Next, String>, Box<Memory>),
    /// The event stream broke (the store failed): follow again and sweep.
    FollowLost,
    /// Whether this engine leads, and how many instances it knows (for status and tests).
    Status(RpcReplyPort<EngineStatus>),
}

/// Where the engine stands.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineStatus {
    /// Whether this replica drives the instances.
    pub leading: bool,
    /// Unfinished instances it knows.
    pub instances: usize,
    /// Drives running now.
    pub driving: usize,
}

/// One instance the leader knows.
#[derive(Default)]
struct Slot {
    /// A drive runs.
    busy: bool,
    /// Something happened during the drive: drive again after it.
    dirty: bool,
    /// Waiting in the ready queue.
    queued: bool,
    /// Its timer: when, and the task that will touch it then.
    timer: Option<(i64, JoinHandle<()>)>,
    /// What the engine remembers of it between drives.
    memory: Memory,
    /// Ends of its sub-tasks since its drive started (the next drive takes them in).
    news: Vec<Arc<TaskEvent>>,
    /// Something else happened since its drive started: the next reads it whole.
    stale: bool,
    /// The running drive, aborted if the engine stops.
    drive: Option<tokio::task::AbortHandle>,
}

/// The engine's state.
pub struct EngineState {
    node: Arc<Node>,
    lease: Option<Lease>,
    follower: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
    slots: HashMap<TaskId, Slot>,
    ready: VecDeque<TaskId>,
    driving: usize,
    last_sweep: tokio::time::Instant,
}

impl Actor for Engine {
    type Msg = EngineMsg;
    type State = EngineState;
    type Arguments = Arc<Node>;

    async fn pre_start(
        &self,
        me: ActorRef<EngineMsg>,
        node: Arc<Node>,
    ) -> Result<EngineState, ActorProcessingErr> {
        let _ = me.cast(EngineMsg::Lead);
        Ok(EngineState {
            node,
            lease: None,
            follower: None,
            ticker: None,
            slots: HashMap::new(),
            ready: VecDeque::new(),
            driving: 0,
            last_sweep: tokio::time::Instant::now(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<EngineMsg>,
        msg: EngineMsg,
        state: &mut EngineState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EngineMsg::Lead => state.lead(&me).await,
            EngineMsg::Tick => state.tick(&me).await,
            EngineMsg::Touch(id) => state.touch(&me, id),
            EngineMsg::Event(e) => {
                for id in state.concerned(&e) {
                    // A sub-task's end is news the last snapshot can take in; anything else
                    // about the instance means reading it again.
                    let news = (id != e.task_id).then(|| e.clone());
                    state.touch_with(&me, id, news);
                }
            }
            EngineMsg::Driven(id, next, memory) => state.driven(&me, id, next, *memory),
            EngineMsg::FollowLost => {
                if state.lease.is_some() {
                    tracing::warn!("workflow engine lost the event stream; following again");
                    state.follow(&me).await;
                    state.sweep(&me).await;
                }
            }
            EngineMsg::Status(reply) => {
                let _ = reply.send(EngineStatus {
                    leading: state.lease.is_some(),
                    instances: state.slots.len(),
                    driving: state.driving,
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<EngineMsg>,
        state: &mut EngineState,
    ) -> Result<(), ActorProcessingErr> {
        state.step_down();
        Ok(())
    }
}

impl EngineState {
    /// Takes the lead if it can (else tries again later), then follows and sweeps.
    async fn lead(&mut self, me: &ActorRef<EngineMsg>) {
        if self.lease.is_some() {
            return;
        }
        match self.node.store.lead().await {
            Ok(Some(lease)) => {
                tracing::info!(node = %self.node.node_id, "workflow engine leads");
                self.lease = Some(lease);
                self.follow(me).await;
                self.sweep(me).await;
                let tick = me.clone();
                self.ticker = Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(TICK).await;
                        if tick.cast(EngineMsg::Tick).is_err() {
                            return;
                        }
                    }
                }));
            }
            Ok(None) => {
                me.send_after(LEAD_RETRY, || EngineMsg::Lead);
            }
            Err(e) => {
                tracing::warn!(error = %e, "workflow engine cannot ask for the lead; retrying");
                me.send_after(LEAD_RETRY, || EngineMsg::Lead);
            }
        }
    }

    /// Gives the lead up: forgets every instance, stops following.
    fn step_down(&mut self) {
        self.lease = None;
        for h in [self.follower.take(), self.ticker.take()].into_iter().flatten() {
            h.abort();
        }
        for (_, slot) in self.slots.drain() {
            if let Some((_, t)) = slot.timer {
                t.abort();
            }
            if let Some(d) = slot.drive {
                d.abort();
            }
        }
        self.ready.clear();
        self.driving = 0;
    }

    /// The leader checks its lease; sweeps when it is time.
    async fn tick(&mut self, me: &ActorRef<EngineMsg>) {
        let Some(lease) = &self.lease else {
            return;
        };
        if !lease.held().await {
            tracing::warn!("workflow engine lost the lead");
            self.step_down();
            me.send_after(LEAD_RETRY, || EngineMsg::Lead);
            return;
        }
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.sweep(me).await;
        }
    }

    /// Follows the event log from its current end: events that may concern an instance are
    /// sent to the engine.
    async fn follow(&mut self, me: &ActorRef<EngineMsg>) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        let node = self.node.clone();
        let me = me.clone();
        self.follower = Some(tokio::spawn(async move {
            let after = match node.store.max_cursor().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "workflow engine cannot read the event log");
                    tokio::time::sleep(LEAD_RETRY).await;
                    let _ = me.cast(EngineMsg::FollowLost);
                    return;
                }
            };
            let mut events = node
                .hub
                .watch(node.store.clone(), EventFilter::default(), after, false);
            while let Some(e) = events.recv().await {
                match e {
                    Ok(e) if may_concern(&e) => {
                        if me.cast(EngineMsg::Event(Arc::new(e))).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "workflow engine's event stream failed");
                        break;
                    }
                }
            }
            tokio::time::sleep(LEAD_RETRY).await;
            let _ = me.cast(EngineMsg::FollowLost);
        }));
    }

    /// Drives every unfinished instance the store holds.
    async fn sweep(&mut self, me: &ActorRef<EngineMsg>) {
        self.last_sweep = tokio::time::Instant::now();
        match self.node.store.unfinished(Some(WORKFLOW_SUPERVISOR)).await {
            Ok(instances) => {
                if !instances.is_empty() {
                    tracing::info!(
                        instances = instances.len(),
                        "workflow engine drives unfinished instances"
                    );
                }
                for rec in instances {
                    self.touch(me, rec.id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "workflow engine cannot read unfinished instances"),
        }
    }

    /// The instances an event concerns, which the engine must drive: a new instance, a signal
    /// or a cancel of one, and the parent instance of a sub-task that ended (a child workflow
    /// instance is both: itself and its parent's step).
    fn concerned(&self, e: &TaskEvent) -> Vec<TaskId> {
        let mut ids = Vec::new();
        if cadre_workflow::workflow_of(&e.task_type).is_some() {
            let signal = e.is_progress && e.message.starts_with("signal ");
            if e.state == TaskState::Queued || e.state.is_terminal() || signal {
                ids.push(e.task_id);
            }
        }
        if let Some(parent) = e.parent_id
            && e.state.is_terminal()
            && !e.is_progress
            && self.slots.contains_key(&parent)
        {
            ids.push(parent);
        }
        ids
    }

    /// Queues a drive of instance `id` that reads it whole (or marks the running one to go
    /// again).
    fn touch(&mut self, me: &ActorRef<EngineMsg>, id: TaskId) {
        self.touch_with(me, id, None);
    }

    /// Queues a drive of instance `id` for the end of one of its sub-tasks (`news`), or for
    /// anything else (None).
    fn touch_with(&mut self, me: &ActorRef<EngineMsg>, id: TaskId, news: Option<Arc<TaskEvent>>) {
        if self.lease.is_none() {
            return;
        }
        let slot = self.slots.entry(id).or_default();
        match news {
            Some(e) if slot.news.len() < MAX_NEWS => slot.news.push(e),
            _ => slot.stale = true,
        }
        if slot.busy {
            slot.dirty = true;
        } else if !slot.queued {
            slot.queued = true;
            self.ready.push_back(id);
        }
        self.pump(me);
    }

    /// Starts queued drives while there is room.
    fn pump(&mut self, me: &ActorRef<EngineMsg>) {
        while self.driving < MAX_DRIVES {
            let Some(id) = self.ready.pop_front() else {
                return;
            };
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            slot.queued = false;
            slot.busy = true;
            self.driving += 1;
            let node = self.node.clone();
            let me = me.clone();
            let mut memory = std::mem::take(&mut slot.memory);
            memory.news = std::mem::take(&mut slot.news);
            memory.stale |= std::mem::take(&mut slot.stale);
            let task = tokio::spawn(async move {
                let next = std::panic::AssertUnwindSafe(node.drive(id, &mut memory))
                    .catch_unwind()
                    .await;
                let next = match next {
                    Ok(Ok(n)) => Ok(n),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the drive panicked".to_string()),
                };
                let _ = me.cast(EngineMsg::Driven(id, next, Box::new(memory)));
            });
            slot.drive = Some(task.abort_handle());
        }
    }

    /// A drive ended: forget the instance, or set its timer; drive again if touched meanwhile.
    fn driven(&mut self, me: &ActorRef<EngineMsg>, id: TaskId, next: Result<Next, String>, memory: Memory) {
        self.driving = self.driving.saturating_sub(1);
        let Some(slot) = self.slots.get_mut(&id) else {
            self.pump(me);
            return;
        };
        slot.busy = false;
        slot.drive = None;
        slot.memory = memory;
        let wake = match next {
            Ok(Next::Finished) => {
                if let Some(s) = self.slots.remove(&id)
                    && let Some((_, t)) = s.timer
                {
                    t.abort();
                }
                self.pump(me);
                return;
            }
            Ok(Next::WaitUntil(at)) => at,
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "workflow drive failed; retrying");
                Some(now_ms() + DRIVE_RETRY_MS)
            }
        };
        set_timer(slot, me, id, wake);
        if std::mem::take(&mut slot.dirty) {
            slot.queued = true;
            self.ready.push_back(id);
        }
        self.pump(me);
    }
}

/// Sets (or clears) the instance's timer to touch it at `at`.
fn set_timer(slot: &mut Slot, me: &ActorRef<EngineMsg>, id: TaskId, at: Option<i64>) {
    if let Some((when, _)) = &slot.timer
        && Some(*when) == at
    {
        return;
    }
    if let Some((_, t)) = slot.timer.take() {
        t.abort();
    }
    if let Some(at) = at {
        let me = me.clone();
        let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
        slot.timer = Some((
            at,
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = me.cast(EngineMsg::Touch(id));
            }),
        ));
    }
}

/// Whether an event may concern an instance (a cheap filter before the engine looks).
fn may_concern(e: &TaskEvent) -> bool {
    e.task_type.starts_with("workflow.") || (e.parent_id.is_some() && e.state.is_terminal())
}

/// The engine's supervisor: starts the engine and restarts it whenever it fails or stops
/// (unless the supervisor itself is stopping).
pub struct EngineSupervisor;

/// What the engine's supervisor is told.
pub enum SupervisorMsg {
    /// Start the engine (again).
    Spawn,
    /// The engine now, if it runs (for tests and status).
    Engine(RpcReplyPort<Option<ActorRef<EngineMsg>>>),
    /// How many times the engine was restarted.
    Restarts(RpcReplyPort<u64>),
}

/// The engine's supervisor's state.
pub struct SupervisorState {
    node: Arc<Node>,
    engine: Option<ActorRef<EngineMsg>>,
    restarts: u64,
}

impl Actor for EngineSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Node>;

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        node: Arc<Node>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let (engine, _) = Actor::spawn_linked(None, Engine, node.clone(), me.get_cell()).await?;
        Ok(SupervisorState {
            node,
            engine: Some(engine),
            restarts: 0,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Spawn if state.engine.is_none() => {
                match Actor::spawn_linked(None, Engine, state.node.clone(), me.get_cell()).await {
                    Ok((engine, _)) => state.engine = Some(engine),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the workflow engine; retrying");
                        me.send_after(RESTART_DELAY, || SupervisorMsg::Spawn);
                    }
                }
            }
            SupervisorMsg::Spawn => {}
            SupervisorMsg::Engine(reply) => {
                let _ = reply.send(state.engine.clone());
            }
            SupervisorMsg::Restarts(reply) => {
                let _ = reply.send(state.restarts);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let why = match evt {
            SupervisionEvent::ActorFailed(_, err) => err.to_string(),
            SupervisionEvent::ActorTerminated(_, _, reason) => reason.unwrap_or_else(|| "stopped".into()),
            _ => return Ok(()),
        };
        tracing::error!(reason = %why, "workflow engine exited; restarting it");
        state.engine = None;
        state.restarts += 1;
        metrics::counter!("cadre_workflow_engine_restarts_total").increment(1);
        me.send_after(RESTART_DELAY, || SupervisorMsg::Spawn);
        Ok(())
    }

    async fn post_stop(
        &self,
        _me: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(engine) = state.engine.take() {
            engine.stop(Some("shutdown".into()));
        }
        Ok(())
    }
}

/// Starts the workflow engine under its supervisor.
pub async fn spawn(node: Arc<Node>) -> Result<ActorRef<SupervisorMsg>, ractor::SpawnErr> {
    let (sup, _) = Actor::spawn(None, EngineSupervisor, node).await?;
    Ok(sup)
}
