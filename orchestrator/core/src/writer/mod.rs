//! The group-commit writer: the only path by which tasks and events reach the store.
//!
//! Callers send [`WriteOp`]s over a bounded channel; one task drains up to `store.batch_max`
//! of them, commits them in one transaction, then publishes the resulting events to the hub
//! in cursor order and answers the callers that wait. Intake waits for its insert to be durable
//! (so an accepted task is never lost); supervisors only wait for room in the queue.
//!
//! If a commit fails, waiting inserts are answered with the error (the client sees UNAVAILABLE,
//! never a false accept) and the remaining transitions are retried with backoff until the
//! store takes them, so no decided transition is dropped.

mod handle;
mod pending;
mod publish;
mod request;
mod run;
mod sink;
#[cfg(test)]
mod tests;

pub use handle::Writer;
pub use publish::HubFeed;
