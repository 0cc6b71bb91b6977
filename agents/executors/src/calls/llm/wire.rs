//! The chat-completions wire format: one request, read as a JSON reply or as a server-sent
//! event stream of chunks, bounded in size and in time between chunks. A reply's tool calls are
//! read (or assembled from a stream) by [`ToolCalls`].

use std::fmt;
use std::time::{Duration, Instant};

use cadre_agents::ExecContext;
use serde_json::{Value, json};

use super::assemble::ToolCalls;
use super::chat::{Chat, ToolCall};

/// Least time between two progress events of a streamed reply.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// Characters of an error body quoted in an error.
const SNIPPET: usize = 300;

/// One request to send.
pub(super) struct Request<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a str,
    pub api_key: Option<&'a str>,
    pub model: &'a str,
    pub chat: &'a Chat,
    /// For the reply to start and between two chunks.
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// What a model answered.
#[derive(Clone, Debug, Default)]
pub(super) struct Reply {
    pub content: String,
    /// The tools the model asked to call (empty for a text answer).
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub id: String,
    pub upstream_model: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// The provider reported no usage; the counts are characters / 4.
    pub usage_estimated: bool,
}

/// Why one model did not answer.
#[derive(Debug)]
pub(super) enum CallError {
    /// 429, 5xx, 408, a timeout or a broken connection: another model, or later, may answer.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 401, 403, 404, a missing key: this provider is set up wrong; the next may work.
    Misconfigured(String),
    /// 400, 413, 422: the request itself is wrong; no model will take it.
    Refused(String),
    /// The reply breaks a bound (too many tool calls, too much in their arguments), or its tool
    /// calls cannot be used: asking again would not help.
    Unusable(String),
    /// The task was cancelled.
    Cancelled,
}

impl CallError {
    /// The `error.type` span attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Transient { .. } => "transient",
            CallError::Misconfigured(_) => "misconfigured",
            CallError::Refused(_) => "refused",
            CallError::Unusable(_) => "unusable",
            CallError::Cancelled => "cancelled",
        }
    }

    fn transient(reason: impl Into<String>) -> Self {
        CallError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Transient { reason, .. } => f.write_str(reason),
            CallError::Misconfigured(m) | CallError::Refused(m) | CallError::Unusable(m) => f.write_str(m),
            CallError::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// The request body (OpenAI chat-completions).
pub(super) fn body(model: &str, chat: &Chat) -> Value {
    let mut body = json!({ "model": model, "messages": chat.messages, "stream": chat.stream });
    if let Some(n) = chat.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(t) = chat.temperature {
        body["temperature"] = json!(t);
    }
    if chat.stream {
        body["stream_options"] = json!({ "include_usage": true });
    }
    if !chat.tools.is_empty() {
        body["tools"] = Value::Array(chat.tools.clone());
    }
    if let Some(choice) = &chat.tool_choice {
        body["tool_choice"] = choice.clone();
    }
    if let Some(schema) = &chat.response_schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": { "name": "result", "schema": schema },
        });
    }
    body
}

/// Waits for `fut` unless the task is cancelled or `timeout` passes first.
async fn bounded<T>(
    ctx: &ExecContext,
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, reqwest::Error>>,
) -> Result<T, CallError> {
    tokio::select! {
        _ = ctx.cancel.cancelled() => Err(CallError::Cancelled),
        r = tokio::time::timeout(timeout, fut) => match r {
            Err(_) => Err(CallError::transient(format!("no {what} within {} ms", timeout.as_millis()))),
            // Without the URL: a provider URL may carry a key in its query.
            Ok(Err(e)) => Err(CallError::transient(format!("{what} failed: {}", error_chain(&e.without_url())))),
            Ok(Ok(v)) => Ok(v),
        },
    }
}

/// An error with its causes (reqwest's own message omits them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Sends one request and reads the reply.
pub(super) async fn send(ctx: &ExecContext, r: Request<'_>) -> Result<Reply, CallError> {
    let mut req = r.client.post(r.url).json(&body(r.model, r.chat));
    if let Some(key) = r.api_key {
        req = req.bearer_auth(key);
    }
    let mut resp = bounded(ctx, r.timeout, "reply", req.send()).await?;
    let status = resp.status();
    if !status.is_success() {
        // Seconds or an HTTP-date, at most an hour; an unreadable one on a 429 counts as 1 s.
        let after = crate::support::retry_after::from_headers(resp.headers());
        let text = read_body(ctx, &mut resp, r.timeout, 64 << 10)
            .await
            .unwrap_or_default();
        let snippet: String = String::from_utf8_lossy(&text).chars().take(SNIPPET).collect();
        let msg = format!("HTTP {}: {}", status.as_u16(), snippet.trim());
        return Err(match status.as_u16() {
            429 | 408 | 500..=599 => CallError::Transient {
                reason: msg,
                retry_after: if status.as_u16() == 429 {
                    after.or(Some(Duration::from_secs(1)))
                } else {
                    after
                },
            },
            400 | 413 | 422 => CallError::Refused(msg),
            _ => CallError::Misconfigured(msg),
        });
    }
    let streamed = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut reply = if streamed {
        read_stream(ctx, &mut resp, &r).await?
    } else {
        let bytes = read_body(ctx, &mut resp, r.timeout, r.max_bytes).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::transient(format!("the reply is not JSON: {e}")))?;
        parse_completion(&v, r.max_bytes)?
    };
    if reply.tokens_in == 0 && reply.tokens_out == 0 {
        let chars_in: usize = r.chat.messages.iter().map(|m| m.chars()).sum();
        reply.tokens_in = chars_in.div_ceil(4) as u64;
        reply.tokens_out = reply.chars_out().div_ceil(4) as u64;
        reply.usage_estimated = true;
    }
    if reply.upstream_model.is_empty() {
        reply.upstream_model = r.model.to_string();
    }
    Ok(reply)
}

/// A whole body, at most `max` bytes, each chunk within `timeout`.
async fn read_body(
    ctx: &ExecContext,
    resp: &mut reqwest::Response,
    timeout: Duration,
    max: usize,
) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    while let Some(chunk) = bounded(ctx, timeout, "reply chunk", resp.chunk()).await? {
        if out.len() + chunk.len() > max {
            return Err(CallError::transient(format!("the reply exceeds {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn usage_of(v: &Value, reply: &mut Reply) {
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        reply.tokens_in = u["prompt_tokens"].as_u64().unwrap_or(0);
        reply.tokens_out = u["completion_tokens"].as_u64().unwrap_or(0);
    }
}

impl Reply {
    /// Characters the model wrote: its text and its tool calls' arguments.
    fn chars_out(&self) -> usize {
        self.content.chars().count()
            + self
                .tool_calls
                .iter()
                .map(|c| c.function.arguments.chars().count())
                .sum::<usize>()
    }
}

/// A non-streamed `chat.completion`; its tool calls' arguments may total `max_bytes`.
fn parse_completion(v: &Value, max_bytes: usize) -> Result<Reply, CallError> {
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| CallError::transient("the reply has no choices"))?;
    let mut reply = Reply {
        content: choice["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        tool_calls: ToolCalls::whole(&choice["message"]["tool_calls"], max_bytes)
            .map_err(CallError::Unusable)?,
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        id: v["id"].as_str().unwrap_or_default().to_string(),
        upstream_model: v["model"].as_str().unwrap_or_default().to_string(),
        ..Reply::default()
    };
    usage_of(v, &mut reply);
    Ok(reply)
}

/// A streamed reply: `data: {chat.completion.chunk}` events up to `data: [DONE]`. New text
/// becomes progress events, and so does each tool call once it is complete (`tool call
/// <name>`), together at most one text and one tool-call event per [`PROGRESS_EVERY`].
async fn read_stream(
    ctx: &ExecContext,
    resp: &mut reqwest::Response,
    r: &Request<'_>,
) -> Result<Reply, CallError> {
    let mut s = Reading {
        reply: Reply::default(),
        calls: ToolCalls::new(r.max_bytes),
        text: String::new(),
        called: Vec::new(),
        chars_out: 0,
        last_progress: Instant::now(),
    };
    let mut total = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    let mut done = false;
    while !done {
        let Some(chunk) = bounded(ctx, r.timeout, "reply chunk", resp.chunk()).await? else {
            break;
        };
        total += chunk.len();
        if total > r.max_bytes {
            // Text may come shorter another time; tool calls this long are a model gone astray.
            if s.calls.started() {
                return Err(CallError::Unusable(format!(
                    "the reply's tool calls exceed the reply-size limit of {} bytes",
                    r.max_bytes
                )));
            }
            return Err(CallError::transient(format!(
                "the reply exceeds {} bytes",
                r.max_bytes
            )));
        }
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                done = true;
                break;
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| CallError::transient(format!("a stream chunk is not JSON: {e}")))?;
            s.take(&v)?;
            if s.last_progress.elapsed() >= PROGRESS_EVERY {
                s.progress(ctx, r);
            }
        }
    }
    if !done && s.reply.finish_reason.is_none() {
        return Err(CallError::transient("the stream ended before the reply did"));
    }
    s.called.extend(s.calls.finish());
    s.progress(ctx, r);
    s.reply.tool_calls = s.calls.into_calls().map_err(CallError::Unusable)?;
    Ok(s.reply)
}

/// A stream being read.
struct Reading {
    reply: Reply,
    calls: ToolCalls,
    /// Text not yet sent as progress.
    text: String,
    /// Names of complete tool calls not yet sent as progress.
    called: Vec<String>,
    /// Characters of text and arguments so far.
    chars_out: usize,
    last_progress: Instant,
}

impl Reading {
    /// Takes one chunk.
    fn take(&mut self, v: &Value) -> Result<(), CallError> {
        if let Some(err) = v.get("error") {
            return Err(CallError::transient(format!(
                "the stream reported an error: {err}"
            )));
        }
        let reply = &mut self.reply;
        if reply.id.is_empty() {
            reply.id = v["id"].as_str().unwrap_or_default().to_string();
            reply.upstream_model = v["model"].as_str().unwrap_or_default().to_string();
        }
        usage_of(v, reply);
        let Some(choice) = v["choices"].get(0) else {
            return Ok(());
        };
        if let Some(text) = choice["delta"]["content"].as_str() {
            reply.content.push_str(text);
            self.text.push_str(text);
            self.chars_out += text.chars().count();
        }
        for entry in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            self.chars_out += entry["function"]["arguments"]
                .as_str()
                .map_or(0, |a| a.chars().count());
            let complete = self.calls.delta(entry).map_err(CallError::Unusable)?;
            self.called.extend(complete);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            reply.finish_reason = Some(f.to_string());
            self.called.extend(self.calls.finish());
        }
        Ok(())
    }

    /// Sends what is pending as progress: the new text, then the tool calls completed.
    fn progress(&mut self, ctx: &ExecContext, r: &Request<'_>) {
        if self.text.is_empty() && self.called.is_empty() {
            return;
        }
        let fraction = match r.chat.max_tokens {
            Some(max) if max > 0 => (self.chars_out.div_ceil(4) as f64 / f64::from(max)).min(0.99),
            _ => 0.0,
        };
        if !self.text.is_empty() {
            ctx.progress(fraction, std::mem::take(&mut self.text));
        }
        match self.called.len() {
            0 => {}
            1 => ctx.progress(fraction, format!("tool call {}", self.called[0])),
            _ => ctx.progress(fraction, format!("tool calls {}", self.called.join(", "))),
        }
        self.called.clear();
        self.last_progress = Instant::now();
    }
}
