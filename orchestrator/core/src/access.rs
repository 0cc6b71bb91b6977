//! Who may do what, decided in one place. Every operation of the core checks its own action
//! ([`Node::permit`]) whatever face called it, a refusal is audited, and every act is recorded
//! in the audit chain ([`Node::audit`]) by the operation itself, so a new face cannot forget.
//! Faces authenticate a request up front ([`Node::authorize`]) to refuse early and to know
//! who is calling; the operations check again.

use crate::auth::{Action, Authenticator, Principal};
use crate::error::Result;
use crate::node::Node;

impl Node {
    /// Records a security-relevant act in the audit chain (sealed in commit order). Only the
    /// core's operations call it: a face never audits.
    pub(crate) async fn audit(
        &self,
        p: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.writer
            .audit(crate::audit::draft(p, action, target, outcome, detail))
            .await;
    }

    /// Authenticates an `authorization` header and checks `action`; refusals are audited.
    pub async fn authorize(&self, header: Option<&str>, action: Action) -> Result<Principal> {
        let p = match self.auth.authenticate(header) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(action = action.name(), error = %e, "call refused");
                self.audit(None, action.name(), "", "unauthenticated", &e.to_string())
                    .await;
                return Err(e);
            }
        };
        if let Err(e) = Authenticator::check(&p, action) {
            tracing::warn!(action = action.name(), error = %e, "call refused");
            self.audit(Some(&p), action.name(), "", "denied", &e.to_string())
                .await;
            return Err(e);
        }
        Ok(p)
    }

    /// Checks that an authenticated principal may do `action` (a refusal is audited): the
    /// first step of every operation of the core.
    pub(crate) async fn permit(&self, p: &Principal, action: Action) -> Result<()> {
        if let Err(e) = Authenticator::check(p, action) {
            self.audit(Some(p), action.name(), "", "denied", &e.to_string())
                .await;
            return Err(e);
        }
        Ok(())
    }
}
