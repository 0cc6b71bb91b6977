//! A small JSON Schema validator for the subset of draft 2020-12 that cadre's executors publish
//! ([`Executor::params_schema`](crate::Executor::params_schema) and
//! [`Executor::result_schema`](crate::Executor::result_schema)).
//!
//! Supported keywords: `type` (one name or an array of names; `integer`, `number`, `string`,
//! `boolean`, `object`, `array`, `null`), `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength` (in characters), `items`,
//! `minItems`, `maxItems`, `properties`, `required` and `additionalProperties` (a boolean or a
//! schema), plus the boolean schemas `true` and `false`. Annotations (`description`,
//! `default`, `title`, `examples`, `contentEncoding`, ...) are ignored; so is any other keyword,
//! which is why [`unsupported_keywords`] exists: the built-in schemas are tested to use none.
//!
//! One deliberate difference from the specification: `integer` means a JSON number written
//! without a fraction or exponent. `1.0` is not an integer here, because the executors decode
//! params with serde, which refuses it for an integer field.
//!
//! Errors name the failing value by its JSON Pointer (RFC 6901), e.g.
//! `/max_side: 5000 is above the maximum 1024` or `/image_base64: is required`.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

/// Why a value does not fit a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// JSON Pointer to the failing value (`/a/0/b`); empty for the document itself.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for SchemaError {}

/// Keywords the validator checks.
pub const ASSERTIONS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "additionalProperties",
];

/// Keywords that only describe and are ignored.
pub const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "default",
    "examples",
    "contentEncoding",
    "contentMediaType",
];

/// Checks `value` against `schema`; the error names the first failing value found.
pub fn validate(schema: &Value, value: &Value) -> Result<(), SchemaError> {
    check(schema, value, "")
}

/// Keywords of `schema` (and of its sub-schemas) that are neither checked ([`ASSERTIONS`]) nor
/// annotations ([`ANNOTATIONS`]), each with the pointer of the schema it is in; empty when the
/// validator understands all of it.
pub fn unsupported_keywords(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_keywords(schema, "", &mut out);
    out.sort();
    out
}

fn walk_keywords(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Value::Object(s) = schema else {
        return;
    };
    for (k, v) in s {
        if !ASSERTIONS.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
            out.push(format!("{at}/{k}"));
        }
        match k.as_str() {
            "properties" => {
                for (name, sub) in v.as_object().into_iter().flatten() {
                    walk_keywords(sub, &format!("{at}/properties/{}", escape(name)), out);
                }
            }
            "items" | "additionalProperties" => walk_keywords(v, &format!("{at}/{k}"), out),
            _ => {}
        }
    }
}

/// One path segment, escaped as RFC 6901 requires.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn fail(path: &str, message: impl Into<String>) -> Result<(), SchemaError> {
    Err(SchemaError {
        path: path.to_string(),
        message: message.into(),
    })
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail(path, "no value is allowed here"),
        Value::Object(s) => s,
        _ => return fail(path, "the schema is neither an object nor a boolean"),
    };
    if let Some(t) = s.get("type") {
        check_type(t, value, path)?;
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        return fail(path, format!("{} is not one of {}", show(value), list.join(", ")));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return fail(path, format!("{} is not {}", show(value), show(c)));
    }
    match value {
        Value::Number(n) => check_number(s, n, path),
        Value::String(text) => check_string(s, text, path),
        Value::Array(items) => check_array(s, items, path),
        Value::Object(members) => check_object(s, members, path),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

/// Whether `value` is of the JSON Schema type `name`.
fn is_type(value: &Value, name: &str) -> bool {
    match (name, value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// `an integer`, `a string`, `null`.
fn with_article(name: &str) -> String {
    match name {
        "null" => "null".into(),
        n if n.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {n}"),
        n => format!("a {n}"),
    }
}

/// What a value is, for messages.
fn kind(value: &Value) -> String {
    with_article(match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

/// A value in a message, cut short when long (a base64 image has no place in an error).
fn show(value: &Value) -> String {
    const MAX: usize = 40;
    let s = value.to_string();
    if s.chars().count() <= MAX {
        s
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

fn check_type(t: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
    let names: Vec<&str> = match t {
        Value::String(n) => vec![n.as_str()],
        Value::Array(ns) => ns.iter().filter_map(Value::as_str).collect(),
        _ => return fail(path, "the schema's type is neither a name nor an array of names"),
    };
    if names.iter().any(|n| is_type(value, n)) {
        return Ok(());
    }
    let expected: Vec<String> = names.iter().map(|n| with_article(n)).collect();
    fail(
        path,
        format!("expected {}, got {}", expected.join(" or "), kind(value)),
    )
}

/// Compares two JSON numbers exactly when both are integers, else as floats.
fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn check_number(s: &Map<String, Value>, n: &Number, path: &str) -> Result<(), SchemaError> {
    let bound = |k: &str| s.get(k).and_then(Value::as_number);
    if let Some(min) = bound("minimum")
        && compare(n, min) == Some(Ordering::Less)
    {
        return fail(path, format!("{n} is below the minimum {min}"));
    }
    if let Some(max) = bound("maximum")
        && compare(n, max) == Some(Ordering::Greater)
    {
        return fail(path, format!("{n} is above the maximum {max}"));
    }
    if let Some(min) = bound("exclusiveMinimum")
        && compare(n, min) != Some(Ordering::Greater)
    {
        return fail(path, format!("{n} is not above {min}"));
    }
    if let Some(max) = bound("exclusiveMaximum")
        && compare(n, max) != Some(Ordering::Less)
    {
        return fail(path, format!("{n} is not below {max}"));
    }
    Ok(())
}

fn check_string(s: &Map<String, Value>, text: &str, path: &str) -> Result<(), SchemaError> {
    let len = text.chars().count() as u64;
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        return fail(
            path,
            if len == 0 {
                format!("is empty; the minimum length is {min}")
            } else {
                format!("is {len} characters long, shorter than the minimum {min}")
            },
        );
    }
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        return fail(
            path,
            format!("is {len} characters long, longer than the maximum {max}"),
        );
    }
    Ok(())
}

fn check_array(s: &Map<String, Value>, items: &[Value], path: &str) -> Result<(), SchemaError> {
    let len = items.len() as u64;
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        return fail(path, format!("has {len} items, fewer than the minimum {min}"));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        return fail(path, format!("has {len} items, more than the maximum {max}"));
    }
    if let Some(item) = s.get("items") {
        for (i, v) in items.iter().enumerate() {
            check(item, v, &format!("{path}/{i}"))?;
        }
    }
    Ok(())
}

fn check_object(s: &Map<String, Value>, members: &Map<String, Value>, path: &str) -> Result<(), SchemaError> {
    let empty = Map::new();
    let properties = s.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    for name in s.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = name.as_str()
            && !members.contains_key(name)
        {
            return fail(&format!("{path}/{}", escape(name)), "is required");
        }
    }
    for (name, v) in members {
        let at = format!("{path}/{}", escape(name));
        if let Some(sub) = properties.get(name) {
            check(sub, v, &at)?;
            continue;
        }
        match s.get("additionalProperties") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                return fail(
                    &at,
                    if known.is_empty() {
                        "is not allowed (no properties are)".to_string()
                    } else {
                        format!("is not allowed (known: {})", known.join(", "))
                    },
                );
            }
            Some(extra) => check(extra, v, &at)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The error of validating `value` against `schema`, as a string ("" when it fits).
    fn err(schema: Value, value: Value) -> String {
        validate(&schema, &value)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn type_names_and_arrays() {
        let cases = [
            ("integer", json!(3), true),
            ("integer", json!(-3), true),
            ("integer", json!(u64::MAX), true),
            ("integer", json!(3.0), false),
            ("integer", json!(3.5), false),
            ("number", json!(3), true),
            ("number", json!(3.5), true),
            ("number", json!("3"), false),
            ("string", json!("x"), true),
            ("string", json!(1), false),
            ("boolean", json!(false), true),
            ("boolean", json!(0), false),
            ("object", json!({}), true),
            ("object", json!([]), false),
            ("array", json!([1]), true),
            ("array", json!({}), false),
            ("null", json!(null), true),
            ("null", json!(0), false),
        ];
        for (t, v, ok) in cases {
            assert_eq!(err(json!({ "type": t }), v.clone()).is_empty(), ok, "{t} {v}");
        }
        assert_eq!(
            err(json!({ "type": "integer" }), json!("7")),
            "expected an integer, got a string"
        );
        assert_eq!(
            err(json!({ "type": "object" }), json!(null)),
            "expected an object, got null"
        );
        let nullable = json!({ "type": ["integer", "null"] });
        assert_eq!(err(nullable.clone(), json!(null)), "");
        assert_eq!(err(nullable.clone(), json!(4)), "");
        assert_eq!(
            err(nullable, json!(4.5)),
            "expected an integer or null, got a number"
        );
    }

    #[test]
    fn enum_and_const() {
        let e = json!({ "enum": ["brief", "full"] });
        assert_eq!(err(e.clone(), json!("full")), "");
        assert_eq!(err(e, json!("huge")), r#""huge" is not one of "brief", "full""#);
        let c = json!({ "const": 3 });
        assert_eq!(err(c.clone(), json!(3)), "");
        assert_eq!(err(c, json!(4)), "4 is not 3");
    }

    #[test]
    fn numeric_bounds() {
        let s = json!({ "type": "integer", "minimum": 1, "maximum": 4096 });
        assert_eq!(err(s.clone(), json!(1)), "");
        assert_eq!(err(s.clone(), json!(4096)), "");
        assert_eq!(err(s.clone(), json!(0)), "0 is below the minimum 1");
        assert_eq!(err(s.clone(), json!(5000)), "5000 is above the maximum 4096");
        assert_eq!(err(s, json!(-1)), "-1 is below the minimum 1");
        let f = json!({ "type": "number", "minimum": -120.0, "maximum": 0.0 });
        assert_eq!(err(f.clone(), json!(-50)), "");
        assert_eq!(
            err(f.clone(), json!(-120.5)),
            "-120.5 is below the minimum -120.0"
        );
        assert_eq!(err(f, json!(0.25)), "0.25 is above the maximum 0.0");
        // Integers compare exactly, even beyond what a float holds.
        let big = json!({ "maximum": u64::MAX - 1 });
        assert_eq!(err(big.clone(), json!(u64::MAX - 1)), "");
        assert!(!err(big, json!(u64::MAX)).is_empty());
        let x = json!({ "exclusiveMinimum": 0, "exclusiveMaximum": 1 });
        assert_eq!(err(x.clone(), json!(0.5)), "");
        assert_eq!(err(x.clone(), json!(0)), "0 is not above 0");
        assert_eq!(err(x, json!(1)), "1 is not below 1");
    }

    #[test]
    fn string_lengths_count_characters() {
        let s = json!({ "type": "string", "minLength": 1, "maxLength": 3 });
        assert_eq!(err(s.clone(), json!("abc")), "");
        assert_eq!(err(s.clone(), json!("äöü")), "");
        assert_eq!(err(s.clone(), json!("")), "is empty; the minimum length is 1");
        assert_eq!(
            err(s.clone(), json!("abcd")),
            "is 4 characters long, longer than the maximum 3"
        );
        let two = json!({ "minLength": 2 });
        assert_eq!(
            err(two, json!("a")),
            "is 1 characters long, shorter than the minimum 2"
        );
        // Length keywords apply to strings only.
        assert_eq!(err(json!({ "maxLength": 1 }), json!(12345)), "");
    }

    #[test]
    fn arrays_and_items() {
        let s = json!({
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": { "type": "integer", "minimum": 0, "maximum": 255 },
        });
        assert_eq!(err(s.clone(), json!([0, 255])), "");
        assert_eq!(err(s.clone(), json!([])), "has 0 items, fewer than the minimum 1");
        assert_eq!(
            err(s.clone(), json!([1, 2, 3, 4])),
            "has 4 items, more than the maximum 3"
        );
        assert_eq!(
            err(s.clone(), json!([1, 256])),
            "/1: 256 is above the maximum 255"
        );
        assert_eq!(err(s, json!([1, "x"])), "/1: expected an integer, got a string");
    }

    #[test]
    fn objects_required_properties_and_additional() {
        let s = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["image_base64"],
            "properties": {
                "image_base64": { "type": "string", "minLength": 1 },
                "max_side": { "type": "integer", "minimum": 1, "maximum": 4096 },
            },
        });
        assert_eq!(err(s.clone(), json!({ "image_base64": "aGk=" })), "");
        assert_eq!(
            err(s.clone(), json!({ "max_side": 5 })),
            "/image_base64: is required"
        );
        assert_eq!(
            err(s.clone(), json!({ "image_base64": "x", "max_side": 5000 })),
            "/max_side: 5000 is above the maximum 4096"
        );
        assert_eq!(
            err(s.clone(), json!({ "image_base64": "x", "colour": 1 })),
            "/colour: is not allowed (known: image_base64, max_side)"
        );
        assert_eq!(err(s, json!([])), "expected an object, got an array");
        // Open objects take anything; a schema for additional properties checks each of them.
        let open = json!({ "type": "object", "properties": { "a": { "type": "integer" } } });
        assert_eq!(err(open.clone(), json!({ "a": 1, "b": "anything" })), "");
        assert_eq!(
            err(open, json!({ "a": "1" })),
            "/a: expected an integer, got a string"
        );
        let typed = json!({ "additionalProperties": { "type": "boolean" } });
        assert_eq!(err(typed.clone(), json!({ "x": true })), "");
        assert_eq!(
            err(typed, json!({ "x": 1 })),
            "/x: expected a boolean, got an integer"
        );
        let closed = json!({ "additionalProperties": false });
        assert_eq!(
            err(closed, json!({ "x": 1 })),
            "/x: is not allowed (no properties are)"
        );
    }

    #[test]
    fn paths_nest_and_escape() {
        let s = json!({
            "properties": {
                "a/b": { "properties": { "c~d": { "items": { "required": ["e"] } } } },
            },
        });
        assert_eq!(
            err(s.clone(), json!({ "a/b": { "c~d": [{ "e": 1 }, {}] } })),
            "/a~1b/c~0d/1/e: is required"
        );
        let e = validate(&s, &json!({ "a/b": { "c~d": [{}] } })).unwrap_err();
        assert_eq!(e.path, "/a~1b/c~0d/0/e");
        assert_eq!(e.message, "is required");
    }

    #[test]
    fn boolean_schemas_and_annotations() {
        assert_eq!(err(json!(true), json!({ "any": [1] })), "");
        assert_eq!(err(json!(false), json!(1)), "no value is allowed here");
        let annotated = json!({
            "type": "string",
            "description": "d",
            "default": "x",
            "contentEncoding": "base64",
        });
        assert_eq!(err(annotated.clone(), json!("not base64 at all!")), "");
        assert!(unsupported_keywords(&annotated).is_empty());
        assert_eq!(
            unsupported_keywords(&json!({
                "pattern": "^a",
                "properties": { "x": { "format": "email" } },
                "items": { "oneOf": [] },
            })),
            vec!["/items/oneOf", "/pattern", "/properties/x/format"]
        );
        assert_eq!(
            err(json!(3), json!(1)),
            "the schema is neither an object nor a boolean"
        );
    }

    #[test]
    fn long_values_are_cut_short_in_messages() {
        let long = "A".repeat(1000);
        let e = err(json!({ "enum": ["x"] }), json!(long));
        assert!(e.len() < 80, "{e}");
        assert!(e.contains("AAAA..."), "{e}");
    }
}
