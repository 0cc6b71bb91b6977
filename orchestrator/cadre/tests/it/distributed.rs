//! Distributed mode with real processes and a real NATS JetStream: one tier-0 process and
//! supervisor nodes (`--role supervisor`), each test under its own subject/stream prefix (and,
//! where it restarts NATS, its own nats-server on a free port).

use std::time::Duration;

use cadre_proto::v1;

use crate::common::cluster::{Cluster, SHARED_NATS, executions, wait_all_terminal};
use crate::common::otlp::OtlpReceiver;
use crate::common::private::{PrivateNats, free_port};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_run_on_supervisor_nodes_and_survive_a_killed_replica() {
    // JetStream and PostgreSQL, as in production.
    let db = TestDb::create().await;
    let mut cluster = Cluster::start(
        SHARED_NATS,
        &[("system", 2), ("intelligence", 2), ("multimodal", 2)],
        &format!("[store]\nurl = {:?}\n", db.url()),
    )
    .await;
    let st = cluster.wait_replicas(6).await;
    let nodes: std::collections::HashSet<_> = st.supervisors.iter().map(|s| s.address.clone()).collect();
    assert_eq!(nodes.len(), 6, "each replica is its own node: {st:?}");

    let mut c = cluster.orchestrator.tasks().await;
    let types = [
        "system.debug.sleep",
        "intelligence.debug.sleep",
        "multimodal.debug.sleep",
        "system.debug.echo",
        "intelligence.debug.echo",
        "multimodal.debug.echo",
    ];
    let mut ids = Vec::new();
    for i in 0..2000 {
        let t = types[i % types.len()];
        let params = if t.ends_with("sleep") {
            r#"{"ms":20}"#
        } else {
            r#"{"n":1}"#
        };
        let s = fast_retry(spec(t, params), 5);
        ids.push(submit(&mut c, s).await.id);
        if i == 600 {
            // Mid-run: one system replica dies without a word.
            let (_, victim) = &mut cluster.supervisors[0];
            victim.kill9();
        }
    }
    let done = wait_all_terminal(&mut c, &ids, Duration::from_secs(120)).await;
    let failed: Vec<_> = done
        .values()
        .filter(|t| state(t) != v1::TaskState::Succeeded)
        .collect();
    assert!(failed.is_empty(), "every task succeeds: {:?}", failed.first());
    // Duplicated executions: only tasks the dead replica held can have run twice.
    let mut twice = 0;
    for id in &ids {
        if executions(&mut c, id).await > 1 {
            twice += 1;
        }
    }
    // The victim held at most max_inflight (32) task messages per band pull round.
    assert!(twice <= 32 + 2, "{twice} tasks ran more than once");
    eprintln!("distributed: 2000 tasks, {twice} executed twice after the kill");
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delegation_crosses_processes_and_cancel_reaches_children() {
    let cluster = Cluster::start(SHARED_NATS, &[("system", 1), ("multimodal", 1)], "").await;
    cluster.wait_replicas(2).await;
    let mut c = cluster.orchestrator.tasks().await;
    // A system task delegates to the multimodal node over SupervisorPeer.
    let parent = run(
        &mut c,
        spec(
            "system.debug.delegate",
            r#"{"task_type":"multimodal.debug.echo","params":{"hello":"peer"}}"#,
        ),
    )
    .await;
    assert_eq!(state(&parent), v1::TaskState::Succeeded, "{parent:?}");
    let result: serde_json::Value = serde_json::from_str(&parent.result_json).unwrap();
    assert_eq!(result["result"]["hello"], "peer");
    assert_eq!(parent.children.len(), 1, "Get shows the child: {parent:?}");
    let child = get(&mut c, &parent.children[0]).await;
    assert_eq!(child.supervisor, "multimodal");
    assert_eq!(child.spec.as_ref().unwrap().parent_id, parent.id);
    assert_eq!(state(&child), v1::TaskState::Succeeded);

    // The shipped delegating type: intelligence asks multimodal to analyse an image.
    let png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    let mut cluster = cluster;
    cluster.add_supervisor("intelligence").await;
    cluster.wait_replicas(3).await;
    let described = run(
        &mut c,
        spec(
            "intelligence.research.describe_image",
            &format!(r#"{{"image_base64":"{png}"}}"#),
        ),
    )
    .await;
    assert_eq!(state(&described), v1::TaskState::Succeeded, "{described:?}");
    let r: serde_json::Value = serde_json::from_str(&described.result_json).unwrap();
    assert!(r["summary"].as_str().unwrap().contains("1x1 PNG"), "{r}");
    let analysis = get(&mut c, &described.children[0]).await;
    assert_eq!(
        analysis.spec.as_ref().unwrap().task_type,
        "multimodal.vision.analyze"
    );

    // Cancelling a parent cancels the child it waits for.
    let parent = submit(
        &mut c,
        spec(
            "system.debug.delegate",
            r#"{"task_type":"multimodal.debug.sleep","params":{"ms":60000}}"#,
        ),
    )
    .await;
    let child_id = eventually("the child is stored", Duration::from_secs(20), || {
        let mut c = c.clone();
        let id = parent.id.clone();
        async move { get(&mut c, &id).await.children.first().cloned() }
    })
    .await;
    eventually("the child runs", Duration::from_secs(20), || {
        let mut c = c.clone();
        let id = child_id.clone();
        async move { (state(&get(&mut c, &id).await) == v1::TaskState::Running).then_some(()) }
    })
    .await;
    c.cancel(v1::CancelRequest {
        id: parent.id.clone(),
        reason: "test".into(),
    })
    .await
    .unwrap();
    let done = wait_all_terminal(
        &mut c,
        &[parent.id.clone(), child_id.clone()],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(state(&done[&parent.id]), v1::TaskState::Cancelled);
    assert_eq!(state(&done[&child_id]), v1::TaskState::Cancelled);
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_redelivered_past_max_deliver_is_dead_lettered() {
    // max_deliver = 1: the first redelivery is one too many. (Consumers keep the settings of
    // the replica that created them, so only these replicas run here.)
    let cluster = Cluster::start(SHARED_NATS, &[], "").await;
    let toml = Cluster::toml(cluster.tmp.path(), &cluster.prefix, &cluster.nats_url, "")
        .replace("ack_wait_ms = 3000", "ack_wait_ms = 3000\nmax_deliver = 1");
    let dir = cluster.tmp.path().join("dl-0");
    std::fs::create_dir_all(&dir).unwrap();
    let mut first =
        TestNode::start_with(&dir, &toml, &["--role", "supervisor", "--supervisor", "system"]).await;
    cluster.wait_replicas(1).await;
    let mut c = cluster.orchestrator.tasks().await;
    let t = submit(&mut c, spec("system.debug.sleep", r#"{"ms":60000}"#)).await;
    eventually("the task runs", Duration::from_secs(20), || {
        let mut c = c.clone();
        let id = t.id.clone();
        async move { (state(&get(&mut c, &id).await) == v1::TaskState::Running).then_some(()) }
    })
    .await;
    first.kill9();
    let dir = cluster.tmp.path().join("dl-1");
    std::fs::create_dir_all(&dir).unwrap();
    let _second =
        TestNode::start_with(&dir, &toml, &["--role", "supervisor", "--supervisor", "system"]).await;
    let done = wait_all_terminal(&mut c, std::slice::from_ref(&t.id), Duration::from_secs(30)).await;
    let t = &done[&t.id];
    assert_eq!(state(t), v1::TaskState::Failed);
    assert!(t.error.contains("dead-lettered"), "{}", t.error);
    // The message itself is kept on the dead-letter stream.
    let js = async_nats::jetstream::new(async_nats::connect(SHARED_NATS).await.unwrap());
    let mut dead = js.get_stream(format!("{}_DEAD", cluster.prefix)).await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 1);
    cluster.cleanup().await;
}

/// A NATS server that takes smaller messages than cadre's limits allow (64 KiB): a task too
/// large to dispatch is FAILED at once, saying why, and is not retried; events are packed
/// small enough for the server, so tasks with sizeable results still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_server_with_a_small_max_payload_fails_only_what_cannot_fit() {
    let nats_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nats = PrivateNats::start_conf(nats_dir.path(), port, Some("max_payload: 65536\n"));
    let cluster = Cluster::start(&format!("nats://127.0.0.1:{port}"), &[("system", 1)], "").await;
    cluster.wait_replicas(1).await;
    let mut c = cluster.orchestrator.tasks().await;

    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(100_000));
    let too_big = submit(&mut c, spec("system.debug.echo", &big)).await;
    // 40 tasks, submitted at once, whose results (their params, echoed) are 6 KB each: events
    // that finish together are packed, and must be packed (or split) to fit 64 KiB messages.
    let medium = format!("{{\"blob\": \"{}\"}}", "y".repeat(6_000));
    let submits = (0..40).map(|_| {
        let mut c = c.clone();
        let medium = medium.clone();
        async move { submit(&mut c, spec("system.debug.echo", &medium)).await.id }
    });
    let mut ids = vec![too_big.id.clone()];
    ids.extend(futures::future::join_all(submits).await);
    let done = wait_all_terminal(&mut c, &ids, Duration::from_secs(60)).await;
    let failed = &done[&too_big.id];
    assert_eq!(state(failed), v1::TaskState::Failed);
    assert!(
        failed.error.contains("max_payload") && failed.error.contains("limits.max_params_bytes"),
        "the reason names the limit and what to change: {}",
        failed.error
    );
    for id in &ids[1..] {
        assert_eq!(state(&done[id]), v1::TaskState::Succeeded, "{id}");
        assert!(done[id].result_json.len() > 6_000);
    }
    let history: Vec<v1::TaskState> = events(&mut c, &too_big.id, 0)
        .await
        .iter()
        .map(ev_state)
        .collect();
    assert_eq!(
        history,
        [v1::TaskState::Queued, v1::TaskState::Failed],
        "never dispatched, failed once"
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_down_at_start_then_restarted_mid_run_loses_nothing() {
    let nats_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // NATS is not there yet: the node starts, says so, and is not ready.
    let cluster = Cluster::start(&format!("nats://127.0.0.1:{port}"), &[], "").await;
    let (code, body) = cluster.orchestrator.http_get("/ready").await;
    assert_eq!(code, 503, "not ready without NATS: {body}");
    // Intake still takes tasks into the store.
    let mut c = cluster.orchestrator.tasks().await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(submit(&mut c, spec("system.debug.echo", "{}")).await.id);
    }
    let mut nats = PrivateNats::start(nats_dir.path(), port);
    eventually("ready once NATS is up", Duration::from_secs(30), || async {
        (cluster.orchestrator.http_get("/ready").await.0 == 200).then_some(())
    })
    .await;
    let mut cluster = cluster;
    cluster.add_supervisor("system").await;
    for _ in 0..150 {
        ids.push(
            submit(&mut c, spec("system.debug.sleep", r#"{"ms":30}"#))
                .await
                .id,
        );
    }
    // NATS goes away mid-run and comes back with its store.
    nats.down();
    for _ in 0..50 {
        ids.push(submit(&mut c, spec("system.debug.echo", "{}")).await.id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.up();
    let done = wait_all_terminal(&mut c, &ids, Duration::from_secs(90)).await;
    let bad: Vec<_> = done
        .values()
        .filter(|t| state(t) != v1::TaskState::Succeeded)
        .collect();
    assert!(
        bad.is_empty(),
        "all tasks finish after NATS returns: {:?}",
        bad.first()
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_and_status_reach_every_replica() {
    let cluster = Cluster::start(SHARED_NATS, &[("system", 2)], "").await;
    cluster.wait_replicas(2).await;
    let mut a = cluster.orchestrator.admin().await;
    let pool = a
        .scale(v1::ScaleRequest {
            supervisor: "system".into(),
            worker_kind: "monitor".into(),
            replicas: 7,
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    assert_eq!(pool.target_size, 7);
    let st = cluster.orchestrator.status().await;
    for s in &st.supervisors {
        let monitor = s.pools.iter().find(|p| p.worker_kind == "monitor").unwrap();
        assert_eq!(monitor.target_size, 7, "replica on {} scaled", s.node_id);
        assert!(!s.address.is_empty());
    }
    // An unknown supervisor is NOT_FOUND.
    let err = a
        .scale(v1::ScaleRequest {
            supervisor: "nope".into(),
            worker_kind: "x".into(),
            replicas: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    cluster.cleanup().await;
}

/// A TCP proxy that can cut every connection and refuse new ones, then let them through
/// again: PostgreSQL "lost" and "back" without touching the shared server.
struct CutProxy {
    addr: String,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(target: String) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *rx.borrow() {
                    continue; // dropped: connection refused in effect
                }
                let target = target.clone();
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        CutProxy { addr, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cluster (one orchestrator, one `system` replica) whose store is a fresh database reached
/// through a [`CutProxy`], so a test can take PostgreSQL away and give it back.
async fn cluster_behind_cut_proxy() -> (TestDb, CutProxy, Cluster) {
    let db = TestDb::create().await;
    let target = "127.0.0.1:5432".to_string();
    let proxy = CutProxy::start(target.clone()).await;
    let url = db.url().replacen(&target, &proxy.addr, 1);
    assert_ne!(url, db.url(), "the test database URL names {target}");
    let cluster = Cluster::start(
        SHARED_NATS,
        &[("system", 1)],
        &format!("[store]\nurl = {url:?}\n"),
    )
    .await;
    cluster.wait_replicas(1).await;
    (db, proxy, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_lost_refuses_submits_with_unavailable_and_recovers() {
    let (_db, proxy, cluster) = cluster_behind_cut_proxy().await;
    let mut c = cluster.orchestrator.tasks().await;
    let before = run(&mut c, spec("system.debug.echo", "{}")).await;
    assert_eq!(state(&before), v1::TaskState::Succeeded);

    proxy.set_cut(true);
    let err = eventually(
        "a submit refused while PostgreSQL is gone",
        Duration::from_secs(60),
        || {
            let mut c = c.clone();
            async move {
                c.submit(v1::SubmitRequest {
                    spec: Some(spec("system.debug.echo", "{}")),
                })
                .await
                .err()
            }
        },
    )
    .await;
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(cluster.orchestrator.http_get("/ready").await.0, 503);

    proxy.set_cut(false);
    let after = eventually("submits accepted again", Duration::from_secs(60), || {
        let mut c = c.clone();
        async move {
            c.submit(v1::SubmitRequest {
                spec: Some(spec("system.debug.echo", "{}")),
            })
            .await
            .ok()
        }
    })
    .await
    .into_inner()
    .task
    .unwrap();
    let done = wait_all_terminal(&mut c, std::slice::from_ref(&after.id), Duration::from_secs(30)).await;
    assert_eq!(state(&done[&after.id]), v1::TaskState::Succeeded);
    cluster.cleanup().await;
}

/// Tasks that finish while PostgreSQL is gone: their events wait (in NATS and in tier 0's
/// retries) and, once it is back, every task is stored finished with each transition once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_tasks_finishing_while_postgres_is_lost_are_stored_once() {
    let (_db, proxy, cluster) = cluster_behind_cut_proxy().await;
    let mut c = cluster.orchestrator.tasks().await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let t = submit(
            &mut c,
            spec("system.debug.sleep", &format!("{{\"ms\": {}}}", 200 + i * 100)),
        )
        .await;
        ids.push(t.id);
    }
    proxy.set_cut(true);
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.set_cut(false);
    let done = wait_all_terminal(&mut c, &ids, Duration::from_secs(60)).await;
    for id in &ids {
        assert_eq!(state(&done[id]), v1::TaskState::Succeeded, "{id}");
        let history: Vec<(v1::TaskState, u32)> = events(&mut c, id, 0)
            .await
            .iter()
            .filter(|e| !e.is_progress)
            .map(|e| (ev_state(e), e.attempt))
            .collect();
        assert_eq!(
            history,
            [
                (v1::TaskState::Queued, 0),
                (v1::TaskState::Running, 1),
                (v1::TaskState::Succeeded, 1)
            ],
            "{id}: each transition stored once, in order"
        );
    }
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_task_is_one_trace_across_processes() {
    let receiver = OtlpReceiver::start().await;
    let cluster = Cluster::start_env(SHARED_NATS, &[("system", 1)], "", receiver.env()).await;
    cluster.wait_replicas(1).await;
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let bearer = TestNode::bearer(Some(&cluster.orchestrator.credential()))
        .with_traceparent(Some(&format!("00-{TRACE}-00f067aa0ba902b7-01")));
    let mut c = v1::task_service_client::TaskServiceClient::with_interceptor(
        cluster.orchestrator.channel().await,
        bearer,
    );
    let t = submit(&mut c, spec("system.debug.echo", "{}")).await;
    let id = t.id.clone();
    let spans = receiver
        .wait_for(
            "submit on tier 0 and the attempt on the supervisor node",
            Duration::from_secs(30),
            |s| {
                s.iter()
                    .any(|x| x.name == "task.submit" && x.attr("task_id") == Some(&id))
                    && s.iter()
                        .any(|x| x.name == "task.attempt" && x.attr("task_id") == Some(&id))
                    && s.iter()
                        .any(|x| x.name == "task.record" && x.attr("task_id") == Some(&id))
            },
        )
        .await;
    // The terminal event, stored on tier 0, is recorded in the same trace.
    let record = spans
        .iter()
        .find(|x| x.name == "task.record" && x.attr("task_id") == Some(&id))
        .unwrap();
    assert_eq!(record.trace_id, TRACE, "{record:#?}");
    let submit_span = spans
        .iter()
        .find(|x| x.name == "task.submit" && x.attr("task_id") == Some(&id))
        .unwrap();
    let attempt = spans
        .iter()
        .find(|x| x.name == "task.attempt" && x.attr("task_id") == Some(&id))
        .unwrap();
    assert_eq!(submit_span.trace_id, TRACE);
    assert_eq!(
        attempt.trace_id, TRACE,
        "the supervisor node continues the caller's trace"
    );
    assert_ne!(
        submit_span.resource.get("service.instance.id"),
        attempt.resource.get("service.instance.id"),
        "the spans come from two processes"
    );
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn high_priority_tasks_overtake_a_backlog() {
    let cluster = Cluster::start(SHARED_NATS, &[], "").await;
    let mut c = cluster.orchestrator.tasks().await;
    // A backlog of low-priority tasks waits in the stream before any replica exists...
    let mut low = Vec::new();
    for _ in 0..40 {
        low.push(
            submit(&mut c, spec("system.debug.sleep", r#"{"ms":100}"#))
                .await
                .id,
        );
    }
    let mut s = spec("system.debug.sleep", r#"{"ms":100}"#);
    s.priority = 9;
    let high = submit(&mut c, s).await.id;
    // ...then one replica with a single worker drains it: the high band is read first.
    let mut cluster = cluster;
    cluster.add_supervisor("system").await;
    cluster.wait_replicas(1).await;
    let mut a = cluster.orchestrator.admin().await;
    let _ = a
        .scale(v1::ScaleRequest {
            supervisor: "system".into(),
            worker_kind: "monitor".into(),
            replicas: 1,
        })
        .await;
    let mut all = low.clone();
    all.push(high.clone());
    let done = wait_all_terminal(&mut c, &all, Duration::from_secs(60)).await;
    let finished = |id: &String| done[id].updated_at_ms;
    let before = low.iter().filter(|id| finished(id) < finished(&high)).count();
    assert!(
        before <= 8,
        "{before} low-priority tasks finished before the high-priority one"
    );
    cluster.cleanup().await;
}
