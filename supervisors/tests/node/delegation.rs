//! Sub-tasks delegated to this node, and sub-tasks its executors send to peers.

use std::time::Duration;

use cadre_proto::v1;
use cadre_proto::{SpecLimits, TaskRecord, TaskSpec, TaskState};
use cadre_supervisors::node::wire::EventMsg;
use cadre_supervisors::node::{DelegatedError, PeerError};

use crate::fake::{SUP, Setup, route, work};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn record(task_type: &str, supervisor: &str) -> TaskRecord {
    let wire = v1::TaskSpec {
        task_type: task_type.into(),
        params_json: r#"{"n": 2}"#.into(),
        ..Default::default()
    };
    let spec = TaskSpec::from_wire(Some(&wire), &SpecLimits::default()).expect("valid spec");
    TaskRecord::queued("acme", spec, supervisor, "w")
}

#[tokio::test(start_paused = true)]
async fn a_delegated_run_is_stored_first_runs_here_and_answers_its_waiter() {
    let node = Setup::new().start().await;
    let rec = record("test.node.echo", SUP);
    let id = rec.id;
    let done = node
        .runtime
        .run_delegated(
            rec,
            &route("echo"),
            1,
            Some(TRACEPARENT.into()),
            Duration::from_secs(60),
        )
        .await
        .expect("finished");
    assert_eq!(
        (done.task_id, done.state, done.attempt),
        (id, TaskState::Succeeded, 1)
    );
    assert_eq!(done.result, Some(serde_json::json!({"attempt": 1})));
    let events = node.transport.events();
    let Some(EventMsg::Insert { record }) = events.first() else {
        panic!("the insert goes first: {events:?}");
    };
    assert_eq!(record.id, id);
    let traces: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventMsg::Transition(t) => Some(t.traceparent.as_deref()),
            _ => None,
        })
        .collect();
    assert_eq!(traces, [Some(TRACEPARENT); 2], "in the caller's trace");
}

#[tokio::test(start_paused = true)]
async fn a_delegated_run_is_refused_or_given_up_as_the_runtime_says() {
    let node = Setup::new().start().await;
    let wait = Duration::from_secs(5);
    let not_here = node
        .runtime
        .run_delegated(
            record("test.node.echo", "elsewhere"),
            &route("echo"),
            1,
            None,
            wait,
        )
        .await;
    assert_eq!(
        not_here.unwrap_err(),
        DelegatedError::NotHere("supervisor elsewhere does not run on this node".into())
    );
    let missing = node
        .runtime
        .run_delegated(record("test.node.missing", SUP), &route("missing"), 1, None, wait)
        .await;
    assert_eq!(
        missing.unwrap_err(),
        DelegatedError::Unavailable("executor missing is not available here".into())
    );
    let rec = record("test.node.gated", SUP);
    let id = rec.id;
    let slow = node
        .runtime
        .run_delegated(rec, &route("gated"), 1, None, wait)
        .await;
    assert_eq!(
        slow.unwrap_err(),
        DelegatedError::DeadlineExceeded(format!("sub-task {id} did not finish in time; it goes on"))
    );
    // It goes on: it still ends, and is given up then.
    node.gated.open(1);
    assert_eq!(node.transport.terminal(id).await.0, TaskState::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn an_executor_delegates_to_a_peer_running_the_sub_tasks_supervisor() {
    let node = Setup::new().start().await;
    let answer = v1::Task {
        id: "sub".into(),
        state: TaskState::Succeeded.to_wire() as i32,
        result_json: r#"{"from": "peer"}"#.into(),
        ..Default::default()
    };
    *node.peers.answer.lock().unwrap() = Ok(answer);
    let w = work("delegating");
    node.transport.deliver(&w, 1);
    let end = node.transport.terminal(w.id).await;
    assert_eq!(end.0, TaskState::Succeeded);
    let asked = node.peers.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    let (supervisor, req) = &asked[0];
    assert_eq!(supervisor, SUP, "the supervisor test.node.echo routes to");
    assert_eq!(req.parent_id, w.id.to_string());
    assert_eq!(req.tenant, "acme", "in the parent's tenant");
    let spec = req.spec.as_ref().expect("a spec");
    assert_eq!(
        (spec.task_type.as_str(), spec.params_json.as_str()),
        ("test.node.echo", r#"{"n":1}"#)
    );
    let Some(EventMsg::Transition(t)) = node.transport.events().into_iter().last() else {
        panic!("ends with a transition");
    };
    assert_eq!(t.result, Some(serde_json::json!({"from": "peer"})));
}

#[tokio::test(start_paused = true)]
async fn no_live_peer_is_a_retryable_failure_naming_the_supervisor() {
    let node = Setup::new().start().await;
    let mut w = work("delegating");
    w.retry.max_attempts = 2;
    node.transport.deliver(&w, 1);
    let end = node.transport.terminal(w.id).await;
    assert_eq!(end.0, TaskState::Failed);
    assert!(
        end.2
            .contains("no live node runs supervisor test for test.node.echo"),
        "{}",
        end.2
    );
    let states: Vec<_> = node.transport.transitions(w.id).iter().map(|t| t.0).collect();
    assert!(states.contains(&TaskState::Retrying), "retried: {states:?}");
    *node.peers.answer.lock().unwrap() = Err(PeerError::Refused("no".into()));
    let w = work("delegating");
    node.transport.deliver(&w, 1);
    let end = node.transport.terminal(w.id).await;
    assert!(end.2.contains("delegating test.node.echo: no"), "{}", end.2);
}
