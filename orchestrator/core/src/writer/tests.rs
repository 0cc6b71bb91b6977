//! The writer end to end on a real SQLite store: groups commit whole, in order, within
//! `batch_max`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cadre_proto::{TaskId, TaskState};
use cadre_store::{Store, WriteOp};
use cadre_supervisors::Transition;

use super::*;
use crate::budget::{BudgetConfig, Budgets};
use crate::hub::Hub;
use cadre_store::sqlite::SqliteStore;
use cadre_store::testing::record;

/// A writer on a real SQLite store (`dir/s.db`) that drains one request per batch; the
/// counter counts its commits.
async fn writer_one_per_batch(dir: &std::path::Path) -> (Writer, Arc<dyn Store>, Arc<AtomicUsize>) {
    writer_on(dir, 1).await
}

async fn writer_on(dir: &std::path::Path, batch_max: usize) -> (Writer, Arc<dyn Store>, Arc<AtomicUsize>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("s.db"), false).await.unwrap());
    let commits = Arc::new(AtomicUsize::new(0));
    let counted = commits.clone();
    let feed = HubFeed::Tail {
        wake: Arc::new(tokio::sync::Notify::new()),
        announce: Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }),
    };
    let budgets = Arc::new(Budgets::new(BudgetConfig::default(), "d".into(), HashMap::new()));
    let (writer, _task) = Writer::spawn(
        store.clone(),
        Hub::new(64),
        batch_max,
        64,
        HashMap::new(),
        None,
        budgets,
        feed,
    );
    (writer, store, commits)
}

fn tr(id: TaskId, state: TaskState, attempt: u32) -> (WriteOp, Option<String>) {
    (
        WriteOp::Transition(Transition::new(id, state, attempt, state.as_str())),
        None,
    )
}

#[tokio::test]
async fn writes_sent_together_commit_in_one_transaction_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, store, commits) = writer_one_per_batch(dir.path()).await;
    let task = record(None);
    writer.insert(task.clone()).await.unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 1);
    writer
        .write_together(vec![
            tr(task.id, TaskState::Running, 1),
            (
                WriteOp::Progress {
                    task_id: task.id,
                    attempt: 1,
                    fraction: 0.5,
                    message: "half".into(),
                },
                None,
            ),
            tr(task.id, TaskState::Succeeded, 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        commits.load(Ordering::SeqCst),
        2,
        "three writes, one commit, although the writer drains one request per batch"
    );
    let events = store
        .events_after(
            0,
            &cadre_store::EventFilter {
                task_id: Some(task.id),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    let got: Vec<(TaskState, bool)> = events.iter().map(|e| (e.state, e.is_progress)).collect();
    assert_eq!(
        got,
        [
            (TaskState::Queued, false),
            (TaskState::Running, false),
            (TaskState::Running, true),
            (TaskState::Succeeded, false)
        ]
    );
    writer.write_together(Vec::new()).await.unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 2, "an empty group writes nothing");
}

/// States of a task's stored events, in order.
async fn history(store: &Arc<dyn Store>, id: TaskId) -> Vec<TaskState> {
    let filter = cadre_store::EventFilter {
        task_id: Some(id),
        ..Default::default()
    };
    let events = store.events_after(0, &filter, 10).await.unwrap();
    events.iter().map(|e| e.state).collect()
}

/// A writer as [`writer_on`] with `batch_max` 64, and a task it has stored.
async fn writer_with_a_task(
    dir: &std::path::Path,
) -> (Writer, Arc<dyn Store>, Arc<AtomicUsize>, cadre_proto::TaskRecord) {
    let (writer, store, commits) = writer_on(dir, 64).await;
    let t = record(None);
    writer.insert(t.clone()).await.unwrap();
    (writer, store, commits, t)
}

/// The events table of the store in `dir/s.db`, renamed away under the writer: every commit
/// fails until it is restored.
struct EventsAway(sqlx::SqlitePool);

impl EventsAway {
    async fn take(dir: &std::path::Path) -> Self {
        let side = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("s.db").display()))
            .await
            .unwrap();
        sqlx::query("ALTER TABLE events RENAME TO events_away")
            .execute(&side)
            .await
            .unwrap();
        EventsAway(side)
    }

    async fn restore(&self) {
        sqlx::query("ALTER TABLE events_away RENAME TO events")
            .execute(&self.0)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_group_that_cannot_be_stored_fails_whole_and_is_left_to_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, store, _, t) = writer_with_a_task(dir.path()).await;
    // The events table goes away under the writer: every commit fails until it is back.
    let side = EventsAway::take(dir.path()).await;
    let err = writer
        .write_together(vec![
            tr(t.id, TaskState::Running, 1),
            tr(t.id, TaskState::Succeeded, 1),
        ])
        .await
        .unwrap_err();
    assert!(err.0.contains("events"), "{err}");
    side.restore().await;
    writer.flush().await.unwrap();
    assert_eq!(
        history(&store, t.id).await,
        [TaskState::Queued],
        "nothing of the failed group is stored, nor written again by the writer"
    );
    // The caller writes the group again: all of it lands, in order.
    writer
        .write_together(vec![
            tr(t.id, TaskState::Running, 1),
            tr(t.id, TaskState::Succeeded, 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        history(&store, t.id).await,
        [TaskState::Queued, TaskState::Running, TaskState::Succeeded]
    );
}

#[tokio::test]
async fn a_group_waits_for_the_next_batch_rather_than_pass_batch_max() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, store, commits) = writer_on(dir.path(), 3).await;
    let (t, u) = (record(None), record(None));
    writer.insert(t.clone()).await.unwrap();
    writer.insert(u.clone()).await.unwrap();
    let before = commits.load(Ordering::SeqCst);
    // Two groups of two: 4 writes, more than batch_max 3, so two commits of two.
    let (a, b) = tokio::join!(
        writer.write_together(vec![
            tr(t.id, TaskState::Running, 1),
            tr(t.id, TaskState::Succeeded, 1)
        ]),
        writer.write_together(vec![
            tr(u.id, TaskState::Running, 1),
            tr(u.id, TaskState::Failed, 1)
        ]),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(commits.load(Ordering::SeqCst) - before, 2);
    assert_eq!(
        history(&store, u.id).await,
        [TaskState::Queued, TaskState::Running, TaskState::Failed]
    );
    // A group larger than batch_max is committed whole, alone.
    let v = record(None);
    writer.insert(v.clone()).await.unwrap();
    let before = commits.load(Ordering::SeqCst);
    writer
        .write_together(vec![
            tr(v.id, TaskState::Running, 1),
            tr(v.id, TaskState::Retrying, 1),
            tr(v.id, TaskState::Running, 2),
            tr(v.id, TaskState::Succeeded, 2),
        ])
        .await
        .unwrap();
    assert_eq!(commits.load(Ordering::SeqCst) - before, 1);
    assert_eq!(history(&store, v.id).await.len(), 5);
}

#[tokio::test]
async fn a_transition_nobody_waits_for_is_retried_until_the_store_takes_it() {
    use cadre_supervisors::TaskSink;
    let dir = tempfile::tempdir().unwrap();
    let (writer, store, commits, t) = writer_with_a_task(dir.path()).await;
    let side = EventsAway::take(dir.path()).await;
    let before = commits.load(Ordering::SeqCst);
    writer
        .record(Transition::new(t.id, TaskState::Running, 1, "RUNNING"))
        .await;
    // Two tries at least fail (50 ms apart), then the table is back.
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert_eq!(
        commits.load(Ordering::SeqCst),
        before,
        "nothing committed meanwhile"
    );
    side.restore().await;
    writer.flush().await.unwrap();
    assert_eq!(
        history(&store, t.id).await,
        [TaskState::Queued, TaskState::Running]
    );
    assert_eq!(writer.pending(), 1);
}
