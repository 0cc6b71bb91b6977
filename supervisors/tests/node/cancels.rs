//! Cancels, heartbeats and the release of what is held at shutdown.

use std::time::Duration;

use cadre_proto::TaskState;

use crate::fake::{Answer, Setup, held, settle, work};

#[tokio::test(start_paused = true)]
async fn a_cancel_stops_a_held_task() {
    let node = Setup::new().start().await;
    let w = work("gated");
    let acker = node.transport.deliver(&w, 1);
    node.transport.reached(w.id, TaskState::Running).await;
    node.transport.cancel(w.id, "stop it");
    let end = node.transport.terminal(w.id).await;
    assert_eq!(end, (TaskState::Cancelled, 1, "stop it".to_string()));
    acker.wait(Answer::Ack).await;
    assert!(held(&node).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cancel_for_a_task_not_held_is_remembered_so_it_never_starts() {
    let node = Setup::new().start().await;
    let w = work("echo");
    node.transport.cancel(w.id, "cancelled before it came");
    settle().await;
    let acker = node.transport.deliver(&w, 1);
    acker.wait(Answer::Ack).await;
    settle().await;
    assert_eq!(node.echo.runs(), 0);
    assert!(
        node.transport.transitions(w.id).is_empty(),
        "tier 0 recorded the cancel already"
    );
    assert!(held(&node).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_reach_held_messages_until_they_are_acked() {
    // Every third of 3 s.
    let node = Setup::new().ack_wait(Duration::from_secs(3)).start().await;
    let w = work("gated");
    let acker = node.transport.deliver(&w, 1);
    node.transport.reached(w.id, TaskState::Running).await;
    let before = acker.count(Answer::Progress);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let beats = acker.count(Answer::Progress) - before;
    assert!((3..=4).contains(&beats), "{beats} heartbeats in 3.5 s");
    node.gated.open(1);
    acker.wait(Answer::Ack).await;
    let after = acker.count(Answer::Progress);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(acker.count(Answer::Progress), after, "none once acked");
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_of_a_running_task_keeps_it_running_and_acks_the_newest() {
    let node = Setup::new().start().await;
    let w = work("gated");
    let first = node.transport.deliver(&w, 1);
    node.transport.reached(w.id, TaskState::Running).await;
    let second = node.transport.deliver(&w, 2);
    settle().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.gated.started(), 1, "not started twice");
    node.gated.open(1);
    second.wait(Answer::Ack).await;
    assert_eq!(first.count(Answer::Ack), 0);
    let states: Vec<_> = node.transport.transitions(w.id).iter().map(|t| t.0).collect();
    assert_eq!(states, [TaskState::Running, TaskState::Succeeded]);
}

#[tokio::test(start_paused = true)]
async fn release_naks_what_is_held() {
    let node = Setup::new().start().await;
    let tasks: Vec<_> = (0..2).map(|_| work("gated")).collect();
    let ackers: Vec<_> = tasks.iter().map(|w| node.transport.deliver(w, 1)).collect();
    for w in &tasks {
        node.transport.reached(w.id, TaskState::Running).await;
    }
    assert_eq!(held(&node).await.len(), 2);
    node.runtime.drain(Duration::from_secs(5)).await;
    node.runtime.release().await;
    for a in &ackers {
        assert_eq!(a.count(Answer::Nak), 1, "{:?}", a.log());
        assert_eq!(a.count(Answer::Ack), 0);
    }
    assert!(held(&node).await.is_empty(), "another replica takes them");
}
