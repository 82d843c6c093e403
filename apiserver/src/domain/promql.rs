//! Prometheus' view of a tenant's series: names, series selectors and the text exposition format.
//! Pure; `http/prometheus.rs` serves it under `/prometheus` (issue 18, items 2 and 3).
//!
//! Names: a microdash metric name or label key may hold `.` and `-` (`cpu.usage`), which
//! Prometheus names cannot; Prometheus sees each of them as `_` (`cpu_usage`). Names that are
//! already Prometheus names (everything remote_write, OTLP and Influx write) are unchanged, so
//! what Prometheus wrote it reads back as it was. Two microdash names that differ only there
//! (`cpu.usage` and `cpu_usage`) are both selected by `cpu_usage`.
//!
//! Selectors (`match[]`) are parsed by `promql-parser`, with all four matchers and `or`; only a
//! plain series selector is a selector (`rate(x[5m])` is refused, as Prometheus does).

use std::fmt::Write;

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};

use crate::domain::Labels;

/// How far back a selector looks for a series' newest sample (Prometheus' lookback delta): what
/// PromQL's selectors, `/federate` and an exporter's first push take.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The Prometheus name of a microdash metric name or label key: `.` and `-` become `_`.
pub fn prometheus_name(name: &str) -> String {
    name.replace(['.', '-'], "_")
}

/// A series selector: the series match when every matcher of one of its groups matches.
#[derive(Debug, Clone)]
pub struct Selector {
    groups: Vec<Vec<Matcher>>,
}

impl Selector {
    /// Parses `match[]` text such as `up{job=~"node|api"}` or `{__name__=~"cpu_.*", host!="a"}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expr = parser::parse(text).map_err(|e| format!("{text:?} is not a series selector: {e}"))?;
        let Expr::VectorSelector(selector) = expr else {
            return Err(format!("{text:?} is not a series selector (a metric name and/or {{label matchers}})"));
        };
        if selector.offset.is_some() || selector.at.is_some() {
            return Err(format!("{text:?}: offset and @ are not allowed in a series selector"));
        }
        Ok(Self::from_vector_selector(selector))
    }

    /// The matchers of a parsed selector (its offset and `@` are the caller's).
    pub fn from_vector_selector(selector: VectorSelector) -> Self {
        let name = selector.name.map(|name| Matcher::new(MatchOp::Equal, METRIC_NAME, &name));
        let matchers = selector.matchers;
        let groups = if matchers.or_matchers.is_empty() { vec![matchers.matchers] } else { matchers.or_matchers };
        let groups = groups.into_iter().map(|mut group| {
            group.extend(name.clone());
            group
        });
        Selector { groups: groups.collect() }
    }

    /// Whether a series of this (Prometheus) metric name could match: only the `__name__`
    /// matchers are checked, so the metrics a selector names are found without their series.
    pub fn may_select_metric(&self, name: &str) -> bool {
        self.groups.iter().any(|group| group.iter().filter(|m| m.name == METRIC_NAME).all(|m| m.is_match(name)))
    }

    /// Whether the series matches: `labels` are Prometheus labels with `__name__`; a label the
    /// series does not have matches as the empty string, as in Prometheus.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.groups
            .iter()
            .any(|group| group.iter().all(|m| m.is_match(labels.get(&m.name).map(String::as_str).unwrap_or(""))))
    }
}

/// A series as Prometheus sees it: its labels under their Prometheus names, with `__name__`.
pub fn prometheus_labels(metric: &str, labels: &Labels) -> Labels {
    let mut out: Labels = labels.iter().map(|(k, v)| (prometheus_name(k), v.clone())).collect();
    out.insert(METRIC_NAME.to_string(), prometheus_name(metric));
    out
}

/// The text exposition format (version 0.0.4) of the latest sample of each series, grouped by
/// metric name as the format wants, each with its timestamp (what Prometheus' `/federate`
/// answers). `series` are Prometheus labels (with `__name__`) and `(ts_ms, value)`.
pub fn exposition(series: &[(Labels, (i64, f64))]) -> String {
    let mut sorted: Vec<&(Labels, (i64, f64))> = series.iter().collect();
    sorted.sort_by(|a, b| a.0.get(METRIC_NAME).cmp(&b.0.get(METRIC_NAME)).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::new();
    let mut family: Option<&str> = None;
    for (labels, (ts, value)) in sorted {
        let name = labels.get(METRIC_NAME).map(String::as_str).unwrap_or("");
        if family != Some(name) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            family = Some(name);
        }
        out.push_str(name);
        let mut first = true;
        for (key, val) in labels.iter().filter(|(k, _)| *k != METRIC_NAME) {
            out.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(out, "{key}=\"{}\"", escape_label_value(val));
        }
        if !first {
            out.push('}');
        }
        let _ = writeln!(out, " {} {ts}", format_value(*value));
    }
    out
}

fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value as the exposition format writes it (`NaN`, `+Inf`, `-Inf`, or the shortest
/// decimal that reads back as the same float).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dots_and_dashes_become_underscores_and_prometheus_names_stay() {
        assert_eq!(prometheus_name("cpu.usage-total"), "cpu_usage_total");
        assert_eq!(prometheus_name("node_load1"), "node_load1");
        assert_eq!(prometheus_name("job:rate5m"), "job:rate5m");
        let l = prometheus_labels("cpu.usage", &labels(&[("host.name", "a")]));
        assert_eq!(l, labels(&[("__name__", "cpu_usage"), ("host_name", "a")]));
    }

    #[test]
    fn all_four_matchers_and_or_select_as_prometheus_does() {
        let a = labels(&[("__name__", "cpu_usage"), ("host", "web-1"), ("env", "prod")]);
        let b = labels(&[("__name__", "cpu_usage"), ("host", "db-1")]);
        let sel = |t: &str| Selector::parse(t).unwrap();
        assert!(sel("cpu_usage").matches(&a) && sel("cpu_usage").matches(&b));
        assert!(!sel("mem").matches(&a));
        assert!(sel(r#"cpu_usage{host="web-1"}"#).matches(&a) && !sel(r#"cpu_usage{host="web-1"}"#).matches(&b));
        assert!(!sel(r#"cpu_usage{host!="web-1"}"#).matches(&a) && sel(r#"cpu_usage{host!="web-1"}"#).matches(&b));
        assert!(sel(r#"{__name__=~"cpu_.*",host=~"web-.*"}"#).matches(&a));
        assert!(!sel(r#"{host=~"web"}"#).matches(&a), "regexes are anchored");
        assert!(sel(r#"{__name__="cpu_usage",host!~"web-.*"}"#).matches(&b));
        // A missing label is the empty string: env="" selects the series without env.
        assert!(sel(r#"cpu_usage{env=""}"#).matches(&b) && !sel(r#"cpu_usage{env=""}"#).matches(&a));
        let or = sel(r#"{host="web-1" or host="db-1"}"#);
        assert!(or.matches(&a) && or.matches(&b));
        assert!(sel("cpu_usage").may_select_metric("cpu_usage") && !sel("cpu_usage").may_select_metric("mem"));
        assert!(sel(r#"{host="x"}"#).may_select_metric("anything"));
    }

    #[test]
    fn what_is_not_a_series_selector_is_refused_with_the_reason() {
        for text in ["", "rate(x[5m])", "x + 1", r#"{job=~".*"}"#, "x offset 5m", "x{", "1"] {
            let err = Selector::parse(text).unwrap_err();
            assert!(err.contains("selector"), "{text}: {err}");
        }
    }

    #[test]
    fn the_exposition_groups_families_escapes_values_and_carries_timestamps() {
        let text = exposition(&[
            (labels(&[("__name__", "b"), ("q", "say \"hi\"\\\n")]), (2000, f64::NAN)),
            (labels(&[("__name__", "a")]), (1000, 1.5)),
            (labels(&[("__name__", "b"), ("q", "x")]), (3000, f64::INFINITY)),
        ]);
        assert_eq!(
            text,
            "# TYPE a untyped\na 1.5 1000\n# TYPE b untyped\nb{q=\"say \\\"hi\\\"\\\\\\n\"} NaN 2000\nb{q=\"x\"} +Inf 3000\n"
        );
        assert_eq!(format_value(-0.25), "-0.25");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }
}
