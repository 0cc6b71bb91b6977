//! cadre tier 0's core: everything a face calls, and the one place that decides (permissions,
//! validation, quotas, budgets) and audits.
//!
//! Layer: 6.
//! May import: cadre-bus, cadre-store, cadre-trace, cadre-supervisors, cadre-workflow,
//! cadre-executors, cadre-agents, cadre-proto.
//!
//! Layout:
//! - [`node`]: the [`node::Node`], the one value every face calls; its operations are grouped
//!   by meaning: [`intake`] (the submit pipeline), [`tasks`] (get, list, events, watch,
//!   cancel, task types), [`admin`] (status, scale, reload, usage, remote workers),
//!   [`credentials`] (tokens and API keys), [`access`] (permissions and audit, checked and
//!   recorded by every operation itself), [`bulk`] (cancel or replay every task a query
//!   matches). [`recovery`]: the store's unfinished tasks made
//!   runnable again; [`delegate`]: sub-tasks of executors in this process; [`debounce`]:
//!   debounced tasks held until their window ends, then dispatched.
//! - [`writer`]: group commit: the single path to the store; also the supervisors' task sink
//!   and the NATS bus's journal. [`hub`]: live event fan-out and resumable watch streams.
//! - [`auth`]: credentials (JWT, API keys), principals and the permission table.
//!   [`audit`]: the node's sealing key and drafts of acts.
//! - [`quota`]: per-tenant rate limits and unfinished-task caps. [`budget`]: model prices,
//!   daily token and cost caps, model fallback.
//! - [`config`]: figment configuration (defaults < file < `CADRE_*` env) and its validation.
//! - [`system_tasks`]: the `system` supervisor tasks that need tier 0 (node health, metrics
//!   snapshot, audit verification, config validation).
//! - [`pauses`]: pause and resume of supervisors, pools, type prefixes and tenants, and the
//!   loop that keeps every supervisor's pause set in step with the store.
//! - [`schedules`]: cron and interval schedules that submit tasks, and the scheduler loop
//!   every tier-0 replica runs (each tick claimed in the store, so it fires once).
//! - [`retention`]: how long finished tasks and audit records are kept, and the sweeper
//!   every tier-0 replica runs to delete them in small batches.
//! - [`workflows`]: workflow definitions, instances at intake, the engine that drives them
//!   (a supervised actor; one replica leads), signals and approvals.
//! - [`stats`]: what the dashboard's charts show (finished tasks and latencies per minute,
//!   sampled queue depths, usage per day); [`depths`]: the queue depths sampled in memory.
//! - [`gateway`]: the model gateway's submit-and-follow of a chat task (the OpenAI-compatible
//!   endpoint).
//! - [`error`]: the core's error type and its mapping to gRPC status codes.
//! - [`telemetry`]: logs, span export (OTLP) and metrics.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod budget;
pub mod bulk;
pub mod config;
pub mod credentials;
pub mod debounce;
pub mod delegate;
pub mod depths;
pub mod error;
pub mod gateway;
pub mod hub;
pub mod intake;
pub mod llm_calls;
pub mod node;
pub mod paused;
pub mod pauses;
pub mod quota;
pub mod recovery;
pub mod replicas;
pub mod retention;
pub mod schedules;
pub mod stats;
pub mod system_tasks;
pub mod tasks;
pub mod telemetry;
pub mod workflows;
pub mod writer;
