//! Messages the supervisor must tolerate, its status, and a graceful stop.

use std::sync::Arc;

use cadre_agents::Outcome;
use cadre_proto::TaskId;
use cadre_proto::TaskState::{Cancelled, Queued, Running, Succeeded};
use cadre_supervisors::SupervisorMsg;
use serde_json::json;

use crate::support::{Gated, Setup, UntilCancelled, ok, task};

/// Recovery and a live dispatch may both deliver a task: the second copy is ignored, whether
/// the first is running or still queued.
#[tokio::test(start_paused = true)]
async fn duplicate_enqueues_are_ignored() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let gate = Gated::new();
    let running = task("main", "acme", gate.clone());
    let queued = task("main", "acme", gate.clone());
    let (running_id, queued_id) = (running.id, queued.id);
    h.enqueue(running.clone());
    h.enqueue(queued.clone());
    h.sink.reached(running_id, Running, 1).await;
    h.enqueue(running);
    h.enqueue(queued);
    assert_eq!(h.pool("main").await.queue_depth, 1);

    gate.open(2);
    h.sink.terminal(queued_id).await;
    h.settle().await;
    for id in [running_id, queued_id] {
        assert_eq!(h.sink.states(id), [(Running, 1), (Succeeded, 1)]);
    }
    assert_eq!(gate.max_running(), 1);
}

/// A `WorkerDone` naming a slot that is not running the task (here: the slot running another
/// task), or a task the supervisor does not hold, and a `RetryDue` for a task that is not
/// backing off change nothing.
#[tokio::test(start_paused = true)]
async fn stale_worker_reports_and_early_retry_timers_are_ignored() {
    let h = Setup::new(&[("main", 2)]).spawn().await;
    let a = h.start(task("main", "acme", Arc::new(UntilCancelled))).await;
    let b = h.start(task("main", "acme", Arc::new(UntilCancelled))).await;
    let queued = h.enqueue(task("main", "acme", ok()));
    // The RUNNING message names the slot: "on main/<slot>".
    let b_slot: u64 = h.sink.transitions(b)[0].message()["on main/".len()..]
        .parse()
        .expect("a slot number");

    let done = |worker_id, task_id| SupervisorMsg::WorkerDone {
        worker_id,
        task_id,
        outcome: Outcome::Succeeded(json!("stale")),
    };
    for msg in [
        done(b_slot, a),
        done(b_slot, TaskId::new()),
        SupervisorMsg::RetryDue(a),
        SupervisorMsg::RetryDue(queued),
    ] {
        h.sup.cast(msg).expect("supervisor alive");
    }
    let pool = h.pool("main").await;
    assert_eq!((pool.busy_workers, pool.queue_depth), (2, 1));
    assert_eq!(h.sink.states(a), [(Running, 1)]);
    assert_eq!(h.sink.states(b), [(Running, 1)]);
    assert!(h.sink.states(queued).is_empty());

    h.cancel(a, "done testing");
    h.cancel(b, "done testing");
    for id in [a, b] {
        assert_eq!(h.sink.terminal(id).await.state(), Cancelled);
    }
    assert_eq!(h.sink.terminal(queued).await.state(), Succeeded);
    h.settle().await;
    assert_eq!(h.sink.states(queued), [(Running, 1), (Succeeded, 1)], "ran once");
}

#[tokio::test(start_paused = true)]
async fn status_counts_workers_busy_and_queued_per_pool() {
    let h = Setup::new(&[("main", 2), ("side", 1)])
        .restarts(7, 60)
        .spawn()
        .await;
    let (gate, mut ids) = h.occupy("main", 2).await;
    ids.extend((0..2).map(|_| h.enqueue(task("main", "acme", gate.clone()))));

    let status = h.status().await;
    assert_eq!(status.name, "test");
    assert_eq!((status.recent_restarts, status.max_restarts), (0, 7));
    let counts: Vec<_> = status
        .pools
        .iter()
        .map(|p| {
            let n = (
                p.target_size,
                p.live_workers,
                p.busy_workers,
                p.queue_depth,
                p.restarts,
            );
            (p.worker_kind.as_str(), n)
        })
        .collect();
    assert_eq!(counts, [("main", (2, 2, 2, 2, 0)), ("side", (1, 1, 0, 0, 0))]);

    h.cancel(ids[3], "");
    assert_eq!(h.pool("main").await.queue_depth, 1);
    gate.open(3);
    for id in &ids[..3] {
        assert_eq!(h.sink.terminal(*id).await.state(), Succeeded);
    }
    let pool = h.pool("main").await;
    assert_eq!((pool.busy_workers, pool.queue_depth), (0, 0));
}

/// A graceful stop (node shutdown) interrupts running attempts without failing them: they are
/// reported QUEUED again with the attempt given back, so the next start runs the same attempt.
#[tokio::test(start_paused = true)]
async fn a_graceful_stop_requeues_running_tasks() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let running = h.start(task("main", "acme", Arc::new(UntilCancelled))).await;
    let queued = h.enqueue(task("main", "acme", ok()));

    h.sup.stop_and_wait(None, None).await.expect("stops");
    let requeued = h.sink.reached(running, Queued, 0).await;
    assert_eq!(requeued.message(), "node shutting down; re-queued");
    assert_eq!(h.sink.states(running), [(Running, 1), (Queued, 0)]);
    assert!(h.sink.states(queued).is_empty());
}
