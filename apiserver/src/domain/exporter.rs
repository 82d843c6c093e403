//! An exporter (issue 18, item 3): a tenant's push of its latest samples to an OTLP/HTTP metrics
//! receiver (an OpenTelemetry Collector, Grafana Alloy, a vendor's OTLP endpoint) every
//! `interval`. Pure: the spec, its checks and the OTLP request; `exporters.rs` runs them.

use std::collections::BTreeMap;
use std::time::Duration;

use microdash_model::FieldError;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Labels;
use crate::domain::promql::Selector;

/// Shortest and longest interval between two pushes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_HEADERS: usize = 16;
const MAX_SELECTORS: usize = 16;

/// What a tenant admin configures (`PUT /api/v1/exporters/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExporterSpec {
    /// The receiver's OTLP/HTTP metrics URL, e.g. `https://collector:4318/v1/metrics`.
    pub endpoint: String,
    /// Headers sent with every push (the receiver's credentials); never shown back.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How often the new samples are pushed: `1s` to `1h`; default `30s`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Prometheus series selectors of what is pushed (`cpu_usage{host=~"web-.*"}`); default all.
    #[serde(default, rename = "match")]
    pub selectors: Vec<String>,
}

fn default_interval() -> String {
    "30s".into()
}

/// A spec that passed its checks, ready to run.
#[derive(Debug, Clone)]
pub struct Checked {
    pub endpoint: url::Url,
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    pub interval: Duration,
    pub selectors: Vec<Selector>,
}

impl ExporterSpec {
    /// Checks every field; every mistake is named.
    pub fn check(&self) -> Result<Checked, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut error = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
        let endpoint = match url::Url::parse(&self.endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
            Ok(_) => {
                error("endpoint", "must be an http:// or https:// URL with a host".into());
                None
            }
            Err(e) => {
                error("endpoint", format!("is not a URL: {e}"));
                None
            }
        };
        if self.headers.len() > MAX_HEADERS {
            error("headers", format!("at most {MAX_HEADERS} headers"));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            match (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(mut v)) if n != reqwest::header::CONTENT_TYPE && n != reqwest::header::CONTENT_LENGTH => {
                    v.set_sensitive(true);
                    headers.push((n, v));
                }
                (Ok(_), Ok(_)) => error(&format!("headers.{name}"), "is set by microdash".into()),
                (Err(_), _) => error(&format!("headers.{name}"), "is not a valid header name".into()),
                (_, Err(_)) => error(&format!("headers.{name}"), "has a value that cannot be a header value".into()),
            }
        }
        let interval = match humantime::parse_duration(&self.interval) {
            Ok(d) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) => Some(d),
            _ => {
                error("interval", format!("{:?} must be a duration from 1s to 1h, like 30s", self.interval));
                None
            }
        };
        if self.selectors.len() > MAX_SELECTORS {
            error("match", format!("at most {MAX_SELECTORS} selectors"));
        }
        let mut selectors = Vec::new();
        for (i, text) in self.selectors.iter().enumerate() {
            match Selector::parse(text) {
                Ok(s) => selectors.push(s),
                Err(e) => error(&format!("match[{i}]"), e),
            }
        }
        if selectors.is_empty() && errors.is_empty() {
            selectors.push(Selector::parse(r#"{__name__=~".+"}"#).expect("a valid selector"));
        }
        match (endpoint, interval) {
            (Some(endpoint), Some(interval)) if errors.is_empty() => {
                Ok(Checked { endpoint, headers, interval, selectors })
            }
            _ => Err(errors),
        }
    }
}

/// One sample to push: its metric (microdash's name; OTLP names may hold dots), labels, time
/// and value.
pub struct Point {
    pub metric: String,
    pub labels: Labels,
    pub ts: i64,
    pub value: f64,
}

/// The OTLP request of a push: one gauge per metric, a data point per sample with its labels
/// as attributes; the resource says `service.name=microdash` and the tenant.
pub fn otlp_request(tenant: &str, points: Vec<Point>) -> ExportMetricsServiceRequest {
    let string = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
    };
    let mut gauges: BTreeMap<String, Vec<NumberDataPoint>> = BTreeMap::new();
    for p in points {
        gauges.entry(p.metric).or_default().push(NumberDataPoint {
            attributes: p.labels.iter().map(|(k, v)| string(k, v)).collect(),
            time_unix_nano: u64::try_from(p.ts).unwrap_or(0).saturating_mul(1_000_000),
            value: Some(number_data_point::Value::AsDouble(p.value)),
            ..Default::default()
        });
    }
    let metrics = gauges
        .into_iter()
        .map(|(name, data_points)| Metric {
            name,
            data: Some(metric::Data::Gauge(Gauge { data_points })),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string("service.name", "microdash"), string("microdash.tenant", tenant)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "microdash".into(), ..Default::default() }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ExporterSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_spec_is_checked_field_by_field() {
        let ok = spec(
            serde_json::json!({"endpoint": "http://collector:4318/v1/metrics", "headers": {"Authorization": "Bearer x"}}),
        );
        let checked = ok.check().unwrap();
        assert_eq!(checked.interval, Duration::from_secs(30));
        assert_eq!(checked.selectors.len(), 1, "everything by default");
        let bad = spec(serde_json::json!({
            "endpoint": "ftp://x", "headers": {"bad name": "v", "Content-Type": "x"}, "interval": "0s",
            "match": ["rate(x[5m])"]
        }));
        let fields: Vec<String> = bad.check().unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["endpoint", "headers.Content-Type", "headers.bad name", "interval", "match[0]"]);
    }

    #[test]
    fn the_request_has_a_gauge_per_metric_and_the_tenant_on_its_resource() {
        let point = |metric: &str, host: &str, value: f64| Point {
            metric: metric.into(),
            labels: [("host".to_string(), host.to_string())].into(),
            ts: 1_700_000_000_123,
            value,
        };
        let request = otlp_request(
            "acme",
            vec![point("cpu.usage", "a", 0.5), point("cpu.usage", "b", 0.7), point("mem", "a", 1.0)],
        );
        let resource = &request.resource_metrics[0];
        let attrs: Vec<&str> =
            resource.resource.as_ref().unwrap().attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(attrs, ["service.name", "microdash.tenant"]);
        let metrics = &resource.scope_metrics[0].metrics;
        assert_eq!(metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["cpu.usage", "mem"]);
        let Some(metric::Data::Gauge(gauge)) = &metrics[0].data else { panic!("a gauge") };
        assert_eq!(gauge.data_points.len(), 2);
        assert_eq!(gauge.data_points[0].time_unix_nano, 1_700_000_000_123_000_000);
    }
}
