//! Phase 2, raw JetStream: messages of the size of a cadre task message published (awaiting the
//! PubAck) to a work-queue stream of its own and pulled and acked by one consumer; a request's
//! latency runs from its publish to its consumer's ack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use cadre_benches::stats::RunStats;
use cadre_bus::wire::WorkMsg;
use cadre_proto::{Priority, RetryPolicy, TaskId};
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::cluster::Resources;
use crate::cpu::{CpuReport, common_groups, sample_cpu};
use crate::driver::{Window, drive_for};

/// What phase 2 measured.
pub(crate) struct RawOutcome {
    /// The requests' counts and latencies.
    pub(crate) stats: RunStats,
    /// CPU use of this process, NATS and PostgreSQL.
    pub(crate) cpu: CpuReport,
}

/// The publishers waiting for their message's ack, by message id.
type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// Phase 2: publish (awaiting the PubAck) -> pull consumer -> ack, closed loop per request.
pub(crate) async fn run_raw(args: &Args, res: &mut Resources, body: Vec<u8>) -> anyhow::Result<RawOutcome> {
    let prefix = res.new_prefix();
    let publisher = async_nats::connect(&args.nats_url)
        .await
        .with_context(|| format!("NATS is not reachable at {}", args.nats_url))?;
    let subscriber = async_nats::connect(&args.nats_url).await?;
    let js = jetstream::new(publisher);
    let consumer = raw_consumer(&js, subscriber, &prefix).await?;
    let waiters = Waiters::default();
    let consume = spawn_consumer(consumer, waiters.clone());
    let publisher = Publisher {
        js,
        body: Arc::new(body),
        seq: Arc::new(AtomicU64::new(0)),
        subject: format!("{prefix}.raw.system.normal"),
        waiters,
    };
    let call = move || publisher.call();

    let window = Window::new(args);
    eprintln!(
        "raw: {} s warm-up, {} s measured, {} loops",
        args.warmup_secs, args.duration_secs, args.concurrency
    );
    let cpu = tokio::spawn(sample_cpu(common_groups(), window));
    let stats = drive_for(args.concurrency as usize, window, call).await;
    let cpu = cpu.await.unwrap_or_default();
    consume.abort();
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), consume).await {
        eprintln!("warning: raw consumer: {e}");
    }
    Ok(RawOutcome { stats, cpu })
}

/// Creates the stream `<prefix>_RAW` (the same settings as cadre's work stream) and a durable
/// pull consumer on it, and opens that consumer over the `subscriber` connection.
async fn raw_consumer(
    js: &jetstream::Context,
    subscriber: async_nats::Client,
    prefix: &str,
) -> anyhow::Result<consumer::PullConsumer> {
    let stream = js
        .create_stream(stream::Config {
            name: format!("{prefix}_RAW"),
            subjects: vec![format!("{prefix}.raw.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: 1_000_000,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    let name = format!("{prefix}-raw");
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    jetstream::new(subscriber)
        .get_stream(format!("{prefix}_RAW"))
        .await?
        .get_consumer(&name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the raw consumer: {e}"))
}

/// The consumer task: pulls every message, acks it, then wakes the publisher waiting for its
/// id (`Nats-Msg-Id`). It ends with an error when a pull or an ack fails.
fn spawn_consumer(consumer: consumer::PullConsumer, waiters: Waiters) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut messages = consumer.stream().max_messages_per_batch(256).messages().await?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("pull: {e}"))?;
            m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string());
            if let Some(w) = id.and_then(|id| waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id)) {
                let _ = w.send(());
            }
        }
        anyhow::Ok(())
    })
}

/// The requests of phase 2: each publishes `body` with a fresh message id.
#[derive(Clone)]
struct Publisher {
    /// The JetStream context of the publishing connection.
    js: jetstream::Context,
    /// The message body (a cadre task message's JSON).
    body: Arc<Vec<u8>>,
    /// The next message id.
    seq: Arc<AtomicU64>,
    /// The subject published to, in the raw stream.
    subject: String,
    /// Where the request waits for the consumer's ack.
    waiters: Waiters,
}

impl Publisher {
    /// One request: publish, await the PubAck, then wait until the consumer acked the message.
    fn call(&self) -> impl Future<Output = Result<(), String>> + Send + use<> {
        let (js, body, subject, waiters) = (
            self.js.clone(),
            self.body.clone(),
            self.subject.clone(),
            self.waiters.clone(),
        );
        let id = format!("{}", self.seq.fetch_add(1, Ordering::Relaxed));
        async move {
            let (tx, rx) = oneshot::channel();
            waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), tx);
            let publish = jetstream::message::PublishMessage::build()
                .payload(body.to_vec().into())
                .message_id(&id);
            let ack = js
                .send_publish(subject, publish)
                .await
                .map_err(|e| format!("publish: {e}"))?;
            ack.await.map_err(|e| format!("publish ack: {e}"))?;
            rx.await.map_err(|_| "the consumer stopped".to_string())
        }
    }
}

/// The JSON of the task message cadre publishes on the work stream for one echo task with
/// `params_json` (a fresh task id, default priority, timeout and retry policy).
pub(crate) fn work_message(params_json: &str) -> anyhow::Result<Vec<u8>> {
    let msg = WorkMsg {
        id: TaskId::new(),
        tenant: "default".into(),
        task_type: "system.debug.echo".into(),
        supervisor: "system".into(),
        worker_kind: "monitor".into(),
        executor: "echo".into(),
        params: serde_json::from_str(params_json)?,
        priority: Priority::new(5)?,
        timeout_ms: 300_000,
        retry: RetryPolicy::default(),
        attempt: 0,
        verified: false,
        fortress: false,
        traceparent: None,
        concurrency_key: None,
    };
    Ok(serde_json::to_vec(&msg)?)
}
