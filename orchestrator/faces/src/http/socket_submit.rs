//! Task submission over the WebSocket `/v1/events` (docs/HTTP_API.md, "Submitting over the
//! socket"): a `submit` message carries a client-chosen `request_id` and the body of `POST
//! /v1/tasks`; the answers (`accepted`, the task's events, `result`, or `error`) carry that id.
//!
//! The face translates only: each submission is authorized, checked, stored, audited and
//! counted against quotas by the core's one intake ([`Node::authorize`], [`Node::submit`]), as
//! for every other face. A submission runs in its own detached task so that a socket dropped
//! while the core is storing it cannot interrupt the store-then-dispatch step: an accepted task
//! always carries on. What follows the acceptance (events, result) stops as soon as the socket's
//! queue is gone. A socket has at most `server.ws_max_inflight` submissions in flight.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cadre_core::auth::Action;
use cadre_core::error::Error;
use cadre_core::node::Node;
use cadre_proto::{SpecError, TaskRecord, v1};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::{ApiError, SubmitBody, status_of, task_json};
use super::stream::{Finish, Frame, Queue, Stop, Tag, pump};

/// Longest `request_id`, in characters.
const MAX_REQUEST_ID: usize = 128;

/// A `submit` message, checked for shape (the task itself is checked by the core).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitMessage {
    #[serde(rename = "type")]
    _kind: String,
    /// Checked by hand so that a wrong one gets a clear message.
    #[serde(default)]
    request_id: Value,
    /// The socket's credential is fixed by the connection or its first message; a later one
    /// must match it.
    token: Option<String>,
    /// The body of `POST /v1/tasks`.
    task: Option<Value>,
    /// false: only `accepted`, no events or result.
    watch: Option<bool>,
}

/// An `error` message of one request (`request_id` null when the request had no usable id).
pub(crate) fn request_error(request_id: &Value, e: &ApiError) -> Value {
    let (code, message) = match e {
        ApiError::Node(e) => (status_of(e).1, e.to_string()),
        ApiError::Http(_, code, message) => (*code, message.clone()),
    };
    json!({ "type": "error", "request_id": request_id, "code": code, "message": message })
}

/// The `request_id` of a message, to echo in an error about it: the string it carried, else
/// null.
pub(crate) fn echo_id(msg: &Value) -> Value {
    match msg.get("request_id") {
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

fn invalid(what: &str, why: impl Into<String>) -> ApiError {
    ApiError::Node(SpecError::invalid(what, why.into()).into())
}

/// A checked `submit` message: what a submission task needs.
struct Request {
    id: Tag,
    task: Value,
    watch: bool,
}

/// The shape of a `submit` message; the error to answer when it is wrong.
fn parse(msg: Value, credential: Option<&str>) -> Result<Request, ApiError> {
    let m: SubmitMessage = serde_json::from_value(msg).map_err(|e| invalid("submit", e.to_string()))?;
    let id = match &m.request_id {
        Value::Null => return Err(invalid("request_id", "missing: every submit needs one")),
        Value::String(s) if (1..=MAX_REQUEST_ID).contains(&s.chars().count()) => Tag::from(s.as_str()),
        Value::String(s) => {
            return Err(invalid(
                "request_id",
                format!("{} characters: must be 1 to {MAX_REQUEST_ID}", s.chars().count()),
            ));
        }
        other => return Err(invalid("request_id", format!("{other} is not a string"))),
    };
    if let (Some(t), Some(c)) = (&m.token, credential)
        && cadre_core::auth::bearer_credential(c) != Some(t.trim())
    {
        return Err(invalid(
            "token",
            "differs from this socket's credential (set by the connection or its first message); \
             open another socket for another credential",
        ));
    }
    let task = m
        .task
        .ok_or_else(|| invalid("task", "missing: the body of POST /v1/tasks"))?;
    Ok(Request {
        id,
        task,
        watch: m.watch.unwrap_or(true),
    })
}

/// The submissions of one socket: those in flight, bounded by `server.ws_max_inflight`.
pub(crate) struct Submissions {
    node: Arc<Node>,
    credential: Option<String>,
    grace: Duration,
    max: usize,
    in_flight: HashSet<Tag>,
    done_tx: mpsc::Sender<Tag>,
    done_rx: mpsc::Receiver<Tag>,
}

impl Submissions {
    /// No submissions yet; `credential` is the socket's `authorization` value.
    pub(crate) fn new(node: Arc<Node>, credential: Option<String>, grace: Duration, max: usize) -> Self {
        // Each submission reports once, and is in flight until its report is read: `max`
        // reports at most are ever pending.
        let (done_tx, done_rx) = mpsc::channel(max);
        Submissions {
            node,
            credential,
            grace,
            max,
            in_flight: HashSet::new(),
            done_tx,
            done_rx,
        }
    }

    /// Whether none is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Starts the submission `msg` (a message of type `submit`) answering into `queue`, or
    /// returns the `error` message to send for it.
    pub(crate) fn start(&mut self, msg: Value, queue: &Queue) -> Result<(), Value> {
        let echo = echo_id(&msg);
        let req = parse(msg, self.credential.as_deref()).map_err(|e| request_error(&echo, &e))?;
        if self.in_flight.contains(&req.id) {
            let e = Error::AlreadyExists(format!(
                "request_id {:?} is in flight on this socket; the earlier request carries on",
                req.id
            ));
            return Err(request_error(&echo, &ApiError::Node(e)));
        }
        if self.in_flight.len() >= self.max {
            let e = Error::Exhausted(format!(
                "{} submissions in flight on this socket (server.ws_max_inflight); wait for a result",
                self.max
            ));
            return Err(request_error(&echo, &ApiError::Node(e)));
        }
        self.in_flight.insert(req.id.clone());
        let run = Run {
            node: self.node.clone(),
            credential: self.credential.clone(),
            queue: queue.clone(),
            grace: self.grace,
            id: req.id.clone(),
        };
        let done = Done(Some((req.id, self.done_tx.clone())));
        // Detached on purpose: a dropped socket must not interrupt the core while it stores
        // and dispatches the task.
        tokio::spawn(async move {
            let _done = done;
            run.submit(req.task, req.watch).await;
        });
        Ok(())
    }

    /// Waits until a submission in flight finishes; None when none is in flight.
    pub(crate) async fn finished(&mut self) -> Option<Tag> {
        if self.in_flight.is_empty() {
            return None;
        }
        let id = self.done_rx.recv().await?;
        self.in_flight.remove(&id);
        Some(id)
    }
}

/// Reports a submission's end when dropped (also if its task panicked).
struct Done(Option<(Tag, mpsc::Sender<Tag>)>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some((id, tx)) = self.0.take() {
            // Never full: at most `max` submissions are in flight (see `Submissions::new`).
            let _ = tx.try_send(id);
        }
    }
}

/// One submission in flight.
struct Run {
    node: Arc<Node>,
    credential: Option<String>,
    queue: Queue,
    grace: Duration,
    id: Tag,
}

impl Run {
    /// Authorizes, submits through the core, answers `accepted`, then (with `watch`) relays
    /// the task's events from its first and answers `result`; any refusal answers `error`.
    async fn submit(self, task: Value, watch: bool) {
        let accepted = async {
            let p = self
                .node
                .authorize(self.credential.as_deref(), Action::SubmitTask)
                .await?;
            let body: SubmitBody =
                serde_json::from_value(task).map_err(|e| invalid("task", e.to_string()))?;
            let spec = body.into_wire()?;
            let (record, created) = self.node.submit(&p, Some(&spec)).await?;
            Ok::<_, ApiError>((p, record, created))
        }
        .await;
        let (p, record, created) = match accepted {
            Ok(a) => a,
            Err(e) => {
                let _ = self.reply(request_error(&self.tag(), &e), 0).await;
                return;
            }
        };
        let msg = json!({
            "type": "accepted",
            "request_id": self.tag(),
            "created": created,
            "task": task_json(&record),
        });
        if self.reply(msg, 0).await.is_err() || !watch {
            return;
        }
        let req = v1::WatchRequest {
            task_id: record.id.to_string(),
            ..Default::default()
        };
        let finish = match self.node.watch(&p, &req).await {
            Ok(stream) => {
                tokio::select! {
                    f = pump(stream, &self.queue, self.grace, 0, "ws", Some(&self.id)) => f,
                    // The socket is gone: stop following the task (it carries on).
                    _ = self.queue.closed() => return,
                }
            }
            Err(e) => Finish::Failed(e),
        };
        match finish {
            Finish::End(last) => match self.node.get(&p, &record.id.to_string()).await {
                Ok(done) => {
                    let _ = self.reply(result_json(&self.id, &done), last).await;
                }
                Err(e) => self.failed(&record, e, last).await,
            },
            Finish::Failed(e) => self.failed(&record, e, 0).await,
            Finish::Stopped => {}
        }
    }

    fn tag(&self) -> Value {
        Value::String(self.id.to_string())
    }

    /// Queues `msg` under the lag rule; `last` is the task's last cursor queued.
    async fn reply(&self, msg: Value, last: u64) -> Result<(), Stop> {
        self.queue
            .put(Frame::Reply(msg), self.grace, last, Some(&self.id), "ws")
            .await
    }

    /// An accepted task whose events could not be followed: an `error` naming the task, which
    /// carries on (resume with a one-task subscription, or read it with GET).
    async fn failed(&self, record: &TaskRecord, e: Error, last: u64) {
        let mut msg = request_error(&self.tag(), &ApiError::Node(e));
        msg["task_id"] = json!(record.id.to_string());
        let _ = self.reply(msg, last).await;
    }
}

/// The `result` message: the task once finished, as `GET /v1/tasks/{id}` renders it.
fn result_json(id: &Tag, task: &TaskRecord) -> Value {
    json!({ "type": "result", "request_id": id.as_ref(), "task": task_json(task) })
}
