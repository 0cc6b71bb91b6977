//! Logging (tracing, human or JSON lines) and the Prometheus metrics recorder.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global tracing subscriber (stderr). `RUST_LOG` overrides `log.level`.
/// Safe to call more than once: later calls keep the first subscriber.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the process-wide Prometheus recorder once and keeps its upkeep running.
pub fn init_metrics() {
    METRICS.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("cadre_task_duration_seconds".into()),
                &[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0,
                ],
            )
            .expect("static buckets are valid")
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle());
        let upkeep = handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
        }
        describe();
        handle
    });
}

fn describe() {
    metrics::describe_counter!("cadre_tasks_submitted_total", "Tasks accepted (durably stored).");
    metrics::describe_counter!(
        "cadre_tasks_completed_total",
        "Tasks that reached a terminal state, by state."
    );
    metrics::describe_histogram!(
        "cadre_task_duration_seconds",
        "Submit to terminal state, by terminal state."
    );
    metrics::describe_gauge!("cadre_queue_depth", "Tasks waiting for a worker, by supervisor.");
    metrics::describe_counter!(
        "cadre_worker_restarts_total",
        "Worker actors restarted after a crash."
    );
    metrics::describe_counter!(
        "cadre_supervisor_restarts_total",
        "Supervisors restarted by the orchestrator."
    );
    metrics::describe_gauge!("cadre_pool_size", "Live worker actors, by supervisor and kind.");
    metrics::describe_counter!(
        "cadre_progress_dropped_total",
        "Progress reports dropped because the writer was full."
    );
    metrics::describe_counter!(
        "cadre_tokens_used_total",
        "Model tokens (in + out) reported by executors."
    );
    metrics::describe_counter!(
        "cadre_cost_usd_micros_total",
        "Cost of reported tokens, in millionths of a USD."
    );
}

/// The current metrics in Prometheus text format.
pub fn render_metrics() -> String {
    METRICS.get().map(PrometheusHandle::render).unwrap_or_default()
}
