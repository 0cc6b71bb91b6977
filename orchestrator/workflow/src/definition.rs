//! A workflow definition: a named, versioned DAG of steps, as clients register it (JSON or
//! TOML), parsed into [`Definition`] with every shape problem named.
//!
//! ```json
//! {"name": "triage", "version": 1,
//!  "input_schema": {"type": "object", "required": ["text"]},
//!  "steps": [
//!    {"id": "summary", "task": "intelligence.text.summarize", "params": {"text": "${{ input.text }}"}},
//!    {"id": "review", "needs": ["summary"], "wait": {"approval": {"role": "operator"}}},
//!    {"id": "tag", "needs": ["review"], "task": "intelligence.text.keywords",
//!     "params": {"text": "${{ steps.summary.output.summary }}"}}],
//!  "output": {"summary": "${{ steps.summary.output.summary }}"}}
//! ```
//!
//! A step has exactly one of `task`, `wait`, `sleep` or `agent`. See docs/WORKFLOWS.md for the
//! whole format.

use cadre_proto::{Role, v1};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most steps one definition may hold.
pub const MAX_STEPS: usize = 200;
/// Most items one `for_each` step may fan out over.
pub const MAX_ITEMS: usize = 1000;
/// Most items of one `for_each` step running at once.
pub const MAX_PARALLEL: u32 = 64;
/// Most turns an agent step may take.
pub const MAX_TURNS: u32 = 50;
/// Most tools one agent step may offer the model.
pub const MAX_TOOLS: usize = 32;
/// Largest definition accepted, as JSON bytes.
pub const MAX_DEFINITION_BYTES: usize = 256 << 10;

/// A registered workflow: immutable once stored under its `(name, version)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// `[a-z0-9][a-z0-9_-]*`, at most 48 characters; the instance task type is
    /// `workflow.<name>.run`.
    pub name: String,
    /// 1 or more; a new version is a new definition, running instances keep theirs.
    pub version: u32,
    /// What it is for (shown to people and, as a tool description, to agents).
    #[serde(default)]
    pub description: String,
    /// JSON Schema (draft 2020-12) the input (the instance task's params) must fit.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// The steps, in any order; `needs` gives the order.
    pub steps: Vec<Step>,
    /// The instance's result, built from step outputs with references; default: every step's
    /// output by step id.
    #[serde(default)]
    pub output: Option<Value>,
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `[a-z0-9_]`, at most 64 characters, unique in the definition.
    pub id: String,
    /// Steps that must be done (succeeded, skipped, or failed with `on_failure: continue`)
    /// before this one starts.
    #[serde(default)]
    pub needs: Vec<String>,
    /// A condition on earlier results (see [`crate::condition`]); false skips the step (its
    /// output is `null`).
    #[serde(default)]
    pub when: Option<Value>,
    /// A reference to an array: the step runs once per item (`${{ item }}`, `${{ index }}`),
    /// and its output is the array of the items' outputs in index order.
    #[serde(default)]
    pub for_each: Option<String>,
    /// Items of a `for_each` running at once (required with `for_each`, 1 to [`MAX_PARALLEL`]).
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// What the step's failure does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// A task that undoes this step, run when the workflow fails after it succeeded and a
    /// failing step says `on_failure: compensate`.
    #[serde(default)]
    pub compensate: Option<TaskCall>,
    /// Per-attempt timeout of the step's task, milliseconds (default: the node's).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retry policy of the step's task (fields left out: the node's).
    #[serde(default)]
    pub retry: Option<Retry>,
    /// A task step: the cadre task type it runs as a sub-task of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// A task step's params (references allowed).
    #[serde(default = "empty_object")]
    pub params: Value,
    /// A wait step: a named signal or an approval, holding no worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitSpec>,
    /// A sleep step: a durable timer, holding no worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepSpec>,
    /// An agent step: a model with cadre task types as tools, every call a durable sub-task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
}

/// A step's retry policy: any field left out takes the node's default (`[retry]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts including the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the second attempt, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    /// Upper bound for one delay, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// Growth factor between delays (1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

impl Retry {
    /// The wire policy (zero fields take the node's defaults at intake, which checks the rest).
    pub fn to_wire(&self) -> v1::RetryPolicy {
        v1::RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(0),
            initial_backoff_ms: self.initial_backoff_ms.unwrap_or(0),
            max_backoff_ms: self.max_backoff_ms.unwrap_or(0),
            multiplier: self.multiplier.unwrap_or(0.0),
            retry_timeouts: false,
        }
    }
}

/// What a step does (a step has exactly one kind, checked at parse).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepKind<'a> {
    /// Runs this task type with the step's params.
    Task(&'a str),
    /// Waits for a signal or an approval.
    Wait(&'a WaitSpec),
    /// Sleeps.
    Sleep(&'a SleepSpec),
    /// Runs the agent loop.
    Agent(&'a AgentSpec),
}

/// What a failed step does to the workflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The workflow fails (running steps are cancelled).
    #[default]
    Fail,
    /// The step is recorded FAILED with a `null` output and the workflow goes on.
    Continue,
    /// The workflow fails after undoing every succeeded step that declares `compensate`
    /// (and this step's own), newest first.
    Compensate,
}

/// A task to run: its type and params (which may hold references).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCall {
    /// The task type.
    pub task: String,
    /// Its params.
    #[serde(default = "empty_object")]
    pub params: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A wait step: a named signal, or an approval (a signal with a decision).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitSpec {
    /// The signal name to wait for (`[A-Za-z0-9_.-]`, at most 64 characters).
    #[serde(default)]
    pub signal: Option<String>,
    /// An approval: approve or reject, with an optional comment.
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
    /// How long to wait, milliseconds (none: for ever).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// A signal wait's outcome on timeout (without one, the step fails on timeout).
    #[serde(default)]
    pub default: Option<Value>,
}

/// An approval wait.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// The lowest role that may decide (default operator); always within the instance's
    /// tenant.
    #[serde(default = "operator")]
    pub role: Role,
    /// What a timeout decides (default reject).
    #[serde(default)]
    pub on_timeout: Decision,
    /// What the approver is asked (shown by the dashboard and the CLI; references are filled
    /// in).
    #[serde(default)]
    pub prompt: String,
}

fn operator() -> Role {
    Role::Operator
}

/// An approval's decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Go on.
    Approve,
    /// Stop: the step fails with the reason.
    #[default]
    Reject,
}

/// A durable timer step: exactly one of `ms` and `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepSpec {
    /// Sleep this long after the step starts, milliseconds.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Sleep until this Unix time in milliseconds (a number, or a reference to one).
    #[serde(default)]
    pub until_ms: Option<Value>,
}

/// The durable agent loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The model (a name from `[executors.llm.models]`).
    pub model: String,
    /// The system prompt (a template).
    #[serde(default)]
    pub system: String,
    /// The user prompt (a template).
    pub prompt: String,
    /// Task types the model may call.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Model calls at most (default 8, at most [`MAX_TURNS`]).
    #[serde(default = "default_turns")]
    pub max_turns: u32,
    /// Tool calls of one turn running at once (default 4).
    #[serde(default = "default_parallel_tools")]
    pub max_parallel_tools: u32,
}

fn default_turns() -> u32 {
    8
}

fn default_parallel_tools() -> u32 {
    4
}

/// A task type offered to the model as a tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The task type.
    pub task: String,
    /// What the model is told the tool does (default: the task type's name).
    #[serde(default)]
    pub description: String,
    /// Each call waits for an approval before it runs.
    #[serde(default)]
    pub approval: bool,
    /// Who may approve its calls (default operator).
    #[serde(default = "operator")]
    pub approval_role: Role,
}

impl Definition {
    /// Parses a definition from JSON, naming what is malformed (shape only; [`crate::validate`]
    /// checks the rest).
    pub fn from_json(text: &str) -> Result<Definition, String> {
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(format!(
                "the definition is {} bytes; at most {MAX_DEFINITION_BYTES}",
                text.len()
            ));
        }
        let raw: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        Definition::from_value(raw)
    }

    /// [`Definition::from_json`] from a parsed value (a TOML file read into JSON, say).
    pub fn from_value(raw: Value) -> Result<Definition, String> {
        if let Some(steps) = raw.get("steps").and_then(Value::as_array) {
            for (i, s) in steps.iter().enumerate() {
                let kinds: Vec<&str> = ["task", "wait", "sleep", "agent"]
                    .into_iter()
                    .filter(|k| s.get(*k).is_some())
                    .collect();
                if kinds.len() != 1 {
                    let id = s.get("id").and_then(Value::as_str).unwrap_or("?");
                    return Err(format!(
                        "steps[{i}] ({id}): a step has exactly one of task, wait, sleep, agent (found {})",
                        if kinds.is_empty() {
                            "none".to_string()
                        } else {
                            kinds.join(", ")
                        }
                    ));
                }
            }
        }
        serde_json::from_value(raw).map_err(|e| e.to_string())
    }

    /// The step with `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The task type of this workflow's instances.
    pub fn task_type(&self) -> String {
        instance_task_type(&self.name)
    }
}

impl Step {
    /// What the step does.
    pub fn kind(&self) -> StepKind<'_> {
        match (&self.task, &self.wait, &self.sleep, &self.agent) {
            (Some(t), _, _, _) => StepKind::Task(t),
            (_, Some(w), _, _) => StepKind::Wait(w),
            (_, _, Some(s), _) => StepKind::Sleep(s),
            (_, _, _, Some(a)) => StepKind::Agent(a),
            // Parsing refuses a step without a kind; treat a hand-built one as a no-op wait.
            (None, None, None, None) => StepKind::Sleep(&NO_SLEEP),
        }
    }
}

/// A zero-length sleep: the kind of a step built without one.
static NO_SLEEP: SleepSpec = SleepSpec {
    ms: Some(0),
    until_ms: None,
};

/// The task type of instances of workflow `name`.
pub fn instance_task_type(name: &str) -> String {
    format!("workflow.{name}.run")
}

/// The workflow name of an instance task type (`workflow.<name>.run`).
pub fn workflow_of(task_type: &str) -> Option<&str> {
    task_type.strip_prefix("workflow.")?.strip_suffix(".run")
}
