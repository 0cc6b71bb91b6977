//! The `Store` contract, written once and run against both backends: SQLite in a temp dir and
//! PostgreSQL in a throwaway database ([`TestDb`]). Each contract test is a plain async
//! function of an `Arc<dyn Store>`; [`on_both_backends!`] makes one `#[tokio::test]` per
//! backend of it. Below them, PostgreSQL-only tests: replicas sharing one database, and an
//! outage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cadre_agents::Usage;
use cadre_core::audit::node_key;
use cadre_proto::Role;
use cadre_proto::{Priority, RetryPolicy, TaskEvent, TaskId, TaskRecord, TaskSpec, TaskState};
use cadre_store::chain::{self as audit, AuditDraft, ChainTail, GENESIS, Sealer, TrustedKeys};
use cadre_store::postgres::PgStore;
use cadre_store::{
    self as store, ApiKeyRecord, EventFilter, Store, TaskFilter, UsageFilter, WriteOp, WriteOutcome,
};
use cadre_supervisors::Transition;
use serde_json::json;
use sqlx::Executor;

use crate::common::{TestDb, TestNode, eventually, read_log};

/// Where a contract test's store lives.
trait Backend: Sized {
    /// A fresh, empty one.
    async fn create() -> Self;
    /// Its store URL.
    fn url(&self) -> String;
    /// A store on it (each call opens another instance on the same data).
    async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.url(), false).await.expect("open store")
    }
}

/// A SQLite file in a temp dir.
struct SqliteFile(tempfile::TempDir);

impl Backend for SqliteFile {
    async fn create() -> Self {
        SqliteFile(tempfile::tempdir().unwrap())
    }
    fn url(&self) -> String {
        format!("sqlite:{}", self.0.path().join("store.db").display())
    }
}

impl Backend for TestDb {
    async fn create() -> Self {
        TestDb::create().await
    }
    fn url(&self) -> String {
        TestDb::url(self).to_string()
    }
}

/// One test per backend for each contract function: `fn(Arc<dyn Store>)` ones after `one:`,
/// `fn(Arc<dyn Store>, Arc<dyn Store>)` ones (two instances on the same data) after `two:`.
macro_rules! on_both_backends {
    (one: [$($one:ident),* $(,)?], two: [$($two:ident),* $(,)?] $(,)?) => {
        on_both_backends!(@backend sqlite, SqliteFile, [$($one),*], [$($two),*]);
        on_both_backends!(@backend postgres, TestDb, [$($one),*], [$($two),*]);
    };
    (@backend $module:ident, $backend:ident, [$($one:ident),*], [$($two:ident),*]) => {
        mod $module {
            use super::Backend;
            $(
                #[tokio::test]
                async fn $one() {
                    let backend = <super::$backend as Backend>::create().await;
                    super::$one(backend.open().await).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $two() {
                    let backend = <super::$backend as Backend>::create().await;
                    super::$two(backend.open().await, backend.open().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    one: [
        a_batch_applies_in_order,
        terminal_tasks_never_change,
        a_repeated_transition_is_ignored,
        idempotency_keys_name_one_task_per_tenant,
        results_errors_signatures_and_attempts,
        stale_progress_is_dropped,
        list_filters_and_pages,
        get_adds_children_and_usage,
        events_after_filters_and_limits,
        unfinished_and_counts,
        audit_records_and_tail,
        an_insert_and_its_audit_commit_together,
        usage_is_recorded_and_summed,
        api_keys_are_stored_and_revoked,
        large_batches,
        text_with_nul_is_accepted,
    ],
    two: [a_second_instance_continues_the_sequence],
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn spec(task_type: &str, key: Option<&str>, parent: Option<TaskId>) -> TaskSpec {
    TaskSpec {
        task_type: task_type.into(),
        params: json!({"n": 1}),
        priority: Priority::default(),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy::default(),
        idempotency_key: key.map(str::to_string),
        parent_id: parent,
        security_level: Default::default(),
        concurrency_key: None,
        debounce: None,
        replay_of: None,
    }
}

/// A new QUEUED task of `tenant`, routed to supervisor `system` unless its type says otherwise.
fn task_of(tenant: &str, task_type: &str, key: Option<&str>, parent: Option<TaskId>) -> TaskRecord {
    let now = now_ms();
    TaskRecord {
        id: TaskId::new(),
        tenant: tenant.into(),
        spec: spec(task_type, key, parent),
        state: TaskState::Queued,
        attempt: 0,
        supervisor: task_type.split('.').next().unwrap().into(),
        worker_kind: "monitor".into(),
        result: None,
        error: None,
        created_at_ms: now,
        updated_at_ms: now,
        seq: 1,
        children: vec![],
        result_signature: None,
        usage: Vec::new(),
        steps: Vec::new(),
    }
}

fn task(key: Option<&str>) -> TaskRecord {
    task_of("t", "system.debug.echo", key, None)
}

fn now_ms() -> i64 {
    cadre_proto::clock::now_ms()
}

fn insert(r: &TaskRecord) -> WriteOp {
    WriteOp::Insert(Box::new(r.clone()))
}

fn tr(id: TaskId, state: TaskState, attempt: u32) -> WriteOp {
    WriteOp::Transition(Transition::new(id, state, attempt, state.as_str()))
}

fn progress(id: TaskId, attempt: u32, fraction: f64) -> WriteOp {
    WriteOp::Progress {
        task_id: id,
        attempt,
        fraction,
        message: format!("{fraction}"),
    }
}

fn usage(id: TaskId, model: &str, tokens_in: u64, tokens_out: u64, cost_usd: f64, at_ms: i64) -> WriteOp {
    WriteOp::Usage {
        task_id: id,
        usage: Usage {
            model: model.into(),
            tokens_in,
            tokens_out,
            ..Default::default()
        },
        cost_usd,
        at_ms,
    }
}

fn event(o: &WriteOutcome) -> &TaskEvent {
    match o {
        WriteOutcome::Event { event, .. } => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn cursors(outcomes: &[WriteOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            WriteOutcome::Event { event, .. } => Some(event.cursor),
            _ => None,
        })
        .collect()
}

async fn apply(s: &Arc<dyn Store>, ops: &[WriteOp]) -> Vec<WriteOutcome> {
    s.apply(ops, None).await.expect("apply")
}

/// [`apply`] with audit drafts sealed by `sealer`.
async fn apply_sealed(s: &Arc<dyn Store>, ops: &[WriteOp], sealer: &Sealer) -> Vec<WriteOutcome> {
    s.apply(ops, Some(sealer)).await.expect("apply")
}

/// A sealer with a fresh node key (the temp dir holds the key and the head file).
fn sealer() -> (Sealer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = node_key(dir.path()).unwrap();
    (Sealer::new(key, dir.path()), dir)
}

async fn get(s: &Arc<dyn Store>, id: TaskId) -> TaskRecord {
    s.get(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("task {id} not stored"))
}

async fn all_events(s: &Arc<dyn Store>, filter: &EventFilter) -> Vec<TaskEvent> {
    s.events_after(0, filter, 100_000).await.unwrap()
}

fn of_task(id: TaskId) -> EventFilter {
    EventFilter {
        task_id: Some(id),
        ..Default::default()
    }
}

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

/// Ids sorted as the store sorts them (UUIDv7 text, so creation order).
fn sorted(mut ids: Vec<TaskId>) -> Vec<TaskId> {
    ids.sort_by_key(|id| id.to_string());
    ids
}

// ---------------------------------------------------------------------------------------------
// The contract

/// Ops apply in order; one cursor per event, consecutive from 1 on an empty store, in op order.
async fn a_batch_applies_in_order(s: Arc<dyn Store>) {
    let (a, b, c) = (task(Some("k")), task(Some("k")), task(None));
    let out = apply(
        &s,
        &[
            insert(&a),
            insert(&b),
            insert(&c),
            tr(a.id, TaskState::Running, 1),
            progress(a.id, 1, 0.5),
            progress(a.id, 2, 0.5),
            tr(a.id, TaskState::Succeeded, 1),
            tr(a.id, TaskState::Failed, 1),
        ],
    )
    .await;
    assert_eq!(out.len(), 8);
    assert_eq!(
        out[1],
        WriteOutcome::Existing(a.id),
        "same key in one batch: the first wins"
    );
    assert_eq!(out[5], WriteOutcome::Ignored, "progress of another attempt");
    assert_eq!(out[7], WriteOutcome::Ignored, "terminal is sticky");
    assert_eq!(cursors(&out), vec![1, 2, 3, 4, 5], "cursors follow op order");
    match &out[0] {
        WriteOutcome::Event { event, created_at_ms } => {
            assert_eq!((event.seq, event.state, event.attempt), (1, TaskState::Queued, 0));
            assert_eq!(*created_at_ms, a.created_at_ms);
            assert_eq!(
                (event.task_type.as_str(), event.tenant.as_str()),
                ("system.debug.echo", "t")
            );
        }
        other => panic!("expected the QUEUED event, got {other:?}"),
    }
    let got = get(&s, a.id).await;
    assert_eq!((got.state, got.seq, got.attempt), (TaskState::Succeeded, 4, 1));
    assert_eq!(got.spec, a.spec, "the spec round-trips");
    assert_eq!(
        (got.supervisor.as_str(), got.worker_kind.as_str()),
        ("system", "monitor")
    );
    assert!(
        s.get(b.id).await.unwrap().is_none(),
        "the losing insert wrote nothing"
    );
    let events = all_events(&s, &of_task(a.id)).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(events[2].is_progress && events[2].state == TaskState::Running);
    assert_eq!(events[3].progress, 1.0);
    assert_eq!(
        events,
        out.iter()
            .filter_map(|o| match o {
                WriteOutcome::Event { event, .. } if event.task_id == a.id => Some(event.clone()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        "stored events are the events the batch returned"
    );
    assert!(s.ping().await.is_ok());
}

/// Once SUCCEEDED, FAILED, CANCELLED or TIMED_OUT, nothing changes a task again.
async fn terminal_tasks_never_change(s: Arc<dyn Store>) {
    let terminal = [
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::TimedOut,
    ];
    let tasks: Vec<TaskRecord> = terminal.iter().map(|_| task(None)).collect();
    let mut ops: Vec<WriteOp> = tasks.iter().map(insert).collect();
    for (t, state) in tasks.iter().zip(terminal) {
        ops.push(tr(t.id, TaskState::Running, 1));
        ops.push(WriteOp::Transition(Transition {
            result: (state == TaskState::Succeeded).then(|| json!({"ok": true})),
            ..Transition::new(t.id, state, 1, format!("finished {state:?}"))
        }));
    }
    apply(&s, &ops).await;
    let before: Vec<TaskRecord> = get_all(&s, &tasks).await;
    let events_before = all_events(&s, &EventFilter::default()).await.len();

    for t in &tasks {
        let late = apply(
            &s,
            &[
                tr(t.id, TaskState::Running, 2),
                progress(t.id, 1, 0.9),
                // (A QUEUED 0 would be recorded before the end, as a late give-back of
                // attempt 1: see cadre-store's late_tests.)
                tr(t.id, TaskState::Queued, 1),
                tr(t.id, TaskState::Retrying, 2),
                tr(t.id, TaskState::Succeeded, 2),
                tr(t.id, TaskState::Failed, 2),
                tr(t.id, TaskState::Cancelled, 2),
            ],
        )
        .await;
        assert!(
            late.iter().all(|o| *o == WriteOutcome::Ignored),
            "{:?} changed: {late:?}",
            t.id
        );
    }
    let unknown = TaskId::new();
    let out = apply(
        &s,
        &[tr(unknown, TaskState::Running, 1), progress(unknown, 1, 0.1)],
    )
    .await;
    assert_eq!(
        out,
        vec![WriteOutcome::Ignored, WriteOutcome::Ignored],
        "unknown task"
    );
    assert!(s.get(unknown).await.unwrap().is_none());

    assert_eq!(get_all(&s, &tasks).await, before, "rows unchanged");
    assert_eq!(
        all_events(&s, &EventFilter::default()).await.len(),
        events_before,
        "no event written"
    );
}

/// The same transition twice (an event delivered again, e.g. a pack of events NATS took but
/// whose acknowledgement was lost) changes nothing the second time, in one batch or the next;
/// the same state in another attempt still applies.
async fn a_repeated_transition_is_ignored(s: Arc<dyn Store>) {
    let t = task(None);
    let first = apply(
        &s,
        &[
            insert(&t),
            tr(t.id, TaskState::Running, 1),
            tr(t.id, TaskState::Running, 1),
        ],
    )
    .await;
    assert_eq!(first[2], WriteOutcome::Ignored, "{first:?}");
    let again = apply(&s, &[tr(t.id, TaskState::Running, 1)]).await;
    assert_eq!(again, vec![WriteOutcome::Ignored]);
    let retry = apply(
        &s,
        &[
            tr(t.id, TaskState::Retrying, 1),
            tr(t.id, TaskState::Retrying, 1),
            tr(t.id, TaskState::Running, 2),
        ],
    )
    .await;
    assert_eq!(retry[1], WriteOutcome::Ignored, "{retry:?}");
    assert_eq!(event(&retry[2]).attempt, 2, "the next attempt's RUNNING applies");
    let states: Vec<(TaskState, u32)> = all_events(&s, &of_task(t.id))
        .await
        .iter()
        .map(|e| (e.state, e.attempt))
        .collect();
    assert_eq!(
        states,
        [
            (TaskState::Queued, 0),
            (TaskState::Running, 1),
            (TaskState::Retrying, 1),
            (TaskState::Running, 2)
        ]
    );
    assert_eq!(get(&s, t.id).await.seq, 4);
}

async fn get_all(s: &Arc<dyn Store>, tasks: &[TaskRecord]) -> Vec<TaskRecord> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(get(s, t.id).await);
    }
    out
}

/// A key names one task per tenant, across batches; the losing insert writes nothing.
async fn idempotency_keys_name_one_task_per_tenant(s: Arc<dyn Store>) {
    let first = task_of("acme", "system.debug.echo", Some("order-1"), None);
    let out = apply(&s, &[insert(&first)]).await;
    assert_eq!(event(&out[0]).task_id, first.id);

    let again = task_of("acme", "system.debug.echo", Some("order-1"), None);
    let other_tenant = task_of("globex", "system.debug.echo", Some("order-1"), None);
    let no_key = task_of("acme", "system.debug.echo", None, None);
    let out = apply(&s, &[insert(&again), insert(&other_tenant), insert(&no_key)]).await;
    assert_eq!(out[0], WriteOutcome::Existing(first.id));
    assert_eq!(event(&out[1]).task_id, other_tenant.id, "keys are per tenant");
    assert_eq!(event(&out[2]).task_id, no_key.id);
    assert!(s.get(again.id).await.unwrap().is_none());

    let found = s.find_idempotent("acme", "order-1").await.unwrap().unwrap();
    assert_eq!(found.id, first.id);
    assert_eq!(found.spec.idempotency_key.as_deref(), Some("order-1"));
    let found = s.find_idempotent("globex", "order-1").await.unwrap().unwrap();
    assert_eq!(found.id, other_tenant.id);
    assert!(s.find_idempotent("acme", "order-2").await.unwrap().is_none());
    assert!(s.find_idempotent("initech", "order-1").await.unwrap().is_none());

    // A finished task still holds its key.
    apply(
        &s,
        &[
            tr(first.id, TaskState::Running, 1),
            tr(first.id, TaskState::Succeeded, 1),
        ],
    )
    .await;
    let late = task_of("acme", "system.debug.echo", Some("order-1"), None);
    assert_eq!(
        apply(&s, &[insert(&late)]).await,
        vec![WriteOutcome::Existing(first.id)]
    );

    // Re-inserting a stored id without a key is ignored.
    assert_eq!(apply(&s, &[insert(&no_key)]).await, vec![WriteOutcome::Ignored]);
}

/// What the row keeps: result and signature on success, error text while retrying and on
/// failure (cleared on success), attempts that only QUEUED may lower.
async fn results_errors_signatures_and_attempts(s: Arc<dyn Store>) {
    let (a, b) = (task(None), task(None));
    apply(
        &s,
        &[
            insert(&a),
            insert(&b),
            tr(a.id, TaskState::Running, 1),
            tr(a.id, TaskState::Retrying, 1),
        ],
    )
    .await;
    let got = get(&s, a.id).await;
    assert_eq!(
        (got.state, got.error.as_deref()),
        (TaskState::Retrying, Some("RETRYING"))
    );

    // Running keeps the error; a lower attempt does not lower it; QUEUED gives an attempt back.
    apply(
        &s,
        &[tr(a.id, TaskState::Running, 2), tr(a.id, TaskState::Running, 1)],
    )
    .await;
    let got = get(&s, a.id).await;
    assert_eq!((got.attempt, got.error.as_deref()), (2, Some("RETRYING")));
    apply(&s, &[tr(a.id, TaskState::Queued, 1)]).await;
    assert_eq!(get(&s, a.id).await.attempt, 1);

    let success = Transition {
        result: Some(json!({"answer": 42, "text": "ünïcödé"})),
        signature: Some("sig-hex".into()),
        ..Transition::new(a.id, TaskState::Succeeded, 2, "done")
    };
    let out = apply(
        &s,
        &[tr(a.id, TaskState::Running, 2), WriteOp::Transition(success)],
    )
    .await;
    let done = event(&out[1]);
    assert_eq!(done.result, Some(json!({"answer": 42, "text": "ünïcödé"})));
    assert_eq!((done.progress, done.message.as_str()), (1.0, "done"));
    let got = get(&s, a.id).await;
    assert_eq!(got.result, Some(json!({"answer": 42, "text": "ünïcödé"})));
    assert_eq!(got.result_signature.as_deref(), Some("sig-hex"));
    assert_eq!(got.error, None, "success clears the error");
    assert_eq!(got.seq, 7, "the late RUNNING of attempt 1 was a repeat: no event");
    assert!(got.updated_at_ms >= got.created_at_ms);

    let failure = Transition::new(b.id, TaskState::Failed, 1, "boom: it broke");
    apply(
        &s,
        &[tr(b.id, TaskState::Running, 1), WriteOp::Transition(failure)],
    )
    .await;
    let got = get(&s, b.id).await;
    assert_eq!(
        (got.state, got.error.as_deref(), got.result.clone()),
        (TaskState::Failed, Some("boom: it broke"), None)
    );
}

/// Progress counts only for the attempt that is running now.
async fn stale_progress_is_dropped(s: Arc<dyn Store>) {
    let a = task(None);
    let out = apply(&s, &[insert(&a), progress(a.id, 0, 0.1), progress(a.id, 1, 0.1)]).await;
    assert_eq!(
        out[1..],
        [WriteOutcome::Ignored, WriteOutcome::Ignored],
        "not running yet"
    );

    let out = apply(
        &s,
        &[
            tr(a.id, TaskState::Running, 1),
            progress(a.id, 2, 0.3),
            progress(a.id, 1, 0.25),
            progress(a.id, 1, 0.75),
        ],
    )
    .await;
    assert_eq!(out[1], WriteOutcome::Ignored, "a later attempt's progress");
    let (p1, p2) = (event(&out[2]), event(&out[3]));
    assert!(p1.is_progress && p2.is_progress);
    assert_eq!(
        (p1.seq, p1.progress, p1.state, p1.attempt),
        (3, 0.25, TaskState::Running, 1)
    );
    assert_eq!((p2.seq, p2.progress, p2.message.as_str()), (4, 0.75, "0.75"));
    let got = get(&s, a.id).await;
    assert_eq!((got.state, got.seq), (TaskState::Running, 4));

    let out = apply(
        &s,
        &[
            tr(a.id, TaskState::Retrying, 1),
            progress(a.id, 1, 0.9),
            tr(a.id, TaskState::Running, 2),
            progress(a.id, 1, 0.9),
            progress(a.id, 2, 0.1),
        ],
    )
    .await;
    assert_eq!(out[1], WriteOutcome::Ignored, "retrying");
    assert_eq!(out[3], WriteOutcome::Ignored, "the previous attempt");
    assert_eq!(event(&out[4]).seq, 7);
    apply(&s, &[tr(a.id, TaskState::Cancelled, 2)]).await;
    assert_eq!(
        apply(&s, &[progress(a.id, 2, 1.0)]).await,
        vec![WriteOutcome::Ignored]
    );
}

/// List: tenant, states, type prefix and parent filters; newest first; pages by `before`.
async fn list_filters_and_pages(s: Arc<dyn Store>) {
    let parent = task_of("a", "intelligence.text.summarize", None, None);
    let mut all = vec![parent.clone()];
    for i in 0..6 {
        let ty = if i % 2 == 0 {
            "system.debug.echo"
        } else {
            "multimodal.vision.thumbnail"
        };
        let tenant = if i < 4 { "a" } else { "b" };
        let p = (i == 1 || i == 4).then_some(parent.id);
        all.push(task_of(tenant, ty, None, p));
    }
    let mut ops: Vec<WriteOp> = all.iter().map(insert).collect();
    ops.push(tr(all[1].id, TaskState::Running, 1));
    ops.push(tr(all[2].id, TaskState::Running, 1));
    ops.push(tr(all[2].id, TaskState::Succeeded, 1));
    apply(&s, &ops).await;

    let list = |f: TaskFilter| {
        let s = s.clone();
        async move { ids(&s.list(&TaskFilter { limit: 100, ..f }).await.unwrap()) }
    };
    let newest_first = |v: Vec<TaskId>| {
        let mut v = sorted(v);
        v.reverse();
        v
    };
    assert_eq!(list(TaskFilter::default()).await, newest_first(ids(&all)));
    let of_a: Vec<TaskId> = all.iter().filter(|t| t.tenant == "a").map(|t| t.id).collect();
    assert_eq!(
        list(TaskFilter {
            tenant: Some("a".into()),
            ..Default::default()
        })
        .await,
        newest_first(of_a)
    );
    assert_eq!(
        list(TaskFilter {
            states: vec![TaskState::Running, TaskState::Succeeded],
            ..Default::default()
        })
        .await,
        newest_first(vec![all[1].id, all[2].id])
    );
    let echo: Vec<TaskId> = all
        .iter()
        .filter(|t| t.spec.task_type == "system.debug.echo")
        .map(|t| t.id)
        .collect();
    for prefix in ["system.", "system.debug.echo", "sys"] {
        assert_eq!(
            list(TaskFilter {
                type_prefix: Some(prefix.into()),
                ..Default::default()
            })
            .await,
            newest_first(echo.clone()),
            "prefix {prefix}"
        );
    }
    for prefix in ["sys%", "_ystem", "system.debug.echo.x", "debug"] {
        assert!(
            list(TaskFilter {
                type_prefix: Some(prefix.into()),
                ..Default::default()
            })
            .await
            .is_empty(),
            "prefix {prefix} is literal"
        );
    }
    assert_eq!(
        list(TaskFilter {
            parent_id: Some(parent.id),
            ..Default::default()
        })
        .await,
        newest_first(vec![all[2].id, all[5].id])
    );
    assert_eq!(
        list(TaskFilter {
            tenant: Some("b".into()),
            states: vec![TaskState::Queued],
            type_prefix: Some("system".into()),
            ..Default::default()
        })
        .await,
        vec![all[5].id]
    );

    // Paging walks every task once, newest first.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list(&TaskFilter {
                before,
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        before = page.last().map(|t| t.id);
        pages.extend(ids(&page));
    }
    assert_eq!(pages, newest_first(ids(&all)));
    let listed = s
        .list(&TaskFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

/// Get lists the task's children in its own tenant and its usage per model.
async fn get_adds_children_and_usage(s: Arc<dyn Store>) {
    let parent = task_of("a", "intelligence.text.summarize", None, None);
    let c1 = task_of("a", "system.debug.echo", None, Some(parent.id));
    let c2 = task_of("a", "system.debug.echo", None, Some(parent.id));
    let foreign = task_of("b", "system.debug.echo", None, Some(parent.id));
    let now = now_ms();
    apply(
        &s,
        &[
            insert(&parent),
            insert(&c1),
            insert(&c2),
            insert(&foreign),
            usage(parent.id, "small", 10, 5, 0.01, now),
            usage(parent.id, "small", 1, 2, 0.02, now),
            usage(parent.id, "big", 100, 50, 1.0, now),
        ],
    )
    .await;
    let got = get(&s, parent.id).await;
    assert_eq!(
        got.children,
        sorted(vec![c1.id, c2.id]),
        "another tenant's child is not listed"
    );
    let usage: Vec<(String, u64, u64)> = got
        .usage
        .iter()
        .map(|u| (u.model.clone(), u.tokens_in, u.tokens_out))
        .collect();
    assert_eq!(usage, vec![("big".into(), 100, 50), ("small".into(), 11, 7)]);
    assert!((got.usage[1].cost_usd - 0.03).abs() < 1e-9);
    assert!(get(&s, c1.id).await.children.is_empty());
    assert!(get(&s, c1.id).await.usage.is_empty());
}

/// events_after: strictly after the cursor, oldest first, at most `limit`, filtered by task,
/// type prefix and tenant.
async fn events_after_filters_and_limits(s: Arc<dyn Store>) {
    let a = task_of("a", "system.debug.echo", None, None);
    let b = task_of("b", "intelligence.text.summarize", None, None);
    apply(
        &s,
        &[
            insert(&a),
            insert(&b),
            tr(a.id, TaskState::Running, 1),
            tr(b.id, TaskState::Running, 1),
        ],
    )
    .await;
    apply(
        &s,
        &[tr(a.id, TaskState::Succeeded, 1), tr(b.id, TaskState::Failed, 1)],
    )
    .await;
    let all = all_events(&s, &EventFilter::default()).await;
    assert_eq!(
        all.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    let after = s.events_after(4, &EventFilter::default(), 100).await.unwrap();
    assert_eq!(after, all[4..]);
    let limited = s.events_after(1, &EventFilter::default(), 2).await.unwrap();
    assert_eq!(limited, all[1..3]);
    assert!(
        s.events_after(6, &EventFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );

    let only_a = all_events(&s, &of_task(a.id)).await;
    assert_eq!(only_a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(only_a.iter().all(|e| e.task_id == a.id));
    let prefixed = all_events(
        &s,
        &EventFilter {
            type_prefix: Some("intelligence.".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(prefixed.len(), 3);
    assert!(prefixed.iter().all(|e| e.task_id == b.id));
    let of_tenant = all_events(
        &s,
        &EventFilter {
            tenant: Some("a".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(of_tenant, only_a);
    assert!(
        all_events(
            &s,
            &EventFilter {
                type_prefix: Some("intelligence.".into()),
                tenant: Some("a".into()),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
    let last = &all[5];
    assert_eq!(
        (last.state, last.tenant.as_str(), last.message.as_str()),
        (TaskState::Failed, "b", "FAILED")
    );
}

/// Unfinished tasks (QUEUED, RUNNING, RETRYING), per supervisor, oldest first; counted per tenant.
async fn unfinished_and_counts(s: Arc<dyn Store>) {
    let t: Vec<TaskRecord> = vec![
        task_of("a", "system.debug.echo", None, None),
        task_of("a", "intelligence.text.summarize", None, None),
        task_of("b", "system.debug.echo", None, None),
        task_of("b", "system.debug.echo", None, None),
        task_of("c", "system.debug.echo", None, None),
    ];
    let mut ops: Vec<WriteOp> = t.iter().map(insert).collect();
    ops.extend([
        tr(t[1].id, TaskState::Running, 1),
        tr(t[2].id, TaskState::Running, 1),
        tr(t[2].id, TaskState::Retrying, 1),
        tr(t[3].id, TaskState::Running, 1),
        tr(t[3].id, TaskState::Succeeded, 1),
        tr(t[4].id, TaskState::Cancelled, 0),
    ]);
    apply(&s, &ops).await;
    let unfinished = s.unfinished(None).await.unwrap();
    assert_eq!(ids(&unfinished), sorted(vec![t[0].id, t[1].id, t[2].id]));
    let system = s.unfinished(Some("system")).await.unwrap();
    assert_eq!(ids(&system), sorted(vec![t[0].id, t[2].id]));
    assert_eq!(
        system.iter().find(|r| r.id == t[2].id).unwrap().state,
        TaskState::Retrying
    );
    assert!(s.unfinished(Some("multimodal")).await.unwrap().is_empty());
    let counts = s.count_unfinished().await.unwrap();
    assert_eq!(
        counts,
        HashMap::from([("a".to_string(), 2), ("b".to_string(), 1)])
    );
}

fn audit_draft(n: u64, target: &str) -> WriteOp {
    WriteOp::AuditDraft(Box::new(AuditDraft {
        at_ms: 1_700_000_000_000 + n as i64,
        actor: "alice".into(),
        tenant: "acme".into(),
        role: "operator".into(),
        action: "task.submit".into(),
        target: target.into(),
        outcome: "ok".into(),
        detail: format!("record {n}"),
    }))
}

/// The audit act of an insert ([`WriteOp::AuditOfInsert`]) is sealed in the insert's batch
/// when the insert stored its task, and not at all when the task's idempotency key named an
/// existing one (in the same batch or an earlier one).
async fn an_insert_and_its_audit_commit_together(s: Arc<dyn Store>) {
    let (sealer, _dir) = sealer();
    let act = |t: &TaskRecord| WriteOp::AuditOfInsert {
        task_id: t.id,
        draft: Box::new(AuditDraft::new("task.submit", &t.id.to_string(), "ok", "")),
    };
    let (first, same_key, again) = (task(Some("k")), task(Some("k")), task(Some("k")));
    let out = apply_sealed(
        &s,
        &[insert(&first), act(&first), insert(&same_key), act(&same_key)],
        &sealer,
    )
    .await;
    assert!(matches!(out[1], WriteOutcome::Audited { seq: 1, .. }), "{out:?}");
    assert_eq!(out[2], WriteOutcome::Existing(first.id));
    assert_eq!(out[3], WriteOutcome::Ignored, "{out:?}");
    let out = apply_sealed(&s, &[insert(&again), act(&again)], &sealer).await;
    assert_eq!(out, vec![WriteOutcome::Existing(first.id), WriteOutcome::Ignored]);
    let records = s.audit_records(None).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].draft.target, first.id.to_string());
}

/// Audit drafts are sealed by the store after the chain's end, in op order, signed by the
/// sealer's key; read back in seq order, by target, and the tail. Without a sealer a draft is
/// ignored.
async fn audit_records_and_tail(s: Arc<dyn Store>) {
    let (sealer, _dir) = sealer();
    assert_eq!(s.audit_tail().await.unwrap(), ChainTail::default());
    assert!(s.audit_records(None).await.unwrap().is_empty());
    assert_eq!(
        apply(&s, &[audit_draft(0, "task-0")]).await,
        vec![WriteOutcome::Ignored]
    );
    let t = task(None);
    let out = apply_sealed(
        &s,
        &[audit_draft(1, "task-1"), insert(&t), audit_draft(2, "task-2")],
        &sealer,
    )
    .await;
    assert!(matches!(out[0], WriteOutcome::Audited { seq: 1, .. }), "{out:?}");
    assert!(matches!(out[2], WriteOutcome::Audited { seq: 2, .. }), "{out:?}");
    let out = apply_sealed(&s, &[audit_draft(3, "task-1")], &sealer).await;
    let WriteOutcome::Audited { seq: 3, hash } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        s.audit_tail().await.unwrap(),
        ChainTail {
            seq: 3,
            hash: hash.clone()
        }
    );
    let records = s.audit_records(None).await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(records[0].prev_hash, GENESIS);
    assert!(records.iter().all(|r| r.signer == sealer.key_id()));
    let keys = TrustedKeys::new([audit::public_key(
        &std::fs::read_to_string(_dir.path().join(audit::NODE_PUBLIC_KEY_FILE)).unwrap(),
    )
    .unwrap()]);
    assert_eq!(
        audit::verify(&records, &[sealer.head(&s.audit_tail().await.unwrap())], &keys),
        Ok(3)
    );
    let by_target = s.audit_records(Some("task-1")).await.unwrap();
    assert_eq!(by_target, vec![records[0].clone(), records[2].clone()]);
    assert!(s.audit_records(Some("nothing")).await.unwrap().is_empty());
}

/// Usage is recorded per task (even after it finished), reported per tenant and UTC day, and
/// summed per tenant and model by task, tenant or day.
async fn usage_is_recorded_and_summed(s: Arc<dyn Store>) {
    let a = task_of("acme", "intelligence.text.summarize", None, None);
    let b = task_of("globex", "intelligence.text.summarize", None, None);
    let day1 = 1_700_000_000_000; // 2023-11-14
    let day2 = day1 + 86_400_000;
    let out = apply(
        &s,
        &[
            insert(&a),
            usage(a.id, "m1", 100, 20, 0.5, day1),
            insert(&b),
            tr(b.id, TaskState::Running, 1),
            tr(b.id, TaskState::Succeeded, 1),
        ],
    )
    .await;
    assert_eq!(
        out[1],
        WriteOutcome::Usage {
            tenant: "acme".into(),
            day: "2023-11-14".into(),
            tokens: 120,
            cost_usd: 0.5,
        }
    );
    let out = apply(
        &s,
        &[
            usage(b.id, "m1", 1, 1, 0.25, day1),
            usage(b.id, "m2", 2, 3, 0.125, day2),
            usage(a.id, "m1", 10, 10, 0.5, day2),
            usage(TaskId::new(), "m1", 1, 1, 1.0, day1),
        ],
    )
    .await;
    assert_eq!(
        out[0],
        WriteOutcome::Usage {
            tenant: "globex".into(),
            day: "2023-11-14".into(),
            tokens: 2,
            cost_usd: 0.25,
        },
        "usage after the task finished still counts"
    );
    assert_eq!(out[3], WriteOutcome::Ignored, "usage of an unknown task");

    let sums = |f: UsageFilter| {
        let s = s.clone();
        async move {
            s.usage(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|u| (u.tenant, u.model, u.tokens_in, u.tokens_out, u.cost_usd))
                .collect::<Vec<_>>()
        }
    };
    let row = |t: &str, m: &str, i, o, c| (t.to_string(), m.to_string(), i, o, c);
    assert_eq!(
        sums(UsageFilter::default()).await,
        vec![
            row("acme", "m1", 110, 30, 1.0),
            row("globex", "m1", 1, 1, 0.25),
            row("globex", "m2", 2, 3, 0.125),
        ]
    );
    assert_eq!(
        sums(UsageFilter::task(a.id)).await,
        vec![row("acme", "m1", 110, 30, 1.0)]
    );
    assert_eq!(
        sums(UsageFilter {
            tenant: Some("globex".into()),
            day: Some("2023-11-15".into()),
            ..Default::default()
        })
        .await,
        vec![row("globex", "m2", 2, 3, 0.125)]
    );
    assert_eq!(
        sums(UsageFilter {
            day: Some("2023-11-14".into()),
            ..Default::default()
        })
        .await,
        vec![row("acme", "m1", 100, 20, 0.5), row("globex", "m1", 1, 1, 0.25)]
    );
    assert!(
        sums(UsageFilter {
            tenant: Some("initech".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

fn api_key(id: &str, created_at_ms: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: format!("key {id}"),
        tenant: "acme".into(),
        role: Role::Operator,
        salt: "00ff".into(),
        hash: "abcd".into(),
        created_at_ms,
        revoked_at_ms: None,
        expires_at_ms: None,
    }
}

/// API keys: stored, listed oldest first with revoked ones, revoked once.
async fn api_keys_are_stored_and_revoked(s: Arc<dyn Store>) {
    assert!(s.api_keys().await.unwrap().is_empty());
    let (k1, k2) = (api_key("k1", 2_000), api_key("k2", 1_000));
    let k3 = ApiKeyRecord {
        role: Role::Commander,
        revoked_at_ms: Some(3_000),
        ..api_key("k3", 3_000)
    };
    for k in [&k1, &k2, &k3] {
        s.insert_api_key(k).await.unwrap();
    }
    assert!(s.insert_api_key(&k1).await.is_err(), "ids are unique");
    assert_eq!(
        s.api_keys().await.unwrap(),
        vec![k2.clone(), k1.clone(), k3.clone()]
    );
    assert!(s.revoke_api_key("k1", 5_000).await.unwrap());
    assert!(!s.revoke_api_key("k1", 6_000).await.unwrap(), "already revoked");
    assert!(!s.revoke_api_key("k3", 6_000).await.unwrap(), "already revoked");
    assert!(!s.revoke_api_key("nope", 6_000).await.unwrap());
    let keys = s.api_keys().await.unwrap();
    assert_eq!(keys[1].revoked_at_ms, Some(5_000));
    assert_eq!(keys[0].revoked_at_ms, None);
}

/// Batches as big as the writer makes them (512 ops), for correctness and a throughput figure.
async fn large_batches(s: Arc<dyn Store>) {
    const TASKS: usize = 3_072;
    const BATCH: usize = 512;
    let tasks: Vec<TaskRecord> = (0..TASKS).map(|_| task(None)).collect();
    let started = Instant::now();
    let mut ops_done = 0;
    for chunk in tasks.chunks(BATCH) {
        let out = apply(&s, &chunk.iter().map(insert).collect::<Vec<_>>()).await;
        assert_eq!(cursors(&out).len(), chunk.len());
        ops_done += chunk.len();
    }
    for phase in [TaskState::Running, TaskState::Succeeded] {
        for chunk in tasks.chunks(BATCH) {
            let ops: Vec<WriteOp> = chunk.iter().map(|t| tr(t.id, phase, 1)).collect();
            let out = apply(&s, &ops).await;
            assert_eq!(cursors(&out).len(), chunk.len(), "every {phase:?} applied");
            ops_done += chunk.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "large_batches: {TASKS} tasks (insert, RUNNING, SUCCEEDED) = {ops_done} ops in {secs:.2} s: \
         {:.0} ops/s, {:.0} tasks/s",
        ops_done as f64 / secs,
        TASKS as f64 / secs
    );
    let events = all_events(&s, &EventFilter::default()).await;
    assert_eq!(events.len(), 3 * TASKS);
    assert!(events.windows(2).all(|w| w[1].cursor == w[0].cursor + 1));
    assert!(s.count_unfinished().await.unwrap().is_empty());
    let done = s
        .list(&TaskFilter {
            states: vec![TaskState::Succeeded],
            limit: TASKS as u32 + 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), TASKS);
}

/// Text with NUL is accepted and found again everywhere (PostgreSQL, which cannot hold NUL,
/// stores it as U+FFFD): a batch with it must not fail for ever, nor a lookup with it.
async fn text_with_nul_is_accepted(s: Arc<dyn Store>) {
    let t = task(Some("key\0with nul"));
    let (sealer, _dir) = sealer();
    let out = apply_sealed(
        &s,
        &[
            insert(&t),
            tr(t.id, TaskState::Running, 1),
            progress(t.id, 1, 0.5),
            WriteOp::Transition(Transition::new(t.id, TaskState::Failed, 1, "bad\0byte")),
            usage(t.id, "model\0x", 1, 1, 0.0, now_ms()),
            audit_draft(1, "target\0x"),
        ],
        &sealer,
    )
    .await;
    assert_eq!(cursors(&out).len(), 4);
    let error = get(&s, t.id).await.error.unwrap();
    assert!(
        ["bad\0byte", "bad\u{FFFD}byte"].contains(&error.as_str()),
        "{error:?}"
    );
    let found = s.find_idempotent("t", "key\0with nul").await.unwrap().unwrap();
    assert_eq!(found.id, t.id);
    let again = task(Some("key\0with nul"));
    assert_eq!(
        apply(&s, &[insert(&again)]).await,
        vec![WriteOutcome::Existing(t.id)]
    );

    let nul = Some("t\0".to_string());
    let tasks = s
        .list(&TaskFilter {
            tenant: nul.clone(),
            type_prefix: nul.clone(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(tasks.is_empty());
    let events = s
        .events_after(
            0,
            &EventFilter {
                tenant: nul.clone(),
                type_prefix: nul.clone(),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert!(events.is_empty());
    let usage = s
        .usage(&UsageFilter {
            tenant: nul.clone(),
            day: nul,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(usage.is_empty());
    let records = s.audit_records(Some("target\0x")).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        audit::record_hash(1, &records[0].draft, GENESIS),
        records[0].hash,
        "the record was sealed as stored"
    );
    assert!(!s.revoke_api_key("id\0", 1).await.unwrap());
    let key = ApiKeyRecord {
        name: "name\0".into(),
        ..api_key("k\0", 1)
    };
    s.insert_api_key(&key).await.unwrap();
    assert!(s.revoke_api_key("k\0", 2).await.unwrap());
}

/// A second store instance on the same data (a restart, or another replica) continues the
/// cursor sequence and knows which tasks are unfinished.
async fn a_second_instance_continues_the_sequence(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let (a, c) = (task(None), task(None));
    let out = apply(
        &first,
        &[
            insert(&a),
            insert(&c),
            tr(a.id, TaskState::Running, 1),
            tr(a.id, TaskState::Succeeded, 1),
            tr(c.id, TaskState::Running, 1),
        ],
    )
    .await;
    assert_eq!(cursors(&out), vec![1, 2, 3, 4, 5]);
    let out = apply(
        &second,
        &[tr(c.id, TaskState::Succeeded, 1), tr(a.id, TaskState::Running, 2)],
    )
    .await;
    assert_eq!(event(&out[0]).cursor, 6);
    assert_eq!(event(&out[0]).seq, 3);
    assert_eq!(
        out[1],
        WriteOutcome::Ignored,
        "a finished before the second instance started"
    );
    assert_eq!(get(&first, c.id).await.state, TaskState::Succeeded);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

/// Two PgStore instances ("replicas") on one database, writing at once: every event gets a
/// cursor, cursors have no gaps and a watcher polling `events_after` sees them in order (never
/// a smaller cursor after a larger one); a task finishes once, however many replicas try; an
/// idempotency key names one task however many replicas insert it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_one_database_safely() {
    const TASKS: usize = 240;
    const CHUNK: usize = 16;
    let db = TestDb::create().await;
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 4).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 4).await.unwrap());
    let watcher: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 2).await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn({
        let (watcher, stop) = (watcher.clone(), stop.clone());
        async move {
            let mut last = 0u64;
            let mut seen = Vec::new();
            loop {
                // Read before polling: once the writers are done, one empty poll ends the watch.
                let done = stop.load(Ordering::SeqCst);
                let events = watcher
                    .events_after(last, &EventFilter::default(), 500)
                    .await
                    .unwrap();
                if events.is_empty() {
                    if done {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                for e in &events {
                    assert_eq!(e.cursor, last + 1, "a cursor was skipped or came out of order");
                    last = e.cursor;
                }
                seen.extend(events);
            }
        }
    });

    // Both replicas insert the same idempotency keys at once (different task ids).
    let keys: Vec<String> = (0..TASKS).map(|i| format!("key-{i}")).collect();
    let insert_all = |store: Arc<dyn Store>, reverse: bool| {
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut tasks: Vec<TaskRecord> = keys.iter().map(|k| task(Some(k))).collect();
            if reverse {
                tasks.reverse();
            }
            let mut outcomes = Vec::new();
            for chunk in tasks.chunks(CHUNK) {
                let out = store
                    .apply(&chunk.iter().map(insert).collect::<Vec<_>>(), None)
                    .await
                    .unwrap();
                outcomes.extend(
                    chunk
                        .iter()
                        .map(|t| t.spec.idempotency_key.clone().unwrap())
                        .zip(out),
                );
            }
            outcomes
        })
    };
    let (from_a, from_b) = tokio::join!(insert_all(a.clone(), false), insert_all(b.clone(), true));
    let mut winners: HashMap<String, TaskId> = HashMap::new();
    let mut existing: Vec<(String, TaskId)> = Vec::new();
    for (key, outcome) in from_a.unwrap().into_iter().chain(from_b.unwrap()) {
        match outcome {
            WriteOutcome::Event { event, .. } => {
                assert!(
                    winners.insert(key, event.task_id).is_none(),
                    "a key created two tasks"
                );
            }
            WriteOutcome::Existing(id) => existing.push((key, id)),
            other => panic!("unexpected insert outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), TASKS, "every key created exactly one task");
    assert_eq!(existing.len(), TASKS);
    for (key, id) in existing {
        assert_eq!(winners[&key], id, "Existing names the winner of {key}");
    }

    // Both replicas try to run and finish every task, in opposite orders.
    let ids: Vec<TaskId> = sorted(winners.values().copied().collect());
    let finish_all = |store: Arc<dyn Store>, name: &'static str, reverse: bool| {
        let mut ids = ids.clone();
        if reverse {
            ids.reverse();
        }
        tokio::spawn(async move {
            let mut finished = Vec::new();
            for chunk in ids.chunks(CHUNK) {
                let mut ops = Vec::new();
                for id in chunk {
                    ops.push(tr(*id, TaskState::Running, 1));
                    ops.push(progress(*id, 1, 0.5));
                    ops.push(WriteOp::Transition(Transition {
                        result: Some(json!({ "by": name })),
                        ..Transition::new(*id, TaskState::Succeeded, 1, name)
                    }));
                }
                let out = store.apply(&ops, None).await.unwrap();
                for o in out {
                    if let WriteOutcome::Event { event, .. } = o
                        && event.state == TaskState::Succeeded
                    {
                        finished.push(event.task_id);
                    }
                }
            }
            finished
        })
    };
    let (fa, fb) = tokio::join!(
        finish_all(a.clone(), "a", false),
        finish_all(b.clone(), "b", true)
    );
    let (fa, fb) = (fa.unwrap(), fb.unwrap());
    assert_eq!(fa.len() + fb.len(), TASKS, "each task finished once");
    let finished: HashSet<TaskId> = fa.iter().chain(&fb).copied().collect();
    assert_eq!(finished.len(), TASKS);
    eprintln!("replicas: a finished {}, b finished {}", fa.len(), fb.len());

    stop.store(true, Ordering::SeqCst);
    let seen = watch.await.unwrap();
    let stored = all_events(&watcher, &EventFilter::default()).await;
    assert_eq!(seen, stored, "the watcher saw every event, in cursor order");
    let mut per_task: HashMap<TaskId, Vec<&TaskEvent>> = HashMap::new();
    for e in &stored {
        per_task.entry(e.task_id).or_default().push(e);
    }
    assert_eq!(per_task.len(), TASKS);
    for (id, events) in per_task {
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seq of {id}");
        let done: Vec<_> = events.iter().filter(|e| e.state.is_terminal()).collect();
        assert_eq!(done.len(), 1, "{id} finished once");
        let got = get(&a, id).await;
        assert_eq!((got.state, got.seq), (TaskState::Succeeded, seqs.len() as u64));
        assert_eq!(
            got.result.as_ref(),
            done[0].result.as_ref(),
            "the row holds the winner's result"
        );
    }
}

/// Two replicas seal audit drafts into one chain at once, each with its own key, several
/// batches in flight per replica: the stored chain has seqs 1..N without gaps or duplicates,
/// every link holds, every record names the key that signed it, and each replica's signed
/// head (its last sealed record) is a verified prefix of the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_seal_one_audit_chain() {
    const BATCHES: usize = 40;
    const DRAFTS: usize = 5;
    const WRITERS: usize = 3;
    let db = TestDb::create().await;
    let seal = |name: &'static str| {
        let (sealer, dir) = sealer();
        (name, Arc::new(sealer), dir)
    };
    let replicas = [seal("a"), seal("b")];
    let mut jobs = Vec::new();
    for (name, sealer, _) in &replicas {
        let store: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 4).await.unwrap());
        for w in 0..WRITERS {
            let (store, sealer, name) = (store.clone(), sealer.clone(), *name);
            jobs.push(tokio::spawn(async move {
                let mut last = ChainTail::default();
                for b in 0..BATCHES {
                    let t = task(None);
                    let mut ops = vec![insert(&t)];
                    ops.extend((0..DRAFTS).map(|d| audit_draft(d as u64, &format!("{name}-{w}-{b}-{d}"))));
                    for o in apply_sealed(&store, &ops, &sealer).await.into_iter().skip(1) {
                        let WriteOutcome::Audited { seq, hash } = o else {
                            panic!("{o:?}")
                        };
                        assert!(seq > last.seq, "a writer's records follow each other");
                        last = ChainTail { seq, hash };
                    }
                }
                (name, last)
            }));
        }
    }
    let mut heads = Vec::new();
    for job in jobs {
        let (name, last) = job.await.unwrap();
        let (_, sealer, _) = replicas.iter().find(|(n, _, _)| *n == name).unwrap();
        heads.push(sealer.head(&last));
    }
    let reader: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 2).await.unwrap());
    let records = reader.audit_records(None).await.unwrap();
    let n = 2 * WRITERS * BATCHES * DRAFTS;
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>(),
        "seqs without gaps or duplicates"
    );
    let public = |dir: &tempfile::TempDir| {
        audit::public_key(&std::fs::read_to_string(dir.path().join(audit::NODE_PUBLIC_KEY_FILE)).unwrap())
            .unwrap()
    };
    let both = TrustedKeys::new(replicas.iter().map(|(_, _, dir)| public(dir)));
    assert_eq!(audit::verify(&records, &heads, &both), Ok(n as u64));
    for (_, sealer, _) in &replicas {
        let mine = records.iter().filter(|r| r.signer == sealer.key_id()).count();
        assert_eq!(mine, WRITERS * BATCHES * DRAFTS, "each record names its signer");
    }
    // A's records are not accepted on B's key alone.
    let only_b = TrustedKeys::new([public(&replicas[1].2)]);
    assert!(matches!(
        audit::verify(&records, &[], &only_b),
        Err(audit::Tampering::UntrustedSigner { .. })
    ));
}

/// Kills the pool's server connections from outside (as a PostgreSQL restart would).
async fn terminate_backends(db: &TestDb) {
    let mut admin = crate::common::pg::admin().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name()
        )))
        .await
        .unwrap();
}

/// Retries `apply` a few times, as the writer does; panics if it never succeeds.
async fn apply_with_retries(s: &Arc<dyn Store>, ops: &[WriteOp], tries: u32) -> Vec<WriteOutcome> {
    for i in 1..=tries {
        match s.apply(ops, None).await {
            Ok(out) => return out,
            Err(e) => eprintln!("apply failed (try {i}): {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("apply did not recover after {tries} tries");
}

/// An outage surfaces as StoreError (never a panic or a false success); the pool recovers by
/// itself when PostgreSQL is back.
#[tokio::test]
async fn postgres_outage_is_an_error_and_the_pool_recovers() {
    let db = TestDb::create().await;
    let s: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 4).await.unwrap());
    let before = task(None);
    apply(&s, &[insert(&before)]).await;

    // Connections killed: the next operations succeed after at most a retry or two.
    terminate_backends(&db).await;
    let after_kill = task(None);
    apply_with_retries(&s, &[insert(&after_kill)], 3).await;
    assert_eq!(get(&s, after_kill.id).await.state, TaskState::Queued);

    // The database refuses connections for a while: every operation fails, none pretends.
    let mut admin = crate::common::pg::admin().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            db.name()
        )))
        .await
        .unwrap();
    terminate_backends(&db).await;
    let during = task(None);
    let started = Instant::now();
    let err = s
        .apply(&[insert(&during)], None)
        .await
        .expect_err("apply during the outage");
    assert!(err.to_string().starts_with("store: "), "{err}");
    assert!(s.get(before.id).await.is_err(), "reads fail too");
    assert!(s.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(30), "errors come quickly");

    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name()
        )))
        .await
        .unwrap();
    let back = task(None);
    apply_with_retries(&s, &[insert(&back)], 5).await;
    assert!(
        s.get(during.id).await.unwrap().is_none(),
        "the failed batch wrote nothing"
    );
    for id in [before.id, after_kill.id, back.id] {
        assert_eq!(get(&s, id).await.state, TaskState::Queued);
    }
    let events = all_events(&s, &EventFilter::default()).await;
    assert_eq!(events.iter().map(|e| e.cursor).collect::<Vec<_>>(), vec![1, 2, 3]);
}

/// A TCP proxy to PostgreSQL that can stop forwarding without closing anything, as a network
/// partition would; returns its address and the switch.
async fn freezable_proxy(target: String) -> (String, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let frozen = Arc::new(AtomicBool::new(false));
    let switch = frozen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (client_r, client_w) = client.into_split();
            let (server_r, server_w) = server.into_split();
            tokio::spawn(forward(client_r, server_w, frozen.clone()));
            tokio::spawn(forward(server_r, client_w, frozen.clone()));
        }
    });
    (addr, switch)
}

/// Copies `from` to `to`, holding data back while `frozen`.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A server that stops answering (a partition: nothing is closed) makes `apply` fail after
/// the apply timeout instead of hanging the writer; when it answers again, so does the store.
#[tokio::test]
async fn postgres_silence_is_an_error_not_a_hang() {
    let db = TestDb::create().await;
    let (_, authority_and_db) = db.url().split_once('@').expect("a URL with a user");
    let (target, _) = authority_and_db.split_once('/').unwrap();
    let (proxy, frozen) = freezable_proxy(target.to_string()).await;
    let url = db.url().replacen(target, &proxy, 1);
    let s: Arc<dyn Store> = Arc::new(
        PgStore::connect(&url, 2)
            .await
            .unwrap()
            .with_apply_timeout(Duration::from_secs(2)),
    );
    let before = task(None);
    apply(&s, &[insert(&before)]).await;

    frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = s
        .apply(&[insert(&task(None))], None)
        .await
        .expect_err("no answer");
    assert!(err.to_string().contains("did not finish the batch"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    frozen.store(false, Ordering::SeqCst);
    let after = task(None);
    apply_with_retries(&s, &[insert(&after)], 5).await;
    for id in [before.id, after.id] {
        assert_eq!(get(&s, id).await.state, TaskState::Queued);
    }
}

/// `store::open` picks the backend from the URL and says what it cannot open.
#[tokio::test]
async fn open_chooses_the_backend_by_url() {
    let err = store::open("mysql://localhost/db", false)
        .await
        .err()
        .expect("mysql refused");
    assert!(
        err.to_string().contains("unsupported store URL scheme \"mysql\""),
        "{err}"
    );
    let err = store::open("postgres://root@127.0.0.1:1/nothing", false)
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(err.to_string().contains("cannot connect to PostgreSQL"), "{err}");
    let db = TestDb::create().await;
    let pg = store::open(db.url(), false).await.unwrap();
    pg.ping().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = store::open(&format!("sqlite:{}", dir.path().join("s.db").display()), true)
        .await
        .unwrap();
    sqlite.ping().await.unwrap();
}

/// A PostgreSQL database set to lose its last commits (`synchronous_commit = off`) is named
/// as a durability problem, and a node on it says so in its log at start; with the setting
/// back, the problem is gone.
#[tokio::test]
async fn postgres_settings_that_lose_acknowledged_tasks_are_reported() {
    use sqlx::Connection as _;
    let db = TestDb::create().await;
    let mut admin = cadre_store::testing::pg::admin().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" SET synchronous_commit = off",
        db.name()
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let store = PgStore::connect(db.url(), 2).await.unwrap();
    let problems = store.durability_problems().await.unwrap();
    assert!(
        problems.iter().any(|p| p.starts_with("synchronous_commit = off")),
        "{problems:?}"
    );
    store.close().await;

    let node = TestNode::start(&format!("[store]\nurl = {:?}\n", db.url())).await;
    let log = eventually("the warning in the log", Duration::from_secs(10), || {
        let log = read_log(&node.dir);
        async move { log.contains("synchronous_commit = off").then_some(log) }
    })
    .await;
    assert!(log.contains("may lose acknowledged tasks"), "{log}");
    drop(node);

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" RESET synchronous_commit",
        db.name()
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    let store = PgStore::connect(db.url(), 2).await.unwrap();
    let problems = store.durability_problems().await.unwrap();
    assert!(
        !problems.iter().any(|p| p.contains("synchronous_commit")),
        "{problems:?}"
    );
    store.close().await;
}
