//! Timeouts and cancel, wherever the task is.

use std::sync::Arc;
use std::time::Duration;

use cadre_agents::ExecError;
use cadre_proto::TaskState::{Cancelled, Retrying, Running, Succeeded, TimedOut};
use tokio::time::Instant;

use crate::support::{Hangs, Panics, Setup, UntilCancelled, assert_contains, fails, ok, task};

/// As documented today, a timeout is terminal (not retried), and the worker that ran it stays.
#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_timeout_times_out_and_keeps_its_worker() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let mut slow = task("main", "acme", Arc::new(Hangs));
    slow.timeout = Duration::from_secs(5);
    let slow = h.enqueue(slow);
    let next = h.enqueue(task("main", "acme", ok()));

    let timed_out = h.sink.terminal(slow).await;
    assert_eq!(timed_out.state(), TimedOut);
    assert_eq!(timed_out.message(), "attempt 1 exceeded its timeout of 5000 ms");
    let started = h.sink.transitions(slow)[0].at;
    assert!(timed_out.at - started >= Duration::from_secs(5));
    assert_eq!(h.sink.terminal(next).await.state(), Succeeded);
    h.settle().await;
    assert_eq!(h.sink.states(slow), [(Running, 1), (TimedOut, 1)]);
    let pool = h.pool("main").await;
    assert_eq!((pool.live_workers, pool.restarts), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_queued_task_cancels_it_without_running_it() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let (gate, blocker) = h.occupy("main", 1).await;
    let queued = h.enqueue(task("main", "acme", ok()));

    h.cancel(queued, "no longer needed");
    let cancelled = h.sink.terminal(queued).await;
    assert_eq!((cancelled.state(), cancelled.attempt()), (Cancelled, 0));
    assert_eq!(cancelled.message(), "no longer needed");
    assert_eq!(h.pool("main").await.queue_depth, 0);

    gate.open(1);
    h.sink.terminal(blocker[0]).await;
    let after = h.enqueue(task("main", "acme", ok()));
    assert_eq!(h.sink.terminal(after).await.state(), Succeeded);
    assert_eq!(h.sink.states(queued), [(Cancelled, 0)], "it never ran");
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_running_task_stops_a_cooperative_executor() {
    let h = Setup::new(&[("main", 2)]).spawn().await;
    let with_reason = h.start(task("main", "acme", Arc::new(UntilCancelled))).await;
    let without = h.start(task("main", "acme", Arc::new(UntilCancelled))).await;

    h.cancel(with_reason, "user asked");
    h.cancel(without, "");
    assert_eq!(h.sink.terminal(with_reason).await.message(), "user asked");
    assert_eq!(h.sink.terminal(without).await.message(), "cancelled by request");
    h.settle().await;
    assert_eq!(h.sink.states(with_reason), [(Running, 1), (Cancelled, 1)]);
    assert_eq!(h.sink.states(without), [(Running, 1), (Cancelled, 1)]);
    let pool = h.pool("main").await;
    assert_eq!((pool.live_workers, pool.busy_workers, pool.restarts), (2, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_executor_that_ignores_cancel_is_dropped_after_the_grace_period() {
    let grace = Duration::from_secs(3);
    let h = Setup::new(&[("main", 1)]).grace(grace).spawn().await;
    let stubborn = h.start(task("main", "acme", Arc::new(Hangs))).await;

    let asked = Instant::now();
    h.cancel(stubborn, "stop");
    let cancelled = h.sink.terminal(stubborn).await;
    assert_eq!(
        (cancelled.state(), cancelled.attempt()),
        (Cancelled, 1),
        "{cancelled:?}"
    );
    assert_eq!(cancelled.message(), "stop (forced after grace period)");
    assert!(
        cancelled.at - asked >= grace,
        "forced before the grace period ran out"
    );
    // The worker is kept: the next task runs on it.
    let next = h.enqueue(task("main", "acme", ok()));
    assert_eq!(h.sink.terminal(next).await.state(), Succeeded);
    assert_eq!(h.pool("main").await.restarts, 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_task_waiting_for_its_backoff_cancels_it() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let mut t = task("main", "acme", fails(ExecError::Retryable("later".into())));
    t.retry.initial_backoff = Duration::from_secs(10);
    t.retry.max_backoff = Duration::from_secs(10);
    let id = h.enqueue(t);
    h.sink.reached(id, Retrying, 1).await;

    h.cancel(id, "changed my mind");
    let cancelled = h.sink.terminal(id).await;
    assert_eq!((cancelled.state(), cancelled.attempt()), (Cancelled, 1));
    assert_eq!(cancelled.message(), "changed my mind");
    h.settle().await; // the backoff elapses: nothing may run
    assert_eq!(h.sink.states(id), [(Running, 1), (Retrying, 1), (Cancelled, 1)]);
}

/// A cancel asked for while the task runs must win over a crash of its worker: the client
/// asked for the task to stop, so it must not run again. Its executor here panics when
/// cancelled (and would succeed on a second attempt).
#[tokio::test(start_paused = true)]
async fn a_cancelled_task_whose_worker_crashes_is_not_run_again() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let panics = Panics {
        panics: 1,
        on_cancel: true,
    };
    let id = h.start(task("main", "acme", Arc::new(panics))).await;

    h.cancel(id, "user asked");
    let end = h.sink.terminal(id).await;
    h.settle().await;
    assert_eq!(
        (end.state(), end.attempt()),
        (Cancelled, 1),
        "a cancelled task ran again: {:?}",
        h.sink.states(id)
    );
    assert_contains(end.message(), "user asked");
    assert!(
        h.sink.states(id).iter().all(|(_, attempt)| *attempt == 1),
        "{:?}",
        h.sink.states(id)
    );
}
