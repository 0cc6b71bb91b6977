//! Schedules: cron expressions (with seconds, in an IANA time zone) and fixed intervals that
//! submit a task, or start a workflow (an instance is a task of type `workflow.<name>.run`,
//! so a schedule's target is always a task spec). See docs/SCHEDULES.md.
//!
//! - [`timing`]: when the ticks fall (the `croner` crate, `chrono-tz`).
//! - [`ops`]: create, get, list, pause, resume, trigger and delete, with their permissions
//!   (operators change their own tenant's schedules, observers read them, commanders any
//!   tenant's) and audit records (`schedule.create`, `schedule.pause`, ...).
//! - [`scheduler`]: the loop every tier-0 replica runs. A replica claims a tick in the store
//!   with a compare-and-set (`cadre_store::ScheduleStore::claim_tick`), so each tick fires
//!   once; each fire goes through intake as the schedule's tenant with the idempotency key
//!   `schedule:<id>:<tick ms>`, a second line of defence. It applies the missed-tick policy
//!   (`skip`, `run_once`) and the overlap policy (`allow`, `skip`, `cancel_previous`).

pub mod ops;
pub mod scheduler;
pub mod timing;

use cadre_proto::SpecError;
use cadre_proto::v1;
use serde::{Deserialize, Serialize};

/// How many fire times Get and List show.
pub const SHOWN_FIRE_TIMES: usize = 5;

/// `[schedules]`: bounds and timing of schedules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The most schedules one tenant may have.
    pub max_per_tenant: u64,
    /// A tick more than this late (milliseconds) counts as missed (the node was down, or no
    /// replica could fire it), and the missed-tick policy applies; a tick less late fires as
    /// usual. At least 100.
    pub missed_grace_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            max_per_tenant: 1000,
            missed_grace_ms: 5000,
        }
    }
}

/// What happens to missed ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// Fire none of them; go on from the next future tick.
    Skip,
    /// Fire the most recent one once, then go on.
    RunOnce,
}

/// What a tick does while the previous fire's task is unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Fire anyway.
    Allow,
    /// Do not fire (counted in `skipped`).
    Skip,
    /// Cancel the previous run, then fire.
    CancelPrevious,
}

impl Missed {
    /// The name stored and shown (`skip`, `run_once`).
    pub fn name(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run_once",
        }
    }

    /// The policy a stored name or a JSON/CLI word names (`run-once` too).
    pub fn from_name(s: &str) -> Result<Missed, SpecError> {
        match s {
            "" | "skip" => Ok(Missed::Skip),
            "run_once" | "run-once" => Ok(Missed::RunOnce),
            other => Err(SpecError::invalid(
                "missed",
                format!("{other:?} is not skip or run_once"),
            )),
        }
    }

    /// The policy of a wire value.
    pub fn from_wire(v: i32) -> Result<Missed, SpecError> {
        match v1::MissedTickPolicy::try_from(v) {
            Ok(v1::MissedTickPolicy::Unspecified | v1::MissedTickPolicy::Skip) => Ok(Missed::Skip),
            Ok(v1::MissedTickPolicy::RunOnce) => Ok(Missed::RunOnce),
            Err(_) => Err(SpecError::invalid(
                "missed",
                format!("{v} is not a missed-tick policy"),
            )),
        }
    }

    /// Its wire value.
    pub fn to_wire(self) -> v1::MissedTickPolicy {
        match self {
            Missed::Skip => v1::MissedTickPolicy::Skip,
            Missed::RunOnce => v1::MissedTickPolicy::RunOnce,
        }
    }
}

impl Overlap {
    /// The name stored and shown (`allow`, `skip`, `cancel_previous`).
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::CancelPrevious => "cancel_previous",
        }
    }

    /// The policy a stored name or a JSON/CLI word names (`cancel`, `cancel-previous` too).
    pub fn from_name(s: &str) -> Result<Overlap, SpecError> {
        match s {
            "" | "allow" => Ok(Overlap::Allow),
            "skip" => Ok(Overlap::Skip),
            "cancel_previous" | "cancel-previous" | "cancel" => Ok(Overlap::CancelPrevious),
            other => Err(SpecError::invalid(
                "overlap",
                format!("{other:?} is not allow, skip or cancel_previous"),
            )),
        }
    }

    /// The policy of a wire value.
    pub fn from_wire(v: i32) -> Result<Overlap, SpecError> {
        match v1::OverlapPolicy::try_from(v) {
            Ok(v1::OverlapPolicy::Unspecified | v1::OverlapPolicy::Allow) => Ok(Overlap::Allow),
            Ok(v1::OverlapPolicy::Skip) => Ok(Overlap::Skip),
            Ok(v1::OverlapPolicy::CancelPrevious) => Ok(Overlap::CancelPrevious),
            Err(_) => Err(SpecError::invalid(
                "overlap",
                format!("{v} is not an overlap policy"),
            )),
        }
    }

    /// Its wire value.
    pub fn to_wire(self) -> v1::OverlapPolicy {
        match self {
            Overlap::Allow => v1::OverlapPolicy::Allow,
            Overlap::Skip => v1::OverlapPolicy::Skip,
            Overlap::CancelPrevious => v1::OverlapPolicy::CancelPrevious,
        }
    }
}

/// The idempotency key of the fire of `tick` (Unix ms).
pub fn tick_key(id: &str, tick: i64) -> String {
    format!("schedule:{id}:{tick}")
}

/// The idempotency key of a manual trigger at `at` (Unix ms).
pub fn manual_key(id: &str, at: i64) -> String {
    format!("schedule:{id}:manual:{at}")
}

/// The subject fires are submitted (and audited) as.
pub fn fire_subject(id: &str) -> String {
    format!("schedule:{id}")
}
