//! The executor seam: what a tier-2 worker runs for a task.

use std::sync::Arc;

use async_trait::async_trait;
use cadre_proto::TaskId;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Tokens one model call used, reported by executors that call models, with what tier 0
/// keeps as the call's record (`llm_calls`). Every field after `tokens_out` is optional on the
/// wire (serde defaults), so a report from an older node still decodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// The model that answered (a key of the node's price table).
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// The provider that answered ("" when not told).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The model the task asked for ("" when not told: the same as `model`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_requested: String,
    /// The models tried before the one that answered, in order, and why each did not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Fallback>,
    /// When the call started, Unix milliseconds (0 when not told: tier 0 uses the report's
    /// arrival).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub started_at_ms: i64,
    /// Milliseconds from the start to the first token of a streamed reply (None: not streamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    /// Milliseconds the whole call took (fallbacks included).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub total_ms: u64,
    /// Why the reply ended, as the provider said (`stop`, `length`, `tool_calls`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub finish_reason: String,
    /// The reply came from the response cache (no provider was called).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_hit: bool,
    /// The task's trace id (32 hex digits; "" when traces are not exported). Set by tier 1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// The attempt that made the call (0 when not told). Set by tier 1.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub attempt: u32,
    /// The prompt as text, when the node keeps prompts (`[llm_calls] capture_prompts`),
    /// at most [`MAX_CAPTURE_BYTES`]; tier 0 redacts and bounds it again before it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The reply as text, kept like `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// The most bytes of a prompt or reply a usage report carries (tier 0 may keep fewer).
pub const MAX_CAPTURE_BYTES: usize = 1 << 20;

/// One model of a fallback chain that did not answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fallback {
    /// Its provider.
    pub provider: String,
    /// The model's name (a key of the price table).
    pub model: String,
    /// Why it did not answer, short.
    pub error: String,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn cut_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where an attempt reports what it does besides its result.
pub trait Report: Send + Sync {
    /// Progress: a fraction in [0, 1] and a short message (may be dropped under load).
    fn progress(&self, fraction: f64, message: String);
    /// Tokens used (never dropped: budgets are computed from it).
    fn usage(&self, usage: Usage);
}

/// Shared handle to a [`Report`].
pub type SharedReport = Arc<dyn Report>;

/// A report that forgets everything (tests, benchmarks).
pub struct NoReport;

impl Report for NoReport {
    fn progress(&self, _fraction: f64, _message: String) {}
    fn usage(&self, _usage: Usage) {}
}

/// How an executor hands part of its work to another supervisor: the sub-task is stored with
/// the running task as its parent (so Get shows it and cancelling the parent cancels it), runs
/// wherever its type routes, and its result comes back here.
#[async_trait]
pub trait Delegate: Send + Sync {
    /// Runs a sub-task of `parent` and waits for its result. Cancelling `cancel` cancels the
    /// sub-task. A sub-task that fails or is cancelled comes back as an error.
    async fn delegate(
        &self,
        parent: TaskId,
        task_type: String,
        params: Value,
        cancel: CancellationToken,
    ) -> Result<Value, ExecError>;
}

/// Shared handle to a [`Delegate`].
pub type SharedDelegate = Arc<dyn Delegate>;

/// What an executor knows about the attempt it runs.
#[derive(Clone)]
pub struct ExecContext {
    /// The task being run.
    pub task_id: TaskId,
    /// Its type, e.g. `intelligence.text.summarize`.
    pub task_type: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The task's tenant ("" when the caller did not say, e.g. in tests).
    pub tenant: String,
    /// Fires when the task is cancelled; long executors should watch it and return
    /// [`ExecError::Cancelled`]. After the grace period the worker drops the future anyway.
    pub cancel: CancellationToken,
    progress: SharedReport,
    delegate: Option<SharedDelegate>,
}

impl ExecContext {
    /// A context for one attempt.
    pub fn new(
        task_id: TaskId,
        task_type: String,
        attempt: u32,
        cancel: CancellationToken,
        progress: SharedReport,
    ) -> Self {
        ExecContext {
            task_id,
            task_type,
            attempt,
            tenant: String::new(),
            cancel,
            progress,
            delegate: None,
        }
    }

    /// The same context, for a task of `tenant`.
    pub fn with_tenant(mut self, tenant: String) -> Self {
        self.tenant = tenant;
        self
    }

    /// The same context, able to delegate sub-tasks through `delegate`.
    pub fn with_delegate(mut self, delegate: Option<SharedDelegate>) -> Self {
        self.delegate = delegate;
        self
    }

    /// Runs a sub-task of this task (any type, on whichever supervisor it routes to) and waits
    /// for its result; cancelling this task cancels the sub-task.
    pub async fn delegate(&self, task_type: &str, params: Value) -> Result<Value, ExecError> {
        let Some(d) = &self.delegate else {
            return Err(ExecError::Fatal("this worker cannot delegate sub-tasks".into()));
        };
        d.delegate(self.task_id, task_type.to_string(), params, self.cancel.clone())
            .await
    }

    /// Reports progress; it becomes a progress event on the task.
    pub fn progress(&self, fraction: f64, message: impl Into<String>) {
        self.progress.progress(fraction.clamp(0.0, 1.0), message.into());
    }

    /// Reports tokens used by a model call; it is recorded on the task and counts against
    /// the tenant's budget.
    pub fn usage(&self, usage: Usage) {
        self.progress.usage(usage);
    }
}

/// Why an attempt produced no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The params do not fit the executor; retrying cannot help.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// A failure that another attempt may not repeat (network, busy provider, ...).
    #[error("{0}")]
    Retryable(String),
    /// A failure that another attempt would repeat.
    #[error("{0}")]
    Fatal(String),
    /// The executor saw the cancel token and stopped.
    #[error("cancelled")]
    Cancelled,
    /// An upstream (a model provider, a webhook) said to wait before asking again
    /// (`429`/`503` with `Retry-After`). The supervisor puts the task back in the queue without
    /// counting the attempt and holds its task type until `retry_after` has passed.
    #[error("{message}")]
    RateLimited {
        /// What the upstream answered.
        message: String,
        /// How long it asked to wait.
        retry_after: std::time::Duration,
    },
}

impl ExecError {
    /// Whether the retry policy may run the task again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExecError::Retryable(_) | ExecError::RateLimited { .. })
    }
}

/// Decodes params into an executor's own parameter type, mapping errors to
/// [`ExecError::InvalidParams`].
pub fn decode_params<T: DeserializeOwned>(params: &Value) -> Result<T, ExecError> {
    T::deserialize(params).map_err(|e| ExecError::InvalidParams(e.to_string()))
}

/// One kind of work. Implementations must be cheap to share (`Arc`) and safe to run
/// concurrently on many workers.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt and returns the result as JSON.
    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError>;

    /// JSON Schema (draft 2020-12) of the params this executor accepts, for validating a task
    /// at intake and describing it as a tool (MCP); `None` when it publishes none. It must
    /// agree with what `execute` accepts (the built-ins test that it does).
    fn params_schema(&self) -> Option<Value> {
        None
    }

    /// Whether running these params is sandboxed enough for a `fortress` task (no network, a
    /// memory and a time limit); `Err` says why not. Only `exec` sandboxes, on commands
    /// configured for it.
    fn sandboxed(&self, _params: &Value) -> Result<(), String> {
        Err("tasks run only in the exec sandbox; use verified for a signed result".into())
    }

    /// JSON Schema (draft 2020-12) of the result `execute` returns on success; `None` when it
    /// publishes none. Every built-in executor publishes one, and its tests check real results
    /// against it.
    fn result_schema(&self) -> Option<Value> {
        None
    }
}

#[cfg(test)]
mod usage_wire_tests {
    use super::*;

    /// A report of an older node (model and tokens only) still decodes, and a report without
    /// call details is written as it always was.
    #[test]
    fn usage_reports_stay_compatible_both_ways() {
        let old = r#"{"model":"m","tokens_in":1,"tokens_out":2}"#;
        let u: Usage = serde_json::from_str(old).unwrap();
        assert_eq!((u.model.as_str(), u.tokens_in, u.tokens_out), ("m", 1, 2));
        assert_eq!(
            u,
            Usage {
                model: "m".into(),
                tokens_in: 1,
                tokens_out: 2,
                ..Usage::default()
            }
        );
        assert_eq!(serde_json::to_string(&u).unwrap(), old);
        let full = Usage {
            provider: "p".into(),
            fallbacks: vec![Fallback {
                provider: "q".into(),
                model: "n".into(),
                error: "503".into(),
            }],
            first_token_ms: Some(3),
            cache_hit: true,
            attempt: 2,
            prompt: Some("hi".into()),
            ..u
        };
        let back: Usage = serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(back, full);
        assert_eq!(cut_text("héllo", 2), "h", "cut on a character boundary");
    }
}
