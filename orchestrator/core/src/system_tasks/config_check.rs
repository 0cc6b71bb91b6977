//! `config_check` (`system.config.validate`).

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::system_tasks::view::{NodeCell, node};

/// Largest config text `config_check` takes.
pub const MAX_CONFIG_BYTES: usize = 256 << 10;

/// `config_check`: validates a TOML config, or the node's own config file as it is now on
/// disk (what a reload would apply). An invalid config is a result, not a failure.
pub struct ConfigCheck(pub NodeCell);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigParams {
    #[serde(default)]
    toml: Option<String>,
}

#[async_trait]
impl Executor for ConfigCheck {
    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: ConfigParams = cadre_agents::executor::decode_params(&params)?;
        let (source, loaded) = match p.toml {
            Some(t) if t.len() > MAX_CONFIG_BYTES => {
                return Err(ExecError::InvalidParams(format!(
                    "`toml` is {} bytes; at most {MAX_CONFIG_BYTES}",
                    t.len()
                )));
            }
            Some(t) => ("params", Config::from_toml_str(&t)),
            None => ("node", node(&self.0)?.load_config()),
        };
        let checked = loaded.and_then(|c| c.validate().map(|()| c));
        Ok(match checked {
            Ok(c) => json!({
                "source": source,
                "valid": true,
                "errors": [],
                "routes": c.effective_routes().iter().count(),
                "supervisors": c.supervisors.len(),
            }),
            Err(e) => json!({
                "source": source,
                "valid": false,
                "errors": e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                "routes": 0,
                "supervisors": 0,
            }),
        })
    }

    fn params_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "toml": { "type": "string", "maxLength": MAX_CONFIG_BYTES, "description": "A cadre.toml to check; without it, the node's own config file as it is now" },
            },
            "additionalProperties": false,
        }))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "source": { "enum": ["params", "node"] },
                "valid": { "type": "boolean" },
                "errors": { "type": "array", "items": { "type": "string" } },
                "routes": { "type": "integer", "minimum": 0 },
                "supervisors": { "type": "integer", "minimum": 0 },
            },
            "required": ["source", "valid", "errors", "routes", "supervisors"],
            "additionalProperties": false,
        }))
    }
}
