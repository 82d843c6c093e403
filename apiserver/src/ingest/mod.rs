//! Turning request bodies and MQTT payloads into validated samples.
//!
//! The fast path deserializes straight into typed structs. Only when that fails is the body
//! parsed again as loose JSON to find the first bad sample, its index, field and reason: good
//! input pays nothing for good error messages.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::sample::{SharedLabels, parse_rfc3339_ms};
use crate::domain::{Labels, Limits, Sample, SampleError};

mod fast;
pub mod influx;
pub mod otlp;
pub mod prometheus;
pub mod vm_import;

#[cfg(test)]
mod tests;

/// What a line-based body (line protocol, VictoriaMetrics' JSON lines) had refused: how many
/// lines or samples, and the first reason with its line number (from 1). The other lines are
/// stored: a partial write, answered by naming the first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Refusals {
    pub count: usize,
    pub first: Option<(usize, String)>,
}

impl Refusals {
    pub fn refuse(&mut self, line: usize, why: String) {
        self.count += 1;
        self.first.get_or_insert((line, why));
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("{}{error}", index.map(|i| format!("sample {i}: ")).unwrap_or_default())]
    Sample { index: Option<usize>, error: SampleError },
    #[error("the batch has {count} samples; the limit is {limit}")]
    BatchTooLarge { count: usize, limit: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    /// Optional only so that an MQTT topic can supply it; `into_sample` requires it otherwise.
    #[serde(default)]
    metric: Option<String>,
    value: f64,
    #[serde(default, deserialize_with = "timestamp")]
    ts: Option<i64>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    dedupe_id: Option<String>,
}

/// A bulk body's sample as parsed on the fast path: the metric and the labels' text borrowed
/// from the body, so a request's samples of one series allocate their names and labels once
/// (`Interner`), not once each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BorrowedSample<'a> {
    #[serde(default, borrow)]
    metric: Option<Cow<'a, str>>,
    value: f64,
    #[serde(default, deserialize_with = "timestamp")]
    ts: Option<i64>,
    #[serde(default, borrow)]
    labels: Option<&'a RawValue>,
    #[serde(default)]
    dedupe_id: Option<String>,
}

/// A sample's fields as either parser of a bulk body reads them, text borrowed from the body
/// where it can be.
struct Fields<'a> {
    metric: Option<Cow<'a, str>>,
    value: f64,
    ts: Option<i64>,
    /// The labels object's JSON text.
    labels: Option<&'a str>,
    dedupe_id: Option<Cow<'a, str>>,
}

impl<'a> From<BorrowedSample<'a>> for Fields<'a> {
    fn from(raw: BorrowedSample<'a>) -> Self {
        Fields {
            metric: raw.metric,
            value: raw.value,
            ts: raw.ts,
            labels: raw.labels.map(RawValue::get),
            dedupe_id: raw.dedupe_id.map(Cow::Owned),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped<'a> {
    #[serde(borrow)]
    samples: Vec<Object<BorrowedSample<'a>>>,
}

/// A struct that only a JSON object fills: serde's derive also takes an array of the fields in
/// order (`["cpu", 1]` was stored as a sample), which the API does not document.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

const TS_EXPECTED: &str = "Unix milliseconds (an integer) or an RFC 3339 string";

/// `ts` as integer milliseconds or RFC 3339, without serde's buffering `untagged` enums.
fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct TsVisitor;
    impl Visitor<'_> for TsVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(TS_EXPECTED)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Some).map_err(|_| E::custom("ts is out of range"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_rfc3339_ms(v).map(Some).ok_or_else(|| E::custom("ts is not RFC 3339"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(TsVisitor)
}

impl RawSample {
    /// `topic_metric` is the metric an MQTT topic names: it fills in a missing `metric`, and a
    /// different one is refused so a payload cannot contradict its topic.
    fn into_sample(self, now_ms: i64, topic_metric: Option<&str>) -> Result<Sample, SampleError> {
        let metric = match (self.metric, topic_metric) {
            (Some(metric), Some(topic)) if metric != topic => {
                return Err(SampleError::new(
                    "metric",
                    format!("{metric:?} differs from the topic's metric {topic:?}"),
                ));
            }
            (Some(metric), _) => metric,
            (None, Some(topic)) => topic.to_string(),
            (None, None) => return Err(SampleError::new("metric", "is required")),
        };
        Ok(Sample {
            metric: metric.into(),
            labels: self.labels.unwrap_or_default().into(),
            ts: self.ts.unwrap_or(now_ms),
            value: self.value,
            dedupe_id: self.dedupe_id,
        })
    }
}

/// One sample, as `POST /api/v1/metrics` takes it.
pub fn parse_single(body: &[u8], limits: &Limits, now_ms: i64) -> Result<Sample, IngestError> {
    parse_single_on(body, None, limits, now_ms)
}

/// One sample whose metric may come from elsewhere (the MQTT topic `metrics/{tenant}/{metric}`).
pub fn parse_single_on(
    body: &[u8],
    topic_metric: Option<&str>,
    limits: &Limits,
    now_ms: i64,
) -> Result<Sample, IngestError> {
    match serde_json::from_slice::<Object<RawSample>>(body) {
        Ok(Object(raw)) => {
            let sample =
                raw.into_sample(now_ms, topic_metric).map_err(|error| IngestError::Sample { index: None, error })?;
            limits.check(&sample, now_ms).map_err(|error| IngestError::Sample { index: None, error })?;
            Ok(sample)
        }
        Err(_) => {
            let value: Value = serde_json::from_slice(body).map_err(malformed)?;
            Err(IngestError::Sample { index: None, error: diagnose(&value) })
        }
    }
}

/// Many samples, as `POST /api/v1/metrics/bulk` takes them: `{"samples":[…]}` or a bare array.
pub fn parse_bulk(body: &[u8], limits: &Limits, now_ms: i64) -> Result<Vec<Sample>, IngestError> {
    match fast::parse_bulk(body, limits, now_ms) {
        Some(samples) => Ok(samples),
        None => parse_bulk_serde(body, limits, now_ms),
    }
}

/// `parse_bulk` through serde: every body the fast scanner leaves, and the one that names
/// what is wrong with a bad body.
fn parse_bulk_serde(body: &[u8], limits: &Limits, now_ms: i64) -> Result<Vec<Sample>, IngestError> {
    let bare = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if bare {
        serde_json::from_slice::<Vec<Object<BorrowedSample<'_>>>>(body)
    } else {
        serde_json::from_slice::<Wrapped<'_>>(body).map(|w| w.samples)
    };
    let raws = match parsed {
        Ok(raws) => raws,
        Err(_) => return Err(diagnose_bulk(body, limits)),
    };
    if raws.len() > limits.max_batch_samples {
        return Err(IngestError::BatchTooLarge { count: raws.len(), limit: limits.max_batch_samples });
    }
    let mut interner = Interner::new(limits);
    let mut samples = Vec::with_capacity(raws.len());
    for (index, Object(raw)) in raws.into_iter().enumerate() {
        match interner.sample(raw.into(), now_ms) {
            Ok(sample) => samples.push(sample),
            Err(Refusal::Sample(error)) => return Err(IngestError::Sample { index: Some(index), error }),
            // Labels that are JSON but not a map of strings: the slow path names the field.
            Err(Refusal::Shape) => return Err(diagnose_bulk(body, limits)),
        }
    }
    Ok(samples)
}

enum Refusal {
    Sample(SampleError),
    /// Not the sample schema after all (labels that are not a map of strings).
    Shape,
}

impl From<SampleError> for Refusal {
    fn from(error: SampleError) -> Self {
        Refusal::Sample(error)
    }
}

/// One request's distinct metric names and label sets, each allocated and checked once: the
/// samples of a series share them (`Arc`), so grouping, the live hub and the alert engine copy
/// pointers, not strings. Keys are the client's: hashed with aHash, randomly keyed.
struct Interner<'a, 'l> {
    limits: &'l Limits,
    metrics: HashMap<Arc<str>, Option<SampleError>, ahash::RandomState>,
    /// By the labels' JSON text: equal text, equal labels. Equal labels written differently
    /// (key order, spacing) are two entries with equal contents, which is only slower.
    labels: HashMap<&'a str, Result<SharedLabels, Option<SampleError>>, ahash::RandomState>,
    no_labels: SharedLabels,
    /// The metric of the last sample that named a valid one.
    last_metric: Option<Arc<str>>,
}

impl<'a, 'l> Interner<'a, 'l> {
    fn new(limits: &'l Limits) -> Self {
        Interner {
            limits,
            metrics: HashMap::default(),
            labels: HashMap::default(),
            no_labels: SharedLabels::default(),
            last_metric: None,
        }
    }

    /// The sample, its rules checked in `Limits::check`'s order (metric, value and ts,
    /// labels, dedupe id), so the error named is the same.
    fn sample(&mut self, raw: Fields<'a>, now_ms: i64) -> Result<Sample, Refusal> {
        let Some(name) = raw.metric else { return Err(SampleError::new("metric", "is required").into()) };
        let metric = match &self.last_metric {
            // Bodies tend to repeat a metric sample after sample: that one needs no hash.
            Some(last) if **last == *name => last.clone(),
            _ => {
                let metric = match self.metrics.get_key_value(&*name) {
                    Some((metric, None)) => metric.clone(),
                    Some((_, Some(error))) => return Err(error.clone().into()),
                    None => {
                        let error = self.limits.check_metric(&name).err();
                        let metric: Arc<str> = name.into();
                        self.metrics.insert(metric.clone(), error.clone());
                        match error {
                            None => metric,
                            Some(error) => return Err(error.into()),
                        }
                    }
                };
                self.last_metric = Some(metric.clone());
                metric
            }
        };
        let ts = raw.ts.unwrap_or(now_ms);
        self.limits.check_point(ts, raw.value, now_ms)?;
        let labels = match raw.labels {
            None => self.no_labels.clone(),
            Some(text) => {
                let limits = self.limits;
                self.labels
                    .entry(text)
                    .or_insert_with(|| {
                        // The typed parse of the body took this text as any JSON value; a label
                        // map it must still be.
                        let labels: Option<Labels> = serde_json::from_str(text).map_err(|_| None)?;
                        let labels = labels.unwrap_or_default();
                        limits.check_labels(&labels).map_err(Some)?;
                        Ok(labels.into())
                    })
                    .clone()
                    .map_err(|error| error.map_or(Refusal::Shape, Refusal::Sample))?
            }
        };
        self.limits.check_dedupe_id(raw.dedupe_id.as_deref())?;
        Ok(Sample { metric, labels, ts, value: raw.value, dedupe_id: raw.dedupe_id.map(Cow::into_owned) })
    }
}

fn malformed(err: serde_json::Error) -> IngestError {
    IngestError::Malformed(err.to_string())
}

/// The slow path of `parse_bulk`: find out what exactly is wrong.
fn diagnose_bulk(body: &[u8], limits: &Limits) -> IngestError {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(err) => return malformed(err),
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => {
            if let Some(key) = map.keys().find(|k| *k != "samples") {
                return IngestError::Sample {
                    index: None,
                    error: SampleError::new(
                        key.clone(),
                        "unknown field; a bulk body is {\"samples\":[…]} or a JSON array",
                    ),
                };
            }
            match map.remove("samples") {
                Some(Value::Array(items)) => items,
                Some(_) => {
                    return IngestError::Sample {
                        index: None,
                        error: SampleError::new("samples", "must be an array of samples"),
                    };
                }
                None => {
                    return IngestError::Sample {
                        index: None,
                        error: SampleError::new("samples", "missing; a bulk body is {\"samples\":[…]} or a JSON array"),
                    };
                }
            }
        }
        _ => {
            return IngestError::Sample {
                index: None,
                error: SampleError::new("", "a bulk body is {\"samples\":[…]} or a JSON array"),
            };
        }
    };
    if items.len() > limits.max_batch_samples {
        return IngestError::BatchTooLarge { count: items.len(), limit: limits.max_batch_samples };
    }
    for (index, item) in items.iter().enumerate() {
        if serde_json::from_value::<Object<RawSample>>(item.clone()).map_or(true, |Object(raw)| raw.metric.is_none()) {
            return IngestError::Sample { index: Some(index), error: diagnose(item) };
        }
    }
    // Typed parsing failed as a whole but every item passes alone: the numbers must be out of
    // range for their type somewhere the loose parser accepted.
    IngestError::Malformed("the body does not match the sample schema".into())
}

/// Names the field of one sample that typed parsing refused, and why.
fn diagnose(value: &Value) -> SampleError {
    let Value::Object(map) = value else {
        return SampleError::new("", "a sample must be a JSON object like {\"metric\":\"cpu.usage\",\"value\":1.5}");
    };
    for (key, field) in map {
        let problem = match key.as_str() {
            "metric" => (!field.is_string()).then_some("must be a string"),
            "value" => match field {
                Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => None,
                Value::Number(_) => Some("must be a finite number"),
                Value::String(s) if s.parse::<f64>().is_ok() => {
                    Some("must be a JSON number, not a string (NaN and Infinity are not accepted)")
                }
                _ => Some("must be a finite number"),
            },
            "ts" => match field {
                Value::Null => None,
                Value::Number(n) if n.is_i64() || n.is_u64() => None,
                Value::String(s) if parse_rfc3339_ms(s).is_some() => None,
                Value::String(_) => Some("must be an RFC 3339 string like 2025-11-25T21:00:00Z"),
                _ => Some("must be Unix milliseconds (an integer) or an RFC 3339 string"),
            },
            "labels" => match field {
                Value::Null => None,
                Value::Object(labels) => {
                    if let Some((k, _)) = labels.iter().find(|(_, v)| !v.is_string()) {
                        return SampleError::new(format!("labels.{k}"), "label values must be strings");
                    }
                    None
                }
                _ => Some("must be an object of string values"),
            },
            "dedupe_id" => (!field.is_string() && !field.is_null()).then_some("must be a string"),
            _ => {
                return SampleError::new(
                    key.clone(),
                    "unknown field; a sample has metric, value, ts, labels and dedupe_id",
                );
            }
        };
        if let Some(reason) = problem {
            return SampleError::new(key.clone(), reason);
        }
    }
    for required in ["metric", "value"] {
        if !map.contains_key(required) {
            return SampleError::new(required, "is required");
        }
    }
    SampleError::new("", "does not match the sample schema")
}
