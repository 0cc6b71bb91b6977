//! Building the JSON Schemas that executors publish for their params
//! ([`Executor::params_schema`](cadre_agents::Executor::params_schema)) and results
//! ([`Executor::result_schema`](cadre_agents::Executor::result_schema)). They use only what
//! [`cadre_agents::schema`] checks.

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

/// A result object: every property is always present and nothing else is.
pub fn record(properties: &[(&str, Value)]) -> Value {
    let names: Vec<&str> = properties.iter().map(|(k, _)| *k).collect();
    object(&names, properties)
}

/// The same schema, also allowing `null` (an `Option` that serialises as null).
pub fn nullable(mut schema: Value) -> Value {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        schema["type"] = json!([t, "null"]);
    }
    schema
}

/// A boolean, described.
pub fn boolean(description: &str) -> Value {
    json!({ "type": "boolean", "description": description })
}

/// A boolean with a default.
pub fn flag(default: bool, description: &str) -> Value {
    json!({ "type": "boolean", "default": default, "description": description })
}

/// A count: an integer of at least 0.
pub fn count(description: &str) -> Value {
    json!({ "type": "integer", "minimum": 0, "description": description })
}

/// An integer in `min..=max`, without a default (results, required params).
pub fn int_range(min: i64, max: i64, description: &str) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max, "description": description })
}

/// Any number, described.
pub fn real(description: &str) -> Value {
    json!({ "type": "number", "description": description })
}

/// A number in `min..=max`, without a default.
pub fn real_range(min: f64, max: f64, description: &str) -> Value {
    json!({ "type": "number", "minimum": min, "maximum": max, "description": description })
}

/// An array of `items`, described.
pub fn array(items: Value, description: &str) -> Value {
    json!({ "type": "array", "items": items, "description": description })
}

/// Any JSON value, described.
pub fn any(description: &str) -> Value {
    json!({ "description": description })
}
