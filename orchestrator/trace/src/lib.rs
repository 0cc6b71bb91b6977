//! W3C Trace Context across hops: one task is one trace, whatever it crosses.
//!
//! Layer: 4.
//! May import: none of our crates (tier 1 gets its span parent through
//! `cadre_supervisors::attempt_span::install`, so it does not depend on OpenTelemetry).
//!
//! A trace travels as a `traceparent` (and optional `tracestate`) header
//! (<https://www.w3.org/TR/trace-context/>): in gRPC metadata ([`inject_metadata`],
//! [`extract_metadata`]), in NATS message headers ([`inject_headers`], [`extract_headers`]) and,
//! inside one process, as a plain string in task structs ([`current_traceparent`],
//! [`context_from_traceparent`]). Incoming gRPC requests get a server span whose parent is the
//! caller's `traceparent` ([`grpc_request_span`], installed with tonic's `Server::trace_fn`).
//!
//! Everything here is a no-op costing one atomic load while no span exporter is installed
//! ([`exporting`] is false until the core's telemetry installs an exporter): no context is injected,
//! no span is created on the task path.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::codegen::http;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header that carries the trace id, the parent span id and the sampled flag.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header that carries vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Set once an OTLP exporter is installed; spans on the task path exist only then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP exporter is installed). When false, every function
/// here returns at once and the task path creates no spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Marks span export as on; called by the core's telemetry once its layer is installed.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// An INFO span when spans are exported, [`tracing::Span::none`] otherwise, so the task path
/// pays nothing for tracing on a node without a collector. Same syntax as `info_span!`.
#[macro_export]
macro_rules! task_span {
    ($($arg:tt)*) => {
        if $crate::exporting() {
            ::tracing::info_span!($($arg)*)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// The current span's OpenTelemetry context (empty when no span or no exporter).
fn current_context() -> opentelemetry::Context {
    if !exporting() {
        return opentelemetry::Context::new();
    }
    tracing::Span::current().context()
}

/// Writes `cx` into `injector` if it holds a valid span context.
fn inject(cx: &opentelemetry::Context, injector: &mut dyn Injector) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, injector);
    }
}

/// Adds the current span's `traceparent` (and `tracestate`) to outgoing gRPC metadata; does
/// nothing when there is no current span context.
pub fn inject_metadata(md: &mut MetadataMap) {
    inject(&current_context(), &mut MetadataInjector(md));
}

/// The trace context a caller sent in gRPC metadata (empty when it sent none or an invalid one).
pub fn extract_metadata(md: &MetadataMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&MetadataExtractor(md))
}

/// The current span's context as a `traceparent` string, to carry inside task structs and
/// message payloads; None without a current span context (or without an exporter).
pub fn current_traceparent() -> Option<String> {
    let mut carrier = std::collections::HashMap::new();
    inject(&current_context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The context a `traceparent` string names (empty if it is malformed), to use as a span's
/// parent with `tracing_opentelemetry::OpenTelemetrySpanExt::set_parent`.
pub fn context_from_traceparent(tp: &str) -> opentelemetry::Context {
    let carrier = std::collections::HashMap::from([(TRACEPARENT.to_string(), tp.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The trace id (32 lower-case hex digits) of the current span, for the `trace_id` field of
/// log lines; None while spans are not exported or outside any span.
pub fn current_trace_id() -> Option<opentelemetry::trace::TraceId> {
    if !exporting() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id())
}

/// The trace id a `traceparent` names (None if it is malformed).
pub fn trace_id_of(tp: &str) -> Option<opentelemetry::trace::TraceId> {
    let sc = context_from_traceparent(tp).span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id())
}

/// Makes `tp` the parent of `span` (which must not have been entered yet). Used by the
/// supervisors' attempt spans, which cannot name OpenTelemetry themselves.
pub fn set_parent_from_traceparent(span: &tracing::Span, tp: &str) {
    let _ = span.set_parent(context_from_traceparent(tp));
}

/// Adds the current span's `traceparent` (and `tracestate`) to a NATS message's headers; does
/// nothing when there is no current span context.
pub fn inject_headers(h: &mut async_nats::HeaderMap) {
    inject(&current_context(), &mut NatsInjector(h));
}

/// The trace context a NATS message carries in its headers (empty when none).
pub fn extract_headers(h: &async_nats::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&NatsExtractor(h))
}

/// Puts a carried `traceparent` (e.g. [`cadre_supervisors::QueuedTask::traceparent`]) into a
/// NATS message's headers, for a publisher that is not inside the task's span; a malformed one
/// is left out.
pub fn inject_traceparent_headers(h: &mut async_nats::HeaderMap, tp: &str) {
    inject(&context_from_traceparent(tp), &mut NatsInjector(h));
}

/// The `traceparent` a NATS message carries, normalised, ready for
/// [`cadre_supervisors::QueuedTask::traceparent`] (None when absent or malformed).
pub fn traceparent_from_headers(h: &async_nats::HeaderMap) -> Option<String> {
    let mut carrier = std::collections::HashMap::new();
    inject(&extract_headers(h), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The server span of one gRPC request, child of the caller's `traceparent` if it sent one.
/// Installed with `Server::trace_fn`; [`tracing::Span::none`] while no exporter is installed.
pub fn grpc_request_span(req: &http::Request<()>) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let path = req.uri().path();
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    let parent = TraceContextPropagator::new().extract(&HttpExtractor(req.headers()));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

struct NatsExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    /// NATS header names keep their case; W3C names are lower case, but accept any case.
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str()).or_else(|| {
            self.0
                .iter()
                .find(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(key))
                .and_then(|(_, v)| v.first())
                .map(|v| v.as_str())
        })
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_through_metadata_and_nats_headers() {
        let cx = context_from_traceparent(TP);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            trace_id_of(TP).map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );

        let mut md = MetadataMap::new();
        inject(&cx, &mut MetadataInjector(&mut md));
        assert_eq!(md.get(TRACEPARENT).unwrap().to_str().unwrap(), TP);
        let back = extract_metadata(&md);
        assert_eq!(back.span().span_context().span_id(), sc.span_id());

        let mut h = async_nats::HeaderMap::new();
        inject(&cx, &mut NatsInjector(&mut h));
        assert_eq!(h.get(TRACEPARENT).unwrap().as_str(), TP);
        let back = extract_headers(&h);
        assert_eq!(back.span().span_context().trace_id(), sc.trace_id());

        let mut carried = async_nats::HeaderMap::new();
        inject_traceparent_headers(&mut carried, TP);
        assert_eq!(traceparent_from_headers(&carried).as_deref(), Some(TP));
        inject_traceparent_headers(&mut carried, "00-bad");
        assert_eq!(
            traceparent_from_headers(&carried).as_deref(),
            Some(TP),
            "bad one ignored"
        );
        assert_eq!(traceparent_from_headers(&async_nats::HeaderMap::new()), None);

        let mut upper = async_nats::HeaderMap::new();
        upper.insert("Traceparent", TP);
        assert!(extract_headers(&upper).span().span_context().is_valid());
    }

    #[test]
    fn malformed_or_missing_context_is_empty_and_injects_nothing() {
        assert!(
            !context_from_traceparent("garbage")
                .span()
                .span_context()
                .is_valid()
        );
        assert!(
            !extract_metadata(&MetadataMap::new())
                .span()
                .span_context()
                .is_valid()
        );
        // No exporter in unit tests: nothing to carry.
        assert_eq!(current_traceparent(), None);
        assert_eq!(current_trace_id(), None);
        assert_eq!(trace_id_of("garbage"), None);
        let mut md = MetadataMap::new();
        inject_metadata(&mut md);
        assert!(md.is_empty());
    }
}
