//! The workflow commands: `workflow register|list|show|run` and `signal`. Definitions go
//! through the node's workflow service; an instance is a task (`run` submits
//! `workflow.<name>.run` and, with `--wait`, follows it like `submit --wait`).

use anyhow::{Context, Result, bail};
use cadre_proto::v1;
use serde_json::{Value, json};

use super::args::{SignalArgs, SubmitArgs, WorkflowCommand};
use cadre_client::Client;

use super::connect::Target;
use super::render::{print_task, task_json};

/// `cadre workflow ...`.
pub(super) async fn workflow(node: Target, command: WorkflowCommand) -> Result<i32> {
    match command {
        WorkflowCommand::Register { file } => register(node.client().await?, &file).await,
        WorkflowCommand::List { name, json } => list(node.client().await?, name, json).await,
        WorkflowCommand::Show { name, version, json } => {
            show(node.client().await?, name, version, json).await
        }
        WorkflowCommand::Run {
            name,
            input,
            idempotency_key,
            wait,
            json,
        } => {
            let args = SubmitArgs {
                task_type: cadre_workflow::instance_task_type(&name),
                params: input,
                priority: 0,
                timeout_ms: 0,
                max_attempts: 0,
                retry_timeouts: false,
                backoff_ms: 0,
                idempotency_key,
                security_level: "standard".into(),
                concurrency_key: String::new(),
                debounce_key: String::new(),
                debounce_ms: 0,
                wait,
                json,
            };
            super::tasks::submit(node.client().await?, args).await
        }
    }
}

/// Reads a file, or stdin for `-`.
fn read_source(path: &str) -> Result<String> {
    if path == "-" {
        return std::io::read_to_string(std::io::stdin()).context("cannot read stdin");
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

async fn register(client: Client, file: &str) -> Result<i32> {
    let body = read_source(file)?;
    let resp = client.register_workflow(&body).await?;
    let w = resp.workflow.context("node returned no workflow")?;
    if resp.created {
        println!(
            "registered {} version {} (start it: cadre workflow run {})",
            w.name, w.version, w.name
        );
    } else {
        println!(
            "{} version {} is registered already, unchanged",
            w.name, w.version
        );
    }
    Ok(0)
}

async fn list(client: Client, name: Option<String>, json: bool) -> Result<i32> {
    let workflows = client.list_workflows(&name.unwrap_or_default()).await?;
    if json {
        let all: Vec<Value> = workflows.iter().map(definition_json).collect();
        println!("{}", Value::Array(all));
        return Ok(0);
    }
    if workflows.is_empty() {
        println!("no workflows (register one: cadre workflow register FILE)");
        return Ok(0);
    }
    println!(
        "{:<32} {:>7}  {:<24} description",
        "name", "version", "registered by"
    );
    for w in &workflows {
        println!(
            "{:<32} {:>7}  {:<24} {}",
            w.name, w.version, w.created_by, w.description
        );
    }
    Ok(0)
}

async fn show(client: Client, name: String, version: u32, json: bool) -> Result<i32> {
    let w = client
        .get_workflow(&name, (version != 0).then_some(version))
        .await?;
    if json {
        println!("{}", definition_json(&w));
    } else {
        let def: Value = serde_json::from_str(&w.definition_json).unwrap_or(Value::Null);
        println!("{}", serde_json::to_string_pretty(&def)?);
    }
    Ok(0)
}

/// A stored definition as JSON.
fn definition_json(w: &v1::WorkflowDefinition) -> Value {
    json!({
        "name": w.name,
        "version": w.version,
        "task_type": w.task_type,
        "description": w.description,
        "created_at_ms": w.created_at_ms,
        "created_by": w.created_by,
        "definition": serde_json::from_str::<Value>(&w.definition_json).unwrap_or(Value::Null),
    })
}

/// `cadre signal`: sends the signal and prints the instance as it now stands.
pub(super) async fn signal(node: Target, a: SignalArgs) -> Result<i32> {
    let payload = match (a.approve, a.reject, &a.payload) {
        (true, _, _) => json!({"decision": "approve", "comment": a.comment.unwrap_or_default()}),
        (_, true, _) => json!({"decision": "reject", "comment": a.comment.unwrap_or_default()}),
        (_, _, Some(p)) => {
            let text = match p.strip_prefix('@') {
                Some(path) => read_source(path)?,
                None => p.clone(),
            };
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("the payload is not valid JSON: {e}"))?
        }
        (false, false, None) => Value::Null,
    };
    if !payload.is_null() && payload.to_string().len() > 16 << 20 {
        bail!("the payload is over 16 MiB");
    }
    let resp = node.client().await?.signal(&a.task_id, &a.name, &payload).await?;
    let task = resp.task.context("node returned no task")?;
    if a.json {
        println!(
            "{}",
            json!({"seq": resp.seq, "task": serde_json::from_str::<Value>(&task_json(&task))?})
        );
    } else {
        println!("signal {} sent (#{})", a.name, resp.seq);
        print_task(&task);
    }
    Ok(0)
}
