//! What the reconciler reads ([`Observed`]: an instance's sub-tasks, engine records and signals,
//! as stored) and what it decides ([`Plan`]: actions for the engine, a report of every step, the
//! instance's outcome).

use std::collections::BTreeMap;

use cadre_proto::TaskState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A sub-task of the instance, by its idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// Its task id.
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Its result, once SUCCEEDED.
    pub result: Option<Value>,
    /// Why it ended otherwise.
    pub error: Option<String>,
    /// When it last changed, Unix milliseconds (the order compensations undo in).
    pub updated_at_ms: i64,
}

/// An engine record: a wait, a timer, or a step the engine settled itself (a refused
/// submission), by record id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When it was opened, Unix milliseconds.
    pub opened_at_ms: i64,
    /// When it times out or fires, if ever.
    pub due_at_ms: Option<i64>,
    /// Its end, once settled.
    pub done: Option<Done>,
}

/// How a record ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// The step succeeded (its output is `output`) or failed (`error` says why).
    pub ok: bool,
    /// What the step (or tool call) produced.
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// A signal sent to the instance, kept whether or not a wait is open for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Its place in the instance's inbox (oldest first).
    pub seq: i64,
    /// Its name (a wait's signal name, an approval step's id, or a tool call's approval id).
    pub name: String,
    /// What it carries (for an approval: `decision` and `comment`).
    pub payload: Value,
    /// Who sent it (subject).
    pub sender: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Whether a wait already took it.
    pub consumed: bool,
}

/// Everything the reconciler reads about one instance.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The instance's task id.
    pub instance: &'a str,
    /// Its input (the instance task's params).
    pub input: &'a Value,
    /// `{"id", "tenant", "workflow", "version"}`, the `instance` root of references.
    pub info: &'a Value,
    /// Its sub-tasks by idempotency key.
    pub children: &'a BTreeMap<String, Child>,
    /// Its engine records by id.
    pub records: &'a BTreeMap<String, Record>,
    /// Its signals, oldest first.
    pub signals: &'a [Signal],
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// The task type agent steps call models with.
    pub model_task_type: Option<&'a str>,
    /// Params schemas of the task types agent steps offer as tools.
    pub tool_schemas: &'a BTreeMap<String, Value>,
}

/// What the engine must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Submit a sub-task of the instance (idempotent under its key).
    Submit(Submission),
    /// Open a wait or a timer record.
    Open {
        /// The record id.
        record: String,
        /// When it times out or fires.
        due_at_ms: Option<i64>,
    },
    /// Settle a record, taking signal `consume` from the inbox if given.
    Close {
        /// The record id.
        record: String,
        /// How it ended.
        done: Done,
        /// The signal it took.
        consume: Option<i64>,
    },
    /// Cancel a running sub-task (the workflow failed around it).
    Cancel {
        /// The task.
        task_id: String,
        /// Why.
        reason: String,
    },
}

/// One sub-task to submit.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    /// Its idempotency key ([`crate::keys`]).
    pub key: String,
    /// The step it belongs to.
    pub step: String,
    /// Its task type.
    pub task_type: String,
    /// Its params, references resolved.
    pub params: Value,
    /// Per-attempt timeout, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Retry policy.
    pub retry: Option<crate::definition::Retry>,
}

/// Where one step stands, for people (Get, the dashboard) and for the reconciler itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step id.
    pub id: String,
    /// `task`, `wait`, `approval`, `sleep` or `agent`.
    pub kind: String,
    /// `PENDING`, `RUNNING`, `WAITING`, `SUCCEEDED`, `FAILED`, `SKIPPED`.
    pub state: String,
    /// Its output once done (`null` when skipped or failed).
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// Its sub-tasks' ids (items, model and tool calls, compensation).
    pub tasks: Vec<String>,
    /// What it waits for, while it waits.
    pub waiting: Vec<Waiting>,
}

/// An open wait, as people see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The signal name that ends it (for an approval: what `cadre signal` takes).
    pub signal: String,
    /// `signal`, `approval` or `timer`.
    pub kind: String,
    /// The lowest role that may decide an approval.
    pub role: Option<String>,
    /// What the approver is asked.
    pub prompt: Option<String>,
    /// When it times out or fires, Unix milliseconds.
    pub due_at_ms: Option<i64>,
}

/// How the instance stands after a reconcile.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Steps are running or waiting; reconcile again on an event, a signal, or at `wake_at_ms`.
    Running {
        /// The earliest timer or timeout due.
        wake_at_ms: Option<i64>,
    },
    /// Every step is done: the instance's result.
    Succeeded(Value),
    /// A step failed (and compensation, if any, is done): why.
    Failed(String),
}

/// What one reconcile decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// What to do now (nothing when only waiting).
    pub actions: Vec<Action>,
    /// Every step, in definition order.
    pub steps: Vec<StepReport>,
    /// How the instance stands.
    pub outcome: Outcome,
}
