//! The `system` supervisor's node tasks: executors that need tier 0's own parts (store, bus,
//! audit chain, config, metrics), so they live here rather than in `cadre-agents`.
//!
//! | executor          | task type                  | what it does |
//! |-------------------|----------------------------|--------------|
//! | `node_health`     | `system.health.node`       | store and bus reachability with latency, readiness |
//! | `metrics_snapshot`| `system.monitor.metrics`   | the node's Prometheus metrics as JSON, optionally by name prefix |
//! | `audit_verify`    | `system.audit.verify`      | checks every link and signature of the audit chain and the signed head |
//! | `config_check`    | `system.config.validate`   | validates a TOML config (given, or the node's own file) |
//!
//! `metrics_snapshot`, `audit_verify` and `config_check` need the supervisor role to submit
//! ([`SUPERVISOR_ONLY`]): they show node-wide state. They reach the node through a cell filled once the node exists. On a supervisor-only node
//! (`--role supervisor`) there is no store, audit chain or intake, and they fail with a clear
//! error: route these types to a supervisor that runs in a tier-0 process.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor, ExecutorRegistry};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::node::Node;
use cadre_store::chain as audit;

/// Most samples a metrics snapshot returns.
pub const MAX_SAMPLES: usize = 5_000;
/// Largest config text `config_check` takes.
pub const MAX_CONFIG_BYTES: usize = 256 << 10;

/// Where the node tasks find the node once it is built.
pub type NodeCell = Arc<OnceLock<Weak<Node>>>;

/// Registers the node tasks' executors, reaching the node through `cell`.
pub fn register(r: &mut ExecutorRegistry, cell: &NodeCell) {
    r.register("node_health", Arc::new(NodeHealth(cell.clone())));
    r.register("metrics_snapshot", Arc::new(MetricsSnapshot));
    r.register("audit_verify", Arc::new(AuditVerify(cell.clone())));
    r.register("config_check", Arc::new(ConfigCheck(cell.clone())));
}

/// Executors whose tasks read node-wide state (every tenant's metrics, the audit chain, the
/// node's config file): submitting them needs the supervisor role, like `/metrics`.
pub const SUPERVISOR_ONLY: [&str; 3] = ["metrics_snapshot", "audit_verify", "config_check"];

/// The node tasks' default routes: (task type, worker kind of `system`, executor).
pub const ROUTES: [(&str, &str, &str); 4] = [
    ("system.health.node", "health", "node_health"),
    ("system.monitor.metrics", "monitor", "metrics_snapshot"),
    ("system.audit.verify", "audit", "audit_verify"),
    ("system.config.validate", "config", "config_check"),
];

fn node(cell: &NodeCell) -> Result<Arc<Node>, ExecError> {
    cell.get().and_then(Weak::upgrade).ok_or_else(|| {
        ExecError::Fatal(
            "this task needs tier 0's store, audit chain and config, and this process has none \
             (a supervisor-only node): route it to a supervisor that runs in a tier-0 process"
                .into(),
        )
    })
}

fn no_params(params: &Value) -> Result<(), ExecError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    cadre_agents::executor::decode_params::<Empty>(params).map(drop)
}

fn empty_params_schema() -> Value {
    json!({ "type": "object", "properties": {}, "additionalProperties": false })
}

/// `node_health`: is the store reachable (and how fast), is the bus connected, is the node
/// ready. An unreachable store is a result (`store_up: false`), not a failure.
pub struct NodeHealth(NodeCell);

#[async_trait]
impl Executor for NodeHealth {
    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        no_params(&params)?;
        let node = node(&self.0)?;
        let started = Instant::now();
        let store = node.store.ping().await;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        let bus_up = node.bus.ready();
        let store_up = store.is_ok();
        Ok(json!({
            "node_id": node.node_id,
            "store_up": store_up,
            "store_latency_ms": (latency * 1000.0).round() / 1000.0,
            "store_error": store.err().map(|e| e.to_string()),
            "bus_up": bus_up,
            // What `Node::ready` (and /ready) answers, from the probes above rather than a
            // second store round trip.
            "ready": store_up && bus_up,
        }))
    }

    fn params_schema(&self) -> Option<Value> {
        Some(empty_params_schema())
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "node_id": { "type": "string" },
                "store_up": { "type": "boolean" },
                "store_latency_ms": { "type": "number", "minimum": 0 },
                "store_error": { "type": ["string", "null"] },
                "bus_up": { "type": "boolean" },
                "ready": { "type": "boolean", "description": "What /ready answers" },
            },
            "required": ["node_id", "store_up", "store_latency_ms", "store_error", "bus_up", "ready"],
            "additionalProperties": false,
        }))
    }
}

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

/// `audit_verify`: `cadre audit verify` as a task, trusting this node's signing key.
pub struct AuditVerify(NodeCell);

#[async_trait]
impl Executor for AuditVerify {
    async fn execute(&self, _ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        no_params(&params)?;
        let node = node(&self.0)?;
        let data_dir = node.config().node.data_dir;
        let pem = std::fs::read_to_string(data_dir.join(audit::NODE_PUBLIC_KEY_FILE))
            .map_err(|e| ExecError::Fatal(format!("cannot read the node public key: {e}")))?;
        let key = audit::public_key(&pem).map_err(|e| ExecError::Fatal(e.to_string()))?;
        let keys = audit::TrustedKeys::new([key]);
        let heads: Vec<audit::SignedHead> = match std::fs::read(data_dir.join(audit::HEAD_FILE)) {
            Ok(bytes) => vec![
                serde_json::from_slice(&bytes)
                    .map_err(|e| ExecError::Fatal(format!("the signed head is not valid JSON: {e}")))?,
            ],
            Err(_) => Vec::new(),
        };
        let records = node
            .store
            .audit_records(None)
            .await
            .map_err(|e| ExecError::Retryable(format!("cannot read the audit chain: {e}")))?;
        let head_seq = heads.first().map(|h| h.seq);
        Ok(match audit::verify(&records, &heads, &keys) {
            Ok(n) => json!({ "intact": true, "records": n, "signed_head_seq": head_seq, "problem": null }),
            Err(t) => {
                json!({ "intact": false, "records": records.len(), "signed_head_seq": head_seq, "problem": t.to_string() })
            }
        })
    }

    fn params_schema(&self) -> Option<Value> {
        Some(empty_params_schema())
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {
                "intact": { "type": "boolean", "description": "Every link and signature is valid and the chain reaches the signed head" },
                "records": { "type": "integer", "minimum": 0 },
                "signed_head_seq": { "type": ["integer", "null"] },
                "problem": { "type": ["string", "null"], "description": "What is wrong, when not intact" },
            },
            "required": ["intact", "records", "signed_head_seq", "problem"],
            "additionalProperties": false,
        }))
    }
}

/// `config_check`: validates a TOML config, or the node's own config file as it is now on
/// disk (what a reload would apply). An invalid config is a result, not a failure.
pub struct ConfigCheck(NodeCell);

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
            None => ("node", node(&self.0)?.source.load()),
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
