//! The idempotency keys of an instance's sub-tasks and the ids of its engine records. Every
//! sub-task is submitted under a key made only of the instance id and where the sub-task sits
//! in the definition, so a submission repeated after a crash returns the task of the first one:
//! a step is submitted once, whatever restarts.
//!
//! | what | key |
//! |------|-----|
//! | a task step | `wf:<instance>:<step>` |
//! | item `i` of a `for_each` step | `wf:<instance>:<step>:<i>` |
//! | an agent step's model call of turn `n` | `wf:<instance>:<step>:t<n>:model` |
//! | tool call `k` of that turn | `wf:<instance>:<step>:t<n>:tool<k>` |
//! | a step's compensation | `wf:<instance>:undo:<step>` |
//!
//! Engine records (waits, timers, refusals) are keyed by the step id, or for an agent tool
//! call's approval by `<step>.t<n>.tool<k>` (also the signal name that decides it).

/// The key of a task step.
pub fn step(instance: &str, step: &str) -> String {
    format!("wf:{instance}:{step}")
}

/// The key of item `index` of a `for_each` step.
pub fn item(instance: &str, step: &str, index: usize) -> String {
    format!("wf:{instance}:{step}:{index}")
}

/// The key of an agent step's model call in turn `turn`.
pub fn model_call(instance: &str, step: &str, turn: usize) -> String {
    format!("wf:{instance}:{step}:t{turn}:model")
}

/// The key of tool call `call` of turn `turn` of an agent step.
pub fn tool_call(instance: &str, step: &str, turn: usize, call: usize) -> String {
    format!("wf:{instance}:{step}:t{turn}:tool{call}")
}

/// The key of a step's compensation.
pub fn compensation(instance: &str, step: &str) -> String {
    format!("wf:{instance}:undo:{step}")
}

/// The record id (and signal name) of the approval of a tool call.
pub fn tool_approval(step: &str, turn: usize, call: usize) -> String {
    format!("{step}.t{turn}.tool{call}")
}

/// Every workflow sub-task key starts with this; clients may not use it.
pub const RESERVED: &str = "wf:";

/// Every sub-task key of `instance` starts with this.
pub fn prefix(instance: &str) -> String {
    format!("{RESERVED}{instance}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_deterministic() {
        let i = "0190f0a0-0000-7000-8000-000000000000";
        let all = [
            step(i, "a"),
            item(i, "a", 0),
            item(i, "a", 1),
            model_call(i, "a", 0),
            tool_call(i, "a", 0, 0),
            tool_call(i, "a", 1, 0),
            compensation(i, "a"),
        ];
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert!(all.iter().all(|k| k.starts_with(&prefix(i)) && k.len() <= 256));
        assert_eq!(step(i, "a"), step(i, "a"));
        assert_eq!(tool_approval("a", 2, 1), "a.t2.tool1");
    }
}
