//! Bounds on what callers can make the node do, round two: how deep sub-tasks may nest
//! (`limits.max_delegation_depth`) and how long API keys work (`ttl_secs`,
//! `auth.max_api_key_ttl_secs`).

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};
use cadre_proto::{TaskId, TaskRecord, TaskSpec};
use cadre_store::{Store, WriteOp};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tonic::Code;

use crate::common::*;

/// A `system.debug.delegate` spec that nests `levels` delegations around an echo: 1 delegates
/// an echo, 2 delegates a delegate of an echo, and so on.
fn delegate_chain(levels: usize) -> Value {
    let mut params = json!({"task_type": "system.debug.echo", "params": {"leaf": true}});
    for _ in 1..levels {
        params = json!({"task_type": "system.debug.delegate", "params": params});
    }
    params
}

/// A long sleep: a parent that stays unfinished while sub-tasks are added to it.
fn sleeper() -> v1::TaskSpec {
    spec("system.debug.sleep", r#"{"ms": 60000}"#)
}

/// A sub-task of `parent`.
fn child_of(parent: &str) -> v1::TaskSpec {
    v1::TaskSpec {
        parent_id: parent.into(),
        ..sleeper()
    }
}

#[tokio::test]
async fn sub_tasks_nest_only_as_deep_as_the_limit() {
    let node = TestNode::start("[limits]\nmax_delegation_depth = 2\n").await;
    let mut t = node.tasks().await;

    // Explicit parent_id chains over gRPC Submit: depths 0, 1 and 2 are taken...
    let root = submit(&mut t, sleeper()).await;
    let one = submit(&mut t, child_of(&root.id)).await;
    let two = submit(&mut t, child_of(&one.id)).await;
    // ... a sub-task of the depth-2 task is not, whatever it is.
    let err = t
        .submit(v1::SubmitRequest {
            spec: Some(child_of(&two.id)),
        })
        .await
        .expect_err("a third level is refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("limits.max_delegation_depth (2)") && err.message().contains(&two.id),
        "the refusal names the key, the limit and the parent: {}",
        err.message()
    );
    // SubmitAndWait says the same, and a sibling at an allowed depth is still taken.
    let err = t
        .submit_and_wait(v1::SubmitAndWaitRequest {
            spec: Some(child_of(&two.id)),
            wait_ms: 1_000,
        })
        .await
        .expect_err("refused before anything runs");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // So does the tier-0 node's SupervisorPeer.Delegate.
    let err = node
        .peer_as(Some(&node.credential()))
        .await
        .delegate(v1::DelegateRequest {
            parent_id: two.id.clone(),
            spec: Some(spec("system.debug.echo", "{}")),
            wait_ms: 1_000,
            tenant: String::new(),
            parent_depth: 0,
        })
        .await
        .expect_err("refused like a submit");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("limits.max_delegation_depth (2)"),
        "{}",
        err.message()
    );
    let sibling = submit(&mut t, child_of(&one.id)).await;
    let listed = get(&mut t, &two.id).await;
    assert!(
        listed.children.is_empty(),
        "nothing was stored under the deepest task: {listed:?}"
    );
    // Cancelling the root cancels the whole tree.
    t.cancel(v1::CancelRequest {
        id: root.id.clone(),
        reason: "test over".into(),
    })
    .await
    .expect("cancel");
    for id in [&one.id, &two.id, &sibling.id] {
        let done = eventually("the sub-tasks to be cancelled", Duration::from_secs(10), || {
            let mut t = t.clone();
            let id = id.to_string();
            async move { Some(get(&mut t, &id).await).filter(|d| state(d) == TaskState::Cancelled) }
        })
        .await;
        assert_eq!(state(&done), TaskState::Cancelled);
    }
}

#[tokio::test]
async fn a_delegation_past_the_limit_fails_its_task_with_the_reason() {
    let node = TestNode::start("[limits]\nmax_delegation_depth = 2\n").await;
    let mut t = node.tasks().await;

    // Two levels of delegation (an echo at depth 2) are within the limit.
    let ok = run(
        &mut t,
        spec("system.debug.delegate", &delegate_chain(2).to_string()),
    )
    .await;
    assert_eq!(state(&ok), TaskState::Succeeded, "{ok:?}");
    let result: Value = serde_json::from_str(&ok.result_json).unwrap();
    assert_eq!(result["result"]["result"]["leaf"], true, "{result}");

    // Three are not: the task at depth 2 may not delegate, fails with the reason, and so does
    // every task above it.
    let root = run(
        &mut t,
        spec("system.debug.delegate", &delegate_chain(3).to_string()),
    )
    .await;
    assert_eq!(state(&root), TaskState::Failed, "{root:?}");
    assert!(
        root.error.contains("limits.max_delegation_depth"),
        "{}",
        root.error
    );
    assert_eq!(root.children.len(), 1, "{root:?}");
    let one = get(&mut t, &root.children[0]).await;
    assert_eq!(one.children.len(), 1, "{one:?}");
    let two = get(&mut t, &one.children[0]).await;
    assert_eq!(state(&two), TaskState::Failed, "{two:?}");
    assert!(two.children.is_empty(), "its sub-task was never stored: {two:?}");
    assert!(
        two.error.contains("refused") && two.error.contains("limits.max_delegation_depth (2)"),
        "the deepest task says why: {}",
        two.error
    );

    // The JSON API's submissions are held to the same limit.
    let body = json!({"task_type": "system.debug.delegate", "params": delegate_chain(3)}).to_string();
    let auth = format!("Bearer {}", node.credential());
    let (code, _, text) = http_exchange(
        &node,
        "POST",
        "/v1/tasks?wait=true",
        &[("Authorization", &auth)],
        Some(&body),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let task: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(task["task"]["state"], "FAILED", "{text}");
    assert!(
        task["task"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("limits.max_delegation_depth")),
        "{text}"
    );
}

#[tokio::test]
async fn the_depth_limit_is_checked_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cadre.toml");
    for bad in ["0", "65"] {
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = \"{}\"\n[limits]\nmax_delegation_depth = {bad}\n",
                tmp.path().join("data").display()
            ),
        )
        .unwrap();
        let out = serve_command(&config).output().expect("run cadre serve");
        assert!(!out.status.success(), "max_delegation_depth = {bad} is refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("limits.max_delegation_depth: must be 1 to 64"),
            "{stderr}"
        );
    }
}

/// A chain of `n` tasks, each the sub-task of the one before.
fn chain(n: usize) -> Vec<TaskRecord> {
    let mut out: Vec<TaskRecord> = Vec::new();
    for _ in 0..n {
        let spec = TaskSpec {
            task_type: "system.debug.echo".into(),
            params: json!({}),
            priority: Default::default(),
            timeout: Duration::from_secs(5),
            retry: Default::default(),
            idempotency_key: None,
            parent_id: out.last().map(|t| t.id),
            security_level: Default::default(),
            concurrency_key: None,
            debounce: None,
            replay_of: None,
        };
        out.push(TaskRecord::queued("acme", spec, "system", "monitor"));
    }
    out
}

/// Each task's depth as the store keeps it: 0, 1, 2, ... down a chain inserted one batch per
/// task (a sub-task is submitted once its parent is stored).
async fn stored_depths(s: &dyn Store, tasks: &[TaskRecord]) -> Vec<u32> {
    let mut depths = Vec::new();
    for t in tasks {
        s.apply(&[WriteOp::Insert(Box::new(t.clone()))], None)
            .await
            .unwrap();
    }
    for t in tasks {
        depths.push(s.depth(t.id).await.unwrap().expect("stored"));
    }
    depths
}

#[tokio::test]
async fn both_stores_keep_each_task_s_depth() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let sqlite = cadre_store::open(&url, false).await.unwrap();
    let tasks = chain(4);
    assert_eq!(stored_depths(&*sqlite, &tasks).await, [0, 1, 2, 3]);
    assert_eq!(sqlite.depth(TaskId::new()).await.unwrap(), None, "no such task");

    // Tasks stored before the depth column get theirs from their parent chain.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    conn.execute("UPDATE tasks SET depth = 0").await.unwrap();
    let migration = include_str!("../../../store/migrations/sqlite/0009_depth_key_expiry.sql");
    let start = migration.find("WITH RECURSIVE").unwrap();
    let backfill = &migration[start..start + migration[start..].find(";\n").unwrap()];
    conn.execute(sqlx::AssertSqlSafe(backfill)).await.unwrap();
    for (t, want) in tasks.iter().zip([0, 1, 2, 3]) {
        assert_eq!(sqlite.depth(t.id).await.unwrap(), Some(want));
    }

    let db = TestDb::create().await;
    let pg = cadre_store::open(db.url(), false).await.unwrap();
    assert_eq!(stored_depths(&*pg, &chain(3)).await, [0, 1, 2]);
}

/// Creates an API key through AdminService.CreateApiKey.
async fn create_key(
    node: &TestNode,
    name: &str,
    ttl_secs: u64,
) -> Result<v1::CreateApiKeyResponse, tonic::Status> {
    node.admin()
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            name: name.into(),
            tenant: "acme".into(),
            role: "operator".into(),
            ttl_secs,
        })
        .await
        .map(|r| r.into_inner())
}

/// Runs the `cadre` CLI against `node` as its commander: (success, stdout, stderr).
fn cadre_cli(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .env_remove("CADRE_TOKEN")
        .args(["--endpoint", &node.grpc, "--token", &node.credential()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The `cadre key list` row of key `id`.
fn key_row(node: &TestNode, id: &str) -> String {
    let (ok, listing, err) = cadre_cli(node, &["key", "list"]);
    assert!(ok, "{err}");
    listing
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not in {listing}"))
        .to_string()
}

/// GET /v1/tasks with `key`: the status code and body.
async fn http_list(node: &TestNode, key: &str) -> (u16, String) {
    let auth = format!("Bearer {key}");
    let (code, _, body) = http_exchange(node, "GET", "/v1/tasks", &[("Authorization", &auth)], None).await;
    (code, body)
}

#[tokio::test]
async fn an_api_key_with_a_ttl_works_until_it_expires() {
    let node = TestNode::start("").await;
    let short = create_key(&node, "short-lived", 2).await.expect("create");
    let key = short.key.unwrap();
    let now = cadre_proto::clock::now_ms();
    assert!(
        (now + 500..=now + 2_500).contains(&key.expires_at_ms),
        "expires in about 2 s: {key:?}"
    );
    let forever = create_key(&node, "forever", 0).await.expect("create");
    assert_eq!(forever.key.as_ref().unwrap().expires_at_ms, 0, "ttl 0: never");

    // Works on both faces at first.
    let mut t = node.tasks_as(Some(&short.secret)).await;
    t.list(v1::ListRequest::default())
        .await
        .expect("a fresh key works");
    assert_eq!(http_list(&node, &short.secret).await.0, 200);

    // The listing shows when it expires.
    let keys = node
        .admin()
        .await
        .list_api_keys(v1::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let listed = keys.iter().find(|k| k.id == key.id).expect("listed");
    assert_eq!(listed.expires_at_ms, key.expires_at_ms);
    let row = key_row(&node, &key.id);
    assert!(row.ends_with("active") && row.contains("Z "), "{row}");
    let row = key_row(&node, &forever.key.as_ref().unwrap().id);
    assert!(row.ends_with("active") && row.contains("never"), "{row}");

    // Refused once it expires: gRPC and HTTP alike, with the reason.
    tokio::time::sleep(Duration::from_millis(
        (key.expires_at_ms - cadre_proto::clock::now_ms()).max(0) as u64 + 100,
    ))
    .await;
    let err = t.list(v1::ListRequest::default()).await.expect_err("expired");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("expired"), "{}", err.message());
    let (code, body) = http_list(&node, &short.secret).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("API key") && body.contains("expired"), "{body}");
    // The key that never expires still works; the listing calls the other expired.
    let mut f = node.tasks_as(Some(&forever.secret)).await;
    f.list(v1::ListRequest::default())
        .await
        .expect("a key without expiry works");
    assert!(key_row(&node, &key.id).ends_with("expired"));
}

#[tokio::test]
async fn the_api_key_ttl_cap_is_enforced() {
    let node = TestNode::start("[auth]\nmax_api_key_ttl_secs = 3600\n").await;
    let err = create_key(&node, "too-long", 3601)
        .await
        .expect_err("above the cap");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("ttl_secs") && err.message().contains("auth.max_api_key_ttl_secs"),
        "{}",
        err.message()
    );
    let err = create_key(&node, "forever", 0)
        .await
        .expect_err("with a cap, every key expires");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("auth.max_api_key_ttl_secs"),
        "{}",
        err.message()
    );
    let ok = create_key(&node, "hour", 3600).await.expect("at the cap");
    assert!(ok.key.unwrap().expires_at_ms > cadre_proto::clock::now_ms() + 3_500_000);

    // The CLI takes a duration and says the same.
    let create = |ttl: &str| {
        let args = [
            "key", "create", "--name", "cli", "--tenant", "acme", "--role", "observer", "--ttl", ttl,
        ];
        cadre_cli(&node, &args)
    };
    let (ok, out, err) = create("30m");
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("cadre_"), "{out}");
    assert!(err.contains("expires 20"), "{err}");
    let (ok, _, err) = create("2h");
    assert!(!ok);
    assert!(err.contains("auth.max_api_key_ttl_secs"), "{err}");
}
