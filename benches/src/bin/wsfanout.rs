//! `wsfanout`: task events fanned out to many WebSocket subscribers, read against a bare
//! `tokio::sync::broadcast` channel behind an axum WebSocket route.
//!
//! Phase 1 starts cadre in this process (SQLite, temporary data dir) and opens `--subscribers`
//! WebSocket connections to `/v1/events`, each subscribed to every task from now on. Once all
//! are subscribed, `system.debug.echo` no-op tasks are submitted over gRPC at `--rate` tasks/s
//! (0: as fast as `--concurrency` loops can) for `--seconds`; each task makes three events
//! (QUEUED, RUNNING, SUCCEEDED). Every subscriber counts the events it receives and records each
//! one's lag: its arrival time minus the event's `at_ms` (when the transition was recorded;
//! the durable commit and the fan-out come after it).
//!
//! Phase 2 starts an axum route in this process that forwards one broadcast channel to each of
//! `--subscribers` WebSocket clients, and publishes as many events as phase 1 produced, evenly
//! over the same time, each a JSON text of phase 1's mean event size carrying its publish time
//! as `at_ms`. Subscribers are the same code in both phases.
//!
//! A phase ends once no subscriber has received anything for `--quiet-ms` after the last
//! event was generated (or after `--drain-seconds`). Delivered events/s is the number of events
//! all subscribers received over the time from the first generated event to the last receipt.
//! The report is a table, the ratio cadre/broadcast, and one `RESULT {json}` line.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::extract::State;
use axum::extract::ws::{Message as AxumMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use cadre_benches::node::InProcess;
use cadre_benches::stats::{RunStats, Summary, ratio};
use cadre_client::Bearer;
use cadre_proto::v1::task_service_client::TaskServiceClient;
use cadre_proto::v1::{SubmitRequest, TaskSpec};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Endpoint;

/// Bytes of `{"p":""}` around the padding of the params JSON.
const PARAMS_OVERHEAD: usize = 8;
/// The share of the broadcast baseline's delivered events/s that the issue asks cadre for.
const TARGET_RATIO: f64 = 0.8;

/// Command line of `wsfanout`.
#[derive(Parser, Debug)]
#[command(
    name = "wsfanout",
    about = "Task events to many WebSocket subscribers: cadre /v1/events against a bare broadcast channel"
)]
struct Args {
    /// WebSocket subscribers in each phase.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    subscribers: u64,
    /// Tasks submitted per second (three events each); 0 = as fast as --concurrency loops go.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    rate: u64,
    /// Seconds of task generation.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    seconds: u64,
    /// Most submits in flight at once (and the loops of --rate 0).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1_024))]
    concurrency: u64,
    /// Approximate size of each task's params `{"p":"xx..."}` (the SUCCEEDED event carries them
    /// back as its result).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    payload_bytes: u64,
    /// A phase ends when no subscriber received anything for this long after generation ended.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    quiet_ms: u64,
    /// At most this long to wait for deliveries after generation ended.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    drain_seconds: u64,
    /// SQLite `synchronous` mode of the node.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    synchronous: String,
}

/// Milliseconds since the Unix epoch, with sub-millisecond precision.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1_000.0)
        .unwrap_or(0.0)
}

/// The integer after `"at_ms":` in an event's JSON text, without parsing the rest.
fn at_ms(text: &str) -> Option<u64> {
    let rest = &text[text.find("\"at_ms\":")? + 8..];
    let digits = rest.trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// What the subscribers of one phase saw, all together.
#[derive(Default)]
struct Received {
    /// Every delivered event's lag, and the delivered count.
    stats: RunStats,
    /// Bytes of event text delivered.
    bytes: u64,
    /// Subscribers cut off as too slow (`lagged`).
    lagged: u64,
    /// Subscribers whose connection failed or closed early.
    broken: u64,
    /// Fewest and most events one subscriber received.
    min_events: u64,
    /// See `min_events`.
    max_events: u64,
}

/// Live counters the phase driver polls while subscribers run.
#[derive(Default)]
struct Progress {
    /// Events received by all subscribers so far.
    events: AtomicU64,
    /// Subscribers that got their `subscribed` reply.
    ready: AtomicU64,
    /// Microseconds from the phase's start to the most recent receipt.
    last_receipt_us: AtomicU64,
}

/// One subscriber's own results.
struct One {
    events: u64,
    bytes: u64,
    lags_ns: Vec<u64>,
    lagged: bool,
    broken: Option<String>,
}

/// Connects to `url`, sends `subscribe`, waits for `subscribed`, then counts events and their
/// lag until `stop` turns true, the server closes, or it is told it lagged.
async fn subscriber(
    url: String,
    subscribe: String,
    progress: Arc<Progress>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> One {
    let mut one = One {
        events: 0,
        bytes: 0,
        lags_ns: Vec::new(),
        lagged: false,
        broken: None,
    };
    let (mut ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(c) => c,
        Err(e) => {
            one.broken = Some(format!("connect: {e}"));
            return one;
        }
    };
    if let Err(e) = ws.send(Message::text(subscribe)).await {
        one.broken = Some(format!("send subscribe: {e}"));
        return one;
    }
    let mut subscribed = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => {
                if !one.lagged {
                    one.broken = Some("the server closed the connection".into());
                }
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                one.broken = Some(format!("read: {e}"));
                break;
            }
        };
        let text = text.as_str();
        if text.contains("\"type\":\"event\"") {
            let arrived = now_ms();
            one.events += 1;
            one.bytes += text.len() as u64;
            if let Some(at) = at_ms(text) {
                one.lags_ns.push(((arrived - at as f64).max(0.0) * 1e6) as u64);
            }
            progress.events.fetch_add(1, Ordering::Relaxed);
            progress
                .last_receipt_us
                .fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        } else if text.contains("\"type\":\"subscribed\"") && !subscribed {
            subscribed = true;
            progress.ready.fetch_add(1, Ordering::Relaxed);
        } else if text.contains("\"type\":\"lagged\"") {
            one.lagged = true;
        } else if text.contains("\"type\":\"error\"") {
            one.broken = Some(format!("error message: {text}"));
            break;
        }
    }
    let _ = ws.close(None).await;
    one
}

/// The subscribers of one phase, running.
struct Subscribers {
    tasks: tokio::task::JoinSet<One>,
    progress: Arc<Progress>,
    start: Instant,
    stop: watch::Sender<bool>,
}

impl Subscribers {
    /// Opens `n` subscribers to `url` (a few connects at a time) and waits until all are
    /// subscribed.
    async fn open(n: u64, url: &str, subscribe: &str) -> anyhow::Result<Subscribers> {
        let progress = Arc::new(Progress::default());
        let (stop, stopped) = watch::channel(false);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            tasks.spawn(subscriber(
                url.to_string(),
                subscribe.to_string(),
                progress.clone(),
                start,
                stopped.clone(),
            ));
            // Don't overflow the listener's accept backlog.
            if i % 64 == 63 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress.ready.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline || tasks.len() < n as usize {
                let _ = stop.send(true);
                let ready = progress.ready.load(Ordering::Relaxed);
                let mut why = String::new();
                while let Some(Ok(one)) = tasks.join_next().await {
                    if let Some(b) = one.broken {
                        why = b;
                        break;
                    }
                }
                bail!("only {ready} of {n} subscribers subscribed within 60 s; {why}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Subscribers {
            tasks,
            progress,
            start,
            stop,
        })
    }

    /// Waits until nothing arrived for `--quiet-ms` (at most `--drain-seconds`), stops every
    /// subscriber and adds up what they saw. `first_event` is when generation started.
    async fn finish(mut self, first_event: Instant, args: &Args) -> Received {
        let quiet = Duration::from_millis(args.quiet_ms);
        let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
        let mut seen = self.progress.events.load(Ordering::Relaxed);
        let mut still_since = Instant::now();
        while Instant::now() < deadline && still_since.elapsed() < quiet {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.progress.events.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                still_since = Instant::now();
            }
        }
        let _ = self.stop.send(true);
        let mut r = Received {
            min_events: u64::MAX,
            ..Default::default()
        };
        while let Some(joined) = self.tasks.join_next().await {
            let Ok(one) = joined else {
                r.broken += 1;
                continue;
            };
            r.stats.ok += one.events;
            r.bytes += one.bytes;
            r.stats.latencies_ns.extend(one.lags_ns);
            r.lagged += u64::from(one.lagged);
            r.min_events = r.min_events.min(one.events);
            r.max_events = r.max_events.max(one.events);
            if let Some(b) = one.broken {
                r.stats.fail(b);
                r.broken += 1;
            }
        }
        if r.min_events == u64::MAX {
            r.min_events = 0;
        }
        let last = self.start + Duration::from_micros(self.progress.last_receipt_us.load(Ordering::Relaxed));
        r.stats.elapsed = last.saturating_duration_since(first_event);
        r
    }
}

/// How many tasks the generator submitted.
struct Generated {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    first_error: Option<String>,
}

/// Submits echo tasks to `grpc` for `args.seconds`, paced at `args.rate` tasks/s (or as fast as
/// `args.concurrency` loops go when the rate is 0), with at most `args.concurrency` in flight.
async fn generate(
    args: &Args,
    grpc: &str,
    credential: Option<&str>,
    params_json: &str,
) -> anyhow::Result<Generated> {
    let channel = Endpoint::from_shared(grpc.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {grpc}"))?;
    let client = TaskServiceClient::with_interceptor(channel, Bearer::new(credential)?);
    let spec = TaskSpec {
        task_type: "system.debug.echo".into(),
        params_json: params_json.to_string(),
        ..Default::default()
    };
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let submit = {
        let (ok, failed, first_error) = (ok.clone(), failed.clone(), first_error.clone());
        move || {
            let mut client = client.clone();
            let req = SubmitRequest {
                spec: Some(spec.clone()),
            };
            let (ok, failed, first_error) = (ok.clone(), failed.clone(), first_error.clone());
            async move {
                match client.submit(req).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(s) => {
                        if let Ok(mut e) = first_error.lock() {
                            e.get_or_insert_with(|| format!("Submit: {:?}: {}", s.code(), s.message()));
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    };
    let window = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut running = submit_for(args, start, window, submit).await?;
    while running.join_next().await.is_some() {}
    let first_error = first_error.lock().ok().and_then(|e| e.clone());
    Ok(Generated {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        first_error,
    })
}

/// Makes `submit` calls from `start` until `window` has passed: `args.concurrency` loops as
/// fast as they go when `args.rate` is 0, otherwise `args.rate` per second with at most
/// `args.concurrency` in flight. Returns the calls still running.
async fn submit_for<F, Fut>(
    args: &Args,
    start: Instant,
    window: Duration,
    submit: F,
) -> anyhow::Result<tokio::task::JoinSet<()>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    if args.rate == 0 {
        for _ in 0..args.concurrency {
            let submit = submit.clone();
            running.spawn(async move {
                while start.elapsed() < window {
                    submit().await;
                }
            });
        }
    } else {
        let in_flight = Arc::new(Semaphore::new(args.concurrency as usize));
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        let mut sent = 0u64;
        while start.elapsed() < window {
            tick.tick().await;
            let due = (start.elapsed().min(window).as_secs_f64() * args.rate as f64) as u64;
            // Submits that could not start by the window's end are not made up for later.
            while sent < due && start.elapsed() < window {
                let permit = in_flight.clone().acquire_owned().await?;
                let call = submit();
                running.spawn(async move {
                    call.await;
                    drop(permit);
                });
                sent += 1;
            }
            while running.try_join_next().is_some() {}
        }
    }
    Ok(running)
}

/// Phase 1: cadre's `/v1/events` with every subscriber on all tasks.
async fn run_cadre(args: &Args, params_json: &str) -> anyhow::Result<(Received, Generated)> {
    let node = InProcess::start(args.concurrency as usize, &args.synchronous).await?;
    let credential = node.credential();
    let url = format!("ws://{}/v1/events", node.running.http_addr);
    let subscribe = json!({ "type": "subscribe", "token": credential }).to_string();
    eprintln!("cadre: opening {} subscribers to {url}", args.subscribers);
    let result = async {
        let subs = Subscribers::open(args.subscribers, &url, &subscribe).await?;
        eprintln!(
            "cadre: generating for {} s at {}",
            args.seconds,
            rate_text(args.rate)
        );
        let first = Instant::now();
        let grpc = format!("http://{}", node.running.grpc_addr);
        let generated = generate(args, &grpc, credential.as_deref(), params_json).await?;
        let received = subs.finish(first, args).await;
        anyhow::Ok((received, generated))
    }
    .await;
    node.running.shutdown().await;
    result
}

fn rate_text(rate: u64) -> String {
    if rate == 0 {
        "full speed".into()
    } else {
        format!("{rate} tasks/s")
    }
}

/// The baseline route: each WebSocket client, once it sent anything (its `subscribe`), gets
/// `subscribed` and then every message of the broadcast channel; one that falls behind the
/// channel's capacity gets `lagged` and is closed, as cadre does.
async fn broadcast_ws(State(tx): State<broadcast::Sender<Utf8Bytes>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        if !matches!(socket.recv().await, Some(Ok(AxumMessage::Text(_)))) {
            return;
        }
        let mut rx = tx.subscribe();
        let hello = json!({ "type": "subscribed", "cursor": 0 }).to_string();
        if socket.send(AxumMessage::Text(hello.into())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Ok(text) => {
                        if socket.send(AxumMessage::Text(text)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let lagged = json!({ "type": "lagged", "cursor": 0 }).to_string();
                        let _ = socket.send(AxumMessage::Text(lagged.into())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                m = socket.recv() => if !matches!(m, Some(Ok(_))) {
                    return;
                },
            }
        }
    })
}

/// One baseline event of `size` bytes of JSON text, stamped now.
fn baseline_event(cursor: u64, size: usize) -> String {
    let head = format!(
        "{{\"type\":\"event\",\"cursor\":{cursor},\"at_ms\":{},\"pad\":\"",
        now_ms() as u64
    );
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Phase 2: `events` messages of `size` bytes published evenly over `over` into a broadcast
/// channel that an axum route forwards to every subscriber.
async fn run_broadcast(args: &Args, events: u64, size: usize, over: Duration) -> anyhow::Result<Received> {
    // The same capacity as a cadre subscriber's queue (`server.ws_buffer`, default 1024).
    let (tx, _) = broadcast::channel::<Utf8Bytes>(1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/ws", axum::routing::get(broadcast_ws))
        .with_state(tx.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    eprintln!("broadcast: opening {} subscribers to {url}", args.subscribers);
    let subs = Subscribers::open(args.subscribers, &url, "{\"type\":\"subscribe\"}").await?;
    eprintln!(
        "broadcast: publishing {events} events of {size} B over {:.1} s",
        over.as_secs_f64()
    );
    let first = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut sent = 0u64;
    while sent < events {
        tick.tick().await;
        let due = ((first.elapsed().as_secs_f64() / over.as_secs_f64().max(1e-3)) * events as f64) as u64;
        while sent < due.min(events) {
            sent += 1;
            let _ = tx.send(baseline_event(sent, size).into());
        }
    }
    let received = subs.finish(first, args).await;
    let _ = stop.send(());
    drop(tx);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => eprintln!("warning: broadcast server: {e}"),
        Ok(Err(e)) => eprintln!("warning: broadcast server task: {e}"),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    Ok(received)
}

fn summary_json(s: &Summary, r: &Received) -> serde_json::Value {
    json!({
        "delivered": s.ok,
        "delivered_per_sec": s.per_sec.round(),
        "elapsed_s": s.elapsed_s,
        "lag_p50_ms": s.p50_us / 1_000.0,
        "lag_p99_ms": s.p99_us / 1_000.0,
        "lag_p999_ms": s.p999_us / 1_000.0,
        "lag_max_ms": s.max_us / 1_000.0,
        "bytes": r.bytes,
        "lagged_subscribers": r.lagged,
        "broken_subscribers": r.broken,
        "min_events_per_subscriber": r.min_events,
        "max_events_per_subscriber": r.max_events,
    })
}

fn print_table(c: &Summary, cr: &Received, b: &Summary, br: &Received) {
    let row = |name: &str, a: String, b: String, r: String| println!("{name:<26} {a:>16} {b:>16} {r:>14}");
    println!();
    row("", "cadre".into(), "broadcast".into(), "cadre/bcast".into());
    println!("{}", "-".repeat(75));
    row(
        "delivered events",
        c.ok.to_string(),
        b.ok.to_string(),
        String::new(),
    );
    row(
        "events per subscriber",
        format!("{}-{}", cr.min_events, cr.max_events),
        format!("{}-{}", br.min_events, br.max_events),
        String::new(),
    );
    row(
        "elapsed (s)",
        format!("{:.2}", c.elapsed_s),
        format!("{:.2}", b.elapsed_s),
        String::new(),
    );
    row(
        "delivered events/s",
        format!("{:.0}", c.per_sec),
        format!("{:.0}", b.per_sec),
        format!("{:.3}", ratio(c.per_sec, b.per_sec)),
    );
    for (name, x, y) in [
        ("lag p50 (ms)", c.p50_us, b.p50_us),
        ("lag p99 (ms)", c.p99_us, b.p99_us),
        ("lag p99.9 (ms)", c.p999_us, b.p999_us),
        ("lag max (ms)", c.max_us, b.max_us),
    ] {
        row(
            name,
            format!("{:.1}", x / 1e3),
            format!("{:.1}", y / 1e3),
            format!("{:.2}", ratio(x, y)),
        );
    }
    row(
        "lagged / broken subscribers",
        format!("{} / {}", cr.lagged, cr.broken),
        format!("{} / {}", br.lagged, br.broken),
        String::new(),
    );
    println!();
}

/// Runs both phases and prints the report; Ok(false) when something failed on the way.
async fn run(args: Args) -> anyhow::Result<bool> {
    let params_json = format!(
        "{{\"p\":\"{}\"}}",
        "x".repeat((args.payload_bytes as usize).saturating_sub(PARAMS_OVERHEAD))
    );
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    eprintln!(
        "wsfanout: {} subscribers, {} for {} s, {} B params, {cores} cores",
        args.subscribers,
        rate_text(args.rate),
        args.seconds,
        params_json.len()
    );
    let (cadre, generated) = run_cadre(&args, &params_json).await?;
    if let Some(e) = &generated.first_error {
        eprintln!("cadre: {} submits failed; first: {e}", generated.failed);
    }
    // The baseline gets what one cadre subscriber got: that many events, over the same time.
    let events = cadre.max_events;
    if events == 0 {
        bail!("no cadre subscriber received any event");
    }
    let size = (cadre.bytes / cadre.stats.ok.max(1)) as usize;
    let over = generated.elapsed;
    let baseline = run_broadcast(&args, events, size, over).await?;
    for (label, r) in [("cadre", &cadre), ("broadcast", &baseline)] {
        if !r.stats.sample_errors.is_empty() {
            eprintln!("{label}: {} subscribers broke; first errors:", r.broken);
            for e in &r.stats.sample_errors {
                eprintln!("  {e}");
            }
        }
    }
    let ok = generated.failed == 0 && cadre.broken == 0 && baseline.broken == 0;
    let (mut cadre, mut baseline) = (cadre, baseline);
    let c = std::mem::take(&mut cadre.stats).summarize();
    let b = std::mem::take(&mut baseline.stats).summarize();
    print_table(&c, &cadre, &b, &baseline);
    let throughput = ratio(c.per_sec, b.per_sec);
    println!(
        "delivered events/s cadre/broadcast = {throughput:.3} (target at least {TARGET_RATIO}: {})",
        if throughput >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    let result = json!({
        "subscribers": args.subscribers,
        "rate": args.rate,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "payload_bytes": params_json.len(),
        "tasks_submitted": generated.ok,
        "submits_failed": generated.failed,
        "generation_s": generated.elapsed.as_secs_f64(),
        "mean_event_bytes": size,
        "cores": cores,
        "cadre": summary_json(&c, &cadre),
        "broadcast": summary_json(&b, &baseline),
        "ratio": {
            "delivered_per_sec": throughput,
            "lag_p99": ratio(c.p99_us, b.p99_us),
        },
        "target_met": throughput >= TARGET_RATIO,
        "ok": ok,
    });
    println!("RESULT {result}");
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    cadre_benches::exit_code(
        run(Args::parse()).await,
        "some submits or subscribers failed (see above)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_ms_is_read_from_event_text() {
        assert_eq!(
            at_ms(r#"{"type":"event","at_ms":1732312312312,"x":1}"#),
            Some(1_732_312_312_312)
        );
        assert_eq!(at_ms(r#"{"at_ms": 5}"#), Some(5));
        assert_eq!(at_ms(r#"{"type":"event"}"#), None);
    }

    #[test]
    fn baseline_events_have_the_asked_size() {
        let e = baseline_event(7, 300);
        assert_eq!(e.len(), 300);
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["type"], "event");
        assert!(at_ms(&e).is_some());
    }
}
