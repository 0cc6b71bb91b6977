//! Each pool's queue depth over the last hour, for the dashboard's sparklines
//! (`GET /v1/stats/queues`, [`crate::stats`]): sampled every [`SAMPLE_EVERY`] from the
//! supervisor tree and kept in this process's memory only, the last [`SAMPLES_KEPT`] samples.
//! The history starts empty when the node starts, and each tier-0 replica has its own.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// How often each pool's queue depth is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept (an hour at [`SAMPLE_EVERY`]).
pub const SAMPLES_KEPT: usize = 360;
/// Most pools kept per sample (more are left out of the history, not of the node).
pub const MAX_POOLS: usize = 256;

/// One pool's queue depths over time (`crate::node::Node::queue_history`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSeries {
    /// The supervisor.
    pub supervisor: String,
    /// The worker kind.
    pub worker_kind: String,
    /// `(at_ms, depth)`, oldest first.
    pub samples: Vec<(i64, u32)>,
}

/// One queue-depth sample: when, and each pool's `(supervisor, kind, depth)`.
type Sample = (i64, Vec<(String, String, u32)>);

/// The last [`SAMPLES_KEPT`] queue-depth samples of this process.
#[derive(Default)]
pub struct DepthHistory {
    samples: Mutex<VecDeque<Sample>>,
}

impl DepthHistory {
    /// Adds a sample, forgetting the oldest past [`SAMPLES_KEPT`].
    pub fn record(&self, at_ms: i64, mut pools: Vec<(String, String, u32)>) {
        pools.truncate(MAX_POOLS);
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        while s.len() >= SAMPLES_KEPT {
            s.pop_front();
        }
        s.push_back((at_ms, pools));
    }

    /// The samples as one series per pool, ordered by supervisor and kind.
    pub fn series(&self) -> Vec<PoolSeries> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_pool: BTreeMap<(String, String), Vec<(i64, u32)>> = BTreeMap::new();
        for (at, pools) in s.iter() {
            for (sup, kind, depth) in pools {
                by_pool
                    .entry((sup.clone(), kind.clone()))
                    .or_default()
                    .push((*at, *depth));
            }
        }
        by_pool
            .into_iter()
            .map(|((supervisor, worker_kind), samples)| PoolSeries {
                supervisor,
                worker_kind,
                samples,
            })
            .collect()
    }
}

/// What the sampler samples: the node (`crate::stats` implements it).
#[async_trait::async_trait]
pub trait Sampler: Send + Sync + 'static {
    /// Reads every pool's queue depth into the history.
    async fn sample_queues(&self);
}

/// Samples every pool's queue depth every [`SAMPLE_EVERY`], the first at once; holds only a
/// weak reference, so the node can still be dropped.
pub fn spawn_sampler<T: Sampler>(node: Weak<T>) {
    tokio::spawn(async move {
        loop {
            let Some(node) = node.upgrade() else { return };
            node.sample_queues().await;
            drop(node);
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_bounded_and_per_pool() {
        let h = DepthHistory::default();
        for i in 0..(SAMPLES_KEPT as i64 + 5) {
            let mut pools = vec![("s".to_string(), "a".to_string(), i as u32)];
            if i % 2 == 0 {
                pools.push(("s".into(), "b".into(), 1));
            }
            h.record(i, pools);
        }
        let series = h.series();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].worker_kind, "a");
        assert_eq!(series[0].samples.len(), SAMPLES_KEPT);
        assert_eq!(series[0].samples[0], (5, 5), "the oldest five forgotten");
        assert_eq!(series[1].samples.len(), SAMPLES_KEPT / 2);
        h.record(
            1_000,
            (0..MAX_POOLS + 10)
                .map(|i| ("x".into(), i.to_string(), 0))
                .collect(),
        );
        assert!(h.series().len() <= MAX_POOLS + 2);
    }
}
