//! Node configuration: built-in defaults < `cadre.toml` (or `--config`) < `CADRE_*` environment
//! variables (`__` separates levels: `CADRE_SERVER__GRPC_ADDR=0.0.0.0:50051`).
//! Every setting has a default, so `cadre serve` runs with no file.
//!
//! Layout: [`model`] (the sections and their defaults), `defaults.rs` (the built-in
//! supervisors and routes), `load.rs` (the layers, reload source), `validate.rs` (every
//! cross-reference and range, all problems reported at once).

mod defaults;
mod load;
pub mod model;
#[cfg(test)]
mod tests;
mod validate;

pub use defaults::{DEFAULT_ROUTES, DIAGNOSTIC_TYPES};
pub use load::{ConfigError, ConfigSource, Overrides};
pub use model::*;
