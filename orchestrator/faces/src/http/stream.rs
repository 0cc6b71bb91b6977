//! What the event routes send and how it is queued: the messages towards a subscriber
//! ([`Frame`]), the per-subscriber bounded queue with its lag rule ([`put`]), and the pump from
//! a hub watch into that queue ([`pump`]), shared by WebSocket subscriptions, WebSocket
//! submissions and SSE (docs/HTTP_API.md).
//!
//! Every message towards a subscriber goes into one queue of `server.ws_buffer` messages. A
//! producer that finds the queue full for `server.lag_grace_ms` queues `lagged` (naming the
//! last cursor it queued) and stops; the WebSocket closes with 1013 after sending it. So a slow
//! or dead reader never holds the node, the hub or other subscribers back and never grows
//! memory beyond its queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_proto::TaskEvent;
use cadre_store::StoreError;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::{event_json, status_of};

/// A client-chosen request id that tags the messages of one WebSocket submission.
pub(crate) type Tag = Arc<str>;

/// One message towards a subscriber.
pub(crate) enum Frame {
    /// A subscription started; it resumes after this cursor.
    Subscribed(u64),
    /// An event, of a submission when tagged.
    Event(TaskEvent, Option<Tag>),
    /// The one-task subscription reached its terminal event.
    End(u64),
    /// Cut off after falling behind; resume after this cursor (of the tagged submission's task
    /// when tagged).
    Lagged(u64, Option<Tag>),
    /// The subscription failed (store unreachable).
    Failed(Error),
    /// A finished message of a submission (`accepted`, `result`, `error`), sent as is.
    Reply(Value),
}

impl Frame {
    /// The message as JSON.
    pub(crate) fn json(&self) -> Value {
        match self {
            Frame::Subscribed(c) => json!({ "type": "subscribed", "cursor": c }),
            Frame::Event(e, tag) => {
                let mut v = event_json(e);
                if let Some(tag) = tag {
                    v["request_id"] = json!(tag.as_ref());
                }
                v
            }
            Frame::End(c) => json!({ "type": "end", "cursor": c }),
            Frame::Lagged(c, tag) => {
                let mut v = json!({
                    "type": "lagged",
                    "cursor": c,
                    "message": "this subscriber fell behind its buffer; reconnect with this cursor to resume",
                });
                if let Some(tag) = tag {
                    v["request_id"] = json!(tag.as_ref());
                }
                v
            }
            Frame::Failed(e) => error_json(e),
            Frame::Reply(v) => v.clone(),
        }
    }

    /// The WebSocket close (code, reason) that follows this message, if it is a last one.
    pub(crate) fn closes(&self) -> Option<(u16, &'static str)> {
        match self {
            Frame::Lagged(..) => Some((1013, "lagged")),
            Frame::Failed(_) => Some((1011, "stream failed")),
            _ => None,
        }
    }
}

/// An error message (`"type": "error"`) without a request id.
pub(crate) fn error_json(e: &Error) -> Value {
    json!({ "type": "error", "code": status_of(e).1, "message": e.to_string() })
}

/// The stream settings of one subscriber.
#[derive(Clone, Copy)]
pub(crate) struct Pace {
    /// Queue length (`server.ws_buffer`).
    pub buffer: usize,
    /// How long the queue may stay full (`server.lag_grace_ms`).
    pub grace: Duration,
    /// Ping interval (`server.ws_ping_ms`).
    pub ping: Duration,
    /// Submissions one WebSocket may have in flight (`server.ws_max_inflight`).
    pub max_inflight: usize,
}

impl Pace {
    /// The node's current settings.
    pub(crate) fn of(node: &Node) -> Pace {
        let s = node.config().server;
        Pace {
            buffer: s.ws_buffer,
            grace: Duration::from_millis(s.lag_grace_ms),
            ping: Duration::from_millis(s.ws_ping_ms),
            max_inflight: s.ws_max_inflight,
        }
    }
}

/// Why a producer stopped queueing.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The queue stayed full: the subscriber was told `lagged` (by this producer or another).
    Lagged,
    /// The subscriber left (its queue was dropped).
    Gone,
}

/// The sending side of one subscriber's queue, shared by its producers (a subscription's
/// pump, a socket's submissions, the socket's own answers). The first producer that finds it
/// full for the grace period queues `lagged`; the others then stop too, so a subscriber is told
/// and counted once.
#[derive(Clone)]
pub(crate) struct Queue {
    tx: mpsc::Sender<Frame>,
    lagged: Arc<AtomicBool>,
}

impl Queue {
    /// A queue of `buffer` messages and its receiving end (the writer's).
    pub(crate) fn new(buffer: usize) -> (Queue, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        (Queue { tx, lagged }, rx)
    }

    /// Queues a stream's first or last message, waiting for room as long as it takes (a reader
    /// that never drains is dropped by its transport: WebSocket liveness, SSE connection
    /// close). Nothing is queued once the subscriber lagged.
    pub(crate) async fn send(&self, frame: Frame) {
        if !self.lagged.load(Ordering::Acquire) {
            let _ = self.tx.send(frame).await;
        }
    }

    /// Resolves when the subscriber is gone (the receiving end was dropped).
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }

    /// Queues `frame`, waiting at most `grace` for room. When the queue stays full, `lagged`
    /// naming `last` (and `tag`) is queued behind what is there, and the producer must stop.
    pub(crate) async fn put(
        &self,
        frame: Frame,
        grace: Duration,
        last: u64,
        tag: Option<&Tag>,
        transport: &'static str,
    ) -> Result<(), Stop> {
        let offered = self.offer(frame, grace).await;
        if let Err(Stop::Lagged) = offered {
            self.lag(last, tag, transport).await;
        }
        offered
    }

    /// Queues `frame`, waiting at most `grace` for room; `Stop::Lagged` when the queue stayed
    /// full (or the subscriber lagged already), without telling it: the caller calls
    /// [`Queue::lag`].
    pub(crate) async fn offer(&self, frame: Frame, grace: Duration) -> Result<(), Stop> {
        if self.lagged.load(Ordering::Acquire) {
            return Err(Stop::Lagged);
        }
        match self.tx.send_timeout(frame, grace).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Stop::Gone),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Stop::Lagged),
        }
    }

    /// Tells the subscriber it lagged, once: counts and logs it and queues `lagged` behind
    /// what is queued.
    pub(crate) async fn lag(&self, last: u64, tag: Option<&Tag>, transport: &'static str) {
        if self.lagged.swap(true, Ordering::AcqRel) {
            return;
        }
        metrics::counter!("cadre_event_subscribers_lagged_total", "transport" => transport).increment(1);
        tracing::info!(transport, cursor = last, "event subscriber lagged; cut off");
        let _ = self.tx.send(Frame::Lagged(last, tag.cloned())).await;
    }
}

/// How a pump ended.
pub(crate) enum Finish {
    /// The one-task watch passed its terminal event; the last cursor queued.
    End(u64),
    /// The stream failed (store unreachable); nothing was queued for it.
    Failed(Error),
    /// Lagged (queued) or the subscriber left.
    Stopped,
}

/// Moves events from a hub watch into a subscriber's bounded queue (tagged with `tag`) until
/// the subscriber leaves, the one-task watch ends, the watch fails, or the queue stays full
/// (then `lagged` is queued, see [`Queue::put`]).
pub(crate) async fn pump(
    mut watch: mpsc::Receiver<Result<TaskEvent, StoreError>>,
    queue: &Queue,
    grace: Duration,
    mut last: u64,
    transport: &'static str,
    tag: Option<&Tag>,
) -> Finish {
    loop {
        match watch.recv().await {
            Some(Ok(e)) => {
                let cursor = e.cursor;
                if queue.lagged.load(Ordering::Acquire) {
                    return Finish::Stopped;
                }
                match queue.tx.send_timeout(Frame::Event(e, tag.cloned()), grace).await {
                    Ok(()) => last = cursor,
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => return Finish::Stopped,
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                        // Stop reading the hub before waiting for room: the watch and its
                        // buffer go now.
                        drop(watch);
                        queue.lag(last, tag, transport).await;
                        return Finish::Stopped;
                    }
                }
            }
            Some(Err(e)) => return Finish::Failed(Error::from(e)),
            // The hub ends a one-task watch after its terminal event.
            None => return Finish::End(last),
        }
    }
}
