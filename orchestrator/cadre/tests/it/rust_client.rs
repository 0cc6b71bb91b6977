//! The Rust client crate (`cadre-client`) against a real node: every call it wraps, its typed
//! errors, a watch that resumes across a node restart with no gap and no repeat, a submit
//! that rides out a restart and still makes one task, live-only watches, workflows and
//! approvals. The `cadre` CLI is built on this crate, so the CLI tests exercise it too.

use std::collections::BTreeMap;
use std::time::Duration;

use cadre_client::workflows::Decision;
use cadre_client::{Client, Error, Retry, TaskRequest, v1};
use serde_json::json;

use crate::common::{TestNode, issue, state};

/// A client of `node` with `credential`.
async fn client(node: &TestNode, credential: Option<String>) -> Client {
    Client::connect(node.grpc.clone(), credential).await.unwrap()
}

fn echo(params: serde_json::Value) -> TaskRequest {
    TaskRequest::new("system.debug.echo", &params).unwrap()
}

#[tokio::test]
async fn the_task_calls_work_and_refusals_come_back_typed() {
    let node = TestNode::start("").await;
    let c = client(&node, Some(node.credential())).await;

    let first = c
        .submit(echo(json!({"n": 1})).idempotency_key("k1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = c
        .submit(echo(json!({"n": 1})).idempotency_key("k1"))
        .await
        .unwrap();
    assert!(!again.created, "the same key names the same task");
    assert_eq!(again.task.id, first.task.id);

    let done = c
        .submit_and_wait(echo(json!({"n": 2})).priority(5))
        .await
        .unwrap();
    assert_eq!(state(&done), v1::TaskState::Succeeded);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&done.result_json).unwrap(),
        json!({"n": 2})
    );
    assert_eq!(c.get(&done.id).await.unwrap().spec.unwrap().priority, 5);

    let long = c
        .submit(TaskRequest::new("system.debug.sleep", &json!({"ms": 60000})).unwrap())
        .await
        .unwrap();
    c.cancel(&long.task.id, "not needed").await.unwrap();
    let mut watch = c.watch_task(&long.task.id);
    let mut last = None;
    while let Some(e) = watch.next().await {
        last = Some(e.unwrap());
    }
    assert_eq!(
        last.unwrap().state,
        v1::TaskState::Cancelled as i32,
        "the watch ends at the terminal event"
    );

    let req = v1::ListRequest {
        task_type_prefix: "system.debug.".into(),
        page_size: 1,
        ..Default::default()
    };
    let all = c.list_all(req, 100).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(all.len(), 3, "every page followed: {ids:?}");
    for id in [&first.task.id, &done.id, &long.task.id] {
        assert!(ids.contains(&id.as_str()), "{id} in {ids:?}");
    }
    let types = c.task_types("system.debug.").await.unwrap();
    assert!(
        types.iter().any(|t| t.task_type == "system.debug.echo"),
        "{types:?}"
    );
    assert!(types.iter().all(|t| t.task_type.starts_with("system.debug.")));

    // Typed refusals.
    assert!(matches!(c.get("not-an-id").await, Err(Error::InvalidArgument(_))));
    let unknown = "01930000-0000-7000-8000-000000000000";
    assert!(matches!(c.get(unknown).await, Err(Error::NotFound(_))));
    let bad = c.submit(TaskRequest::with_params_json(
        "system.debug.sleep",
        r#"{"ms": "soon"}"#,
    ));
    assert!(matches!(bad.await, Err(Error::InvalidArgument(m)) if m.contains("ms")));
    let stranger = client(&node, Some("not-a-token".into())).await;
    assert!(matches!(
        stranger.get(&done.id).await,
        Err(Error::Unauthenticated(_))
    ));
    let other_tenant = client(&node, Some(issue(&node, "acme", "operator").await)).await;
    assert!(
        matches!(other_tenant.get(&done.id).await, Err(Error::NotFound(_))),
        "tenants do not see each other"
    );
    let observer = client(&node, Some(issue(&node, "default", "observer").await)).await;
    let refused = observer.submit(echo(json!({}))).await;
    assert!(matches!(refused, Err(Error::PermissionDenied(_))), "{refused:?}");
    assert_eq!(
        observer.get(&done.id).await.unwrap().id,
        done.id,
        "observers may read"
    );
}

/// Reads `watch` until every task in `ids` has its terminal event; checks cursors only rise
/// and each task's sequence numbers have no gap. Returns the events per task.
async fn drain_until_done(
    watch: &mut cadre_client::Watch,
    per_task: &mut BTreeMap<String, Vec<u64>>,
    last_cursor: &mut u64,
    ids: &[String],
    finished: &mut std::collections::BTreeSet<String>,
) {
    while !ids.iter().all(|id| finished.contains(id)) {
        let e = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("events keep coming")
            .expect("the watch goes on")
            .expect("no error");
        assert!(
            e.cursor > *last_cursor,
            "cursor {} after {}: a repeat",
            e.cursor,
            last_cursor
        );
        *last_cursor = e.cursor;
        if e.is_progress {
            continue;
        }
        let seqs = per_task.entry(e.task_id.clone()).or_default();
        if let Some(prev) = seqs.last() {
            assert!(e.seq > *prev, "task {} seq {} after {prev}", e.task_id, e.seq);
        }
        seqs.push(e.seq);
        if cadre_client::tasks::is_terminal(e.state) {
            finished.insert(e.task_id.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_across_a_node_restart_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), "").await;
    let grpc_addr = node.grpc.trim_start_matches("http://").to_string();
    let c = client(&node, Some(node.credential())).await;
    let mut watch = c.watch(v1::WatchRequest {
        task_type_prefix: "system.debug.".into(),
        ..Default::default()
    });
    let (mut per_task, mut last, mut finished) = (BTreeMap::new(), 0, Default::default());
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(c.submit(echo(json!({"n": n}))).await.unwrap().task.id);
    }
    drain_until_done(&mut watch, &mut per_task, &mut last, &ids, &mut finished).await;

    // The node goes away and comes back on the same address; the same client and watch go on.
    node.stop().await;
    let node = TestNode::start_at(dir.path(), "", &grpc_addr).await;
    for n in 10..20 {
        ids.push(c.submit(echo(json!({"n": n}))).await.unwrap().task.id);
    }
    drain_until_done(&mut watch, &mut per_task, &mut last, &ids, &mut finished).await;
    for id in &ids {
        let seqs = &per_task[id];
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &want, "task {id}: every event once, none missing");
    }
    assert_eq!(watch.cursor(), Some(last));
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_during_a_restart_is_retried_and_makes_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), "").await;
    let grpc_addr = node.grpc.trim_start_matches("http://").to_string();
    let c = Client::builder(node.grpc.clone())
        .token(Some(node.credential()))
        .retry(Retry {
            attempts: 40,
            first: Duration::from_millis(100),
            max: Duration::from_millis(500),
        })
        .connect()
        .await
        .unwrap();
    node.stop().await;
    // No idempotency key given: the client makes one, and every retry carries it.
    let submit = tokio::spawn({
        let c = c.clone();
        async move { c.submit(echo(json!({"marker": "restart"}))).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!submit.is_finished(), "the submit waits for the node");
    let node = TestNode::start_at(dir.path(), "", &grpc_addr).await;
    let submitted = submit.await.unwrap().expect("the submit got through");
    assert!(submitted.created);
    let all = c.list_all(v1::ListRequest::default(), 1000).await.unwrap();
    let marked: Vec<_> = all
        .iter()
        .filter(|t| t.spec.as_ref().unwrap().params_json.contains("restart"))
        .collect();
    assert_eq!(marked.len(), 1, "one task, whatever the retries");
    assert!(
        marked[0]
            .spec
            .as_ref()
            .unwrap()
            .idempotency_key
            .starts_with("client-")
    );

    // With retries off, the same outage is reported at once, typed.
    let once = Client::builder(node.grpc.clone())
        .token(Some(node.credential()))
        .retry(Retry::never())
        .connect()
        .await
        .unwrap();
    node.stop().await;
    let e = once.get(&submitted.task.id).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn a_live_only_watch_skips_history_and_refuses_a_cursor() {
    let node = TestNode::start("").await;
    let c = client(&node, Some(node.credential())).await;
    let old = c.submit_and_wait(echo(json!({"old": true}))).await.unwrap();
    let mut live = c.watch(v1::WatchRequest {
        task_type_prefix: "system.debug.".into(),
        live_only: true,
        ..Default::default()
    });
    // The stream opens on the first `next`; submit once it is open.
    let c2 = c.clone();
    let new = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.submit(echo(json!({"new": true}))).await.unwrap().task.id
    });
    let first = tokio::time::timeout(Duration::from_secs(30), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let new = new.await.unwrap();
    assert_eq!(first.task_id, new, "no replay of {}", old.id);

    let mut both = c.watch(v1::WatchRequest {
        live_only: true,
        after_cursor: 1,
        ..Default::default()
    });
    let refused = both.next().await.unwrap();
    assert!(matches!(refused, Err(Error::InvalidArgument(m)) if m.contains("live_only")));
    assert!(both.next().await.is_none(), "a refused watch is over");
}

#[tokio::test]
async fn workflows_signals_and_approvals_go_through_the_client() {
    let node = TestNode::start("").await;
    let c = client(&node, Some(node.credential())).await;
    let def = json!({"name": "gate", "version": 1, "steps": [
        {"id": "check", "wait": {"approval": {"role": "operator"}}},
        {"id": "note", "needs": ["check"], "wait": {"signal": "note"}},
        {"id": "done", "needs": ["note"], "task": "system.debug.echo",
         "params": {"by": "${{ steps.check.output.by }}", "note": "${{ steps.note.output }}"}}
    ]});
    let reg = c.register_workflow(&def.to_string()).await.unwrap();
    assert!(reg.created);
    assert!(
        !c.register_workflow(&def.to_string()).await.unwrap().created,
        "the same definition again"
    );
    let changed = json!({"name": "gate", "version": 1, "steps": [{"id": "x", "task": "system.debug.echo"}]});
    assert!(matches!(
        c.register_workflow(&changed.to_string()).await,
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(c.list_workflows("").await.unwrap().len(), 1);
    assert_eq!(c.get_workflow("gate", None).await.unwrap().version, 1);
    assert!(matches!(
        c.get_workflow("nope", None).await,
        Err(Error::NotFound(_))
    ));

    let run = c
        .submit(TaskRequest::new("workflow.gate.run", &json!({})).unwrap())
        .await
        .unwrap();
    let id = run.task.id;
    // The approval is waited for once the instance reaches it; a signal nothing waits for is
    // refused meanwhile.
    let sent = loop {
        match c.approve(&id, "check", Decision::Approve, Some("fine")).await {
            Ok(s) => break s,
            Err(Error::InvalidArgument(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert!(sent.seq > 0);
    let sent = loop {
        match c.signal(&id, "note", &json!("hello")).await {
            Ok(s) => break s,
            Err(Error::InvalidArgument(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert!(sent.task.is_some());
    let mut watch = c.watch_task(&id);
    while watch.next().await.transpose().unwrap().is_some() {}
    let done = c.get(&id).await.unwrap();
    assert_eq!(state(&done), v1::TaskState::Succeeded, "{}", done.error);
    let finished = c.signal(&id, "note", &json!("late")).await;
    assert!(
        matches!(finished, Err(Error::FailedPrecondition(_))),
        "{finished:?}"
    );
}
