//! Registration checks: every problem of a definition is named.

use std::collections::BTreeMap;

use cadre_workflow::{Catalog, Definition, validate};
use serde_json::{Value, json};

struct Types(BTreeMap<&'static str, Option<Value>>);

impl Catalog for Types {
    fn params_schema(&self, task_type: &str) -> Option<Option<Value>> {
        self.0.get(task_type).cloned()
    }

    fn model_task_type(&self) -> Option<String> {
        Some("intelligence.llm.chat".into())
    }
}

fn catalog() -> Types {
    Types(BTreeMap::from([
        (
            "intelligence.text.summarize",
            Some(
                json!({"type": "object", "properties": {"text": {"type": "string", "minLength": 1}, "sentences": {"type": "integer", "minimum": 1}}, "required": ["text"], "additionalProperties": false}),
            ),
        ),
        ("system.debug.echo", Some(json!({"type": "object"}))),
        ("intelligence.llm.chat", None),
    ]))
}

fn problems(def: Value) -> Vec<String> {
    let def = Definition::from_value(def).expect("well formed");
    validate(&def, &catalog()).err().unwrap_or_default()
}

fn has(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[test]
fn a_good_definition_passes() {
    let p = problems(
        json!({"name": "ok-1", "version": 2, "input_schema": {"type": "object", "required": ["text"]}, "steps": [
        {"id": "sum", "task": "intelligence.text.summarize", "params": {"text": "${{ input.text }}", "sentences": 2}, "retry": {"max_attempts": 5}},
        {"id": "each", "needs": ["sum"], "for_each": "${{ steps.sum.output.sentences }}", "max_parallel": 4, "task": "system.debug.echo", "params": {"s": "${{ item }}"}},
        {"id": "ok", "needs": ["each"], "wait": {"approval": {"role": "supervisor"}, "timeout_ms": 1000}},
        {"id": "ai", "needs": ["ok"], "agent": {"model": "m", "prompt": "${{ steps.sum.output.summary }}", "tools": [{"task": "system.debug.echo"}]}},
    ], "output": {"s": "${{ steps.sum.output }}"}}),
    );
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn a_retry_policy_out_of_range_is_named() {
    let p = problems(json!({"name": "r", "version": 1, "steps": [
        {"id": "a", "task": "system.debug.echo", "retry": {"multiplier": 0.5}},
        {"id": "b", "task": "system.debug.echo", "retry": {"max_attempts": 3, "initial_backoff_ms": 10}},
    ]}));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(has(&p, "steps.a.retry"), "{p:#?}");
}

#[test]
fn only_task_steps_fan_out() {
    let p = problems(
        json!({"name": "f", "version": 1, "input_schema": {"type": "object"}, "steps": [
            {"id": "nap", "sleep": {"ms": 5}, "for_each": "${{ input.list }}", "max_parallel": 2},
            {"id": "ai", "agent": {"model": "m", "prompt": "hi"}, "for_each": "${{ input.list }}", "max_parallel": 2},
            {"id": "ok", "task": "system.debug.echo", "for_each": "${{ input.list }}", "max_parallel": 2},
        ]}),
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(has(&p, "steps.nap.for_each: only task steps fan out"), "{p:#?}");
    assert!(has(&p, "steps.ai.for_each: only task steps fan out"), "{p:#?}");
}

#[test]
fn every_problem_is_named() {
    let p = problems(json!({"name": "Bad Name", "version": 0, "steps": [
        {"id": "a", "task": "no.such.type"},
        {"id": "a", "task": "system.debug.echo"},
        {"id": "b", "needs": ["ghost", "b"], "task": "intelligence.text.summarize", "params": {"text": "", "colour": 1}},
        {"id": "c", "task": "intelligence.text.summarize", "params": {"sentences": "${{ input.n }}", "extra": "${{ input.x }}"}},
        {"id": "d", "task": "system.debug.echo", "params": {"x": "${{ steps.e.output }}", "y": "${{ item }}", "z": "${{ nope }}"}},
        {"id": "e", "task": "system.debug.echo", "for_each": "${{ input.list }}"},
        {"id": "f", "wait": {}, "when": {"eq": [1]}},
        {"id": "g", "sleep": {"ms": 1, "until_ms": 2}},
        {"id": "h", "agent": {"model": "m", "prompt": "p", "max_turns": 0, "tools": [{"task": "nope.nope.nope"}]}},
        {"id": "Bad-Id", "task": "system.debug.echo"},
    ], "output": {"x": "${{ steps.zzz.output }}"}}));
    for needle in [
        "name: \"Bad Name\"",
        "version: must be 1 or more",
        "unknown task type \"no.such.type\"",
        "id \"a\" is used twice",
        "steps.b.needs: no step \"ghost\"",
        "steps.b.needs: a step cannot need itself",
        "steps.b.params: /text: is empty",
        "steps.c.params: intelligence.text.summarize takes no param \"extra\"",
        "steps.c.params: intelligence.text.summarize needs param \"text\"",
        "steps.d.params: steps.e.output reads step \"e\", which is not among this step's needs",
        "steps.d.params: item is only defined in a for_each step",
        "nope",
        "steps.e.max_parallel: required with for_each",
        "steps.f.wait: exactly one of signal and approval",
        "steps.f.when.eq: takes a list of two values",
        "steps.g.sleep: exactly one of ms and until_ms",
        "steps.h.agent.max_turns",
        "steps.h.agent.tools[0]: unknown task type",
        "id \"Bad-Id\" must be",
        "output: steps.zzz.output reads step \"zzz\"",
    ] {
        assert!(has(&p, needle), "missing {needle:?} in {p:#?}");
    }
    assert!(
        !has(&p, "/colour"),
        "with an earlier error in the same params, the first is enough"
    );
}

#[test]
fn cycles_are_named_with_their_path() {
    let p = problems(json!({"name": "loop", "version": 1, "steps": [
        {"id": "a", "needs": ["c"], "task": "system.debug.echo"},
        {"id": "b", "needs": ["a"], "task": "system.debug.echo"},
        {"id": "c", "needs": ["b"], "task": "system.debug.echo"},
        {"id": "free", "task": "system.debug.echo"},
    ]}));
    assert!(has(&p, "needs form a cycle: a -> c -> b -> a"), "{p:#?}");
}

#[test]
fn shape_errors_are_refused_at_parse() {
    let e = Definition::from_value(
        json!({"name": "x", "version": 1, "steps": [{"id": "a", "task": "t.t.t", "wait": {"signal": "s"}}]}),
    )
    .unwrap_err();
    assert!(
        e.contains("steps[0] (a): a step has exactly one of task, wait, sleep, agent (found task, wait)"),
        "{e}"
    );
    let e = Definition::from_value(json!({"name": "x", "version": 1, "steps": [{"id": "a"}]})).unwrap_err();
    assert!(e.contains("(found none)"), "{e}");
    let e = Definition::from_value(json!({"name": "x", "version": 1, "steps": [], "bogus": 1})).unwrap_err();
    assert!(e.contains("bogus"), "{e}");
    assert!(
        Definition::from_json(&"x".repeat(300_000))
            .unwrap_err()
            .contains("bytes")
    );
}

#[test]
fn invalid_input_schemas_are_refused() {
    let p = problems(
        json!({"name": "s", "version": 1, "input_schema": {"type": "nope"}, "steps": [{"id": "a", "task": "system.debug.echo"}]}),
    );
    assert!(has(&p, "input_schema: not a valid JSON Schema"), "{p:#?}");
}
