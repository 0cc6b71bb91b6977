//! Rounding the numbers executors put in results.

/// Rounds to three decimals: scores and shares in results need no more, and stay readable.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
