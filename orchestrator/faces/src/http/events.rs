//! Live event streams for browsers and scripts: WebSocket `/v1/events` and SSE
//! `/v1/events/sse` (docs/HTTP_API.md).
//!
//! Both sit on the hub's resumable watch ([`Node::watch`]) and share one pump: events go into a
//! per-subscriber queue of `server.ws_buffer` messages. A subscriber whose queue stays full for
//! `server.lag_grace_ms` is sent `lagged` with the last cursor it was given and cut off, so a
//! slow or dead reader never holds the node, the hub or other subscribers back and never grows
//! memory beyond its queue. It resumes by reconnecting from that cursor.

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
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::api::{ApiError, bearer, event_json, query_states, state_wire, status_of};
use cadre_core::auth::{Action, Principal};
use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_store::StoreError;

/// The subprotocol the server speaks; browsers offer it beside `bearer.<token>`.
const PROTOCOL: &str = "cadre.v1";
/// Prefix of the subprotocol that carries a credential.
const BEARER_PROTOCOL: &str = "bearer.";
/// How long a new WebSocket may take to send its `subscribe` message.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// Largest message a subscriber may send.
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
    /// Must be "subscribe" (WebSocket only).
    #[serde(rename = "type")]
    kind: String,
    token: Option<String>,
    task_id: Option<String>,
    type_prefix: Option<String>,
    #[serde(default)]
    states: Vec<String>,
    parent_id: Option<String>,
    /// Resume after this cursor; None = from now.
    cursor: Option<u64>,
}

/// One message towards a subscriber.
enum Frame {
    Subscribed(u64),
    Event(TaskEvent),
    /// The one-task stream reached its terminal event.
    End(u64),
    /// Cut off after falling behind; resume after this cursor.
    Lagged(u64),
    /// The stream failed (store unreachable).
    Failed(Error),
}

impl Frame {
    fn json(&self) -> Value {
        match self {
            Frame::Subscribed(c) => json!({ "type": "subscribed", "cursor": c }),
            Frame::Event(e) => event_json(e),
            Frame::End(c) => json!({ "type": "end", "cursor": c }),
            Frame::Lagged(c) => json!({
                "type": "lagged",
                "cursor": c,
                "message": "this subscriber fell behind its buffer; reconnect with this cursor to resume",
            }),
            Frame::Failed(e) => error_json(e),
        }
    }
}

fn error_json(e: &Error) -> Value {
    json!({ "type": "error", "code": status_of(e).1, "message": e.to_string() })
}

/// How a pump ended.
enum Ended {
    /// The subscriber left (its queue was dropped).
    Gone,
    /// Terminal event of a one-task stream, lag or a failure was queued.
    Told,
}

/// The stream settings of one subscription.
#[derive(Clone, Copy)]
struct Pace {
    buffer: usize,
    grace: Duration,
    ping: Duration,
}

impl Pace {
    fn of(node: &Node) -> Pace {
        let s = node.config().server;
        Pace {
            buffer: s.ws_buffer,
            grace: Duration::from_millis(s.lag_grace_ms),
            ping: Duration::from_millis(s.ws_ping_ms),
        }
    }
}

/// Moves events from a hub watch into a subscriber's bounded queue until the subscriber leaves,
/// the one-task stream ends, or the queue stays full for `grace` (then `lagged` is queued).
async fn pump(
    mut watch: mpsc::Receiver<Result<TaskEvent, StoreError>>,
    queue: mpsc::Sender<Frame>,
    grace: Duration,
    mut last: u64,
    transport: &'static str,
) -> Ended {
    let last_frame = loop {
        match watch.recv().await {
            Some(Ok(e)) => {
                let cursor = e.cursor;
                match queue.send_timeout(Frame::Event(e), grace).await {
                    Ok(()) => last = cursor,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        metrics::counter!("cadre_event_subscribers_lagged_total", "transport" => transport)
                            .increment(1);
                        tracing::info!(transport, cursor = last, "event subscriber lagged; cut off");
                        break Frame::Lagged(last);
                    }
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => return Ended::Gone,
                }
            }
            Some(Err(e)) => break Frame::Failed(Error::from(e)),
            // The hub ends a one-task watch after its terminal event.
            None => break Frame::End(last),
        }
    };
    // Stop reading the hub before waiting for room: the watch and its buffer go now.
    drop(watch);
    // The final message waits behind what is queued; a reader that never drains gets dropped
    // by its transport (WebSocket liveness, SSE connection close).
    match queue.send(last_frame).await {
        Ok(()) => Ended::Told,
        Err(_) => Ended::Gone,
    }
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
    Ok((cursor, node.watch(p, &req).await?))
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
    // gets a plain 401/403; otherwise it must come in the `subscribe` message.
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
            ws_session(st.node, socket, principal, pace).await;
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

/// Reads the `subscribe` message (ignoring pings and pongs).
async fn read_subscribe(socket: &mut WebSocket) -> Result<Subscribe, ApiError> {
    let bad = |why: String| ApiError::Node(SpecError::invalid("subscribe", why).into());
    let first = tokio::time::timeout(SUBSCRIBE_WAIT, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Binary(_))) => return Err(bad("send the subscribe message as text".into())),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    return Err(bad("the connection closed before subscribing".into()));
                }
            }
        }
    })
    .await
    .map_err(|_| {
        bad(format!(
            "no subscribe message within {}s",
            SUBSCRIBE_WAIT.as_secs()
        ))
    })??;
    let sub: Subscribe = serde_json::from_str(&first).map_err(|e| bad(e.to_string()))?;
    if sub.kind != "subscribe" {
        return Err(bad(format!(
            "type {:?}: the first message must be type \"subscribe\"",
            sub.kind
        )));
    }
    Ok(sub)
}

async fn ws_session(node: Arc<Node>, mut socket: WebSocket, principal: Option<Principal>, pace: Pace) {
    let started = async {
        let sub = read_subscribe(&mut socket).await?;
        let p = match principal {
            Some(p) => p,
            None => {
                let header = sub.token.as_ref().map(|t| format!("Bearer {t}"));
                node.authorize(header.as_deref(), Action::WatchTasks).await?
            }
        };
        open(&node, &p, &sub).await
    }
    .await;
    let (cursor, watch) = match started {
        Ok(s) => s,
        Err(e) => {
            let text = api_error_json(&e).to_string();
            let _ = socket.send(Message::Text(text.into())).await;
            let _ = socket.send(close(close_code(&e), "subscription refused")).await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(pace.buffer);
    let (mut sink, mut stream) = socket.split();
    let _ = tx.send(Frame::Subscribed(cursor)).await;
    let pump = tokio::spawn(pump(watch, tx, pace.grace, cursor, "ws"));
    // Writer: queued frames, and a ping every interval.
    let writer = tokio::spawn(async move {
        let mut rx = rx;
        let mut ping = tokio::time::interval(pace.ping);
        ping.tick().await;
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let Some(frame) = frame else { break };
                    let text = frame.json().to_string();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    let last = match frame {
                        Frame::End(_) => Some((1000, "task finished")),
                        Frame::Lagged(_) => Some((1013, "lagged")),
                        Frame::Failed(_) => Some((1011, "stream failed")),
                        _ => None,
                    };
                    if let Some((code, reason)) = last {
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
    });
    // Reader: liveness. Anything from the client (pongs included) counts; silence for two ping
    // intervals closes the connection.
    let mut heard = Instant::now();
    let mut check = tokio::time::interval(pace.ping);
    let writer_abort = writer.abort_handle();
    let mut writer = writer;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => heard = Instant::now(),
            },
            _ = check.tick() => {
                if heard.elapsed() > pace.ping * 2 {
                    tracing::info!("event subscriber silent for two ping intervals; closing");
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
                pump.abort();
                return;
            }
        }
    }
    pump.abort();
    writer_abort.abort();
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
        kind: "subscribe".into(),
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
    let (tx, rx) = mpsc::channel(pace.buffer);
    tokio::spawn(pump(watch, tx, pace.grace, cursor, "sse"));
    let gauge = Gauge::open("sse");
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |frame| {
        let _alive = (&permit, &gauge);
        let data = frame.json().to_string();
        let ev = match &frame {
            Frame::Event(e) => SseEvent::default().id(e.cursor.to_string()).data(data),
            Frame::Subscribed(_) => SseEvent::default().event("subscribed").data(data),
            Frame::End(_) => SseEvent::default().event("end").data(data),
            Frame::Lagged(_) => SseEvent::default().event("lagged").data(data),
            Frame::Failed(_) => SseEvent::default().event("error").data(data),
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
