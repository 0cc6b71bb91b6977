//! [`crate::llm_calls`] on both databases: a usage report leaves one call record with its
//! task's tenant, in the same transaction as the usage; records are listed newest first with
//! every filter and a cursor; a cache hit leaves a record and no usage row; retention deletes
//! a task's records with it.

use std::sync::Arc;

use cadre_agents::Usage;
use cadre_agents::executor::Fallback;
use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_supervisors::Transition;

use crate::testing::pg::TestDb;
use crate::testing::record;
use crate::{LlmCallFilter, Store, UsageFilter, WriteOp, WriteOutcome};

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    (Arc::new(store), dir)
}

async fn postgres(db: &TestDb) -> Arc<dyn Store> {
    Arc::new(crate::postgres::PgStore::connect(db.url(), 4).await.unwrap())
}

/// A call of `model` (asked for `asked`) on `provider`, started at `at`.
fn call(model: &str, asked: &str, provider: &str, at: i64) -> Usage {
    Usage {
        model: model.into(),
        tokens_in: 10,
        tokens_out: 4,
        provider: provider.into(),
        model_requested: asked.into(),
        fallbacks: if model == asked {
            Vec::new()
        } else {
            vec![Fallback {
                provider: "down".into(),
                model: asked.into(),
                error: "503 Service Unavailable".into(),
            }]
        },
        started_at_ms: at,
        first_token_ms: Some(12),
        total_ms: 40,
        finish_reason: "stop".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        attempt: 1,
        prompt: Some("user: hi\n".into()),
        reply: Some("hello".into()),
        ..Usage::default()
    }
}

/// A task of `tenant`, RUNNING.
async fn running(store: &Arc<dyn Store>, tenant: &str) -> TaskRecord {
    let mut r = record(None);
    r.tenant = tenant.into();
    let ops = [
        WriteOp::Insert(Box::new(r.clone())),
        WriteOp::Transition(Transition::new(r.id, TaskState::Running, 1, "")),
    ];
    store.apply(&ops, None).await.unwrap();
    r
}

async fn report(store: &Arc<dyn Store>, id: TaskId, usage: Usage) -> WriteOutcome {
    let op = WriteOp::Usage {
        task_id: id,
        at_ms: usage.started_at_ms + 50,
        usage,
        cost_usd: 0.5,
    };
    store.apply(&[op], None).await.unwrap().remove(0)
}

async fn list(store: &Arc<dyn Store>, f: LlmCallFilter) -> Vec<(String, i64)> {
    let f = LlmCallFilter {
        limit: if f.limit == 0 { 100 } else { f.limit },
        ..f
    };
    let page = store.llm_calls(&f).await.unwrap();
    assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    page.into_iter()
        .map(|c| (c.model_used, c.started_at_ms))
        .collect()
}

async fn stored_listed_filtered_and_paged(store: Arc<dyn Store>) {
    let a = running(&store, "acme").await;
    let b = running(&store, "beta").await;
    let out = report(&store, a.id, call("mini", "big", "openai", 1_000)).await;
    assert!(
        matches!(out, WriteOutcome::Usage { ref tenant, .. } if tenant == "acme"),
        "{out:?}"
    );
    report(&store, a.id, call("big", "big", "anthropic", 2_000)).await;
    report(&store, b.id, call("mini", "mini", "openai", 3_000)).await;
    // Unknown task: no usage, no record.
    assert_eq!(
        report(&store, TaskId::new(), call("x", "x", "p", 4_000)).await,
        WriteOutcome::Ignored
    );

    let all = store
        .llm_calls(&LlmCallFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let first = all.iter().find(|c| c.started_at_ms == 1_000).unwrap();
    assert_eq!(
        (first.task_id.as_str(), first.tenant.as_str(), first.attempt),
        (a.id.to_string().as_str(), "acme", 1)
    );
    assert_eq!(
        (
            first.provider.as_str(),
            first.model_requested.as_str(),
            first.model_used.as_str()
        ),
        ("openai", "big", "mini")
    );
    assert_eq!(first.fallbacks.len(), 1);
    assert_eq!(first.fallbacks[0].error, "503 Service Unavailable");
    assert_eq!((first.first_token_ms, first.total_ms), (Some(12), 40));
    assert_eq!((first.tokens_in, first.tokens_out, first.cost_usd), (10, 4, 0.5));
    assert_eq!((first.finish_reason.as_str(), first.cache_hit), ("stop", false));
    assert_eq!(first.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        (first.prompt.as_deref(), first.reply.as_deref()),
        (Some("user: hi\n"), Some("hello"))
    );
    // The usage row went in with it.
    assert_eq!(store.usage(&UsageFilter::task(a.id)).await.unwrap().len(), 2);

    let tenant = |t: &str| LlmCallFilter {
        tenant: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(
        list(&store, tenant("acme")).await,
        [("big".into(), 2_000), ("mini".into(), 1_000)]
    );
    assert_eq!(list(&store, tenant("beta")).await, [("mini".into(), 3_000)]);
    assert_eq!(list(&store, tenant("nobody")).await, []);
    let model = LlmCallFilter {
        model: Some("big".into()),
        ..Default::default()
    };
    assert_eq!(list(&store, model).await.len(), 2, "asked for or answered by");
    let provider = LlmCallFilter {
        provider: Some("openai".into()),
        task_id: Some(a.id),
        ..Default::default()
    };
    assert_eq!(list(&store, provider).await, [("mini".into(), 1_000)]);
    let window = LlmCallFilter {
        since_ms: Some(2_000),
        until_ms: Some(3_000),
        ..Default::default()
    };
    assert_eq!(list(&store, window).await, [("big".into(), 2_000)]);

    // Pages of one, by cursor.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .llm_calls(&LlmCallFilter {
                before_id: before,
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(c) = page.first() else { break };
        before = Some(c.id);
        seen.push(c.started_at_ms);
    }
    assert_eq!(seen, [3_000, 2_000, 1_000]);
}

async fn cache_hits_leave_a_record_but_no_usage(store: Arc<dyn Store>) {
    let a = running(&store, "acme").await;
    let hit = Usage {
        model: "mini".into(),
        model_requested: "mini".into(),
        cache_hit: true,
        started_at_ms: 5,
        ..Usage::default()
    };
    report(&store, a.id, hit).await;
    let calls = store
        .llm_calls(&LlmCallFilter {
            task_id: Some(a.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].cache_hit);
    assert_eq!(
        (calls[0].first_token_ms, calls[0].prompt.as_deref()),
        (None, None)
    );
    assert!(store.usage(&UsageFilter::task(a.id)).await.unwrap().is_empty());
}

async fn deleted_with_their_task(store: Arc<dyn Store>) {
    let a = running(&store, "acme").await;
    let b = running(&store, "acme").await;
    report(&store, a.id, call("mini", "mini", "openai", 1)).await;
    report(&store, b.id, call("mini", "mini", "openai", 2)).await;
    for id in [a.id, b.id] {
        let t = WriteOp::Transition(Transition::new(id, TaskState::Succeeded, 1, ""));
        store.apply(&[t], None).await.unwrap();
    }
    store.delete_tasks(&[a.id]).await.unwrap();
    let left = store
        .llm_calls(&LlmCallFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].task_id, b.id.to_string());
}

#[tokio::test]
async fn sqlite_records_are_stored_listed_filtered_and_paged() {
    let (store, _dir) = sqlite().await;
    stored_listed_filtered_and_paged(store).await;
}

#[tokio::test]
async fn postgres_records_are_stored_listed_filtered_and_paged() {
    let db = TestDb::create().await;
    stored_listed_filtered_and_paged(postgres(&db).await).await;
}

#[tokio::test]
async fn sqlite_cache_hits_leave_a_record_but_no_usage() {
    let (store, _dir) = sqlite().await;
    cache_hits_leave_a_record_but_no_usage(store).await;
}

#[tokio::test]
async fn postgres_cache_hits_leave_a_record_but_no_usage() {
    let db = TestDb::create().await;
    cache_hits_leave_a_record_but_no_usage(postgres(&db).await).await;
}

#[tokio::test]
async fn sqlite_records_are_deleted_with_their_task() {
    let (store, _dir) = sqlite().await;
    deleted_with_their_task(store).await;
}

#[tokio::test]
async fn postgres_records_are_deleted_with_their_task() {
    let db = TestDb::create().await;
    deleted_with_their_task(postgres(&db).await).await;
}
