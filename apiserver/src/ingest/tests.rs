use super::*;

const NOW: i64 = 1_764_104_400_000;

fn bulk(body: &str) -> Result<Vec<Sample>, IngestError> {
    parse_bulk(body.as_bytes(), &Limits::default(), NOW)
}

fn field_of(err: IngestError) -> (Option<usize>, String) {
    match err {
        IngestError::Sample { index, error } => (index, error.field),
        other => panic!("expected a sample error, got {other:?}"),
    }
}

#[test]
fn single_sample_defaults_ts_to_receipt_time() {
    let s = parse_single(br#"{"metric":"cpu","value":1}"#, &Limits::default(), NOW).unwrap();
    assert_eq!((s.ts, s.value, s.labels.len()), (NOW, 1.0, 0));
}

#[test]
fn bulk_accepts_wrapped_and_bare_arrays() {
    let a =
        bulk(r#"{"samples":[{"metric":"a","value":1,"ts":5},{"metric":"b","value":2,"ts":"2025-11-25T21:00:00Z"}]}"#)
            .unwrap();
    let b = bulk(r#" [{"metric":"a","value":1,"ts":5},{"metric":"b","value":2,"ts":"2025-11-25T21:00:00Z"}]"#).unwrap();
    assert_eq!(a, b);
    assert_eq!(a[1].ts, 1_764_104_400_000);
}

#[test]
fn malformed_json_says_where() {
    match bulk(r#"{"samples":[{"metric":"a","value":1}"#).unwrap_err() {
        IngestError::Malformed(msg) => assert!(msg.contains("line 1"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(bulk("NaN"), Err(IngestError::Malformed(_))));
}

#[test]
fn the_first_bad_sample_is_named_with_its_index_and_field() {
    let cases = [
        (r#"[{"metric":"a","value":1},{"metric":"b","value":"x"}]"#, 1, "value"),
        (r#"[{"metric":"a","value":1},{"metric":"b","value":"NaN"}]"#, 1, "value"),
        (r#"[{"metric":"a","value":1},{"value":1}]"#, 1, "metric"),
        (r#"[{"metric":"a","value":1},{"metric":"b"}]"#, 1, "value"),
        (r#"[{"metric":"a","value":1},{"metric":7,"value":1}]"#, 1, "metric"),
        (r#"[{"metric":"a","value":1,"lables":{}}]"#, 0, "lables"),
        (r#"[{"metric":"a","value":1,"labels":{"k":1}}]"#, 0, "labels.k"),
        (r#"[{"metric":"a","value":1,"ts":1.5}]"#, 0, "ts"),
        (r#"[{"metric":"a","value":1,"ts":"soon"}]"#, 0, "ts"),
        (r#"[{"metric":"a","value":1},{"metric":"","value":1}]"#, 1, "metric"),
        (r#"[{"metric":"a","value":1,"labels":{"bad key":"v"}}]"#, 0, "labels.bad key"),
        (r#"[{"metric":"a","value":1,"ts":-5}]"#, 0, "ts"),
        (r#"[{"metric":"a","value":1,"ts":99999999999999}]"#, 0, "ts"),
        (r#"[3]"#, 0, ""),
    ];
    for (body, index, field) in cases {
        assert_eq!(field_of(bulk(body).unwrap_err()), (Some(index), field.to_string()), "{body}");
    }
}

#[test]
fn oversize_batches_are_refused_with_the_limit() {
    let limits = Limits { max_batch_samples: 2, ..Limits::default() };
    let body = r#"[{"metric":"a","value":1},{"metric":"a","value":1},{"metric":"a","value":1}]"#;
    assert_eq!(
        parse_bulk(body.as_bytes(), &limits, NOW).unwrap_err(),
        IngestError::BatchTooLarge { count: 3, limit: 2 }
    );
}

#[test]
fn wrong_bulk_shapes_are_explained() {
    assert_eq!(field_of(bulk(r#"{"sample":[]}"#).unwrap_err()).1, "sample");
    assert_eq!(field_of(bulk(r#"{}"#).unwrap_err()).1, "samples");
    assert_eq!(field_of(bulk(r#"{"samples":3}"#).unwrap_err()).1, "samples");
    assert_eq!(field_of(bulk(r#""x""#).unwrap_err()).1, "");
}

#[test]
fn unicode_and_empty_batches_are_fine() {
    let s = bulk(r#"[{"metric":"temp","value":-3.5e-2,"labels":{"city":"Zürich 東京"}}]"#).unwrap();
    assert_eq!(s[0].labels["city"], "Zürich 東京");
    assert!(bulk(r#"{"samples":[]}"#).unwrap().is_empty());
}

#[test]
fn the_first_bad_sample_is_named_even_when_a_later_one_breaks_typed_parsing() {
    match bulk(r#"[{"value":1},{"metric":"b","value":"x"}]"#).unwrap_err() {
        IngestError::Sample { index, error } => assert_eq!((index, error.field.as_str()), (Some(0), "metric")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_topic_supplies_a_missing_metric_and_refuses_a_different_one() {
    let s = parse_single_on(br#"{"value":2,"ts":5}"#, Some("cpu"), &Limits::default(), NOW).unwrap();
    assert_eq!((&*s.metric, s.ts, s.value), ("cpu", 5, 2.0));
    let s = parse_single_on(br#"{"metric":"cpu","value":2}"#, Some("cpu"), &Limits::default(), NOW).unwrap();
    assert_eq!(&*s.metric, "cpu");
    match parse_single_on(br#"{"metric":"mem","value":2}"#, Some("cpu"), &Limits::default(), NOW).unwrap_err() {
        IngestError::Sample { error, .. } => assert_eq!(error.field, "metric"),
        other => panic!("{other:?}"),
    }
    match parse_single(br#"{"value":2}"#, &Limits::default(), NOW).unwrap_err() {
        IngestError::Sample { error, .. } => assert_eq!(error.to_string(), "metric: is required"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_sample_is_an_object_never_an_array_of_its_fields() {
    // Found by schemathesis: serde's derive filled a sample from `["cpu", 1]`, and it was stored.
    let err = parse_single(br#"["cpu", 1]"#, &Limits::default(), NOW).unwrap_err();
    assert_eq!(field_of(err), (None, String::new()));
    assert_eq!(field_of(bulk(r#"[["cpu", 1]]"#).unwrap_err()), (Some(0), String::new()));
    assert_eq!(
        field_of(bulk(r#"{"samples":[{"metric":"a","value":1},["cpu", 1]]}"#).unwrap_err()),
        (Some(1), String::new())
    );
}

/// A request's samples of one series share one metric name and one label set (the write path
/// groups them by address); other series, and equal labels written differently, are equal by
/// value all the same.
#[test]
fn a_bulk_request_shares_each_series_names_and_labels() {
    let samples = bulk(
        r#"[{"metric":"cpu","value":1,"ts":1,"labels":{"host":"a","dc":"x"}},
            {"metric":"cpu","value":2,"ts":1,"labels":{"host":"b","dc":"x"}},
            {"metric":"cpu","value":3,"ts":2,"labels":{"host":"a","dc":"x"}},
            {"metric":"cpu","value":4,"ts":2,"labels":{"dc":"x", "host":"a"}},
            {"metric":"mem","value":5,"ts":2},
            {"metric":"mem","value":6,"ts":3,"labels":null},
            {"metric":"c\u0070u","value":7,"ts":3,"labels":{"host":"\u0061","dc":"x"}}]"#,
    )
    .unwrap();
    let labels = |i: usize| samples[i].labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    assert_eq!(labels(0), "dc=x,host=a");
    assert_eq!(labels(1), "dc=x,host=b");
    assert!(std::sync::Arc::ptr_eq(&samples[0].metric, &samples[2].metric));
    assert!(std::sync::Arc::ptr_eq(&samples[0].metric, &samples[1].metric));
    assert_eq!(samples[0].labels.ptr(), samples[2].labels.ptr(), "the same text, one set");
    assert_ne!(samples[0].labels.ptr(), samples[1].labels.ptr());
    // Another key order: another entry, equal contents.
    assert_eq!(samples[3].labels, samples[0].labels);
    assert_eq!(samples[4].labels.ptr(), samples[5].labels.ptr(), "no labels and null labels: one empty set");
    assert!(samples[4].labels.is_empty());
    // Escapes are decoded before names are compared.
    assert_eq!((&*samples[6].metric, labels(6)), ("cpu", "dc=x,host=a".to_string()));
    assert!(std::sync::Arc::ptr_eq(&samples[0].metric, &samples[6].metric));
    assert_eq!(samples.iter().map(|s| s.value).collect::<Vec<_>>(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
}

/// Names and label sets are checked once per request, yet every sample that carries a bad one
/// is refused at its own index, and a sample's own fields are checked for every sample.
#[test]
fn shared_names_and_labels_are_still_checked_for_each_sample() {
    let fine = r#"{"metric":"cpu","value":1,"ts":5,"labels":{"host":"a"}}"#;
    let cases = [
        (
            format!(r#"[{fine},{fine},{{"metric":"cpu","value":1,"ts":99999999999999,"labels":{{"host":"a"}}}}]"#),
            2,
            "ts",
        ),
        (
            format!(r#"[{fine},{{"metric":"cpu","value":1,"labels":{{"host":"a","bad key":"v"}}}}]"#),
            1,
            "labels.bad key",
        ),
        (format!(r#"[{fine},{{"metric":"cpu","value":1,"labels":{{"host":1}}}}]"#), 1, "labels.host"),
        (format!(r#"[{fine},{{"metric":"cpu","value":1,"labels":["host"]}}]"#), 1, "labels"),
        (format!(r#"[{fine},{{"metric":"cpu","value":1,"labels":{{"host":"a"}},"dedupe_id":""}}]"#), 1, "dedupe_id"),
        (format!(r#"[{fine},{{"metric":"9cpu","value":1}}]"#), 1, "metric"),
    ];
    for (body, index, field) in cases {
        assert_eq!(field_of(bulk(&body).unwrap_err()), (Some(index), field.to_string()), "{body}");
    }
}

/// The bench's body, and an agent's, take the fast scanner (it would be no use if they fell
/// back to serde), and what it makes of them is what serde makes.
#[test]
fn common_bodies_take_the_fast_path() {
    let mut bench = String::from("{\"samples\":[");
    for i in 0..500 {
        if i > 0 {
            bench.push(',');
        }
        bench.push_str(&format!(
            r#"{{"metric":"bench.cpu","value":{},"ts":{},"labels":{{"host":"h{}","dc":"eu-1"}}}}"#,
            i % 100,
            1_764_104_400_000i64 + i / 100,
            i % 100
        ));
    }
    bench.push_str("]}");
    let agent = r#" [ {"metric": "cpu.usage", "value": 12.75, "ts": "2025-11-25T21:00:00.250Z", "labels": {"host": "web-1"}},
        {"metric": "mem.used_bytes", "value": 1.2884901888e10, "labels": {}, "dedupe_id": "web-1/42"},
        {"metric": "disk.free", "value": -0.0, "ts": null, "labels": null, "dedupe_id": null} ]
    "#;
    for body in [bench.as_str(), agent] {
        let fast = fast::parse_bulk(body.as_bytes(), &Limits::default(), NOW).expect("the fast path takes it");
        assert_eq!(Ok(fast), parse_bulk_serde(body.as_bytes(), &Limits::default(), NOW));
    }
}

/// A JSON number's text, or something in its place: what clients send, and the edges the
/// scanners leave to serde (signs, exponents, overflow, leading zeros, non-numbers). Shared by
/// the bulk body's and the import lines' differential tests.
pub(super) fn number_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (1_700_000_000_000i64..1_800_000_000_000).prop_map(|v| v.to_string()),
        any::<f64>().prop_filter("JSON has no NaN", |v| v.is_finite()).prop_map(|v| v.to_string()),
        any::<f64>().prop_filter("JSON has no NaN", |v| v.is_finite()).prop_map(|v| format!("{v:e}")),
        prop::sample::select(vec![
            "-0",
            "0",
            "01",
            "1.",
            ".5",
            "1.5",
            "-",
            "1e400",
            "-1e-400",
            "1E+2",
            "2.5e-3",
            "NaN",
            "Infinity",
            "\"1\"",
            "null",
            "true",
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775809",
            "0.30000000000000004",
            "99999999999999999999",
            "123456789012345678901234567890",
        ])
        .prop_map(String::from),
    ]
}

mod differential {
    use proptest::prelude::*;

    use super::*;

    /// A field's text: mostly what clients send, some of everything the schema refuses or the
    /// scanner leaves to serde (escapes, signs, exponents, nulls, wrong types, unicode).
    fn field() -> impl Strategy<Value = String> {
        let metric = prop_oneof![
            Just(r#""metric":"cpu""#.to_string()),
            Just(r#""metric":"mem.used""#.to_string()),
            Just(r#""metric":"c\u0070u""#.to_string()),
            Just(r#""metric":"9bad""#.to_string()),
            Just(r#""metric":"""#.to_string()),
            Just(r#""metric":null"#.to_string()),
            Just(r#""metric":7"#.to_string()),
            Just(r#""metric":"tab	in""#.to_string()),
        ];
        let value = number_text().prop_map(|v| format!(r#""value":{v}"#));
        let ts = prop_oneof![
            (1_700_000_000_000i64..1_800_000_000_000).prop_map(|t| format!(r#""ts":{t}"#)),
            any::<i64>().prop_map(|t| format!(r#""ts":{t}"#)),
            prop::sample::select(vec![
                "null",
                "-0",
                "1.5",
                "1e12",
                "\"2025-11-25T21:00:00Z\"",
                "\"2025-11-25T21:00:00.5+01:00\"",
                "\"soon\"",
                "\"2025-11-25T21:00:00\\u005A\"",
                "99999999999999",
                "9223372036854775808",
                "0001764104400000",
            ])
            .prop_map(|t| format!(r#""ts":{t}"#)),
        ];
        let labels = prop::sample::select(vec![
            "{}",
            "null",
            r#"{"host":"h1","dc":"eu-1"}"#,
            r#"{ "dc" : "eu-1" , "host" : "h1" }"#,
            r#"{"host":"Zürich 東京"}"#,
            r#"{"host":"\u0068"}"#,
            r#"{"host":1}"#,
            r#"["host"]"#,
            r#"{"bad key":"v"}"#,
            r#"{"host":"a","host":"b"}"#,
            r#"{"a":{"b":"c"}}"#,
            r#"{"k":"v",}"#,
            r#"{"host":"}{","dc":"a\"}"}"#,
            r#"{"rack":"r1","host":"web-01.example.com}","dc":"eu-1"}"#,
            r#"{"host":"a	b"}"#,
            r#"{"host":"h1"} "#,
            r#"{"host" "h1"}"#,
        ])
        .prop_map(|l| format!(r#""labels":{l}"#));
        let dedupe = prop::sample::select(vec![r#""d-1""#, r#""""#, "null", "5", r#""\n""#])
            .prop_map(|d| format!(r#""dedupe_id":{d}"#));
        let other = prop::sample::select(vec![r#""lables":{}"#, r#""x":1"#]).prop_map(str::to_string);
        prop_oneof![4 => metric, 4 => value, 3 => ts, 3 => labels, 1 => dedupe, 1 => other]
    }

    /// A sample: usually metric, value, ts and labels in order; sometimes any fields at all.
    fn sample() -> impl Strategy<Value = String> {
        let usual = (
            0..3usize,
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            1_700_000_000_000i64..1_800_000_000_000,
            0..4usize,
        )
            .prop_map(|(m, v, t, h)| format!(r#"{{"metric":"m{m}","value":{v},"ts":{t},"labels":{{"host":"h{h}"}}}}"#));
        let any_fields = (prop::collection::vec(field(), 0..6), prop::sample::select(vec!["", " ", "\n\t"]))
            .prop_map(|(fields, ws)| format!("{{{ws}{}{ws}}}", fields.join(&format!("{ws},{ws}"))));
        prop_oneof![3 => usual, 2 => any_fields, 1 => Just("[\"cpu\",1]".to_string()), 1 => Just("3".to_string())]
    }

    /// A body: wrapped or bare, a few samples, now and then cut short or followed by junk.
    fn body() -> impl Strategy<Value = String> {
        (prop::collection::vec(sample(), 0..6), any::<bool>(), 0..8u8, any::<u16>()).prop_map(
            |(samples, wrapped, mangle, cut)| {
                let array = format!("[{}]", samples.join(","));
                let mut body = if wrapped { format!(r#"{{"samples":{array}}}"#) } else { array };
                match mangle {
                    0 => {
                        // Cut short on a character boundary (the fields hold non-ASCII text).
                        let mut end = cut as usize % (body.len() + 1);
                        while !body.is_char_boundary(end) {
                            end -= 1;
                        }
                        body.truncate(end)
                    }
                    1 => body.push_str(" x"),
                    2 => body = format!(" \n{body}\r\n"),
                    3 => body = body.replacen("\"samples\"", "\"samples\",\"samples\":[]", 1),
                    _ => {}
                }
                body
            },
        )
    }

    fn bits(result: Result<Vec<Sample>, IngestError>) -> Result<Vec<(Sample, u64)>, IngestError> {
        result.map(|samples| samples.into_iter().map(|s| (s.clone(), s.value.to_bits())).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// Whatever the body, `parse_bulk` (fast scanner first) answers exactly what the serde
        /// path answers: the same samples to the bit, or the same error.
        #[test]
        fn the_fast_scanner_agrees_with_serde(body in body(), max_batch in 1..8usize) {
            let limits = Limits { max_batch_samples: max_batch, ..Limits::default() };
            let both = (
                bits(parse_bulk(body.as_bytes(), &limits, NOW)),
                bits(parse_bulk_serde(body.as_bytes(), &limits, NOW)),
            );
            prop_assert_eq!(both.0, both.1, "{}", body);
        }
    }
}
