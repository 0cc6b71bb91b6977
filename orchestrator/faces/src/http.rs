//! The HTTP side: `/health` (process up), `/ready` (store reachable) and `/metrics`
//! (Prometheus text format; protected unless `auth.metrics_public`); on tier-0 nodes also the
//! JSON API ([`api`], [`workflows_api`], [`bulk_api`], [`pauses_api`],
//! [`schedules_api`], [`stats_api`]), the OpenAI-compatible model gateway ([`openai_api`],
//! docs/GATEWAY_API.md)
//! with its OpenAPI description ([`openapi`]) and the WebSocket and SSE event streams
//! ([`events`]), see docs/HTTP_API.md.

pub mod api;
pub mod bulk_api;
pub mod events;
pub mod llm_calls_api;
pub mod mcp;
pub mod openai_api;
mod openai_request;
mod openai_stream;
pub mod openai_wire;
pub mod openapi;
pub mod pauses_api;
pub mod schedules_api;
mod socket_submit;
pub mod stats_api;
mod stream;
pub mod views;
pub mod workflows_api;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use cadre_core::auth::{Action, Principal};
use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_core::telemetry;

/// What the HTTP side needs from a process: a tier-0 [`Node`] or a supervisor node.
#[async_trait::async_trait]
pub trait HttpFace: Send + Sync + 'static {
    /// Whether the process can take work.
    async fn ready(&self) -> bool;
    /// Whether /metrics is open to everyone.
    fn metrics_public(&self) -> bool;
    /// Checks an `authorization` header value for `action`.
    async fn authorize(&self, header: Option<&str>, action: Action) -> Result<Principal, Error>;
}

#[async_trait::async_trait]
impl HttpFace for Node {
    async fn ready(&self) -> bool {
        Node::ready(self).await
    }

    fn metrics_public(&self) -> bool {
        self.config().auth.metrics_public
    }

    async fn authorize(&self, header: Option<&str>, action: Action) -> Result<Principal, Error> {
        Node::authorize(self, header, action).await
    }
}

type Face = Arc<dyn HttpFace>;

/// Builds the HTTP router: probes and metrics for every process, and with `tasks` (a tier-0
/// node) the JSON API, event streams and the web dashboard.
pub fn router(face: Face, tasks: Option<Arc<Node>>) -> Router {
    let base = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(face);
    match tasks {
        Some(node) => base
            .merge(openapi::routes(node.clone()))
            .merge(mcp::routes(node.clone()))
            .merge(events::routes(node))
            .merge(crate::dashboard::routes()),
        None => base,
    }
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" })))
}

async fn ready(State(node): State<Face>) -> impl IntoResponse {
    if node.ready().await {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not ready: store or NATS unreachable" })),
        )
    }
}

/// Prometheus text; needs a supervisor credential unless `auth.metrics_public`.
async fn metrics(State(node): State<Face>, headers: HeaderMap) -> Response {
    if !node.metrics_public() {
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Err(e) = node.authorize(bearer, Action::ReadMetrics).await {
            let status = match e {
                Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut resp = (status, e.to_string()).into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render_metrics(),
    )
        .into_response()
}
