//! A sample and the rules it must follow before it is accepted.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::Serialize;

/// Label set of a series. Sorted, so its JSON form is canonical and identifies the series.
pub type Labels = BTreeMap<String, String>;

/// A sample's labels, shared: the samples of one series in a request hold one copy (the bulk
/// parser interns them), so a clone (the live hub's, the alert engine's) allocates nothing.
/// Reads see a `Labels`; a change copies them first if they are shared (`Arc::make_mut`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SharedLabels(Arc<Labels>);

impl SharedLabels {
    /// The address of the shared set: equal for clones of one interned set (the key of the
    /// write path's per-group memo; equal sets at different addresses are told apart by value).
    pub fn ptr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl Deref for SharedLabels {
    type Target = Labels;
    fn deref(&self) -> &Labels {
        &self.0
    }
}

impl DerefMut for SharedLabels {
    fn deref_mut(&mut self) -> &mut Labels {
        Arc::make_mut(&mut self.0)
    }
}

impl From<Labels> for SharedLabels {
    fn from(labels: Labels) -> Self {
        SharedLabels(Arc::new(labels))
    }
}

impl std::fmt::Debug for SharedLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A validated sample, ready to be stored.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Sample {
    /// Shared like the labels (`Arc<str>`: a clone allocates nothing).
    pub metric: Arc<str>,
    pub labels: SharedLabels,
    /// Unix milliseconds.
    pub ts: i64,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedupe_id: Option<String>,
}

/// Limits on what one sample and one request may carry. Configured in `Config`, enforced here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_metric_name_len: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    pub max_labels: usize,
    pub max_dedupe_id_len: usize,
    pub max_batch_samples: usize,
    /// How far in the future a timestamp may be, to catch clocks and unit mistakes (s vs ms).
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_metric_name_len: 200,
            max_label_name_len: 100,
            max_label_value_len: 1024,
            max_labels: 32,
            max_dedupe_id_len: 128,
            max_batch_samples: 50_000,
            max_future_ms: 10 * 60 * 1000,
        }
    }
}

/// Why one sample was refused: the field and the reason, for a problem+json answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SampleError {
    pub field: String,
    pub reason: String,
}

impl SampleError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// A metric name or label key: `[a-zA-Z_][a-zA-Z0-9_.:-]*` (one definition, shared with rule specs).
pub use microdash_model::is_valid_name;

/// Parses an RFC 3339 timestamp into Unix milliseconds (one definition, shared with silences).
pub use microdash_model::time::parse_rfc3339_ms;

impl Limits {
    /// Checks a sample assembled from input. `now_ms` is the time of receipt.
    pub fn check(&self, sample: &Sample, now_ms: i64) -> Result<(), SampleError> {
        self.check_metric(&sample.metric)?;
        self.check_point(sample.ts, sample.value, now_ms)?;
        self.check_labels(&sample.labels)?;
        self.check_dedupe_id(sample.dedupe_id.as_deref())
    }

    /// The metric name's rules (the first of `check`'s). The bulk parser checks each distinct
    /// name of a request once.
    pub fn check_metric(&self, metric: &str) -> Result<(), SampleError> {
        if metric.is_empty() {
            return Err(SampleError::new("metric", "must not be empty"));
        }
        if metric.len() > self.max_metric_name_len {
            return Err(SampleError::new(
                "metric",
                format!("is {} bytes long; the limit is {}", metric.len(), self.max_metric_name_len),
            ));
        }
        if !is_valid_name(metric) {
            return Err(SampleError::new("metric", format!("{metric:?} must match [a-zA-Z_][a-zA-Z0-9_.:-]*")));
        }
        Ok(())
    }

    /// The value and the timestamp (checked after the metric name, before the labels).
    pub fn check_point(&self, ts: i64, value: f64, now_ms: i64) -> Result<(), SampleError> {
        if !value.is_finite() {
            return Err(SampleError::new("value", "must be a finite number"));
        }
        if ts < 0 {
            return Err(SampleError::new("ts", "must not be before 1970-01-01 (Unix milliseconds ≥ 0)"));
        }
        if ts > now_ms.saturating_add(self.max_future_ms) {
            return Err(SampleError::new(
                "ts",
                format!(
                    "{ts} is more than {}s in the future; timestamps are Unix milliseconds, not seconds or microseconds",
                    self.max_future_ms / 1000
                ),
            ));
        }
        Ok(())
    }

    /// The label set's rules. The bulk parser checks each distinct label set of a request once.
    pub fn check_labels(&self, labels: &Labels) -> Result<(), SampleError> {
        if labels.len() > self.max_labels {
            return Err(SampleError::new(
                "labels",
                format!("has {} labels; the limit is {}", labels.len(), self.max_labels),
            ));
        }
        for (key, value) in labels {
            let field = || format!("labels.{key}");
            if key.len() > self.max_label_name_len {
                return Err(SampleError::new(
                    field(),
                    format!("label name is {} bytes long; the limit is {}", key.len(), self.max_label_name_len),
                ));
            }
            if !is_valid_name(key) {
                return Err(SampleError::new(
                    field(),
                    format!("label name {key:?} must match [a-zA-Z_][a-zA-Z0-9_.:-]*"),
                ));
            }
            if value.len() > self.max_label_value_len {
                return Err(SampleError::new(
                    field(),
                    format!("label value is {} bytes long; the limit is {}", value.len(), self.max_label_value_len),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(SampleError::new(field(), "label value must not contain control characters"));
            }
        }
        Ok(())
    }

    pub fn check_dedupe_id(&self, id: Option<&str>) -> Result<(), SampleError> {
        if let Some(id) = id
            && (id.is_empty() || id.len() > self.max_dedupe_id_len)
        {
            return Err(SampleError::new("dedupe_id", format!("must be 1 to {} bytes long", self.max_dedupe_id_len)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            metric: "cpu.usage".into(),
            labels: Labels::from([("host".into(), "web-1".into())]).into(),
            ts: 1_764_104_400_000,
            value: 42.5,
            dedupe_id: None,
        }
    }

    const NOW: i64 = 1_764_104_400_000;

    #[test]
    fn a_plain_sample_passes() {
        Limits::default().check(&sample(), NOW).unwrap();
    }

    #[test]
    fn names_follow_the_documented_pattern() {
        for good in ["cpu", "_x", "a.b:c-d_e9", "Z"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "9a", ".a", "a b", "a/b", "é", "a=b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn each_rule_names_its_field() {
        let limits = Limits { max_labels: 2, ..Limits::default() };
        type Mutation = Box<dyn Fn(&mut Sample)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.metric = "".into()), "metric"),
            (Box::new(|s| s.metric = "1cpu".into()), "metric"),
            (Box::new(|s| s.metric = "a".repeat(201).into()), "metric"),
            (Box::new(|s| s.value = f64::NAN), "value"),
            (Box::new(|s| s.value = f64::INFINITY), "value"),
            (Box::new(|s| s.ts = -1), "ts"),
            (Box::new(|s| s.ts = NOW + 3_600_000), "ts"),
            (
                Box::new(|s| {
                    s.labels.insert("a".into(), "1".into());
                    s.labels.insert("b".into(), "1".into());
                }),
                "labels",
            ),
            (
                Box::new(|s| {
                    s.labels.insert("bad key".into(), "1".into());
                }),
                "labels.bad key",
            ),
            (
                Box::new(|s| {
                    s.labels.insert("k".into(), "x".repeat(1025));
                }),
                "labels.k",
            ),
            (
                Box::new(|s| {
                    s.labels.insert("k".into(), "a\u{0}b".into());
                }),
                "labels.k",
            ),
            (Box::new(|s| s.dedupe_id = Some(String::new())), "dedupe_id"),
        ];
        for (mutate, field) in cases {
            let mut s = sample();
            mutate(&mut s);
            let err = limits.check(&s, NOW).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn unicode_label_values_are_fine() {
        let mut s = sample();
        s.labels.insert("city".into(), "Zürich 東京 🚀".into());
        Limits::default().check(&s, NOW).unwrap();
    }

    #[test]
    fn rfc3339_timestamps_parse_to_milliseconds() {
        assert_eq!(parse_rfc3339_ms("2025-11-25T21:00:00Z"), Some(1_764_104_400_000));
        assert_eq!(parse_rfc3339_ms("2025-11-25T22:00:00.250+01:00"), Some(1_764_104_400_250));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
