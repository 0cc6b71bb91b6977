//! Late transitions ([`crate::late`]) on both databases: stored after their task finished (as
//! happens when two tier-0 replicas store one task's events in either order), they are recorded
//! in the task's history in their place (by seq and by cursor), the task row keeps its terminal
//! state, there is one terminal event, the last, and the seqs have no gaps.

use cadre_proto::{TaskId, TaskState};
use cadre_supervisors::Transition;

use crate::testing::pg::TestDb;
use crate::testing::record;
use crate::{EventFilter, Store, WriteOp, WriteOutcome};

use TaskState::{Queued, Retrying, Running, Succeeded};

fn tr(id: TaskId, state: TaskState, attempt: u32) -> WriteOp {
    WriteOp::Transition(Transition::new(id, state, attempt, state.as_str()))
}

/// The task's events by seq, as (seq, state, attempt), and their cursors in seq order.
async fn history(s: &dyn Store, id: TaskId) -> (Vec<(u64, TaskState, u32)>, Vec<u64>) {
    let filter = EventFilter {
        task_id: Some(id),
        ..Default::default()
    };
    let mut events = s.events_after(0, &filter, 100).await.unwrap();
    events.sort_by_key(|e| e.seq);
    let cursors: Vec<u64> = events.iter().map(|e| e.cursor).collect();
    // What holds for every history: seqs 1..n, cursors in seq order, one terminal event, last.
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>()
    );
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let ends: Vec<usize> = (0..events.len())
        .filter(|i| events[*i].state.is_terminal())
        .collect();
    assert!(ends.is_empty() || ends == [events.len() - 1], "{ends:?}");
    (
        events.into_iter().map(|e| (e.seq, e.state, e.attempt)).collect(),
        cursors,
    )
}

/// Inserts a new task; returns its id.
async fn new_task(s: &dyn Store) -> TaskId {
    let r = record(None);
    s.apply(&[WriteOp::Insert(Box::new(r.clone()))], None)
        .await
        .unwrap();
    r.id
}

async fn a_late_running_is_recorded_before_the_terminal_event(s: &dyn Store) {
    let a = new_task(s).await;
    let mut done = Transition::new(a, Succeeded, 1, "");
    done.result = Some(serde_json::json!({"ok": true}));
    s.apply(&[WriteOp::Transition(done)], None).await.unwrap();
    let out = s.apply(&[tr(a, Running, 1)], None).await.unwrap();
    let WriteOutcome::Event { event, .. } = &out[0] else {
        panic!("a late RUNNING is recorded, got {:?}", out[0]);
    };
    assert_eq!((event.seq, event.state, event.attempt), (2, Running, 1));
    let (events, cursors) = history(s, a).await;
    assert_eq!(
        events,
        [(1, Queued, 0), (2, Running, 1), (3, Succeeded, 1)],
        "complete and in the order it happened"
    );
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "cursor order is history order: {cursors:?}"
    );
    assert_eq!(
        event.cursor, cursors[1],
        "the late event took the terminal event's slot"
    );
    let task = s.get(a).await.unwrap().unwrap();
    assert_eq!((task.state, task.attempt, task.seq), (Succeeded, 1, 3));
    assert_eq!(
        task.result,
        Some(serde_json::json!({"ok": true})),
        "the row keeps its end"
    );
    // The same message again, a re-run after the end, a second terminal, progress: nothing
    // changes.
    let again = s
        .apply(
            &[
                tr(a, Running, 1),
                tr(a, Running, 2),
                tr(a, Queued, 1),
                tr(a, TaskState::Failed, 1),
                WriteOp::Progress {
                    task_id: a,
                    attempt: 1,
                    fraction: 0.5,
                    message: "late".into(),
                },
            ],
            None,
        )
        .await
        .unwrap();
    assert!(again.iter().all(|o| *o == WriteOutcome::Ignored), "{again:?}");
    assert_eq!(history(s, a).await.0.len(), 3);
    assert_eq!(s.get(a).await.unwrap().unwrap().state, Succeeded);
}

async fn late_retries_in_any_order_are_placed_by_attempt(s: &dyn Store) {
    let b = new_task(s).await;
    s.apply(&[tr(b, Running, 2), tr(b, Succeeded, 2)], None)
        .await
        .unwrap();
    // The first attempt's events arrive last, in reverse, in one batch.
    let out = s
        .apply(&[tr(b, Retrying, 1), tr(b, Running, 1)], None)
        .await
        .unwrap();
    assert!(
        out.iter().all(|o| matches!(o, WriteOutcome::Event { .. })),
        "{out:?}"
    );
    let (events, _) = history(s, b).await;
    assert_eq!(
        events,
        [
            (1, Queued, 0),
            (2, Running, 1),
            (3, Retrying, 1),
            (4, Running, 2),
            (5, Succeeded, 2)
        ]
    );
    assert_eq!(s.get(b).await.unwrap().unwrap().seq, 5);
}

async fn a_late_transition_in_the_batch_that_finished_its_task(s: &dyn Store) {
    let c = new_task(s).await;
    let out = s
        .apply(&[tr(c, Succeeded, 1), tr(c, Running, 1)], None)
        .await
        .unwrap();
    let seqs: Vec<u64> = out
        .iter()
        .map(|o| match o {
            WriteOutcome::Event { event, .. } => event.seq,
            other => panic!("expected an event, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, [2, 2], "as planned; the terminal then moved to 3");
    assert_eq!(
        history(s, c).await.0,
        [(1, Queued, 0), (2, Running, 1), (3, Succeeded, 1)]
    );
    let task = s.get(c).await.unwrap().unwrap();
    assert_eq!((task.state, task.seq), (Succeeded, 3));
    // A new task in the same batch as a transition before its insert: still ignored; unknown
    // tasks too.
    let d = record(None);
    let out = s
        .apply(
            &[
                tr(d.id, Running, 1),
                WriteOp::Insert(Box::new(d.clone())),
                tr(TaskId::new(), Running, 1),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (&out[0], &out[2]),
        (&WriteOutcome::Ignored, &WriteOutcome::Ignored)
    );
    assert_eq!(history(s, d.id).await.0, [(1, Queued, 0)]);
}

async fn an_unfinished_task_keeps_its_newest_state_and_gets_the_late_event_in_place(s: &dyn Store) {
    let e = new_task(s).await;
    s.apply(&[tr(e, Retrying, 1)], None).await.unwrap();
    let out = s.apply(&[tr(e, Running, 1)], None).await.unwrap();
    assert!(
        matches!(&out[0], WriteOutcome::Event { event, .. } if event.seq == 2),
        "{out:?}"
    );
    let task = s.get(e).await.unwrap().unwrap();
    assert_eq!(
        (task.state, task.attempt, task.seq),
        (Retrying, 1, 3),
        "the newer state stays"
    );
    assert_eq!(
        history(s, e).await.0,
        [(1, Queued, 0), (2, Running, 1), (3, Retrying, 1)]
    );
    // The next attempt runs; the first attempt's RETRYING delivered again is a repeat, and a
    // progress report of the running attempt still applies.
    let out = s
        .apply(
            &[
                tr(e, Running, 2),
                tr(e, Retrying, 1),
                WriteOp::Progress {
                    task_id: e,
                    attempt: 2,
                    fraction: 0.5,
                    message: "half".into(),
                },
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out[1], WriteOutcome::Ignored);
    assert!(matches!(&out[2], WriteOutcome::Event { .. }), "{out:?}");
    let task = s.get(e).await.unwrap().unwrap();
    assert_eq!((task.state, task.attempt, task.seq), (Running, 2, 5));
    // A QUEUED is applied as it comes (it gives an attempt back).
    s.apply(&[tr(e, Queued, 1)], None).await.unwrap();
    let task = s.get(e).await.unwrap().unwrap();
    assert_eq!((task.state, task.attempt), (Queued, 1));
}

async fn a_late_give_back_follows_the_start_it_gave_back(s: &dyn Store) {
    let f = new_task(s).await;
    s.apply(&[tr(f, Running, 1), tr(f, Succeeded, 1)], None)
        .await
        .unwrap();
    // A rate-limited first attempt was given back (QUEUED 0) before it ran again and succeeded.
    let requeue = Transition::new(f, Queued, 0, "rate-limited; attempt not counted");
    let out = s.apply(&[WriteOp::Transition(requeue)], None).await.unwrap();
    assert!(matches!(&out[0], WriteOutcome::Event { .. }), "{out:?}");
    assert_eq!(
        history(s, f).await.0,
        [(1, Queued, 0), (2, Running, 1), (3, Queued, 0), (4, Succeeded, 1)]
    );
    assert_eq!(s.get(f).await.unwrap().unwrap().state, Succeeded);
}

async fn all(s: &dyn Store) {
    a_late_give_back_follows_the_start_it_gave_back(s).await;
    an_unfinished_task_keeps_its_newest_state_and_gets_the_late_event_in_place(s).await;
    a_late_running_is_recorded_before_the_terminal_event(s).await;
    late_retries_in_any_order_are_placed_by_attempt(s).await;
    a_late_transition_in_the_batch_that_finished_its_task(s).await;
}

#[tokio::test]
async fn sqlite_records_late_transitions_in_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    all(&s).await;
}

#[tokio::test]
async fn postgres_records_late_transitions_in_their_place() {
    let db = TestDb::create().await;
    let s = crate::postgres::PgStore::connect(db.url(), 4).await.unwrap();
    all(&s).await;
}
