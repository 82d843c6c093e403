//! Scraping Prometheus and OpenMetrics endpoints (`--scrape URL`, the `scrape` file key): at
//! every collection each target is fetched at the same time as the host is read, parsed with
//! `openmetrics-parser`, and its samples join the collection's batch, so they go through the
//! same spool and dedupe ids as the host's.
//!
//! A sample keeps its exposition name and labels, and gets `host` (the agent's) and `instance`
//! (the target's `host:port`), plus the target's own labels (a pod's `namespace`, `pod`,
//! `container`). An exposed label that collides with one of those is kept as
//! `exported_<name>`, as Prometheus does without `honor_labels`. Histograms and summaries are
//! flattened the way the text format writes them (`_bucket{le}`, `{quantile}`, `_sum`,
//! `_count`). Counters keep their names: OpenMetrics counters get their `_total` back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openmetrics_parser::{MetricNumber, OpenMetricsValue, PrometheusValue};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::sample::is_valid_name;

/// What the agent asks for: OpenMetrics first, then the Prometheus text format.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// Bodies beyond this are refused: a misconfigured target must not eat the agent's memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: reqwest::Url,
    /// Added to each of its samples (`namespace`, `pod`, `container` for a discovered pod).
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// `key` names the flag or file key in the error.
    pub fn parse(key: &str, text: &str) -> Result<Self> {
        let url = reqwest::Url::parse(text).map_err(|e| Error::config(format!("{key} `{text}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::config(format!("{key} `{text}`: expected http://host:port/path or https://…")));
        }
        Ok(Self { url, labels: BTreeMap::new() })
    }

    /// `host:port`, the `instance` label (an IPv6 host keeps its brackets).
    pub fn instance(&self) -> String {
        match (self.url.host_str(), self.url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => self.url.to_string(),
        }
    }
}

/// One sample of a target, before the agent's `host` label and dedupe id.
#[derive(Debug, Clone, PartialEq)]
pub struct Scraped {
    pub metric: String,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
}

pub struct Scraper {
    http: reqwest::Client,
    timeout: Duration,
}

impl Scraper {
    /// `timeout`: per target and scrape; at most the collection interval.
    pub fn new(timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("microdash-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, timeout })
    }

    /// Scrapes every target concurrently. A target that fails gives only its `scrape.up` 0.
    pub async fn scrape_all(&self, targets: &[Target]) -> Vec<Scraped> {
        let results = futures_util::future::join_all(targets.iter().map(|t| self.scrape(t))).await;
        results.into_iter().flatten().collect()
    }

    async fn scrape(&self, target: &Target) -> Vec<Scraped> {
        let started = Instant::now();
        let instance = target.instance();
        let mut labels = target.labels.clone();
        labels.insert("instance".into(), instance.clone());
        let mut out = match self.fetch(target).await {
            Ok((content_type, body)) => match parse(&content_type, &body, &labels) {
                Ok(samples) => samples,
                Err(error) => {
                    warn!(target = %target.url, %error, "Cannot parse a scrape.");
                    return status(&labels, false, 0, started.elapsed());
                }
            },
            Err(error) => {
                debug!(target = %target.url, %error, timeout = ?self.timeout, "Scrape failed.");
                return status(&labels, false, 0, started.elapsed());
            }
        };
        let count = out.len();
        out.extend(status(&labels, true, count, started.elapsed()));
        out
    }

    async fn fetch(&self, target: &Target) -> Result<(String, String), String> {
        let response = self
            .http
            .get(target.url.clone())
            .header(reqwest::header::ACCEPT, ACCEPT)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        if response.content_length().is_some_and(|n| n as usize > MAX_BODY_BYTES) {
            return Err(format!("body larger than {MAX_BODY_BYTES} bytes"));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain")
            .to_owned();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BODY_BYTES {
            return Err(format!("body larger than {MAX_BODY_BYTES} bytes"));
        }
        Ok((content_type, body))
    }
}

/// `scrape.up` (1 or 0), `scrape.samples` and `scrape.duration_seconds` of one target.
fn status(labels: &BTreeMap<String, String>, up: bool, samples: usize, took: Duration) -> Vec<Scraped> {
    let sample = |metric: &str, value: f64| Scraped { metric: metric.into(), value, labels: labels.clone() };
    vec![
        sample("scrape.up", f64::from(u8::from(up))),
        sample("scrape.samples", samples as f64),
        sample("scrape.duration_seconds", took.as_secs_f64()),
    ]
}

/// Parses an exposition (OpenMetrics when the content type says so, else the Prometheus text
/// format) into samples carrying `target_labels`.
pub fn parse(content_type: &str, body: &str, target_labels: &BTreeMap<String, String>) -> Result<Vec<Scraped>, String> {
    let mut out = Vec::new();
    let mut emit =
        |name: String, label_names: &[String], label_values: &[String], extra: Option<(&str, f64)>, value: f64| {
            if !is_valid_name(&name) || !value.is_finite() {
                return;
            }
            let mut labels = target_labels.clone();
            for (key, value) in label_names.iter().zip(label_values) {
                let key = if labels.contains_key(key.as_str()) || key == "host" {
                    format!("exported_{key}")
                } else {
                    key.clone()
                };
                labels.insert(key, value.clone());
            }
            if let Some((key, bound)) = extra {
                labels.insert(key.to_owned(), format_bound(bound));
            }
            out.push(Scraped { metric: name, value, labels });
        };
    if content_type.starts_with("application/openmetrics-text") {
        let exposition = openmetrics_parser::openmetrics::parse_openmetrics(body).map_err(|e| format!("{e:?}"))?;
        for family in exposition.families.values() {
            let name = &family.family_name;
            for metric in family.iter_samples() {
                let values = &label_values(metric.get_labelset());
                let names = &family.get_label_names();
                match &metric.value {
                    OpenMetricsValue::Unknown(n) | OpenMetricsValue::Gauge(n) | OpenMetricsValue::StateSet(n) => {
                        emit(name.clone(), names, values, None, number(n))
                    }
                    OpenMetricsValue::Counter(c) => {
                        emit(format!("{name}_total"), names, values, None, number(&c.value))
                    }
                    OpenMetricsValue::Histogram(h) | OpenMetricsValue::GaugeHistogram(h) => {
                        for bucket in &h.buckets {
                            emit(
                                format!("{name}_bucket"),
                                names,
                                values,
                                Some(("le", bucket.upper_bound)),
                                number(&bucket.count),
                            );
                        }
                        if let Some(sum) = &h.sum {
                            emit(format!("{name}_sum"), names, values, None, number(sum));
                        }
                        if let Some(count) = h.count {
                            emit(format!("{name}_count"), names, values, None, count as f64);
                        }
                    }
                    OpenMetricsValue::Summary(s) => {
                        for q in &s.quantiles {
                            emit(name.clone(), names, values, Some(("quantile", q.quantile)), number(&q.value));
                        }
                        if let Some(sum) = &s.sum {
                            emit(format!("{name}_sum"), names, values, None, number(sum));
                        }
                        if let Some(count) = s.count {
                            emit(format!("{name}_count"), names, values, None, count as f64);
                        }
                    }
                    OpenMetricsValue::Info => emit(format!("{name}_info"), names, values, None, 1.0),
                }
            }
        }
    } else {
        let exposition = openmetrics_parser::prometheus::parse_prometheus(body).map_err(|e| format!("{e:?}"))?;
        for family in exposition.families.values() {
            let name = &family.family_name;
            for metric in family.iter_samples() {
                let values = &label_values(metric.get_labelset());
                let names = &family.get_label_names();
                match &metric.value {
                    PrometheusValue::Unknown(n) | PrometheusValue::Gauge(n) => {
                        emit(name.clone(), names, values, None, number(n))
                    }
                    PrometheusValue::Counter(c) => emit(name.clone(), names, values, None, number(&c.value)),
                    PrometheusValue::Histogram(h) => {
                        for bucket in &h.buckets {
                            emit(
                                format!("{name}_bucket"),
                                names,
                                values,
                                Some(("le", bucket.upper_bound)),
                                number(&bucket.count),
                            );
                        }
                        if let Some(sum) = &h.sum {
                            emit(format!("{name}_sum"), names, values, None, number(sum));
                        }
                        if let Some(count) = h.count {
                            emit(format!("{name}_count"), names, values, None, count as f64);
                        }
                    }
                    PrometheusValue::Summary(s) => {
                        for q in &s.quantiles {
                            emit(name.clone(), names, values, Some(("quantile", q.quantile)), number(&q.value));
                        }
                        if let Some(sum) = &s.sum {
                            emit(format!("{name}_sum"), names, values, None, number(sum));
                        }
                        if let Some(count) = s.count {
                            emit(format!("{name}_count"), names, values, None, count as f64);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn label_values(set: Result<openmetrics_parser::LabelSet<'_>, openmetrics_parser::ParseError>) -> Vec<String> {
    set.map(|set| set.iter_values().cloned().collect()).unwrap_or_default()
}

fn number(n: &MetricNumber) -> f64 {
    n.as_f64()
}

/// `le` and `quantile` as the text format writes them: `+Inf`, `0.5`, `1`.
fn format_bound(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".into()
    } else if bound == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(samples: &'a [Scraped], metric: &str, labels: &[(&str, &str)]) -> &'a Scraped {
        samples
            .iter()
            .find(|s| {
                s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in {samples:#?}"))
    }

    fn target_labels() -> BTreeMap<String, String> {
        BTreeMap::from([("instance".to_owned(), "10.0.0.7:9100".to_owned()), ("pod".to_owned(), "web-0".to_owned())])
    }

    #[test]
    fn the_prometheus_text_format_keeps_names_and_labels_and_flattens_histograms() {
        let body = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="post",path="/a,b",code="200"} 1027
http_requests_total{method="get",path="/",code="200"} 3
# TYPE federated gauge
federated{instance="inner",host="h1"} 3
# TYPE temperature gauge
temperature 21.5
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 5
latency_seconds_bucket{le="+Inf"} 9
latency_seconds_sum 1.5
latency_seconds_count 9
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds_sum 4
rpc_seconds_count 20
"#;
        let samples = parse("text/plain; version=0.0.4", body, &target_labels()).unwrap();
        let post = find(&samples, "http_requests_total", &[("method", "post")]);
        assert_eq!(post.value, 1027.0);
        assert_eq!(post.labels["path"], "/a,b", "a comma inside a value");
        assert_eq!(post.labels["instance"], "10.0.0.7:9100");
        assert_eq!(post.labels["pod"], "web-0");
        assert_eq!(find(&samples, "http_requests_total", &[("method", "get")]).value, 3.0);
        let get = find(&samples, "federated", &[]);
        assert_eq!(get.labels["instance"], "10.0.0.7:9100");
        assert_eq!(get.labels["exported_instance"], "inner");
        assert_eq!(get.labels["exported_host"], "h1");
        assert!(!get.labels.contains_key("host"), "the agent sets host");
        assert_eq!(find(&samples, "temperature", &[]).value, 21.5);
        assert_eq!(find(&samples, "latency_seconds_bucket", &[("le", "0.1")]).value, 5.0);
        assert_eq!(find(&samples, "latency_seconds_bucket", &[("le", "+Inf")]).value, 9.0);
        assert_eq!(find(&samples, "latency_seconds_sum", &[]).value, 1.5);
        assert_eq!(find(&samples, "latency_seconds_count", &[]).value, 9.0);
        assert_eq!(find(&samples, "rpc_seconds", &[("quantile", "0.5")]).value, 0.2);
        assert_eq!(find(&samples, "rpc_seconds_count", &[]).value, 20.0);
        assert_eq!(samples.len(), 11);
    }

    #[test]
    fn openmetrics_counters_get_their_total_back() {
        let body = "# TYPE jobs counter\njobs_total{queue=\"q\"} 7\n# TYPE up gauge\nup 1\n# EOF\n";
        let samples = parse("application/openmetrics-text; version=1.0.0", body, &target_labels()).unwrap();
        assert_eq!(find(&samples, "jobs_total", &[("queue", "q")]).value, 7.0);
        assert_eq!(find(&samples, "up", &[]).value, 1.0);
    }

    #[test]
    fn a_broken_exposition_is_an_error() {
        assert!(parse("text/plain", "this is { not metrics\n", &target_labels()).is_err());
    }

    #[test]
    fn targets_need_http_and_a_host() {
        assert_eq!(Target::parse("--scrape", "http://node:9100/metrics").unwrap().instance(), "node:9100");
        assert_eq!(Target::parse("--scrape", "https://node/metrics").unwrap().instance(), "node:443");
        let err = Target::parse("--scrape", "node:9100").unwrap_err().to_string();
        assert!(err.contains("--scrape") && err.contains("node:9100"), "{err}");
    }
}
