//! PostgreSQL faults under an embedded node whose store is PostgreSQL: the test database's
//! backends terminated (`pg_terminate_backend`) while tasks flow, on the shared server; and a
//! private PostgreSQL (never the shared one, which other tests use) crashed and restarted
//! mid-load.

use std::time::Duration;

use sqlx::Connection;

use super::invariants::{Store, check};
use super::{PER_ROUND, all_succeeded, mixed, patience, report, rounds};
use crate::common::load::Load;
use crate::common::private::PrivatePg;
use crate::common::*;

/// The `[store]` section for a PostgreSQL URL.
fn store_toml(url: &str) -> String {
    format!("[store]\nurl = {url:?}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_terminated_while_tasks_flow() {
    let db = TestDb::create().await;
    let node = TestNode::start(&store_toml(db.url())).await;
    let load = Load::start(&node.tasks().await, 4, "pgkill", mixed());
    let mut terminated = 0;
    for round in 1..=2 * rounds() {
        load.wait_accepted(round * PER_ROUND, patience()).await;
        let mut admin = pg::admin().await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(db.name())
        .fetch_all(&mut admin)
        .await
        .unwrap();
        let _ = admin.close().await;
        terminated += killed.iter().filter(|k| **k).count();
    }
    load.wait_accepted((2 * rounds() + 1) * PER_ROUND, patience())
        .await;
    let outcome = load.stop().await;
    assert!(terminated > 0, "the node's connections were there to terminate");
    let store = Store::Postgres(db.url().to_string());
    let checked = check(&store, &node.dir.join("data"), &outcome, patience()).await;
    all_succeeded(&checked);
    let faults = format!(
        "{} rounds of pg_terminate_backend, {terminated} backends",
        2 * rounds()
    );
    report("postgres backends terminated", &faults, &outcome, &checked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_postgres_crashed_and_restarted_mid_load() {
    let pg = PrivatePg::start();
    let node = TestNode::start(&store_toml(&pg.url())).await;
    let load = Load::start(&node.tasks().await, 4, "pgrestart", mixed());
    let mut accepted = 0;
    for _ in 0..rounds() {
        accepted += PER_ROUND;
        load.wait_accepted(accepted, patience()).await;
        pg.crash();
        // Submits are refused while the store is away (not accepted and lost)...
        load.wait_refused(8, Duration::from_secs(30)).await;
        pg.up();
        // ...and flow again once it is back.
        accepted = load.accepted() + PER_ROUND;
        load.wait_accepted(accepted, patience()).await;
    }
    let outcome = load.stop().await;
    let store = Store::Postgres(pg.url());
    // Every task, those whose submit the crash cut included, finishes without a restart of
    // the node (`check` waits for every stored task to reach a terminal state).
    let checked = check(&store, &node.dir.join("data"), &outcome, patience()).await;
    all_succeeded(&checked);
    report(
        "postgres restart",
        &format!("{} PostgreSQL crash and restart", rounds()),
        &outcome,
        &checked,
    );
}

/// A client that gives up on a submit (its deadline passes while the store is slow) cancels its
/// call; the node must still dispatch the task if the insert commits after that, or the task
/// stays QUEUED until a restart (the client's retry with the same key is answered from the
/// store, `created = false`, and dispatched nothing). The slow store here: the test holds an
/// EXCLUSIVE lock on `tasks` (reads pass, writes wait) for longer than the client waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_its_client_gave_up_on_still_runs_once_committed() {
    use cadre_proto::v1;
    let db = TestDb::create().await;
    let node = TestNode::start(&store_toml(db.url())).await;
    let mut c = node.tasks().await;
    let mut s = spec("system.debug.echo", "{}");
    s.idempotency_key = "given-up".into();
    let req = v1::SubmitRequest { spec: Some(s) };

    let mut admin = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE tasks IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(1500), c.submit(req.clone())).await;
    assert!(gave_up.is_err(), "the insert waits for the lock: {gave_up:?}");
    // The client is gone; the lock goes, and the insert it left behind commits.
    tx.commit().await.unwrap();
    let _ = admin.close().await;

    let retried = eventually("the retry is answered", patience(), || {
        let (mut c, req) = (c.clone(), req.clone());
        async move { c.submit(req).await.ok() }
    })
    .await
    .into_inner();
    assert!(
        !retried.created,
        "the insert the client gave up on committed: {retried:?}"
    );
    let id = retried.task.as_ref().map(|t| t.id.clone()).unwrap_or_default();
    eventually("the task the client gave up on runs", patience(), || {
        let (mut c, id) = (c.clone(), id.clone());
        async move { (state(&get(&mut c, &id).await) == v1::TaskState::Succeeded).then_some(()) }
    })
    .await;
}
