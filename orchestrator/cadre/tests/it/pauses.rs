//! Pause and resume: a paused pool, type prefix or tenant keeps its tasks QUEUED (new ones are
//! accepted), running tasks finish, a resume runs the held tasks in submit order; pauses are
//! audited, checked (role, tenant, NOT_FOUND), shown by status and metrics, survive restarts
//! on SQLite and PostgreSQL, reach other tier-0 replicas, and reach supervisor nodes (again
//! after they restart).

use std::path::Path;
use std::time::Duration;

use cadre_proto::v1::{self, TaskState};
use sqlx::sqlite::SqlitePoolOptions;
use tonic::Code;

use crate::common::cluster::{Cluster, SHARED_NATS};
use crate::common::*;

/// One pool of one worker, so the order tasks run in is the order they start.
const ONE_MONITOR: &str = "[supervisors.system.pools]\nmonitor = 1\n";

fn pool_scope(supervisor: &str, kind: &str) -> v1::Pause {
    v1::Pause {
        scope: "pool".into(),
        supervisor: supervisor.into(),
        worker_kind: kind.into(),
        ..Default::default()
    }
}

fn prefix_scope(prefix: &str) -> v1::Pause {
    v1::Pause {
        scope: "task_type_prefix".into(),
        prefix: prefix.into(),
        ..Default::default()
    }
}

fn tenant_scope(tenant: &str) -> v1::Pause {
    v1::Pause {
        scope: "tenant".into(),
        tenant: tenant.into(),
        ..Default::default()
    }
}

async fn pause(admin: &mut Admin, p: v1::Pause) -> Result<v1::PauseResponse, tonic::Status> {
    admin
        .pause(v1::PauseRequest { pause: Some(p) })
        .await
        .map(|r| r.into_inner())
}

async fn resume(admin: &mut Admin, p: v1::Pause) -> Result<bool, tonic::Status> {
    admin
        .resume(v1::ResumeRequest { pause: Some(p) })
        .await
        .map(|r| r.into_inner().resumed)
}

async fn wait_state(c: &mut Tasks, id: &str, want: TaskState) -> v1::Task {
    eventually(&format!("task {id} {want:?}"), Duration::from_secs(30), || {
        let mut c = c.clone();
        async move {
            let t = get(&mut c, id).await;
            (state(&t) == want).then_some(t)
        }
    })
    .await
}

/// The cursor of a task's RUNNING event (when it started).
async fn started_at(c: &mut Tasks, id: &str) -> u64 {
    events(c, id, 0)
        .await
        .iter()
        .find(|e| ev_state(e) == TaskState::Running && !e.is_progress)
        .expect("it ran")
        .cursor
}

/// Audit rows (action, target, outcome) of a node's SQLite store.
async fn audit_rows(data: &Path) -> Vec<(String, String, String)> {
    let url = format!("sqlite:{}?mode=ro", data.join("cadre.db").display());
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let rows = sqlx::query_as("SELECT action, target, outcome FROM audit ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    rows
}

#[tokio::test]
async fn a_paused_pool_holds_its_queue_running_tasks_finish_and_resume_runs_them_in_order() {
    let node = TestNode::start(ONE_MONITOR).await;
    let mut c = node.tasks().await;
    let mut admin = node.admin().await;
    let long = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 1500}"#)).await;
    wait_state(&mut c, &long.id, TaskState::Running).await;

    let first = pause(&mut admin, pool_scope("system", "monitor")).await.unwrap();
    assert!(first.created);
    let p = first.pause.unwrap();
    assert_eq!(
        (p.scope.as_str(), p.supervisor.as_str(), p.worker_kind.as_str()),
        ("pool", "system", "monitor")
    );
    assert!(p.paused_at_ms > 0 && !p.paused_by.is_empty(), "{p:?}");
    let again = pause(&mut admin, pool_scope("system", "monitor")).await.unwrap();
    assert!(!again.created, "pausing twice changes nothing");
    assert_eq!(again.pause.unwrap().paused_at_ms, p.paused_at_ms);

    let mut held = Vec::new();
    for i in 0..5 {
        let t = submit(&mut c, spec("system.debug.echo", &format!(r#"{{"n": {i}}}"#))).await;
        assert_eq!(state(&t), TaskState::Queued, "accepted while paused");
        held.push(t.id);
    }
    // The running task finishes; other pools keep working meanwhile.
    wait_state(&mut c, &long.id, TaskState::Succeeded).await;
    let other = run(
        &mut c,
        spec("intelligence.text.keywords", r#"{"text": "pause resume pause"}"#),
    )
    .await;
    assert_eq!(state(&other), TaskState::Succeeded, "{other:?}");
    for id in &held {
        assert_eq!(
            state(&get(&mut c, id).await),
            TaskState::Queued,
            "held by the pause"
        );
    }

    let st = node.status().await;
    assert!(
        st.pauses
            .iter()
            .any(|p| p.scope == "pool" && p.worker_kind == "monitor"),
        "{st:?}"
    );
    assert_eq!(
        node.metric("cadre_pool_paused{supervisor=\"system\",kind=\"monitor\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        node.metric("cadre_pool_paused{supervisor=\"system\",kind=\"health\"}")
            .await,
        Some(0.0)
    );
    assert_eq!(
        node.metric("cadre_paused{scope=\"pool\",name=\"system/monitor\"}")
            .await,
        Some(1.0)
    );

    assert!(resume(&mut admin, pool_scope("system", "monitor")).await.unwrap());
    assert!(
        !resume(&mut admin, pool_scope("system", "monitor")).await.unwrap(),
        "idempotent"
    );
    let mut starts = Vec::new();
    for id in &held {
        wait_state(&mut c, id, TaskState::Succeeded).await;
        starts.push(started_at(&mut c, id).await);
    }
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "submit order: {starts:?}");
    assert_eq!(
        node.metric("cadre_paused{scope=\"pool\",name=\"system/monitor\"}")
            .await,
        Some(0.0)
    );
    assert!(node.status().await.pauses.is_empty());

    let data = node.dir.join("data");
    let rows = eventually("pause and resume audited", Duration::from_secs(10), || {
        let data = data.clone();
        async move {
            let rows = audit_rows(&data).await;
            let has = |a: &str| {
                rows.iter()
                    .any(|(x, t, o)| x == a && t == "pool:system/monitor" && o == "ok")
            };
            (has("admin.pause") && has("admin.resume")).then_some(rows)
        }
    })
    .await;
    assert_eq!(
        rows.iter().filter(|(a, _, _)| a == "admin.pause").count(),
        2,
        "each call is recorded, the repeat too: {rows:?}"
    );
}

#[tokio::test]
async fn type_prefix_and_tenant_pauses_hold_only_their_tasks() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let mut admin = node.admin().await;

    pause(&mut admin, prefix_scope("system.debug.sl")).await.unwrap();
    let slept = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 1}"#)).await;
    let echoed = run(&mut c, spec("system.debug.echo", r#"{"a": 1}"#)).await;
    assert_eq!(state(&echoed), TaskState::Succeeded, "same pool, another type");
    assert_eq!(state(&get(&mut c, &slept.id).await), TaskState::Queued);
    assert!(resume(&mut admin, prefix_scope("system.debug.sl")).await.unwrap());
    wait_state(&mut c, &slept.id, TaskState::Succeeded).await;

    let acme_op = issue(&node, "acme", "operator").await;
    let beta_op = issue(&node, "beta", "operator").await;
    let beta_sup = issue(&node, "beta", "supervisor").await;
    let mut acme = node.tasks_as(Some(&acme_op)).await;
    let mut beta = node.tasks_as(Some(&beta_op)).await;
    let mut beta_admin = node.admin_as(Some(&beta_sup)).await;

    // Only commanders may pause another tenant; a supervisor of beta pauses beta.
    let refused = pause(&mut beta_admin, tenant_scope("acme")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let own = pause(&mut beta_admin, tenant_scope("")).await.unwrap();
    assert_eq!(own.pause.unwrap().tenant, "beta");
    pause(&mut admin, tenant_scope("acme")).await.unwrap();

    let a = submit(&mut acme, spec("system.debug.echo", "{}")).await;
    let b = submit(&mut beta, spec("system.debug.echo", "{}")).await;
    let other = run(&mut c, spec("system.debug.echo", "{}")).await;
    assert_eq!(
        state(&other),
        TaskState::Succeeded,
        "tenant default is not paused"
    );
    assert_eq!(state(&get(&mut acme, &a.id).await), TaskState::Queued);
    assert_eq!(state(&get(&mut beta, &b.id).await), TaskState::Queued);

    // beta's supervisor sees its own tenant pause, not acme's; the commander sees both.
    let seen: Vec<String> = beta_admin
        .list_pauses(v1::ListPausesRequest {})
        .await
        .unwrap()
        .into_inner()
        .pauses
        .into_iter()
        .map(|p| p.tenant)
        .collect();
    assert_eq!(seen, vec!["beta".to_string()]);
    let all = admin
        .list_pauses(v1::ListPausesRequest {})
        .await
        .unwrap()
        .into_inner()
        .pauses;
    assert_eq!(all.len(), 2, "{all:?}");

    assert!(resume(&mut admin, tenant_scope("acme")).await.unwrap());
    wait_state(&mut acme, &a.id, TaskState::Succeeded).await;
    assert_eq!(
        state(&get(&mut beta, &b.id).await),
        TaskState::Queued,
        "beta still paused"
    );
    assert!(resume(&mut beta_admin, tenant_scope("")).await.unwrap());
    wait_state(&mut beta, &b.id, TaskState::Succeeded).await;
}

#[tokio::test]
async fn pauses_need_the_supervisor_role_known_names_and_sane_input() {
    let node = TestNode::start("").await;
    let op = issue(&node, "default", "operator").await;
    let mut as_op = node.admin_as(Some(&op)).await;
    let mut admin = node.admin().await;

    let e = pause(&mut as_op, pool_scope("system", "monitor"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = resume(&mut as_op, pool_scope("system", "monitor"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = as_op.list_pauses(v1::ListPausesRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let e = pause(&mut admin, pool_scope("nosuch", "writer"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = pause(&mut admin, pool_scope("intelligence", "nosuch"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let sup = v1::Pause {
        scope: "supervisor".into(),
        supervisor: "nosuch".into(),
        ..Default::default()
    };
    assert_eq!(pause(&mut admin, sup).await.unwrap_err().code(), Code::NotFound);
    let e = resume(&mut admin, pool_scope("nosuch", "writer"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    for bad in [
        v1::Pause {
            scope: "galaxy".into(),
            ..Default::default()
        },
        prefix_scope(""),
        prefix_scope(&"x".repeat(300)),
        v1::Pause {
            reason: "r".repeat(2000),
            ..prefix_scope("a.")
        },
    ] {
        let e = pause(&mut admin, bad.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
    }
    let e = admin.pause(v1::PauseRequest { pause: None }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        admin
            .list_pauses(v1::ListPausesRequest {})
            .await
            .unwrap()
            .into_inner()
            .pauses
            .is_empty(),
        "nothing refused was stored"
    );
    let data = node.dir.join("data");
    eventually("the refusal audited", Duration::from_secs(10), || {
        let data = data.clone();
        async move {
            let rows = audit_rows(&data).await;
            rows.iter()
                .any(|(a, _, o)| a == "admin.pause" && o == "denied")
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn the_json_api_pauses_lists_and_resumes() {
    let node = TestNode::start("").await;
    let auth = format!("Bearer {}", node.credential());
    let h = [("Authorization", auth.as_str())];
    let body = serde_json::json!({"scope": "pool", "supervisor": "intelligence", "worker_kind": "writer", "reason": "maintenance"});
    let (code, _, text) = http_exchange(&node, "POST", "/v1/pauses", &h, Some(&body.to_string())).await;
    assert_eq!(code, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["created"], true);
    assert_eq!(v["pause"]["reason"], "maintenance");
    let (code, _, _) = http_exchange(&node, "POST", "/v1/pauses", &h, Some(&body.to_string())).await;
    assert_eq!(code, 200, "already paused");

    let (code, list) = node.http_get("/v1/pauses").await;
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["pauses"][0]["worker_kind"], "writer", "{list}");

    let missing = serde_json::json!({"scope": "pool", "supervisor": "intelligence", "worker_kind": "nosuch"});
    let (code, _, text) = http_exchange(&node, "POST", "/v1/pauses", &h, Some(&missing.to_string())).await;
    assert_eq!(code, 404, "{text}");
    let (code, _, text) = http_exchange(
        &node,
        "POST",
        "/v1/pauses",
        &h,
        Some(r#"{"scope": "pool", "bogus": 1}"#),
    )
    .await;
    assert_eq!(code, 400, "{text}");
    let op = format!("Bearer {}", issue(&node, "default", "operator").await);
    let (code, _, _) = http_exchange(
        &node,
        "POST",
        "/v1/pauses",
        &[("Authorization", op.as_str())],
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(code, 403);

    let path = "/v1/pauses?scope=pool&supervisor=intelligence&worker_kind=writer";
    let (code, _, text) = http_exchange(&node, "DELETE", path, &h, None).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["resumed"],
        true
    );
    let (_, _, text) = http_exchange(&node, "DELETE", path, &h, None).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["resumed"],
        false
    );
}

#[tokio::test]
async fn the_cli_pauses_lists_and_resumes() {
    let node = TestNode::start("").await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .args(["--endpoint", &node.grpc, "--token", &node.credential()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["pause", "pool", "intelligence", "writer", "--reason", "deploy"]);
    assert!(ok && out.contains("paused pool intelligence/writer"), "{out}");
    let (ok, out) = cli(&["pause", "type", "intelligence.text."]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["pause", "tenant", "acme"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["pause", "supervisor", "multimodal"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["pauses"]);
    assert!(ok, "{out}");
    for want in [
        "pool intelligence/writer",
        "task_type_prefix intelligence.text.",
        "tenant acme",
        "supervisor multimodal",
        "deploy",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // `cadre status` marks the paused pools and lists what is paused.
    let (ok, out) = cli(&["status"]);
    assert!(ok, "{out}");
    let writer = out
        .lines()
        .find(|l| l.contains(" writer "))
        .expect("the writer pool");
    assert!(writer.ends_with("[paused]"), "{out}");
    let coder = out
        .lines()
        .find(|l| l.contains(" coder "))
        .expect("the coder pool");
    assert!(!coder.contains("[paused]"), "{out}");
    let vision = out
        .lines()
        .find(|l| l.contains(" vision "))
        .expect("the vision pool");
    assert!(vision.ends_with("[paused]"), "its supervisor is paused: {out}");
    let listed = out
        .lines()
        .find(|l| l.starts_with("paused: "))
        .expect("the pauses line");
    assert!(
        listed.contains("pool intelligence/writer") && listed.contains("tenant acme"),
        "{out}"
    );
    let (ok, out) = cli(&["pause", "pool", "intelligence", "nosuch"]);
    assert!(
        !ok && out.contains("NotFound") || out.to_lowercase().contains("not found"),
        "{out}"
    );
    for target in [
        &["pool", "intelligence", "writer"][..],
        &["type", "intelligence.text."],
        &["tenant", "acme"],
        &["supervisor", "multimodal"],
    ] {
        let mut args = vec!["resume"];
        args.extend_from_slice(target);
        let (ok, out) = cli(&args);
        assert!(ok && out.contains("resumed"), "{out}");
    }
    let (ok, out) = cli(&["pauses", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["pauses"].as_array().unwrap().len(), 0);
}

/// Pauses `system/monitor`, submits a task held by it, restarts the node (same data dir,
/// same store) and checks the task is still held, then resumes.
async fn survives_a_restart(dir: &Path, toml: &str) {
    let node = TestNode::start_in(dir, toml).await;
    pause(&mut node.admin().await, pool_scope("system", "monitor"))
        .await
        .unwrap();
    let mut c = node.tasks().await;
    let held = submit(&mut c, spec("system.debug.echo", "{}")).await;
    node.stop().await;

    let node = TestNode::start_in(dir, toml).await;
    let mut c = node.tasks().await;
    let mut admin = node.admin().await;
    let listed = admin
        .list_pauses(v1::ListPausesRequest {})
        .await
        .unwrap()
        .into_inner()
        .pauses;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let other = run(
        &mut c,
        spec("intelligence.text.keywords", r#"{"text": "still here"}"#),
    )
    .await;
    assert_eq!(state(&other), TaskState::Succeeded);
    let held_after = held.clone();
    let t = get(&mut c, &held_after.id).await;
    assert_eq!(
        state(&t),
        TaskState::Queued,
        "still held after the restart: {t:?}"
    );
    assert!(resume(&mut admin, pool_scope("system", "monitor")).await.unwrap());
    wait_state(&mut c, &held.id, TaskState::Succeeded).await;
    node.stop().await;
}

#[tokio::test]
async fn a_pause_survives_a_restart_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    survives_a_restart(tmp.path(), "").await;
}

#[tokio::test]
async fn a_pause_survives_a_restart_on_postgres() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().unwrap();
    survives_a_restart(tmp.path(), &format!("[store]\nurl = {:?}\n", db.url())).await;
}

#[tokio::test]
async fn a_pause_made_on_one_replica_applies_on_another() {
    let db = TestDb::create().await;
    let toml = format!("[store]\nurl = {:?}\n{ONE_MONITOR}", db.url());
    let a = TestNode::start(&toml).await;
    let b = TestNode::start(&toml).await;
    pause(&mut a.admin().await, pool_scope("system", "monitor"))
        .await
        .unwrap();
    // B shows what is stored at once, and sends it to its supervisors within DELIVER_EVERY
    // (2 s); its gauge says when it has.
    assert_eq!(b.status().await.pauses.len(), 1, "B reads the shared store");
    eventually("replica B applies the pause", Duration::from_secs(15), || async {
        let series = "cadre_paused{scope=\"pool\",name=\"system/monitor\"}";
        (b.metric(series).await == Some(1.0)).then_some(())
    })
    .await;
    let mut cb = b.tasks().await;
    let held = submit(&mut cb, spec("system.debug.echo", "{}")).await;
    let other = run(&mut cb, spec("intelligence.text.keywords", r#"{"text": "b"}"#)).await;
    assert_eq!(state(&other), TaskState::Succeeded);
    assert_eq!(state(&get(&mut cb, &held.id).await), TaskState::Queued);
    assert!(
        resume(&mut a.admin().await, pool_scope("system", "monitor"))
            .await
            .unwrap()
    );
    wait_state(&mut cb, &held.id, TaskState::Succeeded).await;
}

#[tokio::test]
async fn a_pause_reaches_supervisor_nodes_and_survives_their_restart() {
    let mut cluster = Cluster::start(SHARED_NATS, &[("intelligence", 1), ("multimodal", 1)], "").await;
    cluster.wait_replicas(2).await;
    let mut admin = cluster.orchestrator.admin().await;
    pause(&mut admin, pool_scope("intelligence", "writer"))
        .await
        .unwrap();
    let mut c = cluster.orchestrator.tasks().await;
    let held = submit(&mut c, spec("intelligence.debug.echo", "{}")).await;
    let other = run(&mut c, spec("multimodal.debug.echo", "{}")).await;
    assert_eq!(state(&other), TaskState::Succeeded, "{other:?}");
    assert_eq!(state(&get(&mut c, &held.id).await), TaskState::Queued);

    // Restart the intelligence node: it comes back with an empty set and gets tier 0's again.
    let (kind, node) = cluster.supervisors.remove(0);
    assert_eq!(kind, "intelligence");
    let dir = node.dir.clone();
    node.stop().await;
    let toml = Cluster::toml(cluster.tmp.path(), &cluster.prefix, &cluster.nats_url, "");
    let env = [("CADRE_NODE__ID", Some("intelligence-0".to_string()))];
    let restarted = TestNode::start_full(
        &dir,
        &toml,
        &["--role", "supervisor", "--supervisor", "intelligence"],
        &env,
    )
    .await;
    cluster.supervisors.push((kind, restarted));
    cluster.wait_replicas(2).await;
    let probe = run(&mut c, spec("multimodal.debug.sleep", r#"{"ms": 3000}"#)).await;
    assert_eq!(state(&probe), TaskState::Succeeded);
    // Still held: it has not run. (Its redelivery to the restarted node is counted as a
    // lost attempt, as for any task a node had taken but not started: the node cannot tell
    // the two apart. A known limit, in the README.)
    let seen = get(&mut c, &held.id).await;
    assert!(
        matches!(state(&seen), TaskState::Queued | TaskState::Retrying),
        "still held after the supervisor node restarted: {seen:?}"
    );
    let mut stream = c
        .watch(v1::WatchRequest {
            task_id: held.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ran = false;
    // The stored events so far (the stream stays open: the task has not ended).
    while let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
        ran |= ev_state(&e) == TaskState::Running;
    }
    assert!(!ran, "a held task never starts while its pool is paused");

    assert!(
        resume(&mut admin, pool_scope("intelligence", "writer"))
            .await
            .unwrap()
    );
    wait_state(&mut c, &held.id, TaskState::Succeeded).await;
    cluster.cleanup().await;
}
