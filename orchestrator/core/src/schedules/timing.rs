//! When a schedule's ticks fall: a cron expression (5, 6 or 7 fields, through the `croner`
//! crate) read in an IANA time zone (`chrono-tz`), or a fixed interval counted from an anchor.
//! All times are Unix milliseconds; cron ticks fall on whole seconds.

use std::str::FromStr;

use cadre_proto::SpecError;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The shortest interval.
pub const MIN_EVERY_MS: u64 = 1000;
/// The longest interval (about ten years).
pub const MAX_EVERY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;
/// The longest cron expression and zone name, in bytes.
const MAX_EXPR_BYTES: usize = 256;

/// How a schedule's ticks are computed.
#[derive(Clone, Debug)]
pub enum Timing {
    /// A cron expression in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// The zone it is read in.
        tz: Tz,
    },
    /// Every `every` ms from `anchor`.
    Every {
        /// The interval, milliseconds (>= [`MIN_EVERY_MS`]).
        every: i64,
        /// Where ticks are counted from.
        anchor: i64,
    },
}

impl Timing {
    /// Checks and parses what a schedule says about its ticks; INVALID_ARGUMENT names the
    /// field (`cron`, `time_zone`, `every_ms`).
    pub fn parse(cron: &str, time_zone: &str, every_ms: u64, anchor: i64) -> Result<Timing, SpecError> {
        match (cron.trim().is_empty(), every_ms) {
            (true, 0) => Err(SpecError::invalid("cron", "give a cron expression or every_ms")),
            (false, e) if e > 0 => Err(SpecError::invalid(
                "every_ms",
                "give a cron expression or every_ms, not both",
            )),
            (true, e) => {
                if !time_zone.is_empty() && time_zone != "UTC" {
                    return Err(SpecError::invalid(
                        "time_zone",
                        "applies to a cron expression only",
                    ));
                }
                if !(MIN_EVERY_MS..=MAX_EVERY_MS).contains(&e) {
                    return Err(SpecError::invalid(
                        "every_ms",
                        format!("{e} is not between {MIN_EVERY_MS} and {MAX_EVERY_MS}"),
                    ));
                }
                Ok(Timing::Every {
                    every: e as i64,
                    anchor,
                })
            }
            (false, _) => {
                if cron.len() > MAX_EXPR_BYTES {
                    return Err(SpecError::invalid(
                        "cron",
                        format!("is longer than {MAX_EXPR_BYTES} bytes"),
                    ));
                }
                if time_zone.len() > MAX_EXPR_BYTES {
                    return Err(SpecError::invalid("time_zone", "is not an IANA time zone"));
                }
                let tz = zone(time_zone)?;
                let parsed = Cron::from_str(cron.trim())
                    .map_err(|e| SpecError::invalid("cron", format!("{cron:?}: {e}")))?;
                let timing = Timing::Cron {
                    cron: Box::new(parsed),
                    tz,
                };
                if timing.next_after(anchor).is_none() {
                    return Err(SpecError::invalid("cron", format!("{cron:?} never fires")));
                }
                Ok(timing)
            }
        }
    }

    /// The first tick strictly after `t` (None: none is left).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Timing::Every { every, anchor } => {
                let k = (t - anchor).div_euclid(*every) + 1;
                anchor.checked_add(k.checked_mul(*every)?)
            }
            Timing::Cron { cron, tz } => {
                let start = at(tz, t.div_euclid(1000) * 1000)?;
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp_millis())
            }
        }
    }

    /// The last tick at or before `t` (None: none is).
    pub fn last_at_or_before(&self, t: i64) -> Option<i64> {
        match self {
            Timing::Every { every, anchor } => {
                (t >= *anchor).then(|| anchor + (t - anchor).div_euclid(*every) * every)
            }
            Timing::Cron { cron, tz } => {
                let start = at(tz, t.div_euclid(1000) * 1000)?;
                let prev = cron.find_previous_occurrence(&start, true).ok()?;
                Some(prev.timestamp_millis())
            }
        }
    }

    /// Up to `n` ticks from `first` (itself included).
    pub fn upcoming(&self, first: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = Some(first);
        while let Some(tick) = t {
            if out.len() >= n {
                break;
            }
            out.push(tick);
            t = self.next_after(tick);
        }
        out
    }
}

/// An IANA zone by name (empty: UTC).
fn zone(name: &str) -> Result<Tz, SpecError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    Tz::from_str(name)
        .map_err(|_| SpecError::invalid("time_zone", format!("{name:?} is not an IANA time zone")))
}

/// Unix milliseconds as a time in `tz`.
fn at(tz: &Tz, ms: i64) -> Option<DateTime<Tz>> {
    let utc: DateTime<Utc> = DateTime::from_timestamp_millis(ms)?;
    Some(tz.from_utc_datetime(&utc.naive_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of an RFC 3339 time.
    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn seconds_cron_in_a_zone() {
        let t = Timing::parse("30 0 9 * * *", "Europe/Paris", 0, 0).unwrap();
        // 09:00:30 in Paris is 08:00:30 UTC in winter (CET, +1).
        let from = ms("2026-01-15T12:00:00Z");
        let next = t.upcoming(t.next_after(from).unwrap(), 3);
        assert_eq!(
            next,
            vec![
                ms("2026-01-16T08:00:30Z"),
                ms("2026-01-17T08:00:30Z"),
                ms("2026-01-18T08:00:30Z"),
            ]
        );
        // And 07:00:30 UTC in summer (CEST, +2), across the change of 2026-03-29.
        let spring = t.upcoming(t.next_after(ms("2026-03-28T12:00:00Z")).unwrap(), 2);
        assert_eq!(
            spring,
            vec![ms("2026-03-29T07:00:30Z"), ms("2026-03-30T07:00:30Z")]
        );
        assert_eq!(
            t.last_at_or_before(ms("2026-01-16T08:00:30Z")),
            Some(ms("2026-01-16T08:00:30Z"))
        );
        assert_eq!(
            t.last_at_or_before(ms("2026-01-16T08:00:29.999Z")),
            Some(ms("2026-01-15T08:00:30Z"))
        );
    }

    #[test]
    fn every_five_seconds_and_five_fields() {
        let t = Timing::parse("*/5 * * * * *", "", 0, 0).unwrap();
        assert_eq!(
            t.next_after(ms("2026-05-01T00:00:01.500Z")),
            Some(ms("2026-05-01T00:00:05Z"))
        );
        assert_eq!(
            t.next_after(ms("2026-05-01T00:00:05Z")),
            Some(ms("2026-05-01T00:00:10Z"))
        );
        let five = Timing::parse("0 12 * * MON", "America/New_York", 0, 0).unwrap();
        // Monday 2026-06-01 12:00 EDT (-4).
        assert_eq!(
            five.next_after(ms("2026-05-30T00:00:00Z")),
            Some(ms("2026-06-01T16:00:00Z"))
        );
    }

    #[test]
    fn intervals_count_from_their_anchor() {
        let t = Timing::parse("", "", 30_000, 1_000).unwrap();
        assert_eq!(t.next_after(1_000), Some(31_000));
        assert_eq!(t.next_after(30_999), Some(31_000));
        assert_eq!(t.next_after(31_000), Some(61_000));
        assert_eq!(t.last_at_or_before(60_999), Some(31_000));
        assert_eq!(t.last_at_or_before(999), None);
        assert_eq!(t.upcoming(31_000, 3), vec![31_000, 61_000, 91_000]);
    }

    #[test]
    fn bad_input_names_its_field() {
        let field = |r: Result<Timing, SpecError>| match r.unwrap_err() {
            SpecError::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(field(Timing::parse("not cron", "", 0, 0)), "cron");
        assert_eq!(field(Timing::parse("61 * * * * *", "", 0, 0)), "cron");
        assert_eq!(field(Timing::parse("0 0 0 30 2 *", "", 0, 0)), "cron");
        assert_eq!(
            field(Timing::parse("* * * * *", "Mars/Olympus", 0, 0)),
            "time_zone"
        );
        assert_eq!(field(Timing::parse("", "", 999, 0)), "every_ms");
        assert_eq!(field(Timing::parse("* * * * *", "", 1000, 0)), "every_ms");
        assert_eq!(field(Timing::parse("", "", 0, 0)), "cron");
        assert_eq!(field(Timing::parse("", "Europe/Paris", 5000, 0)), "time_zone");
    }
}
