//! The HTTP side: `/health` (process up), `/ready` (store reachable) and `/metrics`
//! (Prometheus text format; protected unless `auth.metrics_public`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::Action;
use crate::error::Error;
use crate::node::Node;
use crate::telemetry;

/// Builds the HTTP router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(node)
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" })))
}

async fn ready(State(node): State<Arc<Node>>) -> impl IntoResponse {
    if node.ready().await {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "store unreachable" })),
        )
    }
}

/// Prometheus text; needs a supervisor credential unless `auth.metrics_public`.
async fn metrics(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if !node.config().auth.metrics_public {
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
