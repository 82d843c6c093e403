//! OTLP/HTTP metrics (`POST /v1/metrics`, protobuf or JSON), with the types of the
//! `opentelemetry-proto` crate.
//!
//! Mapping, one data point at a time (the OTel metric name is the microdash metric: both allow
//! dots):
//! - labels: the resource's attributes, then the data point's (which win); non-string values
//!   are written as text (`true`, `42`, `0.5`), arrays and maps as JSON;
//! - gauge and sum: one sample of the point's value. A cumulative sum is the running total (take
//!   its rate in queries), a delta sum the increment of its interval;
//! - histogram: `{name}.count`, `{name}.sum` and `{name}.bucket` with an `le` label per bound
//!   (cumulative counts, `+Inf` = count), as Prometheus names them; min and max are not kept;
//! - exponential histogram: `{name}.count` and `{name}.sum` (its buckets are not kept);
//! - summary: `{name}.count`, `{name}.sum`, and `{name}` with a `quantile` label per quantile.
//!
//! The point's `time_unix_nano` is the timestamp (0 = the time of receipt). A point microdash
//! cannot hold is rejected alone and reported in the answer's `partial_success`, as OTLP says.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Sum, metric, number_data_point};
use prost::Message;

use crate::domain::{Labels, Limits, Sample};

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    /// Data points rejected (a point yields several samples; one bad sample rejects it).
    pub rejected: i64,
    pub first_rejection: Option<String>,
}

/// Decodes an `ExportMetricsServiceRequest`; `Err` says why the body is not one.
pub fn decode(body: &[u8], encoding: Encoding, limits: &Limits, now_ms: i64) -> Result<Decoded, String> {
    let request = match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(body)
            .map_err(|e| format!("the body is not an OTLP ExportMetricsServiceRequest (protobuf): {e}"))?,
        Encoding::Json => serde_json::from_slice::<ExportMetricsServiceRequest>(body)
            .map_err(|e| format!("the body is not an OTLP ExportMetricsServiceRequest (JSON): {e}"))?,
    };
    let mut out = Decoded::default();
    for resource_metrics in request.resource_metrics {
        let mut resource = Labels::new();
        for kv in resource_metrics.resource.map(|r| r.attributes).unwrap_or_default() {
            put(&mut resource, kv);
        }
        for scope in resource_metrics.scope_metrics {
            for m in scope.metrics {
                let Some(data) = m.data else { continue };
                let mut points: Vec<Vec<Sample>> = Vec::new();
                let at = |nanos: u64| if nanos == 0 { now_ms } else { (nanos / 1_000_000).min(i64::MAX as u64) as i64 };
                let labels_of = |attributes: Vec<KeyValue>| {
                    let mut labels = resource.clone();
                    for kv in attributes {
                        put(&mut labels, kv);
                    }
                    labels
                };
                let sample = |metric: String, labels: Labels, ts: i64, value: f64| Sample {
                    metric: metric.into(),
                    labels: labels.into(),
                    ts,
                    value,
                    dedupe_id: None,
                };
                // `{name}.count` and `{name}.sum` (when there is one) of a histogram or summary point.
                let count_and_sum = |labels: &Labels, ts: i64, count: u64, sum: Option<f64>| {
                    let mut point = vec![sample(format!("{}.count", m.name), labels.clone(), ts, count as f64)];
                    if let Some(sum) = sum {
                        point.push(sample(format!("{}.sum", m.name), labels.clone(), ts, sum));
                    }
                    point
                };
                match data {
                    // A gauge's and a sum's points are samples alike (see the module doc).
                    metric::Data::Gauge(Gauge { data_points }) | metric::Data::Sum(Sum { data_points, .. }) => {
                        for p in data_points {
                            let value = number(&p.value);
                            points.push(vec![sample(
                                m.name.clone(),
                                labels_of(p.attributes),
                                at(p.time_unix_nano),
                                value,
                            )]);
                        }
                    }
                    metric::Data::Histogram(h) => {
                        for p in h.data_points {
                            let (labels, ts) = (labels_of(p.attributes), at(p.time_unix_nano));
                            let mut point = count_and_sum(&labels, ts, p.count, p.sum);
                            let mut cumulative = 0u64;
                            for (i, count) in p.bucket_counts.iter().enumerate() {
                                cumulative += count;
                                let le =
                                    p.explicit_bounds.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
                                let mut labels = labels.clone();
                                labels.insert("le".into(), le);
                                point.push(sample(format!("{}.bucket", m.name), labels, ts, cumulative as f64));
                            }
                            points.push(point);
                        }
                    }
                    metric::Data::ExponentialHistogram(h) => {
                        for p in h.data_points {
                            let labels = labels_of(p.attributes);
                            points.push(count_and_sum(&labels, at(p.time_unix_nano), p.count, p.sum));
                        }
                    }
                    metric::Data::Summary(s) => {
                        for p in s.data_points {
                            let (labels, ts) = (labels_of(p.attributes), at(p.time_unix_nano));
                            let mut point = count_and_sum(&labels, ts, p.count, Some(p.sum));
                            for q in p.quantile_values {
                                let mut labels = labels.clone();
                                labels.insert("quantile".into(), q.quantile.to_string());
                                point.push(sample(m.name.clone(), labels, ts, q.value));
                            }
                            points.push(point);
                        }
                    }
                }
                for point in points {
                    match point.iter().find_map(|s| limits.check(s, now_ms).err().map(|e| (s.metric.clone(), e))) {
                        None => out.samples.extend(point),
                        Some((name, error)) => {
                            out.rejected += 1;
                            out.first_rejection
                                .get_or_insert_with(|| format!("{name}: {}: {}", error.field, error.reason));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn number(value: &Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => *v,
        Some(number_data_point::Value::AsInt(v)) => *v as f64,
        None => f64::NAN,
    }
}

fn put(labels: &mut Labels, kv: KeyValue) {
    if let Some(text) = kv.value.and_then(text_of) {
        labels.insert(kv.key, text);
    }
}

fn text_of(value: AnyValue) -> Option<String> {
    Some(match value.value? {
        any_value::Value::StringValue(s) => s,
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(b) => hex::encode(b),
        any_value::Value::ArrayValue(a) => {
            serde_json::to_string(&a.values.into_iter().filter_map(text_of).collect::<Vec<_>>()).ok()?
        }
        any_value::Value::KvlistValue(kv) => serde_json::to_string(
            &kv.values
                .into_iter()
                .filter_map(|kv| Some((kv.key, text_of(kv.value?)?)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_104_400_000;

    #[test]
    fn gauges_sums_histograms_and_summaries_become_series() {
        let ns = (NOW as u64) * 1_000_000;
        let json = serde_json::json!({"resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
            "scopeMetrics": [{"metrics": [
                {"name": "queue.depth", "gauge": {"dataPoints": [{"asInt": 7, "timeUnixNano": ns.to_string(),
                    "attributes": [{"key": "queue", "value": {"stringValue": "a"}}]}]}},
                {"name": "requests", "sum": {"aggregationTemporality": 2, "isMonotonic": true,
                    "dataPoints": [{"asDouble": 12.5, "timeUnixNano": ns.to_string()}]}},
                {"name": "latency", "histogram": {"aggregationTemporality": 2, "dataPoints": [{
                    "timeUnixNano": ns.to_string(), "count": 5, "sum": 1.5,
                    "bucketCounts": [1, 3, 1], "explicitBounds": [0.1, 0.5]}]}}
            ]}]
        }]});
        let d = decode(json.to_string().as_bytes(), Encoding::Json, &Limits::default(), NOW).unwrap();
        assert_eq!((d.rejected, d.first_rejection.as_deref()), (0, None));
        // The same request as protobuf, with a summary (built as the SDKs do), decodes the same.
        let mut request: ExportMetricsServiceRequest = serde_json::from_value(json).unwrap();
        use opentelemetry_proto::tonic::metrics::v1::{Metric, Summary, SummaryDataPoint, summary_data_point};
        request.resource_metrics[0].scope_metrics[0].metrics.push(Metric {
            name: "size".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: ns,
                    count: 2,
                    sum: 30.0,
                    quantile_values: vec![summary_data_point::ValueAtQuantile { quantile: 0.5, value: 10.0 }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        });
        let p = decode(&request.encode_to_vec(), Encoding::Protobuf, &Limits::default(), NOW).unwrap();
        assert_eq!(p.samples[..d.samples.len()], d.samples[..]);
        let got: Vec<(String, Option<String>, f64)> = p
            .samples
            .iter()
            .map(|s| (s.metric.to_string(), s.labels.get("le").or(s.labels.get("quantile")).cloned(), s.value))
            .collect();
        let s = |m: &str, l: Option<&str>, v: f64| (m.to_string(), l.map(str::to_string), v);
        assert_eq!(
            got,
            [
                s("queue.depth", None, 7.0),
                s("requests", None, 12.5),
                s("latency.count", None, 5.0),
                s("latency.sum", None, 1.5),
                s("latency.bucket", Some("0.1"), 1.0),
                s("latency.bucket", Some("0.5"), 4.0),
                s("latency.bucket", Some("+Inf"), 5.0),
                s("size.count", None, 2.0),
                s("size.sum", None, 30.0),
                s("size", Some("0.5"), 10.0),
            ]
        );
        assert!(p.samples.iter().all(|s| s.ts == NOW && s.labels["service.name"] == "shop"));
        assert_eq!(p.samples[0].labels["queue"], "a");
    }

    #[test]
    fn a_point_microdash_cannot_hold_is_rejected_alone() {
        let json = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "ok", "gauge": {"dataPoints": [{"asDouble": 1.0}]}},
            {"name": "bad name!", "gauge": {"dataPoints": [{"asDouble": 1.0}]}},
            {"name": "empty", "gauge": {"dataPoints": [{}]}}
        ]}]}]});
        let d = decode(json.to_string().as_bytes(), Encoding::Json, &Limits::default(), NOW).unwrap();
        assert_eq!((d.samples.len(), d.rejected), (1, 2));
        assert!(d.first_rejection.unwrap().starts_with("bad name!: metric"));
        assert!(decode(b"\xff\xff", Encoding::Protobuf, &Limits::default(), NOW).is_err());
        assert!(decode(b"[]", Encoding::Json, &Limits::default(), NOW).is_err());
    }
}
