//! Credentials as operations: issuing tokens and managing API keys (commander role), each act
//! audited.

use std::time::Duration;

use cadre_proto::{Role, SpecError};
use cadre_store::{ApiKeyRecord, Revocation};

use crate::auth::{Action, Principal, RevokeKind};
use crate::error::{Error, Result};
use crate::node::Node;

/// A token just issued.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its subject (the one asked for, or `issued-by-<issuer>`).
    pub subject: String,
    /// When it expires, Unix milliseconds.
    pub expires_at_ms: i64,
    /// Its id (`jti`).
    pub token_id: String,
    /// The id of the key that signed it (`kid`).
    pub key_id: String,
}

/// A role named by a caller, or INVALID_ARGUMENT naming the roles.
fn parse_role(role: &str) -> Result<Role> {
    role.parse()
        .map_err(|e: String| Error::from(SpecError::invalid("role", e)))
}

/// A key's lifetime: `ttl_secs` (0: none, allowed only without a cap), at most `max_secs`
/// (`auth.max_api_key_ttl_secs`; 0: no cap) and at most 100 years.
fn key_ttl(ttl_secs: u64, max_secs: u64) -> Result<Option<Duration>> {
    const CENTURY_SECS: u64 = 100 * 365 * 86_400;
    let cap = if max_secs == 0 {
        CENTURY_SECS
    } else {
        max_secs.min(CENTURY_SECS)
    };
    match ttl_secs {
        0 if max_secs == 0 => Ok(None),
        0 => Err(SpecError::invalid(
            "ttl_secs",
            format!("is required: keys expire after at most {max_secs} s here (auth.max_api_key_ttl_secs)"),
        )
        .into()),
        t if t > cap => Err(SpecError::invalid(
            "ttl_secs",
            if max_secs == 0 {
                format!("{t} s is more than 100 years; use 0 for a key that never expires")
            } else {
                format!("{t} s is more than {max_secs} s, the longest allowed (auth.max_api_key_ttl_secs)")
            },
        )
        .into()),
        t => Ok(Some(Duration::from_secs(t))),
    }
}

impl Node {
    /// Issues a JWT for `subject` (default `issued-by-<caller>`) of `tenant` with `role`, valid
    /// for `ttl_secs` (at most `auth.max_token_ttl_secs`). Audited as `token.issue`.
    pub async fn issue_token(
        &self,
        p: &Principal,
        subject: &str,
        tenant: &str,
        role: &str,
        ttl_secs: u64,
    ) -> Result<IssuedToken> {
        self.permit(p, Action::IssueToken).await?;
        let role = parse_role(role)?;
        let subject = if subject.is_empty() {
            format!("issued-by-{}", p.subject)
        } else {
            subject.to_string()
        };
        let ttl = Duration::from_secs(ttl_secs);
        let issued = self.auth.issue(&subject, tenant, role, ttl, false)?;
        let expires_at_ms = cadre_proto::clock::now_ms() + ttl.as_millis() as i64;
        tracing::info!(by = %p.subject, %subject, %tenant, %role, "token issued");
        let detail = format!(
            "tenant {tenant} role {role} ttl {ttl_secs} s id {} key {}",
            issued.jti, issued.kid
        );
        self.audit(Some(p), "token.issue", &subject, "ok", &detail).await;
        Ok(IssuedToken {
            token: issued.token,
            subject,
            expires_at_ms,
            token_id: issued.jti,
            key_id: issued.kid,
        })
    }

    /// Creates an API key named `name` for `tenant` with `role`, working for `ttl_secs` (0:
    /// until revoked; at most `auth.max_api_key_ttl_secs` when that is set); returns the stored
    /// key and the secret (shown once, never stored). Audited as `key.create`.
    pub async fn create_key(
        &self,
        p: &Principal,
        name: &str,
        tenant: &str,
        role: &str,
        ttl_secs: u64,
    ) -> Result<(ApiKeyRecord, String)> {
        self.permit(p, Action::ManageKeys).await?;
        let role = parse_role(role)?;
        let ttl = key_ttl(ttl_secs, self.config().auth.max_api_key_ttl_secs)?;
        let (key, secret) = self.auth.create_key(name, tenant, role, ttl).await?;
        tracing::info!(by = %p.subject, id = %key.id, name = %key.name, tenant = %key.tenant, %role, ttl_secs, "API key created");
        let detail = format!(
            "name {} tenant {} role {role} ttl {ttl_secs} s",
            key.name, key.tenant
        );
        self.audit(Some(p), "key.create", &key.id, "ok", &detail).await;
        Ok((key, secret))
    }

    /// Every API key, revoked ones included (never a secret).
    pub async fn list_keys(&self, p: &Principal) -> Result<Vec<ApiKeyRecord>> {
        self.permit(p, Action::ManageKeys).await?;
        Ok(self.auth.list_keys())
    }

    /// Revokes an API key at once. Audited as `key.revoke`.
    pub async fn revoke_key(&self, p: &Principal, id: &str) -> Result<ApiKeyRecord> {
        self.permit(p, Action::ManageKeys).await?;
        let key = self.auth.revoke_key(id).await?;
        tracing::info!(by = %p.subject, id = %key.id, "API key revoked");
        self.audit(Some(p), "key.revoke", &key.id, "ok", &key.name).await;
        Ok(key)
    }
}

impl Node {
    /// Revokes one JWT by id (`token_id`) or every token of `subject` issued until now; exactly
    /// one of the two. Audited as `auth.revoke_token`.
    pub async fn revoke_token(&self, p: &Principal, token_id: &str, subject: &str) -> Result<Revocation> {
        self.permit(p, Action::RevokeToken).await?;
        let (kind, value) = match (token_id.is_empty(), subject.is_empty()) {
            (false, true) => (RevokeKind::TokenId, token_id),
            (true, false) => (RevokeKind::Subject, subject),
            _ => {
                return Err(
                    SpecError::invalid("token_id", "give exactly one of token_id and subject").into(),
                );
            }
        };
        let row = self.auth.revoke(kind, value, &p.subject).await?;
        tracing::info!(by = %p.subject, kind = %row.kind, value = %row.value, "token revoked");
        let detail = format!("{} {}", row.kind, row.value);
        self.audit(Some(p), "auth.revoke_token", value, "ok", &detail)
            .await;
        self.deliver_credentials().await;
        Ok(row)
    }

    /// Makes a new JWT signing key; returns its id and when the previous key retires. Audited
    /// as `auth.rotate_keys`.
    pub async fn rotate_signing_key(&self, p: &Principal) -> Result<(String, i64)> {
        self.permit(p, Action::RotateKeys).await?;
        let (kid, retires) = self.auth.rotate().await?;
        tracing::info!(by = %p.subject, %kid, "signing key rotated");
        let detail = format!("previous key retires at {retires} (Unix ms)");
        self.audit(Some(p), "auth.rotate_keys", &kid, "ok", &detail).await;
        self.deliver_credentials().await;
        Ok((kid, retires))
    }

    /// Sends the revocations and rotated signing keys to every supervisor node (they keep no
    /// store): after a revocation or rotation here, and with the pause set every
    /// [`crate::pauses::DELIVER_EVERY`] (so a restarted node, or a change made on another
    /// replica, arrives too). A node not reached is logged at debug level and gets the next send.
    pub(crate) async fn deliver_credentials(&self) {
        let shared = self.auth.credentials_to_share();
        if let Err(e) = self.bus.set_credentials(&shared).await {
            tracing::debug!(error = %e, "credentials not delivered to every supervisor node; retrying");
        }
    }

    /// SupervisorPeer.SetCredentials on this process: tier 0 reads revocations and keys from
    /// its store, so it only checks the caller (tier 0's node credential).
    pub async fn apply_credentials(&self, p: &Principal) -> Result<()> {
        self.permit(p, Action::ApplyCredentials).await
    }
}

#[cfg(test)]
mod tests {
    use super::key_ttl;
    use std::time::Duration;

    #[test]
    fn a_key_ttl_is_bounded_by_the_cap() {
        // No cap: 0 is "never", anything up to a century is taken.
        assert_eq!(key_ttl(0, 0).unwrap(), None);
        assert_eq!(key_ttl(60, 0).unwrap(), Some(Duration::from_secs(60)));
        assert!(
            key_ttl(u64::MAX, 0)
                .unwrap_err()
                .to_string()
                .contains("100 years")
        );
        // A cap: every key expires, at most that late.
        assert_eq!(key_ttl(3600, 3600).unwrap(), Some(Duration::from_secs(3600)));
        for bad in [0, 3601] {
            let e = key_ttl(bad, 3600).unwrap_err().to_string();
            assert!(
                e.contains("ttl_secs") && e.contains("auth.max_api_key_ttl_secs"),
                "{e}"
            );
        }
    }
}
