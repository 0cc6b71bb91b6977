//! What `distbench` prints once both phases ran: each phase's failures, the table with the
//! cadre/raw ratios, the CPU and PostgreSQL lines, the target line and the `RESULT {json}` line.

use cadre_benches::stats::{RunStats, Summary, ratio};
use serde_json::json;

use crate::args::Args;
use crate::cadre_phase::CadreOutcome;
use crate::raw_phase::RawOutcome;

/// The throughput the distributed-mode issue asks for on a 2-core machine.
const TARGET_TASKS_PER_SEC: f64 = 5_000.0;

/// Sizes and machine facts of the run, for the `RESULT` line.
pub(crate) struct RunFacts {
    /// Bytes of each task's params JSON.
    pub(crate) params_bytes: usize,
    /// Bytes of the raw phase's message (a cadre task message).
    pub(crate) message_bytes: usize,
    /// Cores available to this process.
    pub(crate) cores: usize,
}

/// Prints a phase's failure count and its first errors on stderr, if any request failed.
pub(crate) fn report_errors(label: &str, s: &RunStats) {
    if s.failed > 0 {
        eprintln!("{label}: {} requests failed; first errors:", s.failed);
        for e in &s.sample_errors {
            eprintln!("  {e}");
        }
    }
}

/// Prints the table, the CPU and PostgreSQL lines, the target line and the `RESULT` line of
/// the phases that ran; returns whether every request of them succeeded.
pub(crate) fn print_report(
    args: &Args,
    facts: &RunFacts,
    cadre: Option<&CadreOutcome>,
    raw: Option<&RawOutcome>,
) -> bool {
    let ok = cadre.is_none_or(|c| c.stats.failed == 0) && raw.is_none_or(|r| r.stats.failed == 0);
    let c = cadre.map(|c| c.stats.clone().summarize()).unwrap_or_default();
    let r = raw.map(|r| r.stats.clone().summarize()).unwrap_or_default();
    print_table(&c, &r);
    if let Some(out) = cadre {
        out.cpu.print("cadre phase");
        if let Some(pg) = &out.pg {
            println!("cadre phase PostgreSQL: {pg}");
        }
    }
    if let Some(out) = raw {
        out.cpu.print("raw phase");
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
    let result = result_json(args, facts, cadre, raw, (&c, &r), ok);
    println!("RESULT {result}");
    ok
}

/// The `RESULT` line's JSON: the run's settings, each phase's summary (`c`, `r`), CPU and
/// PostgreSQL figures, the ratios and the verdicts.
fn result_json(
    args: &Args,
    facts: &RunFacts,
    cadre: Option<&CadreOutcome>,
    raw: Option<&RawOutcome>,
    (c, r): (&Summary, &Summary),
    ok: bool,
) -> serde_json::Value {
    json!({
        "bench": "distbench",
        "concurrency": args.concurrency,
        "connections": args.connections,
        "warmup_s": args.warmup_secs,
        "duration_s": args.duration_secs,
        "params_bytes": facts.params_bytes,
        "message_bytes": facts.message_bytes,
        "pool": args.pool.unwrap_or(args.concurrency as usize),
        "max_inflight": args.max_inflight,
        "batch_max": args.batch_max,
        "vacuum_every_secs": args.vacuum_every_secs,
        "cores": facts.cores,
        "cadre": cadre.map(|_| summary_json(c)),
        "cadre_cpu": cadre.map(|o| o.cpu.json()),
        "cadre_pg": cadre.and_then(|o| o.pg.clone()),
        "raw": raw.map(|_| summary_json(r)),
        "raw_cpu": raw.map(|o| o.cpu.json()),
        "ratio": {
            "throughput": ratio(c.per_sec, r.per_sec),
            "p50": ratio(c.p50_us, r.p50_us),
            "p99": ratio(c.p99_us, r.p99_us),
        },
        "target_tasks_per_sec": TARGET_TASKS_PER_SEC,
        "target_met": cadre.is_some() && c.per_sec >= TARGET_TASKS_PER_SEC,
        "ok": ok,
    })
}

/// One phase's summary in the `RESULT` line: counts, throughput and latencies, rounded.
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

/// The table of both phases side by side, with the cadre/raw ratios.
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
