//! Worker crashes: one-for-one restarts, restart intensity, escalation.

use std::sync::Arc;

use cadre_proto::TaskState::{Failed, Retrying, Running, Succeeded};
use cadre_supervisors::{RestartIntensity, SupervisorMsg};
use ractor::ActorStatus;

use crate::support::{PATIENCE, Panics, Parent, Setup, assert_contains, eventually, task};

fn panics(times: u32) -> Arc<Panics> {
    Arc::new(Panics {
        panics: times,
        on_cancel: false,
    })
}

#[tokio::test(start_paused = true)]
async fn a_panicking_executor_restarts_its_worker_and_retries_the_task() {
    let h = Setup::new(&[("main", 2)]).spawn().await;
    let (gate, bystander) = h.occupy("main", 1).await;
    let bystander = bystander[0];
    let crasher = h.enqueue(task("main", "acme", panics(1)));

    let done = h.sink.terminal(crasher).await;
    assert_eq!(
        h.sink.states(crasher),
        [(Running, 1), (Retrying, 1), (Running, 2), (Succeeded, 2)]
    );
    assert_eq!(done.transition.result, Some(serde_json::json!({ "attempt": 2 })));
    let retrying = &h.sink.transitions(crasher)[1];
    assert_contains(retrying.message(), "worker crashed");

    // The pool is back to its size, the restart is counted, the other task ran on undisturbed.
    let status = h.status().await;
    let pool = &status.pools[0];
    assert_eq!((pool.target_size, pool.live_workers, pool.restarts), (2, 2, 1));
    assert_eq!(status.recent_restarts, 1);
    assert_eq!(gate.running(), 1);
    assert_eq!(h.sink.states(bystander), [(Running, 1)]);
    gate.open(1);
    assert_eq!(h.sink.terminal(bystander).await.state(), Succeeded);
    assert_eq!(h.sink.states(bystander), [(Running, 1), (Succeeded, 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_crash_on_the_last_attempt_fails_the_task() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let mut t = task("main", "acme", panics(u32::MAX));
    t.retry.max_attempts = 2;
    let id = h.enqueue(t);

    let failed = h.sink.terminal(id).await;
    assert_eq!((failed.state(), failed.attempt()), (Failed, 2));
    assert_contains(failed.message(), "worker crashed");
    assert_contains(failed.message(), "(attempt 2 of 2)");
    let pool = h.pool("main").await;
    assert_eq!((pool.live_workers, pool.restarts), (1, 2));
}

/// One restart in the window is allowed, the second escalates: the supervisor fails (its parent
/// sees `ActorFailed`), its workers die with it, and its tasks are left to recovery from the
/// store: the crashed one is RETRYING (the crash row of the policy table), the others get no
/// transition at all (a crash leaves running tasks RUNNING, queued ones QUEUED).
#[tokio::test(start_paused = true)]
async fn restarts_beyond_the_intensity_fail_the_supervisor() {
    let (parent, mut exits) = Parent::spawn().await;
    let h = Setup::new(&[("main", 1), ("side", 1)])
        .restarts(1, 60)
        .spawn_linked(Some(parent.get_cell()))
        .await;
    let (gate, running) = h.occupy("side", 1).await;
    let (running, queued) = (running[0], h.enqueue(task("side", "acme", gate.clone())));
    let mut crasher = task("main", "acme", panics(u32::MAX));
    crasher.retry.max_attempts = 5;
    let crasher = h.enqueue(crasher);

    let exit = tokio::time::timeout(PATIENCE, exits.recv())
        .await
        .expect("the parent hears of the supervisor's exit")
        .expect("parent alive");
    let why = exit.expect_err("the supervisor fails rather than stops");
    assert_contains(&why, "restart intensity exceeded (1 restarts in 60 s)");
    eventually("the supervisor to stop", || {
        h.sup.get_status() == ActorStatus::Stopped
    })
    .await;
    eventually("its workers to die with it", || gate.running() == 0).await;
    assert_eq!(
        h.sink.states(crasher),
        [(Running, 1), (Retrying, 1), (Running, 2), (Retrying, 2)]
    );
    assert_eq!(h.sink.states(running), [(Running, 1)]);
    assert!(h.sink.states(queued).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_restart_intensity_can_be_raised_at_runtime() {
    let h = Setup::new(&[("main", 1)]).restarts(0, 60).spawn().await;
    h.sup
        .cast(SupervisorMsg::SetRestartIntensity(RestartIntensity {
            max_restarts: 5,
            within_secs: 60,
        }))
        .expect("supervisor alive");
    let id = h.enqueue(task("main", "acme", panics(1)));

    assert_eq!(h.sink.terminal(id).await.state(), Succeeded);
    let status = h.status().await;
    assert_eq!((status.recent_restarts, status.max_restarts), (1, 5));
}

/// The intensity window is measured on the real clock (`std::time::Instant`), so this test
/// waits a real second and a bit between two crashes; one restart is allowed per second, so the
/// second crash escalates unless the first has left the window. A slow machine only makes the
/// gap longer, which cannot make the test fail (hence no count asserted right after a crash).
#[tokio::test(start_paused = true)]
async fn restarts_older_than_the_window_are_forgotten() {
    let h = Setup::new(&[("main", 1)]).restarts(1, 1).spawn().await;
    let mut first = task("main", "acme", panics(1));
    first.retry.max_attempts = 1;
    let first = h.enqueue(first);
    assert_eq!(h.sink.terminal(first).await.state(), Failed);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(h.status().await.recent_restarts, 0);
    let second = h.enqueue(task("main", "acme", panics(1)));
    assert_eq!(h.sink.terminal(second).await.state(), Succeeded);
    assert_eq!(
        h.pool("main").await.restarts,
        2,
        "both crashes restarted the worker"
    );
}
