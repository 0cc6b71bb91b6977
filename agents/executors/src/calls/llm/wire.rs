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
    /// The provider said it will refuse requests for this long (a rate limit used up by this
    /// one): it is set aside as after a 429.
    pub exhausted_for: Option<Duration>,
    /// When the first text or tool-call fragment of a streamed reply arrived (None: the reply
    /// was not streamed, or streamed nothing).
    pub first_token: Option<Instant>,
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
    /// This provider's wire format cannot say what the chat says (e.g. tool-call arguments
    /// that are not a JSON object, for Anthropic); another provider may take it.
    Unsupported(String),
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
            CallError::Unsupported(_) => "unsupported",
            CallError::Unusable(_) => "unusable",
            CallError::Cancelled => "cancelled",
        }
    }

    pub(super) fn transient(reason: impl Into<String>) -> Self {
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
            CallError::Misconfigured(m)
            | CallError::Refused(m)
            | CallError::Unsupported(m)
            | CallError::Unusable(m) => f.write_str(m),
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
pub(super) async fn bounded<T>(
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
    if !resp.status().is_success() {
        let e = ErrorReply::read(ctx, &mut resp, r.timeout).await;
        return Err(e.classify(None));
    }
    let reply = if is_sse(&resp) {
        read_stream(ctx, &mut resp, &r).await?
    } else {
        parse_completion(&read_json(ctx, &mut resp, &r).await?, r.max_bytes)?
    };
    Ok(complete(reply, &r))
}

/// A provider's answer that is not a success: its status, its `Retry-After` and the start of
/// its body.
pub(super) struct ErrorReply {
    pub status: u16,
    /// Seconds or an HTTP-date, at most an hour.
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl ErrorReply {
    /// Reads the status, `Retry-After` and up to 64 KiB of the body.
    pub(super) async fn read(ctx: &ExecContext, resp: &mut reqwest::Response, timeout: Duration) -> Self {
        let retry_after = crate::support::retry_after::from_headers(resp.headers());
        let text = read_body(ctx, resp, timeout, 64 << 10).await.unwrap_or_default();
        ErrorReply {
            status: resp.status().as_u16(),
            retry_after,
            body: String::from_utf8_lossy(&text).into_owned(),
        }
    }

    /// `HTTP <status>: <the start of the body>`.
    pub(super) fn message(&self) -> String {
        let snippet: String = self.body.chars().take(SNIPPET).collect();
        format!("HTTP {}: {}", self.status, snippet.trim())
    }

    /// What it means for the chain: 429, 408 and 5xx are transient (a 429 sets its provider
    /// aside for its `Retry-After`, else for `fallback_wait`, else for 1 s), 400, 413 and 422
    /// refuse the request, anything else means the provider is set up wrong.
    pub(super) fn classify(&self, fallback_wait: Option<Duration>) -> CallError {
        let msg = self.message();
        match self.status {
            429 | 408 | 500..=599 => CallError::Transient {
                reason: msg,
                retry_after: if self.status == 429 {
                    self.retry_after
                        .or(fallback_wait)
                        .or(Some(Duration::from_secs(1)))
                } else {
                    self.retry_after
                },
            },
            400 | 413 | 422 => CallError::Refused(msg),
            _ => CallError::Misconfigured(msg),
        }
    }
}

/// Whether the reply is a server-sent event stream.
pub(super) fn is_sse(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A whole JSON reply, at most `r.max_bytes`.
pub(super) async fn read_json(
    ctx: &ExecContext,
    resp: &mut reqwest::Response,
    r: &Request<'_>,
) -> Result<Value, CallError> {
    let bytes = read_body(ctx, resp, r.timeout, r.max_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| CallError::transient(format!("the reply is not JSON: {e}")))
}

/// A reply made whole: usage estimated (characters / 4) when the provider reported none, the
/// upstream model named when it did not say.
pub(super) fn complete(mut reply: Reply, r: &Request<'_>) -> Reply {
    if reply.tokens_in == 0 && reply.tokens_out == 0 {
        let chars_in: usize = r.chat.messages.iter().map(|m| m.chars()).sum();
        reply.tokens_in = chars_in.div_ceil(4) as u64;
        reply.tokens_out = reply.chars_out().div_ceil(4) as u64;
        reply.usage_estimated = true;
    }
    if reply.upstream_model.is_empty() {
        reply.upstream_model = r.model.to_string();
    }
    reply
}

/// A whole body, at most `max` bytes, each chunk within `timeout`.
pub(super) async fn read_body(
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
    pub(super) fn chars_out(&self) -> usize {
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
    let mut s = Reading::new(r.max_bytes);
    let done = read_events(ctx, resp, r, &mut s, |s, _, data| {
        if data == "[DONE]" {
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| CallError::transient(format!("a stream chunk is not JSON: {e}")))?;
        s.take(&v)?;
        Ok(false)
    })
    .await?;
    if !done && s.reply.finish_reason.is_none() {
        return Err(CallError::transient("the stream ended before the reply did"));
    }
    s.end(ctx, r)
}

/// Reads server-sent events, bounded in size and in time between chunks, handing each
/// `data:` line to `on` with the name of its event (`event:`, "" when none was given) until
/// `on` says the stream is done (returned: true) or the stream ends (false). Progress is sent
/// at most once per [`PROGRESS_EVERY`].
pub(super) async fn read_events(
    ctx: &ExecContext,
    resp: &mut reqwest::Response,
    r: &Request<'_>,
    s: &mut Reading,
    mut on: impl FnMut(&mut Reading, &str, &str) -> Result<bool, CallError>,
) -> Result<bool, CallError> {
    let mut total = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    let mut event = String::new();
    loop {
        let Some(chunk) = bounded(ctx, r.timeout, "reply chunk", resp.chunk()).await? else {
            return Ok(false);
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
            let line = line.trim_end();
            if line.is_empty() {
                event.clear();
                continue;
            }
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
                continue;
            }
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            if on(s, &event, data.trim_start())? {
                return Ok(true);
            }
            if s.last_progress.elapsed() >= PROGRESS_EVERY {
                s.progress(ctx, r);
            }
        }
    }
}

/// A stream being read.
pub(super) struct Reading {
    pub reply: Reply,
    pub calls: ToolCalls,
    /// Text not yet sent as progress.
    text: String,
    /// Names of complete tool calls not yet sent as progress.
    called: Vec<String>,
    /// Characters of text and arguments so far.
    chars_out: usize,
    last_progress: Instant,
}

impl Reading {
    /// Nothing read yet; tool-call arguments may total `max_bytes`.
    pub(super) fn new(max_bytes: usize) -> Self {
        Reading {
            reply: Reply::default(),
            calls: ToolCalls::new(max_bytes),
            text: String::new(),
            called: Vec::new(),
            chars_out: 0,
            last_progress: Instant::now(),
        }
    }

    /// Takes one OpenAI chunk.
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
            self.text(text);
        }
        for entry in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            self.tool(entry)?;
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.reply.finish_reason = Some(f.to_string());
            self.finish_call();
        }
        Ok(())
    }

    /// New text of the reply.
    pub(super) fn text(&mut self, text: &str) {
        if !text.is_empty() {
            self.reply.first_token.get_or_insert_with(Instant::now);
        }
        self.reply.content.push_str(text);
        self.text.push_str(text);
        self.chars_out += text.chars().count();
    }

    /// One tool-call entry, in the shape of OpenAI's `delta.tool_calls[]` ([`ToolCalls::delta`]).
    pub(super) fn tool(&mut self, entry: &Value) -> Result<(), CallError> {
        self.reply.first_token.get_or_insert_with(Instant::now);
        self.chars_out += entry["function"]["arguments"]
            .as_str()
            .map_or(0, |a| a.chars().count());
        let complete = self.calls.delta(entry).map_err(CallError::Unusable)?;
        self.called.extend(complete);
        Ok(())
    }

    /// The current tool call is complete.
    pub(super) fn finish_call(&mut self) {
        self.called.extend(self.calls.finish());
    }

    /// The stream is over: the last progress, and the reply with its tool calls.
    pub(super) fn end(mut self, ctx: &ExecContext, r: &Request<'_>) -> Result<Reply, CallError> {
        self.finish_call();
        self.progress(ctx, r);
        self.reply.tool_calls = self.calls.into_calls().map_err(CallError::Unusable)?;
        Ok(self.reply)
    }

    /// Sends what is pending as progress: the new text, then the tool calls completed.
    pub(super) fn progress(&mut self, ctx: &ExecContext, r: &Request<'_>) {
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
