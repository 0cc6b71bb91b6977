//! The JSON API of schedules (docs/HTTP_API.md, "Schedules"): create, list, read, pause,
//! resume, trigger and delete. A schedule's `task` is the body of `POST /v1/tasks` (without
//! `idempotency_key`: each fire gets `schedule:<id>:<tick ms>`); a workflow is scheduled with
//! its `workflow.<name>.run` type.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_core::schedules::{Missed, Overlap};
use cadre_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{
    ApiResult, Pairs, SubmitBody, answer, authorize, body_bytes, parse_body, query, query_num, query_one,
};
use crate::http::views::{ErrorBody, Task};

type Shared = Arc<Node>;

/// The schedule routes, each registered with its OpenAPI description, bodies up to
/// `body_limit` bytes (the task routes' limit).
pub fn routes(body_limit: usize) -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, delete))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(trigger))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

/// The body of `POST /v1/schedules`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// A label (optional).
    #[serde(default)]
    name: String,
    /// A cron expression: 5 fields, 6 (seconds first) or 7 (seconds first, year last).
    /// Exactly one of `cron` and `every_ms`.
    #[serde(default)]
    cron: String,
    /// The IANA time zone `cron` is read in (default `UTC`).
    #[serde(default)]
    time_zone: String,
    /// An interval in milliseconds (>= 1000), counted from creation.
    #[serde(default)]
    every_ms: u64,
    /// The task each tick submits: the body of `POST /v1/tasks`, without `idempotency_key`.
    task: SubmitBody,
    /// Missed ticks (no replica was running): `skip` (default) or `run_once`.
    #[serde(default)]
    missed: String,
    /// While the previous run is unfinished: `allow` (default), `skip` or `cancel_previous`.
    #[serde(default)]
    overlap: String,
    /// Create it paused.
    #[serde(default)]
    paused: bool,
    /// The tenant it fires as (default the caller's; another one only for a commander).
    #[serde(default)]
    tenant: String,
}

/// The task a schedule submits.
#[derive(Serialize, ToSchema)]
struct ScheduledTask {
    /// Its type.
    task_type: String,
    /// Its parameters.
    params: Value,
    /// Its priority.
    priority: i32,
    /// Its attempt timeout, milliseconds (0: the node's default).
    timeout_ms: i64,
}

/// A schedule.
#[derive(Serialize, ToSchema)]
pub struct Schedule {
    /// Its id.
    #[schema(format = "uuid")]
    id: String,
    /// The tenant it fires as.
    tenant: String,
    /// Its label.
    name: String,
    /// Its cron expression (empty for an interval).
    cron: String,
    /// The zone `cron` is read in (empty for an interval).
    time_zone: String,
    /// Its interval, milliseconds (0 for a cron expression).
    every_ms: u64,
    /// What each fire submits.
    task: Option<ScheduledTask>,
    /// `skip` or `run_once`.
    missed: String,
    /// `allow`, `skip` or `cancel_previous`.
    overlap: String,
    /// Whether it is paused.
    paused: bool,
    /// The next fire times, Unix milliseconds (at most 5; empty while paused).
    next_fire_at_ms: Vec<i64>,
    /// When it was created, Unix milliseconds.
    created_at_ms: i64,
    /// Who created it.
    created_by: String,
    /// The tick of the last accepted fire, Unix milliseconds (0: none yet).
    last_fire_at_ms: i64,
    /// The task of the last accepted fire.
    last_task_id: Option<String>,
    /// Why the last fire was refused (absent when it was accepted).
    last_error: Option<String>,
    /// Fires accepted.
    fires: u64,
    /// Ticks not fired because the previous run was unfinished.
    skipped: u64,
}

impl From<&v1::Schedule> for Schedule {
    fn from(s: &v1::Schedule) -> Self {
        let missed = Missed::from_wire(s.missed).unwrap_or(Missed::Skip);
        let overlap = Overlap::from_wire(s.overlap).unwrap_or(Overlap::Allow);
        let some = |t: &str| (!t.is_empty()).then(|| t.to_string());
        Schedule {
            id: s.id.clone(),
            tenant: s.tenant.clone(),
            name: s.name.clone(),
            cron: s.cron.clone(),
            time_zone: s.time_zone.clone(),
            every_ms: s.every_ms,
            task: s.task.as_ref().map(|t| ScheduledTask {
                task_type: t.task_type.clone(),
                params: serde_json::from_str(&t.params_json).unwrap_or(Value::Null),
                priority: t.priority,
                timeout_ms: t.timeout_ms,
            }),
            missed: missed.name().into(),
            overlap: overlap.name().into(),
            paused: s.paused,
            next_fire_at_ms: s.next_fire_at_ms.clone(),
            created_at_ms: s.created_at_ms,
            created_by: s.created_by.clone(),
            last_fire_at_ms: s.last_fire_at_ms,
            last_task_id: some(&s.last_task_id),
            last_error: some(&s.last_error),
            fires: s.fires,
            skipped: s.skipped,
        }
    }
}

/// One schedule.
#[derive(Serialize, ToSchema)]
struct ScheduleAnswer {
    /// The schedule.
    schedule: Schedule,
}

/// A page of schedules.
#[derive(Serialize, ToSchema)]
struct ScheduleList {
    /// The schedules, by id.
    schedules: Vec<Schedule>,
}

/// What a trigger did.
#[derive(Serialize, ToSchema)]
struct Triggered {
    /// The schedule after the fire.
    schedule: Schedule,
    /// The task it submitted.
    task: Task,
}

/// The schedule of an answer.
fn one(status: StatusCode, s: &v1::Schedule) -> ApiResult {
    answer(status, ScheduleAnswer { schedule: s.into() })
}

/// `POST /v1/schedules`.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "create_schedule",
    summary = "Create a schedule (operator role)",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = ScheduleAnswer),
        (status = 400, description = "`invalid_argument`: a bad cron expression, zone, interval, policy or task (the message names the field)", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: the tenant has `[schedules] max_per_tenant` schedules", body = ErrorBody),
    ),
)]
async fn create(
    State(node): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::ManageSchedules).await?;
    let body = body_bytes(body)?;
    let b = parse_body::<CreateBody>(&headers, &body, false)?;
    let req = v1::CreateScheduleRequest {
        name: b.name,
        cron: b.cron,
        time_zone: b.time_zone,
        every_ms: b.every_ms,
        task: Some(b.task.into_wire()?),
        missed: Missed::from_name(&b.missed)?.to_wire() as i32,
        overlap: Overlap::from_name(&b.overlap)?.to_wire() as i32,
        paused: b.paused,
        tenant: b.tenant,
    };
    let s = node.create_schedule(&p, &req).await?;
    one(StatusCode::CREATED, &s)
}

/// `GET /v1/schedules`.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "list_schedules",
    summary = "Schedules of the caller's tenant (commanders: any), by id",
    params(
        ("tenant" = Option<String>, Query, description = "Commanders: only this tenant's."),
        ("limit" = Option<u32>, Query, description = "At most this many (default and maximum 1000)."),
        ("after" = Option<String>, Query, description = "Only ids after this one (the previous page's last)."),
    ),
    responses((status = 200, description = "The schedules", body = ScheduleList)),
)]
async fn list(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::ReadSchedules).await?;
    let req = v1::ListSchedulesRequest {
        tenant: query_one(&q, "tenant").unwrap_or_default().to_string(),
        limit: query_num::<u32>(&q, "limit")?.unwrap_or(0),
        after: query_one(&q, "after").unwrap_or_default().to_string(),
    };
    let schedules = node.list_schedules(&p, &req).await?;
    let schedules = schedules.iter().map(Schedule::from).collect();
    answer(StatusCode::OK, ScheduleList { schedules })
}

/// `GET /v1/schedules/{id}`.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "get_schedule",
    summary = "One schedule with its next fire times",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleAnswer),
        (status = 404, description = "`not_found`: no such schedule, or another tenant's", body = ErrorBody),
    ),
)]
async fn get_one(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::ReadSchedules).await?;
    one(StatusCode::OK, &node.get_schedule(&p, &id).await?)
}

/// `DELETE /v1/schedules/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "delete_schedule",
    summary = "Delete a schedule (the tasks it fired are untouched)",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such schedule, or another tenant's", body = ErrorBody),
    ),
)]
async fn delete(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::ManageSchedules).await?;
    node.delete_schedule(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/schedules/{id}/pause`.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/pause",
    tag = "schedules",
    operation_id = "pause_schedule",
    summary = "Stop firing until resumed",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Paused", body = ScheduleAnswer),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
)]
async fn pause(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::ManageSchedules).await?;
    one(StatusCode::OK, &node.pause_schedule(&p, &id).await?)
}

/// `POST /v1/schedules/{id}/resume`.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/resume",
    tag = "schedules",
    operation_id = "resume_schedule",
    summary = "Fire again from the next future tick (ticks passed while paused are not fired)",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Resumed", body = ScheduleAnswer),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
)]
async fn resume(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::ManageSchedules).await?;
    one(StatusCode::OK, &node.resume_schedule(&p, &id).await?)
}

/// `POST /v1/schedules/{id}/trigger`.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/trigger",
    tag = "schedules",
    operation_id = "trigger_schedule",
    summary = "Fire now, once (also while paused; the overlap policy does not apply)",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Fired", body = Triggered),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: intake refused the fire (quota, budget)", body = ErrorBody),
    ),
)]
async fn trigger(State(node): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let p = authorize(&node, &headers, Action::ManageSchedules).await?;
    let (s, task) = node.trigger_schedule(&p, &id).await?;
    let body = Triggered {
        schedule: (&s).into(),
        task: Task::from(&task),
    };
    answer(StatusCode::OK, body)
}
