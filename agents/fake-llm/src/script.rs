//! The scripted models (names starting with `script`): each turn's reply is read from a
//! `FAKE_SCRIPT: <json array>` line of the request's first system or first user message, so a
//! test can drive a whole tool-calling conversation through code that only forwards messages.
//!
//! The turn is the number of assistant messages in the request; element `turn` of the script
//! is the reply: `{"tool_calls": [{"name": "...", "arguments": {...}}]}` (arguments an object,
//! any JSON, or a string sent as it is), `{"content": "..."}`, or both. Past the end of the
//! script (or without one) the reply is `done after <n> tool results`, `n` the number of tool
//! messages in the request. Tool call ids are `call_<turn>_<k>`.
//!
//! Streamed (`"stream": true`) as OpenAI streams: the first chunk carries the role, text comes
//! word by word, each tool call opens with a delta holding its `index`, `id`, `type` and name
//! (arguments `""`), then its arguments in fragments of [`FRAGMENT`] characters, one call after
//! the other; a last chunk with `finish_reason` (`tool_calls` or `stop`), the usage chunk when
//! `stream_options.include_usage` is set, and `[DONE]`. Usage is reported in both modes: prompt
//! tokens are the characters of the request's message contents and tool-call arguments / 4,
//! completion tokens those of the reply's text, names and arguments / 4 (each at least 1).

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::reply::{self, Tokens};

/// Characters of tool-call arguments per streamed fragment.
pub const FRAGMENT: usize = 7;

/// One tool call a turn makes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    pub(crate) name: String,
    pub(crate) arguments: String,
}

/// One turn's reply.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Turn {
    pub(crate) content: Option<String>,
    pub(crate) calls: Vec<Call>,
}

/// The script of a request, if it has one; an error says what is wrong with it.
pub(crate) fn script(messages: &[Value]) -> Result<Option<Vec<Turn>>, String> {
    for role in ["system", "user"] {
        let Some(text) = messages
            .iter()
            .find(|m| m["role"] == role)
            .and_then(|m| m["content"].as_str())
        else {
            continue;
        };
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("FAKE_SCRIPT:") {
                let v: Value =
                    serde_json::from_str(rest.trim()).map_err(|e| format!("FAKE_SCRIPT is not JSON: {e}"))?;
                return turns(&v).map(Some);
            }
        }
    }
    Ok(None)
}

fn turns(v: &Value) -> Result<Vec<Turn>, String> {
    let Some(items) = v.as_array() else {
        return Err("FAKE_SCRIPT must be a JSON array of turns".into());
    };
    let mut out = Vec::new();
    for (t, item) in items.iter().enumerate() {
        let bad = |why: &str| format!("FAKE_SCRIPT turn {t}: {why}");
        let Some(obj) = item.as_object() else {
            return Err(bad("not an object"));
        };
        if let Some(k) = obj.keys().find(|k| *k != "content" && *k != "tool_calls") {
            return Err(bad(&format!("unknown key {k:?} (content, tool_calls)")));
        }
        let content = match obj.get("content") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("content must be a string")),
        };
        let mut calls = Vec::new();
        for c in obj
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = c["name"].as_str() else {
                return Err(bad("each tool call needs a string name"));
            };
            let arguments = match &c["arguments"] {
                Value::Null => "{}".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            calls.push(Call {
                name: name.into(),
                arguments,
            });
        }
        if content.is_none() && calls.is_empty() {
            return Err(bad("give content or tool_calls"));
        }
        out.push(Turn { content, calls });
    }
    Ok(out)
}

fn tokens(chars: usize) -> u64 {
    (chars.div_ceil(4) as u64).max(1)
}

/// Characters the request says: message contents and tool-call arguments.
fn prompt_chars(messages: &[Value]) -> usize {
    messages
        .iter()
        .map(|m| {
            let content = m["content"].as_str().map_or(0, |s| s.chars().count());
            let args: usize = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    c["function"]["arguments"]
                        .as_str()
                        .map_or(0, |s| s.chars().count())
                })
                .sum();
            content + args
        })
        .sum()
}

fn call_id(turn: usize, k: usize) -> String {
    format!("call_{turn}_{k}")
}

/// The reply of a scripted model to `body`.
pub(crate) fn answer(model: &str, body: &Value) -> Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let script = match script(&messages) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return reply::invalid(&e, Some("messages"), None),
    };
    let turn = messages.iter().filter(|m| m["role"] == "assistant").count();
    let reply = script.get(turn).cloned().unwrap_or_else(|| {
        let n = messages.iter().filter(|m| m["role"] == "tool").count();
        Turn {
            content: Some(format!("done after {n} tool results")),
            calls: Vec::new(),
        }
    });
    let out_chars = reply.content.as_deref().map_or(0, |c| c.chars().count())
        + reply
            .calls
            .iter()
            .map(|c| c.name.chars().count() + c.arguments.chars().count())
            .sum::<usize>();
    let usage = Tokens {
        prompt: tokens(prompt_chars(&messages)),
        completion: tokens(out_chars),
    };
    let finish = if reply.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    if body["stream"] == true {
        let usage = (body["stream_options"]["include_usage"] == true).then_some(usage);
        let gap = if model.starts_with("script-slow") {
            Duration::from_millis(60)
        } else {
            Duration::ZERO
        };
        return reply::sse(events(model, turn, &reply, finish, usage), gap, false);
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), json!(reply.content));
    message.insert("refusal".into(), Value::Null);
    if !reply.calls.is_empty() {
        let calls: Vec<Value> = reply
            .calls
            .iter()
            .enumerate()
            .map(|(k, c)| {
                json!({
                    "id": call_id(turn, k), "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })
            })
            .collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    axum::Json(reply::completion(
        model,
        Value::Object(message),
        finish,
        Some(usage),
    ))
    .into_response()
}

/// The stream of one turn's reply (see the module docs).
fn events(model: &str, turn: usize, reply: &Turn, finish: &str, usage: Option<Tokens>) -> Vec<String> {
    let null = usage.is_some();
    let chunk = |delta: Value, finish: Option<&str>| reply::chunk(model, delta, finish, null);
    let open = |k: usize, c: &Call| {
        json!({
            "index": k, "id": call_id(turn, k), "type": "function",
            "function": { "name": c.name, "arguments": "" },
        })
    };
    let mut events = Vec::new();
    let mut first = json!({ "role": "assistant", "content": null, "refusal": null });
    let mut opened_first_call = false;
    match (&reply.content, reply.calls.first()) {
        (Some(_), _) => first["content"] = json!(""),
        (None, Some(c)) => {
            first["tool_calls"] = json!([open(0, c)]);
            opened_first_call = true;
        }
        (None, None) => {}
    }
    events.push(chunk(first, None));
    if let Some(text) = &reply.content {
        events.extend(
            text.split_inclusive(' ')
                .map(|w| chunk(json!({ "content": w }), None)),
        );
    }
    for (k, c) in reply.calls.iter().enumerate() {
        if k > 0 || !opened_first_call {
            events.push(chunk(json!({ "tool_calls": [open(k, c)] }), None));
        }
        let chars: Vec<char> = c.arguments.chars().collect();
        for piece in chars.chunks(FRAGMENT) {
            let fragment: String = piece.iter().collect();
            events.push(chunk(
                json!({ "tool_calls": [{ "index": k, "function": { "arguments": fragment } }] }),
                None,
            ));
        }
    }
    events.push(chunk(json!({}), Some(finish)));
    events.extend(reply::stream_end(model, usage));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_read_from_the_first_system_or_user_message() {
        let msgs = |system: &str, user: &str| {
            vec![
                json!({ "role": "system", "content": system }),
                json!({ "role": "user", "content": user }),
            ]
        };
        let line = r#"FAKE_SCRIPT: [{"tool_calls":[{"name":"f","arguments":{"a":1}}]},{"content":"hi"}]"#;
        let want = vec![
            Turn {
                content: None,
                calls: vec![Call {
                    name: "f".into(),
                    arguments: r#"{"a":1}"#.into(),
                }],
            },
            Turn {
                content: Some("hi".into()),
                calls: vec![],
            },
        ];
        assert_eq!(script(&msgs(line, "x")), Ok(Some(want.clone())));
        assert_eq!(
            script(&msgs("Be brief.", &format!("Do it.\n  {line}\n"))),
            Ok(Some(want))
        );
        assert_eq!(script(&msgs("a", "b")), Ok(None));
        assert!(
            script(&msgs("FAKE_SCRIPT: [{", ""))
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            script(&msgs(r#"FAKE_SCRIPT: [{"tool":1}]"#, ""))
                .unwrap_err()
                .contains("turn 0: unknown key \"tool\"")
        );
        // A string argument is sent as it is (it need not be JSON).
        let raw = script(&msgs(
            r#"FAKE_SCRIPT: [{"tool_calls":[{"name":"f","arguments":"{oops"}]}]"#,
            "",
        ))
        .unwrap();
        assert_eq!(raw.unwrap()[0].calls[0].arguments, "{oops");
    }

    #[test]
    fn streamed_calls_open_with_id_and_name_and_split_their_arguments() {
        let reply = Turn {
            content: None,
            calls: vec![
                Call {
                    name: "a".into(),
                    arguments: "0123456789abcdef".into(),
                },
                Call {
                    name: "b".into(),
                    arguments: "{}".into(),
                },
            ],
        };
        let events = events("script", 2, &reply, "tool_calls", None);
        let deltas: Vec<Value> = events
            .iter()
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .map(|v| v["choices"][0]["delta"].clone())
            .collect();
        assert_eq!(deltas[0]["tool_calls"][0]["id"], "call_2_0");
        assert_eq!(deltas[0]["tool_calls"][0]["function"]["name"], "a");
        let fragments: Vec<&str> = deltas[1..4]
            .iter()
            .map(|d| d["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(fragments, ["0123456", "789abcd", "ef"]);
        assert!(
            deltas[1..4]
                .iter()
                .all(|d| d["tool_calls"][0].get("id").is_none())
        );
        assert_eq!(deltas[4]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[4]["tool_calls"][0]["id"], "call_2_1");
        assert_eq!(events.last().unwrap(), "data: [DONE]\n\n");
    }
}
