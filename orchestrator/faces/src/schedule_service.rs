//! The gRPC face of schedules: ScheduleService (create, get, list, pause, resume, trigger and
//! delete). The core checks, decides and audits; this file only translates.

use std::sync::Arc;

use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_proto::v1::{self, schedule_service_server::ScheduleService};
use tonic::{Request, Response, Status};

use crate::grpc::authorize;

/// ScheduleService implementation.
#[derive(Clone)]
pub struct ScheduleApi(pub Arc<Node>);

#[tonic::async_trait]
impl ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        req: Request<v1::CreateScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let p = authorize(&self.0, &req, Action::ManageSchedules).await?;
        Ok(Response::new(self.0.create_schedule(&p, req.get_ref()).await?))
    }

    async fn get_schedule(
        &self,
        req: Request<v1::GetScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let p = authorize(&self.0, &req, Action::ReadSchedules).await?;
        Ok(Response::new(self.0.get_schedule(&p, &req.get_ref().id).await?))
    }

    async fn list_schedules(
        &self,
        req: Request<v1::ListSchedulesRequest>,
    ) -> Result<Response<v1::ListSchedulesResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ReadSchedules).await?;
        let schedules = self.0.list_schedules(&p, req.get_ref()).await?;
        Ok(Response::new(v1::ListSchedulesResponse { schedules }))
    }

    async fn pause_schedule(
        &self,
        req: Request<v1::ScheduleIdRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let p = authorize(&self.0, &req, Action::ManageSchedules).await?;
        Ok(Response::new(self.0.pause_schedule(&p, &req.get_ref().id).await?))
    }

    async fn resume_schedule(
        &self,
        req: Request<v1::ScheduleIdRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        let p = authorize(&self.0, &req, Action::ManageSchedules).await?;
        Ok(Response::new(
            self.0.resume_schedule(&p, &req.get_ref().id).await?,
        ))
    }

    async fn trigger_schedule(
        &self,
        req: Request<v1::ScheduleIdRequest>,
    ) -> Result<Response<v1::TriggerScheduleResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ManageSchedules).await?;
        let (schedule, task) = self.0.trigger_schedule(&p, &req.get_ref().id).await?;
        Ok(Response::new(v1::TriggerScheduleResponse {
            schedule: Some(schedule),
            task: Some(task.to_wire()),
        }))
    }

    async fn delete_schedule(
        &self,
        req: Request<v1::ScheduleIdRequest>,
    ) -> Result<Response<v1::DeleteScheduleResponse>, Status> {
        let p = authorize(&self.0, &req, Action::ManageSchedules).await?;
        self.0.delete_schedule(&p, &req.get_ref().id).await?;
        Ok(Response::new(v1::DeleteScheduleResponse {}))
    }
}
