//! `sleep`, a diagnostic executor: sleeps with progress, and honours cancel unless told not to
//! (exercises progress events, cooperative and forced cancel, timeouts). Routes to the
//! diagnostic executors exist only when `diagnostics.enabled` is set (the default).

use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::params_schema as schema;

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
