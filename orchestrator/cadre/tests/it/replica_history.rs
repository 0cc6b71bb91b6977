//! Event history with several tier-0 replicas: two `--role orchestrator` processes share one
//! PostgreSQL database and one NATS prefix (so they share the events consumer and store a
//! task's transitions in either order) and a `--role supervisor` node runs many short tasks,
//! some of which fail their first attempts. Every task's history, read back through Watch from
//! the start, is complete (QUEUED, then RUNNING and RETRYING or the end for each attempt) and in
//! the order the transitions happened, with seqs 1..n and one terminal event, the last.

use std::time::Duration;

use cadre_proto::v1;

use crate::common::cluster::wait_all_terminal;
use crate::common::replicas::{SharedStore, wait_supervisor_running};
use crate::common::*;

/// Tasks each replica takes.
const PER_REPLICA: usize = 300;
/// Concurrent submitters per replica.
const SUBMITTERS: usize = 4;

/// Task `n` of a load: an echo, or a task that fails once or twice before it succeeds.
fn task(n: usize) -> v1::TaskSpec {
    match n % 3 {
        0 => spec("system.debug.echo", r#"{"n":1}"#),
        k => {
            let params = format!("{{\"message\": \"try {n}\", \"succeed_on_attempt\": {}}}", k + 1);
            fast_retry(spec("system.debug.fail", &params), 4)
        }
    }
}

/// Submits `n` tasks through `node` from [`SUBMITTERS`] concurrent clients; returns their ids
/// with the attempt each succeeds on.
async fn submit_many(node: &TestNode, n: usize) -> Vec<(String, u32)> {
    let mut jobs = Vec::new();
    for s in 0..SUBMITTERS {
        let mut c = node.tasks().await;
        jobs.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (s..n).step_by(SUBMITTERS) {
                ids.push((submit(&mut c, task(i)).await.id, (i % 3) as u32 + 1));
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for j in jobs {
        ids.extend(j.await.unwrap());
    }
    ids
}

/// What is wrong with the history of a task that succeeds on attempt `last`, if anything: it
/// must be exactly QUEUED, then RUNNING and RETRYING for each failed attempt, then RUNNING and
/// SUCCEEDED for the last, with seqs 1..n and cursors rising.
fn history_problem(events: &[v1::TaskEvent], last: u32) -> Option<String> {
    let got: Vec<(u64, v1::TaskState, u32)> = events
        .iter()
        .filter(|e| !e.is_progress)
        .map(|e| (e.seq, ev_state(e), e.attempt))
        .collect();
    let mut want = vec![(v1::TaskState::Queued, 0)];
    for a in 1..last {
        want.extend([(v1::TaskState::Running, a), (v1::TaskState::Retrying, a)]);
    }
    want.extend([(v1::TaskState::Running, last), (v1::TaskState::Succeeded, last)]);
    let states: Vec<(v1::TaskState, u32)> = got.iter().map(|(_, s, a)| (*s, *a)).collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let cursors_rise = events.windows(2).all(|w| w[0].cursor < w[1].cursor);
    let gap_free = seqs == (1..=seqs.len() as u64).collect::<Vec<_>>();
    (states != want || !gap_free || !cursors_rise)
        .then(|| format!("got {got:?} (seqs {seqs:?}), want {want:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_task_history_is_complete_and_ordered_across_two_replicas() {
    let shared = SharedStore::new("", "").await;
    let a = shared.orchestrator("a").await;
    let b = shared.orchestrator("b").await;
    let sup = shared.supervisor("system").await;
    wait_supervisor_running(&[&a, &b]).await;

    let (from_a, from_b) = tokio::join!(submit_many(&a, PER_REPLICA), submit_many(&b, PER_REPLICA));
    let all: Vec<(String, u32)> = from_a.into_iter().chain(from_b).collect();
    let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    let mut c = a.tasks().await;
    let done = wait_all_terminal(&mut c, &ids, Duration::from_secs(180)).await;
    for (id, last) in &all {
        let t = &done[id];
        assert_eq!(state(t), v1::TaskState::Succeeded, "{t:?}");
        assert_eq!(t.attempt, *last, "{t:?}");
    }

    // Each history, read through either replica from the start.
    let mut cb = b.tasks().await;
    let mut bad = Vec::new();
    for (i, (id, last)) in all.iter().enumerate() {
        let via = if i % 2 == 0 { &mut c } else { &mut cb };
        let events = events(via, id, 0).await;
        if let Some(problem) = history_problem(&events, *last) {
            bad.push(format!("{id}: {problem}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} histories wrong, first: {}",
        bad.len(),
        all.len(),
        bad[0]
    );

    assert!(sup.stop().await.success());
    assert!(a.stop().await.success());
    assert!(b.stop().await.success());
    shared.cleanup().await;
}
