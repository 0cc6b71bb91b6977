//! [`crate::debounce`] on both databases: replacement in one batch and across batches, the
//! release that makes a task unreplaceable, stale holds, and tenants kept apart.

use std::sync::Arc;

use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_supervisors::Transition;

use crate::chain::AuditDraft;
use crate::debounce::{REPLACED_BY, Release};
use crate::testing::pg::TestDb;
use crate::testing::record;
use crate::{Store, WriteOp, WriteOutcome};

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

/// A task of `tenant` debounced on `key`.
fn debounced(tenant: &str, key: &str) -> TaskRecord {
    let mut r = record(None);
    r.tenant = tenant.into();
    r.spec.debounce = Some(cadre_proto::Debounce {
        key: key.into(),
        window: std::time::Duration::from_secs(60),
    });
    r
}

/// The ops intake writes for a debounced task: insert and its act, supersede and its act.
fn submit_ops(r: &TaskRecord) -> Vec<WriteOp> {
    let key = r.spec.debounce.as_ref().unwrap().key.clone();
    vec![
        WriteOp::Insert(Box::new(r.clone())),
        WriteOp::AuditOfInsert {
            task_id: r.id,
            draft: Box::new(AuditDraft::new("task.submit", &r.id.to_string(), "ok", "")),
        },
        WriteOp::Supersede {
            task_id: r.id,
            tenant: r.tenant.clone(),
            key,
            until_ms: r.created_at_ms + 60_000,
        },
        WriteOp::AuditOfSupersede {
            task_id: r.id,
            draft: Box::new(AuditDraft::new("task.cancel", "", "ok", "replaced")),
        },
    ]
}

fn cancelled_by(outcome: &WriteOutcome, old: TaskId, new: TaskId) {
    match outcome {
        WriteOutcome::Event { event, .. } => {
            assert_eq!(
                (event.task_id, event.state),
                (old, TaskState::Cancelled),
                "{event:?}"
            );
            assert_eq!(event.message, format!("{REPLACED_BY}{new}"));
        }
        other => panic!("expected the CANCELLED event of {old}, got {other:?}"),
    }
}

async fn held(s: &dyn Store) -> Vec<TaskId> {
    s.held_debounces(100)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

async fn replacement_and_release(s: &dyn Store) {
    let (a, b, c) = (debounced("t", "k"), debounced("t", "k"), debounced("t", "k"));
    let out = s.apply(&submit_ops(&a), None).await.unwrap();
    assert_eq!(out[2], WriteOutcome::Ignored, "nothing held the key");
    assert_eq!(held(s).await, [a.id]);

    // B and C in one batch: B replaces A, C replaces B.
    let ops: Vec<WriteOp> = submit_ops(&b).into_iter().chain(submit_ops(&c)).collect();
    let out = s.apply(&ops, None).await.unwrap();
    cancelled_by(&out[2], a.id, b.id);
    cancelled_by(&out[6], b.id, c.id);
    assert_eq!(held(s).await, [c.id]);
    for (id, by) in [(a.id, b.id), (b.id, c.id)] {
        let t = s.get(id).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Cancelled);
        assert_eq!(t.error, Some(format!("{REPLACED_BY}{by}")));
    }

    // Released, C is no longer replaceable: D starts a hold of its own.
    assert_eq!(s.release_debounce(c.id).await.unwrap(), Release::Released);
    assert_eq!(s.release_debounce(c.id).await.unwrap(), Release::Free);
    assert_eq!(s.release_debounce(a.id).await.unwrap(), Release::Gone);
    let d = debounced("t", "k");
    let out = s.apply(&submit_ops(&d), None).await.unwrap();
    assert_eq!(out[2], WriteOutcome::Ignored);
    assert_eq!(s.get(c.id).await.unwrap().unwrap().state, TaskState::Queued);
    assert_eq!(held(s).await, [d.id]);

    // Another tenant's key of the same name is another key.
    let other = debounced("u", "k");
    let out = s.apply(&submit_ops(&other), None).await.unwrap();
    assert_eq!(out[2], WriteOutcome::Ignored);
    assert_eq!(held(s).await.len(), 2);

    // A holder cancelled otherwise leaves a stale hold: the next submit clears it and cancels
    // nothing more.
    let t = Transition::new(d.id, TaskState::Cancelled, 0, "by request");
    s.apply(&[WriteOp::Transition(t)], None).await.unwrap();
    let e = debounced("t", "k");
    let out = s.apply(&submit_ops(&e), None).await.unwrap();
    assert_eq!(out[2], WriteOutcome::Ignored);
    assert_eq!(
        s.get(d.id).await.unwrap().unwrap().error.as_deref(),
        Some("by request")
    );
    assert!(held(s).await.contains(&e.id));
}

async fn a_lost_idempotency_race_replaces_nothing(s: &dyn Store) {
    let mut a = debounced("t", "k");
    a.spec.idempotency_key = Some("once".into());
    s.apply(&submit_ops(&a), None).await.unwrap();
    let mut again = debounced("t", "k");
    again.spec.idempotency_key = Some("once".into());
    let out = s.apply(&submit_ops(&again), None).await.unwrap();
    assert_eq!(out[0], WriteOutcome::Existing(a.id));
    assert_eq!(out[2], WriteOutcome::Ignored);
    assert_eq!(s.get(a.id).await.unwrap().unwrap().state, TaskState::Queued);
    assert_eq!(held(s).await, [a.id]);
}

#[tokio::test]
async fn replacement_and_release_sqlite() {
    let (s, _dir) = sqlite().await;
    replacement_and_release(s.as_ref()).await;
    let (s, _dir) = sqlite().await;
    a_lost_idempotency_race_replaces_nothing(s.as_ref()).await;
}

#[tokio::test]
async fn replacement_and_release_postgres() {
    let db = TestDb::create().await;
    replacement_and_release(postgres(&db).await.as_ref()).await;
    let db = TestDb::create().await;
    a_lost_idempotency_race_replaces_nothing(postgres(&db).await.as_ref()).await;
}
