//! Diagnostic executors: they exercise the machinery (progress, cancel, retries, restarts).
//! Routes to them exist only when `diagnostics.enabled` is set (the default).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::executor::{ExecContext, ExecError, Executor, decode_params};

/// Returns its params unchanged. With `"usage": {"model", "tokens_in", "tokens_out"}` in its
/// params it also reports that usage, as a model-calling executor would (diagnostics for
/// budgets).
pub struct Echo;

#[async_trait]
impl Executor for Echo {
    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        if let Some(u) = params.get("usage") {
            let usage: crate::Usage = decode_params(u)?;
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
    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: DelegateParams = decode_params(&params)?;
        let sub = p.params.unwrap_or_else(|| Value::Object(Default::default()));
        let result = ctx.delegate(&p.task_type, sub).await?;
        Ok(serde_json::json!({ "task_type": p.task_type, "result": result }))
    }
}
