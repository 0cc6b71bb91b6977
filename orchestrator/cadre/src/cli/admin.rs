//! The operator commands on the node's admin service: `status` (with `--watch`), `scale`,
//! `reload` and `usage`.

use std::time::Duration;

use anyhow::Result;
use cadre_client::Client;

use super::args::StatusArgs;
use super::render::render_status;
use super::watch::{self, Face};

/// `cadre status`: the supervisor tree once, or with `--watch` refreshed until Ctrl-C.
pub(super) async fn status(client: Client, a: StatusArgs) -> Result<i32> {
    if a.watch {
        let interval = Duration::from_millis(a.interval_ms);
        return watch::status_loop(&client, interval, Face::detect(a.plain), render_status).await;
    }
    let s = client.status().await?;
    print!("{}", render_status(&s));
    Ok(0)
}

/// `cadre scale`: resizes one worker pool and prints its new target and live counts.
pub(super) async fn scale(client: Client, supervisor: String, kind: String, replicas: u32) -> Result<i32> {
    let pool = client.scale(&supervisor, &kind, replicas).await?;
    println!(
        "{supervisor}/{}: target {} live {} busy {}",
        pool.worker_kind, pool.target_size, pool.live_workers, pool.busy_workers
    );
    Ok(0)
}

/// `cadre reload`: has the node re-read its config file; prints each change, or `no changes`.
pub(super) async fn reload(client: Client) -> Result<i32> {
    let changes = client.reload_config().await?;
    if changes.is_empty() {
        println!("no changes");
    }
    for c in changes {
        println!("{c}");
    }
    Ok(0)
}

/// `cadre usage`: tokens and cost per tenant and model for one UTC day, as a table.
pub(super) async fn usage(client: Client, tenant: String, day: String) -> Result<i32> {
    let r = client.usage(&tenant, &day).await?;
    println!("usage on {} (UTC)", r.day);
    println!(
        "{:<16}  {:<24}  {:>12}  {:>12}  {:>12}",
        "TENANT", "MODEL", "TOKENS IN", "TOKENS OUT", "COST USD"
    );
    for u in r.usage {
        println!(
            "{:<16}  {:<24}  {:>12}  {:>12}  {:>12.6}",
            u.tenant, u.model, u.tokens_in, u.tokens_out, u.cost_usd
        );
    }
    Ok(0)
}
