//! What the dashboard's charts show, decided here (permissions, tenant scope, bounds) and
//! read from the store or from memory:
//!
//! - [`Node::task_stats`]: tasks finished per bucket (a minute by default) over a window (an
//!   hour by default) by terminal state, and the latency percentiles (finish minus creation)
//!   of those that succeeded or failed. From the store, so every tier-0 replica answers the
//!   same and a restart loses nothing. At most [`MAX_LATENCY_ROWS`] latencies are read: past
//!   that, one task in `latency_sample_every`, evenly over the window.
//! - [`Node::queue_history`]: each pool's queue depth, sampled every [`SAMPLE_EVERY`](crate::depths::SAMPLE_EVERY) for the
//!   last [`SAMPLES_KEPT`](crate::depths::SAMPLES_KEPT) samples (an hour), kept in this process's memory only: it starts
//!   empty when the node starts, and each replica has its own.
//! - [`Node::usage_by_day`]: usage (tokens, cost) per UTC day, tenant and model over the last
//!   days, at most [`MAX_USAGE_ROWS`] rows.

use cadre_proto::SpecError;
use cadre_proto::clock::{now_ms, utc_day};
use cadre_store::stats::{DailyUsage, FinishedWindow};

use crate::auth::{Action, Principal};
use crate::depths::{PoolSeries, SAMPLE_EVERY, SAMPLES_KEPT};
use crate::error::Result;
use crate::node::Node;

/// The window of [`Node::task_stats`] when none is asked for: an hour.
pub const DEFAULT_WINDOW_MS: i64 = 3_600_000;
/// The longest window: a day.
pub const MAX_WINDOW_MS: i64 = 86_400_000;
/// The bucket when none is asked for: a minute.
pub const DEFAULT_BUCKET_MS: i64 = 60_000;
/// The shortest bucket: ten seconds.
pub const MIN_BUCKET_MS: i64 = 10_000;
/// Most buckets in one answer.
pub const MAX_BUCKETS: i64 = 360;
/// Most latencies read for one answer.
pub const MAX_LATENCY_ROWS: i64 = 20_000;
/// The span of [`Node::usage_by_day`] when none is asked for, in days.
pub const DEFAULT_USAGE_DAYS: u32 = 30;
/// The longest span of [`Node::usage_by_day`], in days.
pub const MAX_USAGE_DAYS: u32 = 90;
/// Most rows of one [`Node::usage_by_day`] answer.
pub const MAX_USAGE_ROWS: i64 = 10_000;

/// Finished tasks and their latencies per bucket ([`Node::task_stats`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStats {
    /// The window's start (Unix ms, inclusive; a bucket boundary).
    pub from_ms: i64,
    /// Its end (exclusive): the end of the bucket now is in.
    pub to_ms: i64,
    /// The bucket's length.
    pub bucket_ms: i64,
    /// Whose tasks: one tenant's, or every tenant's (`None`, a commander's view).
    pub tenant: Option<String>,
    /// One per bucket, oldest first, empty ones included.
    pub buckets: Vec<TaskBucket>,
    /// 1 when every latency was read, else the sampling step.
    pub latency_sample_every: i64,
}

/// One bucket of [`TaskStats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskBucket {
    /// Its start (Unix ms).
    pub start_ms: i64,
    /// Tasks that succeeded in it.
    pub succeeded: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Tasks that timed out.
    pub timed_out: u64,
    /// The latency percentiles of its succeeded and failed tasks (read or sampled); `None`
    /// when there were none.
    pub latency: Option<Percentiles>,
}

/// Latency percentiles (nearest rank), in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    /// Latencies they were taken from.
    pub count: u64,
    /// The median.
    pub p50: i64,
    /// The 90th percentile.
    pub p90: i64,
    /// The 99th percentile.
    pub p99: i64,
}

impl Percentiles {
    /// The percentiles of `values` (sorted here); `None` when empty.
    pub fn of(values: &mut [i64]) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |p: f64| {
            let i = (p * values.len() as f64).ceil() as usize;
            values[i.clamp(1, values.len()) - 1]
        };
        Some(Percentiles {
            count: values.len() as u64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
        })
    }
}

/// Every pool's queue depths sampled by this process ([`Node::queue_history`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueHistory {
    /// The process that sampled them.
    pub node_id: String,
    /// How often it samples.
    pub interval_ms: i64,
    /// Samples it keeps.
    pub capacity: usize,
    /// Pools ordered by supervisor and kind.
    pub pools: Vec<PoolSeries>,
}

/// Usage per UTC day, tenant and model ([`Node::usage_by_day`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UsageByDay {
    /// The first day (`YYYY-MM-DD`, UTC).
    pub from_day: String,
    /// The last day: today.
    pub to_day: String,
    /// Rows ordered by day, tenant and model (days without usage have none).
    pub rows: Vec<DailyUsage>,
    /// Whether rows were left out ([`MAX_USAGE_ROWS`]).
    pub truncated: bool,
}

/// A bad query value, as INVALID_ARGUMENT.
fn invalid(what: &str, why: String) -> crate::error::Error {
    SpecError::invalid(what, why).into()
}

#[async_trait::async_trait]
impl crate::depths::Sampler for Node {
    /// Reads every pool's queue depth (the supervisor tree, as [`Node::status`] does) into
    /// the history; a failed read records nothing.
    async fn sample_queues(&self) {
        let Ok(supervisors) = self.bus.status().await else {
            return;
        };
        let pools = supervisors
            .iter()
            .flat_map(|s| {
                s.pools
                    .iter()
                    .map(|p| (s.name.clone(), p.worker_kind.clone(), p.queue_depth))
            })
            .collect();
        self.depths.record(now_ms(), pools);
    }
}

impl Node {
    /// Each pool's sampled queue depths (the supervisor role, as for [`Node::status`]).
    pub async fn queue_history(&self, p: &Principal) -> Result<QueueHistory> {
        self.permit(p, Action::Status).await?;
        Ok(QueueHistory {
            node_id: self.node_id.clone(),
            interval_ms: SAMPLE_EVERY.as_millis() as i64,
            capacity: SAMPLES_KEPT,
            pools: self.depths.series(),
        })
    }

    /// Finished tasks per bucket over the last `window_ms` (default an hour, at most a day) in
    /// buckets of `bucket_ms` (default a minute, at least 10 s, at most [`MAX_BUCKETS`] of
    /// them). A commander sees every tenant's tasks, or `tenant`'s when not empty; anyone else
    /// their own tenant's, whatever `tenant` says (as for task lists).
    pub async fn task_stats(
        &self,
        p: &Principal,
        tenant: &str,
        window_ms: Option<i64>,
        bucket_ms: Option<i64>,
    ) -> Result<TaskStats> {
        self.permit(p, Action::ListTasks).await?;
        let window = window_ms.unwrap_or(DEFAULT_WINDOW_MS);
        let bucket = bucket_ms.unwrap_or(DEFAULT_BUCKET_MS);
        if !(MIN_BUCKET_MS..=MAX_WINDOW_MS).contains(&bucket) {
            return Err(invalid(
                "bucket",
                format!("{bucket} ms: from {MIN_BUCKET_MS} ms to a day"),
            ));
        }
        if !(bucket..=MAX_WINDOW_MS).contains(&window) {
            return Err(invalid(
                "window",
                format!("{window} ms: from one bucket to a day"),
            ));
        }
        let n = (window + bucket - 1) / bucket;
        if n > MAX_BUCKETS {
            return Err(invalid("bucket", format!("{n} buckets: at most {MAX_BUCKETS}")));
        }
        let to_ms = (now_ms() / bucket + 1) * bucket;
        let w = FinishedWindow {
            tenant: p.reads_tenant(tenant),
            from_ms: to_ms - n * bucket,
            to_ms,
        };
        let mut buckets: Vec<TaskBucket> = (0..n)
            .map(|i| TaskBucket {
                start_ms: w.from_ms + i * bucket,
                ..Default::default()
            })
            .collect();
        let mut measured = 0;
        for c in self.store.finished_counts(&w, bucket).await? {
            let Some(b) = usize::try_from(c.bucket).ok().and_then(|i| buckets.get_mut(i)) else {
                continue;
            };
            match c.state.as_str() {
                "SUCCEEDED" => b.succeeded += c.count,
                "FAILED" => b.failed += c.count,
                "CANCELLED" => b.cancelled += c.count,
                "TIMED_OUT" => b.timed_out += c.count,
                _ => continue,
            }
            if matches!(c.state.as_str(), "SUCCEEDED" | "FAILED") {
                measured += c.count as i64;
            }
        }
        let every = ((measured + MAX_LATENCY_ROWS - 1) / MAX_LATENCY_ROWS).max(1);
        let mut per_bucket: Vec<Vec<i64>> = vec![Vec::new(); buckets.len()];
        if measured > 0 {
            for l in self.store.finished_latencies(&w, every, MAX_LATENCY_ROWS).await? {
                let i = (l.finished_at_ms - w.from_ms) / bucket;
                if let Some(v) = usize::try_from(i).ok().and_then(|i| per_bucket.get_mut(i)) {
                    v.push(l.latency_ms.max(0));
                }
            }
        }
        for (b, mut v) in buckets.iter_mut().zip(per_bucket) {
            b.latency = Percentiles::of(&mut v);
        }
        Ok(TaskStats {
            from_ms: w.from_ms,
            to_ms,
            bucket_ms: bucket,
            tenant: w.tenant,
            buckets,
            latency_sample_every: every,
        })
    }

    /// Usage per UTC day, tenant and model over the last `days` days, today included
    /// (default [`DEFAULT_USAGE_DAYS`], at most [`MAX_USAGE_DAYS`]); tenant scope as for
    /// [`Node::task_stats`], permission as for [`Node::usage`].
    pub async fn usage_by_day(&self, p: &Principal, tenant: &str, days: Option<u32>) -> Result<UsageByDay> {
        self.permit(p, Action::ReadUsage).await?;
        let days = days.unwrap_or(DEFAULT_USAGE_DAYS);
        if !(1..=MAX_USAGE_DAYS).contains(&days) {
            return Err(invalid("days", format!("{days}: from 1 to {MAX_USAGE_DAYS}")));
        }
        let now = now_ms();
        let from_day = utc_day(now - (i64::from(days) - 1) * 86_400_000);
        let to_day = utc_day(now);
        let tenant = p.reads_tenant(tenant);
        let mut rows = self
            .store
            .daily_usage(tenant.as_deref(), &from_day, &to_day, MAX_USAGE_ROWS + 1)
            .await?;
        let truncated = rows.len() as i64 > MAX_USAGE_ROWS;
        rows.truncate(MAX_USAGE_ROWS as usize);
        Ok(UsageByDay {
            from_day,
            to_day,
            rows,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Percentiles::of(&mut []), None);
        let mut one = [7];
        let p = Percentiles::of(&mut one).unwrap();
        assert_eq!((p.count, p.p50, p.p90, p.p99), (1, 7, 7, 7));
        let mut v: Vec<i64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut v).unwrap();
        assert_eq!((p.count, p.p50, p.p90, p.p99), (100, 50, 90, 99));
    }
}
