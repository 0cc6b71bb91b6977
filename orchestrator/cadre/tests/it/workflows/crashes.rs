//! Crashes: kill -9 of an embedded node, of tier 0 and of a supervisor node in distributed
//! mode, with instances mid-step, waiting for an approval and sleeping. Every unfinished
//! instance resumes; a step that had SUCCEEDED never runs again and a step that was running is
//! retried under its policy (executions counted by the webhook the steps call). The engine
//! itself is restarted by its supervisor when it dies.

use std::time::Duration;

use cadre_proto::v1;
use serde_json::{Value, json};

use super::{Counter, counted, counter_config, finished, flows, register, start, step_reaches};
use crate::common::cluster::{Cluster, SHARED_NATS};
use crate::common::{Tasks, TestDb, TestNode, eventually, state};

const PATIENCE: Duration = Duration::from_secs(60);

/// `<p>a -> <p>b (held by the test, 3 attempts) -> <p>c`.
fn chain(name: &str, p: &str) -> Value {
    let mut b = counted(&format!("{p}b"), json!({}));
    b["needs"] = json!([format!("{p}a")]);
    b["retry"] = json!({"max_attempts": 3, "initial_backoff_ms": 50});
    let mut c = counted(&format!("{p}c"), json!({}));
    c["needs"] = json!([format!("{p}b")]);
    json!({"name": name, "version": 1, "steps": [counted(&format!("{p}a"), json!({})), b, c]})
}

/// An approval between two counted steps.
fn gated(name: &str) -> Value {
    let mut after = counted("g_after", json!({}));
    after["needs"] = json!(["gate"]);
    json!({"name": name, "version": 1, "steps": [
        counted("g_before", json!({})),
        {"id": "gate", "needs": ["g_before"], "wait": {"approval": {}}},
        after
    ]})
}

/// A timer between two counted steps.
fn napping(name: &str) -> Value {
    let mut after = counted("n_after", json!({}));
    after["needs"] = json!(["nap"]);
    json!({"name": name, "version": 1, "steps": [
        counted("n_before", json!({})),
        {"id": "nap", "needs": ["n_before"], "sleep": {"ms": 1500}},
        after
    ]})
}

/// Starts the three kinds of instance and brings each to where the crash should find it.
async fn bring_to_the_crash(node: &TestNode, c: &mut Tasks, counter: &Counter, p: &str) -> [String; 3] {
    register(node, &chain("chain", p)).await;
    register(node, &gated("gated")).await;
    register(node, &napping("napping")).await;
    counter.hold(&format!("{p}b"));
    let running = start(c, "chain", json!({})).await.id;
    eventually("step b to be running", PATIENCE, || async {
        (counter.count(&format!("{p}b")) == 1).then_some(())
    })
    .await;
    let waiting = start(c, "gated", json!({})).await.id;
    step_reaches(c, &waiting, "gate", "WAITING", PATIENCE).await;
    let sleeping = start(c, "napping", json!({})).await.id;
    step_reaches(c, &sleeping, "nap", "WAITING", PATIENCE).await;
    [running, waiting, sleeping]
}

/// After the restart: everything finishes, finished steps never ran again, the running one ran
/// once more.
async fn check_resumed(node: &TestNode, c: &mut Tasks, counter: &Counter, p: &str, ids: &[String; 3]) {
    let [running, waiting, sleeping] = ids;
    flows(node)
        .await
        .signal(v1::SignalRequest {
            task_id: waiting.clone(),
            name: "gate".into(),
            payload_json: json!({"decision": "approve"}).to_string(),
        })
        .await
        .unwrap();
    for id in ids {
        let t = finished(c, id, PATIENCE).await;
        assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    }
    assert_eq!(counter.count(&format!("{p}a")), 1, "a had SUCCEEDED: never again");
    assert_eq!(counter.count(&format!("{p}b")), 2, "b was running: retried once");
    assert_eq!(counter.count(&format!("{p}c")), 1);
    for step in ["g_before", "g_after", "n_before", "n_after"] {
        assert_eq!(counter.count(step), 1, "{step} ran once: {:?}", counter.counts());
    }
    let _ = (running, waiting, sleeping);
}

#[tokio::test]
async fn an_embedded_node_killed_mid_workflow_resumes_every_instance() {
    let counter = Counter::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = counter_config(&counter);
    let mut node = TestNode::start_in(tmp.path(), &config).await;
    let mut c = node.tasks().await;
    let ids = bring_to_the_crash(&node, &mut c, &counter, "e_").await;
    node.kill9();
    counter.release("e_b");

    let node = TestNode::start_in(tmp.path(), &config).await;
    let mut c = node.tasks().await;
    check_resumed(&node, &mut c, &counter, "e_", &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn distributed_tier0_and_supervisor_nodes_killed_mid_workflow_resume_every_instance() {
    let counter = Counter::start().await;
    let db = TestDb::create().await;
    let extra = format!("[store]\nurl = {:?}\n{}", db.url(), counter_config(&counter));
    let mut cluster = Cluster::start(SHARED_NATS, &[], &extra).await;
    cluster.supervisor_extra = counter_config(&counter);
    cluster.add_supervisor("system").await;
    cluster.wait_replicas(1).await;
    let mut c = cluster.orchestrator.tasks().await;
    let ids = bring_to_the_crash(&cluster.orchestrator, &mut c, &counter, "d_").await;

    // Tier 0 and the supervisor node running b both die without a word.
    cluster.orchestrator.kill9();
    cluster.supervisors[0].1.kill9();
    counter.release("d_b");
    let dir = cluster.tmp.path().join("orchestrator");
    let toml = Cluster::toml(cluster.tmp.path(), &cluster.prefix, &cluster.nats_url, &extra);
    cluster.orchestrator = TestNode::start_full(
        &dir,
        &toml,
        &["--role", "orchestrator"],
        &[("CADRE_NODE__ID", Some("orchestrator".into()))],
    )
    .await;
    cluster.supervisors.clear();
    cluster.add_supervisor("system").await;
    cluster.wait_replicas(1).await;
    let mut c = cluster.orchestrator.tasks().await;
    check_resumed(&cluster.orchestrator, &mut c, &counter, "d_", &ids).await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_is_restarted_by_its_supervisor_and_resumes_its_instances() {
    use cadre_core::auth::Principal;
    use cadre_core::workflows::engine::SupervisorMsg;

    let tmp = tempfile::tempdir().unwrap();
    let mut config = cadre_core::config::Config::default();
    config.node.data_dir = tmp.path().to_path_buf();
    config.server.grpc_addr = "127.0.0.1:0".into();
    config.server.http_addr = "127.0.0.1:0".into();
    let running = cadre::server::start(config, cadre_core::config::ConfigSource::default())
        .await
        .unwrap();
    let node = running.node.clone().unwrap();
    let sup = running.workflow_engine.clone().unwrap();
    let p = Principal::anonymous();
    let def = json!({"name": "nap", "version": 1, "steps": [
        {"id": "nap", "sleep": {"ms": 1500}},
        {"id": "after", "needs": ["nap"], "task": "system.debug.echo", "params": {"ok": true}}
    ]});
    node.register_workflow(&p, &def.to_string()).await.unwrap();
    let spec = crate::common::spec("workflow.nap.run", "{}");
    let (t, _) = node.submit(&p, Some(&spec)).await.unwrap();
    let id = t.id.to_string();
    eventually("the nap to start", PATIENCE, || async {
        let t = node.get(&p, &id).await.ok()?;
        (t.steps.first()?.state == "WAITING").then_some(())
    })
    .await;

    let engine = ractor::call!(sup, SupervisorMsg::Engine)
        .unwrap()
        .expect("an engine runs");
    engine.kill();
    let restarted = eventually("the engine to be restarted", PATIENCE, || async {
        let restarts = ractor::call!(sup, SupervisorMsg::Restarts).ok()?;
        let now = ractor::call!(sup, SupervisorMsg::Engine).ok()??;
        (restarts == 1 && now.get_id() != engine.get_id()).then_some(now)
    })
    .await;
    let status = ractor::call!(restarted, cadre_core::workflows::engine::EngineMsg::Status).unwrap();
    assert!(status.leading, "{status:?}");
    let done = eventually("the instance to finish", PATIENCE, || async {
        let t = node.get(&p, &id).await.ok()?;
        t.state.is_terminal().then_some(t)
    })
    .await;
    assert_eq!(done.state, cadre_proto::TaskState::Succeeded, "{done:?}");
    assert_eq!(done.result.unwrap()["after"]["ok"], true);
    drop(node);
    running.shutdown().await;
}
