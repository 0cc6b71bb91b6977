//! The schedule commands: `schedule create|list|show|pause|resume|trigger|delete`. A schedule
//! submits a task on a cron expression (with seconds, in a time zone) or at a fixed interval;
//! a workflow is scheduled with its `workflow.<name>.run` type.

use anyhow::{Context, Result};
use cadre_client::Client;
use cadre_core::schedules::{Missed, Overlap};
use cadre_proto::v1;
use serde_json::{Value, json};

use super::connect::Target;
use super::render::utc_time;
use super::schedule_args::{CreateArgs, ScheduleCommand};

/// `cadre schedule ...`.
pub(super) async fn schedule(node: Target, command: ScheduleCommand) -> Result<i32> {
    let client = node.client().await?;
    match command {
        ScheduleCommand::Create(c) => create(client, *c).await,
        ScheduleCommand::List { tenant, json } => list(client, &tenant, json).await,
        ScheduleCommand::Show { id, json } => {
            print(&client.get_schedule(&id).await?, json);
            Ok(0)
        }
        ScheduleCommand::Pause { id } => done("paused", &client.pause_schedule(&id).await?),
        ScheduleCommand::Resume { id } => done("resumed", &client.resume_schedule(&id).await?),
        ScheduleCommand::Trigger { id } => {
            let r = client.trigger_schedule(&id).await?;
            let task = r.task.context("node returned no task")?;
            println!("fired schedule {id}: task {}", task.id);
            Ok(0)
        }
        ScheduleCommand::Delete { id } => {
            client.delete_schedule(&id).await?;
            println!("deleted schedule {id}");
            Ok(0)
        }
    }
}

/// `schedule create`.
async fn create(client: Client, c: CreateArgs) -> Result<i32> {
    let CreateArgs {
        cron,
        tz,
        every,
        task_type,
        params,
        name,
        missed,
        overlap,
        priority,
        timeout_ms,
        paused,
        tenant,
        json,
    } = c;
    let every_ms = match every {
        Some(e) => u64::try_from(super::credentials::parse_duration(&e)?.as_millis()).unwrap_or(u64::MAX),
        None => 0,
    };
    let req = v1::CreateScheduleRequest {
        name,
        cron: cron.unwrap_or_default(),
        time_zone: tz.unwrap_or_default(),
        every_ms,
        task: Some(v1::TaskSpec {
            task_type,
            params_json: super::tasks::read_params(&params)?,
            priority,
            timeout_ms,
            ..Default::default()
        }),
        missed: Missed::from_name(&missed)?.to_wire() as i32,
        overlap: Overlap::from_name(&overlap)?.to_wire() as i32,
        paused,
        tenant,
    };
    let s = client.create_schedule(req).await?;
    if json {
        print(&s, true);
    } else {
        println!("created schedule {}", s.id);
        print(&s, false);
    }
    Ok(0)
}

/// `schedule list`.
async fn list(client: Client, tenant: &str, json: bool) -> Result<i32> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = client.list_schedules(tenant, &after, 0).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        all.extend(page);
    }
    if json {
        println!("{}", Value::Array(all.iter().map(schedule_json).collect()));
        return Ok(0);
    }
    println!(
        "{:<36}  {:<10}  {:<24}  {:<28}  {:<24}  NEXT",
        "ID", "TENANT", "WHEN", "TYPE", "NAME"
    );
    for s in &all {
        let next = match (s.paused, s.next_fire_at_ms.first()) {
            (true, _) => "paused".to_string(),
            (false, Some(t)) => utc_time(*t),
            (false, None) => "-".to_string(),
        };
        let task_type = s.task.as_ref().map(|t| t.task_type.as_str()).unwrap_or("");
        println!(
            "{:<36}  {:<10}  {:<24}  {:<28}  {:<24}  {next}",
            s.id,
            s.tenant,
            when(s),
            task_type,
            s.name
        );
    }
    Ok(0)
}

/// Prints what a pause or resume did.
fn done(what: &str, s: &v1::Schedule) -> Result<i32> {
    let next = s
        .next_fire_at_ms
        .first()
        .map(|t| format!("; next fire {}", utc_time(*t)));
    println!("{what} schedule {}{}", s.id, next.unwrap_or_default());
    Ok(0)
}

/// Prints one schedule, as text or JSON.
fn print(s: &v1::Schedule, json: bool) {
    if json {
        println!("{}", schedule_json(s));
        return;
    }
    let task = s.task.clone().unwrap_or_default();
    println!("id:        {}", s.id);
    println!("tenant:    {}", s.tenant);
    if !s.name.is_empty() {
        println!("name:      {}", s.name);
    }
    println!("when:      {}", when(s));
    println!("task:      {} {}", task.task_type, task.params_json);
    println!(
        "missed:    {}",
        Missed::from_wire(s.missed).map_or("?", |m| m.name())
    );
    println!(
        "overlap:   {}",
        Overlap::from_wire(s.overlap).map_or("?", |o| o.name())
    );
    println!("paused:    {}", s.paused);
    println!("fires:     {} (skipped {})", s.fires, s.skipped);
    if !s.last_task_id.is_empty() {
        println!(
            "last task: {} (tick {})",
            s.last_task_id,
            utc_time(s.last_fire_at_ms)
        );
    }
    if !s.last_error.is_empty() {
        println!("last error: {}", s.last_error);
    }
    for t in &s.next_fire_at_ms {
        println!("next:      {}", utc_time(*t));
    }
}

/// How a schedule ticks.
fn when(s: &v1::Schedule) -> String {
    if s.cron.is_empty() {
        format!("every {} ms", s.every_ms)
    } else {
        format!("{} {}", s.cron, s.time_zone)
    }
}

/// A schedule as JSON (the JSON API's shape).
fn schedule_json(s: &v1::Schedule) -> Value {
    let task = s.task.clone().unwrap_or_default();
    json!({
        "id": s.id,
        "tenant": s.tenant,
        "name": s.name,
        "cron": s.cron,
        "time_zone": s.time_zone,
        "every_ms": s.every_ms,
        "task": {
            "task_type": task.task_type,
            "params": serde_json::from_str::<Value>(&task.params_json).unwrap_or(Value::Null),
            "priority": task.priority,
            "timeout_ms": task.timeout_ms,
        },
        "missed": Missed::from_wire(s.missed).map_or("", |m| m.name()),
        "overlap": Overlap::from_wire(s.overlap).map_or("", |o| o.name()),
        "paused": s.paused,
        "next_fire_at_ms": s.next_fire_at_ms,
        "created_at_ms": s.created_at_ms,
        "created_by": s.created_by,
        "last_fire_at_ms": s.last_fire_at_ms,
        "last_task_id": s.last_task_id,
        "last_error": s.last_error,
        "fires": s.fires,
        "skipped": s.skipped,
    })
}
