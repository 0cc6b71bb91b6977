//! What every node-runtime test uses: an in-memory [`FakeTransport`] (work queues, cancels,
//! a publish whose durability the test controls, a dead-letter list), [`FakeAcker`]s that
//! record what the runtime answered about each message, [`FakePeers`] for delegation, test
//! executors, and a [`Setup`] that starts a [`NodeRuntime`] with a real actor tree on them.
//!
//! Time is paused (`start_paused`): the runtime's pull, heartbeat and retry timers and the
//! supervisors' timers are all `tokio::time`, so waits take no real time and [`PATIENCE`]
//! (virtual) runs out only when nothing is left to do.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cadre_agents::{ExecContext, ExecError, Executor, ExecutorRegistry};
use cadre_proto::v1;
use cadre_proto::{Priority, RetryPolicy, TaskId, TaskState};
use cadre_supervisors::node::wire::{EventMsg, WorkMsg};
use cadre_supervisors::node::{
    Acker, Cancel, DelegateToPeers, Delivery, NodeRuntime, NodeSettings, NodeSink, OnDurable, Outgoing,
    PeerDelegation, PeerError, TransportError, WorkQueue, WorkTransport,
};
use cadre_supervisors::{
    Orchestrator, OrchestratorArgs, RestartIntensity, Route, Router, RoutingTable, SupervisorSpec,
};
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

/// How long (virtual time) a test waits for something the runtime should do.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// The one local supervisor, and its pool.
pub const SUP: &str = "test";
const POOL: &str = "w";

/// Waits until `done` holds for what `rx` watches, or panics saying what it waited for.
async fn wait_for<T: std::fmt::Debug>(rx: &watch::Sender<T>, what: &str, done: impl Fn(&T) -> bool) {
    let mut sub = rx.subscribe();
    let reached = tokio::time::timeout(PATIENCE, async { sub.wait_for(|v| done(v)).await.is_ok() }).await;
    if !matches!(reached, Ok(true)) {
        panic!("timed out waiting for {what}; saw {:#?}", *rx.borrow());
    }
}

/// Lets every task that can run do so (time is paused: it advances only when all are idle).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

// ---------------------------------------------------------------------------------------------
// The transport

/// What the runtime said about one delivered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Ack,
    Nak,
    Progress,
    Term,
}

/// Records every answer about one delivery.
#[derive(Default)]
pub struct FakeAcker {
    log: watch::Sender<Vec<Answer>>,
}

impl FakeAcker {
    /// Every answer so far, in order.
    pub fn log(&self) -> Vec<Answer> {
        self.log.borrow().clone()
    }

    /// How many times the runtime answered `what`.
    pub fn count(&self, what: Answer) -> usize {
        self.log.borrow().iter().filter(|a| **a == what).count()
    }

    /// Waits until the runtime answered `what`.
    pub async fn wait(&self, what: Answer) {
        wait_for(&self.log, &format!("{what:?}"), |l| l.contains(&what)).await;
    }

    fn push(&self, a: Answer) -> Result<(), TransportError> {
        self.log.send_modify(|l| l.push(a));
        Ok(())
    }
}

#[async_trait]
impl Acker for FakeAcker {
    async fn ack(&self) -> Result<(), TransportError> {
        self.push(Answer::Ack)
    }
    async fn nak(&self) -> Result<(), TransportError> {
        self.push(Answer::Nak)
    }
    async fn progress(&self) -> Result<(), TransportError> {
        self.push(Answer::Progress)
    }
    async fn terminate(&self) -> Result<(), TransportError> {
        self.push(Answer::Term)
    }
}

/// An in-memory transport for the supervisor [`SUP`].
pub struct FakeTransport {
    waiting: Arc<Mutex<VecDeque<Delivery>>>,
    bell: Arc<Notify>,
    /// Deliveries handed to the runtime so far.
    fetched: Arc<AtomicUsize>,
    cancel_tx: mpsc::UnboundedSender<Cancel>,
    cancel_rx: Mutex<Option<mpsc::UnboundedReceiver<Cancel>>>,
    published: watch::Sender<Vec<Outgoing>>,
    durable: watch::Sender<bool>,
    dead: Mutex<Vec<(String, Bytes)>>,
}

impl FakeTransport {
    fn new() -> Arc<Self> {
        let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
        Arc::new(FakeTransport {
            waiting: Arc::default(),
            bell: Arc::default(),
            fetched: Arc::default(),
            cancel_tx,
            cancel_rx: Mutex::new(Some(cancel_rx)),
            published: watch::Sender::new(Vec::new()),
            durable: watch::Sender::new(true),
            dead: Mutex::default(),
        })
    }

    /// Delivers `payload` for the `delivered`-th time and rings the doorbell.
    pub fn deliver_raw(&self, payload: Bytes, delivered: u32) -> Arc<FakeAcker> {
        let acker = Arc::new(FakeAcker::default());
        self.waiting.lock().unwrap().push_back(Delivery {
            payload,
            delivered,
            acker: acker.clone(),
        });
        self.bell.notify_one();
        acker
    }

    /// Delivers `work` for the `delivered`-th time.
    pub fn deliver(&self, work: &WorkMsg, delivered: u32) -> Arc<FakeAcker> {
        self.deliver_raw(serde_json::to_vec(work).unwrap().into(), delivered)
    }

    /// Deliveries the runtime has taken.
    pub fn fetched(&self) -> usize {
        self.fetched.load(Ordering::SeqCst)
    }

    /// Broadcasts a cancel of `task_id`.
    pub fn cancel(&self, task_id: TaskId, reason: &str) {
        let _ = self.cancel_tx.send(Cancel {
            task_id,
            reason: reason.into(),
        });
    }

    /// Whether published events that end a task are reported durable (a batch holding one
    /// waits until this is true; the others are durable at once).
    pub fn set_durable(&self, on: bool) {
        self.durable.send_replace(on);
    }

    /// Every event published, in order.
    pub fn events(&self) -> Vec<EventMsg> {
        self.published.borrow().iter().map(|o| o.event.clone()).collect()
    }

    /// The (state, attempt, message) transitions published for `id`, in order.
    pub fn transitions(&self, id: TaskId) -> Vec<(TaskState, u32, String)> {
        transitions_of(&self.published.borrow(), id)
    }

    /// Waits until `id` reaches a terminal state and returns it.
    pub async fn terminal(&self, id: TaskId) -> (TaskState, u32, String) {
        let end = |p: &Vec<Outgoing>| transitions_of(p, id).into_iter().find(|t| t.0.is_terminal());
        wait_for(&self.published, &format!("{id} to finish"), |p| end(p).is_some()).await;
        end(&self.published.borrow()).expect("just seen")
    }

    /// Waits until `id` reaches `state`.
    pub async fn reached(&self, id: TaskId, state: TaskState) {
        wait_for(&self.published, &format!("{id} to reach {state:?}"), |p| {
            transitions_of(p, id).iter().any(|t| t.0 == state)
        })
        .await;
    }

    /// Messages copied to the dead-letter place: (supervisor, payload).
    pub fn dead(&self) -> Vec<(String, Bytes)> {
        self.dead.lock().unwrap().clone()
    }
}

fn transitions_of(published: &[Outgoing], id: TaskId) -> Vec<(TaskState, u32, String)> {
    published
        .iter()
        .filter_map(|o| match &o.event {
            EventMsg::Transition(t) if t.task_id == id => Some((t.state, t.attempt, t.message.clone())),
            _ => None,
        })
        .collect()
}

/// The fake's work queue of [`SUP`].
struct FakeQueue {
    waiting: Arc<Mutex<VecDeque<Delivery>>>,
    bell: Arc<Notify>,
    fetched: Arc<AtomicUsize>,
}

#[async_trait]
impl WorkQueue for FakeQueue {
    async fn fetch(&mut self, max: usize) -> Vec<Delivery> {
        let mut waiting = self.waiting.lock().unwrap();
        let n = max.min(waiting.len());
        self.fetched.fetch_add(n, Ordering::SeqCst);
        waiting.drain(..n).collect()
    }

    async fn wait_for_work(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.bell.notified()).await;
    }
}

#[async_trait]
impl WorkTransport for FakeTransport {
    async fn open(&self, supervisor: &str) -> Result<Box<dyn WorkQueue>, TransportError> {
        assert_eq!(supervisor, SUP);
        Ok(Box::new(FakeQueue {
            waiting: self.waiting.clone(),
            bell: self.bell.clone(),
            fetched: self.fetched.clone(),
        }))
    }

    async fn cancels(&self, _supervisor: &str) -> Result<BoxStream<'static, Cancel>, TransportError> {
        let rx = self.cancel_rx.lock().unwrap().take();
        let Some(rx) = rx else {
            return Err(TransportError("subscribed twice".into()));
        };
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|c| (c, rx))
        })))
    }

    async fn publish(&self, events: Vec<Outgoing>, durable: &dyn OnDurable) {
        self.published.send_modify(|p| p.extend(events.iter().cloned()));
        if events.iter().any(|o| o.event.terminal().is_some()) {
            let mut open = self.durable.subscribe();
            let _ = open.wait_for(|on| *on).await;
        }
        for o in &events {
            durable.durable(&o.event).await;
        }
    }

    async fn dead_letter(&self, supervisor: &str, payload: Bytes) {
        self.dead.lock().unwrap().push((supervisor.to_string(), payload));
    }

    fn connected(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Peers

/// A peer registry that answers every delegation with `answer` and keeps the requests.
pub struct FakePeers {
    pub answer: Mutex<Result<v1::Task, PeerError>>,
    pub asked: Mutex<Vec<(String, v1::DelegateRequest)>>,
}

impl FakePeers {
    fn new() -> Arc<Self> {
        Arc::new(FakePeers {
            answer: Mutex::new(Err(PeerError::NoNode)),
            asked: Mutex::default(),
        })
    }
}

#[async_trait]
impl PeerDelegation for FakePeers {
    async fn delegate(&self, supervisor: &str, request: v1::DelegateRequest) -> Result<v1::Task, PeerError> {
        self.asked.lock().unwrap().push((supervisor.to_string(), request));
        self.answer.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Executors

/// Counts its runs; returns `{"attempt": n}`.
#[derive(Default)]
pub struct Counted {
    runs: AtomicUsize,
}

impl Counted {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Executor for Counted {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(json!({ "attempt": ctx.attempt }))
    }
}

/// Runs until the test opens its gate (one permit per attempt) or the task is cancelled.
pub struct Gated {
    gate: Semaphore,
    running: AtomicUsize,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Gated {
            gate: Semaphore::new(0),
            running: AtomicUsize::new(0),
        })
    }

    /// Lets `n` more attempts finish.
    pub fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Attempts started so far.
    pub fn started(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Executor for Gated {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        self.running.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            p = self.gate.acquire() => p.expect("gate open").forget(),
            _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
        }
        Ok(json!({ "attempt": ctx.attempt }))
    }
}

/// Delegates `test.node.echo` with its own params and returns what comes back.
pub struct Delegating;

#[async_trait]
impl Executor for Delegating {
    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        ctx.delegate("test.node.echo", params).await
    }
}

// ---------------------------------------------------------------------------------------------
// The node

/// A started runtime with a real actor tree on a fake transport.
pub struct Node {
    pub runtime: Arc<NodeRuntime>,
    pub transport: Arc<FakeTransport>,
    pub peers: Arc<FakePeers>,
    /// Executor `echo` (type `test.node.echo`).
    pub echo: Arc<Counted>,
    /// Executor `gated` (type `test.node.gated`).
    pub gated: Arc<Gated>,
}

/// What node to start.
pub struct Setup {
    settings: NodeSettings,
    pool: usize,
}

impl Setup {
    /// Supervisor [`SUP`] with a pool of 4; 256 messages held at most, 5 deliveries, 30 s ack
    /// wait.
    pub fn new() -> Self {
        Setup {
            settings: NodeSettings {
                max_inflight: 256,
                max_deliver: 5,
                ack_wait: Duration::from_secs(30),
                pauses_wait: Duration::ZERO,
            },
            pool: 4,
        }
    }

    pub fn max_inflight(mut self, n: usize) -> Self {
        self.settings.max_inflight = n;
        self
    }

    pub fn ack_wait(mut self, d: Duration) -> Self {
        self.settings.ack_wait = d;
        self
    }

    pub async fn start(self) -> Node {
        let echo = Arc::new(Counted::default());
        let gated = Gated::new();
        let mut registry = ExecutorRegistry::new();
        registry.register("echo", echo.clone());
        registry.register("gated", gated.clone());
        registry.register("delegating", Arc::new(Delegating));
        let routes = ["echo", "gated", "delegating", "missing"]
            .map(|e| (format!("test.node.{e}"), route(e)))
            .into_iter()
            .collect();
        let router = Router::new(RoutingTable(routes), registry);
        let peers = FakePeers::new();
        let runtime = NodeRuntime::new(self.settings, router, vec![SUP.into()], peers.clone());
        let args = OrchestratorArgs {
            specs: BTreeMap::from([(
                SUP.to_string(),
                SupervisorSpec {
                    pools: BTreeMap::from([(POOL.to_string(), self.pool)]),
                    restart: RestartIntensity {
                        max_restarts: 10,
                        within_secs: 60,
                    },
                },
            )]),
            cancel_grace: Duration::from_secs(1),
            sink: Arc::new(NodeSink(runtime.clone())),
            recovery: runtime.clone(),
            delegate: Some(Arc::new(DelegateToPeers(Arc::downgrade(&runtime)))),
            gates: Default::default(),
        };
        let (orchestrator, _) = ractor::Actor::spawn(None, Orchestrator, args)
            .await
            .expect("actor tree starts");
        runtime.set_orchestrator(orchestrator);
        let transport = FakeTransport::new();
        runtime.run(transport.clone()).await;
        Node {
            runtime,
            transport,
            peers,
            echo,
            gated,
        }
    }
}

/// The route of `test.node.<executor>`.
pub fn route(executor: &str) -> Route {
    Route {
        supervisor: SUP.into(),
        worker: POOL.into(),
        executor: executor.into(),
    }
}

/// A task message for `executor` (type `test.node.<executor>`): no attempt started, 3
/// attempts.
pub fn work(executor: &str) -> WorkMsg {
    WorkMsg {
        id: TaskId::new(),
        tenant: "acme".into(),
        task_type: format!("test.node.{executor}"),
        supervisor: SUP.into(),
        worker_kind: POOL.into(),
        executor: executor.into(),
        params: json!({"n": 1}),
        priority: Priority::new(5).expect("valid"),
        timeout_ms: 3_600_000,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            retry_timeouts: false,
        },
        attempt: 0,
        verified: false,
        fortress: false,
        traceparent: None,
        concurrency_key: None,
    }
}

/// Tasks by id, for assertions on what the runtime holds.
pub async fn held(node: &Node) -> HashMap<TaskId, String> {
    use cadre_supervisors::TaskSource;
    node.runtime
        .unfinished(None)
        .await
        .expect("held tasks")
        .into_iter()
        .map(|(s, t)| (t.id, s))
        .collect()
}
