//! Taking task messages: run, ack once durable, room, redeliveries, dead letters.

use std::time::Duration;

use cadre_proto::TaskState;
use cadre_supervisors::node::wire::EventMsg;

use crate::fake::{Answer, SUP, Setup, held, settle, work};

#[tokio::test(start_paused = true)]
async fn a_delivered_task_runs_and_is_acked_only_once_its_end_is_durable() {
    let node = Setup::new().start().await;
    node.transport.set_durable(false);
    let w = work("echo");
    let acker = node.transport.deliver(&w, 1);
    let (state, attempt, _) = node.transport.terminal(w.id).await;
    assert_eq!((state, attempt), (TaskState::Succeeded, 1));
    assert_eq!(
        node.transport.transitions(w.id).first().map(|t| t.0),
        Some(TaskState::Running)
    );
    // Published, not yet durable: the message is held and not acked, however long it takes.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(acker.count(Answer::Ack), 0, "{:?}", acker.log());
    assert!(held(&node).await.contains_key(&w.id));
    node.transport.set_durable(true);
    acker.wait(Answer::Ack).await;
    assert_eq!(acker.count(Answer::Ack), 1);
    assert!(held(&node).await.is_empty(), "given up once acked");
    assert_eq!(node.echo.runs(), 1);
    let Some(EventMsg::Transition(done)) = node.transport.events().into_iter().last() else {
        panic!("the last event is the transition");
    };
    assert_eq!(done.result, Some(serde_json::json!({"attempt": 1})));
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_holds_at_most_max_inflight_messages() {
    let node = Setup::new().max_inflight(2).start().await;
    let tasks: Vec<_> = (0..4).map(|_| work("gated")).collect();
    let ackers: Vec<_> = tasks.iter().map(|w| node.transport.deliver(w, 1)).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(node.transport.fetched(), 2, "no room for more");
    assert_eq!(node.gated.started(), 2);
    node.gated.open(1);
    ackers[0].wait(Answer::Ack).await;
    settle().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.transport.fetched(), 3, "one more once one is done");
    node.gated.open(3);
    for a in &ackers {
        a.wait(Answer::Ack).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_counts_the_lost_attempt_and_runs_again() {
    let node = Setup::new().start().await;
    let w = work("echo");
    let acker = node.transport.deliver(&w, 2);
    node.transport.terminal(w.id).await;
    let seen = node.transport.transitions(w.id);
    assert_eq!(
        seen[0],
        (
            TaskState::Retrying,
            1,
            "worker lost during attempt 1; redelivered".to_string()
        )
    );
    let states: Vec<_> = seen.iter().map(|t| (t.0, t.1)).collect();
    assert_eq!(
        states,
        [
            (TaskState::Retrying, 1),
            (TaskState::Running, 2),
            (TaskState::Succeeded, 2)
        ]
    );
    acker.wait(Answer::Ack).await;
    assert_eq!(node.echo.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_task_out_of_attempts_fails_without_running() {
    let node = Setup::new().start().await;
    let mut w = work("echo");
    w.attempt = 1;
    // Attempt 1 started before this dispatch, attempt 2 by the first delivery's replica.
    w.retry.max_attempts = 2;
    let acker = node.transport.deliver(&w, 2);
    let end = node.transport.terminal(w.id).await;
    assert_eq!(
        end,
        (TaskState::Failed, 2, "worker lost during attempt 2".to_string())
    );
    assert_eq!(node.transport.transitions(w.id).len(), 1);
    acker.wait(Answer::Ack).await;
    assert_eq!(node.echo.runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn past_max_deliver_a_message_is_dead_lettered_and_its_task_fails_without_running() {
    let node = Setup::new().start().await;
    let w = work("echo");
    let acker = node.transport.deliver(&w, 6);
    let end = node.transport.terminal(w.id).await;
    assert_eq!(
        end,
        (
            TaskState::Failed,
            5,
            "dead-lettered after 5 deliveries".to_string()
        )
    );
    acker.wait(Answer::Ack).await;
    assert_eq!(
        acker.log(),
        [Answer::Ack],
        "acked once the FAILED event is durable"
    );
    let dead = node.transport.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, SUP);
    let copy: cadre_supervisors::node::wire::WorkMsg = serde_json::from_slice(&dead[0].1).unwrap();
    assert_eq!(copy.id, w.id, "the message itself is kept");
    assert_eq!(node.echo.runs(), 0);

    // The fifth delivery still runs (with attempts left after four lost ones).
    let mut w = work("echo");
    w.retry.max_attempts = 10;
    let acker = node.transport.deliver(&w, 5);
    assert_eq!(node.transport.terminal(w.id).await.0, TaskState::Succeeded);
    acker.wait(Answer::Ack).await;
    assert_eq!(node.transport.dead().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn unrunnable_messages_are_terminated() {
    let node = Setup::new().start().await;
    // Not a task message at all: dead-lettered, never delivered again, nothing reported.
    let junk = node.transport.deliver_raw("not json".into(), 1);
    junk.wait(Answer::Term).await;
    assert_eq!(node.transport.dead()[0].1, "not json");
    // Past max_deliver with an executor this node lacks: FAILED, and terminated at once.
    let w = work("missing");
    let acker = node.transport.deliver(&w, 6);
    acker.wait(Answer::Term).await;
    let end = node.transport.terminal(w.id).await;
    assert_eq!(end.2, "dead-lettered after 5 deliveries");
    // A first delivery with an executor this node lacks: FAILED, acked.
    let w = work("missing");
    let acker = node.transport.deliver(&w, 1);
    acker.wait(Answer::Ack).await;
    let end = node.transport.terminal(w.id).await;
    assert_eq!(
        end,
        (
            TaskState::Failed,
            0,
            "executor missing is not available on this node".to_string()
        )
    );
    assert!(held(&node).await.is_empty());
}
