//! What a caller can do with schedules, on any face: create, get, list, pause, resume, trigger
//! and delete. Permissions: [`Action::ManageSchedules`] (operator) to change, and
//! [`Action::ReadSchedules`] (observer) to read, a schedule of the caller's own tenant;
//! commanders any tenant's (another tenant's schedule is "no schedule" to everyone else).
//! Every change is audited (`schedule.create`, `schedule.pause`, `schedule.resume`,
//! `schedule.trigger`, `schedule.delete`, target the schedule id).

use cadre_proto::clock::now_ms;
use cadre_proto::{Role, SpecError, TaskId, TaskRecord, v1};
use cadre_store::{FireRecord, StoredSchedule};
use cadre_supervisors::admission::{self, Admission};
use prost::Message;

use super::timing::Timing;
use super::{Missed, Overlap, SHOWN_FIRE_TIMES, fire_subject, manual_key};
use crate::auth::{Action, Principal};
use crate::error::{Error, Result};
use crate::node::Node;

/// The longest name, in bytes.
const MAX_NAME_BYTES: usize = 128;
/// The largest page of List.
const MAX_PAGE: u32 = 1000;

impl Node {
    /// Creates a schedule: its timing, policies and task are checked now (the task as a
    /// submit would be, without storing it). INVALID_ARGUMENT names the field; more than
    /// `[schedules] max_per_tenant` is RESOURCE_EXHAUSTED.
    pub async fn create_schedule(
        &self,
        p: &Principal,
        req: &v1::CreateScheduleRequest,
    ) -> Result<v1::Schedule> {
        self.permit(p, Action::ManageSchedules).await?;
        let tenant = self.acting_tenant(p, &req.tenant).await?;
        if req.name.len() > MAX_NAME_BYTES {
            return Err(SpecError::invalid("name", format!("is longer than {MAX_NAME_BYTES} bytes")).into());
        }
        let now = now_ms();
        let timing = Timing::parse(&req.cron, &req.time_zone, req.every_ms, now)?;
        let missed = Missed::from_wire(req.missed)?;
        let overlap = Overlap::from_wire(req.overlap)?;
        let spec = self.check_target(req.task.as_ref()).await?;
        let max = self.config().schedules.max_per_tenant;
        if self.store.count_schedules(&tenant).await? >= max {
            return Err(Error::Exhausted(format!(
                "tenant {tenant} has {max} schedules ([schedules] max_per_tenant)"
            )));
        }
        let next = timing
            .next_after(now)
            .ok_or_else(|| SpecError::invalid("cron", "never fires"))?;
        let is_cron = !req.cron.trim().is_empty();
        let s = StoredSchedule {
            id: TaskId::new().to_string(),
            tenant,
            name: req.name.clone(),
            cron: req.cron.trim().to_string(),
            time_zone: match (is_cron, req.time_zone.as_str()) {
                (false, _) => String::new(),
                (true, "") => "UTC".into(),
                (true, z) => z.to_string(),
            },
            every_ms: req.every_ms as i64,
            anchor_ms: now,
            spec: spec.encode_to_vec(),
            missed: missed.name().into(),
            overlap: overlap.name().into(),
            paused: req.paused,
            next_fire_at: next,
            created_at_ms: now,
            created_by: p.subject.clone(),
            creator_role: p.role.as_str().into(),
            ..Default::default()
        };
        self.store.insert_schedule(&s).await?;
        let detail = format!("{} -> {} (tenant {})", when(&s), spec.task_type, s.tenant);
        self.audit(Some(p), "schedule.create", &s.id, "ok", &detail).await;
        Ok(view(&s))
    }

    /// One schedule with its next fire times.
    pub async fn get_schedule(&self, p: &Principal, id: &str) -> Result<v1::Schedule> {
        self.permit(p, Action::ReadSchedules).await?;
        Ok(view(&self.visible_schedule(p, id).await?))
    }

    /// A page of schedules by id: the caller's tenant's, or for a commander `tenant`'s (empty:
    /// every tenant's).
    pub async fn list_schedules(
        &self,
        p: &Principal,
        req: &v1::ListSchedulesRequest,
    ) -> Result<Vec<v1::Schedule>> {
        self.permit(p, Action::ReadSchedules).await?;
        let tenant = match p.tenant_scope() {
            Some(t) => Some(t),
            None => (!req.tenant.is_empty()).then_some(req.tenant.as_str()),
        };
        let limit = match req.limit {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        };
        let rows = self.store.schedules(tenant, &req.after, limit).await?;
        Ok(rows.iter().map(view).collect())
    }

    /// Pauses a schedule (a paused one stays paused).
    pub async fn pause_schedule(&self, p: &Principal, id: &str) -> Result<v1::Schedule> {
        self.permit(p, Action::ManageSchedules).await?;
        let s = self.visible_schedule(p, id).await?;
        self.store.set_schedule_paused(&s.id, true, 0).await?;
        self.audit(Some(p), "schedule.pause", &s.id, "ok", "").await;
        self.get_schedule(p, id).await
    }

    /// Resumes a schedule from its next future tick: ticks that passed while it was paused
    /// are not fired.
    pub async fn resume_schedule(&self, p: &Principal, id: &str) -> Result<v1::Schedule> {
        self.permit(p, Action::ManageSchedules).await?;
        let s = self.visible_schedule(p, id).await?;
        let next = timing_of(&s)?
            .next_after(now_ms())
            .ok_or_else(|| Error::FailedPrecondition(format!("schedule {} has no tick left", s.id)))?;
        self.store.set_schedule_paused(&s.id, false, next).await?;
        self.audit(Some(p), "schedule.resume", &s.id, "ok", "").await;
        self.get_schedule(p, id).await
    }

    /// Fires a schedule now, once (also while paused), whatever its ticks and overlap policy,
    /// with the idempotency key `schedule:<id>:manual:<ms>`. A refusal by intake is the
    /// answer, and recorded on the schedule as its last error.
    pub async fn trigger_schedule(&self, p: &Principal, id: &str) -> Result<(v1::Schedule, TaskRecord)> {
        self.permit(p, Action::ManageSchedules).await?;
        let s = self.visible_schedule(p, id).await?;
        let at = now_ms();
        let fired = self.submit_fire(&s, manual_key(&s.id, at)).await;
        let rec = match &fired {
            Ok(task) => FireRecord::Fired {
                tick_ms: at,
                task_id: task.id.to_string(),
            },
            Err(e) => FireRecord::Refused(e.to_string()),
        };
        self.store.record_fire(&s.id, None, &rec).await?;
        let (outcome, detail) = match &fired {
            Ok(task) => ("ok", format!("task {}", task.id)),
            Err(e) => ("refused", e.to_string()),
        };
        self.audit(Some(p), "schedule.trigger", &s.id, outcome, &detail)
            .await;
        let task = fired?;
        Ok((self.get_schedule(p, id).await?, task))
    }

    /// Deletes a schedule; the tasks it fired are untouched.
    pub async fn delete_schedule(&self, p: &Principal, id: &str) -> Result<()> {
        self.permit(p, Action::ManageSchedules).await?;
        let s = self.visible_schedule(p, id).await?;
        if !self.store.delete_schedule(&s.id).await? {
            return Err(Error::NotFound(format!("no schedule {id}")));
        }
        self.audit(Some(p), "schedule.delete", &s.id, "ok", "").await;
        Ok(())
    }

    /// Submits a schedule's task through intake, as the schedule (its tenant, its creator's
    /// role, subject `schedule:<id>`), with idempotency key `key`.
    pub(crate) async fn submit_fire(&self, s: &StoredSchedule, key: String) -> Result<TaskRecord> {
        let mut spec = v1::TaskSpec::decode(s.spec.as_slice()).map_err(|e| {
            Error::FailedPrecondition(format!("schedule {}: stored task unreadable: {e}", s.id))
        })?;
        spec.idempotency_key = key;
        let (task, _) = self.submit(&fire_principal(s), Some(&spec)).await?;
        Ok(task)
    }

    /// The tenant a create acts for: the caller's own, or for a commander the one it names.
    async fn acting_tenant(&self, p: &Principal, asked: &str) -> Result<String> {
        if asked.is_empty() || asked == p.tenant {
            return Ok(p.tenant.clone());
        }
        if p.tenant_scope().is_none() {
            if asked.len() > 128 {
                return Err(SpecError::invalid("tenant", "is longer than 128 bytes").into());
            }
            return Ok(asked.to_string());
        }
        let e = Error::PermissionDenied(format!(
            "{} may not create schedules for tenant {asked} (only commanders act for other tenants)",
            p.subject
        ));
        self.audit(
            Some(p),
            Action::ManageSchedules.name(),
            "",
            "denied",
            &e.to_string(),
        )
        .await;
        Err(e)
    }

    /// The task a schedule submits, checked as intake would check it (parse, route or
    /// workflow, sandbox, params schema); its parent and idempotency key must be empty.
    async fn check_target(&self, wire: Option<&v1::TaskSpec>) -> Result<v1::TaskSpec> {
        let wire = wire.ok_or_else(|| SpecError::invalid("task", "is required"))?;
        if !wire.parent_id.is_empty() {
            return Err(SpecError::invalid(
                "task.parent_id",
                "must be empty: a schedule submits top-level tasks",
            )
            .into());
        }
        if !wire.idempotency_key.is_empty() {
            return Err(SpecError::invalid(
                "task.idempotency_key",
                "must be empty: each fire gets schedule:<id>:<tick>",
            )
            .into());
        }
        let spec = admission::parse(Some(wire), &self.limits)?;
        match cadre_workflow::workflow_of(&spec.task_type) {
            Some(name) => {
                self.instance_route(&spec, name).await?;
            }
            None => {
                let admission = Admission::route(spec, &self.router)?;
                admission.sandboxed(&self.router)?;
                admission.fits_schema(&self.router)?;
            }
        }
        Ok(wire.clone())
    }

    /// A stored schedule the caller may see (another tenant's is "no schedule").
    async fn visible_schedule(&self, p: &Principal, id: &str) -> Result<StoredSchedule> {
        match self.store.schedule(id).await? {
            Some(s) if p.sees(&s.tenant) => Ok(s),
            _ => Err(Error::NotFound(format!("no schedule {id}"))),
        }
    }
}

/// Who a schedule's fires are submitted as.
pub(crate) fn fire_principal(s: &StoredSchedule) -> Principal {
    Principal {
        subject: fire_subject(&s.id),
        tenant: s.tenant.clone(),
        role: s.creator_role.parse().unwrap_or(Role::Operator),
    }
}

/// A stored schedule's timing.
pub(crate) fn timing_of(s: &StoredSchedule) -> Result<Timing> {
    Ok(Timing::parse(
        &s.cron,
        &s.time_zone,
        s.every_ms.max(0) as u64,
        s.anchor_ms,
    )?)
}

/// How a schedule ticks, for audit details and logs.
fn when(s: &StoredSchedule) -> String {
    if s.cron.is_empty() {
        format!("every {} ms", s.every_ms)
    } else {
        format!("cron {:?} in {}", s.cron, s.time_zone)
    }
}

/// A stored schedule as the wire shows it, with its next fire times.
pub fn view(s: &StoredSchedule) -> v1::Schedule {
    let next = match (s.paused, timing_of(s)) {
        (false, Ok(t)) => t.upcoming(s.next_fire_at, SHOWN_FIRE_TIMES),
        _ => Vec::new(),
    };
    v1::Schedule {
        id: s.id.clone(),
        tenant: s.tenant.clone(),
        name: s.name.clone(),
        cron: s.cron.clone(),
        time_zone: s.time_zone.clone(),
        every_ms: s.every_ms.max(0) as u64,
        task: v1::TaskSpec::decode(s.spec.as_slice()).ok(),
        missed: Missed::from_name(&s.missed).map_or(0, |m| m.to_wire() as i32),
        overlap: Overlap::from_name(&s.overlap).map_or(0, |o| o.to_wire() as i32),
        paused: s.paused,
        next_fire_at_ms: next,
        created_at_ms: s.created_at_ms,
        created_by: s.created_by.clone(),
        last_fire_at_ms: s.last_fire_at_ms,
        last_task_id: s.last_task_id.clone(),
        last_error: s.last_error.clone(),
        fires: s.fires.max(0) as u64,
        skipped: s.skipped.max(0) as u64,
    }
}
