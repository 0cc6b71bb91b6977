//! Bulk cancel and replay through the real binary, on SQLite and PostgreSQL: a dry run counts
//! what a real call then acts on; filters (states, type prefix, time range, error text with
//! LIKE's wildcards in it) select exactly the matching tasks; the limit bounds a call; an empty
//! filter, a wrong role and another tenant are refused; replays are linked new tasks that run;
//! everything is audited and the chain still verifies. The JSON API and the CLI are exercised.

use std::time::Duration;

use cadre_proto::v1;
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// A bulk request for `query`.
fn bulk(query: v1::TaskQuery, dry_run: bool) -> v1::BulkRequest {
    v1::BulkRequest {
        query: Some(query),
        dry_run,
        ..Default::default()
    }
}

/// A query of type prefix `prefix` (and nothing else).
fn prefix(p: &str) -> v1::TaskQuery {
    v1::TaskQuery {
        task_type_prefix: p.into(),
        ..Default::default()
    }
}

/// Waits until task `id` is in state `want` (read as the commander).
async fn wait_state(node: &TestNode, id: &str, want: v1::TaskState) -> v1::Task {
    let c = node.tasks().await;
    eventually(&format!("task {id} {want:?}"), PATIENCE, || {
        let mut c = c.clone();
        async move {
            let t = get(&mut c, id).await;
            (state(&t) == want).then_some(t)
        }
    })
    .await
}

/// A task of `tenant` that fails with `message`, finished.
async fn failed(c: &mut Tasks, message: &str) -> v1::Task {
    let params = json!({ "message": message, "retryable": false }).to_string();
    let t = run(c, fast_retry(spec("system.debug.fail", &params), 1)).await;
    assert_eq!(state(&t), v1::TaskState::Failed, "{t:?}");
    // Distinct creation times, so a time range can tell them apart.
    tokio::time::sleep(Duration::from_millis(3)).await;
    t
}

/// The whole contract on one node (either store).
async fn bulk_contract(node: &TestNode) {
    let op_a = issue(node, "a", "operator").await;
    let op_b = issue(node, "b", "operator").await;
    let mut a = node.tasks_as(Some(&op_a)).await;
    let mut b = node.tasks_as(Some(&op_b)).await;
    // First: five long sleeps may fill the pool, and this must not wait for them.
    let done = run(&mut a, spec("system.debug.echo", r#"{"text": "again"}"#)).await;
    let sleep = || spec("system.debug.sleep", r#"{"ms": 60000}"#);
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(submit(&mut a, sleep()).await.id);
    }
    let theirs = [submit(&mut b, sleep()).await.id, submit(&mut b, sleep()).await.id];

    cancels_exactly_what_the_dry_run_counted(&mut a, &mine).await;
    for id in &mine {
        let t = wait_state(node, id, v1::TaskState::Cancelled).await;
        assert!(t.error.contains("drain"), "{t:?}");
    }
    for id in &theirs {
        let t = get(&mut node.tasks().await, id).await;
        assert_ne!(state(&t), v1::TaskState::Cancelled, "b's task untouched: {t:?}");
    }
    // b cancels its own through the same filter: a's are not its to see.
    let r = b
        .bulk_cancel(bulk(prefix("system.debug.sleep"), false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.matched, r.acted), (2, 2), "{r:?}");
    for id in &theirs {
        wait_state(node, id, v1::TaskState::Cancelled).await;
    }

    replays_failed_tasks_by_error_text_and_time(node, &mut a).await;
    // A succeeded task replays too, and its copy runs to the same result.
    let r = a
        .bulk_replay(bulk(
            v1::TaskQuery {
                states: vec![v1::TaskState::Succeeded as i32],
                task_type_prefix: "system.debug.echo".into(),
                ..Default::default()
            },
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.matched, r.acted, r.replays.len()), (1, 1, 1), "{r:?}");
    assert_eq!(r.replays[0].original_id, done.id);
    let copy = wait_state(node, &r.replays[0].task_id, v1::TaskState::Succeeded).await;
    assert_eq!(copy.result_json, done.result_json);
    assert_eq!(copy.replay_of, done.id);

    refusals(node, &mut a).await;
}

/// Dry runs count (bounded by the limit, with `more`), then the real call cancels exactly those.
async fn cancels_exactly_what_the_dry_run_counted(a: &mut Tasks, mine: &[String]) {
    let query = v1::TaskQuery {
        states: vec![v1::TaskState::Queued as i32, v1::TaskState::Running as i32],
        ..prefix("system.debug.sleep")
    };
    let dry = a
        .bulk_cancel(bulk(query.clone(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (dry.matched, dry.acted, dry.more, dry.dry_run),
        (3, 0, false, true),
        "{dry:?}"
    );
    let mut listed = dry.task_ids.clone();
    listed.sort();
    let mut want = mine.to_vec();
    want.sort();
    assert_eq!(listed, want);
    let limited = v1::BulkRequest {
        limit: 2,
        ..bulk(query.clone(), true)
    };
    let r = a.bulk_cancel(limited).await.unwrap().into_inner();
    assert_eq!((r.matched, r.more), (2, true), "{r:?}");
    // A type that matches nothing, and the echo task (finished), are not counted.
    let none = a
        .bulk_cancel(bulk(prefix("system.debug.echo"), true))
        .await
        .unwrap();
    assert_eq!(none.into_inner().matched, 0);

    let real = v1::BulkRequest {
        reason: "drained by test".into(),
        ..bulk(query, false)
    };
    let r = a.bulk_cancel(real).await.unwrap().into_inner();
    assert_eq!((r.matched, r.acted, r.failed), (dry.matched, 3, 0), "{r:?}");
}

/// Replays the failed tasks whose error contains a text with `%` and `_` in it (matched
/// literally, case-insensitively), and those of a time range; the copies are linked and run.
async fn replays_failed_tasks_by_error_text_and_time(node: &TestNode, a: &mut Tasks) {
    let f1 = failed(a, "disk 50%_full on vol1").await;
    let f2 = failed(a, "Disk 50%_FULL on vol2").await;
    let f3 = failed(a, "disk 500xfull on vol3").await;
    let by_text = v1::TaskQuery {
        error_contains: "50%_full".into(),
        ..Default::default()
    };
    let dry = a
        .bulk_replay(bulk(by_text.clone(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.matched, 2, "only the literal text matches: {dry:?}");
    let range = v1::TaskQuery {
        created_after_ms: f2.created_at_ms,
        created_before_ms: f3.created_at_ms,
        ..prefix("system.debug.fail")
    };
    let r = a.bulk_replay(bulk(range, true)).await.unwrap().into_inner();
    assert_eq!(r.task_ids, vec![f2.id.clone()], "{r:?}");

    let r = a.bulk_replay(bulk(by_text, false)).await.unwrap().into_inner();
    assert_eq!((r.matched, r.acted, r.failed), (dry.matched, 2, 0), "{r:?}");
    let mut originals: Vec<_> = r.replays.iter().map(|x| x.original_id.clone()).collect();
    originals.sort();
    let mut want = vec![f1.id.clone(), f2.id.clone()];
    want.sort();
    assert_eq!(originals, want);
    for x in &r.replays {
        assert_ne!(x.task_id, x.original_id);
        let copy = wait_state(node, &x.task_id, v1::TaskState::Failed).await;
        let original = get(&mut node.tasks().await, &x.original_id).await;
        assert_eq!(copy.replay_of, original.id);
        assert_eq!(copy.tenant, "a");
        let (cs, os) = (copy.spec.clone().unwrap(), original.spec.unwrap());
        assert_eq!(
            (&cs.task_type, &cs.params_json, cs.priority),
            (&os.task_type, &os.params_json, os.priority)
        );
        assert!(
            copy.error.to_lowercase().contains("50%_full"),
            "the copy ran the same spec: {copy:?}"
        );
    }
    // The copies failed too: replaying FAILED now also matches them (4 with the text).
    let again = v1::TaskQuery {
        error_contains: "50%_FULL".into(),
        ..Default::default()
    };
    let dry = a.bulk_replay(bulk(again, true)).await.unwrap().into_inner();
    assert_eq!(dry.matched, 4, "{dry:?}");
}

/// What is refused, with which code.
async fn refusals(node: &TestNode, a: &mut Tasks) {
    let empty = a
        .bulk_cancel(bulk(v1::TaskQuery::default(), true))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().contains("name at least one filter"), "{empty:?}");
    let no_query = a.bulk_replay(v1::BulkRequest::default()).await.unwrap_err();
    assert_eq!(no_query.code(), Code::InvalidArgument);
    let over = v1::BulkRequest {
        limit: 10_001,
        ..bulk(prefix("x"), true)
    };
    assert_eq!(
        a.bulk_cancel(over).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let finished = v1::TaskQuery {
        states: vec![v1::TaskState::Succeeded as i32],
        ..Default::default()
    };
    assert_eq!(
        a.bulk_cancel(bulk(finished, true)).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let other = v1::TaskQuery {
        tenant: "b".into(),
        ..prefix("system")
    };
    let e = a.bulk_replay(bulk(other.clone(), true)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // A commander may name b: b's finished tasks only (2 cancelled sleeps).
    let mut cmd = node.tasks().await;
    let r = cmd.bulk_replay(bulk(other, true)).await.unwrap().into_inner();
    assert_eq!(r.matched, 2, "{r:?}");
    let observer = issue(node, "a", "observer").await;
    let mut obs = node.tasks_as(Some(&observer)).await;
    let e = obs.bulk_cancel(bulk(prefix("system"), true)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = obs.bulk_replay(bulk(prefix("system"), true)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

/// The audit chain's acts of `action`, read from the store at `url`.
async fn acts(url: &str, action: &str) -> Vec<cadre_store::chain::AuditRecord> {
    let store = cadre_store::open(url, false).await.unwrap();
    let all = store.audit_records(None).await.unwrap();
    all.into_iter().filter(|r| r.draft.action == action).collect()
}

/// Each real bulk call left one act naming its filter and counts, by its caller.
async fn audited(url: &str) {
    let cancels = acts(url, "task.bulk_cancel").await;
    assert_eq!(cancels.len(), 2, "{cancels:?}");
    assert_eq!(cancels[0].draft.actor, "operator-a");
    assert!(cancels[0].draft.target.contains("tenant=a"), "{cancels:?}");
    assert!(
        cancels[0].draft.target.contains("system.debug.sleep"),
        "{cancels:?}"
    );
    assert!(cancels[0].draft.detail.contains("acted 3"), "{cancels:?}");
    let replays = acts(url, "task.bulk_replay").await;
    let (ok, denied): (Vec<_>, Vec<_>) = replays.iter().partition(|r| r.draft.outcome == "ok");
    assert_eq!(ok.len(), 2, "{replays:?}");
    // Naming another tenant is refused, and the refusal is on record.
    assert_eq!(denied.len(), 1, "{replays:?}");
    assert_eq!(denied[0].draft.outcome, "denied");
    // The per-task acts of a cancel are there too.
    assert!(acts(url, "task.cancel").await.len() >= 5);
}

#[tokio::test]
async fn bulk_cancel_and_replay_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), "").await;
    bulk_contract(&node).await;
    assert!(node.stop().await.success());
    let data = tmp.path().join("data");
    audited(&format!("sqlite:{}", data.join("cadre.db").display())).await;
    let out = cadre_audit(&data, &["verify"]);
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn bulk_cancel_and_replay_on_postgres() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(tmp.path(), &format!("[store]\nurl = {:?}\n", db.url())).await;
    bulk_contract(&node).await;
    assert!(node.stop().await.success());
    audited(db.url()).await;
    let out = cadre_audit(&tmp.path().join("data"), &["verify", "--store-url", db.url()]);
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn the_json_api_and_the_cli_run_bulk_operations() {
    let node = TestNode::start("").await;
    let op = issue(&node, "a", "operator").await;
    let mut a = node.tasks_as(Some(&op)).await;
    let queued = submit(&mut a, spec("system.debug.sleep", r#"{"ms": 60000}"#)).await;
    let f = failed(&mut a, "cli boom").await;
    let auth = format!("Bearer {op}");
    let post = |path: &'static str, body: Value| {
        let (node, auth) = (&node, auth.clone());
        async move {
            let headers = [("authorization", auth.as_str())];
            let (code, _, text) = http_exchange(node, "POST", path, &headers, Some(&body.to_string())).await;
            (
                code,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };
    let (code, body) = post("/v1/bulk/cancel", json!({})).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument");
    let (code, body) = post("/v1/bulk/cancel", json!({"type_prefix": "system", "tenant": "b"})).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = post("/v1/bulk/cancel", json!({"states": ["nope"]})).await;
    assert_eq!(code, 400, "{body}");
    let dry = json!({"states": ["queued", "RUNNING"], "type_prefix": "system.debug.sleep", "dry_run": true});
    let (code, body) = post("/v1/bulk/cancel", dry).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["matched"].as_u64(), body["acted"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );
    assert_eq!(body["task_ids"], json!([queued.id]));
    let (code, body) = post("/v1/bulk/cancel", json!({"type_prefix": "system.debug.sleep"})).await;
    assert_eq!((code, body["acted"].as_u64()), (200, Some(1)), "{body}");
    wait_state(&node, &queued.id, v1::TaskState::Cancelled).await;

    // The CLI: a dry run, then the replay; the copy's JSON shows its link.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .args(["--endpoint", &node.grpc, "--token", &op, "tasks"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = cli(&[
        "replay",
        "--state",
        "failed",
        "--error-contains",
        "CLI BOOM",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("dry run: 1 tasks match") && out.contains(&f.id),
        "{out}"
    );
    let (code, out, err) = cli(&["replay", "--state", "failed", "--newer-than", "1h", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["acted"], 1, "{answer}");
    let new_id = answer["replays"][0]["task_id"].as_str().unwrap().to_string();
    let (status, _, text) = http_exchange(
        &node,
        "GET",
        &format!("/v1/tasks/{new_id}"),
        &[("authorization", auth.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let task: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(task["task"]["replay_of"], json!(f.id), "{task}");
    // The list's --state before the subcommand would widen the filter silently: refused.
    let (code, _, err) = cli(&["--state", "failed", "replay", "--type-prefix", "x"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, out, err) = cli(&["cancel-all"]);
    assert_ne!(code, Some(0), "an empty filter is refused: {out}");
    assert!(err.contains("name at least one filter"), "{err}");
}
