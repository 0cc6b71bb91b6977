//! Building the JSON Schemas that executors publish for their params
//! ([`Executor::params_schema`](crate::Executor::params_schema)).

use serde_json::{Map, Value, json};

/// An object schema that, like `#[serde(deny_unknown_fields)]`, refuses properties it does not
/// name. `properties` is a list of (name, schema) pairs.
pub fn object(required: &[&str], properties: &[(&str, Value)]) -> Value {
    let props: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": props,
    })
}

/// A non-empty string, described.
pub fn text(description: &str) -> Value {
    json!({ "type": "string", "minLength": 1, "description": description })
}

/// Base64 binary data (a file), described.
pub fn base64(description: &str) -> Value {
    json!({ "type": "string", "contentEncoding": "base64", "minLength": 1, "description": description })
}

/// An integer in `min..=max` with a default.
pub fn integer(min: i64, max: i64, default: i64, description: &str) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max, "default": default, "description": description })
}

/// One of `values`.
pub fn one_of(values: &[&str], description: &str) -> Value {
    json!({ "type": "string", "enum": values, "description": description })
}

/// A number in `min..=max` with a default.
pub fn number(min: f64, max: f64, default: f64, description: &str) -> Value {
    json!({ "type": "number", "minimum": min, "maximum": max, "default": default, "description": description })
}

/// Any string, described.
pub fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}
