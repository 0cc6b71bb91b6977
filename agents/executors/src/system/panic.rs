//! `panic`, a diagnostic executor: panics on purpose, taking its worker down (exercises worker
//! restarts). Routes to the diagnostic executors exist only when `diagnostics.enabled` is set
//! (the default).

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::params_schema as schema;

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
