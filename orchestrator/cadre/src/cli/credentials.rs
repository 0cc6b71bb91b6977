//! The credential commands (commander only): `token issue` (a JWT) and `key create|list|revoke`
//! (API keys).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cadre_proto::v1;

use super::args::{KeyCommand, TokenCommand};
use cadre_client::Client;

/// `cadre token issue`: prints a new JWT for the tenant and role.
pub(super) async fn token(client: Client, command: TokenCommand) -> Result<i32> {
    let TokenCommand::Issue {
        tenant,
        role,
        ttl,
        subject,
    } = command;
    let ttl_secs = parse_duration(&ttl)?.as_secs();
    let req = v1::IssueTokenRequest {
        subject,
        tenant,
        role,
        ttl_secs,
    };
    let resp = client.issue_token(req).await?;
    println!("{}", resp.token);
    Ok(0)
}

/// Parses `90s`, `30m`, `24h`, `7d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => bail!("{s:?} is not a duration like 90s, 30m, 24h or 7d"),
    };
    Ok(Duration::from_secs(secs))
}

/// `cadre key ...`: creates (the secret on stdout, once), lists or revokes API keys.
pub(super) async fn key(client: Client, command: KeyCommand) -> Result<i32> {
    match command {
        KeyCommand::Create { name, tenant, role } => {
            let req = v1::CreateApiKeyRequest { name, tenant, role };
            let resp = client.create_api_key(req).await?;
            let key = resp.key.context("no key returned")?;
            eprintln!(
                "created API key {} ({}, tenant {}, role {}); it is shown only now:",
                key.id, key.name, key.tenant, key.role
            );
            println!("{}", resp.secret);
        }
        KeyCommand::List => {
            let keys = client.list_api_keys().await?;
            println!(
                "{:<14}  {:<24}  {:<16}  {:<10}  STATUS",
                "ID", "NAME", "TENANT", "ROLE"
            );
            for k in keys {
                let status = if k.revoked_at_ms == 0 { "active" } else { "revoked" };
                println!(
                    "{:<14}  {:<24}  {:<16}  {:<10}  {status}",
                    k.id, k.name, k.tenant, k.role
                );
            }
        }
        KeyCommand::Revoke { id } => {
            let k = client.revoke_api_key(&id).await?;
            println!("revoked {} ({})", k.id, k.name);
        }
    }
    Ok(0)
}
