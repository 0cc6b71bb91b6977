//! PostgreSQL during phase 1's measured window: [`sample_pg`] (the database's counters per
//! second, what its sessions were doing, scans per table and per index) and the diagnostic
//! [`vacuum_tasks`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use crate::driver::Window;

/// PostgreSQL activity over a measured window: counters per second, and what the database's
/// sessions were doing, sampled every 10 ms (`pg_stat_activity` state and wait event, as a
/// share of the samples).
pub(crate) async fn sample_pg(
    admin_url: String,
    db: String,
    store_url: String,
    window: Window,
) -> Option<serde_json::Value> {
    let mut conn = PgConnection::connect(&admin_url).await.ok()?;
    let mut store = PgConnection::connect(&store_url).await.ok()?;
    tokio::time::sleep_until(window.measure_from.into()).await;
    let a = pg_counters(&mut conn, &db).await.ok()?;
    let tables_a = table_counters(&mut store).await.ok()?;
    let t0 = Instant::now();
    let (seen, samples) = sample_activity(&mut conn, &db, window.end).await?;
    let secs = t0.elapsed().as_secs_f64();
    // The statistics are reported with a delay of up to a second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let b = pg_counters(&mut conn, &db).await.ok()?;
    let tables_b = table_counters(&mut store).await.ok()?;
    let _ = conn.close().await;
    let _ = store.close().await;
    let tables = table_rates(&tables_a, &tables_b, secs);
    let rate = |x: i64, y: i64| ((y - x) as f64 / secs).round();
    Some(json!({
        "xact_commits_per_sec": rate(a.commits, b.commits),
        "rows_inserted_per_sec": rate(a.inserted, b.inserted),
        "rows_updated_per_sec": rate(a.updated, b.updated),
        "rows_returned_per_sec": rate(a.returned, b.returned),
        "server_wal_records_per_sec": rate(a.wal_records, b.wal_records),
        "server_wal_syncs_per_sec": rate(a.wal_syncs, b.wal_syncs),
        "active_sessions_avg": busy_shares(seen, samples),
        "per_table_per_sec": tables,
    }))
}

/// Samples `pg_stat_activity` of database `db` every 10 ms until `end`: how many samples saw
/// each non-idle `state: wait event` (or `state: on CPU`), and how many samples were taken.
async fn sample_activity(
    conn: &mut PgConnection,
    db: &str,
    end: Instant,
) -> Option<(HashMap<String, u64>, u64)> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut samples = 0u64;
    while Instant::now() < end {
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(db)
        .fetch_all(&mut *conn)
        .await
        .ok()?;
        samples += 1;
        for (state, wt, we) in rows {
            let state = state.unwrap_or_default();
            if state == "idle" {
                continue;
            }
            let key = match (wt, we) {
                (Some(t), Some(e)) => format!("{state}: {t}/{e}"),
                _ => format!("{state}: on CPU"),
            };
            *seen.entry(key).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some((seen, samples))
}

/// Per table and per index whose counters moved between `before` and `after` (see
/// [`table_counters`]), their rates over `secs`.
fn table_rates(
    before: &HashMap<String, [i64; 4]>,
    after: &HashMap<String, [i64; 4]>,
    secs: f64,
) -> serde_json::Map<String, serde_json::Value> {
    let mut tables = serde_json::Map::new();
    for (name, after) in after {
        let before = before.get(name).copied().unwrap_or_default();
        let d: Vec<f64> = (0..after.len())
            .map(|i| ((after[i] - before[i]) as f64 / secs).round())
            .collect();
        if d.iter().all(|x| *x == 0.0) {
            continue;
        }
        let v = if name.starts_with("index ") {
            json!({"scans": d[2], "entries_read": d[3]})
        } else {
            json!({"seq_scans": d[0], "seq_rows_read": d[1], "idx_scans": d[2], "idx_rows_fetched": d[3]})
        };
        tables.insert(name.clone(), v);
    }
    tables
}

/// Each session state seen by [`sample_activity`], as the average number of sessions in it
/// (its count over the samples, to two decimals), most seen first.
fn busy_shares(seen: HashMap<String, u64>, samples: u64) -> serde_json::Map<String, serde_json::Value> {
    let mut busy: Vec<(String, u64)> = seen.into_iter().collect();
    busy.sort_by_key(|x| std::cmp::Reverse(x.1));
    busy.into_iter()
        .map(|(k, n)| {
            (
                k,
                json!(((n as f64 / samples.max(1) as f64) * 100.0).round() / 100.0),
            )
        })
        .collect()
}

/// PostgreSQL counters: the database's (`pg_stat_database`) and the server's WAL
/// (`pg_stat_wal`, every database).
#[derive(Clone, Copy, Debug, Default)]
struct PgCounters {
    /// Transactions committed in the database.
    commits: i64,
    /// Rows inserted, updated and returned in the database.
    inserted: i64,
    /// See `inserted`.
    updated: i64,
    /// See `inserted`.
    returned: i64,
    /// WAL records and WAL syncs of the whole server.
    wal_records: i64,
    /// See `wal_records`.
    wal_syncs: i64,
}

/// Reads the [`PgCounters`] of database `db`.
async fn pg_counters(conn: &mut PgConnection, db: &str) -> anyhow::Result<PgCounters> {
    // Statistics are cached for the transaction; each query here is its own.
    let (commits, inserted, updated, returned): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_returned FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(&mut *conn)
    .await?;
    let (wal_records, wal_syncs): (i64, i64) =
        sqlx::query_as("SELECT wal_records, wal_sync FROM pg_stat_wal")
            .fetch_one(&mut *conn)
            .await?;
    Ok(PgCounters {
        commits,
        inserted,
        updated,
        returned,
        wal_records,
        wal_syncs,
    })
}

/// Runs `VACUUM (ANALYZE) tasks` on the store every `every` until the window ends.
pub(crate) async fn vacuum_tasks(store_url: String, every: Duration, window: Window) {
    let Ok(mut conn) = PgConnection::connect(&store_url).await else {
        eprintln!("warning: cannot connect to vacuum the store");
        return;
    };
    while Instant::now() < window.end {
        tokio::time::sleep(every).await;
        if let Err(e) = conn.execute("VACUUM (ANALYZE) tasks").await {
            eprintln!("warning: VACUUM (ANALYZE) tasks: {e}");
        }
    }
    let _ = conn.close().await;
}

/// Per table of the store's database: sequential scans, rows they read, index scans, rows
/// they fetched (`pg_stat_user_tables`); and per index (`index <name>`): scans and index
/// entries read (`pg_stat_user_indexes`).
async fn table_counters(conn: &mut PgConnection) -> anyhow::Result<HashMap<String, [i64; 4]>> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, COALESCE(seq_scan, 0), COALESCE(seq_tup_read, 0), \
         COALESCE(idx_scan, 0), COALESCE(idx_tup_fetch, 0) FROM pg_stat_user_tables",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<String, [i64; 4]> = rows
        .into_iter()
        .map(|(n, a, b, c, d)| (n, [a, b, c, d]))
        .collect();
    let indexes: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT indexrelname::text, COALESCE(idx_scan, 0), COALESCE(idx_tup_read, 0) FROM pg_stat_user_indexes",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, scans, read) in indexes {
        out.insert(format!("index {name}"), [0, 0, scans, read]);
    }
    Ok(out)
}
