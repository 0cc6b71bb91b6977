//! Reading a `Retry-After` header (RFC 9110 section 10.2.3): either a number of seconds or an
//! HTTP-date, parsed by the `httpdate` crate. The wait is bounded by [`MAX_RETRY_AFTER`]; a date
//! in the past means "retry now".

use std::time::{Duration, SystemTime};

/// Longest wait taken from a `Retry-After` (longer ones are cut to it).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The wait a `Retry-After` value asks for, seen at `now`; None when it is neither form.
/// Fractional seconds are accepted (some providers send them).
pub fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The wait in `headers`' `Retry-After`, if it has a readable one.
pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse(v, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_http_dates_are_read_and_bounded() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 1.5 ", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            parse("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "past: now"
        );
        assert_eq!(
            parse("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER),
            "bounded"
        );
        assert_eq!(parse("999999999", now), Some(MAX_RETRY_AFTER));
        for bad in ["", "soon", "-5", "NaN", "inf", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
    }
}
