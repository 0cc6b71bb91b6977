//! DAGs: order, references into nested results, conditions, fan-out and fan-in, failure
//! policies and compensation.

use cadre_workflow::Outcome;
use serde_json::{Value, json};

use crate::world::{World, short, step_of};

#[test]
fn steps_run_in_dependency_order_and_references_reach_nested_results() {
    let mut w = World::new(
        json!({"name": "chain", "version": 1, "steps": [
            {"id": "c", "needs": ["b"], "task": "system.debug.echo", "params": {"total": "${{ steps.b.output.sum }}", "note": "first was ${{ steps.a.output.items[1].name }}"}},
            {"id": "a", "task": "system.debug.echo", "params": {"q": "${{ input.query }}"}},
            {"id": "b", "needs": ["a"], "task": "system.debug.echo", "params": {"n": "${{ steps.a.output.items }}"}},
        ], "output": {"answer": "${{ steps.c.output.total }}", "from": "${{ steps.c.output.note }}"}}),
        json!({"query": "q1"}),
    );
    let plan = w.settle();
    assert_eq!(
        w.keys().iter().map(|k| short(k)).collect::<Vec<_>>(),
        ["a"],
        "only a is ready"
    );
    assert_eq!(w.submission(&w.keys()[0]).params, json!({"q": "q1"}));
    assert!(matches!(plan.outcome, Outcome::Running { .. }));
    let key_a = w.keys()[0].clone();
    w.end(&key_a, Ok(json!({"items": [{"name": "x"}, {"name": "y"}]})));
    w.settle();
    let key_b = w.keys().into_iter().find(|k| step_of(k) == "b").unwrap();
    assert_eq!(
        w.submission(&key_b).params,
        json!({"n": [{"name": "x"}, {"name": "y"}]})
    );
    w.end(&key_b, Ok(json!({"sum": 42})));
    w.settle();
    let key_c = w.keys().into_iter().find(|k| step_of(k) == "c").unwrap();
    assert_eq!(
        w.submission(&key_c).params,
        json!({"total": 42, "note": "first was y"})
    );
    let params = w.submission(&key_c).params.clone();
    w.end(&key_c, Ok(params));
    let plan = w.settle();
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(json!({"answer": 42, "from": "first was y"}))
    );
    assert!(
        plan.steps.iter().all(|s| s.state == "SUCCEEDED"),
        "{:?}",
        plan.steps
    );
}

#[test]
fn independent_steps_run_at_once_and_the_default_output_holds_every_step() {
    let mut w = World::new(
        json!({"name": "wide", "version": 1, "steps": [
            {"id": "a", "task": "system.debug.echo"},
            {"id": "b", "task": "system.debug.echo"},
            {"id": "join", "needs": ["a", "b"], "task": "system.debug.echo"},
        ]}),
        json!({}),
    );
    w.settle();
    assert_eq!(w.open_tasks().len(), 2, "a and b start together");
    let plan = w.run(5, |s| Ok(json!({"step": s.step})));
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(json!({"a": {"step": "a"}, "b": {"step": "b"}, "join": {"step": "join"}}))
    );
}

#[test]
fn a_false_condition_skips_a_step_and_its_output_reads_as_null() {
    let mut w = World::new(
        json!({"name": "cond", "version": 1, "steps": [
            {"id": "score", "task": "system.debug.echo"},
            {"id": "escalate", "needs": ["score"], "when": {"gt": ["${{ steps.score.output.value }}", 0.8]}, "task": "system.debug.echo"},
            {"id": "log", "needs": ["score"], "when": {"all": [{"exists": "${{ steps.score.output.value }}"}, {"ne": ["${{ input.mode }}", "quiet"]}]}, "task": "system.debug.echo"},
            {"id": "report", "needs": ["escalate", "log"], "task": "system.debug.echo",
             "params": {"escalated": "${{ steps.escalate.output }}", "state": "${{ steps.escalate.state }}", "deep": "${{ steps.escalate.output.a.b }}"}},
        ]}),
        json!({"mode": "loud"}),
    );
    let plan = w.run(5, |s| match s.step.as_str() {
        "score" => Ok(json!({"value": 0.3})),
        _ => Ok(s.params.clone()),
    });
    let state = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap().state.clone();
    assert_eq!(state("escalate"), "SKIPPED");
    assert_eq!(state("log"), "SUCCEEDED");
    let report = w.keys().into_iter().find(|k| step_of(k) == "report").unwrap();
    assert_eq!(
        w.submission(&report).params,
        json!({"escalated": null, "state": "SKIPPED", "deep": null})
    );
    assert!(matches!(plan.outcome, Outcome::Succeeded(_)));
}

#[test]
fn fan_out_keeps_max_parallel_and_fans_in_by_index() {
    let mut w = World::new(
        json!({"name": "fan", "version": 1, "steps": [
            {"id": "list", "task": "system.debug.echo"},
            {"id": "each", "needs": ["list"], "for_each": "${{ steps.list.output.items }}", "max_parallel": 2,
             "task": "system.debug.echo", "params": {"text": "#${{ index }}: ${{ item.body }}", "raw": "${{ item }}"}},
            {"id": "sum", "needs": ["each"], "task": "system.debug.echo", "params": {"all": "${{ steps.each.output }}"}},
        ]}),
        json!({}),
    );
    w.settle();
    let list = w.keys()[0].clone();
    let items: Vec<Value> = (0..5).map(|i| json!({"body": format!("b{i}")})).collect();
    w.end(&list, Ok(json!({"items": items})));
    let mut max_seen = 0;
    for _ in 0..20 {
        w.settle();
        let open: Vec<String> = w.open_tasks();
        max_seen = max_seen.max(open.iter().filter(|k| step_of(k) == "each").count());
        let Some(k) = open.last().cloned() else { break };
        let text = w.submission(&k).params["text"].clone();
        w.end(&k, Ok(json!({"echo": text})));
    }
    assert_eq!(max_seen, 2, "never more than max_parallel items at once");
    let plan = w.settle();
    let sum = w.keys().into_iter().find(|k| step_of(k) == "sum").unwrap();
    let all = w.submission(&sum).params["all"].clone();
    let texts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["echo"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["#0: b0", "#1: b1", "#2: b2", "#3: b3", "#4: b4"],
        "fan-in in index order"
    );
    assert_eq!(
        w.submission(&format!("wf:{}:each:3", crate::world::INSTANCE))
            .params["raw"],
        json!({"body": "b3"})
    );
    assert!(
        matches!(plan.outcome, Outcome::Succeeded(_)),
        "{:?}",
        plan.outcome
    );
}

#[test]
fn a_failed_item_stops_new_items_and_fails_the_step_once_the_running_end() {
    let mut w = World::new(
        json!({"name": "fan", "version": 1, "steps": [
            {"id": "each", "for_each": "${{ input.items }}", "max_parallel": 2, "task": "system.debug.echo", "params": {"i": "${{ item }}"}},
        ]}),
        json!({"items": [1, 2, 3, 4]}),
    );
    w.settle();
    let open = w.open_tasks();
    assert_eq!(open.len(), 2);
    w.end(&open[0], Err("boom"));
    let plan = w.settle();
    assert_eq!(w.open_tasks().len(), 1, "no new item after a failure");
    assert!(
        matches!(plan.outcome, Outcome::Running { .. }),
        "the running item ends first: {:?}",
        plan.outcome
    );
    assert_eq!(plan.steps[0].state, "RUNNING");
    w.end(&open[1], Ok(json!(2)));
    match w.settle().outcome {
        Outcome::Failed(why) => assert_eq!(why, "step each failed: item 0: boom (FAILED)"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.created.len(), 2, "items 2 and 3 never started");
}

#[test]
fn continue_lets_dependents_run_and_fail_cancels_the_rest() {
    let mut w = World::new(
        json!({"name": "pol", "version": 1, "steps": [
            {"id": "flaky", "task": "system.debug.fail", "on_failure": "continue"},
            {"id": "after", "needs": ["flaky"], "task": "system.debug.echo", "params": {"was": "${{ steps.flaky.state }}", "out": "${{ steps.flaky.output }}"}},
        ]}),
        json!({}),
    );
    let plan = w.run(5, |s| {
        if s.step == "flaky" {
            Err("nope".into())
        } else {
            Ok(s.params.clone())
        }
    });
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(json!({"flaky": null, "after": {"was": "FAILED", "out": null}}))
    );
    assert_eq!(plan.steps[0].error.as_deref(), Some("nope (FAILED)"));

    let mut w = World::new(
        json!({"name": "pol", "version": 1, "steps": [
            {"id": "slow", "task": "system.debug.sleep"},
            {"id": "bad", "task": "system.debug.fail"},
            {"id": "never", "needs": ["bad"], "task": "system.debug.echo"},
        ]}),
        json!({}),
    );
    w.settle();
    let bad = w.keys().into_iter().find(|k| step_of(k) == "bad").unwrap();
    w.end(&bad, Err("broken"));
    let plan = w.settle();
    match &plan.outcome {
        Outcome::Failed(why) => assert!(why.contains("step bad failed: broken"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.cancels.len(), 1, "the running sibling is cancelled");
    assert!(!w.keys().iter().any(|k| step_of(k) == "never"));
}

#[test]
fn compensate_undoes_succeeded_steps_newest_first_one_at_a_time() {
    let mut w = World::new(
        json!({"name": "saga", "version": 1, "steps": [
            {"id": "reserve", "task": "system.debug.echo", "params": {"r": 1},
             "compensate": {"task": "system.debug.echo", "params": {"undo": "${{ steps.reserve.output.r }}"}}},
            {"id": "charge", "needs": ["reserve"], "task": "system.debug.echo", "params": {"c": 2},
             "compensate": {"task": "system.debug.echo", "params": {"undo": "charge"}}},
            {"id": "ship", "needs": ["charge"], "task": "system.debug.fail", "on_failure": "compensate"},
        ]}),
        json!({}),
    );
    let mut order = Vec::new();
    let mut plan = w.settle();
    for _ in 0..10 {
        let open = w.open_tasks();
        if open.is_empty() {
            break;
        }
        assert_eq!(open.len(), 1, "one at a time: {open:?}");
        let key = open[0].clone();
        order.push(short(&key));
        if step_of(&key) == "ship" {
            w.end(&key, Err("no courier"));
        } else {
            let p = w.submission(&key).params.clone();
            w.end(&key, Ok(p));
        }
        plan = w.settle();
    }
    assert_eq!(
        order,
        ["reserve", "charge", "ship", "undo:charge", "undo:reserve"]
    );
    assert_eq!(
        w.submission(&format!("wf:{}:undo:reserve", crate::world::INSTANCE))
            .params,
        json!({"undo": 1})
    );
    match plan.outcome {
        Outcome::Failed(why) => assert_eq!(
            why,
            "step ship failed: no courier (FAILED); compensated charge, reserve"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_references_at_run_time_fail_the_step_naming_the_path() {
    let mut w = World::new(
        json!({"name": "bad", "version": 1, "steps": [
            {"id": "a", "task": "system.debug.echo", "params": {"x": "${{ input.missing.field }}"}},
        ]}),
        json!({}),
    );
    let plan = w.settle();
    match plan.outcome {
        Outcome::Failed(why) => assert!(why.contains("input.missing.field: no such value"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(w.created.is_empty());
}
