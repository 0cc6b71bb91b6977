//! A webhook that counts the calls it gets, by the `step` of their JSON body: how workflow
//! tests count executions (a step that runs twice is called twice). It can hold a step's
//! calls until released (to crash a node while a step runs) and fail a call on request
//! (`"status": 400` in the body). It answers with the body it got and `n`, the step's count so
//! far (a step's output is then `{"body": {...the body, "n"}, "status": 200, ...}`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::sync::Notify;

#[derive(Default)]
struct Shared {
    counts: Mutex<BTreeMap<String, usize>>,
    held: Mutex<BTreeSet<String>>,
    released: Notify,
}

/// A running counter.
pub struct Counter {
    url: String,
    shared: Arc<Shared>,
}

impl Counter {
    /// Starts one on a free port.
    pub async fn start() -> Counter {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/", axum::routing::post(call))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Counter { url, shared }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls so far for `step`.
    pub fn count(&self, step: &str) -> usize {
        self.shared.counts.lock().unwrap().get(step).copied().unwrap_or(0)
    }

    /// Every count.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.shared.counts.lock().unwrap().clone()
    }

    /// Holds calls for `step` (they are counted, then wait) until [`Counter::release`].
    pub fn hold(&self, step: &str) {
        self.shared.held.lock().unwrap().insert(step.to_string());
    }

    /// Lets held calls of `step` (and later ones) through.
    pub fn release(&self, step: &str) {
        self.shared.held.lock().unwrap().remove(step);
        self.shared.released.notify_waiters();
    }
}

async fn call(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> impl IntoResponse {
    let step = body
        .get("step")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let n = {
        let mut counts = s.counts.lock().unwrap();
        let n = counts.entry(step.clone()).or_default();
        *n += 1;
        *n
    };
    loop {
        let released = s.released.notified();
        if !s.held.lock().unwrap().contains(&step) {
            break;
        }
        released.await;
    }
    if let Some(code) = body.get("status").and_then(Value::as_u64) {
        let code = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::BAD_REQUEST);
        return (code, Json(json!({ "error": "asked to fail" }))).into_response();
    }
    let mut answer = body;
    answer["n"] = json!(n);
    Json(answer).into_response()
}
