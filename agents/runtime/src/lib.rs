//! cadre tier 2 runtime: the worker actor and the seam every kind of work plugs into. It holds
//! no executor itself; the built-in ones live in `cadre-executors`.
//!
//! Layer: 1.
//! May import: cadre-proto.
//!
//! Layout:
//! - [`executor`]: the [`Executor`] trait every kind of work implements (async, cancellable,
//!   reports progress), its context and errors, [`Usage`], [`Delegate`] and
//!   [`decode_params`](executor::decode_params).
//! - [`registry`]: the [`ExecutorRegistry`] that maps the executor names used in routes to
//!   implementations (filled by `cadre_executors::builtin`/`configured` and the node).
//! - [`worker`]: the [`Worker`] actor. One worker runs one task at a time, enforcing the task's
//!   timeout and the cancel grace period, and reports the [`Outcome`] to its supervisor.
//!   A panicking executor takes its worker down with it; the supervisor sees the failure.
//! - [`schema`]: JSON Schema (draft 2020-12, through the `jsonschema` crate) that checks
//!   params (at intake) and results against the schemas executors publish.
#![forbid(unsafe_code)]

pub mod executor;
pub mod registry;
pub mod schema;
pub mod worker;

pub use executor::{
    Delegate, ExecContext, ExecError, Executor, NoReport, Report, SharedDelegate, SharedReport, Usage,
};
pub use registry::ExecutorRegistry;
pub use worker::{Assignment, DoneFn, Outcome, Worker, WorkerMsg};
