//! An OpenAI chat completion request read into the params of an `llm` task
//! ([`parse_request`]): what the task can do is translated, what it cannot is refused with a
//! 400 naming the field (never silently dropped), and what does not change the reply is
//! ignored (docs/GATEWAY_API.md, "What is supported").

use serde_json::{Map, Value, json};

use cadre_executors::calls::llm::MAX_MESSAGES;

use super::openai_wire::OpenAiError;

/// A chat request, translated.
#[derive(Debug)]
pub struct ChatRequest {
    /// The model asked for (a name of `[executors.llm.models]`).
    pub model: String,
    /// `stream: true`: answer with SSE chunks.
    pub stream: bool,
    /// `stream_options.include_usage`: end the stream with a usage chunk.
    pub include_usage: bool,
    /// Whether the reply text may be streamed as it arrives: not with tools or a
    /// `response_format` (whose replies the executor may ask again for or turn into calls).
    pub live_text: bool,
    /// The `llm` task's params.
    pub params: Value,
}

/// Fields refused unless they hold their default (what OpenAI does when they are absent).
const REFUSED: [(&str, &str); 11] = [
    ("logprobs", "log probabilities are not returned"),
    ("top_logprobs", "log probabilities are not returned"),
    ("audio", "audio output is not supported"),
    ("stop", "stop sequences are not forwarded"),
    ("logit_bias", "logit bias is not forwarded"),
    ("prediction", "predicted outputs are not supported"),
    ("web_search_options", "web search is not supported"),
    ("functions", "deprecated function calling: use `tools`"),
    ("function_call", "deprecated function calling: use `tool_choice`"),
    ("frequency_penalty", "penalties are not forwarded"),
    ("presence_penalty", "penalties are not forwarded"),
];

/// Reads `body` (OpenAI's request JSON) into a [`ChatRequest`].
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, OpenAiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| OpenAiError::invalid("body", format!("the body is not JSON: {e}")))?;
    let Value::Object(req) = v else {
        return Err(OpenAiError::invalid("body", "the body must be a JSON object"));
    };
    refuse_unsupported(&req)?;
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(OpenAiError::invalid("model", "`model` is required (a string)")),
    };
    let messages = messages(req.get("messages"))?;
    let stream = flag(&req, "stream")?;
    let include_usage = match req.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => o.get("include_usage").and_then(Value::as_bool).unwrap_or(false),
        Some(_) => return Err(OpenAiError::invalid("stream_options", "must be an object")),
    };
    let mut params = Map::new();
    params.insert("model".into(), json!(model));
    params.insert("messages".into(), Value::Array(messages));
    params.insert("stream".into(), json!(stream));
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)));
    if let Some((key, v)) = max_tokens {
        let n = v
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
            .ok_or_else(|| OpenAiError::invalid(key, format!("`{key}` must be a positive integer")))?;
        params.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = req.get("temperature").filter(|v| !v.is_null()) {
        let t = t
            .as_f64()
            .ok_or_else(|| OpenAiError::invalid("temperature", "`temperature` must be a number"))?;
        params.insert("temperature".into(), json!(t));
    }
    let schema = response_schema(req.get("response_format"))?;
    let has_schema = schema.is_some();
    if let Some(schema) = schema {
        params.insert("response_schema".into(), schema);
    }
    let mut has_tools = false;
    if let Some(tools) = req.get("tools").filter(|v| !v.is_null()) {
        if !tools.is_array() {
            return Err(OpenAiError::invalid("tools", "`tools` must be an array"));
        }
        has_tools = tools.as_array().is_some_and(|t| !t.is_empty());
        params.insert("tools".into(), tools.clone());
    }
    if let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) {
        params.insert("tool_choice".into(), choice.clone());
    }
    Ok(ChatRequest {
        model,
        stream,
        include_usage,
        live_text: !has_tools && !has_schema,
        params: Value::Object(params),
    })
}

/// A boolean field (absent or null: false).
fn flag(req: &Map<String, Value>, key: &str) -> Result<bool, OpenAiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(OpenAiError::invalid(key, format!("`{key}` must be a boolean"))),
    }
}

/// Refuses what the task cannot do: `n` above 1, non-text modalities, a `top_p` below 1, and
/// the [`REFUSED`] fields when set.
fn refuse_unsupported(req: &Map<String, Value>) -> Result<(), OpenAiError> {
    if let Some(n) = req.get("n").filter(|v| !v.is_null())
        && n.as_u64() != Some(1)
    {
        return Err(OpenAiError::unsupported("n", "one choice per request (n = 1)"));
    }
    if let Some(m) = req.get("modalities").and_then(Value::as_array)
        && m.iter().any(|x| x != "text")
    {
        return Err(OpenAiError::unsupported("modalities", "text only"));
    }
    if let Some(p) = req.get("top_p").filter(|v| !v.is_null())
        && p.as_f64() != Some(1.0)
    {
        return Err(OpenAiError::unsupported(
            "top_p",
            "nucleus sampling is not forwarded",
        ));
    }
    for (key, why) in REFUSED {
        let set = match req.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(OpenAiError::unsupported(key, why));
        }
    }
    Ok(())
}

/// The `messages`, each in the `llm` executor's shape: `developer` is `system`, text parts
/// are joined, other parts are refused; `name` and `refusal` are dropped.
fn messages(raw: Option<&Value>) -> Result<Vec<Value>, OpenAiError> {
    let Some(Value::Array(list)) = raw else {
        return Err(OpenAiError::invalid(
            "messages",
            "`messages` is required (an array)",
        ));
    };
    if list.is_empty() || list.len() > MAX_MESSAGES {
        return Err(OpenAiError::invalid(
            "messages",
            format!(
                "`messages` must hold 1 to {MAX_MESSAGES} messages (it holds {})",
                list.len()
            ),
        ));
    }
    list.iter().enumerate().map(|(i, m)| message(i, m)).collect()
}

fn message(i: usize, m: &Value) -> Result<Value, OpenAiError> {
    let at = format!("messages[{i}]");
    let Value::Object(m) = m else {
        return Err(OpenAiError::invalid(&at, format!("`{at}` must be an object")));
    };
    let role = match m.get("role").and_then(Value::as_str) {
        Some("developer") | Some("system") => "system",
        Some(r @ ("user" | "assistant" | "tool")) => r,
        Some("function") => {
            return Err(OpenAiError::unsupported(
                &format!("{at}.role"),
                "use `tool` messages",
            ));
        }
        _ => {
            return Err(OpenAiError::invalid(
                &format!("{at}.role"),
                format!("`{at}.role` must be system, developer, user, assistant or tool"),
            ));
        }
    };
    let mut out = Map::new();
    out.insert("role".into(), json!(role));
    match m.get("content") {
        None => {}
        Some(Value::Null) => {
            out.insert("content".into(), Value::Null);
        }
        Some(c) => {
            out.insert("content".into(), json!(content_text(&at, c)?));
        }
    }
    for key in ["tool_calls", "tool_call_id"] {
        if let Some(v) = m.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), tool_field(&at, key, v)?);
        }
    }
    Ok(Value::Object(out))
}

/// A tool call list reduced to the executor's shape (`id`, `type`, `function{name,
/// arguments}`); a `tool_call_id` as it is.
fn tool_field(at: &str, key: &str, v: &Value) -> Result<Value, OpenAiError> {
    if key == "tool_call_id" {
        return Ok(v.clone());
    }
    let Some(calls) = v.as_array() else {
        return Err(OpenAiError::invalid(
            &format!("{at}.tool_calls"),
            "must be an array",
        ));
    };
    Ok(Value::Array(
        calls
            .iter()
            .map(|c| {
                json!({
                    "id": c["id"], "type": c["type"],
                    "function": { "name": c["function"]["name"], "arguments": c["function"]["arguments"] },
                })
            })
            .collect(),
    ))
}

/// A message's content as text: a string, or text parts joined.
fn content_text(at: &str, c: &Value) -> Result<String, OpenAiError> {
    match c {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (k, p) in parts.iter().enumerate() {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(OpenAiError::unsupported(
                            &format!("{at}.content[{k}]"),
                            &format!("content parts of type {kind:?}: text parts only"),
                        ));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(OpenAiError::invalid(
            &format!("{at}.content"),
            "must be a string or an array of parts",
        )),
    }
}

/// The `llm` task's `response_schema` for a `response_format`: none for `text`, any object for
/// `json_object`, the given schema for `json_schema`.
fn response_schema(rf: Option<&Value>) -> Result<Option<Value>, OpenAiError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match rf["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "object" }))),
        Some("json_schema") => match &rf["json_schema"]["schema"] {
            Value::Object(_) => Ok(Some(rf["json_schema"]["schema"].clone())),
            _ => Err(OpenAiError::invalid(
                "response_format.json_schema.schema",
                "a json_schema response format needs `json_schema.schema` (an object)",
            )),
        },
        _ => Err(OpenAiError::invalid(
            "response_format.type",
            "`response_format.type` must be text, json_object or json_schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ChatRequest, OpenAiError> {
        parse_request(v.to_string().as_bytes())
    }

    #[test]
    fn a_request_becomes_llm_params() {
        let r = parse(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "max_tokens": 9, "max_completion_tokens": 7, "temperature": 0.5, "seed": 3, "user": "u",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "name": "ann", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
        }))
        .unwrap();
        assert!(r.stream && r.include_usage && !r.live_text);
        assert_eq!(
            r.params,
            json!({
                "model": "m", "stream": true, "max_tokens": 7, "temperature": 0.5,
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}],
                "response_schema": {"type": "object"},
            })
        );
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let base = || json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (key, value) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("stop", json!(["x"])),
            ("top_p", json!(0.5)),
            ("modalities", json!(["text", "audio"])),
        ] {
            let mut req = base();
            req[key] = value;
            let e = parse(req).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code),
                (400, "unsupported_parameter"),
                "{key}"
            );
            assert_eq!(e.param.as_deref(), Some(key));
        }
        let mut req = base();
        req["n"] = json!(1);
        req["logprobs"] = json!(false);
        assert!(parse(req).is_ok());
    }
}
