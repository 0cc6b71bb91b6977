//! A full disk, simulated with `PRAGMA max_page_count` (SQLite answers SQLITE_FULL, "database or
//! disk is full", exactly as when the filesystem is full), in several episodes: each failed
//! batch must leave the store able to write as soon as there is room again.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;

use super::SqliteStore;
use crate::testing::record;
use crate::{Store, WriteOp};

/// Pages the database may hold: room for the schema and some tasks, then full.
const MAX_PAGES: &str = "400";

/// New tasks, enough to need new pages whatever room is left in the pages already there.
fn inserts(n: usize) -> Vec<WriteOp> {
    (0..n).map(|_| WriteOp::Insert(Box::new(record(None)))).collect()
}

/// Fills the database with filler rows (autocommit, one page each) until SQLite refuses one.
async fn fill(store: &SqliteStore) {
    for _ in 0..10_000 {
        if sqlx::query("INSERT INTO filler (b) VALUES (zeroblob(3000))")
            .execute(&store.pool)
            .await
            .is_err()
        {
            return;
        }
    }
    panic!("max_page_count never filled the database");
}

#[tokio::test]
async fn every_disk_full_episode_ends_when_room_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("s.db"))
        .pragma("max_page_count", MAX_PAGES);
    let store = SqliteStore::open_with(opts, false).await.unwrap();
    sqlx::query("CREATE TABLE filler (b BLOB)")
        .execute(&store.pool)
        .await
        .unwrap();
    store.apply(&inserts(5), None).await.unwrap();
    for episode in 1..=5 {
        fill(&store).await;
        // Batches of several sizes: the error comes from different statements (or the COMMIT).
        for n in [50, 200, 500] {
            let err = store.apply(&inserts(n), None).await.unwrap_err();
            assert!(
                err.0.contains("full"),
                "episode {episode}, batch of {n}: refused for the full disk, not {err}"
            );
        }
        sqlx::query("DELETE FROM filler")
            .execute(&store.pool)
            .await
            .unwrap();
        // Room again: the next batch commits (a connection left inside a transaction would
        // hold the write lock, and this would fail with "database is locked" after the busy
        // timeout).
        let stored = tokio::time::timeout(Duration::from_secs(60), store.apply(&inserts(20), None))
            .await
            .expect("the store answers");
        assert!(
            stored.is_ok(),
            "episode {episode}: the store writes again once there is room: {stored:?}"
        );
        // And what it wrote is seen by every pooled connection (none reads inside an old
        // transaction of its own).
        let mut counts = Vec::new();
        for _ in 0..8 {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            counts.push(n);
        }
        let expected = 5 + 20 * episode as i64;
        assert!(
            counts.iter().all(|n| *n == expected),
            "episode {episode}: every connection counts {expected} tasks: {counts:?}"
        );
    }
}

/// What a full disk at COMMIT does: SQLite rolls the transaction back itself, so sqlx's
/// ROLLBACK fails and sqlx still counts the connection inside a transaction. The pool must not
/// hand that connection out again (its next `begin` would be a SAVEPOINT that can leave a
/// transaction open for ever: "database is locked").
#[tokio::test]
async fn a_connection_sqlite_rolled_back_by_itself_is_not_reused() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), false).await.unwrap();
    {
        let mut conn = store.pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
    }
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let conn = store.pool.acquire().await.unwrap();
        assert!(
            !conn.is_in_transaction(),
            "a pooled connection is handed out inside a transaction"
        );
    }
    store.apply(&inserts(3), None).await.unwrap();
}
