//! The gRPC faces: TaskService, AdminService and SupervisorPeer on top of [`Node`].
//! Every call is authenticated and checked against the permission table first.

use std::pin::Pin;
use std::sync::Arc;

use cadre_proto::v1::{
    self, admin_service_server::AdminService, supervisor_peer_server::SupervisorPeer,
    task_service_server::TaskService,
};
use futures::{Future, Stream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use cadre_core::auth::{Action, Principal};
use cadre_core::bulk::BulkAction;
use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_store::ApiKeyRecord;

/// TaskService implementation.
#[derive(Clone)]
pub struct TaskApi(pub Arc<Node>);

/// AdminService implementation.
#[derive(Clone)]
pub struct AdminApi(pub Arc<Node>);

/// SupervisorPeer implementation. In the embedded mode every supervisor lives in this process,
/// so delegation is a local submit-and-wait with the parent recorded.
#[derive(Clone)]
pub struct PeerApi(pub Arc<Node>);

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::TaskEvent, Status>> + Send>>;

/// Authenticates the request's `authorization` metadata and checks `action` up front (the
/// core logs and audits a refusal; every operation checks its action again).
pub(crate) async fn authorize<T>(node: &Node, req: &Request<T>, action: Action) -> Result<Principal, Status> {
    let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
    node.authorize(header, action).await.map_err(Status::from)
}

/// Runs a submission (`rpc`) in a `task.submit` span, the parent of every attempt of the task
/// (only while spans are exported). `task_id` and `tenant` are recorded once known; a failed
/// call marks the span as an error.
async fn in_submit_span<T>(
    rpc: &str,
    spec: Option<&v1::TaskSpec>,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let span = cadre_trace::task_span!(
        "task.submit",
        rpc,
        task_type = spec.map(|s| s.task_type.as_str()).unwrap_or_default(),
        task_id = tracing::field::Empty,
        tenant = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    let res = call.instrument(span.clone()).await;
    if let Err(s) = &res
        && !span.is_disabled()
    {
        span.record(
            "otel.status_description",
            format!("{:?}: {}", s.code(), s.message()),
        );
    }
    res
}

fn key_to_wire(k: &ApiKeyRecord) -> v1::ApiKey {
    v1::ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        tenant: k.tenant.clone(),
        role: k.role.to_string(),
        created_at_ms: k.created_at_ms,
        revoked_at_ms: k.revoked_at_ms.unwrap_or(0),
        expires_at_ms: k.expires_at_ms.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn submit(&self, req: Request<v1::SubmitRequest>) -> Result<Response<v1::SubmitResponse>, Status> {
        in_submit_span("Submit", req.get_ref().spec.as_ref(), async {
            let p = authorize(&self.0, &req, Action::SubmitTask).await?;
            tracing::Span::current().record("tenant", p.tenant.as_str());
            let (task, created) = self.0.submit(&p, req.get_ref().spec.as_ref()).await?;
            Ok(Response::new(v1::SubmitResponse {
                task: Some(task.to_wire()),
                created,
            }))
        })
        .await
    }

    async fn submit_and_wait(
        &self,
        req: Request<v1::SubmitAndWaitRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        in_submit_span("SubmitAndWait", req.get_ref().spec.as_ref(), async {
            let p = authorize(&self.0, &req, Action::SubmitTask).await?;
            tracing::Span::current().record("tenant", p.tenant.as_str());
            let r = req.get_ref();
            let task = self.0.submit_and_wait(&p, r.spec.as_ref(), r.wait_ms).await?;
            Ok(Response::new(task.to_wire()))
        })
        .await
    }

    async fn get(&self, req: Request<v1::GetRequest>) -> Result<Response<v1::Task>, Status> {
        let p = authorize(&self.0, &req, Action::GetTask).await?;
        Ok(Response::new(self.0.get(&p, &req.get_ref().id).await?.to_wire()))
    }

    async fn cancel(&self, req: Request<v1::CancelRequest>) -> Result<Response<v1::Task>, Status> {
        let p = authorize(&self.0, &req, Action::CancelTask).await?;
        let r = req.get_ref();
        let task = self.0.cancel(&p, &r.id, &r.reason).await?;
        Ok(Response::new(task.to_wire()))
    }

    async fn list_task_types(
        &self,
        req: Request<v1::ListTaskTypesRequest>,
    ) -> Result<Response<v1::ListTaskTypesResponse>, Status> {
        let p = authorize(&self.0, &req, Action::GetTask).await?;
        let types = self
            .0
            .task_types_with_prefix(&p, &req.get_ref().task_type_prefix)
            .await?
            .into_iter()
            .map(|t| v1::TaskType {
                task_type: t.task_type,
                supervisor: t.supervisor,
                worker_kind: t.worker_kind,
                executor: t.executor,
                params_schema_json: t.params_schema.to_string(),
                result_schema_json: t.result_schema.to_string(),
            })
            .collect();
        Ok(Response::new(v1::ListTaskTypesResponse { types }))
    }

    async fn list(&self, req: Request<v1::ListRequest>) -> Result<Response<v1::ListResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ListTasks).await?;
        let (tasks, next_page_token) = self.0.list(&p, req.get_ref()).await?;
        Ok(Response::new(v1::ListResponse {
            tasks: tasks.iter().map(|t| t.to_wire()).collect(),
            next_page_token,
        }))
    }

    async fn bulk_cancel(&self, req: Request<v1::BulkRequest>) -> Result<Response<v1::BulkResponse>, Status> {
        let p = authorize(&self.0, &req, Action::CancelTask).await?;
        let out = self.0.bulk(&p, BulkAction::Cancel, req.get_ref()).await?;
        Ok(Response::new(out))
    }

    async fn bulk_replay(&self, req: Request<v1::BulkRequest>) -> Result<Response<v1::BulkResponse>, Status> {
        let p = authorize(&self.0, &req, Action::SubmitTask).await?;
        let out = self.0.bulk(&p, BulkAction::Replay, req.get_ref()).await?;
        Ok(Response::new(out))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<v1::WatchRequest>) -> Result<Response<EventStream>, Status> {
        let p = authorize(&self.0, &req, Action::WatchTasks).await?;
        let rx = self.0.watch(&p, req.get_ref()).await?;
        let stream =
            ReceiverStream::new(rx).map(|r| r.map(|e| e.to_wire()).map_err(|e| Status::from(Error::from(e))));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn status(&self, req: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Status).await?;
        Ok(Response::new(self.0.status(&p).await?))
    }

    async fn scale(&self, req: Request<v1::ScaleRequest>) -> Result<Response<v1::ScaleResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Scale).await?;
        let r = req.get_ref();
        let pool = self
            .0
            .scale(&p, &r.supervisor, &r.worker_kind, r.replicas)
            .await?;
        Ok(Response::new(v1::ScaleResponse { pool: Some(pool) }))
    }

    async fn reload_config(
        &self,
        req: Request<v1::ReloadConfigRequest>,
    ) -> Result<Response<v1::ReloadConfigResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Reload).await?;
        let changes = self.0.reload(&p).await?;
        Ok(Response::new(v1::ReloadConfigResponse { changes }))
    }

    async fn issue_token(
        &self,
        req: Request<v1::IssueTokenRequest>,
    ) -> Result<Response<v1::IssueTokenResponse>, Status> {
        let p = authorize(&self.0, &req, Action::IssueToken).await?;
        let r = req.get_ref();
        let issued = self
            .0
            .issue_token(&p, &r.subject, &r.tenant, &r.role, r.ttl_secs)
            .await?;
        Ok(Response::new(v1::IssueTokenResponse {
            token: issued.token,
            expires_at_ms: issued.expires_at_ms,
            token_id: issued.token_id,
            key_id: issued.key_id,
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<v1::RevokeTokenRequest>,
    ) -> Result<Response<v1::RevokeTokenResponse>, Status> {
        let p = authorize(&self.0, &req, Action::RevokeToken).await?;
        let r = req.get_ref();
        let row = self.0.revoke_token(&p, &r.token_id, &r.subject).await?;
        Ok(Response::new(v1::RevokeTokenResponse {
            revoked_at_ms: row.revoked_at_ms,
            expires_at_ms: row.expires_at_ms,
        }))
    }

    async fn rotate_signing_key(
        &self,
        req: Request<v1::RotateSigningKeyRequest>,
    ) -> Result<Response<v1::RotateSigningKeyResponse>, Status> {
        let p = authorize(&self.0, &req, Action::RotateKeys).await?;
        let (key_id, previous_retires_at_ms) = self.0.rotate_signing_key(&p).await?;
        Ok(Response::new(v1::RotateSigningKeyResponse {
            key_id,
            previous_retires_at_ms,
        }))
    }

    async fn create_api_key(
        &self,
        req: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ManageKeys).await?;
        let r = req.get_ref();
        let (key, secret) = self
            .0
            .create_key(&p, &r.name, &r.tenant, &r.role, r.ttl_secs)
            .await?;
        Ok(Response::new(v1::CreateApiKeyResponse {
            key: Some(key_to_wire(&key)),
            secret,
        }))
    }

    async fn list_api_keys(
        &self,
        req: Request<v1::ListApiKeysRequest>,
    ) -> Result<Response<v1::ListApiKeysResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ManageKeys).await?;
        let keys = self.0.list_keys(&p).await?.iter().map(key_to_wire).collect();
        Ok(Response::new(v1::ListApiKeysResponse { keys }))
    }

    async fn usage(&self, req: Request<v1::UsageRequest>) -> Result<Response<v1::UsageResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ReadUsage).await?;
        let r = req.get_ref();
        Ok(Response::new(self.0.usage(&p, &r.tenant, &r.day).await?))
    }

    async fn list_llm_calls(
        &self,
        req: Request<v1::ListLlmCallsRequest>,
    ) -> Result<Response<v1::ListLlmCallsResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ReadUsage).await?;
        Ok(Response::new(self.0.list_llm_calls(&p, req.get_ref()).await?))
    }

    async fn revoke_api_key(
        &self,
        req: Request<v1::RevokeApiKeyRequest>,
    ) -> Result<Response<v1::ApiKey>, Status> {
        let p = authorize(&self.0, &req, Action::ManageKeys).await?;
        let key = self.0.revoke_key(&p, &req.get_ref().id).await?;
        Ok(Response::new(key_to_wire(&key)))
    }

    async fn pause(&self, req: Request<v1::PauseRequest>) -> Result<Response<v1::PauseResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Pause).await?;
        let (pause, created) = self.0.pause(&p, req.get_ref().pause.as_ref()).await?;
        Ok(Response::new(v1::PauseResponse {
            pause: Some(pause),
            created,
        }))
    }

    async fn resume(&self, req: Request<v1::ResumeRequest>) -> Result<Response<v1::ResumeResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Resume).await?;
        let resumed = self.0.resume(&p, req.get_ref().pause.as_ref()).await?;
        Ok(Response::new(v1::ResumeResponse { resumed }))
    }

    async fn list_pauses(
        &self,
        req: Request<v1::ListPausesRequest>,
    ) -> Result<Response<v1::ListPausesResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Pause).await?;
        let pauses = self.0.list_pauses(&p).await?;
        Ok(Response::new(v1::ListPausesResponse { pauses }))
    }
}

#[tonic::async_trait]
impl SupervisorPeer for PeerApi {
    async fn delegate(&self, req: Request<v1::DelegateRequest>) -> Result<Response<v1::Task>, Status> {
        in_submit_span("Delegate", req.get_ref().spec.as_ref(), async {
            let p = authorize(&self.0, &req, Action::Delegate).await?;
            tracing::Span::current().record("tenant", p.tenant.as_str());
            let r = req.get_ref();
            let task = self
                .0
                .delegate(
                    &p,
                    &r.parent_id,
                    &r.tenant,
                    r.parent_depth,
                    r.spec.as_ref(),
                    r.wait_ms,
                )
                .await?;
            Ok(Response::new(task.to_wire()))
        })
        .await
    }

    async fn scale(&self, req: Request<v1::ScaleRequest>) -> Result<Response<v1::PoolStatus>, Status> {
        let p = authorize(&self.0, &req, Action::Scale).await?;
        let r = req.get_ref();
        let pool = self
            .0
            .scale(&p, &r.supervisor, &r.worker_kind, r.replicas)
            .await?;
        tracing::info!(by = %p.subject, supervisor = %r.supervisor, kind = %r.worker_kind, size = r.replicas, "pool scaled");
        Ok(Response::new(pool))
    }

    async fn set_pauses(
        &self,
        req: Request<v1::SetPausesRequest>,
    ) -> Result<Response<v1::SetPausesResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ApplyPauses).await?;
        self.0.apply_pauses(&p, &req.get_ref().pauses).await?;
        Ok(Response::new(v1::SetPausesResponse {}))
    }

    async fn set_credentials(
        &self,
        req: Request<v1::SetCredentialsRequest>,
    ) -> Result<Response<v1::SetCredentialsResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ApplyCredentials).await?;
        self.0.apply_credentials(&p).await?;
        Ok(Response::new(v1::SetCredentialsResponse {}))
    }

    async fn status(
        &self,
        req: Request<v1::PeerStatusRequest>,
    ) -> Result<Response<v1::SupervisorStatus>, Status> {
        let p = authorize(&self.0, &req, Action::Status).await?;
        let name = &req.get_ref().supervisor;
        let status = self.0.status(&p).await?;
        status
            .supervisors
            .into_iter()
            .find(|s| &s.name == name)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no supervisor {name:?}")))
    }
}
