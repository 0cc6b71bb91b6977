//! Built-in executors.
//!
//! | name        | what it does                                             |
//! |-------------|----------------------------------------------------------|
//! | `echo`      | returns its params (diagnostics)                         |
//! | `sleep`     | sleeps `ms` with progress, honours cancel (diagnostics)  |
//! | `fail`      | fails with a message, retryable or not (diagnostics)     |
//! | `panic`     | panics, killing its worker (diagnostics)                 |
//! | `delegate`  | runs a sub-task and returns its result (diagnostics)     |
//! | `summarize` | extractive summary of `text`, offline                    |

mod debug;
mod summarize;

use std::sync::Arc;

use crate::ExecutorRegistry;

pub use debug::{Delegating, Echo, Fail, Panic, Sleep};
pub use summarize::Summarize;

/// Registers every built-in executor under its name.
pub fn register_builtin(r: &mut ExecutorRegistry) {
    r.register("echo", Arc::new(Echo));
    r.register("sleep", Arc::new(Sleep));
    r.register("fail", Arc::new(Fail));
    r.register("panic", Arc::new(Panic));
    r.register("delegate", Arc::new(Delegating));
    r.register("summarize", Arc::new(Summarize));
}
