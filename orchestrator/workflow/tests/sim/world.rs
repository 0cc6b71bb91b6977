//! An in-memory world the reconciler runs against: the store (sub-tasks, records, signals)
//! and an engine that applies the reconciler's actions, with idempotent submission as intake
//! does it. A "crash" is simply running the reconciler again from what is stored.

use std::collections::BTreeMap;

use cadre_proto::TaskState;
use cadre_workflow::{
    Action, Child, Definition, Done, Observed, Outcome, Plan, Record, Signal, Submission, reconcile,
};
use serde_json::{Value, json};

pub const INSTANCE: &str = "0190f0a0-0000-7000-8000-00000000000a";

/// The model task type agent steps use in these tests.
pub const MODEL: &str = "intelligence.llm.chat";

pub struct World {
    pub def: Definition,
    pub input: Value,
    pub info: Value,
    pub children: BTreeMap<String, Child>,
    pub records: BTreeMap<String, Record>,
    pub signals: Vec<Signal>,
    pub now: i64,
    /// Every Submit action applied, in order (a repeated key is counted again).
    pub submissions: Vec<Submission>,
    /// Distinct tasks created per key (intake's idempotency keeps this at 1).
    pub created: BTreeMap<String, usize>,
    pub cancels: Vec<String>,
    pub tool_schemas: BTreeMap<String, Value>,
    next_task: usize,
    next_seq: i64,
}

impl World {
    pub fn new(def: Value, input: Value) -> World {
        let def = Definition::from_value(def).expect("a well-formed definition");
        World {
            info: json!({"id": INSTANCE, "tenant": "t", "workflow": def.name, "version": def.version}),
            def,
            input,
            children: BTreeMap::new(),
            records: BTreeMap::new(),
            signals: Vec::new(),
            now: 1_000_000,
            submissions: Vec::new(),
            created: BTreeMap::new(),
            cancels: Vec::new(),
            tool_schemas: BTreeMap::new(),
            next_task: 0,
            next_seq: 0,
        }
    }

    /// One reconcile, without applying anything.
    pub fn plan(&self) -> Plan {
        let obs = Observed {
            instance: INSTANCE,
            input: &self.input,
            info: &self.info,
            children: &self.children,
            records: &self.records,
            signals: &self.signals,
            now_ms: self.now,
            model_task_type: Some(MODEL),
            tool_schemas: &self.tool_schemas,
        };
        reconcile(&self.def, &obs)
    }

    /// Applies one action as the engine does (submission idempotent by key).
    pub fn apply(&mut self, a: &Action) {
        match a {
            Action::Submit(s) => {
                self.submissions.push(s.clone());
                if !self.children.contains_key(&s.key) {
                    self.next_task += 1;
                    *self.created.entry(s.key.clone()).or_default() += 1;
                    self.children.insert(
                        s.key.clone(),
                        Child {
                            task_id: format!("task-{}", self.next_task),
                            state: TaskState::Queued,
                            result: None,
                            error: None,
                            updated_at_ms: self.now,
                        },
                    );
                }
            }
            Action::Open { record, due_at_ms } => {
                self.records.entry(record.clone()).or_insert(Record {
                    opened_at_ms: self.now,
                    due_at_ms: *due_at_ms,
                    done: None,
                });
            }
            Action::Close {
                record,
                done,
                consume,
            } => {
                let r = self.records.entry(record.clone()).or_insert(Record {
                    opened_at_ms: self.now,
                    due_at_ms: None,
                    done: None,
                });
                if r.done.is_none() {
                    r.done = Some(done.clone());
                    if let Some(seq) = consume
                        && let Some(s) = self.signals.iter_mut().find(|s| s.seq == *seq)
                    {
                        s.consumed = true;
                    }
                }
            }
            Action::Cancel { task_id, .. } => {
                self.cancels.push(task_id.clone());
                if let Some(c) = self
                    .children
                    .values_mut()
                    .find(|c| &c.task_id == task_id && !c.state.is_terminal())
                {
                    c.state = TaskState::Cancelled;
                    c.error = Some("cancelled".into());
                    c.updated_at_ms = self.now;
                }
            }
        }
    }

    /// Reconciles and applies until nothing more is to be done now; returns the last plan.
    pub fn settle(&mut self) -> Plan {
        for _ in 0..50 {
            let plan = self.plan();
            if plan.actions.is_empty() {
                return plan;
            }
            for a in &plan.actions {
                self.apply(a);
            }
        }
        panic!("the reconciler never settled");
    }

    /// Sub-tasks not yet terminal, by key.
    pub fn open_tasks(&self) -> Vec<String> {
        self.children
            .iter()
            .filter(|(_, c)| !c.state.is_terminal())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Ends sub-task `key`.
    pub fn end(&mut self, key: &str, outcome: Result<Value, &str>) {
        self.now += 10;
        let c = self
            .children
            .get_mut(key)
            .unwrap_or_else(|| panic!("no sub-task {key}"));
        match outcome {
            Ok(v) => {
                c.state = TaskState::Succeeded;
                c.result = Some(v);
            }
            Err(e) => {
                c.state = TaskState::Failed;
                c.error = Some(e.to_string());
            }
        }
        c.updated_at_ms = self.now;
    }

    /// Runs every open sub-task with `run` (by its submission), then settles; until the
    /// instance is no longer running or `rounds` pass.
    pub fn run(&mut self, rounds: usize, run: impl Fn(&Submission) -> Result<Value, String>) -> Plan {
        let mut plan = self.settle();
        for _ in 0..rounds {
            if !matches!(plan.outcome, Outcome::Running { .. }) {
                break;
            }
            let open = self.open_tasks();
            if open.is_empty() {
                break;
            }
            for key in open {
                let sub = self.submission(&key).clone();
                match run(&sub) {
                    Ok(v) => self.end(&key, Ok(v)),
                    Err(e) => self.end(&key, Err(&e)),
                }
            }
            plan = self.settle();
        }
        plan
    }

    /// The last submission made under `key`.
    pub fn submission(&self, key: &str) -> &Submission {
        self.submissions
            .iter()
            .rev()
            .find(|s| s.key == key)
            .expect("submitted")
    }

    /// Sends a signal to the instance inbox.
    pub fn signal(&mut self, name: &str, payload: Value, sender: &str) {
        self.next_seq += 1;
        self.signals.push(Signal {
            seq: self.next_seq,
            name: name.into(),
            payload,
            sender: sender.into(),
            at_ms: self.now,
            consumed: false,
        });
    }

    /// The engine's record standing for a refused submission.
    pub fn refuse(&mut self, key: &str, error: &str, output: Value) {
        self.records.insert(
            key.into(),
            Record {
                opened_at_ms: self.now,
                due_at_ms: None,
                done: Some(Done {
                    ok: false,
                    output,
                    error: Some(error.into()),
                    at_ms: self.now,
                }),
            },
        );
    }

    /// Keys of every task created, in key order.
    pub fn keys(&self) -> Vec<String> {
        self.created.keys().cloned().collect()
    }
}

/// The step id of a key (`wf:<instance>:<step>...`).
pub fn step_of(key: &str) -> &str {
    key.strip_prefix(&format!("wf:{INSTANCE}:"))
        .unwrap_or(key)
        .split(':')
        .next()
        .unwrap_or_default()
}

/// The short form of a key, without the instance.
pub fn short(key: &str) -> String {
    key.strip_prefix(&format!("wf:{INSTANCE}:"))
        .unwrap_or(key)
        .to_string()
}
