//! The schedule calls: cron expressions and intervals that submit a task (or start a workflow:
//! a task of type `workflow.<name>.run`). Create, trigger and delete are not retried (a repeat
//! would make a second schedule or manual fire, or answer NOT_FOUND); the others converge and
//! are.

use cadre_proto::v1;

use crate::connect::Client;
use crate::error::Result;

impl Client {
    /// Creates a schedule.
    pub async fn create_schedule(&self, req: v1::CreateScheduleRequest) -> Result<v1::Schedule> {
        self.call_once(&self.schedules, req, |mut c, r| async move {
            c.create_schedule(r).await
        })
        .await
    }

    /// One schedule with its next fire times.
    pub async fn get_schedule(&self, id: &str) -> Result<v1::Schedule> {
        let req = v1::GetScheduleRequest { id: id.to_string() };
        self.call(
            &self.schedules,
            req,
            |mut c, r| async move { c.get_schedule(r).await },
        )
        .await
    }

    /// A page of schedules by id (`tenant`: commanders only, empty for every tenant; `after`:
    /// the previous page's last id; `limit` 0: the node's maximum).
    pub async fn list_schedules(&self, tenant: &str, after: &str, limit: u32) -> Result<Vec<v1::Schedule>> {
        let req = v1::ListSchedulesRequest {
            tenant: tenant.to_string(),
            limit,
            after: after.to_string(),
        };
        let r = self
            .call(&self.schedules, req, |mut c, r| async move {
                c.list_schedules(r).await
            })
            .await?;
        Ok(r.schedules)
    }

    /// Pauses a schedule.
    pub async fn pause_schedule(&self, id: &str) -> Result<v1::Schedule> {
        let req = v1::ScheduleIdRequest { id: id.to_string() };
        self.call(&self.schedules, req, |mut c, r| async move {
            c.pause_schedule(r).await
        })
        .await
    }

    /// Resumes a schedule from its next future tick.
    pub async fn resume_schedule(&self, id: &str) -> Result<v1::Schedule> {
        let req = v1::ScheduleIdRequest { id: id.to_string() };
        self.call(&self.schedules, req, |mut c, r| async move {
            c.resume_schedule(r).await
        })
        .await
    }

    /// Fires a schedule now, once.
    pub async fn trigger_schedule(&self, id: &str) -> Result<v1::TriggerScheduleResponse> {
        let req = v1::ScheduleIdRequest { id: id.to_string() };
        self.call_once(&self.schedules, req, |mut c, r| async move {
            c.trigger_schedule(r).await
        })
        .await
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        let req = v1::ScheduleIdRequest { id: id.to_string() };
        self.call_once(&self.schedules, req, |mut c, r| async move {
            c.delete_schedule(r).await
        })
        .await?;
        Ok(())
    }
}
