//! The client API over real gRPC: round trips, paging, watch resume, idempotency, bad input.

use std::time::Duration;

use cadre_proto::v1::{self, TaskState};
use tonic::Code;

use crate::common::*;

const TEXT: &str = "Actors supervise actors. The weather was nice. Supervisors restart failed actors quickly. \
                    Lunch was pasta. Actors and supervisors form a tree of actors.";

#[tokio::test]
async fn submit_get_list_and_summarize() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let params = serde_json::json!({ "text": TEXT, "sentences": 2 }).to_string();
    let done = run(&mut c, spec("intelligence.text.summarize", &params)).await;
    assert_eq!(state(&done), TaskState::Succeeded, "{done:?}");
    assert_eq!(
        (done.supervisor.as_str(), done.worker_kind.as_str()),
        ("intelligence", "writer")
    );
    let result: serde_json::Value = serde_json::from_str(&done.result_json).unwrap();
    assert_eq!(result["sentences"].as_array().unwrap().len(), 2);
    assert_eq!(result["source_sentences"], 5);

    let fetched = get(&mut c, &done.id).await;
    assert_eq!(fetched.result_json, done.result_json);
    assert_eq!(fetched.spec.unwrap().params_json, params);

    // Five echo tasks, listed newest first in pages of two.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            run(&mut c, spec("system.debug.echo", &format!("{{\"i\":{i}}}")))
                .await
                .id,
        );
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let req = v1::ListRequest {
            task_type_prefix: "system.debug.".into(),
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let page = c.list(req).await.unwrap().into_inner();
        assert!(page.tasks.len() <= 2);
        listed.extend(page.tasks.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(listed, ids);
    let only_failed = v1::ListRequest {
        states: vec![TaskState::Failed as i32],
        ..Default::default()
    };
    assert!(c.list(only_failed).await.unwrap().into_inner().tasks.is_empty());
}

#[tokio::test]
async fn watch_streams_every_transition_and_resumes_from_any_cursor() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let t = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 200}"#)).await;
    let all = events(&mut c, &t.id, 0).await;
    let states: Vec<TaskState> = all.iter().filter(|e| !e.is_progress).map(ev_state).collect();
    assert_eq!(
        states,
        [TaskState::Queued, TaskState::Running, TaskState::Succeeded]
    );
    assert!(
        all.iter().any(|e| e.is_progress && e.progress > 0.0),
        "progress events: {all:?}"
    );
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "per-task sequence has no gaps");
        if i > 0 {
            assert!(e.cursor > all[i - 1].cursor, "cursors increase");
        }
    }
    // Resume from each cursor: exactly the remaining events, none missed or repeated.
    for (i, e) in all.iter().enumerate().take(all.len() - 1) {
        let rest = events(&mut c, &t.id, e.cursor).await;
        assert_eq!(rest, all[i + 1..].to_vec());
    }

    // A filter watch (all system.debug. events) sees a later task live, then resumes after a drop.
    let req = v1::WatchRequest {
        task_type_prefix: "system.debug.echo".into(),
        ..Default::default()
    };
    let mut stream = c.watch(req).await.unwrap().into_inner();
    let first = run(&mut c, spec("system.debug.echo", "{}")).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(stream.message().await.unwrap().unwrap());
    }
    assert!(seen.iter().all(|e| e.task_id == first.id));
    drop(stream);
    let second = run(&mut c, spec("system.debug.echo", "{}")).await;
    let req = v1::WatchRequest {
        task_type_prefix: "system.debug.echo".into(),
        after_cursor: seen.last().unwrap().cursor,
        ..Default::default()
    };
    let mut resumed = c.watch(req).await.unwrap().into_inner();
    let next = resumed.message().await.unwrap().unwrap();
    assert_eq!(
        (next.task_id.as_str(), ev_state(&next)),
        (second.id.as_str(), TaskState::Queued)
    );
}

#[tokio::test]
async fn idempotency_key_returns_the_existing_task() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let mut s = spec("system.debug.echo", r#"{"n":1}"#);
    s.idempotency_key = "order-42".into();
    let first = c
        .submit(v1::SubmitRequest {
            spec: Some(s.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    // Concurrent duplicates race on the unique index: all get the first task.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let mut c = c.clone();
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            c.submit(v1::SubmitRequest { spec: Some(s) })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    for h in handles {
        let again = h.await.unwrap();
        assert!(!again.created);
        assert_eq!(again.task.unwrap().id, first.task.as_ref().unwrap().id);
    }
    let listed = c
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), 1, "only one task was stored");
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_the_server_keeps_serving() {
    let node = TestNode::start("[limits]\nmax_params_bytes = 1024\n").await;
    let mut c = node.tasks().await;
    let good = run(&mut c, spec("system.debug.echo", r#"{"keep":"me"}"#)).await;

    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2000));
    let cases: Vec<(v1::TaskSpec, Code, &str)> = vec![
        (
            spec("nope.nothing.here", "{}"),
            Code::InvalidArgument,
            "spec.task_type",
        ),
        (spec("NotAType", "{}"), Code::InvalidArgument, "spec.task_type"),
        (
            spec("system.debug.echo", "{not json"),
            Code::InvalidArgument,
            "spec.params_json",
        ),
        (
            spec("system.debug.echo", ""),
            Code::InvalidArgument,
            "spec.params_json",
        ),
        (
            spec("system.debug.echo", &big),
            Code::ResourceExhausted,
            "spec.params_json",
        ),
        (
            v1::TaskSpec {
                priority: 10,
                ..spec("system.debug.echo", "{}")
            },
            Code::InvalidArgument,
            "spec.priority",
        ),
        (
            v1::TaskSpec {
                priority: -3,
                ..spec("system.debug.echo", "{}")
            },
            Code::InvalidArgument,
            "spec.priority",
        ),
        (
            v1::TaskSpec {
                timeout_ms: -1,
                ..spec("system.debug.echo", "{}")
            },
            Code::InvalidArgument,
            "spec.timeout_ms",
        ),
        (
            v1::TaskSpec {
                parent_id: "0190f0f0-0000-7000-8000-000000000000".into(),
                ..spec("system.debug.echo", "{}")
            },
            Code::InvalidArgument,
            "spec.parent_id",
        ),
    ];
    for (s, code, field) in cases {
        let err = c
            .submit(v1::SubmitRequest {
                spec: Some(s.clone()),
            })
            .await
            .expect_err("must be refused");
        assert_eq!(err.code(), code, "{s:?}: {err:?}");
        assert!(
            err.message().contains(field),
            "{s:?}: message {:?} names {field}",
            err.message()
        );
    }
    let err = c.submit(v1::SubmitRequest { spec: None }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    for id in ["", "not-a-uuid", "0190f0f0-0000-7000-8000-000000000000"] {
        let code = if id.len() == 36 {
            Code::NotFound
        } else {
            Code::InvalidArgument
        };
        assert_eq!(
            c.get(v1::GetRequest { id: id.into() }).await.unwrap_err().code(),
            code,
            "get {id:?}"
        );
        let cancel = v1::CancelRequest {
            id: id.into(),
            reason: String::new(),
        };
        assert_eq!(c.cancel(cancel).await.unwrap_err().code(), code, "cancel {id:?}");
    }
    let bad_page = v1::ListRequest {
        page_size: 5000,
        ..Default::default()
    };
    assert_eq!(c.list(bad_page).await.unwrap_err().code(), Code::InvalidArgument);
    let bad_state = v1::ListRequest {
        states: vec![42],
        ..Default::default()
    };
    assert_eq!(c.list(bad_state).await.unwrap_err().code(), Code::InvalidArgument);
    let bad_watch = v1::WatchRequest {
        task_id: "zzz".into(),
        ..Default::default()
    };
    assert_eq!(
        c.watch(bad_watch).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // A message above the transport limit (4 MiB) is refused by the transport.
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(5 << 20));
    let err = c
        .submit(v1::SubmitRequest {
            spec: Some(spec("system.debug.echo", &huge)),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{err:?}"
    );

    // Still serving, nothing lost.
    let mut c = node.tasks().await;
    assert_eq!(get(&mut c, &good.id).await.result_json, good.result_json);
    assert_eq!(
        state(&run(&mut c, spec("system.debug.echo", "{}")).await),
        TaskState::Succeeded
    );
    for (supervisor, kind, replicas, code) in [
        ("nope", "x", 1, Code::NotFound),
        ("system", "nope", 1, Code::NotFound),
        ("system", "monitor", 100_000, Code::InvalidArgument),
    ] {
        let req = v1::ScaleRequest {
            supervisor: supervisor.into(),
            worker_kind: kind.into(),
            replicas,
        };
        assert_eq!(
            node.admin().await.scale(req).await.unwrap_err().code(),
            code,
            "scale {supervisor}/{kind}"
        );
    }
}

#[tokio::test]
async fn health_reflection_ready_and_metrics() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let node = TestNode::start("").await;
    let mut health = HealthClient::new(node.channel().await);
    let resp = health
        .check(HealthCheckRequest {
            service: "cadre.v1.TaskService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, 1, "SERVING");

    let mut refl = ServerReflectionClient::new(node.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for svc in [
        "cadre.v1.TaskService",
        "cadre.v1.AdminService",
        "cadre.v1.SupervisorPeer",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == svc), "{svc} in {names:?}");
    }

    assert_eq!(node.http_get("/health").await.0, 200);
    assert_eq!(node.http_get("/ready").await.0, 200);
    let mut c = node.tasks().await;
    for _ in 0..3 {
        run(&mut c, spec("system.debug.echo", "{}")).await;
    }
    let failed = run(
        &mut c,
        fast_retry(spec("system.debug.fail", r#"{"retryable": false}"#), 1),
    )
    .await;
    assert_eq!(state(&failed), TaskState::Failed);
    assert_eq!(node.metric("cadre_tasks_submitted_total").await, Some(4.0));
    assert_eq!(
        node.metric("cadre_tasks_completed_total{state=\"SUCCEEDED\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        node.metric("cadre_tasks_completed_total{state=\"FAILED\"}").await,
        Some(1.0)
    );
    assert_eq!(
        node.metric("cadre_pool_size{supervisor=\"system\",kind=\"monitor\"}")
            .await,
        Some(4.0)
    );
    assert_eq!(
        node.metric("cadre_queue_depth{supervisor=\"system\"}").await,
        Some(0.0)
    );
    let (_, body) = node.http_get("/metrics").await;
    assert!(body.contains("cadre_task_duration_seconds_bucket"), "{body}");
}

#[tokio::test]
async fn delegate_records_the_parent_and_get_shows_children() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let parent = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 300}"#)).await;
    let mut peer = node.peer_as(Some(&node.credential())).await;
    let child = peer
        .delegate(v1::DelegateRequest {
            parent_id: parent.id.clone(),
            spec: Some(spec("system.debug.echo", r#"{"sub":1}"#)),
            wait_ms: 0,
            tenant: String::new(),
            parent_depth: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&child), TaskState::Succeeded);
    assert_eq!(child.spec.unwrap().parent_id, parent.id);
    assert_eq!(get(&mut c, &parent.id).await.children, vec![child.id.clone()]);
    let kids = c
        .list(v1::ListRequest {
            parent_id: parent.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kids.tasks.len(), 1);
    let st = peer
        .status(v1::PeerStatusRequest {
            supervisor: "intelligence".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.pools.iter().any(|p| p.worker_kind == "writer"));
    let missing = peer
        .status(v1::PeerStatusRequest {
            supervisor: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn cli_commands_work_against_a_node_and_fail_with_one_line() {
    let node = TestNode::start("").await;
    let cadre = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .args(["--endpoint", &node.grpc, "--token", &node.credential()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cadre(&[
        "submit",
        "system.debug.echo",
        r#"{"hello":"cli"}"#,
        "--wait",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["state"], "SUCCEEDED");
    assert_eq!(task["result"]["hello"], "cli");
    let id = task["id"].as_str().unwrap();
    let out = cadre(&["get", id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCEEDED"));
    let out = cadre(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("supervisor intelligence") && text.contains("writer"),
        "{text}"
    );
    let out = cadre(&["tasks", "--state", "succeeded"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    let out = cadre(&["submit", "system.debug.fail", r#"{"retryable":false}"#, "--wait"]);
    assert_eq!(out.status.code(), Some(2), "a failed task exits 2");
    let out = cadre(&["scale", "system", "health", "3"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("target 3"),
        "{out:?}"
    );

    let out = cadre(&["get", "0190f0f0-0000-7000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: NotFound"), "{err}");

    // The CLI finds a node started on port 0 through its data dir.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["--data-dir", node.dir.join("data").to_str().unwrap(), "get", id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // config check: the effective config of a valid file; one clear error for a bad one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["config", "check"])
        .arg(node.config_path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[supervisors.intelligence.pools]"));
    let bad = node.dir.join("bad.toml");
    std::fs::write(&bad, "[supervisors.system.pools]\nmonitor = 5000\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("supervisors.system.pools.monitor"));
}

#[tokio::test]
async fn serve_takes_env_config_and_logs_json_lines() {
    use tokio::io::AsyncBufReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["serve", "--log-json", "--http-addr", "127.0.0.1:0"])
        .current_dir(tmp.path())
        .env("CADRE_SERVER__GRPC_ADDR", "127.0.0.1:0")
        .env("CADRE_NODE__DATA_DIR", tmp.path().join("env-data"))
        .env("CADRE_NODE__ID", "from-env")
        .env("CADRE_ENDPOINT", "http://ignored-by-serve:1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut serving = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if line.starts_with("cadre serving gRPC") {
            break;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "cadre serving" {
            serving = Some(v);
        }
    }
    let serving = serving.expect("a JSON 'cadre serving' line");
    assert_eq!(serving["level"], "INFO");
    assert!(
        tmp.path().join("env-data").join("endpoints.json").exists(),
        "data dir taken from the environment"
    );
    let ep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("env-data").join("endpoints.json")).unwrap(),
    )
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(ep["grpc"].as_str().unwrap().to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let cred = cadre_client::Bearer::from_data_dir(&tmp.path().join("env-data"));
    let bearer = TestNode::bearer(cred.as_deref());
    let st = v1::admin_service_client::AdminServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.node_id, "from-env", "CADRE_NODE__ID reached the config");
    let changes = v1::admin_service_client::AdminServiceClient::with_interceptor(channel, bearer)
        .reload_config(v1::ReloadConfigRequest {})
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert!(
        changes.is_empty(),
        "reload re-applies flags and env, so nothing changed: {changes:?}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_one_task_watch_ends_at_the_terminal_event_even_when_its_filter_hides_it() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    let t = submit(&mut c, spec("system.debug.sleep", r#"{"ms": 100}"#)).await;
    let req = v1::WatchRequest {
        task_id: t.id.clone(),
        states: vec![TaskState::Running as i32],
        ..Default::default()
    };
    let mut s = c.watch(req).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("the stream ends")
        .unwrap()
    {
        seen.push(ev_state(&e));
    }
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s == TaskState::Running),
        "{seen:?}"
    );
}

#[tokio::test]
async fn cli_output_into_a_closed_pipe_exits_quietly() {
    let node = TestNode::start("").await;
    let mut t = node.tasks().await;
    run(&mut t, spec("system.debug.echo", "{}")).await;
    // The reader goes away before the CLI prints (like `cadre tasks | head -0`).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .arg("--data-dir")
        .arg(node.dir.join("data"))
        .args(["tasks", "--limit", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(141),
        "exit like a shell tool on SIGPIPE: {stderr}"
    );
    node.stop().await;
}
