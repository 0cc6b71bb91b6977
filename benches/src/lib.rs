//! cadre benchmarks: shared pieces of the `loadgen` and `distbench` binaries and the criterion
//! benches.
//!
//! Layer: 10
//! May import: every crate of the workspace (benches measure all of them).
//!
//! Layout:
//! - [`echo`]: code generated from `benches/proto/echo.proto`, the raw tonic unary echo service
//!   that `loadgen` measures next to cadre as the baseline of what gRPC alone costs.
//! - [`stats`]: latency percentiles and throughput of one measured run.
//! - [`open_loop`]: requests sent on a fixed schedule, latency measured from each due time.
//! - [`node`]: a cadre node started in the benchmark's own process.
//! - [`grpc`]: the client side of `loadgen` and `distbench`: channels to a node and one
//!   `SubmitAndWait` that must end SUCCEEDED.
//!
//! The benchmarks themselves are `src/bin/loadgen.rs` (end to end, over gRPC),
//! `src/bin/distbench/` (distributed mode end to end, on JetStream and PostgreSQL, against a
//! raw JetStream loop), `src/bin/wsfanout.rs` (task events fanned out to WebSocket
//! subscribers, against a bare broadcast channel), `src/bin/gatewaybench.rs` (the OpenAI-compatible
//! gateway, against its upstream called directly) and `benches/task_trip.rs` (one task through the
//! in-process actor tree); `README.md` says what each measures and how to run it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Generated wire types, client and server of package `cadre.bench.echo`.
#[allow(missing_docs, clippy::all)]
pub mod echo {
    tonic::include_proto!("cadre.bench.echo");
}

pub mod grpc;
pub mod node;
pub mod open_loop;
pub mod serve;
pub mod stats;

/// The exit status of a benchmark whose run returned `outcome`: success for `Ok(true)`;
/// otherwise failure, after `error: <failed>` (for `Ok(false)`) or the error on stderr.
pub fn exit_code(outcome: anyhow::Result<bool>, failed: &str) -> std::process::ExitCode {
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: {failed}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
