//! The credential commands (commander only): `token issue` (a JWT) and `key create|list|revoke`
//! (API keys).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cadre_proto::v1;

use super::args::{KeyCommand, TokenCommand};
use cadre_client::Client;

/// `cadre token issue|revoke|rotate`: prints a new JWT for the tenant and role (its id on
/// stderr), revokes tokens, or rotates the signing key.
pub(super) async fn token(client: Client, command: TokenCommand) -> Result<i32> {
    let (tenant, role, ttl, subject) = match command {
        TokenCommand::Issue {
            tenant,
            role,
            ttl,
            subject,
        } => (tenant, role, ttl, subject),
        TokenCommand::Revoke { id, subject } => {
            let r = client
                .revoke_token(id.as_deref().unwrap_or(""), subject.as_deref().unwrap_or(""))
                .await?;
            let what = id.map_or_else(
                || format!("the tokens of subject {}", subject.unwrap_or_default()),
                |i| format!("token {i}"),
            );
            println!("revoked {what} at {}", expiry(r.revoked_at_ms));
            return Ok(0);
        }
        TokenCommand::Rotate => {
            let r = client.rotate_signing_key().await?;
            println!(
                "new signing key {}; the previous one verifies until {}",
                r.key_id,
                expiry(r.previous_retires_at_ms)
            );
            return Ok(0);
        }
    };
    let ttl_secs = parse_duration(&ttl)?.as_secs();
    let req = v1::IssueTokenRequest {
        subject,
        tenant,
        role,
        ttl_secs,
    };
    let resp = client.issue_token(req).await?;
    eprintln!("token id {} (key {})", resp.token_id, resp.key_id);
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

/// When a key expires, as UTC `YYYY-MM-DDTHH:MM:SSZ`, or `never` (0).
fn expiry(at_ms: i64) -> String {
    if at_ms == 0 {
        return "never".into();
    }
    let secs = at_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        cadre_proto::clock::utc_day(at_ms),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `cadre key ...`: creates (the secret on stdout, once), lists or revokes API keys.
pub(super) async fn key(client: Client, command: KeyCommand) -> Result<i32> {
    match command {
        KeyCommand::Create {
            name,
            tenant,
            role,
            ttl,
        } => {
            let ttl_secs = parse_duration(&ttl)?.as_secs();
            let req = v1::CreateApiKeyRequest {
                name,
                tenant,
                role,
                ttl_secs,
            };
            let resp = client.create_api_key(req).await?;
            let key = resp.key.context("no key returned")?;
            eprintln!(
                "created API key {} ({}, tenant {}, role {}, expires {}); it is shown only now:",
                key.id,
                key.name,
                key.tenant,
                key.role,
                expiry(key.expires_at_ms)
            );
            println!("{}", resp.secret);
        }
        KeyCommand::List => {
            let keys = client.list_api_keys().await?;
            println!(
                "{:<14}  {:<24}  {:<16}  {:<10}  {:<20}  STATUS",
                "ID", "NAME", "TENANT", "ROLE", "EXPIRES"
            );
            let now = cadre_proto::clock::now_ms();
            for k in keys {
                let status = if k.revoked_at_ms != 0 {
                    "revoked"
                } else if k.expires_at_ms != 0 && k.expires_at_ms <= now {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<14}  {:<24}  {:<16}  {:<10}  {:<20}  {status}",
                    k.id,
                    k.name,
                    k.tenant,
                    k.role,
                    expiry(k.expires_at_ms)
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
