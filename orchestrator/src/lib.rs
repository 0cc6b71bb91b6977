//! cadre tier 0 and the faces.
//!
//! Layout:
//! - [`config`]: figment configuration (defaults < file < `CADRE_*` env) and its validation.
//! - [`store`]: the [`store::Store`] trait and its SQLite implementation.
//! - [`system_tasks`]: the `system` supervisor tasks that need tier 0 (node health, metrics
//!   snapshot, audit verification, config validation).
//! - [`writer`]: group commit: the single path to the store; also the supervisors' task sink.
//! - [`hub`]: live event fan-out and resumable watch streams.
//! - [`orchestrator`]: the tier-0 actor that spawns, feeds and restarts the supervisors.
//! - [`budget`]: model prices, daily token and cost caps, model fallback.
//! - [`quota`]: per-tenant rate limits and unfinished-task caps.
//! - [`node`]: the operations every face calls (submit, get, cancel, list, watch, status, ...).
//! - [`grpc`], [`http`]: the network faces (gRPC; HTTP JSON API, event sockets, MCP);
//!   [`dashboard`]: the web page `http` serves at `/`. [`mcp_stdio`]: `cadre mcp`, MCP over
//!   stdio relayed to a node. [`workers`]: WorkerService, where remote workers connect.
//!   [`server`]: start-up and shutdown.
//! - [`audit`]: the signed, hash-linked audit chain and its verification.
//! - [`auth`]: credentials (JWT, API keys), roles and the permission table.
//! - [`telemetry`]: logs, span export (OTLP) and metrics. [`trace`]: W3C trace context across
//!   hops (gRPC metadata, NATS headers, task structs). [`cli`]: the `cadre` command line.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod budget;
pub mod bus;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod mcp_stdio;
pub mod node;
pub mod quota;
pub mod recovery;
pub mod server;
pub mod store;
pub mod system_tasks;
pub mod telemetry;
pub mod trace;
pub mod workers;
pub mod writer;
