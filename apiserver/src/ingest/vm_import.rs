//! VictoriaMetrics' JSON line import format, as its `/api/v1/export` writes it and its own
//! `/api/v1/import` reads it: one series per line,
//! `{"metric":{"__name__":"up","job":"node"},"values":[1,0],"timestamps":[1764104400000,1764104410000]}`.
//!
//! Mapping: `__name__` is the metric, every other key of `metric` a label, `values[i]` taken at
//! `timestamps[i]` (Unix milliseconds on both sides). A line that does not parse, has no
//! `__name__`, or has as many values as timestamps not, is refused alone, and so is a sample
//! microdash cannot hold (a timestamp past `max_future`, say): the other lines are stored and the
//! answer names the first refused line, as for line protocol.
//!
//! A series that comes back on a later line of the request (an export writes one line per block
//! of a series) is checked and allocated once: lines are interned by their `metric` text.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Refusals, fast};
use crate::domain::sample::SharedLabels;
use crate::domain::{Labels, Limits, Sample};

/// What a request held.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    pub refused: Refusals,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow)]
    metric: &'a RawValue,
    values: Vec<f64>,
    timestamps: Vec<i64>,
}

/// A series as a line names it: its metric and labels, or why microdash cannot hold it.
type Series = Result<(Arc<str>, SharedLabels), String>;

fn series(text: &str, limits: &Limits) -> Series {
    let mut labels: Labels = match serde_json::from_str::<BTreeMap<String, String>>(text) {
        Ok(labels) => labels,
        Err(err) => return Err(format!("metric: must be an object of strings ({err})")),
    };
    let Some(name) = labels.remove("__name__") else {
        return Err("metric: __name__ is required".into());
    };
    limits.check_metric(&name).map_err(|e| format!("{}: {}", e.field, e.reason))?;
    limits.check_labels(&labels).map_err(|e| format!("{}: {}", e.field, e.reason))?;
    Ok((name.into(), labels.into()))
}

/// The samples of a body; more than `limits.max_batch_samples` stop the parse (`Err` with the
/// count so far).
pub fn decode(body: &[u8], limits: &Limits, now_ms: i64) -> Result<Decoded, usize> {
    decode_with(body, limits, now_ms, true)
}

/// `decode`, with the scanner or (`scan` false, for the differential test) serde alone.
fn decode_with(body: &[u8], limits: &Limits, now_ms: i64, scan: bool) -> Result<Decoded, usize> {
    let mut out = Decoded::default();
    let mut known: HashMap<&str, Series, ahash::RandomState> = HashMap::default();
    // Reused from line to line by the scanner.
    let (mut values, mut timestamps) = (Vec::new(), Vec::new());
    for (index, text) in body.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let scanned = scan
            .then(|| std::str::from_utf8(text).ok())
            .flatten()
            .and_then(|t| fast::import_line(t, &mut values, &mut timestamps));
        let metric_text = match scanned {
            Some(text) => text,
            // The scanner left it to serde, which reads what it can and names what it cannot.
            None => match serde_json::from_slice::<Line>(text) {
                Ok(parsed) => {
                    (values, timestamps) = (parsed.values, parsed.timestamps);
                    parsed.metric.get()
                }
                Err(err) => {
                    out.refused.refuse(line, err.to_string());
                    continue;
                }
            },
        };
        if values.len() != timestamps.len() {
            let (v, t) = (values.len(), timestamps.len());
            out.refused.refuse(line, format!("values has {v} entries and timestamps {t}; they must pair up"));
            continue;
        }
        let (metric, labels) = match known.entry(metric_text).or_insert_with_key(|text| series(text, limits)) {
            Ok(series) => series.clone(),
            Err(why) => {
                out.refused.refuse(line, why.clone());
                continue;
            }
        };
        if out.samples.len() + values.len() > limits.max_batch_samples {
            return Err(out.samples.len() + values.len());
        }
        out.samples.reserve(values.len());
        for (&value, &ts) in values.iter().zip(&timestamps) {
            match limits.check_point(ts, value, now_ms) {
                Ok(()) => out.samples.push(Sample {
                    metric: metric.clone(),
                    labels: labels.clone(),
                    ts,
                    value,
                    dedupe_id: None,
                }),
                Err(error) => out.refused.refuse(line, format!("{metric}: {}: {}", error.field, error.reason)),
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
    fn lines_become_samples_and_a_series_on_two_lines_is_one() {
        let body = format!(
            "{{\"metric\":{{\"__name__\":\"node_load1\",\"instance\":\"a:9100\"}},\"values\":[0.5,1e3],\"timestamps\":[{},{}]}}\n\
             \n\
             {{\"metric\":{{\"__name__\":\"node_load1\",\"instance\":\"a:9100\"}},\"values\":[2],\"timestamps\":[{}]}}\r\n\
             {{\"timestamps\":[{NOW}],\"values\":[-0.0],\"metric\":{{\"job\":\"ü\",\"__name__\":\"up\"}}}}",
            NOW - 20,
            NOW - 10,
            NOW
        );
        let d = decode(body.as_bytes(), &Limits::default(), NOW).unwrap();
        let got: Vec<(String, f64, i64)> = d.samples.iter().map(|s| (s.metric.to_string(), s.value, s.ts)).collect();
        assert_eq!(
            got,
            [
                ("node_load1".into(), 0.5, NOW - 20),
                ("node_load1".into(), 1000.0, NOW - 10),
                ("node_load1".into(), 2.0, NOW),
                ("up".into(), -0.0, NOW),
            ]
        );
        assert_eq!(d.samples[0].labels.get("instance").map(String::as_str), Some("a:9100"));
        assert!(!d.samples[0].labels.contains_key("__name__"));
        assert_eq!(d.samples[0].labels.ptr(), d.samples[2].labels.ptr(), "the second line's series is the first's");
        assert_eq!(d.samples[3].labels.get("job").map(String::as_str), Some("ü"));
        assert_eq!(d.refused, Refusals::default());
    }

    #[test]
    fn a_bad_line_is_refused_alone_and_named() {
        let ok = |v: u32| format!("{{\"metric\":{{\"__name__\":\"m\"}},\"values\":[{v}],\"timestamps\":[{NOW}]}}");
        let lines = [
            ok(1),
            "{\"metric\":{\"__name__\":\"m\"},\"values\":[1,2],\"timestamps\":[1]}".into(),
            "{\"metric\":{\"job\":\"x\"},\"values\":[1],\"timestamps\":[1]}".into(),
            "{\"metric\":{\"__name__\":\"9bad\"},\"values\":[1],\"timestamps\":[1]}".into(),
            "{\"metric\":{\"__name__\":\"m\",\"k\":1},\"values\":[1],\"timestamps\":[1]}".into(),
            "{\"metric\":{\"__name__\":\"m\"},\"values\":[\"NaN\"],\"timestamps\":[1]}".into(),
            "{\"metric\":{\"__name__\":\"m\"},\"values\":[1],\"timestamps\":[1],\"extra\":0}".into(),
            "not json".into(),
            format!("{{\"metric\":{{\"__name__\":\"m\"}},\"values\":[1,2],\"timestamps\":[{NOW},{}]}}", i64::MAX),
            ok(2),
        ];
        let d = decode(lines.join("\n").as_bytes(), &Limits::default(), NOW).unwrap();
        assert_eq!(d.samples.iter().map(|s| s.value).collect::<Vec<_>>(), [1.0, 1.0, 2.0]);
        assert_eq!(d.refused.count, 8);
        let (line, why) = d.refused.first.unwrap();
        assert_eq!(line, 2);
        assert!(why.contains("values has 2 entries and timestamps 1"), "{why}");
        for (line, expect) in
            [(3, "__name__ is required"), (4, "must match"), (5, "object of strings"), (9, "in the future")]
        {
            let d = decode(lines[line - 1].as_bytes(), &Limits::default(), NOW).unwrap();
            let why = d.refused.first.unwrap().1;
            assert!(why.contains(expect), "line {line}: {why}");
        }
    }

    #[test]
    fn the_batch_limit_stops_the_parse() {
        let limits = Limits { max_batch_samples: 2, ..Limits::default() };
        let body =
            format!("{{\"metric\":{{\"__name__\":\"m\"}},\"values\":[1,2,3],\"timestamps\":[{NOW},{NOW},{NOW}]}}");
        assert_eq!(decode(body.as_bytes(), &limits, NOW).unwrap_err(), 3);
        assert_eq!(decode(body.as_bytes(), &Limits::default(), NOW).unwrap().samples.len(), 3);
    }

    /// The scanner's answer is serde's, to the bit, on lines of what exporters write and of
    /// everything the format refuses or the scanner leaves to serde.
    mod differential {
        use proptest::prelude::*;

        use super::*;
        use crate::ingest::tests::number_text as number;

        fn array() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => prop::collection::vec(number(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
                1 => prop::collection::vec(number(), 1..4).prop_map(|v| format!("[ {} ]", v.join(" , "))),
                1 => prop::sample::select(vec!["[", "[1,]", "[,1]", "1", "null", "{}", "[[1]]"]).prop_map(String::from),
            ]
        }

        fn metric() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                r#"{"__name__":"up","job":"node"}"#,
                r#"{"__name__":"node_load1"}"#,
                r#"{ "job" : "ü", "__name__" : "up" }"#,
                r#"{"__name__":"u\u0070"}"#,
                r#"{"job":"node"}"#,
                r#"{"__name__":"9bad"}"#,
                r#"{"__name__":"up","n":1}"#,
                r#"{"__name__":"up","__name__":"down"}"#,
                r#"{}"#,
                r#""up""#,
                r#"null"#,
            ])
            .prop_map(String::from)
        }

        fn line() -> impl Strategy<Value = String> {
            let fields =
                (metric(), array(), array(), prop::sample::select(vec!["", r#","extra":1"#, r#","values":[1]"#]))
                    .prop_map(|(m, v, t, more)| {
                        vec![
                            format!(r#""metric":{m}"#),
                            format!(r#""values":{v}"#),
                            format!(r#""timestamps":{t}"#),
                            more.into(),
                        ]
                    });
            (fields, any::<prop::sample::Index>(), prop::sample::select(vec!["", " ", "\t", "\r"]), any::<u8>())
                .prop_map(|(mut fields, order, space, cut)| {
                    let more = fields.pop().expect("four");
                    let at = order.index(3);
                    fields.swap(0, at);
                    let mut text = format!("{{{space}{}{more}{space}}}", fields.join(&format!(",{space}")));
                    if cut < 8 {
                        // Truncated mid-line, on a character boundary.
                        let mut end = text.len() * usize::from(cut) / 8;
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.truncate(end);
                    }
                    text
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]
            #[test]
            fn the_scanner_agrees_with_serde(lines in prop::collection::vec(line(), 1..5)) {
                let body = lines.join("\n");
                let limits = Limits { max_batch_samples: 12, ..Limits::default() };
                let now = 1_800_000_000_000;
                let bits = |d: Result<Decoded, usize>| {
                    d.map(|d| {
                        let samples: Vec<_> = d
                            .samples
                            .iter()
                            .map(|s| (s.metric.to_string(), (*s.labels).clone(), s.ts, s.value.to_bits()))
                            .collect();
                        (samples, d.refused)
                    })
                };
                prop_assert_eq!(
                    bits(decode_with(body.as_bytes(), &limits, now, true)),
                    bits(decode_with(body.as_bytes(), &limits, now, false))
                );
            }
        }

        #[test]
        fn what_exporters_write_takes_the_scanner() {
            let line = r#"{"metric":{"__name__":"up","job":"node"},"values":[1,0.5,-0,2e3],"timestamps":[1764104400000,1764104410000,1764104420000,1764104430000]}"#;
            let (mut values, mut timestamps) = (Vec::new(), Vec::new());
            assert_eq!(
                fast::import_line(line, &mut values, &mut timestamps),
                Some(r#"{"__name__":"up","job":"node"}"#)
            );
            assert_eq!(
                values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                [1.0f64, 0.5, -0.0, 2000.0].map(f64::to_bits)
            );
            assert_eq!(timestamps, [1764104400000, 1764104410000, 1764104420000, 1764104430000]);
        }
    }
}
