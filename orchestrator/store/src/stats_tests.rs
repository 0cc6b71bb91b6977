//! [`crate::stats`] on both databases: finished tasks counted per bucket and state, one
//! tenant's or all; latencies exact, sampled and capped; usage per day, tenant and model.

use cadre_proto::clock::utc_day;
use cadre_proto::{TaskId, TaskState};
use cadre_supervisors::Transition;

use crate::raw_fixture_tests::Opened;
use crate::stats::{FinishedCount, FinishedWindow, Latency};
use crate::testing::pg::TestDb;
use crate::testing::record;
use crate::{WriteOp, WriteOutcome};

/// A minute, in milliseconds.
const MIN: i64 = 60_000;
/// The window's start in these tests: a fixed past day, so nothing else falls in it.
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % MIN;

/// The store and a raw connection to its database; its helpers below.
type Fixture = Opened;

impl Fixture {
    /// Runs `sql`, which must change one row.
    async fn exec_one(&self, sql: String) {
        assert_eq!(self.exec(sql).await, 1);
    }

    /// A task of `tenant` that reached `state` (through RUNNING), created at `created` and
    /// last changed at `updated`; a task that ran reports usage on the day of `updated`.
    async fn finished_task(&self, tenant: &str, state: TaskState, created: i64, updated: i64) -> TaskId {
        let mut r = record(None);
        r.tenant = tenant.into();
        let mut ops = vec![WriteOp::Insert(Box::new(r.clone()))];
        if state != TaskState::Queued {
            ops.push(tr(r.id, TaskState::Running));
        }
        if state.is_terminal() {
            ops.push(tr(r.id, state));
        }
        let out = self.store.apply(&ops, None).await.unwrap();
        assert!(out.iter().all(|o| o != &WriteOutcome::Ignored), "{out:?}");
        self.exec_one(format!(
            "UPDATE tasks SET created_at_ms = {created}, updated_at_ms = {updated} WHERE id = '{}'",
            r.id
        ))
        .await;
        r.id
    }

    /// Records usage of `model` for task `id` at `at_ms`.
    async fn usage(&self, id: TaskId, model: &str, tokens: (u64, u64), cost_usd: f64, at_ms: i64) {
        let op = WriteOp::Usage {
            task_id: id,
            usage: cadre_agents::Usage {
                model: model.into(),
                tokens_in: tokens.0,
                tokens_out: tokens.1,
                ..Default::default()
            },
            cost_usd,
            at_ms,
        };
        self.store.apply(&[op], None).await.unwrap();
    }
}

fn tr(id: TaskId, state: TaskState) -> WriteOp {
    WriteOp::Transition(Transition::new(id, state, 1, state.as_str()))
}

fn window(tenant: Option<&str>) -> FinishedWindow {
    FinishedWindow {
        tenant: tenant.map(str::to_string),
        from_ms: T0,
        to_ms: T0 + 60 * MIN,
    }
}

fn count(bucket: i64, state: &str, count: u64) -> FinishedCount {
    FinishedCount {
        bucket,
        state: state.into(),
        count,
    }
}

/// Counts per bucket and state; only finished tasks inside the window, of the tenant asked.
async fn counts(f: &Fixture) {
    f.finished_task("a", TaskState::Succeeded, T0 - 500, T0 + 1_000)
        .await;
    f.finished_task("a", TaskState::Succeeded, T0, T0 + 2_000).await;
    f.finished_task("a", TaskState::Failed, T0, T0 + MIN - 1).await;
    f.finished_task("a", TaskState::Failed, T0, T0 + 5 * MIN + 10)
        .await;
    f.finished_task("a", TaskState::Cancelled, T0, T0 + 5 * MIN + 20)
        .await;
    f.finished_task("a", TaskState::Running, T0, T0 + 3 * MIN).await;
    f.finished_task("a", TaskState::Succeeded, T0 - 2 * MIN, T0 - 1)
        .await;
    f.finished_task("a", TaskState::Succeeded, T0, T0 + 60 * MIN)
        .await;
    f.finished_task("b", TaskState::Succeeded, T0, T0 + 10).await;
    f.finished_task("b", TaskState::TimedOut, T0, T0 + 59 * MIN).await;

    let a = f.store.finished_counts(&window(Some("a")), MIN).await.unwrap();
    assert_eq!(
        a,
        [
            count(0, "FAILED", 1),
            count(0, "SUCCEEDED", 2),
            count(5, "CANCELLED", 1),
            count(5, "FAILED", 1),
        ],
        "tenant a: not before the window, not at its end, not running, not b's"
    );
    let all = f.store.finished_counts(&window(None), 5 * MIN).await.unwrap();
    assert_eq!(
        all,
        [
            count(0, "FAILED", 1),
            count(0, "SUCCEEDED", 3),
            count(1, "CANCELLED", 1),
            count(1, "FAILED", 1),
            count(11, "TIMED_OUT", 1),
        ]
    );
    let none = f
        .store
        .finished_counts(&window(Some("nobody")), MIN)
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Latencies of succeeded and failed tasks: all of them, one in `every`, at most `limit`.
async fn latencies(f: &Fixture) {
    for i in 0..40 {
        let state = if i % 4 == 0 {
            TaskState::Failed
        } else {
            TaskState::Succeeded
        };
        f.finished_task("l", state, T0 + i * 1_000, T0 + i * 1_000 + 100 + i)
            .await;
    }
    f.finished_task("l", TaskState::Cancelled, T0, T0 + 50_000).await;
    f.finished_task("other", TaskState::Succeeded, T0, T0 + 30_000)
        .await;

    let all = f
        .store
        .finished_latencies(&window(Some("l")), 1, 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), 40, "not the cancelled one, not another tenant's");
    assert!(
        all.windows(2).all(|w| w[0].finished_at_ms > w[1].finished_at_ms),
        "newest first"
    );
    assert_eq!(
        all[0],
        Latency {
            finished_at_ms: T0 + 39_000 + 139,
            latency_ms: 139
        }
    );
    assert_eq!(
        f.store
            .finished_latencies(&window(Some("l")), 1, 7)
            .await
            .unwrap(),
        all[..7]
    );

    let sampled = f
        .store
        .finished_latencies(&window(Some("l")), 2, 1000)
        .await
        .unwrap();
    let expected: Vec<Latency> = all
        .iter()
        .filter(|l| (2 * l.finished_at_ms - l.latency_ms) % 2 == 0)
        .copied()
        .collect();
    assert_eq!(sampled, expected, "one in two, by their times");
    assert!(!sampled.is_empty() && sampled.len() < all.len());
}

/// Usage per day, tenant and model over a range of days, one tenant's or all, capped.
async fn daily_usage(f: &Fixture) {
    let day = 86_400_000;
    let t = f.finished_task("u", TaskState::Succeeded, T0, T0 + 1).await;
    let v = f.finished_task("v", TaskState::Succeeded, T0, T0 + 1).await;
    f.usage(t, "m1", (10, 5), 0.25, T0).await;
    f.usage(t, "m1", (1, 1), 0.25, T0 + 1_000).await;
    f.usage(t, "m2", (3, 0), 1.0, T0).await;
    f.usage(t, "m1", (7, 7), 2.0, T0 + day).await;
    f.usage(t, "m1", (100, 100), 9.0, T0 + 40 * day).await;
    f.usage(v, "m1", (2, 2), 0.5, T0).await;

    let (d0, d1) = (utc_day(T0), utc_day(T0 + day));
    let u = f
        .store
        .daily_usage(Some("u"), &d0, &utc_day(T0 + 29 * day), 100)
        .await
        .unwrap();
    let rows: Vec<_> = u
        .iter()
        .map(|r| {
            (
                r.day.as_str(),
                r.tenant.as_str(),
                r.model.as_str(),
                r.tokens_in,
                r.tokens_out,
                r.cost_usd,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (d0.as_str(), "u", "m1", 11, 6, 0.5),
            (d0.as_str(), "u", "m2", 3, 0, 1.0),
            (d1.as_str(), "u", "m1", 7, 7, 2.0),
        ]
    );
    let all = f.store.daily_usage(None, &d0, &d0, 100).await.unwrap();
    let tenants: Vec<_> = all
        .iter()
        .map(|r| (r.tenant.as_str(), r.model.as_str()))
        .collect();
    assert_eq!(tenants, [("u", "m1"), ("u", "m2"), ("v", "m1")]);
    assert_eq!(
        f.store.daily_usage(None, &d0, &d1, 2).await.unwrap().len(),
        2,
        "capped"
    );
}

#[tokio::test]
async fn stats_on_sqlite() {
    counts(&Fixture::sqlite().await).await;
    latencies(&Fixture::sqlite().await).await;
    daily_usage(&Fixture::sqlite().await).await;
}

#[tokio::test]
async fn stats_on_postgres() {
    let db = TestDb::create().await;
    let f = Fixture::postgres(&db).await;
    counts(&f).await;
    latencies(&f).await;
    daily_usage(&f).await;
}
