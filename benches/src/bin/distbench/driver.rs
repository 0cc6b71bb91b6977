//! The timed driver both phases share: a [`Window`] (warm-up, then the measured span) and
//! [`drive_for`], closed request loops that run until the window ends.

use std::time::{Duration, Instant};

use cadre_benches::stats::RunStats;

use crate::args::Args;

/// When a phase warms up, measures and stops.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    /// End of the warm-up, start of the measured span.
    pub(crate) measure_from: Instant,
    /// End of the measured span, and of the phase.
    pub(crate) end: Instant,
    /// Time limit of one request.
    pub(crate) request_timeout: Duration,
}

impl Window {
    /// A window that starts now, with the warm-up, measured span and request time limit of
    /// `args`.
    pub(crate) fn new(args: &Args) -> Window {
        let measure_from = Instant::now() + Duration::from_secs(args.warmup_secs);
        Window {
            measure_from,
            end: measure_from + Duration::from_secs(args.duration_secs),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
        }
    }
}

/// Runs `concurrency` closed loops of `call` until the window ends. A request counts towards
/// throughput when it completes inside the measured window; its latency is kept when it both
/// started and completed inside it. Any failure, warm-up included, is counted.
pub(crate) async fn drive_for<F, Fut>(concurrency: usize, window: Window, call: F) -> RunStats
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let call = call.clone();
        loops.spawn(async move {
            let mut stats = RunStats::default();
            while Instant::now() < window.end {
                let t0 = Instant::now();
                let res = tokio::time::timeout(window.request_timeout, call()).await;
                let t1 = Instant::now();
                match res {
                    Ok(Ok(())) => {
                        if t1 >= window.measure_from && t1 <= window.end {
                            stats.ok += 1;
                            if t0 >= window.measure_from {
                                stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
                            }
                        }
                    }
                    Ok(Err(e)) => stats.fail(e),
                    Err(_) => stats.fail(format!(
                        "no reply within {} ms",
                        window.request_timeout.as_millis()
                    )),
                }
            }
            stats
        });
    }
    let mut all = RunStats::from_loops(loops).await;
    all.elapsed = window.end - window.measure_from;
    all
}
