//! Credentials as operations: issuing tokens and managing API keys (commander role), each act
//! audited.

use std::time::Duration;

use cadre_proto::{Role, SpecError};
use cadre_store::ApiKeyRecord;

use crate::auth::{Action, Principal};
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
}

/// A role named by a caller, or INVALID_ARGUMENT naming the roles.
fn parse_role(role: &str) -> Result<Role> {
    role.parse()
        .map_err(|e: String| Error::from(SpecError::invalid("role", e)))
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
        let token = self.auth.issue_token(&subject, tenant, role, ttl)?;
        let expires_at_ms = cadre_proto::clock::now_ms() + ttl.as_millis() as i64;
        tracing::info!(by = %p.subject, %subject, %tenant, %role, "token issued");
        let detail = format!("tenant {tenant} role {role} ttl {ttl_secs} s");
        self.audit(Some(p), "token.issue", &subject, "ok", &detail).await;
        Ok(IssuedToken {
            token,
            subject,
            expires_at_ms,
        })
    }

    /// Creates an API key named `name` for `tenant` with `role`; returns the stored key and the
    /// secret (shown once, never stored). Audited as `key.create`.
    pub async fn create_key(
        &self,
        p: &Principal,
        name: &str,
        tenant: &str,
        role: &str,
    ) -> Result<(ApiKeyRecord, String)> {
        self.permit(p, Action::ManageKeys).await?;
        let role = parse_role(role)?;
        let (key, secret) = self.auth.create_key(name, tenant, role).await?;
        tracing::info!(by = %p.subject, id = %key.id, name = %key.name, tenant = %key.tenant, %role, "API key created");
        let detail = format!("name {} tenant {} role {role}", key.name, key.tenant);
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
