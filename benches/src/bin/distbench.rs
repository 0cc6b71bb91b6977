//! `distbench`: distributed mode end to end (JetStream + PostgreSQL), read against a raw
//! async-nats JetStream publish -> pull-consume -> ack loop.
//!
//! Phase 1 starts the release `cadre` binary twice, as a tier-0 orchestrator (PostgreSQL store
//! in a fresh database) and as one supervisor node for `system`, on a NATS prefix of their own
//! and a shared HS256 key. Once the supervisor shows up in the status tree, `--concurrency`
//! loops drive `system.debug.echo` no-op tasks through `TaskService.SubmitAndWait` for
//! `--warmup-secs` (not measured) plus `--duration-secs` (measured).
//!
//! Phase 2 publishes messages of the size of a cadre task message (`WorkMsg` JSON) to a
//! work-queue stream of its own, with `--concurrency` loops, while one pull consumer fetches
//! and acks them; one message's latency runs from its publish to its consumer's ack.
//!
//! During each measured window the tool samples the CPU time of every process involved
//! (`/proc`) and PostgreSQL's commit count for the database. It prints a table, the ratio
//! cadre/raw and one `RESULT {json}` line. It removes what it created (processes, database,
//! streams, KV bucket) on success, on failure, on Ctrl-C and on SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer, stream};
use cadre::server::Endpoints;
use cadre_benches::stats::{RunStats, Summary, ratio};
use cadre_bus::wire::WorkMsg;
use cadre_core::auth::Bearer;
use cadre_proto::v1::admin_service_client::AdminServiceClient;
use cadre_proto::v1::task_service_client::TaskServiceClient;
use cadre_proto::v1::{StatusRequest, SubmitAndWaitRequest, TaskSpec, TaskState};
use cadre_proto::{Priority, RetryPolicy, TaskId};
use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

/// Bytes of `{"p":""}` around the padding of the params JSON.
const PARAMS_OVERHEAD: usize = 8;
/// The throughput the distributed-mode issue asks for on a 2-core machine.
const TARGET_TASKS_PER_SEC: f64 = 5_000.0;
/// Linux clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/<pid>/stat` times.
const CLOCK_TICKS: f64 = 100.0;
/// Largest decoded reply.
const MAX_REPLY_BYTES: usize = 16 << 20;

/// Command line of `distbench`.
#[derive(Parser, Debug)]
#[command(
    name = "distbench",
    about = "Distributed cadre (JetStream + PostgreSQL) end to end, against a raw JetStream publish/pull/ack loop"
)]
struct Args {
    /// The `cadre` binary (default: `cadre` next to this binary, i.e. target/release/cadre).
    #[arg(long, value_name = "PATH")]
    cadre_bin: Option<PathBuf>,
    /// NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// PostgreSQL admin URL: a role that may create databases and an existing database to
    /// connect to. The bench creates `cadre_bench_<random>` next to it and drops it at the end.
    #[arg(
        long,
        env = "CADRE_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pg_url: String,
    /// Concurrent request loops (both phases).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// gRPC channels (HTTP/2 connections) to the orchestrator, used round-robin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    connections: u64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=3600))]
    warmup_secs: u64,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Approximate size of each task's params JSON `{"p":"xx..."}`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65_536))]
    payload_bytes: u64,
    /// Workers in the supervisor node's `system/monitor` pool (default: the concurrency).
    #[arg(long)]
    pool: Option<usize>,
    /// `bus.max_inflight` of the supervisor node (task messages it holds at once).
    #[arg(long, default_value_t = 512)]
    max_inflight: usize,
    /// `store.batch_max` of the orchestrator (writes per PostgreSQL transaction).
    #[arg(long, default_value_t = 512)]
    batch_max: usize,
    /// Time limit of one request.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    request_timeout_ms: u64,
    /// Skip phase 1 (cadre).
    #[arg(long)]
    skip_cadre: bool,
    /// Skip phase 2 (raw JetStream).
    #[arg(long)]
    skip_raw: bool,
    /// Diagnostic: run `VACUUM (ANALYZE) tasks` on the store every this many seconds during
    /// phase 1, as if autovacuum kept up with the table (0 = never, leave it to autovacuum).
    #[arg(long, default_value_t = 0)]
    vacuum_every_secs: u64,
    /// Keep the temporary directory (configs and the nodes' logs) and print its path.
    #[arg(long)]
    keep_dir: bool,
}

// ---------------------------------------------------------------------------------------------
// Timed driver

/// When a phase warms up, measures and stops.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
    request_timeout: Duration,
}

impl Window {
    fn new(args: &Args) -> Window {
        let measure_from = Instant::now() + Duration::from_secs(args.warmup_secs);
        Window {
            measure_from,
            end: measure_from + Duration::from_secs(args.duration_secs),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
        }
    }
}

/// Runs `concurrency` closed loops of `call` until the window ends. A request counts towards
/// throughput when it completes inside the measured window; its latency is kept when it both
/// started and completed inside it. Any failure, warm-up included, is counted.
async fn drive_for<F, Fut>(concurrency: usize, window: Window, call: F) -> RunStats
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let call = call.clone();
        loops.spawn(async move {
            let mut stats = RunStats::default();
            while Instant::now() < window.end {
                let t0 = Instant::now();
                let res = tokio::time::timeout(window.request_timeout, call()).await;
                let t1 = Instant::now();
                match res {
                    Ok(Ok(())) => {
                        if t1 >= window.measure_from && t1 <= window.end {
                            stats.ok += 1;
                            if t0 >= window.measure_from {
                                stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
                            }
                        }
                    }
                    Ok(Err(e)) => stats.fail(e),
                    Err(_) => stats.fail(format!(
                        "no reply within {} ms",
                        window.request_timeout.as_millis()
                    )),
                }
            }
            stats
        });
    }
    let mut all = RunStats::default();
    while let Some(res) = loops.join_next().await {
        match res {
            Ok(stats) => all.merge(stats),
            Err(e) => all.fail(format!("request loop crashed: {e}")),
        }
    }
    all.elapsed = window.end - window.measure_from;
    all
}

// ---------------------------------------------------------------------------------------------
// CPU and PostgreSQL sampling

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3, the state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS)
}

/// Pids of every process whose command name is `comm`.
fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// Busy and total CPU seconds of the whole machine, from `/proc/stat`.
fn machine_cpu_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
    Some(((total - idle) / CLOCK_TICKS, total / CLOCK_TICKS))
}

/// A named group of processes whose CPU time is sampled.
#[derive(Clone)]
struct Tracked {
    name: String,
    pids: Vec<u32>,
    /// Look the pids up by this command name when the window starts (PostgreSQL forks a
    /// backend per connection, and the nodes' pools open connections as load grows).
    comm: Option<&'static str>,
}

impl Tracked {
    /// A group of fixed pids.
    fn of(name: &str, pids: Vec<u32>) -> Self {
        Tracked {
            name: name.into(),
            pids,
            comm: None,
        }
    }

    /// Every process named `comm`, looked up when the measured window starts.
    fn named(comm: &'static str) -> Self {
        Tracked {
            name: comm.into(),
            pids: Vec::new(),
            comm: Some(comm),
        }
    }

    /// CPU seconds used so far, per pid that is still there.
    fn cpu(&self) -> std::collections::HashMap<u32, f64> {
        self.pids
            .iter()
            .filter_map(|p| Some((*p, proc_cpu_secs(*p)?)))
            .collect()
    }
}

/// CPU use over a measured window: for each tracked group, the share of one core it used
/// (1.0 = one full core); `machine` is the busy share of all cores of the machine, all
/// processes included.
#[derive(Clone, Debug, Default)]
struct CpuReport {
    per_process: Vec<(String, f64)>,
    machine_busy_cores: f64,
    machine_cores: f64,
}

impl CpuReport {
    fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (n, c) in &self.per_process {
            m.insert(n.clone(), json!((c * 1000.0).round() / 1000.0));
        }
        json!({
            "cores_used": m,
            "machine_busy_cores": (self.machine_busy_cores * 1000.0).round() / 1000.0,
            "machine_cores": self.machine_cores,
        })
    }

    fn print(&self, label: &str) {
        let parts: Vec<String> = self
            .per_process
            .iter()
            .map(|(n, c)| format!("{n} {:.0}%", c * 100.0))
            .collect();
        println!(
            "{label} CPU (% of one core): {}; machine busy {:.2} of {:.0} cores",
            parts.join(", "),
            self.machine_busy_cores,
            self.machine_cores
        );
    }
}

/// Samples the CPU time of `groups` at the start and at the end of `window`.
async fn sample_cpu(groups: Vec<Tracked>, window: Window) -> CpuReport {
    tokio::time::sleep_until(window.measure_from.into()).await;
    let mut groups = groups;
    for g in &mut groups {
        if let Some(comm) = g.comm {
            g.pids = pids_named(comm);
        }
    }
    let before: Vec<_> = groups.iter().map(Tracked::cpu).collect();
    let m0 = machine_cpu_secs();
    let t0 = Instant::now();
    tokio::time::sleep_until(window.end.into()).await;
    let secs = t0.elapsed().as_secs_f64();
    let after: Vec<_> = groups.iter().map(Tracked::cpu).collect();
    let m1 = machine_cpu_secs();
    let (machine_busy_cores, machine_cores) = match (m0, m1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
            (cores * (b1 - b0) / (t1 - t0), cores)
        }
        _ => (0.0, 0.0),
    };
    CpuReport {
        per_process: groups
            .iter()
            .zip(before.iter().zip(after))
            // Only processes there at both ends: one that exited in the window would
            // subtract its whole life's CPU (one forked in the window is not counted).
            .map(|(g, (b, a))| {
                let used: f64 = a.iter().filter_map(|(pid, a)| Some(a - b.get(pid)?)).sum();
                (g.name.clone(), used / secs)
            })
            .collect(),
        machine_busy_cores,
        machine_cores,
    }
}

/// The process groups every phase tracks: this process, the NATS server and PostgreSQL (all
/// its processes, other databases' sessions included).
fn common_groups() -> Vec<Tracked> {
    vec![
        Tracked::of("distbench", vec![std::process::id()]),
        Tracked::named("nats-server"),
        Tracked::named("postgres"),
    ]
}

/// PostgreSQL counters: the database's (`pg_stat_database`) and the server's WAL
/// (`pg_stat_wal`, every database).
#[derive(Clone, Copy, Debug, Default)]
struct PgCounters {
    commits: i64,
    inserted: i64,
    updated: i64,
    returned: i64,
    wal_records: i64,
    wal_syncs: i64,
}

async fn pg_counters(conn: &mut PgConnection, db: &str) -> anyhow::Result<PgCounters> {
    // Statistics are cached for the transaction; each query here is its own.
    let (commits, inserted, updated, returned): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_returned FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(&mut *conn)
    .await?;
    let (wal_records, wal_syncs): (i64, i64) =
        sqlx::query_as("SELECT wal_records, wal_sync FROM pg_stat_wal")
            .fetch_one(&mut *conn)
            .await?;
    Ok(PgCounters {
        commits,
        inserted,
        updated,
        returned,
        wal_records,
        wal_syncs,
    })
}

/// PostgreSQL activity over a measured window: counters per second, and what the database's
/// sessions were doing, sampled every 10 ms (`pg_stat_activity` state and wait event, as a
/// share of the samples).
async fn sample_pg(
    admin_url: String,
    db: String,
    store_url: String,
    window: Window,
) -> Option<serde_json::Value> {
    let mut conn = PgConnection::connect(&admin_url).await.ok()?;
    let mut store = PgConnection::connect(&store_url).await.ok()?;
    tokio::time::sleep_until(window.measure_from.into()).await;
    let a = pg_counters(&mut conn, &db).await.ok()?;
    let tables_a = table_counters(&mut store).await.ok()?;
    let t0 = Instant::now();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut samples = 0u64;
    while Instant::now() < window.end {
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&db)
        .fetch_all(&mut conn)
        .await
        .ok()?;
        samples += 1;
        for (state, wt, we) in rows {
            let state = state.unwrap_or_default();
            if state == "idle" {
                continue;
            }
            let key = match (wt, we) {
                (Some(t), Some(e)) => format!("{state}: {t}/{e}"),
                _ => format!("{state}: on CPU"),
            };
            *seen.entry(key).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    // The statistics are reported with a delay of up to a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let b = pg_counters(&mut conn, &db).await.ok()?;
    let tables_b = table_counters(&mut store).await.ok()?;
    let _ = conn.close().await;
    let _ = store.close().await;
    let mut tables = serde_json::Map::new();
    for (name, after) in &tables_b {
        let before = tables_a.get(name).copied().unwrap_or_default();
        let d: Vec<f64> = (0..after.len())
            .map(|i| ((after[i] - before[i]) as f64 / secs).round())
            .collect();
        if d.iter().all(|x| *x == 0.0) {
            continue;
        }
        let v = if name.starts_with("index ") {
            json!({"scans": d[2], "entries_read": d[3]})
        } else {
            json!({"seq_scans": d[0], "seq_rows_read": d[1], "idx_scans": d[2], "idx_rows_fetched": d[3]})
        };
        tables.insert(name.clone(), v);
    }
    let rate = |x: i64, y: i64| ((y - x) as f64 / secs).round();
    let mut busy: Vec<(String, u64)> = seen.into_iter().collect();
    busy.sort_by_key(|x| std::cmp::Reverse(x.1));
    let busy: serde_json::Map<String, serde_json::Value> = busy
        .into_iter()
        .map(|(k, n)| {
            (
                k,
                json!(((n as f64 / samples.max(1) as f64) * 100.0).round() / 100.0),
            )
        })
        .collect();
    Some(json!({
        "xact_commits_per_sec": rate(a.commits, b.commits),
        "rows_inserted_per_sec": rate(a.inserted, b.inserted),
        "rows_updated_per_sec": rate(a.updated, b.updated),
        "rows_returned_per_sec": rate(a.returned, b.returned),
        "server_wal_records_per_sec": rate(a.wal_records, b.wal_records),
        "server_wal_syncs_per_sec": rate(a.wal_syncs, b.wal_syncs),
        "active_sessions_avg": busy,
        "per_table_per_sec": tables,
    }))
}

/// Runs `VACUUM (ANALYZE) tasks` on the store every `every` until the window ends.
async fn vacuum_tasks(store_url: String, every: Duration, window: Window) {
    let Ok(mut conn) = PgConnection::connect(&store_url).await else {
        eprintln!("warning: cannot connect to vacuum the store");
        return;
    };
    while Instant::now() < window.end {
        tokio::time::sleep(every).await;
        if let Err(e) = conn.execute("VACUUM (ANALYZE) tasks").await {
            eprintln!("warning: VACUUM (ANALYZE) tasks: {e}");
        }
    }
    let _ = conn.close().await;
}

/// Per table of the store's database: sequential scans, rows they read, index scans, rows
/// they fetched (`pg_stat_user_tables`); and per index (`index <name>`): scans and index
/// entries read (`pg_stat_user_indexes`).
async fn table_counters(conn: &mut PgConnection) -> anyhow::Result<HashMap<String, [i64; 4]>> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, COALESCE(seq_scan, 0), COALESCE(seq_tup_read, 0), \
         COALESCE(idx_scan, 0), COALESCE(idx_tup_fetch, 0) FROM pg_stat_user_tables",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<String, [i64; 4]> = rows
        .into_iter()
        .map(|(n, a, b, c, d)| (n, [a, b, c, d]))
        .collect();
    let indexes: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT indexrelname::text, COALESCE(idx_scan, 0), COALESCE(idx_tup_read, 0) FROM pg_stat_user_indexes",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, scans, read) in indexes {
        out.insert(format!("index {name}"), [0, 0, scans, read]);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Resources and their cleanup

/// Everything the run creates outside its own memory, removed by [`Resources::cleanup`].
#[derive(Default)]
struct Resources {
    admin_url: String,
    nats_url: String,
    dir: Option<tempfile::TempDir>,
    keep_dir: bool,
    database: Option<String>,
    prefixes: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Resources {
    /// Stops the nodes (SIGTERM, then SIGKILL after 10 s), drops the database and deletes the
    /// streams and buckets of every prefix used.
    async fn cleanup(&mut self) {
        stop_children(&mut self.children).await;
        if let Some(db) = self.database.take() {
            match PgConnection::connect(&self.admin_url).await {
                Ok(mut conn) => {
                    let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                    if let Err(e) = conn.execute(sqlx::AssertSqlSafe(sql)).await {
                        eprintln!("warning: cannot drop database {db}: {e}");
                    }
                    let _ = conn.close().await;
                }
                Err(e) => eprintln!("warning: cannot reach PostgreSQL to drop {db}: {e}"),
            }
        }
        if !self.prefixes.is_empty() {
            match async_nats::connect(&self.nats_url).await {
                Ok(client) => {
                    let js = jetstream::new(client);
                    for p in &self.prefixes {
                        for s in ["WORK", "EVENTS", "DEAD", "RAW"] {
                            let _ = js.delete_stream(format!("{p}_{s}")).await;
                        }
                        let _ = js.delete_key_value(format!("{p}-peers")).await;
                    }
                    // Check that nothing of ours is left.
                    let mut names = js.stream_names();
                    while let Some(Ok(name)) = names.next().await {
                        if self
                            .prefixes
                            .iter()
                            .any(|p| name.starts_with(&format!("{p}_")) || name == format!("KV_{p}-peers"))
                        {
                            eprintln!("warning: stream {name} is still there");
                        }
                    }
                    self.prefixes.clear();
                }
                Err(e) => eprintln!(
                    "warning: cannot reach NATS to delete streams of {:?}: {e}",
                    self.prefixes
                ),
            }
        }
        // Dropping the directory removes it, unless it is to be kept.
        if let Some(dir) = self.dir.take()
            && self.keep_dir
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

async fn stop_children(children: &mut Vec<(String, Child)>) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for (name, mut child) in children.drain(..) {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("warning: {name} did not stop within 10 s of SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

fn random_hex() -> String {
    format!("{:016x}", fastrand::u64(..))
}

// ---------------------------------------------------------------------------------------------
// Phase 1: cadre

/// The `cadre` binary next to this one, or `--cadre-bin`.
fn cadre_bin(args: &Args) -> anyhow::Result<PathBuf> {
    let path = match &args.cadre_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("cadre"),
    };
    if !path.is_file() {
        bail!(
            "no cadre binary at {}; build it with `cargo build --release -p cadre --bin cadre` \
             or pass --cadre-bin",
            path.display()
        );
    }
    Ok(path)
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("a postgres:// URL")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{authority}/{db}{query}"))
}

/// Writes a node's config, starts `cadre serve` with `role_args`, and waits for its
/// `endpoints.json`. Returns the node's directory and endpoints.
async fn start_node(
    res: &mut Resources,
    bin: &Path,
    name: &str,
    toml: &str,
    role_args: &[&str],
) -> anyhow::Result<(PathBuf, Endpoints)> {
    let root = res.dir.as_ref().context("no temp dir")?.path().to_path_buf();
    let dir = root.join(name);
    let data = dir.join("data");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("cadre.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = {name:?}\ndata_dir = {:?}\n[log]\nlevel = \"warn\"\n{toml}",
            data.display().to_string()
        ),
    )?;
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let child = Command::new(bin)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .args(role_args)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = child.id().context("the node exited at once")?;
    res.children.push((name.to_string(), child));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(ep) = Endpoints::read(&data).filter(|e| e.pid == pid) {
            return Ok((dir, ep));
        }
        let child = &mut res.children.last_mut().context("child")?.1;
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited early ({status}); log:\n{}", tail_log(&dir));
        }
        if Instant::now() > deadline {
            bail!("{name} did not start within 60 s; log:\n{}", tail_log(&dir));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of a node's log.
fn tail_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Opens `n` channels to `url`.
async fn connect(url: &str, n: u64) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {url}"))?,
        );
    }
    Ok(out)
}

/// What phase 1 measured.
struct CadreOutcome {
    stats: RunStats,
    cpu: CpuReport,
    pg: Option<serde_json::Value>,
}

/// Phase 1: a two-process cluster on PostgreSQL and JetStream, driven with SubmitAndWait.
async fn run_cadre(args: &Args, res: &mut Resources, params_json: &str) -> anyhow::Result<CadreOutcome> {
    let bin = cadre_bin(args)?;
    let root = res.dir.as_ref().context("no temp dir")?.path().to_path_buf();
    let key = root.join("hs256.key");
    std::fs::write(
        &key,
        format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..)),
    )?;

    let db = format!("cadre_bench_{}", random_hex());
    let mut admin = PgConnection::connect(&args.pg_url)
        .await
        .with_context(|| format!("PostgreSQL is not reachable at {}", args.pg_url))?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await
        .with_context(|| format!("cannot create database {db}"))?;
    let _ = admin.close().await;
    res.database = Some(db.clone());
    let store_url = with_database(&args.pg_url, &db)?;

    let prefix = format!("bench{}", &random_hex()[..8]);
    res.prefixes.push(prefix.clone());
    let pool = args.pool.unwrap_or(args.concurrency as usize);
    let common = format!(
        "[auth]\nhs256_secret_file = {:?}\n[bus]\nnats_url = {:?}\nprefix = {prefix:?}\nmax_inflight = {}\n\
         [supervisors.system.pools]\nmonitor = {pool}\n",
        key.display().to_string(),
        args.nats_url,
        args.max_inflight,
    );
    let orch_toml = format!(
        "{common}[store]\nurl = {store_url:?}\nbatch_max = {}\n",
        args.batch_max
    );
    eprintln!("cadre: starting orchestrator and supervisor (prefix {prefix}, database {db})");
    let (orch_dir, orch) =
        start_node(res, &bin, "orchestrator", &orch_toml, &["--role", "orchestrator"]).await?;
    let (_, sup) = start_node(
        res,
        &bin,
        "supervisor",
        &common,
        &["--role", "supervisor", "--supervisor", "system"],
    )
    .await?;

    let credential = Bearer::from_data_dir(&orch_dir.join("data"));
    let bearer = Bearer::new(credential.as_deref())?;
    let channels = connect(&orch.grpc, args.connections).await?;

    // Ready: the orchestrator reached NATS and sees the supervisor node as running.
    let mut admin = AdminServiceClient::with_interceptor(channels[0].clone(), bearer.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = match admin.status(StatusRequest {}).await {
            Ok(st) => st
                .into_inner()
                .supervisors
                .iter()
                .filter(|s| s.state == "running")
                .count(),
            Err(_) => 0,
        };
        if running >= 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the supervisor node never showed up in the status tree; orchestrator log:\n{}",
                tail_log(&orch_dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let clients: Arc<Vec<_>> = Arc::new(
        channels
            .into_iter()
            .map(|ch| {
                TaskServiceClient::with_interceptor(ch, bearer.clone())
                    .max_decoding_message_size(MAX_REPLY_BYTES)
            })
            .collect(),
    );
    let spec = TaskSpec {
        task_type: "system.debug.echo".into(),
        params_json: params_json.to_string(),
        ..Default::default()
    };
    let turn = Arc::new(AtomicUsize::new(0));
    let call = move || {
        let mut client = clients[turn.fetch_add(1, Ordering::Relaxed) % clients.len()].clone();
        let req = SubmitAndWaitRequest {
            spec: Some(spec.clone()),
            wait_ms: 0,
        };
        async move {
            let task = client
                .submit_and_wait(req)
                .await
                .map_err(|s| format!("SubmitAndWait: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            if task.state == TaskState::Succeeded as i32 {
                Ok(())
            } else {
                let state = TaskState::try_from(task.state).map_or("UNKNOWN", |s| s.as_str_name());
                Err(format!("task ended {state}: {}", task.error))
            }
        }
    };

    let mut groups = common_groups();
    groups.insert(1, Tracked::of("orchestrator", vec![orch.pid]));
    groups.insert(2, Tracked::of("supervisor", vec![sup.pid]));
    let window = Window::new(args);
    eprintln!(
        "cadre: {} s warm-up, {} s measured, {} loops",
        args.warmup_secs, args.duration_secs, args.concurrency
    );
    let cpu = tokio::spawn(sample_cpu(groups, window));
    let vacuum = (args.vacuum_every_secs > 0).then(|| {
        tokio::spawn(vacuum_tasks(
            store_url.clone(),
            Duration::from_secs(args.vacuum_every_secs),
            window,
        ))
    });
    let pg = tokio::spawn(sample_pg(args.pg_url.clone(), db, store_url, window));
    let stats = drive_for(args.concurrency as usize, window, call).await;
    if let Some(v) = vacuum {
        v.abort();
    }
    let cpu = cpu.await.unwrap_or_default();
    let pg = pg.await.ok().flatten();
    // Close our connection first: the node waits up to its shutdown grace for open ones.
    drop(admin);
    stop_children(&mut res.children).await;
    Ok(CadreOutcome { stats, cpu, pg })
}

// ---------------------------------------------------------------------------------------------
// Phase 2: raw JetStream

/// Phase 2: publish (awaiting the PubAck) -> pull consumer -> ack, closed loop per request.
async fn run_raw(args: &Args, res: &mut Resources, body: Vec<u8>) -> anyhow::Result<(RunStats, CpuReport)> {
    let prefix = format!("bench{}", &random_hex()[..8]);
    res.prefixes.push(prefix.clone());
    let publisher = async_nats::connect(&args.nats_url)
        .await
        .with_context(|| format!("NATS is not reachable at {}", args.nats_url))?;
    let subscriber = async_nats::connect(&args.nats_url).await?;
    let js = jetstream::new(publisher);
    // The same stream settings as cadre's work stream.
    let stream = js
        .create_stream(stream::Config {
            name: format!("{prefix}_RAW"),
            subjects: vec![format!("{prefix}.raw.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            max_messages: 1_000_000,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    let name = format!("{prefix}-raw");
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    let consumer: consumer::PullConsumer = jetstream::new(subscriber)
        .get_stream(format!("{prefix}_RAW"))
        .await?
        .get_consumer(&name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the raw consumer: {e}"))?;

    let waiters: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>> = Arc::default();
    let consume = {
        let waiters = waiters.clone();
        tokio::spawn(async move {
            let mut messages = consumer.stream().max_messages_per_batch(256).messages().await?;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| anyhow::anyhow!("pull: {e}"))?;
                m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string());
                if let Some(w) =
                    id.and_then(|id| waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id))
                {
                    let _ = w.send(());
                }
            }
            anyhow::Ok(())
        })
    };

    let body = Arc::new(body);
    let seq = Arc::new(AtomicU64::new(0));
    let subject = format!("{prefix}.raw.system.normal");
    let call = {
        let waiters = waiters.clone();
        move || {
            let (js, body, subject, waiters) = (js.clone(), body.clone(), subject.clone(), waiters.clone());
            let id = format!("{}", seq.fetch_add(1, Ordering::Relaxed));
            async move {
                let (tx, rx) = oneshot::channel();
                waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone(), tx);
                let publish = jetstream::message::PublishMessage::build()
                    .payload(body.to_vec().into())
                    .message_id(&id);
                let ack = js
                    .send_publish(subject, publish)
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                ack.await.map_err(|e| format!("publish ack: {e}"))?;
                rx.await.map_err(|_| "the consumer stopped".to_string())
            }
        }
    };
    let window = Window::new(args);
    eprintln!(
        "raw: {} s warm-up, {} s measured, {} loops",
        args.warmup_secs, args.duration_secs, args.concurrency
    );
    let cpu = tokio::spawn(sample_cpu(common_groups(), window));
    let stats = drive_for(args.concurrency as usize, window, call).await;
    let cpu = cpu.await.unwrap_or_default();
    consume.abort();
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), consume).await {
        eprintln!("warning: raw consumer: {e}");
    }
    Ok((stats, cpu))
}

/// The JSON of the task message cadre publishes on the work stream for one echo task with
/// `params_json` (a fresh task id, default priority, timeout and retry policy).
fn work_message(params_json: &str) -> anyhow::Result<Vec<u8>> {
    let msg = WorkMsg {
        id: TaskId::new(),
        tenant: "default".into(),
        task_type: "system.debug.echo".into(),
        supervisor: "system".into(),
        worker_kind: "monitor".into(),
        executor: "echo".into(),
        params: serde_json::from_str(params_json)?,
        priority: Priority::new(5)?,
        timeout_ms: 300_000,
        retry: RetryPolicy::default(),
        attempt: 0,
        verified: false,
        fortress: false,
        traceparent: None,
    };
    Ok(serde_json::to_vec(&msg)?)
}

// ---------------------------------------------------------------------------------------------
// Report

fn summary_json(s: &Summary) -> serde_json::Value {
    json!({
        "ok": s.ok,
        "failed": s.failed,
        "measured_s": s.elapsed_s,
        "per_sec": s.per_sec.round(),
        "mean_us": s.mean_us.round(),
        "p50_us": s.p50_us.round(),
        "p99_us": s.p99_us.round(),
        "p999_us": s.p999_us.round(),
        "max_us": s.max_us.round(),
    })
}

fn print_table(c: &Summary, r: &Summary) {
    let row = |name: &str, a: String, b: String, x: String| println!("{name:<20} {a:>16} {b:>16} {x:>10}");
    println!();
    row("", "cadre".into(), "raw JetStream".into(), "cadre/raw".into());
    println!("{}", "-".repeat(65));
    row("completed", c.ok.to_string(), r.ok.to_string(), String::new());
    row(
        "failed",
        c.failed.to_string(),
        r.failed.to_string(),
        String::new(),
    );
    row(
        "throughput (/s)",
        format!("{:.0}", c.per_sec),
        format!("{:.0}", r.per_sec),
        format!("{:.3}", ratio(c.per_sec, r.per_sec)),
    );
    for (name, a, b) in [
        ("latency mean (µs)", c.mean_us, r.mean_us),
        ("latency p50 (µs)", c.p50_us, r.p50_us),
        ("latency p99 (µs)", c.p99_us, r.p99_us),
        ("latency p99.9 (µs)", c.p999_us, r.p999_us),
        ("latency max (µs)", c.max_us, r.max_us),
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

fn report_errors(label: &str, s: &RunStats) {
    if s.failed > 0 {
        eprintln!("{label}: {} requests failed; first errors:", s.failed);
        for e in &s.sample_errors {
            eprintln!("  {e}");
        }
    }
}

/// Runs both phases and prints the report; Ok(false) when any request failed.
async fn run(args: &Args, res: &mut Resources) -> anyhow::Result<bool> {
    let params_json = format!(
        "{{\"p\":\"{}\"}}",
        "x".repeat((args.payload_bytes as usize).saturating_sub(PARAMS_OVERHEAD))
    );
    let body = work_message(&params_json)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "distbench: concurrency {}, {} gRPC connections, params {} B, task message {} B, {cores} cores",
        args.concurrency,
        args.connections,
        params_json.len(),
        body.len()
    );
    res.dir = Some(tempfile::Builder::new().prefix("distbench-").tempdir()?);

    let cadre = if args.skip_cadre {
        None
    } else {
        let out = run_cadre(args, res, &params_json).await?;
        report_errors("cadre", &out.stats);
        Some(out)
    };
    let raw = if args.skip_raw {
        None
    } else {
        let (stats, cpu) = run_raw(args, res, body.clone()).await?;
        report_errors("raw", &stats);
        Some((stats, cpu))
    };

    let ok =
        cadre.as_ref().is_none_or(|c| c.stats.failed == 0) && raw.as_ref().is_none_or(|(r, _)| r.failed == 0);
    let c = cadre
        .as_ref()
        .map(|c| c.stats.clone().summarize())
        .unwrap_or_default();
    let r = raw
        .as_ref()
        .map(|(r, _)| r.clone().summarize())
        .unwrap_or_default();
    print_table(&c, &r);
    if let Some(out) = &cadre {
        out.cpu.print("cadre phase");
        if let Some(pg) = &out.pg {
            println!("cadre phase PostgreSQL: {pg}");
        }
    }
    if let Some((_, cpu)) = &raw {
        cpu.print("raw phase");
    }
    if cadre.is_some() {
        println!(
            "target {TARGET_TASKS_PER_SEC:.0} tasks/s: {} ({:.0} tasks/s, {:.0}% of the target)",
            if c.per_sec >= TARGET_TASKS_PER_SEC {
                "met"
            } else {
                "NOT met"
            },
            c.per_sec,
            100.0 * c.per_sec / TARGET_TASKS_PER_SEC
        );
    }
    let result = json!({
        "bench": "distbench",
        "concurrency": args.concurrency,
        "connections": args.connections,
        "warmup_s": args.warmup_secs,
        "duration_s": args.duration_secs,
        "params_bytes": params_json.len(),
        "message_bytes": body.len(),
        "pool": args.pool.unwrap_or(args.concurrency as usize),
        "max_inflight": args.max_inflight,
        "batch_max": args.batch_max,
        "vacuum_every_secs": args.vacuum_every_secs,
        "cores": cores,
        "cadre": cadre.as_ref().map(|_| summary_json(&c)),
        "cadre_cpu": cadre.as_ref().map(|o| o.cpu.json()),
        "cadre_pg": cadre.as_ref().and_then(|o| o.pg.clone()),
        "raw": raw.as_ref().map(|_| summary_json(&r)),
        "raw_cpu": raw.as_ref().map(|(_, cpu)| cpu.json()),
        "ratio": {
            "throughput": ratio(c.per_sec, r.per_sec),
            "p50": ratio(c.p50_us, r.p50_us),
            "p99": ratio(c.p99_us, r.p99_us),
        },
        "target_tasks_per_sec": TARGET_TASKS_PER_SEC,
        "target_met": cadre.is_some() && c.per_sec >= TARGET_TASKS_PER_SEC,
        "ok": ok,
    });
    println!("RESULT {result}");
    Ok(ok)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, with the signal's name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut res = Resources {
        admin_url: args.pg_url.clone(),
        nats_url: args.nats_url.clone(),
        keep_dir: args.keep_dir,
        ..Default::default()
    };
    let outcome = tokio::select! {
        r = run(&args, &mut res) => r,
        s = interrupted() => Err(anyhow::anyhow!("interrupted by {s}")),
    };
    res.cleanup().await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: some requests failed (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
