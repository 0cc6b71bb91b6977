//! What may start now: pauses, concurrency-key limits and rate-limit holds of a task type
//! (`cadre_supervisors::dispatch_gates`), through the actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cadre_agents::{ExecContext, ExecError, Executor};
use cadre_proto::TaskState::{Failed, Queued, Running, Succeeded};
use cadre_proto::{TaskId, TaskState};
use cadre_supervisors::{
    ConcurrencyRule, Dispatch, DispatchConfig, Gates, Orchestrator, OrchestratorArgs, OrchestratorMsg, Pause,
    PauseSet, QueuedTask, SourceError, SupervisorMsg, SupervisorSpec, TaskSource,
};
use ractor::Actor;
use serde_json::{Value, json};

use crate::support::{Event, FakeSink, Flaky, Gated, Harness, Panics, Setup, assert_contains, ok, task};

fn pauses(p: &[Pause]) -> PauseSet {
    PauseSet { pauses: p.to_vec() }
}

fn tenant(t: &str) -> Pause {
    Pause::Tenant { tenant: t.into() }
}

fn set_pauses(h: &Harness, set: PauseSet) {
    h.sup
        .cast(SupervisorMsg::SetPauses(set))
        .expect("supervisor alive");
}

/// Where (index in everything the sink saw) `id` first reached `state`, if it did.
fn position(sink: &FakeSink, id: TaskId, state: TaskState) -> Option<usize> {
    sink.events()
        .iter()
        .position(|e| matches!(e, Event::Transition(s) if s.transition.task_id == id && s.state() == state))
}

fn keyed(kind: &str, tenant: &str, key: &str, executor: Arc<dyn Executor>) -> QueuedTask {
    let mut t = task(kind, tenant, executor);
    t.concurrency_key = Some(key.into());
    t
}

fn key_gates(rules: &[(&str, u32)]) -> Gates {
    let config = DispatchConfig {
        concurrency: rules
            .iter()
            .map(|(k, l)| ConcurrencyRule {
                key: k.to_string(),
                limit: *l,
                tenant: None,
            })
            .collect(),
        ..Default::default()
    };
    Gates {
        dispatch: Arc::new(Dispatch::new(&config)),
        pauses: PauseSet::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_paused_tenant_stays_queued_in_order_while_others_flow() {
    let h = Setup::new(&[("main", 1)])
        .gates(Gates {
            pauses: pauses(&[tenant("acme")]),
            ..Default::default()
        })
        .spawn()
        .await;
    let held: Vec<TaskId> = (0..3).map(|_| h.enqueue(task("main", "acme", ok()))).collect();
    let other = h.enqueue(task("main", "beta", ok()));
    assert_eq!(h.sink.terminal(other).await.state(), Succeeded);
    h.settle().await;
    for id in &held {
        assert!(h.sink.states(*id).is_empty(), "paused: {:?}", h.sink.states(*id));
    }
    assert_eq!(
        h.pool("main").await.queue_depth,
        3,
        "paused tasks still count as queued"
    );

    set_pauses(&h, PauseSet::default());
    for id in &held {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    let starts: Vec<usize> = held
        .iter()
        .map(|id| position(&h.sink, *id, Running).expect("ran"))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "in queue order: {starts:?}"
    );
    assert_eq!(h.pool("main").await.queue_depth, 0);
}

#[tokio::test(start_paused = true)]
async fn pools_types_and_supervisors_pause_only_their_tasks_and_running_ones_finish() {
    let h = Setup::new(&[("main", 1), ("side", 1)]).spawn().await;
    let (gate, running) = h.occupy("main", 1).await;
    set_pauses(
        &h,
        pauses(&[
            Pause::Pool {
                supervisor: "test".into(),
                worker_kind: "main".into(),
            },
            Pause::TaskTypePrefix {
                prefix: "test.slow.".into(),
            },
        ]),
    );
    let main = h.enqueue(task("main", "beta", ok()));
    let mut slow = task("side", "beta", ok());
    slow.task_type = "test.slow.one".into();
    let slow = h.enqueue(slow);
    let side = h.enqueue(task("side", "beta", ok()));
    gate.open(1);
    assert_eq!(
        h.sink.terminal(running[0]).await.state(),
        Succeeded,
        "running work finishes"
    );
    assert_eq!(h.sink.terminal(side).await.state(), Succeeded);
    h.settle().await;
    assert!(h.sink.states(main).is_empty() && h.sink.states(slow).is_empty());

    // A whole-supervisor pause keeps the pool paused after the pool's own pause is lifted.
    set_pauses(
        &h,
        pauses(&[Pause::Supervisor {
            supervisor: "test".into(),
        }]),
    );
    h.settle().await;
    assert!(h.sink.states(main).is_empty() && h.sink.states(slow).is_empty());
    set_pauses(
        &h,
        pauses(&[Pause::Supervisor {
            supervisor: "other".into(),
        }]),
    );
    assert_eq!(h.sink.terminal(main).await.state(), Succeeded);
    assert_eq!(h.sink.terminal(slow).await.state(), Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_paused_task_leaves_the_queue() {
    let h = Setup::new(&[("main", 1)])
        .gates(Gates {
            pauses: pauses(&[tenant("acme")]),
            ..Default::default()
        })
        .spawn()
        .await;
    let a = h.enqueue(task("main", "acme", ok()));
    let b = h.enqueue(task("main", "acme", ok()));
    h.settle().await;
    h.cancel(a, "no longer needed");
    assert_eq!(h.sink.terminal(a).await.state(), TaskState::Cancelled);
    assert_eq!(h.pool("main").await.queue_depth, 1);
    set_pauses(&h, PauseSet::default());
    assert_eq!(h.sink.terminal(b).await.state(), Succeeded);
    assert_eq!(h.sink.states(a), [(TaskState::Cancelled, 0)]);
}

/// A task source that hands a restarted supervisor the tasks a test gives it.
struct Fixed(std::sync::Mutex<Vec<(String, QueuedTask)>>);

#[async_trait]
impl TaskSource for Fixed {
    async fn unfinished(&self, supervisor: Option<&str>) -> Result<Vec<(String, QueuedTask)>, SourceError> {
        let all = self.0.lock().unwrap();
        Ok(all
            .iter()
            .filter(|(s, _)| supervisor.is_none_or(|x| x == s))
            .cloned()
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_supervisor_keeps_the_pauses() {
    let sink = FakeSink::new();
    let source = Arc::new(Fixed(Default::default()));
    let spec = SupervisorSpec {
        pools: [("main".to_string(), 1)].into(),
        restart: cadre_supervisors::RestartIntensity {
            max_restarts: 0,
            within_secs: 60,
        },
    };
    let args = OrchestratorArgs {
        specs: [("test".to_string(), spec)].into(),
        cancel_grace: Duration::from_secs(1),
        sink: sink.clone(),
        recovery: source.clone(),
        delegate: None,
        gates: Gates::default(),
    };
    let (tree, _) = Actor::spawn(None, Orchestrator, args).await.expect("tree starts");
    tree.cast(OrchestratorMsg::SetPauses(pauses(&[tenant("acme")])))
        .unwrap();
    // What the store would hand back after the restart: a task of the paused tenant.
    let paused = task("main", "acme", ok());
    let paused_id = paused.id;
    source.0.lock().unwrap().push(("test".into(), paused));
    // A crash with no restarts allowed takes the supervisor down; the tree restarts it.
    let crash = task(
        "main",
        "beta",
        Arc::new(Panics {
            panics: 1,
            on_cancel: false,
        }),
    );
    let crash_id = crash.id;
    tree.cast(OrchestratorMsg::Dispatch {
        supervisor: "test".into(),
        task: Box::new(crash),
    })
    .unwrap();
    sink.reached(crash_id, Running, 1).await;
    let restarted = || async {
        let s = ractor::call!(tree, OrchestratorMsg::Status).unwrap();
        s[0].restarts >= 1 && s[0].state == "running" && s[0].pools[0].queue_depth == 1
    };
    let mut waited = 0;
    while !restarted().await {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(
            waited < 10_000,
            "the supervisor never came back with the task queued"
        );
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(sink.states(paused_id).is_empty(), "{:?}", sink.states(paused_id));
    tree.cast(OrchestratorMsg::SetPauses(PauseSet::default()))
        .unwrap();
    assert_eq!(sink.terminal(paused_id).await.state(), Succeeded);
    tree.stop(None);
}

#[tokio::test(start_paused = true)]
async fn a_key_runs_at_most_its_limit_in_order_and_other_keys_flow() {
    let h = Setup::new(&[("main", 4)])
        .gates(key_gates(&[("repo:*", 2)]))
        .spawn()
        .await;
    let limited = Gated::new();
    let free = Gated::new();
    let ids: Vec<TaskId> = (0..6)
        .map(|_| h.enqueue(keyed("main", "acme", "repo:a", limited.clone())))
        .collect();
    let others: Vec<TaskId> = (0..2)
        .map(|_| h.enqueue(keyed("main", "acme", "other", free.clone())))
        .collect();
    for id in &others {
        h.sink.reached(*id, Running, 1).await;
    }
    h.settle().await;
    assert_eq!(limited.running(), 2, "the key's limit");
    assert_eq!(
        h.pool("main").await.queue_depth,
        4,
        "waiting tasks count as queued"
    );
    free.open(2);
    limited.open(6);
    for id in ids.iter().chain(&others) {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    assert_eq!(limited.max_running(), 2);
    let starts: Vec<usize> = ids
        .iter()
        .map(|id| position(&h.sink, *id, Running).expect("ran"))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "FIFO within the key: {starts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_is_counted_across_supervisors_and_tenants_apart() {
    let gates = key_gates(&[("k", 1)]);
    let keys = gates.dispatch.keys.clone();
    let a = Setup::new(&[("main", 2)]).gates(gates.clone()).spawn().await;
    let b = Setup::new(&[("main", 2)]).gates(gates).spawn().await;
    let gate = Gated::new();
    let first = a.enqueue(keyed("main", "acme", "k", gate.clone()));
    a.sink.reached(first, Running, 1).await;
    let second = b.enqueue(keyed("main", "acme", "k", gate.clone()));
    let other_tenant = b.enqueue(keyed("main", "beta", "k", ok()));
    assert_eq!(
        b.sink.terminal(other_tenant).await.state(),
        Succeeded,
        "counted per tenant"
    );
    b.settle().await;
    assert!(
        b.sink.states(second).is_empty(),
        "the other supervisor's slot is taken"
    );
    gate.open(2);
    assert_eq!(b.sink.terminal(second).await.state(), Succeeded);
    assert_eq!(gate.max_running(), 1);
    b.settle().await;
    let id = cadre_supervisors::key_limits::KeyId {
        tenant: "acme".into(),
        key: "k".into(),
    };
    assert_eq!(keys.running(&id), 0, "no slot leaked");
}

#[tokio::test(start_paused = true)]
async fn a_slot_is_free_during_a_retry_backoff_and_after_a_cancel() {
    let h = Setup::new(&[("main", 2)])
        .gates(key_gates(&[("k", 1)]))
        .spawn()
        .await;
    let flaky = h.enqueue(keyed("main", "acme", "k", Arc::new(Flaky { failures: 1 })));
    let next = h.enqueue(keyed("main", "acme", "k", ok()));
    assert_eq!(h.sink.terminal(next).await.state(), Succeeded);
    assert_eq!(h.sink.terminal(flaky).await.state(), Succeeded);
    let order = |id, state, attempt| {
        h.sink
            .events()
            .iter()
            .position(|e| matches!(e, Event::Transition(s) if s.transition.task_id == id && s.state() == state && s.attempt() == attempt))
            .unwrap()
    };
    assert!(
        order(next, Running, 1) < order(flaky, Running, 2),
        "the other task used the slot while the first backed off"
    );
    // A waiting task that is cancelled does not hold the line.
    let gate = Gated::new();
    let holder = h.enqueue(keyed("main", "acme", "k", gate.clone()));
    h.sink.reached(holder, Running, 1).await;
    let cancelled = h.enqueue(keyed("main", "acme", "k", ok()));
    let after = h.enqueue(keyed("main", "acme", "k", ok()));
    h.settle().await;
    h.cancel(cancelled, "changed my mind");
    assert_eq!(h.sink.terminal(cancelled).await.state(), TaskState::Cancelled);
    gate.open(1);
    assert_eq!(h.sink.terminal(after).await.state(), Succeeded);
}

/// Rate-limited (asking for `wait`) on its first `times` attempts, then succeeds.
struct Limited {
    times: u32,
    wait: Duration,
    calls: AtomicU32,
}

#[async_trait]
impl Executor for Limited {
    async fn execute(&self, ctx: ExecContext, _params: Value) -> Result<Value, ExecError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.times {
            return Err(ExecError::RateLimited {
                message: "answered 429".into(),
                retry_after: self.wait,
            });
        }
        Ok(json!({ "attempt": ctx.attempt }))
    }
}

fn limited(times: u32, wait: Duration) -> Arc<Limited> {
    Arc::new(Limited {
        times,
        wait,
        calls: AtomicU32::new(0),
    })
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_attempt_is_not_counted_and_holds_its_type() {
    let h = Setup::new(&[("main", 2)]).spawn().await;
    let exec = limited(1, Duration::from_secs(10));
    let mut first = task("main", "acme", exec.clone());
    first.retry.max_attempts = 1;
    let first = h.enqueue(first);
    let queued = h.sink.reached(first, Queued, 0).await;
    assert_contains(queued.message(), "answered 429; type test.task held for 10000 ms");
    // Same type during the hold: waits. Another type: runs.
    let same = h.enqueue(task("main", "beta", ok()));
    let mut other = task("main", "beta", ok());
    other.task_type = "test.other".into();
    let other = h.enqueue(other);
    let other_done = h.sink.terminal(other).await;
    assert!(other_done.at < queued.at + Duration::from_secs(10));
    let done = h.sink.terminal(first).await;
    assert_eq!(
        done.state(),
        Succeeded,
        "one attempt allowed, and it was not used up"
    );
    assert_eq!(
        h.sink.states(first),
        [(Running, 1), (Queued, 0), (Running, 1), (Succeeded, 1)]
    );
    let again = h.sink.transitions(first)[2].clone();
    let same_started = h.sink.reached(same, Running, 1).await;
    assert!(
        again.at - queued.at >= Duration::from_secs(10),
        "{:?}",
        again.at - queued.at
    );
    assert!(
        same_started.at - queued.at >= Duration::from_secs(10),
        "the type was held"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_always_rate_limited_fails_after_max_requeues() {
    let mut config = DispatchConfig::default();
    config.upstream.max_requeues = 2;
    config.upstream.max_hold_ms = 5_000;
    let h = Setup::new(&[("main", 1)])
        .gates(Gates {
            dispatch: Arc::new(Dispatch::new(&config)),
            pauses: PauseSet::default(),
        })
        .spawn()
        .await;
    let exec = limited(u32::MAX, Duration::from_secs(86_400));
    let id = h.enqueue(task("main", "acme", exec.clone()));
    let failed = h.sink.terminal(id).await;
    assert_eq!(failed.state(), Failed);
    assert_contains(
        failed.message(),
        "rate-limited 3 times; upstream.max_requeues = 2",
    );
    assert_eq!(
        h.sink.states(id),
        [
            (Running, 1),
            (Queued, 0),
            (Running, 1),
            (Queued, 0),
            (Running, 1),
            (Failed, 1)
        ]
    );
    let holds: Vec<_> = h
        .sink
        .transitions(id)
        .into_iter()
        .filter(|s| s.state() == Queued)
        .collect();
    assert_contains(holds[0].message(), "held for 5000 ms");
    assert_eq!(exec.calls.load(Ordering::SeqCst), 3);
}
