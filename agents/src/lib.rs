//! cadre tier 2: the worker actors and the executors they run.
//!
//! Layout:
//! - [`executor`]: the [`Executor`] trait every kind of work implements (async, cancellable,
//!   reports progress), its context and errors, and the [`ExecutorRegistry`] that maps the
//!   executor names used in routes to implementations.
//! - [`worker`]: the [`Worker`] actor. One worker runs one task at a time, enforcing the task's
//!   timeout and the cancel grace period, and reports the [`Outcome`] to its supervisor.
//!   A panicking executor takes its worker down with it; the supervisor sees the failure.
//! - [`executors`]: the built-in executors (diagnostics, offline text and image work).
//! - [`schema`]: the small JSON Schema validator that checks params (at intake) and results
//!   against the schemas executors publish.
#![forbid(unsafe_code)]

pub mod executor;
pub mod executors;
pub mod schema;
pub mod worker;

pub use executor::{
    Delegate, ExecContext, ExecError, Executor, ExecutorRegistry, NoReport, Report, SharedDelegate,
    SharedReport, Usage,
};
pub use executors::ExecutorsConfig;
pub use worker::{Assignment, DoneFn, Outcome, Worker, WorkerMsg};
