//! `fail`, a diagnostic executor: fails on purpose, retryable or not (exercises retries).
//! Routes to the diagnostic executors exist only when `diagnostics.enabled` is set (the
//! default).

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::Value;

use crate::support::params_schema as schema;

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
