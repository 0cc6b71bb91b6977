//! What the dashboard's charts are drawn from ([`StatsStore`]): finished tasks per time bucket,
//! their latencies (a bounded sample), and usage per day, tenant and model.
//!
//! Every read is bounded: the counts are aggregated by the database (one row per bucket and
//! state), the latencies come back at most `limit` rows (one row in `every`, so a busy hour is
//! sampled evenly rather than cut), and the daily usage at most `limit` groups. The queries
//! repeat the partial indexes' predicate word for word (`tasks_finished`, and
//! `tasks_finished_tenant` for one tenant) so both databases can use them.
//!
//! Both SQL stores implement [`StatsStore`] with the same statements (`impl_stats_store!`).

use std::marker::PhantomData;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::error::StoreResult;

/// The states of a finished task, exactly as the partial indexes' predicate names them.
const FINISHED: &str = "('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')";

/// Which finished tasks a stats read covers: those that finished in `[from_ms, to_ms)`, of one
/// tenant or all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinishedWindow {
    /// One tenant's tasks only; `None`: every tenant's.
    pub tenant: Option<String>,
    /// The window's start (Unix ms, inclusive).
    pub from_ms: i64,
    /// The window's end (Unix ms, exclusive).
    pub to_ms: i64,
}

/// How many tasks finished in one state in one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedCount {
    /// The bucket: `(finish - from_ms) / bucket_ms`.
    pub bucket: i64,
    /// The terminal state's name (`SUCCEEDED`, `FAILED`, `CANCELLED`, `TIMED_OUT`).
    pub state: String,
    /// Tasks.
    pub count: u64,
}

/// One finished task's latency: when it finished and how long after its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// When it finished (Unix ms).
    pub finished_at_ms: i64,
    /// Finish minus creation, in ms.
    pub latency_ms: i64,
}

/// Usage of one tenant and model on one UTC day.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DailyUsage {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The tenant.
    pub tenant: String,
    /// The model.
    pub model: String,
    /// Prompt tokens.
    pub tokens_in: i64,
    /// Completion tokens.
    pub tokens_out: i64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

#[async_trait]
/// Bounded aggregate reads for charts.
pub trait StatsStore: Send + Sync {
    /// Finished tasks per bucket of `bucket_ms` (counted from `w.from_ms`) and terminal state;
    /// only buckets and states with tasks are returned.
    async fn finished_counts(&self, w: &FinishedWindow, bucket_ms: i64) -> StoreResult<Vec<FinishedCount>>;
    /// Latencies of tasks that SUCCEEDED or FAILED in the window: every one when `every` is 1,
    /// else about one in `every` (chosen by their timestamps, evenly over the window); at most
    /// `limit`, newest first.
    async fn finished_latencies(
        &self,
        w: &FinishedWindow,
        every: i64,
        limit: i64,
    ) -> StoreResult<Vec<Latency>>;
    /// Usage per day, tenant and model for the UTC days `from_day..=to_day` (one tenant or
    /// all), ordered by day, tenant and model; at most `limit` rows.
    async fn daily_usage(
        &self,
        tenant: Option<&str>,
        from_day: &str,
        to_day: &str,
        limit: i64,
    ) -> StoreResult<Vec<DailyUsage>>;
}

/// Query builders for database `DB` (only used as `StatsSql::<DB>::...`).
pub(crate) struct StatsSql<DB>(PhantomData<DB>);

impl<DB> StatsSql<DB>
where
    DB: Database,
    DB::Arguments: Default,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
{
    /// `WHERE` finished in the window (of the tenant).
    fn window(qb: &mut QueryBuilder<DB>, w: &FinishedWindow) {
        qb.push(format!(" FROM tasks WHERE state IN {FINISHED}"));
        if let Some(t) = &w.tenant {
            qb.push(" AND tenant = ").push_bind(t.clone());
        }
        qb.push(" AND updated_at_ms >= ")
            .push_bind(w.from_ms)
            .push(" AND updated_at_ms < ")
            .push_bind(w.to_ms);
    }

    /// `(bucket, state, count)` rows.
    pub fn counts(w: &FinishedWindow, bucket_ms: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("SELECT (updated_at_ms - ");
        qb.push_bind(w.from_ms)
            .push(") / ")
            .push_bind(bucket_ms.max(1))
            .push(" AS bucket, state, COUNT(*) AS n");
        Self::window(&mut qb, w);
        qb.push(" GROUP BY 1, 2 ORDER BY 1, 2");
        qb
    }

    /// `(finished_at_ms, latency_ms)` rows, newest first.
    pub fn latencies(w: &FinishedWindow, every: i64, limit: i64) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new("SELECT updated_at_ms, updated_at_ms - created_at_ms");
        Self::window(&mut qb, w);
        qb.push(" AND state IN ('SUCCEEDED', 'FAILED')");
        if every > 1 {
            qb.push(" AND (created_at_ms + updated_at_ms) % ")
                .push_bind(every)
                .push(" = 0");
        }
        qb.push(" ORDER BY updated_at_ms DESC LIMIT ")
            .push_bind(limit.max(0));
        qb
    }

    /// [`DailyUsage`] rows.
    pub fn daily_usage(
        tenant: Option<String>,
        from_day: String,
        to_day: String,
        limit: i64,
    ) -> QueryBuilder<DB> {
        let mut qb = QueryBuilder::new(
            "SELECT day, tenant, model, CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, \
             CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, SUM(cost_usd) AS cost_usd \
             FROM usage WHERE day >= ",
        );
        qb.push_bind(from_day).push(" AND day <= ").push_bind(to_day);
        if let Some(t) = tenant {
            qb.push(" AND tenant = ").push_bind(t);
        }
        qb.push(" GROUP BY day, tenant, model ORDER BY day, tenant, model LIMIT ")
            .push_bind(limit.max(0));
        qb
    }
}

/// Implements [`StatsStore`] for a SQL store type with the [`StatsSql`] statements on its
/// `pool` (of database `$db`). Text goes through the type's `stored_text` first.
macro_rules! impl_stats_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// The window with its tenant as stored.
            fn stored_window(w: &$crate::stats::FinishedWindow) -> $crate::stats::FinishedWindow {
                $crate::stats::FinishedWindow {
                    tenant: w
                        .tenant
                        .as_deref()
                        .map(|t| Self::stored_text(t).into_owned()),
                    ..w.clone()
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::stats::StatsStore for $store {
            async fn finished_counts(
                &self,
                w: &$crate::stats::FinishedWindow,
                bucket_ms: i64,
            ) -> $crate::StoreResult<Vec<$crate::stats::FinishedCount>> {
                let rows: Vec<(i64, String, i64)> =
                    $crate::stats::StatsSql::<$db>::counts(&Self::stored_window(w), bucket_ms)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(bucket, state, n)| $crate::stats::FinishedCount {
                        bucket,
                        state,
                        count: n.max(0) as u64,
                    })
                    .collect())
            }

            async fn finished_latencies(
                &self,
                w: &$crate::stats::FinishedWindow,
                every: i64,
                limit: i64,
            ) -> $crate::StoreResult<Vec<$crate::stats::Latency>> {
                let rows: Vec<(i64, i64)> =
                    $crate::stats::StatsSql::<$db>::latencies(&Self::stored_window(w), every, limit)
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(finished_at_ms, latency_ms)| $crate::stats::Latency {
                        finished_at_ms,
                        latency_ms,
                    })
                    .collect())
            }

            async fn daily_usage(
                &self,
                tenant: Option<&str>,
                from_day: &str,
                to_day: &str,
                limit: i64,
            ) -> $crate::StoreResult<Vec<$crate::stats::DailyUsage>> {
                let tenant = tenant.map(|t| Self::stored_text(t).into_owned());
                let rows = $crate::stats::StatsSql::<$db>::daily_usage(
                    tenant,
                    Self::stored_text(from_day).into_owned(),
                    Self::stored_text(to_day).into_owned(),
                    limit,
                )
                .build_query_as()
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }
        }
    };
}
pub(crate) use impl_stats_store;
