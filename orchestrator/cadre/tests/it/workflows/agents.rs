//! The durable agent loop against the local OpenAI-compatible server (`cadre-fake-llm`, whose
//! `script` model replays the tool calls a `FAKE_SCRIPT` line asks for): several tool turns,
//! a tool that needs an approval, a crash in the middle, the budget running out, the turn
//! limit and cancel. Model calls are counted by the server, tool calls by the webhook they
//! call.

use std::time::Duration;

use cadre_fake_llm::Fake;
use cadre_proto::v1;
use serde_json::{Value, json};

use super::{Counter, counter_config, finished, flows, register, start, step_output, step_reaches};
use crate::common::{Tasks, TestNode, eventually, get, state};

const PATIENCE: Duration = Duration::from_secs(60);

/// Config for a node whose model `agent` is the fake's scripted model (no response cache, so
/// every model call reaches the server) and whose hook `count` posts to `counter`.
fn config(fake: &Fake, counter: &Counter) -> String {
    format!(
        "[executors.llm]\ndefault_model = \"agent\"\ncache_entries = 0\n\
         [executors.llm.providers.fake]\nbase_url = \"{}\"\n\
         [executors.llm.models.agent]\nprovider = \"fake\"\nmodel = \"script\"\n{}",
        fake.base_url,
        counter_config(counter)
    )
}

/// A tool call of the counting hook, as a script asks for it.
fn count_call(step: &str) -> Value {
    json!({"name": "system__http__call", "arguments": {"hook": "count", "body": {"step": step}}})
}

/// A workflow `name` with one agent step `think` following `script`, offering the counting
/// hook (`approval`: its calls wait for one) and echo as tools.
fn agent_flow(name: &str, script: &Value, approval: bool, max_turns: u32) -> Value {
    json!({"name": name, "version": 1, "steps": [{
        "id": "think",
        "agent": {
            "model": "agent",
            "system": format!("You help.\nFAKE_SCRIPT: {script}"),
            "prompt": "Count for ${{ input.who }}",
            "tools": [
                {"task": "system.http.call", "description": "Counts a step", "approval": approval},
                {"task": "system.debug.echo"}
            ],
            "max_turns": max_turns
        }
    }], "output": "${{ steps.think.output }}"})
}

/// The tool messages of the request the server saw at index `i`.
fn tool_messages(fake: &Fake, i: usize) -> Vec<Value> {
    let seen = fake.seen();
    let body = &seen
        .get(i)
        .unwrap_or_else(|| panic!("request {i} of {seen:?}"))
        .body;
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

/// The instance's sub-tasks of task type `task_type`.
async fn subtasks(c: &mut Tasks, id: &str, task_type: &str) -> Vec<v1::Task> {
    let t = get(c, id).await;
    let mut out = Vec::new();
    for child in &t.children {
        let child = get(c, child).await;
        if child.spec.as_ref().is_some_and(|s| s.task_type == task_type) {
            out.push(child);
        }
    }
    out
}

#[tokio::test]
async fn an_agent_calls_tools_over_several_turns_each_call_a_watched_sub_task() {
    let fake = Fake::start().await;
    let counter = Counter::start().await;
    let node = TestNode::start(&config(&fake, &counter)).await;
    let mut c = node.tasks().await;
    let script = json!([
        {"tool_calls": [count_call("lookup"), {"name": "system__debug__echo", "arguments": {"said": "hi"}}]},
        {"content": "Checking once more.", "tool_calls": [count_call("write")]},
        {"content": "All counted."}
    ]);
    register(&node, &agent_flow("helper", &script, false, 8)).await;
    let t = start(&mut c, "helper", json!({"who": "ada"})).await;
    // A watcher of the instance's sub-tasks sees the model's streamed tool calls and text.
    let mut watch = c
        .watch(v1::WatchRequest {
            parent_id: t.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    let out = step_output(&t, "think");
    assert_eq!(
        out,
        json!({"reply": "All counted.", "turns": 3, "stopped": "done", "tool_calls": 3}),
        "{t:?}"
    );
    assert_eq!(super::result(&t), out);
    // Three model calls, two hook calls: nothing ran twice.
    assert_eq!(fake.count("script"), 3);
    assert_eq!(counter.count("lookup"), 1);
    assert_eq!(counter.count("write"), 1);
    // The prompt was rendered from the input; the model was offered the tools with their
    // params schemas under OpenAI-safe names.
    let first = &fake.seen()[0].body;
    assert!(
        first["messages"][1]["content"].as_str() == Some("Count for ada"),
        "{first}"
    );
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["system__http__call", "system__debug__echo"]);
    assert_eq!(first["tools"][0]["function"]["description"], "Counts a step");
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["type"], "object",
        "the hook's params schema is the tool's parameters: {first}"
    );
    // Each tool result went back to the model under its call's id.
    let answers = tool_messages(&fake, 1);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["tool_call_id"], "call_0_0");
    let hook: Value = serde_json::from_str(answers[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(hook["body"]["step"], "lookup", "{hook}");
    assert_eq!(answers[1]["tool_call_id"], "call_0_1");
    assert!(
        answers[1]["content"].as_str().unwrap().contains("hi"),
        "{answers:?}"
    );
    assert_eq!(
        tool_messages(&fake, 2).len(),
        3,
        "turn 2 sees every answer so far"
    );
    // Every call was a sub-task of the instance.
    let step = t.steps.iter().find(|s| s.id == "think").unwrap();
    assert_eq!(step.task_ids.len(), 6, "3 model calls and 3 tool calls: {step:?}");
    assert_eq!(subtasks(&mut c, &t.id, "system.http.call").await.len(), 2);
    assert_eq!(subtasks(&mut c, &t.id, "intelligence.llm.chat").await.len(), 3);
    let mut progress = Vec::new();
    while progress
        .iter()
        .filter(|m: &&String| m.starts_with("tool call"))
        .count()
        < 2
    {
        let e = tokio::time::timeout(PATIENCE, watch.message())
            .await
            .expect("events")
            .unwrap()
            .expect("the watch goes on");
        if e.is_progress {
            progress.push(e.message);
        }
    }
    assert!(
        progress.iter().any(|m| m.contains("system__http__call")),
        "{progress:?}"
    );
}

#[tokio::test]
async fn a_tool_that_needs_approval_waits_and_a_rejection_goes_back_to_the_model() {
    let fake = Fake::start().await;
    let counter = Counter::start().await;
    let node = TestNode::start(&config(&fake, &counter)).await;
    let mut c = node.tasks().await;
    let script = json!([
        {"tool_calls": [count_call("refund")]},
        {"tool_calls": [count_call("refund-twice")]},
        {"content": "One refund made, the second was refused."}
    ]);
    register(&node, &agent_flow("careful", &script, true, 8)).await;
    let t = start(&mut c, "careful", json!({"who": "bob"})).await;
    let t = step_reaches(&c, &t.id, "think", "WAITING", PATIENCE).await;
    let step = t.steps.iter().find(|s| s.id == "think").unwrap();
    let wait = &step.waiting[0];
    assert_eq!(
        (wait.signal.as_str(), wait.kind.as_str()),
        ("think.t0.tool0", "approval")
    );
    assert!(
        wait.prompt.contains("system.http.call") && wait.prompt.contains("refund"),
        "the approver sees the call: {wait:?}"
    );
    assert_eq!(counter.count("refund"), 0, "nothing runs before the approval");
    let signal = |name: &str, payload: Value| v1::SignalRequest {
        task_id: t.id.clone(),
        name: name.into(),
        payload_json: payload.to_string(),
    };
    let mut f = flows(&node).await;
    f.signal(signal("think.t0.tool0", json!({"decision": "approve"})))
        .await
        .unwrap();
    eventually("the second call to wait", PATIENCE, || {
        let c = c.clone();
        let id = t.id.clone();
        async move {
            let t = get(&mut c.clone(), &id).await;
            let step = t.steps.iter().find(|s| s.id == "think").cloned()?;
            step.waiting
                .iter()
                .any(|w| w.signal == "think.t1.tool0")
                .then_some(())
        }
    })
    .await;
    assert_eq!(counter.count("refund"), 1);
    f.signal(signal(
        "think.t1.tool0",
        json!({"decision": "reject", "comment": "one is enough"}),
    ))
    .await
    .unwrap();
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    assert_eq!(counter.count("refund-twice"), 0, "a rejected call never runs");
    let answers = tool_messages(&fake, 2);
    let refused = answers[1]["content"].as_str().unwrap();
    assert!(
        refused.contains("not approved") && refused.contains("one is enough"),
        "the model is told why: {refused}"
    );
    assert_eq!(step_output(&t, "think")["stopped"], "done");
}

#[tokio::test]
async fn the_turn_limit_and_the_budget_stop_the_loop() {
    let fake = Fake::start().await;
    let counter = Counter::start().await;
    let cfg = format!(
        "{}[budgets.models.agent]\ninput_per_1k = 1.0\noutput_per_1k = 1.0\n\
         [budgets.tenants.tight]\ndaily_tokens = 1\n",
        config(&fake, &counter)
    );
    let node = TestNode::start(&cfg).await;
    let mut c = node.tasks().await;
    let busy = json!([
        {"tool_calls": [count_call("busy-0")]},
        {"tool_calls": [count_call("busy-1")]},
        {"tool_calls": [count_call("busy-2")]},
        {"content": "never reached"}
    ]);
    register(&node, &agent_flow("busy", &busy, false, 2)).await;
    let t = start(&mut c, "busy", json!({"who": "x"})).await;
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    let out = step_output(&t, "think");
    assert_eq!(
        (out["stopped"].as_str(), out["turns"].as_u64()),
        (Some("max_turns"), Some(2)),
        "{out}"
    );
    assert_eq!(fake.count("script"), 2, "two model calls at most");
    assert_eq!(counter.count("busy-2"), 0);

    // A tenant whose budget one model call uses up: its next model call is refused and the
    // loop ends there, saying so; the tool call in between is refused too.
    let tight = crate::common::issue(&node, "tight", "operator").await;
    let mut tc = node.tasks_as(Some(&tight)).await;
    let before = fake.count("script");
    let t = start(&mut tc, "busy", json!({"who": "y"})).await;
    let t = finished(&tc, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    let out = step_output(&t, "think");
    assert_eq!(
        (out["stopped"].as_str(), out["turns"].as_u64()),
        (Some("budget"), Some(1)),
        "{out}"
    );
    assert_eq!(fake.count("script") - before, 1, "no model call past the budget");
    assert_eq!(counter.count("busy-0"), 1, "only the first instance's call ran");
}

#[tokio::test]
async fn an_agent_resumes_after_a_crash_without_paying_for_finished_calls() {
    let fake = Fake::start().await;
    let counter = Counter::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&fake, &counter);
    let mut node = TestNode::start_in(tmp.path(), &cfg).await;
    let mut c = node.tasks().await;
    let script = json!([
        {"tool_calls": [count_call("quick")]},
        {"tool_calls": [count_call("slow")]},
        {"content": "Survived."}
    ]);
    register(&node, &agent_flow("sturdy", &script, false, 8)).await;
    counter.hold("slow");
    let t = start(&mut c, "sturdy", json!({"who": "z"})).await;
    eventually("the slow tool to be running", PATIENCE, || async {
        (counter.count("slow") == 1).then_some(())
    })
    .await;
    node.kill9();
    counter.release("slow");

    let node = TestNode::start_in(tmp.path(), &cfg).await;
    let c = node.tasks().await;
    let t = finished(&c, &t.id, PATIENCE).await;
    assert_eq!(state(&t), v1::TaskState::Succeeded, "{t:?}");
    assert_eq!(step_output(&t, "think")["reply"], "Survived.");
    // Turns 0 and 1 were paid for once; the finished tool call never ran again, the running
    // one was retried.
    assert_eq!(fake.count("script"), 3, "{:?}", fake.seen());
    assert_eq!(counter.count("quick"), 1);
    assert_eq!(counter.count("slow"), 2);
}

#[tokio::test]
async fn cancelling_an_agent_stops_its_running_tool_and_calls_no_model_again() {
    let fake = Fake::start().await;
    let counter = Counter::start().await;
    let node = TestNode::start(&config(&fake, &counter)).await;
    let mut c = node.tasks().await;
    let script = json!([{"tool_calls": [count_call("hang")]}, {"content": "too late"}]);
    register(&node, &agent_flow("doomed", &script, false, 8)).await;
    counter.hold("hang");
    let t = start(&mut c, "doomed", json!({"who": "q"})).await;
    eventually("the tool to be running", PATIENCE, || async {
        (counter.count("hang") == 1).then_some(())
    })
    .await;
    let cancelled = c
        .cancel(v1::CancelRequest {
            id: t.id.clone(),
            reason: "stop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&cancelled), v1::TaskState::Cancelled);
    let tools = subtasks(&mut c, &t.id, "system.http.call").await;
    assert_eq!(tools.len(), 1);
    assert_eq!(state(&tools[0]), v1::TaskState::Cancelled, "{tools:?}");
    counter.release("hang");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.count("script"), 1, "no model call after cancel");
    let t = get(&mut c, &t.id).await;
    assert_eq!(state(&t), v1::TaskState::Cancelled);
}
