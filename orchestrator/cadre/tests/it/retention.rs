//! Retention (`[retention]`, docs/RETENTION.md) through the real binary on SQLite and
//! PostgreSQL: finished tasks past their state's time to live go with their events and usage
//! rows (Get answers NOT_FOUND), younger ones, states without a time to live and unfinished
//! tasks stay; `cadre tasks export` prints exactly what then goes (and with `--within`, what
//! goes soon); intake keeps answering while a large backlog is swept; two tier-0 replicas on
//! one PostgreSQL database sweep together without deleting anything twice or failing; the
//! audit chain still verifies after the sweeper pruned its start.
//!
//! Times to live are at least a day, so the tests age finished tasks in the database (their
//! finish time, `updated_at_ms`) instead of waiting; the policy is switched on with a config
//! reload once the tasks are aged, so `cadre tasks export` can read what the sweep will
//! delete before it runs.

use std::collections::BTreeSet;
use std::time::Duration;

use cadre_proto::v1;

use crate::common::*;

/// A day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// The policy the tests switch on: succeeded tasks a day, failed ones two; cancelled and
/// timed-out tasks kept for ever.
const POLICY: &str = "succeeded_secs = 86400\nfailed_secs = 172800\n";

/// A second connection to a node's database, for what no API does: ageing finished tasks and
/// counting rows the API no longer shows.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Db {
    async fn open(node: &TestNode, url: Option<&str>) -> Db {
        match url {
            Some(u) => Db::Pg(sqlx::PgPool::connect(u).await.unwrap()),
            None => Db::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite:{}", node.db_path().display()))
                    .await
                    .unwrap(),
            ),
        }
    }

    async fn execute(&self, sql: String) -> u64 {
        let q = sqlx::AssertSqlSafe(sql);
        match self {
            Db::Sqlite(p) => sqlx::query(q).execute(p).await.unwrap().rows_affected(),
            Db::Pg(p) => sqlx::query(q).execute(p).await.unwrap().rows_affected(),
        }
    }

    async fn count(&self, sql: String) -> i64 {
        let q = sqlx::AssertSqlSafe(sql);
        match self {
            Db::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await.unwrap(),
            Db::Pg(p) => sqlx::query_scalar(q).fetch_one(p).await.unwrap(),
        }
    }

    /// Moves the last update (for a finished task: its finish) of `ids` `ms` into the past.
    async fn age(&self, ids: &[String], ms: i64) {
        let sql = format!(
            "UPDATE tasks SET updated_at_ms = updated_at_ms - {ms} WHERE id IN ({})",
            quoted(ids)
        );
        assert_eq!(self.execute(sql).await, ids.len() as u64);
    }

    /// Rows of `table` whose `column` is one of `ids`.
    async fn rows_of(&self, table: &str, column: &str, ids: &[String]) -> i64 {
        self.count(format!(
            "SELECT COUNT(*) FROM {table} WHERE {column} IN ({})",
            quoted(ids)
        ))
        .await
    }
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A node's config: the store (`url`, else SQLite), and a `[retention]` section last (so
/// [`switch_on`] can add keys to it) sweeping every second with batches of `batch`.
fn toml(url: Option<&str>, batch: u32) -> String {
    let store = url.map(|u| format!("[store]\nurl = {u:?}\n")).unwrap_or_default();
    format!("{store}[retention]\ninterval_secs = 1\nbatch_size = {batch}\n")
}

/// Adds `lines` to the node's `[retention]` section in its config file (a reload applies it).
fn add_to_config(node: &TestNode, lines: &str) {
    let path = node.config_path();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(lines);
    std::fs::write(&path, text).unwrap();
}

/// Reloads the node's config; retention applies without a restart.
async fn reload(node: &TestNode) {
    let changes = node
        .admin()
        .await
        .reload_config(v1::ReloadConfigRequest {})
        .await
        .expect("reload")
        .into_inner()
        .changes;
    assert!(!changes.iter().any(|c| c.starts_with("retention")), "{changes:?}");
}

/// Adds `lines` to the config and reloads: the sweeper uses them from its next sweep.
async fn switch_on(node: &TestNode, lines: &str) {
    add_to_config(node, lines);
    reload(node).await;
}

/// An echo task that reports usage.
fn with_usage() -> v1::TaskSpec {
    spec(
        "system.debug.echo",
        r#"{"usage": {"model": "m", "tokens_in": 3, "tokens_out": 4}}"#,
    )
}

/// A task that fails at once.
fn failing() -> v1::TaskSpec {
    spec("system.debug.fail", r#"{"retryable": false}"#)
}

/// Runs `cadre tasks export --config <node's config> <args>`: the task ids of its lines, in
/// order, and the lines.
fn export(node: &TestNode, args: &[&str]) -> (Vec<String>, Vec<serde_json::Value>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["tasks", "export", "--config"])
        .arg(node.config_path())
        .args(args)
        .env_remove("CADRE_DATA_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    lines_of(&text)
}

fn lines_of(text: &str) -> (Vec<String>, Vec<serde_json::Value>) {
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let ids = lines
        .iter()
        .map(|l| l["task"]["id"].as_str().unwrap().to_string())
        .collect();
    (ids, lines)
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Whether Get answers NOT_FOUND for `id`.
async fn gone(c: &mut Tasks, id: &str) -> bool {
    match c.get(v1::GetRequest { id: id.into() }).await {
        Err(s) if s.code() == tonic::Code::NotFound => true,
        Ok(_) => false,
        Err(s) => panic!("get {id}: {s}"),
    }
}

/// `cadre_retention_deleted_total` of `kind` on `node`.
async fn deleted(node: &TestNode, kind: &str) -> f64 {
    let series = format!("cadre_retention_deleted_total{{kind=\"{kind}\"}}");
    node.metric(&series)
        .await
        .unwrap_or_else(|| panic!("{series} exported"))
}

/// The tasks of one sweep test, by what should become of them.
struct Cast {
    /// Succeeded two days ago, with usage: expired.
    old: Vec<String>,
    /// Failed three days ago: expired.
    failed_old: String,
    /// Succeeded now, failed a day and a half ago, cancelled ten days ago (no time to live),
    /// running and last updated ten days ago: kept.
    young: String,
    failed_mid: String,
    cancelled: String,
    running: String,
    /// Succeeded after the others were aged (it may hold the newest event).
    fresh: String,
}

impl Cast {
    async fn make(c: &mut Tasks, db: &Db) -> Cast {
        let mut old = Vec::new();
        for _ in 0..3 {
            old.push(run(c, with_usage()).await.id);
        }
        let young = run(c, with_usage()).await.id;
        let failed_old = run(c, failing()).await.id;
        let failed_mid = run(c, failing()).await.id;
        let cancelled = submit(c, spec("system.debug.sleep", r#"{"ms": 60000}"#)).await.id;
        c.cancel(v1::CancelRequest {
            id: cancelled.clone(),
            reason: "not needed".into(),
        })
        .await
        .unwrap();
        let running = submit(c, spec("system.debug.sleep", r#"{"ms": 60000}"#)).await.id;
        eventually("the sleeper runs", Duration::from_secs(30), || {
            let mut c = c.clone();
            let id = running.clone();
            async move { (state(&get(&mut c, &id).await) == v1::TaskState::Running).then_some(()) }
        })
        .await;
        db.age(&old, 2 * DAY_MS).await;
        db.age(std::slice::from_ref(&failed_old), 3 * DAY_MS).await;
        db.age(std::slice::from_ref(&failed_mid), 3 * DAY_MS / 2).await;
        db.age(&[cancelled.clone(), running.clone()], 10 * DAY_MS).await;
        // The newest event belongs to a fresh task (the store keeps the holder of the newest
        // event, so cursors never go back).
        let fresh = run(c, spec("system.debug.echo", "{}")).await.id;
        Cast {
            old,
            failed_old,
            young,
            failed_mid,
            cancelled,
            running,
            fresh,
        }
    }

    fn expired(&self) -> Vec<String> {
        let mut e = self.old.clone();
        e.push(self.failed_old.clone());
        e
    }

    fn kept(&self) -> Vec<String> {
        vec![
            self.young.clone(),
            self.failed_mid.clone(),
            self.cancelled.clone(),
            self.running.clone(),
        ]
    }
}

/// Exports what will go (now, within a day, within two days) and checks the lines.
fn exports_what_will_go(node: &TestNode, cast: &Cast) {
    let (now, lines) = export(node, &[]);
    assert_eq!(
        now.iter().collect::<BTreeSet<_>>(),
        cast.expired().iter().collect(),
        "expired now: the three old successes and the old failure"
    );
    for line in &lines {
        let events = line["events"].as_array().unwrap();
        assert!(events.len() >= 3, "{line}");
        assert!(events.iter().all(|e| e["task_id"] == line["task"]["id"]));
    }
    let old_line = lines
        .iter()
        .find(|l| l["task"]["id"] == cast.old[0].as_str())
        .unwrap();
    assert_eq!(old_line["usage"][0]["tokens_in"], 3, "{old_line}");
    assert_eq!(old_line["task"]["state"], "SUCCEEDED");

    let (failed, _) = export(node, &["--within", "1d", "--state", "failed"]);
    assert_eq!(
        set(&failed.iter().collect::<Vec<_>>()),
        set(&[&cast.failed_old, &cast.failed_mid])
    );
    let file = node.dir.join("soon.jsonl");
    let (none, _) = export(node, &["--within", "2d", "--out", file.to_str().unwrap()]);
    assert!(none.is_empty(), "--out writes nothing to stdout");
    let (soon, _) = lines_of(&std::fs::read_to_string(&file).unwrap());
    let mut soon: BTreeSet<String> = soon.into_iter().collect();
    // The fresh task is listed unless it holds the newest event (kept for the cursors).
    soon.remove(&cast.fresh);
    let mut want = cast.expired();
    want.extend([cast.young.clone(), cast.failed_mid.clone()]);
    assert_eq!(soon, want.into_iter().collect());
}

/// Expired finished tasks go with their events and usage; the export named exactly them;
/// the rest stays.
async fn expired_tasks_go(url: Option<&str>) {
    // At info, for the sweep's log line.
    let env = [("RUST_LOG", Some("info".to_string()))];
    let node = TestNode::start_with_env(&toml(url, 2), &env).await;
    let db = Db::open(&node, url).await;
    let mut c = node.tasks().await;
    for kind in ["tasks", "events", "usage", "audit"] {
        assert_eq!(deleted(&node, kind).await, 0.0, "{kind} exported at 0");
    }
    let cast = Cast::make(&mut c, &db).await;
    let expired = cast.expired();
    assert_eq!(db.rows_of("usage", "task_id", &cast.old).await, 3);

    // Written to the file, not yet in force: the export reads the file.
    add_to_config(&node, POLICY);
    exports_what_will_go(&node, &cast);
    reload(&node).await;

    eventually("the expired tasks are deleted", Duration::from_secs(30), || {
        let (mut c, expired) = (c.clone(), expired.clone());
        async move {
            for id in &expired {
                if !gone(&mut c, id).await {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert_eq!(db.rows_of("events", "task_id", &expired).await, 0);
    assert_eq!(db.rows_of("usage", "task_id", &expired).await, 0);
    for id in cast.kept() {
        assert!(!gone(&mut c, &id).await, "{id} kept");
        assert!(db.rows_of("events", "task_id", std::slice::from_ref(&id)).await > 0);
    }
    assert_eq!(
        db.rows_of("usage", "task_id", std::slice::from_ref(&cast.young))
            .await,
        1
    );
    assert_eq!(deleted(&node, "tasks").await, 4.0);
    assert_eq!(deleted(&node, "usage").await, 3.0);
    assert!(deleted(&node, "events").await >= 12.0);
    assert!(read_log(&node.dir).contains("retention: deleted"));
    // Nothing left to export; intake goes on.
    assert!(export(&node, &[]).0.is_empty());
    run(&mut c, spec("system.debug.echo", "{}")).await;
    c.cancel(v1::CancelRequest {
        id: cast.running.clone(),
        reason: String::new(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tasks_go_with_their_events_and_usage_on_sqlite() {
    expired_tasks_go(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tasks_go_with_their_events_and_usage_on_postgres() {
    let db = TestDb::create().await;
    expired_tasks_go(Some(db.url())).await;
}

/// Runs `n` echo tasks, `width` at a time; their ids.
async fn run_many(c: &Tasks, n: usize, width: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(width) {
        let runs = chunk.iter().map(|_| {
            let mut c = c.clone();
            async move { run(&mut c, spec("system.debug.echo", "{}")).await.id }
        });
        ids.extend(futures::future::join_all(runs).await);
    }
    ids
}

/// Submits on each node in turn until `done` says the sweep finished; every submit must
/// succeed. Returns how many were answered while the sweep was under way (some, none
/// deleted yet, but not all).
async fn submit_while_sweeping(nodes: &[&TestNode], total: f64) -> usize {
    let mut during = 0;
    let mut clients = Vec::new();
    for n in nodes {
        clients.push(n.tasks().await);
    }
    for i in 0.. {
        let before = sum_deleted(nodes).await;
        if before >= total {
            break;
        }
        let c = &mut clients[i % nodes.len()];
        let t = run(c, spec("system.debug.echo", "{}")).await;
        assert_eq!(state(&t), v1::TaskState::Succeeded);
        let after = sum_deleted(nodes).await;
        if before > 0.0 && after < total {
            during += 1;
        }
        assert!(i < 100_000, "the sweep never finished");
    }
    during
}

async fn sum_deleted(nodes: &[&TestNode]) -> f64 {
    let mut sum = 0.0;
    for n in nodes {
        sum += deleted(n, "tasks").await;
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_keeps_answering_while_a_large_backlog_is_swept() {
    const N: usize = 600;
    let node = TestNode::start(&toml(None, 5)).await;
    let db = Db::open(&node, None).await;
    let c = node.tasks().await;
    let old = run_many(&c, N, 32).await;
    db.age(&old, 2 * DAY_MS).await;
    run_many(&c, 1, 1).await;
    switch_on(&node, POLICY).await;
    let during = submit_while_sweeping(&[&node], N as f64).await;
    assert!(during > 0, "no submit was answered while the sweep ran");
    assert_eq!(db.rows_of("tasks", "id", &old).await, 0);
    assert_eq!(db.rows_of("events", "task_id", &old).await, 0);
    assert_eq!(deleted(&node, "tasks").await, N as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_sweep_together() {
    const EACH: usize = 150;
    let pg = TestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| -> std::path::PathBuf {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let toml = toml(Some(pg.url()), 5);
    let a = TestNode::start_in(&dir("a"), &toml).await;
    let b = TestNode::start_in(&dir("b"), &toml).await;
    let db = Db::open(&a, Some(pg.url())).await;
    let (ca, cb) = (a.tasks().await, b.tasks().await);
    let mut old = run_many(&ca, EACH, 16).await;
    old.extend(run_many(&cb, EACH, 16).await);
    let young: Vec<String> = run_many(&ca, 5, 5)
        .await
        .into_iter()
        .chain(run_many(&cb, 5, 5).await)
        .collect();
    db.age(&old, 2 * DAY_MS).await;
    run_many(&cb, 1, 1).await;
    add_to_config(&a, POLICY);
    add_to_config(&b, POLICY);
    futures::join!(reload(&a), reload(&b));
    let during = submit_while_sweeping(&[&a, &b], (2 * EACH) as f64).await;
    assert!(during > 0, "no submit was answered while the sweep ran");
    // Each task deleted once: the replicas' counts add up to exactly the expired tasks.
    assert_eq!(sum_deleted(&[&a, &b]).await, (2 * EACH) as f64);
    assert_eq!(db.rows_of("tasks", "id", &old).await, 0);
    assert_eq!(db.rows_of("events", "task_id", &old).await, 0);
    assert_eq!(db.rows_of("tasks", "id", &young).await, young.len() as i64);
    for n in [&a, &b] {
        let log = read_log(&n.dir);
        for bad in ["retention: cannot", "store write failed", "ERROR"] {
            assert!(!log.contains(bad), "{bad} in the log:\n{log}");
        }
    }
}

/// The sweeper prunes audit records older than `audit_secs`; `cadre audit verify` still passes
/// (from the checkpoint), and a task's record of submission goes with its age.
async fn audit_still_verifies(url: Option<&str>) {
    let node = TestNode::start(&format!("{}audit_secs = 1\n", toml(url, 3))).await;
    let mut c = node.tasks().await;
    for _ in 0..10 {
        run(&mut c, spec("system.debug.echo", "{}")).await;
    }
    eventually("audit records pruned", Duration::from_secs(30), || async {
        (deleted(&node, "audit").await >= 5.0).then_some(())
    })
    .await;
    run(&mut c, spec("system.debug.echo", "{}")).await;
    let data = node.dir.join("data");
    let mut args = Vec::new();
    if let Some(u) = url {
        args.extend(["--store-url", u]);
    }
    args.push("verify");
    let out = cadre_audit(&data, &args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("checkpoint"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_after_pruning_on_sqlite() {
    audit_still_verifies(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_after_pruning_on_postgres() {
    let db = TestDb::create().await;
    audit_still_verifies(Some(db.url())).await;
}

/// `cadre config check` prints `[retention]` and refuses nonsense, naming the keys.
#[tokio::test]
async fn config_check_prints_retention_and_refuses_nonsense() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cadre.toml");
    std::fs::write(&config, "[retention]\nsucceeded_secs = 60\nbatch_size = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("retention.succeeded_secs") && err.contains("retention.batch_size"),
        "{err}"
    );
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, format!("[retention]\n{POLICY}")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["config", "check"])
        .arg(&ok)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("[retention]") && text.contains("failed_secs = 172800"),
        "{text}"
    );
}
