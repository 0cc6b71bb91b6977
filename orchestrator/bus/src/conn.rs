//! The NATS connection both sides of the bus use, with the cluster's streams set up.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::BusConfig;
use crate::wire::Names;

/// Largest number of messages kept by each stream before publishers are made to wait
/// (discard-new): bounds NATS storage if a consumer side is down for long.
const STREAM_MAX_MESSAGES: i64 = 1_000_000;

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

/// Longest pause between two tries of a publisher retrying what NATS did not take.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Waits `delay`, then doubles it (up to 5 s): the backoff of the publishers (dispatch outbox,
/// a supervisor node's events) while NATS does not take what they send.
pub(crate) async fn back_off(delay: &mut Duration) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(RETRY_MAX);
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
