//! InfluxDB line protocol, as Telegraf's `outputs.influxdb_v2` and the InfluxDB client libraries
//! write it to `/api/v2/write`; parsed by the `influxdb-line-protocol` crate.
//!
//! Mapping: each field of a line is a sample of the metric `{measurement}.{field}` (`cpu,host=a
//! usage_idle=99.1` is `cpu.usage_idle{host="a"}`), tags are labels, the timestamp is read in the
//! request's `precision` (`ns` by default, as InfluxDB does) and defaults to the time of receipt.
//! Floats, integers and unsigned integers are values, booleans 1 and 0; string fields have no
//! number and are skipped (counted). A line that does not parse, or a sample microdash cannot
//! hold, is refused alone: the other lines are stored, and the answer names the first refused
//! line (InfluxDB's own partial-write behaviour).

use influxdb_line_protocol::{FieldValue, parse_lines, split_lines};

use super::Refusals;
use crate::domain::sample::SharedLabels;
use crate::domain::{Labels, Limits, Sample};

/// The unit of the timestamps of a request (`precision=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// `ns`, `us`, `ms` or `s` (InfluxDB 2's names; `n`, `u` and `µs` of InfluxDB 1 too).
    pub fn parse(text: Option<&str>) -> Option<Precision> {
        match text.unwrap_or("ns") {
            "ns" | "n" => Some(Precision::Nanoseconds),
            "us" | "u" | "µs" => Some(Precision::Microseconds),
            "ms" => Some(Precision::Milliseconds),
            "s" => Some(Precision::Seconds),
            _ => None,
        }
    }

    fn to_ms(self, ts: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(ts.div_euclid(1_000_000)),
            Precision::Microseconds => Some(ts.div_euclid(1_000)),
            Precision::Milliseconds => Some(ts),
            Precision::Seconds => ts.checked_mul(1_000),
        }
    }
}

/// What a request held.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    /// String fields, which have no number.
    pub strings: usize,
    pub refused: Refusals,
}

/// The samples of a body; more than `limits.max_batch_samples` stop the parse (`Err` with the
/// count so far).
pub fn decode(body: &str, precision: Precision, limits: &Limits, now_ms: i64) -> Result<Decoded, usize> {
    let mut out = Decoded::default();
    // Line numbers count every line of the body, blank and comment lines too.
    for (index, text) in split_lines(body).enumerate() {
        let line = index + 1;
        let trimmed = text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed = match parse_lines(text).next() {
            None => continue,
            Some(Ok(parsed)) => parsed,
            Some(Err(err)) => {
                out.refused.refuse(line, err.to_string());
                continue;
            }
        };
        let ts = match parsed.timestamp {
            None => now_ms,
            Some(ts) => match precision.to_ms(ts) {
                Some(ms) => ms,
                None => {
                    out.refused.refuse(line, format!("timestamp {ts} is out of range in precision {precision:?}"));
                    continue;
                }
            },
        };
        let labels: Labels = parsed
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
            .collect();
        // Shared by the line's fields.
        let labels = SharedLabels::from(labels);
        let measurement = parsed.series.measurement.as_str();
        for (field, value) in &parsed.field_set {
            let value = match value {
                FieldValue::F64(v) => *v,
                FieldValue::I64(v) => *v as f64,
                FieldValue::U64(v) => *v as f64,
                FieldValue::Boolean(b) => f64::from(u8::from(*b)),
                FieldValue::String(_) => {
                    out.strings += 1;
                    continue;
                }
            };
            let sample = Sample {
                metric: format!("{measurement}.{}", field.as_str()).into(),
                labels: labels.clone(),
                ts,
                value,
                dedupe_id: None,
            };
            match limits.check(&sample, now_ms) {
                Ok(()) => out.samples.push(sample),
                Err(error) => out.refused.refuse(line, format!("{}: {}: {}", sample.metric, error.field, error.reason)),
            }
            if out.samples.len() > limits.max_batch_samples {
                return Err(out.samples.len());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_104_400_000;

    #[test]
    fn fields_become_metrics_and_tags_labels() {
        let body = "cpu,host=web-1,cpu=cpu0 usage_idle=99.5,usage_user=0.25 1764104400000000000\n\
                    # a comment\n\n\
                    mem,host=web-1 used=1024i,free=3u,swapping=false,name=\"x\"\n";
        let d = decode(body, Precision::Nanoseconds, &Limits::default(), NOW).unwrap();
        let got: Vec<(String, f64, i64)> = d.samples.iter().map(|s| (s.metric.to_string(), s.value, s.ts)).collect();
        assert_eq!(
            got,
            [
                ("cpu.usage_idle".into(), 99.5, NOW),
                ("cpu.usage_user".into(), 0.25, NOW),
                ("mem.used".into(), 1024.0, NOW),
                ("mem.free".into(), 3.0, NOW),
                ("mem.swapping".into(), 0.0, NOW),
            ]
        );
        assert_eq!(d.samples[0].labels.get("cpu").map(String::as_str), Some("cpu0"));
        assert_eq!((d.strings, d.refused.count), (1, 0));
    }

    #[test]
    fn precision_scales_timestamps() {
        for (precision, ts) in [("s", NOW / 1000), ("ms", NOW), ("us", NOW * 1000), ("ns", NOW * 1_000_000)] {
            let body = format!("m v=1 {ts}");
            let d = decode(&body, Precision::parse(Some(precision)).unwrap(), &Limits::default(), NOW).unwrap();
            assert_eq!(d.samples[0].ts, NOW, "{precision}");
        }
        assert_eq!(Precision::parse(Some("h")), None);
        let far = format!("m v=1 {}", i64::MAX);
        let d = decode(&far, Precision::Seconds, &Limits::default(), NOW).unwrap();
        assert_eq!(d.refused.count, 1, "overflow is refused, not wrapped");
    }

    #[test]
    fn a_bad_line_is_refused_alone_and_named() {
        let body = "ok v=1\nbroken line without fields\nok v=2\nok v=NaN_is_no_number\n";
        let d = decode(body, Precision::Nanoseconds, &Limits::default(), NOW).unwrap();
        assert_eq!((d.samples.len(), d.refused.count), (2, 2));
        assert_eq!(d.refused.first.unwrap().0, 2);
        let limits = Limits { max_batch_samples: 2, ..Limits::default() };
        assert!(decode("m a=1,b=2,c=3", Precision::Nanoseconds, &limits, NOW).is_err());
    }
}
