//! Definitions and DAGs on a real node: registration checks, immutability, dependency order
//! with references into nested results, fan-out and fan-in, conditions, failure policies and
//! compensation, each step executed once (counted by the webhook it calls).

use std::time::Duration;

use cadre_proto::v1;
use serde_json::{Value, json};
use tonic::Code;

use super::{
    Counter, counted, counter_config, finished, flows, register, result, start, step_output, step_state,
};
use crate::common::{TestNode, get, state};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_dag_runs_in_order_with_references_fan_out_fan_in_and_conditions() {
    let counter = Counter::start().await;
    let node = TestNode::start(&counter_config(&counter)).await;
    let mut c = node.tasks().await;
    let mut fetch = counted(
        "fetch",
        json!({ "items": [{"name": "x", "size": 1}, {"name": "y", "size": 5}, {"name": "z", "size": 9}] }),
    );
    fetch["params"]["body"]["query"] = json!("${{ input.query }}");
    let def = json!({
        "name": "pipeline", "version": 1, "description": "fetch, score each, report",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        "steps": [
            {"id": "report", "needs": ["score", "big"], "task": "system.debug.echo",
             "params": {"scores": "${{ steps.score.output }}", "big": "${{ steps.big.state }}", "first": "${{ steps.fetch.output.body.items[0].name }}"}},
            fetch,
            {"id": "score", "needs": ["fetch"], "for_each": "${{ steps.fetch.output.body.items }}", "max_parallel": 2,
             "task": "system.http.call", "params": {"hook": "count", "body": {"step": "score", "name": "${{ item.name }}", "at": "${{ index }}"}}},
            {"id": "big", "needs": ["fetch"], "when": {"gt": ["${{ steps.fetch.output.body.items[2].size }}", 100]},
             "task": "system.debug.echo", "params": {}}
        ],
        "output": {"report": "${{ steps.report.output }}", "query": "${{ input.query }}"}
    });
    let stored = register(&node, &def).await;
    assert_eq!(stored.task_type, "workflow.pipeline.run");
    assert_eq!(stored.description, "fetch, score each, report");

    let t = start(&mut c, "pipeline", json!({"query": "q1"})).await;
    assert_eq!(
        (t.supervisor.as_str(), t.worker_kind.as_str()),
        ("workflow", "v1")
    );
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    let out = result(&t);
    assert_eq!(out["query"], "q1");
    assert_eq!(out["report"]["first"], "x");
    assert_eq!(out["report"]["big"], "SKIPPED");
    let names: Vec<Value> = out["report"]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["body"]["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("x"), json!("y"), json!("z")],
        "fan-in keeps item order"
    );
    assert_eq!(step_state(&t, "big"), "SKIPPED");
    assert_eq!(step_output(&t, "fetch")["body"]["query"], "q1");
    // Every step ran once: the fetch once, the fan-out once per item.
    assert_eq!(counter.count("fetch"), 1);
    assert_eq!(counter.count("score"), 3);
    // The steps are sub-tasks of the instance, with times.
    assert_eq!(t.children.len(), 1 + 3 + 1);
    for s in &t.steps {
        if s.state == "SUCCEEDED" {
            assert!(s.started_at_ms > 0 && s.ended_at_ms >= s.started_at_ms, "{s:?}");
        }
    }
    let mut child = get(&mut c, &t.children[0]).await;
    assert_eq!(child.spec.as_ref().unwrap().parent_id, t.id);
    child = get(&mut c, &child.id).await;
    assert!(
        child
            .spec
            .unwrap()
            .idempotency_key
            .starts_with(&format!("wf:{}:", t.id))
    );
}

#[tokio::test]
async fn failure_policies_fail_continue_and_compensate() {
    let counter = Counter::start().await;
    let node = TestNode::start(&counter_config(&counter)).await;
    let mut c = node.tasks().await;
    let mut book = counted("book", json!({}));
    book["compensate"] = json!({"task": "system.http.call", "params": {"hook": "count", "body": {"step": "unbook", "id": "${{ steps.book.output.body.n }}"}}});
    let mut optional = counted("optional", json!({"status": 400}));
    optional["on_failure"] = json!("continue");
    let mut pay = counted("pay", json!({"status": 400}));
    pay["needs"] = json!(["book", "optional"]);
    pay["on_failure"] = json!("compensate");
    let mut after = counted("after", json!({}));
    after["needs"] = json!(["pay"]);
    register(
        &node,
        &json!({"name": "trip", "version": 1, "steps": [book, optional, pay, after]}),
    )
    .await;

    let t = start(&mut c, "trip", json!({})).await;
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Failed, "{t:?}");
    assert!(t.error.contains("step pay failed"), "{}", t.error);
    assert_eq!(
        step_state(&t, "optional"),
        "FAILED",
        "continue: failed, and the workflow went on"
    );
    assert_eq!(
        step_state(&t, "after"),
        "PENDING",
        "nothing starts after a failure"
    );
    assert_eq!(counter.count("unbook"), 1, "the booking was undone");
    assert_eq!(counter.count("after"), 0);
    assert_eq!(counter.count("book"), 1);
}

#[tokio::test]
async fn registration_names_every_problem_and_versions_are_immutable() {
    let node = TestNode::start("").await;
    let mut f = flows(&node).await;
    let bad = json!({"name": "bad", "version": 1, "steps": [
        {"id": "a", "task": "no.such.type"},
        {"id": "b", "needs": ["c"], "task": "system.debug.echo"},
        {"id": "c", "needs": ["b"], "task": "system.debug.echo"},
        {"id": "d", "task": "system.debug.echo", "params": {"x": "${{ steps.nope.output }}"}},
        {"id": "e", "task": "system.debug.sleep", "params": {"ms": "not a number"}}
    ]});
    let err = f
        .register_workflow(v1::RegisterWorkflowRequest {
            definition_json: bad.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let m = err.message();
    for needle in ["no.such.type", "cycle", "nope", "steps.e"] {
        assert!(m.contains(needle), "{needle:?} named in: {m}");
    }
    for (body, needle) in [
        ("not json", "not JSON"),
        (
            r#"{"name": "x", "version": 1, "steps": [{"id": "a"}]}"#,
            "exactly one of",
        ),
        (
            r#"{"name": "Bad Name", "version": 1, "steps": [{"id": "a", "task": "system.debug.echo"}]}"#,
            "name",
        ),
    ] {
        let e = f
            .register_workflow(v1::RegisterWorkflowRequest {
                definition_json: body.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{body}");
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
    }
    // Nothing was stored.
    let list = f
        .list_workflows(v1::ListWorkflowsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.workflows.is_empty(), "{list:?}");

    let v1def = json!({"name": "flow", "version": 1, "steps": [{"id": "a", "task": "system.debug.echo"}]});
    let first = f
        .register_workflow(v1::RegisterWorkflowRequest {
            definition_json: v1def.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    // The same definition (other spacing and key order) again: accepted, nothing changes.
    let again = f
        .register_workflow(v1::RegisterWorkflowRequest {
            definition_json:
                r#"{ "steps": [{"task": "system.debug.echo", "id": "a"}], "version": 1, "name": "flow" }"#
                    .into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.workflow, first.workflow);
    let changed = json!({"name": "flow", "version": 1, "steps": [{"id": "b", "task": "system.debug.echo"}]});
    let e = f
        .register_workflow(v1::RegisterWorkflowRequest {
            definition_json: changed.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains("version 2"), "{}", e.message());

    // Version 2: new instances take it, a running one keeps version 1.
    let slow = json!({"name": "flow", "version": 2, "steps": [{"id": "b", "task": "system.debug.echo", "params": {"v": 2}}]});
    let mut c = node.tasks().await;
    let v1_instance = start(&mut c, "flow", json!({})).await;
    f.register_workflow(v1::RegisterWorkflowRequest {
        definition_json: slow.to_string(),
    })
    .await
    .unwrap();
    let v2_instance = start(&mut c, "flow", json!({})).await;
    assert_eq!(v1_instance.worker_kind, "v1");
    assert_eq!(v2_instance.worker_kind, "v2");
    let done1 = finished(&c, &v1_instance.id, PATIENCE).await;
    let done2 = finished(&c, &v2_instance.id, PATIENCE).await;
    assert!(result(&done1).get("a").is_some(), "{done1:?}");
    assert_eq!(result(&done2)["b"]["v"], 2);
    let all = f
        .list_workflows(v1::ListWorkflowsRequest { name: "flow".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.workflows.iter().map(|w| w.version).collect::<Vec<_>>(),
        [1, 2]
    );
    let newest = f
        .get_workflow(v1::GetWorkflowRequest {
            name: "flow".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(newest.version, 2);
    let e = f
        .get_workflow(v1::GetWorkflowRequest {
            name: "flow".into(),
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Instances are checked at intake: unknown workflows and input off the schema.
    let e = c
        .submit(v1::SubmitRequest {
            spec: Some(crate::common::spec("workflow.nope.run", "{}")),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no workflow nope"), "{}", e.message());
}

#[tokio::test]
async fn cancel_stops_running_steps_and_waits_for_them() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    register(
        &node,
        &json!({"name": "long", "version": 1, "steps": [
            {"id": "slow", "task": "system.debug.sleep", "params": {"ms": 30000}},
            {"id": "wait", "wait": {"signal": "never"}},
            {"id": "after", "needs": ["slow"], "task": "system.debug.echo"}
        ]}),
    )
    .await;
    let t = start(&mut c, "long", json!({})).await;
    let slow = crate::common::eventually("the sleep to run", PATIENCE, || {
        let mut c = c.clone();
        let id = t.id.clone();
        async move {
            let t = get(&mut c, &id).await;
            let slow = t.steps.iter().find(|s| s.id == "slow")?.task_ids.first()?.clone();
            (state(&get(&mut c, &slow).await) == v1::TaskState::Running).then_some(slow)
        }
    })
    .await;
    let cancelled = c
        .cancel(v1::CancelRequest {
            id: t.id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&cancelled), v1::TaskState::Cancelled);
    // Cancel returned once the running step had stopped.
    let step = get(&mut c, &slow).await;
    assert_eq!(state(&step), v1::TaskState::Cancelled, "{step:?}");
    // Nothing starts afterwards, and a step cannot be added by hand either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = get(&mut c, &t.id).await;
    assert_eq!(t.children.len(), 1, "{t:?}");
    assert_eq!(super::step_state(&t, "after"), "PENDING");
    let mut late = crate::common::spec("system.debug.echo", "{}");
    late.parent_id = t.id.clone();
    let e = c
        .submit(v1::SubmitRequest { spec: Some(late) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}

#[tokio::test]
async fn only_the_engine_adds_steps_and_uses_step_keys() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    register(
        &node,
        &json!({"name": "held", "version": 1, "steps": [
            {"id": "wait", "wait": {"signal": "go"}},
            {"id": "after", "needs": ["wait"], "task": "system.debug.echo"}
        ]}),
    )
    .await;
    let t = start(&mut c, "held", json!({})).await;
    super::step_reaches(&c, &t.id, "wait", "WAITING", PATIENCE).await;
    // A task under a running instance: refused, whoever asks.
    let mut extra = crate::common::spec("system.debug.echo", "{}");
    extra.parent_id = t.id.clone();
    let e = c
        .submit(v1::SubmitRequest { spec: Some(extra) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("workflow instance"), "{e:?}");
    // A task under the key the engine will give step `after`: refused, so it cannot be taken
    // for the step's result.
    let mut squat = crate::common::spec("system.debug.echo", r#"{"fake": true}"#);
    squat.idempotency_key = format!("wf:{}:after", t.id);
    let e = c
        .submit(v1::SubmitRequest { spec: Some(squat) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("reserved"), "{e:?}");
    flows(&node)
        .await
        .signal(v1::SignalRequest {
            task_id: t.id.clone(),
            name: "go".into(),
            payload_json: "{}".into(),
        })
        .await
        .unwrap();
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    assert_eq!(t.children.len(), 1, "only the engine's step: {t:?}");
}

#[tokio::test]
async fn a_child_workflow_wakes_its_parent_when_it_ends() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    register(
        &node,
        &json!({"name": "child", "version": 1, "steps": [
            {"id": "nap", "sleep": {"ms": 200}},
            {"id": "say", "needs": ["nap"], "task": "system.debug.echo", "params": {"from": "child"}}
        ], "output": "${{ steps.say.output }}"}),
    )
    .await;
    register(
        &node,
        &json!({"name": "parent", "version": 1, "steps": [
            {"id": "sub", "task": "workflow.child.run"},
            {"id": "after", "needs": ["sub"], "task": "system.debug.echo", "params": {"got": "${{ steps.sub.output }}"}}
        ], "output": "${{ steps.after.output }}"}),
    )
    .await;
    let t = start(&mut c, "parent", json!({})).await;
    // Well before the engine's sweep: the child's end drives the parent on.
    let t = finished(&c, &t.id, Duration::from_secs(20)).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    let out = result(&t);
    assert!(out.to_string().contains("child"), "{out}");
}

#[tokio::test]
async fn an_instance_with_a_timeout_or_retry_policy_is_refused() {
    let node = TestNode::start("").await;
    let mut c = node.tasks().await;
    register(
        &node,
        &json!({"name": "plain", "version": 1, "steps": [{"id": "a", "task": "system.debug.echo"}]}),
    )
    .await;
    let base = crate::common::spec("workflow.plain.run", "{}");
    let timed = v1::TaskSpec {
        timeout_ms: 1000,
        ..base.clone()
    };
    let retried = crate::common::fast_retry(base.clone(), 3);
    for (spec, field) in [(timed, "spec.timeout_ms"), (retried, "spec.retry")] {
        let e = c
            .submit(v1::SubmitRequest { spec: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains(field) && e.message().contains("steps"),
            "{e:?}"
        );
    }
    let t = start(&mut c, "plain", json!({})).await;
    assert_eq!(
        state(&finished(&c, &t.id, PATIENCE).await),
        v1::TaskState::Succeeded
    );
}
