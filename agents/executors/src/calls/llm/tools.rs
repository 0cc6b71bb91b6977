//! The tools a task offers the model (OpenAI's `tools`: `[{"type": "function", "function":
//! {"name", "description", "parameters", "strict"}}]`) and how the model may choose among them
//! (`tool_choice`), checked before any request. Both go to the provider as the task gave them.

use serde_json::{Map, Value};

/// Most tools one chat may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

/// The pattern a function name must match (OpenAI's, with its length limit).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Whether `name` matches [`NAME_PATTERN`].
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn object<'a>(v: &'a Value, at: &str, known: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let Some(o) = v.as_object() else {
        return Err(format!("{at} must be an object"));
    };
    if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "{at} has an unknown field `{k}` (known: {})",
            known.join(", ")
        ));
    }
    Ok(o)
}

fn function_kind(o: &Map<String, Value>, at: &str) -> Result<(), String> {
    match o.get("type") {
        Some(Value::String(t)) if t == "function" => Ok(()),
        Some(other) => Err(format!("{at}.type` must be \"function\", not {other}")),
        None => Err(format!("{at}.type` is required (\"function\")")),
    }
}

/// Checks `tools` (see the module docs); their names, in order.
pub(super) fn check_tools(tools: &[Value]) -> Result<Vec<String>, String> {
    if tools.len() > MAX_TOOLS {
        return Err(format!(
            "`tools` holds {} tools; at most {MAX_TOOLS} may be offered",
            tools.len()
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let at = format!("`tools[{i}]");
        let o = object(t, &format!("{at}`"), &["type", "function"])?;
        function_kind(o, &at)?;
        let Some(f) = o.get("function") else {
            return Err(format!("{at}.function` is required"));
        };
        let f = object(
            f,
            &format!("{at}.function`"),
            &["name", "description", "parameters", "strict"],
        )?;
        let name = match f.get("name") {
            Some(Value::String(n)) if valid_name(n) => n,
            Some(Value::String(n)) => {
                return Err(format!(
                    "{at}.function.name` {n:?} must match {NAME_PATTERN} (1 to 64 letters, digits, _ or -)"
                ));
            }
            _ => return Err(format!("{at}.function.name` is required (a string)")),
        };
        if names.contains(name) {
            return Err(format!("{at}.function.name` {name:?} is offered twice"));
        }
        match f.get("description") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(format!("{at}.function.description` must be a string")),
        }
        match f.get("parameters") {
            None | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(format!("{at}.function.parameters` must be a JSON Schema object"));
            }
        }
        match f.get("strict") {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(_) => return Err(format!("{at}.function.strict` must be a boolean")),
        }
        names.push(name.clone());
    }
    Ok(names)
}

/// Checks `tool_choice`: "auto", "none", "required", or `{"type": "function", "function":
/// {"name"}}` naming one of `names` (the tools offered; a choice needs some).
pub(super) fn check_tool_choice(choice: &Value, names: &[String]) -> Result<(), String> {
    const FORMS: &str =
        "\"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}";
    if names.is_empty() {
        return Err("`tool_choice` needs `tools` to choose from".into());
    }
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(()),
        Value::Object(_) => {
            let o = object(choice, "`tool_choice`", &["type", "function"])?;
            function_kind(o, "`tool_choice")?;
            let f = o
                .get("function")
                .ok_or_else(|| "`tool_choice.function` is required".to_string())?;
            let f = object(f, "`tool_choice.function`", &["name"])?;
            match f.get("name") {
                Some(Value::String(n)) if names.contains(n) => Ok(()),
                Some(Value::String(n)) => Err(format!(
                    "`tool_choice` names the function {n:?}, which is not among `tools` ({})",
                    names.join(", ")
                )),
                _ => Err("`tool_choice.function.name` is required (a string)".into()),
            }
        }
        other => Err(format!("`tool_choice` must be {FORMS}, not {other}")),
    }
}
