//! The worker's attempts (`cadre_agents::worker::run_attempt`) on the built-in executors:
//! outcomes, timeouts, cooperative and forced cancel, the fortress check. They live here, not
//! in `cadre-agents`, because they need executors and the runtime knows none.

use std::sync::Arc;
use std::time::Duration;

use cadre_agents::NoReport;
use cadre_agents::worker::{Assignment, Outcome, run_attempt};
use cadre_proto::TaskId;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A fortress task runs only where the executor sandboxes its params, whatever intake saw.
#[tokio::test]
async fn fortress_attempts_run_only_in_a_sandbox() {
    let mut a = assignment("echo", serde_json::json!({"x": 1}), 1_000);
    a.fortress = true;
    match run_attempt(a).await {
        Outcome::Failed { message, retryable } => {
            assert!(!retryable);
            assert!(
                message.starts_with("fortress: tasks run only in the exec sandbox"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let ok = assignment("echo", serde_json::json!({"x": 1}), 1_000);
    assert!(matches!(run_attempt(ok).await, Outcome::Succeeded(_)));
}

fn assignment(executor: &str, params: Value, timeout_ms: u64) -> Assignment {
    Assignment {
        task_id: TaskId::new(),
        task_type: "system.debug.x".into(),
        tenant: "t".into(),
        fortress: false,
        params,
        attempt: 1,
        timeout: Duration::from_millis(timeout_ms),
        executor: cadre_executors::builtin().get(executor).unwrap(),
        cancel: CancellationToken::new(),
        delegate: None,
        cancel_grace: Duration::from_millis(50),
        progress: Arc::new(NoReport),
    }
}

#[tokio::test]
async fn outcomes() {
    let ok = run_attempt(assignment("echo", json!({"x": 1}), 1000)).await;
    assert_eq!(ok, Outcome::Succeeded(json!({"x": 1})));
    let failed = run_attempt(assignment("fail", json!({"retryable": false}), 1000)).await;
    assert!(
        matches!(failed, Outcome::Failed { retryable: false, .. }),
        "{failed:?}"
    );
    let timed_out = run_attempt(assignment("sleep", json!({"ms": 5000}), 50)).await;
    assert_eq!(timed_out, Outcome::TimedOut);
}

#[tokio::test]
async fn cancel_is_cooperative_then_forced() {
    let a = assignment("sleep", json!({"ms": 5000}), 10_000);
    a.cancel.cancel();
    assert_eq!(run_attempt(a).await, Outcome::Cancelled { forced: false });

    let mut a = assignment("sleep", json!({"ms": 5000, "ignore_cancel": true}), 10_000);
    a.cancel_grace = Duration::from_millis(20);
    a.cancel.cancel();
    assert_eq!(run_attempt(a).await, Outcome::Cancelled { forced: true });
}
