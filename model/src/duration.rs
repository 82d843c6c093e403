//! Durations as people write them in rules and channels: `90s`, `5m`, `4h`, `1h30m`, `500ms`.
//!
//! One parser for the HTTP API, `microdash apply` and the CRDs, so a spec means the same
//! everywhere. Units: `ms`, `s`, `m`, `h`, `d`; a bare `0` is allowed.

use std::time::Duration;

/// Parses a duration such as `90s`, `5m`, `1h30m` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("is empty; write a duration such as 90s, 5m or 4h".into());
    }
    let bytes = text.as_bytes();
    let mut total_ms: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("{text:?} is not a duration; write a number and a unit (ms, s, m, h, d), e.g. 90s"));
        }
        let number: u128 = text[start..i].parse().map_err(|_| format!("{text:?}: the number is too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: u128 = match &text[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("{text:?} lacks a unit; add one of ms, s, m, h, d (e.g. {number}s)")),
            other => return Err(format!("{text:?}: unknown unit {other:?}; use ms, s, m, h or d")),
        };
        total_ms = total_ms.saturating_add(number.saturating_mul(unit_ms));
    }
    // Ten years is plenty for any alerting interval and keeps arithmetic in i64 ms safe.
    if total_ms > 10 * 365 * 86_400_000 {
        return Err(format!("{text:?} is longer than ten years"));
    }
    Ok(Duration::from_millis(total_ms as u64))
}

/// The shortest text that `parse_duration` reads back as the same duration.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_forms() {
        let cases = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("4h", 14_400_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("2d", 172_800_000),
            ("0s", 0),
            ("0", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_ambiguous_and_says_why() {
        assert!(parse_duration("90").unwrap_err().contains("lacks a unit"));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("100000d").unwrap_err().contains("ten years"));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["90s", "5m", "1h30m", "500ms", "2d", "0s", "1m1s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
