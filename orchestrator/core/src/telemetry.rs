//! Logging (tracing, human or JSON lines), span export over OTLP, and the Prometheus metrics
//! recorder.
//!
//! Span export is on only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: [`init_logging`] then adds a
//! tracing-opentelemetry layer that sends cadre's spans through a batch span processor to an
//! OTLP/gRPC collector. Otherwise nothing is exported and the task path creates no spans
//! ([`cadre_trace::exporting`]). The standard `OTEL_*` variables of the OpenTelemetry SDK
//! apply (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_HEADERS`, ...).
//! Export failures are logged once and never stop or slow the node: the processor drops spans
//! when its queue is full.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogConfig, NodeConfig};
use cadre_proto::TaskState;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The span pipeline, kept so [`shutdown_tracing`] can flush it at exit.
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// How long [`shutdown_tracing`] waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Crates whose spans are exported. Library spans (tonic, h2, hyper) stay out: they are noise,
/// and the exporter's own gRPC calls would otherwise trace themselves.
const EXPORTED_CRATES: [&str; 9] = [
    "cadre",
    "cadre_faces",
    "cadre_core",
    "cadre_bus",
    "cadre_store",
    "cadre_trace",
    "cadre_supervisors",
    "cadre_executors",
    "cadre_agents",
];

/// Whether the environment asks for span export: an OTLP endpoint is set, and neither
/// `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it off.
pub fn otlp_configured() -> bool {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let endpoint = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| !var(v).is_empty());
    endpoint && var("OTEL_SDK_DISABLED") != "true" && var("OTEL_TRACES_EXPORTER") != "none"
}

/// Installs the global tracing subscriber (stderr). `RUST_LOG` overrides `log.level`. With
/// `log.json`, one JSON object per line with the event's fields at the top level (a task's
/// lines carry `task_id`, `tenant`, `task_type` and, while spans are exported, `trace_id`)
/// and the current span's fields under `span`.
/// Safe to call more than once: later calls keep the first subscriber.
///
/// When [`otlp_configured`], also exports spans over OTLP/gRPC (see [`init_node_logging`];
/// here with the default node's identity). Must run inside the tokio runtime then.
pub fn init_logging(cfg: &LogConfig) {
    init_node_logging(cfg, &NodeConfig::default());
}

/// [`init_logging`] for a node: when [`otlp_configured`], also exports spans over OTLP/gRPC
/// with resource attributes `service.name` (`cadre` unless `OTEL_SERVICE_NAME` is set),
/// `service.instance.id` (the node id) and `cadre.node.role`. Must run inside the tokio
/// runtime (the exporter's channel is built there). If the exporter cannot be built the node
/// logs why and runs without it.
pub fn init_node_logging(cfg: &LogConfig, node: &NodeConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // JSON lines: an event's fields at the top level beside `timestamp`, `level`, `target`
    // and `message`; the innermost span's fields under `span` (README, "Logs").
    let fmt = if cfg.json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt.boxed()
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![fmt.with_filter(filter).boxed()];
    let mut provider = None;
    let mut build_error = None;
    if otlp_configured() && TRACER_PROVIDER.get().is_none() {
        match build_provider(node) {
            Ok(p) => {
                let targets = Targets::new().with_targets(EXPORTED_CRATES.map(|c| (c, LevelFilter::INFO)));
                let otel = tracing_opentelemetry::layer()
                    .with_tracer(p.tracer("cadre"))
                    .with_filter(targets);
                layers.push(otel.boxed());
                provider = Some(p);
            }
            Err(e) => build_error = Some(e),
        }
    }
    if tracing_subscriber::registry().with(layers).try_init().is_err() {
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return;
    }
    if let Some(e) = build_error {
        tracing::error!(error = %e, "OTLP span exporter not built; spans are not exported");
    }
    if let Some(p) = provider {
        opentelemetry::global::set_tracer_provider(p.clone());
        let _ = TRACER_PROVIDER.set(p);
        cadre_trace::set_exporting();
        cadre_supervisors::attempt_span::install(cadre_trace::set_parent_from_traceparent);
        tracing::info!("exporting spans over OTLP/gRPC");
    }
}

/// The OTLP/gRPC exporter behind a batch span processor, with cadre's resource attributes.
fn build_provider(node: &NodeConfig) -> anyhow::Result<SdkTracerProvider> {
    // Endpoint, timeout (10 s) and headers come from the OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("cadre");
    }
    let role = serde_json::to_value(node.role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let resource = resource
        .with_attributes([
            KeyValue::new("service.instance.id", node.id.clone()),
            KeyValue::new("cadre.node.role", role),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(LogOnce::new(exporter))
        .with_resource(resource)
        .build())
}

/// Flushes the spans still queued and stops the exporter (waits at most a few seconds; a
/// collector that is down cannot hold the exit up). Call once at process exit; a no-op when
/// nothing is exported.
pub async fn shutdown_tracing() {
    let Some(provider) = TRACER_PROVIDER.get().cloned() else {
        return;
    };
    // The processor's shutdown blocks its caller until the last batch is sent; keep that off
    // the runtime's worker threads, which the exporter's channel needs to make progress.
    let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT));
    match tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_secs(1), done).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "span exporter did not shut down cleanly"),
        _ => tracing::warn!("span exporter did not shut down in time; last spans may be lost"),
    }
}

/// Wraps a span exporter so its first failure is logged (once per process) and later ones
/// are silent: a collector that is down must not flood the log.
#[derive(Debug)]
struct LogOnce<E> {
    inner: E,
    logged: AtomicBool,
}

impl<E> LogOnce<E> {
    fn new(inner: E) -> Self {
        LogOnce {
            inner,
            logged: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter> SpanExporter for LogOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let res = self.inner.export(batch).await;
        if let Err(e) = &res
            && !self.logged.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(error = %e, spans, "span export failed; spans are dropped while the collector is unreachable (logged once)");
        }
        res
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
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
        "cadre_workflow_engine_restarts_total",
        "Workflow engine actors restarted after a crash."
    );
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
        "Model tokens (in + out) reported by executors, by tenant."
    );
    metrics::describe_counter!(
        "cadre_cost_usd_micros_total",
        "Cost of reported tokens, in millionths of a USD, by tenant."
    );
    metrics::describe_gauge!(
        "cadre_budget_used_ratio",
        "Today's spend over the daily cap (the larger of tokens and USD), by tenant; tenant=\"*\" is the node-wide cap. Only set where a cap is configured."
    );
    metrics::describe_gauge!(
        "cadre_store_up",
        "1 when the store answers a ping, 0 when not (every 5 s)."
    );
    metrics::describe_gauge!(
        "cadre_bus_up",
        "1 when the bus (NATS, or in process) is connected, 0 when not."
    );
    metrics::describe_gauge!(
        "cadre_dispatch_outbox",
        "Task messages waiting to be published to NATS (distributed mode)."
    );
    metrics::describe_gauge!(
        "cadre_event_subscribers",
        "Open WebSocket and SSE event streams, by transport."
    );
    metrics::describe_gauge!(
        "cadre_remote_workers",
        "Remote workers connected over WorkerService to this process."
    );
    metrics::describe_gauge!(
        "cadre_tier0_replicas",
        "Tier-0 replicas sharing each tenant's submit rate (live heartbeats in the store; 1 alone)."
    );
    metrics::describe_counter!(
        "cadre_event_subscribers_lagged_total",
        "Event stream subscribers cut off for falling behind, by transport."
    );
    metrics::describe_gauge!(
        "cadre_paused",
        "1 while a scope (supervisor, pool, type prefix, tenant) is paused, 0 once resumed."
    );
    metrics::describe_gauge!(
        "cadre_pool_paused",
        "1 when a pool or its supervisor is paused, by supervisor and kind."
    );
    metrics::describe_counter!(
        "cadre_rate_limited_total",
        "Attempts given back because an upstream said to wait (Retry-After), by supervisor and task type."
    );
    describe_listeners();
    metrics::describe_counter!(
        "cadre_retention_deleted_total",
        "Rows the retention sweeper deleted, by kind: tasks, their events and usage rows, audit records."
    );
}

/// The listeners' connection series (exported at 0 when each listener starts).
fn describe_listeners() {
    metrics::describe_counter!(
        "cadre_http_connections_refused_total",
        "HTTP connections closed at once: server.http_max_connections were open."
    );
    metrics::describe_counter!(
        "cadre_grpc_connections_refused_total",
        "gRPC connections closed at once: server.grpc_max_connections were open."
    );
    metrics::describe_counter!(
        "cadre_http_tls_handshake_failures_total",
        "HTTP connections whose TLS handshake failed or did not finish within server.http_header_timeout_ms."
    );
    metrics::describe_counter!(
        "cadre_grpc_handshake_failures_total",
        "gRPC connections closed before serving: TLS handshake or HTTP/2 preface failed or not done within server.grpc_handshake_timeout_ms."
    );
}

/// Puts every counter and gauge family in the scrape from the start, at 0 for the label sets
/// `config` makes known (terminal states, this process's supervisors and pools, both event
/// transports, the default tenant and every tenant a quota or budget names), so an alert on
/// one reads 0 instead of "no data". Adding 0 never changes a series already counting.
pub fn export_known_series(config: &Config) {
    for name in [
        "cadre_tasks_submitted_total",
        "cadre_workflow_engine_restarts_total",
        "cadre_progress_dropped_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for state in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
        metrics::counter!("cadre_tasks_completed_total", "state" => state.as_str()).increment(0);
    }
    let local = config.local_supervisors();
    for (task_type, route) in config.effective_routes().iter() {
        if local.contains_key(&route.supervisor) {
            metrics::counter!("cadre_rate_limited_total", "supervisor" => route.supervisor.clone(), "task_type" => task_type.clone())
                .increment(0);
        }
    }
    for (name, spec) in local {
        metrics::gauge!("cadre_paused", "scope" => "supervisor", "name" => name.clone()).increment(0.0);
        metrics::counter!("cadre_supervisor_restarts_total", "supervisor" => name.clone()).increment(0);
        metrics::gauge!("cadre_queue_depth", "supervisor" => name.clone()).increment(0.0);
        for kind in spec.pools.keys() {
            metrics::counter!("cadre_worker_restarts_total", "supervisor" => name.clone(), "kind" => kind.clone())
                .increment(0);
        }
    }
    for transport in ["ws", "sse"] {
        metrics::gauge!("cadre_event_subscribers", "transport" => transport).increment(0.0);
        metrics::counter!("cadre_event_subscribers_lagged_total", "transport" => transport).increment(0);
    }
    let tenants = std::iter::once("default")
        .chain(config.quotas.tenants.keys().map(String::as_str))
        .chain(config.budgets.tenants.keys().map(String::as_str));
    for tenant in tenants {
        metrics::counter!("cadre_tokens_used_total", "tenant" => tenant.to_string()).increment(0);
        metrics::counter!("cadre_cost_usd_micros_total", "tenant" => tenant.to_string()).increment(0);
    }
    crate::pauses::export_series(config);
    crate::retention::export_series();
    metrics::gauge!("cadre_remote_workers").increment(0.0);
    metrics::gauge!("cadre_dispatch_outbox").increment(0.0);
}

/// The current metrics in Prometheus text format.
pub fn render_metrics() -> String {
    METRICS.get().map(PrometheusHandle::render).unwrap_or_default()
}
