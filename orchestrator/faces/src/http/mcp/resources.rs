//! MCP resources (`cadre://supervisors`, the `cadre://tasks/{id}` template) and prompts.

use cadre_core::auth::Principal;
use cadre_core::error::Error;
use cadre_core::node::Node;
use serde_json::{Value, json};

use crate::http::api::{event_json, status_json, task_json};
use crate::http::mcp::protocol::{INVALID_PARAMS, RESOURCE_NOT_FOUND, RpcOutcome, denied};

/// `resources/list`.
pub(crate) fn resources() -> Value {
    json!({ "resources": [{
        "uri": "cadre://supervisors",
        "name": "supervisors",
        "title": "Supervisor tree",
        "description": "Every supervisor with its pools: size, busy workers, queue depth, restarts.",
        "mimeType": "application/json",
    }] })
}

/// `resources/templates/list`.
pub(crate) fn resource_templates() -> Value {
    json!({ "resourceTemplates": [{
        "uriTemplate": "cadre://tasks/{id}",
        "name": "task",
        "title": "A task with its events",
        "description": "The task (state, params, result, children) and its event timeline.",
        "mimeType": "application/json",
    }] })
}

/// `resources/read`.
pub(crate) async fn read_resource(node: &Node, p: &Principal, params: &Value) -> RpcOutcome {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| (INVALID_PARAMS, "Invalid params: uri is required".to_string()))?;
    let content = |v: Value| json!({ "contents": [{ "uri": uri, "mimeType": "application/json", "text": v.to_string() }] });
    if uri == "cadre://supervisors" {
        let status = node.status(p).await.map_err(|e| denied(&e))?;
        return Ok(content(status_json(&status)));
    }
    if let Some(id) = uri.strip_prefix("cadre://tasks/") {
        let task = node.get(p, id).await.map_err(|e| match e {
            Error::Spec(_) | Error::NotFound(_) => (RESOURCE_NOT_FOUND, format!("Resource not found: {uri}")),
            other => denied(&other),
        })?;
        let events = node.task_events(p, id, 0, 1000).await.map_err(|e| denied(&e))?;
        return Ok(content(json!({
            "task": task_json(&task),
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
        })));
    }
    Err((RESOURCE_NOT_FOUND, format!("Resource not found: {uri}")))
}

/// `prompts/list`.
pub(crate) fn prompts() -> Vec<Value> {
    vec![
        json!({
            "name": "delegate_to_cadre",
            "title": "Delegate work to cadre",
            "description": "Plan a piece of work as cadre tasks, run them, and report the results.",
            "arguments": [
                { "name": "goal", "description": "What should be achieved", "required": true },
                { "name": "type_prefix", "description": "Only use task types starting with this (e.g. intelligence.)", "required": false },
            ],
        }),
        json!({
            "name": "triage_failed_tasks",
            "title": "Triage failed tasks",
            "description": "Look at recent FAILED and TIMED_OUT tasks, group them by cause and suggest fixes.",
            "arguments": [
                { "name": "type_prefix", "description": "Only tasks whose type starts with this", "required": false },
            ],
        }),
    ]
}

/// `prompts/get`.
pub(crate) fn get_prompt(params: &Value) -> RpcOutcome {
    let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let arg = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let text = match name {
        "delegate_to_cadre" => {
            let goal = arg("goal");
            if goal.is_empty() {
                return Err((INVALID_PARAMS, "Invalid params: argument goal is required".into()));
            }
            let scope = match arg("type_prefix").as_str() {
                "" => String::new(),
                p => format!(" Only use tools whose name starts with `{p}`."),
            };
            format!(
                "Goal: {goal}\n\nYou can run work on cadre: each task-type tool (named like `supervisor.domain.action`) runs one task and returns its result.{scope} Break the goal into independent tasks, call the tools (in parallel where they do not depend on each other), check each result, use get_task for details of anything that failed, and report what was done with the task ids."
            )
        }
        "triage_failed_tasks" => {
            let prefix = arg("type_prefix");
            format!(
                "Call list_tasks with states [\"FAILED\", \"TIMED_OUT\"]{} and page_size 50. Group the tasks by task type and error, read a representative task of each group with get_task, and for each group say what went wrong and what to change (params, timeouts, retries, capacity from supervisor_status).",
                if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" and type_prefix \"{prefix}\"")
                }
            )
        }
        other => {
            return Err((
                INVALID_PARAMS,
                format!("Invalid params: unknown prompt {other:?}"),
            ));
        }
    };
    Ok(json!({
        "description": name,
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
    }))
}
