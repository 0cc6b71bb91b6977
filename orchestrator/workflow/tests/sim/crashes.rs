//! Crashes at every point: the engine may die before, during or after applying a reconcile's
//! actions; what is stored is all a restart has. Every run must end where a run without crashes
//! ends, with no step's sub-task created twice.

use cadre_workflow::{Action, Outcome};
use serde_json::{Value, json};

use crate::world::World;

fn definition() -> Value {
    json!({"name": "crashy", "version": 1, "steps": [
        {"id": "a", "task": "system.debug.echo", "params": {"v": "${{ input.v }}"}},
        {"id": "fan", "needs": ["a"], "for_each": "${{ input.items }}", "max_parallel": 2, "task": "system.debug.echo", "params": {"i": "${{ item }}"}},
        {"id": "gate", "needs": ["a"], "wait": {"signal": "go"}},
        {"id": "nap", "needs": ["gate"], "sleep": {"ms": 100}},
        {"id": "b", "needs": ["fan", "nap"], "task": "system.debug.echo", "params": {"all": "${{ steps.fan.output }}", "go": "${{ steps.gate.output.payload }}"}},
    ], "output": "${{ steps.b.output }}"})
}

/// A small deterministic generator (no dependency needed for a test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Runs the instance to its end; with `crashes`, each reconcile's actions are applied only up
/// to a random point (a crash) now and then, and sub-tasks finish in a random order.
fn run(seed: u64, crashes: bool) -> (Outcome, World) {
    let mut rng = Lcg(seed);
    let mut w = World::new(definition(), json!({"v": 7, "items": [1, 2, 3]}));
    w.signal("go", json!("now"), "ops");
    for _ in 0..500 {
        let plan = w.plan();
        if !matches!(plan.outcome, Outcome::Running { .. }) && plan.actions.is_empty() {
            return (plan.outcome, w);
        }
        let upto = if crashes && rng.next(3) == 0 {
            rng.next(plan.actions.len() + 1)
        } else {
            plan.actions.len()
        };
        for a in &plan.actions[..upto] {
            w.apply(a);
        }
        if upto < plan.actions.len()
            || plan
                .actions
                .iter()
                .any(|a| matches!(a, Action::Submit(_) | Action::Close { .. } | Action::Open { .. }))
        {
            continue;
        }
        let open = w.open_tasks();
        if let Some(key) = open.get(rng.next(open.len().max(1))).cloned() {
            let params = w.submission(&key).params.clone();
            w.end(&key, Ok(params));
        } else {
            w.now += 50;
        }
    }
    panic!("seed {seed}: the instance never ended");
}

#[test]
fn crashes_anywhere_end_where_a_clean_run_ends_and_nothing_runs_twice() {
    let (clean, clean_world) = run(0, false);
    let expected = json!({"all": [{"i": 1}, {"i": 2}, {"i": 3}], "go": "now"});
    assert_eq!(clean, Outcome::Succeeded(expected));
    let clean_keys = clean_world.keys();
    for seed in 1..200 {
        let (outcome, w) = run(seed, true);
        assert_eq!(outcome, clean, "seed {seed}");
        assert_eq!(w.keys(), clean_keys, "seed {seed}: the same sub-tasks");
        assert!(
            w.created.values().all(|n| *n == 1),
            "seed {seed}: a sub-task created twice: {:?}",
            w.created
        );
    }
}

#[test]
fn a_succeeded_step_is_never_submitted_again_after_a_restart() {
    let mut w = World::new(definition(), json!({"v": 1, "items": []}));
    w.settle();
    let a = w.keys()[0].clone();
    w.end(&a, Ok(json!({})));
    for _ in 0..5 {
        // Restarts: reconcile from the store again and again.
        w.settle();
    }
    assert_eq!(
        w.submissions.iter().filter(|s| s.key == a).count(),
        1,
        "a was submitted once"
    );
}
