//! Signals to workflow instances: a named JSON payload put in the instance's inbox, taken by
//! the wait for that name (now, or when the wait starts). An approval is a signal with
//! `{"decision": "approve"|"reject", "comment": "..."}`.
//!
//! Who may signal: the operator role or above, of the instance's own tenant (another tenant's
//! instance is NOT_FOUND, as on Get); an approval may ask for a higher role. The act is
//! audited (`workflow.signal`, durable before the signal is stored) and the sender and time
//! are part of the step's result. A progress event on the instance tells the engine, on
//! whichever replica leads, and every watcher.

use cadre_proto::clock::now_ms;
use cadre_proto::{Role, SpecError, TaskId, TaskRecord, WORKFLOW_SUPERVISOR};
use cadre_store::{NewSignal, WriteOp};
use cadre_workflow::{Definition, StepKind, reconcile};
use serde_json::Value;

use super::kind_version;
use super::report::fraction_done;
use crate::auth::{Action, Principal};
use crate::error::{Error, Result};
use crate::node::Node;

/// Longest signal name.
const MAX_NAME: usize = 128;
/// Longest approval comment, in characters.
const MAX_COMMENT: usize = 4096;

/// What a signal name stands for in a definition.
#[derive(Clone, Debug, PartialEq)]
enum Expected {
    /// A wait for a plain signal.
    Signal,
    /// An approval, decided by this role or above.
    Approval(Role),
}

/// A signal stored: its place in the inbox and the instance.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its seq.
    pub seq: i64,
    /// The instance, with its steps.
    pub task: TaskRecord,
}

impl Node {
    /// Sends signal `name` with `payload` to instance `task_id` (see the module docs).
    pub async fn signal(&self, p: &Principal, task_id: &str, name: &str, payload: Value) -> Result<Sent> {
        self.permit(p, Action::Signal).await?;
        let id: TaskId = task_id.parse()?;
        let rec = self.get_visible(p, id).await?;
        if rec.tenant != p.tenant {
            return Err(Error::PermissionDenied(format!(
                "only tenant {} may signal its workflows",
                rec.tenant
            )));
        }
        if rec.supervisor != WORKFLOW_SUPERVISOR {
            return Err(Error::FailedPrecondition(format!(
                "task {id} ({}) is not a workflow instance; only workflows take signals",
                rec.spec.task_type
            )));
        }
        if rec.state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "workflow {id} is already {}; it takes no signals",
                rec.state
            )));
        }
        check_name(name)?;
        let size = payload.to_string().len();
        if size > self.limits.max_params_bytes {
            return Err(SpecError::TooLarge {
                field: "payload_json".into(),
                size,
                limit: self.limits.max_params_bytes,
            }
            .into());
        }
        let name_of = cadre_workflow::workflow_of(&rec.spec.task_type).unwrap_or_default();
        let loaded = self.loaded(name_of, kind_version(&rec.worker_kind)).await?;
        let snap = self.snapshot(&rec, &loaded.def).await?;
        let plan = reconcile(&loaded.def, &snap.observed(now_ms()));
        let open_role = plan
            .steps
            .iter()
            .flat_map(|s| &s.waiting)
            .find(|w| w.signal == name && w.kind == "approval")
            .and_then(|w| w.role.as_deref().and_then(|r| r.parse::<Role>().ok()));
        match (open_role, expected(&loaded.def, name)) {
            (_, None) => {
                return Err(SpecError::invalid(
                    "name",
                    format!(
                        "workflow {} has no wait for signal {name:?}; it waits for: {}",
                        loaded.def.name,
                        known_names(&loaded.def)
                    ),
                )
                .into());
            }
            (Some(role), _) | (None, Some(Expected::Approval(role))) => {
                if p.role < role {
                    return Err(Error::PermissionDenied(format!(
                        "approval {name} of workflow {id} needs the {role} role"
                    )));
                }
                check_decision(&payload)?;
            }
            (None, Some(Expected::Signal)) => {}
        }
        let detail = format!("{name} {}", summary(&payload));
        let draft = crate::audit::draft(Some(p), "workflow.signal", &id.to_string(), "ok", &detail);
        self.writer
            .write_together(vec![(WriteOp::AuditDraft(Box::new(draft)), None)])
            .await?;
        let signal = NewSignal {
            name: name.to_string(),
            payload,
            sender: p.subject.clone(),
            at_ms: now_ms(),
        };
        let seq = self.store.add_signal(id, &signal).await?;
        let notice = WriteOp::Progress {
            task_id: id,
            attempt: 1,
            fraction: fraction_done(&plan.steps),
            message: format!("signal {name} from {}", p.subject),
        };
        if let Err(e) = self.writer.write_together(vec![(notice, None)]).await {
            // Stored and audited: the engine finds it on its next sweep.
            tracing::warn!(instance = %id, error = %e, "signal stored; its notice was not");
        }
        let mut task = self.get_record(id).await?;
        task.steps = self.instance_steps(&task).await.unwrap_or_default();
        Ok(Sent { seq, task })
    }
}

/// Signal names: 1-128 of `A-Za-z0-9_.-`.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::invalid("name", format!("{name:?} must be 1-{MAX_NAME} of A-Za-z0-9_.-")).into())
    }
}

/// An approval's payload: `decision` approve or reject, an optional string `comment`.
fn check_decision(payload: &Value) -> Result<()> {
    let decision = payload.get("decision").and_then(Value::as_str);
    if !matches!(decision, Some("approve" | "reject")) {
        return Err(SpecError::invalid(
            "payload_json",
            "an approval needs {\"decision\": \"approve\" | \"reject\"} (and an optional \"comment\")",
        )
        .into());
    }
    match payload.get("comment") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(c)) if c.chars().count() <= MAX_COMMENT => Ok(()),
        Some(Value::String(_)) => Err(SpecError::invalid(
            "payload_json.comment",
            format!("at most {MAX_COMMENT} characters"),
        )
        .into()),
        Some(_) => Err(SpecError::invalid("payload_json.comment", "must be a string").into()),
    }
}

/// What `name` stands for in `def`: a wait step's signal (an approval's is its step id unless
/// it names one), or the approval of an agent step's tool call (`<step>.t<turn>.tool<k>`).
fn expected(def: &Definition, name: &str) -> Option<Expected> {
    for step in &def.steps {
        match step.kind() {
            StepKind::Wait(w) if w.signal.as_deref().unwrap_or(&step.id) == name => {
                return Some(match &w.approval {
                    Some(a) => Expected::Approval(a.role),
                    None => Expected::Signal,
                });
            }
            StepKind::Agent(a) if is_tool_approval(&step.id, name) => {
                // Before the call's wait is open, its tool is not known yet: the highest role
                // any of the step's approval tools asks for.
                let role = a
                    .tools
                    .iter()
                    .filter(|t| t.approval)
                    .map(|t| t.approval_role)
                    .max()?;
                return Some(Expected::Approval(role));
            }
            _ => {}
        }
    }
    None
}

/// Whether `name` is `<step>.t<turn>.tool<k>`.
fn is_tool_approval(step: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(step).and_then(|r| r.strip_prefix(".t")) else {
        return false;
    };
    let Some((turn, call)) = rest.split_once(".tool") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    digits(turn) && digits(call)
}

/// The signal names `def` waits for, for an error message.
fn known_names(def: &Definition) -> String {
    let names: Vec<String> = def
        .steps
        .iter()
        .filter_map(|s| match s.kind() {
            StepKind::Wait(w) => Some(match &w.approval {
                Some(_) => format!("{} (approval)", w.signal.as_deref().unwrap_or(&s.id)),
                None => w.signal.clone().unwrap_or_else(|| s.id.clone()),
            }),
            StepKind::Agent(a) if a.tools.iter().any(|t| t.approval) => {
                Some(format!("{}.t<turn>.tool<k> (tool call approvals)", s.id))
            }
            _ => None,
        })
        .collect();
    if names.is_empty() {
        "nothing (it has no wait steps)".into()
    } else {
        names.join(", ")
    }
}

/// The payload as the audit record keeps it: at most 200 characters.
fn summary(payload: &Value) -> String {
    let text = payload.to_string();
    if text.chars().count() <= 200 {
        text
    } else {
        format!("{}...", text.chars().take(200).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> Definition {
        Definition::from_value(json!({
            "name": "w", "version": 1,
            "steps": [
                {"id": "go", "wait": {"signal": "ready"}},
                {"id": "ok", "wait": {"approval": {"role": "supervisor"}}},
                {"id": "plain", "wait": {}},
                {"id": "bot", "agent": {"model": "m", "prompt": "p", "tools": [
                    {"task": "a.b.c", "approval": true, "approval_role": "commander"},
                    {"task": "a.b.d"}
                ]}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn names_map_to_waits_approvals_and_tool_approvals() {
        let d = def();
        assert_eq!(expected(&d, "ready"), Some(Expected::Signal));
        assert_eq!(
            expected(&d, "go"),
            None,
            "a wait with a signal name is not called by its id"
        );
        assert_eq!(expected(&d, "ok"), Some(Expected::Approval(Role::Supervisor)));
        assert_eq!(expected(&d, "plain"), Some(Expected::Signal));
        assert_eq!(
            expected(&d, "bot.t0.tool1"),
            Some(Expected::Approval(Role::Commander))
        );
        for bad in [
            "bot.t.tool1",
            "bot.t0.tool",
            "bot.t0",
            "bott0.tool1",
            "x",
            "bot.tx.tool1",
        ] {
            assert_eq!(expected(&d, bad), None, "{bad}");
        }
        let known = known_names(&d);
        assert!(known.contains("ready") && known.contains("ok (approval)") && known.contains("bot.t<turn>"));
    }

    #[test]
    fn names_and_decisions_are_checked() {
        assert!(check_name("a.b-c_1").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_decision(&json!({"decision": "approve"})).is_ok());
        assert!(check_decision(&json!({"decision": "reject", "comment": "no"})).is_ok());
        for bad in [
            json!({}),
            json!({"decision": "maybe"}),
            json!({"decision": "approve", "comment": 3}),
            json!({"decision": "approve", "comment": "x".repeat(4097)}),
            json!("approve"),
        ] {
            assert!(check_decision(&bad).is_err(), "{bad}");
        }
        assert_eq!(summary(&json!("x".repeat(300))).chars().count(), 203);
    }
}
