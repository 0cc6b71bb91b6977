//! cadre's faces: each translates one protocol into calls of the core and back; none decides
//! or audits on its own.
//!
//! Layer: 7.
//! May import: cadre-core, cadre-bus, cadre-store, cadre-trace, cadre-supervisors,
//! cadre-workflow, cadre-executors, cadre-agents, cadre-proto.
//!
//! Layout:
//! - [`grpc`]: TaskService, AdminService and SupervisorPeer of a tier-0 node.
//! - [`peer_service`]: SupervisorPeer of a supervisor-only node.
//! - [`workers`]: WorkerService, where remote workers attach.
//! - [`workflow_service`]: WorkflowService (definitions and signals).
//! - [`schedule_service`]: ScheduleService (cron and interval schedules).
//! - [`http`]: the HTTP listener: probes and metrics, the JSON API ([`http::api`]), event
//!   sockets ([`http::events`]), MCP ([`http::mcp`]) and the web [`dashboard`].
#![forbid(unsafe_code)]

pub mod dashboard;
pub mod grpc;
pub mod http;
pub mod peer_service;
pub mod schedule_service;
pub mod workers;
pub mod workflow_service;
