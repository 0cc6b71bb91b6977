//! JSON Schema (draft 2020-12) for params, results and workflow inputs, through the
//! `jsonschema` crate: every keyword of the draft (`$ref`, `oneOf`/`anyOf`/`allOf`, `pattern`,
//! `format` as an assertion, `if`/`then`/`else`, ...), no remote `$ref` fetching.
//!
//! What this module adds to the crate: errors in cadre's words, naming the failing value by its
//! JSON Pointer (RFC 6901), e.g. `/max_side: 5000 is above the maximum 1024` or
//! `/image_base64: is required`; compiled schemas to reuse ([`Schema`]); and one deliberate
//! difference from the specification, kept from cadre's first validator: `integer` means a JSON
//! number written without a fraction or exponent. `1.0` is not an integer here, because the
//! executors decode params with serde, which refuses it for an integer field.

use std::fmt;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

/// Why a value does not fit a schema (or a schema is not one).
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

/// A compiled schema, to check many values against (intake compiles each executor's params
/// schema once).
pub struct Schema {
    raw: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").field("raw", &self.raw).finish()
    }
}

impl Schema {
    /// Compiles `schema` (draft 2020-12, formats asserted); an invalid schema is an error
    /// saying why.
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        if !(schema.is_object() || schema.is_boolean()) {
            return Err(SchemaError {
                path: String::new(),
                message: "the schema is neither an object nor a boolean".into(),
            });
        }
        check_schema(schema)?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| SchemaError {
                path: String::new(),
                message: format!("not a valid schema: {e}"),
            })?;
        Ok(Schema {
            raw: schema.clone(),
            validator,
        })
    }

    /// The schema as given.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Checks `value`; the error names the first failing value found.
    pub fn validate(&self, value: &Value) -> Result<(), SchemaError> {
        if let Some(e) = self.validator.iter_errors(value).next() {
            return Err(explain(&self.raw, value, &e));
        }
        strict_integers(&self.raw, value, "")
    }
}

/// Checks `value` against `schema` (compiled for this one check).
pub fn validate(schema: &Value, value: &Value) -> Result<(), SchemaError> {
    Schema::compile(schema)?.validate(value)
}

/// Checks that `schema` is a valid draft 2020-12 schema (against the meta-schema).
pub fn check_schema(schema: &Value) -> Result<(), SchemaError> {
    jsonschema::draft202012::meta::validate(schema).map_err(|e| SchemaError {
        path: String::new(),
        message: format!(
            "not a valid JSON Schema: {}{}",
            location(e.instance_path().as_str()),
            e
        ),
    })
}

fn location(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("at {path}: ")
    }
}

/// One `jsonschema` error in cadre's words.
fn explain(schema: &Value, root: &Value, e: &jsonschema::ValidationError<'_>) -> SchemaError {
    let path = e.instance_path().as_str().to_string();
    let value = e.instance();
    let keyword = || schema.pointer(e.schema_path().as_str());
    let at = |path: String, message: String| SchemaError { path, message };
    match e.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            at(format!("{path}/{}", escape(&name)), "is required".into())
        }
        ValidationErrorKind::FalseSchema if e.schema_path().as_str().ends_with("/additionalProperties") => {
            // `additionalProperties: false` without `properties` reports the value, not where
            // it is: find the first member of the object that no property names.
            let parent = e.schema_path().as_str().trim_end_matches("/additionalProperties");
            let known = schema
                .pointer(parent)
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            let name = root
                .pointer(&path)
                .and_then(Value::as_object)
                .and_then(|o| {
                    o.keys()
                        .find(|k| known.is_none_or(|p| !p.contains_key(*k)))
                        .cloned()
                })
                .unwrap_or_default();
            unexpected_property(schema, e, path, name)
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let name = unexpected.first().cloned().unwrap_or_default();
            unexpected_property(schema, e, path, name)
        }

        ValidationErrorKind::Type { .. } => {
            let expected = keyword().map(type_names).unwrap_or_else(|| "another type".into());
            at(path, format!("expected {expected}, got {}", kind(value)))
        }
        ValidationErrorKind::Enum { options } => {
            let list: Vec<String> = options.as_array().into_iter().flatten().map(show).collect();
            at(path, format!("{} is not one of {}", show(value), list.join(", ")))
        }
        ValidationErrorKind::Constant { expected_value } => {
            at(path, format!("{} is not {}", show(value), show(expected_value)))
        }
        ValidationErrorKind::Minimum { limit } => {
            at(path, format!("{} is below the minimum {limit}", show(value)))
        }
        ValidationErrorKind::Maximum { limit } => {
            at(path, format!("{} is above the maximum {limit}", show(value)))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            at(path, format!("{} is not above {limit}", show(value)))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            at(path, format!("{} is not below {limit}", show(value)))
        }
        ValidationErrorKind::MinLength { .. }
        | ValidationErrorKind::MaxLength { .. }
        | ValidationErrorKind::MinItems { .. }
        | ValidationErrorKind::MaxItems { .. } => at(path, size_message(e.kind(), value)),
        ValidationErrorKind::FalseSchema => at(path, "no value is allowed here".into()),
        ValidationErrorKind::Pattern { pattern } => at(
            path,
            format!("{} does not match the pattern {pattern:?}", show(value)),
        ),
        ValidationErrorKind::Format { format } => {
            at(path, format!("{} is not a valid {format}", show(value)))
        }
        ValidationErrorKind::AnyOf { .. } => {
            at(path, format!("{} fits none of the schemas of anyOf", show(value)))
        }
        ValidationErrorKind::OneOfNotValid { .. } => {
            at(path, format!("{} fits none of the schemas of oneOf", show(value)))
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => at(
            path,
            format!("{} fits more than one of the schemas of oneOf", show(value)),
        ),
        _ => at(path, e.to_string()),
    }
}

/// A length or item-count error in words.
fn size_message(kind: &ValidationErrorKind, value: &Value) -> String {
    let chars = value.as_str().map_or(0, |s| s.chars().count());
    let items = value.as_array().map_or(0, Vec::len);
    match kind {
        ValidationErrorKind::MinLength { limit } if chars == 0 => {
            format!("is empty; the minimum length is {limit}")
        }
        ValidationErrorKind::MinLength { limit } => {
            format!("is {chars} characters long, shorter than the minimum {limit}")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("is {chars} characters long, longer than the maximum {limit}")
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("has {items} items, fewer than the minimum {limit}")
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("has {items} items, more than the maximum {limit}")
        }
        other => format!("{other:?}"),
    }
}

/// "is not allowed" for member `name` of the object at `path`, naming the known properties.
fn unexpected_property(
    schema: &Value,
    e: &jsonschema::ValidationError<'_>,
    path: String,
    name: String,
) -> SchemaError {
    let known: Vec<String> = e
        .schema_path()
        .as_str()
        .strip_suffix("/additionalProperties")
        .and_then(|parent| schema.pointer(parent))
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let message = if known.is_empty() {
        "is not allowed (no properties are)".to_string()
    } else {
        format!("is not allowed (known: {})", known.join(", "))
    };
    SchemaError {
        path: format!("{path}/{}", escape(&name)),
        message,
    }
}

/// The expected type(s) of a `type` keyword, in words: `an integer or null`.
fn type_names(t: &Value) -> String {
    match t {
        Value::String(n) => with_article(n),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(with_article)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "another type".into(),
    }
}

/// Refuses a number with a fraction or exponent (`1.0`) where the schema says `integer` and
/// not `number` (see the module docs), following `properties`, `additionalProperties` and
/// `items`.
fn strict_integers(schema: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if let Value::Number(n) = value
        && !(n.is_i64() || n.is_u64())
        && let Some(t) = s.get("type")
    {
        let names: Vec<&str> = match t {
            Value::String(n) => vec![n.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if names.contains(&"integer") && !names.contains(&"number") {
            return Err(SchemaError {
                path: path.to_string(),
                message: format!("expected {}, got a number", type_names(t)),
            });
        }
    }
    match value {
        Value::Object(members) => {
            let props = s.get("properties").and_then(Value::as_object);
            for (k, v) in members {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or_else(|| s.get("additionalProperties"));
                if let Some(sub) = sub {
                    strict_integers(sub, v, &format!("{path}/{}", escape(k)))?;
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    strict_integers(sub, v, &format!("{path}/{i}"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// One path segment, escaped as RFC 6901 requires.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
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
        assert_eq!(
            err(json!(3), json!(1)),
            "the schema is neither an object nor a boolean"
        );
    }

    #[test]
    fn the_whole_draft_is_checked() {
        let s = json!({
            "$defs": { "id": { "type": "string", "pattern": "^T-[0-9]+$" } },
            "type": "object",
            "properties": {
                "ticket": { "$ref": "#/$defs/id" },
                "email": { "type": "string", "format": "email" },
                "size": { "oneOf": [{ "type": "integer" }, { "enum": ["small", "large"] }] },
                "at": { "anyOf": [{ "type": "null" }, { "type": "string", "format": "date-time" }] },
            },
        });
        assert_eq!(
            err(
                s.clone(),
                json!({ "ticket": "T-12", "email": "a@b.example", "size": "small", "at": null })
            ),
            ""
        );
        assert_eq!(
            err(s.clone(), json!({ "ticket": "x-12" })),
            "/ticket: \"x-12\" does not match the pattern \"^T-[0-9]+$\""
        );
        assert_eq!(
            err(s.clone(), json!({ "email": "nope" })),
            "/email: \"nope\" is not a valid email"
        );
        assert_eq!(
            err(s.clone(), json!({ "size": "huge" })),
            "/size: \"huge\" fits none of the schemas of oneOf"
        );
        assert_eq!(
            err(s, json!({ "at": "yesterday" })),
            "/at: \"yesterday\" fits none of the schemas of anyOf"
        );
    }

    #[test]
    fn invalid_schemas_are_refused_with_the_reason() {
        let e = check_schema(&json!({ "type": "nope" })).unwrap_err();
        assert!(e.message.starts_with("not a valid JSON Schema"), "{e}");
        assert!(check_schema(&json!({ "type": ["string", "null"], "minLength": 1 })).is_ok());
        assert!(validate(&json!({ "minimum": "one" }), &json!(1)).is_err());
        let compiled = Schema::compile(&json!({ "type": "integer", "maximum": 3 })).unwrap();
        assert!(compiled.validate(&json!(3)).is_ok());
        assert_eq!(
            compiled.validate(&json!(4)).unwrap_err().to_string(),
            "4 is above the maximum 3"
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
