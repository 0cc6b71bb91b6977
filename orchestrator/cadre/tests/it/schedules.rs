//! Schedules through the real binary, on SQLite and on PostgreSQL: an interval fires once per
//! tick (each fire's idempotency key `schedule:<id>:<tick>`, and the schedule's `fires` count
//! equal to the tasks it made: a tick fired twice would count twice), pause, resume, trigger
//! and delete; two replicas on one database fire each tick once; a restart applies the
//! missed-tick policy; the overlap policies; bad input, wrong roles and tenants; the audit
//! records; the JSON API and the CLI.

use std::collections::BTreeMap;
use std::time::Duration;

use cadre_client::Bearer;
use cadre_proto::v1::{self, schedule_service_client::ScheduleServiceClient};
use cadre_store::Store;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::common::*;

type Schedules = ScheduleServiceClient<InterceptedService<Channel, Bearer>>;

/// A ScheduleService client with `credential`.
pub(crate) async fn schedules_as(node: &TestNode, credential: Option<&str>) -> Schedules {
    ScheduleServiceClient::with_interceptor(node.channel().await, TestNode::bearer(credential))
}

/// An interval schedule of `task_type` with `params`.
fn every(ms: u64, task_type: &str, params: &str) -> v1::CreateScheduleRequest {
    v1::CreateScheduleRequest {
        every_ms: ms,
        task: Some(spec(task_type, params)),
        ..Default::default()
    }
}

/// The tasks a schedule fired, by the tick (or `manual:<ms>`) of their idempotency key.
async fn fired(node: &TestNode, id: &str) -> BTreeMap<String, Vec<v1::Task>> {
    let mut c = node.tasks().await;
    let prefix = format!("schedule:{id}:");
    let mut out: BTreeMap<String, Vec<v1::Task>> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = c
            .list(v1::ListRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for t in page.tasks {
            let key = t
                .spec
                .as_ref()
                .map(|s| s.idempotency_key.clone())
                .unwrap_or_default();
            if let Some(tick) = key.strip_prefix(&prefix) {
                out.entry(tick.to_string()).or_default().push(t);
            }
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The ticks (Unix ms) a schedule fired on its own, ascending; panics on a tick with two tasks.
async fn ticks(node: &TestNode, id: &str) -> Vec<i64> {
    let all = fired(node, id).await;
    for (tick, tasks) in &all {
        assert_eq!(tasks.len(), 1, "tick {tick} of {id} has {} tasks", tasks.len());
    }
    all.keys().filter_map(|k| k.parse().ok()).collect()
}

/// Waits (at most 30 s) until the schedule `id` satisfies `done`; what it was then.
async fn wait_schedule(
    c: &Schedules,
    id: &str,
    what: &str,
    done: impl Fn(&v1::Schedule) -> bool,
) -> v1::Schedule {
    eventually(what, Duration::from_secs(30), || {
        let mut c = c.clone();
        let id = id.to_string();
        let done = &done;
        async move {
            let s = c
                .get_schedule(v1::GetScheduleRequest { id })
                .await
                .ok()?
                .into_inner();
            done(&s).then_some(s)
        }
    })
    .await
}

/// Waits until the schedule has fired at least `n` times in all.
async fn wait_fires(c: &mut Schedules, id: &str, n: u64) -> v1::Schedule {
    wait_schedule(c, id, "schedule fires", |s| s.fires >= n).await
}

/// The audit records of a schedule (`target` = its id) as (action, outcome, detail).
async fn audit_of(store: &dyn Store, target: &str) -> Vec<(String, String, String)> {
    store
        .audit_records(Some(target))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.draft.action, r.draft.outcome, r.draft.detail))
        .collect()
}

/// The node's store, opened beside it (SQLite file or PostgreSQL URL).
async fn open_store(node: &TestNode, url: Option<&str>) -> std::sync::Arc<dyn Store> {
    match url {
        Some(u) => cadre_store::open(u, false).await.unwrap(),
        None => std::sync::Arc::new(
            cadre_store::sqlite::SqliteStore::open(&node.db_path(), false)
                .await
                .unwrap(),
        ),
    }
}

/// The store section of a config: PostgreSQL at `url`, or the default SQLite.
fn store_toml(url: Option<&str>) -> String {
    url.map(|u| format!("[store]\nurl = {u:?}\n")).unwrap_or_default()
}

/// Interval ticks, each fired once; pause, resume, trigger and delete; the audit records.
async fn lifecycle(url: Option<&str>) {
    let node = TestNode::start(&store_toml(url)).await;
    let mut c = schedules_as(&node, Some(&node.credential())).await;
    let s = c
        .create_schedule(every(1000, "system.debug.echo", r#"{"n":1}"#))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.next_fire_at_ms.len(), 5);
    assert!(
        s.next_fire_at_ms.windows(2).all(|w| w[1] - w[0] == 1000),
        "{:?}",
        s.next_fire_at_ms
    );
    let got = wait_fires(&mut c, &s.id, 3).await;
    let seen = ticks(&node, &s.id).await;
    assert!(seen.len() as u64 >= 3);
    assert!(seen.windows(2).all(|w| (w[1] - w[0]) % 1000 == 0), "{seen:?}");

    // Paused: no fire; resumed: fires again.
    let paused = c
        .pause_schedule(v1::ScheduleIdRequest { id: s.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused && paused.next_fire_at_ms.is_empty());
    let at_pause = ticks(&node, &s.id).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        ticks(&node, &s.id).await.len(),
        at_pause,
        "a paused schedule fired"
    );
    let still = c
        .get_schedule(v1::GetScheduleRequest { id: s.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.fires as usize, at_pause, "fires counts each task once");
    c.resume_schedule(v1::ScheduleIdRequest { id: s.id.clone() })
        .await
        .unwrap();
    wait_fires(&mut c, &s.id, still.fires + 2).await;

    // Triggered: a manual key, now.
    let t = c
        .trigger_schedule(v1::ScheduleIdRequest { id: s.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let key = t.task.unwrap().spec.unwrap().idempotency_key;
    assert!(key.starts_with(&format!("schedule:{}:manual:", s.id)), "{key}");

    // Deleted: gone, and no fire after.
    c.delete_schedule(v1::ScheduleIdRequest { id: s.id.clone() })
        .await
        .unwrap();
    let gone = c
        .get_schedule(v1::GetScheduleRequest { id: s.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let at_delete = fired(&node, &s.id).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        fired(&node, &s.id).await.len(),
        at_delete,
        "a deleted schedule fired"
    );
    assert!(got.fires >= 3);

    let store = open_store(&node, url).await;
    let actions: Vec<String> = audit_of(store.as_ref(), &s.id)
        .await
        .into_iter()
        .map(|a| a.0)
        .collect();
    for a in [
        "schedule.create",
        "schedule.pause",
        "schedule.resume",
        "schedule.trigger",
        "schedule.delete",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} not in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_fires_each_tick_once_pauses_resumes_triggers_and_deletes_on_sqlite() {
    lifecycle(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_fires_each_tick_once_pauses_resumes_triggers_and_deletes_on_postgres() {
    let db = TestDb::create().await;
    lifecycle(Some(db.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_fire_each_tick_once() {
    let db = TestDb::create().await;
    let toml = store_toml(Some(db.url()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| -> std::path::PathBuf {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let a = TestNode::start_in(&dir("a"), &toml).await;
    let b = TestNode::start_in(&dir("b"), &toml).await;
    let mut ca = schedules_as(&a, Some(&a.credential())).await;
    let mut cb = schedules_as(&b, Some(&b.credential())).await;
    // Several schedules, created on either replica, so both contend for every tick.
    let mut ids = Vec::new();
    for i in 0..4 {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        let s = c
            .create_schedule(every(1000, "system.debug.echo", "{}"))
            .await
            .unwrap()
            .into_inner();
        ids.push(s.id);
    }
    for id in &ids {
        // The other replica sees it too.
        cb.get_schedule(v1::GetScheduleRequest { id: id.clone() })
            .await
            .unwrap();
        wait_fires(&mut ca, id, 5).await;
    }
    for id in &ids {
        // `fires` counts accepted fires: a tick fired by both replicas would count twice (the
        // second answered with the first task by its idempotency key), so it would exceed the
        // ticks that have a task.
        let s = ca
            .get_schedule(v1::GetScheduleRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        let seen = ticks(&a, id).await;
        assert!(
            s.fires as usize <= seen.len(),
            "{id}: {} fires for {} ticks {seen:?}",
            s.fires,
            seen.len()
        );
        assert!(s.fires >= 5);
    }
    drop((a, b));
}

/// Stops a node for a while: `skip` fires none of the ticks missed, `run_once` fires one.
async fn restart(url: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!("{}[schedules]\nmissed_grace_ms = 1500\n", store_toml(url));
    let node = TestNode::start_in(tmp.path(), &toml).await;
    let mut c = schedules_as(&node, Some(&node.credential())).await;
    let skip = c
        .create_schedule(every(1000, "system.debug.echo", "{}"))
        .await
        .unwrap()
        .into_inner();
    let once = c
        .create_schedule(v1::CreateScheduleRequest {
            missed: v1::MissedTickPolicy::RunOnce as i32,
            ..every(1000, "system.debug.echo", "{}")
        })
        .await
        .unwrap()
        .into_inner();
    wait_fires(&mut c, &skip.id, 2).await;
    wait_fires(&mut c, &once.id, 2).await;
    node.stop().await;
    let stopped = cadre_proto::clock::now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let node = TestNode::start_in(tmp.path(), &toml).await;
    let mut c = schedules_as(&node, Some(&node.credential())).await;
    let before_skip = ticks(&node, &skip.id).await.len() as u64;
    let before_once = ticks(&node, &once.id).await.len() as u64;
    wait_fires(&mut c, &skip.id, before_skip + 2).await;
    wait_fires(&mut c, &once.id, before_once + 2).await;

    let store = open_store(&node, url).await;
    let missed = |recs: Vec<(String, String, String)>| -> Vec<String> {
        recs.into_iter()
            .filter(|r| r.0 == "schedule.missed")
            .map(|r| r.2)
            .collect()
    };
    // skip: the missed ticks are audited, none of them fired.
    let m = missed(audit_of(store.as_ref(), &skip.id).await);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("fired none"), "{m:?}");
    let after: Vec<i64> = ticks(&node, &skip.id)
        .await
        .into_iter()
        .filter(|t| *t > stopped + 1000)
        .collect();
    let first_after = *after.first().unwrap();
    assert!(
        first_after - stopped > 5000,
        "skip fired a missed tick: {after:?} (stopped at {stopped})"
    );
    // run_once: exactly one missed tick fired, the one the audit names.
    let m = missed(audit_of(store.as_ref(), &once.id).await);
    assert_eq!(m.len(), 1, "{m:?}");
    let named: i64 = m[0]
        .split("fired the most recent, ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{m:?}"));
    let all = ticks(&node, &once.id).await;
    assert!(all.contains(&named), "{named} not fired: {all:?}");
    let in_gap: Vec<&i64> = all
        .iter()
        .filter(|t| **t > stopped + 1000 && **t <= named)
        .collect();
    assert_eq!(in_gap, vec![&named], "run_once fired more than one missed tick");
    assert!(
        named - stopped > 3000,
        "the fired tick {named} was not missed (stopped at {stopped})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_after_a_restart_follow_the_policy_on_sqlite() {
    restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_after_a_restart_follow_the_policy_on_postgres() {
    let db = TestDb::create().await;
    restart(Some(db.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_waits_for_the_running_task_and_cancel_previous_cancels_it() {
    let node = TestNode::start("").await;
    let mut c = schedules_as(&node, Some(&node.credential())).await;
    let slow = r#"{"ms": 60000}"#;
    let skip = c
        .create_schedule(v1::CreateScheduleRequest {
            overlap: v1::OverlapPolicy::Skip as i32,
            ..every(1000, "system.debug.sleep", slow)
        })
        .await
        .unwrap()
        .into_inner();
    let cancel = c
        .create_schedule(v1::CreateScheduleRequest {
            overlap: v1::OverlapPolicy::CancelPrevious as i32,
            ..every(1000, "system.debug.sleep", slow)
        })
        .await
        .unwrap()
        .into_inner();
    // skip: one run, the later ticks skipped while it runs.
    let s = wait_schedule(&c, &skip.id, "ticks skipped", |s| s.skipped >= 2).await;
    assert_eq!(s.fires, 1, "{s:?}");
    assert_eq!(ticks(&node, &skip.id).await.len(), 1);
    // cancel_previous: each fire cancels the one before.
    wait_fires(&mut c, &cancel.id, 3).await;
    let runs = fired(&node, &cancel.id).await;
    let tasks = node.tasks().await;
    let mut cancelled = 0;
    for t in runs.values().flatten() {
        let t = eventually("a settled state", Duration::from_secs(30), || {
            let mut tasks = tasks.clone();
            let id = t.id.clone();
            async move {
                let t = get(&mut tasks, &id).await;
                (state(&t) != v1::TaskState::Queued).then_some(t)
            }
        })
        .await;
        cancelled += usize::from(state(&t) == v1::TaskState::Cancelled);
    }
    assert!(cancelled >= 1, "no run was cancelled: {runs:?}");
    for id in [&skip.id, &cancel.id] {
        c.delete_schedule(v1::ScheduleIdRequest { id: id.clone() })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_wrong_roles_and_other_tenants_are_refused() {
    let node = TestNode::start("").await;
    let admin = node.credential();
    let mut c = schedules_as(&node, Some(&admin)).await;
    let bad = |r: v1::CreateScheduleRequest| {
        let mut c = c.clone();
        async move { c.create_schedule(r).await.unwrap_err() }
    };
    for (req, field) in [
        (
            v1::CreateScheduleRequest {
                cron: "not a cron".into(),
                task: Some(spec("system.debug.echo", "{}")),
                ..Default::default()
            },
            "cron",
        ),
        (
            v1::CreateScheduleRequest {
                cron: "0 */5 * * * *".into(),
                time_zone: "Mars/Olympus".into(),
                task: Some(spec("system.debug.echo", "{}")),
                ..Default::default()
            },
            "time_zone",
        ),
        (every(500, "system.debug.echo", "{}"), "every_ms"),
        (every(1000, "no.such.type", "{}"), "no.such.type"),
    ] {
        let e = bad(req).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let ok = c
        .create_schedule(v1::CreateScheduleRequest {
            cron: "0 */5 * * * *".into(),
            time_zone: "Europe/Paris".into(),
            task: Some(spec("system.debug.echo", "{}")),
            paused: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.next_fire_at_ms.is_empty() && ok.paused);

    let observer = issue(&node, "a", "observer").await;
    let op_a = issue(&node, "a", "operator").await;
    let op_b = issue(&node, "b", "operator").await;
    let mut obs = schedules_as(&node, Some(&observer)).await;
    let e = obs
        .create_schedule(every(1000, "system.debug.echo", "{}"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut a = schedules_as(&node, Some(&op_a)).await;
    let mine = a
        .create_schedule(v1::CreateScheduleRequest {
            paused: true,
            ..every(60_000, "system.debug.echo", "{}")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.tenant, "a");
    let e = a
        .create_schedule(v1::CreateScheduleRequest {
            tenant: "b".into(),
            ..every(60_000, "system.debug.echo", "{}")
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The observer reads its tenant's; the other tenant sees nothing of it.
    obs.get_schedule(v1::GetScheduleRequest { id: mine.id.clone() })
        .await
        .unwrap();
    let e = obs
        .pause_schedule(v1::ScheduleIdRequest { id: mine.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut b = schedules_as(&node, Some(&op_b)).await;
    for e in [
        b.get_schedule(v1::GetScheduleRequest { id: mine.id.clone() })
            .await
            .unwrap_err(),
        b.trigger_schedule(v1::ScheduleIdRequest { id: mine.id.clone() })
            .await
            .unwrap_err(),
        b.delete_schedule(v1::ScheduleIdRequest { id: mine.id.clone() })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    let listed = b
        .list_schedules(v1::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.schedules.is_empty());
    // A commander sees every tenant's.
    let all = c
        .list_schedules(v1::ListSchedulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.schedules.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_and_the_cli_manage_schedules() {
    let node = TestNode::start("").await;
    let auth = format!("Bearer {}", node.credential());
    let h = [("Authorization", auth.as_str())];
    let body = r#"{"cron": "*/2 * * * * *", "time_zone": "Asia/Tokyo", "task": {"task_type": "system.debug.echo", "params": {"x": 1}}, "overlap": "skip", "missed": "run_once"}"#;
    let (code, _, text) = http_exchange(&node, "POST", "/v1/schedules", &h, Some(body)).await;
    assert_eq!(code, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = v["schedule"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["schedule"]["overlap"], "skip");
    assert_eq!(v["schedule"]["missed"], "run_once");
    let next = v["schedule"]["next_fire_at_ms"].as_array().unwrap();
    assert_eq!(next.len(), 5);
    assert!(next.iter().all(|t| t.as_i64().unwrap() % 2000 == 0), "{next:?}");
    let (code, _, text) = http_exchange(
        &node,
        "POST",
        "/v1/schedules",
        &h,
        Some(r#"{"cron": "* * *", "task": {"task_type": "system.debug.echo"}}"#),
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("cron"), "{text}");
    let (code, _, text) = http_exchange(&node, "POST", &format!("/v1/schedules/{id}/pause"), &h, None).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(r#""paused":true"#), "{text}");
    let (code, _, text) = http_exchange(&node, "GET", "/v1/schedules", &h, None).await;
    assert_eq!(code, 200);
    assert!(text.contains(&id));
    let (code, _, text) =
        http_exchange(&node, "POST", &format!("/v1/schedules/{id}/trigger"), &h, None).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(&format!("schedule:{id}:manual:")), "{text}");
    let (code, _, _) = http_exchange(&node, "DELETE", &format!("/v1/schedules/{id}"), &h, None).await;
    assert_eq!(code, 204);
    let (code, _, _) = http_exchange(&node, "GET", &format!("/v1/schedules/{id}"), &h, None).await;
    assert_eq!(code, 404);

    let cadre = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
            .args(["--endpoint", &node.grpc, "--token", &node.credential()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cadre(&[
        "schedule",
        "create",
        "--every",
        "1s",
        "--type",
        "system.debug.echo",
        "--params",
        r#"{"y":2}"#,
        "--overlap",
        "cancel",
        "--missed",
        "run-once",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["overlap"], "cancel_previous");
    let out = cadre(&["schedule", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id), "{out:?}");
    for verb in ["pause", "resume", "trigger", "show"] {
        let out = cadre(&["schedule", verb, &id]);
        assert!(out.status.success(), "{verb}: {out:?}");
    }
    let out = cadre(&[
        "schedule",
        "create",
        "--cron",
        "0 0 * * *",
        "--tz",
        "Nowhere/City",
        "--type",
        "system.debug.echo",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("time_zone"),
        "{out:?}"
    );
    let out = cadre(&["schedule", "delete", &id]);
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_intake_refuses_is_recorded_audited_and_not_retried() {
    let node = TestNode::start("[quotas.tenants.q]\nsubmits_per_second = 0\nmax_unfinished = 1\n").await;
    let op = issue(&node, "q", "operator").await;
    let mut c = schedules_as(&node, Some(&op)).await;
    // The first fire runs for a minute; the tenant's cap refuses the next ones.
    let s = c
        .create_schedule(every(1000, "system.debug.sleep", r#"{"ms": 60000}"#))
        .await
        .unwrap()
        .into_inner();
    let got = wait_schedule(&c, &s.id, "a refused fire", |s| !s.last_error.is_empty()).await;
    assert_eq!(got.fires, 1, "{got:?}");
    assert!(got.last_error.contains("q"), "{}", got.last_error);
    assert_eq!(ticks(&node, &s.id).await.len(), 1);
    let store = open_store(&node, None).await;
    let refused: Vec<_> = audit_of(store.as_ref(), &s.id)
        .await
        .into_iter()
        .filter(|a| a.0 == "schedule.fire")
        .collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|a| a.1 == "refused"),
        "{refused:?}"
    );
    // The dashboard has the page.
    let (code, body) = node.http_get("/assets/schedules.js").await;
    assert_eq!(code, 200);
    assert!(body.contains("/v1/schedules"));
    let (_, index) = node.http_get("/").await;
    assert!(index.contains("#/schedules"));
}
