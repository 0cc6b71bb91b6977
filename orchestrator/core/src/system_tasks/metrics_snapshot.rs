//! `metrics_snapshot` (`system.monitor.metrics`).

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Most samples a metrics snapshot returns.
pub const MAX_SAMPLES: usize = 5_000;

/// `metrics_snapshot`: the node's metrics (what `/metrics` serves) as JSON samples.
pub struct MetricsSnapshot;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsParams {
    #[serde(default)]
    prefix: String,
}

/// One `name{labels} value` line of the Prometheus text format; None for comments, blank
/// lines and anything malformed.
fn parse_sample(line: &str) -> Option<(String, Map<String, Value>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Map::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '}' => {
                    let at = chars.next().map_or(body.len(), |(i, _)| i);
                    rest = &body[at..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    let (_, q) = chars.next()?;
                    if q != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), Value::String(value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.to_string(), labels, value))
}

#[async_trait]
impl Executor for MetricsSnapshot {
    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        let p: MetricsParams = cadre_agents::executor::decode_params(&params)?;
        let text = crate::telemetry::render_metrics();
        let mut samples = Vec::new();
        let mut truncated = false;
        for (name, labels, value) in text.lines().filter_map(parse_sample) {
            if !name.starts_with(&p.prefix) {
                continue;
            }
            if samples.len() == MAX_SAMPLES {
                truncated = true;
                break;
            }
            // JSON has no infinities or NaN: those become strings.
            let value = if value.is_finite() {
                json!(value)
            } else {
                json!(value.to_string())
            };
            samples.push(json!({ "name": name, "labels": labels, "value": value }));
        }
        Ok(json!({ "samples": samples, "truncated": truncated }))
    }

    fn params_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "prefix": { "type": "string", "maxLength": 200, "description": "Only metrics whose name starts with this (e.g. cadre_tasks)" },
            },
            "additionalProperties": false,
        }))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "samples": {
                    "type": "array",
                    "maxItems": MAX_SAMPLES,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string" },
                            "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                            "value": { "type": ["number", "string"], "description": "A string only for +Inf, -Inf and NaN" },
                        },
                        "required": ["name", "labels", "value"],
                        "additionalProperties": false,
                    },
                },
                "truncated": { "type": "boolean", "description": "More than the sample cap matched" },
            },
            "required": ["samples", "truncated"],
            "additionalProperties": false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_lines_parse() {
        let (n, l, v) =
            parse_sample(r#"cadre_tasks_total{state="SUCCEEDED",task_type="a,b \"c\""} 42"#).unwrap();
        assert_eq!((n.as_str(), v), ("cadre_tasks_total", 42.0));
        assert_eq!(l["state"], "SUCCEEDED");
        assert_eq!(l["task_type"], "a,b \"c\"");
        let (n, l, v) = parse_sample("cadre_up 1").unwrap();
        assert_eq!((n.as_str(), l.len(), v), ("cadre_up", 0, 1.0));
        let (_, _, v) = parse_sample(r#"x_bucket{le="+Inf"} +Inf"#).unwrap();
        assert!(v.is_infinite());
        for bad in ["# HELP x y", "", "x{a=\"1\"", "x{a=1} 2", "x notanumber", "x"] {
            assert!(parse_sample(bad).is_none(), "{bad}");
        }
    }
}
