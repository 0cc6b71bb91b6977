//! `fail`, a diagnostic executor: fails on purpose, retryable or not (exercises retries), on
//! every attempt or only on the first few (`succeed_on_attempt`: a retry storm that ends).
//! Routes to the diagnostic executors exist only when `diagnostics.enabled` is set (the
//! default).

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde::Deserialize;
use serde_json::Value;

use crate::support::params_schema as schema;

/// Fails with `message`; `retryable` (default true) decides whether the retry policy applies.
/// With `succeed_on_attempt: n` it fails attempts before the n-th and succeeds from the n-th on,
/// returning `{"attempt": n}`.
pub struct Fail;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailParams {
    #[serde(default = "default_fail_message")]
    message: String,
    #[serde(default = "yes")]
    retryable: bool,
    #[serde(default)]
    succeed_on_attempt: Option<u32>,
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
                (
                    "succeed_on_attempt",
                    schema::count("succeed from this attempt on (default: never)"),
                ),
            ],
        ))
    }

    /// Only with `succeed_on_attempt`: the attempt that succeeded.
    fn result_schema(&self) -> Option<Value> {
        Some(schema::record(&[(
            "attempt",
            schema::count("the attempt that succeeded"),
        )]))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: FailParams = decode_params(&params)?;
        if p.succeed_on_attempt.is_some_and(|n| ctx.attempt >= n) {
            return Ok(serde_json::json!({ "attempt": ctx.attempt }));
        }
        Err(if p.retryable {
            ExecError::Retryable(p.message)
        } else {
            ExecError::Fatal(p.message)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cadre_agents::NoReport;
    use cadre_proto::TaskId;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn attempt(n: u32) -> ExecContext {
        let cancel = CancellationToken::new();
        ExecContext::new(
            TaskId::new(),
            "system.debug.fail".into(),
            n,
            cancel,
            Arc::new(NoReport),
        )
    }

    #[tokio::test]
    async fn succeed_on_attempt_fails_the_attempts_before_it_only() {
        let params = json!({"message": "storm", "succeed_on_attempt": 3});
        for n in 1..3 {
            let err = Fail.execute(attempt(n), params.clone()).await.unwrap_err();
            assert!(matches!(&err, ExecError::Retryable(m) if m == "storm"), "{err:?}");
        }
        let ok = Fail.execute(attempt(3), params.clone()).await.unwrap();
        assert_eq!(ok, json!({"attempt": 3}));
        let never = Fail
            .execute(attempt(9), json!({"retryable": false}))
            .await
            .unwrap_err();
        assert!(matches!(never, ExecError::Fatal(_)), "{never:?}");
    }
}
