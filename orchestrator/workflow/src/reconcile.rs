//! The reconciler: from an instance's stored state ([`Observed`]), what every step stands at
//! and what to do next ([`Plan`]). It is a pure function: the engine runs it after every event
//! of the instance (a sub-task finished, a signal arrived, a timer fired, a restart), applies
//! its actions, and runs it again until there is nothing to do. Nothing is kept in memory
//! between runs, so a crash at any point loses nothing: finished steps are stored sub-tasks,
//! submissions are idempotent ([`crate::keys`]), waits and timers are records.
//!
//! Steps run when every step they need is done (succeeded, skipped, or failed with
//! `on_failure: continue`) and their `when` holds; a false `when` skips them. A step that fails
//! with `on_failure: fail` (the default) fails the workflow: nothing new starts and running
//! sub-tasks are cancelled. With `on_failure: compensate` the succeeded steps that declare a
//! `compensate` task (and the failing step's own) are undone first, newest first, one at a time.

use std::collections::BTreeMap;

use cadre_proto::TaskState;
use serde_json::{Value, json};

use crate::condition;
use crate::definition::{Decision, Definition, MAX_ITEMS, OnFailure, Step, StepKind, WaitSpec};
use crate::keys;
use crate::observed::{Action, Done, Observed, Outcome, Plan, StepReport, Submission, Waiting};
use crate::reference::{self, Scope, StepValue};

/// Where a step stands in one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum St {
    /// Its needs are not done (or the workflow is failing).
    Pending,
    /// Sub-tasks run.
    Running,
    /// It waits for a signal, an approval or a timer.
    Waiting,
    /// `when` was false.
    Skipped,
    /// Done, with its output.
    Succeeded(Value),
    /// Failed, with why.
    Failed(String),
}

/// What a sub-task (or the engine's record standing for it) says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Sub {
    /// Never submitted.
    Absent,
    /// Queued or running.
    Running,
    /// Succeeded with its result.
    Succeeded(Value),
    /// Ended otherwise; `budget` when intake refused it for the tenant's budget.
    Failed {
        /// Why.
        error: String,
        /// Refused by the budget check (the agent loop stops rather than fails).
        budget: bool,
    },
}

/// One reconcile's working state.
pub(crate) struct Reconciler<'a> {
    pub(crate) def: &'a Definition,
    pub(crate) obs: &'a Observed<'a>,
    pub(crate) actions: Vec<Action>,
    pub(crate) states: BTreeMap<String, St>,
    /// Outputs (and states) of done steps: the `steps` root of references.
    pub(crate) done: BTreeMap<String, StepValue>,
    pub(crate) reports: BTreeMap<String, StepReport>,
    pub(crate) wake: Option<i64>,
    /// Running sub-tasks by step, cancelled if the workflow fails.
    pub(crate) running: BTreeMap<String, Vec<String>>,
    /// Steps that failed because a sub-task was cancelled (by the workflow failing around
    /// them, or by hand): not the reason the workflow fails when another step is.
    pub(crate) cancelled: std::collections::BTreeSet<String>,
}

/// Decides the next actions of an instance of `def` from `obs`.
pub fn reconcile(def: &Definition, obs: &Observed<'_>) -> Plan {
    let mut r = Reconciler {
        def,
        obs,
        actions: Vec::new(),
        states: BTreeMap::new(),
        done: BTreeMap::new(),
        reports: BTreeMap::new(),
        wake: None,
        running: BTreeMap::new(),
        cancelled: Default::default(),
    };
    let mut failing = false;
    for step in topological(def) {
        let st = if failing {
            r.observe_only(step)
        } else {
            r.advance(step)
        };
        if let St::Failed(_) = &st
            && step.on_failure != OnFailure::Continue
        {
            failing = true;
        }
        r.settle(step, st);
    }
    let outcome = r.outcome();
    let steps = def.steps.iter().filter_map(|s| r.reports.remove(&s.id)).collect();
    Plan {
        actions: r.actions,
        steps,
        outcome,
    }
}

/// Steps in an order where every step comes after what it needs (the definition is acyclic:
/// validation refused cycles; a cycle left here would just keep its steps pending).
fn topological(def: &Definition) -> Vec<&Step> {
    let mut out: Vec<&Step> = Vec::with_capacity(def.steps.len());
    let mut placed = std::collections::BTreeSet::new();
    while out.len() < def.steps.len() {
        let before = out.len();
        for s in &def.steps {
            if !placed.contains(s.id.as_str()) && s.needs.iter().all(|n| placed.contains(n.as_str())) {
                placed.insert(s.id.as_str());
                out.push(s);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

impl<'a> Reconciler<'a> {
    /// The scope references of `step` resolve in (no item).
    pub(crate) fn scope(&self) -> Scope<'_> {
        Scope {
            input: Some(self.obs.input),
            steps: Some(&self.done),
            item: None,
            index: None,
            instance: Some(self.obs.info),
        }
    }

    /// What the sub-task under `key` says (a refused submission is an engine record under
    /// the same key).
    pub(crate) fn sub(&mut self, step: &str, key: &str) -> Sub {
        if let Some(c) = self.obs.children.get(key) {
            self.report(step).tasks.push(c.task_id.clone());
            return match c.state {
                TaskState::Succeeded => Sub::Succeeded(c.result.clone().unwrap_or(Value::Null)),
                s if s.is_terminal() => {
                    if s == TaskState::Cancelled {
                        self.cancelled.insert(step.to_string());
                    }
                    Sub::Failed {
                        error: format!(
                            "{} ({})",
                            c.error.clone().unwrap_or_else(|| "no reason given".into()),
                            s.as_str()
                        ),
                        budget: false,
                    }
                }
                _ => {
                    self.running
                        .entry(step.to_string())
                        .or_default()
                        .push(c.task_id.clone());
                    Sub::Running
                }
            };
        }
        match self.obs.records.get(key).and_then(|r| r.done.clone()) {
            Some(d) if d.ok => Sub::Succeeded(d.output),
            Some(d) => Sub::Failed {
                budget: d.output.get("refused").and_then(Value::as_str) == Some("budget"),
                error: d.error.unwrap_or_default(),
            },
            None => Sub::Absent,
        }
    }

    /// Submits a sub-task of `step`.
    pub(crate) fn submit(&mut self, step: &Step, key: String, task_type: &str, params: Value) {
        self.actions.push(Action::Submit(Submission {
            key,
            step: step.id.clone(),
            task_type: task_type.to_string(),
            params,
            timeout_ms: step.timeout_ms,
            retry: step.retry.clone(),
        }));
    }

    pub(crate) fn report(&mut self, step: &str) -> &mut StepReport {
        self.reports
            .entry(step.to_string())
            .or_insert_with(|| StepReport {
                id: step.to_string(),
                kind: String::new(),
                state: "PENDING".into(),
                output: Value::Null,
                error: None,
                tasks: Vec::new(),
                waiting: Vec::new(),
            })
    }

    /// Wake the engine at `at` at the latest.
    pub(crate) fn wake_at(&mut self, at: i64) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// Records `st` as `step`'s state.
    fn settle(&mut self, step: &Step, st: St) {
        let (state, output, error) = match &st {
            St::Pending => ("PENDING", Value::Null, None),
            St::Running => ("RUNNING", Value::Null, None),
            St::Waiting => ("WAITING", Value::Null, None),
            St::Skipped => ("SKIPPED", Value::Null, None),
            St::Succeeded(v) => ("SUCCEEDED", v.clone(), None),
            St::Failed(e) => ("FAILED", Value::Null, Some(e.clone())),
        };
        if matches!(st, St::Skipped | St::Succeeded(_) | St::Failed(_)) {
            self.done.insert(
                step.id.clone(),
                StepValue {
                    state: state.to_string(),
                    output: output.clone(),
                },
            );
        }
        let kind = kind_name(step).to_string();
        let r = self.report(&step.id);
        r.kind = kind;
        r.state = state.into();
        r.output = output;
        r.error = error;
        self.states.insert(step.id.clone(), st);
    }

    /// While the workflow fails, nothing starts: a step only reports what it already did.
    fn observe_only(&mut self, step: &Step) -> St {
        let started = self
            .obs
            .children
            .keys()
            .any(|k| owns(self.obs.instance, &step.id, k))
            || self.obs.records.contains_key(&step.id);
        if !started || !self.needs_done(step) {
            return St::Pending;
        }
        let saved = std::mem::take(&mut self.actions);
        let st = self.advance(step);
        self.actions = saved;
        st
    }

    /// Whether every step `step` needs is done.
    fn needs_done(&self, step: &Step) -> bool {
        step.needs.iter().all(|n| match self.states.get(n) {
            Some(St::Skipped | St::Succeeded(_)) => true,
            Some(St::Failed(_)) => self
                .def
                .step(n)
                .is_some_and(|s| s.on_failure == OnFailure::Continue),
            _ => false,
        })
    }

    /// One step: waits for its needs, evaluates `when`, then runs it by kind.
    fn advance(&mut self, step: &Step) -> St {
        if !self.needs_done(step) {
            return St::Pending;
        }
        if let Some(cond) = &step.when {
            match condition::eval(cond, &self.scope()) {
                Ok(false) => return St::Skipped,
                Ok(true) => {}
                Err(e) => return St::Failed(format!("when: {e}")),
            }
        }
        if step.for_each.is_some() {
            return self.fan_out(step);
        }
        match step.kind() {
            StepKind::Task(task) => self.task(step, task),
            StepKind::Wait(w) => self.wait(step, w),
            StepKind::Sleep(_) => self.sleep(step),
            StepKind::Agent(a) => self.agent(step, a),
        }
    }

    /// A task step: one sub-task.
    fn task(&mut self, step: &Step, task: &str) -> St {
        let key = keys::step(self.obs.instance, &step.id);
        match self.sub(&step.id, &key) {
            Sub::Succeeded(v) => St::Succeeded(v),
            Sub::Failed { error, .. } => St::Failed(error),
            Sub::Running => St::Running,
            Sub::Absent => match self.scope().render(&step.params) {
                Ok(params) => {
                    self.submit(step, key, task, params);
                    St::Running
                }
                Err(e) => St::Failed(format!("params: {e}")),
            },
        }
    }

    /// A `for_each` step: one sub-task per item, at most `max_parallel` at once; its output is
    /// the items' outputs in index order. The first failed item stops new ones from starting;
    /// the step fails once the running ones end.
    fn fan_out(&mut self, step: &Step) -> St {
        let items = match self.items(step) {
            Ok(items) => items,
            Err(e) => return St::Failed(format!("for_each: {e}")),
        };
        let task = match step.kind() {
            StepKind::Task(t) => t.to_string(),
            _ => return St::Failed("for_each: only task steps fan out".into()),
        };
        let max = step.max_parallel.unwrap_or(1) as usize;
        let (mut outputs, mut running, mut failed) = (Vec::with_capacity(items.len()), 0usize, None);
        let mut absent = Vec::new();
        for (i, _) in items.iter().enumerate() {
            match self.sub(&step.id, &keys::item(self.obs.instance, &step.id, i)) {
                Sub::Succeeded(v) => outputs.push(v),
                Sub::Running => {
                    running += 1;
                    outputs.push(Value::Null);
                }
                Sub::Failed { error, .. } => {
                    failed.get_or_insert(format!("item {i}: {error}"));
                    outputs.push(Value::Null);
                }
                Sub::Absent => {
                    absent.push(i);
                    outputs.push(Value::Null);
                }
            }
        }
        if failed.is_none() {
            for i in absent.iter().copied().take(max.saturating_sub(running)) {
                let scope = Scope {
                    item: Some(&items[i]),
                    index: Some(i),
                    ..self.scope()
                };
                match scope.render(&step.params) {
                    Ok(params) => {
                        let key = keys::item(self.obs.instance, &step.id, i);
                        self.submit(step, key, &task, params);
                        running += 1;
                    }
                    Err(e) => {
                        failed = Some(format!("item {i}: params: {e}"));
                        break;
                    }
                }
            }
        }
        match failed {
            Some(e) if running == 0 => St::Failed(e),
            _ if running > 0 || (!absent.is_empty() && failed.is_none()) => St::Running,
            _ => St::Succeeded(Value::Array(outputs)),
        }
    }

    /// The array a `for_each` names (at most [`MAX_ITEMS`]).
    fn items(&self, step: &Step) -> Result<Vec<Value>, String> {
        let expr = step.for_each.as_deref().unwrap_or_default();
        match self.scope().render(&Value::from(expr))? {
            Value::Array(items) if items.len() <= MAX_ITEMS => Ok(items),
            Value::Array(items) => Err(format!("{} items; at most {MAX_ITEMS}", items.len())),
            other => Err(format!("{expr} is not an array but {}", json_kind(&other))),
        }
    }

    /// A wait step: takes the oldest signal of its name from the inbox (sent before or after
    /// the wait opened), or times out.
    fn wait(&mut self, step: &Step, w: &WaitSpec) -> St {
        let name = w.signal.clone().unwrap_or_else(|| step.id.clone());
        let record = self.obs.records.get(&step.id).cloned();
        if let Some(done) = record.as_ref().and_then(|r| r.done.clone()) {
            return if done.ok {
                St::Succeeded(done.output)
            } else {
                St::Failed(done.error.unwrap_or_default())
            };
        }
        let opened = record.as_ref().map_or(self.obs.now_ms, |r| r.opened_at_ms);
        let due = w.timeout_ms.map(|t| opened + t as i64);
        if let Some(sig) = self.obs.signals.iter().find(|s| !s.consumed && s.name == name) {
            let done = match &w.approval {
                Some(_) => approval_done(sig.payload.clone(), &sig.sender, sig.at_ms),
                None => Done {
                    ok: true,
                    output: json!({"signal": name, "payload": sig.payload, "sender": sig.sender, "at_ms": sig.at_ms}),
                    error: None,
                    at_ms: sig.at_ms,
                },
            };
            self.close(&step.id, done.clone(), Some(sig.seq));
            return if done.ok {
                St::Succeeded(done.output)
            } else {
                St::Failed(done.error.unwrap_or_default())
            };
        }
        if let Some(due) = due
            && self.obs.now_ms >= due
        {
            let done = timed_out(w, &name, self.obs.now_ms);
            self.close(&step.id, done.clone(), None);
            return if done.ok {
                St::Succeeded(done.output)
            } else {
                St::Failed(done.error.unwrap_or_default())
            };
        }
        if record.is_none() {
            self.actions.push(Action::Open {
                record: step.id.clone(),
                due_at_ms: due,
            });
        }
        if let Some(due) = due {
            self.wake_at(due);
        }
        let waiting = Waiting {
            signal: name,
            kind: if w.approval.is_some() {
                "approval"
            } else {
                "signal"
            }
            .into(),
            role: w.approval.as_ref().map(|a| a.role.to_string()),
            prompt: w.approval.as_ref().map(|a| self.prompt(&a.prompt)),
            due_at_ms: due,
        };
        self.report(&step.id).waiting.push(waiting);
        St::Waiting
    }

    /// An approval's prompt with its references filled in (as written if one cannot be).
    fn prompt(&self, template: &str) -> String {
        match self.scope().render(&Value::from(template)) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => template.to_string(),
        }
    }

    /// Settles record `record` (a wait, a timer) with `done`, taking signal `consume`.
    pub(crate) fn close(&mut self, record: &str, done: Done, consume: Option<i64>) {
        self.actions.push(Action::Close {
            record: record.to_string(),
            done,
            consume,
        });
    }

    /// A sleep step: a timer record due at a fixed time.
    fn sleep(&mut self, step: &Step) -> St {
        let StepKind::Sleep(spec) = step.kind() else {
            return St::Failed("not a sleep step".into());
        };
        let record = self.obs.records.get(&step.id).cloned();
        if let Some(done) = record.as_ref().and_then(|r| r.done.clone()) {
            return St::Succeeded(done.output);
        }
        let due = match (&record, spec.ms, &spec.until_ms) {
            (Some(r), _, _) => r.due_at_ms.unwrap_or(r.opened_at_ms),
            (None, Some(ms), _) => self.obs.now_ms + ms as i64,
            (None, None, Some(until)) => match self.scope().render(until) {
                Ok(v) => match v.as_i64() {
                    Some(t) => t,
                    None => return St::Failed(format!("sleep.until_ms: {v} is not Unix milliseconds")),
                },
                Err(e) => return St::Failed(format!("sleep.until_ms: {e}")),
            },
            (None, None, None) => self.obs.now_ms,
        };
        if self.obs.now_ms >= due {
            let done = Done {
                ok: true,
                output: json!({"slept_until_ms": due}),
                error: None,
                at_ms: self.obs.now_ms,
            };
            self.close(&step.id, done.clone(), None);
            return St::Succeeded(done.output);
        }
        if record.is_none() {
            self.actions.push(Action::Open {
                record: step.id.clone(),
                due_at_ms: Some(due),
            });
        }
        self.wake_at(due);
        self.report(&step.id).waiting.push(Waiting {
            signal: String::new(),
            kind: "timer".into(),
            role: None,
            prompt: None,
            due_at_ms: Some(due),
        });
        St::Waiting
    }

    /// The instance's outcome once every step has been looked at.
    fn outcome(&mut self) -> Outcome {
        let failures: Vec<(&Step, String)> = self
            .def
            .steps
            .iter()
            .filter_map(|s| match self.states.get(&s.id) {
                Some(St::Failed(e)) if s.on_failure != OnFailure::Continue => Some((s, e.clone())),
                _ => None,
            })
            .collect();
        let failed = failures
            .iter()
            .find(|(s, _)| !self.cancelled.contains(&s.id))
            .or(failures.first())
            .cloned();
        if let Some((step, error)) = failed {
            let why = format!("step {} failed: {error}", step.id);
            self.cancel_running(&why);
            if step.on_failure == OnFailure::Compensate {
                return self.compensate(step, why);
            }
            return Outcome::Failed(why);
        }
        let all_done = self
            .states
            .values()
            .all(|s| matches!(s, St::Skipped | St::Succeeded(_) | St::Failed(_)))
            && self.states.len() == self.def.steps.len();
        if !all_done {
            return Outcome::Running {
                wake_at_ms: self.wake,
            };
        }
        let output = match &self.def.output {
            Some(template) => self.scope().render(template),
            None => Ok(Value::Object(
                self.done
                    .iter()
                    .map(|(k, v)| (k.clone(), v.output.clone()))
                    .collect(),
            )),
        };
        match output {
            Ok(v) => Outcome::Succeeded(v),
            Err(e) => Outcome::Failed(format!("output: {e}")),
        }
    }

    fn cancel_running(&mut self, why: &str) {
        let running = std::mem::take(&mut self.running);
        for task_id in running.into_values().flatten() {
            self.actions.push(Action::Cancel {
                task_id,
                reason: format!("workflow failed: {why}"),
            });
        }
    }

    /// Undoes, one at a time and newest first, every succeeded step with a `compensate` task
    /// and the failing step's own; fails the instance once all are done.
    fn compensate(&mut self, failing: &Step, why: String) -> Outcome {
        let mut undo: Vec<(i64, &Step)> = self
            .def
            .steps
            .iter()
            .filter(|s| s.compensate.is_some())
            .filter(|s| s.id == failing.id || matches!(self.states.get(&s.id), Some(St::Succeeded(_))))
            .map(|s| (self.finished_at(s), s))
            .collect();
        undo.sort_by_key(|(at, s)| (std::cmp::Reverse(*at), s.id.clone()));
        let mut undone = Vec::new();
        for (_, s) in undo {
            let Some(call) = &s.compensate else { continue };
            let key = keys::compensation(self.obs.instance, &s.id);
            match self.sub(&s.id, &key) {
                Sub::Succeeded(_) => undone.push(s.id.clone()),
                Sub::Failed { error, .. } => undone.push(format!("{} (undo failed: {error})", s.id)),
                Sub::Running => return Outcome::Running { wake_at_ms: None },
                Sub::Absent => {
                    match self.scope().render(&call.params) {
                        Ok(params) => self.submit(s, key, &call.task, params),
                        Err(e) => {
                            undone.push(format!("{} (undo params: {e})", s.id));
                            continue;
                        }
                    }
                    return Outcome::Running { wake_at_ms: None };
                }
            }
        }
        if undone.is_empty() {
            Outcome::Failed(why)
        } else {
            Outcome::Failed(format!("{why}; compensated {}", undone.join(", ")))
        }
    }

    /// When a step finished: its latest sub-task's last change, or its record's.
    fn finished_at(&self, s: &Step) -> i64 {
        let tasks = self
            .obs
            .children
            .iter()
            .filter(|(k, _)| owns(self.obs.instance, &s.id, k))
            .map(|(_, c)| c.updated_at_ms);
        let record = self
            .obs
            .records
            .get(&s.id)
            .and_then(|r| r.done.as_ref().map(|d| d.at_ms));
        tasks.chain(record).max().unwrap_or(0)
    }
}

/// Whether sub-task `key` belongs to `step` of `instance` (not its compensation).
fn owns(instance: &str, step: &str, key: &str) -> bool {
    let Some(rest) = key.strip_prefix(&keys::prefix(instance)) else {
        return false;
    };
    rest == step || rest.strip_prefix(step).is_some_and(|r| r.starts_with(':'))
}

/// An approval's end from a signal's payload: approve, or reject (the step fails).
fn approval_done(payload: Value, sender: &str, at_ms: i64) -> Done {
    let decision = payload
        .get("decision")
        .and_then(Value::as_str)
        .unwrap_or("reject");
    let comment = payload.get("comment").and_then(Value::as_str).unwrap_or_default();
    let output = json!({"decision": decision, "comment": comment, "by": sender, "at_ms": at_ms});
    if decision == "approve" {
        Done {
            ok: true,
            output,
            error: None,
            at_ms,
        }
    } else {
        let error = if comment.is_empty() {
            format!("rejected by {sender}")
        } else {
            format!("rejected by {sender}: {comment}")
        };
        Done {
            ok: false,
            output,
            error: Some(error),
            at_ms,
        }
    }
}

/// A wait's end at its timeout: an approval decides `on_timeout`; a signal wait takes its
/// `default`, or fails without one.
fn timed_out(w: &WaitSpec, name: &str, now: i64) -> Done {
    if let Some(a) = &w.approval {
        let decision = match a.on_timeout {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        };
        let mut done = approval_done(
            json!({"decision": decision, "comment": "timed out"}),
            "timeout",
            now,
        );
        done.output["timed_out"] = json!(true);
        return done;
    }
    match &w.default {
        Some(d) => Done {
            ok: true,
            output: json!({"signal": name, "payload": d, "timed_out": true, "at_ms": now}),
            error: None,
            at_ms: now,
        },
        None => Done {
            ok: false,
            output: Value::Null,
            error: Some(format!("no {name:?} signal before the timeout")),
            at_ms: now,
        },
    }
}

/// The kind of a step, as reports name it.
fn kind_name(step: &Step) -> &'static str {
    match step.kind() {
        StepKind::Task(_) => "task",
        StepKind::Wait(w) if w.approval.is_some() => "approval",
        StepKind::Wait(_) => "wait",
        StepKind::Sleep(_) => "sleep",
        StepKind::Agent(_) => "agent",
    }
}

/// `a string`, `an object`, ... for messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Every reference in a value is well formed (for tests and the engine's checks).
pub fn has_references(v: &Value) -> bool {
    reference::references(v).is_ok_and(|r| !r.is_empty())
}
