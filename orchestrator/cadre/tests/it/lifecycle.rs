//! Task lifecycle through the real server: retries, timeouts, cancellation, priorities.

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};
use tonic::Code;

use crate::common::*;

fn non_progress(evs: &[v1::TaskEvent]) -> Vec<TaskState> {
    evs.iter().filter(|e| !e.is_progress).map(ev_state).collect()
}

#[tokio::test]
async fn retryable_failures_retry_then_fail_with_the_reason() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let t = run(
        &mut c,
        fast_retry(spec("system.debug.fail", r#"{"message":"flaky upstream"}"#), 3),
    )
    .await;
    assert_eq!(state(&t), TaskState::Failed);
    assert_eq!(t.attempt, 3);
    assert!(
        t.error.contains("flaky upstream") && t.error.contains("attempt 3 of 3"),
        "{}",
        t.error
    );
    let evs = events(&mut c, &t.id, 0).await;
    use TaskState::*;
    assert_eq!(
        non_progress(&evs),
        [Queued, Running, Retrying, Running, Retrying, Running, Failed]
    );

    let fatal = run(
        &mut c,
        fast_retry(
            spec(
                "system.debug.fail",
                r#"{"retryable":false,"message":"bad input"}"#,
            ),
            3,
        ),
    )
    .await;
    assert_eq!(
        (state(&fatal), fatal.attempt),
        (Failed, 1),
        "non-retryable errors are not retried"
    );
    assert_eq!(fatal.error, "bad input");

    // Params that do not fit the schema are refused at intake (see types.rs)...
    let refused = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("system.debug.sleep", r#"{"seconds": 1}"#)),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // ...and params that fit it but that the executor still cannot use fail the task at once,
    // without retries.
    let bad_params = run(
        &mut c,
        fast_retry(
            spec("multimodal.vision.thumbnail", r#"{"image_base64": "aGk="}"#),
            3,
        ),
    )
    .await;
    assert_eq!((state(&bad_params), bad_params.attempt), (Failed, 1));
    assert!(
        bad_params.error.contains("invalid params"),
        "{}",
        bad_params.error
    );
}

#[tokio::test]
async fn timeouts_end_an_attempt_as_timed_out() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let s = v1::TaskSpec {
        timeout_ms: 100,
        ..spec("system.debug.sleep", r#"{"ms": 5000}"#)
    };
    let t = run(&mut c, s).await;
    assert_eq!(state(&t), TaskState::TimedOut);
    assert!(t.error.contains("timeout of 100 ms"), "{}", t.error);
    assert_eq!(
        t.attempt, 1,
        "TIMED_OUT is final by default, whatever max_attempts says"
    );
}

/// With `retry_timeouts`, a timed-out attempt is retried like a failed one, up to the policy's
/// attempts, and the task ends TIMED_OUT when the last one times out too. The node default
/// (`[retry] retry_timeouts`) does the same for tasks that ask nothing.
#[tokio::test]
async fn retry_timeouts_retries_timed_out_attempts() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let retried = |params: &str| v1::TaskSpec {
        timeout_ms: 150,
        retry: Some(v1::RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 10,
            max_backoff_ms: 10,
            retry_timeouts: true,
            ..Default::default()
        }),
        ..spec("system.debug.sleep", params)
    };
    let t = run(&mut c, retried(r#"{"ms": 5000}"#)).await;
    assert_eq!(state(&t), TaskState::TimedOut);
    assert_eq!(t.attempt, 3, "every attempt was tried");
    let history: Vec<TaskState> = events(&mut c, &t.id, 0)
        .await
        .iter()
        .filter(|e| !e.is_progress)
        .map(ev_state)
        .collect();
    use TaskState::{Queued, Retrying, Running, TimedOut};
    assert_eq!(
        history,
        [Queued, Running, Retrying, Running, Retrying, Running, TimedOut]
    );

    // The node default: every task retries its timeouts.
    let node = TestNode::start("[retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 10\nmultiplier = 1.0\nretry_timeouts = true\n").await;
    let mut c = node.tasks().await;
    let s = v1::TaskSpec {
        timeout_ms: 150,
        ..spec("system.debug.sleep", r#"{"ms": 5000}"#)
    };
    let t = run(&mut c, s).await;
    assert_eq!((state(&t), t.attempt), (TaskState::TimedOut, 2));
}

#[tokio::test]
async fn cancel_queued_running_and_stubborn_tasks() {
    let node =
        TestNode::start("[limits]\ncancel_grace_ms = 200\n[supervisors.system.pools]\nmonitor = 1\n").await;
    let mut c = node.tasks().await;
    let running = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 20000}"#)).await;
    let queued = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 20000}"#)).await;
    eventually("first task running", Duration::from_secs(10), || {
        let mut c = c.clone();
        let id = running.id.clone();
        async move { (state(&get(&mut c, &id).await) == TaskState::Running).then_some(()) }
    })
    .await;
    assert_eq!(
        state(&get(&mut c, &queued.id).await),
        TaskState::Queued,
        "pool of one: second waits"
    );

    let req = v1::CancelRequest {
        id: queued.id.clone(),
        reason: "not needed".into(),
    };
    let t = c.cancel(req).await.unwrap().into_inner();
    assert_eq!(state(&t), TaskState::Cancelled);
    assert_eq!(t.error, "not needed");

    let t = c
        .cancel(v1::CancelRequest {
            id: running.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(&t),
        TaskState::Cancelled,
        "cooperative cancel of a running task"
    );
    let again = c
        .cancel(v1::CancelRequest {
            id: running.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // An executor that ignores the token is dropped after the grace period.
    let stubborn = submit(
        &mut c,
        spec("system.debug.sleep", r#"{"ms": 20000, "ignore_cancel": true}"#),
    )
    .await;
    eventually("stubborn task running", Duration::from_secs(10), || {
        let mut c = c.clone();
        let id = stubborn.id.clone();
        async move { (state(&get(&mut c, &id).await) == TaskState::Running).then_some(()) }
    })
    .await;
    let t = c
        .cancel(v1::CancelRequest {
            id: stubborn.id.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&t), TaskState::Cancelled);
    assert!(t.error.contains("forced"), "{}", t.error);

    // The worker is free again.
    let t = run(&mut c, spec("system.debug.echo", "{}")).await;
    assert_eq!(state(&t), TaskState::Succeeded);
}

#[tokio::test]
async fn higher_priority_runs_first_and_fifo_within_a_priority() {
    let node = TestNode::start("[supervisors.system.pools]\nmonitor = 0\n").await;
    let mut c = node.tasks().await;
    let mut expected = Vec::new();
    let mut submitted = Vec::new();
    for (i, prio) in [1, 5, 1, 9, 5, 0].into_iter().enumerate() {
        let s = v1::TaskSpec {
            priority: prio,
            ..spec("system.debug.echo", &format!("{{\"i\":{i}}}"))
        };
        let t = submit(&mut c, s).await;
        submitted.push((prio, i, t.id));
    }
    let mut sorted = submitted.clone();
    sorted.sort_by_key(|(p, i, _)| (-p, *i));
    expected.extend(sorted.into_iter().map(|(_, _, id)| id));
    // Nothing runs on a pool of zero; one worker then takes them in priority order.
    eventually(
        "six queued on a pool of zero",
        Duration::from_secs(10),
        || async { (pool(&node, "system", "monitor").await.queue_depth == 6).then_some(()) },
    )
    .await;
    let scale = v1::ScaleRequest {
        supervisor: "system".into(),
        worker_kind: "monitor".into(),
        replicas: 1,
    };
    node.admin().await.scale(scale).await.unwrap();
    let req = v1::WatchRequest {
        states: vec![TaskState::Running as i32],
        ..Default::default()
    };
    let mut s = c.watch(req).await.unwrap().into_inner();
    let mut order = Vec::new();
    while order.len() < 6 {
        let e = s.message().await.unwrap().unwrap();
        if !e.is_progress {
            order.push(e.task_id);
        }
    }
    assert_eq!(order, expected);
}
