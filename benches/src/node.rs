//! A cadre node in the benchmark's own process, as `loadgen` and `wsfanout` start it.

use anyhow::Context;
use cadre::server::Running;
use cadre_client::Bearer;
use cadre_core::config::{Config, ConfigSource, LogConfig};
use cadre_supervisors::supervisor::MAX_POOL_SIZE;

/// A node started by [`InProcess::start`], with what must outlive it.
pub struct InProcess {
    /// The running node: its addresses, and `shutdown()`.
    pub running: Running,
    /// Its temporary data dir (store, credentials), removed on drop.
    pub data_dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts cadre in this process: warn-level logs, a temporary data dir, gRPC and HTTP on
    /// ports picked by the OS, SQLite `synchronous` as given, and the `system/monitor` pool
    /// (where the diagnostic task types run) at `monitor_pool` workers, capped at the largest
    /// pool allowed. The default [`ConfigSource`] (no file, no overrides) is only consulted by
    /// config reloads, which the benches never ask for.
    pub async fn start(monitor_pool: usize, synchronous: &str) -> anyhow::Result<InProcess> {
        cadre_core::telemetry::init_logging(&LogConfig {
            json: false,
            level: "warn".into(),
        });
        let data_dir = tempfile::tempdir().context("cannot create a temporary data dir")?;
        let mut config = Config::default();
        config.node.data_dir = data_dir.path().to_path_buf();
        config.server.grpc_addr = "127.0.0.1:0".into();
        config.server.http_addr = "127.0.0.1:0".into();
        config.store.synchronous = synchronous.to_string();
        let pool = monitor_pool.min(MAX_POOL_SIZE);
        if pool < monitor_pool {
            eprintln!(
                "note: system/monitor pool capped at {MAX_POOL_SIZE} workers (asked for {monitor_pool})"
            );
        }
        config
            .supervisors
            .get_mut("system")
            .context("the default config has no `system` supervisor")?
            .pools
            .insert("monitor".into(), pool);
        let running = cadre::server::start(config, ConfigSource::default())
            .await
            .context("cannot start cadre in-process")?;
        Ok(InProcess { running, data_dir })
    }

    /// The commander credential the node wrote to its data dir.
    pub fn credential(&self) -> Option<String> {
        Bearer::from_data_dir(self.data_dir.path())
    }
}
