//! Pieces every multi-process (distributed-mode) test shares: the shared NATS, a config that
//! puts a process on a test's own subject/stream prefix with a shared HS256 key, cleaning the
//! prefix's streams up afterwards, and waiting for many tasks to finish.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use cadre_proto::v1;

use super::{Tasks, get, state};

/// The NATS every developer and CI machine runs (scripts/services.sh starts it).
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A fresh subject/stream prefix, so tests sharing one NATS never see each other's messages.
pub fn new_prefix() -> String {
    format!("t{:08x}", fastrand::u32(..))
}

/// Writes a random HS256 secret to `<dir>/hs256.key`, for every process of one cluster: a
/// token issued by one node is accepted by all.
pub fn write_shared_secret(dir: &Path) {
    std::fs::write(
        dir.join("hs256.key"),
        format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..)),
    )
    .unwrap();
}

/// The `[auth]` and `[bus]` config of a cluster process: the secret [`write_shared_secret`]
/// wrote in `dir`, NATS at `nats_url` under `prefix`, short timings so tests run fast.
pub fn bus_toml(dir: &Path, prefix: &str, nats_url: &str) -> String {
    format!(
        "[auth]\nhs256_secret_file = {:?}\n[bus]\nnats_url = {nats_url:?}\nprefix = {prefix:?}\n\
         ack_wait_ms = 3000\nmax_inflight = 32\npeer_ttl_ms = 3000\nreconnect_max_ms = 500\n",
        dir.join("hs256.key").display().to_string()
    )
}

/// Deletes a prefix's streams and peer bucket from the NATS at `url`.
pub async fn cleanup_nats(url: &str, prefix: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let js = async_nats::jetstream::new(client);
        for s in ["WORK", "EVENTS", "DEAD"] {
            let _ = js.delete_stream(format!("{prefix}_{s}")).await;
        }
        let _ = js.delete_key_value(format!("{prefix}-peers")).await;
    }
}

/// Polls until every task in `ids` is terminal (patience scaled by CADRE_TEST_PATIENCE);
/// returns them by id.
pub async fn wait_all_terminal(
    c: &mut Tasks,
    ids: &[String],
    patience: Duration,
) -> HashMap<String, v1::Task> {
    let scale: f64 = std::env::var("CADRE_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let deadline = std::time::Instant::now() + patience.mul_f64(scale);
    let mut done: HashMap<String, v1::Task> = HashMap::new();
    loop {
        for id in ids
            .iter()
            .filter(|i| !done.contains_key(*i))
            .cloned()
            .collect::<Vec<_>>()
        {
            let t = get(c, &id).await;
            if !matches!(
                state(&t),
                v1::TaskState::Queued | v1::TaskState::Running | v1::TaskState::Retrying
            ) {
                done.insert(id, t);
            }
        }
        if done.len() == ids.len() {
            return done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {} of {} tasks terminal",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
