//! Criterion bench `task_trip`: what one task's trip through the in-process actor tree costs.
//!
//! `cadre_dispatch_echo` casts `OrchestratorMsg::Dispatch` to the real tier-0 [`Orchestrator`]
//! (tier 0), which hands the task to the `system` [`cadre_supervisors::Supervisor`] (tier 1),
//! which runs it on a `monitor` worker (tier 2) with the built-in `echo` executor; the worker's
//! outcome goes back to the supervisor, whose SUCCEEDED transition reaches a [`TaskSink`] that
//! completes the iteration's oneshot. No gRPC, no store writes: the sink is in memory (the
//! store is an empty SQLite file, read only by start-up recovery).
//!
//! `ractor_call_echo` is the floor to read it against: one ractor `call` round trip to an actor
//! that replies with its input.
//!
//! After the group, the medians criterion stored for both are printed with their ratio.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cadre_agents::Executor;
use cadre_core::recovery::StoreRecovery;
use cadre_proto::{Priority, RetryPolicy, TaskId, TaskState};
use cadre_store::Store;
use cadre_store::sqlite::SqliteStore;
use cadre_supervisors::{
    Orchestrator, OrchestratorArgs, OrchestratorMsg, QueuedTask, RestartIntensity, Route, Router,
    RoutingTable, SupervisorSpec, TaskSink, Transition,
};
use criterion::Criterion;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;
use tokio::sync::oneshot;

const GROUP: &str = "task_trip";
const CADRE: &str = "cadre_dispatch_echo";
const RACTOR: &str = "ractor_call_echo";

/// A [`TaskSink`] that completes the waiter registered for a task when the task reaches a
/// terminal state, and drops every other transition and all progress.
#[derive(Default)]
struct WaiterSink {
    waiters: Mutex<HashMap<TaskId, oneshot::Sender<TaskState>>>,
}

impl WaiterSink {
    /// Registers a waiter for `id`'s terminal state.
    fn wait_for(&self, id: TaskId) -> oneshot::Receiver<TaskState> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        rx
    }
}

#[async_trait]
impl TaskSink for WaiterSink {
    async fn record(&self, t: Transition) {
        if t.state.is_terminal() {
            let waiter = self
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&t.task_id);
            if let Some(tx) = waiter {
                let _ = tx.send(t.state);
            }
        }
    }

    fn progress(&self, _task_id: TaskId, _attempt: u32, _fraction: f64, _message: String) {}

    fn usage(&self, _task_id: TaskId, _usage: cadre_agents::Usage) {}
}

/// The real tier-0 actor with one `system` supervisor whose `monitor` pool runs `echo`.
struct Tree {
    orchestrator: ActorRef<OrchestratorMsg>,
    sink: Arc<WaiterSink>,
    echo: Arc<dyn Executor>,
    _dir: tempfile::TempDir,
}

async fn spawn_tree() -> Tree {
    let dir = tempfile::tempdir().expect("temporary dir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("b.db"), false)
            .await
            .expect("open the bench store"),
    );
    let route = Route {
        supervisor: "system".into(),
        worker: "monitor".into(),
        executor: "echo".into(),
    };
    let routes = RoutingTable(BTreeMap::from([("system.debug.echo".to_string(), route)]));
    let sink = Arc::new(WaiterSink::default());
    let registry = cadre_executors::builtin();
    let echo = registry.get("echo").expect("the built-in echo executor");
    let recovery = StoreRecovery {
        store,
        router: Router::new(routes, registry),
        sink: sink.clone(),
    };
    let spec = SupervisorSpec {
        pools: BTreeMap::from([("monitor".to_string(), 4)]),
        restart: RestartIntensity::default(),
    };
    let args = OrchestratorArgs {
        specs: BTreeMap::from([("system".to_string(), spec)]),
        cancel_grace: Duration::from_secs(5),
        sink: recovery.sink.clone(),
        recovery: std::sync::Arc::new(recovery),
        delegate: None,
        gates: Default::default(),
    };
    let (orchestrator, _) = Actor::spawn(None, Orchestrator, args)
        .await
        .expect("spawn the orchestrator");
    Tree {
        orchestrator,
        sink,
        echo,
        _dir: dir,
    }
}

impl Tree {
    /// One task through tier 0 -> 1 -> 2 and back to the sink.
    async fn trip(&self) {
        let id = TaskId::new();
        let done = self.sink.wait_for(id);
        let task = QueuedTask {
            id,
            tenant: "default".into(),
            task_type: "system.debug.echo".into(),
            worker_kind: "monitor".into(),
            executor: self.echo.clone(),
            params: json!({"p": "x"}),
            priority: Priority::default(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            attempts_started: 0,
            verified: false,
            fortress: false,
            traceparent: None,
            concurrency_key: None,
            rate_limited: 0,
        };
        self.orchestrator
            .cast(OrchestratorMsg::Dispatch {
                supervisor: "system".into(),
                task: Box::new(task),
            })
            .expect("orchestrator alive");
        let state = done.await.expect("the task reaches a terminal state");
        assert_eq!(state, TaskState::Succeeded);
    }
}

/// An actor that replies with its input.
struct EchoActor;

/// The one message of [`EchoActor`].
struct EchoMsg(u64, RpcReplyPort<u64>);

impl Actor for EchoActor {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<EchoMsg>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<EchoMsg>,
        msg: EchoMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let EchoMsg(x, reply) = msg;
        let _ = reply.send(x);
        Ok(())
    }
}

fn task_trip(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let tree = rt.block_on(spawn_tree());
    let (echo, _) = rt
        .block_on(Actor::spawn(None, EchoActor, ()))
        .expect("spawn the echo actor");

    let mut group = c.benchmark_group(GROUP);
    group.bench_function(CADRE, |b| b.to_async(rt).iter(|| tree.trip()));
    group.bench_function(RACTOR, |b| {
        b.to_async(rt).iter(|| async {
            let x = std::hint::black_box(7u64);
            let reply = echo
                .call(|port| EchoMsg(x, port), None)
                .await
                .expect("echo actor alive");
            assert!(matches!(reply, ractor::rpc::CallResult::Success(7)));
        })
    });
    group.finish();

    rt.block_on(async {
        tree.orchestrator
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await
            .ok();
        echo.stop_and_wait(None, Some(Duration::from_secs(5))).await.ok();
    });
}

/// Where criterion keeps its results: `$CRITERION_HOME`, else `<target dir>/criterion`, the
/// target dir being `$CARGO_TARGET_DIR` or three levels above this executable
/// (`target/release/deps/task_trip-*`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The median (ns) criterion stored for `bench` during this run, if it measured it.
fn median_ns(bench: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()?
        .join(GROUP)
        .join(bench)
        .join("new")
        .join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None; // left by an earlier run
    }
    let estimates: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn main() {
    let started = SystemTime::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut c = Criterion::default().configure_from_args();
    task_trip(&mut c, &rt);
    c.final_summary();
    if let (Some(cadre), Some(ractor)) = (median_ns(CADRE, started), median_ns(RACTOR, started)) {
        println!(
            "{GROUP} medians: {CADRE} {:.2} µs, {RACTOR} {:.2} µs, ratio {:.1}",
            cadre / 1e3,
            ractor / 1e3,
            cadre / ractor
        );
    }
}
