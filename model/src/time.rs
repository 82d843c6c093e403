//! Points in time as people write them in queries and silences: Unix milliseconds, RFC 3339,
//! `now`, `now-15m` and, where a time may lie ahead (a silence's end), `now+2h`.
//!
//! One reader for the HTTP API, `microdash apply` and the `Silence` resource, so a time means
//! the same everywhere. Durations after `now` are read by `humantime` (`2h`, `90m`, `1h 30m`, `1w`).

/// The latest time accepted anywhere: 9999-12-31T23:59:59.999Z, in Unix ms. With times in
/// `0..=MAX_TIME_MS`, differences and sums of two of them never overflow an i64.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A time in `0..=MAX_TIME_MS`: Unix ms, RFC 3339, `now`, or `now-15m` (a relative time before
/// 1970 counts as 0, since no sample is older); `None` for anything else, without overflow.
pub fn parse_time(text: &str, now: i64) -> Option<i64> {
    if text == "now" {
        return Some(now);
    }
    if let Some(ago) = text.strip_prefix("now-") {
        let ago = humantime::parse_duration(ago).ok()?;
        let ago = i64::try_from(ago.as_millis()).ok().filter(|ms| *ms <= MAX_TIME_MS)?;
        return Some(now.saturating_sub(ago).max(0));
    }
    text.parse::<i64>().ok().or_else(|| parse_rfc3339_ms(text)).filter(|t| (0..=MAX_TIME_MS).contains(t))
}

/// Like [`parse_time`], and `now+2h`: a time ahead of `now`, at most `MAX_TIME_MS`.
pub fn parse_time_ahead(text: &str, now: i64) -> Option<i64> {
    match text.strip_prefix("now+") {
        Some(ahead) => humantime::parse_duration(ahead)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .and_then(|ms| now.checked_add(ms))
            .filter(|t| *t <= MAX_TIME_MS),
        None => parse_time(text, now),
    }
}

/// An RFC 3339 time (`2025-11-25T21:00:00Z`, `…+01:00`) as Unix ms.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_come_in_several_forms() {
        assert_eq!(parse_time("now", 5000), Some(5000));
        assert_eq!(parse_time("now-2s", 5000), Some(3000));
        assert_eq!(parse_time("1234", 0), Some(1234));
        assert_eq!(parse_time("2025-11-25T21:00:00Z", 0), Some(1_764_104_400_000));
        assert_eq!(parse_time("later", 0), None);
        assert_eq!(parse_time("now+2s", 5000), None, "only where a time may lie ahead");
        assert_eq!(parse_time_ahead("now+2s", 5000), Some(7000));
        assert_eq!(parse_time_ahead("now+1h 30m", 0), Some(5_400_000));
        assert_eq!(parse_time_ahead("now-2s", 5000), Some(3000));
        assert_eq!(parse_time_ahead("2025-11-25T22:00:00+01:00", 0), Some(1_764_104_400_000));
    }

    #[test]
    fn times_never_overflow() {
        assert_eq!(parse_time("-9223372036854775807", 0), None);
        assert_eq!(parse_time("9223372036854775807", 0), None);
        assert_eq!(parse_time("now-100000000000y", 5000), None);
        assert_eq!(parse_time("now-1000y", 5000), Some(0), "before 1970 is 0");
        assert_eq!(parse_time(&MAX_TIME_MS.to_string(), 0), Some(MAX_TIME_MS));
        assert_eq!(parse_time(&(MAX_TIME_MS + 1).to_string(), 0), None);
        assert_eq!(parse_time_ahead("now+100000000000y", 5000), None);
        assert_eq!(parse_time_ahead("now+1s", MAX_TIME_MS), None);
    }
}
