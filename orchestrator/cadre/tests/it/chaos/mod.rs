//! The chaos suite: fault scenarios against real processes (the `cadre` binary, NATS,
//! PostgreSQL, a small filesystem), each ending with the same invariants
//! ([`invariants::check`]). A short pass of every scenario runs with the other tests;
//! `CADRE_CHAOS_ROUNDS=N` makes each scenario inject N times as many faults under
//! proportionally more load (the long pass, docs/CHAOS.md). Every scenario prints its figures
//! (`chaos <scenario>: ...`, visible with `--nocapture`).

mod disk;
pub mod invariants;
mod kill;
mod nats;
mod postgres;
mod storm;

use std::sync::Arc;
use std::time::Duration;

use crate::common::load::{LoadOutcome, SpecFn};
use crate::common::{fast_retry, spec};

/// How many rounds of faults each scenario injects: `CADRE_CHAOS_ROUNDS` (default 1, the
/// short pass).
pub fn rounds() -> usize {
    std::env::var("CADRE_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Tasks accepted between two faults.
pub const PER_ROUND: usize = 120;

/// How long a scenario waits for its tasks to settle, or for load to flow again after a fault.
pub fn patience() -> Duration {
    Duration::from_secs(60 + 30 * rounds() as u64)
}

/// The load of most scenarios: quick echo and sleep tasks, retried quickly (an attempt cut by
/// a fault is retried).
pub fn mixed() -> SpecFn {
    Arc::new(|n| {
        let s = if n % 2 == 0 {
            spec("system.debug.echo", &format!("{{\"n\": {n}}}"))
        } else {
            spec("system.debug.sleep", &format!("{{\"ms\": {}}}", 5 + n % 20))
        };
        fast_retry(s, 10)
    })
}

/// Prints a scenario's figures: tasks, faults, what the invariants saw.
pub fn report(scenario: &str, faults: &str, outcome: &LoadOutcome, checked: &invariants::Checked) {
    eprintln!(
        "chaos {scenario}: {faults}; {} tasks accepted, {} in doubt, {} submits refused {:?}; \
         stored {} by state {:?}, {} events; invariants hold",
        outcome.accepted.len(),
        outcome.in_doubt.len(),
        outcome.refused,
        outcome.codes,
        checked.stored,
        checked.states,
        checked.events,
    );
}

/// Asserts every stored task succeeded.
pub fn all_succeeded(checked: &invariants::Checked) {
    let others: Vec<_> = checked.states.iter().filter(|(s, _)| *s != "SUCCEEDED").collect();
    assert!(
        others.is_empty(),
        "tasks that did not succeed, by state: {others:?}"
    );
}
