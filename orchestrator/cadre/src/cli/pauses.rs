//! `cadre pause`, `cadre resume` and `cadre pauses`: AdminService.Pause, Resume and ListPauses.

use anyhow::Result;
use cadre_client::{Client, PauseScope};

use super::args::PauseTarget;
use super::render::pause_name as named;

/// The client's scope for a parsed target.
fn scope(t: PauseTarget) -> PauseScope {
    match t {
        PauseTarget::Supervisor { name } => PauseScope::Supervisor(name),
        PauseTarget::Pool { supervisor, kind } => PauseScope::Pool(supervisor, kind),
        PauseTarget::Type { prefix } => PauseScope::TaskTypePrefix(prefix),
        PauseTarget::Tenant { tenant } => PauseScope::Tenant(tenant.unwrap_or_default()),
    }
}

/// `cadre pause ...`: prints `paused <scope> <name>` (or `already paused ...`).
pub(super) async fn pause(client: Client, target: PauseTarget, reason: String) -> Result<i32> {
    let r = client.pause(&scope(target), &reason).await?;
    let p = r.pause.unwrap_or_default();
    let verb = if r.created { "paused" } else { "already paused" };
    println!("{verb} {} (by {})", named(&p), p.paused_by);
    Ok(0)
}

/// `cadre resume ...`: prints `resumed <scope> <name>` (or `was not paused`).
pub(super) async fn resume(client: Client, target: PauseTarget) -> Result<i32> {
    let scope = scope(target);
    let resumed = client.resume(&scope).await?;
    let what = named(&scope.to_wire(""));
    if resumed {
        println!("resumed {what}");
    } else {
        println!("{what} was not paused");
    }
    Ok(0)
}

/// `cadre pauses`: one line per pause (or JSON).
pub(super) async fn list(client: Client, json: bool) -> Result<i32> {
    let pauses = client.pauses().await?;
    if json {
        let items: Vec<serde_json::Value> = pauses
            .iter()
            .map(|p| {
                serde_json::json!({
                    "scope": p.scope, "supervisor": p.supervisor, "worker_kind": p.worker_kind,
                    "prefix": p.prefix, "tenant": p.tenant, "paused_at_ms": p.paused_at_ms,
                    "paused_by": p.paused_by, "reason": p.reason,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "pauses": items }));
        return Ok(0);
    }
    if pauses.is_empty() {
        println!("nothing paused");
    }
    for p in &pauses {
        let reason = if p.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", p.reason)
        };
        println!("{:<40}  by {}{reason}", named(p), p.paused_by);
    }
    Ok(0)
}
