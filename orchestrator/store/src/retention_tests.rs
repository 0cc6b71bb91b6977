//! [`crate::retention`] on both databases: only finished tasks past their time go, with their
//! events and usage; unfinished tasks, parents of unfinished sub-tasks and the holder of the
//! newest event stay; pages and batches keep their bounds; cursors never go back.

use cadre_proto::{TaskId, TaskRecord, TaskState};
use cadre_supervisors::Transition;

use crate::raw_fixture_tests::Opened;
use crate::retention::{Expired, MAX_BATCH};
use crate::testing::pg::TestDb;
use crate::testing::record;
use crate::{EventFilter, Store, UsageFilter, WriteOp, WriteOutcome};

/// An hour, in milliseconds: how far tasks are aged.
const HOUR: i64 = 3_600_000;

/// The store and a raw connection to its database; its helpers below.
type Fixture = Opened;

impl Fixture {
    /// Moves the finish (last update) of `ids` `ms` into the past.
    async fn age(&self, ids: &[TaskId], ms: i64) {
        let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
        let sql = format!(
            "UPDATE tasks SET updated_at_ms = updated_at_ms - {ms} WHERE id IN ({})",
            list.join(", ")
        );
        let n = self.exec(sql).await;
        assert_eq!(n, ids.len() as u64);
    }

    /// Stores a new task (optionally a sub-task of `parent`) and moves it to `state` through
    /// RUNNING; a task that ran reports usage.
    async fn task(&self, state: TaskState, parent: Option<TaskId>) -> TaskRecord {
        let mut r = record(None);
        r.spec.parent_id = parent;
        let mut ops = vec![WriteOp::Insert(Box::new(r.clone()))];
        if state != TaskState::Queued {
            ops.push(tr(r.id, TaskState::Running));
            ops.push(WriteOp::Usage {
                task_id: r.id,
                usage: cadre_agents::Usage {
                    model: "m".into(),
                    tokens_in: 10,
                    tokens_out: 5,
                    ..Default::default()
                },
                cost_usd: 0.01,
                at_ms: r.created_at_ms,
            });
        }
        if state.is_terminal() {
            ops.push(tr(r.id, state));
        }
        let out = self.store.apply(&ops, None).await.unwrap();
        assert!(out.iter().all(|o| o != &WriteOutcome::Ignored), "{out:?}");
        r
    }

    /// A succeeded task of another test's making, only to move the newest event off the
    /// tasks under test.
    async fn newer_event(&self) -> TaskId {
        self.task(TaskState::Queued, None).await.id
    }

    async fn events_of(&self, id: TaskId) -> usize {
        let f = EventFilter {
            task_id: Some(id),
            ..Default::default()
        };
        self.store.events_after(0, &f, 1000).await.unwrap().len()
    }

    async fn usage_of(&self, id: TaskId) -> usize {
        self.store.usage(&UsageFilter::task(id)).await.unwrap().len()
    }

    async fn expired(&self, state: TaskState, after: Option<Expired>, limit: u32) -> Vec<TaskId> {
        let before = cadre_proto::clock::now_ms() - HOUR;
        let page = self
            .store
            .expired_tasks(state, before, after, limit)
            .await
            .unwrap();
        assert!(
            page.windows(2)
                .all(|w| (w[0].finished_at_ms, w[0].id) < (w[1].finished_at_ms, w[1].id)),
            "oldest first: {page:?}"
        );
        page.iter().map(|e| e.id).collect()
    }
}

fn tr(id: TaskId, state: TaskState) -> WriteOp {
    WriteOp::Transition(Transition::new(id, state, 1, state.as_str()))
}

/// Only finished tasks past their time go, with their events and usage rows; the rest stay.
async fn only_expired_finished_tasks_go(f: &Fixture) {
    let old = f.task(TaskState::Succeeded, None).await;
    let young = f.task(TaskState::Succeeded, None).await;
    let failed = f.task(TaskState::Failed, None).await;
    let running = f.task(TaskState::Running, None).await;
    let queued = f.task(TaskState::Queued, None).await;
    let parent = f.task(TaskState::Succeeded, None).await;
    let child = f.task(TaskState::Running, Some(parent.id)).await;
    f.newer_event().await;
    let aged = [old.id, failed.id, running.id, queued.id, parent.id, child.id];
    f.age(&aged, 2 * HOUR).await;

    assert_eq!(
        f.expired(TaskState::Succeeded, None, 100).await,
        [old.id],
        "not the young one, not a parent of a running task"
    );
    assert_eq!(f.expired(TaskState::Failed, None, 100).await, [failed.id]);
    for live in [TaskState::Running, TaskState::Queued, TaskState::Retrying] {
        assert!(
            f.expired(live, None, 100).await.is_empty(),
            "{live:?} is never expired"
        );
    }
    assert!(f.events_of(old.id).await >= 3 && f.usage_of(old.id).await == 1);

    // Asked to delete anything, the store deletes only what may go.
    let all = [
        old.id,
        young.id,
        running.id,
        queued.id,
        parent.id,
        child.id,
        TaskId::new(),
    ];
    let deleted = f.store.delete_tasks(&all).await.unwrap();
    assert_eq!(
        (deleted.tasks, deleted.events, deleted.usage),
        (2, 6, 2),
        "old and young: {deleted:?}"
    );
    for gone in [old.id, young.id] {
        assert!(f.store.get(gone).await.unwrap().is_none());
        assert_eq!((f.events_of(gone).await, f.usage_of(gone).await), (0, 0));
    }
    for kept in [running.id, queued.id, parent.id, child.id, failed.id] {
        assert!(f.store.get(kept).await.unwrap().is_some(), "{kept} kept");
        assert!(f.events_of(kept).await >= 1);
    }
    assert_eq!(
        f.store.unfinished(None).await.unwrap().len(),
        4,
        "running, queued, child and the newer one"
    );

    // Again: nothing left to delete (another replica got there first).
    assert_eq!(f.store.delete_tasks(&[old.id]).await.unwrap().tasks, 0);

    // The child finishes: the parent may go now. The unfinished view still works.
    f.store
        .apply(&[tr(child.id, TaskState::Succeeded)], None)
        .await
        .unwrap();
    f.newer_event().await;
    assert_eq!(f.expired(TaskState::Succeeded, None, 100).await, [parent.id]);
    assert_eq!(f.store.delete_tasks(&[parent.id]).await.unwrap().tasks, 1);
    let out = f
        .store
        .apply(&[tr(running.id, TaskState::Succeeded)], None)
        .await
        .unwrap();
    assert!(matches!(out[0], WriteOutcome::Event { .. }), "{out:?}");
}

/// Pages hold at most `limit` and follow each other; a batch above the bound is refused.
async fn pages_and_batches_are_bounded(f: &Fixture) {
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(f.task(TaskState::Cancelled, None).await.id);
    }
    f.newer_event().await;
    // Distinct finish times, oldest first in creation order.
    for (i, id) in ids.iter().enumerate() {
        f.age(&[*id], 2 * HOUR + (7 - i as i64) * 1000).await;
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let before = cadre_proto::clock::now_ms() - HOUR;
        let page = f
            .store
            .expired_tasks(TaskState::Cancelled, before, after, 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(*last),
            _ => break,
        }
    }
    assert_eq!(seen, ids, "every expired task once, oldest first");
    let too_many = vec![TaskId::new(); MAX_BATCH + 1];
    assert!(f.store.delete_tasks(&too_many).await.is_err());
    let before = cadre_proto::clock::now_ms();
    assert!(
        f.store
            .expired_tasks(TaskState::Cancelled, before, None, MAX_BATCH as u32 + 1)
            .await
            .is_err()
    );
    assert_eq!(f.store.delete_tasks(&ids[..3]).await.unwrap().tasks, 3);
    assert_eq!(f.expired(TaskState::Cancelled, None, 100).await, ids[3..]);
}

/// The task holding the newest event stays until a newer event exists, so cursors never go
/// back.
async fn the_newest_event_stays(f: &Fixture) {
    let last = f.task(TaskState::TimedOut, None).await;
    f.age(&[last.id], 2 * HOUR).await;
    let newest = f.store.max_cursor().await.unwrap();
    assert!(f.expired(TaskState::TimedOut, None, 10).await.is_empty());
    assert_eq!(f.store.delete_tasks(&[last.id]).await.unwrap().tasks, 0);
    let next = f.task(TaskState::Queued, None).await;
    let ev = f
        .store
        .events_after(newest, &EventFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        ev.iter().map(|e| (e.task_id, e.cursor)).collect::<Vec<_>>(),
        [(next.id, newest + 1)]
    );
    assert_eq!(f.expired(TaskState::TimedOut, None, 10).await, [last.id]);
    assert_eq!(f.store.delete_tasks(&[last.id]).await.unwrap().tasks, 1);
}

async fn all(f: &Fixture) {
    only_expired_finished_tasks_go(f).await;
    pages_and_batches_are_bounded(f).await;
    the_newest_event_stays(f).await;
}

#[tokio::test]
async fn retention_on_sqlite() {
    let f = Fixture::sqlite().await;
    all(&f).await;
    // A reopened store goes on after the newest cursor, the deleted tasks' included.
    let max = f.store.max_cursor().await.unwrap();
    let Opened { store, dir, .. } = f;
    drop(store);
    let dir = dir.unwrap();
    let store = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    let out = store
        .apply(&[WriteOp::Insert(Box::new(record(None)))], None)
        .await
        .unwrap();
    match &out[0] {
        WriteOutcome::Event { event, .. } => assert_eq!(event.cursor, max + 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retention_on_postgres() {
    let db = TestDb::create().await;
    all(&Fixture::postgres(&db).await).await;
}
