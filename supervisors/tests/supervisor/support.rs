//! What every supervisor test uses: a [`FakeSink`] that records what the supervisor reports,
//! executors that misbehave on purpose, and a [`Setup`] that spawns a supervisor around them.
//!
//! Every test runs with tokio's clock paused (`start_paused`). ractor's timers and the
//! supervisor's and worker's sleeps are all `tokio::time`, so they honour it: when every task is
//! idle the clock jumps to the next timer. Backoffs, timeouts and grace periods therefore take no
//! real time and are measured exactly, and [`PATIENCE`] (virtual) can only run out when the
//! supervisor has nothing left to do, so a broken supervisor fails a test at once instead of
//! hanging it, and a loaded machine cannot make a wait expire early.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor, Usage};
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{Priority, RetryPolicy, TaskId, TaskState};
use cadre_supervisors::{
    QueuedTask, RestartIntensity, Supervisor, SupervisorArgs, SupervisorMsg, SupervisorSpec, TaskSink,
    Transition,
};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// How long (virtual time) a test waits for something the supervisor should do.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// A timeout no test attempt reaches unless it is meant to.
pub const NO_TIMEOUT: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// The sink

/// One thing the supervisor reported, in the order it reported it.
#[derive(Clone, Debug)]
pub enum Event {
    /// A transition, and when (virtual time) it was recorded.
    Transition(Seen),
    /// Progress of an attempt.
    Progress {
        task_id: TaskId,
        attempt: u32,
        fraction: f64,
        message: String,
    },
    /// Tokens a task used.
    Usage { task_id: TaskId, usage: Usage },
}

/// A recorded transition.
#[derive(Clone, Debug)]
pub struct Seen {
    pub transition: Transition,
    pub at: Instant,
}

impl Seen {
    pub fn state(&self) -> TaskState {
        self.transition.state
    }
    pub fn attempt(&self) -> u32 {
        self.transition.attempt
    }
    pub fn message(&self) -> &str {
        &self.transition.message
    }
}

/// A [`TaskSink`] that keeps everything it is told, and lets a test wait for what it expects.
pub struct FakeSink {
    events: watch::Sender<Vec<Event>>,
}

impl FakeSink {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeSink {
            events: watch::Sender::new(Vec::new()),
        })
    }

    fn push(&self, event: Event) {
        self.events.send_modify(|events| events.push(event));
    }

    /// Everything reported so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.borrow().clone()
    }

    /// The transitions of one task, in order.
    pub fn transitions(&self, id: TaskId) -> Vec<Seen> {
        transitions_of(&self.events.borrow(), id)
    }

    /// The (state, attempt) sequence of one task.
    pub fn states(&self, id: TaskId) -> Vec<(TaskState, u32)> {
        self.transitions(id)
            .iter()
            .map(|s| (s.state(), s.attempt()))
            .collect()
    }

    /// Waits until `done` holds for the events, or panics after [`PATIENCE`] saying what it
    /// waited for and what it saw.
    pub async fn wait_until(&self, what: &str, mut done: impl FnMut(&[Event]) -> bool) {
        let mut rx = self.events.subscribe();
        // The borrow `wait_for` returns is dropped at once: holding it would block the sink.
        let reached = tokio::time::timeout(PATIENCE, async { rx.wait_for(|e| done(e)).await.is_ok() }).await;
        if !matches!(reached, Ok(true)) {
            panic!(
                "timed out waiting for {what}; the sink saw:\n{:#?}",
                self.events()
            );
        }
    }

    /// Waits for `id` to reach `state` on `attempt` and returns that transition.
    pub async fn reached(&self, id: TaskId, state: TaskState, attempt: u32) -> Seen {
        let find = |events: &[Event]| {
            transitions_of(events, id)
                .into_iter()
                .find(|s| s.state() == state && s.attempt() == attempt)
        };
        let what = format!("{id} to reach {} on attempt {attempt}", state.as_str());
        self.wait_until(&what, |e| find(e).is_some()).await;
        find(&self.events.borrow()).expect("just seen")
    }

    /// Waits for `id`'s first terminal transition and returns it.
    pub async fn terminal(&self, id: TaskId) -> Seen {
        let find = |events: &[Event]| {
            transitions_of(events, id)
                .into_iter()
                .find(|s| s.state().is_terminal())
        };
        self.wait_until(&format!("{id} to finish"), |e| find(e).is_some())
            .await;
        find(&self.events.borrow()).expect("just seen")
    }
}

fn transitions_of(events: &[Event], id: TaskId) -> Vec<Seen> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transition(s) if s.transition.task_id == id => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl TaskSink for FakeSink {
    async fn record(&self, transition: Transition) {
        self.push(Event::Transition(Seen {
            transition,
            at: Instant::now(),
        }));
    }

    fn progress(&self, task_id: TaskId, attempt: u32, fraction: f64, message: String) {
        self.push(Event::Progress {
            task_id,
            attempt,
            fraction,
            message,
        });
    }

    fn usage(&self, task_id: TaskId, usage: Usage) {
        self.push(Event::Usage { task_id, usage });
    }
}

// ---------------------------------------------------------------------------------------------
// Executors

/// Fails with a retryable error on its first `failures` attempts, then returns
/// `{"attempt": n}`.
pub struct Flaky {
    pub failures: u32,
}

#[async_trait]
impl Executor for Flaky {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        if ctx.attempt <= self.failures {
            return Err(ExecError::Retryable(format!("flaky on attempt {}", ctx.attempt)));
        }
        Ok(json!({ "attempt": ctx.attempt }))
    }
}

/// An executor that succeeds at once.
pub fn ok() -> Arc<dyn Executor> {
    Arc::new(Flaky { failures: 0 })
}

/// Fails every attempt with this error.
struct Fails(ExecError);

#[async_trait]
impl Executor for Fails {
    async fn execute(&self, _ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        Err(self.0.clone())
    }
}

/// An executor that fails every attempt with `error`.
pub fn fails(error: ExecError) -> Arc<dyn Executor> {
    Arc::new(Fails(error))
}

/// Waits for its cancel token, then stops as asked (a cooperative executor).
pub struct UntilCancelled;

#[async_trait]
impl Executor for UntilCancelled {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        ctx.cancel.cancelled().await;
        Err(ExecError::Cancelled)
    }
}

/// Never returns and ignores cancel: only the attempt's timeout or the cancel grace ends it.
pub struct Hangs;

#[async_trait]
impl Executor for Hangs {
    async fn execute(&self, _ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        std::future::pending().await
    }
}

/// Panics on its first `panics` attempts (taking its worker down), then succeeds. With
/// `on_cancel` it waits for the cancel token before panicking.
pub struct Panics {
    pub panics: u32,
    pub on_cancel: bool,
}

#[async_trait]
impl Executor for Panics {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        if ctx.attempt > self.panics {
            return Ok(json!({ "attempt": ctx.attempt }));
        }
        if self.on_cancel {
            ctx.cancel.cancelled().await;
        }
        panic!("test executor panics on attempt {}", ctx.attempt);
    }
}

/// Reports progress and usage, fails its first attempt (retryable) and succeeds on the second.
pub struct Reports;

#[async_trait]
impl Executor for Reports {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        ctx.progress(0.5 * ctx.attempt as f64, format!("step {}", ctx.attempt));
        ctx.usage(Usage {
            model: "m".into(),
            tokens_in: ctx.attempt as u64,
            tokens_out: 1,
            ..Default::default()
        });
        if ctx.attempt == 1 {
            return Err(ExecError::Retryable("try again".into()));
        }
        Ok(json!("done"))
    }
}

/// Runs until the test opens its gate (one permit per attempt), counting how many of its
/// attempts run at once. An attempt whose future is dropped (worker killed) stops counting.
pub struct Gated {
    gate: Semaphore,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Gated {
    pub fn new() -> Arc<Self> {
        Arc::new(Gated {
            gate: Semaphore::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        })
    }

    /// Lets `n` more attempts finish.
    pub fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Attempts running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// The most attempts that ever ran at once.
    pub fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }
}

struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Executor for Gated {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(&self.running);
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.gate.acquire().await.expect("gate open").forget();
        Ok(json!({ "attempt": ctx.attempt }))
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks and supervisors

/// A new task of `tenant` for pool `kind`: priority 5, no timeout to speak of, 3 attempts with
/// a 100 ms backoff doubling up to 1 s.
pub fn task(kind: &str, tenant: &str, executor: Arc<dyn Executor>) -> QueuedTask {
    QueuedTask {
        id: TaskId::new(),
        tenant: tenant.into(),
        task_type: "test.task".into(),
        worker_kind: kind.into(),
        executor,
        params: json!({}),
        priority: Priority::new(5).expect("valid"),
        timeout: NO_TIMEOUT,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            retry_timeouts: false,
        },
        attempts_started: 0,
        verified: false,
        fortress: false,
        traceparent: None,
        concurrency_key: None,
        rate_limited: 0,
    }
}

/// What supervisor to spawn.
pub struct Setup {
    pools: Vec<(String, usize)>,
    restart: RestartIntensity,
    cancel_grace: Duration,
    gates: cadre_supervisors::Gates,
}

impl Setup {
    /// A supervisor `test` with these pools, a restart intensity of 10 in 60 s and a 1 s grace.
    pub fn new(pools: &[(&str, usize)]) -> Self {
        Setup {
            pools: pools.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            restart: RestartIntensity {
                max_restarts: 10,
                within_secs: 60,
            },
            cancel_grace: Duration::from_secs(1),
            gates: Default::default(),
        }
    }

    /// Weights, key limits, rate-limit bounds and pauses to start with.
    pub fn gates(mut self, gates: cadre_supervisors::Gates) -> Self {
        self.gates = gates;
        self
    }

    pub fn restarts(mut self, max_restarts: u32, within_secs: u64) -> Self {
        self.restart = RestartIntensity {
            max_restarts,
            within_secs,
        };
        self
    }

    pub fn grace(mut self, cancel_grace: Duration) -> Self {
        self.cancel_grace = cancel_grace;
        self
    }

    pub async fn spawn(self) -> Harness {
        self.spawn_linked(None).await
    }

    /// Spawns the supervisor linked under `parent`, which then sees how it exits.
    pub async fn spawn_linked(self, parent: Option<ActorCell>) -> Harness {
        let sink = FakeSink::new();
        let args = SupervisorArgs {
            name: "test".into(),
            spec: SupervisorSpec {
                pools: self.pools.into_iter().collect(),
                restart: self.restart,
            },
            sink: sink.clone(),
            cancel_grace: self.cancel_grace,
            delegate: None,
            gates: self.gates,
        };
        let (sup, _) = match parent {
            Some(parent) => Actor::spawn_linked(None, Supervisor, args, parent).await,
            None => Actor::spawn(None, Supervisor, args).await,
        }
        .expect("supervisor starts");
        Harness { sup, sink }
    }
}

/// A running supervisor and what it reported.
pub struct Harness {
    pub sup: ActorRef<SupervisorMsg>,
    pub sink: Arc<FakeSink>,
}

impl Harness {
    pub fn enqueue(&self, task: QueuedTask) -> TaskId {
        let id = task.id;
        self.sup
            .cast(SupervisorMsg::Enqueue(Box::new(task)))
            .expect("supervisor alive");
        id
    }

    /// Enqueues `task` and waits until its first attempt runs.
    pub async fn start(&self, task: QueuedTask) -> TaskId {
        let id = self.enqueue(task);
        self.sink.reached(id, TaskState::Running, 1).await;
        id
    }

    /// Occupies `n` workers of pool `kind` with tasks that run until the returned gate opens.
    pub async fn occupy(&self, kind: &str, n: usize) -> (Arc<Gated>, Vec<TaskId>) {
        let gate = Gated::new();
        let ids: Vec<TaskId> = (0..n)
            .map(|_| self.enqueue(task(kind, "acme", gate.clone())))
            .collect();
        for id in &ids {
            self.sink.reached(*id, TaskState::Running, 1).await;
        }
        (gate, ids)
    }

    pub fn cancel(&self, task_id: TaskId, reason: &str) {
        let reason = reason.to_string();
        self.sup
            .cast(SupervisorMsg::Cancel { task_id, reason })
            .expect("supervisor alive");
    }

    /// The supervisor's status. Also a barrier: everything sent before it has been handled.
    pub async fn status(&self) -> SupervisorStatus {
        ractor::call!(self.sup, SupervisorMsg::Status).expect("supervisor answers")
    }

    pub async fn pool(&self, kind: &str) -> PoolStatus {
        let status = self.status().await;
        status
            .pools
            .into_iter()
            .find(|p| p.worker_kind == kind)
            .unwrap_or_else(|| panic!("no pool {kind}"))
    }

    pub async fn scale(&self, kind: &str, size: usize, create: bool) -> Result<PoolStatus, String> {
        let kind = kind.to_string();
        ractor::call!(self.sup, |reply| SupervisorMsg::Scale {
            kind,
            size,
            create,
            reply
        })
        .expect("supervisor answers")
    }

    /// Lets a minute (virtual) pass, so every pending backoff fires, then waits until the
    /// supervisor has handled what followed.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_secs(60)).await;
        self.status().await;
    }
}

/// Waits (virtual time, polling) until `cond` holds, or panics after [`PATIENCE`]. For what the
/// sink does not see, such as an executor's future being dropped.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(PATIENCE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    polled
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Asserts that `text` contains `part`, showing `text` if not.
#[track_caller]
pub fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{text:?} does not contain {part:?}");
}

/// How a child of a [`Parent`] ended: stopped (with its reason), or failed (with its error).
pub type Exit = Result<Option<String>, String>;

/// A parent actor that reports how its children exit.
pub struct Parent;

impl Parent {
    pub async fn spawn() -> (ActorRef<()>, mpsc::UnboundedReceiver<Exit>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (parent, _) = Actor::spawn(None, Parent, tx).await.expect("parent starts");
        (parent, rx)
    }
}

impl Actor for Parent {
    type Msg = ();
    type State = mpsc::UnboundedSender<Exit>;
    type Arguments = mpsc::UnboundedSender<Exit>;

    async fn pre_start(
        &self,
        _me: ActorRef<()>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<()>,
        evt: SupervisionEvent,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let exit = match evt {
            SupervisionEvent::ActorFailed(_, err) => Err(err.to_string()),
            SupervisionEvent::ActorTerminated(_, _, reason) => Ok(reason),
            _ => return Ok(()),
        };
        let _ = tx.send(exit);
        Ok(())
    }
}
