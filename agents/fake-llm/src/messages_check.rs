//! What Anthropic refuses of a Messages request, for the parts cadre uses: the headers
//! (`x-api-key`, `anthropic-version`), the required members, unknown members, roles, content
//! blocks, the pairing of `tool_use` and `tool_result` blocks, `tools`, `tool_choice`,
//! `temperature` and `output_config`. Messages follow Anthropic's (a path to the member at
//! fault, then what is wrong); each refusal is a 400 `invalid_request_error` (a 401
//! `authentication_error` for a missing key) in Anthropic's error shape.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use serde_json::Value;

/// Why a request is refused: the HTTP status, Anthropic's `error.type` and `error.message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 400 or 401.
    pub status: u16,
    /// `invalid_request_error` or `authentication_error`.
    pub kind: &'static str,
    /// What is wrong, and where.
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        kind: "invalid_request_error",
        message: message.into(),
    }
}

/// Members of the request body Anthropic knows (others get "Extra inputs are not permitted").
const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "metadata",
    "output_config",
    "thinking",
    "service_tier",
];

/// The first thing Anthropic would refuse in the headers and `body`, if any.
pub fn request(headers: &HeaderMap, body: &Value) -> Result<(), Refusal> {
    if headers.get("x-api-key").is_none_or(|k| k.is_empty()) {
        return Err(Refusal {
            status: 401,
            kind: "authentication_error",
            message: "x-api-key header is required".into(),
        });
    }
    match headers.get("anthropic-version").and_then(|v| v.to_str().ok()) {
        None => return Err(invalid("anthropic-version: header is required")),
        Some("2023-06-01" | "2023-01-01") => {}
        Some(v) => return Err(invalid(format!("anthropic-version: invalid version {v:?}"))),
    }
    let Some(obj) = body.as_object() else {
        return Err(invalid("Input should be an object"));
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(format!("{k}: Extra inputs are not permitted")));
    }
    for field in ["model", "max_tokens", "messages"] {
        if !obj.contains_key(field) {
            return Err(invalid(format!("{field}: Field required")));
        }
    }
    if !body["model"].is_string() {
        return Err(invalid("model: Input should be a valid string"));
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n < 1) {
        return Err(invalid("max_tokens: Input should be greater than or equal to 1"));
    }
    if let Some(t) = obj.get("temperature")
        && t.as_f64().is_none_or(|t| !(0.0..=1.0).contains(&t))
    {
        return Err(invalid("temperature: Input should be less than or equal to 1"));
    }
    if obj.get("stream").is_some_and(|s| !s.is_boolean()) {
        return Err(invalid("stream: Input should be a valid boolean"));
    }
    system(&body["system"])?;
    messages(&body["messages"])?;
    let names = tools(body.get("tools"))?;
    tool_choice(body.get("tool_choice"), &names)?;
    if let Some(o) = obj.get("output_config")
        && let Some(f) = o.get("format")
        && (f["type"] != "json_schema" || !f["schema"].is_object())
    {
        return Err(invalid(
            "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}",
        ));
    }
    Ok(())
}

fn text_block(b: &Value, at: &str) -> Result<(), Refusal> {
    match b["text"].as_str() {
        None => Err(invalid(format!("{at}.text: Field required"))),
        Some("") => Err(invalid(format!("{at}: text content blocks must be non-empty"))),
        Some(_) => Ok(()),
    }
}

fn system(v: &Value) -> Result<(), Refusal> {
    match v {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (i, b) in blocks.iter().enumerate() {
                if b["type"] != "text" {
                    return Err(invalid(format!("system.{i}.type: Input should be 'text'")));
                }
                text_block(b, &format!("system.{i}"))?;
            }
            Ok(())
        }
        _ => Err(invalid(
            "system: Input should be a valid string or a list of text blocks",
        )),
    }
}

/// The messages: roles, blocks, and each `tool_use` answered by a `tool_result` in the next
/// message (and no `tool_result` without its `tool_use` in the message before).
fn messages(v: &Value) -> Result<(), Refusal> {
    let Some(list) = v.as_array() else {
        return Err(invalid("messages: Input should be a valid list"));
    };
    if list.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let mut open: BTreeSet<String> = BTreeSet::new();
    for (i, m) in list.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some(r @ ("user" | "assistant")) => r,
            Some("system") => {
                return Err(invalid(
                    "messages: Unexpected role \"system\". The Messages API accepts a top-level \
                     `system` parameter, not \"system\" as an input message role.",
                ));
            }
            _ => {
                return Err(invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )));
            }
        };
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) if s.is_empty() && !(role == "assistant" && i + 1 == list.len()) => {
                return Err(invalid(format!(
                    "messages.{i}: all messages must have non-empty content except for the \
                     optional final assistant message"
                )));
            }
            Value::String(s) => vec![serde_json::json!({"type": "text", "text": s})],
            Value::Array(b) if b.is_empty() => {
                return Err(invalid(format!(
                    "messages.{i}: all messages must have non-empty content except for the \
                     optional final assistant message"
                )));
            }
            Value::Array(b) => b.clone(),
            _ => return Err(invalid(format!("messages.{i}.content: Field required"))),
        };
        let mut answered = BTreeSet::new();
        let mut uses = BTreeSet::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match (b["type"].as_str(), role) {
                (Some("text"), _) if m["content"].is_string() => {}
                (Some("text"), _) => text_block(b, &at)?,
                (Some("image"), "user") => {}
                (Some("tool_use"), "assistant") => {
                    let (Some(id), Some(_)) = (b["id"].as_str(), b["name"].as_str()) else {
                        return Err(invalid(format!("{at}: tool_use needs `id` and `name`")));
                    };
                    if !b["input"].is_object() {
                        return Err(invalid(format!(
                            "{at}.tool_use.input: Input should be a valid dictionary"
                        )));
                    }
                    uses.insert(id.to_string());
                }
                (Some("tool_result"), "user") => {
                    let Some(id) = b["tool_use_id"].as_str() else {
                        return Err(invalid(format!("{at}.tool_use_id: Field required")));
                    };
                    if !open.contains(id) {
                        return Err(invalid(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                             Each `tool_result` block must have a corresponding `tool_use` block \
                             in the previous message."
                        )));
                    }
                    answered.insert(id.to_string());
                }
                (Some(t @ ("tool_use" | "tool_result" | "image")), _) => {
                    return Err(invalid(format!(
                        "{at}: a `{t}` block is not allowed in a message of role {role}"
                    )));
                }
                _ => return Err(invalid(format!("{at}.type: unknown content block type"))),
            }
        }
        if let Some(missing) = open.difference(&answered).next() {
            return Err(invalid(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks \
                 immediately after: {missing}. Each `tool_use` block must have a corresponding \
                 `tool_result` block in the next message."
            )));
        }
        open = uses;
    }
    Ok(())
}

/// The tools' names, checked.
fn tools(v: Option<&Value>) -> Result<Vec<String>, Refusal> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let Some(list) = v.as_array() else {
        return Err(invalid("tools: Input should be a valid list"));
    };
    let mut names = Vec::new();
    for (i, t) in list.iter().enumerate() {
        if t.get("function").is_some() || t.get("type").is_some_and(|k| k == "function") {
            return Err(invalid(format!(
                "tools.{i}: OpenAI's tool shape is not accepted; give name, description and \
                 input_schema"
            )));
        }
        let Some(name) = t["name"].as_str() else {
            return Err(invalid(format!("tools.{i}.name: Field required")));
        };
        if t["input_schema"]["type"] != "object" {
            return Err(invalid(format!(
                "tools.{i}.input_schema.type: Input should be 'object'"
            )));
        }
        if names.iter().any(|n| n == name) {
            return Err(invalid("tools: Tool names must be unique."));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn tool_choice(v: Option<&Value>, names: &[String]) -> Result<(), Refusal> {
    let Some(c) = v else {
        return Ok(());
    };
    match c["type"].as_str() {
        Some("auto" | "any" | "none") => Ok(()),
        Some("tool") => match c["name"].as_str() {
            Some(n) if names.iter().any(|x| x == n) => Ok(()),
            _ => Err(invalid("tool_choice.name: must name one of `tools`")),
        },
        _ => Err(invalid(
            "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
        )),
    }
}
