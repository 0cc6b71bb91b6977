//! The SupervisorPeer gRPC service of a supervisor node (role `supervisor`): other supervisors
//! delegate sub-tasks here, tier 0 asks for status, scales pools and sends the pause set and the credentials
//! (revocations, rotated signing keys) it checks tokens against. Callers authenticate
//! with a token (supervisor nodes keep no API keys); node-to-node calls carry a short-lived
//! token the calling node mints with the cluster's shared key.
//!
//! A delegated sub-task is judged by the same intake checks as any submit
//! ([`Admission::admit`]: parse, route, fortress sandbox, params schema), then stored and run
//! by the node runtime ([`NodeRuntime::run_delegated`]).

use std::sync::Arc;
use std::time::Duration;

use cadre_proto::v1::{self, supervisor_peer_server::SupervisorPeer};
use cadre_proto::{SpecLimits, TaskId, TaskRecord, TaskState};
use ractor::ActorRef;
use tonic::{Request, Response, Status};

use cadre_core::auth::{Action, Authenticator, Principal};
use cadre_core::error::Error;
use cadre_supervisors::OrchestratorMsg;
use cadre_supervisors::admission::{Admission, Refusal};
use cadre_supervisors::node::{DelegatedError, NodeRuntime};

/// SupervisorPeer on a supervisor node.
pub struct PeerService {
    /// This node's runtime.
    pub runtime: Arc<NodeRuntime>,
    /// The local orchestrator actor (hosts this node's supervisors).
    pub orchestrator: ActorRef<OrchestratorMsg>,
    /// Token checks.
    pub auth: Arc<Authenticator>,
    /// Input bounds for delegated specs.
    pub limits: SpecLimits,
    /// `limits.max_delegation_depth`: a parent this deep (DelegateRequest.parent_depth) takes
    /// no sub-task.
    pub max_delegation_depth: u32,
    /// This node.
    pub node_id: String,
    /// Where peers reach it.
    pub url: String,
}

impl PeerService {
    fn authorize<T>(&self, req: &Request<T>, action: Action) -> Result<Principal, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.auth.authorize(header, action).map_err(|e| {
            tracing::warn!(action = action.name(), error = %e, "peer call refused");
            Status::from(e)
        })
    }
}

#[tonic::async_trait]
impl SupervisorPeer for PeerService {
    async fn delegate(&self, req: Request<v1::DelegateRequest>) -> Result<Response<v1::Task>, Status> {
        let p = self.authorize(&req, Action::Delegate)?;
        let r = req.into_inner();
        let parent: TaskId = r
            .parent_id
            .parse()
            .map_err(|_| Status::invalid_argument("parent_id: is not a task id"))?;
        let mut wire = r
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        wire.parent_id = parent.to_string();
        Admission::within_depth(&wire.parent_id, r.parent_depth, self.max_delegation_depth)
            .map_err(refused)?;
        let admitted = Admission::admit(Some(&wire), &self.limits, self.runtime.router()).map_err(refused)?;
        let tenant = match p.tenant_scope() {
            None if !r.tenant.is_empty() => r.tenant,
            None => p.tenant.clone(),
            Some(own) => own.to_string(),
        };
        let route = admitted.route;
        let record = TaskRecord::queued(tenant, admitted.spec, &route.supervisor, &route.worker);
        let wait = if r.wait_ms > 0 {
            Duration::from_millis(r.wait_ms)
        } else {
            record.wait_budget()
        };
        let mut task = record.to_wire();
        let traceparent = cadre_trace::current_traceparent();
        let done = self
            .runtime
            .run_delegated(record, &route, r.parent_depth + 1, traceparent, wait)
            .await
            .map_err(not_run)?;
        task.state = done.state.to_wire() as i32;
        task.attempt = done.attempt;
        match done.state {
            TaskState::Succeeded => {
                task.result_json = done.result.map(|v| v.to_string()).unwrap_or_default();
                task.error.clear();
            }
            _ => task.error = done.message,
        }
        Ok(Response::new(task))
    }

    async fn status(
        &self,
        req: Request<v1::PeerStatusRequest>,
    ) -> Result<Response<v1::SupervisorStatus>, Status> {
        self.authorize(&req, Action::Status)?;
        let name = &req.get_ref().supervisor;
        let mut s = cadre_bus::local::local_status(&self.orchestrator)
            .await
            .map_err(Error::from)?
            .into_iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| Status::not_found(format!("no supervisor {name:?} on node {}", self.node_id)))?;
        s.node_id = self.node_id.clone();
        s.address = self.url.clone();
        Ok(Response::new(s))
    }

    async fn scale(&self, req: Request<v1::ScaleRequest>) -> Result<Response<v1::PoolStatus>, Status> {
        let p = self.authorize(&req, Action::Scale)?;
        let r = req.into_inner();
        let pool = cadre_bus::local::local_scale(
            &self.orchestrator,
            &r.supervisor,
            &r.worker_kind,
            r.replicas as usize,
        )
        .await
        .map_err(Error::from)?;
        tracing::info!(by = %p.subject, supervisor = %r.supervisor, kind = %r.worker_kind, size = r.replicas, "pool scaled");
        Ok(Response::new(pool))
    }

    async fn set_pauses(
        &self,
        req: Request<v1::SetPausesRequest>,
    ) -> Result<Response<v1::SetPausesResponse>, Status> {
        self.take_pauses(req).await?;
        Ok(Response::new(v1::SetPausesResponse {}))
    }

    /// Tier 0's revocations and rotated signing keys replace this node's (node credential
    /// only; a malformed set is refused whole).
    async fn set_credentials(
        &self,
        req: Request<v1::SetCredentialsRequest>,
    ) -> Result<Response<v1::SetCredentialsResponse>, Status> {
        self.authorize(&req, Action::ApplyCredentials)?;
        self.auth.take_shared(req.get_ref()).map_err(Status::from)?;
        Ok(Response::new(v1::SetCredentialsResponse {}))
    }
}

impl PeerService {
    /// SupervisorPeer.SetPauses: tier 0's whole pause set replaces this node's (node
    /// credential only; a malformed set is INVALID_ARGUMENT and changes nothing).
    async fn take_pauses(&self, req: Request<v1::SetPausesRequest>) -> Result<(), Status> {
        self.authorize(&req, Action::ApplyPauses)?;
        let set = cadre_bus::pause_wire::set_from_wire(&req.get_ref().pauses)
            .map_err(|m| Error::from(cadre_proto::SpecError::invalid("pauses", m)))?;
        // The runtime remembers the set and hands it to the actor tree (again after a restart
        // of the tree).
        self.runtime.set_pauses(set);
        Ok(())
    }
}

/// A refused delegated spec as the status a submit gets: malformed input or an unknown type
/// is INVALID_ARGUMENT (RESOURCE_EXHAUSTED when too large), a task that cannot run as asked
/// (fortress without a sandbox) FAILED_PRECONDITION.
fn refused(r: Refusal) -> Status {
    match r {
        Refusal::Spec(e) => Error::from(e).into(),
        Refusal::Precondition(m) => Error::FailedPrecondition(m).into(),
    }
}

/// A delegated sub-task that did not come back finished: FAILED_PRECONDITION (not run on this
/// node), UNAVAILABLE, or DEADLINE_EXCEEDED (it goes on).
fn not_run(e: DelegatedError) -> Status {
    match e {
        DelegatedError::NotHere(m) => Error::FailedPrecondition(m),
        DelegatedError::Unavailable(m) => Error::Unavailable(m),
        DelegatedError::DeadlineExceeded(m) => Error::DeadlineExceeded(m),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadre_proto::SpecError;
    use tonic::Code;

    #[test]
    fn refusals_and_unfinished_runs_keep_their_status_codes() {
        let codes = [
            refused(Refusal::Spec(SpecError::invalid("spec.params_json", "x"))).code(),
            refused(Refusal::Precondition("spec.security_level: fortress".into())).code(),
            not_run(DelegatedError::NotHere("elsewhere".into())).code(),
            not_run(DelegatedError::Unavailable("stopping".into())).code(),
            not_run(DelegatedError::DeadlineExceeded("goes on".into())).code(),
        ];
        assert_eq!(
            codes,
            [
                Code::InvalidArgument,
                Code::FailedPrecondition,
                Code::FailedPrecondition,
                Code::Unavailable,
                Code::DeadlineExceeded
            ]
        );
        let status = refused(Refusal::Spec(SpecError::invalid(
            "spec.task_type",
            "unknown task type",
        )));
        assert!(
            status.message().contains("unknown task type"),
            "{}",
            status.message()
        );
    }
}
