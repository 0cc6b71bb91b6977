//! Open-loop load: requests sent on a fixed schedule, whatever the replies do.
//!
//! A closed loop (each of N loops sends its next request when the last one returns) hides a
//! stall: while the server is stuck, the loops send nothing, so the stall shows up as one slow
//! request per loop instead of as every request that should have been sent meanwhile
//! ("coordinated omission"). Here request `n` is due at `start + n / rate`; its latency runs
//! from that due time, not from when it actually left, to its reply. A sender that falls behind
//! therefore adds its lag to the latencies it reports rather than hiding it.
//!
//! tokio's timer has a 1 ms resolution: requests due within the same millisecond leave
//! together, which adds at most about 1 ms to a latency (it never hides one).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::stats::RunStats;

/// The bounds of one open-loop run.
#[derive(Clone, Copy, Debug)]
pub struct OpenPlan {
    /// Requests per second, > 0.
    pub rate: f64,
    /// Requests to send.
    pub total: u64,
    /// Most requests waiting for a reply at once; a request due while this many are in flight
    /// is not sent and counts as a failure (the server fell behind the rate).
    pub max_in_flight: usize,
    /// Time limit of one request.
    pub request_timeout: Duration,
}

impl OpenPlan {
    /// When request `n` is due, after `start`.
    pub fn due(&self, start: Instant, n: u64) -> Instant {
        start + Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// What one request did: its due time and how it ended.
type Done = (Instant, Result<Result<(), String>, tokio::time::error::Elapsed>);

/// Adds one finished request to `stats`; its latency runs from `due`.
fn record(stats: &mut RunStats, (due, outcome): Done, timeout: Duration) {
    match outcome {
        Ok(Ok(())) => {
            stats.ok += 1;
            stats.latencies_ns.push(due.elapsed().as_nanos() as u64);
        }
        Ok(Err(e)) => stats.fail(e),
        Err(_) => stats.fail(format!("no reply within {} ms", timeout.as_millis())),
    }
}

/// Sends `plan.total` calls of `call` at `plan.rate` per second and measures each from its due
/// time to its reply. `elapsed` is from the first due time to the last reply.
pub async fn drive_at_rate<F, Fut>(plan: OpenPlan, call: F) -> RunStats
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(plan.max_in_flight.max(1)));
    let mut pending = tokio::task::JoinSet::new();
    let mut stats = RunStats::default();
    let start = Instant::now();
    for n in 0..plan.total {
        let due = plan.due(start, n);
        tokio::time::sleep_until(due.into()).await;
        while let Some(res) = pending.try_join_next() {
            match res {
                Ok(done) => record(&mut stats, done, plan.request_timeout),
                Err(e) => stats.fail(format!("request task crashed: {e}")),
            }
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.fail(format!(
                "{} requests already in flight: the server fell behind {:.0}/s",
                plan.max_in_flight, plan.rate
            ));
            continue;
        };
        let request = tokio::time::timeout(plan.request_timeout, call(n));
        pending.spawn(async move {
            let outcome = request.await;
            drop(slot);
            (due, outcome)
        });
    }
    while let Some(res) = pending.join_next().await {
        match res {
            Ok(done) => record(&mut stats, done, plan.request_timeout),
            Err(e) => stats.fail(format!("request task crashed: {e}")),
        }
    }
    stats.elapsed = start.elapsed();
    stats
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn plan(rate: f64, total: u64, max_in_flight: usize) -> OpenPlan {
        OpenPlan {
            rate,
            total,
            max_in_flight,
            request_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn requests_are_due_at_even_intervals() {
        let p = plan(1000.0, 10, 1);
        let t0 = Instant::now();
        assert_eq!(p.due(t0, 0), t0);
        assert_eq!(p.due(t0, 250), t0 + Duration::from_millis(250));
    }

    #[tokio::test]
    async fn requests_keep_leaving_on_schedule_while_one_is_stalled() {
        // 200/s for 200 ms; request 5 (due at 25 ms) stalls 150 ms. A closed loop of one would
        // send nothing meanwhile; here the requests due during the stall leave on time.
        let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen_at_stall_end = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, end) = (started.clone(), seen_at_stall_end.clone());
        let stats = drive_at_rate(plan(200.0, 40, 1000), move |n| {
            s.fetch_add(1, Ordering::SeqCst);
            let (s, end) = (s.clone(), end.clone());
            async move {
                if n == 5 {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    end.store(s.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                Ok(())
            }
        })
        .await;
        assert_eq!((stats.ok, stats.failed), (40, 0));
        assert!(
            seen_at_stall_end.load(Ordering::SeqCst) >= 30,
            "requests due at 30..150 ms were sent while request 5 stalled (saw {})",
            seen_at_stall_end.load(Ordering::SeqCst)
        );
        let slow = stats.latencies_ns.iter().filter(|&&ns| ns >= 150_000_000).count();
        assert!(slow >= 1, "the stalled request is measured from its due time");
        assert!(
            stats.elapsed >= Duration::from_millis(195),
            "the schedule sets the pace: the last request is due at 195 ms, not sooner"
        );
    }

    #[tokio::test]
    async fn a_server_slower_than_the_rate_fills_the_window_and_fails_the_rest() {
        // 1000/s against replies held until 300 ms, at most 10 in flight: all 30 requests are
        // due within 29 ms, so the first 10 take the slots and the other 20 find none.
        let (release, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = release.send(true);
        });
        let stats = drive_at_rate(plan(1000.0, 30, 10), move |_| {
            let mut held = held.clone();
            async move {
                let _ = held.wait_for(|released| *released).await;
                Ok(())
            }
        })
        .await;
        assert_eq!((stats.ok, stats.failed), (10, 20));
        assert!(stats.sample_errors[0].contains("fell behind"));
    }

    #[tokio::test]
    async fn errors_and_timeouts_are_counted_with_their_messages() {
        let mut p = plan(1000.0, 4, 10);
        p.request_timeout = Duration::from_millis(100);
        let stats = drive_at_rate(p, |n| async move {
            match n {
                0 => Err("boom".to_string()),
                1 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!((stats.ok, stats.failed), (2, 2));
        assert!(stats.sample_errors.contains(&"boom".to_string()));
        assert!(
            stats
                .sample_errors
                .iter()
                .any(|e| e.contains("no reply within 100 ms"))
        );
    }
}
