//! The node-wide bound on calls in flight (`server.max_inflight_calls`), shared by the gRPC and
//! the HTTP listener: a call takes a permit when it arrives and gives it back when its handler
//! has answered (for a stream: when the stream's headers went out; streams are bounded by
//! `server.max_subscribers` and the per-connection stream caps instead). A call that finds no
//! permit is shed at once: gRPC RESOURCE_EXHAUSTED, HTTP 503, both with `Retry-After: 1`, and
//! counted in `cadre_calls_shed_total{listener}`. Probes (`/health`, `/ready`, `/metrics`,
//! `grpc.health.v1`) are never shed, so an overloaded node still says it is alive.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::middleware::Next;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Calls shed because every permit was taken, by listener.
const SHED: &str = "cadre_calls_shed_total";
/// Calls being handled now (both listeners).
const IN_FLIGHT: &str = "cadre_calls_in_flight";
/// Seconds a shed caller is told to wait.
const RETRY_AFTER_SECS: &str = "1";

/// The permits of one process, shared by both listeners.
#[derive(Debug)]
pub(crate) struct InflightGate {
    permits: Arc<Semaphore>,
}

/// A taken permit; the call is in flight until it is dropped.
struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Permit {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

impl InflightGate {
    /// A gate of `max` permits; exports its series at 0.
    pub(crate) fn new(max: usize) -> Arc<InflightGate> {
        metrics::describe_counter!(
            SHED,
            "Calls shed at once because server.max_inflight_calls were in flight, by listener."
        );
        metrics::describe_gauge!(IN_FLIGHT, "Calls being handled now over both listeners.");
        for listener in ["grpc", "http"] {
            metrics::counter!(SHED, "listener" => listener).increment(0);
        }
        metrics::gauge!(IN_FLIGHT).increment(0.0);
        Arc::new(InflightGate {
            permits: Arc::new(Semaphore::new(max)),
        })
    }

    /// A permit, or None (counted as shed on `listener`) when all are taken.
    fn enter(&self, listener: &'static str) -> Option<Permit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                metrics::gauge!(IN_FLIGHT).increment(1.0);
                Some(Permit(p))
            }
            Err(_) => {
                metrics::counter!(SHED, "listener" => listener).increment(1);
                None
            }
        }
    }
}

/// Whether a request path is a probe that is never shed.
fn is_probe(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics") || path.starts_with("/grpc.health.v1.Health/")
}

/// A [`tower_layer::Layer`] putting an [`InflightGate`] in front of the gRPC listener's
/// services: a shed call is answered RESOURCE_EXHAUSTED with `retry-after: 1`.
#[derive(Clone)]
pub(crate) struct GrpcInflightLayer(pub(crate) Arc<InflightGate>);

impl<S> tower_layer::Layer<S> for GrpcInflightLayer {
    type Service = GrpcInflight<S>;
    fn layer(&self, inner: S) -> GrpcInflight<S> {
        GrpcInflight {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// A gRPC service behind an [`InflightGate`].
#[derive(Clone)]
pub(crate) struct GrpcInflight<S> {
    inner: S,
    gate: Arc<InflightGate>,
}

/// What a shed caller is told.
const SHED_MESSAGE: &str =
    "the node is at its bound of calls in flight (server.max_inflight_calls); retry shortly";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> tower_service::Service<Request<ReqB>> for GrpcInflight<S>
where
    S: tower_service::Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if is_probe(req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let Some(permit) = self.gate.enter("grpc") else {
            let mut resp = tonic::Status::resource_exhausted(SHED_MESSAGE).into_http::<ResB>();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            return Box::pin(async move { Ok(resp) });
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(permit);
            out
        })
    }
}

/// The HTTP listener's gate, as axum middleware: a shed call is answered 503 with
/// `Retry-After: 1` and the JSON API's error shape (`unavailable`).
pub(crate) async fn http_gate(
    State(gate): State<Arc<InflightGate>>,
    req: Request<Body>,
    next: Next,
) -> Response<Body> {
    if is_probe(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(permit) = gate.enter("http") else {
        let body = serde_json::json!({ "error": { "code": "unavailable", "message": SHED_MESSAGE } });
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = resp.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return resp;
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_sheds_when_full_and_frees_on_drop() {
        let gate = InflightGate::new(2);
        let a = gate.enter("http").unwrap();
        let _b = gate.enter("grpc").unwrap();
        assert!(gate.enter("http").is_none());
        drop(a);
        assert!(gate.enter("http").is_some());
    }

    #[test]
    fn probes_are_never_shed() {
        assert!(is_probe("/health"));
        assert!(is_probe("/grpc.health.v1.Health/Check"));
        assert!(!is_probe("/v1/tasks"));
        assert!(!is_probe("/cadre.v1.TaskService/Submit"));
    }
}
