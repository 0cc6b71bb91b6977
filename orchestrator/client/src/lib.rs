//! The Rust client of a cadre node: what a program needs to hand tasks to cadre and follow
//! them, over the node's gRPC API.
//!
//! Layer: 1.
//! May import: cadre-proto.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cadre_client::Error> {
//! use cadre_client::{Client, TaskRequest};
//!
//! let client = Client::builder("http://127.0.0.1:50051")
//!     .token(std::env::var("CADRE_TOKEN").ok())
//!     .connect()
//!     .await?;
//! let task = client
//!     .submit_and_wait(TaskRequest::new("system.debug.echo", &serde_json::json!({"text": "hi"}))?)
//!     .await?;
//! println!("{} {:?}", task.id, task.result_json);
//! # Ok(()) }
//! ```
//!
//! Layout:
//! - [`connect`]: [`Client`], [`ClientBuilder`] (endpoint, credential, TLS and mTLS, timeouts,
//!   retries) and the [`Bearer`] interceptor every call goes through.
//! - [`tasks`]: submit (retried on UNAVAILABLE with one idempotency key), submit-and-wait, get,
//!   list (one page or every page), cancel, task types; [`TaskRequest`] builds a spec.
//! - [`watch`]: [`Watch`], an event stream that resumes from its last cursor after a
//!   disconnect and never yields an event twice.
//! - [`workflows`]: register, list and read workflow definitions; send signals and approvals.
//! - [`bulk`]: cancel or replay every task a query matches ([`BulkRequest`]).
//! - [`pauses`]: pause and resume a supervisor, pool, task-type prefix or tenant
//!   ([`PauseScope`]).
//! - [`schedules`]: create, list, show, pause, resume, trigger and delete schedules.
//! - [`admin`]: status, scale, config reload, usage, tokens and API keys.
//! - [`llm_calls`]: model call records, newest first.
//! - [`error`]: [`Error`], one variant per way a call can fail.
//! - [`retry`]: [`Retry`], how UNAVAILABLE is retried.
//!
//! The wire types are [`cadre_proto::v1`], re-exported as [`v1`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod bulk;
pub mod connect;
pub mod error;
pub mod llm_calls;
pub mod pauses;
pub mod retry;
pub mod schedules;
pub mod tasks;
pub mod watch;
pub mod workflows;

pub use bulk::BulkRequest;
pub use cadre_proto::v1;
pub use connect::{Bearer, Client, ClientBuilder, Tls};
pub use error::{Error, Result};
pub use pauses::PauseScope;
pub use retry::Retry;
pub use tasks::TaskRequest;
pub use watch::Watch;

/// The file in a node's data dir that holds the credential `cadre serve` made for local use
/// (commander role, tenant `default`); [`Bearer::from_data_dir`] reads it.
pub const CREDENTIALS_FILE: &str = "credentials";
