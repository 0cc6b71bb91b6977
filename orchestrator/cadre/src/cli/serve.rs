//! `cadre serve`: its flags become config overrides, [`crate::server::start`] runs the node, and
//! the process then waits for signals: SIGHUP re-reads the config, SIGTERM or Ctrl-C stops the
//! node cleanly.

use std::path::PathBuf;

use anyhow::Result;
use cadre_core::config::{ConfigSource, Overrides};
use cadre_core::telemetry;

use super::args::ServeArgs;
use crate::server;

/// Runs a node with the config file, environment and `args` (and `--data-dir`) until a signal
/// stops it; exit code 0 after a clean shutdown.
pub(super) async fn serve(args: ServeArgs, data_dir: Option<PathBuf>) -> Result<i32> {
    let source = ConfigSource {
        path: args.config,
        overrides: Overrides {
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
            data_dir,
            log_json: args.log_json,
            role: args.role,
            supervisors: args.supervisors,
        },
    };
    let cfg = source.load()?;
    telemetry::init_node_logging(&cfg.log, &cfg.node);
    let running = server::start(cfg, source).await?;
    eprintln!(
        "cadre serving gRPC on {} and HTTP on {}",
        running.grpc_addr, running.http_addr
    );
    wait_for_signals(&running).await;
    running.shutdown().await;
    telemetry::shutdown_tracing().await;
    Ok(0)
}

/// Waits for SIGTERM or Ctrl-C; on SIGHUP re-reads the config (tier 0 only), audited as done by
/// a commander called `SIGHUP`.
#[cfg(unix)]
async fn wait_for_signals(running: &server::Running) {
    use cadre_core::auth::{Principal, Role};
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (signal(SignalKind::hangup()), signal(SignalKind::terminate())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // Whoever may signal the process acts as the node's operator: audited as such.
                let actor = Principal { subject: "SIGHUP".into(), tenant: String::new(), role: Role::Commander };
                let Some(node) = &running.node else {
                    tracing::warn!("SIGHUP: a supervisor node reloads nothing; restart it to change its config");
                    continue;
                };
                match node.reload(&actor).await {
                    Ok(changes) => tracing::info!(?changes, "SIGHUP: config reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: config not reloaded"),
                }
            }
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

/// Waits for Ctrl-C (no SIGHUP reload where there are no Unix signals).
#[cfg(not(unix))]
async fn wait_for_signals(_running: &server::Running) {
    let _ = tokio::signal::ctrl_c().await;
}
