//! The JSON API of pause and resume (docs/HTTP_API.md, "Pause and resume"): `GET /v1/pauses`,
//! `POST /v1/pauses`, `DELETE /v1/pauses?scope=...`, AdminService.ListPauses, Pause and
//! Resume over HTTP. The core decides everything ([`cadre_core::pauses`]); this file
//! translates.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{
    ApiResult, Pairs, answer, authorize, body_bytes, invalid, parse_body, query, query_one,
};
use crate::http::views::{ErrorBody, PauseView};

type Shared = Arc<Node>;

/// Longest pause request body: a few names and a reason.
const BODY_LIMIT: usize = 8 * 1024;

/// The pause routes, each registered with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list, pause, resume))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// What to pause: a scope and the names it needs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    /// `supervisor`, `pool`, `task_type_prefix` or `tenant`.
    scope: String,
    /// Scopes `supervisor` and `pool`: a configured supervisor (else `not_found`).
    #[serde(default)]
    supervisor: String,
    /// Scope `pool`: one of its worker kinds (else `not_found`).
    #[serde(default)]
    worker_kind: String,
    /// Scope `task_type_prefix`: every task whose type starts with it (1 to 256 bytes).
    #[serde(default)]
    prefix: String,
    /// Scope `tenant`: the tenant (default: the caller's own; only commanders may name
    /// another, else `permission_denied`).
    #[serde(default)]
    tenant: String,
    /// Why (at most 1,024 bytes; kept with the pause and in the audit record).
    #[serde(default)]
    reason: String,
}

impl PauseBody {
    fn into_wire(self) -> v1::Pause {
        v1::Pause {
            scope: self.scope,
            supervisor: self.supervisor,
            worker_kind: self.worker_kind,
            prefix: self.prefix,
            tenant: self.tenant,
            reason: self.reason,
            ..Default::default()
        }
    }
}

/// Every pause the caller may see.
#[derive(Serialize, ToSchema)]
pub struct PauseList {
    /// Oldest first.
    pub pauses: Vec<PauseView>,
}

/// What a pause did.
#[derive(Serialize, ToSchema)]
pub struct Paused {
    /// The pause in force (the earlier one when it was paused already).
    pub pause: PauseView,
    /// False when it was paused already (nothing changed).
    pub created: bool,
}

/// What a resume did.
#[derive(Serialize, ToSchema)]
pub struct Resumed {
    /// False when it was not paused (nothing changed).
    pub resumed: bool,
}

/// `GET /v1/pauses`.
#[utoipa::path(
    get,
    path = "/v1/pauses",
    tag = "admin",
    operation_id = "list_pauses",
    summary = "What is paused (supervisor role)",
    description = "Non-commanders see no other tenant's tenant pause.",
    responses((status = 200, description = "The pauses in force", body = PauseList)),
)]
async fn list(State(node): State<Shared>, headers: HeaderMap) -> ApiResult {
    let p = authorize(&node, &headers, Action::Pause).await?;
    let pauses = node.list_pauses(&p).await?.iter().map(PauseView::from).collect();
    answer(StatusCode::OK, PauseList { pauses })
}

/// `POST /v1/pauses`.
#[utoipa::path(
    post,
    path = "/v1/pauses",
    tag = "admin",
    operation_id = "pause",
    summary = "Pause a supervisor, a pool, a task-type prefix or a tenant (supervisor role)",
    description = "Queued tasks it holds stay QUEUED and new ones are accepted; running tasks \
        finish. Survives restarts; applies on every supervisor within a few seconds. \
        Idempotent; audited as `admin.pause`.",
    request_body = PauseBody,
    responses(
        (status = 201, description = "Paused now", body = Paused),
        (status = 200, description = "It was paused already (`created: false`)", body = Paused),
        (status = 404, description = "`not_found`: no such supervisor or pool", body = ErrorBody),
        (status = 429, description = "`resource_exhausted`: too many pauses in force", body = ErrorBody),
    ),
)]
async fn pause(
    State(node): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::Pause).await?;
    let wire = parse_body::<PauseBody>(&headers, &body_bytes(body)?, false)?.into_wire();
    let (pause, created) = node.pause(&p, Some(&wire)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    answer(
        status,
        Paused {
            pause: PauseView::from(&pause),
            created,
        },
    )
}

/// `DELETE /v1/pauses?scope=...`.
#[utoipa::path(
    delete,
    path = "/v1/pauses",
    tag = "admin",
    operation_id = "resume",
    summary = "Resume what a pause holds (supervisor role)",
    description = "Names the pause as its query: `scope` and the fields that scope needs. The \
        held tasks then run in the usual order. Idempotent; audited as `admin.resume`.",
    params(
        ("scope" = String, Query, description = "`supervisor`, `pool`, `task_type_prefix` or `tenant`."),
        ("supervisor" = Option<String>, Query, description = "Scopes `supervisor` and `pool`."),
        ("worker_kind" = Option<String>, Query, description = "Scope `pool`."),
        ("prefix" = Option<String>, Query, description = "Scope `task_type_prefix`."),
        ("tenant" = Option<String>, Query, description = "Scope `tenant` (default: the caller's own)."),
    ),
    responses(
        (status = 200, description = "Whether a pause ended", body = Resumed),
        (status = 404, description = "`not_found`: no such supervisor or pool", body = ErrorBody),
    ),
)]
async fn resume(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::Resume).await?;
    const KNOWN: [&str; 5] = ["scope", "supervisor", "worker_kind", "prefix", "tenant"];
    if let Some((k, _)) = q.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(k, format!("unknown parameter; use {}", KNOWN.join(", "))));
    }
    let get = |k: &str| query_one(&q, k).unwrap_or_default().to_string();
    let wire = v1::Pause {
        scope: get("scope"),
        supervisor: get("supervisor"),
        worker_kind: get("worker_kind"),
        prefix: get("prefix"),
        tenant: get("tenant"),
        ..Default::default()
    };
    let resumed = node.resume(&p, Some(&wire)).await?;
    answer(StatusCode::OK, Resumed { resumed })
}
