//! Supervision: one-for-one worker restarts, retries of the crashed task, escalation when the
//! restart intensity is exceeded, and the orchestrator restarting the supervisor.

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};

use crate::common::*;

#[tokio::test]
async fn a_panicking_worker_is_restarted_and_its_task_retried() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let t = run(
        &mut c,
        fast_retry(spec("system.debug.panic", r#"{"until_attempt": 3}"#), 3),
    )
    .await;
    assert_eq!(state(&t), TaskState::Succeeded, "{t:?}");
    assert_eq!(t.attempt, 3);
    let evs = events(&mut c, &t.id, 0).await;
    let retries: Vec<&v1::TaskEvent> = evs
        .iter()
        .filter(|e| ev_state(e) == TaskState::Retrying)
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(
        retries[0].message.contains("worker crashed"),
        "{}",
        retries[0].message
    );

    let always = run(&mut c, fast_retry(spec("system.debug.panic", "{}"), 2)).await;
    assert_eq!((state(&always), always.attempt), (TaskState::Failed, 2));
    assert!(always.error.contains("panics on purpose"), "{}", always.error);

    let p = pool(&node, "system", "monitor").await;
    assert_eq!(p.restarts, 4, "two crashes per task");
    assert_eq!(p.live_workers, 4, "crashed workers were replaced");
    let restarts = node
        .metric("cadre_worker_restarts_total{supervisor=\"system\",kind=\"monitor\"}")
        .await;
    assert_eq!(restarts, Some(4.0), "metrics match the tree");
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
}

#[tokio::test]
async fn exceeding_restart_intensity_escalates_and_the_supervisor_comes_back() {
    let cfg = "[supervisors.system.restart]\nmax_restarts = 2\nwithin_secs = 60\n";
    let node = TestNode::start(cfg).await;
    let mut c = node.tasks().await;
    // A queued task on another pool of the same supervisor must survive the escalation.
    let mut bystanders = Vec::new();
    for _ in 0..3 {
        bystanders.push(
            submit(&mut c, spec("system.debug.sleep", r#"{"ms": 300}"#))
                .await
                .id,
        );
    }
    // Three crashes in the window: the third exceeds 2 restarts.
    let t = run(
        &mut c,
        fast_retry(spec("system.debug.panic", r#"{"until_attempt": 4}"#), 5),
    )
    .await;
    assert_eq!(
        state(&t),
        TaskState::Succeeded,
        "recovered after the supervisor restart: {t:?}"
    );
    assert_eq!(t.attempt, 4);

    let st = eventually("system supervisor restarted", Duration::from_secs(10), || {
        let node = &node;
        async move {
            let st = node.status().await;
            st.supervisors
                .into_iter()
                .find(|s| s.name == "system" && s.restarts >= 1 && s.state == "running")
        }
    })
    .await;
    let monitor = st.pools.iter().find(|p| p.worker_kind == "monitor").unwrap();
    assert_eq!(
        monitor.live_workers, 4,
        "the restarted supervisor has its pools back"
    );
    assert_eq!(
        node.metric("cadre_supervisor_restarts_total{supervisor=\"system\"}")
            .await,
        Some(st.restarts as f64)
    );
    for id in bystanders {
        let done = c
            .submit_and_wait(v1::SubmitAndWaitRequest {
                spec: Some(spec("system.debug.echo", "{}")),
                wait_ms: 10_000,
            })
            .await;
        assert!(done.is_ok());
        let evs = events(&mut c, &id, 0).await;
        assert_eq!(
            ev_state(evs.last().unwrap()),
            TaskState::Succeeded,
            "bystander {id}: {evs:?}"
        );
    }
    // The other supervisors never noticed.
    let intel = node.status().await;
    assert!(
        intel
            .supervisors
            .iter()
            .filter(|s| s.name != "system")
            .all(|s| s.restarts == 0)
    );
}
