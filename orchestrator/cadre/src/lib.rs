//! The `cadre` binary as a library: serving a node (one start function per role) and the
//! command line (one module per command group). `main.rs` only calls [`cli::main_entry`];
//! the benches and the black-box tests start nodes through [`server::start`].
//!
//! Layer: 8 (the top).
//! May import: every crate of the workspace below it.
//!
//! Layout:
//! - [`server`]: starting and stopping a node of any role.
//! - [`cli`]: the `cadre` command line; [`mcp_stdio`]: `cadre mcp`, MCP over stdio relayed to
//!   a node.
#![forbid(unsafe_code)]

pub mod cli;
pub mod mcp_stdio;
pub mod server;
