//! Diagnostic executors: they exercise the machinery (progress, cancel, retries, restarts).
//! Routes to them exist only when `diagnostics.enabled` is set (the default).

use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::params_schema as schema;

/// Returns its params (any object) unchanged. With `"usage": {"model", "tokens_in",
/// "tokens_out"}` in its params it also reports that usage, as a model-calling executor would
/// (diagnostics for budgets).
pub struct Echo;

#[async_trait]
impl Executor for Echo {
    fn params_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "description": "any object; it comes back as the result",
            "properties": {
                "usage": {
                    "type": "object",
                    "description": "tokens to report as used, as a model-calling executor would",
                    "required": ["model", "tokens_in", "tokens_out"],
                    "properties": {
                        "model": schema::text("the model (a key of the node's price table)"),
                        "tokens_in": schema::count("prompt tokens"),
                        "tokens_out": schema::count("completion tokens"),
                    },
                },
            },
        }))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({ "type": "object", "description": "the params, unchanged" }))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        if let Some(u) = params.get("usage") {
            let usage: cadre_agents::Usage = decode_params(u)?;
            ctx.usage(usage);
        }
        Ok(params)
    }
}

/// Longest sleep accepted, so a diagnostic cannot hold a worker for days.
const MAX_SLEEP_MS: u64 = 3_600_000;

/// Sleeps for `ms`, reporting progress about ten times; stops early when cancelled unless
/// `ignore_cancel` is set (which exercises the forced-cancel path).
pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepParams {
    ms: u64,
    #[serde(default)]
    ignore_cancel: bool,
}

#[async_trait]
impl Executor for Sleep {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["ms"],
            &[
                (
                    "ms",
                    schema::int_range(0, MAX_SLEEP_MS as i64, "how long to sleep"),
                ),
                (
                    "ignore_cancel",
                    schema::flag(false, "keep sleeping when cancelled (exercises forced cancel)"),
                ),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[(
            "slept_ms",
            schema::int_range(0, MAX_SLEEP_MS as i64, "how long it slept"),
        )]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: SleepParams = decode_params(&params)?;
        if p.ms > MAX_SLEEP_MS {
            return Err(ExecError::InvalidParams(format!(
                "ms must be at most {MAX_SLEEP_MS}"
            )));
        }
        let steps = 10u64;
        let step = Duration::from_millis(p.ms / steps);
        for i in 1..=steps {
            if p.ignore_cancel {
                tokio::time::sleep(step).await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
                }
            }
            if i < steps && !step.is_zero() {
                ctx.progress(
                    i as f64 / steps as f64,
                    format!("slept {} of {} ms", step.as_millis() as u64 * i, p.ms),
                );
            }
        }
        Ok(json!({ "slept_ms": p.ms }))
    }
}

/// Fails with `message`; `retryable` (default true) decides whether the retry policy applies.
pub struct Fail;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailParams {
    #[serde(default = "default_fail_message")]
    message: String,
    #[serde(default = "yes")]
    retryable: bool,
}

fn default_fail_message() -> String {
    "failed on purpose (system.debug.fail)".into()
}

fn yes() -> bool {
    true
}

#[async_trait]
impl Executor for Fail {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &[],
            &[
                (
                    "message",
                    schema::string("the error (default: failed on purpose)"),
                ),
                (
                    "retryable",
                    schema::flag(true, "whether the retry policy applies"),
                ),
            ],
        ))
    }

    /// `false`: it never succeeds, so no result is valid.
    fn result_schema(&self) -> Option<Value> {
        Some(Value::Bool(false))
    }

    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: FailParams = decode_params(&params)?;
        Err(if p.retryable {
            ExecError::Retryable(p.message)
        } else {
            ExecError::Fatal(p.message)
        })
    }
}

/// Panics, taking its worker down, while the attempt number is below `until_attempt`
/// (default: always); then returns `{"survived_attempt": n}`.
pub struct Panic;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PanicParams {
    #[serde(default)]
    until_attempt: Option<u32>,
}

#[async_trait]
impl Executor for Panic {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &[],
            &[(
                "until_attempt",
                schema::int_range(
                    0,
                    i64::from(u32::MAX),
                    "the first attempt that survives (default: none does)",
                ),
            )],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[(
            "survived_attempt",
            schema::int_range(1, i64::from(u32::MAX), "the attempt that survived"),
        )]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: PanicParams = decode_params(&params)?;
        match p.until_attempt {
            Some(n) if ctx.attempt >= n => Ok(json!({ "survived_attempt": ctx.attempt })),
            _ => panic!(
                "system.debug.panic: attempt {} of task {} panics on purpose",
                ctx.attempt, ctx.task_id
            ),
        }
    }
}

/// Delegates a sub-task (`task_type`, `params`) and returns its result (diagnostics: exercises
/// delegation across supervisors and processes).
pub struct Delegating;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateParams {
    task_type: String,
    #[serde(default)]
    params: Option<Value>,
}

#[async_trait]
impl Executor for Delegating {
    fn params_schema(&self) -> Option<Value> {
        Some(schema::object(
            &["task_type"],
            &[
                ("task_type", schema::text("the sub-task's type")),
                ("params", schema::any("the sub-task's params (default {})")),
            ],
        ))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[
            ("task_type", schema::text("the sub-task's type")),
            ("result", schema::any("the sub-task's result")),
        ]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: DelegateParams = decode_params(&params)?;
        let sub = p.params.unwrap_or_else(|| Value::Object(Default::default()));
        let result = ctx.delegate(&p.task_type, sub).await?;
        Ok(serde_json::json!({ "task_type": p.task_type, "result": result }))
    }
}
