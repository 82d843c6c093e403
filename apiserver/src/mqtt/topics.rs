//! MQTT topics and payloads to samples, with the same validation as HTTP ingest.
//!
//! - `metrics/{tenant}/{metric}`: a bare number (the value now), or one JSON sample whose
//!   `metric` may be left out (the topic names it) but must not differ from the topic's.
//! - `metrics/{tenant}`: one JSON sample, a JSON array of samples, or `{"samples":[…]}`.

use crate::domain::{Limits, Sample, SampleError};
use crate::ingest::{IngestError, parse_bulk, parse_single, parse_single_on};

/// The root every ingest topic lives under.
pub const ROOT: &str = "metrics";

/// A topic this server ingests from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    pub tenant: &'a str,
    /// Set for `metrics/{tenant}/{metric}`.
    pub metric: Option<&'a str>,
}

/// Why a message was acknowledged and dropped; a closed set, used as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not `metrics/{tenant}` or `metrics/{tenant}/{metric}`.
    BadTopic,
    /// The topic names a tenant that does not exist.
    UnknownTenant,
    /// An embedded-broker client published outside its own `metrics/{tenant}/#`.
    ForbiddenTopic,
    /// Neither a number nor JSON of the expected shape.
    Malformed,
    /// JSON of the right shape with a sample that breaks a rule (name, limits, timestamp).
    InvalidSample,
    /// More samples in one message than `max_batch_samples`.
    BatchTooLarge,
    /// Larger than `max_body_bytes`.
    Oversize,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BadTopic => "bad_topic",
            DropReason::UnknownTenant => "unknown_tenant",
            DropReason::ForbiddenTopic => "forbidden_topic",
            DropReason::Malformed => "malformed",
            DropReason::InvalidSample => "invalid_sample",
            DropReason::BatchTooLarge => "batch_too_large",
            DropReason::Oversize => "oversize",
        }
    }
}

impl From<&IngestError> for DropReason {
    fn from(err: &IngestError) -> Self {
        match err {
            IngestError::Malformed(_) => DropReason::Malformed,
            IngestError::Sample { .. } => DropReason::InvalidSample,
            IngestError::BatchTooLarge { .. } => DropReason::BatchTooLarge,
        }
    }
}

/// Splits `metrics/{tenant}[/{metric}]`. The tenant is checked by the caller against the store
/// (bridge) or the client's login (embedded broker); the metric by the sample rules.
pub fn parse_topic(topic: &str) -> Option<Topic<'_>> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (tenant, metric) = match rest.split_once('/') {
        Some((tenant, metric)) => (tenant, Some(metric)),
        None => (rest, None),
    };
    if tenant.is_empty() || metric.is_some_and(|m| m.is_empty() || m.contains('/')) {
        return None;
    }
    Some(Topic { tenant, metric })
}

/// The samples of one payload on `topic`, validated against `limits`; `now_ms` is the time
/// of receipt and the timestamp of samples that carry none.
pub fn decode_payload(
    topic: Topic<'_>,
    payload: &[u8],
    limits: &Limits,
    now_ms: i64,
) -> Result<Vec<Sample>, IngestError> {
    let first = payload.iter().copied().find(|b| !b.is_ascii_whitespace());
    match (topic.metric, first) {
        (_, None) => Err(IngestError::Malformed("the payload is empty".into())),
        (Some(metric), Some(b'{')) => parse_single_on(payload, Some(metric), limits, now_ms).map(|s| vec![s]),
        (Some(metric), Some(_)) => bare_number(metric, payload, limits, now_ms).map(|s| vec![s]),
        (None, Some(b'[')) => parse_bulk(payload, limits, now_ms),
        (None, Some(b'{')) => {
            // `{"samples":[…]}` or one sample. Looking for the key first keeps the common cases
            // to one parse; a sample that merely mentions "samples" in a label still works.
            if contains(payload, br#""samples""#) {
                parse_bulk(payload, limits, now_ms)
                    .or_else(|bulk_err| parse_single(payload, limits, now_ms).map(|s| vec![s]).map_err(|_| bulk_err))
            } else {
                parse_single(payload, limits, now_ms).map(|s| vec![s])
            }
        }
        (None, Some(_)) => Err(IngestError::Malformed(
            "on metrics/{tenant} the payload is a JSON sample, an array of samples or {\"samples\":[…]}; \
             a bare number needs the topic metrics/{tenant}/{metric}"
                .into(),
        )),
    }
}

fn bare_number(metric: &str, payload: &[u8], limits: &Limits, now_ms: i64) -> Result<Sample, IngestError> {
    let not_a_number = || IngestError::Malformed("the payload is neither a number nor a JSON sample".into());
    let text = std::str::from_utf8(payload).map_err(|_| not_a_number())?.trim();
    let value: f64 = text.parse().map_err(|_| not_a_number())?;
    let sample = Sample { metric: metric.into(), labels: Default::default(), ts: now_ms, value, dedupe_id: None };
    limits.check(&sample, now_ms).map_err(|error: SampleError| IngestError::Sample { index: None, error })?;
    Ok(sample)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_104_400_000;

    fn decode(topic: &str, payload: &str) -> Result<Vec<Sample>, DropReason> {
        let topic = parse_topic(topic).ok_or(DropReason::BadTopic)?;
        decode_payload(topic, payload.as_bytes(), &Limits::default(), NOW).map_err(|e| DropReason::from(&e))
    }

    #[test]
    fn topics_name_a_tenant_and_maybe_a_metric() {
        assert_eq!(parse_topic("metrics/acme"), Some(Topic { tenant: "acme", metric: None }));
        assert_eq!(parse_topic("metrics/acme/cpu.usage"), Some(Topic { tenant: "acme", metric: Some("cpu.usage") }));
        for bad in
            ["metrics", "metrics/", "metrics//cpu", "metrics/acme/", "metrics/acme/a/b", "other/acme", "metricsx/a"]
        {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bare_number_on_a_metric_topic_is_a_sample_now() {
        let samples = decode("metrics/acme/temp", " -3.25e1\n").unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!((&*samples[0].metric, samples[0].value, samples[0].ts), ("temp", -32.5, NOW));
        assert!(samples[0].labels.is_empty());
    }

    #[test]
    fn a_json_sample_on_a_metric_topic_takes_the_metric_from_the_topic() {
        let samples = decode("metrics/acme/temp", r#"{"value":4,"ts":1000,"labels":{"room":"a"}}"#).unwrap();
        assert_eq!((&*samples[0].metric, samples[0].ts, samples[0].labels["room"].as_str()), ("temp", 1000, "a"));
        assert_eq!(decode("metrics/acme/temp", r#"{"metric":"temp","value":4}"#).unwrap()[0].value, 4.0);
        assert_eq!(decode("metrics/acme/temp", r#"{"metric":"other","value":4}"#), Err(DropReason::InvalidSample));
    }

    #[test]
    fn a_tenant_topic_takes_a_sample_an_array_or_a_wrapper() {
        assert_eq!(decode("metrics/acme", r#"{"metric":"a","value":1}"#).unwrap().len(), 1);
        assert_eq!(decode("metrics/acme", r#"[{"metric":"a","value":1},{"metric":"b","value":2}]"#).unwrap().len(), 2);
        assert_eq!(decode("metrics/acme", r#"{"samples":[{"metric":"a","value":1}]}"#).unwrap().len(), 1);
        let labelled = decode("metrics/acme", r#"{"metric":"a","value":1,"labels":{"kind":"samples"}}"#).unwrap();
        assert_eq!(labelled[0].labels["kind"], "samples");
    }

    #[test]
    fn garbage_is_named_by_reason() {
        let cases = [
            ("metrics/acme/temp", "", DropReason::Malformed),
            ("metrics/acme/temp", "warm", DropReason::Malformed),
            ("metrics/acme/temp", "NaN", DropReason::InvalidSample),
            ("metrics/acme/temp", "inf", DropReason::InvalidSample),
            ("metrics/acme/temp", "{\"value\":", DropReason::Malformed),
            ("metrics/acme/9bad", "1", DropReason::InvalidSample),
            ("metrics/acme", "42", DropReason::Malformed),
            ("metrics/acme", "{\"samples\":[{\"metric\":\"a\"}]}", DropReason::InvalidSample),
            ("metrics/acme", "[{\"metric\":\"a\",\"value\":1,\"ts\":99999999999999}]", DropReason::InvalidSample),
            ("metrics/acme", "\u{0}\u{1}binary", DropReason::Malformed),
            ("devices/acme", "1", DropReason::BadTopic),
        ];
        for (topic, payload, reason) in cases {
            assert_eq!(decode(topic, payload).map(|_| ()), Err(reason), "{topic} {payload:?}");
        }
        let too_many = format!("[{}]", [r#"{"metric":"a","value":1}"#; 3].join(","));
        let limits = Limits { max_batch_samples: 2, ..Limits::default() };
        let err = decode_payload(parse_topic("metrics/acme").unwrap(), too_many.as_bytes(), &limits, NOW).unwrap_err();
        assert_eq!(DropReason::from(&err), DropReason::BatchTooLarge);
    }
}
