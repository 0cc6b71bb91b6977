//! The task commands: `submit` (with `--wait`), `get`, `cancel`, `tasks` (the list), `types`
//! and `watch`. Each is a call or two on the node's task service; what they print is in
//! `render.rs`, the live display of `watch` and `submit --wait` in `watch.rs`.

use anyhow::{Context, Result, anyhow, bail};
use cadre_proto::TaskState;
use cadre_proto::v1;

use super::args::{SubmitArgs, TasksArgs, WatchArgs};
use cadre_client::{Client, TaskRequest};

use super::render::{print_task, print_task_table, print_types, state_name, task_json};
use super::watch::{self, Board, Ended, Face, Lines, Quiet, Sink, TaskBar};

/// Exit code after Ctrl-C stopped a command that waits for one task (128 + SIGINT, as a shell
/// reports it).
const INTERRUPTED: i32 = 130;

/// Exit code of `watch <id>` and `submit --wait` when the task finished without succeeding.
const NOT_SUCCEEDED: i32 = 2;

/// `cadre submit`: prints the new task's id (or, with `--json`, the task); with `--wait`,
/// follows it to the end and exits 0 only if it SUCCEEDED.
pub(super) async fn submit(client: Client, a: SubmitArgs) -> Result<i32> {
    let (wait, json) = (a.wait, a.json);
    let spec = task_spec(a)?;
    let resp = client.submit(TaskRequest::from(spec)).await?;
    let task = resp.task;
    if wait {
        return wait_for(client, task.id, json).await;
    }
    if json {
        println!("{}", task_json(&task));
    } else {
        let note = if resp.created {
            ""
        } else {
            " (existing task for this idempotency key)"
        };
        println!("{}{note}", task.id);
    }
    Ok(0)
}

/// The task `submit` asks for: its params read and checked as JSON, its retry policy and
/// security level from the flags.
fn task_spec(a: SubmitArgs) -> Result<v1::TaskSpec> {
    let params = read_params(&a.params)?;
    let retry = (a.max_attempts > 0 || a.backoff_ms > 0 || a.retry_timeouts).then_some(v1::RetryPolicy {
        max_attempts: a.max_attempts,
        initial_backoff_ms: a.backoff_ms,
        max_backoff_ms: 0,
        multiplier: 0.0,
        retry_timeouts: a.retry_timeouts,
    });
    let security_level = match a.security_level.as_str() {
        "standard" => v1::SecurityLevel::Standard,
        "verified" => v1::SecurityLevel::Verified,
        "fortress" => v1::SecurityLevel::Fortress,
        other => bail!("--security-level {other:?} is not standard, verified or fortress"),
    } as i32;
    Ok(v1::TaskSpec {
        security_level,
        task_type: a.task_type,
        params_json: params,
        priority: a.priority,
        timeout_ms: a.timeout_ms,
        retry,
        idempotency_key: a.idempotency_key,
        parent_id: String::new(),
        concurrency_key: a.concurrency_key,
        debounce_key: a.debounce_key,
        debounce_window_ms: a.debounce_ms,
    })
}

/// Params as given: inline JSON, `@FILE` or `@-` (stdin); an error unless they are JSON.
pub(super) fn read_params(arg: &str) -> Result<String> {
    let text = match arg.strip_prefix('@') {
        Some("-") => std::io::read_to_string(std::io::stdin()).context("cannot read params from stdin")?,
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read params file {path}"))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| anyhow!("params are not valid JSON: {e}"))?;
    Ok(text)
}

/// `submit --wait`: follows task `id` (a bar on a terminal, lines otherwise, nothing with
/// `--json`), then prints it; exit 0 only if it SUCCEEDED.
async fn wait_for(client: Client, id: String, json: bool) -> Result<i32> {
    if !json {
        eprintln!("submitted {id}");
    }
    let mut sink: Box<dyn Sink> = match (json, Face::detect(false)) {
        (true, _) => Box::new(Quiet),
        (false, Face::Live) => Box::new(TaskBar::new(&id)?),
        (false, Face::Plain) => Box::new(Lines),
    };
    let req = v1::WatchRequest {
        task_id: id.clone(),
        ..Default::default()
    };
    if watch::follow(&client, req, sink.as_mut()).await? == Ended::Interrupted {
        return Ok(INTERRUPTED);
    }
    let task = show(&client, id, json).await?;
    Ok(if task.state == v1::TaskState::Succeeded as i32 {
        0
    } else {
        NOT_SUCCEEDED
    })
}

/// `cadre get`: prints one task as text or, with `--json`, as JSON.
pub(super) async fn get(client: Client, id: String, json: bool) -> Result<i32> {
    show(&client, id, json).await?;
    Ok(0)
}

/// Fetches task `id` and prints it as text or JSON; returns it.
async fn show(client: &Client, id: String, json: bool) -> Result<v1::Task> {
    let task = client.get(&id).await?;
    if json {
        println!("{}", task_json(&task));
    } else {
        print_task(&task);
    }
    Ok(task)
}

/// `cadre cancel`: cancels a task and prints its id and state.
pub(super) async fn cancel(client: Client, id: String, reason: String) -> Result<i32> {
    let task = client.cancel(&id, &reason).await?;
    println!("{} {}", task.id, state_name(task.state));
    Ok(0)
}

/// `cadre tasks`: one page of tasks, newest first, as a table.
pub(super) async fn list(client: Client, t: TasksArgs) -> Result<i32> {
    let states = t
        .state
        .iter()
        .map(|s| s.parse::<TaskState>().map(|s| s.to_wire() as i32))
        .collect::<Result<Vec<_>, _>>()?;
    let req = v1::ListRequest {
        states,
        task_type_prefix: t.type_prefix,
        parent_id: String::new(),
        page_size: t.limit,
        page_token: t.page_token,
    };
    let resp = client.list(req).await?;
    print_task_table(&resp);
    Ok(0)
}

/// `cadre types`: the task types the node accepts, as a table or, with `--json`, with schemas.
pub(super) async fn types(client: Client, prefix: Option<String>, json: bool) -> Result<i32> {
    let types = client.task_types(&prefix.unwrap_or_default()).await?;
    print_types(&types, json)?;
    Ok(0)
}

/// `cadre watch`: one task until its terminal event (exit 0 only if it SUCCEEDED), or every task
/// the filter selects until Ctrl-C.
pub(super) async fn watch(client: Client, w: WatchArgs) -> Result<i32> {
    let face = Face::detect(w.plain);
    let one = w.id.clone().filter(|id| !id.is_empty());
    let mut sink: Box<dyn Sink> = match (&one, face) {
        (_, Face::Plain) => Box::new(Lines),
        (Some(id), Face::Live) => Box::new(TaskBar::new(id)?),
        (None, Face::Live) => {
            let mut filter = if w.type_prefix.is_empty() {
                "all tasks".to_string()
            } else {
                format!("tasks of type {}*", w.type_prefix)
            };
            if !w.parent.is_empty() {
                filter.push_str(&format!(" under {}", w.parent));
            }
            Box::new(Board::new(filter, usize::from(w.max_active))?)
        }
    };
    let req = v1::WatchRequest {
        task_id: w.id.unwrap_or_default(),
        task_type_prefix: w.type_prefix,
        after_cursor: w.after,
        parent_id: w.parent,
        ..Default::default()
    };
    let ended = watch::follow(&client, req, sink.as_mut()).await?;
    Ok(match (one, ended) {
        (None, _) => 0,
        (Some(_), Ended::Interrupted) => INTERRUPTED,
        (Some(_), Ended::Closed(Some(TaskState::Succeeded))) => 0,
        (Some(_), Ended::Closed(Some(s))) if s.is_terminal() => NOT_SUCCEEDED,
        (Some(id), Ended::Closed(_)) => bail!("the event stream of task {id} ended before the task finished"),
    })
}
