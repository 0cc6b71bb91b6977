//! Replies in the chat-completions wire format: a `chat.completion` object, a stream of
//! `chat.completion.chunk` server-sent events, an error body.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Token counts a reply reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

impl Tokens {
    pub(crate) fn usage(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// A non-streamed `chat.completion` whose message is `message`.
pub(crate) fn completion(model: &str, message: Value, finish: &str, usage: Option<Tokens>) -> Value {
    let mut v = json!({
        "id": "chatcmpl-fake1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": format!("{model}-2026"),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
    });
    if let Some(t) = usage {
        v["usage"] = t.usage();
    }
    v
}

/// A text `chat.completion` (`finish_reason` "stop").
pub(crate) fn text_completion(model: &str, content: &str, usage: Option<Tokens>) -> Value {
    let message = json!({ "role": "assistant", "content": content, "refusal": null });
    completion(model, message, "stop", usage)
}

/// One `chat.completion.chunk` event. `usage_null`: the request asked for usage, so every
/// chunk but the last carries `"usage": null`, as OpenAI's do.
pub(crate) fn chunk(model: &str, delta: Value, finish: Option<&str>, usage_null: bool) -> String {
    let mut v = json!({
        "id": "chatcmpl-fake2",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": format!("{model}-2026"),
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    });
    if usage_null {
        v["usage"] = Value::Null;
    }
    format!("data: {v}\n\n")
}

/// The last events of a stream: the usage chunk (no choices) when asked for, then `[DONE]`.
pub(crate) fn stream_end(model: &str, usage: Option<Tokens>) -> Vec<String> {
    let mut events = Vec::new();
    if let Some(t) = usage {
        let v = json!({
            "id": "chatcmpl-fake2", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": format!("{model}-2026"), "choices": [], "usage": t.usage(),
        });
        events.push(format!("data: {v}\n\n"));
    }
    events.push("data: [DONE]\n\n".into());
    events
}

/// An error reply with OpenAI's error body.
pub(crate) fn error(status: StatusCode, message: &str, retry_after: Option<&str>) -> Response {
    let body = json!({ "error": { "message": message, "type": "fake_error", "param": null, "code": null } });
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, s.parse().unwrap());
    }
    resp
}

/// A 400 `invalid_request_error`, as OpenAI answers a request it refuses.
pub(crate) fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    let body = json!({ "error": {
        "message": message, "type": "invalid_request_error", "param": param, "code": code,
    } });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `events` as a server-sent-event reply, `gap` apart; `stall` never ends it after the last.
pub(crate) fn sse(events: Vec<String>, gap: Duration, stall: bool) -> Response {
    let s = futures::stream::unfold((events.into_iter(), true), move |(mut it, first)| async move {
        match it.next() {
            Some(e) => {
                if !first && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok::<_, Infallible>(Bytes::from(e)), (it, false)))
            }
            None if stall => {
                std::future::pending::<()>().await;
                None
            }
            None => None,
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(s))
        .unwrap()
}

/// A streamed text reply of `parts`, `gap` apart; `stall` stops sending after the first part
/// and never ends.
pub(crate) fn stream(
    model: &str,
    parts: Vec<String>,
    gap: Duration,
    usage: Option<Tokens>,
    stall: bool,
) -> Response {
    let null = usage.is_some();
    let mut events = vec![chunk(
        model,
        json!({ "role": "assistant", "content": "" }),
        None,
        null,
    )];
    events.extend(
        parts
            .iter()
            .map(|p| chunk(model, json!({ "content": p }), None, null)),
    );
    if !stall {
        events.push(chunk(model, json!({}), Some("stop"), null));
        events.extend(stream_end(model, usage));
    }
    sse(events, gap, stall)
}
