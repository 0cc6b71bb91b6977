//! The arguments of `cadre schedule ...` (their own module, so that `args` does not depend on
//! the commands that run them).

use clap::{Args, Subcommand};

/// `cadre schedule ...`.
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Create a schedule: `--cron EXPR [--tz ZONE]` or `--every DURATION`, and the task
    /// (`--type`, `--params`).
    Create(Box<CreateArgs>),
    /// The schedules of your tenant (commanders: every tenant, or `--tenant`).
    List {
        /// Commanders: only this tenant's.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One schedule with its next fire times.
    Show {
        /// The schedule's id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop firing until resumed.
    Pause {
        /// The schedule's id.
        id: String,
    },
    /// Fire again from the next future tick.
    Resume {
        /// The schedule's id.
        id: String,
    },
    /// Fire now, once; prints the task id.
    Trigger {
        /// The schedule's id.
        id: String,
    },
    /// Delete a schedule (the tasks it fired stay).
    Delete {
        /// The schedule's id.
        id: String,
    },
}

/// `cadre schedule create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A cron expression: 5 fields, 6 (seconds first, e.g. "0 */5 * * * *") or 7 (year last).
    #[arg(long, conflicts_with = "every", required_unless_present = "every")]
    pub cron: Option<String>,
    /// The IANA time zone of `--cron` (default UTC), e.g. Europe/Paris.
    #[arg(long, requires = "cron")]
    pub tz: Option<String>,
    /// A fixed interval: 30s, 5m, 2h, 1d (at least 1s).
    #[arg(long)]
    pub every: Option<String>,
    /// The task type each tick submits (`workflow.NAME.run` starts a workflow).
    #[arg(long = "type")]
    pub task_type: String,
    /// Its params as JSON, or @FILE, or @- for stdin.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// A label.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Missed ticks (no node was running): skip or run-once.
    #[arg(long, default_value = "skip")]
    pub missed: String,
    /// While the previous run is unfinished: allow, skip or cancel.
    #[arg(long, default_value = "allow")]
    pub overlap: String,
    /// Task priority, 0 to 9.
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Attempt timeout in milliseconds (0: the node's default).
    #[arg(long, default_value_t = 0)]
    pub timeout_ms: i64,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Fire as this tenant (commanders only).
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
