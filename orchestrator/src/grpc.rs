//! The gRPC faces: TaskService, AdminService and SupervisorPeer on top of [`Node`].

use std::pin::Pin;
use std::sync::Arc;

use cadre_proto::v1::{
    self, admin_service_server::AdminService, supervisor_peer_server::SupervisorPeer,
    task_service_server::TaskService,
};
use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::node::{DEFAULT_TENANT, Node};

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

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn submit(&self, req: Request<v1::SubmitRequest>) -> Result<Response<v1::SubmitResponse>, Status> {
        let (task, created) = self.0.submit(DEFAULT_TENANT, req.get_ref().spec.as_ref()).await?;
        Ok(Response::new(v1::SubmitResponse {
            task: Some(task.to_wire()),
            created,
        }))
    }

    async fn submit_and_wait(
        &self,
        req: Request<v1::SubmitAndWaitRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        let r = req.get_ref();
        let task = self
            .0
            .submit_and_wait(DEFAULT_TENANT, r.spec.as_ref(), r.wait_ms)
            .await?;
        Ok(Response::new(task.to_wire()))
    }

    async fn get(&self, req: Request<v1::GetRequest>) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(self.0.get(&req.get_ref().id).await?.to_wire()))
    }

    async fn cancel(&self, req: Request<v1::CancelRequest>) -> Result<Response<v1::Task>, Status> {
        let r = req.get_ref();
        Ok(Response::new(self.0.cancel(&r.id, &r.reason).await?.to_wire()))
    }

    async fn list(&self, req: Request<v1::ListRequest>) -> Result<Response<v1::ListResponse>, Status> {
        let (tasks, next_page_token) = self.0.list(req.get_ref()).await?;
        Ok(Response::new(v1::ListResponse {
            tasks: tasks.iter().map(|t| t.to_wire()).collect(),
            next_page_token,
        }))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<v1::WatchRequest>) -> Result<Response<EventStream>, Status> {
        let rx = self.0.watch(req.get_ref()).await?;
        let stream =
            ReceiverStream::new(rx).map(|r| r.map(|e| e.to_wire()).map_err(|e| Status::from(Error::from(e))));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn status(&self, _req: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(self.0.status().await?))
    }

    async fn scale(&self, req: Request<v1::ScaleRequest>) -> Result<Response<v1::ScaleResponse>, Status> {
        let r = req.get_ref();
        let pool = self.0.scale(&r.supervisor, &r.worker_kind, r.replicas).await?;
        Ok(Response::new(v1::ScaleResponse { pool: Some(pool) }))
    }

    async fn reload_config(
        &self,
        _req: Request<v1::ReloadConfigRequest>,
    ) -> Result<Response<v1::ReloadConfigResponse>, Status> {
        Ok(Response::new(v1::ReloadConfigResponse {
            changes: self.0.reload().await?,
        }))
    }
}

#[tonic::async_trait]
impl SupervisorPeer for PeerApi {
    async fn delegate(&self, req: Request<v1::DelegateRequest>) -> Result<Response<v1::Task>, Status> {
        let r = req.get_ref();
        let mut spec = r
            .spec
            .clone()
            .ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        if r.parent_id.is_empty() {
            return Err(Status::invalid_argument("parent_id: is required"));
        }
        spec.parent_id = r.parent_id.clone();
        let task = self
            .0
            .submit_and_wait(DEFAULT_TENANT, Some(&spec), r.wait_ms)
            .await?;
        Ok(Response::new(task.to_wire()))
    }

    async fn status(
        &self,
        req: Request<v1::PeerStatusRequest>,
    ) -> Result<Response<v1::SupervisorStatus>, Status> {
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
