//! The admin calls: node status, pool scaling, config reload, usage, tokens and API keys. The
//! node checks the caller's role (status for operators, scale and keys for supervisors and up).

use cadre_proto::v1;

use crate::connect::Client;
use crate::error::Result;

impl Client {
    /// The node's supervisors, pools and pending tasks.
    pub async fn status(&self) -> Result<v1::StatusResponse> {
        self.call(&self.admin, v1::StatusRequest {}, |mut c, r| async move {
            c.status(r).await
        })
        .await
    }

    /// Sets a pool's target size; the pool as it is after.
    pub async fn scale(&self, supervisor: &str, worker_kind: &str, replicas: u32) -> Result<v1::PoolStatus> {
        let req = v1::ScaleRequest {
            supervisor: supervisor.to_string(),
            worker_kind: worker_kind.to_string(),
            replicas,
        };
        let r = self
            .call(&self.admin, req, |mut c, r| async move { c.scale(r).await })
            .await?;
        Ok(r.pool.unwrap_or_default())
    }

    /// Re-reads the node's config file; the changes it applied, one line each.
    pub async fn reload_config(&self) -> Result<Vec<String>> {
        let req = v1::ReloadConfigRequest {};
        let r = self
            .call(
                &self.admin,
                req,
                |mut c, r| async move { c.reload_config(r).await },
            )
            .await?;
        Ok(r.changes)
    }

    /// Token and cost usage of one day (`YYYY-MM-DD`, empty: today) for `tenant` (empty: the
    /// caller's, or every tenant for a commander).
    pub async fn usage(&self, tenant: &str, day: &str) -> Result<v1::UsageResponse> {
        let req = v1::UsageRequest {
            tenant: tenant.to_string(),
            day: day.to_string(),
        };
        self.call(&self.admin, req, |mut c, r| async move { c.usage(r).await })
            .await
    }

    /// Issues a JWT (commander role).
    pub async fn issue_token(&self, req: v1::IssueTokenRequest) -> Result<v1::IssueTokenResponse> {
        self.call(&self.admin, req, |mut c, r| async move { c.issue_token(r).await })
            .await
    }

    /// Creates an API key; the secret is in the answer only. Not retried: a retry could make
    /// a second key.
    pub async fn create_api_key(&self, req: v1::CreateApiKeyRequest) -> Result<v1::CreateApiKeyResponse> {
        self.call_once(
            &self.admin,
            req,
            |mut c, r| async move { c.create_api_key(r).await },
        )
        .await
    }

    /// The API keys the caller may see.
    pub async fn list_api_keys(&self) -> Result<Vec<v1::ApiKey>> {
        let req = v1::ListApiKeysRequest {};
        let r = self
            .call(
                &self.admin,
                req,
                |mut c, r| async move { c.list_api_keys(r).await },
            )
            .await?;
        Ok(r.keys)
    }

    /// Revokes a JWT by id (`token_id`) or every token of `subject` issued until now (give one).
    /// Not retried: the second would move a subject's revocation later.
    pub async fn revoke_token(&self, token_id: &str, subject: &str) -> Result<v1::RevokeTokenResponse> {
        let req = v1::RevokeTokenRequest {
            token_id: token_id.to_string(),
            subject: subject.to_string(),
        };
        self.call_once(
            &self.admin,
            req,
            |mut c, r| async move { c.revoke_token(r).await },
        )
        .await
    }

    /// Makes a new JWT signing key. Not retried: a retry would make a second key.
    pub async fn rotate_signing_key(&self) -> Result<v1::RotateSigningKeyResponse> {
        let req = v1::RotateSigningKeyRequest {};
        self.call_once(&self.admin, req, |mut c, r| async move {
            c.rotate_signing_key(r).await
        })
        .await
    }

    /// Revokes an API key; the key as it is after.
    pub async fn revoke_api_key(&self, id: &str) -> Result<v1::ApiKey> {
        let req = v1::RevokeApiKeyRequest { id: id.to_string() };
        self.call(
            &self.admin,
            req,
            |mut c, r| async move { c.revoke_api_key(r).await },
        )
        .await
    }
}
