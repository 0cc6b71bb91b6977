//! OTP-style restart intensity: a supervisor restarts failed workers one-for-one, but more than
//! `max_restarts` restarts within `within_secs` means something is wrong beyond one worker, and
//! the supervisor fails itself so its parent can act.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many restarts are tolerated in what window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartIntensity {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The sliding window, in seconds.
    pub within_secs: u64,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        RestartIntensity {
            max_restarts: 10,
            within_secs: 10,
        }
    }
}

/// Remembers recent restarts to decide when intensity is exceeded.
#[derive(Debug)]
pub struct RestartTracker {
    intensity: RestartIntensity,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no restarts yet.
    pub fn new(intensity: RestartIntensity) -> Self {
        RestartTracker {
            intensity,
            recent: VecDeque::new(),
        }
    }

    /// Changes the limits (config reload); history is kept.
    pub fn set_intensity(&mut self, intensity: RestartIntensity) {
        self.intensity = intensity;
    }

    /// The current limits.
    pub fn intensity(&self) -> RestartIntensity {
        self.intensity
    }

    /// Records one restart at `now`; returns false when this restart exceeds the intensity.
    pub fn record(&mut self, now: Instant) -> bool {
        self.prune(now);
        self.recent.push_back(now);
        self.recent.len() as u32 <= self.intensity.max_restarts
    }

    /// Restarts inside the window ending at `now`.
    pub fn recent(&mut self, now: Instant) -> u32 {
        self.prune(now);
        self.recent.len() as u32
    }

    fn prune(&mut self, now: Instant) {
        let window = Duration::from_secs(self.intensity.within_secs);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
        // Bounded: never keep more entries than can matter.
        while self.recent.len() > self.intensity.max_restarts as usize + 1 {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceeding_within_window_trips() {
        let mut t = RestartTracker::new(RestartIntensity {
            max_restarts: 2,
            within_secs: 10,
        });
        let t0 = Instant::now();
        assert!(t.record(t0));
        assert!(t.record(t0 + Duration::from_secs(1)));
        assert!(!t.record(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn old_restarts_fall_out_of_the_window() {
        let mut t = RestartTracker::new(RestartIntensity {
            max_restarts: 1,
            within_secs: 5,
        });
        let t0 = Instant::now();
        assert!(t.record(t0));
        assert!(t.record(t0 + Duration::from_secs(6)));
        assert_eq!(t.recent(t0 + Duration::from_secs(20)), 0);
    }
}
