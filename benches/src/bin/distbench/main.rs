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
//!
//! Modules: [`args`] (the command line), [`driver`] (the timed request loops), [`cluster`] (what
//! the run creates, the `cadre` processes, and the cleanup), [`cadre_phase`] and [`raw_phase`]
//! (the two phases), [`cpu`] and [`pg_stats`] (what is sampled during a measured window) and
//! [`report`] (the table and the `RESULT` line).

mod args;
mod cadre_phase;
mod cluster;
mod cpu;
mod driver;
mod pg_stats;
mod raw_phase;
mod report;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Args;
use crate::cadre_phase::run_cadre;
use crate::cluster::Resources;
use crate::raw_phase::{run_raw, work_message};
use crate::report::{RunFacts, print_report, report_errors};

/// Bytes of `{"p":""}` around the padding of the params JSON.
const PARAMS_OVERHEAD: usize = 8;

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
    res.create_dir()?;

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
        let out = run_raw(args, res, body.clone()).await?;
        report_errors("raw", &out.stats);
        Some(out)
    };
    let facts = RunFacts {
        params_bytes: params_json.len(),
        message_bytes: body.len(),
        cores,
    };
    Ok(print_report(args, &facts, cadre.as_ref(), raw.as_ref()))
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

/// Runs the bench, then removes what it created whether it succeeded, failed or was
/// interrupted.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut res = Resources::new(&args);
    let outcome = tokio::select! {
        r = run(&args, &mut res) => r,
        s = interrupted() => Err(anyhow::anyhow!("interrupted by {s}")),
    };
    res.cleanup().await;
    cadre_benches::exit_code(outcome, "some requests failed (see above)")
}
