//! Live event streams for browsers and scripts: WebSocket `/v1/events` and SSE
//! `/v1/events/sse` (docs/HTTP_API.md).
//!
//! Both sit on the hub's resumable watch ([`Node::watch`]) and share one pump and one bounded
//! queue per subscriber with its lag rule ([`super::stream`]). On the WebSocket a client may
//! also submit tasks and get each one's events and result on the same socket
//! ([`super::socket_submit`]); its first message is `subscribe` or `submit`, and `submit` may
//! follow at any time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cadre_proto::v1;
use cadre_proto::{SpecError, TaskEvent};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::api::{ApiError, bearer, query_states, state_wire};
use super::socket_submit::{Submissions, echo_id, request_error};
use super::stream::{Finish, Frame, Pace, Queue, Stop, error_json, pump};
use cadre_core::auth::{Action, Principal};
use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_store::StoreError;

/// The subprotocol the server speaks; browsers offer it beside `bearer.<token>`.
const PROTOCOL: &str = "cadre.v1";
/// Prefix of the subprotocol that carries a credential.
const BEARER_PROTOCOL: &str = "bearer.";
/// How long a new WebSocket may take to send its first message.
const FIRST_WAIT: Duration = Duration::from_secs(10);
/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Shared state of the event routes.
#[derive(Clone)]
struct Streams {
    node: Arc<Node>,
    /// One permit per open subscriber (`server.max_subscribers`).
    slots: Arc<Semaphore>,
}

/// The WebSocket and SSE routes.
pub fn routes(node: Arc<Node>) -> Router {
    let slots = Arc::new(Semaphore::new(node.config().server.max_subscribers));
    Router::new()
        .route("/v1/events", get(websocket))
        .route("/v1/events/sse", get(sse))
        .with_state(Streams { node, slots })
}

/// What a subscriber asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    /// "subscribe" (WebSocket only; the message's `type`).
    #[serde(rename = "type")]
    _kind: String,
    token: Option<String>,
    task_id: Option<String>,
    type_prefix: Option<String>,
    #[serde(default)]
    states: Vec<String>,
    parent_id: Option<String>,
    /// Resume after this cursor; None = from now.
    cursor: Option<u64>,
}

/// A subscription's filter as a watch request, checked.
fn watch_request(s: &Subscribe) -> Result<v1::WatchRequest, ApiError> {
    let states = s
        .states
        .iter()
        .map(|st| state_wire(st))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v1::WatchRequest {
        task_id: s.task_id.clone().unwrap_or_default(),
        task_type_prefix: s.type_prefix.clone().unwrap_or_default(),
        after_cursor: 0,
        states,
        parent_id: s.parent_id.clone().unwrap_or_default(),
        live_only: false,
    })
}

/// Starts a subscription: the cursor to resume after and the hub watch.
async fn open(
    node: &Node,
    p: &Principal,
    s: &Subscribe,
) -> Result<(u64, mpsc::Receiver<Result<TaskEvent, StoreError>>), ApiError> {
    let mut req = watch_request(s)?;
    let cursor = match s.cursor {
        Some(c) => c,
        None => node.head_cursor().await?,
    };
    req.after_cursor = cursor;
    if let Some(id) = &s.task_id
        && finished_before(node, p, id, cursor).await?
    {
        // Nothing will come: a stream that ends at once, so the subscriber gets `end`.
        return Ok((cursor, mpsc::channel(1).1));
    }
    Ok((cursor, node.watch(p, &req).await?))
}

/// Whether task `id` is finished and has no event after `cursor`: a one-task subscription
/// resumed after its terminal event (a client that got the terminal event but not `end`, or
/// not a submission's `result`), which the watch would never end.
async fn finished_before(node: &Node, p: &Principal, id: &str, cursor: u64) -> Result<bool, ApiError> {
    if !node.get(p, id).await?.state.is_terminal() {
        return Ok(false);
    }
    // A finished task gets no more events: none after the cursor means none ever.
    Ok(node.task_events(p, id, cursor, 1).await?.is_empty())
}

/// A subscriber slot, or 503 when `server.max_subscribers` are open.
fn slot(slots: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, ApiError> {
    slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::Node(Error::Unavailable(
            "too many event subscribers on this node (server.max_subscribers); retry later".into(),
        ))
    })
}

/// Counts open subscribers by transport while alive.
struct Gauge(&'static str);

impl Gauge {
    fn open(transport: &'static str) -> Gauge {
        metrics::gauge!("cadre_event_subscribers", "transport" => transport).increment(1.0);
        Gauge(transport)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("cadre_event_subscribers", "transport" => self.0).decrement(1.0);
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket

async fn websocket(State(st): State<Streams>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let credential = ws_credential(&headers);
    // A credential in the header or subprotocol is checked before the upgrade, so a bad one
    // gets a plain 401/403; otherwise it must come in the first message. Any valid credential
    // may open the socket (watching is the least a role may do); each submission is
    // authorized on its own.
    let principal = match &credential {
        Some(c) => match st.node.authorize(Some(c), Action::WatchTasks).await {
            Ok(p) => Some(p),
            Err(e) => return ApiError::Node(e).into_response(),
        },
        None => None,
    };
    let permit = match slot(&st.slots) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let pace = Pace::of(&st.node);
    ws.protocols([PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            let _gauge = Gauge::open("ws");
            let caller = Caller {
                credential,
                principal,
            };
            ws_session(st.node, socket, caller, pace).await;
        })
}

/// `Authorization` header, or a `bearer.<token>` subprotocol, as a header value.
fn ws_credential(headers: &HeaderMap) -> Option<String> {
    if let Some(h) = bearer(headers) {
        return Some(h.to_string());
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(BEARER_PROTOCOL))
        .map(|t| format!("Bearer {t}"))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_string()),
    }))
}

/// The close code for an error message.
fn close_code(e: &ApiError) -> u16 {
    match e {
        ApiError::Node(Error::Unauthenticated(_) | Error::PermissionDenied(_)) => 1008,
        ApiError::Node(Error::Spec(_) | Error::NotFound(_)) | ApiError::Http(..) => 1007,
        _ => 1011,
    }
}

fn api_error_json(e: &ApiError) -> Value {
    match e {
        ApiError::Node(e) => error_json(e),
        ApiError::Http(_, code, message) => json!({ "type": "error", "code": code, "message": message }),
    }
}

/// Who opened the socket: the credential of the connection (`authorization` form) and its
/// principal, once authenticated.
struct Caller {
    credential: Option<String>,
    principal: Option<Principal>,
}

impl Caller {
    /// Authenticates with the first message's `token` when the connection carried none.
    async fn authenticate(&mut self, node: &Node, token: Option<&str>) -> Result<Principal, ApiError> {
        if let Some(p) = &self.principal {
            return Ok(p.clone());
        }
        if self.credential.is_none() {
            self.credential = token.map(|t| format!("Bearer {t}"));
        }
        let p = node
            .authorize(self.credential.as_deref(), Action::WatchTasks)
            .await?;
        self.principal = Some(p.clone());
        Ok(p)
    }
}

/// What the first message asked for.
enum Opening {
    /// A subscription: the cursor it resumes after and its hub watch.
    Subscribed(u64, mpsc::Receiver<Result<TaskEvent, StoreError>>),
    /// A submission (the message, to start once the socket runs).
    Submit(Value),
}

/// Reads the first text message (ignoring pings and pongs).
async fn read_first(socket: &mut WebSocket) -> Result<String, ApiError> {
    let bad = |why: String| ApiError::Node(SpecError::invalid("first message", why).into());
    tokio::time::timeout(FIRST_WAIT, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Binary(_))) => return Err(bad("send messages as text".into())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    return Err(bad("the connection closed before its first message".into()));
                }
            }
        }
    })
    .await
    .map_err(|_| {
        bad(format!(
            "no subscribe or submit message within {}s",
            FIRST_WAIT.as_secs()
        ))
    })?
}

/// Reads and authenticates the first message, and opens the subscription it asks for.
async fn opening(node: &Node, socket: &mut WebSocket, caller: &mut Caller) -> Result<Opening, ApiError> {
    let text = read_first(socket).await?;
    let bad = |why: String| ApiError::Node(SpecError::invalid("first message", why).into());
    let msg: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match msg.get("type").and_then(Value::as_str) {
        Some("subscribe") => {
            let sub: Subscribe = serde_json::from_value(msg).map_err(|e| bad(e.to_string()))?;
            let p = caller.authenticate(node, sub.token.as_deref()).await?;
            let (cursor, watch) = open(node, &p, &sub).await?;
            Ok(Opening::Subscribed(cursor, watch))
        }
        Some("submit") => {
            let token = msg.get("token").and_then(Value::as_str).map(str::to_string);
            caller.authenticate(node, token.as_deref()).await?;
            Ok(Opening::Submit(msg))
        }
        other => Err(bad(format!(
            "type {other:?}: the first message must be type \"subscribe\" or \"submit\""
        ))),
    }
}

async fn ws_session(node: Arc<Node>, mut socket: WebSocket, mut caller: Caller, pace: Pace) {
    let first = match opening(&node, &mut socket, &mut caller).await {
        Ok(o) => o,
        Err(e) => {
            let text = api_error_json(&e).to_string();
            let _ = socket.send(Message::Text(text.into())).await;
            let _ = socket.send(close(close_code(&e), "refused")).await;
            return;
        }
    };
    let (tx, rx) = Queue::new(pace.buffer);
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write(rx, sink, pace.ping));
    let mut session = Session {
        submissions: Submissions::new(node, caller.credential, pace.grace, pace.max_inflight),
        queue: Some(tx.clone()),
        subscription: None,
        subscribed: false,
        pace,
    };
    match first {
        Opening::Subscribed(cursor, watch) => {
            tx.send(Frame::Subscribed(cursor)).await;
            session.subscription = Some(tokio::spawn(follow(watch, tx, pace.grace, cursor)));
            session.subscribed = true;
        }
        Opening::Submit(msg) => {
            drop(tx);
            session.submit(msg).await;
        }
    }
    session.run(stream, writer).await;
}

/// One socket after its first message.
struct Session {
    submissions: Submissions,
    /// The queue towards the writer; None once the socket is closing (after a one-task
    /// subscription ended and no submission is in flight, or after the reader lagged).
    queue: Option<Queue>,
    /// The subscription's pump while it runs.
    subscription: Option<JoinHandle<()>>,
    /// Whether the socket has (or had) a subscription.
    subscribed: bool,
    pace: Pace,
}

impl Session {
    /// Reads the client's messages (answering each) and watches its liveness until the client
    /// leaves, falls silent, or the writer sent the last message.
    async fn run(mut self, mut stream: SplitStream<WebSocket>, mut writer: JoinHandle<()>) {
        // Anything from the client (pongs included) counts; silence for two ping intervals
        // closes the connection.
        let mut heard = Instant::now();
        let mut check = tokio::time::interval(self.pace.ping);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(m)) => {
                        heard = Instant::now();
                        self.message(m).await;
                    }
                },
                Some(_) = self.submissions.finished(), if !self.submissions.is_empty() => self.settle(),
                _ = wait(&mut self.subscription), if self.subscription.is_some() => {
                    self.subscription = None;
                    self.settle();
                }
                _ = check.tick() => {
                    if heard.elapsed() > self.pace.ping * 2 {
                        tracing::info!("event socket silent for two ping intervals; closing");
                        break;
                    }
                }
                _ = &mut writer => {
                    // Everything was sent, including the closing frame; wait briefly for the
                    // client's close reply, then drop the connection.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    self.stop();
                    return;
                }
            }
        }
        self.stop();
        writer.abort();
    }

    /// After a one-task subscription ended (its `end` queued), the socket closes (1000) once
    /// no submission is in flight: dropping the last queue sender lets the writer finish.
    fn settle(&mut self) {
        if self.subscribed && self.subscription.is_none() && self.submissions.is_empty() {
            self.queue = None;
        }
    }

    fn stop(&mut self) {
        if let Some(s) = self.subscription.take() {
            s.abort();
        }
        // Submissions in flight stop following their task once the writer (the queue's
        // receiving end) is gone; their tasks carry on.
        self.queue = None;
    }

    /// Answers one message after the first.
    async fn message(&mut self, m: Message) {
        let text = match m {
            Message::Text(t) => t,
            Message::Binary(_) => {
                let e = invalid("message", "send messages as text");
                return self.answer(request_error(&Value::Null, &e)).await;
            }
            _ => return,
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => self.submit(v).await,
            Err(e) => {
                let e = invalid("message", format!("not JSON: {e}"));
                self.answer(request_error(&Value::Null, &e)).await;
            }
        }
    }

    /// Starts a `submit` (or answers why a message is not one).
    async fn submit(&mut self, msg: Value) {
        let Some(queue) = &self.queue else { return };
        let refused = match msg.get("type").and_then(Value::as_str) {
            Some("submit") if self.subscribed && self.subscription.is_none() => Err(precondition(
                &msg,
                "the one-task subscription of this socket ended; it closes once its submissions \
                 are answered: submit on another socket",
            )),
            Some("submit") => self.submissions.start(msg, queue),
            Some("subscribe") => Err(precondition(
                &msg,
                "subscribe is taken only as the first message of a socket: open another socket",
            )),
            other => {
                let e = invalid(
                    "type",
                    format!("{other:?}: send \"submit\" (or \"subscribe\" first)"),
                );
                Err(request_error(&echo_id(&msg), &e))
            }
        };
        if let Err(answer) = refused {
            self.answer(answer).await;
        }
    }

    /// Queues an error answered by the reader itself, under the lag rule: when the queue stays
    /// full, `lagged` is queued (by a task, so the reader keeps watching liveness) and the
    /// socket takes no more requests.
    async fn answer(&mut self, msg: Value) {
        let Some(queue) = self.queue.clone() else { return };
        match queue.offer(Frame::Reply(msg), self.pace.grace).await {
            Ok(()) => {}
            Err(Stop::Gone) => self.queue = None,
            Err(Stop::Lagged) => {
                self.queue = None;
                tokio::spawn(async move { queue.lag(0, None, "ws").await });
            }
        }
    }
}

fn invalid(what: &str, why: impl Into<String>) -> ApiError {
    ApiError::Node(SpecError::invalid(what, why.into()).into())
}

fn precondition(msg: &Value, why: &str) -> Value {
    let e = ApiError::Node(Error::FailedPrecondition(why.into()));
    request_error(&echo_id(msg), &e)
}

/// Waits for a task that may be absent.
async fn wait(task: &mut Option<JoinHandle<()>>) {
    if let Some(t) = task {
        let _ = t.await;
    }
}

/// A subscription's pump, then its last message: `end` of a one-task subscription, or
/// `error` when the stream failed (`lagged` is queued by the pump).
async fn follow(
    watch: mpsc::Receiver<Result<TaskEvent, StoreError>>,
    queue: Queue,
    grace: Duration,
    cursor: u64,
) {
    let last = match pump(watch, &queue, grace, cursor, "ws", None).await {
        Finish::End(last) => Frame::End(last),
        Finish::Failed(e) => Frame::Failed(e),
        Finish::Stopped => return,
    };
    // The final message waits behind what is queued; a reader that never drains is dropped
    // by the liveness check.
    queue.send(last).await;
}

/// Writes queued messages and a ping every interval. A last message (`lagged`, a failed
/// stream) is followed by its close; when every queue sender is gone (the socket is done),
/// by a normal close (1000).
async fn write(mut rx: mpsc::Receiver<Frame>, mut sink: SplitSink<WebSocket, Message>, ping: Duration) {
    let mut ping = tokio::time::interval(ping);
    ping.tick().await;
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else {
                    let _ = sink.send(close(1000, "task finished")).await;
                    return;
                };
                let text = frame.json().to_string();
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                if let Some((code, reason)) = frame.closes() {
                    let _ = sink.send(close(code, reason)).await;
                    return;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SSE

async fn sse(
    State(st): State<Streams>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    match sse_start(&st, &headers, q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn sse_start(
    st: &Streams,
    headers: &HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Node(SpecError::invalid("query", e.body_text()).into()))?;
    let one = |k: &str| q.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let credential = bearer(headers)
        .map(str::to_string)
        .or_else(|| one("access_token").map(|t| format!("Bearer {t}")));
    let p = st
        .node
        .authorize(credential.as_deref(), Action::WatchTasks)
        .await?;
    // Last-Event-ID (set by EventSource on reconnect) wins over the cursor parameter.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| one("cursor"));
    let cursor = resume
        .map(|c| {
            c.trim().parse::<u64>().map_err(|_| {
                ApiError::Node(SpecError::invalid("cursor", format!("{c:?} is not a cursor")).into())
            })
        })
        .transpose()?;
    let states = query_states(&q, "state")?
        .into_iter()
        .filter_map(|s| cadre_proto::TaskState::from_wire(s).ok())
        .map(|s| s.as_str().to_string())
        .collect();
    let sub = Subscribe {
        _kind: "subscribe".into(),
        token: None,
        task_id: one("task_id"),
        type_prefix: one("type_prefix"),
        states,
        parent_id: one("parent_id"),
        cursor,
    };
    let permit = slot(&st.slots)?;
    let (cursor, watch) = open(&st.node, &p, &sub).await?;
    let pace = Pace::of(&st.node);
    let (tx, rx) = Queue::new(pace.buffer);
    tokio::spawn(async move {
        let last = match pump(watch, &tx, pace.grace, cursor, "sse", None).await {
            Finish::End(last) => Frame::End(last),
            Finish::Failed(e) => Frame::Failed(e),
            Finish::Stopped => return,
        };
        tx.send(last).await;
    });
    let gauge = Gauge::open("sse");
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |frame| {
        let _alive = (&permit, &gauge);
        let data = frame.json().to_string();
        let ev = match &frame {
            Frame::Event(e, _) => SseEvent::default().id(e.cursor.to_string()).data(data),
            Frame::Subscribed(_) => SseEvent::default().event("subscribed").data(data),
            Frame::End(_) => SseEvent::default().event("end").data(data),
            Frame::Lagged(..) => SseEvent::default().event("lagged").data(data),
            Frame::Failed(_) | Frame::Reply(_) => SseEvent::default().event("error").data(data),
        };
        Ok::<_, Infallible>(ev)
    });
    let keep_alive = KeepAlive::new().interval(pace.ping).text("ping");
    let mut resp = Sse::new(events).keep_alive(keep_alive).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    resp.headers_mut()
        .insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(resp)
}
