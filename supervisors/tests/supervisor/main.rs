//! Behaviour of the tier-1 [`cadre_supervisors::Supervisor`] actor through its public API:
//! a supervisor is spawned with a [`support::FakeSink`], tasks with misbehaving executors are
//! enqueued, and the tests assert what the sink was told.
//!
//! - [`retries`]: retryable errors are retried with the policy's backoff (equal jitter, doubling
//!   up to the cap); exhausted attempts, fatal errors and invalid params fail; progress and
//!   usage reach the sink with their attempt.
//! - [`cancel`]: timeouts, and cancel of queued, running (cooperative and forced after the
//!   grace period), backing-off and crashing tasks.
//! - [`restarts`]: one-for-one worker restarts after a panic, restart intensity and escalation
//!   to the parent, and what happens to the tasks then (the failure policy table).
//! - [`scheduling`]: priority and tenant round-robin through the actor, scaling up and down,
//!   pool creation and refusals.
//! - [`gates`]: pauses (tenant, pool, type prefix, supervisor; kept across a supervisor
//!   restart), concurrency-key limits (per tenant, across supervisors, FIFO within a key, no
//!   slot held in backoff or after a cancel), and rate-limited attempts that are not counted
//!   and hold their type.
//! - [`protocol`]: duplicate enqueues, stale worker reports and early retry timers are ignored,
//!   status counts, and a graceful stop re-queues running tasks.
//!
//! Time is paused in every test (see [`support`]), so nothing here depends on how fast the
//! machine is.

mod support;

mod cancel;
mod gates;
mod protocol;
mod restarts;
mod retries;
mod scheduling;
