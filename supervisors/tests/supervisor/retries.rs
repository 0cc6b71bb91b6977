//! Retries, backoff, and failures that are not retried.

use std::sync::Arc;
use std::time::Duration;

use cadre_agents::ExecError;
use cadre_proto::TaskState::{Failed, Retrying, Running, Succeeded};
use cadre_supervisors::QueuedTask;
use serde_json::json;

use crate::support::{Event, Flaky, Reports, Setup, assert_contains, fails, task};

/// A task on pool `main` whose every attempt fails with `error`.
fn failing(error: ExecError) -> QueuedTask {
    task("main", "acme", fails(error))
}

#[tokio::test(start_paused = true)]
async fn a_retryable_error_is_retried_and_the_result_recorded() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let mut t = task("main", "acme", Arc::new(Flaky { failures: 1 }));
    t.verified = true;
    let id = h.enqueue(t);

    let done = h.sink.terminal(id).await;
    assert_eq!(
        h.sink.states(id),
        [(Running, 1), (Retrying, 1), (Running, 2), (Succeeded, 2)]
    );
    assert_eq!(done.transition.result, Some(json!({ "attempt": 2 })));
    assert!(done.transition.sign, "a verified task's result is to be signed");
    let retrying = &h.sink.transitions(id)[1];
    assert_contains(retrying.message(), "flaky on attempt 1; attempt 2 of 3 in ");
}

#[tokio::test(start_paused = true)]
async fn the_last_retryable_failure_fails_the_task() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let id = h.enqueue(failing(ExecError::Retryable("upstream busy".into())));

    let failed = h.sink.terminal(id).await;
    assert_eq!(failed.state(), Failed);
    assert_eq!(failed.message(), "upstream busy (attempt 3 of 3)");
    h.settle().await;
    assert_eq!(
        h.sink.states(id),
        [
            (Running, 1),
            (Retrying, 1),
            (Running, 2),
            (Retrying, 2),
            (Running, 3),
            (Failed, 3)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_and_invalid_params_are_not_retried() {
    let h = Setup::new(&[("main", 2)]).spawn().await;
    let fatal = h.enqueue(failing(ExecError::Fatal("disk on fire".into())));
    let invalid = h.enqueue(failing(ExecError::InvalidParams("no text".into())));

    assert_eq!(h.sink.terminal(fatal).await.message(), "disk on fire");
    assert_eq!(
        h.sink.terminal(invalid).await.message(),
        "invalid params: no text"
    );
    h.settle().await;
    assert_eq!(h.sink.states(fatal), [(Running, 1), (Failed, 1)]);
    assert_eq!(h.sink.states(invalid), [(Running, 1), (Failed, 1)]);
}

/// A task recovered from the store goes on counting from the attempts it already started.
#[tokio::test(start_paused = true)]
async fn a_recovered_task_continues_its_attempt_count() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let mut t = failing(ExecError::Retryable("still down".into()));
    t.attempts_started = 2;
    let id = h.enqueue(t);

    assert_eq!(h.sink.terminal(id).await.message(), "still down (attempt 3 of 3)");
    assert_eq!(h.sink.states(id), [(Running, 3), (Failed, 3)]);
}

/// The delay between a RETRYING and the next RUNNING is what the RETRYING message announced,
/// and lies within the policy's equal-jitter bounds [base/2, base], the base doubling per attempt
/// up to `max_backoff`. Paused time makes the measured gap exact (the timer wheel rounds up to
/// the next millisecond, hence the small slack).
#[tokio::test(start_paused = true)]
async fn backoff_stays_within_the_policy_and_doubles_up_to_the_cap() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let mut t = failing(ExecError::Retryable("nope".into()));
    t.retry.max_attempts = 6;
    t.retry.initial_backoff = Duration::from_secs(1);
    t.retry.max_backoff = Duration::from_secs(4);
    let id = h.enqueue(t);

    assert_eq!(h.sink.terminal(id).await.state(), Failed);
    let seen = h.sink.transitions(id);
    let slack = Duration::from_millis(5);
    // Bases before attempts 2..=6: 1 s, 2 s, then capped at 4 s.
    let bases = [1, 2, 4, 4, 4].map(Duration::from_secs);
    for (k, base) in bases.into_iter().enumerate() {
        let (retrying, next) = (&seen[2 * k + 1], &seen[2 * k + 2]);
        assert_eq!((retrying.state(), next.state()), (Retrying, Running), "{seen:#?}");
        let gap = next.at - retrying.at;
        let announced: u64 = retrying
            .message()
            .rsplit(" in ")
            .next()
            .and_then(|s| s.strip_suffix(" ms"))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no delay in {:?}", retrying.message()));
        let announced = Duration::from_millis(announced);
        assert!(
            announced <= gap && gap <= announced + slack,
            "retry {k}: announced {announced:?}, waited {gap:?}"
        );
        assert!(
            base / 2 <= gap && gap <= base + slack,
            "retry {k}: waited {gap:?}, policy allows {:?}..={base:?}",
            base / 2
        );
    }
}

#[tokio::test(start_paused = true)]
async fn progress_and_usage_reach_the_sink_with_their_attempt() {
    let h = Setup::new(&[("main", 1)]).spawn().await;
    let id = h.enqueue(task("main", "acme", Arc::new(Reports)));

    assert_eq!(h.sink.terminal(id).await.state(), Succeeded);
    let mut progress = Vec::new();
    let mut tokens_in = Vec::new();
    for e in h.sink.events() {
        match e {
            Event::Progress {
                task_id,
                attempt,
                fraction,
                message,
            } if task_id == id => progress.push((attempt, fraction, message)),
            Event::Usage { task_id, usage } if task_id == id => tokens_in.push(usage.tokens_in),
            _ => {}
        }
    }
    assert_eq!(
        progress,
        [(1, 0.5, "step 1".to_string()), (2, 1.0, "step 2".to_string())]
    );
    assert_eq!(
        tokens_in,
        [1, 2],
        "usage of every attempt counts, failed ones too"
    );
}
