//! Anthropic's Messages API (`POST <base_url>/v1/messages`, `x-api-key`, `anthropic-version:
//! 2023-06-01`), as the wire of a provider with `kind = "anthropic"`: the executor's chat, in
//! OpenAI's shape, is translated to a Messages request, and the reply (JSON or a stream of
//! named server-sent events) back to the executor's [`Reply`], so such a provider sits in a
//! fallback chain beside OpenAI-compatible ones.
//!
//! Read from anthropic-sdk-python (commit 009b035, `src/anthropic/types/message_create_params.py`,
//! `message.py`, `stop_reason.py`, `usage.py`, `message_delta_usage.py`, `raw_*_event.py`,
//! `tool_choice_*_param.py`, `_streaming.py`, `lib/streaming/_messages.py`, `_client.py`):
//!
//! - Request: `system` messages become the top-level `system` (text blocks, in order); user and
//!   tool messages become `user` turns and assistant messages `assistant` turns, consecutive
//!   turns of one role merged into one (each tool message a `tool_result` block, each tool call
//!   a `tool_use` block whose `input` is the call's arguments parsed: they must be a JSON
//!   object, "" counting as `{}`); empty text is left out. `tools` become `{name, description,
//!   input_schema}`, `tool_choice` `auto`/`none`/`required`/named becomes `{type: auto}`/
//!   `{type: none}`/`{type: any}`/`{type: tool, name}`; `response_schema` becomes
//!   `output_config.format` (`json_schema`); `temperature` is cut to Anthropic's 0-1; without
//!   a task `max_tokens` the provider's `default_max_tokens` is sent (Anthropic requires one).
//! - Reply: text blocks concatenated, `tool_use` blocks become tool calls with the input as JSON
//!   text; `stop_reason` becomes OpenAI's `finish_reason` ([`finish_reason`]); usage in is
//!   `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`, out
//!   `output_tokens`.
//! - Stream: `message_start` (id, model, input usage), `content_block_start` (text or
//!   `tool_use` with id and name), `content_block_delta` (`text_delta`, `input_json_delta`
//!   fragments concatenated into the input, the first often ""), `content_block_stop`,
//!   `message_delta` (stop reason, usage replacing what came before, as the SDK does),
//!   `message_stop`; `ping` and unknown events are skipped, an `error` event is classed by its
//!   `error.type` (an `overloaded_error` mid-stream is transient, as a 529 would be).
//! - Errors: `{"type": "error", "error": {"type", "message"}}` with the statuses of the
//!   OpenAI path (429 and 529 transient, with `retry-after`); a 429 without `retry-after` sets
//!   the provider aside until the latest `anthropic-ratelimit-*-reset` of an exhausted limit,
//!   and so does a successful reply saying a limit is used up (`-remaining: 0`), before the
//!   next request meets the 429.
//!   A spend limit (`enforced_spend_limit_reached`, or a 400 saying the usage limits are
//!   reached) is not transient: the chain moves on without waiting for it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cadre_agents::ExecContext;
use serde_json::{Value, json};

use super::assemble::ToolCalls;
use super::chat::{Chat, Message, Role};
use super::wire::{self, CallError, ErrorReply, Reading, Reply, Request};
use crate::support::retry_after::MAX_RETRY_AFTER;

/// The `anthropic-version` header sent.
pub(super) const VERSION: &str = "2023-06-01";

/// The request body of `chat` for `model`; `default_max_tokens` when the chat gives none.
pub(super) fn body(model: &str, chat: &Chat, default_max_tokens: u32) -> Result<Value, CallError> {
    let (system, messages) = turns(&chat.messages)?;
    let mut body = json!({
        "model": model,
        "max_tokens": chat.max_tokens.unwrap_or(default_max_tokens),
        "messages": messages,
        "stream": chat.stream,
    });
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    if let Some(t) = chat.temperature {
        body["temperature"] = json!(t.min(1.0));
    }
    if !chat.tools.is_empty() {
        body["tools"] = chat.tools.iter().map(tool).collect();
    }
    if let Some(choice) = &chat.tool_choice {
        body["tool_choice"] = tool_choice(choice);
    }
    if let Some(schema) = &chat.response_schema {
        body["output_config"] = json!({ "format": { "type": "json_schema", "schema": schema } });
    }
    Ok(body)
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

/// The system blocks and the user/assistant turns of `messages` (see the module docs).
fn turns(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), CallError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let text = m.content_text();
        let mut blocks = Vec::new();
        let role = match m.role {
            Role::System => {
                if !text.is_empty() {
                    system.push(text_block(text));
                }
                continue;
            }
            Role::User => "user",
            Role::Tool => {
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                });
                if !text.is_empty() {
                    block["content"] = json!(text);
                }
                blocks.push(block);
                "user"
            }
            Role::Assistant => "assistant",
        };
        if m.role != Role::Tool && !text.is_empty() {
            blocks.push(text_block(text));
        }
        for c in m.tool_calls.iter().flatten() {
            let args = c.function.arguments.trim();
            let input = match serde_json::from_str::<Value>(args) {
                _ if args.is_empty() => json!({}),
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(CallError::Unsupported(format!(
                        "`messages[{i}]`: tool call {:?} has arguments that are not a JSON \
                         object, which Anthropic's tool_use input must be",
                        c.id
                    )));
                }
            };
            blocks.push(json!({ "type": "tool_use", "id": c.id, "name": c.function.name, "input": input }));
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let mut out = Vec::with_capacity(turns.len());
    for (k, (role, content)) in turns.into_iter().enumerate() {
        if content.is_empty() {
            return Err(CallError::Unsupported(format!(
                "turn {k} ({role}) would have no content, which Anthropic refuses"
            )));
        }
        out.push(json!({ "role": role, "content": content }));
    }
    Ok((system, out))
}

/// An OpenAI tool (`{type: function, function: {name, description, parameters}}`, checked at
/// intake) as an Anthropic one.
fn tool(t: &Value) -> Value {
    let f = &t["function"];
    let mut out = json!({
        "name": f["name"],
        "input_schema": match &f["parameters"] {
            Value::Object(o) => Value::Object(o.clone()),
            _ => json!({ "type": "object", "properties": {} }),
        },
    });
    if let Some(d) = f["description"].as_str() {
        out["description"] = json!(d);
    }
    out
}

/// OpenAI's `tool_choice` (checked at intake) as Anthropic's.
fn tool_choice(c: &Value) -> Value {
    match c.as_str() {
        Some("none") => json!({ "type": "none" }),
        Some("required") => json!({ "type": "any" }),
        Some(_) => json!({ "type": "auto" }),
        None => json!({ "type": "tool", "name": c["function"]["name"] }),
    }
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`: `end_turn` and `stop_sequence` are
/// `stop`, `max_tokens` and `model_context_window_exceeded` are `length`, `tool_use` is
/// `tool_calls`, `refusal` is `content_filter`; any other (`pause_turn`, ...) is kept as it is.
pub(super) fn finish_reason(stop: &str) -> String {
    match stop {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_string()
}

/// Token counts as Anthropic reports them; later reports replace the counts they carry.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Tokens {
    input: u64,
    cache_write: u64,
    cache_read: u64,
    output: u64,
}

impl Tokens {
    fn take(&mut self, u: &Value) {
        for (field, slot) in [
            ("input_tokens", &mut self.input),
            ("cache_creation_input_tokens", &mut self.cache_write),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("output_tokens", &mut self.output),
        ] {
            if let Some(n) = u[field].as_u64() {
                *slot = n;
            }
        }
    }

    fn put(self, reply: &mut Reply) {
        reply.tokens_in = self.input + self.cache_write + self.cache_read;
        reply.tokens_out = self.output;
    }
}

/// Sends one request and reads the reply.
pub(super) async fn send(
    ctx: &ExecContext,
    r: Request<'_>,
    default_max_tokens: u32,
) -> Result<Reply, CallError> {
    let mut req = r
        .client
        .post(r.url)
        .header("anthropic-version", VERSION)
        .json(&body(r.model, r.chat, default_max_tokens)?);
    if let Some(key) = r.api_key {
        req = req.header("x-api-key", key);
    }
    let mut resp = wire::bounded(ctx, r.timeout, "reply", req.send()).await?;
    if !resp.status().is_success() {
        let reset = ratelimit_reset(resp.headers(), SystemTime::now());
        let e = ErrorReply::read(ctx, &mut resp, r.timeout).await;
        return Err(classify(&e, reset));
    }
    let exhausted_for = ratelimit_reset(resp.headers(), SystemTime::now()).filter(|d| !d.is_zero());
    let mut reply = if wire::is_sse(&resp) {
        read_stream(ctx, &mut resp, &r).await?
    } else {
        parse_message(&wire::read_json(ctx, &mut resp, &r).await?, r.max_bytes)?
    };
    reply.exhausted_for = exhausted_for;
    Ok(wire::complete(reply, &r))
}

/// An error reply classed as the OpenAI path does, but a spend limit is not transient.
fn classify(e: &ErrorReply, reset: Option<Duration>) -> CallError {
    let spent = (e.status == 429 && e.body.contains("enforced_spend_limit_reached"))
        || (e.status == 400 && e.body.contains("reached your specified API usage limits"));
    if spent {
        return CallError::Misconfigured(format!("spend limit reached: {}", e.message()));
    }
    e.classify(reset)
}

/// An `error` event's `error` classed by its `type` (the stream's status is 200 whatever
/// went wrong).
fn stream_error(err: &Value) -> CallError {
    let kind = err["type"].as_str().unwrap_or("unknown");
    let msg = format!(
        "the stream reported an error: {kind}: {}",
        err["message"].as_str().unwrap_or_default()
    );
    match kind {
        "rate_limit_error" => CallError::Transient {
            reason: msg,
            retry_after: Some(Duration::from_secs(1)),
        },
        "invalid_request_error" | "request_too_large" => CallError::Refused(msg),
        "authentication_error" | "permission_error" | "not_found_error" | "billing_error" => {
            CallError::Misconfigured(msg)
        }
        _ => CallError::transient(msg),
    }
}

/// How long until the latest `anthropic-ratelimit-<limit>-reset` (RFC 3339) among the limits
/// whose `-remaining` is 0, seen at `now`; at most [`MAX_RETRY_AFTER`].
fn ratelimit_reset(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    headers
        .iter()
        .filter_map(|(name, v)| {
            let limit = name
                .as_str()
                .strip_prefix("anthropic-ratelimit-")?
                .strip_suffix("-remaining")?;
            (v.to_str().ok()?.trim() == "0").then_some(limit)
        })
        .filter_map(|limit| {
            let reset = headers.get(format!("anthropic-ratelimit-{limit}-reset"))?;
            let at = rfc3339(reset.to_str().ok()?)?;
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        })
        .max()
        .map(|d| d.min(MAX_RETRY_AFTER))
}

/// An RFC 3339 time (`2026-12-07T20:00:00Z`, fractions and offsets allowed).
fn rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let seps = s.as_bytes();
    if seps.get(4) != Some(&b'-')
        || seps.get(7) != Some(&b'-')
        || !matches!(seps.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (oh, om) = (
                rest.get(1..3)?.parse::<i64>().ok()?,
                rest.get(4..6)?.parse::<i64>().ok()?,
            );
            if rest.len() != 6 || &rest[3..4] != ":" {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// A non-streamed Message; its tool inputs may total `max_bytes`.
fn parse_message(v: &Value, max_bytes: usize) -> Result<Reply, CallError> {
    if v["type"] == "error" {
        return Err(stream_error(&v["error"]));
    }
    let Some(blocks) = v["content"].as_array() else {
        return Err(CallError::transient("the reply has no content"));
    };
    let mut content = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => content.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": { "name": b["name"], "arguments": arguments(&b["input"]) },
            })),
            _ => {}
        }
    }
    let mut reply = Reply {
        content,
        tool_calls: ToolCalls::whole(&Value::Array(calls), max_bytes).map_err(CallError::Unusable)?,
        finish_reason: v["stop_reason"].as_str().map(finish_reason),
        id: v["id"].as_str().unwrap_or_default().to_string(),
        upstream_model: v["model"].as_str().unwrap_or_default().to_string(),
        ..Reply::default()
    };
    let mut tokens = Tokens::default();
    tokens.take(&v["usage"]);
    tokens.put(&mut reply);
    Ok(reply)
}

/// A tool input as the arguments text of a tool call (`{}` when there is none).
fn arguments(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_string(),
        Value::Object(o) if o.is_empty() => "{}".to_string(),
        other => other.to_string(),
    }
}

/// Where a stream is, beyond the reply so far.
#[derive(Default)]
pub(super) struct Events {
    /// Content block index -> the position among the reply's tool calls, for `tool_use` blocks.
    tools: HashMap<u64, usize>,
    tokens: Tokens,
}

impl Events {
    /// Takes one event (`name` from `event:`, the data's `type` winning); true at
    /// `message_stop`.
    pub(super) fn take(&mut self, s: &mut Reading, name: &str, data: &str) -> Result<bool, CallError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| CallError::transient(format!("a stream event is not JSON: {e}")))?;
        let at = v["index"].as_u64().unwrap_or(0);
        match v["type"].as_str().unwrap_or(name) {
            "message_start" => {
                let m = &v["message"];
                s.reply.id = m["id"].as_str().unwrap_or_default().to_string();
                s.reply.upstream_model = m["model"].as_str().unwrap_or_default().to_string();
                self.tokens.take(&m["usage"]);
            }
            "content_block_start" => {
                let b = &v["content_block"];
                match b["type"].as_str() {
                    Some("text") => s.text(b["text"].as_str().unwrap_or_default()),
                    Some("tool_use") => {
                        let k = self.tools.len();
                        self.tools.insert(at, k);
                        let given = match &b["input"] {
                            Value::Object(o) if !o.is_empty() => b["input"].to_string(),
                            _ => String::new(),
                        };
                        s.tool(&json!({
                            "index": k, "id": b["id"], "type": "function",
                            "function": { "name": b["name"], "arguments": given },
                        }))?;
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => s.text(d["text"].as_str().unwrap_or_default()),
                    Some("input_json_delta") => {
                        let Some(k) = self.tools.get(&at) else {
                            return Err(CallError::transient(format!(
                                "an input_json_delta for block {at}, which is not a tool_use block"
                            )));
                        };
                        let fragment = d["partial_json"].as_str().unwrap_or_default();
                        s.tool(&json!({ "index": k, "function": { "arguments": fragment } }))?;
                    }
                    _ => {}
                }
            }
            "content_block_stop" if self.tools.contains_key(&at) => s.finish_call(),
            "message_delta" => {
                if let Some(stop) = v["delta"]["stop_reason"].as_str() {
                    s.reply.finish_reason = Some(finish_reason(stop));
                }
                self.tokens.take(&v["usage"]);
            }
            "message_stop" => return Ok(true),
            "error" => return Err(stream_error(&v["error"])),
            _ => {}
        }
        Ok(false)
    }

    /// The reply once the stream is over: usage set, a tool call that streamed no input given
    /// `{}`.
    pub(super) fn close(&self, mut reply: Reply) -> Reply {
        self.tokens.put(&mut reply);
        for c in &mut reply.tool_calls {
            if c.function.arguments.trim().is_empty() {
                c.function.arguments = "{}".into();
            }
        }
        reply
    }
}

/// A streamed reply (see the module docs), progress sent as the OpenAI path sends it.
async fn read_stream(
    ctx: &ExecContext,
    resp: &mut reqwest::Response,
    r: &Request<'_>,
) -> Result<Reply, CallError> {
    let mut s = Reading::new(r.max_bytes);
    let mut events = Events::default();
    let done = wire::read_events(ctx, resp, r, &mut s, |s, name, data| events.take(s, name, data)).await?;
    if !done && s.reply.finish_reason.is_none() {
        return Err(CallError::transient("the stream ended before the reply did"));
    }
    Ok(events.close(s.end(ctx, r)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::llm::chat::{FunctionCall, ToolCall, ToolKind};

    fn chat(messages: Vec<Message>) -> Chat {
        Chat {
            messages,
            max_tokens: None,
            temperature: None,
            stream: false,
            response_schema: None,
            tools: Vec::new(),
            tool_choice: None,
        }
    }

    fn call(id: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: ToolKind::Function,
            function: FunctionCall {
                name: "f".into(),
                arguments: args.into(),
            },
        }
    }

    fn tool_msg(id: &str, text: &str) -> Message {
        Message {
            tool_call_id: Some(id.into()),
            ..Message::text(Role::Tool, text)
        }
    }

    #[test]
    fn the_chat_becomes_system_blocks_and_merged_alternating_turns() {
        let assistant = Message {
            tool_calls: Some(vec![call("a", r#"{"x": 1}"#), call("b", "")]),
            ..Message::text(Role::Assistant, "Looking.")
        };
        let c = chat(vec![
            Message::text(Role::System, "One."),
            Message::text(Role::User, "hi"),
            Message::text(Role::System, "Two."),
            Message::text(Role::User, "there"),
            assistant,
            tool_msg("a", "r1"),
            tool_msg("b", ""),
        ]);
        let b = body("m", &c, 99).unwrap();
        assert_eq!(b["max_tokens"], 99);
        assert_eq!(
            b["system"],
            json!([{ "type": "text", "text": "One." }, { "type": "text", "text": "Two." }])
        );
        assert_eq!(
            b["messages"],
            json!([
                { "role": "user", "content": [{ "type": "text", "text": "hi" }, { "type": "text", "text": "there" }] },
                { "role": "assistant", "content": [
                    { "type": "text", "text": "Looking." },
                    { "type": "tool_use", "id": "a", "name": "f", "input": { "x": 1 } },
                    { "type": "tool_use", "id": "b", "name": "f", "input": {} },
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "a", "content": "r1" },
                    { "type": "tool_result", "tool_use_id": "b" },
                ] },
            ])
        );
        assert!(b.get("tools").is_none() && b.get("temperature").is_none());
    }

    #[test]
    fn what_the_messages_api_cannot_say_is_unsupported() {
        let bad = Message {
            tool_calls: Some(vec![call("a", "\"text\"")]),
            ..Message::text(Role::Assistant, "")
        };
        let c = chat(vec![Message::text(Role::User, "hi"), bad]);
        let err = body("m", &c, 1).unwrap_err();
        assert!(
            matches!(&err, CallError::Unsupported(m) if m.contains("`messages[1]`")),
            "{err:?}"
        );
        let c = chat(vec![Message::text(Role::User, "")]);
        assert!(matches!(body("m", &c, 1), Err(CallError::Unsupported(_))));
    }

    #[test]
    fn tool_choices_and_stop_reasons_map_to_their_counterparts() {
        for (openai, anthropic) in [
            (json!("auto"), json!({ "type": "auto" })),
            (json!("none"), json!({ "type": "none" })),
            (json!("required"), json!({ "type": "any" })),
            (
                json!({ "type": "function", "function": { "name": "f" } }),
                json!({ "type": "tool", "name": "f" }),
            ),
        ] {
            assert_eq!(tool_choice(&openai), anthropic);
        }
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "pause_turn"),
        ] {
            assert_eq!(finish_reason(stop), finish);
        }
    }

    #[test]
    fn a_message_reply_is_read_with_its_cache_tokens() {
        let v = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                { "type": "text", "text": "Let me look." },
                { "type": "thinking", "thinking": "…" },
                { "type": "tool_use", "id": "toolu_1", "name": "lookup", "input": { "q": "x" } },
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": { "input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 3, "output_tokens": 18 },
        });
        let r = parse_message(&v, 1 << 20).unwrap();
        assert_eq!(r.content, "Let me look.");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!((r.tokens_in, r.tokens_out), (123, 18));
        assert_eq!(
            (
                r.tool_calls[0].id.as_str(),
                r.tool_calls[0].function.arguments.as_str()
            ),
            ("toolu_1", r#"{"q":"x"}"#)
        );
        assert_eq!((r.id.as_str(), r.upstream_model.as_str()), ("msg_1", "claude-x"));
    }

    /// The event sequence of Anthropic's streaming docs, a tool input in fragments (the first
    /// empty), a ping and an unknown event between them.
    #[test]
    fn a_stream_is_assembled_from_its_events() {
        let mut s = Reading::new(1 << 20);
        let mut ev = Events::default();
        let events = [
            (
                "message_start",
                json!({ "type": "message_start", "message": { "id": "msg_1", "model": "claude-x", "content": [], "stop_reason": null, "usage": { "input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1 } } }),
            ),
            (
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            ),
            ("ping", json!({ "type": "ping" })),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "Okay, " } }),
            ),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "looking." } }),
            ),
            (
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 0 }),
            ),
            (
                "content_block_start",
                json!({ "type": "content_block_start", "index": 1, "content_block": { "type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {} } }),
            ),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 1, "delta": { "type": "input_json_delta", "partial_json": "" } }),
            ),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 1, "delta": { "type": "input_json_delta", "partial_json": "{\"location\": \"San Fra" } }),
            ),
            ("something_new", json!({ "type": "something_new" })),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 1, "delta": { "type": "input_json_delta", "partial_json": "ncisco\"}" } }),
            ),
            (
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 1 }),
            ),
            (
                "content_block_start",
                json!({ "type": "content_block_start", "index": 2, "content_block": { "type": "tool_use", "id": "toolu_b", "name": "now", "input": {} } }),
            ),
            (
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 2 }),
            ),
            (
                "message_delta",
                json!({ "type": "message_delta", "delta": { "stop_reason": "tool_use", "stop_sequence": null }, "usage": { "output_tokens": 89 } }),
            ),
        ];
        for (name, data) in &events {
            assert!(!ev.take(&mut s, name, &data.to_string()).unwrap());
        }
        assert!(
            ev.take(&mut s, "message_stop", r#"{"type": "message_stop"}"#)
                .unwrap()
        );
        // The event name stands in for a data without `type`.
        assert!(!ev.take(&mut s, "ping", "{}").unwrap());
        let mut r = s.reply;
        r.tool_calls = s.calls.into_calls().unwrap();
        let r = ev.close(r);
        assert_eq!(r.content, "Okay, looking.");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            (r.tokens_in, r.tokens_out),
            (30, 89),
            "output replaced, not added"
        );
        let calls: Vec<(&str, &str, &str)> = r
            .tool_calls
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.function.name.as_str(),
                    c.function.arguments.as_str(),
                )
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("toolu_a", "get_weather", r#"{"location": "San Francisco"}"#),
                ("toolu_b", "now", "{}")
            ]
        );
    }

    #[test]
    fn stream_errors_are_classed_by_their_type() {
        let mut s = Reading::new(1 << 20);
        let mut ev = Events::default();
        let err =
            |kind: &str| json!({ "type": "error", "error": { "type": kind, "message": "m" } }).to_string();
        assert!(matches!(
            ev.take(&mut s, "error", &err("overloaded_error")),
            Err(CallError::Transient {
                retry_after: None,
                ..
            })
        ));
        assert!(matches!(
            ev.take(&mut s, "error", &err("rate_limit_error")),
            Err(CallError::Transient {
                retry_after: Some(_),
                ..
            })
        ));
        assert!(matches!(
            ev.take(&mut s, "error", &err("invalid_request_error")),
            Err(CallError::Refused(_))
        ));
        assert!(matches!(
            ev.take(&mut s, "error", &err("authentication_error")),
            Err(CallError::Misconfigured(_))
        ));
        let stray = json!({ "type": "content_block_delta", "index": 7, "delta": { "type": "input_json_delta", "partial_json": "{" } });
        assert!(matches!(
            ev.take(&mut s, "", &stray.to_string()),
            Err(CallError::Transient { .. })
        ));
        assert!(ev.take(&mut s, "", "not json").is_err());
    }

    #[test]
    fn rate_limit_resets_are_read_from_exhausted_limits() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(rfc3339("2027-01-15T08:00:00Z"), Some(now));
        assert_eq!(rfc3339("2027-01-15T09:30:00.123+01:30"), Some(now));
        assert_eq!(
            rfc3339("2027-01-15 08:00:05z"),
            Some(now + Duration::from_secs(5))
        );
        for bad in [
            "2027-01-15",
            "2027-13-15T08:00:00Z",
            "2027-01-15T08:00:00",
            "x027-01-15T08:00:00Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in [
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2027-01-15T08:00:10Z"),
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2027-01-15T08:00:40Z"),
            ("anthropic-ratelimit-input-tokens-remaining", "5000"),
            ("anthropic-ratelimit-input-tokens-reset", "2027-01-15T09:00:00Z"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        assert_eq!(ratelimit_reset(&h, now), Some(Duration::from_secs(40)));
        h.remove("anthropic-ratelimit-tokens-remaining");
        assert_eq!(ratelimit_reset(&h, now), Some(Duration::from_secs(10)));
        h.remove("anthropic-ratelimit-requests-remaining");
        assert_eq!(ratelimit_reset(&h, now), None);
    }
}
