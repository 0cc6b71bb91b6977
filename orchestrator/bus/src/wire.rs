//! What travels over NATS: stream, subject and bucket names, how events are packed into
//! messages, and the cancel broadcast. The task and event messages themselves are the
//! contract between tier 0 and supervisor nodes, defined with the node runtime
//! ([`cadre_supervisors::node::wire`]) and re-exported here.

use cadre_proto::{Priority, TaskId, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use cadre_supervisors::node::wire::{EventMsg, TransitionMsg, WorkMsg};

/// Priority bands, consumed high first: one subject and one durable consumer per supervisor
/// and band.
pub const BANDS: [&str; 3] = ["high", "normal", "low"];

/// The band of a priority (7-9 high, 4-6 normal, 0-3 low).
pub fn band(p: Priority) -> &'static str {
    match p.get() {
        7.. => "high",
        4..=6 => "normal",
        _ => "low",
    }
}

/// Every NATS name of one cluster, derived from `bus.prefix`.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix` (letters, digits, `_`, `-`; checked by config validation).
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_string(),
        }
    }

    /// The work-queue stream holding dispatched tasks.
    pub fn work_stream(&self) -> String {
        format!("{}_WORK", self.prefix)
    }

    /// Subject of `supervisor`'s tasks in `band`.
    pub fn work_subject(&self, supervisor: &str, band: &str) -> String {
        format!("{}.work.{supervisor}.{band}", self.prefix)
    }

    /// Durable consumer shared by every replica of `supervisor` for `band`.
    pub fn work_consumer(&self, supervisor: &str, band: &str) -> String {
        format!("{}-{supervisor}-{band}", self.prefix)
    }

    /// Core-NATS doorbell rung after tasks for `supervisor` were published.
    pub fn doorbell(&self, supervisor: &str) -> String {
        format!("{}.ring.{supervisor}", self.prefix)
    }

    /// The events stream (transitions, progress, usage, delegated inserts).
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix)
    }

    /// Subject of events published by supervisor `supervisor`.
    pub fn events_subject(&self, supervisor: &str) -> String {
        format!("{}.events.{supervisor}", self.prefix)
    }

    /// Durable consumer through which tier-0 replicas persist events.
    pub fn events_consumer(&self) -> String {
        format!("{}-persist", self.prefix)
    }

    /// Dead-letter stream.
    pub fn dead_stream(&self) -> String {
        format!("{}_DEAD", self.prefix)
    }

    /// Dead-letter subject of `supervisor`.
    pub fn dead_subject(&self, supervisor: &str) -> String {
        format!("{}.dead.{supervisor}", self.prefix)
    }

    /// Core-NATS subject on which cancels for `supervisor` are broadcast to its replicas.
    pub fn cancel_subject(&self, supervisor: &str) -> String {
        format!("{}.cancel.{supervisor}", self.prefix)
    }

    /// Core-NATS subject on which tier-0 replicas announce commits (wakes the others' tailers).
    pub fn committed_subject(&self) -> String {
        format!("{}.committed", self.prefix)
    }

    /// KV bucket of live supervisor nodes.
    pub fn peers_bucket(&self) -> String {
        format!("{}-peers", self.prefix)
    }

    /// Every subject of the cluster (for stream subject lists).
    pub fn all_work(&self) -> String {
        format!("{}.work.>", self.prefix)
    }

    /// Every events subject.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Every dead-letter subject.
    pub fn all_dead(&self) -> String {
        format!("{}.dead.>", self.prefix)
    }
}

/// Most bytes of events packed into one message of the events stream (well under NATS's
/// default 1 MiB payload limit; [`pack_limit`] lowers it for a server that allows less); a
/// larger event travels alone.
pub const PACK_BYTES: usize = 256 * 1024;

/// Room left in a NATS message for its headers (message id, traceparent) and framing.
const HEADER_ROOM: usize = 4 * 1024;

/// The pack limit for a NATS server whose `max_payload` (payload plus headers) is `max_payload`.
pub fn pack_limit(max_payload: usize) -> usize {
    PACK_BYTES.min(max_payload.saturating_sub(HEADER_ROOM)).max(1)
}

/// What the bus needs to know of an [`EventMsg`] beyond the contract: whether it may share a
/// message, and what to send instead when NATS refuses it as too large.
pub trait BusEvent {
    /// Whether this event may share a message with others: transitions and progress. A
    /// sub-task's insert and usage keep messages of their own, with their own deduplication
    /// ids (an insert's is deterministic; usage must never be counted twice).
    fn packable(&self) -> bool;

    /// What to publish instead of this event when NATS refuses it as larger than its
    /// `max_payload` (`why` quotes the sizes): a terminal transition becomes FAILED without its
    /// result, so the task ends and is not run again; other events (a huge progress text, a
    /// sub-task's insert) have no smaller form and are None (the caller drops them, logged).
    fn shrunk_for_bus(&self, why: &str) -> Option<EventMsg>;
}

impl BusEvent for EventMsg {
    fn packable(&self) -> bool {
        matches!(self, EventMsg::Transition(_) | EventMsg::Progress { .. })
    }

    fn shrunk_for_bus(&self, why: &str) -> Option<EventMsg> {
        let t = self.terminal()?;
        Some(EventMsg::Transition(TransitionMsg {
            task_id: t.task_id,
            state: TaskState::Failed,
            attempt: t.attempt,
            message: format!(
                "the {} outcome could not be delivered: {why} (the NATS server's max_payload); \
                 raise max_payload or make the task's result smaller",
                t.state.as_str()
            ),
            result: None,
            sign: false,
            traceparent: t.traceparent.clone(),
            round: t.round,
        }))
    }
}

/// One message of the events stream: a single event (a JSON object) or several events of one
/// supervisor packed together (a JSON array, in the order they happened).
#[derive(Debug)]
pub struct EventPack {
    /// The supervisor whose subject it is published on.
    pub supervisor: String,
    /// The events, in order.
    pub events: Vec<EventMsg>,
    /// The encoded body.
    pub body: bytes::Bytes,
    /// Its deduplication id, kept across publish retries.
    pub msg_id: String,
}

/// Packs `(supervisor, event)` pairs into as few messages as keep their order: consecutive
/// packable events of one supervisor share a message up to `limit` bytes ([`pack_limit`]). An
/// event that cannot be encoded is logged and left out.
pub fn pack_events(events: impl IntoIterator<Item = (String, EventMsg)>, limit: usize) -> Vec<EventPack> {
    struct Open {
        supervisor: String,
        events: Vec<EventMsg>,
        bodies: Vec<Vec<u8>>,
        bytes: usize,
        packable: bool,
    }
    fn close(open: Open) -> EventPack {
        let (body, msg_id) = if open.bodies.len() == 1 {
            let id = open.events[0].msg_id(&uuid::Uuid::now_v7().to_string());
            (open.bodies.into_iter().next().unwrap_or_default(), id)
        } else {
            let mut body = Vec::with_capacity(open.bytes + open.bodies.len() + 1);
            body.push(b'[');
            for (i, b) in open.bodies.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b);
            }
            body.push(b']');
            (body, format!("pack.{}", uuid::Uuid::now_v7()))
        };
        EventPack {
            supervisor: open.supervisor,
            events: open.events,
            body: body.into(),
            msg_id,
        }
    }
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for (supervisor, event) in events {
        let body = match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode event");
                continue;
            }
        };
        let packable = event.packable();
        if let Some(o) = open.as_mut()
            && o.packable
            && packable
            && o.supervisor == supervisor
            && o.bytes + body.len() < limit
        {
            o.bytes += body.len() + 1;
            o.events.push(event);
            o.bodies.push(body);
            continue;
        }
        if let Some(o) = open.take() {
            out.push(close(o));
        }
        open = Some(Open {
            supervisor,
            bytes: body.len() + 2,
            events: vec![event],
            bodies: vec![body],
            packable,
        });
    }
    if let Some(o) = open {
        out.push(close(o));
    }
    out
}

/// What to publish instead of a pack NATS refused as larger than its `max_payload` (`why`
/// quotes the sizes): a pack of several events is split into one message per event (the
/// server's limit shrank since it was packed); a lone event is replaced by its smaller form
/// ([`BusEvent::shrunk_for_bus`]) or, without one, dropped. Both are logged.
pub fn refit_for_bus(pack: EventPack, why: &str, limit: usize) -> Vec<EventPack> {
    if pack.events.len() > 1 {
        tracing::warn!(events = pack.events.len(), error = %why, "events pack too large for NATS; sent one by one");
        return pack
            .events
            .into_iter()
            .flat_map(|e| pack_events([(pack.supervisor.clone(), e)], limit))
            .collect();
    }
    let Some(event) = pack.events.into_iter().next() else {
        return Vec::new();
    };
    match event.shrunk_for_bus(why) {
        Some(smaller) => {
            tracing::error!(msg_id = %pack.msg_id, error = %why, "event too large for NATS; its task FAILS");
            pack_events([(pack.supervisor, smaller)], limit)
        }
        None => {
            tracing::error!(msg_id = %pack.msg_id, error = %why, "event too large for NATS; dropped");
            Vec::new()
        }
    }
}

/// The events of one message of the events stream (see [`EventPack`]), each decoded on its
/// own: an element that cannot be read is an error in its place, and does not cost the others.
/// A payload that is not JSON at all is one error.
pub fn decode_events(payload: &[u8]) -> Vec<serde_json::Result<EventMsg>> {
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => match serde_json::from_slice::<Vec<EventMsg>>(payload) {
            Ok(events) => events.into_iter().map(Ok).collect(),
            // Slow path: find which elements are bad.
            Err(e) => match serde_json::from_slice::<Vec<Value>>(payload) {
                Ok(values) => values.into_iter().map(serde_json::from_value).collect(),
                Err(_) => vec![Err(e)],
            },
        },
        _ => vec![serde_json::from_slice(payload)],
    }
}

/// A cancel broadcast to a supervisor's replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelMsg {
    /// The task.
    pub task_id: TaskId,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_priorities() {
        let b = |n| band(Priority::new(n).unwrap());
        assert_eq!(
            [b(0), b(3), b(4), b(6), b(7), b(9)],
            ["low", "low", "normal", "normal", "high", "high"]
        );
    }

    fn transition(id: TaskId, state: TaskState, result: Option<Value>) -> EventMsg {
        EventMsg::Transition(TransitionMsg {
            task_id: id,
            state,
            attempt: 1,
            message: String::new(),
            result,
            sign: false,
            traceparent: None,
            round: 0,
        })
    }

    fn states(events: &[EventMsg]) -> Vec<(TaskId, &'static str)> {
        events
            .iter()
            .map(|e| match e {
                EventMsg::Transition(t) => (t.task_id, t.state.as_str()),
                EventMsg::Progress { task_id, .. } => (*task_id, "progress"),
                EventMsg::Usage { task_id, .. } => (*task_id, "usage"),
                EventMsg::Insert { record } => (record.id, "insert"),
            })
            .collect()
    }

    #[test]
    fn consecutive_events_of_one_supervisor_share_a_message_in_order() {
        let (a, b) = (TaskId::new(), TaskId::new());
        let sys = || "system".to_string();
        let usage = EventMsg::Usage {
            task_id: a,
            usage: cadre_agents::Usage {
                model: "m".into(),
                tokens_in: 1,
                tokens_out: 2,
                ..Default::default()
            },
        };
        let packs = pack_events(
            [
                (sys(), transition(a, TaskState::Running, None)),
                (sys(), transition(b, TaskState::Running, None)),
                (
                    sys(),
                    transition(a, TaskState::Succeeded, Some(serde_json::json!({"x": 1}))),
                ),
                // Usage travels alone, and what follows starts a new message: order is kept.
                (sys(), usage),
                (sys(), transition(b, TaskState::Succeeded, None)),
                // Another supervisor's subject.
                ("multimodal".to_string(), transition(b, TaskState::Failed, None)),
            ],
            PACK_BYTES,
        );
        let shapes: Vec<(&str, usize)> = packs
            .iter()
            .map(|p| (p.supervisor.as_str(), p.events.len()))
            .collect();
        assert_eq!(
            shapes,
            [("system", 3), ("system", 1), ("system", 1), ("multimodal", 1)]
        );
        // A pack is a JSON array that decodes to its events in order; a single event is the
        // plain object older nodes send, with its own deduplication id.
        assert_eq!(packs[0].body.first(), Some(&b'['));
        assert!(packs[0].msg_id.starts_with("pack."), "{}", packs[0].msg_id);
        let decoded = decoded_all(&packs[0].body);
        assert_eq!(states(&decoded), states(&packs[0].events));
        assert_eq!(
            states(&decoded),
            [(a, "RUNNING"), (b, "RUNNING"), (a, "SUCCEEDED")]
        );
        assert_eq!(packs[1].body.first(), Some(&b'{'));
        assert_eq!(states(&decoded_all(&packs[1].body)), [(a, "usage")]);
        assert_eq!(packs[2].msg_id, format!("{b}.1.SUCCEEDED"));
    }

    /// Every event of a message, which must all be readable.
    fn decoded_all(body: &[u8]) -> Vec<EventMsg> {
        decode_events(body).into_iter().map(|e| e.unwrap()).collect()
    }

    #[test]
    fn an_unreadable_event_in_a_pack_costs_only_itself() {
        let (a, b) = (TaskId::new(), TaskId::new());
        let good = |id| serde_json::to_string(&transition(id, TaskState::Succeeded, None)).unwrap();
        let body = format!("[{}, {{\"kind\": \"nope\"}}, {}]", good(a), good(b));
        let got = decode_events(body.as_bytes());
        assert_eq!(got.len(), 3);
        assert!(got[1].is_err());
        let ok: Vec<EventMsg> = got.into_iter().filter_map(Result::ok).collect();
        assert_eq!(states(&ok), [(a, "SUCCEEDED"), (b, "SUCCEEDED")]);
        for junk in [&b"not json"[..], b"[1, 2", b""] {
            let got = decode_events(junk);
            assert!(got.len() == 1 && got[0].is_err(), "{junk:?}");
        }
    }

    #[test]
    fn packs_stay_under_the_byte_limit_and_a_large_event_travels_alone() {
        let big = serde_json::json!({"blob": "x".repeat(PACK_BYTES / 3)});
        let ids: Vec<TaskId> = (0..7).map(|_| TaskId::new()).collect();
        let mut events: Vec<(String, EventMsg)> = ids
            .iter()
            .map(|id| {
                (
                    "system".to_string(),
                    transition(*id, TaskState::Succeeded, Some(big.clone())),
                )
            })
            .collect();
        let huge = TaskId::new();
        let huge_result = serde_json::json!({"blob": "y".repeat(PACK_BYTES + 10)});
        events.insert(
            3,
            (
                "system".into(),
                transition(huge, TaskState::Succeeded, Some(huge_result)),
            ),
        );
        let packs = pack_events(events, PACK_BYTES);
        for p in &packs {
            assert!(
                p.body.len() <= PACK_BYTES || p.events.len() == 1,
                "{} bytes",
                p.body.len()
            );
            assert_eq!(decoded_all(&p.body).len(), p.events.len());
        }
        let all: Vec<TaskId> = packs
            .iter()
            .flat_map(|p| states(&p.events))
            .map(|(id, _)| id)
            .collect();
        let mut want = ids.clone();
        want.insert(3, huge);
        assert_eq!(all, want, "every event, once, in order");
        assert!(
            packs
                .iter()
                .any(|p| p.events.len() == 1 && states(&p.events)[0].0 == huge)
        );
    }

    #[test]
    fn a_server_with_a_small_max_payload_gets_smaller_packs_and_oversized_outcomes_fail() {
        assert_eq!(
            pack_limit(1 << 20),
            PACK_BYTES,
            "NATS's default leaves the default"
        );
        assert_eq!(pack_limit(64 * 1024), 60 * 1024, "headers keep their room");
        assert_eq!(pack_limit(100), 1);
        let limit = pack_limit(64 * 1024);
        let body = serde_json::json!({"blob": "x".repeat(limit / 4)});
        let events: Vec<(String, EventMsg)> = (0..9)
            .map(|_| {
                let t = transition(TaskId::new(), TaskState::Succeeded, Some(body.clone()));
                ("system".to_string(), t)
            })
            .collect();
        let packs = pack_events(events, limit);
        assert!(packs.len() >= 3, "{} packs", packs.len());
        assert!(packs.iter().all(|p| p.body.len() <= limit), "every pack fits");

        let id = TaskId::new();
        let mut done = transition(id, TaskState::Succeeded, Some(body));
        if let EventMsg::Transition(t) = &mut done {
            t.attempt = 2;
            t.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        }
        let Some(EventMsg::Transition(failed)) = done.shrunk_for_bus("2000000 > 1048576 bytes") else {
            panic!("a terminal transition has a smaller form");
        };
        assert_eq!(
            (failed.task_id, failed.state, failed.attempt),
            (id, TaskState::Failed, 2)
        );
        assert!(failed.result.is_none());
        assert!(failed.traceparent.is_some(), "still in the task's trace");
        assert!(
            failed
                .message
                .contains("SUCCEEDED outcome could not be delivered: 2000000 > 1048576 bytes"),
            "{}",
            failed.message
        );
        assert!(
            transition(id, TaskState::Running, None)
                .shrunk_for_bus("x")
                .is_none()
        );
        let progress = EventMsg::Progress {
            task_id: id,
            attempt: 1,
            fraction: 0.5,
            message: "m".into(),
        };
        assert!(progress.shrunk_for_bus("x").is_none());
    }

    #[test]
    fn a_pack_refused_as_too_large_is_split_and_a_lone_outcome_fails() {
        let sys = || "system".to_string();
        let (a, b) = (TaskId::new(), TaskId::new());
        let packs = pack_events(
            [
                (sys(), transition(a, TaskState::Running, None)),
                (sys(), transition(b, TaskState::Running, None)),
                (sys(), transition(a, TaskState::Succeeded, None)),
            ],
            PACK_BYTES,
        );
        assert_eq!(packs.len(), 1);
        let split = refit_for_bus(packs.into_iter().next().unwrap(), "too big", PACK_BYTES);
        let shapes: Vec<Vec<(TaskId, &str)>> = split.iter().map(|p| states(&p.events)).collect();
        assert_eq!(
            shapes,
            [vec![(a, "RUNNING")], vec![(b, "RUNNING")], vec![(a, "SUCCEEDED")]],
            "one message per event, in order"
        );
        assert_eq!(
            split[2].msg_id,
            format!("{a}.1.SUCCEEDED"),
            "a lone transition's own id"
        );

        let lone = split.into_iter().last().unwrap();
        let failed = refit_for_bus(
            lone,
            "Payload size limit of 10 exceeded by message size of 20",
            PACK_BYTES,
        );
        assert_eq!(failed.len(), 1);
        let Some(EventMsg::Transition(t)) = failed[0].events.first() else {
            panic!("a transition");
        };
        assert_eq!((t.task_id, t.state), (a, TaskState::Failed));
        assert!(
            t.message.contains("exceeded by message size of 20"),
            "{}",
            t.message
        );
        assert_eq!(failed[0].msg_id, format!("{a}.1.FAILED"));

        let running = pack_events([(sys(), transition(b, TaskState::Running, None))], PACK_BYTES);
        assert!(refit_for_bus(running.into_iter().next().unwrap(), "too big", PACK_BYTES).is_empty());
    }
}
