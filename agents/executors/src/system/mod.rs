//! Commands on the host (`exec`) and the diagnostic executors that exercise the machinery.

pub mod debug;
pub mod exec;

pub use debug::{Delegating, Echo, Fail, Panic, Sleep};
