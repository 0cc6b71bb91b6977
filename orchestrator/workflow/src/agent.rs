//! The durable agent loop: a model with cadre task types as tools, every model call and every
//! tool call a sub-task of the instance.
//!
//! Nothing of the conversation is kept in memory: each reconcile rebuilds it from the stored
//! results of the step's sub-tasks, turn by turn. Turn `n` is one model call (the
//! `llm` task type, OpenAI-compatible `tools`); when the model asks for tools, each call is
//! checked (a known tool, JSON arguments that fit the task type's params schema), waits for an
//! approval when its tool asks for one, and runs as a sub-task (at most `max_parallel_tools` at
//! once). Every `tool_call_id` gets an answer (a result, or why the call was refused), and turn
//! `n + 1` starts once all have one. The loop ends when the model answers without tool calls,
//! after `max_turns` model calls, or when intake refuses a model call for the tenant's budget;
//! the step's output says which (`stopped`: `done`, `max_turns`, `budget`).
//!
//! Tool names: the model sees `a__b__c` for task type `a.b.c` (OpenAI allows only
//! `A-Za-z0-9_-` in names).

use serde_json::{Map, Value, json};

use crate::definition::{AgentSpec, Step, ToolSpec};
use crate::keys;
use crate::observed::{Action, Done, Waiting};
use crate::reconcile::{Reconciler, St, Sub};

/// The tool name the model sees for a task type.
pub fn tool_name(task_type: &str) -> String {
    task_type.replace('.', "__")
}

/// The task type a tool name stands for.
pub fn tool_task_type(name: &str) -> String {
    name.replace("__", ".")
}

/// Where one turn's tool calls stand.
struct TurnTools {
    /// Tool messages of the calls answered so far, in call order (None: not answered yet).
    answers: Vec<Option<String>>,
    /// Calls still running or waiting.
    pending: bool,
    /// Some call waits for an approval (the step is WAITING: it needs a person).
    awaiting_approval: bool,
}

impl Reconciler<'_> {
    /// An agent step (see the module docs).
    pub(crate) fn agent(&mut self, step: &Step, spec: &AgentSpec) -> St {
        let Some(model_type) = self.obs.model_task_type.map(str::to_string) else {
            return St::Failed("no task type is routed to the llm executor".into());
        };
        let scope = self.scope();
        let (system, prompt) = match (
            scope.render(&Value::from(spec.system.clone())),
            scope.render(&Value::from(spec.prompt.clone())),
        ) {
            (Ok(s), Ok(p)) => (text(&s), text(&p)),
            (Err(e), _) | (_, Err(e)) => return St::Failed(format!("agent prompt: {e}")),
        };
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        let tools = self.tool_definitions(spec);
        let mut last_reply = String::new();
        let mut tool_calls_made = 0usize;
        for turn in 0..spec.max_turns as usize {
            let key = keys::model_call(self.obs.instance, &step.id, turn);
            let result = match self.sub(&step.id, &key) {
                Sub::Absent => {
                    let mut params = json!({"model": spec.model, "messages": messages, "stream": true});
                    if !tools.is_empty() {
                        params["tools"] = Value::Array(tools.clone());
                    }
                    self.submit(step, key, &model_type, params);
                    return St::Running;
                }
                Sub::Running => return St::Running,
                Sub::Failed { budget: true, .. } => {
                    return St::Succeeded(output(&last_reply, turn, "budget", tool_calls_made));
                }
                Sub::Failed { error, .. } => {
                    return St::Failed(format!("model call of turn {turn}: {error}"));
                }
                Sub::Succeeded(v) => v,
            };
            last_reply = result
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let calls = result
                .get("tool_calls")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if calls.is_empty() {
                return St::Succeeded(output(&last_reply, turn + 1, "done", tool_calls_made));
            }
            tool_calls_made += calls.len();
            messages.push(assistant_message(&last_reply, &calls));
            let turn_tools = self.tool_calls(step, spec, turn, &calls);
            for (call, answer) in calls.iter().zip(&turn_tools.answers) {
                if let Some(answer) = answer {
                    let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": answer}));
                }
            }
            if turn_tools.awaiting_approval {
                return St::Waiting;
            }
            if turn_tools.pending {
                return St::Running;
            }
        }
        St::Succeeded(output(
            &last_reply,
            spec.max_turns as usize,
            "max_turns",
            tool_calls_made,
        ))
    }

    /// The `tools` of a model call: each offered task type with its params schema.
    fn tool_definitions(&self, spec: &AgentSpec) -> Vec<Value> {
        spec.tools
            .iter()
            .map(|t| {
                let description = if t.description.is_empty() {
                    format!("Runs the cadre task type {} and returns its result.", t.task)
                } else {
                    t.description.clone()
                };
                let parameters = self
                    .obs
                    .tool_schemas
                    .get(&t.task)
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                json!({"type": "function", "function": {"name": tool_name(&t.task), "description": description, "parameters": parameters}})
            })
            .collect()
    }

    /// Advances the tool calls of `turn`: answers what it can, submits what may run.
    fn tool_calls(&mut self, step: &Step, spec: &AgentSpec, turn: usize, calls: &[Value]) -> TurnTools {
        let mut answers = Vec::with_capacity(calls.len());
        let mut pending = false;
        let mut awaiting_approval = false;
        let mut running = 0usize;
        let mut to_run = Vec::new();
        for (k, call) in calls.iter().enumerate() {
            let (tool, args) = match self.checked_call(spec, call) {
                Ok(ok) => ok,
                Err(refusal) => {
                    answers.push(Some(refusal));
                    continue;
                }
            };
            if tool.approval {
                match self.tool_approval(step, (turn, k), &tool, &args) {
                    Some(Ok(())) => {}
                    Some(Err(rejected)) => {
                        answers.push(Some(rejected));
                        continue;
                    }
                    None => {
                        answers.push(None);
                        pending = true;
                        awaiting_approval = true;
                        continue;
                    }
                }
            }
            let key = keys::tool_call(self.obs.instance, &step.id, turn, k);
            match self.sub(&step.id, &key) {
                Sub::Succeeded(v) => answers.push(Some(v.to_string())),
                Sub::Failed { error, .. } => answers.push(Some(format!("error: the task failed: {error}"))),
                Sub::Running => {
                    running += 1;
                    answers.push(None);
                    pending = true;
                }
                Sub::Absent => {
                    to_run.push((key, tool.task.clone(), args));
                    answers.push(None);
                    pending = true;
                }
            }
        }
        let room = (spec.max_parallel_tools as usize).saturating_sub(running);
        for (key, task, args) in to_run.into_iter().take(room) {
            self.submit(step, key, &task, args);
        }
        TurnTools {
            answers,
            pending,
            awaiting_approval,
        }
    }

    /// A tool call the model made, checked: the tool it names and its arguments as params, or
    /// the answer that refuses it.
    fn checked_call(&self, spec: &AgentSpec, call: &Value) -> Result<(ToolSpec, Value), String> {
        let f = call.get("function").unwrap_or(call);
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let task = tool_task_type(name);
        let Some(tool) = spec.tools.iter().find(|t| t.task == task) else {
            return Err(format!("error: there is no tool named {name:?}"));
        };
        let args = match f.get("arguments") {
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(s)) => {
                serde_json::from_str(s).map_err(|e| format!("error: the arguments are not JSON: {e}"))?
            }
            Some(v @ Value::Object(_)) => v.clone(),
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(other) => return Err(format!("error: the arguments must be a JSON object, not {other}")),
        };
        if !args.is_object() {
            return Err("error: the arguments must be a JSON object".into());
        }
        if let Some(schema) = self.obs.tool_schemas.get(&task)
            && let Err(e) = cadre_agents::schema::validate(schema, &args)
        {
            return Err(format!("error: the arguments do not fit {name}: {e}"));
        }
        Ok((tool.clone(), args))
    }

    /// The approval of a tool call: Some(Ok) approved, Some(Err(answer)) rejected, None still
    /// waiting (the wait is opened, or closed when its signal is in the inbox).
    fn tool_approval(
        &mut self,
        step: &Step,
        (turn, k): (usize, usize),
        tool: &ToolSpec,
        args: &Value,
    ) -> Option<Result<(), String>> {
        let id = keys::tool_approval(&step.id, turn, k);
        let record = self.obs.records.get(&id).cloned();
        let decided = |d: &Done| {
            if d.ok {
                Ok(())
            } else {
                Err(format!(
                    "the call was not approved: {}",
                    d.error.clone().unwrap_or_default()
                ))
            }
        };
        if let Some(done) = record.as_ref().and_then(|r| r.done.as_ref()) {
            return Some(decided(done));
        }
        if let Some(sig) = self.obs.signals.iter().find(|s| !s.consumed && s.name == id) {
            let decision = sig
                .payload
                .get("decision")
                .and_then(Value::as_str)
                .unwrap_or("reject");
            let comment = sig
                .payload
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let ok = decision == "approve";
            let done = Done {
                ok,
                output: json!({"decision": decision, "comment": comment, "by": sig.sender, "at_ms": sig.at_ms}),
                error: (!ok).then(|| {
                    format!(
                        "rejected by {}{}",
                        sig.sender,
                        if comment.is_empty() {
                            String::new()
                        } else {
                            format!(": {comment}")
                        }
                    )
                }),
                at_ms: sig.at_ms,
            };
            self.close(&id, done.clone(), Some(sig.seq));
            return Some(decided(&done));
        }
        if record.is_none() {
            self.actions.push(Action::Open {
                record: id.clone(),
                due_at_ms: None,
            });
        }
        self.report(&step.id).waiting.push(Waiting {
            signal: id,
            kind: "approval".into(),
            role: Some(tool.approval_role.to_string()),
            prompt: Some(format!("The agent wants to run {} with {args}", tool.task)),
            due_at_ms: None,
        });
        None
    }
}

/// The assistant message of a turn that asked for tools, as the follow-up request needs it.
fn assistant_message(content: &str, calls: &[Value]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|c| {
            let f = c.get("function").unwrap_or(c);
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "{}".into(),
            };
            json!({
                "id": c.get("id").and_then(Value::as_str).unwrap_or_default(),
                "type": "function",
                "function": {"name": f.get("name").and_then(Value::as_str).unwrap_or_default(), "arguments": arguments},
            })
        })
        .collect();
    json!({"role": "assistant", "content": content, "tool_calls": calls})
}

fn output(reply: &str, turns: usize, stopped: &str, tool_calls: usize) -> Value {
    json!({"reply": reply, "turns": turns, "stopped": stopped, "tool_calls": tool_calls})
}

/// A rendered template as text (a non-string value as compact JSON).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
