//! Anthropic's Messages API (`POST /v1/messages`), faithful to its wire format: requests are
//! checked as Anthropic checks them ([`crate::messages_check`]; a refusal is a 400 or 401 with
//! `{"type": "error", "error": {"type", "message"}}` and a `request-id` header), replies are
//! Messages (`content` blocks, `stop_reason`, `usage` with cache counts) or, with `"stream":
//! true`, named server-sent events: `message_start`, `ping`, per block `content_block_start`,
//! `content_block_delta` (`text_delta` word by word, `input_json_delta` fragments of
//! [`crate::script::FRAGMENT`] characters after a first empty one) and `content_block_stop`,
//! then `message_delta` (stop reason, output tokens) and `message_stop`.
//!
//! | model | reply |
//! |---|---|
//! | `echo` | `You said: <last user text>`; usage 5 in + 2 cache write + 4 cache read, 7 out |
//! | `rate` | 429 `rate_limit_error`, `retry-after: 30` and `anthropic-ratelimit-*` headers |
//! | `rate-once` | the first time a 429 with `retry-after: 1`, then `after the wait` |
//! | `rate-reset` | 429 without `retry-after`; `anthropic-ratelimit-requests-remaining: 0` and its `-reset` 5 s ahead |
//! | `last-request` | `the last one for now`, with `anthropic-ratelimit-requests-remaining: 0` and its `-reset` 5 s ahead |
//! | `overloaded` | 529 `overloaded_error` |
//! | `overloaded-stream` | a 200 stream that starts, pings, then sends an `error` event (`overloaded_error`) |
//! | `spent` | 429 whose error says `enforced_spend_limit_reached` |
//! | `script…` | follows the request's `FAKE_SCRIPT` as the OpenAI route does (in the system prompt or the first user text); tool ids `toolu_<turn>_<k>` |
//! | anything else | 404 `not_found_error` |

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::messages_check;
use crate::reply::sse;
use crate::script::{self, FRAGMENT, Turn};

/// The usage of `echo` (and of streamed `echo`): in 5 + 2 + 4 = 11, out 7.
const ECHO_USAGE: Usage = Usage {
    input: 5,
    cache_write: 2,
    cache_read: 4,
    output: 7,
};

/// Token counts as Anthropic reports them.
#[derive(Clone, Copy, Debug)]
struct Usage {
    input: u64,
    cache_write: u64,
    cache_read: u64,
    output: u64,
}

impl Usage {
    fn json(self) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        })
    }
}

/// An error reply in Anthropic's shape, with `extra` headers.
fn error(status: u16, kind: &str, message: &str, extra: &[(&'static str, String)]) -> Response {
    let body = json!({
        "type": "error",
        "error": { "type": kind, "message": message },
        "request_id": "req_fake1",
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert("request-id", "req_fake1".parse().unwrap());
    for (k, v) in extra {
        resp.headers_mut().insert(*k, v.parse().unwrap());
    }
    resp
}

/// The reply to one request (its `n`th for its model).
pub(crate) fn answer(headers: &HeaderMap, body: &Value, n: usize) -> Response {
    if let Err(r) = messages_check::request(headers, body) {
        return error(r.status, r.kind, &r.message, &[]);
    }
    let model = body["model"].as_str().unwrap_or_default();
    let streamed = body["stream"] == true;
    let text = |t: &str| {
        let turn = Turn {
            content: Some(t.to_string()),
            calls: Vec::new(),
        };
        reply(model, 0, &turn, ECHO_USAGE, streamed)
    };
    let reset = || {
        let at = SystemTime::now() + Duration::from_secs(5);
        let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        rfc3339(secs)
    };
    match model {
        m if m.starts_with("script") => scripted(model, body, streamed),
        "echo" => text(&format!("You said: {}", last_user_text(body))),
        "rate" => error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            &[
                ("retry-after", "30".into()),
                ("anthropic-ratelimit-requests-limit", "50".into()),
                ("anthropic-ratelimit-requests-remaining", "0".into()),
                ("anthropic-ratelimit-requests-reset", reset()),
                ("anthropic-ratelimit-tokens-limit", "40000".into()),
                ("anthropic-ratelimit-tokens-remaining", "39000".into()),
            ],
        ),
        "rate-once" if n == 1 => error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your per-minute rate limit",
            &[("retry-after", "1".into())],
        ),
        "rate-once" => text("after the wait"),
        "rate-reset" => error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your per-minute rate limit",
            &[
                ("anthropic-ratelimit-requests-remaining", "0".into()),
                ("anthropic-ratelimit-requests-reset", reset()),
            ],
        ),
        "last-request" => {
            let mut resp = text("the last one for now");
            let h = resp.headers_mut();
            h.insert("anthropic-ratelimit-requests-limit", "50".parse().unwrap());
            h.insert("anthropic-ratelimit-requests-remaining", "0".parse().unwrap());
            h.insert("anthropic-ratelimit-requests-reset", reset().parse().unwrap());
            resp
        }
        "overloaded" => error(529, "overloaded_error", "Overloaded", &[]),
        "overloaded-stream" => {
            let events = vec![
                event(
                    "message_start",
                    &json!({ "type": "message_start", "message": message(model, &[], None, Usage { output: 1, ..ECHO_USAGE }) }),
                ),
                event("ping", &json!({ "type": "ping" })),
                event(
                    "error",
                    &json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
                ),
            ];
            sse(events, Duration::ZERO, false)
        }
        "spent" => error(
            429,
            "rate_limit_error",
            "You have reached your spend limit (error_code: enforced_spend_limit_reached)",
            &[],
        ),
        _ => error(404, "not_found_error", &format!("model: {model}"), &[]),
    }
}

/// `secs` since the epoch as RFC 3339 (UTC).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The text of a message's content (a string, or its text blocks joined).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .find(|t| !t.is_empty())
        .unwrap_or_default()
}

/// A scripted model's reply: the script read from the system prompt or the first user text.
fn scripted(model: &str, body: &Value, streamed: bool) -> Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let first_user = messages
        .iter()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    let as_openai = [
        json!({ "role": "system", "content": text_of(&body["system"]) }),
        json!({ "role": "user", "content": first_user }),
    ];
    let script = match script::script(&as_openai) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return error(400, "invalid_request_error", &e, &[]),
    };
    let turn = messages.iter().filter(|m| m["role"] == "assistant").count();
    let results = messages
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .count();
    let reply_turn = script.get(turn).cloned().unwrap_or_else(|| Turn {
        content: Some(format!("done after {results} tool results")),
        calls: Vec::new(),
    });
    let in_chars: usize = messages
        .iter()
        .map(|m| serde_json::to_string(&m["content"]).unwrap_or_default().len())
        .sum();
    let out_chars = reply_turn.content.as_deref().map_or(0, str::len)
        + reply_turn
            .calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum::<usize>();
    let usage = Usage {
        input: (in_chars.div_ceil(4) as u64).max(1),
        cache_write: 0,
        cache_read: 0,
        output: (out_chars.div_ceil(4) as u64).max(1),
    };
    reply(model, turn, &reply_turn, usage, streamed)
}

fn tool_id(turn: usize, k: usize) -> String {
    format!("toolu_{turn}_{k}")
}

/// A call's arguments as a tool_use input (a script's non-object arguments become `{"raw": ...}`).
fn input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "raw": arguments }),
    }
}

/// A Message: `content` blocks and `stop_reason` (null while streaming).
fn message(model: &str, content: &[Value], stop: Option<&str>, usage: Usage) -> Value {
    json!({
        "id": "msg_fake1",
        "type": "message",
        "role": "assistant",
        "model": format!("{model}-2026"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage.json(),
    })
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// A turn's reply, JSON or streamed.
fn reply(model: &str, turn: usize, t: &Turn, usage: Usage, streamed: bool) -> Response {
    let stop = if t.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let mut blocks = Vec::new();
    if let Some(text) = t.content.as_deref().filter(|s| !s.is_empty()) {
        blocks.push(json!({ "type": "text", "text": text }));
    }
    for (k, c) in t.calls.iter().enumerate() {
        blocks.push(json!({ "type": "tool_use", "id": tool_id(turn, k), "name": c.name, "input": input(&c.arguments) }));
    }
    if !streamed {
        return axum::Json(message(model, &blocks, Some(stop), usage)).into_response();
    }
    let gap = if model.starts_with("script-slow") {
        Duration::from_millis(60)
    } else {
        Duration::ZERO
    };
    sse(stream(model, &blocks, stop, usage), gap, false)
}

/// The events of a streamed reply of `blocks`.
fn stream(model: &str, blocks: &[Value], stop: &str, usage: Usage) -> Vec<String> {
    let start = Usage { output: 1, ..usage };
    let mut events = vec![
        event(
            "message_start",
            &json!({ "type": "message_start", "message": message(model, &[], None, start) }),
        ),
        event("ping", &json!({ "type": "ping" })),
    ];
    let delta = |index: usize, delta: Value| {
        event(
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        )
    };
    for (index, b) in blocks.iter().enumerate() {
        let opening = if b["type"] == "text" {
            json!({ "type": "text", "text": "" })
        } else {
            json!({ "type": "tool_use", "id": b["id"], "name": b["name"], "input": {} })
        };
        events.push(event(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": opening }),
        ));
        if let Some(text) = b["text"].as_str() {
            for w in text.split_inclusive(' ') {
                events.push(delta(index, json!({ "type": "text_delta", "text": w })));
            }
        } else {
            let json_text = if b["input"].as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                b["input"].to_string()
            };
            events.push(delta(
                index,
                json!({ "type": "input_json_delta", "partial_json": "" }),
            ));
            let chars: Vec<char> = json_text.chars().collect();
            for piece in chars.chunks(FRAGMENT) {
                let fragment: String = piece.iter().collect();
                events.push(delta(
                    index,
                    json!({ "type": "input_json_delta", "partial_json": fragment }),
                ));
            }
        }
        events.push(event(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
        ));
    }
    events.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop, "stop_sequence": null },
            "usage": { "output_tokens": usage.output },
        }),
    ));
    events.push(event("message_stop", &json!({ "type": "message_stop" })));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
