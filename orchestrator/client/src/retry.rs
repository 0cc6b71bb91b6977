//! How calls are tried again when the node is unavailable: a bounded number of attempts with
//! doubling pauses. Only UNAVAILABLE and an unreachable node are retried; submits keep one
//! idempotency key across their attempts, so a retry never makes a second task.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// The retry policy of a [`crate::Client`]: `attempts` tries in all, the first pause `first`,
/// doubling up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all (1 = no retry).
    pub attempts: u32,
    /// The pause before the second try.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Retry {
    /// Six tries over about six seconds: enough to ride out a node restart.
    fn default() -> Self {
        Retry {
            attempts: 6,
            first: Duration::from_millis(100),
            max: Duration::from_secs(3),
        }
    }
}

impl Retry {
    /// No retries: every error is returned at once.
    pub fn never() -> Self {
        Retry {
            attempts: 1,
            ..Retry::default()
        }
    }

    /// The pause after failed try number `tried` (1-based).
    pub fn pause(&self, tried: u32) -> Duration {
        let factor = 2u32.saturating_pow(tried.saturating_sub(1));
        self.first.saturating_mul(factor).min(self.max)
    }

    /// Runs `call` until it succeeds, fails with an error that is not retryable, or the tries
    /// are used up (then the last error).
    pub async fn run<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            match call().await {
                Err(e) if e.is_retryable() && tried < self.attempts.max(1) => {
                    tokio::time::sleep(self.pause(tried)).await;
                }
                done => return done,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn pauses_double_up_to_the_max() {
        let r = Retry::default();
        assert_eq!(r.pause(1), Duration::from_millis(100));
        assert_eq!(r.pause(2), Duration::from_millis(200));
        assert_eq!(r.pause(5), Duration::from_millis(1600));
        assert_eq!(r.pause(6), Duration::from_secs(3));
        assert_eq!(r.pause(60), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_unavailable_and_stops_after_the_attempts() {
        let r = Retry::default();
        let mut calls = 0;
        let out: Result<()> = r
            .run(|| {
                calls += 1;
                async { Err(Error::Unavailable("down".into())) }
            })
            .await;
        assert!(matches!(out, Err(Error::Unavailable(_))));
        assert_eq!(calls, 6);

        let mut calls = 0;
        let out: Result<()> = r
            .run(|| {
                calls += 1;
                async { Err(Error::InvalidArgument("bad".into())) }
            })
            .await;
        assert!(matches!(out, Err(Error::InvalidArgument(_))));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let out = r
            .run(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Error::Unavailable("down".into()))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(out.unwrap(), 3);
    }
}
