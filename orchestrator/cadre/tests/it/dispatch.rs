//! Which queued task starts next, through the real binary: tenant weights (`[fairness]`)
//! measured over a flood, concurrency keys (`[[concurrency]]`) watched through events, and a
//! provider's 429 with `Retry-After` holding its task type without using up an attempt.

use std::collections::HashMap;
use std::time::Duration;

use cadre_fake_llm::Fake;
use cadre_proto::v1;

use crate::common::cluster::{Cluster, SHARED_NATS};
use crate::common::{Tasks, TestDb, TestNode, ev_state, events, eventually, issue, pool, spec, submit};

const PATIENCE: Duration = Duration::from_secs(60);

/// Each task's events, by task id.
async fn histories(c: &mut Tasks, ids: &[String]) -> HashMap<String, Vec<v1::TaskEvent>> {
    let mut out = HashMap::new();
    for id in ids {
        out.insert(id.clone(), events(c, id, 0).await);
    }
    out
}

/// The cursor of the first event of `id` in `state`.
fn cursor_of(h: &HashMap<String, Vec<v1::TaskEvent>>, id: &str, state: v1::TaskState) -> u64 {
    h[id]
        .iter()
        .find(|e| !e.is_progress && ev_state(e) == state)
        .unwrap_or_else(|| panic!("{id} never reached {state:?}: {:?}", h[id]))
        .cursor
}

/// Two tenants weighted 3:1 flood one pool of one worker: while both have work queued they
/// are served 3:1 (within 10 %), each in its own submission order.
#[tokio::test]
async fn weights_share_a_flooded_pool_three_to_one() {
    let node = TestNode::start(
        "[supervisors.system.pools]\nmonitor = 1\n\
         [fairness]\ndefault_weight = 1\n[fairness.weights]\nheavy = 3\n",
    )
    .await;
    let mut admin = node.tasks().await;
    let blocker = submit(&mut admin, spec("system.debug.sleep", r#"{"ms": 600000}"#)).await;
    let mut heavy = node
        .tasks_as(Some(&issue(&node, "heavy", "operator").await))
        .await;
    let mut light = node
        .tasks_as(Some(&issue(&node, "light", "operator").await))
        .await;
    let (mut h_ids, mut l_ids) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        h_ids.push(submit(&mut heavy, spec("system.debug.echo", "{}")).await.id);
        l_ids.push(submit(&mut light, spec("system.debug.echo", "{}")).await.id);
    }
    // Everything is queued behind the blocker before the worker frees up.
    eventually("120 tasks queued", PATIENCE, || async {
        (pool(&node, "system", "monitor").await.queue_depth == 120).then_some(())
    })
    .await;
    admin
        .cancel(v1::CancelRequest {
            id: blocker.id.clone(),
            reason: "let the flood through".into(),
        })
        .await
        .unwrap();
    let all: Vec<String> = h_ids.iter().chain(&l_ids).cloned().collect();
    let mut c = node.tasks().await;
    let hist = histories(&mut c, &all).await;
    let mut order: Vec<(u64, &str, usize)> = Vec::new();
    for (tenant, ids) in [("heavy", &h_ids), ("light", &l_ids)] {
        for (i, id) in ids.iter().enumerate() {
            order.push((cursor_of(&hist, id, v1::TaskState::Running), tenant, i));
        }
    }
    order.sort();
    // The first 60 starts: both tenants have work queued all along (light has 60).
    let window = &order[..60];
    let heavy_n = window.iter().filter(|(_, t, _)| *t == "heavy").count() as f64;
    let light_n = 60.0 - heavy_n;
    let ratio = heavy_n / light_n;
    assert!((2.7..=3.3).contains(&ratio), "heavy {heavy_n} : light {light_n}");
    for tenant in ["heavy", "light"] {
        let seq: Vec<usize> = order
            .iter()
            .filter(|(_, t, _)| *t == tenant)
            .map(|(_, _, i)| *i)
            .collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{tenant} not FIFO: {seq:?}");
    }
}

/// At most 2 tasks with key `repo:a` run at once; tasks with another key start while those
/// wait, and every task ends.
#[tokio::test]
async fn a_concurrency_key_runs_at_most_its_limit_and_others_flow() {
    let node = TestNode::start(
        "[supervisors.system.pools]\nmonitor = 4\n\
         [[concurrency]]\nkey = \"repo:*\"\nlimit = 2\n",
    )
    .await;
    let mut c = node.tasks().await;
    let mut keyed = Vec::new();
    for _ in 0..6 {
        let mut s = spec("system.debug.sleep", r#"{"ms": 1500}"#);
        s.concurrency_key = "repo:a".into();
        keyed.push(submit(&mut c, s).await.id);
    }
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut s = spec("system.debug.sleep", r#"{"ms": 10}"#);
        s.concurrency_key = "other:x".into();
        others.push(submit(&mut c, s).await.id);
    }
    let all: Vec<String> = keyed.iter().chain(&others).cloned().collect();
    let hist = histories(&mut c, &all).await;
    for id in &all {
        let last = hist[id].last().unwrap();
        assert_eq!(ev_state(last), v1::TaskState::Succeeded, "{id}: {:?}", hist[id]);
    }
    // Replay the keyed tasks' starts and ends in log order: never more than 2 running.
    let mut marks: Vec<(u64, i32)> = Vec::new();
    for id in &keyed {
        marks.push((cursor_of(&hist, id, v1::TaskState::Running), 1));
        marks.push((cursor_of(&hist, id, v1::TaskState::Succeeded), -1));
    }
    marks.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in marks {
        now += d;
        most = most.max(now);
    }
    assert_eq!(most, 2, "the limit is reached and never passed");
    // The other key was not blocked behind the waiting ones.
    let first_keyed_end = keyed
        .iter()
        .map(|id| cursor_of(&hist, id, v1::TaskState::Succeeded))
        .min()
        .unwrap();
    for id in &others {
        assert!(
            cursor_of(&hist, id, v1::TaskState::Running) < first_keyed_end,
            "{id} waited"
        );
    }
    // Bad keys are refused at intake.
    let mut s = spec("system.debug.echo", "{}");
    s.concurrency_key = "k".repeat(257);
    let err = c.submit(v1::SubmitRequest { spec: Some(s) }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
}

/// The llm settings of the rate-limit tests: model `limited` answers 429 with `Retry-After: 1`
/// once (no wait inside the attempt), model `plain` echoes, each on its own provider.
fn llm_toml(fake: &Fake) -> String {
    format!(
        "[executors.llm]\ndefault_model = \"limited\"\ncache_entries = 0\nmax_retry_after_ms = 0\n\
         [executors.llm.providers.a]\nbase_url = \"{0}\"\n\
         [executors.llm.providers.b]\nbase_url = \"{0}\"\n\
         [executors.llm.models.limited]\nprovider = \"a\"\nmodel = \"rate-once\"\n\
         [executors.llm.models.plain]\nprovider = \"b\"\nmodel = \"echo\"\n",
        fake.base_url
    )
}

/// A chat task of `model` with one attempt.
fn one_attempt(model: &str) -> v1::TaskSpec {
    let mut s = spec(
        "intelligence.llm.chat",
        &format!(r#"{{"model": "{model}", "prompt": "hi"}}"#),
    );
    s.retry = Some(v1::RetryPolicy {
        max_attempts: 1,
        initial_backoff_ms: 10,
        max_backoff_ms: 10,
        multiplier: 1.0,
        retry_timeouts: false,
    });
    s
}

/// The (state, attempt) of every state change of a task.
fn changes(evs: &[v1::TaskEvent]) -> Vec<(v1::TaskState, u32)> {
    evs.iter()
        .filter(|e| !e.is_progress)
        .map(|e| (ev_state(e), e.attempt))
        .collect()
}

/// A 429 with `Retry-After: 1` puts the task back in the queue (its one attempt not used up)
/// and holds its type for the second: a task of that type submitted meanwhile starts only
/// after it.
#[tokio::test]
async fn a_rate_limited_attempt_holds_its_type_without_using_an_attempt() {
    rate_limited_attempt_on("").await;
}

/// The same on PostgreSQL (the attempt given back is stored by the other backend).
#[tokio::test]
async fn a_rate_limited_attempt_is_not_counted_on_postgres() {
    let db = TestDb::create().await;
    rate_limited_attempt_on(&format!("[store]\nurl = {:?}\n", db.url())).await;
}

async fn rate_limited_attempt_on(store: &str) {
    let fake = Fake::start().await;
    let node = TestNode::start(&format!("{store}{}", llm_toml(&fake))).await;
    let mut c = node.tasks().await;
    let first = submit(&mut c, one_attempt("limited")).await;
    let req = v1::WatchRequest {
        task_id: first.id.clone(),
        ..Default::default()
    };
    let mut stream = c.watch(req).await.unwrap().into_inner();
    let held = loop {
        let e = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("events in time")
            .unwrap()
            .expect("the task goes on");
        if ev_state(&e) == v1::TaskState::Queued && e.message.contains("rate-limited") {
            break e;
        }
    };
    let second = submit(&mut c, one_attempt("plain")).await;
    let hist = histories(&mut c, &[first.id.clone(), second.id.clone()]).await;
    use v1::TaskState::{Queued, Running, Succeeded};
    assert_eq!(
        changes(&hist[&first.id]),
        [
            (Queued, 0),
            (Running, 1),
            (Queued, 0),
            (Running, 1),
            (Succeeded, 1)
        ],
        "{:?}",
        hist[&first.id]
    );
    assert!(
        held.attempt == 0 && held.message.contains("held for 1000 ms"),
        "{held:?}"
    );
    let second_start = hist[&second.id].iter().find(|e| ev_state(e) == Running).unwrap();
    assert!(
        second_start.at_ms >= held.at_ms + 900,
        "the type was held: {} ms after the hold began",
        second_start.at_ms - held.at_ms
    );
    assert_eq!(ev_state(hist[&second.id].last().unwrap()), Succeeded);
    assert_eq!(fake.count("rate-once"), 2);
}

/// Bad `[fairness]`, `[[concurrency]]` and `[upstream]` settings stop the config check, each
/// named.
#[test]
fn bad_dispatch_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[fairness]\ndefault_weight = 0\n[fairness.weights]\nacme = 5000\n\
         [[concurrency]]\nkey = \"a*b\"\nlimit = 0\n\
         [upstream]\nmax_hold_ms = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cadre"))
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "fairness.default_weight: must be 1 to 1000, got 0",
        "fairness.weights.acme: must be 1 to 1000, got 5000",
        "concurrency[0].key: \"a*b\": `*` may only end the key",
        "concurrency[0].limit: must be 1 to 100000, got 0",
        "upstream.max_hold_ms: must be 1 to 3600000, got 0",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
}

/// On a supervisor node fed over NATS: a rate-limited attempt's re-run is recorded (its
/// RUNNING event is not dropped as a repeat of the first), and a concurrency key's limit
/// holds on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_supervisor_node_requeues_are_recorded_and_keys_limited() {
    let fake = Fake::start().await;
    let settings = format!(
        "{}[[concurrency]]\nkey = \"repo:*\"\nlimit = 1\n",
        llm_toml(&fake)
    );
    let mut cluster = Cluster::start(SHARED_NATS, &[], &settings).await;
    cluster.supervisor_extra = settings.clone();
    cluster.add_supervisor("intelligence").await;
    cluster.wait_replicas(1).await;
    let mut c = cluster.orchestrator.tasks().await;
    let first = submit(&mut c, one_attempt("limited")).await;
    let mut keyed = Vec::new();
    for _ in 0..3 {
        let mut s = spec("intelligence.debug.sleep", r#"{"ms": 300}"#);
        s.concurrency_key = "repo:z".into();
        keyed.push(submit(&mut c, s).await.id);
    }
    let hist = histories(&mut c, &[vec![first.id.clone()], keyed.clone()].concat()).await;
    use v1::TaskState::{Queued, Running, Succeeded};
    assert_eq!(
        changes(&hist[&first.id]),
        [
            (Queued, 0),
            (Running, 1),
            (Queued, 0),
            (Running, 1),
            (Succeeded, 1)
        ],
        "{:?}",
        hist[&first.id]
    );
    let mut spans: Vec<(u64, u64)> = keyed
        .iter()
        .map(|id| (cursor_of(&hist, id, Running), cursor_of(&hist, id, Succeeded)))
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 < w[1].0),
        "one at a time: {spans:?}"
    );
    cluster.cleanup().await;
}
