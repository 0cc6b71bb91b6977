//! Executor `remote`: runs a task on an external worker process connected over gRPC
//! (`cadre.v1.WorkerService`, see `proto/cadre/v1/worker.proto`), in any language.
//!
//! The [`RemoteHub`] is the meeting point. The node's WorkerService hands each connected
//! worker's stream to it ([`RemoteHub::connect`] returns a [`WorkerSession`] for the incoming
//! messages and a bounded outbox for the outgoing ones); [`Remote::execute`] picks a connected
//! worker that registered the task's type and has a free slot, sends it the task, forwards its
//! progress, and returns its result. When a worker goes away (its stream ends, or the service
//! sees three heartbeat intervals of silence and drops the session) every task in flight on it
//! fails as retryable, so the retry policy runs it again, on another worker.
//!
//! Everything is bounded: connected workers, kinds per worker, tasks per worker (its
//! `max_concurrency`), the outbox, params and result sizes, message lengths.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use cadre_proto::TaskId;
use cadre_proto::v1::{self, server_message, worker_message, worker_result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use cadre_agents::{ExecContext, ExecError, Executor, ExecutorRegistry};

/// Longest worker id, in bytes.
pub const MAX_WORKER_ID_BYTES: usize = 128;
/// Longest progress message kept, in bytes (longer ones are cut).
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 1024;
/// Longest error message kept from a worker, in bytes (longer ones are cut).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// Config section for remote workers (`[executors.remote]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// How long a task waits for a connected worker with its type and a free slot before its
    /// attempt fails as retryable ("no remote worker for <type>"). Default 5000.
    pub wait_for_worker_ms: u64,
    /// How often workers must send something; three intervals of silence drop a worker and
    /// fail its tasks as retryable. Default 5000.
    pub heartbeat_interval_ms: u64,
    /// Largest params (JSON text) sent to a worker; larger fails the task as invalid params.
    /// Default 1 MiB.
    pub max_params_bytes: usize,
    /// Largest result (JSON text) accepted from a worker; larger fails the task. Default 1 MiB.
    pub max_result_bytes: usize,
    /// Most workers connected to this node at once; more are refused. Default 256.
    pub max_workers: usize,
    /// Most task types one worker may register. Default 64.
    pub max_kinds_per_worker: usize,
    /// Highest `max_concurrency` a worker may register. Default 64.
    pub max_concurrency_per_worker: u32,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            wait_for_worker_ms: 5000,
            heartbeat_interval_ms: 5000,
            max_params_bytes: 1 << 20,
            max_result_bytes: 1 << 20,
            max_workers: 256,
            max_kinds_per_worker: 64,
            max_concurrency_per_worker: 64,
        }
    }
}

impl RemoteConfig {
    /// Problems with this section, each prefixed with its path under `executors`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let mut check = |ok: bool, field: &str, what: &str| {
            if !ok {
                errs.push(format!("remote.{field}: {what}"));
            }
        };
        check(
            self.wait_for_worker_ms <= 3_600_000,
            "wait_for_worker_ms",
            "must be at most 3600000 (an hour)",
        );
        check(
            (100..=600_000).contains(&self.heartbeat_interval_ms),
            "heartbeat_interval_ms",
            "must be 100 to 600000",
        );
        check(
            (2..=64 << 20).contains(&self.max_params_bytes),
            "max_params_bytes",
            "must be 2 to 67108864",
        );
        check(
            (1..=64 << 20).contains(&self.max_result_bytes),
            "max_result_bytes",
            "must be 1 to 67108864",
        );
        check(
            (1..=100_000).contains(&self.max_workers),
            "max_workers",
            "must be 1 to 100000",
        );
        check(
            (1..=10_000).contains(&self.max_kinds_per_worker),
            "max_kinds_per_worker",
            "must be 1 to 10000",
        );
        check(
            (1..=10_000).contains(&self.max_concurrency_per_worker),
            "max_concurrency_per_worker",
            "must be 1 to 10000",
        );
        errs
    }

    /// Silence after which a worker is dropped: three heartbeat intervals.
    pub fn liveness_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.saturating_mul(3))
    }
}

/// Registers `remote` with a hub of its own. A node replaces it with one whose hub its
/// WorkerService shares ([`register_with`]); this one only makes the name known (config
/// validation, tools that build a registry without serving).
pub(crate) fn register(r: &mut ExecutorRegistry, config: &RemoteConfig) {
    register_with(r, RemoteHub::new(config.clone()));
}

/// Registers `remote` dispatching through `hub` (the hub the node's WorkerService feeds).
pub fn register_with(r: &mut ExecutorRegistry, hub: Arc<RemoteHub>) {
    r.register("remote", Arc::new(Remote { hub }));
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The register message is malformed (the gRPC layer answers INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    /// `max_workers` are connected (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    Full(String),
}

/// One task sent to a worker and not finished yet.
struct InFlight {
    /// Where its end goes (the waiting `execute`).
    done: oneshot::Sender<Result<Value, ExecError>>,
    /// Its context, for progress.
    ctx: ExecContext,
}

/// One connected worker.
struct Connected {
    worker_id: String,
    kinds: BTreeSet<String>,
    slots: usize,
    /// Keyed by (task id, attempt).
    in_flight: HashMap<(TaskId, u32), InFlight>,
    outbox: mpsc::Sender<v1::ServerMessage>,
}

#[derive(Default)]
struct HubState {
    workers: HashMap<u64, Connected>,
    next_session: u64,
}

/// The connected remote workers of a node, shared by the `remote` executor and the node's
/// WorkerService.
pub struct RemoteHub {
    config: RemoteConfig,
    state: Mutex<HubState>,
    /// Wakes tasks waiting for a worker when one connects or a slot frees up.
    changed: Notify,
}

impl RemoteHub {
    /// An empty hub with `config`'s bounds.
    pub fn new(config: RemoteConfig) -> Arc<Self> {
        Arc::new(RemoteHub {
            config,
            state: Mutex::new(HubState::default()),
            changed: Notify::new(),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connected workers.
    pub fn connected(&self) -> usize {
        self.lock().workers.len()
    }

    /// Checks a register message and adds the worker. Returns its session (feed it the
    /// worker's messages; dropping it disconnects the worker) and the receiver of what to send
    /// it, which already holds the `registered` answer.
    pub fn connect(
        self: &Arc<Self>,
        reg: v1::WorkerRegister,
    ) -> Result<(WorkerSession, mpsc::Receiver<v1::ServerMessage>), RegisterError> {
        let invalid = |m: String| Err(RegisterError::Invalid(m));
        let worker_id = reg.worker_id.trim().to_string();
        if worker_id.is_empty() || worker_id.len() > MAX_WORKER_ID_BYTES {
            return invalid(format!(
                "register.worker_id: must be 1 to {MAX_WORKER_ID_BYTES} bytes"
            ));
        }
        if worker_id.chars().any(char::is_control) {
            return invalid("register.worker_id: must not contain control characters".into());
        }
        if reg.kinds.is_empty() {
            return invalid("register.kinds: at least one task type is needed".into());
        }
        if reg.kinds.len() > self.config.max_kinds_per_worker {
            return invalid(format!(
                "register.kinds: {} task types, above executors.remote.max_kinds_per_worker ({})",
                reg.kinds.len(),
                self.config.max_kinds_per_worker
            ));
        }
        for k in &reg.kinds {
            if let Err(e) = cadre_proto::validate_task_type(k) {
                return invalid(format!(
                    "register.kinds: {}",
                    e.to_string().replace("spec.task_type: ", "")
                ));
            }
        }
        let slots = reg.max_concurrency.max(1);
        if slots > self.config.max_concurrency_per_worker {
            return invalid(format!(
                "register.max_concurrency: {slots} is above executors.remote.max_concurrency_per_worker ({})",
                self.config.max_concurrency_per_worker
            ));
        }
        let slots = slots as usize;
        // Room for a task and a cancel per slot, and the registered answer.
        let (tx, rx) = mpsc::channel(2 * slots + 2);
        let session = {
            let mut st = self.lock();
            if st.workers.len() >= self.config.max_workers {
                return Err(RegisterError::Full(format!(
                    "{} remote workers are connected, the most executors.remote.max_workers allows",
                    st.workers.len()
                )));
            }
            st.next_session += 1;
            let id = st.next_session;
            let registered = v1::ServerMessage {
                body: Some(server_message::Body::Registered(v1::ServerRegistered {
                    heartbeat_interval_ms: self.config.heartbeat_interval_ms,
                    session_id: id,
                })),
            };
            // The channel is new and empty: this cannot fail.
            let _ = tx.try_send(registered);
            st.workers.insert(
                id,
                Connected {
                    worker_id: worker_id.clone(),
                    kinds: reg.kinds.iter().cloned().collect(),
                    slots,
                    in_flight: HashMap::new(),
                    outbox: tx,
                },
            );
            id
        };
        self.changed.notify_waiters();
        Ok((
            WorkerSession {
                hub: self.clone(),
                id: session,
                worker_id,
                end: "its stream ended".into(),
            },
            rx,
        ))
    }

    /// Takes a free slot on a worker that runs `task_type` (the least busy one), recording the
    /// task as in flight there. Returns the session, the worker's id and outbox, and the
    /// receiver of the task's end.
    #[allow(clippy::type_complexity)]
    fn claim(
        &self,
        ctx: &ExecContext,
    ) -> Option<(
        u64,
        String,
        mpsc::Sender<v1::ServerMessage>,
        oneshot::Receiver<Result<Value, ExecError>>,
    )> {
        let mut st = self.lock();
        let key = (ctx.task_id, ctx.attempt);
        let (id, w) = st
            .workers
            .iter_mut()
            .filter(|(_, w)| {
                w.kinds.contains(&ctx.task_type)
                    && w.in_flight.len() < w.slots
                    && !w.in_flight.contains_key(&key)
            })
            .max_by_key(|(id, w)| (w.slots - w.in_flight.len(), std::cmp::Reverse(**id)))?;
        let (done, rx) = oneshot::channel();
        w.in_flight.insert(
            key,
            InFlight {
                done,
                ctx: ctx.clone(),
            },
        );
        Some((*id, w.worker_id.clone(), w.outbox.clone(), rx))
    }

    /// Forgets a task on a worker (its attempt ended on this side); true if it was still in
    /// flight there.
    fn release(&self, session: u64, key: (TaskId, u32)) -> bool {
        let removed = self
            .lock()
            .workers
            .get_mut(&session)
            .and_then(|w| w.in_flight.remove(&key))
            .is_some();
        if removed {
            self.changed.notify_waiters();
        }
        removed
    }

    /// Removes a worker; every task in flight on it fails as retryable.
    fn disconnect(&self, session: u64, reason: &str) {
        let Some(w) = self.lock().workers.remove(&session) else {
            return;
        };
        let n = w.in_flight.len();
        for (_, f) in w.in_flight {
            let _ = f.done.send(Err(ExecError::Retryable(format!(
                "remote worker disconnected ({}: {reason})",
                w.worker_id
            ))));
        }
        tracing::info!(worker = %w.worker_id, session, reason, in_flight = n, "remote worker disconnected");
        self.changed.notify_waiters();
    }
}

/// One connected worker's side of the hub: the WorkerService feeds it what the worker sends.
/// Dropping it disconnects the worker.
pub struct WorkerSession {
    hub: Arc<RemoteHub>,
    id: u64,
    worker_id: String,
    end: String,
}

impl WorkerSession {
    /// The hub's id for this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id the worker registered.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Sets why the session ends, for the error its in-flight tasks fail with (default "its
    /// stream ended").
    pub fn set_end_reason(&mut self, reason: impl Into<String>) {
        self.end = reason.into();
    }

    /// Handles one message from the worker. A second `register` is refused with an error
    /// (the caller ends the stream); a progress or result about a task the worker is not
    /// running (finished, cancelled, or never sent) is ignored.
    pub fn handle(&self, msg: v1::WorkerMessage) -> Result<(), String> {
        match msg.body {
            None | Some(worker_message::Body::Heartbeat(_)) => Ok(()),
            Some(worker_message::Body::Register(_)) => Err("register: sent twice".into()),
            Some(worker_message::Body::Progress(p)) => {
                let Some(key) = self.key(&p.task_id, p.attempt) else {
                    return Ok(());
                };
                let st = self.hub.lock();
                if let Some(f) = st.workers.get(&self.id).and_then(|w| w.in_flight.get(&key)) {
                    let fraction = if p.fraction.is_finite() { p.fraction } else { 0.0 };
                    f.ctx
                        .progress(fraction, cut(p.message, MAX_PROGRESS_MESSAGE_BYTES));
                }
                Ok(())
            }
            Some(worker_message::Body::Result(r)) => {
                let Some(key) = self.key(&r.task_id, r.attempt) else {
                    return Ok(());
                };
                let Some(f) = self
                    .hub
                    .lock()
                    .workers
                    .get_mut(&self.id)
                    .and_then(|w| w.in_flight.remove(&key))
                else {
                    tracing::debug!(worker = %self.worker_id, task_id = %r.task_id, "result for a task not in flight; ignored");
                    return Ok(());
                };
                self.hub.changed.notify_waiters();
                let _ = f.done.send(self.outcome(r.outcome));
                Ok(())
            }
        }
    }

    fn key(&self, task_id: &str, attempt: u32) -> Option<(TaskId, u32)> {
        match task_id.parse() {
            Ok(id) => Some((id, attempt)),
            Err(_) => {
                tracing::debug!(worker = %self.worker_id, task_id, "message about a malformed task id; ignored");
                None
            }
        }
    }

    /// What a worker's result means for the attempt.
    fn outcome(&self, outcome: Option<worker_result::Outcome>) -> Result<Value, ExecError> {
        let w = &self.worker_id;
        match outcome {
            None => Err(ExecError::Fatal(format!(
                "remote worker {w} sent a result with neither result_json nor error"
            ))),
            Some(worker_result::Outcome::Error(e)) => {
                let message = format!("remote worker {w}: {}", cut(e.message, MAX_ERROR_MESSAGE_BYTES));
                Err(if e.retryable {
                    ExecError::Retryable(message)
                } else {
                    ExecError::Fatal(message)
                })
            }
            Some(worker_result::Outcome::ResultJson(text)) => {
                let max = self.hub.config.max_result_bytes;
                if text.len() > max {
                    return Err(ExecError::Fatal(format!(
                        "remote worker {w} sent a result of {} bytes, above executors.remote.max_result_bytes ({max})",
                        text.len()
                    )));
                }
                serde_json::from_str(&text).map_err(|e| {
                    ExecError::Fatal(format!("remote worker {w} sent a result that is not JSON: {e}"))
                })
            }
        }
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        self.hub.disconnect(self.id, &self.end);
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The `remote` executor: dispatches through a [`RemoteHub`].
pub struct Remote {
    hub: Arc<RemoteHub>,
}

impl Remote {
    /// An executor dispatching through `hub`.
    pub fn new(hub: Arc<RemoteHub>) -> Self {
        Remote { hub }
    }
}

/// Frees the slot of a task whose attempt ended on this side before the worker answered
/// (cancelled, or the worker dropped the future at its timeout), and tells the worker to stop.
struct Dispatched<'a> {
    hub: &'a RemoteHub,
    session: u64,
    key: (TaskId, u32),
    outbox: mpsc::Sender<v1::ServerMessage>,
    answered: bool,
}

impl Drop for Dispatched<'_> {
    fn drop(&mut self) {
        if self.answered || !self.hub.release(self.session, self.key) {
            return;
        }
        let cancel = v1::ServerMessage {
            body: Some(server_message::Body::Cancel(v1::ServerCancel {
                task_id: self.key.0.to_string(),
                attempt: self.key.1,
            })),
        };
        // Bounded: room for one cancel per slot. A worker too far behind to take it is
        // dropped by its heartbeat timeout anyway.
        let _ = self.outbox.try_send(cancel);
    }
}

#[async_trait]
impl Executor for Remote {
    fn params_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "description": "any object; it is sent to the remote worker as JSON",
            "properties": {},
        }))
    }

    fn result_schema(&self) -> Option<Value> {
        Some(json!({ "description": "whatever JSON the remote worker returned" }))
    }

    async fn execute(&self, ctx: ExecContext, params: Value) -> Result<Value, ExecError> {
        if !params.is_object() {
            return Err(ExecError::InvalidParams("params must be a JSON object".into()));
        }
        let params_json = params.to_string();
        let max = self.hub.config.max_params_bytes;
        if params_json.len() > max {
            return Err(ExecError::InvalidParams(format!(
                "params are {} bytes, above executors.remote.max_params_bytes ({max})",
                params_json.len()
            )));
        }
        let wait = Duration::from_millis(self.hub.config.wait_for_worker_ms);
        let deadline = tokio::time::Instant::now() + wait;
        let (session, worker_id, outbox, done) = loop {
            let changed = self.hub.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(claimed) = self.hub.claim(&ctx) {
                break claimed;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ExecError::Retryable(format!(
                        "no remote worker for {} (none connected with a free slot within {} ms)",
                        ctx.task_type,
                        wait.as_millis()
                    )));
                }
                _ = ctx.cancel.cancelled() => return Err(ExecError::Cancelled),
            }
        };
        let mut dispatched = Dispatched {
            hub: &self.hub,
            session,
            key: (ctx.task_id, ctx.attempt),
            outbox: outbox.clone(),
            answered: false,
        };
        let task = v1::ServerMessage {
            body: Some(server_message::Body::Task(v1::ServerTask {
                task_id: ctx.task_id.to_string(),
                task_type: ctx.task_type.clone(),
                attempt: ctx.attempt,
                params_json,
            })),
        };
        if let Err(e) = outbox.try_send(task) {
            dispatched.answered = true;
            self.hub.release(session, dispatched.key);
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "is not reading its stream",
                mpsc::error::TrySendError::Closed(_) => "disconnected",
            };
            return Err(ExecError::Retryable(format!("remote worker {worker_id} {why}")));
        }
        tracing::debug!(task_id = %ctx.task_id, worker = %worker_id, session, "task sent to a remote worker");
        tokio::select! {
            end = done => {
                dispatched.answered = true;
                end.unwrap_or_else(|_| Err(ExecError::Retryable(format!("remote worker disconnected ({worker_id})"))))
            }
            // Dropping `dispatched` sends the worker a cancel.
            _ = ctx.cancel.cancelled() => Err(ExecError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use cadre_agents::schema::validate;

    use super::*;
    use crate::support::test_support::ctx;
    use tokio_util::sync::CancellationToken;

    fn config() -> RemoteConfig {
        RemoteConfig {
            wait_for_worker_ms: 2000,
            max_result_bytes: 64,
            ..Default::default()
        }
    }

    fn register(id: &str, kinds: &[&str], slots: u32) -> v1::WorkerRegister {
        v1::WorkerRegister {
            worker_id: id.into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            max_concurrency: slots,
        }
    }

    fn task_ctx(task_type: &str) -> ExecContext {
        let mut c = ctx();
        c.task_type = task_type.into();
        c
    }

    async fn next_task(rx: &mut mpsc::Receiver<v1::ServerMessage>) -> v1::ServerTask {
        match rx.recv().await.and_then(|m| m.body) {
            Some(server_message::Body::Task(t)) => t,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    fn result(t: &v1::ServerTask, outcome: worker_result::Outcome) -> v1::WorkerMessage {
        v1::WorkerMessage {
            body: Some(worker_message::Body::Result(v1::WorkerResult {
                task_id: t.task_id.clone(),
                attempt: t.attempt,
                outcome: Some(outcome),
            })),
        }
    }

    const KIND: &str = "intelligence.remote.reverse";

    /// Remembers the progress it is given.
    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<(f64, String)>>);

    impl cadre_agents::Report for Recorded {
        fn progress(&self, fraction: f64, message: String) {
            self.0.lock().unwrap().push((fraction, message));
        }
        fn usage(&self, _usage: cadre_agents::Usage) {}
    }

    fn progress(t: &v1::ServerTask, fraction: f64, message: &str) -> v1::WorkerMessage {
        v1::WorkerMessage {
            body: Some(worker_message::Body::Progress(v1::WorkerProgress {
                task_id: t.task_id.clone(),
                attempt: t.attempt,
                fraction,
                message: message.into(),
            })),
        }
    }

    #[tokio::test]
    async fn a_task_runs_on_a_worker_that_registered_its_type() {
        let hub = RemoteHub::new(config());
        let exec = Remote::new(hub.clone());
        let (_other, mut other_rx) = hub.connect(register("other", &["a.b.c"], 4)).unwrap();
        let (session, mut rx) = hub.connect(register("w1", &[KIND], 1)).unwrap();
        assert!(matches!(
            rx.recv().await.unwrap().body,
            Some(server_message::Body::Registered(v1::ServerRegistered {
                heartbeat_interval_ms: 5000,
                ..
            }))
        ));
        assert_eq!(hub.connected(), 2);
        let report = Arc::new(Recorded::default());
        let c = ExecContext::new(
            TaskId::new(),
            KIND.into(),
            1,
            CancellationToken::new(),
            report.clone(),
        );
        let run = tokio::spawn(async move { exec.execute(c, json!({"text": "abc"})).await });
        let t = next_task(&mut rx).await;
        assert_eq!((t.task_type.as_str(), t.attempt), (KIND, 1));
        assert_eq!(
            serde_json::from_str::<Value>(&t.params_json).unwrap(),
            json!({"text": "abc"})
        );
        session.handle(progress(&t, 0.5, "half")).unwrap();
        session.handle(progress(&t, f64::NAN, &"é".repeat(2000))).unwrap();
        let mut stale = progress(&t, 0.9, "an older attempt");
        if let Some(worker_message::Body::Progress(p)) = &mut stale.body {
            p.attempt = 7;
        }
        session.handle(stale).unwrap();
        session
            .handle(result(
                &t,
                worker_result::Outcome::ResultJson(r#"{"text":"cba"}"#.into()),
            ))
            .unwrap();
        let out = run.await.unwrap().unwrap();
        assert_eq!(out, json!({"text": "cba"}));
        let seen = report.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], (0.5, "half".to_string()));
        assert_eq!((seen[1].0, seen[1].1.len()), (0.0, MAX_PROGRESS_MESSAGE_BYTES));
        validate(&Remote::new(hub.clone()).result_schema().unwrap(), &out).unwrap();
        // The other worker registered another type and got nothing but its answer.
        other_rx.recv().await.unwrap();
        assert!(other_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn without_a_worker_the_attempt_fails_retryable_naming_the_type() {
        let hub = RemoteHub::new(RemoteConfig {
            wait_for_worker_ms: 50,
            ..config()
        });
        let (_busy, _rx) = hub.connect(register("w1", &["a.b.c"], 1)).unwrap();
        let err = Remote::new(hub)
            .execute(task_ctx(KIND), json!({}))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains(&format!("no remote worker for {KIND}")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_waiting_task_takes_a_worker_that_connects_later() {
        let hub = RemoteHub::new(config());
        let exec = Remote::new(hub.clone());
        let run = tokio::spawn(async move { exec.execute(task_ctx(KIND), json!({})).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (session, mut rx) = hub.connect(register("late", &[KIND], 1)).unwrap();
        rx.recv().await.unwrap();
        let t = next_task(&mut rx).await;
        session
            .handle(result(&t, worker_result::Outcome::ResultJson("[1]".into())))
            .unwrap();
        assert_eq!(run.await.unwrap(), Ok(json!([1])));
    }

    #[tokio::test]
    async fn a_disconnect_fails_the_tasks_in_flight_as_retryable() {
        let hub = RemoteHub::new(config());
        let exec = Remote::new(hub.clone());
        let (mut session, mut rx) = hub.connect(register("w1", &[KIND], 2)).unwrap();
        rx.recv().await.unwrap();
        let run = tokio::spawn(async move { exec.execute(task_ctx(KIND), json!({})).await });
        next_task(&mut rx).await;
        session.set_end_reason("no heartbeat");
        drop(session);
        let err = run.await.unwrap().unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string()
                .contains("remote worker disconnected (w1: no heartbeat)"),
            "{err}"
        );
        assert_eq!(hub.connected(), 0);
        // Its outbox closes: the gRPC stream ends.
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn cancel_reaches_the_worker_and_frees_the_slot() {
        let hub = RemoteHub::new(config());
        let exec = Arc::new(Remote::new(hub.clone()));
        let (session, mut rx) = hub.connect(register("w1", &[KIND], 1)).unwrap();
        rx.recv().await.unwrap();
        let cancel = CancellationToken::new();
        let mut c = task_ctx(KIND);
        c.cancel = cancel.clone();
        let e = exec.clone();
        let run = tokio::spawn(async move { e.execute(c, json!({})).await });
        let t = next_task(&mut rx).await;
        cancel.cancel();
        assert_eq!(run.await.unwrap(), Err(ExecError::Cancelled));
        match rx.recv().await.and_then(|m| m.body) {
            Some(server_message::Body::Cancel(c)) => {
                assert_eq!((c.task_id, c.attempt), (t.task_id.clone(), t.attempt))
            }
            other => panic!("expected a cancel, got {other:?}"),
        }
        // A late result is ignored, and the slot is free for the next task.
        session
            .handle(result(&t, worker_result::Outcome::ResultJson("1".into())))
            .unwrap();
        let e = exec.clone();
        let run = tokio::spawn(async move { e.execute(task_ctx(KIND), json!({"n": 2})).await });
        let t2 = next_task(&mut rx).await;
        session
            .handle(result(&t2, worker_result::Outcome::ResultJson("2".into())))
            .unwrap();
        assert_eq!(run.await.unwrap(), Ok(json!(2)));
    }

    #[tokio::test]
    async fn worker_errors_and_bad_results_map_to_exec_errors() {
        let hub = RemoteHub::new(config());
        let (session, mut rx) = hub.connect(register("w1", &[KIND], 4)).unwrap();
        rx.recv().await.unwrap();
        let cases: Vec<(worker_result::Outcome, ExecError)> = vec![
            (
                worker_result::Outcome::Error(v1::WorkerError { message: "busy".into(), retryable: true }),
                ExecError::Retryable("remote worker w1: busy".into()),
            ),
            (
                worker_result::Outcome::Error(v1::WorkerError { message: "bad".into(), retryable: false }),
                ExecError::Fatal("remote worker w1: bad".into()),
            ),
            (
                worker_result::Outcome::ResultJson("{not json".into()),
                ExecError::Fatal("remote worker w1 sent a result that is not JSON: key must be a string at line 1 column 2".into()),
            ),
            (
                worker_result::Outcome::ResultJson(format!("\"{}\"", "x".repeat(100))),
                ExecError::Fatal("remote worker w1 sent a result of 102 bytes, above executors.remote.max_result_bytes (64)".into()),
            ),
        ];
        for (outcome, want) in cases {
            let exec = Remote::new(hub.clone());
            let run = tokio::spawn(async move { exec.execute(task_ctx(KIND), json!({})).await });
            let t = next_task(&mut rx).await;
            session.handle(result(&t, outcome)).unwrap();
            assert_eq!(run.await.unwrap(), Err(want));
        }
    }

    #[tokio::test]
    async fn params_must_be_a_bounded_object() {
        let hub = RemoteHub::new(RemoteConfig {
            max_params_bytes: 20,
            ..config()
        });
        let exec = Remote::new(hub);
        let err = exec.execute(task_ctx(KIND), json!([1])).await.unwrap_err();
        assert_eq!(
            err,
            ExecError::InvalidParams("params must be a JSON object".into())
        );
        let err = exec
            .execute(task_ctx(KIND), json!({"text": "far too long for twenty bytes"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ExecError::InvalidParams(m) if m.contains("max_params_bytes (20)")),
            "{err}"
        );
    }

    #[test]
    fn registrations_are_checked_and_bounded() {
        let hub = RemoteHub::new(RemoteConfig {
            max_workers: 1,
            max_kinds_per_worker: 2,
            max_concurrency_per_worker: 3,
            ..config()
        });
        let refused = |r: v1::WorkerRegister| match hub.connect(r) {
            Err(RegisterError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        };
        assert!(refused(register("", &[KIND], 1)).starts_with("register.worker_id"));
        assert!(refused(register("w", &[], 1)).starts_with("register.kinds: at least one"));
        assert!(refused(register("w", &["a.b.c", "a.b.d", "a.b.e"], 1)).contains("max_kinds_per_worker (2)"));
        assert!(refused(register("w", &["Not A Type"], 1)).contains("supervisor.domain.action"));
        assert!(refused(register("w", &[KIND], 4)).contains("max_concurrency_per_worker (3)"));
        let (_s, _rx) = hub.connect(register("w", &[KIND], 0)).unwrap();
        assert!(matches!(
            hub.connect(register("w2", &[KIND], 1)),
            Err(RegisterError::Full(_))
        ));
    }

    #[test]
    fn config_problems_are_named() {
        assert!(RemoteConfig::default().validate().is_empty());
        let bad = RemoteConfig {
            heartbeat_interval_ms: 0,
            max_workers: 0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate(),
            vec![
                "remote.heartbeat_interval_ms: must be 100 to 600000",
                "remote.max_workers: must be 1 to 100000",
            ]
        );
    }
}
