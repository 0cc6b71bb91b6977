//! How the command line prints what the node returns; no command of its own. Tasks as text
//! (`get`, `submit --wait`) or JSON (`--json`), task types (`types`), one line per event
//! (`watch`), the supervisor tree (`status`), and errors: any error as the one line after
//! `error: ` (a node's refusal reads `<code>: <message>`, as `cadre_client::Error` words it).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use cadre_proto::TaskState;
use cadre_proto::v1;

/// Unix milliseconds as UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    format!("{}T{h:02}:{m:02}:{s:02}Z", cadre_proto::clock::utc_day(ms))
}

/// An error and its causes on one line (repeated causes once, newlines as `; `), as
/// `main_entry` prints it after `error: `.
pub(super) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.dedup();
    let line = parts
        .join(": ")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    if line.is_empty() {
        "unknown error".into()
    } else {
        line
    }
}

/// The name of a wire task state, e.g. `SUCCEEDED`; `UNKNOWN` for a value this build does not know.
pub(super) fn state_name(s: i32) -> &'static str {
    TaskState::from_wire(s)
        .map(TaskState::as_str)
        .unwrap_or("UNKNOWN")
}

/// A task as one line of JSON (`get --json`, `submit --json`).
pub(super) fn task_json(t: &v1::Task) -> String {
    let spec = t.spec.clone().unwrap_or_default();
    serde_json::json!({
        "id": t.id,
        "tenant": t.tenant,
        "task_type": spec.task_type,
        "state": state_name(t.state),
        "attempt": t.attempt,
        "supervisor": t.supervisor,
        "worker_kind": t.worker_kind,
        "priority": spec.priority,
        "params": serde_json::from_str::<serde_json::Value>(&spec.params_json).unwrap_or_default(),
        "result": serde_json::from_str::<serde_json::Value>(&t.result_json).ok(),
        "error": (!t.error.is_empty()).then_some(&t.error),
        "created_at_ms": t.created_at_ms,
        "updated_at_ms": t.updated_at_ms,
        "children": t.children,
        "security_level": spec.security_level,
        "result_signature": (!t.result_signature.is_empty()).then_some(&t.result_signature),
        "usage": t.usage.iter().map(|u| serde_json::json!({
            "model": u.model, "tokens_in": u.tokens_in, "tokens_out": u.tokens_out, "cost_usd": u.cost_usd,
        })).collect::<Vec<_>>(),
        "steps": t.steps.iter().map(|s| serde_json::json!({
            "id": s.id, "kind": s.kind, "state": s.state,
            "output": serde_json::from_str::<serde_json::Value>(&s.output_json).ok(),
            "error": (!s.error.is_empty()).then_some(&s.error),
            "task_ids": s.task_ids,
            "waiting": s.waiting.iter().map(|w| serde_json::json!({
                "signal": w.signal, "kind": w.kind, "role": w.role, "prompt": w.prompt, "due_at_ms": w.due_at_ms,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// A task as `name:  value` lines on stdout (`get`, `submit --wait`).
pub(super) fn print_task(t: &v1::Task) {
    let spec = t.spec.clone().unwrap_or_default();
    println!("id:         {}", t.id);
    println!("type:       {}", spec.task_type);
    println!("state:      {}", state_name(t.state));
    println!("attempt:    {}", t.attempt);
    println!("runs on:    {}/{}", t.supervisor, t.worker_kind);
    println!("priority:   {}", spec.priority);
    if !t.result_json.is_empty() {
        let pretty = serde_json::from_str::<serde_json::Value>(&t.result_json)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| t.result_json.clone());
        println!("result:     {pretty}");
    }
    if !t.error.is_empty() {
        println!("error:      {}", t.error);
    }
    if !t.children.is_empty() {
        println!("children:   {}", t.children.join(", "));
    }
    if spec.security_level != v1::SecurityLevel::Standard as i32 {
        let level = v1::SecurityLevel::try_from(spec.security_level)
            .map(|l| l.as_str_name())
            .unwrap_or("?");
        println!("security:   {level}");
    }
    if !t.result_signature.is_empty() {
        println!("signature:  {}", t.result_signature);
    }
    for u in &t.usage {
        println!(
            "usage:      {} in {} out {} tokens, {:.6} USD",
            u.model, u.tokens_in, u.tokens_out, u.cost_usd
        );
    }
    print_steps(t);
}

/// `before value after`, or nothing when `value` is empty.
fn affix(before: &str, value: &str, after: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("{before}{value}{after}")
    }
}

/// A workflow instance's steps, one line each, with what a waiting step waits for (and how to
/// answer it).
fn print_steps(t: &v1::Task) {
    if t.steps.is_empty() {
        return;
    }
    println!("steps:");
    for s in &t.steps {
        let took = if s.ended_at_ms > 0 && s.started_at_ms > 0 {
            format!(" {} ms", s.ended_at_ms - s.started_at_ms)
        } else {
            String::new()
        };
        let error = affix(": ", &s.error, "");
        println!("  {:<24} {:<10} {}{took}{error}", s.id, s.state, s.kind);
        for w in &s.waiting {
            let role = affix(" (role ", &w.role, ")");
            let prompt = affix(": ", &w.prompt, "");
            let answer = match w.kind.as_str() {
                "approval" => format!("cadre signal {} {} --approve|--reject", t.id, w.signal),
                "signal" => format!("cadre signal {} {} [PAYLOAD]", t.id, w.signal),
                _ => String::new(),
            };
            println!("    waits for {} {}{role}{prompt}", w.kind, w.signal);
            if !answer.is_empty() {
                println!("    answer:   {answer}");
            }
        }
    }
}

/// One page of `cadre tasks` as a table (id, state, attempt, type, error), then the flag that
/// gets the next page if there is one.
pub(super) fn print_task_table(resp: &v1::ListResponse) {
    println!(
        "{:<36}  {:<10}  {:>7}  {:<32}  ERROR",
        "ID", "STATE", "ATTEMPT", "TYPE"
    );
    for task in &resp.tasks {
        let ty = task.spec.as_ref().map(|s| s.task_type.as_str()).unwrap_or("");
        println!(
            "{:<36}  {:<10}  {:>7}  {:<32}  {}",
            task.id,
            state_name(task.state),
            task.attempt,
            ty,
            task.error
        );
    }
    if !resp.next_page_token.is_empty() {
        println!("more: --page-token {}", resp.next_page_token);
    }
}

/// Prints task types as a table (type, where it runs, required and optional params) or, with
/// `json`, as `{"types": [...]}` with the full schemas.
pub(super) fn print_types(types: &[v1::TaskType], json: bool) -> Result<()> {
    let parse = |what: &str, s: &str| {
        serde_json::from_str::<serde_json::Value>(s).with_context(|| format!("the node sent a bad {what}"))
    };
    if json {
        let types = types
            .iter()
            .map(|t| {
                Ok(serde_json::json!({
                    "task_type": t.task_type,
                    "supervisor": t.supervisor,
                    "worker_kind": t.worker_kind,
                    "executor": t.executor,
                    "params_schema": parse("params schema", &t.params_schema_json)?,
                    "result_schema": parse("result schema", &t.result_schema_json)?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "types": types }))?
        );
        return Ok(());
    }
    println!(
        "{:<38}  {:<24}  {:<24}  OPTIONAL",
        "TYPE", "SUPERVISOR/WORKER", "REQUIRED"
    );
    for t in types {
        let schema = parse("params schema", &t.params_schema_json)?;
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let mut optional: Vec<&str> = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .filter(|k| !required.contains(k))
            .collect();
        if schema["additionalProperties"] != false {
            optional.push("...");
        }
        let list = |names: &[&str]| {
            if names.is_empty() {
                "-".to_string()
            } else {
                names.join(",")
            }
        };
        println!(
            "{:<38}  {:<24}  {:<24}  {}",
            t.task_type,
            format!("{}/{}", t.supervisor, t.worker_kind),
            list(&required),
            list(&optional)
        );
    }
    Ok(())
}

/// The plain text of one event, as `watch` prints it: cursor, task, per-task sequence, state,
/// attempt, detail.
pub(super) fn event_line(e: &v1::TaskEvent) -> String {
    let detail = if e.is_progress {
        format!("{:.0}% {}", e.progress * 100.0, e.message)
    } else {
        e.message.clone()
    };
    format!(
        "{:>6} {} #{} {:<9} attempt {} {}",
        e.cursor,
        e.task_id,
        e.seq,
        state_name(e.state),
        e.attempt,
        detail
    )
}

/// The supervisor tree as text, one line per supervisor and per pool.
pub(super) fn render_status(s: &v1::StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "orchestrator {} (cadre {}), {} unfinished tasks",
        s.node_id, s.version, s.pending_tasks
    );
    for (i, sup) in s.supervisors.iter().enumerate() {
        let last = i + 1 == s.supervisors.len();
        let (branch, indent) = if last {
            ("└──", "    ")
        } else {
            ("├──", "│   ")
        };
        // Distributed mode: one line per replica, with the node it runs on.
        let place = if sup.node_id.is_empty() || (sup.node_id == s.node_id && sup.address.is_empty()) {
            String::new()
        } else {
            format!(" on {} {}", sup.node_id, sup.address)
        };
        let _ = writeln!(
            out,
            "{branch} supervisor {}{place} [{}] restarts {} (worker restarts in window {}/{})",
            sup.name, sup.state, sup.restarts, sup.recent_restarts, sup.max_restarts
        );
        for (j, p) in sup.pools.iter().enumerate() {
            let b = if j + 1 == sup.pools.len() {
                "└──"
            } else {
                "├──"
            };
            let paused = if p.paused { "  [paused]" } else { "" };
            let _ = writeln!(
                out,
                "{indent}{b} {:<10} size {:>3} (live {:>3})  busy {:>3}  queued {:>5}  restarts {}{paused}",
                p.worker_kind, p.target_size, p.live_workers, p.busy_workers, p.queue_depth, p.restarts
            );
        }
    }
    if !s.pauses.is_empty() {
        let names: Vec<String> = s.pauses.iter().map(pause_name).collect();
        let _ = writeln!(out, "paused: {}", names.join(", "));
    }
    out
}

/// What a pause names, in a few words: `pool intelligence/writer`, `tenant acme`.
pub(super) fn pause_name(p: &v1::Pause) -> String {
    let name = match p.scope.as_str() {
        "supervisor" => p.supervisor.clone(),
        "pool" => format!("{}/{}", p.supervisor, p.worker_kind),
        "task_type_prefix" => p.prefix.clone(),
        _ => p.tenant.clone(),
    };
    format!("{} {name}", p.scope)
}
