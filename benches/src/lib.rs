//! cadre benchmarks: shared pieces of the `loadgen` and `distbench` binaries and the criterion
//! benches.
//!
//! Layout:
//! - [`echo`]: code generated from `benches/proto/echo.proto`, the raw tonic unary echo service
//!   that `loadgen` measures next to cadre as the baseline of what gRPC alone costs.
//! - [`stats`]: latency percentiles and throughput of one measured run.
//!
//! The benchmarks themselves are `src/bin/loadgen.rs` (end to end, over gRPC),
//! `src/bin/distbench.rs` (distributed mode end to end, on JetStream and PostgreSQL, against a
//! raw JetStream loop) and `benches/task_trip.rs` (one task through the in-process actor
//! tree); `README.md` says what each measures and how to run it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Generated wire types, client and server of package `cadre.bench.echo`.
#[allow(missing_docs, clippy::all)]
pub mod echo {
    tonic::include_proto!("cadre.bench.echo");
}

pub mod stats;
