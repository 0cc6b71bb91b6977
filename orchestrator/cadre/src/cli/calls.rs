//! `cadre calls list`: AdminService.ListLlmCalls, model call records newest first, as a table
//! or as JSON (the shape of `GET /v1/llm-calls`).

use anyhow::Result;
use cadre_client::{Client, v1};
use serde_json::{Value, json};

use super::args::CallsCommand;

/// Runs a `cadre calls` subcommand.
pub(super) async fn calls(client: Client, command: CallsCommand) -> Result<i32> {
    match command {
        CallsCommand::List {
            task,
            model,
            tenant,
            limit,
            json,
        } => {
            let req = v1::ListLlmCallsRequest {
                task_id: task.unwrap_or_default(),
                model: model.unwrap_or_default(),
                tenant: tenant.unwrap_or_default(),
                limit,
                ..Default::default()
            };
            let r = client.llm_calls(req).await?;
            if json {
                let calls: Vec<Value> = r.calls.iter().map(call_json).collect();
                let next = (!r.next_cursor.is_empty()).then_some(r.next_cursor);
                println!("{}", json!({ "calls": calls, "next_cursor": next }));
            } else {
                table(&r.calls);
            }
            Ok(0)
        }
    }
}

/// One record as `GET /v1/llm-calls` gives it.
fn call_json(c: &v1::LlmCall) -> Value {
    let fallbacks: Vec<Value> = c
        .fallbacks
        .iter()
        .map(|f| json!({ "provider": f.provider, "model": f.model, "error": f.error }))
        .collect();
    json!({
        "id": c.id.to_string(), "task_id": c.task_id, "tenant": c.tenant, "attempt": c.attempt,
        "provider": c.provider, "model_requested": c.model_requested, "model_used": c.model_used,
        "fallbacks": fallbacks, "started_at_ms": c.started_at_ms, "first_token_ms": c.first_token_ms,
        "total_ms": c.total_ms, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
        "cost_usd": c.cost_usd, "finish_reason": c.finish_reason, "cache_hit": c.cache_hit,
        "trace_id": c.trace_id, "prompt": c.prompt, "reply": c.reply,
    })
}

/// The records as a table, newest first.
fn table(calls: &[v1::LlmCall]) {
    if calls.is_empty() {
        println!("no model calls");
        return;
    }
    println!(
        "{:<36}  {:<10}  {:<16}  {:<16}  {:>8}  {:>8}  {:>8}  {:>10}  NOTE",
        "TASK", "TENANT", "PROVIDER", "MODEL", "IN", "OUT", "MS", "COST USD"
    );
    for c in calls {
        let mut note = Vec::new();
        if c.model_used != c.model_requested {
            note.push(format!("asked {}", c.model_requested));
        }
        if !c.fallbacks.is_empty() {
            note.push(format!("{} fallback(s)", c.fallbacks.len()));
        }
        if c.cache_hit {
            note.push("cached".to_string());
        }
        if !c.finish_reason.is_empty() {
            note.push(c.finish_reason.clone());
        }
        println!(
            "{:<36}  {:<10}  {:<16}  {:<16}  {:>8}  {:>8}  {:>8}  {:>10.6}  {}",
            c.task_id,
            c.tenant,
            c.provider,
            c.model_used,
            c.tokens_in,
            c.tokens_out,
            c.total_ms,
            c.cost_usd,
            note.join(", ")
        );
    }
}
