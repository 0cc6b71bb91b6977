//! The gRPC face of workflows: WorkflowService (register, list and get definitions; signal
//! an instance). Instances themselves are tasks: TaskService starts, reads, watches and
//! cancels them.

use std::sync::Arc;

use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_proto::SpecError;
use cadre_proto::v1::{self, workflow_service_server::WorkflowService};
use cadre_store::StoredDefinition;
use tonic::{Request, Response, Status};

use crate::grpc::authorize;

/// WorkflowService implementation.
#[derive(Clone)]
pub struct WorkflowApi(pub Arc<Node>);

/// A stored definition in wire form.
pub fn definition_to_wire(d: &StoredDefinition) -> v1::WorkflowDefinition {
    let description = serde_json::from_str::<serde_json::Value>(&d.body)
        .ok()
        .and_then(|v| v.get("description").and_then(|s| s.as_str()).map(str::to_string))
        .unwrap_or_default();
    v1::WorkflowDefinition {
        name: d.name.clone(),
        version: d.version,
        definition_json: d.body.clone(),
        created_at_ms: d.created_at_ms,
        created_by: d.created_by.clone(),
        task_type: cadre_workflow::instance_task_type(&d.name),
        description,
    }
}

/// A signal payload from its JSON text (empty: `null`).
pub fn payload_of(text: &str) -> Result<serde_json::Value, SpecError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| SpecError::invalid("payload_json", format!("is not JSON: {e}")))
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn register_workflow(
        &self,
        req: Request<v1::RegisterWorkflowRequest>,
    ) -> Result<Response<v1::RegisterWorkflowResponse>, Status> {
        let p = authorize(&self.0, &req, Action::RegisterWorkflow).await?;
        let (stored, created) = self
            .0
            .register_workflow(&p, &req.get_ref().definition_json)
            .await?;
        Ok(Response::new(v1::RegisterWorkflowResponse {
            workflow: Some(definition_to_wire(&stored)),
            created,
        }))
    }

    async fn list_workflows(
        &self,
        req: Request<v1::ListWorkflowsRequest>,
    ) -> Result<Response<v1::ListWorkflowsResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ReadWorkflows).await?;
        let name = req.get_ref().name.as_str();
        let list = self.0.workflows(&p, (!name.is_empty()).then_some(name)).await?;
        Ok(Response::new(v1::ListWorkflowsResponse {
            workflows: list.iter().map(definition_to_wire).collect(),
        }))
    }

    async fn get_workflow(
        &self,
        req: Request<v1::GetWorkflowRequest>,
    ) -> Result<Response<v1::WorkflowDefinition>, Status> {
        let p = authorize(&self.0, &req, Action::ReadWorkflows).await?;
        let r = req.get_ref();
        let d = self
            .0
            .workflow(&p, &r.name, (r.version > 0).then_some(r.version))
            .await?;
        Ok(Response::new(definition_to_wire(&d)))
    }

    async fn signal(&self, req: Request<v1::SignalRequest>) -> Result<Response<v1::SignalResponse>, Status> {
        let p = authorize(&self.0, &req, Action::Signal).await?;
        let r = req.get_ref();
        let payload = payload_of(&r.payload_json).map_err(cadre_core::error::Error::from)?;
        let sent = self.0.signal(&p, &r.task_id, &r.name, payload).await?;
        Ok(Response::new(v1::SignalResponse {
            seq: sent.seq,
            task: Some(sent.task.to_wire()),
        }))
    }
}
