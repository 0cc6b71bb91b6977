//! The messages between tier 0 and supervisor nodes, as JSON: a dispatched task
//! ([`WorkMsg`]) and what a node reports back ([`EventMsg`], transitions as
//! [`TransitionMsg`]). They are the contract between the two sides of a cluster, whose nodes
//! may run different versions: their JSON must not change shape (the tests pin it).
//!
//! How they travel (subjects, packing several events into one message, the cancel broadcast)
//! is the transport's business (`cadre_bus::wire`).

use std::time::Duration;

use cadre_proto::{Priority, RetryPolicy, TaskId, TaskRecord, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sink::Transition;
use crate::task::QueuedTask;

/// A dispatched task, as published on the work stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMsg {
    /// The task.
    pub id: TaskId,
    /// Its tenant.
    pub tenant: String,
    /// Its type.
    pub task_type: String,
    /// The supervisor that runs it.
    pub supervisor: String,
    /// The worker kind in that supervisor.
    pub worker_kind: String,
    /// The executor, by registry name.
    pub executor: String,
    /// Params.
    pub params: Value,
    /// 0-9.
    pub priority: Priority,
    /// Per-attempt timeout.
    pub timeout_ms: u64,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Attempts started before this dispatch.
    pub attempt: u32,
    /// Sign the result (verified tasks).
    pub verified: bool,
    /// Run only in a sandbox (fortress tasks; absent from older senders = false).
    #[serde(default)]
    pub fortress: bool,
    /// W3C trace context of the submit (also sent as the `traceparent` header).
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The task's concurrency key (absent from older senders and for tasks without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

impl WorkMsg {
    /// The message for `task` (a runnable task built from `record`).
    pub fn new(record: &TaskRecord, executor: &str, task: &QueuedTask) -> Self {
        WorkMsg {
            id: task.id,
            tenant: task.tenant.clone(),
            task_type: task.task_type.clone(),
            supervisor: record.supervisor.clone(),
            worker_kind: task.worker_kind.clone(),
            executor: executor.to_string(),
            params: task.params.clone(),
            priority: task.priority,
            timeout_ms: task.timeout.as_millis() as u64,
            retry: task.retry.clone(),
            attempt: task.attempts_started,
            verified: task.verified,
            fortress: task.fortress,
            traceparent: task.traceparent.clone(),
            concurrency_key: task.concurrency_key.clone(),
        }
    }

    /// Deduplication id: a republish of the same dispatch is dropped by JetStream.
    pub fn msg_id(&self) -> String {
        format!("{}.{}", self.id, self.attempt)
    }

    /// A runnable task, or None if this node has no such executor.
    pub fn queued(
        &self,
        registry: &cadre_agents::ExecutorRegistry,
        attempts_started: u32,
    ) -> Option<QueuedTask> {
        Some(QueuedTask {
            id: self.id,
            tenant: self.tenant.clone(),
            task_type: self.task_type.clone(),
            worker_kind: self.worker_kind.clone(),
            executor: registry.get(&self.executor)?,
            params: self.params.clone(),
            priority: self.priority,
            timeout: Duration::from_millis(self.timeout_ms),
            retry: self.retry.clone(),
            attempts_started,
            verified: self.verified,
            fortress: self.fortress,
            traceparent: self.traceparent.clone(),
            concurrency_key: self.concurrency_key.clone(),
            rate_limited: 0,
        })
    }
}

/// A transition as it travels (the node signs verified results when it stores them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionMsg {
    /// The task.
    pub task_id: TaskId,
    /// New state.
    pub state: TaskState,
    /// Attempt.
    pub attempt: u32,
    /// Detail.
    pub message: String,
    /// Result on SUCCEEDED.
    pub result: Option<Value>,
    /// Sign the result.
    pub sign: bool,
    /// The task's trace context, so tier 0 records the transition in the task's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Times the node put the task back in its queue before this transition (a rate-limited
    /// attempt is given back and runs again under the same number); part of the deduplication
    /// id, so the re-run's transitions are not dropped as repeats. Absent = 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<&Transition> for TransitionMsg {
    fn from(t: &Transition) -> Self {
        TransitionMsg {
            task_id: t.task_id,
            state: t.state,
            attempt: t.attempt,
            message: t.message.clone(),
            result: t.result.clone(),
            sign: t.sign,
            traceparent: None,
            round: 0,
        }
    }
}

impl From<TransitionMsg> for Transition {
    fn from(m: TransitionMsg) -> Self {
        Transition {
            task_id: m.task_id,
            state: m.state,
            attempt: m.attempt,
            message: m.message,
            result: m.result,
            sign: m.sign,
            signature: None,
        }
    }
}

/// One message on the events stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventMsg {
    /// A state change.
    Transition(TransitionMsg),
    /// Progress of a running attempt (lossy).
    Progress {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// In [0, 1].
        fraction: f64,
        /// Short text.
        message: String,
    },
    /// Tokens used.
    Usage {
        /// The task.
        task_id: TaskId,
        /// Model and tokens.
        usage: cadre_agents::Usage,
    },
    /// A sub-task created by a supervisor node (delegation); stored before it runs.
    Insert {
        /// The new task.
        record: Box<TaskRecord>,
    },
}

impl EventMsg {
    /// Deduplication id. Transitions get a deterministic one (a re-run after redelivery that
    /// reaches the same state in the same attempt is not stored twice); the rest get `unique`.
    pub fn msg_id(&self, unique: &str) -> String {
        match self {
            EventMsg::Transition(t) if t.round > 0 => {
                format!("{}.{}.{}.{}", t.task_id, t.attempt, t.state.as_str(), t.round)
            }
            EventMsg::Transition(t) => format!("{}.{}.{}", t.task_id, t.attempt, t.state.as_str()),
            EventMsg::Insert { record } => format!("{}.insert", record.id),
            _ => unique.to_string(),
        }
    }

    /// The terminal transition this event is, if it is one (the event after which a task's
    /// message is acked and its waiters answered).
    pub fn terminal(&self) -> Option<&TransitionMsg> {
        match self {
            EventMsg::Transition(t) if t.state.is_terminal() => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_ids_are_deterministic_and_others_unique() {
        let id = TaskId::new();
        let t = EventMsg::Transition(TransitionMsg {
            task_id: id,
            state: TaskState::Running,
            attempt: 2,
            message: String::new(),
            result: None,
            sign: false,
            traceparent: None,
            round: 0,
        });
        assert_eq!(t.msg_id("x"), format!("{id}.2.RUNNING"));
        let EventMsg::Transition(mut again) = t.clone() else {
            unreachable!()
        };
        again.round = 1;
        assert_eq!(
            EventMsg::Transition(again).msg_id("x"),
            format!("{id}.2.RUNNING.1")
        );
        let p = EventMsg::Progress {
            task_id: id,
            attempt: 2,
            fraction: 0.5,
            message: String::new(),
        };
        assert_eq!(p.msg_id("u1"), "u1");
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"kind\":\"transition\""), "{json}");
        let back: EventMsg = serde_json::from_str(&json).unwrap();
        assert_eq!(back.msg_id("y"), t.msg_id("z"));
    }

    const ID: &str = "0190f5c2-7a3b-7c4d-8e5f-0123456789ab";

    #[test]
    fn a_work_message_keeps_its_json() {
        let json = format!(
            r#"{{"id":"{ID}","tenant":"acme","task_type":"system.echo","supervisor":"system","worker_kind":"general","executor":"echo","params":{{"a":1}},"priority":7,"timeout_ms":30000,"retry":{{"max_attempts":3,"initial_backoff_ms":100,"max_backoff_ms":5000,"multiplier":2.0}},"attempt":1,"verified":false,"fortress":true,"traceparent":null}}"#
        );
        let msg: WorkMsg = serde_json::from_str(&json).unwrap();
        assert_eq!(
            serde_json::to_string(&msg).unwrap(),
            json,
            "the JSON tier 0 and older nodes read"
        );
        assert_eq!(msg.msg_id(), format!("{ID}.1"));
        // Older senders leave out the fields added since.
        let old = json.replace(r#","fortress":true,"traceparent":null"#, "");
        let msg: WorkMsg = serde_json::from_str(&old).unwrap();
        assert!(!msg.fortress && msg.traceparent.is_none());
        assert!(serde_json::from_str::<WorkMsg>(&json.replace("\"tenant\"", "\"x\":1,\"tenant\"")).is_err());
    }

    #[test]
    fn events_keep_their_json() {
        let transition = format!(
            r#"{{"kind":"transition","task_id":"{ID}","state":"SUCCEEDED","attempt":2,"message":"","result":{{"x":1}},"sign":true}}"#
        );
        let with_trace = transition.replace(
            r#""sign":true}"#,
            r#""sign":true,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#,
        );
        let progress =
            format!(r#"{{"kind":"progress","task_id":"{ID}","attempt":1,"fraction":0.5,"message":"half"}}"#);
        let usage = format!(
            r#"{{"kind":"usage","task_id":"{ID}","usage":{{"model":"m","tokens_in":1,"tokens_out":2}}}}"#
        );
        for json in [&transition, &with_trace, &progress, &usage] {
            let event: EventMsg = serde_json::from_str(json).unwrap();
            assert_eq!(&serde_json::to_string(&event).unwrap(), json);
        }
        let event: EventMsg = serde_json::from_str(&transition).unwrap();
        let t = event.terminal().expect("SUCCEEDED is terminal");
        let back = Transition::from(t.clone());
        assert_eq!(
            (back.state, back.attempt, back.sign),
            (TaskState::Succeeded, 2, true)
        );
        assert_eq!(TransitionMsg::from(&back).traceparent, None);
        let running = transition.replace("SUCCEEDED", "RUNNING");
        assert!(
            serde_json::from_str::<EventMsg>(&running)
                .unwrap()
                .terminal()
                .is_none()
        );
    }
}
