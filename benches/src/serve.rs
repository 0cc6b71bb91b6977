//! `cadre serve` as a child process of a benchmark (`distbench`, `gatewaybench`): on ports the
//! OS picks, its log in `<dir>/serve.log`, waited for until it writes its `endpoints.json`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cadre::server::Endpoints;
use tokio::process::{Child, Command};

/// Starts `bin serve --config <config>` with `extra` arguments on free ports, its stderr in
/// `<dir>/serve.log`; the child is killed when dropped.
pub fn spawn(bin: &Path, config: &Path, extra: &[&str], dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("serve.log"))?;
    Command::new(bin)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Waits up to 60 s for `child` (started by [`spawn`] in `dir`, data dir `data`) to write its
/// `endpoints.json`; fails with the tail of its log, naming it `name`, if it exits first or
/// takes longer.
pub async fn wait_for_endpoints(
    child: &mut Child,
    name: &str,
    dir: &Path,
    data: &Path,
) -> anyhow::Result<Endpoints> {
    let pid = child.id().with_context(|| format!("{name} exited at once"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(ep) = Endpoints::read(data).filter(|e| e.pid == pid) {
            return Ok(ep);
        }
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited early ({status}); log:\n{}", tail_log(dir));
        }
        if Instant::now() > deadline {
            bail!("{name} did not start within 60 s; log:\n{}", tail_log(dir));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last 30 lines of `<dir>/serve.log`.
pub fn tail_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
