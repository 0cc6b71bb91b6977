//! Registration checks: a definition is refused with every problem named (shape, names,
//! dependencies and cycles, references, task types and their params, limits).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::condition;
use crate::definition::{
    Definition, MAX_ITEMS, MAX_PARALLEL, MAX_STEPS, MAX_TOOLS, MAX_TURNS, Step, StepKind,
};
use crate::reference::{self, Ref, Root};

/// What registration checks task types against (the node's routes and executors).
pub trait Catalog {
    /// The params schema of `task_type`: None if no route names the type, `Some(None)` if its
    /// executor publishes none.
    fn params_schema(&self, task_type: &str) -> Option<Option<Value>>;
    /// The task type agent steps run their model calls as (routed to the `llm` executor), if
    /// any.
    fn model_task_type(&self) -> Option<String>;
}

/// Checks `def` against `catalog`; `Err` lists every problem.
pub fn validate(def: &Definition, catalog: &dyn Catalog) -> Result<(), Vec<String>> {
    let mut p = Vec::new();
    check_names(def, &mut p);
    let ids: BTreeSet<&str> = def.steps.iter().map(|s| s.id.as_str()).collect();
    for s in &def.steps {
        for n in &s.needs {
            if n == &s.id {
                p.push(format!("steps.{}.needs: a step cannot need itself", s.id));
            } else if !ids.contains(n.as_str()) {
                p.push(format!("steps.{}.needs: no step {n:?}", s.id));
            }
        }
    }
    if let Some(cycle) = find_cycle(def) {
        p.push(format!("steps: needs form a cycle: {}", cycle.join(" -> ")));
    }
    let upstream = upstream(def);
    for s in &def.steps {
        check_step(s, &upstream[s.id.as_str()], catalog, &mut p);
    }
    check_output(def, &mut p);
    if let Some(schema) = &def.input_schema
        && let Err(e) = cadre_agents::schema::check_schema(schema)
    {
        p.push(format!("input_schema: {e}"));
    }
    if p.is_empty() { Ok(()) } else { Err(p) }
}

fn check_names(def: &Definition, p: &mut Vec<String>) {
    let name_ok = !def.name.is_empty()
        && def.name.len() <= 48
        && def
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && def
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        p.push(format!(
            "name: {:?} must be 1-48 of a-z 0-9 _ - starting with a letter or digit",
            def.name
        ));
    }
    if def.version == 0 {
        p.push("version: must be 1 or more".into());
    }
    if def.steps.is_empty() || def.steps.len() > MAX_STEPS {
        p.push(format!("steps: 1 to {MAX_STEPS} steps, got {}", def.steps.len()));
    }
    let mut seen = BTreeSet::new();
    for s in &def.steps {
        if s.id.is_empty()
            || s.id.len() > 64
            || !s
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            p.push(format!("steps: id {:?} must be 1-64 of a-z 0-9 _", s.id));
        }
        if !seen.insert(s.id.as_str()) {
            p.push(format!("steps: id {:?} is used twice", s.id));
        }
    }
}

/// A cycle of `needs`, as the ids along it (first id repeated at the end), if there is one.
fn find_cycle(def: &Definition) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    // Self-needs and unknown needs are reported on their own.
    let needs: BTreeMap<&str, Vec<&str>> = def
        .steps
        .iter()
        .map(|s| {
            let known = s
                .needs
                .iter()
                .map(String::as_str)
                .filter(|n| *n != s.id && def.step(n).is_some());
            (s.id.as_str(), known.collect())
        })
        .collect();
    let mut mark: BTreeMap<&str, Mark> = needs.keys().map(|k| (*k, Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        needs: &BTreeMap<&'a str, Vec<&'a str>>,
        mark: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(n, Mark::Open);
        path.push(n);
        for &m in needs.get(n).into_iter().flatten() {
            match mark.get(m) {
                Some(Mark::Open) => {
                    let from = path.iter().position(|x| *x == m).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.to_string());
                    return Some(cycle);
                }
                Some(Mark::New) => {
                    if let Some(c) = visit(m, needs, mark, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        mark.insert(n, Mark::Done);
        None
    }
    let keys: Vec<&str> = needs.keys().copied().collect();
    for k in keys {
        if mark[k] == Mark::New
            && let Some(c) = visit(k, &needs, &mut mark, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// Every step's transitive `needs` (what it may reference); a step in a cycle counts itself.
pub fn upstream(def: &Definition) -> BTreeMap<&str, BTreeSet<String>> {
    let by_id: BTreeMap<&str, &Step> = def.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut out: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in &def.steps {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = s.needs.iter().map(String::as_str).collect();
        while let Some(n) = stack.pop() {
            if seen.insert(n.to_string())
                && let Some(step) = by_id.get(n)
            {
                stack.extend(step.needs.iter().map(String::as_str));
            }
        }
        out.insert(s.id.as_str(), seen);
    }
    out
}

/// References of `value` (named `at`) must be well formed and read only `upstream` steps; item
/// and index only where `fan_out`.
fn check_refs(value: &Value, at: &str, upstream: &BTreeSet<String>, fan_out: bool, p: &mut Vec<String>) {
    for r in reference::each_reference(value) {
        match r {
            Ok(r) => check_ref(&r, at, upstream, fan_out, p),
            Err(e) => p.push(format!("{at}: {e}")),
        }
    }
}

fn check_ref(r: &Ref, at: &str, upstream: &BTreeSet<String>, fan_out: bool, p: &mut Vec<String>) {
    if let Some(step) = r.step()
        && !upstream.contains(step)
    {
        p.push(format!(
            "{at}: {} reads step {step:?}, which is not among this step's needs (directly or through them)",
            r.text
        ));
    }
    if matches!(r.root, Root::Item | Root::Index) && !fan_out {
        p.push(format!("{at}: {} is only defined in a for_each step", r.text));
    }
}

fn check_step(s: &Step, upstream: &BTreeSet<String>, catalog: &dyn Catalog, p: &mut Vec<String>) {
    let at = format!("steps.{}", s.id);
    let fan_out = s.for_each.is_some();
    if let Some(cond) = &s.when {
        p.extend(condition::check(cond, &format!("{at}.when")));
        check_refs(cond, &format!("{at}.when"), upstream, fan_out, p);
    }
    check_fan_out(s, &at, upstream, p);
    if let Some(r) = &s.retry
        && let Err(e) =
            cadre_proto::RetryPolicy::from_wire(&r.to_wire(), &cadre_proto::RetryPolicy::default())
    {
        p.push(format!("{at}.retry: {e}"));
    }
    match s.kind() {
        StepKind::Task(task) => {
            check_task(task, &s.params, &format!("{at}.params"), catalog, p);
            check_refs(&s.params, &format!("{at}.params"), upstream, fan_out, p);
        }
        StepKind::Wait(w) => {
            if w.signal.is_some() == w.approval.is_some() {
                p.push(format!("{at}.wait: exactly one of signal and approval"));
            }
            if let Some(name) = &w.signal
                && !valid_signal_name(name)
            {
                p.push(format!(
                    "{at}.wait.signal: {name:?} must be 1-64 of A-Z a-z 0-9 _ . -"
                ));
            }
            if w.approval.is_some() && w.default.is_some() {
                p.push(format!(
                    "{at}.wait.default: an approval decides on_timeout instead"
                ));
            }
            if fan_out {
                p.push(format!("{at}: a wait step cannot fan out"));
            }
        }
        StepKind::Sleep(sl) => {
            if sl.ms.is_some() == sl.until_ms.is_some() {
                p.push(format!("{at}.sleep: exactly one of ms and until_ms"));
            }
            if let Some(until) = &sl.until_ms {
                check_refs(until, &format!("{at}.sleep.until_ms"), upstream, fan_out, p);
            }
        }
        StepKind::Agent(a) => {
            if catalog.model_task_type().is_none() {
                p.push(format!("{at}.agent: no task type is routed to the llm executor"));
            }
            if !(1..=MAX_TURNS).contains(&a.max_turns) {
                p.push(format!("{at}.agent.max_turns: 1 to {MAX_TURNS}"));
            }
            if !(1..=16).contains(&a.max_parallel_tools) {
                p.push(format!("{at}.agent.max_parallel_tools: 1 to 16"));
            }
            if a.tools.len() > MAX_TOOLS {
                p.push(format!("{at}.agent.tools: at most {MAX_TOOLS}"));
            }
            for (i, t) in a.tools.iter().enumerate() {
                if catalog.params_schema(&t.task).is_none() {
                    p.push(format!("{at}.agent.tools[{i}]: unknown task type {:?}", t.task));
                }
            }
            let texts = Value::from(vec![a.system.clone(), a.prompt.clone()]);
            check_refs(&texts, &format!("{at}.agent"), upstream, fan_out, p);
        }
    }
    if let Some(c) = &s.compensate {
        check_task(&c.task, &c.params, &format!("{at}.compensate"), catalog, p);
        let mut with_self = upstream.clone();
        with_self.insert(s.id.clone());
        check_refs(
            &c.params,
            &format!("{at}.compensate.params"),
            &with_self,
            fan_out,
            p,
        );
    }
}

fn check_fan_out(s: &Step, at: &str, upstream: &BTreeSet<String>, p: &mut Vec<String>) {
    if s.for_each.is_some() && !matches!(s.kind(), StepKind::Task(_)) {
        p.push(format!("{at}.for_each: only task steps fan out"));
    }
    match (&s.for_each, s.max_parallel) {
        (Some(expr), Some(n)) => {
            if !(1..=MAX_PARALLEL).contains(&n) {
                p.push(format!("{at}.max_parallel: 1 to {MAX_PARALLEL}"));
            }
            match reference::parse(expr) {
                Ok(reference::Template::Whole(r)) => {
                    if matches!(r.root, Root::Item | Root::Index) {
                        p.push(format!("{at}.for_each: cannot read item or index"));
                    } else {
                        check_ref(&r, &format!("{at}.for_each"), upstream, false, p);
                    }
                }
                Ok(_) => p.push(format!(
                    "{at}.for_each: one reference to an array, \"${{{{ path }}}}\" (at most {MAX_ITEMS} items)"
                )),
                Err(e) => p.push(format!("{at}.for_each: {e}")),
            }
        }
        (Some(_), None) => p.push(format!("{at}.max_parallel: required with for_each")),
        (None, Some(_)) => p.push(format!("{at}.max_parallel: only with for_each")),
        (None, None) => {}
    }
}

/// The task type must be routed, and params that hold no reference must fit its schema; params
/// with references must still name only properties the schema has and all it requires.
fn check_task(task: &str, params: &Value, at: &str, catalog: &dyn Catalog, p: &mut Vec<String>) {
    let Some(schema) = catalog.params_schema(task) else {
        p.push(format!("{at}: unknown task type {task:?}"));
        return;
    };
    if !params.is_object() {
        p.push(format!("{at}: params must be an object"));
        return;
    }
    let Some(schema) = schema else { return };
    let has_refs = reference::references(params).is_ok_and(|r| !r.is_empty());
    if !has_refs {
        if let Err(e) = cadre_agents::schema::validate(&schema, params) {
            p.push(format!("{at}: {e}"));
        }
        return;
    }
    let obj = params.as_object().into_iter().flatten();
    let props = schema.get("properties").and_then(Value::as_object);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (k, v) in obj {
        match props.and_then(|pr| pr.get(k)) {
            None if closed => p.push(format!("{at}: {task} takes no param {k:?}")),
            Some(sub) if reference::references(v).is_ok_and(|r| r.is_empty()) => {
                if let Err(e) = cadre_agents::schema::validate(sub, v) {
                    p.push(format!("{at}.{k}: {e}"));
                }
            }
            _ => {}
        }
    }
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(req) = req.as_str()
            && params.get(req).is_none()
        {
            p.push(format!("{at}: {task} needs param {req:?}"));
        }
    }
}

fn check_output(def: &Definition, p: &mut Vec<String>) {
    let Some(output) = &def.output else { return };
    let all: BTreeSet<String> = def.steps.iter().map(|s| s.id.clone()).collect();
    check_refs(output, "output", &all, false, p);
}

/// Signal names: 1-64 of `A-Z a-z 0-9 _ . -`.
pub fn valid_signal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}
