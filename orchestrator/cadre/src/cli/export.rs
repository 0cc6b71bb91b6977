//! `cadre tasks export`: what the retention policy (`[retention]` in the node's config) would
//! delete, as JSON lines: one line per task, `{"task": ..., "events": [...], "usage": [...]}`
//! (`task` as `cadre get --json` prints it). By default the tasks expired now (the next sweep
//! deletes them); `--within 2d` adds those that expire in the next two days. Reads the store
//! directly, like `cadre audit` (no node needed; a SQLite store is opened read-only, so a node
//! may be running on it).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cadre_core::config::Config;
use cadre_core::retention::TERMINAL_STATES;
use cadre_proto::clock::now_ms;
use cadre_proto::{TaskId, TaskState};
use cadre_store::{EventFilter, Expired, Store};

use super::args::ExportArgs;
use super::audit::AuditSource;
use super::credentials::parse_duration;
use super::render::task_json;

/// Expired tasks read per page.
const PAGE: u32 = 500;
/// Events read per page.
const EVENT_PAGE: u32 = 1000;

/// Runs `cadre tasks export`; `data_dir` is the global `--data-dir`, if given.
pub(super) async fn export(args: ExportArgs, data_dir: Option<PathBuf>) -> Result<i32> {
    let config = Config::load(args.config.as_deref())?;
    let within = match &args.within {
        Some(d) => i64::try_from(parse_duration(d)?.as_millis()).unwrap_or(i64::MAX),
        None => 0,
    };
    let states = states(&args.state)?;
    let source = AuditSource {
        data_dir: data_dir.unwrap_or_else(|| config.node.data_dir.clone()),
        store_url: args
            .store_url
            .or_else(|| (!config.store.url.is_empty()).then(|| config.store.url.clone())),
        trusted_keys: Vec::new(),
        heads: Vec::new(),
    };
    let store = source.store().await?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let now = now_ms();
    let mut n = 0u64;
    for state in states {
        let Some(ttl) = config.retention.task_ttl(state) else {
            eprintln!(
                "{} tasks are kept for ever (no retention.{}_secs): none to export",
                state.as_str(),
                state.as_str().to_lowercase()
            );
            continue;
        };
        let before = now.saturating_add(within) - ttl.as_millis() as i64;
        n += export_state(store.as_ref(), state, before, &mut out).await?;
    }
    out.flush()?;
    drop(out);
    if let Some(path) = &args.out {
        eprintln!("wrote {n} tasks to {}", path.display());
    }
    Ok(0)
}

/// The terminal states named (every one when none is).
fn states(names: &[String]) -> Result<Vec<TaskState>> {
    if names.is_empty() {
        return Ok(TERMINAL_STATES.to_vec());
    }
    names
        .iter()
        .map(|s| {
            let state: TaskState = s.parse()?;
            if !state.is_terminal() {
                bail!("--state {s}: only finished tasks expire (succeeded, failed, cancelled, timed_out)");
            }
            Ok(state)
        })
        .collect()
}

/// Writes one line per task of `state` finished before `before`, oldest first; how many.
async fn export_state(store: &dyn Store, state: TaskState, before: i64, out: &mut dyn Write) -> Result<u64> {
    let mut after: Option<Expired> = None;
    let mut n = 0;
    loop {
        let page = store.expired_tasks(state, before, after, PAGE).await?;
        for e in &page {
            if let Some(line) = line(store, e.id).await? {
                writeln!(out, "{line}")?;
                n += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(*last),
            _ => return Ok(n),
        }
    }
}

/// A task's line: its record, events and usage (None: deleted meanwhile).
async fn line(store: &dyn Store, id: TaskId) -> Result<Option<String>> {
    let Some(record) = store.get(id).await? else {
        return Ok(None);
    };
    let filter = EventFilter {
        task_id: Some(id),
        ..Default::default()
    };
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |e: &cadre_proto::TaskEvent| e.cursor);
        let page = store.events_after(after, &filter, EVENT_PAGE).await?;
        let full = page.len() == EVENT_PAGE as usize;
        events.extend(page);
        if !full {
            break;
        }
    }
    let usage: Vec<serde_json::Value> = record
        .usage
        .iter()
        .map(|u| {
            serde_json::json!({
                "tenant": u.tenant, "model": u.model, "tokens_in": u.tokens_in,
                "tokens_out": u.tokens_out, "cost_usd": u.cost_usd,
            })
        })
        .collect();
    let task: serde_json::Value = serde_json::from_str(&task_json(&record.to_wire()))?;
    let line = serde_json::json!({ "task": task, "events": events, "usage": usage });
    Ok(Some(line.to_string()))
}
