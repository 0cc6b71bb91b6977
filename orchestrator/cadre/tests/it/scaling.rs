//! Live scaling: pools resize while tasks run, through Scale, ReloadConfig and SIGHUP.

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};

use crate::common::*;

async fn scale(node: &TestNode, replicas: u32) -> v1::PoolStatus {
    let req = v1::ScaleRequest {
        supervisor: "system".into(),
        worker_kind: "monitor".into(),
        replicas,
    };
    node.admin()
        .await
        .scale(req)
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap()
}

#[tokio::test]
async fn scaling_up_and_down_under_load_loses_no_task() {
    let node = TestNode::start("").await;
    let c = node.tasks().await;
    let mut handles = Vec::new();
    for w in 0..10 {
        let mut c = c.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..100 {
                let s = spec(
                    "system.debug.sleep",
                    &format!("{{\"ms\": {}}}", 5 + (w * 7 + i) % 20),
                );
                ids.push(submit(&mut c, s).await.id);
            }
            ids
        }));
    }
    let grown = scale(&node, 16).await;
    assert_eq!(grown.target_size, 16);
    assert_eq!(grown.live_workers, 16, "growing is immediate");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let shrunk = scale(&node, 2).await;
    assert_eq!(shrunk.target_size, 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    scale(&node, 8).await;

    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.unwrap());
    }
    assert_eq!(ids.len(), 1000);
    node.wait_idle(Duration::from_secs(60)).await;
    let mut c = c.clone();
    for id in &ids {
        let t = get(&mut c, id).await;
        assert_eq!(state(&t), TaskState::Succeeded, "{t:?}");
        assert_eq!(t.attempt, 1, "no task was interrupted by scaling");
    }
    let p = eventually("pool drained to 8", Duration::from_secs(10), || {
        let node = &node;
        async move {
            let p = pool(node, "system", "monitor").await;
            (p.live_workers == 8).then_some(p)
        }
    })
    .await;
    assert_eq!((p.target_size, p.restarts), (8, 0));
    assert_eq!(
        node.metric("cadre_pool_size{supervisor=\"system\",kind=\"monitor\"}")
            .await,
        Some(8.0)
    );
}

#[tokio::test]
async fn config_reload_by_rpc_and_sighup_resizes_pools_and_adds_routes() {
    let node = TestNode::start("").await;
    let path = node.config_path();
    let base = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, format!("{base}\n[supervisors.system.pools]\nhealth = 5\n")).unwrap();
    let changes = reload(&node).await;
    assert!(
        changes.iter().any(|c| c.contains("system/health: 2 -> 5")),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 1, "only the pool changed: {changes:?}");
    assert_eq!(pool(&node, "system", "health").await.live_workers, 5);

    // SIGHUP: a new pool, a new route to it, and a change that needs a restart (reported, not applied).
    std::fs::write(
        &path,
        format!(
            "{}\n[supervisors.system.pools]\nhealth = 1\nprobe = 2\n[routes.\"system.probe.echo\"]\nsupervisor = \"system\"\nworker = \"probe\"\nexecutor = \"echo\"\n",
            base.replace("level = \"warn\"", "level = \"warn\"\njson = true")
        ),
    )
    .unwrap();
    node.signal("HUP");
    let p = eventually("probe pool created", Duration::from_secs(10), || {
        let node = &node;
        async move {
            let st = node.status().await;
            st.supervisors
                .into_iter()
                .flat_map(|s| s.pools)
                .find(|p| p.worker_kind == "probe")
        }
    })
    .await;
    assert_eq!(p.live_workers, 2);
    eventually("health drained to 1", Duration::from_secs(10), || {
        let node = &node;
        async move { (pool(node, "system", "health").await.live_workers == 1).then_some(()) }
    })
    .await;
    let mut c = node.tasks().await;
    let t = run(&mut c, spec("system.probe.echo", r#"{"via":"new route"}"#)).await;
    assert_eq!(
        (state(&t), t.worker_kind.as_str()),
        (TaskState::Succeeded, "probe")
    );

    // A broken file is refused and changes nothing.
    std::fs::write(
        &path,
        format!("{base}\n[supervisors.system.pools]\nhealth = 99999\n"),
    )
    .unwrap();
    let err = node
        .admin()
        .await
        .reload_config(v1::ReloadConfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("supervisors.system.pools.health"),
        "{}",
        err.message()
    );
    assert_eq!(pool(&node, "system", "health").await.target_size, 1);

    // Executor settings are read at start: a change is reported, not applied (a fortress task
    // must never be judged by settings its executor does not run with).
    std::fs::write(
        &path,
        format!("{base}\n[executors.exec.commands.upper]\nprogram = \"/usr/bin/tr\"\n"),
    )
    .unwrap();
    let changes = reload(&node).await;
    assert!(
        changes
            .iter()
            .any(|c| c == "executors: changed in the file; takes effect after a restart"),
        "{changes:?}"
    );
    let mut c = node.tasks().await;
    let t = run(&mut c, spec("system.exec.run", r#"{"command":"upper"}"#)).await;
    assert_eq!(
        state(&t),
        TaskState::Failed,
        "the command is not there yet: {t:?}"
    );
    assert!(t.error.contains("upper"), "{}", t.error);

    // Workflow files and the bus are read at start too: reported, not applied.
    let flow = path.with_file_name("flow.json");
    std::fs::write(
        &flow,
        r#"{"name": "later", "version": 1, "steps": [{"id": "a", "task": "system.debug.echo"}]}"#,
    )
    .unwrap();
    std::fs::write(
        &path,
        format!("{base}\n[workflows]\nfiles = [{flow:?}]\n[bus]\npeer_ttl_ms = 12345\n"),
    )
    .unwrap();
    let changes = reload(&node).await;
    for section in ["workflows", "bus"] {
        let want = format!("{section}: changed in the file; takes effect after a restart");
        assert!(changes.contains(&want), "{changes:?}");
    }
}

/// Reloads the node's config by RPC; the changes it reports.
async fn reload(node: &TestNode) -> Vec<String> {
    node.admin()
        .await
        .reload_config(v1::ReloadConfigRequest {})
        .await
        .expect("reload")
        .into_inner()
        .changes
}
