//! The JSON API of workflows (docs/HTTP_API.md): register, list and read definitions, and
//! signal an instance. Instances are tasks: `POST /v1/tasks` with `workflow.<name>.run`
//! starts one, `GET /v1/tasks/{id}` shows its steps.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use cadre_core::auth::Action;
use cadre_core::node::Node;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{
    ApiResult, Pairs, answer, authorize, body_bytes, invalid, query, query_num, query_one,
};
use crate::http::views::{ErrorBody, Registered, Signalled, Task, Workflow, WorkflowAnswer, WorkflowList};

type Shared = Arc<Node>;

/// The workflow routes, each registered with its OpenAPI description, bodies up to
/// `body_limit` bytes.
pub fn routes(body_limit: usize) -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(get_one))
        .routes(routes!(signal))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
}

/// The body limit of the workflow routes: room for the largest definition, and for a signal
/// payload as large as task params.
pub fn body_limit(node: &Node) -> usize {
    (node.config().limits.max_params_bytes + 16 * 1024)
        .max(cadre_workflow::definition::MAX_DEFINITION_BYTES + 1024)
}

/// A JSON body's text (the content type, when given, must be JSON).
fn json_text(headers: &HeaderMap, body: &Bytes) -> Result<String, crate::http::api::ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.starts_with("application/json")
    {
        return Err(invalid(
            "body",
            format!("content type {ct:?}: send application/json"),
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|_| invalid("body", "is not UTF-8"))
}

/// `POST /v1/workflows`: the body is the definition. 201 when stored now, 200 when this
/// very definition was registered before, 409 when the version exists with another one.
#[utoipa::path(
    post,
    path = "/v1/workflows",
    tag = "workflows",
    operation_id = "register_workflow",
    summary = "Register a workflow definition (supervisor role)",
    request_body(content = serde_json::Value, description = "The workflow definition (docs/WORKFLOWS.md)."),
    responses(
        (status = 201, description = "Stored now", body = Registered),
        (status = 200, description = "This very definition was registered before (`created: false`)", body = Registered),
        (status = 409, description = "`already_exists`: the name and version exist with another definition", body = ErrorBody),
    ),
)]
async fn register(
    State(node): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::RegisterWorkflow).await?;
    let body = body_bytes(body)?;
    let text = json_text(&headers, &body)?;
    let (stored, created) = node.register_workflow(&p, &text).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let workflow = Workflow::from(&stored);
    answer(status, Registered { workflow, created })
}

/// `GET /v1/workflows[?name=]`: the newest version of each workflow, or every version of one.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    tag = "workflows",
    operation_id = "list_workflows",
    summary = "The newest version of each workflow, or every version of one",
    params(("name" = Option<String>, Query, description = "Every version of this workflow, oldest first.")),
    responses((status = 200, description = "The definitions", body = WorkflowList)),
)]
async fn list(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::ReadWorkflows).await?;
    let defs = node.workflows(&p, query_one(&q, "name")).await?;
    let workflows = defs.iter().map(Workflow::from).collect();
    answer(StatusCode::OK, WorkflowList { workflows })
}

/// `GET /v1/workflows/{name}[?version=]`: one version, or the newest.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    operation_id = "get_workflow",
    summary = "One version of a workflow, or the newest",
    params(
        ("name" = String, Path, description = "The workflow's name."),
        ("version" = Option<u32>, Query, description = "This version (default: the newest)."),
    ),
    responses(
        (status = 200, description = "The definition", body = WorkflowAnswer),
        (status = 404, description = "`not_found`: no such workflow or version", body = ErrorBody),
    ),
)]
async fn get_one(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::ReadWorkflows).await?;
    let version = query_num::<u32>(&q, "version")?.filter(|v| *v > 0);
    let d = node.workflow(&p, &name, version).await?;
    let workflow = Workflow::from(&d);
    answer(StatusCode::OK, WorkflowAnswer { workflow })
}

/// `POST /v1/tasks/{id}/signals/{name}`: the body is the payload (any JSON; empty: null).
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/signals/{name}",
    tag = "workflows",
    operation_id = "signal_task",
    summary = "Send a signal (or an approval decision) to a workflow instance",
    params(
        ("id" = String, Path, description = "The instance's task id."),
        ("name" = String, Path, description = "The signal name a step waits for (`waiting[].signal`)."),
    ),
    request_body(content = Option<serde_json::Value>, description = "The payload, any JSON (empty: null); an approval takes `{\"decision\": \"approve\"|\"reject\", \"comment\"?}`."),
    responses(
        (status = 200, description = "Delivered", body = Signalled),
        (status = 404, description = "`not_found`: no such instance, or another tenant's", body = ErrorBody),
        (status = 409, description = "`failed_precondition`: not a workflow instance, or a finished one", body = ErrorBody),
    ),
)]
async fn signal(
    State(node): State<Shared>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = authorize(&node, &headers, Action::Signal).await?;
    let body = body_bytes(body)?;
    let text = json_text(&headers, &body)?;
    let payload = crate::workflow_service::payload_of(&text)?;
    let sent = node.signal(&p, &id, &name, payload).await?;
    let task = Task::from(&sent.task);
    answer(StatusCode::OK, Signalled { seq: sent.seq, task })
}
