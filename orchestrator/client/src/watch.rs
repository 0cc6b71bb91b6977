//! [`Watch`]: a task event stream that survives the connection. It remembers the cursor of
//! the last event it yielded; when the stream breaks (the node restarts, the network drops,
//! the node closes a stream early), it opens a new one from that cursor, so the caller sees
//! every event once, in cursor order, with no gap and no repeat.

use std::time::{Duration, Instant};

use cadre_proto::v1;
use tonic::Code;
use tonic::codec::Streaming;

use crate::connect::Client;
use crate::error::{Error, Result};
use crate::tasks::is_terminal;

/// A resumable event stream; [`Client::watch`] opens one. Call [`Watch::next`] until it
/// returns None: a one-task watch ends after the task's terminal event, a filter watch when
/// the caller stops. An error ends it (the node refused the watch, or could not be reached
/// again within the client's retry policy).
pub struct Watch {
    client: Client,
    req: v1::WatchRequest,
    /// The cursor of the last event yielded.
    last: Option<u64>,
    stream: Option<Streaming<v1::TaskEvent>>,
    /// Failed opens or breaks in a row: bounded by the retry policy. Reset by an event, or by
    /// a stream that stayed open [`HEALTHY`] before it broke (so an idle watch survives any
    /// number of node restarts over its life, while a stream that breaks at once, again and
    /// again, still ends).
    failures: u32,
    /// When the current stream opened.
    opened_at: Option<Instant>,
    done: bool,
}

/// How long a stream must have stayed open for its break to count as the first in a row.
const HEALTHY: Duration = Duration::from_secs(5);

/// Whether a broken stream is worth reopening: the transport failed, not the request.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted
    )
}

impl Watch {
    /// The cursor of the last event yielded: resume from it with `after_cursor` elsewhere.
    pub fn cursor(&self) -> Option<u64> {
        self.last
    }

    /// The request a (re)open sends: from the last cursor once there is one.
    fn request(&self) -> v1::WatchRequest {
        let mut req = self.req.clone();
        if let Some(last) = self.last {
            req.after_cursor = last;
            req.live_only = false;
        }
        req
    }

    /// The next event; None once the watch is over.
    pub async fn next(&mut self) -> Option<Result<v1::TaskEvent>> {
        while !self.done {
            let stream = match self.stream.as_mut() {
                Some(s) => s,
                None => match self.client.tasks.clone().watch(self.request()).await {
                    Ok(r) => {
                        self.opened_at = Some(Instant::now());
                        self.stream.insert(r.into_inner())
                    }
                    Err(s) => {
                        if let Some(e) = self.broke(s).await {
                            return Some(Err(e));
                        }
                        continue;
                    }
                },
            };
            match stream.message().await {
                Ok(Some(e)) => {
                    if self.last.is_some_and(|l| e.cursor <= l) {
                        continue;
                    }
                    self.last = Some(e.cursor);
                    self.failures = 0;
                    if self.one_task_ends_at(&e) {
                        self.done = true;
                    }
                    return Some(Ok(e));
                }
                // The node ended the stream: a one-task watch with a state filter ends here (its
                // terminal event may be filtered out); otherwise the node went away.
                Ok(None) if !self.req.task_id.is_empty() && !self.req.states.is_empty() => {
                    self.done = true;
                }
                Ok(None) => {
                    self.stream = None;
                    if let Some(e) = self
                        .broke(tonic::Status::unavailable("the node closed the stream"))
                        .await
                    {
                        return Some(Err(e));
                    }
                }
                Err(s) => {
                    if let Some(e) = self.broke(s).await {
                        return Some(Err(e));
                    }
                }
            }
        }
        None
    }

    /// Whether `e` is the last event of a one-task watch (its terminal state).
    fn one_task_ends_at(&self, e: &v1::TaskEvent) -> bool {
        !self.req.task_id.is_empty() && !e.is_progress && is_terminal(e.state)
    }

    /// Handles a failed open or a broken stream: waits and returns None to reopen, or ends
    /// the watch with the error (not transient, or the tries are used up).
    async fn broke(&mut self, s: tonic::Status) -> Option<Error> {
        self.stream = None;
        if self.opened_at.take().is_some_and(|t| t.elapsed() >= HEALTHY) {
            self.failures = 0;
        }
        self.failures += 1;
        let retry = self.client.retry;
        if transient(s.code()) && self.failures < retry.attempts.max(1) {
            tokio::time::sleep(retry.pause(self.failures)).await;
            return None;
        }
        self.done = true;
        Some(s.into())
    }
}

impl Client {
    /// Streams the events `req` selects in cursor order (stored ones after `after_cursor`,
    /// then live ones; `live_only` for live ones alone), resuming after a disconnect.
    pub fn watch(&self, req: v1::WatchRequest) -> Watch {
        Watch {
            client: self.clone(),
            req,
            last: None,
            stream: None,
            failures: 0,
            opened_at: None,
            done: false,
        }
    }

    /// Every event of one task from its first, ending after its terminal event.
    pub fn watch_task(&self, task_id: &str) -> Watch {
        self.watch(v1::WatchRequest {
            task_id: task_id.to_string(),
            ..v1::WatchRequest::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_transient_and_refusals_are_not() {
        for c in [Code::Unavailable, Code::Unknown, Code::Internal, Code::Cancelled] {
            assert!(transient(c), "{c:?}");
        }
        for c in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
        ] {
            assert!(!transient(c), "{c:?}");
        }
    }
}
