//! The JSON API of bulk operations (docs/HTTP_API.md, "Bulk operations"): `POST
//! /v1/bulk/cancel` and `POST /v1/bulk/replay`, TaskService.BulkCancel and BulkReplay over
//! HTTP. The core decides everything ([`cadre_core::bulk`]); this file translates.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use cadre_core::bulk::BulkAction;
use cadre_core::node::Node;
use cadre_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{ApiResult, answer, authorize, body_bytes, parse_body, state_wire};
use crate::http::views::{ErrorBody, TaskStateName};

type Shared = Arc<Node>;

/// Longest bulk request body: filters and a reason, nothing large.
const BODY_LIMIT: usize = 16 * 1024;

/// The bulk routes, each registered with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(bulk_cancel))
        .routes(routes!(bulk_replay))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// Which tasks to act on, and how. Filters combine with AND; at least one must be given.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    /// Only tasks in these states (names, case-insensitive). Default: every state the action
    /// applies to (cancel: QUEUED, RUNNING, RETRYING; replay: SUCCEEDED, FAILED, CANCELLED,
    /// TIMED_OUT); another state is `invalid_argument`.
    #[serde(default)]
    #[schema(value_type = Vec<TaskStateName>)]
    states: Vec<String>,
    /// Only task types starting with this.
    #[serde(default)]
    type_prefix: String,
    /// Commanders: only this tenant's tasks (default: every tenant). Others always act on their
    /// own tenant; naming another is `permission_denied`.
    #[serde(default)]
    tenant: String,
    /// Only tasks created at or after this time, Unix milliseconds.
    #[serde(default)]
    created_after_ms: i64,
    /// Only tasks created before this time, Unix milliseconds.
    #[serde(default)]
    created_before_ms: i64,
    /// Only tasks whose error contains this text (case-insensitive, no wildcards).
    #[serde(default)]
    error_contains: String,
    /// Only count and list what would be acted on.
    #[serde(default)]
    dry_run: bool,
    /// The most tasks acted on, 1-10000 (default 1000); `more` says when others match.
    #[serde(default)]
    limit: u32,
    /// Cancel: recorded as each task's error (default "cancelled by bulk request").
    #[serde(default)]
    reason: String,
}

impl BulkBody {
    /// The wire request; an unknown state name is `invalid_argument`.
    fn into_wire(self) -> Result<v1::BulkRequest, crate::http::api::ApiError> {
        let states = self
            .states
            .iter()
            .map(|s| state_wire(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v1::BulkRequest {
            query: Some(v1::TaskQuery {
                states,
                task_type_prefix: self.type_prefix,
                tenant: self.tenant,
                created_after_ms: self.created_after_ms,
                created_before_ms: self.created_before_ms,
                error_contains: self.error_contains,
            }),
            dry_run: self.dry_run,
            limit: self.limit,
            reason: self.reason,
        })
    }
}

/// A task a bulk call could not act on.
#[derive(Serialize, ToSchema)]
pub struct BulkFailure {
    /// The task.
    #[schema(format = "uuid")]
    pub task_id: String,
    /// Why, as an error code (`resource_exhausted`, `failed_precondition`...).
    pub code: String,
    /// Why, in words.
    pub message: String,
}

/// A task a replay made.
#[derive(Serialize, ToSchema)]
pub struct BulkReplayed {
    /// The finished task it copies.
    #[schema(format = "uuid")]
    pub original_id: String,
    /// The new task (its `replay_of` is `original_id`).
    #[schema(format = "uuid")]
    pub task_id: String,
}

/// What a bulk call did (or, on a dry run, would do).
#[derive(Serialize, ToSchema)]
pub struct BulkAnswer {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Tasks matched and acted on (dry run: that would be): at most `limit`.
    pub matched: u32,
    /// More tasks than `limit` match; they were left alone (call again).
    pub more: bool,
    /// Tasks cancelled (cancel asked) or replayed; 0 on a dry run.
    pub acted: u32,
    /// Tasks that could not be acted on (`matched = acted + failed` on a real call).
    pub failed: u32,
    /// The first 100 failures.
    pub failures: Vec<BulkFailure>,
    /// Replay: the first 1000 new tasks.
    pub replays: Vec<BulkReplayed>,
    /// The first 100 matched tasks' ids, newest first.
    pub task_ids: Vec<String>,
}

impl From<v1::BulkResponse> for BulkAnswer {
    fn from(r: v1::BulkResponse) -> Self {
        BulkAnswer {
            dry_run: r.dry_run,
            matched: r.matched,
            more: r.more,
            acted: r.acted,
            failed: r.failed,
            failures: r
                .failures
                .into_iter()
                .map(|f| BulkFailure {
                    task_id: f.task_id,
                    code: f.code.to_ascii_lowercase(),
                    message: f.message,
                })
                .collect(),
            replays: r
                .replays
                .into_iter()
                .map(|r| BulkReplayed {
                    original_id: r.original_id,
                    task_id: r.task_id,
                })
                .collect(),
            task_ids: r.task_ids,
        }
    }
}

/// Reads the body and runs `action` as the caller.
async fn run(
    node: &Node,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    action: BulkAction,
) -> ApiResult {
    let p = authorize(node, headers, action.action()).await?;
    let req = parse_body::<BulkBody>(headers, &body_bytes(body)?, false)?.into_wire()?;
    let out = node.bulk(&p, action, &req).await?;
    answer(StatusCode::OK, BulkAnswer::from(out))
}

/// `POST /v1/bulk/cancel`.
#[utoipa::path(
    post,
    path = "/v1/bulk/cancel",
    tag = "tasks",
    operation_id = "bulk_cancel",
    summary = "Cancel every unfinished task a filter matches (operator role)",
    description = "Each matched task is cancelled as `POST /v1/tasks/{id}/cancel` does, without \
        waiting for it to stop. At most `limit` per call; `dry_run` only counts. Audited.",
    request_body = BulkBody,
    responses(
        (status = 200, description = "What was done (or would be, on a dry run)", body = BulkAnswer),
        (status = 403, description = "`permission_denied`: below operator, or another tenant named by a non-commander", body = ErrorBody),
    ),
)]
async fn bulk_cancel(
    State(node): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    run(&node, &headers, body, BulkAction::Cancel).await
}

/// `POST /v1/bulk/replay`.
#[utoipa::path(
    post,
    path = "/v1/bulk/replay",
    tag = "tasks",
    operation_id = "bulk_replay",
    summary = "Submit a copy of every finished task a filter matches (operator role)",
    description = "Each copy has the original's spec (no idempotency key, debounce or parent), \
        the original's tenant and `replay_of` set, and goes through the usual checks (quotas, \
        budgets, routes); a refused copy is listed in `failures`. At most `limit` per call; \
        `dry_run` only counts. Audited.",
    request_body = BulkBody,
    responses(
        (status = 200, description = "What was done (or would be, on a dry run)", body = BulkAnswer),
        (status = 403, description = "`permission_denied`: below operator, or another tenant named by a non-commander", body = ErrorBody),
    ),
)]
async fn bulk_replay(
    State(node): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    run(&node, &headers, body, BulkAction::Replay).await
}
