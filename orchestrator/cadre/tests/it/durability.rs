//! Durable intake: kill -9 in the middle of a run, restart on the same data dir, and every
//! accepted task still finishes, none of them twice.

use std::time::Duration;

use cadre_proto::v1::TaskState;
use sqlx::sqlite::SqlitePoolOptions;

use crate::chaos::invariants::{Store, check};
use crate::common::load::{Load, SpecFn};
use crate::common::*;

#[tokio::test]
async fn kill_9_mid_run_loses_no_accepted_task_and_finishes_none_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "[supervisors.system.pools]\nmonitor = 32\n";
    let mut node = TestNode::start_in(tmp.path(), cfg).await;
    let c = node.tasks().await;
    let mut handles = Vec::new();
    for w in 0..16 {
        let mut c = c.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..125 {
                let s = spec(
                    "system.debug.sleep",
                    &format!("{{\"ms\": {}}}", 30 + (w + i) % 40),
                );
                ids.push(submit(&mut c, s).await.id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.unwrap());
    }
    assert_eq!(ids.len(), 2000);
    // All 2,000 accepted; kill the node while the store shows attempts running.
    let db_url = format!("sqlite:{}?mode=ro", node.db_path().display());
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url)
        .await
        .unwrap();
    eventually("durably RUNNING tasks", Duration::from_secs(30), || {
        let db = &db;
        async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'RUNNING'")
                .fetch_one(db)
                .await
                .unwrap();
            (n > 0).then_some(())
        }
    })
    .await;
    node.kill9();
    db.close().await;

    let node = TestNode::start_in(tmp.path(), cfg).await;
    let mut c = node.tasks().await;
    node.wait_idle(Duration::from_secs(120)).await;
    let mut interrupted = 0;
    for id in &ids {
        let t = get(&mut c, id).await;
        assert_eq!(
            state(&t),
            TaskState::Succeeded,
            "accepted task {id} did not finish: {t:?}"
        );
        interrupted += usize::from(t.attempt > 1);
    }
    assert!(
        interrupted > 0,
        "some tasks were running at the kill and ran again"
    );

    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&db_url)
        .await
        .unwrap();
    let twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT task_id, COUNT(*) FROM events WHERE state = 'SUCCEEDED' GROUP BY task_id HAVING COUNT(*) > 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(twice.is_empty(), "tasks that succeeded twice: {twice:?}");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        stored as usize,
        ids.len(),
        "exactly the accepted tasks were stored"
    );
    db.close().await;
    assert!(node.stop().await.success());
}

#[tokio::test]
async fn a_second_node_on_the_same_data_dir_is_refused() {
    let node = TestNode::start("").await;
    let out = serve_command(&node.config_path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another cadre process"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_graceful_stop_requeues_running_tasks_without_spending_an_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), "").await;
    let mut c = node.tasks().await;
    let t = submit(
        &mut c,
        fast_retry(spec("system.debug.sleep", r#"{"ms": 400}"#), 1),
    )
    .await;
    eventually("task running", Duration::from_secs(10), || {
        let mut c = c.clone();
        let id = t.id.clone();
        async move { (state(&get(&mut c, &id).await) == TaskState::Running).then_some(()) }
    })
    .await;
    assert!(node.stop().await.success(), "SIGTERM exits cleanly");

    let node = TestNode::start_in(tmp.path(), "").await;
    let mut c = node.tasks().await;
    let evs = events(&mut c, &t.id, 0).await;
    let last = evs.last().unwrap();
    assert_eq!(ev_state(last), TaskState::Succeeded, "{evs:?}");
    assert_eq!(last.attempt, 1, "the interrupted attempt was given back: {evs:?}");
    assert!(
        evs.iter()
            .any(|e| e.message.contains("node shutting down") && e.attempt == 0),
        "{evs:?}"
    );
}

#[tokio::test]
async fn two_nodes_never_share_a_store_file_outside_their_data_dirs() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!(
        "[store]\nurl = \"sqlite:{}\"\n",
        shared.path().join("shared.db").display()
    );
    let first = TestNode::start(&url).await;
    let other = tempfile::tempdir().unwrap();
    let cfg = other.path().join("cadre.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\ndata_dir = {:?}\n{url}",
            other.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = serve_command(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another cadre process"),
        "{out:?}"
    );
    let mut c = first.tasks().await;
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
}

/// kill -9 while submits pour in, several times: after each restart every stored task has its
/// `task.submit` audit record (the record is committed in the task's own transaction), and
/// the chain verifies (with every other invariant of the chaos suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_submits_leaves_no_task_without_its_audit_record() {
    let mut node = TestNode::start("").await;
    let echo: SpecFn = std::sync::Arc::new(|_| spec("system.debug.echo", "{}"));
    let load = Load::start(&node.tasks().await, 8, "audit", echo);
    for round in 1..=3 {
        load.wait_accepted(200 * round, Duration::from_secs(30)).await;
        node.kill9_and_restart().await;
    }
    let outcome = load.stop().await;
    assert!(
        outcome.accepted.len() >= 600,
        "{} tasks accepted",
        outcome.accepted.len()
    );
    let store = Store::Sqlite(node.db_path());
    check(&store, &node.dir.join("data"), &outcome, Duration::from_secs(60)).await;
    assert!(node.stop().await.success());
}
