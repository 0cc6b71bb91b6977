//! Which task runs next, and pool scaling.

use cadre_proto::TaskState::{Failed, Running, Succeeded};
use cadre_proto::{Priority, TaskId, TaskState};
use cadre_supervisors::supervisor::MAX_POOL_SIZE;

use crate::support::{Event, FakeSink, Setup, assert_contains, ok, task};

/// Where (index in everything the sink saw) `id` reached `state`.
fn position(sink: &FakeSink, id: TaskId, state: TaskState) -> usize {
    sink.events()
        .iter()
        .position(|e| matches!(e, Event::Transition(s) if s.transition.task_id == id && s.state() == state))
        .unwrap_or_else(|| panic!("{id} never reached {}", state.as_str()))
}

#[tokio::test(start_paused = true)]
async fn higher_priority_runs_first_and_tenants_take_turns() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let (gate, _blocker) = h.occupy("main", 1).await;
    let mut names = Vec::new();
    for (name, tenant, priority) in [
        ("a1", "a", 5),
        ("a2", "a", 5),
        ("a3", "a", 5),
        ("b1", "b", 5),
        ("b2", "b", 5),
        ("low", "c", 1),
        ("high", "a", 9),
    ] {
        let mut t = task("main", tenant, ok());
        t.priority = Priority::new(priority).expect("valid");
        names.push((h.enqueue(t), name));
    }
    h.status().await; // all queued before the worker frees up

    gate.open(1);
    for (id, _) in &names {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    let mut order = names.clone();
    order.sort_by_key(|(id, _)| position(&h.sink, *id, Running));
    let order: Vec<&str> = order.into_iter().map(|(_, name)| name).collect();
    assert_eq!(order, ["high", "a1", "b1", "a2", "b2", "a3", "low"]);
}

#[tokio::test(start_paused = true)]
async fn scaling_up_starts_queued_work_at_once() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let (gate, mut ids) = h.occupy("main", 1).await;
    ids.extend((0..2).map(|_| h.enqueue(task("main", "acme", gate.clone()))));
    assert_eq!(h.pool("main").await.queue_depth, 2);

    let pool = h.scale("main", 3, false).await.expect("scaled");
    assert_eq!(
        (
            pool.target_size,
            pool.live_workers,
            pool.busy_workers,
            pool.queue_depth
        ),
        (3, 3, 3, 0)
    );
    for id in &ids {
        assert_eq!(
            h.sink.states(*id),
            [(Running, 1)],
            "started before the scale answered"
        );
    }
    gate.open(3);
    for id in &ids {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    assert_eq!(gate.max_running(), 3);
}

/// Shrinking a busy pool retires workers as their tasks end: nothing running is interrupted,
/// nothing queued is lost, the pool then runs one task at a time, and retiring is not a crash.
#[tokio::test(start_paused = true)]
async fn scaling_down_drains_busy_workers_without_dropping_tasks() {
    let h = Setup::new(&[("main", 3)]).spawn().await;
    let (gate, busy) = h.occupy("main", 3).await;

    let pool = h.scale("main", 1, false).await.expect("scaled");
    assert_eq!(
        (pool.target_size, pool.live_workers, pool.busy_workers),
        (1, 3, 3)
    );
    let (d, e) = (
        h.enqueue(task("main", "acme", ok())),
        h.enqueue(task("main", "acme", ok())),
    );
    assert_eq!(h.pool("main").await.queue_depth, 2);

    gate.open(3);
    for id in busy.iter().chain([&d, &e]) {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
        assert_eq!(h.sink.transitions(*id).len(), 2, "one attempt each");
    }
    assert!(
        position(&h.sink, e, Running) > position(&h.sink, d, Succeeded),
        "two tasks ran at once on a pool of one"
    );
    let pool = h.pool("main").await;
    assert_eq!(
        (
            pool.live_workers,
            pool.busy_workers,
            pool.queue_depth,
            pool.restarts
        ),
        (1, 0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_pools_are_refused_unless_created() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let unknown = h.scale("gpu", 1, false).await.expect_err("no such pool");
    assert_contains(&unknown, "no worker kind \"gpu\"");
    let too_big = h
        .scale("main", MAX_POOL_SIZE + 1, false)
        .await
        .expect_err("too big");
    assert_contains(&too_big, "at most 1024");
    let stray = h.enqueue(task("gpu", "acme", ok()));
    let failed = h.sink.terminal(stray).await;
    assert_eq!((failed.state(), failed.attempt()), (Failed, 0));
    assert_contains(failed.message(), "has no worker kind \"gpu\"");

    let gpu = h.scale("gpu", 2, true).await.expect("created");
    assert_eq!((gpu.target_size, gpu.live_workers), (2, 2));
    let id = h.enqueue(task("gpu", "acme", ok()));
    assert_eq!(h.sink.terminal(id).await.state(), Succeeded);
    assert_eq!(h.status().await.pools.len(), 2);
}

/// Growing a pool that is still draining takes its retiring workers back instead of spawning
/// new ones next to them.
#[tokio::test(start_paused = true)]
async fn scaling_back_up_keeps_draining_workers() {
    let h = Setup::new(&[("main", 2)]).spawn().await;
    let (gate, busy) = h.occupy("main", 2).await;

    let shrunk = h.scale("main", 1, false).await.expect("scaled");
    assert_eq!((shrunk.target_size, shrunk.live_workers), (1, 2));
    let grown = h.scale("main", 2, false).await.expect("scaled");
    assert_eq!((grown.target_size, grown.live_workers), (2, 2));
    gate.open(2);
    for id in &busy {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    assert_eq!(
        h.pool("main").await.live_workers,
        2,
        "no worker retired after all"
    );
}

/// Tenant weights through the actor: with both tenants backlogged behind a busy worker, a
/// weight-3 tenant starts three tasks for each of a weight-1 tenant's.
#[tokio::test(start_paused = true)]
async fn weighted_tenants_share_a_backlogged_pool() {
    let config = cadre_supervisors::DispatchConfig {
        fairness: cadre_supervisors::FairnessConfig {
            default_weight: 1,
            weights: [("heavy".to_string(), 3)].into(),
        },
        ..Default::default()
    };
    let h = Setup::new(&[("main", 1)])
        .gates(cadre_supervisors::Gates {
            dispatch: std::sync::Arc::new(cadre_supervisors::Dispatch::new(&config)),
            pauses: Default::default(),
        })
        .spawn()
        .await;
    let (gate, _blocker) = h.occupy("main", 1).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push((h.enqueue(task("main", "heavy", ok())), "heavy"));
        ids.push((h.enqueue(task("main", "light", ok())), "light"));
    }
    h.status().await;
    gate.open(1);
    for (id, _) in &ids {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    let mut order = ids.clone();
    order.sort_by_key(|(id, _)| position(&h.sink, *id, Running));
    let heavy = order[..40].iter().filter(|(_, t)| *t == "heavy").count();
    assert_eq!(heavy, 30, "3:1 while both have work");
}
