//! Prometheus remote_write 1.0: a snappy-compressed (block format) protobuf `WriteRequest`.
//!
//! Mapping: the `__name__` label is the metric (Prometheus names are microdash names as they
//! are; a name microdash cannot hold, such as one starting with `:`, refuses that series), every
//! other label is a label, each sample a sample (timestamps are milliseconds on both sides).
//! Staleness markers (the NaN Prometheus writes when a series disappears) carry no value and are
//! skipped; metadata, exemplars and native histograms are not stored (counted, not refused).
//!
//! Prometheus drops a batch answered with a 4xx and retries one answered with a 5xx or 429, so
//! a series that cannot be stored must not cost the rest of the batch: the valid samples are
//! stored and the answer names the first refused one (`Decoded::refused`).

use prost::Message;

use crate::domain::sample::SharedLabels;
use crate::domain::{Labels, Limits, Sample, SampleError};

/// `prometheus.WriteRequest` (remote.proto). Fields 3 (metadata) are skipped by prost.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (types.proto); exemplars (3) and histograms (4) are skipped.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PromSample>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Skipped>,
}

/// A message whose content is not read (native histograms): only counted.
#[derive(Clone, PartialEq, Message)]
pub struct Skipped {}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PromSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The bit pattern of Prometheus' staleness marker.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Why a remote_write body could not be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not snappy-compressed (block format, as remote_write sends it): {0}")]
    Snappy(String),
    #[error("the body decompresses to {size} bytes; the limit is {limit} (max_body_bytes × 8)")]
    TooLarge { size: usize, limit: usize },
    #[error("the body is not a remote_write WriteRequest (protobuf): {0}")]
    Protobuf(String),
    #[error("the request has {count} samples; the limit is {limit} (max_batch_samples)")]
    BatchTooLarge { count: usize, limit: usize },
}

/// What a request held.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    /// Staleness markers, skipped.
    pub stale: usize,
    /// Native histogram samples, not stored.
    pub histograms: usize,
    /// Samples refused, and the first reason (with the series it belongs to).
    pub refused: usize,
    pub first_refusal: Option<(String, SampleError)>,
}

/// Decompresses and decodes a remote_write body; the decompressed size is limited to
/// `max_decompressed` bytes before anything is allocated for it.
pub fn decode(body: &[u8], max_decompressed: usize, limits: &Limits, now_ms: i64) -> Result<Decoded, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > max_decompressed {
        return Err(DecodeError::TooLarge { size, limit: max_decompressed });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    let request = WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let count: usize = request.timeseries.iter().map(|s| s.samples.len()).sum();
    if count > limits.max_batch_samples {
        return Err(DecodeError::BatchTooLarge { count, limit: limits.max_batch_samples });
    }
    let mut out = Decoded { samples: Vec::with_capacity(count), ..Decoded::default() };
    for series in request.timeseries {
        out.histograms += series.histograms.len();
        let mut metric = None;
        let mut labels = Labels::new();
        for label in series.labels {
            if label.name == "__name__" {
                metric = Some(label.value);
            } else {
                labels.insert(label.name, label.value);
            }
        }
        let Some(metric) = metric else {
            out.refused += series.samples.len();
            out.first_refusal
                .get_or_insert_with(|| (series_text("", &labels), SampleError::new("__name__", "is required")));
            continue;
        };
        // Shared by the series' samples: a clone per sample copies pointers.
        let (metric, labels): (std::sync::Arc<str>, SharedLabels) = (metric.into(), labels.into());
        for sample in series.samples {
            if sample.value.to_bits() == STALE_NAN {
                out.stale += 1;
                continue;
            }
            let sample = Sample {
                metric: metric.clone(),
                labels: labels.clone(),
                ts: sample.timestamp,
                value: sample.value,
                dedupe_id: None,
            };
            match limits.check(&sample, now_ms) {
                Ok(()) => out.samples.push(sample),
                Err(error) => {
                    out.refused += 1;
                    out.first_refusal.get_or_insert_with(|| (series_text(&metric, &labels), error));
                }
            }
        }
    }
    Ok(out)
}

/// `metric{k="v",…}`.
fn series_text(metric: &str, labels: &Labels) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{metric}{{{}}}", labels.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_104_400_000;

    fn body(series: Vec<TimeSeries>) -> Vec<u8> {
        let raw = WriteRequest { timeseries: series }.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: samples.iter().map(|&(value, timestamp)| PromSample { value, timestamp }).collect(),
            histograms: vec![],
        }
    }

    #[test]
    fn series_become_samples_and_staleness_markers_are_skipped() {
        let stale = f64::from_bits(STALE_NAN);
        let b = body(vec![
            series(
                &[("__name__", "node_load1"), ("instance", "a:9100"), ("job", "node")],
                &[(0.5, NOW), (stale, NOW + 1)],
            ),
            series(&[("__name__", "up"), ("job", "node")], &[(1.0, NOW)]),
        ]);
        let d = decode(&b, 1 << 20, &Limits::default(), NOW).unwrap();
        assert_eq!((d.samples.len(), d.stale, d.refused), (2, 1, 0));
        assert_eq!(&*d.samples[0].metric, "node_load1");
        assert_eq!(d.samples[0].labels.get("instance").map(String::as_str), Some("a:9100"));
        assert!(!d.samples[0].labels.contains_key("__name__"));
        assert_eq!((d.samples[0].ts, d.samples[0].value), (NOW, 0.5));
    }

    #[test]
    fn a_bad_series_is_refused_alone() {
        let b = body(vec![
            series(&[("job", "x")], &[(1.0, NOW)]),
            series(&[("__name__", ":recorded")], &[(1.0, NOW)]),
            series(&[("__name__", "ok")], &[(1.0, NOW), (f64::INFINITY, NOW), (2.0, NOW + 3_600_000)]),
        ]);
        let d = decode(&b, 1 << 20, &Limits::default(), NOW).unwrap();
        assert_eq!((d.samples.len(), d.refused), (1, 4));
        let (series, error) = d.first_refusal.unwrap();
        assert_eq!((series.as_str(), error.field.as_str()), (r#"{job="x"}"#, "__name__"));
    }

    #[test]
    fn garbage_and_bombs_are_refused_before_they_cost_memory() {
        assert!(matches!(decode(b"not snappy at all", 1 << 20, &Limits::default(), NOW), Err(DecodeError::Snappy(_))));
        let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(decode(&not_protobuf, 1 << 20, &Limits::default(), NOW), Err(DecodeError::Protobuf(_))));
        let zeros = snap::raw::Encoder::new().compress_vec(&vec![0u8; 4 << 20]).unwrap();
        assert!(zeros.len() < 1 << 20, "compresses well");
        assert_eq!(
            decode(&zeros, 1 << 20, &Limits::default(), NOW).unwrap_err(),
            DecodeError::TooLarge { size: 4 << 20, limit: 1 << 20 }
        );
        let many = body(vec![series(&[("__name__", "m")], &[(1.0, NOW); 3])]);
        let limits = Limits { max_batch_samples: 2, ..Limits::default() };
        assert_eq!(
            decode(&many, 1 << 20, &limits, NOW).unwrap_err(),
            DecodeError::BatchTooLarge { count: 3, limit: 2 }
        );
    }
}
