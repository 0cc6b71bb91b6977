//! Retention (`[retention]`, docs/RETENTION.md): how long finished tasks (with their events and
//! usage rows) and audit records are kept, and the sweeper that deletes them once that time
//! has passed.
//!
//! - [`RetentionConfig`]: a time to live per terminal state and for audit records (0 keeps
//!   for ever, the default), the sweep interval and the batch size, and their bounds.
//! - [`sweeper`]: the loop every tier-0 replica runs: per state, batches of `batch_size`
//!   found with [`cadre_store::RetentionStore::expired_tasks`] and deleted with
//!   [`cadre_store::RetentionStore::delete_tasks`], then the audit chain's oldest records
//!   pruned behind a signed checkpoint ([`cadre_store::AuditPruneStore::prune_audit`]).
//!
//! A task's time to live counts from when it finished (its last update: a finished task never
//! changes again). The config is read again before every sweep, so a reload applies at the
//! next one.

pub mod sweeper;

use std::time::Duration;

use cadre_proto::TaskState;
use serde::{Deserialize, Serialize};

/// The shortest time to live of a finished task, in seconds: one day. Budgets count today's
/// spend from the usage rows (again at every start, and every second where replicas share
/// the store), so a task's usage must outlive the UTC day it was spent on; a day after the
/// task finished, it has.
pub const MIN_TASK_TTL_SECS: u64 = 86_400;

/// The longest time to live that is not "keep for ever", in seconds (100 years; larger values
/// would overflow the millisecond arithmetic).
pub const MAX_TTL_SECS: u64 = 100 * 365 * 86_400;

/// The largest batch (tasks per delete, audit records per prune).
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// `[retention]`: how long finished tasks and audit records are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long a SUCCEEDED task is kept after it finished, in seconds; 0 = for ever.
    /// At least [`MIN_TASK_TTL_SECS`] otherwise.
    pub succeeded_secs: u64,
    /// The same for FAILED tasks.
    pub failed_secs: u64,
    /// The same for CANCELLED tasks.
    pub cancelled_secs: u64,
    /// The same for TIMED_OUT tasks.
    pub timed_out_secs: u64,
    /// How long an audit record is kept after it was sealed, in seconds; 0 = for ever. Pruned
    /// records are replaced by a signed checkpoint, so `cadre audit verify` still checks the
    /// rest; the newest record always stays.
    pub audit_secs: u64,
    /// Seconds between two sweeps (1 to 86400).
    pub interval_secs: u64,
    /// Tasks deleted per transaction, and audit records pruned per transaction (1 to 10000).
    /// The sweeper pauses between batches, so smaller batches leave more room to intake.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            succeeded_secs: 0,
            failed_secs: 0,
            cancelled_secs: 0,
            timed_out_secs: 0,
            audit_secs: 0,
            interval_secs: 60,
            batch_size: 500,
        }
    }
}

/// The terminal states, in the order the sweeper visits them.
pub const TERMINAL_STATES: [TaskState; 4] = [
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Cancelled,
    TaskState::TimedOut,
];

impl RetentionConfig {
    /// How long a task finished in `state` is kept; None: for ever (or not a terminal state).
    pub fn task_ttl(&self, state: TaskState) -> Option<Duration> {
        let secs = match state {
            TaskState::Succeeded => self.succeeded_secs,
            TaskState::Failed => self.failed_secs,
            TaskState::Cancelled => self.cancelled_secs,
            TaskState::TimedOut => self.timed_out_secs,
            TaskState::Queued | TaskState::Running | TaskState::Retrying => 0,
        };
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// How long an audit record is kept; None: for ever.
    pub fn audit_ttl(&self) -> Option<Duration> {
        (self.audit_secs > 0).then(|| Duration::from_secs(self.audit_secs))
    }

    /// Whether anything is ever deleted.
    pub fn enabled(&self) -> bool {
        self.audit_ttl().is_some() || TERMINAL_STATES.iter().any(|s| self.task_ttl(*s).is_some())
    }

    /// The time between sweeps.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.clamp(1, 86_400))
    }

    /// Every value out of its bounds, as `retention.<key>: ...`.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let tasks = [
            ("succeeded_secs", self.succeeded_secs),
            ("failed_secs", self.failed_secs),
            ("cancelled_secs", self.cancelled_secs),
            ("timed_out_secs", self.timed_out_secs),
        ];
        for (key, secs) in tasks {
            if secs != 0 && !(MIN_TASK_TTL_SECS..=MAX_TTL_SECS).contains(&secs) {
                errs.push(format!(
                    "retention.{key}: {secs} must be 0 (keep for ever) or {MIN_TASK_TTL_SECS} (a day: budgets \
                     read today's usage rows) to {MAX_TTL_SECS}"
                ));
            }
        }
        if self.audit_secs > MAX_TTL_SECS {
            errs.push(format!(
                "retention.audit_secs: {} must be 0 (keep for ever) to {MAX_TTL_SECS}",
                self.audit_secs
            ));
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            errs.push(format!(
                "retention.interval_secs: {} must be 1 to 86400",
                self.interval_secs
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            errs.push(format!(
                "retention.batch_size: {} must be 1 to {MAX_BATCH_SIZE}",
                self.batch_size
            ));
        }
        errs
    }
}

/// The kinds `cadre_retention_deleted_total` counts.
pub const DELETED_KINDS: [&str; 4] = ["tasks", "events", "usage", "audit"];

/// Exports `cadre_retention_deleted_total` at 0 for every kind, so the series exist before
/// the first deletion.
pub fn export_series() {
    for kind in DELETED_KINDS {
        metrics::counter!("cadre_retention_deleted_total", "kind" => kind).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_default_keeps_everything_and_is_valid() {
        let r = RetentionConfig::default();
        assert!(!r.enabled());
        assert!(r.problems().is_empty());
        assert!(TERMINAL_STATES.iter().all(|s| r.task_ttl(*s).is_none()));
        Config::default().validate().unwrap();
    }

    #[test]
    fn a_section_is_read_and_printed() {
        let c = Config::from_toml_str(
            "[retention]\nsucceeded_secs = 604800\nfailed_secs = 2592000\naudit_secs = 60\n\
             interval_secs = 30\nbatch_size = 100\n",
        )
        .unwrap();
        assert_eq!(
            c.retention.task_ttl(TaskState::Succeeded),
            Some(Duration::from_secs(604_800))
        );
        assert_eq!(c.retention.task_ttl(TaskState::Cancelled), None);
        assert_eq!(c.retention.task_ttl(TaskState::Running), None);
        assert_eq!(c.retention.audit_ttl(), Some(Duration::from_secs(60)));
        assert!(c.retention.enabled());
        let printed = c.to_toml();
        assert!(printed.contains("[retention]") && printed.contains("succeeded_secs = 604800"));
    }

    #[test]
    fn nonsense_is_refused_with_the_key_named() {
        let err = Config::from_toml_str(
            "[retention]\nsucceeded_secs = 3600\ntimed_out_secs = 99999999999\ninterval_secs = 0\n\
             batch_size = 10001\naudit_secs = 99999999999\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "retention.succeeded_secs: 3600",
            "retention.timed_out_secs",
            "retention.interval_secs",
            "retention.batch_size",
            "retention.audit_secs",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        assert!(Config::from_toml_str("[retention]\nsucceeded_days = 7\n").is_err());
    }
}
