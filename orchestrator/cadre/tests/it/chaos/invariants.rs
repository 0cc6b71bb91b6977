//! The invariants every chaos scenario ends with, checked through the store (SQLite file or
//! PostgreSQL database) and the CLI (`cadre audit verify`):
//! - every accepted task, and every stored task, reaches a terminal state;
//! - no idempotency key maps to two tasks, and each key the client saw accepted maps to the id
//!   it was answered; no stored task of the load is unknown to the client (accepted or in doubt);
//! - exactly one terminal event per task;
//! - per-task event sequences start at 1 and have no gap and no duplicate;
//! - every stored task has its `task.submit` audit record;
//! - `cadre audit verify` passes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::common::cadre_audit;
use crate::common::load::LoadOutcome;

/// States a task ends in.
const TERMINAL: &str = "('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')";

/// Where a scenario's tasks are stored.
pub enum Store {
    /// The SQLite file of a node's data dir.
    Sqlite(PathBuf),
    /// A PostgreSQL database (its URL).
    Postgres(String),
}

impl Store {
    /// Every row of `sql`, whose two columns are text.
    async fn pairs(&self, sql: &str) -> Vec<(String, String)> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Store::Sqlite(path) => {
                let url = format!("sqlite:{}?mode=ro", path.display());
                let mut c = SqliteConnection::connect(&url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&mut c).await.unwrap();
                let _ = c.close().await;
                rows
            }
            Store::Postgres(url) => {
                let mut c = PgConnection::connect(url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&mut c).await.unwrap();
                let _ = c.close().await;
                rows
            }
        }
    }

    /// How many stored tasks are not finished.
    async fn unfinished(&self) -> usize {
        let sql = format!("SELECT 'n', CAST(COUNT(*) AS TEXT) FROM tasks WHERE state NOT IN {TERMINAL}");
        self.pairs(&sql).await[0].1.parse().unwrap()
    }
}

/// What one check saw, for the figures a scenario prints.
#[derive(Debug)]
pub struct Checked {
    /// Tasks in the store.
    pub stored: usize,
    /// Stored tasks by final state.
    pub states: BTreeMap<String, usize>,
    /// Events in the store.
    pub events: usize,
}

/// Waits until no stored task is unfinished (within `patience`), then checks every invariant
/// against `store` and the load's `outcome`; `data_dir` (and `store_url` for PostgreSQL) is
/// what `cadre audit verify` is pointed at. Panics naming the first invariant broken.
pub async fn check(store: &Store, data_dir: &Path, outcome: &LoadOutcome, patience: Duration) -> Checked {
    settle(store, outcome, patience).await;
    let tasks: HashMap<String, String> = store
        .pairs("SELECT id, state FROM tasks")
        .await
        .into_iter()
        .collect();
    for a in &outcome.accepted {
        assert!(
            tasks.contains_key(&a.id),
            "accepted task {} ({}) is not stored",
            a.id,
            a.key
        );
    }
    check_keys(store, outcome).await;
    check_terminal_events(store).await;
    let events = check_sequences(store).await;
    let unaudited = store
        .pairs(
            "SELECT t.id, t.state FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM audit a \
             WHERE a.action = 'task.submit' AND a.outcome = 'ok' AND a.target = t.id)",
        )
        .await;
    assert!(
        unaudited.is_empty(),
        "tasks without their task.submit audit record: {unaudited:?}"
    );
    audit_verify(store, data_dir);
    let mut states = BTreeMap::new();
    for s in tasks.values() {
        *states.entry(s.clone()).or_default() += 1;
    }
    Checked {
        stored: tasks.len(),
        states,
        events,
    }
}

/// Waits until no stored task is unfinished; panics with some of them after `patience`.
async fn settle(store: &Store, outcome: &LoadOutcome, patience: Duration) {
    let scale: f64 = std::env::var("CADRE_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let deadline = std::time::Instant::now() + patience.mul_f64(scale);
    while store.unfinished().await > 0 {
        if std::time::Instant::now() > deadline {
            let sql =
                format!("SELECT id, state FROM tasks WHERE state NOT IN {TERMINAL} ORDER BY id LIMIT 5");
            let some = store.pairs(&sql).await;
            // Which of them the node answered for a retried submit (the key already existed).
            let retried: Vec<bool> = some
                .iter()
                .map(|(id, _)| outcome.accepted.iter().any(|a| &a.id == id && !a.created))
                .collect();
            panic!(
                "{} accepted tasks never finished, e.g. {some:?} (found by a retried key: {retried:?})",
                store.unfinished().await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One task per key in the store; each accepted key maps to the id the client got; every stored
/// task of the load was accepted or is in doubt.
async fn check_keys(store: &Store, outcome: &LoadOutcome) {
    let twice = store
        .pairs(
            "SELECT tenant || '/' || idempotency_key, CAST(COUNT(*) AS TEXT) FROM tasks \
             WHERE idempotency_key IS NOT NULL GROUP BY tenant, idempotency_key HAVING COUNT(*) > 1",
        )
        .await;
    assert!(twice.is_empty(), "idempotency keys with two tasks: {twice:?}");
    let by_key: HashMap<String, String> = store
        .pairs("SELECT idempotency_key, id FROM tasks WHERE idempotency_key IS NOT NULL")
        .await
        .into_iter()
        .collect();
    let mut seen = HashMap::new();
    for a in &outcome.accepted {
        if let Some(other) = seen.insert(a.key.clone(), a.id.clone()) {
            assert_eq!(other, a.id, "key {} was answered with two ids", a.key);
        }
        assert_eq!(
            by_key.get(&a.key),
            Some(&a.id),
            "key {} maps to another task",
            a.key
        );
    }
    let known: HashSet<&String> = outcome
        .accepted
        .iter()
        .map(|a| &a.key)
        .chain(&outcome.in_doubt)
        .collect();
    let unknown: Vec<_> = by_key.keys().filter(|k| !known.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "stored tasks no client submitted: {unknown:?}"
    );
}

/// Exactly one terminal event per stored task.
async fn check_terminal_events(store: &Store) {
    let sql = format!(
        "SELECT t.id, CAST((SELECT COUNT(*) FROM events e WHERE e.task_id = t.id AND e.state IN {TERMINAL}) \
         AS TEXT) FROM tasks t"
    );
    let wrong: Vec<_> = store
        .pairs(&sql)
        .await
        .into_iter()
        .filter(|(_, n)| n != "1")
        .collect();
    assert!(
        wrong.is_empty(),
        "{} tasks without exactly one terminal event, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Per task, event seqs are 1..=n, each once; returns how many events there are.
async fn check_sequences(store: &Store) -> usize {
    let rows = store
        .pairs(
            "SELECT task_id, CAST(COUNT(*) AS TEXT) || ' ' || CAST(COUNT(DISTINCT seq) AS TEXT) || ' ' \
             || CAST(MIN(seq) AS TEXT) || ' ' || CAST(MAX(seq) AS TEXT) FROM events GROUP BY task_id",
        )
        .await;
    let mut events = 0;
    for (task, figures) in &rows {
        let f: Vec<usize> = figures.split(' ').map(|n| n.parse().unwrap()).collect();
        let (count, distinct, min, max) = (f[0], f[1], f[2], f[3]);
        assert!(
            count == distinct && min == 1 && max == count,
            "task {task}: event seqs are not 1..=n without gaps ({count} events, {distinct} distinct, \
             {min}..={max})"
        );
        events += count;
    }
    events
}

/// `cadre audit verify` on the chain, from the data dir (and the store URL for PostgreSQL).
fn audit_verify(store: &Store, data_dir: &Path) {
    let out = match store {
        Store::Sqlite(_) => cadre_audit(data_dir, &["verify"]),
        Store::Postgres(url) => cadre_audit(data_dir, &["verify", "--store-url", url]),
    };
    assert!(out.status.success(), "cadre audit verify: {out:?}");
}
