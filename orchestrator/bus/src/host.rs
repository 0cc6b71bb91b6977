//! Distributed mode, supervisor side: a supervisor node pulls tasks for its supervisors from
//! the JetStream work stream, runs them on the same Supervisor actors as the embedded mode,
//! and publishes every transition, progress report and usage record to the events stream.
//!
//! - Capacity: each local supervisor holds at most `bus.max_inflight` task messages; it pulls
//!   only when it has room, high band first, then normal, then low.
//! - A task message is acked only after the task's terminal event is acknowledged by
//!   JetStream; while it runs, in-progress heartbeats (every third of `bus.ack_wait_ms`) keep
//!   it from being redelivered. If this node dies, the message is redelivered to another
//!   replica after AckWait: each earlier delivery counts as a lost attempt, and a task out of
//!   attempts fails ("worker lost").
//! - After `bus.max_deliver` deliveries the message goes to the dead-letter subject and the
//!   task FAILS with reason `dead-lettered`, without running again.
//! - Cancels arrive on a core-NATS subject per supervisor; the replica holding the task stops
//!   it, the others remember it so they never start it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use async_trait::async_trait;
use cadre_agents::{ExecError, ExecutorRegistry};
use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_supervisors::{QueuedTask, TaskSink, Transition};
use futures::StreamExt;
use ractor::ActorRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::config::BusConfig;
use crate::conn::Conn;
use crate::error::BusError;
use crate::peers::Peers;
use crate::wire::{self, CancelMsg, EventMsg, WorkMsg};
use cadre_supervisors::{OrchestratorMsg, SharedRoutes, SourceError, TaskSource};

/// Events waiting for NATS before executors are made to wait.
const EVENT_QUEUE: usize = 8192;
/// Cancelled task ids remembered by replicas that did not hold them.
const CANCELLED_MEMORY: usize = 10_000;
/// Most task messages pulled in one request.
const PULL_BATCH: usize = 64;
/// Longest one pull request may take before it is given up and sent again.
const FETCH_PATIENCE: Duration = Duration::from_secs(5);

struct Inflight {
    supervisor: String,
    task: QueuedTask,
    /// None for sub-tasks delegated to this node directly (not from the work stream).
    acker: Option<Arc<jetstream::message::Acker>>,
    _permit: Option<OwnedSemaphorePermit>,
}

struct Outgoing {
    supervisor: String,
    event: EventMsg,
}

/// The supervisor-node runtime. Create with [`Host::new`], give it the local orchestrator
/// actor ([`Host::set_orchestrator`]), then [`Host::run`] once NATS is reachable.
pub struct Host {
    cfg: BusConfig,
    registry: ExecutorRegistry,
    routes: SharedRoutes,
    supervisors: Vec<String>,
    orchestrator: OnceLock<ActorRef<OrchestratorMsg>>,
    inflight: Mutex<HashMap<TaskId, Inflight>>,
    cancelled: Mutex<(HashSet<TaskId>, VecDeque<TaskId>)>,
    waiters: Mutex<HashMap<TaskId, oneshot::Sender<Transition>>>,
    events: mpsc::Sender<Outgoing>,
    events_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    ready: AtomicBool,
    /// The registry of peers (for delegation).
    pub peers: Peers,
}

impl Host {
    /// A runtime for `supervisors` (names), executing with `registry`.
    pub fn new(
        cfg: BusConfig,
        registry: ExecutorRegistry,
        routes: SharedRoutes,
        supervisors: Vec<String>,
        peers: Peers,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        Arc::new(Host {
            cfg,
            registry,
            routes,
            supervisors,
            orchestrator: OnceLock::new(),
            inflight: Mutex::new(HashMap::new()),
            cancelled: Mutex::new((HashSet::new(), VecDeque::new())),
            waiters: Mutex::new(HashMap::new()),
            events: tx,
            events_rx: Mutex::new(Some(rx)),
            ready: AtomicBool::new(false),
            peers,
        })
    }

    /// The actor that runs this node's supervisors.
    pub fn set_orchestrator(&self, actor: ActorRef<OrchestratorMsg>) {
        let _ = self.orchestrator.set(actor);
    }

    /// Whether the node is connected and pulling.
    pub fn ready(&self, conn: Option<&Conn>) -> bool {
        self.ready.load(Ordering::Relaxed)
            && conn.is_some_and(|c| c.client.connection_state() == async_nats::connection::State::Connected)
    }

    /// Starts pulling, publishing, heartbeating and listening for cancels.
    pub async fn run(self: &Arc<Self>, conn: Conn) {
        if let Some(rx) = self.events_rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(self.clone().publish_events(conn.clone(), rx));
        }
        tokio::spawn(self.clone().heartbeat());
        for s in self.supervisors.clone() {
            tokio::spawn(self.clone().listen_cancels(conn.clone(), s.clone()));
            tokio::spawn(self.clone().pull(conn.clone(), s));
        }
        self.ready.store(true, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Inflight>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dispatch(&self, supervisor: &str, task: QueuedTask) {
        if let Some(o) = self.orchestrator.get() {
            let _ = o.cast(OrchestratorMsg::Dispatch {
                supervisor: supervisor.to_string(),
                task: Box::new(task),
            });
        }
    }

    async fn emit(&self, supervisor: &str, event: EventMsg) {
        let out = Outgoing {
            supervisor: supervisor.to_string(),
            event,
        };
        if self.events.send(out).await.is_err() {
            tracing::warn!("event publisher stopped; event dropped (the task is redelivered)");
        }
    }

    async fn fail(&self, supervisor: &str, task_id: TaskId, attempt: u32, why: String) {
        let t = Transition::new(task_id, TaskState::Failed, attempt, why);
        self.emit(supervisor, EventMsg::Transition((&t).into())).await;
    }

    /// Pull loop of one supervisor: waits for room, takes what is there high band first, and
    /// when every band is empty waits for the doorbell (or a second) before looking again.
    async fn pull(self: Arc<Self>, conn: Conn, supervisor: String) {
        let sem = Arc::new(Semaphore::new(self.cfg.max_inflight));
        let consumers = loop {
            match self.consumers(&conn, &supervisor).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(%supervisor, error = %e, "cannot create work consumers; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut doorbell = conn.client.subscribe(conn.names.doorbell(&supervisor)).await.ok();
        loop {
            let Ok(first) = sem.clone().acquire_owned().await else {
                return;
            };
            let mut permits = vec![first];
            while permits.len() < PULL_BATCH {
                match sem.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let mut got = Vec::new();
            for c in &consumers {
                let room = permits.len() - got.len();
                if room == 0 {
                    break;
                }
                // Bounded: a pull whose answer was lost with the connection must not hang the
                // loop (what arrived before the cut is kept; the rest is redelivered).
                let fetched = tokio::time::timeout(FETCH_PATIENCE, async {
                    match c.fetch().max_messages(room).messages().await {
                        Ok(mut batch) => {
                            while let Some(m) = batch.next().await {
                                match m {
                                    Ok(m) => got.push(m),
                                    Err(e) => tracing::debug!(error = %e, "pull: message error"),
                                }
                            }
                            true
                        }
                        Err(e) => {
                            tracing::warn!(%supervisor, error = %e, "pull failed; NATS unreachable?");
                            false
                        }
                    }
                })
                .await;
                if !matches!(fetched, Ok(true)) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if got.is_empty() {
                drop(permits);
                // Drain rings that arrived while busy, then wait for the next (or poll).
                if let Some(bell) = doorbell.as_mut() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), bell.next()).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
            for (m, permit) in got.into_iter().zip(permits) {
                self.take(&conn, &supervisor, m, permit).await;
            }
        }
    }

    async fn consumers(&self, conn: &Conn, supervisor: &str) -> anyhow::Result<Vec<consumer::PullConsumer>> {
        let stream = conn.js.get_stream(conn.names.work_stream()).await?;
        let mut out = Vec::new();
        for band in wire::BANDS {
            let name = conn.names.work_consumer(supervisor, band);
            let c = stream
                .get_or_create_consumer(
                    &name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: conn.names.work_subject(supervisor, band),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_millis(self.cfg.ack_wait_ms),
                        // One more than allowed: the last delivery only dead-letters.
                        max_deliver: self.cfg.max_deliver as i64 + 1,
                        max_ack_pending: 100_000,
                        ..Default::default()
                    },
                )
                .await?;
            out.push(c);
        }
        Ok(out)
    }

    /// One delivered task message.
    async fn take(&self, conn: &Conn, supervisor: &str, m: jetstream::Message, permit: OwnedSemaphorePermit) {
        let delivered = m.info().map(|i| i.delivered).unwrap_or(1).max(1) as u32;
        let payload = m.payload.clone();
        let (_, acker) = m.split();
        let acker = Arc::new(acker);
        let work: WorkMsg = match serde_json::from_slice(&payload) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(%supervisor, error = %e, "undecodable task message; dead-lettered");
                let _ = conn
                    .js
                    .publish(conn.names.dead_subject(supervisor), payload)
                    .await;
                let _ = acker.ack_with(AckKind::Term).await;
                return;
            }
        };
        let id = work.id;
        if self.was_cancelled(id) {
            let _ = acker.ack().await;
            return;
        }
        {
            let mut inflight = self.lock();
            if let Some(existing) = inflight.get_mut(&id) {
                // Redelivered while still running here (a missed heartbeat): keep running it,
                // ack the newest delivery when it finishes.
                existing.acker = Some(acker);
                return;
            }
        }
        if delivered > self.cfg.max_deliver {
            tracing::warn!(task_id = %id, delivered, "task dead-lettered");
            let _ = conn
                .js
                .publish(conn.names.dead_subject(supervisor), payload)
                .await;
            let why = format!("dead-lettered after {} deliveries", delivered - 1);
            let attempt = work.attempt + delivered - 1;
            match work.queued(&self.registry, work.attempt) {
                // Held first, so the publisher finds it and acks once the FAILED event is durable.
                Some(task) => {
                    self.hold(supervisor, task, acker, permit);
                    self.fail(supervisor, id, attempt, why).await;
                }
                None => {
                    self.fail(supervisor, id, attempt, why).await;
                    let _ = acker.ack_with(AckKind::Term).await;
                }
            }
            return;
        }
        // Every earlier delivery may have started an attempt on a replica that is gone.
        let started = work.attempt + delivered - 1;
        let Some(task) = work.queued(&self.registry, started) else {
            self.fail(
                supervisor,
                id,
                started,
                format!("executor {} is not available on this node", work.executor),
            )
            .await;
            let _ = acker.ack().await;
            return;
        };
        if delivered > 1 {
            let lost = format!("worker lost during attempt {started}");
            if started >= task.retry.max_attempts {
                // Held first, so the publisher finds it and acks once the FAILED event is durable.
                self.hold(supervisor, task, acker, permit);
                self.fail(supervisor, id, started, lost).await;
                return;
            }
            let t = Transition::new(id, TaskState::Retrying, started, format!("{lost}; redelivered"));
            self.emit(supervisor, EventMsg::Transition((&t).into())).await;
        }
        self.hold(supervisor, task.clone(), acker, permit);
        self.dispatch(supervisor, task);
    }

    /// Holds a delivered task message until its terminal event is published.
    fn hold(
        &self,
        supervisor: &str,
        task: QueuedTask,
        acker: Arc<jetstream::message::Acker>,
        permit: OwnedSemaphorePermit,
    ) {
        self.lock().insert(
            task.id,
            Inflight {
                supervisor: supervisor.to_string(),
                task,
                acker: Some(acker),
                _permit: Some(permit),
            },
        );
    }

    fn was_cancelled(&self, id: TaskId) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains(&id)
    }

    async fn listen_cancels(self: Arc<Self>, conn: Conn, supervisor: String) {
        let mut sub = loop {
            match conn
                .client
                .subscribe(conn.names.cancel_subject(&supervisor))
                .await
            {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to cancels; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        while let Some(msg) = sub.next().await {
            let Ok(c) = serde_json::from_slice::<CancelMsg>(&msg.payload) else {
                continue;
            };
            let held = self.lock().contains_key(&c.task_id);
            if held {
                if let Some(o) = self.orchestrator.get() {
                    let _ = o.cast(OrchestratorMsg::Cancel {
                        supervisor: supervisor.clone(),
                        task_id: c.task_id,
                        reason: c.reason,
                    });
                }
            } else {
                let mut set = self.cancelled.lock().unwrap_or_else(|e| e.into_inner());
                if set.0.insert(c.task_id) {
                    set.1.push_back(c.task_id);
                    if set.1.len() > CANCELLED_MEMORY
                        && let Some(old) = set.1.pop_front()
                    {
                        set.0.remove(&old);
                    }
                }
            }
        }
    }

    /// Keeps running tasks' messages from being redelivered.
    async fn heartbeat(self: Arc<Self>) {
        let every = Duration::from_millis(self.cfg.ack_wait_ms / 3).max(Duration::from_millis(300));
        loop {
            tokio::time::sleep(every).await;
            let ackers: Vec<_> = self.lock().values().filter_map(|i| i.acker.clone()).collect();
            for a in ackers {
                let _ = a.ack_with(AckKind::Progress).await;
            }
        }
    }

    /// Publishes events pipelined, packed into as few messages as keep their order (see
    /// [`wire::pack_events`]: a fast task's RUNNING and SUCCEEDED usually travel together);
    /// retries what NATS did not take, under the same message ids. Once a terminal event is
    /// durable, its task message is acked and local waiters are answered. An event larger than
    /// the server's `max_payload` is never retried: a terminal one is published as FAILED
    /// without its result ([`EventMsg::shrunk_for_bus`]), others are dropped (logged).
    async fn publish_events(self: Arc<Self>, conn: Conn, mut rx: mpsc::Receiver<Outgoing>) {
        let mut batch = Vec::with_capacity(256);
        while rx.recv_many(&mut batch, 256).await > 0 {
            let limit = wire::pack_limit(conn.client.server_info().max_payload);
            let mut packs = wire::pack_events(batch.drain(..).map(|o| (o.supervisor, o.event)), limit);
            let mut delay = Duration::from_millis(50);
            loop {
                let mut acks = Vec::with_capacity(packs.len());
                // Not sent: from the first pack NATS refused on, in order, so nothing is
                // published ahead of an event that precedes it.
                let mut unsent = Vec::new();
                let mut packs_left = packs.drain(..);
                for p in packs_left.by_ref() {
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(p.body.clone())
                        .message_id(p.msg_id.clone());
                    match conn
                        .js
                        .send_publish(conn.names.events_subject(&p.supervisor), publish)
                        .await
                    {
                        Ok(ack) => acks.push((p, ack)),
                        Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                            unsent.extend(wire::refit_for_bus(p, &e.to_string(), limit));
                            break;
                        }
                        Err(_) => {
                            unsent.push(p);
                            break;
                        }
                    }
                }
                unsent.extend(packs_left);
                let mut failed = Vec::new();
                for (p, ack) in acks {
                    match ack.await {
                        Ok(_) => {
                            for e in &p.events {
                                self.published(e).await;
                            }
                        }
                        Err(_) => failed.push(p),
                    }
                }
                failed.extend(unsent);
                if failed.is_empty() {
                    break;
                }
                tracing::warn!(
                    messages = failed.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "NATS did not take events; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                packs = failed;
            }
        }
    }

    async fn published(&self, event: &EventMsg) {
        let EventMsg::Transition(t) = event else { return };
        if !t.state.is_terminal() {
            return;
        }
        let done = self.lock().remove(&t.task_id);
        if let Some(Inflight { acker: Some(a), .. }) = &done
            && let Err(e) = a.ack().await
        {
            tracing::debug!(task_id = %t.task_id, error = %e, "ack failed; the task may be redelivered (stored once)");
        }
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&t.task_id);
        if let Some(w) = waiter {
            let _ = w.send(t.clone().into());
        }
    }

    /// Runs a sub-task delegated to this node: stores it through the events stream (so tier 0
    /// knows it before it runs), runs it here and waits for its terminal transition.
    pub async fn run_delegated(
        &self,
        record: TaskRecord,
        executor: &str,
        wait: Duration,
    ) -> Result<Transition, BusError> {
        let supervisor = record.supervisor.clone();
        if !self.supervisors.contains(&supervisor) {
            return Err(BusError::FailedPrecondition(format!(
                "supervisor {supervisor} does not run on this node"
            )));
        }
        let Some(executor) = self.registry.get(executor) else {
            return Err(BusError::Unavailable(format!(
                "executor {executor} is not available here"
            )));
        };
        let task = QueuedTask {
            id: record.id,
            tenant: record.tenant.clone(),
            task_type: record.spec.task_type.clone(),
            worker_kind: record.worker_kind.clone(),
            executor,
            params: record.spec.params.clone(),
            priority: record.spec.priority,
            timeout: record.spec.timeout,
            retry: record.spec.retry.clone(),
            attempts_started: 0,
            verified: record.spec.security_level != cadre_proto::SecurityLevel::Standard,
            fortress: record.spec.security_level == cadre_proto::SecurityLevel::Fortress,
            traceparent: cadre_trace::current_traceparent(),
        };
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.id, tx);
        let id = record.id;
        self.emit(
            &supervisor,
            EventMsg::Insert {
                record: Box::new(record),
            },
        )
        .await;
        self.lock().insert(
            id,
            Inflight {
                supervisor: supervisor.clone(),
                task: task.clone(),
                acker: None,
                _permit: None,
            },
        );
        self.dispatch(&supervisor, task);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(_)) => Err(BusError::Unavailable("node stopping".into())),
            Err(_) => {
                self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Err(BusError::DeadlineExceeded(format!(
                    "sub-task {id} did not finish in time; it goes on"
                )))
            }
        }
    }

    /// The tenant of a task this node holds.
    pub fn tenant_of(&self, id: TaskId) -> Option<String> {
        self.lock().get(&id).map(|i| i.task.tenant.clone())
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<cadre_supervisors::RoutingTable> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (up to `grace`) until every queued event is published.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.events.capacity() < self.events.max_capacity() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Tells NATS to redeliver every held task at once (graceful shutdown), so other replicas
    /// take them over without waiting for AckWait.
    pub async fn release(&self) {
        let held: Vec<_> = self.lock().drain().filter_map(|(_, i)| i.acker).collect();
        for a in held {
            let _ = a.ack_with(AckKind::Nak(None)).await;
        }
    }
}

#[async_trait]
impl TaskSource for Host {
    /// A restarted supervisor gets back the tasks this node still holds for it.
    async fn unfinished(&self, supervisor: Option<&str>) -> Result<Vec<(String, QueuedTask)>, SourceError> {
        Ok(self
            .lock()
            .values()
            .filter(|i| supervisor.is_none_or(|s| s == i.supervisor))
            .map(|i| (i.supervisor.clone(), i.task.clone()))
            .collect())
    }
}

/// The [`TaskSink`] of a supervisor node: everything goes to the events stream.
pub struct HostSink(pub Arc<Host>);

impl HostSink {
    fn supervisor_of(&self, id: TaskId) -> String {
        self.0
            .lock()
            .get(&id)
            .map(|i| i.supervisor.clone())
            .unwrap_or_else(|| "unknown".into())
    }
}

#[async_trait]
impl TaskSink for HostSink {
    async fn record(&self, t: Transition) {
        let (s, traceparent) = self
            .0
            .lock()
            .get(&t.task_id)
            .map(|i| (i.supervisor.clone(), i.task.traceparent.clone()))
            .unwrap_or_else(|| ("unknown".into(), None));
        let mut msg: wire::TransitionMsg = (&t).into();
        msg.traceparent = traceparent;
        self.0.emit(&s, EventMsg::Transition(msg)).await;
    }

    fn progress(&self, task_id: TaskId, attempt: u32, fraction: f64, message: String) {
        let out = Outgoing {
            supervisor: self.supervisor_of(task_id),
            event: EventMsg::Progress {
                task_id,
                attempt,
                fraction,
                message,
            },
        };
        if self.0.events.try_send(out).is_err() {
            metrics::counter!("cadre_progress_dropped_total").increment(1);
        }
    }

    fn usage(&self, task_id: TaskId, usage: cadre_agents::Usage) {
        let out = Outgoing {
            supervisor: self.supervisor_of(task_id),
            event: EventMsg::Usage { task_id, usage },
        };
        if let Err(mpsc::error::TrySendError::Full(out)) = self.0.events.try_send(out) {
            let tx = self.0.events.clone();
            tokio::spawn(async move {
                let _ = tx.send(out).await;
            });
        }
    }
}

/// Delegation from a supervisor node: the sub-task goes to a node running its supervisor
/// (found in the peer registry) over SupervisorPeer.Delegate.
pub struct HostDelegate(pub std::sync::Weak<Host>);

#[async_trait]
impl cadre_agents::Delegate for HostDelegate {
    async fn delegate(
        &self,
        parent: TaskId,
        task_type: String,
        params: serde_json::Value,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<serde_json::Value, ExecError> {
        let host = self
            .0
            .upgrade()
            .ok_or_else(|| ExecError::Retryable("node stopping".into()))?;
        let tenant = host.tenant_of(parent).unwrap_or_default();
        let routes = host.routes();
        let route = routes
            .resolve(&task_type)
            .ok_or_else(|| ExecError::Fatal(format!("no route for sub-task type {task_type}")))?;
        let nodes = host
            .peers
            .running(&route.supervisor)
            .await
            .map_err(|e| ExecError::Retryable(e.to_string()))?;
        let Some(node) = nodes.first() else {
            return Err(ExecError::Retryable(format!(
                "no live node runs supervisor {} for {task_type}",
                route.supervisor
            )));
        };
        let mut client = host
            .peers
            .client(node)
            .await
            .map_err(|e| ExecError::Retryable(e.to_string()))?;
        let req = cadre_proto::v1::DelegateRequest {
            parent_id: parent.to_string(),
            spec: Some(cadre_proto::v1::TaskSpec {
                task_type: task_type.clone(),
                params_json: params.to_string(),
                ..Default::default()
            }),
            wait_ms: 0,
            tenant,
        };
        let call = client.delegate(req);
        let task = tokio::select! {
            r = call => r.map_err(|s| ExecError::Retryable(format!("delegating {task_type}: {}", s.message())))?.into_inner(),
            _ = cancel.cancelled() => return Err(ExecError::Cancelled),
        };
        cadre_supervisors::delegation::delegated_result(&task_type, &task)
    }
}
