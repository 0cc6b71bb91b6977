//! The group-commit writer: the only path by which tasks and events reach the store.
//!
//! Callers send [`WriteOp`](cadre_store::WriteOp)s over a bounded channel; one task drains up
//! to `store.batch_max` of them, commits them in one transaction, then publishes the resulting
//! events to the hub in cursor order and answers the callers that wait. Intake waits for its
//! insert to be durable (so an accepted task is never lost); supervisors only wait for room in
//! the queue.
//!
//! If a commit fails, waiting inserts are answered with the error (the client sees UNAVAILABLE,
//! never a false accept) and the remaining transitions are retried with backoff until the
//! store takes them, so no decided transition is dropped.
//!
//! Files:
//! - `handle.rs`: [`Writer`], the handle and its public API; `sink.rs`: the handle as the
//!   supervisors' `TaskSink` and the NATS bus's `Journal`; `request.rs`: a write on the queue.
//! - `run.rs`: the writer task, a loop of the steps below; `collect.rs`: the next batch from
//!   the queue; `commit.rs`: verified results signed, the batch applied with retries;
//!   `account.rs`: what each committed write changes (counters, budgets, metrics, span and log
//!   line) and the signed audit head; `publish.rs`: [`HubFeed`], events to the hub.
//! - `pending.rs`: the unfinished-task counters intake reads.

mod account;
mod collect;
mod commit;
mod handle;
mod pending;
mod publish;
mod request;
mod run;
mod sink;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use handle::Writer;
pub use publish::HubFeed;
