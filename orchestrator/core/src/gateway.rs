//! The model gateway's core operation: submit a chat task through the normal intake (every
//! permission, validation, quota, budget and audit check of [`Node::submit`]) and follow it
//! to its end, step by step, for a face that answers as a model provider would (the
//! OpenAI-compatible endpoint of the HTTP face).
//!
//! What a [`ChatFollow`] yields, in order: the task's progress reports (a streamed reply's
//! text as it arrives), then its finished record. Two endings are decided here rather than
//! by the face:
//! - a task put back in the queue because every provider of its chain is rate-limited
//!   (its QUEUED event says `rate-limited: ... held for <n> ms`) is cancelled, and the
//!   follow ends with [`Step::Held`]: the caller is told to come back after the hold instead
//!   of waiting behind it (its own client retries, as an OpenAI client does on a 429);
//! - a task still unfinished after its wait budget (every attempt's timeout and backoff)
//!   ends the follow with DEADLINE_EXCEEDED; the task goes on, as after SubmitAndWait.
//!
//! Like SubmitAndWait, a new task is followed through a live watch taken before it was
//! stored ([`crate::hub::Hub::watch_new`]), so following it reads nothing from the store
//! but its finished record; only when that watch falls behind (or the idempotency key
//! named an existing task) are the events read from the store, from the last cursor seen.

use std::sync::Arc;
use std::time::Duration;

use cadre_proto::{TaskEvent, TaskRecord, TaskState, v1};
use cadre_store::StoreError;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::hub::TaskWatch;
use crate::node::Node;

/// The executor the gateway's tasks run.
pub const CHAT_EXECUTOR: &str = "llm";
/// The task type preferred when several route to [`CHAT_EXECUTOR`].
pub const CHAT_TASK_TYPE: &str = "intelligence.llm.chat";

/// One step of a followed chat task.
#[derive(Debug)]
pub enum Step {
    /// A progress report: the fraction done and its message (reply text, or a note such as
    /// `cached reply`).
    Progress(f64, String),
    /// Every provider was rate-limited: the task was cancelled; ask again after this long.
    Held(Duration, String),
    /// The task finished (any terminal state): its record, result or error included.
    Finished(Box<TaskRecord>),
}

/// A submitted chat task being followed: [`ChatFollow::next`] until [`Step::Finished`] or
/// [`Step::Held`].
pub struct ChatFollow {
    node: Arc<Node>,
    principal: Principal,
    /// The task as submitted.
    pub task: TaskRecord,
    events: Events,
    deadline: Instant,
    done: bool,
}

/// Where a follow reads the task's events from.
enum Events {
    /// The live watch taken before the task was stored, and the cursor of the last stored
    /// event it gave (where a store read resumes if the watch falls behind).
    Live(TaskWatch, u64),
    /// A Watch that reads the store first (the task existed before, or the live watch fell
    /// behind).
    Stored(mpsc::Receiver<Result<TaskEvent, StoreError>>),
}

/// What waiting for the next event gave.
enum Next {
    Event(TaskEvent),
    /// The event stream ended (the task finished).
    Ended,
    /// The wait budget ran out.
    TimedOut,
}

impl Node {
    /// The models the gateway serves (`[executors.llm.models]`): (name, provider), by name.
    pub fn chat_models(&self) -> Vec<(String, String)> {
        self.config()
            .executors
            .llm
            .models
            .iter()
            .map(|(name, m)| (name.clone(), m.provider.clone()))
            .collect()
    }

    /// The task type that runs the `llm` executor: [`CHAT_TASK_TYPE`] when it does, else the
    /// first type routed to it; None when no route runs it.
    pub fn chat_task_type(&self) -> Option<String> {
        let config = self.config();
        let routes = &config.routes;
        if routes
            .resolve(CHAT_TASK_TYPE)
            .is_some_and(|r| r.executor == CHAT_EXECUTOR)
        {
            return Some(CHAT_TASK_TYPE.to_string());
        }
        routes
            .iter()
            .find(|(_, r)| r.executor == CHAT_EXECUTOR)
            .map(|(t, _)| t.clone())
    }

    /// Submits `spec` as `p` through the normal intake and follows it (see the module doc).
    pub async fn submit_followed(self: &Arc<Self>, p: &Principal, spec: &v1::TaskSpec) -> Result<ChatFollow> {
        let (task, _, live) = self.submit_watched(p, Some(spec), true).await?;
        let events = match live {
            Some(watch) => Events::Live(watch, 0),
            None => Events::Stored(self.watch(p, &watch_from(&task, 0)).await?),
        };
        let deadline = Instant::now() + task.wait_budget();
        Ok(ChatFollow {
            node: self.clone(),
            principal: p.clone(),
            task,
            events,
            deadline,
            done: false,
        })
    }
}

impl ChatFollow {
    /// The next step; after [`Step::Finished`] or [`Step::Held`], FAILED_PRECONDITION.
    pub async fn next(&mut self) -> Result<Step> {
        if self.done {
            return Err(Error::FailedPrecondition(
                "the task was followed to its end".into(),
            ));
        }
        loop {
            let event = match self.recv().await? {
                Next::Event(event) => event,
                Next::Ended => return self.finish().await,
                Next::TimedOut => {
                    self.done = true;
                    let wait = self.task.wait_budget();
                    return Err(self.node.still_running(self.task.id, wait).await);
                }
            };
            if event.is_progress {
                return Ok(Step::Progress(event.progress, event.message));
            }
            if event.state.is_terminal() {
                return self.finish().await;
            }
            if let Some(hold) = held_for(&event) {
                self.done = true;
                let reason = "the gateway's caller was told to retry after the rate limit";
                if let Err(e) = self
                    .node
                    .cancel(&self.principal, &self.task.id.to_string(), reason)
                    .await
                {
                    tracing::debug!(task = %self.task.id, error = %e, "cannot cancel a held gateway task");
                }
                return Ok(Step::Held(hold, event.message));
            }
        }
    }

    /// The task's next event before the deadline, from the live watch while it keeps up,
    /// else from the store.
    async fn recv(&mut self) -> Result<Next> {
        loop {
            match &mut self.events {
                Events::Live(watch, last) => match tokio::time::timeout_at(self.deadline, watch.next()).await
                {
                    Ok(Some(event)) => {
                        if !event.is_progress {
                            *last = event.cursor;
                        }
                        return Ok(Next::Event((*event).clone()));
                    }
                    Ok(None) => {
                        let after = *last;
                        let req = watch_from(&self.task, after);
                        self.events = Events::Stored(self.node.watch(&self.principal, &req).await?);
                    }
                    Err(_) => return Ok(Next::TimedOut),
                },
                Events::Stored(rx) => {
                    return Ok(match tokio::time::timeout_at(self.deadline, rx.recv()).await {
                        Ok(Some(event)) => Next::Event(event?),
                        Ok(None) => Next::Ended,
                        Err(_) => Next::TimedOut,
                    });
                }
            }
        }
    }

    async fn finish(&mut self) -> Result<Step> {
        self.done = true;
        let record = self.node.get(&self.principal, &self.task.id.to_string()).await?;
        Ok(Step::Finished(Box::new(record)))
    }
}

/// A Watch of `task` from `after` (0: from its first event).
fn watch_from(task: &TaskRecord, after: u64) -> v1::WatchRequest {
    v1::WatchRequest {
        task_id: task.id.to_string(),
        after_cursor: after,
        ..Default::default()
    }
}

/// The hold of a task put back in the queue for an upstream rate limit: its QUEUED event
/// reads `rate-limited: ...; type <t> held for <n> ms, attempt not counted ...`.
fn held_for(e: &TaskEvent) -> Option<Duration> {
    if e.state != TaskState::Queued {
        return None;
    }
    cadre_supervisors::dispatch_gates::requeue_hold(&e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(state: TaskState, message: &str) -> TaskEvent {
        TaskEvent {
            cursor: 1,
            task_id: cadre_proto::TaskId::new(),
            seq: 1,
            state,
            attempt: 0,
            message: message.into(),
            progress: 0.0,
            result: None,
            at_ms: 0,
            task_type: "t".into(),
            tenant: "a".into(),
            is_progress: false,
            parent_id: None,
        }
    }

    #[test]
    fn a_rate_limit_requeue_is_read_as_a_hold() {
        let m = "rate-limited: every model is rate-limited: x; type intelligence.llm.chat held for \
                 1500 ms, attempt not counted (requeue 1 of 3)";
        assert_eq!(
            held_for(&event(TaskState::Queued, m)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(held_for(&event(TaskState::Running, m)), None);
        assert_eq!(held_for(&event(TaskState::Queued, "queued")), None);
        assert_eq!(
            held_for(&event(TaskState::Queued, "rate-limited: held for soon")),
            None
        );
    }
}
