//! What OpenAI refuses of a chat-completions request, for the parts cadre uses: messages and
//! their roles, assistant `tool_calls` and the `tool` messages answering them, `tools`,
//! `tool_choice` and `stream_options`. The messages follow OpenAI's error messages (typos
//! included), each naming the `param` at fault.

use std::collections::BTreeSet;

use serde_json::Value;

/// Most tools a request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

/// Why a request is refused: OpenAI's `message`, `param` and `code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong.
    pub message: String,
    /// Where (`messages.[2].tool_call_id`, `tools[0].function.name`, ...).
    pub param: Option<String>,
    /// OpenAI's error code, when it gives one.
    pub code: Option<&'static str>,
}

fn refuse(message: impl Into<String>, param: impl Into<String>, code: Option<&'static str>) -> Refusal {
    Refusal {
        message: message.into(),
        param: Some(param.into()),
        code,
    }
}

fn missing(param: String) -> Refusal {
    refuse(
        format!("Missing required parameter: '{param}'."),
        param,
        Some("missing_required_parameter"),
    )
}

fn wrong_type(param: String, expected: &str, v: &Value) -> Refusal {
    let got = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    refuse(
        format!("Invalid type for '{param}': expected {expected}, but got {got} instead."),
        param,
        Some("invalid_type"),
    )
}

/// A string member `key` of `obj`, required.
fn string<'a>(obj: &'a Value, key: &str, param: String) -> Result<&'a str, Refusal> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(missing(param)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(param, "a string", other)),
    }
}

/// The first thing OpenAI would refuse in `body`, if any.
pub fn request(body: &Value) -> Result<(), Refusal> {
    messages(body)?;
    let names = tools(body)?;
    tool_choice(body, names.as_ref())?;
    if body.get("stream_options").is_some_and(|v| !v.is_null()) && body["stream"] != true {
        return Err(refuse(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            None,
        ));
    }
    Ok(())
}

/// The ids of an assistant message's `tool_calls`, checked.
fn tool_calls(i: usize, calls: &Value) -> Result<Vec<String>, Refusal> {
    let p = format!("messages.[{i}].tool_calls");
    let Some(calls) = calls.as_array() else {
        return Err(wrong_type(p, "an array", calls));
    };
    if calls.is_empty() {
        return Err(refuse(
            format!(
                "Invalid '{p}': empty array. Expected an array with minimum length 1, but got an empty array instead."
            ),
            p,
            Some("empty_array"),
        ));
    }
    let mut ids = Vec::new();
    for (k, c) in calls.iter().enumerate() {
        let p = format!("{p}.[{k}]");
        ids.push(string(c, "id", format!("{p}.id"))?.to_string());
        let kind = string(c, "type", format!("{p}.type"))?;
        if kind != "function" {
            return Err(refuse(
                format!("Invalid value: '{kind}'. Supported values are: 'function'."),
                format!("{p}.type"),
                Some("invalid_value"),
            ));
        }
        let f = c
            .get("function")
            .filter(|f| !f.is_null())
            .ok_or_else(|| missing(format!("{p}.function")))?;
        string(f, "name", format!("{p}.function.name"))?;
        string(f, "arguments", format!("{p}.function.arguments"))?;
    }
    Ok(ids)
}

/// Roles, contents, and every `tool` message answering a call of the assistant message just
/// before it (tool messages between them), every call answered.
fn messages(body: &Value) -> Result<(), Refusal> {
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(missing("messages".into())),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(wrong_type("messages".into(), "an array", other)),
    };
    if messages.is_empty() {
        return Err(refuse(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            Some("empty_array"),
        ));
    }
    // The assistant message whose calls are being answered: its index, calls not yet answered.
    let mut open: Option<(usize, BTreeSet<String>)> = None;
    let unanswered = |(at, left): &(usize, BTreeSet<String>)| {
        refuse(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                left.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            format!("messages.[{at}].role"),
            None,
        )
    };
    for (i, m) in messages.iter().enumerate() {
        let role = string(m, "role", format!("messages.[{i}].role"))?;
        if role != "tool"
            && let Some(o) = open.take()
            && !o.1.is_empty()
        {
            return Err(unanswered(&o));
        }
        match role {
            "system" | "user" | "developer" => {
                string(m, "content", format!("messages.[{i}].content"))?;
            }
            "assistant" => {
                let calls = m.get("tool_calls").filter(|c| !c.is_null());
                match calls {
                    Some(c) => open = Some((i, tool_calls(i, c)?.into_iter().collect())),
                    None => {
                        string(m, "content", format!("messages.[{i}].content"))?;
                    }
                }
            }
            "tool" => {
                let id = string(m, "tool_call_id", format!("messages.[{i}].tool_call_id"))?;
                string(m, "content", format!("messages.[{i}].content"))?;
                let Some((_, left)) = open.as_mut() else {
                    return Err(refuse(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        format!("messages.[{i}].role"),
                        None,
                    ));
                };
                if !left.remove(id) {
                    return Err(refuse(
                        format!(
                            "Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message."
                        ),
                        format!("messages.[{i}].tool_call_id"),
                        None,
                    ));
                }
            }
            other => {
                return Err(refuse(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', 'function', and 'developer'."
                    ),
                    format!("messages.[{i}].role"),
                    Some("invalid_value"),
                ));
            }
        }
    }
    match open {
        Some(o) if !o.1.is_empty() => Err(unanswered(&o)),
        _ => Ok(()),
    }
}

/// Whether `name` is a function name OpenAI takes: 1 to 64 of `a-zA-Z0-9_-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `tools`, checked: their names (None when there are none).
fn tools(body: &Value) -> Result<Option<BTreeSet<String>>, Refusal> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(t)) => t,
        Some(other) => return Err(wrong_type("tools".into(), "an array", other)),
    };
    if tools.is_empty() {
        return Err(refuse(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "tools",
            Some("empty_array"),
        ));
    }
    if tools.len() > MAX_TOOLS {
        return Err(refuse(
            format!(
                "Invalid 'tools': array too long. Expected an array with maximum length {MAX_TOOLS}, but got an array with length {} instead.",
                tools.len()
            ),
            "tools",
            Some("array_above_max_length"),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, t) in tools.iter().enumerate() {
        let p = format!("tools[{i}]");
        if !t.is_object() {
            return Err(wrong_type(p, "an object", t));
        }
        let kind = string(t, "type", format!("{p}.type"))?;
        if kind != "function" {
            return Err(refuse(
                format!("Invalid value: '{kind}'. Supported values are: 'function' and 'custom'."),
                format!("{p}.type"),
                Some("invalid_value"),
            ));
        }
        let f = match t.get("function") {
            None | Some(Value::Null) => return Err(missing(format!("{p}.function"))),
            Some(f @ Value::Object(_)) => f,
            Some(other) => return Err(wrong_type(format!("{p}.function"), "an object", other)),
        };
        let name = string(f, "name", format!("{p}.function.name"))?;
        if name.len() > 64 {
            return Err(refuse(
                format!(
                    "Invalid '{p}.function.name': string too long. Expected a string with maximum length 64, but got a string with length {} instead.",
                    name.len()
                ),
                format!("{p}.function.name"),
                Some("string_above_max_length"),
            ));
        }
        if !valid_name(name) {
            return Err(refuse(
                format!(
                    "Invalid '{p}.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                ),
                format!("{p}.function.name"),
                Some("invalid_value"),
            ));
        }
        if let Some(d) = f.get("description").filter(|d| !d.is_null() && !d.is_string()) {
            return Err(wrong_type(format!("{p}.function.description"), "a string", d));
        }
        if let Some(s) = f.get("parameters").filter(|s| !s.is_null() && !s.is_object()) {
            return Err(wrong_type(format!("{p}.function.parameters"), "an object", s));
        }
        names.insert(name.to_string());
    }
    Ok(Some(names))
}

/// `tool_choice`: "none", "auto", "required" or a named function among `tools`; only with
/// `tools`.
fn tool_choice(body: &Value, names: Option<&BTreeSet<String>>) -> Result<(), Refusal> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => return Ok(()),
        Some(c) => c,
    };
    let Some(names) = names else {
        return Err(refuse(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
            None,
        ));
    };
    match choice {
        Value::String(s) if matches!(s.as_str(), "none" | "auto" | "required") => Ok(()),
        Value::String(s) => Err(refuse(
            format!("Invalid value: '{s}'. Supported values are: 'none', 'auto', and 'required'."),
            "tool_choice",
            Some("invalid_value"),
        )),
        Value::Object(_) => {
            let kind = string(choice, "type", "tool_choice.type".into())?;
            if kind != "function" {
                return Err(refuse(
                    format!("Invalid value: '{kind}'. Supported values are: 'function'."),
                    "tool_choice.type",
                    Some("invalid_value"),
                ));
            }
            let f = choice
                .get("function")
                .ok_or_else(|| missing("tool_choice.function".into()))?;
            let name = string(f, "name", "tool_choice.function.name".into())?;
            if names.contains(name) {
                Ok(())
            } else {
                Err(refuse(
                    format!("Invalid value for 'tool_choice': function '{name}' is not among 'tools'."),
                    "tool_choice.function.name",
                    Some("invalid_value"),
                ))
            }
        }
        other => Err(wrong_type("tool_choice".into(), "a string or an object", other)),
    }
}
