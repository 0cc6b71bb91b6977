//! `delegate`, a diagnostic executor: runs one sub-task and returns its result (exercises
//! delegation across supervisors and processes). Routes to the diagnostic executors exist only
//! when `diagnostics.enabled` is set (the default).

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
use serde_json::Value;

use crate::support::params_schema as schema;

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
