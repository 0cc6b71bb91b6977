//! A local server speaking the OpenAI chat-completions wire format, for tests: no real model
//! is reachable from CI, so the `llm` executor's tests (and integration tests of the crates
//! above it) talk to this over real sockets instead. It answers `POST /v1/chat/completions`
//! with JSON or server-sent-event replies, 429 with `Retry-After`, 500, slow and stalled
//! replies, with or without usage; what it does is chosen by the request's `model`.
//!
//! Layer: 1.
//! May import: none of our crates.
//!
//! ```no_run
//! # async fn demo() {
//! let fake = cadre_fake_llm::Fake::start().await;
//! // point a provider's base_url at fake.base_url, run the code under test, then:
//! assert!(fake.seen().iter().all(|s| s.body["model"] == "echo"));
//! # }
//! ```
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request's `model`.
    pub model: String,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its JSON body, as received.
    pub body: Value,
}

#[derive(Clone, Default)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<Mutex<HashMap<String, usize>>>,
}

/// A running fake provider. It serves until it is dropped (or its runtime shuts down).
pub struct Fake {
    /// Its base URL, `http://127.0.0.1:<port>/v1`: a provider's `base_url` (requests go to
    /// `<base_url>/chat/completions`).
    pub base_url: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Fake {
    /// Starts one on a free port of 127.0.0.1, on the current tokio runtime.
    ///
    /// # Panics
    /// When no port can be bound (a test cannot go on without it).
    pub async fn start() -> Fake {
        Fake::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("the fake LLM server binds a port")
    }

    /// Starts one on `addr` (port 0 = a free one), on the current tokio runtime.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Fake> {
        let shared = Shared::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Fake {
            base_url: format!("http://{addr}/v1"),
            addr,
            shared,
            server,
        })
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests so far for `model`.
    pub fn count(&self, model: &str) -> usize {
        self.seen().iter().filter(|s| s.model == model).count()
    }
}

const WORDS: [&str; 8] = [
    "The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "dog.",
];

fn completion(model: &str, content: &str, usage: bool) -> Value {
    let mut v = json!({
        "id": "chatcmpl-fake1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": format!("{model}-2026"),
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "logprobs": null,
            "finish_reason": "stop",
        }],
    });
    if usage {
        v["usage"] = json!({ "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 });
    }
    v
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let v = json!({
        "id": "chatcmpl-fake2",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": format!("{model}-2026"),
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
    });
    format!("data: {v}\n\n")
}

fn error(status: StatusCode, message: &str, retry_after: Option<&str>) -> Response {
    let body = json!({ "error": { "message": message, "type": "fake_error", "code": null } });
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(s) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, s.parse().unwrap());
    }
    resp
}

/// A streamed reply of `parts`, `gap` apart; `stall` stops sending after the first part and
/// never ends.
fn stream(model: &str, parts: Vec<String>, gap: Duration, usage: bool, stall: bool) -> Response {
    let mut events = vec![chunk(model, json!({ "role": "assistant", "content": "" }), None)];
    events.extend(parts.iter().map(|p| chunk(model, json!({ "content": p }), None)));
    if !stall {
        events.push(chunk(model, json!({}), Some("stop")));
        if usage {
            let v = json!({
                "id": "chatcmpl-fake2", "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": format!("{model}-2026"), "choices": [],
                "usage": { "prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19 },
            });
            events.push(format!("data: {v}\n\n"));
        }
        events.push("data: [DONE]\n\n".into());
    }
    let s = futures::stream::unfold((events.into_iter(), true), move |(mut it, first)| async move {
        match it.next() {
            Some(e) => {
                if !first {
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

async fn chat(State(s): State<Shared>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    let body = body.0;
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    s.seen.lock().unwrap().push(Seen {
        model: model.clone(),
        authorization,
        body: body.clone(),
    });
    let n = {
        let mut c = s.count.lock().unwrap();
        let n = c.entry(model.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let streamed = body["stream"] == true;
    let usage = body["stream_options"]["include_usage"] == true;
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let reply = |content: &str| -> Response {
        if streamed {
            let words: Vec<String> = content.split_inclusive(' ').map(str::to_string).collect();
            stream(&model, words, Duration::from_millis(5), usage, false)
        } else {
            axum::Json(completion(&model, content, true)).into_response()
        }
    };
    match model.as_str() {
        "echo" => reply(&format!("You said: {last_user}")),
        "words" => {
            let parts = WORDS.iter().map(|w| w.to_string()).collect();
            stream(&model, parts, Duration::from_millis(90), usage, false)
        }
        "stall" => stream(&model, vec!["Hello ".into()], Duration::ZERO, usage, true),
        "rate" => error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached", Some("30")),
        "rate-once" if n == 1 => error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached", Some("1")),
        "rate-once" => reply("after the wait"),
        "boom" => error(StatusCode::INTERNAL_SERVER_ERROR, "The server had an error", None),
        "unauthorized" => error(StatusCode::UNAUTHORIZED, "Incorrect API key provided", None),
        "bad" => error(StatusCode::BAD_REQUEST, "Invalid 'messages'", None),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            reply("too late")
        }
        "no-usage" => axum::Json(completion(&model, "no usage here", false)).into_response(),
        "json-second" if n == 1 => reply("Sure! The answer is forty-two."),
        "json-second" => reply("```json\n{\"answer\": 42}\n```"),
        "json-never" => reply("{\"answer\": \"forty-two\"}"),
        "huge" => reply(&"x".repeat(3 << 20)),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` does not exist"),
            None,
        ),
    }
}
