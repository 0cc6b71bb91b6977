//! Distributed mode, tier-0 side: publishes dispatched tasks to the JetStream work stream
//! (through an outbox that survives NATS outages), persists the events supervisor nodes
//! publish, broadcasts cancels, and asks peers for status and scaling.
//!
//! NATS unreachable at start: the node starts anyway, logs a clear error and keeps trying
//! with backoff; /ready stays false until the streams are set up. NATS lost while running:
//! intake keeps accepting into the store; tasks wait in the outbox and are published when NATS
//! returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_trait::async_trait;
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_supervisors::{PauseSet, QueuedTask, Transition};
use futures::StreamExt;
use tokio::sync::mpsc;

use cadre_store::{Store, WriteOp};
use cadre_supervisors::Router;

use crate::config::BusConfig;
use crate::conn::{Conn, back_off, connect};
use crate::error::BusResult;
use crate::journal::Journal;
use crate::peers::Peers;
use crate::seam::Bus;
use crate::wire::{self, CancelMsg, EventMsg, Names, WorkMsg};

/// Messages published or persisted per round.
const BATCH: usize = 256;

/// The tier-0 bus over NATS.
pub struct NatsBus {
    outbox: mpsc::Sender<WorkMsg>,
    conn: Arc<tokio::sync::OnceCell<Conn>>,
    ready: Arc<AtomicBool>,
    journal: Arc<dyn Journal>,
    peers: Peers,
    names: Names,
}

impl NatsBus {
    /// Starts the bus: connects in the background (retrying), then runs the outbox publisher
    /// and the event consumer. `outbox_capacity` bounds tasks waiting for NATS (the node's
    /// pending limit keeps it from filling). `wake` is notified when another replica commits.
    /// `store` and `router` give the tasks stored QUEUED, republished once NATS is reached.
    pub fn start(
        cfg: BusConfig,
        journal: Arc<dyn Journal>,
        peers: Peers,
        outbox_capacity: usize,
        wake: Arc<tokio::sync::Notify>,
        store: Arc<dyn Store>,
        router: Router,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(outbox_capacity.max(1));
        let conn = Arc::new(tokio::sync::OnceCell::new());
        let ready = Arc::new(AtomicBool::new(false));
        let bus = Arc::new(NatsBus {
            outbox: tx.clone(),
            conn: conn.clone(),
            ready: ready.clone(),
            journal: journal.clone(),
            peers: peers.clone(),
            names: Names::new(&cfg.prefix),
        });
        let republish = tx.clone();
        tokio::spawn(async move {
            let c = connect(&cfg, "orchestrator").await;
            let _ = conn.set(c.clone());
            peers.attach(c.clone()).await;
            republish_queued(store.as_ref(), &router, &republish).await;
            ready.store(true, Ordering::Relaxed);
            tokio::spawn(publish_outbox(c.clone(), rx, journal.clone()));
            tokio::spawn(persist_events(c.clone(), journal));
            tokio::spawn(listen_commits(c, wake));
        });
        bus
    }

    /// Tells other tier-0 replicas that events were committed (their tailers re-read).
    pub fn announce_commit(&self) {
        if let Some(c) = self.conn.get() {
            let client = c.client.clone();
            let subject = c.names.committed_subject();
            tokio::spawn(async move {
                let _ = client.publish(subject, "".into()).await;
            });
        }
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn dispatch(&self, record: &TaskRecord, task: QueuedTask) {
        let executor = self
            .peers
            .executor_name(&record.spec.task_type)
            .unwrap_or_default();
        let msg = WorkMsg::new(record, &executor, &task);
        if let Err(e) = self.outbox.try_send(msg) {
            // Cannot happen while the pending limit is below the outbox capacity; the task is
            // stored and republished at the next start.
            tracing::error!(task_id = %task.id, error = %e, "dispatch outbox full; task waits for a restart");
        }
    }

    async fn cancel(&self, supervisor: &str, task_id: TaskId, attempt: u32, reason: String) -> BusResult<()> {
        // Durable first: the task is CANCELLED whatever happens to the broadcast; a replica
        // still running it stops, and its later transitions are ignored by the store.
        self.journal
            .transition(Transition::new(
                task_id,
                TaskState::Cancelled,
                attempt,
                reason.clone(),
            ))
            .await?;
        if let Some(c) = self.conn.get() {
            let body = serde_json::to_vec(&CancelMsg { task_id, reason }).unwrap_or_default();
            if let Err(e) = c
                .client
                .publish(self.names.cancel_subject(supervisor), body.into())
                .await
            {
                tracing::warn!(%task_id, error = %e, "cancel broadcast failed; the task is recorded CANCELLED");
            }
        }
        Ok(())
    }

    async fn status(&self) -> BusResult<Vec<SupervisorStatus>> {
        self.peers.status().await
    }

    async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> BusResult<Vec<PoolStatus>> {
        self.peers.scale(supervisor, kind, size).await
    }

    async fn set_pauses(&self, set: &PauseSet) -> BusResult<()> {
        self.peers.set_pauses(set).await
    }

    async fn set_credentials(&self, credentials: &cadre_proto::v1::SetCredentialsRequest) -> BusResult<()> {
        self.peers.set_credentials(credentials).await
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .conn
                .get()
                .is_some_and(|c| c.client.connection_state() == async_nats::connection::State::Connected)
    }
}

/// Start-up: tasks stored QUEUED may never have reached NATS (a crash between the insert and
/// the publish); they are published again. JetStream drops the copies it already holds
/// (same message id within its duplicate window); a copy older than that may run twice, which
/// the store's finish-once rule makes harmless.
async fn republish_queued(store: &dyn Store, router: &Router, outbox: &mpsc::Sender<WorkMsg>) {
    let routes = router.routes();
    // Debounced tasks still holding their key wait for their window: tier 0's debouncer
    // dispatches them (read first, so a task released meanwhile is republished).
    let held: std::collections::HashSet<_> = match store.held_debounces(u32::MAX).await {
        Ok(h) => h.into_iter().map(|(id, _)| id).collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read debounced tasks to republish");
            return;
        }
    };
    let stored = match store.unfinished(None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read unfinished tasks to republish");
            return;
        }
    };
    let mut n = 0;
    for rec in stored
        .iter()
        .filter(|r| r.state == TaskState::Queued && !held.contains(&r.id))
    {
        let Some(route) = routes.resolve(&rec.spec.task_type) else {
            continue;
        };
        let Some(task) = router.queued(rec, route) else {
            continue;
        };
        if outbox
            .send(WorkMsg::new(rec, &route.executor, &task))
            .await
            .is_ok()
        {
            n += 1;
        }
    }
    if n > 0 {
        tracing::info!(tasks = n, "republished queued tasks");
    }
}

/// Publishes dispatched tasks, pipelined, waiting for JetStream's acks; failed ones are retried
/// with backoff until NATS takes them. Rings each touched supervisor's doorbell afterwards.
/// A task whose message is larger than the server's `max_payload` can never be taken: it is
/// stored FAILED with the sizes and what to change, not retried.
async fn publish_outbox(c: Conn, mut rx: mpsc::Receiver<WorkMsg>, writer: Arc<dyn Journal>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut delay = Duration::from_millis(50);
        loop {
            let mut acks = Vec::with_capacity(batch.len());
            let mut failed = Vec::new();
            for m in batch.drain(..) {
                let subject = c.names.work_subject(&m.supervisor, wire::band(m.priority));
                let body = match serde_json::to_vec(&m) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(task_id = %m.id, error = %e, "cannot encode task");
                        continue;
                    }
                };
                let mut headers = async_nats::HeaderMap::new();
                if let Some(tp) = &m.traceparent {
                    cadre_trace::inject_traceparent_headers(&mut headers, tp);
                }
                let publish = jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .headers(headers)
                    .message_id(m.msg_id());
                match c.js.send_publish(subject, publish).await {
                    Ok(ack) => acks.push((m, ack)),
                    Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                        let why = format!(
                            "cannot dispatch: {e} (the NATS server's max_payload); raise max_payload \
                             or lower limits.max_params_bytes"
                        );
                        tracing::error!(task_id = %m.id, error = %why, "task too large for NATS; it FAILS");
                        let failed_now = Transition::new(m.id, TaskState::Failed, m.attempt, why);
                        if let Err(e) = writer.transition(failed_now).await {
                            tracing::warn!(task_id = %m.id, error = %e, "cannot store the FAILED state; retried");
                            failed.push(m);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "publish failed");
                        failed.push(m)
                    }
                }
            }
            let mut rung = std::collections::BTreeSet::new();
            for (m, ack) in acks {
                match ack.await {
                    Ok(_) => {
                        rung.insert(m.supervisor.clone());
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "publish not acknowledged");
                        failed.push(m)
                    }
                }
            }
            for s in rung {
                let _ = c.client.publish(c.names.doorbell(&s), "".into()).await;
            }
            metrics::gauge!("cadre_dispatch_outbox").set(failed.len() as f64);
            if failed.is_empty() {
                break;
            }
            tracing::warn!(
                tasks = failed.len(),
                retry_in_ms = delay.as_millis() as u64,
                "NATS did not take dispatched tasks; they stay stored and are retried"
            );
            back_off(&mut delay).await;
            batch = failed;
        }
    }
}

/// Event messages read ahead of the store: pulled from NATS but not yet durable and acked.
/// The reader pulls only as many as there is room for, so it never waits on the persister
/// with a pull request open.
const READ_AHEAD: usize = 4096;

/// Most messages per pull request (and per chunk stored at once).
const PULL_MAX: usize = 512;

/// Persists what supervisor nodes publish, in stream order: a reader task drains pull requests
/// as fast as NATS answers them into a queue, and this task stores the queue in chunks through
/// the writer (group commit), acking each message only once durable, so nothing is lost if this
/// replica dies. The reader must never stall behind a slow store: async-nats ends a pull
/// request whose messages are not read within its expiry plus 5 s and drops what it buffered,
/// which NATS redelivers only after the ack wait, after later events.
///
/// The order holds within one tier-0 replica. Replicas share the consumer, so with several of
/// them two events of one task may be stored by different replicas in either order; the store
/// places a late one in its task's history where it belongs (cadre-store's `late.rs`).
async fn persist_events(c: Conn, writer: Arc<dyn Journal>) {
    let room = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(read_events(c, room.clone(), tx));
    let mut ahead = ReadAhead {
        backlog: std::collections::VecDeque::new(),
        rx,
        kept_at: tokio::time::Instant::now(),
    };
    while let Some(chunk) = ahead.next_chunk().await {
        let n = chunk.len();
        persist_chunk(writer.as_ref(), chunk, &mut ahead).await;
        room.add_permits(n);
    }
}

/// Event messages read but not yet taken into a chunk, in stream order.
struct ReadAhead {
    /// Moved out of `rx` (to keep them alive, or because a chunk was full).
    backlog: std::collections::VecDeque<jetstream::Message>,
    /// What the reader pulled since.
    rx: mpsc::UnboundedReceiver<jetstream::Message>,
    /// When they were last kept from redelivery.
    kept_at: tokio::time::Instant,
}

impl ReadAhead {
    /// The next messages to store, at most [`PULL_MAX`]; waits for one. None once the reader
    /// is gone.
    async fn next_chunk(&mut self) -> Option<Vec<jetstream::Message>> {
        if self.backlog.is_empty() {
            let m = self.rx.recv().await?;
            self.backlog.push_back(m);
        }
        while let Ok(m) = self.rx.try_recv() {
            self.backlog.push_back(m);
        }
        let n = self.backlog.len().min(PULL_MAX);
        Some(self.backlog.drain(..n).collect())
    }

    /// Tells NATS that `current` and everything read behind it are still in work (progress
    /// acks), so none is redelivered while the store is slow.
    async fn keep_alive(&mut self, current: &[jetstream::Message]) {
        while let Ok(m) = self.rx.try_recv() {
            self.backlog.push_back(m);
        }
        for m in current.iter().chain(self.backlog.iter()) {
            let _ = m.ack_with(jetstream::AckKind::Progress).await;
        }
        self.kept_at = tokio::time::Instant::now();
    }

    /// When the next keep-alive is due.
    fn keep_alive_due(&self) -> tokio::time::Instant {
        self.kept_at + KEEP_ALIVE
    }
}

/// Pulls event messages into `tx` for [`persist_events`], at most [`READ_AHEAD`] unacked (each
/// holds a permit of `room` until the persister returns it). Restarts with backoff when NATS
/// fails it.
async fn read_events(
    c: Conn,
    room: Arc<tokio::sync::Semaphore>,
    tx: mpsc::UnboundedSender<jetstream::Message>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match pull_events(&c, &room, &tx).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "event consumer stopped; restarting it");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn pull_events(
    c: &Conn,
    room: &tokio::sync::Semaphore,
    tx: &mpsc::UnboundedSender<jetstream::Message>,
) -> anyhow::Result<()> {
    let stream = c.js.get_stream(c.names.events_stream()).await?;
    let name = c.names.events_consumer();
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 8192,
                ..Default::default()
            },
        )
        .await?;
    // Pull requests that expire and are sent again, rather than one endless stream: after a
    // NATS restart a lost request cannot stall persistence for good.
    loop {
        // Room for the whole request first: its messages are then read as they come.
        room.acquire().await?.forget();
        let mut want = 1;
        while want < PULL_MAX
            && let Ok(p) = room.try_acquire()
        {
            p.forget();
            want += 1;
        }
        let mut got = 0;
        let pulled = async {
            let mut batch = consumer
                .batch()
                .max_messages(want)
                .expires(Duration::from_secs(2))
                .messages()
                .await?;
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(7), batch.next()).await {
                match m {
                    Ok(m) => {
                        got += 1;
                        if tx.send(m).is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "event pull: message error"),
                }
            }
            anyhow::Ok(())
        }
        .await;
        room.add_permits(want - got);
        pulled?;
        if tx.is_closed() {
            return Ok(());
        }
    }
}

/// How often messages waiting to be stored are kept from redelivery (well inside the events
/// consumer's 30 s ack wait).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Most events written in one transaction by [`persist_chunk`] (also bounded by
/// `store.batch_max`).
const GROUP_MAX: usize = 1024;

/// Stores one chunk of event messages and acks each message once all its events are durable
/// (a message may hold several events: [`wire::decode_events`]). The events are written in
/// order, in groups that commit whole or not at all ([`Writer::write_together`]); a group the
/// store did not take is written again, with backoff, before any later one. Every
/// [`KEEP_ALIVE`] (checked before each group and while a write waits) and after a failed
/// write, this chunk and everything read behind it are kept from redelivery. So no event is
/// stored after a later event of its task, and a message is never replayed whole (its stored
/// events would apply a second time).
async fn persist_chunk(writer: &dyn Journal, messages: Vec<jetstream::Message>, ahead: &mut ReadAhead) {
    let mut pending = Vec::new();
    for m in &messages {
        for ev in wire::decode_events(&m.payload) {
            match ev {
                Ok(ev) => pending.push(write_of(writer, ev)),
                Err(e) => tracing::error!(error = %e, subject = %m.subject, "undecodable event dropped"),
            }
        }
    }
    for group in pending.chunks(GROUP_MAX.min(writer.batch_max())) {
        let mut delay = Duration::from_millis(100);
        loop {
            let write = writer.write_together(group.to_vec());
            tokio::pin!(write);
            let written = loop {
                tokio::select! {
                    r = &mut write => break r,
                    _ = tokio::time::sleep_until(ahead.keep_alive_due()) => ahead.keep_alive(&messages).await,
                }
            };
            let Err(e) = written else { break };
            tracing::warn!(events = group.len(), error = %e, retry_in_ms = delay.as_millis() as u64,
                "events not stored; writing them again");
            ahead.keep_alive(&messages).await;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
    for m in messages {
        if let Err(e) = m.ack().await {
            tracing::debug!(error = %e, "event ack failed (redelivered; stored once)");
        }
    }
}

/// The store write of one event, with the traceparent of its task's trace.
fn write_of(writer: &dyn Journal, ev: EventMsg) -> (WriteOp, Option<String>) {
    match ev {
        EventMsg::Transition(mut t) => {
            let tp = t.traceparent.take();
            (WriteOp::Transition(t.into()), tp)
        }
        EventMsg::Insert { record } => (WriteOp::Insert(record), None),
        EventMsg::Usage { task_id, usage } => (writer.priced_usage(task_id, usage), None),
        EventMsg::Progress {
            task_id,
            attempt,
            fraction,
            message,
        } => (
            WriteOp::Progress {
                task_id,
                attempt,
                fraction,
                message,
            },
            None,
        ),
    }
}

/// Wakes this replica's event tailer whenever any replica announces a commit.
async fn listen_commits(c: Conn, wake: Arc<tokio::sync::Notify>) {
    let Ok(mut sub) = c.client.subscribe(c.names.committed_subject()).await else {
        tracing::warn!("cannot subscribe to commit announcements; watchers poll");
        return;
    };
    while sub.next().await.is_some() {
        wake.notify_one();
    }
}
