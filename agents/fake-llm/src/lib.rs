//! A local server speaking the OpenAI chat-completions wire format and Anthropic's Messages
//! API ([`messages`]), for tests: no real model
//! is reachable from CI, so the `llm` executor's tests, integration tests of the crates above
//! it (in-process, [`Fake::start`]) and tests in other languages (the `cadre-fake-llm` binary)
//! talk to this over real sockets instead.
//!
//! Layer: 1.
//! May import: none of our crates.
//!
//! It answers `POST /v1/chat/completions`, `POST /v1/messages` (Anthropic's Messages API, its
//! models listed in [`messages`]) and `GET /fake/seen`: every request so far, as a JSON array of
//! `{model, path, authorization, api_key, body}`, for tests that cannot call [`Fake::seen`].
//! Each request is first checked as OpenAI checks it, for the parts cadre uses ([`check`]):
//! a refused one gets a 400 with OpenAI's error body (`{"error": {"message", "type":
//! "invalid_request_error", "param", "code"}}`). Then the request's `model` chooses the reply:
//!
//! | model | reply |
//! |---|---|
//! | `echo` | `You said: <last user message>`; streamed word by word when `stream` is true |
//! | `words` | always streamed: eight words 90 ms apart |
//! | `stall` | streams `Hello ` and then nothing, never ending |
//! | `rate` | 429 with `Retry-After: 30` |
//! | `rate-once` | 429 with `Retry-After: 1` the first time, then `after the wait` |
//! | `rate-date` | 429 with `Retry-After` as an HTTP-date 20 s ahead |
//! | `boom` | 500 |
//! | `unauthorized` | 401 |
//! | `bad` | 400 |
//! | `slow` | answers after 30 s |
//! | `no-usage` | JSON without `usage` |
//! | `json-second` | prose the first time, then `{"answer": 42}` in a json fence |
//! | `json-never` | `{"answer": "forty-two"}` |
//! | `huge` | 3 MiB of text |
//! | `script…` | follows the request's `FAKE_SCRIPT` ([`script`]); `script-slow…`: chunks 60 ms apart |
//! | anything else | 404, the model does not exist |
//!
//! Usage is reported unless the model says otherwise: in the JSON reply, and in a last chunk
//! of a stream when the request sets `stream_options.include_usage` (every other chunk then
//! carries `"usage": null`, as OpenAI's do).
//!
//! ```no_run
//! # async fn demo() {
//! let fake = cadre_fake_llm::Fake::start().await;
//! // point a provider's base_url at fake.base_url, run the code under test, then:
//! assert!(fake.seen().iter().all(|s| s.body["model"] == "echo"));
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod check;
pub mod messages;
pub mod messages_check;
mod reply;
pub mod script;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use reply::{Tokens, error, stream, text_completion};

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request's `model`.
    pub model: String,
    /// The path it was sent to (`/v1/chat/completions` or `/v1/messages`).
    pub path: &'static str,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its `x-api-key` header (Anthropic's), if any.
    pub api_key: Option<String>,
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
    /// Its base URL for Anthropic's Messages API, `http://127.0.0.1:<port>`: an `anthropic`
    /// provider's `base_url` (requests go to `<anthropic_url>/v1/messages`).
    pub anthropic_url: String,
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
            .route("/v1/messages", post(anthropic))
            .route("/fake/seen", get(seen))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Fake {
            base_url: format!("http://{addr}/v1"),
            anthropic_url: format!("http://{addr}"),
            addr,
            shared,
            server,
        })
    }

    /// Every request so far, refused ones included, in the order they came.
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

/// The fixed usage of the models that are not scripted.
const JSON_TOKENS: Tokens = Tokens {
    prompt: 11,
    completion: 7,
};
const STREAM_TOKENS: Tokens = Tokens {
    prompt: 11,
    completion: 8,
};

async fn seen(State(s): State<Shared>) -> axum::Json<Value> {
    let seen = s.seen.lock().unwrap();
    let all: Vec<Value> = seen
        .iter()
        .map(|s| {
            json!({
                "model": s.model, "path": s.path, "authorization": s.authorization,
                "api_key": s.api_key, "body": s.body,
            })
        })
        .collect();
    axum::Json(Value::Array(all))
}

impl Shared {
    /// Records a request to `path`; the number of requests so far to `path` for its model.
    fn see(&self, path: &'static str, headers: &HeaderMap, body: &Value) -> (String, usize) {
        let model = body["model"].as_str().unwrap_or_default().to_string();
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_string())
        };
        self.seen.lock().unwrap().push(Seen {
            model: model.clone(),
            path,
            authorization: header(header::AUTHORIZATION.as_str()),
            api_key: header("x-api-key"),
            body: body.clone(),
        });
        let mut c = self.count.lock().unwrap();
        let n = c.entry(format!("{path} {model}")).or_insert(0);
        *n += 1;
        (model, *n)
    }
}

async fn anthropic(State(s): State<Shared>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    let (_, n) = s.see("/v1/messages", &headers, &body.0);
    messages::answer(&headers, &body.0, n)
}

async fn chat(State(s): State<Shared>, headers: HeaderMap, body: axum::Json<Value>) -> Response {
    let body = body.0;
    let (model, n) = s.see("/v1/chat/completions", &headers, &body);
    if let Err(r) = check::request(&body) {
        return reply::invalid(&r.message, r.param.as_deref(), r.code);
    }
    if model.starts_with("script") {
        return script::answer(&model, &body);
    }
    let streamed = body["stream"] == true;
    let usage = (body["stream_options"]["include_usage"] == true).then_some(STREAM_TOKENS);
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
            axum::Json(text_completion(&model, content, Some(JSON_TOKENS))).into_response()
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
        "rate-date" => {
            let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(20));
            error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached", Some(&at))
        }
        "boom" => error(StatusCode::INTERNAL_SERVER_ERROR, "The server had an error", None),
        "unauthorized" => error(StatusCode::UNAUTHORIZED, "Incorrect API key provided", None),
        "bad" => error(StatusCode::BAD_REQUEST, "Invalid 'messages'", None),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            reply("too late")
        }
        "no-usage" => axum::Json(text_completion(&model, "no usage here", None)).into_response(),
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
