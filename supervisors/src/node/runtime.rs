//! The [`NodeRuntime`]: its state, how it starts, how it hands tasks to the local actor tree
//! and events to the transport, and how it stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use cadre_proto::{TaskId, TaskState};
use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot};

use crate::node::held::Held;
use crate::node::transport::{Acker, Outgoing, PeerDelegation, WorkTransport};
use crate::node::wire::EventMsg;
use crate::pause::PauseSet;
use crate::router::Router;
use crate::sink::Transition;
use crate::task::QueuedTask;
use crate::tree::{OrchestratorMsg, SourceError, TaskSource};

/// Events waiting for the transport before executors are made to wait.
pub(super) const EVENT_QUEUE: usize = 8192;

/// The bus settings a node runtime follows (from `[bus]`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSettings {
    /// Task messages one local supervisor holds at once, running and locally queued
    /// (`bus.max_inflight`).
    pub max_inflight: usize,
    /// Deliveries of one task message before it is dead-lettered (`bus.max_deliver`).
    pub max_deliver: u32,
    /// How long the transport waits for a message's ack before delivering it again
    /// (`bus.ack_wait_ms`); held messages get a heartbeat every third of it.
    pub ack_wait: Duration,
    /// How long the node waits, after it starts, for tier 0's pause set before it takes work
    /// anyway: so a task paused before this node (re)started is not run in the moment before
    /// the set arrives.
    pub pauses_wait: Duration,
}

impl NodeSettings {
    /// How often held messages are told the node still works on them: a third of the ack
    /// wait, at least 300 ms.
    pub fn heartbeat_every(&self) -> Duration {
        Duration::from_millis(self.ack_wait.as_millis() as u64 / 3).max(Duration::from_millis(300))
    }
}

/// The supervisor-node runtime (see the module docs of [`crate::node`]). Create with
/// [`NodeRuntime::new`], give it the local orchestrator actor
/// ([`NodeRuntime::set_orchestrator`]), then [`NodeRuntime::run`] once the transport is
/// connected.
pub struct NodeRuntime {
    pub(super) settings: NodeSettings,
    pub(super) router: Router,
    pub(super) supervisors: Vec<String>,
    pub(super) orchestrator: OnceLock<ActorRef<OrchestratorMsg>>,
    pub(super) held: Held,
    /// Callers of [`NodeRuntime::run_delegated`] waiting for their sub-task's end.
    pub(super) waiters: Mutex<HashMap<TaskId, oneshot::Sender<Transition>>>,
    pub(super) events: mpsc::Sender<Outgoing>,
    events_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    transport: OnceLock<Arc<dyn WorkTransport>>,
    pub(super) peers: Arc<dyn PeerDelegation>,
    /// The pauses tier 0 sent last, handed to the actor tree when it is set.
    pauses: Mutex<PauseSet>,
    /// Whether tier 0 has sent a pause set since this node started.
    pauses_known: tokio::sync::watch::Sender<bool>,
}

impl NodeRuntime {
    /// A runtime for the local `supervisors` (names), running tasks with `router`'s executors
    /// and delegating sub-tasks through `peers`.
    pub fn new(
        settings: NodeSettings,
        router: Router,
        supervisors: Vec<String>,
        peers: Arc<dyn PeerDelegation>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        Arc::new(NodeRuntime {
            settings,
            router,
            supervisors,
            orchestrator: OnceLock::new(),
            held: Held::default(),
            waiters: Mutex::new(HashMap::new()),
            events: tx,
            events_rx: Mutex::new(Some(rx)),
            transport: OnceLock::new(),
            peers,
            pauses: Mutex::new(PauseSet::default()),
            pauses_known: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The actor that runs this node's supervisors.
    pub fn set_orchestrator(&self, actor: ActorRef<OrchestratorMsg>) {
        let pauses = self.pauses.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !pauses.is_empty() {
            let _ = actor.cast(OrchestratorMsg::SetPauses(pauses));
        }
        let _ = self.orchestrator.set(actor);
    }

    /// The pauses in force (the whole set, as tier 0 keeps it): this node's supervisors leave
    /// the tasks they hold queued. Remembered, so a set that arrives before the actor tree is
    /// up applies when it is; supervisors restarted later get it from the tree.
    pub fn set_pauses(&self, pauses: PauseSet) {
        *self.pauses.lock().unwrap_or_else(|e| e.into_inner()) = pauses.clone();
        if let Some(o) = self.orchestrator.get() {
            let _ = o.cast(OrchestratorMsg::SetPauses(pauses));
        }
        self.pauses_known.send_replace(true);
    }

    /// Waits until tier 0 has sent its pause set, at most `settings.pauses_wait`.
    pub(super) async fn await_pauses(&self) {
        let mut known = self.pauses_known.subscribe();
        let wait = known.wait_for(|k| *k);
        if tokio::time::timeout(self.settings.pauses_wait, wait)
            .await
            .is_err()
        {
            tracing::warn!(
                waited_ms = self.settings.pauses_wait.as_millis() as u64,
                "no pause set from tier 0 yet; taking work without one"
            );
        }
    }

    /// The pauses this node applies now.
    pub fn pauses(&self) -> PauseSet {
        self.pauses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts pulling, publishing, heartbeating and listening for cancels over `transport`.
    /// Only the first call does anything.
    pub async fn run(self: &Arc<Self>, transport: Arc<dyn WorkTransport>) {
        if self.transport.set(transport.clone()).is_err() {
            tracing::warn!("the node runtime is running already");
            return;
        }
        if let Some(rx) = self.events_rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(self.clone().publish_events(transport.clone(), rx));
        }
        tokio::spawn(self.clone().heartbeat());
        for s in self.supervisors.clone() {
            tokio::spawn(self.clone().listen_cancels(transport.clone(), s.clone()));
            tokio::spawn(self.clone().pull(transport.clone(), s));
        }
    }

    /// Whether the node is connected and pulling.
    pub fn ready(&self) -> bool {
        self.transport.get().is_some_and(|t| t.connected())
    }

    /// The routes in force and the executors (intake checks of delegated sub-tasks use them).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The tenant of a task this node holds.
    pub fn tenant_of(&self, id: TaskId) -> Option<String> {
        self.held.lock().get(&id).map(|i| i.task.tenant.clone())
    }

    /// How many delegations task `id` (held by this node) is below its root, as far as this
    /// node knows (0 when not held).
    pub fn depth_of(&self, id: TaskId) -> u32 {
        self.held.lock().get(&id).map(|i| i.depth).unwrap_or(0)
    }

    /// Hands `task` to the local `supervisor`.
    pub(super) fn dispatch(&self, supervisor: &str, task: QueuedTask) {
        if let Some(o) = self.orchestrator.get() {
            let _ = o.cast(OrchestratorMsg::Dispatch {
                supervisor: supervisor.to_string(),
                task: Box::new(task),
            });
        }
    }

    /// Queues `event` for the transport; waits while the queue is full.
    pub(super) async fn emit(&self, supervisor: &str, event: EventMsg) {
        let out = Outgoing {
            supervisor: supervisor.to_string(),
            event,
        };
        if self.events.send(out).await.is_err() {
            tracing::warn!("event publisher stopped; event dropped (the task is redelivered)");
        }
    }

    /// Reports `task_id` FAILED on `attempt` with `why`.
    pub(super) async fn fail(&self, supervisor: &str, task_id: TaskId, attempt: u32, why: String) {
        let t = Transition::new(task_id, TaskState::Failed, attempt, why);
        self.emit(supervisor, EventMsg::Transition((&t).into())).await;
    }

    /// Waits (up to `grace`) until every queued event is handed to the transport.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.events.capacity() < self.events.max_capacity() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Asks the transport to deliver every held task again at once (graceful shutdown), so
    /// other replicas take them over without waiting for the ack wait.
    pub async fn release(&self) {
        let held: Vec<Arc<dyn Acker>> = self.held.lock().drain().filter_map(|(_, i)| i.acker).collect();
        for a in held {
            let _ = a.nak().await;
        }
    }
}

#[async_trait]
impl TaskSource for NodeRuntime {
    /// A restarted supervisor gets back the tasks this node still holds for it.
    async fn unfinished(&self, supervisor: Option<&str>) -> Result<Vec<(String, QueuedTask)>, SourceError> {
        Ok(self
            .held
            .lock()
            .values()
            .filter(|i| supervisor.is_none_or(|s| s == i.supervisor))
            .map(|i| (i.supervisor.clone(), i.task.clone()))
            .collect())
    }
}
