//! Waits for signals and approvals, and timers: they hold no sub-task while they wait.

use cadre_workflow::Outcome;
use serde_json::json;

use crate::world::World;

fn signal_workflow() -> serde_json::Value {
    json!({"name": "sig", "version": 1, "steps": [
        {"id": "first", "task": "system.debug.echo"},
        {"id": "go", "needs": ["first"], "wait": {"signal": "go", "timeout_ms": 60000}},
        {"id": "after", "needs": ["go"], "task": "system.debug.echo", "params": {"got": "${{ steps.go.output.payload }}"}},
    ]})
}

#[test]
fn a_signal_sent_before_the_wait_opens_is_kept_and_delivered_when_it_opens() {
    let mut w = World::new(signal_workflow(), json!({}));
    w.settle();
    w.signal("go", json!({"n": 1}), "alice");
    w.signal("go", json!({"n": 2}), "bob");
    assert!(w.records.is_empty(), "no wait open yet");
    let first = w.keys()[0].clone();
    w.end(&first, Ok(json!({})));
    let plan = w.run(3, |s| Ok(s.params.clone()));
    assert_eq!(
        plan.outcome,
        Outcome::Succeeded(json!({
            "first": {},
            "go": {"signal": "go", "payload": {"n": 1}, "sender": "alice", "at_ms": w.signals[0].at_ms},
            "after": {"got": {"n": 1}},
        }))
    );
    assert!(
        w.signals[0].consumed && !w.signals[1].consumed,
        "the oldest signal is taken, once"
    );
}

#[test]
fn a_wait_holds_no_task_and_a_later_signal_resolves_it() {
    let mut w = World::new(signal_workflow(), json!({}));
    w.settle();
    let first = w.keys()[0].clone();
    w.end(&first, Ok(json!({})));
    let plan = w.settle();
    assert_eq!(w.open_tasks().len(), 0, "waiting holds no sub-task");
    let go = plan.steps.iter().find(|s| s.id == "go").unwrap();
    assert_eq!(go.state, "WAITING");
    assert_eq!(go.waiting[0].signal, "go");
    assert_eq!(
        go.waiting[0].due_at_ms,
        Some(w.records["go"].opened_at_ms + 60000)
    );
    assert_eq!(
        plan.outcome,
        Outcome::Running {
            wake_at_ms: go.waiting[0].due_at_ms
        }
    );
    w.signal("other", json!({}), "x");
    assert!(
        w.settle().actions.is_empty(),
        "another signal's name does not resolve it"
    );
    w.signal("go", json!("yes"), "carol");
    w.settle();
    assert_eq!(w.open_tasks().len(), 1, "after runs");
}

#[test]
fn a_timeout_takes_the_default_or_fails_without_one() {
    let mut w = World::new(signal_workflow(), json!({}));
    w.settle();
    let first = w.keys()[0].clone();
    w.end(&first, Ok(json!({})));
    w.settle();
    w.now += 59_000;
    assert!(matches!(w.settle().outcome, Outcome::Running { .. }));
    w.now += 2_000;
    let plan = w.settle();
    match plan.outcome {
        Outcome::Failed(why) => assert!(why.contains("no \"go\" signal before the timeout"), "{why}"),
        other => panic!("{other:?}"),
    }

    let mut def = signal_workflow();
    def["steps"][1]["wait"]["default"] = json!({"n": 0});
    let mut w = World::new(def, json!({}));
    w.settle();
    let first = w.keys()[0].clone();
    w.end(&first, Ok(json!({})));
    w.settle();
    w.now += 61_000;
    w.settle();
    let after = w.keys().into_iter().find(|k| k.ends_with(":after")).unwrap();
    assert_eq!(w.submission(&after).params, json!({"got": {"n": 0}}));
    assert_eq!(
        w.records["go"].done.as_ref().unwrap().output["timed_out"],
        json!(true)
    );
}

fn approval_workflow(on_timeout: &str) -> serde_json::Value {
    json!({"name": "appr", "version": 1, "steps": [
        {"id": "review", "wait": {"approval": {"role": "supervisor", "prompt": "Refund 40 EUR?", "on_timeout": on_timeout}, "timeout_ms": 1000}},
        {"id": "refund", "needs": ["review"], "task": "system.debug.echo", "params": {"by": "${{ steps.review.output.by }}", "note": "${{ steps.review.output.comment }}"}},
    ]})
}

#[test]
fn an_approval_goes_on_when_approved_and_fails_when_rejected() {
    let mut w = World::new(approval_workflow("reject"), json!({}));
    let plan = w.settle();
    let waiting = &plan.steps[0].waiting[0];
    assert_eq!(
        (
            waiting.kind.as_str(),
            waiting.role.as_deref(),
            waiting.prompt.as_deref()
        ),
        ("approval", Some("supervisor"), Some("Refund 40 EUR?"))
    );
    w.signal("review", json!({"decision": "approve", "comment": "ok"}), "dana");
    w.settle();
    let refund = w.keys()[0].clone();
    assert_eq!(w.submission(&refund).params, json!({"by": "dana", "note": "ok"}));

    let mut w = World::new(approval_workflow("reject"), json!({}));
    w.settle();
    w.signal(
        "review",
        json!({"decision": "reject", "comment": "too much"}),
        "erin",
    );
    match w.settle().outcome {
        Outcome::Failed(why) => assert_eq!(why, "step review failed: rejected by erin: too much"),
        other => panic!("{other:?}"),
    }
    assert!(w.created.is_empty());
}

#[test]
fn an_approval_timeout_decides_on_timeout() {
    for (on_timeout, approved) in [("approve", true), ("reject", false)] {
        let mut w = World::new(approval_workflow(on_timeout), json!({}));
        w.settle();
        w.now += 1_001;
        let plan = w.settle();
        assert_eq!(!w.created.is_empty(), approved, "{on_timeout}");
        let done = w.records["review"].done.clone().unwrap();
        assert_eq!(
            (done.ok, done.output["timed_out"].clone()),
            (approved, json!(true))
        );
        if !approved {
            assert!(matches!(plan.outcome, Outcome::Failed(_)));
        }
    }
}

#[test]
fn a_sleep_is_a_durable_timer() {
    let mut w = World::new(
        json!({"name": "nap", "version": 1, "steps": [
            {"id": "nap", "sleep": {"ms": 5000}},
            {"id": "until", "needs": ["nap"], "sleep": {"until_ms": "${{ input.at }}"}},
            {"id": "done", "needs": ["until"], "task": "system.debug.echo"},
        ]}),
        json!({"at": 1_020_000}),
    );
    let plan = w.settle();
    let due = w.records["nap"].due_at_ms.unwrap();
    assert_eq!(due, 1_005_000);
    assert_eq!(
        plan.outcome,
        Outcome::Running {
            wake_at_ms: Some(due)
        }
    );
    // A restart later reads the same due time from the record.
    w.now = 1_004_999;
    assert!(w.settle().actions.is_empty());
    w.now = 1_005_000;
    let plan = w.settle();
    assert_eq!(
        plan.outcome,
        Outcome::Running {
            wake_at_ms: Some(1_020_000)
        }
    );
    w.now = 1_030_000;
    w.settle();
    assert_eq!(w.created.len(), 1);
    assert_eq!(
        w.records["until"].done.as_ref().unwrap().output,
        json!({"slept_until_ms": 1_020_000})
    );
}
