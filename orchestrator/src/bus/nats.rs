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

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use cadre_proto::v1::{PoolStatus, SupervisorStatus};
use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_supervisors::{QueuedTask, Transition};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::Bus;
use super::peers::Peers;
use super::wire::{self, CancelMsg, EventMsg, Names, WorkMsg};
use crate::config::BusConfig;
use crate::error::Result;
use crate::store::WriteOp;
use crate::writer::Writer;

/// Largest number of messages kept by each stream before publishers are made to wait
/// (discard-new): bounds NATS storage if a consumer side is down for long.
const STREAM_MAX_MESSAGES: i64 = 1_000_000;
/// Messages published or persisted per round.
const BATCH: usize = 256;

/// A NATS connection with the cluster's streams set up.
#[derive(Clone)]
pub struct Conn {
    /// Core NATS.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// Names under `bus.prefix`.
    pub names: Names,
}

/// Connects to NATS, retrying with backoff until it answers and the streams exist. Logs
/// every failure clearly; `ready` turns true once done.
pub async fn connect(cfg: &BusConfig, what: &str) -> Conn {
    let names = Names::new(&cfg.prefix);
    let max = Duration::from_millis(cfg.reconnect_max_ms);
    let mut delay = Duration::from_millis(100).min(max);
    loop {
        match try_connect(cfg, &names).await {
            Ok(conn) => {
                tracing::info!(url = %cfg.nats_url, prefix = %cfg.prefix, "{what}: connected to NATS");
                return conn;
            }
            Err(e) => {
                tracing::error!(url = %cfg.nats_url, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "{what}: NATS is unreachable or refused the stream setup; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max);
            }
        }
    }
}

async fn try_connect(cfg: &BusConfig, names: &Names) -> anyhow::Result<Conn> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(None)
        .reconnect_delay_callback({
            let max = Duration::from_millis(cfg.reconnect_max_ms);
            move |n| (Duration::from_millis(100) * 2u32.saturating_pow(n.min(16) as u32)).min(max)
        })
        .connect(&cfg.nats_url)
        .await?;
    let js = jetstream::new(client.clone());
    let stream = |name: String, subjects: Vec<String>, retention| stream::Config {
        name,
        subjects,
        retention,
        max_messages: STREAM_MAX_MESSAGES,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.get_or_create_stream(stream(
        names.work_stream(),
        vec![names.all_work()],
        stream::RetentionPolicy::WorkQueue,
    ))
    .await?;
    js.get_or_create_stream(stream(
        names.events_stream(),
        vec![names.all_events()],
        stream::RetentionPolicy::WorkQueue,
    ))
    .await?;
    js.get_or_create_stream(stream::Config {
        discard: stream::DiscardPolicy::Old,
        max_messages: 100_000,
        ..stream(
            names.dead_stream(),
            vec![names.all_dead()],
            stream::RetentionPolicy::Limits,
        )
    })
    .await?;
    Ok(Conn {
        client,
        js,
        names: names.clone(),
    })
}

/// The tier-0 bus over NATS.
pub struct NatsBus {
    outbox: mpsc::Sender<WorkMsg>,
    conn: Arc<tokio::sync::OnceCell<Conn>>,
    ready: Arc<AtomicBool>,
    writer: Writer,
    peers: Peers,
    names: Names,
}

impl NatsBus {
    /// Starts the bus: connects in the background (retrying), then runs the outbox publisher
    /// and the event consumer. `outbox_capacity` bounds tasks waiting for NATS (the node's
    /// pending limit keeps it from filling). `wake` is notified when another replica commits.
    pub fn start(
        cfg: BusConfig,
        writer: Writer,
        peers: Peers,
        outbox_capacity: usize,
        wake: Arc<tokio::sync::Notify>,
        recovery: crate::orchestrator::Recovery,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(outbox_capacity.max(1));
        let conn = Arc::new(tokio::sync::OnceCell::new());
        let ready = Arc::new(AtomicBool::new(false));
        let bus = Arc::new(NatsBus {
            outbox: tx.clone(),
            conn: conn.clone(),
            ready: ready.clone(),
            writer: writer.clone(),
            peers: peers.clone(),
            names: Names::new(&cfg.prefix),
        });
        let republish = tx.clone();
        tokio::spawn(async move {
            let c = connect(&cfg, "orchestrator").await;
            let _ = conn.set(c.clone());
            peers.attach(c.clone()).await;
            republish_queued(&recovery, &republish).await;
            ready.store(true, Ordering::Relaxed);
            tokio::spawn(publish_outbox(c.clone(), rx));
            tokio::spawn(persist_events(c.clone(), writer));
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

    async fn cancel(&self, supervisor: &str, task_id: TaskId, attempt: u32, reason: String) -> Result<()> {
        // Durable first: the task is CANCELLED whatever happens to the broadcast; a replica
        // still running it stops, and its later transitions are ignored by the store.
        self.writer
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

    async fn status(&self) -> Result<Vec<SupervisorStatus>> {
        self.peers.status().await
    }

    async fn scale(&self, supervisor: &str, kind: &str, size: usize) -> Result<Vec<PoolStatus>> {
        self.peers.scale(supervisor, kind, size).await
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
async fn republish_queued(recovery: &crate::orchestrator::Recovery, outbox: &mpsc::Sender<WorkMsg>) {
    let routes = recovery.routes();
    let stored = match recovery.store.unfinished(None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read unfinished tasks to republish");
            return;
        }
    };
    let mut n = 0;
    for rec in stored.iter().filter(|r| r.state == TaskState::Queued) {
        let Some(route) = routes.resolve(&rec.spec.task_type) else {
            continue;
        };
        let Some(task) = recovery.queued(rec, route) else {
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
async fn publish_outbox(c: Conn, mut rx: mpsc::Receiver<WorkMsg>) {
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
                    crate::trace::inject_traceparent_headers(&mut headers, tp);
                }
                let publish = jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .headers(headers)
                    .message_id(m.msg_id());
                match c.js.send_publish(subject, publish).await {
                    Ok(ack) => acks.push((m, ack)),
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
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            batch = failed;
        }
    }
}

/// Persists what supervisor nodes publish: each batch of events goes through the writer
/// (group commit) and is acked only once durable, so nothing is lost if this replica dies.
async fn persist_events(c: Conn, writer: Writer) {
    let mut delay = Duration::from_millis(100);
    loop {
        match consume_events(&c, &writer).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "event consumer stopped; restarting it");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn consume_events(c: &Conn, writer: &Writer) -> anyhow::Result<()> {
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
        let batch = consumer
            .batch()
            .max_messages(512)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        let mut chunks = batch.ready_chunks(512);
        while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(7), chunks.next()).await {
            persist_chunk(writer, chunk).await?;
        }
    }
}

/// Stores one chunk of event messages and acks each message once all its events are durable
/// (a message may hold several events: [`wire::decode_events`]). Events the store did not
/// take are written again, in order, with backoff, until it does, while their messages are
/// kept from redelivery: a message is never replayed whole, so the events of it that were
/// stored are not applied a second time (after later ones).
async fn persist_chunk(
    writer: &Writer,
    chunk: Vec<Result<jetstream::Message, async_nats::Error>>,
) -> anyhow::Result<()> {
    let mut messages = Vec::with_capacity(chunk.len());
    let mut pending = Vec::new();
    for m in chunk {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "event pull: message error");
                continue;
            }
        };
        for ev in wire::decode_events(&m.payload) {
            match ev {
                Ok(ev) => pending.push((messages.len(), ev)),
                Err(e) => tracing::error!(error = %e, subject = %m.subject, "undecodable event dropped"),
            }
        }
        messages.push(m);
    }
    let mut delay = Duration::from_millis(100);
    loop {
        // In order, across messages: the writer takes them in the order they are polled.
        let results =
            futures::future::join_all(pending.iter().map(|(_, ev)| store_event(writer, ev.clone()))).await;
        let mut failed = Vec::new();
        let mut why = None;
        for (p, res) in pending.into_iter().zip(results) {
            if let Err(e) = res {
                why = Some(e);
                failed.push(p);
            }
        }
        let Some(why) = why else { break };
        tracing::warn!(events = failed.len(), error = %why, retry_in_ms = delay.as_millis() as u64,
            "events not stored; writing them again");
        let held: std::collections::BTreeSet<usize> = failed.iter().map(|(i, _)| *i).collect();
        for i in held {
            let _ = messages[i].ack_with(jetstream::AckKind::Progress).await;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        pending = failed;
    }
    for m in messages {
        if let Err(e) = m.ack().await {
            tracing::debug!(error = %e, "event ack failed (redelivered; stored once)");
        }
    }
    Ok(())
}

/// Writes one event through the writer; Ok once it is durable (or, for progress, queued).
async fn store_event(writer: &Writer, ev: EventMsg) -> Result<(), crate::store::StoreError> {
    match ev {
        EventMsg::Transition(mut t) => {
            let tp = t.traceparent.take();
            writer
                .transition_traced(t.into(), tp.as_deref())
                .await
                .map(|_| ())
        }
        EventMsg::Insert { record } => writer.insert(*record).await.map(|_| ()),
        EventMsg::Usage { task_id, usage } => writer.usage_durable(task_id, usage).await,
        EventMsg::Progress {
            task_id,
            attempt,
            fraction,
            message,
        } => {
            writer.write_lossy(WriteOp::Progress {
                task_id,
                attempt,
                fraction,
                message,
            });
            Ok(())
        }
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
