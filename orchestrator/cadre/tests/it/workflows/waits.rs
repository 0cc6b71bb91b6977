//! Waits, timers and approvals on a real node: an approval decided through every face
//! (gRPC, the JSON API, MCP, the CLI), who decided recorded in the step and the audit chain; a
//! signal sent before its wait starts; a timeout taking the default; a durable timer; and the
//! refusals (another tenant, too low a role, an unknown or finished instance, a name nothing
//! waits for, a malformed approval).

use std::time::Duration;

use cadre_proto::v1;
use serde_json::{Value, json};
use tonic::Code;

use super::{finished, flows, flows_as, register, result, start, step_output, step_reaches, step_state};
use crate::clients::mcp_post;
use crate::common::{TestNode, cadre_audit, http_exchange, issue, state};

const PATIENCE: Duration = Duration::from_secs(30);

/// An approval step, then a step that reports what was decided.
fn approval_flow() -> Value {
    json!({"name": "refund", "version": 1, "steps": [
        {"id": "check", "wait": {"approval": {"role": "operator", "prompt": "Refund ${{ input.amount }}?"}}},
        {"id": "pay", "needs": ["check"], "task": "system.debug.echo",
         "params": {"by": "${{ steps.check.output.by }}", "comment": "${{ steps.check.output.comment }}"}}
    ]})
}

fn signal(task_id: &str, name: &str, payload: Value) -> v1::SignalRequest {
    v1::SignalRequest {
        task_id: task_id.into(),
        name: name.into(),
        payload_json: payload.to_string(),
    }
}

#[tokio::test]
async fn an_approval_is_decided_through_every_face_and_audited() {
    let node = TestNode::start("").await;
    register(&node, &approval_flow()).await;
    let op = issue(&node, "default", "operator").await;
    let mut c = node.tasks_as(Some(&op)).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let t = start(&mut c, "refund", json!({"amount": 12})).await;
        let t = step_reaches(&c, &t.id, "check", "WAITING", PATIENCE).await;
        let wait = &t.steps.iter().find(|s| s.id == "check").unwrap().waiting[0];
        assert_eq!(
            (wait.kind.as_str(), wait.signal.as_str(), wait.role.as_str()),
            ("approval", "check", "operator")
        );
        assert_eq!(wait.prompt, "Refund 12?", "references in prompts are filled in");
        ids.push(t.id);
    }
    // gRPC.
    let sent = flows_as(&node, Some(&op))
        .await
        .signal(signal(
            &ids[0],
            "check",
            json!({"decision": "approve", "comment": "grpc"}),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(sent.seq > 0);
    assert_eq!(sent.task.unwrap().id, ids[0]);
    // The JSON API.
    let auth = format!("Bearer {op}");
    let (code, _, body) = http_exchange(
        &node,
        "POST",
        &format!("/v1/tasks/{}/signals/check", ids[1]),
        &[("Authorization", &auth)],
        Some(r#"{"decision": "approve", "comment": "http"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // MCP.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let (_, sid, _) = mcp_post(&node, &op, None, init).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "signal_workflow",
        "arguments": {"id": ids[2], "name": "check", "payload": {"decision": "approve", "comment": "mcp"}}}});
    let (_, _, r) = mcp_post(&node, &op, Some(&sid), call).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    // The CLI.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["--endpoint", &node.grpc, "--token", &op])
        .args(["signal", &ids[3], "check", "--approve", "--comment", "cli"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signal check sent"),
        "{out:?}"
    );

    for (id, face) in ids.iter().zip(["grpc", "http", "mcp", "cli"]) {
        let t = finished(&c, id, PATIENCE).await;
        assert_eq!(state(&t), v1::TaskState::Succeeded, "{face}: {t:?}");
        let decided = step_output(&t, "check");
        assert_eq!(decided["decision"], "approve", "{face}");
        assert_eq!(decided["comment"], face);
        assert_eq!(
            decided["by"], "operator-default",
            "{face}: who decided is in the result"
        );
        assert!(decided["at_ms"].as_i64().unwrap() > 0);
        assert_eq!(result(&t)["pay"]["comment"], face);
    }
    // Who signalled, when and what, in the audit chain.
    let data = node.dir.join("data");
    let evidence = node.dir.join("evidence.json");
    let out = cadre_audit(
        &data,
        &["export", "--task", &ids[0], "--out", evidence.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    let pkg: Value = serde_json::from_slice(&std::fs::read(&evidence).unwrap()).unwrap();
    let signal_record = pkg["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "workflow.signal")
        .unwrap_or_else(|| panic!("no workflow.signal record: {pkg}"))
        .clone();
    assert_eq!(signal_record["actor"], "operator-default");
    assert!(
        signal_record["detail"].as_str().unwrap().contains("grpc"),
        "{signal_record}"
    );
}

#[tokio::test]
async fn a_rejection_fails_the_step_and_a_signal_sent_early_waits_for_its_wait() {
    let node = TestNode::start("").await;
    register(&node, &approval_flow()).await;
    let mut c = node.tasks().await;
    let t = start(&mut c, "refund", json!({})).await;
    step_reaches(&c, &t.id, "check", "WAITING", PATIENCE).await;
    flows(&node)
        .await
        .signal(signal(
            &t.id,
            "check",
            json!({"decision": "reject", "comment": "too much"}),
        ))
        .await
        .unwrap();
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Failed);
    assert!(t.error.contains("too much"), "{}", t.error);

    // A signal for a wait that has not started yet is kept and taken when it starts.
    register(
        &node,
        &json!({"name": "later", "version": 1, "steps": [
            {"id": "nap", "sleep": {"ms": 1500}},
            {"id": "go", "needs": ["nap"], "wait": {"signal": "ready"}}
        ], "output": "${{ steps.go.output.payload }}"}),
    )
    .await;
    let t = start(&mut c, "later", json!({})).await;
    step_reaches(&c, &t.id, "nap", "WAITING", PATIENCE).await;
    flows(&node)
        .await
        .signal(signal(&t.id, "ready", json!({"early": true})))
        .await
        .unwrap();
    assert_eq!(
        step_state(&crate::common::get(&mut c, &t.id).await, "go"),
        "PENDING"
    );
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    assert_eq!(result(&t), json!({"early": true}));
}

#[tokio::test]
async fn timeouts_take_their_default_and_timers_fire() {
    let node = TestNode::start("").await;
    register(
        &node,
        &json!({"name": "patient", "version": 1, "steps": [
            {"id": "ask", "wait": {"signal": "answer", "timeout_ms": 800, "default": {"answer": "none"}}},
            {"id": "gate", "wait": {"approval": {}, "timeout_ms": 800}},
            {"id": "sleep", "sleep": {"ms": 700}}
        ]}),
    )
    .await;
    let mut c = node.tasks().await;
    let started = std::time::Instant::now();
    let t = start(&mut c, "patient", json!({})).await;
    let t = finished(&c, &t.id, PATIENCE).await;
    assert!(started.elapsed() >= Duration::from_millis(700));
    // The approval's timeout rejects (its default), so the workflow fails there...
    assert_eq!(state(&t), v1::TaskState::Failed, "{t:?}");
    assert!(t.error.contains("gate"), "{}", t.error);
    // ...while the signal wait took its default and the timer fired.
    assert_eq!(step_state(&t, "ask"), "SUCCEEDED");
    assert_eq!(step_output(&t, "ask")["payload"], json!({"answer": "none"}));
    assert_eq!(step_state(&t, "sleep"), "SUCCEEDED");
}

#[tokio::test]
async fn signals_are_refused_with_the_right_status() {
    let node = TestNode::start("").await;
    let mut def = approval_flow();
    def["steps"][0]["wait"]["approval"]["role"] = json!("supervisor");
    register(&node, &def).await;
    let mut c = node.tasks().await;
    let t = start(&mut c, "refund", json!({})).await;
    step_reaches(&c, &t.id, "check", "WAITING", PATIENCE).await;
    let approve = json!({"decision": "approve"});
    let code_of = |r: Result<tonic::Response<v1::SignalResponse>, tonic::Status>| {
        r.err()
            .map(|e| (e.code(), e.message().to_string()))
            .unwrap_or((Code::Ok, String::new()))
    };

    // Another tenant: the instance does not exist for it.
    let other = issue(&node, "other", "supervisor").await;
    let r = flows_as(&node, Some(&other))
        .await
        .signal(signal(&t.id, "check", approve.clone()))
        .await;
    assert_eq!(code_of(r).0, Code::NotFound);
    // Too low a role: an observer may not signal; an operator may not decide a supervisor's
    // approval.
    let observer = issue(&node, "default", "observer").await;
    let r = flows_as(&node, Some(&observer))
        .await
        .signal(signal(&t.id, "check", approve.clone()))
        .await;
    assert_eq!(code_of(r).0, Code::PermissionDenied);
    let op = issue(&node, "default", "operator").await;
    let r = flows_as(&node, Some(&op))
        .await
        .signal(signal(&t.id, "check", approve.clone()))
        .await;
    let (code, message) = code_of(r);
    assert_eq!(code, Code::PermissionDenied);
    assert!(message.contains("supervisor"), "{message}");
    // Unknown instance, a task that is not a workflow, a name nothing waits for, a malformed
    // approval, a payload that is not JSON.
    let sup = issue(&node, "default", "supervisor").await;
    let mut f = flows_as(&node, Some(&sup)).await;
    let r = f
        .signal(signal(
            "01a24ec6-6d4a-7315-92f0-7d03a85bddc8",
            "check",
            approve.clone(),
        ))
        .await;
    assert_eq!(code_of(r).0, Code::NotFound);
    let plain = crate::common::run(&mut c, crate::common::spec("system.debug.echo", "{}")).await;
    let r = f.signal(signal(&plain.id, "check", approve.clone())).await;
    assert_eq!(code_of(r).0, Code::FailedPrecondition);
    let r = f.signal(signal(&t.id, "nope", approve.clone())).await;
    let (code, message) = code_of(r);
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.contains("check (approval)"),
        "names what it waits for: {message}"
    );
    let r = f
        .signal(signal(&t.id, "check", json!({"decision": "maybe"})))
        .await;
    assert_eq!(code_of(r).0, Code::InvalidArgument);
    let r = f
        .signal(v1::SignalRequest {
            task_id: t.id.clone(),
            name: "check".into(),
            payload_json: "{not json".into(),
        })
        .await;
    assert_eq!(code_of(r).0, Code::InvalidArgument);
    // None of the refused signals was kept: the step still waits.
    assert_eq!(
        step_state(&crate::common::get(&mut c, &t.id).await, "check"),
        "WAITING"
    );

    // The right role decides; afterwards the instance is finished and takes no signals.
    f.signal(signal(&t.id, "check", approve.clone())).await.unwrap();
    finished(&c, &t.id, PATIENCE).await;
    let r = f.signal(signal(&t.id, "check", approve)).await;
    let (code, message) = code_of(r);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("already"), "{message}");
}
