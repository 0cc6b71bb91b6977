//! The gRPC faces: TaskService, AdminService and SupervisorPeer on top of [`Node`].
//! Every call is authenticated and checked against the permission table first.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cadre_proto::SpecError;
use cadre_proto::v1::{
    self, admin_service_server::AdminService, supervisor_peer_server::SupervisorPeer,
    task_service_server::TaskService,
};
use futures::{Future, Stream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use cadre_core::auth::{Action, Principal, Role};
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

/// Authenticates the request's `authorization` metadata and checks `action` (refusals are
/// logged and audited).
async fn authorize<T>(node: &Node, req: &Request<T>, action: Action) -> Result<Principal, Status> {
    let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
    node.authorize(header, action).await.map_err(|e| {
        tracing::warn!(action = action.name(), error = %e, "call refused");
        Status::from(e)
    })
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

fn parse_role(role: &str) -> Result<Role, Status> {
    role.parse()
        .map_err(|e: String| Status::from(Error::from(SpecError::invalid("role", e))))
}

fn key_to_wire(k: &ApiKeyRecord) -> v1::ApiKey {
    v1::ApiKey {
        id: k.id.clone(),
        name: k.name.clone(),
        tenant: k.tenant.clone(),
        role: k.role.to_string(),
        created_at_ms: k.created_at_ms,
        revoked_at_ms: k.revoked_at_ms.unwrap_or(0),
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
        self.0
            .audit(Some(&p), "task.cancel", &task.id.to_string(), "ok", &r.reason)
            .await;
        Ok(Response::new(task.to_wire()))
    }

    async fn list_task_types(
        &self,
        req: Request<v1::ListTaskTypesRequest>,
    ) -> Result<Response<v1::ListTaskTypesResponse>, Status> {
        authorize(&self.0, &req, Action::GetTask).await?;
        let types = self
            .0
            .task_types_with_prefix(&req.get_ref().task_type_prefix)
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
        authorize(&self.0, &req, Action::Status).await?;
        Ok(Response::new(self.0.status().await?))
    }

    async fn scale(&self, req: Request<v1::ScaleRequest>) -> Result<Response<v1::ScaleResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Scale).await?;
        let r = req.get_ref();
        let pool = self.0.scale(&r.supervisor, &r.worker_kind, r.replicas).await?;
        let target = format!("{}/{}", r.supervisor, r.worker_kind);
        self.0
            .audit(
                Some(&p),
                "admin.scale",
                &target,
                "ok",
                &format!("replicas {}", r.replicas),
            )
            .await;
        Ok(Response::new(v1::ScaleResponse { pool: Some(pool) }))
    }

    async fn reload_config(
        &self,
        req: Request<v1::ReloadConfigRequest>,
    ) -> Result<Response<v1::ReloadConfigResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Reload).await?;
        let changes = self.0.reload().await?;
        self.0
            .audit(Some(&p), "admin.reload", "config", "ok", &changes.join("; "))
            .await;
        Ok(Response::new(v1::ReloadConfigResponse { changes }))
    }

    async fn issue_token(
        &self,
        req: Request<v1::IssueTokenRequest>,
    ) -> Result<Response<v1::IssueTokenResponse>, Status> {
        let p = authorize(&self.0, &req, Action::IssueToken).await?;
        let r = req.get_ref();
        let role = parse_role(&r.role)?;
        let subject = if r.subject.is_empty() {
            format!("issued-by-{}", p.subject)
        } else {
            r.subject.clone()
        };
        let ttl = Duration::from_secs(r.ttl_secs);
        let token = self.0.auth.issue_token(&subject, &r.tenant, role, ttl)?;
        let expires_at_ms = cadre_proto::clock::now_ms() + ttl.as_millis() as i64;
        tracing::info!(by = %p.subject, %subject, tenant = %r.tenant, %role, "token issued");
        let detail = format!("tenant {} role {role} ttl {} s", r.tenant, r.ttl_secs);
        self.0
            .audit(Some(&p), "token.issue", &subject, "ok", &detail)
            .await;
        Ok(Response::new(v1::IssueTokenResponse { token, expires_at_ms }))
    }

    async fn create_api_key(
        &self,
        req: Request<v1::CreateApiKeyRequest>,
    ) -> Result<Response<v1::CreateApiKeyResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ManageKeys).await?;
        let r = req.get_ref();
        let role = parse_role(&r.role)?;
        let (key, secret) = self.0.auth.create_key(&r.name, &r.tenant, role).await?;
        tracing::info!(by = %p.subject, id = %key.id, name = %key.name, tenant = %key.tenant, %role, "API key created");
        let detail = format!("name {} tenant {} role {role}", key.name, key.tenant);
        self.0.audit(Some(&p), "key.create", &key.id, "ok", &detail).await;
        Ok(Response::new(v1::CreateApiKeyResponse {
            key: Some(key_to_wire(&key)),
            secret,
        }))
    }

    async fn list_api_keys(
        &self,
        req: Request<v1::ListApiKeysRequest>,
    ) -> Result<Response<v1::ListApiKeysResponse>, Status> {
        authorize(&self.0, &req, Action::ManageKeys).await?;
        let keys = self.0.auth.list_keys().iter().map(key_to_wire).collect();
        Ok(Response::new(v1::ListApiKeysResponse { keys }))
    }

    async fn usage(&self, req: Request<v1::UsageRequest>) -> Result<Response<v1::UsageResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ReadUsage).await?;
        let r = req.get_ref();
        Ok(Response::new(self.0.usage(&p, &r.tenant, &r.day).await?))
    }

    async fn revoke_api_key(
        &self,
        req: Request<v1::RevokeApiKeyRequest>,
    ) -> Result<Response<v1::ApiKey>, Status> {
        let p = authorize(&self.0, &req, Action::ManageKeys).await?;
        let key = self.0.auth.revoke_key(&req.get_ref().id).await?;
        tracing::info!(by = %p.subject, id = %key.id, "API key revoked");
        self.0
            .audit(Some(&p), "key.revoke", &key.id, "ok", &key.name)
            .await;
        Ok(Response::new(key_to_wire(&key)))
    }
}

#[tonic::async_trait]
impl SupervisorPeer for PeerApi {
    async fn delegate(&self, req: Request<v1::DelegateRequest>) -> Result<Response<v1::Task>, Status> {
        in_submit_span("Delegate", req.get_ref().spec.as_ref(), async {
            let p = authorize(&self.0, &req, Action::Delegate).await?;
            tracing::Span::current().record("tenant", p.tenant.as_str());
            let r = req.get_ref();
            let mut spec = r
                .spec
                .clone()
                .ok_or_else(|| Status::invalid_argument("spec: is required"))?;
            if r.parent_id.is_empty() {
                return Err(Status::invalid_argument("parent_id: is required"));
            }
            spec.parent_id = r.parent_id.clone();
            // Node credentials (scoped to every tenant) delegate on behalf of the parent's tenant.
            let p = match p.tenant_scope() {
                None if !r.tenant.is_empty() => Principal {
                    tenant: r.tenant.clone(),
                    ..p
                },
                _ => p,
            };
            let task = self.0.submit_and_wait(&p, Some(&spec), r.wait_ms).await?;
            Ok(Response::new(task.to_wire()))
        })
        .await
    }

    async fn scale(&self, req: Request<v1::ScaleRequest>) -> Result<Response<v1::PoolStatus>, Status> {
        let p = authorize(&self.0, &req, Action::Scale).await?;
        let r = req.get_ref();
        let pool = self.0.scale(&r.supervisor, &r.worker_kind, r.replicas).await?;
        tracing::info!(by = %p.subject, supervisor = %r.supervisor, kind = %r.worker_kind, size = r.replicas, "pool scaled");
        Ok(Response::new(pool))
    }

    async fn status(
        &self,
        req: Request<v1::PeerStatusRequest>,
    ) -> Result<Response<v1::SupervisorStatus>, Status> {
        authorize(&self.0, &req, Action::Status).await?;
        let name = &req.get_ref().supervisor;
        let status = self.0.status().await?;
        status
            .supervisors
            .into_iter()
            .find(|s| &s.name == name)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no supervisor {name:?}")))
    }
}
