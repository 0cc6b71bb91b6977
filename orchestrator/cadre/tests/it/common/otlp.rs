//! A tiny OTLP/gRPC collector for tests: implements opentelemetry-proto's `TraceService` on
//! 127.0.0.1:0 and keeps every span it is sent, flattened into [`ReceivedSpan`]s.
//!
//! Point a node at it with `OTEL_EXPORTER_OTLP_ENDPOINT=<receiver.endpoint>` (see
//! [`OtlpReceiver::env`]) and wait for spans with [`OtlpReceiver::wait_for`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tonic::{Request, Response, Status};

use super::eventually;

/// One exported span, with ids as lower-case hex (as in a `traceparent`).
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP `SpanKind` (1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Span attributes, every value rendered as a string.
    pub attributes: HashMap<String, String>,
    /// Attributes of the resource that exported it (`service.name`, ...).
    pub resource: HashMap<String, String>,
    /// OTLP status code (0 unset, 1 ok, 2 error) and message.
    pub status: (i32, String),
}

impl ReceivedSpan {
    /// An attribute's value, if the span has it.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// What the receiver has been sent so far.
#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    exports: usize,
}

/// A running test collector; stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`: the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts a collector on a free port.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Received::default()));
        let svc = TraceServiceServer::new(Collector(received.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        });
        OtlpReceiver {
            endpoint,
            received,
            server,
        }
    }

    /// Environment for a node that exports here, flushing batches every 100 ms.
    pub fn env(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", Some(self.endpoint.clone())),
            ("OTEL_BSP_SCHEDULE_DELAY", Some("100".into())),
        ]
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Export calls received so far (a node that exports nothing makes none).
    pub fn exports(&self) -> usize {
        self.received.lock().unwrap().exports
    }

    /// The spans of one trace.
    #[allow(dead_code)]
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Waits until `done` holds for the spans received so far, then returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        patience: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        eventually(what, patience, || {
            let spans = self.spans();
            let ok = done(&spans);
            async move { ok.then_some(spans) }
        })
        .await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The `TraceService` implementation: flattens and stores every span.
struct Collector(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut out = Vec::new();
        for rs in req.into_inner().resource_spans {
            let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                out.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                    status: span.status.map(|s| (s.code, s.message)).unwrap_or_default(),
                });
            }
        }
        let mut received = self.0.lock().unwrap();
        received.exports += 1;
        received.spans.extend(out);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map(render).unwrap_or_default()))
        .collect()
}

fn render(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
