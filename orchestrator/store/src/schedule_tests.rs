//! [`crate::schedules::ScheduleStore`] on both databases: a tick is claimed by exactly one
//! caller, a fire in flight is reclaimed once after its deadline, fires are recorded, pause,
//! resume, paging by tenant and delete.

use std::sync::Arc;

use crate::Store;
use crate::schedules::{FireRecord, StoredSchedule};
use crate::testing::pg::TestDb;

fn schedule(id: &str, tenant: &str, next: i64) -> StoredSchedule {
    StoredSchedule {
        id: id.into(),
        tenant: tenant.into(),
        every_ms: 1000,
        spec: vec![1, 2, 3],
        missed: "skip".into(),
        overlap: "allow".into(),
        next_fire_at: next,
        created_by: "alice".into(),
        creator_role: "operator".into(),
        ..Default::default()
    }
}

async fn claims_each_tick_once(s: &dyn Store) {
    s.insert_schedule(&schedule("s1", "a", 1000)).await.unwrap();
    s.insert_schedule(&schedule("s2", "b", 5000)).await.unwrap();
    assert_eq!(s.schedule("s1").await.unwrap().unwrap().spec, vec![1, 2, 3]);
    assert_eq!(s.next_schedule_due().await.unwrap(), Some(1000));
    let due = s.due_schedules(1500, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["s1"]);
    // Two replicas race for tick 1000: one wins.
    assert!(s.claim_tick("s1", 1000, 2000, Some(1000), 31_000).await.unwrap());
    assert!(!s.claim_tick("s1", 1000, 2000, Some(1000), 31_000).await.unwrap());
    let row = s.schedule("s1").await.unwrap().unwrap();
    assert_eq!((row.next_fire_at, row.inflight_tick), (2000, 1000));
    // A fire past its deadline is reclaimed once.
    assert!(s.due_schedules(1500, 10).await.unwrap().is_empty());
    assert_eq!(s.due_schedules(31_000, 10).await.unwrap().len(), 2);
    assert!(s.reclaim_fire("s1", 1000, 31_000, 61_000).await.unwrap());
    assert!(!s.reclaim_fire("s1", 1000, 31_000, 61_000).await.unwrap());
    let fired = FireRecord::Fired {
        tick_ms: 1000,
        task_id: "t1".into(),
    };
    s.record_fire("s1", Some(1000), &fired).await.unwrap();
    s.record_fire("s1", Some(2000), &FireRecord::Skipped)
        .await
        .unwrap();
    s.record_fire("s1", None, &FireRecord::Refused("quota".into()))
        .await
        .unwrap();
    let row = s.schedule("s1").await.unwrap().unwrap();
    assert_eq!(row.inflight_tick, 0);
    assert_eq!((row.fires, row.skipped, row.last_fire_at_ms), (1, 1, 1000));
    assert_eq!(
        (row.last_task_id.as_str(), row.last_error.as_str()),
        ("t1", "quota")
    );
    // Paused: not due and not claimable; resumed with a new tick.
    assert!(s.set_schedule_paused("s1", true, 0).await.unwrap());
    assert!(!s.claim_tick("s1", 2000, 3000, Some(2000), 0).await.unwrap());
    assert!(
        s.due_schedules(100_000, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != "s1")
    );
    assert!(s.set_schedule_paused("s1", false, 9000).await.unwrap());
    assert_eq!(s.schedule("s1").await.unwrap().unwrap().next_fire_at, 9000);
    // Listing by tenant and pages; counting; delete.
    assert_eq!(s.count_schedules("a").await.unwrap(), 1);
    assert_eq!(s.schedules(Some("b"), "", 10).await.unwrap().len(), 1);
    assert_eq!(s.schedules(None, "", 1).await.unwrap()[0].id, "s1");
    assert_eq!(s.schedules(None, "s1", 10).await.unwrap()[0].id, "s2");
    assert!(s.delete_schedule("s1").await.unwrap());
    assert!(!s.delete_schedule("s1").await.unwrap());
    assert!(s.schedule("s1").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_claims_each_tick_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite::SqliteStore::open(&dir.path().join("s.db"), false)
        .await
        .unwrap();
    let s: Arc<dyn Store> = Arc::new(store);
    claims_each_tick_once(&*s).await;
}

#[tokio::test]
async fn postgres_claims_each_tick_once() {
    let db = TestDb::create().await;
    let s: Arc<dyn Store> = Arc::new(crate::postgres::PgStore::connect(db.url(), 4).await.unwrap());
    claims_each_tick_once(&*s).await;
}
