//! `gatewaybench`: cadre's OpenAI-compatible gateway (`POST /v1/chat/completions`) against a
//! local upstream that answers at once, next to the same upstream called directly, in one run.
//!
//! The tool starts two processes from release builds (by default the binaries next to this
//! one): `cadre-fake-llm --port 0`, the local OpenAI-compatible server whose model `echo`
//! answers `You said: <message>` at once, and `cadre serve` with an embedded store in a
//! temporary data dir, one llm provider pointing at the fake, the gateway model `echo` on it,
//! the llm response cache off (every request reaches the upstream) and the
//! `intelligence/writer` pool (where `intelligence.llm.chat` runs) raised to the concurrency.
//! The credential is the node's own commander key from its data dir, as `loadgen` uses.
//!
//! Then, with one `reqwest` client and `--concurrency` closed request loops, it alternates
//! phases, `--rounds` times: **direct** (the same request to the fake's
//! `/v1/chat/completions`) then **gateway** (to cadre's). Each phase runs `--warmup-seconds`
//! unmeasured, then `--seconds` measured. Every request is a distinct message (so no cache
//! could answer it), and every answer must be 200 with the echoed text (or, with `--stream`,
//! an event stream ending with `data: [DONE]`). The report: each phase's requests/s and
//! latency percentiles, the CPU seconds of cadre, the fake and this process in each measured
//! window, the gateway/direct throughput ratio, the p50 and p99 the gateway adds, and one
//! `RESULT {json}` line. The exit status is non-zero when any request failed; the ratios are
//! reported, not asserted.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cadre::server::Endpoints;
use cadre_benches::stats::{RunStats, Summary, ratio};
use cadre_client::Bearer;
use cadre_supervisors::supervisor::MAX_POOL_SIZE;
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The target: the gateway keeps at least this share of the direct rate.
const TARGET_RATIO: f64 = 0.5;
/// The target: the gateway adds less than this to the median latency, in ms.
const TARGET_ADDED_P50_MS: f64 = 2.0;
/// Linux clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/<pid>/stat` times.
const CLOCK_TICKS: f64 = 100.0;

/// Command line of `gatewaybench`.
#[derive(Parser, Debug)]
#[command(
    name = "gatewaybench",
    about = "cadre's OpenAI-compatible gateway against the same local upstream called directly"
)]
struct Args {
    /// The `cadre` binary (default: `cadre` next to this binary, i.e. target/release/cadre).
    #[arg(long, value_name = "PATH")]
    cadre_bin: Option<PathBuf>,
    /// The fake upstream (default: `cadre-fake-llm` next to this binary).
    #[arg(long, value_name = "PATH")]
    fake_llm_bin: Option<PathBuf>,
    /// Concurrent request loops (both targets).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_seconds: u64,
    /// Pairs of phases (direct, then gateway).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Streamed requests (`"stream": true`), timed to the end of the stream.
    #[arg(long)]
    stream: bool,
    /// Workers of the node's `intelligence/writer` pool (default: the concurrency).
    #[arg(long)]
    pool: Option<usize>,
    /// Time limit of one request.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    request_timeout_ms: u64,
    /// Keep the temporary directory (config, data, logs) and print its path.
    #[arg(long)]
    keep_dir: bool,
}

/// Where one phase sends its requests.
struct Target {
    /// `direct` or `gateway`.
    name: &'static str,
    /// The full URL of `/v1/chat/completions`.
    url: String,
    /// The bearer credential, if the target needs one.
    bearer: Option<String>,
}

/// The two processes the run started, and the directory of their config, data and logs.
struct Procs {
    dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
}

impl Procs {
    /// The pid of the child named `name`.
    fn pid(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|(n, _)| *n == name)?.1.id()
    }

    /// SIGTERM to every child, then up to 10 s for each to exit before it is killed.
    async fn stop(&mut self) {
        for (_, child) in &self.children {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for (name, mut child) in self.children.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                eprintln!("warning: {name} did not stop within 10 s of SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// `name` next to this binary, or `given`; fails with how to build it when it is missing.
fn binary(given: &Option<PathBuf>, name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join(name),
    };
    if !path.is_file() {
        bail!(
            "no {name} binary at {}; build it with `cargo build --release -p {package} --bin {name}`",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `cadre-fake-llm --port 0` and returns its base URL (`http://127.0.0.1:PORT/v1`),
/// read from the first line it prints.
async fn start_fake(procs: &mut Procs, bin: &Path) -> anyhow::Result<String> {
    let log = std::fs::File::create(procs.dir.path().join("fake-llm.log"))?;
    let mut child = Command::new(bin)
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    procs.children.push(("fake-llm", child));
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .context("cadre-fake-llm printed no address within 30 s")??;
    line.trim()
        .strip_prefix("listening on ")
        .map(str::to_string)
        .with_context(|| format!("cadre-fake-llm printed {line:?}, not its address"))
}

/// The node's config: its data dir, the fake as its only llm provider, the gateway model
/// `echo`, no response cache, and the writer pool at `pool` workers.
fn node_toml(data: &Path, fake_url: &str, pool: usize) -> String {
    format!(
        "[node]\nid = \"gatewaybench\"\ndata_dir = {:?}\n[log]\nlevel = \"warn\"\n\
         [executors.llm]\ncache_entries = 0\n\
         [executors.llm.providers.fake]\nbase_url = {fake_url:?}\n\
         [executors.llm.models.echo]\nprovider = \"fake\"\nmodel = \"echo\"\n\
         [supervisors.intelligence.pools]\nwriter = {pool}\n",
        data.display().to_string()
    )
}

/// Starts `cadre serve` on free ports with [`node_toml`] and waits up to 60 s for its
/// `endpoints.json`.
async fn start_cadre(
    procs: &mut Procs,
    bin: &Path,
    fake_url: &str,
    pool: usize,
) -> anyhow::Result<Endpoints> {
    let data = procs.dir.path().join("data");
    let config = procs.dir.path().join("cadre.toml");
    std::fs::write(&config, node_toml(&data, fake_url, pool))?;
    let child = cadre_benches::serve::spawn(bin, &config, &[], procs.dir.path())?;
    procs.children.push(("cadre", child));
    let child = &mut procs.children.last_mut().context("child")?.1;
    cadre_benches::serve::wait_for_endpoints(child, "cadre", procs.dir.path(), &data).await
}

/// Sends request number `n` to `target` and checks its answer: 200 with the echoed message,
/// or a stream that ends with `data: [DONE]`.
async fn call(client: &reqwest::Client, target: &Target, n: u64, stream: bool) -> Result<(), String> {
    let stream_field = if stream { ",\"stream\":true" } else { "" };
    let body = format!(
        "{{\"model\":\"echo\",\"messages\":[{{\"role\":\"user\",\"content\":\"bench {n}\"}}]{stream_field}}}"
    );
    let mut req = client
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(b) = &target.bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.map_err(|e| format!("{}: {e}", target.name))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("{}: body: {e}", target.name))?;
    let answered = if stream {
        text.trim_end().ends_with("data: [DONE]")
    } else {
        text.contains(&format!("You said: bench {n}\""))
    };
    if status.is_success() && answered {
        Ok(())
    } else {
        let head: String = text.chars().take(300).collect();
        Err(format!("{}: HTTP {status}: {head}", target.name))
    }
}

/// CPU seconds (user + system) process `pid` has used, from `/proc/<pid>/stat`.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3, the state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS)
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// What one phase measured.
struct Phase {
    /// `direct` or `gateway`.
    target: &'static str,
    /// Its requests.
    stats: RunStats,
    /// CPU seconds of (cadre, the fake, this process) in the measured window.
    cpu: [f64; 3],
    /// The 1-minute load average when the phase started.
    load: f64,
}

/// How a phase runs: its loops, their request time limit, warm-up and measured span.
#[derive(Clone, Copy)]
struct Plan {
    concurrency: usize,
    request_timeout: Duration,
    warmup: Duration,
    measured: Duration,
    stream: bool,
}

/// Runs one phase against `target`: closed loops for the warm-up and the measured span. A
/// request counts towards throughput when it ends inside the measured span; its latency is
/// kept when it also started there. Every failure counts, warm-up included.
async fn phase(client: &reqwest::Client, target: Arc<Target>, plan: Plan, pids: [u32; 3]) -> Phase {
    let load = load_average();
    let measure_from = Instant::now() + plan.warmup;
    let end = measure_from + plan.measured;
    let next = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        let (client, target, next) = (client.clone(), target.clone(), next.clone());
        loops.spawn(async move {
            let mut stats = RunStats::default();
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let res =
                    tokio::time::timeout(plan.request_timeout, call(&client, &target, n, plan.stream)).await;
                let t1 = Instant::now();
                match res {
                    Ok(Ok(())) if t1 >= measure_from && t1 <= end => {
                        stats.ok += 1;
                        if t0 >= measure_from {
                            stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
                        }
                    }
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => stats.fail(e),
                    Err(_) => stats.fail(format!(
                        "{}: no reply within {:?}",
                        target.name, plan.request_timeout
                    )),
                }
            }
            stats
        });
    }
    let cpu_now = || pids.map(|p| proc_cpu_secs(p).unwrap_or(0.0));
    tokio::time::sleep_until(measure_from.into()).await;
    let before = cpu_now();
    tokio::time::sleep_until(end.into()).await;
    let after = cpu_now();
    let mut stats = RunStats::from_loops(loops).await;
    stats.elapsed = plan.measured;
    Phase {
        target: target.name,
        stats,
        cpu: [0, 1, 2].map(|i| after[i] - before[i]),
        load,
    }
}

/// The phases of `target` together: their requests, their measured time added up.
fn combined(phases: &[Phase], target: &str) -> RunStats {
    let mut all = RunStats::default();
    for p in phases.iter().filter(|p| p.target == target) {
        all.merge(p.stats.clone());
        all.elapsed += p.stats.elapsed;
    }
    all
}

/// A summary as JSON, latencies in milliseconds.
fn summary_json(s: &Summary) -> Value {
    json!({
        "ok": s.ok, "failed": s.failed, "seconds": s.elapsed_s, "per_sec": s.per_sec,
        "p50_ms": s.p50_us / 1e3, "p99_ms": s.p99_us / 1e3, "p999_ms": s.p999_us / 1e3,
        "max_ms": s.max_us / 1e3,
    })
}

/// Prints one table row: a phase (or a total) with its throughput and latencies.
fn print_row(label: &str, s: &Summary, cpu: Option<[f64; 3]>, load: Option<f64>) {
    let cpu = cpu.map_or(String::from("-"), |c| {
        format!("{:.1} / {:.1} / {:.1}", c[0], c[1], c[2])
    });
    let load = load.map_or(String::from("-"), |l| format!("{l:.2}"));
    println!(
        "| {label} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {cpu} | {load} |",
        s.ok,
        s.failed,
        s.per_sec,
        s.p50_us / 1e3,
        s.p99_us / 1e3,
        s.p999_us / 1e3,
        s.max_us / 1e3,
    );
}

/// Prints the tables and the verdicts; returns the `RESULT` object.
fn report(args: &Args, phases: &[Phase]) -> Value {
    println!();
    println!(
        "| phase | ok | failed | req/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU s cadre / fake / bench | load |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, p) in phases.iter().enumerate() {
        let label = format!("{} {}", i / 2 + 1, p.target);
        print_row(&label, &p.stats.clone().summarize(), Some(p.cpu), Some(p.load));
    }
    let d = combined(phases, "direct").summarize();
    let g = combined(phases, "gateway").summarize();
    print_row("all direct", &d, None, None);
    print_row("all gateway", &g, None, None);
    let throughput = ratio(g.per_sec, d.per_sec);
    let added_p50 = (g.p50_us - d.p50_us) / 1e3;
    let added_p99 = (g.p99_us - d.p99_us) / 1e3;
    let gw_cpu: f64 = phases
        .iter()
        .filter(|p| p.target == "gateway")
        .map(|p| p.cpu[0])
        .sum();
    let cadre_us_per_request = if g.ok > 0 { gw_cpu * 1e6 / g.ok as f64 } else { 0.0 };
    let verdict = |met: bool| if met { "met" } else { "missed" };
    println!();
    println!(
        "throughput gateway/direct: {throughput:.3} (target >= {TARGET_RATIO}: {})",
        verdict(throughput >= TARGET_RATIO)
    );
    println!(
        "added p50: {added_p50:.2} ms (target < {TARGET_ADDED_P50_MS} ms: {}), added p99: {added_p99:.2} ms",
        verdict(added_p50 < TARGET_ADDED_P50_MS)
    );
    println!("cadre CPU per gateway request: {cadre_us_per_request:.0} µs");
    json!({
        "concurrency": args.concurrency, "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
        "rounds": args.rounds, "stream": args.stream,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "phases": phases.iter().map(|p| json!({
            "target": p.target, "load": p.load, "cpu_s": {"cadre": p.cpu[0], "fake": p.cpu[1], "bench": p.cpu[2]},
            "summary": summary_json(&p.stats.clone().summarize()),
        })).collect::<Vec<_>>(),
        "direct": summary_json(&d),
        "gateway": summary_json(&g),
        "ratio": {"throughput": throughput},
        "added_ms": {"p50": added_p50, "p99": added_p99},
        "cadre_cpu_us_per_request": cadre_us_per_request,
    })
}

/// Checks that both targets answer one request, then runs the alternating phases.
async fn measure(args: &Args, procs: &Procs, fake_url: &str, http: &str) -> anyhow::Result<Vec<Phase>> {
    let credential = Bearer::from_data_dir(&procs.dir.path().join("data"));
    let direct = Arc::new(Target {
        name: "direct",
        url: format!("{fake_url}/chat/completions"),
        bearer: None,
    });
    let gateway = Arc::new(Target {
        name: "gateway",
        url: format!("{}/v1/chat/completions", http.trim_end_matches('/')),
        bearer: credential,
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    for t in [&direct, &gateway] {
        call(&client, t, u64::MAX, args.stream)
            .await
            .map_err(|e| anyhow::anyhow!("the first request failed: {e}"))?;
    }
    let plan = Plan {
        concurrency: args.concurrency as usize,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        warmup: Duration::from_secs(args.warmup_seconds),
        measured: Duration::from_secs(args.seconds),
        stream: args.stream,
    };
    let pids = [
        procs.pid("cadre").unwrap_or(0),
        procs.pid("fake-llm").unwrap_or(0),
        std::process::id(),
    ];
    let mut phases = Vec::new();
    for round in 1..=args.rounds {
        for t in [&direct, &gateway] {
            let p = phase(&client, t.clone(), plan, pids).await;
            let s = p.stats.clone().summarize();
            eprintln!(
                "round {round} {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
                t.name,
                s.per_sec,
                s.p50_us / 1e3,
                s.p99_us / 1e3,
                s.failed
            );
            for e in &p.stats.sample_errors {
                eprintln!("  error: {e}");
            }
            phases.push(p);
        }
    }
    Ok(phases)
}

/// Starts the processes, measures, reports, and stops them on every path.
async fn run(args: Args) -> anyhow::Result<bool> {
    let cadre_bin = binary(&args.cadre_bin, "cadre", "cadre")?;
    let fake_bin = binary(&args.fake_llm_bin, "cadre-fake-llm", "cadre-fake-llm")?;
    let pool = args
        .pool
        .unwrap_or(args.concurrency as usize)
        .clamp(1, MAX_POOL_SIZE);
    let dir = tempfile::Builder::new().prefix("gatewaybench-").tempdir()?;
    let mut procs = Procs {
        dir,
        children: Vec::new(),
    };
    eprintln!(
        "gatewaybench: concurrency {}, {} rounds of direct -> gateway, {} s each after {} s of \
         warm-up, {}, writer pool {pool}, load average {:.2}",
        args.concurrency,
        args.rounds,
        args.seconds,
        args.warmup_seconds,
        if args.stream { "streamed" } else { "not streamed" },
        load_average()
    );
    let outcome = async {
        let fake_url = start_fake(&mut procs, &fake_bin).await?;
        let endpoints = start_cadre(&mut procs, &cadre_bin, &fake_url, pool).await?;
        measure(&args, &procs, &fake_url, &endpoints.http).await
    }
    .await;
    procs.stop().await;
    if args.keep_dir {
        eprintln!("kept {}", procs.dir.keep().display());
    }
    let phases = outcome?;
    let mut result = report(&args, &phases);
    let ok = phases.iter().all(|p| p.stats.failed == 0);
    result["ok"] = json!(ok);
    println!("RESULT {result}");
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    cadre_benches::exit_code(run(Args::parse()).await, "some requests failed (see above)")
}
