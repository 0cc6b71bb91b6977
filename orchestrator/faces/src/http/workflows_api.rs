//! The JSON API of workflows (docs/HTTP_API.md): register, list and read definitions, and
//! signal an instance. Instances are tasks: `POST /v1/tasks` with `workflow.<name>.run`
//! starts one, `GET /v1/tasks/{id}` shows its steps.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use cadre_core::auth::Action;
use cadre_core::node::Node;
use cadre_store::StoredDefinition;
use serde_json::{Value, json};

use crate::http::api::{
    ApiResult, Pairs, authorize, body_bytes, invalid, ok, query, query_num, query_one, task_json,
};

type Shared = Arc<Node>;

/// The workflow routes.
pub fn routes(node: Shared) -> Router {
    let body_limit = (node.config().limits.max_params_bytes + 16 * 1024)
        .max(cadre_workflow::definition::MAX_DEFINITION_BYTES + 1024);
    Router::new()
        .route("/v1/workflows", post(register).get(list))
        .route("/v1/workflows/{name}", get(get_one))
        .route("/v1/tasks/{id}/signals/{name}", post(signal))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(node)
}

/// A definition as JSON: its identity and the definition itself.
pub fn definition_json(d: &StoredDefinition) -> Value {
    let definition: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
    json!({
        "name": d.name,
        "version": d.version,
        "task_type": cadre_workflow::instance_task_type(&d.name),
        "description": definition.get("description").cloned().unwrap_or(Value::Null),
        "created_at_ms": d.created_at_ms,
        "created_by": d.created_by,
        "definition": definition,
    })
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
    ok(
        status,
        json!({ "workflow": definition_json(&stored), "created": created }),
    )
}

/// `GET /v1/workflows[?name=]`: the newest version of each workflow, or every version of one.
async fn list(
    State(node): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let p = authorize(&node, &headers, Action::ReadWorkflows).await?;
    let defs = node.workflows(&p, query_one(&q, "name")).await?;
    ok(
        StatusCode::OK,
        json!({ "workflows": defs.iter().map(definition_json).collect::<Vec<_>>() }),
    )
}

/// `GET /v1/workflows/{name}[?version=]`: one version, or the newest.
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
    ok(StatusCode::OK, json!({ "workflow": definition_json(&d) }))
}

/// `POST /v1/tasks/{id}/signals/{name}`: the body is the payload (any JSON; empty: null).
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
    ok(
        StatusCode::OK,
        json!({ "seq": sent.seq, "task": task_json(&sent.task) }),
    )
}
