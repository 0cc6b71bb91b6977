//! Latency percentiles and throughput of one measured run of the load generator.

use std::time::Duration;

/// What one measured run produced: how many requests ended well or badly, how long the run
/// took, and the latency of every successful request.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Requests that completed as expected.
    pub ok: u64,
    /// Requests that failed (transport error, error status, wrong terminal state, timeout).
    pub failed: u64,
    /// Requests never sent because the run hit its time limit.
    pub not_sent: u64,
    /// Wall time from the first send to the last reply.
    pub elapsed: Duration,
    /// Latency of each successful request, in nanoseconds (unsorted).
    pub latencies_ns: Vec<u64>,
    /// The first few distinct failure messages, to show why requests failed.
    pub sample_errors: Vec<String>,
}

/// How many distinct failure messages a [`RunStats`] keeps.
pub const MAX_SAMPLE_ERRORS: usize = 5;

/// Throughput and latency percentiles of a [`RunStats`], latencies in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Requests never sent (time limit).
    pub not_sent: u64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Successful requests per second of wall time.
    pub per_sec: f64,
    /// Mean latency.
    pub mean_us: f64,
    /// Median latency.
    pub p50_us: f64,
    /// 99th percentile latency.
    pub p99_us: f64,
    /// 99.9th percentile latency.
    pub p999_us: f64,
    /// Largest latency.
    pub max_us: f64,
}

/// `new / base`, or 0 when the base is 0.
pub fn ratio(new: f64, base: f64) -> f64 {
    if base > 0.0 { new / base } else { 0.0 }
}

/// The nearest-rank `q` quantile (0 < q <= 1) of `sorted`, or 0 when it is empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl RunStats {
    /// Adds another loop's results (latencies and counts; the elapsed time is kept).
    pub fn merge(&mut self, other: RunStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.not_sent += other.not_sent;
        self.latencies_ns.extend(other.latencies_ns);
        for e in other.sample_errors {
            self.note_error(e);
        }
    }

    /// Waits for every request loop in `loops` and adds up their results; a loop that
    /// panicked counts as one failure. The elapsed time is left for the caller to set.
    pub async fn from_loops(mut loops: tokio::task::JoinSet<RunStats>) -> RunStats {
        let mut all = RunStats::default();
        while let Some(res) = loops.join_next().await {
            match res {
                Ok(stats) => all.merge(stats),
                Err(e) => all.fail(format!("request loop crashed: {e}")),
            }
        }
        all
    }

    /// Counts a failed request and keeps its message if it is new and there is room.
    pub fn fail(&mut self, message: String) {
        self.failed += 1;
        self.note_error(message);
    }

    fn note_error(&mut self, message: String) {
        if self.sample_errors.len() < MAX_SAMPLE_ERRORS && !self.sample_errors.contains(&message) {
            self.sample_errors.push(message);
        }
    }

    /// Sorts the latencies and computes the summary.
    pub fn summarize(mut self) -> Summary {
        self.latencies_ns.sort_unstable();
        let l = &self.latencies_ns;
        let us = |ns: u64| ns as f64 / 1_000.0;
        let elapsed_s = self.elapsed.as_secs_f64();
        let mean_us = if l.is_empty() {
            0.0
        } else {
            us(l.iter().sum::<u64>()) / l.len() as f64
        };
        Summary {
            ok: self.ok,
            failed: self.failed,
            not_sent: self.not_sent,
            elapsed_s,
            per_sec: if elapsed_s > 0.0 {
                self.ok as f64 / elapsed_s
            } else {
                0.0
            },
            mean_us,
            p50_us: us(quantile(l, 0.50)),
            p99_us: us(quantile(l, 0.99)),
            p999_us: us(quantile(l, 0.999)),
            max_us: us(l.last().copied().unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&[7], 0.999), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn summary_of_merged_runs() {
        let mut a = RunStats {
            ok: 2,
            latencies_ns: vec![3_000, 1_000],
            ..Default::default()
        };
        a.merge(RunStats {
            ok: 1,
            failed: 1,
            latencies_ns: vec![2_000],
            ..Default::default()
        });
        a.elapsed = Duration::from_secs(1);
        let s = a.summarize();
        assert_eq!((s.ok, s.failed), (3, 1));
        assert_eq!(s.per_sec, 3.0);
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.max_us, 3.0);
        assert_eq!(s.mean_us, 2.0);
    }
}
