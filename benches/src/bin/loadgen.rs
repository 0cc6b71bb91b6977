//! `loadgen`: end-to-end load generator for cadre, read against a raw tonic echo baseline.
//!
//! Phase 1 runs `--tasks` tasks through `TaskService.SubmitAndWait` with `--concurrency`
//! concurrent loops spread over `--connections` gRPC channels, against `--endpoint` or against
//! a node started in this process (temporary data dir, ports picked by the OS, the
//! `system/monitor` pool raised to the concurrency). Every task must end SUCCEEDED.
//!
//! Phase 2 starts a bare tonic unary echo server (`proto/echo.proto`) in this process and
//! drives it with the same message size, concurrency and connections, for at least
//! `--echo-min-seconds` (the echo is ten times faster; a run of a few tenths of a second is not
//! a stable baseline).
//!
//! With `--open-fraction F`, phases 3 and 4 send requests on a fixed schedule (open loop, see
//! `cadre_benches::open_loop`) at F times the throughput phase 1 measured, for
//! `--open-seconds`, to cadre right after phase 1 and to the echo server right after phase 2,
//! and measure each latency from the request's due time, so a stall is not hidden by the closed loop.
//!
//! Both closed phases start with an unmeasured warm-up. The report is a table with throughput,
//! latency percentiles and the cadre/echo ratios, then one `RESULT {json}` line. The exit
//! status is non-zero when any request failed or a phase hit its time limit.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cadre_benches::echo::echo_client::EchoClient;
use cadre_benches::echo::echo_server::{Echo, EchoServer};
use cadre_benches::echo::{EchoReply, EchoRequest};
use cadre_benches::grpc::{connect, submit_and_wait_succeeded};
use cadre_benches::node::InProcess;
use cadre_benches::open_loop::{OpenPlan, drive_at_rate};
use cadre_benches::stats::{RunStats, Summary, ratio};
use cadre_client::Bearer;
use cadre_proto::v1::task_service_client::TaskServiceClient;
use cadre_proto::v1::{SubmitAndWaitRequest, TaskSpec};
use clap::Parser;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Bytes of `{"p":""}` around the padding of the params JSON.
const PARAMS_OVERHEAD: usize = 8;
/// Largest accepted `--payload-bytes` (below cadre's default `limits.max_params_bytes`).
const MAX_PAYLOAD_BYTES: u64 = 1_000_000;
/// Largest decoded reply; a task echoes its params twice (spec and result).
const MAX_REPLY_BYTES: usize = 16 << 20;

/// Command line of `loadgen`.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator: cadre SubmitAndWait throughput and latency, against a raw tonic echo baseline"
)]
struct Args {
    /// gRPC URL of a running cadre (e.g. http://127.0.0.1:50051); without it a node is started
    /// in this process with a temporary data dir.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Credential (JWT or API key) for --endpoint; an in-process node's own commander key is
    /// read from its data dir.
    #[arg(long, env = "CADRE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Measured requests per phase.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    tasks: u64,
    /// Concurrent request loops.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// gRPC channels (TCP connections), used round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    connections: u64,
    /// Approximate size of each request's payload: the params JSON `{"p":"xx..."}`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=MAX_PAYLOAD_BYTES))]
    payload_bytes: u64,
    /// Task type submitted to cadre; it must route to an executor that succeeds on `{"p": ...}`.
    #[arg(long, default_value = "system.debug.echo")]
    task_type: String,
    /// Unmeasured requests sent before each phase.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    warmup: u64,
    /// Time limit of each phase (warm-up and measurement each); requests not sent by then count
    /// as failures.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_seconds: u64,
    /// Time limit of one request.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    request_timeout_ms: u64,
    /// SQLite `synchronous` mode of the in-process node (ignored with --endpoint).
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    synchronous: String,
    /// The echo phase's least measured time: it sends more than `--tasks` requests if they take
    /// less.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    echo_min_seconds: u64,
    /// Adds the open-loop phases at this fraction of phase 1's throughput (e.g. 0.5).
    #[arg(long, value_parser = open_fraction)]
    open_fraction: Option<f64>,
    /// Length of each open-loop phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    open_seconds: u64,
    /// Most open-loop requests in flight; one due beyond that counts as failed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_in_flight: u64,
}

/// Parses `--open-fraction`: a number above 0 and at most 4.
fn open_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if f > 0.0 && f <= 4.0 {
        Ok(f)
    } else {
        Err(format!("{f} is not in (0, 4]"))
    }
}

/// How one phase sends its requests.
#[derive(Clone, Copy)]
struct Plan {
    concurrency: usize,
    max_time: Duration,
    /// The loops go on past `total` requests until this much time has passed.
    min_time: Duration,
    request_timeout: Duration,
}

/// Runs `total` calls of `call` (more while `plan.min_time` has not passed) from
/// `plan.concurrency` loops and measures each call's latency.
/// `call(n)` sends request number `n`; it fails with a message.
async fn drive<F, Fut>(total: u64, plan: Plan, call: F) -> RunStats
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + plan.max_time;
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        let (next, call) = (next.clone(), call.clone());
        loops.spawn(async move {
            let mut stats = RunStats::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total && start.elapsed() >= plan.min_time {
                    break;
                }
                if Instant::now() >= deadline {
                    stats.not_sent += 1;
                    break;
                }
                let t0 = Instant::now();
                match tokio::time::timeout(plan.request_timeout, call(n)).await {
                    Ok(Ok(())) => {
                        stats.ok += 1;
                        stats.latencies_ns.push(t0.elapsed().as_nanos() as u64);
                    }
                    Ok(Err(e)) => stats.fail(e),
                    Err(_) => stats.fail(format!("no reply within {} ms", plan.request_timeout.as_millis())),
                }
            }
            stats
        });
    }
    let mut all = RunStats::from_loops(loops).await;
    all.elapsed = start.elapsed();
    all.not_sent += total.saturating_sub(next.load(Ordering::Relaxed));
    all
}

/// Warms up, then measures, `requests` calls built by `make_call` over `channels`.
/// At what rate a phase's open-loop part sends, if it has one.
#[derive(Clone, Copy)]
enum OpenRate {
    /// No open-loop part.
    Off,
    /// This fraction of the throughput the closed part measured.
    Fraction(f64),
    /// This many requests per second (the rate cadre was offered, for the echo).
    Fixed(f64),
}

/// What one phase measured: the closed loop, and the open loop with its rate.
struct Measured {
    closed: RunStats,
    open: Option<(f64, RunStats)>,
}

/// Warms up, then measures `args.tasks` calls built by `make_call` over `clients` in closed
/// loops, then (per `open`) at a fixed rate.
async fn warm_then_measure<C, F, Fut>(
    label: &str,
    args: &Args,
    plan: Plan,
    open: OpenRate,
    clients: Vec<C>,
    make_call: F,
) -> anyhow::Result<Measured>
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let clients = Arc::new(clients);
    let turn = Arc::new(AtomicUsize::new(0));
    let call = move |_n: u64| {
        let i = turn.fetch_add(1, Ordering::Relaxed) % clients.len();
        make_call(clients[i].clone())
    };
    if args.warmup > 0 {
        eprintln!("{label}: warm-up, {} requests", args.warmup);
        let warm = Plan {
            min_time: Duration::ZERO,
            ..plan
        };
        let w = drive(args.warmup, warm, call.clone()).await;
        if w.failed > 0 || w.not_sent > 0 {
            anyhow::bail!(
                "{label} warm-up: {} of {} requests failed, {} not sent; first errors:\n  {}",
                w.failed,
                args.warmup,
                w.not_sent,
                w.sample_errors.join("\n  ")
            );
        }
    }
    eprintln!("{label}: measuring, {} requests", args.tasks);
    let closed = drive(args.tasks, plan, call.clone()).await;
    let closed_rate = closed.ok as f64 / closed.elapsed.as_secs_f64().max(1e-9);
    let rate = match open {
        OpenRate::Off => return Ok(Measured { closed, open: None }),
        OpenRate::Fraction(f) => f * closed_rate,
        OpenRate::Fixed(rate) => rate,
    };
    if rate <= 0.0 {
        anyhow::bail!("{label}: no open-loop rate (the closed loop finished no request)");
    }
    let total = (rate * args.open_seconds as f64).ceil() as u64;
    eprintln!("{label}: open loop, {total} requests at {rate:.0}/s");
    let open_plan = OpenPlan {
        rate,
        total,
        max_in_flight: args.max_in_flight as usize,
        request_timeout: plan.request_timeout,
    };
    let open = drive_at_rate(open_plan, call).await;
    Ok(Measured {
        closed,
        open: Some((rate, open)),
    })
}

/// Phase 1: `SubmitAndWait` against `url`; every task must come back SUCCEEDED.
async fn run_cadre(
    args: &Args,
    plan: Plan,
    url: &str,
    credential: Option<&str>,
    params_json: &str,
) -> anyhow::Result<Measured> {
    let bearer = Bearer::new(credential)?;
    let clients: Vec<_> = connect(url, args.connections)
        .await?
        .into_iter()
        .map(|ch| {
            TaskServiceClient::with_interceptor(ch, bearer.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
        })
        .collect();
    let spec = TaskSpec {
        task_type: args.task_type.clone(),
        params_json: params_json.to_string(),
        ..Default::default()
    };
    let open = args.open_fraction.map_or(OpenRate::Off, OpenRate::Fraction);
    warm_then_measure("cadre", args, plan, open, clients, move |client| {
        let req = SubmitAndWaitRequest {
            spec: Some(spec.clone()),
            wait_ms: 0,
        };
        submit_and_wait_succeeded(client, req)
    })
    .await
}

/// The baseline service: replies with the request's body.
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            body: req.into_inner().body,
        }))
    }
}

/// Phase 2 (and 4): a raw tonic echo server on 127.0.0.1:0, driven like phase 1 (and 3, at
/// the rate `open` says).
async fn run_echo(args: &Args, plan: Plan, open: OpenRate, body: &str) -> anyhow::Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen for the echo server")?;
    let url = format!("http://{}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService).max_decoding_message_size(MAX_REPLY_BYTES))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    let clients: Vec<_> = connect(&url, args.connections)
        .await?
        .into_iter()
        .map(|ch| EchoClient::new(ch).max_decoding_message_size(MAX_REPLY_BYTES))
        .collect();
    let body = body.to_string();
    let stats = warm_then_measure("echo", args, plan, open, clients, move |mut client| {
        let req = EchoRequest { body: body.clone() };
        let len = req.body.len();
        async move {
            let reply = client
                .echo(req)
                .await
                .map_err(|s| format!("Echo: {:?}: {}", s.code(), s.message()))?;
            if reply.get_ref().body.len() == len {
                Ok(())
            } else {
                Err(format!(
                    "echo returned {} bytes instead of {len}",
                    reply.get_ref().body.len()
                ))
            }
        }
    })
    .await;
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => eprintln!("warning: echo server: {e}"),
        Ok(Err(e)) => eprintln!("warning: echo server task: {e}"),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    stats
}

fn summary_json(s: &Summary) -> serde_json::Value {
    json!({
        "ok": s.ok,
        "failed": s.failed,
        "not_sent": s.not_sent,
        "elapsed_s": s.elapsed_s,
        "per_sec": s.per_sec,
        "mean_us": s.mean_us,
        "p50_us": s.p50_us,
        "p99_us": s.p99_us,
        "p999_us": s.p999_us,
        "max_us": s.max_us,
    })
}

fn print_table(c: &Summary, e: &Summary) {
    let row = |name: &str, a: String, b: String, r: String| println!("{name:<18} {a:>18} {b:>18} {r:>12}");
    println!();
    row("", "cadre".into(), "tonic echo".into(), "cadre/echo".into());
    row("", "SubmitAndWait".into(), "unary".into(), String::new());
    println!("{}", "-".repeat(69));
    row("ok", c.ok.to_string(), e.ok.to_string(), String::new());
    row(
        "failed",
        c.failed.to_string(),
        e.failed.to_string(),
        String::new(),
    );
    row(
        "not sent",
        c.not_sent.to_string(),
        e.not_sent.to_string(),
        String::new(),
    );
    row(
        "elapsed (s)",
        format!("{:.2}", c.elapsed_s),
        format!("{:.2}", e.elapsed_s),
        String::new(),
    );
    row(
        "throughput (/s)",
        format!("{:.0}", c.per_sec),
        format!("{:.0}", e.per_sec),
        format!("{:.3}", ratio(c.per_sec, e.per_sec)),
    );
    for (name, a, b, show_ratio) in [
        ("latency mean (µs)", c.mean_us, e.mean_us, false),
        ("latency p50 (µs)", c.p50_us, e.p50_us, true),
        ("latency p99 (µs)", c.p99_us, e.p99_us, true),
        ("latency p99.9 (µs)", c.p999_us, e.p999_us, false),
        ("latency max (µs)", c.max_us, e.max_us, false),
    ] {
        let r = if show_ratio {
            format!("{:.2}", ratio(a, b))
        } else {
            String::new()
        };
        row(name, format!("{a:.0}"), format!("{b:.0}"), r);
    }
    println!();
}

fn report_errors(label: &str, s: &RunStats) {
    if s.failed > 0 || s.not_sent > 0 {
        let first = if s.sample_errors.is_empty() {
            ""
        } else {
            "; first errors:"
        };
        eprintln!(
            "{label}: {} failed, {} not sent (time limit){first}",
            s.failed, s.not_sent
        );
        for e in &s.sample_errors {
            eprintln!("  {e}");
        }
    }
}

/// Prints the open-loop table: cadre and the echo at the same offered rate.
fn print_open_table(rate: f64, c: &Summary, e: &Summary) {
    let row = |name: &str, a: String, b: String, r: String| println!("{name:<18} {a:>18} {b:>18} {r:>12}");
    println!("open loop at {rate:.0}/s (latency from each request's due time)");
    row("", "cadre".into(), "tonic echo".into(), "cadre/echo".into());
    println!("{}", "-".repeat(69));
    row("ok", c.ok.to_string(), e.ok.to_string(), String::new());
    row(
        "failed",
        c.failed.to_string(),
        e.failed.to_string(),
        String::new(),
    );
    for (name, a, b) in [
        ("latency p50 (µs)", c.p50_us, e.p50_us),
        ("latency p99 (µs)", c.p99_us, e.p99_us),
        ("latency p99.9 (µs)", c.p999_us, e.p999_us),
        ("latency max (µs)", c.max_us, e.max_us),
    ] {
        row(
            name,
            format!("{a:.0}"),
            format!("{b:.0}"),
            format!("{:.2}", ratio(a, b)),
        );
    }
    println!();
}

/// Whether a run had no failure and sent everything.
fn clean(s: &RunStats) -> bool {
    s.failed == 0 && s.not_sent == 0
}

/// Runs the phases and prints the report; Ok(false) when any request failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let params_json = format!(
        "{{\"p\":\"{}\"}}",
        "x".repeat((args.payload_bytes as usize).saturating_sub(PARAMS_OVERHEAD))
    );
    let plan = Plan {
        concurrency: args.concurrency as usize,
        max_time: Duration::from_secs(args.max_seconds),
        min_time: Duration::ZERO,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let target = args
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("in-process (synchronous={})", args.synchronous));
    eprintln!(
        "loadgen: {} tasks of {} ({} B params), concurrency {}, {} connections, warm-up {}, \
         target {target}, {cores} cores",
        args.tasks,
        args.task_type,
        params_json.len(),
        args.concurrency,
        args.connections,
        args.warmup
    );

    let cadre = match &args.endpoint {
        Some(url) => run_cadre(&args, plan, url, args.token.as_deref(), &params_json).await?,
        None => {
            let node = InProcess::start(args.concurrency as usize, &args.synchronous).await?;
            let url = format!("http://{}", node.running.grpc_addr);
            let credential = node.credential();
            let stats = run_cadre(&args, plan, &url, credential.as_deref(), &params_json).await;
            node.running.shutdown().await;
            stats?
        }
    };
    report_errors("cadre", &cadre.closed);
    let echo_plan = Plan {
        min_time: Duration::from_secs(args.echo_min_seconds),
        ..plan
    };
    let echo_open = cadre
        .open
        .as_ref()
        .map_or(OpenRate::Off, |(rate, _)| OpenRate::Fixed(*rate));
    let echo = run_echo(&args, echo_plan, echo_open, &params_json).await?;
    report_errors("echo", &echo.closed);

    let mut ok = clean(&cadre.closed) && clean(&echo.closed);
    let (c, e) = (cadre.closed.summarize(), echo.closed.summarize());
    print_table(&c, &e);
    let mut result = json!({
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "payload_bytes": params_json.len(),
        "task_type": args.task_type,
        "warmup": args.warmup,
        "target": target,
        "cores": cores,
        "cadre": summary_json(&c),
        "echo": summary_json(&e),
        "ratio": {
            "throughput": ratio(c.per_sec, e.per_sec),
            "p50": ratio(c.p50_us, e.p50_us),
            "p99": ratio(c.p99_us, e.p99_us),
        },
    });
    if let (Some((rate, c_open)), Some((_, e_open))) = (cadre.open, echo.open) {
        report_errors("cadre open loop", &c_open);
        report_errors("echo open loop", &e_open);
        ok &= clean(&c_open) && clean(&e_open);
        let (c, e) = (c_open.summarize(), e_open.summarize());
        print_open_table(rate, &c, &e);
        result["open"] = json!({
            "rate": rate,
            "fraction": args.open_fraction,
            "seconds": args.open_seconds,
            "cadre": summary_json(&c),
            "echo": summary_json(&e),
            "ratio": { "p50": ratio(c.p50_us, e.p50_us), "p99": ratio(c.p99_us, e.p99_us) },
        });
    }
    result["ok"] = json!(ok);
    println!("RESULT {result}");
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    cadre_benches::exit_code(run(Args::parse()).await, "some requests failed (see above)")
}
