//! `stream: true` of `POST /v1/chat/completions`: the task's events as OpenAI's
//! `chat.completion.chunk` Server-Sent Events.
//!
//! The answer waits for the task's first reply text (or its end) before it starts, so a task
//! that fails before any text (every provider down, rate-limited, refused) is answered with
//! the HTTP error of a non-streamed request. Then: a first chunk with `delta.role`, the reply
//! text as the `llm` executor reports it (its progress events) in `delta.content` chunks,
//! at the end what the finished task says that was not streamed yet (the whole reply, for
//! requests with tools or a `response_format`, whose text is not streamed; the tool calls,
//! each in one delta), a chunk with `finish_reason`, with `stream_options.include_usage` a
//! last chunk with `choices: []` and the usage, and `data: [DONE]`. A failure after the
//! start is a `data: {"error": ...}` frame, then the end of the stream.
//!
//! The streamed text is checked against the finished task's reply: if it is not the start
//! of it (a provider failed mid-reply and a fallback answered, or a progress report was
//! dropped under load), the stream ends with an error frame (`code: stream_diverged`)
//! rather than a reply that is not the task's.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cadre_core::gateway::{ChatFollow, Step};
use cadre_proto::{TaskRecord, TaskState};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::openai_request::ChatRequest;
use super::openai_wire::{OpenAiError, Reply, failure, held, with_task};

/// Frames buffered towards a slow client.
const FRAMES: usize = 64;
/// A comment sent while nothing else is, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Progress messages of the `llm` executor that are notes, not reply text.
fn is_note(message: &str) -> bool {
    message == "cached reply"
        || message.starts_with("rate-limited; waiting ")
        || message.starts_with("reply did not fit response_schema")
}

/// What the stream has said so far.
struct Chunks {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    streamed: String,
}

impl Chunks {
    /// One `chat.completion.chunk` with `choices`.
    fn chunk(&self, choices: Value) -> Value {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": null, "choices": choices,
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// A chunk of one choice with `delta` (and `finish_reason`).
    fn delta(&self, delta: Value, finish: Option<&str>) -> Value {
        self.chunk(json!([{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }]))
    }

    /// The frames that end a succeeded task: what was not streamed, the finish, the usage.
    fn ending(&mut self, reply: &Reply) -> Result<Vec<Value>, OpenAiError> {
        let mut out = Vec::new();
        self.model.clone_from(&reply.model);
        let content = reply.content.as_deref().unwrap_or("");
        let Some(rest) = content.strip_prefix(self.streamed.as_str()) else {
            return Err(OpenAiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                "stream_diverged",
                "the streamed text is not the start of the task's reply (a provider failed \
                 mid-reply and a fallback answered, or progress was dropped); get the task for the reply",
            ));
        };
        if !rest.is_empty() {
            out.push(self.delta(json!({ "content": rest }), None));
        }
        if !reply.tool_calls.is_empty() {
            let calls: Vec<Value> = reply
                .tool_calls
                .iter()
                .enumerate()
                .map(|(k, c)| json!({ "index": k, "id": c["id"], "type": "function", "function": c["function"] }))
                .collect();
            out.push(self.delta(json!({ "tool_calls": calls }), None));
        }
        out.push(self.delta(json!({}), Some(&reply.finish_reason)));
        if self.include_usage {
            let mut usage = self.chunk(json!([]));
            usage["usage"] = reply.usage();
            out.push(usage);
        }
        Ok(out)
    }
}

/// The streamed answer of a followed task (see the module doc).
pub(crate) async fn answer(mut follow: ChatFollow, req: ChatRequest) -> Result<Response, OpenAiError> {
    let task = follow.task.clone();
    let first = loop {
        match follow
            .next()
            .await
            .map_err(|e| OpenAiError::from(e).for_task(&task))?
        {
            Step::Progress(_, m) if !req.live_text || is_note(&m) => continue,
            Step::Held(after, why) => return Err(held(&task, after, &why)),
            Step::Finished(record) if record.state != TaskState::Succeeded => return Err(failure(&record)),
            step => break step,
        }
    };
    let chunks = Chunks {
        id: format!("chatcmpl-{}", task.id),
        created: task.created_at_ms / 1000,
        model: req.model.clone(),
        include_usage: req.include_usage,
        streamed: String::new(),
    };
    let (tx, rx) = mpsc::channel::<Event>(FRAMES);
    let opening = chunks.delta(json!({ "role": "assistant", "content": "" }), None);
    let stream = tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok::<Event, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    let resp = with_task(sse.into_response(), &task);
    tokio::spawn(async move {
        if send(&tx, &opening).await {
            follow_to_end(follow, first, chunks, req, &task, &tx).await;
        }
    });
    Ok(resp)
}

/// Sends `frame`; false when the client has gone.
async fn send(tx: &mpsc::Sender<Event>, frame: &Value) -> bool {
    tx.send(Event::default().data(frame.to_string())).await.is_ok()
}

/// Streams the task's steps from `step` on, then its ending and `[DONE]` (or an error frame).
async fn follow_to_end(
    mut follow: ChatFollow,
    mut step: Step,
    mut chunks: Chunks,
    req: ChatRequest,
    task: &TaskRecord,
    tx: &mpsc::Sender<Event>,
) {
    let ending = loop {
        match step {
            Step::Progress(_, m) if req.live_text && !is_note(&m) => {
                chunks.streamed.push_str(&m);
                if !send(tx, &chunks.delta(json!({ "content": m }), None)).await {
                    return;
                }
            }
            Step::Progress(..) => {}
            Step::Held(after, why) => break Err(held(task, after, &why)),
            Step::Finished(record) if record.state == TaskState::Succeeded => {
                break chunks.ending(&Reply::of(&record, &req.model));
            }
            Step::Finished(record) => break Err(failure(&record)),
        }
        step = match follow.next().await {
            Ok(s) => s,
            Err(e) => break Err(OpenAiError::from(e).for_task(task)),
        };
    };
    match ending {
        Ok(frames) => {
            for f in frames {
                if !send(tx, &f).await {
                    return;
                }
            }
            let _ = tx.send(Event::default().data("[DONE]")).await;
        }
        Err(e) => {
            let _ = send(tx, &e.body()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_not_reply_text() {
        assert!(is_note("cached reply"));
        assert!(is_note("rate-limited; waiting 20 ms"));
        assert!(is_note("reply did not fit response_schema (x); asking again"));
        assert!(!is_note("The quick "));
    }
}
