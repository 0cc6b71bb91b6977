//! `cadre tasks cancel-all` and `cadre tasks replay`: bulk operations on every task a filter
//! matches (the node decides and audits; this prints what it did, or on `--dry-run` what it
//! would do).

use std::time::Duration;

use anyhow::{Result, bail};
use cadre_client::{BulkRequest, Client};
use cadre_proto::TaskState;
use cadre_proto::clock::now_ms;
use cadre_proto::v1;
use serde_json::json;

use super::args::{BulkCommand, BulkFilter};
use super::credentials::parse_duration;

/// Exit code when some matched tasks could not be acted on.
const SOME_FAILED: i32 = 3;

/// Runs a bulk command; exits 0 when every matched task was acted on (or on a dry run),
/// [`SOME_FAILED`] otherwise.
pub(super) async fn run(client: Client, command: BulkCommand) -> Result<i32> {
    let (resp, json, verb) = match command {
        BulkCommand::CancelAll { filter, reason } => {
            let json = filter.json;
            let req = request(filter)?.reason(reason);
            (client.bulk_cancel(req).await?, json, "cancelled")
        }
        BulkCommand::Replay { filter } => {
            let json = filter.json;
            (client.bulk_replay(request(filter)?).await?, json, "replayed")
        }
        // Dispatched to `export` before a client is made.
        BulkCommand::Export(_) => bail!("`cadre tasks export` is not a bulk operation"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer_json(&resp))?);
    } else {
        print_answer(&resp, verb);
    }
    Ok(if resp.failed > 0 { SOME_FAILED } else { 0 })
}

/// The request a filter describes.
fn request(f: BulkFilter) -> Result<BulkRequest> {
    let states = f
        .state
        .iter()
        .map(|s| s.parse::<TaskState>().map(|s| s.to_wire() as i32))
        .collect::<Result<Vec<_>, _>>()?;
    let ago = |d: &Option<String>| -> Result<i64> {
        match d {
            None => Ok(0),
            Some(d) => Ok(now_ms().saturating_sub(millis(parse_duration(d)?))),
        }
    };
    let (newer, older) = (ago(&f.newer_than)?, ago(&f.older_than)?);
    if newer != 0 && f.created_after_ms != 0 {
        bail!("give --newer-than or --created-after-ms, not both");
    }
    if older != 0 && f.created_before_ms != 0 {
        bail!("give --older-than or --created-before-ms, not both");
    }
    let query = v1::TaskQuery {
        states,
        task_type_prefix: f.type_prefix,
        tenant: f.tenant,
        created_after_ms: newer.max(f.created_after_ms),
        created_before_ms: older.max(f.created_before_ms),
        error_contains: f.error_contains,
    };
    let mut req = BulkRequest::new(query).limit(f.limit);
    if f.dry_run {
        req = req.dry_run();
    }
    Ok(req)
}

/// A duration in milliseconds, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a bulk call did, in lines of text.
fn print_answer(r: &v1::BulkResponse, verb: &str) {
    let more = if r.more { " (more match: run again)" } else { "" };
    if r.dry_run {
        println!("dry run: {} tasks match{more}", r.matched);
        for id in &r.task_ids {
            println!("  {id}");
        }
        return;
    }
    println!(
        "{} matched, {} {verb}, {} failed{more}",
        r.matched, r.acted, r.failed
    );
    for t in &r.replays {
        println!("  {} -> {}", t.original_id, t.task_id);
    }
    for f in &r.failures {
        println!("  failed {}: {}: {}", f.task_id, f.code, f.message);
    }
}

/// The answer as JSON, shaped as `POST /v1/bulk/cancel` answers.
fn answer_json(r: &v1::BulkResponse) -> serde_json::Value {
    json!({
        "dry_run": r.dry_run,
        "matched": r.matched,
        "more": r.more,
        "acted": r.acted,
        "failed": r.failed,
        "failures": r.failures.iter().map(|f| json!({
            "task_id": f.task_id, "code": f.code.to_ascii_lowercase(), "message": f.message,
        })).collect::<Vec<_>>(),
        "replays": r.replays.iter().map(|t| json!({
            "original_id": t.original_id, "task_id": t.task_id,
        })).collect::<Vec<_>>(),
        "task_ids": r.task_ids,
    })
}
