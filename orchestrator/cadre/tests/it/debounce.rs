//! Debounce (`spec.debounce_key`, `spec.debounce_window_ms`), through the real binary on
//! SQLite and PostgreSQL: a submit within the window replaces the queued task with the same
//! tenant and key (CANCELLED, naming its replacement, audited); the survivor runs once, never
//! before its window ends, also across a restart; concurrent submits and two tier-0 replicas
//! racing on one key leave exactly one survivor; bad fields are refused naming the field.

use std::path::{Path, PathBuf};

use cadre_proto::v1;

use crate::common::cluster::{SHARED_NATS, bus_toml, cleanup_nats, new_prefix, write_shared_secret};
use crate::common::*;

/// How a replaced task's error starts.
const REPLACED_BY: &str = "debounced: replaced by ";

/// An echo task debounced on `key` for `window_ms`.
fn debounced(key: &str, window_ms: u64) -> v1::TaskSpec {
    v1::TaskSpec {
        debounce_key: key.into(),
        debounce_window_ms: window_ms,
        ..spec("system.debug.echo", r#"{"n":1}"#)
    }
}

/// The node's extra config: the default SQLite store, or `db`.
fn store_toml(db: Option<&TestDb>) -> String {
    match db {
        Some(db) => format!("[store]\nurl = {:?}\n", db.url()),
        None => String::new(),
    }
}

/// Waits for the task's terminal event; returns its events.
async fn finished(c: &mut Tasks, id: &str) -> Vec<v1::TaskEvent> {
    let evs = events(c, id, 0).await;
    assert!(
        evs.last().is_some_and(|e| ev_state(e) != v1::TaskState::Queued),
        "{evs:?}"
    );
    evs
}

/// Checks that `t` ran once (one attempt), successfully, and not before its window (from its
/// submit) ended. With several tier-0 replicas a RUNNING event may be stored after the task's
/// terminal one (and so dropped): the terminal event then stands for the start.
async fn ran_once_after_window(c: &mut Tasks, t: &v1::Task, window_ms: i64) {
    let evs = finished(c, &t.id).await;
    let running: Vec<_> = evs
        .iter()
        .filter(|e| ev_state(e) == v1::TaskState::Running)
        .collect();
    assert!(running.len() <= 1, "runs once: {evs:?}");
    let last = evs.last().unwrap();
    assert_eq!(
        (ev_state(last), last.attempt),
        (v1::TaskState::Succeeded, 1),
        "{evs:?}"
    );
    let started = running.first().copied().unwrap_or(last);
    assert!(
        started.at_ms >= t.created_at_ms + window_ms,
        "dispatched {} ms after its submit, before its {window_ms} ms window ended",
        started.at_ms - t.created_at_ms
    );
}

/// Checks that `old` ended CANCELLED naming `new`, with its CANCELLED event.
async fn replaced_by(c: &mut Tasks, old: &str, new: &str) {
    let t = get(c, old).await;
    assert_eq!(state(&t), v1::TaskState::Cancelled, "{t:?}");
    assert_eq!(t.error, format!("{REPLACED_BY}{new}"));
    let evs = finished(c, old).await;
    let states: Vec<_> = evs.iter().map(ev_state).collect();
    assert_eq!(
        states,
        [v1::TaskState::Queued, v1::TaskState::Cancelled],
        "never ran"
    );
    assert_eq!(evs[1].message, t.error);
}

async fn replacement_within_the_window(db: Option<&TestDb>) {
    let node = TestNode::start(&store_toml(db)).await;
    let mut c = node.tasks().await;
    let a = submit(&mut c, debounced("k", 1500)).await;
    let b = submit(&mut c, debounced("k", 1500)).await;
    assert_eq!(state(&b), v1::TaskState::Queued);
    // Committed with B's insert: A is already CANCELLED when B's submit returns.
    replaced_by(&mut c, &a.id, &b.id).await;

    // An idempotent resubmit returns its task and replaces nothing.
    let keyed = |idem: &str| v1::TaskSpec {
        idempotency_key: idem.into(),
        ..debounced("k", 1500)
    };
    let c1 = submit(&mut c, keyed("once")).await;
    replaced_by(&mut c, &b.id, &c1.id).await;
    let resubmit = c
        .submit(v1::SubmitRequest {
            spec: Some(keyed("once")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resubmit.created);
    assert_eq!(resubmit.task.unwrap().id, c1.id);
    assert_eq!(state(&get(&mut c, &c1.id).await), v1::TaskState::Queued);
    ran_once_after_window(&mut c, &c1, 1500).await;

    // The replacement's cancel is audited, by the submitter, with the replaced task as target.
    let mut args = vec!["export", "--task", &a.id];
    if let Some(db) = db {
        args.splice(0..0, ["--store-url", db.url()]);
    }
    let out = cadre_audit(&node.dir.join("data"), &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("task.cancel") && text.contains(&format!("{REPLACED_BY}{}", b.id)),
        "{text}"
    );
}

#[tokio::test]
async fn a_submit_within_the_window_replaces_the_queued_task_sqlite() {
    replacement_within_the_window(None).await;
}

#[tokio::test]
async fn a_submit_within_the_window_replaces_the_queued_task_postgres() {
    let db = TestDb::create().await;
    replacement_within_the_window(Some(&db)).await;
}

async fn no_replacement_after_the_window(db: Option<&TestDb>) {
    let node = TestNode::start(&store_toml(db)).await;
    let mut c = node.tasks().await;
    let a = submit(&mut c, debounced("k", 200)).await;
    ran_once_after_window(&mut c, &a, 200).await;
    let b = submit(&mut c, debounced("k", 200)).await;
    assert_eq!(state(&get(&mut c, &a.id).await), v1::TaskState::Succeeded);
    ran_once_after_window(&mut c, &b, 200).await;

    // A task cancelled by request while it waits leaves no hold behind: the next submit
    // with its key starts a new wait and runs.
    let held = submit(&mut c, debounced("k2", 60_000)).await;
    let cancelled = c
        .cancel(v1::CancelRequest {
            id: held.id.clone(),
            reason: "not wanted".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&cancelled), v1::TaskState::Cancelled);
    let next = submit(&mut c, debounced("k2", 200)).await;
    ran_once_after_window(&mut c, &next, 200).await;
    assert_eq!(get(&mut c, &held.id).await.error, "not wanted");
}

#[tokio::test]
async fn a_submit_after_the_window_starts_a_new_debounce_sqlite() {
    no_replacement_after_the_window(None).await;
}

#[tokio::test]
async fn a_submit_after_the_window_starts_a_new_debounce_postgres() {
    let db = TestDb::create().await;
    no_replacement_after_the_window(Some(&db)).await;
}

/// Submits `n` debounced tasks on one key at once, each from its own client of one of
/// `nodes`; returns them.
async fn submit_at_once(nodes: &[&TestNode], n: usize, window_ms: u64) -> Vec<v1::Task> {
    let mut jobs = Vec::new();
    for i in 0..n {
        let mut c = nodes[i % nodes.len()].tasks().await;
        jobs.push(tokio::spawn(async move {
            submit(&mut c, debounced("burst", window_ms)).await
        }));
    }
    let mut out = Vec::new();
    for j in jobs {
        out.push(j.await.unwrap());
    }
    out
}

/// Checks that of `tasks` exactly one is not cancelled, every other one names a replacement
/// among them, and the survivor runs once after its window.
async fn one_survivor(c: &mut Tasks, tasks: &[v1::Task], window_ms: i64) {
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let mut survivors = Vec::new();
    for t in tasks {
        let now = get(c, &t.id).await;
        if state(&now) == v1::TaskState::Cancelled {
            let by = now
                .error
                .strip_prefix(REPLACED_BY)
                .unwrap_or_else(|| panic!("{now:?}"));
            assert!(ids.contains(&by) && by != t.id, "{now:?}");
        } else {
            survivors.push(t.clone());
        }
    }
    assert_eq!(
        survivors.len(),
        1,
        "exactly one survives: {:?}",
        survivors.iter().map(|t| &t.id).collect::<Vec<_>>()
    );
    ran_once_after_window(c, &survivors[0], window_ms).await;
}

async fn concurrent_submits(db: Option<&TestDb>) {
    let node = TestNode::start(&store_toml(db)).await;
    // A window far longer than 20 submits take, so they fall in one quiet period.
    let tasks = submit_at_once(&[&node], 20, 5000).await;
    let mut c = node.tasks().await;
    one_survivor(&mut c, &tasks, 5000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_on_one_key_leave_one_task_sqlite() {
    concurrent_submits(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_on_one_key_leave_one_task_postgres() {
    let db = TestDb::create().await;
    concurrent_submits(Some(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_on_one_key_leave_one_task() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    write_shared_secret(tmp.path());
    let prefix = new_prefix();
    let toml = format!(
        "{}{}",
        bus_toml(tmp.path(), &prefix, SHARED_NATS),
        store_toml(Some(&db))
    );
    let dir = |name: &str| -> PathBuf {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let a = TestNode::start_with(&dir("a"), &toml, &["--role", "orchestrator"]).await;
    let b = TestNode::start_with(&dir("b"), &toml, &["--role", "orchestrator"]).await;
    let _sup = TestNode::start_with(
        &dir("system"),
        &toml,
        &["--role", "supervisor", "--supervisor", "system"],
    )
    .await;
    let tasks = submit_at_once(&[&a, &b], 20, 5000).await;
    let mut c = b.tasks().await;
    one_survivor(&mut c, &tasks, 5000).await;
    cleanup_nats(SHARED_NATS, &prefix).await;
}

async fn restart_during_the_window(db: Option<&TestDb>) {
    let dir = tempfile::tempdir().unwrap();
    let toml = store_toml(db);
    let mut node = TestNode::start_in(dir.path(), &toml).await;
    let mut c = node.tasks().await;
    let a = submit(&mut c, debounced("k", 3000)).await;
    let b = submit(&mut c, debounced("k", 3000)).await;
    node.kill9();
    drop(node);
    let node = restarted(dir.path(), &toml).await;
    let mut c = node.tasks().await;
    replaced_by(&mut c, &a.id, &b.id).await;
    ran_once_after_window(&mut c, &b, 3000).await;
}

/// A node started again on `dir`.
async fn restarted(dir: &Path, toml: &str) -> TestNode {
    TestNode::start_in(dir, toml).await
}

#[tokio::test]
async fn a_restart_during_the_window_keeps_the_wait_sqlite() {
    restart_during_the_window(None).await;
}

#[tokio::test]
async fn a_restart_during_the_window_keeps_the_wait_postgres() {
    let db = TestDb::create().await;
    restart_during_the_window(Some(&db)).await;
}

#[tokio::test]
async fn bad_debounce_fields_are_refused_naming_the_field() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let cases = [
        (debounced("k", 0), "spec.debounce_window_ms"),
        (debounced("", 1000), "spec.debounce_window_ms"),
        (debounced("k", 86_400_001), "spec.debounce_window_ms"),
        (debounced(&"k".repeat(257), 1000), "spec.debounce_key"),
    ];
    for (s, field) in cases {
        let e = c.submit(v1::SubmitRequest { spec: Some(s) }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
    }
    // The limits themselves are accepted.
    submit(&mut c, debounced(&"k".repeat(256), 86_400_000)).await;
}

async fn tenants_do_not_interact(db: Option<&TestDb>) {
    let node = TestNode::start(&store_toml(db)).await;
    let (one, two) = (
        issue(&node, "one", "operator").await,
        issue(&node, "two", "operator").await,
    );
    let mut c1 = node.tasks_as(Some(&one)).await;
    let mut c2 = node.tasks_as(Some(&two)).await;
    let a = submit(&mut c1, debounced("shared", 500)).await;
    let b = submit(&mut c2, debounced("shared", 500)).await;
    assert_eq!(state(&get(&mut c1, &a.id).await), v1::TaskState::Queued);
    ran_once_after_window(&mut c1, &a, 500).await;
    ran_once_after_window(&mut c2, &b, 500).await;
}

#[tokio::test]
async fn the_same_key_in_two_tenants_does_not_interact_sqlite() {
    tenants_do_not_interact(None).await;
}

#[tokio::test]
async fn the_same_key_in_two_tenants_does_not_interact_postgres() {
    let db = TestDb::create().await;
    tenants_do_not_interact(Some(&db)).await;
}

#[tokio::test]
async fn the_json_api_and_the_cli_take_the_fields() {
    let node = TestNode::start("").await;
    let auth = format!("Bearer {}", node.credential());
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let post = |body: serde_json::Value| {
        let h = &h;
        let node = &node;
        async move {
            let (code, _, text) = http_exchange(node, "POST", "/v1/tasks", h, Some(&body.to_string())).await;
            (code, serde_json::from_str::<serde_json::Value>(&text).unwrap())
        }
    };
    let body = |key: &str, window: u64| {
        serde_json::json!({"task_type": "system.debug.echo", "params": {"n": 1},
            "debounce_key": key, "debounce_window_ms": window, "concurrency_key": "acct-1"})
    };
    let (code, first) = post(body("j", 1000)).await;
    assert_eq!(code, 201, "{first}");
    let task = &first["task"];
    assert_eq!(
        (
            &task["debounce_key"],
            &task["debounce_window_ms"],
            &task["concurrency_key"]
        ),
        (
            &serde_json::json!("j"),
            &serde_json::json!(1000),
            &serde_json::json!("acct-1")
        )
    );
    let (code, bad) = post(body("", 1000)).await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad.to_string().contains("debounce_window_ms"), "{bad}");

    // The CLI replaces the JSON API's task: one key, one tenant, whatever the face.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["--endpoint", &node.grpc, "--token", &node.credential()])
        .args(["submit", "system.debug.echo", r#"{"n":2}"#, "--json"])
        .args(["--debounce-key", "j", "--debounce-ms", "1000"])
        .args(["--concurrency-key", "acct-1"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = node.tasks().await;
    let first_id = task["id"].as_str().unwrap();
    let replaced = get(&mut c, first_id).await;
    assert_eq!(state(&replaced), v1::TaskState::Cancelled, "{replaced:?}");
    let by = replaced.error.strip_prefix(REPLACED_BY).unwrap().to_string();
    assert!(text.contains(&by), "the CLI printed its task {by}: {text}");
    let survivor = get(&mut c, &by).await;
    let spec = survivor.spec.clone().unwrap();
    assert_eq!(
        (
            spec.debounce_key.as_str(),
            spec.debounce_window_ms,
            spec.concurrency_key.as_str()
        ),
        ("j", 1000, "acct-1")
    );
    ran_once_after_window(&mut c, &survivor, 1000).await;
}
