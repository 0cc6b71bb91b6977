//! cadre tier 0's durable record: where tasks, their events, usage, API keys and the signed
//! audit chain are kept.
//!
//! Layer: 4.
//! May import: cadre-supervisors, cadre-workflow, cadre-agents, cadre-proto.
//!
//! One trait, [`Store`], with two implementations: [`sqlite::SqliteStore`] for the embedded
//! default and [`postgres::PgStore`] for distributed mode, where several orchestrator replicas
//! share one database. [`open`] picks one from the store URL. Writes arrive in batches from the
//! group-commit writer (the core's writer): one transaction per batch, so durability costs one
//! fsync per batch, not per task.
//!
//! Layout:
//! - [`backend`]: the [`Store`] trait; [`open()`] picks an implementation from a URL.
//! - [`ops`]: what a batch writes and what each write did; [`filters`]: what reads select;
//!   [`keys`]: API keys as stored; [`error`]: [`StoreError`].
//! - [`sqlite`], [`postgres`]: the two implementations; `plan.rs` decides what a batch does
//!   (shared by both), `rows.rs` decodes stored rows, `query.rs` builds the read queries once
//!   for either database.
//! - [`reads`]: concurrent task reads coalesced into batches where the database prefers that.
//! - [`chain`]: the signed, hash-linked audit chain the store seals drafts into.
//! - [`audit_prune`]: removing the chain's oldest records behind a signed checkpoint.
//! - [`llm_calls`]: one record per model call, stored with its usage, listed newest first.
//! - [`debounce`]: which task holds a debounce key, and the writes that end a hold.
//! - [`pauses`]: what an operator paused (the pause set tier 0 sends to supervisors).
//! - [`retention`]: finished tasks past their time to live, and their deletion in batches.
//! - [`revocations`]: revoked JWTs, rotated signing keys and live tier-0 replicas.
//! - [`stats`]: bounded aggregates for the dashboard's charts (finished tasks per minute,
//!   latencies, usage per day).
//! - [`schedules`]: schedules and the compare-and-set claim that fires each tick once.
//! - [`workflows`]: workflow definitions, instances' engine records and signals, and the
//!   workflow engine's leadership.
//!
//! Invariant kept by every implementation: a task in a terminal state never changes again.
//! Transitions for it are answered with [`WriteOutcome::Ignored`], except a late one that
//! happened before its end (stored after it by another tier-0 replica): its event is placed in
//! the history before the terminal event, the row's state untouched (`late.rs`). That makes
//! at-least-once execution safe: a task re-run after a crash can finish at most once.

#![forbid(unsafe_code)]

pub mod audit_prune;
#[cfg(test)]
mod audit_prune_tests;
pub mod backend;
pub mod chain;
pub mod debounce;
#[cfg(test)]
mod debounce_tests;
pub mod error;
pub mod filters;
pub mod keys;
mod late;
#[cfg(test)]
mod late_tests;
pub mod llm_calls;
#[cfg(test)]
mod llm_calls_tests;
pub mod open;
pub mod ops;
pub mod pauses;
mod plan;
pub mod postgres;
mod query;
#[cfg(test)]
mod raw_fixture_tests;
pub mod reads;
pub mod retention;
#[cfg(test)]
mod retention_tests;
pub mod revocations;
mod rows;
#[cfg(test)]
mod schedule_tests;
pub mod schedules;
pub mod sqlite;
pub mod stats;
#[cfg(test)]
mod stats_tests;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod workflow_tests;
pub mod workflows;

pub use audit_prune::AuditPruneStore;
pub use backend::Store;
pub use debounce::{DebounceStore, Release};
pub use error::{StoreError, StoreResult};
pub use filters::{EventFilter, TaskFilter, UsageFilter};
pub use keys::ApiKeyRecord;
pub use llm_calls::{LlmCallFilter, LlmCallStore, StoredLlmCall};
pub use open::open;
pub use ops::{WriteOp, WriteOutcome};
pub use pauses::{PauseStore, StoredPause};
pub use retention::{Deleted, Expired, RetentionStore};
pub use revocations::{Revocation, RevocationStore, StoredSigningKey};
pub use schedules::{FireRecord, ScheduleStore, StoredSchedule};
pub use workflows::{InstanceState, Lease, NewSignal, StoredDefinition, WorkflowStore};
