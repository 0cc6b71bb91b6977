//! Domain types shared by every tier, and their conversions to and from the wire types.
//!
//! Wire input is untrusted: [`TaskSpec::from_wire`] validates every field and names the failing
//! one in its error, so the gRPC layer can turn it into `INVALID_ARGUMENT` or
//! `RESOURCE_EXHAUSTED` without re-checking.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::v1;

/// Identifies one task across every tier and process (a UUIDv7, so ids sort by creation time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        TaskId(Uuid::now_v7())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Uuid::parse_str(s.trim())
            .map(TaskId)
            .map_err(|_| SpecError::invalid("id", format!("{s:?} is not a task id (a UUID)")))
    }
}

/// Scheduling priority, 0 (lowest) to 9 (highest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Priority(u8);

impl Priority {
    /// The highest priority.
    pub const MAX: Priority = Priority(9);

    /// Checks the range 0..=9.
    pub fn new(value: i64) -> Result<Self, SpecError> {
        if (0..=9).contains(&value) {
            Ok(Priority(value as u8))
        } else {
            Err(SpecError::invalid(
                "spec.priority",
                format!("must be 0-9, got {value}"),
            ))
        }
    }

    /// The numeric value, 0..=9.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// Where a task is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Stored and waiting for a worker.
    Queued,
    /// An attempt is running on a worker.
    Running,
    /// An attempt failed; the next one waits for its backoff.
    Retrying,
    /// Finished with a result.
    Succeeded,
    /// Finished without a result after its last attempt (or with a non-retryable error).
    Failed,
    /// Cancelled by a client.
    Cancelled,
    /// An attempt exceeded the task's timeout.
    TimedOut,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::TimedOut,
    ];

    /// True once nothing more will happen to the task.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::TimedOut
        )
    }

    /// The stable name used in the store, logs, metrics labels and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "QUEUED",
            TaskState::Running => "RUNNING",
            TaskState::Retrying => "RETRYING",
            TaskState::Succeeded => "SUCCEEDED",
            TaskState::Failed => "FAILED",
            TaskState::Cancelled => "CANCELLED",
            TaskState::TimedOut => "TIMED_OUT",
        }
    }

    /// Converts from the wire enum; `UNSPECIFIED` and unknown numbers are errors.
    pub fn from_wire(value: i32) -> Result<Self, SpecError> {
        match v1::TaskState::try_from(value) {
            Ok(v1::TaskState::Queued) => Ok(TaskState::Queued),
            Ok(v1::TaskState::Running) => Ok(TaskState::Running),
            Ok(v1::TaskState::Retrying) => Ok(TaskState::Retrying),
            Ok(v1::TaskState::Succeeded) => Ok(TaskState::Succeeded),
            Ok(v1::TaskState::Failed) => Ok(TaskState::Failed),
            Ok(v1::TaskState::Cancelled) => Ok(TaskState::Cancelled),
            Ok(v1::TaskState::TimedOut) => Ok(TaskState::TimedOut),
            _ => Err(SpecError::invalid(
                "states",
                format!("{value} is not a task state"),
            )),
        }
    }

    /// The wire enum value.
    pub fn to_wire(self) -> v1::TaskState {
        match self {
            TaskState::Queued => v1::TaskState::Queued,
            TaskState::Running => v1::TaskState::Running,
            TaskState::Retrying => v1::TaskState::Retrying,
            TaskState::Succeeded => v1::TaskState::Succeeded,
            TaskState::Failed => v1::TaskState::Failed,
            TaskState::Cancelled => v1::TaskState::Cancelled,
            TaskState::TimedOut => v1::TaskState::TimedOut,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let upper = s.trim().to_ascii_uppercase().replace('-', "_");
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == upper)
            .ok_or_else(|| SpecError::invalid("state", format!("{s:?} is not a task state")))
    }
}

/// How failed attempts are retried: at most `max_attempts` runs, exponential backoff with jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts including the first (>= 1).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    #[serde(with = "millis", rename = "initial_backoff_ms")]
    pub initial_backoff: Duration,
    /// Upper bound for one delay.
    #[serde(with = "millis", rename = "max_backoff_ms")]
    pub max_backoff: Duration,
    /// Growth factor between delays (>= 1.0).
    pub multiplier: f64,
    /// Whether an attempt that ran past its timeout is retried like a failed one (false:
    /// TIMED_OUT is final). Written only when true, so records and work messages of tasks
    /// that do not use it read as before (older nodes refuse unknown fields); absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_timeouts: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            retry_timeouts: false,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (2 = first retry), scaled by `jitter` in [0, 1]:
    /// "equal jitter", half fixed and half random, so retries spread out but never fire at once.
    pub fn backoff(&self, next_attempt: u32, jitter: f64) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(64) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exp);
        let capped = base.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }

    /// How long a caller waits by default for a task under this policy to finish, when it
    /// asks for no wait of its own (SubmitAndWait, Delegate, sub-tasks): long enough for every
    /// attempt to use its whole `timeout` and every backoff its maximum, plus 5 s of slack.
    pub fn wait_budget(&self, timeout: Duration) -> Duration {
        timeout * self.max_attempts + self.max_backoff * self.max_attempts + Duration::from_secs(5)
    }

    /// Converts from the wire, filling zero fields from `defaults` and checking ranges.
    pub fn from_wire(wire: &v1::RetryPolicy, defaults: &RetryPolicy) -> Result<Self, SpecError> {
        let pick_ms = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        let policy = RetryPolicy {
            max_attempts: if wire.max_attempts == 0 {
                defaults.max_attempts
            } else {
                wire.max_attempts
            },
            initial_backoff: pick_ms(wire.initial_backoff_ms, defaults.initial_backoff),
            max_backoff: pick_ms(wire.max_backoff_ms, defaults.max_backoff),
            multiplier: if wire.multiplier == 0.0 {
                defaults.multiplier
            } else {
                wire.multiplier
            },
            retry_timeouts: wire.retry_timeouts || defaults.retry_timeouts,
        };
        policy.validate("spec.retry")?;
        Ok(policy)
    }

    /// Checks ranges; `field` prefixes the error's field name.
    pub fn validate(&self, field: &str) -> Result<(), SpecError> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(SpecError::invalid(
                format!("{field}.max_attempts"),
                format!("must be 1-100, got {}", self.max_attempts),
            ));
        }
        if !self.multiplier.is_finite() || !(1.0..=10.0).contains(&self.multiplier) {
            return Err(SpecError::invalid(
                format!("{field}.multiplier"),
                format!("must be between 1 and 10, got {}", self.multiplier),
            ));
        }
        if self.max_backoff > Duration::from_secs(24 * 3600) || self.initial_backoff > self.max_backoff {
            return Err(SpecError::invalid(
                format!("{field}.initial_backoff_ms"),
                "must be at most max_backoff_ms, which must be at most 24h",
            ));
        }
        Ok(())
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::RetryPolicy {
        v1::RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff_ms: self.initial_backoff.as_millis() as u64,
            max_backoff_ms: self.max_backoff.as_millis() as u64,
            multiplier: self.multiplier,
            retry_timeouts: self.retry_timeouts,
        }
    }
}

/// Serde helper: `Duration` as integer milliseconds.
pub mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Bounds applied while validating wire input; they come from the node's config.
#[derive(Clone, Debug)]
pub struct SpecLimits {
    /// Largest accepted `params_json`, in bytes.
    pub max_params_bytes: usize,
    /// Deepest nesting of arrays and objects accepted in params.
    pub max_params_depth: usize,
    /// Largest accepted per-attempt timeout.
    pub max_timeout: Duration,
    /// Timeout used when the spec gives none.
    pub default_timeout: Duration,
    /// Retry policy used when the spec gives none, and for its zero fields.
    pub default_retry: RetryPolicy,
}

impl Default for SpecLimits {
    fn default() -> Self {
        SpecLimits {
            max_params_bytes: 1 << 20,
            max_params_depth: 32,
            max_timeout: Duration::from_secs(24 * 3600),
            default_timeout: Duration::from_secs(300),
            default_retry: RetryPolicy::default(),
        }
    }
}

/// What the node guarantees about a task's result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityLevel {
    /// The result is stored as produced.
    #[default]
    Standard,
    /// The result is signed by the node when the task succeeds.
    Verified,
    /// Sandboxed exec worker, signed result (not available yet).
    Fortress,
}

impl SecurityLevel {
    /// Converts from the wire enum; unknown numbers are errors.
    pub fn from_wire(value: i32) -> Result<Self, SpecError> {
        match v1::SecurityLevel::try_from(value) {
            Ok(v1::SecurityLevel::Standard) => Ok(SecurityLevel::Standard),
            Ok(v1::SecurityLevel::Verified) => Ok(SecurityLevel::Verified),
            Ok(v1::SecurityLevel::Fortress) => Ok(SecurityLevel::Fortress),
            Err(_) => Err(SpecError::invalid(
                "spec.security_level",
                format!("{value} is not a security level"),
            )),
        }
    }

    /// The wire enum value.
    pub fn to_wire(self) -> v1::SecurityLevel {
        match self {
            SecurityLevel::Standard => v1::SecurityLevel::Standard,
            SecurityLevel::Verified => v1::SecurityLevel::Verified,
            SecurityLevel::Fortress => v1::SecurityLevel::Fortress,
        }
    }
}

/// The message a node signs for a verified result: `cadre-result:v1:<id>:<sha256 hex of result>`.
pub fn result_signing_message(
    task_id: TaskId,
    result_json: &str,
    sha256_hex: impl Fn(&[u8]) -> String,
) -> String {
    format!("cadre-result:v1:{task_id}:{}", sha256_hex(result_json.as_bytes()))
}

/// A validated task request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// `supervisor.domain.action`.
    pub task_type: String,
    /// Parameters as parsed JSON.
    pub params: Value,
    /// Scheduling priority.
    pub priority: Priority,
    /// Wall-time limit for one attempt.
    #[serde(with = "millis", rename = "timeout_ms")]
    pub timeout: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// Per-tenant deduplication key.
    pub idempotency_key: Option<String>,
    /// The delegating task, for sub-tasks.
    pub parent_id: Option<TaskId>,
    /// What the node guarantees about the result.
    #[serde(default)]
    pub security_level: SecurityLevel,
    /// The concurrency key whose running limit this task shares (per tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// Replace a still-queued earlier submit with the same key within the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Debounce>,
    /// The task a bulk replay copied this one from (set by the node, never by a client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<TaskId>,
}

/// A debounce key and window of a [`TaskSpec`] (`spec.debounce_key`, `spec.debounce_window_ms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debounce {
    /// Per-tenant key: a newer submit with it replaces a queued older one.
    pub key: String,
    /// How long after a submit a newer one with the same key replaces it.
    #[serde(with = "millis", rename = "window_ms")]
    pub window: Duration,
}

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Longest accepted concurrency or debounce key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest accepted debounce window.
pub const MAX_DEBOUNCE_WINDOW: Duration = Duration::from_secs(86_400);
/// Longest accepted task type, in bytes.
pub const MAX_TASK_TYPE_BYTES: usize = 128;

impl TaskSpec {
    /// Validates untrusted wire input. Errors name the field, e.g. `spec.priority`.
    pub fn from_wire(wire: Option<&v1::TaskSpec>, limits: &SpecLimits) -> Result<Self, SpecError> {
        let wire = wire.ok_or_else(|| SpecError::invalid("spec", "is required"))?;
        validate_task_type(&wire.task_type)?;
        if wire.params_json.len() > limits.max_params_bytes {
            return Err(SpecError::TooLarge {
                field: "spec.params_json".into(),
                size: wire.params_json.len(),
                limit: limits.max_params_bytes,
            });
        }
        if wire.params_json.trim().is_empty() {
            return Err(SpecError::invalid(
                "spec.params_json",
                "is empty; send a JSON document such as {}",
            ));
        }
        let params: Value = serde_json::from_str(&wire.params_json)
            .map_err(|e| SpecError::invalid("spec.params_json", format!("is not valid JSON: {e}")))?;
        let depth = json_depth(&params);
        if depth > limits.max_params_depth {
            return Err(SpecError::invalid(
                "spec.params_json",
                format!(
                    "nests {depth} levels deep; the limit is {}",
                    limits.max_params_depth
                ),
            ));
        }
        let priority = Priority::new(wire.priority as i64)?;
        let timeout = match wire.timeout_ms {
            0 => limits.default_timeout,
            ms if ms < 0 => {
                return Err(SpecError::invalid(
                    "spec.timeout_ms",
                    format!("must not be negative, got {ms}"),
                ));
            }
            ms => Duration::from_millis(ms as u64),
        };
        if timeout > limits.max_timeout {
            return Err(SpecError::invalid(
                "spec.timeout_ms",
                format!("must be at most {} ms", limits.max_timeout.as_millis()),
            ));
        }
        let retry = match &wire.retry {
            Some(r) => RetryPolicy::from_wire(r, &limits.default_retry)?,
            None => limits.default_retry.clone(),
        };
        let idempotency_key = match wire.idempotency_key.as_str() {
            "" => None,
            k if k.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
                return Err(SpecError::invalid(
                    "spec.idempotency_key",
                    format!("must be at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
                ));
            }
            k => Some(k.to_string()),
        };
        let parent_id = match wire.parent_id.as_str() {
            "" => None,
            p => Some(
                p.parse::<TaskId>()
                    .map_err(|_| SpecError::invalid("spec.parent_id", format!("{p:?} is not a task id")))?,
            ),
        };
        let security_level = SecurityLevel::from_wire(wire.security_level)?;
        Ok(TaskSpec {
            task_type: wire.task_type.clone(),
            params,
            priority,
            timeout,
            retry,
            idempotency_key,
            parent_id,
            security_level,
            concurrency_key: optional_key("spec.concurrency_key", &wire.concurrency_key)?,
            debounce: Debounce::from_wire(wire)?,
            replay_of: None,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::TaskSpec {
        v1::TaskSpec {
            task_type: self.task_type.clone(),
            params_json: self.params.to_string(),
            priority: self.priority.get() as i32,
            timeout_ms: self.timeout.as_millis() as i64,
            retry: Some(self.retry.to_wire()),
            idempotency_key: self.idempotency_key.clone().unwrap_or_default(),
            parent_id: self.parent_id.map(|p| p.to_string()).unwrap_or_default(),
            security_level: self.security_level.to_wire() as i32,
            concurrency_key: self.concurrency_key.clone().unwrap_or_default(),
            debounce_key: self.debounce.as_ref().map(|d| d.key.clone()).unwrap_or_default(),
            debounce_window_ms: self.debounce.as_ref().map_or(0, |d| d.window.as_millis() as u64),
        }
    }

    /// A spec with only a task type and params; every other field at its default (priority 0,
    /// `timeout`, `retry`, no keys): what the node itself submits.
    pub fn simple(
        task_type: impl Into<String>,
        params: Value,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Self {
        TaskSpec {
            task_type: task_type.into(),
            params,
            priority: Priority::default(),
            timeout,
            retry,
            idempotency_key: None,
            parent_id: None,
            security_level: SecurityLevel::default(),
            concurrency_key: None,
            debounce: None,
            replay_of: None,
        }
    }

    /// The first segment of the task type: the supervisor it belongs to by convention.
    pub fn supervisor_hint(&self) -> &str {
        self.task_type.split('.').next().unwrap_or_default()
    }
}

/// An optional key field (`""` = none), at most [`MAX_KEY_BYTES`].
fn optional_key(field: &str, key: &str) -> Result<Option<String>, SpecError> {
    match key {
        "" => Ok(None),
        k if k.len() > MAX_KEY_BYTES => Err(SpecError::invalid(
            field,
            format!("must be at most {MAX_KEY_BYTES} bytes"),
        )),
        k => Ok(Some(k.to_string())),
    }
}

impl Debounce {
    /// The debounce of a wire spec: none without a key; a key needs a window in
    /// (0, [`MAX_DEBOUNCE_WINDOW`]], and a window needs a key.
    fn from_wire(wire: &v1::TaskSpec) -> Result<Option<Self>, SpecError> {
        let key = optional_key("spec.debounce_key", &wire.debounce_key)?;
        let window = Duration::from_millis(wire.debounce_window_ms);
        match key {
            None if wire.debounce_window_ms > 0 => Err(SpecError::invalid(
                "spec.debounce_window_ms",
                "needs spec.debounce_key",
            )),
            None => Ok(None),
            Some(_) if wire.debounce_window_ms == 0 => Err(SpecError::invalid(
                "spec.debounce_window_ms",
                "must be greater than 0 with spec.debounce_key",
            )),
            Some(_) if window > MAX_DEBOUNCE_WINDOW => Err(SpecError::invalid(
                "spec.debounce_window_ms",
                format!("must be at most {} ms", MAX_DEBOUNCE_WINDOW.as_millis()),
            )),
            Some(key) => Ok(Some(Debounce { key, window })),
        }
    }
}

/// How deeply arrays and objects nest in `v` (a scalar is 0), without recursion.
pub fn json_depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// Checks the `supervisor.domain.action` shape: three or more dot-separated segments of
/// lowercase ASCII letters, digits, `_` and `-`.
pub fn validate_task_type(task_type: &str) -> Result<(), SpecError> {
    let field = "spec.task_type";
    if task_type.is_empty() {
        return Err(SpecError::invalid(field, "is required"));
    }
    if task_type.len() > MAX_TASK_TYPE_BYTES {
        return Err(SpecError::invalid(
            field,
            format!("must be at most {MAX_TASK_TYPE_BYTES} bytes"),
        ));
    }
    let segments: Vec<&str> = task_type.split('.').collect();
    let well_formed = segments.len() >= 3
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if !well_formed {
        return Err(SpecError::invalid(
            field,
            format!("{task_type:?} is not of the form supervisor.domain.action (lowercase)"),
        ));
    }
    Ok(())
}

/// Why wire input was refused; `field` names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// A field is missing, malformed or out of range (gRPC `INVALID_ARGUMENT`).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, dotted from the request root.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A field exceeds a configured size limit (gRPC `RESOURCE_EXHAUSTED`).
    #[error("{field}: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The offending field.
        field: String,
        /// Its size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl SpecError {
    /// Shorthand for [`SpecError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One transition or progress report of one task, as stored and streamed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Global position in the node's event log (strictly increasing).
    pub cursor: u64,
    /// The task.
    pub task_id: TaskId,
    /// Per-task sequence, 1 for QUEUED.
    pub seq: u64,
    /// The task's state after this event.
    pub state: TaskState,
    /// Attempt number at the time of the event.
    pub attempt: u32,
    /// Human-readable detail.
    pub message: String,
    /// Progress in [0, 1] for progress reports.
    pub progress: f64,
    /// The result, on SUCCEEDED.
    pub result: Option<Value>,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The task's type (so watchers can filter without a lookup).
    pub task_type: String,
    /// The task's tenant.
    pub tenant: String,
    /// True for progress reports that do not change the state.
    pub is_progress: bool,
    /// The delegating task, for events of sub-tasks (so watchers can follow one parent's
    /// children without a lookup).
    #[serde(default)]
    pub parent_id: Option<TaskId>,
}

impl TaskEvent {
    /// The wire form.
    pub fn to_wire(&self) -> v1::TaskEvent {
        v1::TaskEvent {
            cursor: self.cursor,
            task_id: self.task_id.to_string(),
            seq: self.seq,
            state: self.state.to_wire() as i32,
            attempt: self.attempt,
            message: self.message.clone(),
            progress: self.progress,
            result_json: self.result.as_ref().map(Value::to_string).unwrap_or_default(),
            at_ms: self.at_ms,
            task_type: self.task_type.clone(),
            tenant: self.tenant.clone(),
            is_progress: self.is_progress,
            parent_id: self.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        }
    }
}

/// The supervisor name a workflow instance is stored under: no supervisor runs it; tier 0's
/// workflow engine drives it (its worker kind is `v<version>`, the definition it runs).
pub const WORKFLOW_SUPERVISOR: &str = "workflow";

/// A task as the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// The tenant it belongs to.
    pub tenant: String,
    /// What was asked.
    pub spec: TaskSpec,
    /// Current state.
    pub state: TaskState,
    /// Current or last attempt (0 before the first run).
    pub attempt: u32,
    /// Supervisor it is routed to.
    pub supervisor: String,
    /// Worker kind that runs it.
    pub worker_kind: String,
    /// Result on SUCCEEDED.
    pub result: Option<Value>,
    /// Reason on FAILED, CANCELLED or TIMED_OUT.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds of the last event.
    pub updated_at_ms: i64,
    /// Sequence number of the latest event.
    pub seq: u64,
    /// Sub-tasks delegated by this task.
    pub children: Vec<TaskId>,
    /// The node's signature of the result, for verified tasks that succeeded.
    #[serde(default)]
    pub result_signature: Option<String>,
    /// Tokens and cost per model (read from the usage records, not stored with the task).
    #[serde(skip)]
    pub usage: Vec<v1::ModelUsage>,
    /// A workflow instance's steps (computed by the workflow engine when the instance is
    /// read, not stored with the task).
    #[serde(skip)]
    pub steps: Vec<v1::WorkflowStep>,
}

impl TaskRecord {
    /// A new task as every intake path stores it: a fresh id, QUEUED at seq 1, no attempt yet,
    /// routed to `supervisor`'s `worker_kind` pool, created now.
    pub fn queued(tenant: impl Into<String>, spec: TaskSpec, supervisor: &str, worker_kind: &str) -> Self {
        let now = crate::clock::now_ms();
        TaskRecord {
            id: TaskId::new(),
            tenant: tenant.into(),
            spec,
            state: TaskState::Queued,
            attempt: 0,
            supervisor: supervisor.to_string(),
            worker_kind: worker_kind.to_string(),
            result: None,
            error: None,
            created_at_ms: now,
            updated_at_ms: now,
            seq: 1,
            children: Vec::new(),
            result_signature: None,
            usage: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// How long a caller waits by default for this task to finish
    /// ([`RetryPolicy::wait_budget`] of its spec).
    pub fn wait_budget(&self) -> Duration {
        self.spec.retry.wait_budget(self.spec.timeout)
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::Task {
        v1::Task {
            id: self.id.to_string(),
            tenant: self.tenant.clone(),
            spec: Some(self.spec.to_wire()),
            state: self.state.to_wire() as i32,
            attempt: self.attempt,
            supervisor: self.supervisor.clone(),
            worker_kind: self.worker_kind.clone(),
            result_json: self.result.as_ref().map(Value::to_string).unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            seq: self.seq,
            children: self.children.iter().map(ToString::to_string).collect(),
            result_signature: self.result_signature.clone().unwrap_or_default(),
            usage: self.usage.clone(),
            steps: self.steps.clone(),
            replay_of: self.spec.replay_of.map(|t| t.to_string()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(task_type: &str, params: &str) -> v1::TaskSpec {
        v1::TaskSpec {
            task_type: task_type.into(),
            params_json: params.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_queued_record_is_new_and_routed() {
        let limits = SpecLimits::default();
        let spec = TaskSpec::from_wire(Some(&wire("system.debug.echo", "{}")), &limits).unwrap();
        let a = TaskRecord::queued("acme", spec.clone(), "system", "monitor");
        let b = TaskRecord::queued("acme", spec, "system", "monitor");
        assert_ne!(a.id, b.id);
        assert_eq!((a.state, a.attempt, a.seq), (TaskState::Queued, 0, 1));
        assert_eq!(
            (a.tenant.as_str(), a.supervisor.as_str(), a.worker_kind.as_str()),
            ("acme", "system", "monitor")
        );
        assert_eq!(a.created_at_ms, a.updated_at_ms);
        assert!(a.result.is_none() && a.error.is_none() && a.children.is_empty());
    }

    #[test]
    fn the_wait_budget_covers_every_attempt_and_backoff() {
        let retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            retry_timeouts: false,
        };
        // 3 attempts of 10 s, 3 maximal backoffs of 2 s, 5 s of slack.
        assert_eq!(
            retry.wait_budget(Duration::from_secs(10)),
            Duration::from_secs(41)
        );
    }

    #[test]
    fn valid_spec_takes_defaults() {
        let limits = SpecLimits::default();
        let spec = TaskSpec::from_wire(Some(&wire("system.debug.echo", r#"{"a":1}"#)), &limits).unwrap();
        assert_eq!(spec.timeout, limits.default_timeout);
        assert_eq!(spec.retry, limits.default_retry);
        assert_eq!(spec.params["a"], 1);
        let back = TaskSpec::from_wire(Some(&spec.to_wire()), &limits).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn bad_fields_are_named() {
        let limits = SpecLimits {
            max_params_bytes: 16,
            ..Default::default()
        };
        let cases: Vec<(v1::TaskSpec, &str)> = vec![
            (wire("", "{}"), "spec.task_type"),
            (wire("Echo", "{}"), "spec.task_type"),
            (wire("a..b", "{}"), "spec.task_type"),
            (wire("system.debug.echo", "{nope"), "spec.params_json"),
            (wire("system.debug.echo", "  "), "spec.params_json"),
            (
                v1::TaskSpec {
                    priority: 10,
                    ..wire("system.debug.echo", "{}")
                },
                "spec.priority",
            ),
            (
                v1::TaskSpec {
                    priority: -1,
                    ..wire("system.debug.echo", "{}")
                },
                "spec.priority",
            ),
            (
                v1::TaskSpec {
                    timeout_ms: -5,
                    ..wire("system.debug.echo", "{}")
                },
                "spec.timeout_ms",
            ),
            (
                v1::TaskSpec {
                    parent_id: "x".into(),
                    ..wire("system.debug.echo", "{}")
                },
                "spec.parent_id",
            ),
            (
                v1::TaskSpec {
                    retry: Some(v1::RetryPolicy {
                        max_attempts: 1000,
                        ..Default::default()
                    }),
                    ..wire("system.debug.echo", "{}")
                },
                "spec.retry.max_attempts",
            ),
        ];
        for (w, field) in cases {
            match TaskSpec::from_wire(Some(&w), &limits) {
                Err(SpecError::Invalid { field: f, .. }) => assert_eq!(f, field, "{w:?}"),
                other => panic!("{w:?}: expected Invalid({field}), got {other:?}"),
            }
        }
        let nested = format!("{}{}", "[".repeat(33), "]".repeat(33));
        match TaskSpec::from_wire(Some(&wire("system.debug.echo", &nested)), &SpecLimits::default()) {
            Err(SpecError::Invalid { message, .. }) => assert!(message.contains("33 levels"), "{message}"),
            other => panic!("deep params must be refused: {other:?}"),
        }
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": 2}]})), 3);
        let big = wire("system.debug.echo", &format!("\"{}\"", "x".repeat(100)));
        assert!(matches!(
            TaskSpec::from_wire(Some(&big), &limits),
            Err(SpecError::TooLarge { .. })
        ));
        assert!(TaskSpec::from_wire(None, &limits).is_err());
    }

    /// Found by the params_decoder fuzz target: without serde_json's `float_roundtrip`, a
    /// long decimal re-parsed after storing came back as a different f64.
    #[test]
    fn params_numbers_survive_the_round_trip_exactly() {
        let limits = SpecLimits::default();
        for text in [
            format!("1.{}e36", "6".repeat(60)),
            "5e36".to_string(),
            "0.1".to_string(),
            "2.2250738585072014e-308".to_string(),
        ] {
            let spec = TaskSpec::from_wire(Some(&wire("system.debug.echo", &text)), &limits).unwrap();
            let again = TaskSpec::from_wire(Some(&spec.to_wire()), &limits).unwrap();
            assert_eq!(again.params, spec.params, "{text}");
        }
    }

    #[test]
    fn retry_timeouts_is_written_only_when_set_and_read_back() {
        let off = RetryPolicy::default();
        let text = serde_json::to_string(&off).unwrap();
        assert!(!text.contains("retry_timeouts"), "{text}");
        let on = RetryPolicy {
            retry_timeouts: true,
            ..RetryPolicy::default()
        };
        let back: RetryPolicy = serde_json::from_str(&serde_json::to_string(&on).unwrap()).unwrap();
        assert_eq!(back, on);
        assert_eq!(serde_json::from_str::<RetryPolicy>(&text).unwrap(), off);
        let wire = v1::RetryPolicy {
            retry_timeouts: true,
            ..Default::default()
        };
        assert!(RetryPolicy::from_wire(&wire, &off).unwrap().retry_timeouts);
        assert!(
            RetryPolicy::from_wire(&v1::RetryPolicy::default(), &on)
                .unwrap()
                .retry_timeouts,
            "the node default applies"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            multiplier: 2.0,
            retry_timeouts: false,
        };
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn states_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_wire(s.to_wire() as i32).unwrap(), s);
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        assert!(TaskState::from_wire(0).is_err());
        assert!(TaskState::from_wire(99).is_err());
    }
}
