//! Commands on the host (`exec`) and the diagnostic executors that exercise the machinery
//! (`echo`, `sleep`, `fail`, `panic`).

pub mod echo;
pub mod exec;
pub mod fail;
pub mod panic;
pub mod sleep;

pub use echo::Echo;
pub use fail::Fail;
pub use panic::Panic;
pub use sleep::Sleep;
