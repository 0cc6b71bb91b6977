//! Pause and resume (supervisor role): hold back a supervisor, a pool, a task-type prefix or a
//! tenant. Held tasks stay queued and new ones are accepted; running ones finish.

use cadre_proto::v1;

use crate::connect::Client;
use crate::error::Result;

/// A scope to pause or resume, as [`v1::Pause`] names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PauseScope {
    /// Every pool of a supervisor.
    Supervisor(String),
    /// One pool: (supervisor, worker kind).
    Pool(String, String),
    /// Every task whose type starts with this.
    TaskTypePrefix(String),
    /// Every task of a tenant (empty: the caller's own).
    Tenant(String),
}

impl PauseScope {
    /// The wire message naming this scope, with `reason`.
    pub fn to_wire(&self, reason: &str) -> v1::Pause {
        let mut p = v1::Pause {
            reason: reason.to_string(),
            ..Default::default()
        };
        match self {
            PauseScope::Supervisor(s) => {
                p.scope = "supervisor".into();
                p.supervisor = s.clone();
            }
            PauseScope::Pool(s, k) => {
                p.scope = "pool".into();
                p.supervisor = s.clone();
                p.worker_kind = k.clone();
            }
            PauseScope::TaskTypePrefix(prefix) => {
                p.scope = "task_type_prefix".into();
                p.prefix = prefix.clone();
            }
            PauseScope::Tenant(t) => {
                p.scope = "tenant".into();
                p.tenant = t.clone();
            }
        }
        p
    }
}

impl Client {
    /// Pauses `scope`; the pause in force and whether it was made now (false: it was paused
    /// already). Idempotent, so retried on UNAVAILABLE.
    pub async fn pause(&self, scope: &PauseScope, reason: &str) -> Result<v1::PauseResponse> {
        let req = v1::PauseRequest {
            pause: Some(scope.to_wire(reason)),
        };
        self.call(&self.admin, req, |mut c, r| async move { c.pause(r).await })
            .await
    }

    /// Ends the pause of `scope`; whether there was one.
    pub async fn resume(&self, scope: &PauseScope) -> Result<bool> {
        let req = v1::ResumeRequest {
            pause: Some(scope.to_wire("")),
        };
        let r = self
            .call(&self.admin, req, |mut c, r| async move { c.resume(r).await })
            .await?;
        Ok(r.resumed)
    }

    /// What is paused, oldest first.
    pub async fn pauses(&self) -> Result<Vec<v1::Pause>> {
        let req = v1::ListPausesRequest {};
        let r = self
            .call(&self.admin, req, |mut c, r| async move { c.list_pauses(r).await })
            .await?;
        Ok(r.pauses)
    }
}
