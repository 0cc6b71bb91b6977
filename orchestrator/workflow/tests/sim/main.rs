//! The workflow crate driven end to end in memory: definitions reconciled against a simulated
//! store and engine (`world.rs`), covering DAGs, references, conditions, fan-out and fan-in,
//! failure policies and compensation, waits, approvals, timers, the agent loop, crashes at
//! every point, and registration checks.

mod agent;
mod crashes;
mod dags;
mod validation;
mod waits;
mod world;
