//! `echo`, a diagnostic executor: returns its params, and reports the usage they name (exercises
//! budgets). Routes to the diagnostic executors exist only when `diagnostics.enabled` is set
//! (the default).

use async_trait::async_trait;
use cadre_agents::executor::{ExecContext, ExecError, Executor, decode_params};
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
