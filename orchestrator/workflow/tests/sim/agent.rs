//! The agent loop: model turns and tool calls as sub-tasks, every call answered, approvals,
//! limits.

use cadre_workflow::{Outcome, keys};
use serde_json::{Value, json};

use crate::world::{INSTANCE, MODEL, World, short};

fn agent(max_turns: u32, approval: bool) -> Value {
    json!({"name": "agent", "version": 1, "steps": [
        {"id": "ask", "agent": {
            "model": "small", "system": "Be brief.", "prompt": "Summarise: ${{ input.text }}",
            "max_turns": max_turns, "max_parallel_tools": 1,
            "tools": [
                {"task": "intelligence.text.summarize"},
                {"task": "system.tickets.reply", "approval": approval, "approval_role": "supervisor"},
            ]}},
    ]})
}

fn world(max_turns: u32, approval: bool) -> World {
    let mut w = World::new(agent(max_turns, approval), json!({"text": "long text"}));
    w.tool_schemas.insert(
        "intelligence.text.summarize".into(),
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": false}),
    );
    w.tool_schemas
        .insert("system.tickets.reply".into(), json!({"type": "object"}));
    w
}

fn calls(list: &[(&str, &str, &str)]) -> Value {
    json!({"content": "", "finish_reason": "tool_calls", "tool_calls": list.iter().map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})).collect::<Vec<_>>()})
}

fn model_key(turn: usize) -> String {
    keys::model_call(INSTANCE, "ask", turn)
}

#[test]
fn tool_turns_run_as_sub_tasks_and_every_call_is_answered() {
    let mut w = world(5, false);
    w.settle();
    let first = w.submission(&model_key(0)).clone();
    assert_eq!(first.task_type, MODEL);
    assert_eq!(
        first.params["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarise: long text"}])
    );
    assert_eq!(
        first.params["tools"][0]["function"]["name"],
        "intelligence__text__summarize"
    );
    assert_eq!(
        first.params["tools"][0]["function"]["parameters"]["required"],
        json!(["text"])
    );
    w.end(
        &model_key(0),
        Ok(calls(&[
            ("c1", "intelligence__text__summarize", r#"{"text":"long text"}"#),
            ("c2", "intelligence__text__summarize", r#"{"nope":1}"#),
            ("c3", "no__such__tool", "{}"),
            ("c4", "system__tickets__reply", "not json"),
        ])),
    );
    w.settle();
    let tool = keys::tool_call(INSTANCE, "ask", 0, 0);
    assert_eq!(
        w.open_tasks(),
        std::slice::from_ref(&tool),
        "only the valid call runs; the others are answered at once"
    );
    assert_eq!(w.submission(&tool).params, json!({"text": "long text"}));
    w.end(&tool, Ok(json!({"summary": "short"})));
    w.settle();
    let second = w.submission(&model_key(1)).params["messages"].clone();
    let tail: Vec<Value> = second.as_array().unwrap()[2..].to_vec();
    assert_eq!(tail[0]["role"], "assistant");
    assert_eq!(tail[0]["tool_calls"].as_array().unwrap().len(), 4);
    let answers: Vec<(&str, &str)> = tail[1..]
        .iter()
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap(),
                m["content"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(answers[0], ("c1", r#"{"summary":"short"}"#));
    assert!(
        answers[1].1.contains("do not fit") && answers[1].1.contains("/nope"),
        "{answers:?}"
    );
    assert!(
        answers[2].1.contains("no tool named \"no__such__tool\""),
        "{answers:?}"
    );
    assert!(answers[3].1.contains("not JSON"), "{answers:?}");
    w.end(
        &model_key(1),
        Ok(json!({"content": "All done.", "finish_reason": "stop"})),
    );
    let plan = w.settle();
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(
            json!({"ask": {"reply": "All done.", "turns": 2, "stopped": "done", "tool_calls": 4}})
        )
    );
}

#[test]
fn tools_run_at_most_max_parallel_tools_at_once() {
    let mut w = world(3, false);
    w.settle();
    w.end(
        &model_key(0),
        Ok(calls(&[
            ("a", "intelligence__text__summarize", r#"{"text":"1"}"#),
            ("b", "intelligence__text__summarize", r#"{"text":"2"}"#),
        ])),
    );
    w.settle();
    assert_eq!(w.open_tasks().len(), 1);
    let first = w.open_tasks()[0].clone();
    w.end(&first, Ok(json!(1)));
    w.settle();
    assert_eq!(w.open_tasks(), [keys::tool_call(INSTANCE, "ask", 0, 1)]);
}

#[test]
fn a_tool_needing_approval_waits_for_it() {
    let mut w = world(3, true);
    w.settle();
    w.end(
        &model_key(0),
        Ok(calls(&[("r1", "system__tickets__reply", r#"{"body":"hi"}"#)])),
    );
    let plan = w.settle();
    assert!(w.open_tasks().is_empty(), "nothing runs before the approval");
    assert_eq!(plan.steps[0].state, "WAITING", "it needs a person: {plan:?}");
    let waiting = &plan.steps[0].waiting[0];
    assert_eq!(
        (waiting.signal.as_str(), waiting.role.as_deref()),
        ("ask.t0.tool0", Some("supervisor"))
    );
    assert!(
        waiting
            .prompt
            .as_deref()
            .is_some_and(|p| p.contains(r#""body":"hi""#)),
        "the approver sees the arguments: {waiting:?}"
    );
    w.signal("ask.t0.tool0", json!({"decision": "approve"}), "lead");
    let plan = w.settle();
    assert_eq!(plan.steps[0].state, "RUNNING");
    let tool = keys::tool_call(INSTANCE, "ask", 0, 0);
    assert_eq!(w.open_tasks(), std::slice::from_ref(&tool));
    w.end(&tool, Ok(json!({"sent": true})));
    w.settle();
    w.end(
        &model_key(1),
        Ok(calls(&[("r2", "system__tickets__reply", r#"{"body":"again"}"#)])),
    );
    w.settle();
    w.signal(
        "ask.t1.tool0",
        json!({"decision": "reject", "comment": "enough"}),
        "lead",
    );
    w.settle();
    let last = w.submission(&model_key(2)).params["messages"].clone();
    let answer = last.as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(answer, "the call was not approved: rejected by lead: enough");
    assert!(
        !w.keys().iter().any(|k| short(k) == "ask:t1:tool0"),
        "a rejected call never runs"
    );
}

#[test]
fn the_loop_stops_at_max_turns_on_a_budget_refusal_and_fails_with_its_model() {
    let mut w = world(2, false);
    let plan = w.run(10, |s| {
        if s.task_type == MODEL {
            Ok(calls(&[(
                "x",
                "intelligence__text__summarize",
                r#"{"text":"t"}"#,
            )]))
        } else {
            Ok(json!("ok"))
        }
    });
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(
            json!({"ask": {"reply": "", "turns": 2, "stopped": "max_turns", "tool_calls": 2}})
        )
    );

    let mut w = world(5, false);
    w.refuse(
        &model_key(0),
        "tenant t is past its daily budget",
        json!({"refused": "budget"}),
    );
    let plan = w.settle();
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(json!({"ask": {"reply": "", "turns": 0, "stopped": "budget", "tool_calls": 0}}))
    );

    let mut w = world(5, false);
    w.settle();
    w.end(&model_key(0), Err("every provider failed"));
    match w.settle().outcome {
        Outcome::Failed(why) => assert!(
            why.contains("model call of turn 0: every provider failed"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}
