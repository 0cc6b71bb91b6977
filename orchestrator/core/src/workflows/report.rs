//! An instance as the reconciler reads it ([`Snapshot`]: its stored sub-tasks, records and
//! signals), and its steps as people see them (Task.steps on Get, the dashboard, the engine's
//! progress events).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cadre_proto::clock::now_ms;
use cadre_proto::{TaskEvent, TaskRecord, TaskState, v1};
use cadre_workflow::{Child, Definition, Observed, Plan, Record, Signal, StepReport, keys, reconcile};
use serde_json::{Value, json};

use super::kind_version;
use crate::error::{Error, Result};
use crate::node::Node;

/// One instance's stored state, owned, for [`Snapshot::observed`].
pub(crate) struct Snapshot {
    /// The instance's id as text.
    id: String,
    input: Value,
    info: Value,
    children: BTreeMap<String, Child>,
    records: BTreeMap<String, Record>,
    signals: Vec<Signal>,
    tool_schemas: BTreeMap<String, Value>,
    model: Option<String>,
    /// Sub-task times by id: (created, updated, finished).
    times: HashMap<String, (i64, i64, bool)>,
}

impl Snapshot {
    /// This snapshot brought up to date with the terminal events of its sub-tasks since it was
    /// read (`news`), or None when one of them is not a sub-task it knows or lacks what the
    /// store would say (a SUCCEEDED event without its result): then it must be read again.
    pub fn patched(mut self, news: &[Arc<TaskEvent>]) -> Option<Snapshot> {
        for e in news {
            let id = e.task_id.to_string();
            if !e.state.is_terminal() || (e.state == TaskState::Succeeded && e.result.is_none()) {
                return None;
            }
            let child = self.children.values_mut().find(|c| c.task_id == id)?;
            child.state = e.state;
            child.result = e.result.clone();
            child.error = (e.state != TaskState::Succeeded).then(|| e.message.clone());
            child.updated_at_ms = e.at_ms;
            if let Some(t) = self.times.get_mut(&id) {
                *t = (t.0, e.at_ms, true);
            }
        }
        Some(self)
    }

    /// Adds a sub-task just submitted under `key` (as intake returned it).
    pub fn submitted(&mut self, key: &str, t: &TaskRecord) {
        self.times.insert(
            t.id.to_string(),
            (t.created_at_ms, t.updated_at_ms, t.state.is_terminal()),
        );
        self.children.insert(key.to_string(), child_of(t));
    }

    /// What the reconciler reads, at `now_ms`.
    pub fn observed(&self, now_ms: i64) -> Observed<'_> {
        Observed {
            instance: &self.id,
            input: &self.input,
            info: &self.info,
            children: &self.children,
            records: &self.records,
            signals: &self.signals,
            now_ms,
            model_task_type: self.model.as_deref(),
            tool_schemas: &self.tool_schemas,
        }
    }
}

impl Node {
    /// Reads instance `rec`'s stored state for a reconcile of `def`.
    pub(crate) async fn snapshot(&self, rec: &TaskRecord, def: &Definition) -> Result<Snapshot> {
        let state = self.store.instance_state(rec.id, &rec.tenant).await?;
        let id = rec.id.to_string();
        let prefix = keys::prefix(&id);
        let mut children = BTreeMap::new();
        let mut times = HashMap::new();
        for c in state.children {
            let Some(key) = c.spec.idempotency_key.clone().filter(|k| k.starts_with(&prefix)) else {
                continue;
            };
            times.insert(
                c.id.to_string(),
                (c.created_at_ms, c.updated_at_ms, c.state.is_terminal()),
            );
            children.insert(key, child_of(&c));
        }
        let mut tool_schemas = BTreeMap::new();
        for step in &def.steps {
            for tool in step.agent.iter().flat_map(|a| &a.tools) {
                if let Some(schema) = self.params_schema_of(&tool.task) {
                    tool_schemas.insert(tool.task.clone(), schema);
                }
            }
        }
        Ok(Snapshot {
            info: json!({"id": id, "tenant": rec.tenant, "workflow": def.name, "version": def.version}),
            id,
            input: rec.spec.params.clone(),
            children,
            records: state.records,
            signals: state.signals,
            tool_schemas,
            model: self.model_task_type(),
            times,
        })
    }

    /// The params schema of a routed task type, if its executor publishes one.
    fn params_schema_of(&self, task_type: &str) -> Option<Value> {
        let route = self.router.routes().resolve(task_type)?.clone();
        self.router.executor(&route.executor)?.params_schema()
    }

    /// The task type routed to the `llm` executor (agent steps' model calls), if any.
    pub(crate) fn model_task_type(&self) -> Option<String> {
        self.router
            .routes()
            .iter()
            .find(|(_, r)| r.executor == "llm")
            .map(|(t, _)| t.clone())
    }

    /// The steps of an instance now, for Get (read-only: nothing is applied).
    pub(crate) async fn instance_steps(&self, rec: &TaskRecord) -> Result<Vec<v1::WorkflowStep>> {
        let name = cadre_workflow::workflow_of(&rec.spec.task_type)
            .ok_or_else(|| Error::NotFound(format!("task {} is not a workflow instance", rec.id)))?;
        let version = kind_version(&rec.worker_kind);
        let loaded = self.loaded(name, version).await?;
        let snap = self.snapshot(rec, &loaded.def).await?;
        let plan = reconcile(&loaded.def, &snap.observed(now_ms()));
        Ok(wire_steps(&plan, &snap))
    }
}

/// The plan's step reports in wire form, with when each step started and ended.
pub(crate) fn wire_steps(plan: &Plan, snap: &Snapshot) -> Vec<v1::WorkflowStep> {
    plan.steps.iter().map(|s| wire_step(s, snap)).collect()
}

fn wire_step(s: &StepReport, snap: &Snapshot) -> v1::WorkflowStep {
    let task_times: Vec<(i64, i64, bool)> = s
        .tasks
        .iter()
        .filter_map(|t| snap.times.get(t).copied())
        .collect();
    let record = snap.records.get(&s.id);
    let started = task_times
        .iter()
        .map(|t| t.0)
        .chain(record.map(|r| r.opened_at_ms))
        .min()
        .unwrap_or(0);
    let finished = matches!(s.state.as_str(), "SUCCEEDED" | "FAILED" | "SKIPPED");
    let ended = if finished {
        task_times
            .iter()
            .map(|t| t.1)
            .chain(record.and_then(|r| r.done.as_ref()).map(|d| d.at_ms))
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    v1::WorkflowStep {
        id: s.id.clone(),
        kind: s.kind.clone(),
        state: s.state.clone(),
        output_json: if s.output.is_null() && !finished {
            String::new()
        } else {
            s.output.to_string()
        },
        error: s.error.clone().unwrap_or_default(),
        task_ids: s.tasks.clone(),
        waiting: s
            .waiting
            .iter()
            .map(|w| v1::WorkflowWait {
                signal: w.signal.clone(),
                kind: w.kind.clone(),
                role: w.role.clone().unwrap_or_default(),
                prompt: w.prompt.clone().unwrap_or_default(),
                due_at_ms: w.due_at_ms.unwrap_or(0),
            })
            .collect(),
        started_at_ms: started,
        ended_at_ms: ended,
    }
}

/// A stored sub-task as the reconciler sees it.
fn child_of(t: &TaskRecord) -> Child {
    Child {
        task_id: t.id.to_string(),
        state: t.state,
        result: t.result.clone(),
        error: t.error.clone(),
        updated_at_ms: t.updated_at_ms,
    }
}

/// A short line of what changed between two reports of the steps (`a SUCCEEDED, b RUNNING`),
/// for the instance's progress events; None when nothing did.
pub(crate) fn changes(before: &[(String, String)], now: &[StepReport]) -> Option<String> {
    let changed: Vec<String> = now
        .iter()
        .filter(|s| {
            s.state != "PENDING" && !before.iter().any(|(id, state)| id == &s.id && state == &s.state)
        })
        .map(|s| match s.waiting.first() {
            Some(w) if s.state == "WAITING" => format!("{} WAITING for {} {}", s.id, w.kind, w.signal),
            _ => format!("{} {}", s.id, s.state),
        })
        .collect();
    (!changed.is_empty()).then(|| format!("steps: {}", changed.join(", ")))
}

/// The fraction of steps done (succeeded, failed or skipped).
pub(crate) fn fraction_done(steps: &[StepReport]) -> f64 {
    if steps.is_empty() {
        return 0.0;
    }
    let done = steps
        .iter()
        .filter(|s| matches!(s.state.as_str(), "SUCCEEDED" | "FAILED" | "SKIPPED"))
        .count();
    done as f64 / steps.len() as f64
}
