//! The ecosystem's protocols into microdash (issue 18, item 1), with the real clients:
//! - Prometheus remote_write: Debian's `prometheus` scrapes Debian's `prometheus-node-exporter`
//!   and remote-writes to a tenant, whose queries and alert rules see the series; nothing reaches
//!   another tenant. Bad input gets the status codes Prometheus' queue manager acts on (4xx:
//!   dropped, 429/5xx: retried).
//! - InfluxDB line protocol: the InfluxDB Python client library (PyPI `influxdb-client`, in the
//!   virtualenv the test command makes, `MICRODASH_TEST_PYTHON`) writes points, plain and gzip.
//! - VictoriaMetrics' JSON lines: Debian's `victoria-metrics` exports series (`/api/v1/export`)
//!   and microdash's `/api/v1/import` takes that export, plain and gzip.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Server, client, create_tenant, free_port, now_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn get(server: &Server, token: &str, path: &str) -> Value {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn eventually<F: AsyncFnMut() -> Result<Value, String>>(within: Duration, what: &str, mut check: F) -> Value {
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > within => panic!("{what}: not within {within:?}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test]
async fn prometheus_scrapes_node_exporter_and_remote_writes_into_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "nodes").await;
    let other = create_tenant(&server, "others").await;
    // An alert rule of the tenant on a series only Prometheus writes.
    let rule = json!({
        "name": "node-up", "metric": "up", "match": {"job": "node"},
        "condition": {"aggregation": "last", "op": ">", "threshold": 0.5}, "for": "0s", "severity": "info"
    });
    let r = client().post(server.url("/api/v1/rules")).bearer_auth(&token).json(&rule).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let exporter_port = free_port();
    let _exporter = Daemon(
        Command::new("/usr/bin/prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter (Debian package; the test command installs it)"),
    );
    let config = dir.path().join("prometheus.yml");
    // The token in a file of its own, as the dashboard's "Send data" block tells users.
    let token_file = dir.path().join("microdash-token");
    std::fs::write(&token_file, &token).unwrap();
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n\
             remote_write:\n  - url: {}\n    authorization:\n      credentials_file: {}\n\
             \x20   queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 2000, min_backoff: 100ms}}\n",
            server.url("/api/v1/write"),
            token_file.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Daemon(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package; the test command installs it)"),
    );

    // node_exporter's series arrive with Prometheus' target labels.
    let since = now_ms() - 60_000;
    let load = eventually(Duration::from_secs(60), "node_load1 written by Prometheus", async || {
        let v =
            get(&server, &token, &format!("/api/v1/query?metric=node_load1&from={since}&to=now&resolution=raw")).await;
        if v["series"][0]["points"].as_array().is_some_and(|p| !p.is_empty()) { Ok(v) } else { Err(v.to_string()) }
    })
    .await;
    let labels = &load["series"][0]["labels"];
    assert_eq!(
        (labels["job"].as_str(), labels["instance"].as_str()),
        (Some("node"), Some(&*format!("127.0.0.1:{exporter_port}"))),
        "{load}"
    );
    let metrics = get(&server, &token, "/api/v1/metrics").await;
    let names: Vec<&str> = metrics["metrics"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for name in ["up", "node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "scrape_duration_seconds"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // The alert rule fires on what Prometheus wrote.
    eventually(Duration::from_secs(30), "node-up FIRING", async || {
        let v = get(&server, &token, "/api/v1/alerts").await;
        let firing = v["alerts"].as_array().unwrap().iter().any(|a| a["rule"] == "node-up" && a["state"] == "FIRING");
        if firing { Ok(v) } else { Err(v.to_string()) }
    })
    .await;
    // Nothing of it reaches another tenant.
    let theirs = get(&server, &other, "/api/v1/metrics").await;
    assert_eq!(theirs["metrics"], json!([]), "{theirs}");
}

/// One series of a test request: its labels (with `__name__`), one value and its timestamp.
type OneSample<'a> = (&'a [(&'a str, &'a str)], f64, i64);

fn write_body(series: &[OneSample<'_>]) -> Vec<u8> {
    use prost::Message;
    #[derive(Clone, PartialEq, Message)]
    struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Label {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Sample {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(int64, tag = "2")]
        timestamp: i64,
    }
    let request = WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, value, timestamp)| TimeSeries {
                labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
                samples: vec![Sample { value: *value, timestamp: *timestamp }],
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap()
}

async fn write(server: &Server, token: Option<&str>, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = client()
        .post(server.url("/api/v1/write"))
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_remote_write_input_gets_the_status_prometheus_acts_on_and_loses_nothing_valid() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.token.clone();
    let now = now_ms();
    const PB: &str = "application/x-protobuf";

    let (status, body) = write(&server, Some(&token), PB, b"definitely not snappy".to_vec()).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("body")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("snappy"), "{body}");
    let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 100]).unwrap();
    let (status, body) = write(&server, Some(&token), PB, not_protobuf).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("WriteRequest"), "{body}");
    let (status, body) = write(&server, Some(&token), "application/json", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let good = write_body(&[(&[("__name__", "rw_ok")], 1.0, now)]);
    assert_eq!(write(&server, None, PB, good.clone()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(write(&server, Some("mdt_wrong"), PB, good.clone()).await.0, StatusCode::UNAUTHORIZED);

    // One bad series (no __name__, a name microdash cannot hold) costs only itself: the valid
    // samples are stored, and the 400 (which Prometheus does not retry) says which was refused.
    let mixed = write_body(&[
        (&[("__name__", "rw_ok"), ("instance", "a")], 2.0, now),
        (&[("job", "nameless")], 3.0, now),
        (&[("__name__", "rw_ok"), ("instance", "b")], 4.0, now),
        (&[("__name__", "rw_future")], 5.0, now + 86_400_000),
    ]);
    let (status, body) = write(&server, Some(&token), PB, mixed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("2 sample(s) refused") && detail.contains(r#"{job="nameless"}"#), "{detail}");
    assert!(detail.contains("the other 2 sample(s) were stored"), "{detail}");
    let stored =
        get(&server, &token, &format!("/api/v1/query?metric=rw_ok&from={}&to=now&resolution=raw", now - 1)).await;
    let mut values: Vec<f64> = stored["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()))
        .collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [2.0, 4.0], "{stored}");

    // A valid request: 2xx means durable.
    let (status, body) = write(&server, Some(&token), PB, good).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(1)), "{body}");
}

/// The Python of the test command's virtualenv with the client libraries.
fn python() -> String {
    std::env::var("MICRODASH_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("MICRODASH_TEST_PYTHON is not set: the test command makes the client libraries' virtualenv (make test)")
    })
}

/// Runs `script` with the client libraries' Python; answers what it printed (JSON).
fn run_python(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

const INFLUX_CLIENT: &str = r#"
import json, sys
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
url, token, ts = sys.argv[1], sys.argv[2], int(sys.argv[3])
answers = {}
for gzip in (False, True):
    with InfluxDBClient(url=url, token=token, org="any", enable_gzip=gzip) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        floor = "3" if gzip else "2"
        write.write(bucket="any", record=Point("room").tag("floor", floor).field("temp", 21.5).field("people", 4).time(ts, WritePrecision.MS))
        write.write(bucket="any", record=f"room,floor={floor} temp=22.25 {ts + 1000}", write_precision=WritePrecision.MS)
        try:
            write.write(bucket="any", record=["room,floor=9 temp=1", "this is not line protocol"])
            answers[f"bad-{gzip}"] = 204
        except ApiException as e:
            answers[f"bad-{gzip}"] = e.status
            answers[f"bad-{gzip}-body"] = json.loads(e.body)
print(json.dumps(answers))
"#;

#[tokio::test]
async fn the_influxdb_client_library_writes_line_protocol_into_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "sensors").await;
    let ts = now_ms() - 60_000;
    let answers = run_python(INFLUX_CLIENT, &[&server.base, &token, &ts.to_string()]);
    // A bad line is refused alone, and the client sees InfluxDB's partial-write status.
    for gzip in ["False", "True"] {
        assert_eq!(answers[format!("bad-{gzip}")], 400, "{answers}");
        let detail = answers[format!("bad-{gzip}-body")]["detail"].as_str().unwrap();
        assert!(detail.contains("line 2") && detail.contains("the other 1 sample(s) were stored"), "{detail}");
    }
    let temp =
        get(&server, &token, &format!("/api/v1/query?metric=room.temp&from={ts}&to={}&resolution=raw", ts + 1000))
            .await;
    let mut seen: Vec<(String, Vec<Value>)> = temp["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["labels"]["floor"].as_str().unwrap().to_string(), s["points"].as_array().unwrap().clone()))
        .filter(|(floor, _)| floor != "9") // the good line of the refused request, written at "now"
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = |v: f64| vec![json!([ts, v]), json!([ts + 1000, 22.25])];
    assert_eq!(seen, [("2".to_string(), expected(21.5)), ("3".to_string(), expected(21.5))], "{temp}");
    let people =
        get(&server, &token, &format!("/api/v1/query?metric=room.people&from={ts}&to={ts}&resolution=raw")).await;
    assert_eq!(people["series"].as_array().unwrap().len(), 2, "integer fields too: {people}");
    // Another tenant sees none of it.
    let theirs = get(&server, &server.token, "/api/v1/metrics").await;
    assert!(
        !theirs["metrics"].as_array().unwrap().iter().any(|m| m.as_str().unwrap_or("").starts_with("room.")),
        "{theirs}"
    );
}

/// A VictoriaMetrics user brings their history along: the real VictoriaMetrics takes samples in
/// Prometheus' text format (so the lines microdash reads are VictoriaMetrics' own writing, not
/// this test's), exports them, and microdash imports the export into the tenant and answers the
/// same points.
#[tokio::test]
async fn a_victoriametrics_export_imports_into_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "migrated").await;
    let other = create_tenant(&server, "others").await;
    let port = free_port();
    let vm_base = format!("http://127.0.0.1:{port}");
    let _vm = Daemon(
        Command::new("/usr/bin/victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics (Debian package; the test command installs it)"),
    );
    eventually(Duration::from_secs(20), "VictoriaMetrics up", async || {
        let r = client().get(format!("{vm_base}/health")).send().await.map_err(|e| e.to_string())?;
        r.status().is_success().then_some(Value::Null).ok_or_else(|| r.status().to_string())
    })
    .await;
    let t0 = now_ms() - 3_600_000;
    let mut text = String::new();
    for i in 0..30i64 {
        let ts = t0 + i * 10_000;
        text.push_str(&format!("node_load1{{instance=\"a:9100\",job=\"node\"}} {} {ts}\n", 0.25 + i as f64 / 8.0));
        text.push_str(&format!("http_requests_total{{code=\"200\",path=\"/ü\"}} {} {ts}\n", 1e12 + (i * 37) as f64));
    }
    let r = client().post(format!("{vm_base}/api/v1/import/prometheus")).body(text).send().await.unwrap();
    assert!(r.status().is_success(), "VictoriaMetrics' import: {}", r.status());
    client().get(format!("{vm_base}/internal/force_flush")).send().await.unwrap();
    let export = eventually(Duration::from_secs(20), "VictoriaMetrics' export", async || {
        let r = client()
            .get(format!("{vm_base}/api/v1/export"))
            .query(&[("match[]", "{__name__=~\"node_load1|http_requests_total\"}")])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body = r.text().await.map_err(|e| e.to_string())?;
        let points: usize = body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|l| l["values"].as_array().map_or(0, Vec::len))
            .sum();
        (points == 60).then(|| Value::String(body.clone())).ok_or(format!("{points} points: {body}"))
    })
    .await;
    let export = export.as_str().unwrap().to_string();

    let import = |token: Option<&str>, body: Vec<u8>, gzip: bool| {
        let mut request = client().post(server.url("/api/v1/import")).body(body);
        if gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for token in [None, Some("mdt_wrong")] {
        let r = import(token, export.clone().into_bytes(), false).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = import(Some(&token), export.clone().into_bytes(), false).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());
    // The same export gzip-compressed: the same samples again.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, export.as_bytes()).unwrap();
    let r = import(Some(&token), gz.finish().unwrap(), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().await.unwrap());

    // microdash answers each series with VictoriaMetrics' exported points, to the bit.
    for line in export.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        let name = line["metric"]["__name__"].as_str().unwrap();
        let expected: Vec<Value> = line["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(line["values"].as_array().unwrap())
            .map(|(t, v)| json!([t, v.as_f64().unwrap()]))
            .collect();
        let answer =
            get(&server, &token, &format!("/api/v1/query?metric={name}&from={t0}&to={}&resolution=raw", t0 + 300_000))
                .await;
        let series = answer["series"].as_array().unwrap();
        assert_eq!(series.len(), 1, "{answer}");
        let mut labels = line["metric"].clone();
        labels.as_object_mut().unwrap().remove("__name__");
        assert_eq!(series[0]["labels"], labels);
        assert_eq!(series[0]["points"].as_array().unwrap(), &expected, "{name}");
    }
    let theirs = get(&server, &other, "/api/v1/metrics").await;
    assert_eq!(theirs["metrics"], json!([]), "another tenant sees none of it");

    // A bad line is refused alone and named; the lines around it are stored.
    let good = |ts: i64| format!("{{\"metric\":{{\"__name__\":\"partial\"}},\"values\":[1],\"timestamps\":[{ts}]}}");
    let far = now_ms() + 86_400_000;
    let body = format!("{}\n{{\"metric\":\n{}\n{}\n", good(t0), good(far), good(t0 + 1000));
    let r = import(Some(&token), body.into_bytes(), false).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let problem: Value = r.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("2 line(s) or sample(s) refused, the first on line 2"), "{detail}");
    assert!(detail.contains("the other 2 sample(s) were stored"), "{detail}");
    assert_eq!(problem["field"], "line 2", "{problem}");
    let partial =
        get(&server, &token, &format!("/api/v1/query?metric=partial&from={t0}&to={far}&resolution=raw")).await;
    assert_eq!(partial["series"][0]["points"], json!([[t0, 1.0], [t0 + 1000, 1.0]]), "{partial}");
    // Not gzip though it says so.
    let r = import(Some(&token), b"{not gzip".to_vec(), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Whitespace alone is no import, for both line formats.
    for (path, what) in [("/api/v1/import", "JSON"), ("/api/v2/write", "line protocol")] {
        let r =
            client().post(format!("{}{path}", server.base)).bearer_auth(&token).body(" \r\n\t\n").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["field"], "body", "{path}: {problem}");
        assert_eq!(problem["detail"], format!("the body has no lines of {what}"), "{path}: {problem}");
    }
}

const OTEL_SDK: &str = r#"
import json, sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
url, token, compression = sys.argv[1], sys.argv[2], sys.argv[3]
exporter = OTLPMetricExporter(endpoint=url + "/v1/metrics", headers={"Authorization": "Bearer " + token},
                              compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3600000)
provider = MeterProvider(resource=Resource.create({"service.name": "shop-" + compression}), metric_readers=[reader])
meter = provider.get_meter("test")
meter.create_counter("orders").add(3, {"region": "eu"})
meter.create_up_down_counter("carts").add(-2)
meter.create_histogram("checkout.seconds").record(0.3)
meter.create_histogram("checkout.seconds").record(7.0)
meter.create_observable_gauge("stock", callbacks=[lambda options: [__import__("opentelemetry").metrics.Observation(42.0, {"sku": "a"})]])
ok = provider.force_flush(10000)
provider.shutdown()
print(json.dumps({"flushed": ok}))
"#;

#[tokio::test]
async fn the_opentelemetry_sdk_exports_gauges_sums_and_histograms_into_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "otel").await;
    for compression in ["none", "gzip"] {
        let answer = run_python(OTEL_SDK, &[&server.base, &token, compression]);
        assert_eq!(answer["flushed"], true, "{answer}");
    }
    let query = |metric: &str| format!("/api/v1/query?metric={metric}&from=now-1h&to=now&resolution=raw&agg=last");
    let last = |v: &Value, service: &str| -> Vec<(Value, f64)> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["labels"]["service.name"] == service)
            .map(|s| (s["labels"].clone(), s["points"].as_array().unwrap().last().unwrap()[1].as_f64().unwrap()))
            .collect()
    };
    for service in ["shop-none", "shop-gzip"] {
        let orders = last(&get(&server, &token, &query("orders")).await, service);
        assert_eq!(orders.len(), 1, "{orders:?}");
        assert_eq!((orders[0].0["region"].as_str(), orders[0].1), (Some("eu"), 3.0), "a counter is a sum");
        assert_eq!(last(&get(&server, &token, &query("carts")).await, service)[0].1, -2.0, "an up-down counter");
        let stock = last(&get(&server, &token, &query("stock")).await, service);
        assert_eq!((stock[0].0["sku"].as_str(), stock[0].1), (Some("a"), 42.0), "a gauge");
        assert_eq!(last(&get(&server, &token, &query("checkout.seconds.count")).await, service)[0].1, 2.0);
        assert_eq!(last(&get(&server, &token, &query("checkout.seconds.sum")).await, service)[0].1, 7.3);
        let buckets = last(&get(&server, &token, &query("checkout.seconds.bucket")).await, service);
        let le = |bound: &str| buckets.iter().find(|(l, _)| l["le"] == bound).map(|(_, v)| *v);
        // The SDK's default bounds (0, 5, 10, 25, …): cumulative counts, as Prometheus' `le`.
        assert_eq!(
            (le("0"), le("5"), le("10"), le("+Inf")),
            (Some(0.0), Some(1.0), Some(2.0), Some(2.0)),
            "{buckets:?}"
        );
    }
    // The SDK's resource attributes are labels; nothing reaches another tenant.
    let theirs = get(&server, &server.token, "/api/v1/metrics").await;
    assert!(!theirs["metrics"].as_array().unwrap().iter().any(|m| m == "orders"), "{theirs}");
    // Not OTLP: a clear 400 or 415, as OTLP/HTTP says (the exporter does not retry those).
    let r = client()
        .post(server.url("/v1/metrics"))
        .bearer_auth(&token)
        .header("Content-Type", "application/x-protobuf")
        .body(vec![0xffu8; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client().post(server.url("/v1/metrics")).bearer_auth(&token).body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// The `promtool` of Debian's `prometheus` package against `/prometheus`, with the token as the
/// Basic password of the URL (promtool 2.42 sends no other header); what it prints.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("/usr/bin/promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus; the test command installs it)");
    assert!(out.status.success(), "promtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_prometheus_api_answers_promtool_and_prometheus_federates_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "fleet").await;
    let other = create_tenant(&server, "neighbours").await;
    let now = now_ms();
    let samples = json!([
        {"metric": "cpu.usage", "labels": {"host": "web-1", "env": "prod"}, "value": 0.5, "ts": now - 2000},
        {"metric": "cpu.usage", "labels": {"host": "db-1", "service.name": "pg"}, "value": 0.75, "ts": now - 1000},
        {"metric": "mem_free", "labels": {"host": "web-1"}, "value": 1024.0, "ts": now - 1000},
    ]);
    assert_eq!(common::ingest(&server, &token, samples).await, StatusCode::ACCEPTED);
    let theirs = json!([{"metric": "cpu.usage", "labels": {"host": "secret-host"}, "value": 9.0, "ts": now}]);
    assert_eq!(common::ingest(&server, &other, theirs).await, StatusCode::ACCEPTED);

    // promtool reads series and label values in Prometheus' names (dots become underscores).
    let base = server.url("/prometheus").replacen("://", &format!("://fleet:{token}@"), 1);
    let series = promtool(&["query", "series", "--match", r#"cpu_usage{host=~"web-.*|db-1"}"#, &base]);
    assert_eq!(
        series.lines().collect::<Vec<_>>(),
        [
            r#"{__name__="cpu_usage", env="prod", host="web-1"}"#,
            r#"{__name__="cpu_usage", host="db-1", service_name="pg"}"#
        ],
        "{series}"
    );
    let hosts = promtool(&["query", "labels", &base, "host"]);
    assert_eq!(hosts.lines().collect::<Vec<_>>(), ["db-1", "web-1"], "the other tenant's host is not listed: {hosts}");
    let names = promtool(&["query", "labels", &base, "__name__"]);
    assert_eq!(names.lines().collect::<Vec<_>>(), ["cpu_usage", "mem_free"], "{names}");
    // The same series microdash's own API lists.
    let own = get(&server, &token, "/api/v1/series?metric=cpu.usage").await;
    assert_eq!(own["series"].as_array().unwrap().len(), 2, "{own}");

    // The JSON API directly: `series` across metrics, `labels`, every error in Prometheus' shape
    // with its errorType.
    let r = client()
        .get(server.url("/prometheus/api/v1/series"))
        .bearer_auth(&token)
        .query(&[("match[]", r#"{host="web-1"}"#)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "cpu_usage and mem_free of web-1: {v}");
    // The same as a form, as Grafana sends it.
    let r = client()
        .post(server.url("/prometheus/api/v1/series"))
        .bearer_auth(&token)
        .form(&[("match[]", r#"{host="web-1"}"#)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), v, "POST answers as GET");
    let r = client().post(server.url("/prometheus/api/v1/labels")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a POST without its form");
    let metadata = get(&server, &token, "/prometheus/api/v1/metadata?metric=cpu_usage").await;
    assert_eq!(metadata, json!({"status": "success", "data": {}}), "no metadata is kept");
    let labels = get(&server, &token, "/prometheus/api/v1/labels").await;
    assert_eq!(labels["data"], json!(["__name__", "env", "host", "service_name"]), "{labels}");
    for (path, token, status, error_type) in [
        ("/prometheus/api/v1/series?match[]=rate(x[5m])", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/series", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/labels?start=yesterday", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/labels?limit=2147483648", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/series?match[]=up", "md_wrong", 401, "unauthorized"),
        ("/prometheus/api/v1/query_exemplars?query=up", token.as_str(), 404, "not_found"),
        ("/prometheus/api/v1/query?query=topk(1,up)", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/query?query=up%20%2B%20on(host)%20group_left(host)%20up", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/query?query=cpu_usage%20%2B%20on()%20cpu_usage", token.as_str(), 422, "execution"),
        ("/prometheus/api/v1/query?query=sum(", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/query_range?query=up&start=0&end=86400&step=1", token.as_str(), 400, "bad_data"),
        ("/prometheus/api/v1/query_range?query=up&start=10&end=0&step=1", token.as_str(), 400, "bad_data"),
    ] {
        let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!((v["status"].as_str(), v["errorType"].as_str()), (Some("error"), Some(error_type)), "{path}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {v}");
    }

    // Debian's Prometheus scrapes the tenant's /prometheus/federate and stores what it answers:
    // the same values, the labels as they were (honor_labels), nothing of the other tenant.
    let token_file = dir.path().join("microdash-token");
    std::fs::write(&token_file, &token).unwrap();
    let config = dir.path().join("prometheus.yml");
    let host_port = server.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\n\
             scrape_configs:\n  - job_name: microdash\n    honor_labels: true\n    metrics_path: /prometheus/federate\n\
             \x20   params: {{'match[]': ['{{__name__=~\".+\"}}']}}\n\
             \x20   authorization: {{credentials_file: {}}}\n\
             \x20   static_configs: [{{targets: ['{host_port}']}}]\n",
            token_file.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Daemon(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package; the test command installs it)"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let query = |q: &str| format!("{prom}/api/v1/query?query={}", urlencode(q));
    let found = eventually(Duration::from_secs(60), "federated cpu_usage in Prometheus", async || {
        let r = client().get(query("cpu_usage")).send().await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["data"]["result"].as_array().is_some_and(|r| r.len() == 2) { Ok(v) } else { Err(v.to_string()) }
    })
    .await;
    let mut got: Vec<(String, String)> = found["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["host"].as_str().unwrap().to_string(), s["value"][1].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, [("db-1".to_string(), "0.75".to_string()), ("web-1".to_string(), "0.5".to_string())], "{found}");
    let r = client().get(query(r#"{host="secret-host"}"#)).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["result"], json!([]), "the other tenant's series never reach this scrape: {v}");
    let r = client().get(query(r#"mem_free{job="microdash"}"#)).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1024", "{v}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// PromQL over the same samples in microdash and in Debian's Prometheus (its remote-write
/// receiver): every served kind of expression answers the same series with the same values, at
/// instants and over a range; promtool reads microdash as it reads Prometheus.
#[tokio::test]
async fn promql_answers_what_prometheus_answers_on_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "promql").await;
    let other = create_tenant(&server, "bystander").await;
    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {scrape_interval: 1m}\n").unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = Daemon(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package; the test command installs it)"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    eventually(Duration::from_secs(30), "Prometheus ready", async || {
        match client().get(format!("{prom}/-/ready")).send().await {
            Ok(r) if r.status().is_success() => Ok(Value::Null),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // 30 minutes of samples every 10 s, ending a minute ago, at .123 s (never on an evaluation
    // boundary, where Prometheus 2.42's closed windows and microdash's half-open ones differ):
    // a counter per host (c resets halfway) and a gauge per host.
    let end = (now_ms() / 1000 - 60) * 1000;
    let first = end - 30 * 60 * 1000 + 123;
    let hosts = ["a", "b", "c"];
    let mut label_sets: Vec<Vec<(String, String)>> = Vec::new();
    let mut values: Vec<(usize, f64, i64)> = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        label_sets.push(vec![
            ("__name__".into(), "http_requests_total".into()),
            ("code".into(), if h == 2 { "500".into() } else { "200".into() }),
            ("host".into(), host.to_string()),
        ]);
        label_sets.push(vec![("__name__".into(), "node_temp_celsius".into()), ("host".into(), host.to_string())]);
        let mut counter = 0.0;
        for i in 0..180 {
            counter += ((i * 7 + h * 3) % 13) as f64;
            if h == 2 && i == 90 {
                counter = 2.0;
            }
            let gauge = 20.0 + ((i * (h + 2)) % 11) as f64 * 0.5;
            let ts = first + i as i64 * 10_000;
            values.push((h * 2, counter, ts));
            values.push((h * 2 + 1, gauge, ts));
        }
    }
    // For vector matching: two filesystems per host (bytes available and size), and an info
    // series per host with a label to copy (`os`).
    for (h, host) in hosts.iter().enumerate() {
        for (m, mountpoint) in ["/", "/data"].iter().enumerate() {
            let size = (h + 1 + m) as f64 * 50e9;
            label_sets.push(vec![
                ("__name__".into(), "node_filesystem_avail_bytes".into()),
                ("host".into(), host.to_string()),
                ("mountpoint".into(), mountpoint.to_string()),
            ]);
            label_sets.push(vec![
                ("__name__".into(), "node_filesystem_size_bytes".into()),
                ("host".into(), host.to_string()),
                ("mountpoint".into(), mountpoint.to_string()),
            ]);
            let index = label_sets.len() - 2;
            for i in 0..180 {
                let ts = first + i as i64 * 10_000;
                values.push((index, size * (0.2 + ((i * (h + m + 1)) % 13) as f64 * 0.05), ts));
                values.push((index + 1, size, ts));
            }
        }
        label_sets.push(vec![
            ("__name__".into(), "node_uname_info".into()),
            ("host".into(), host.to_string()),
            ("os".into(), if h == 2 { "alpine".into() } else { "debian".into() }),
        ]);
        let index = label_sets.len() - 1;
        values.extend((0..180).map(|i| (index, 1.0, first + i as i64 * 10_000)));
    }
    let owned: Vec<Vec<(&str, &str)>> =
        label_sets.iter().map(|l| l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).collect();
    let samples: Vec<OneSample<'_>> = values.iter().map(|(s, v, ts)| (owned[*s].as_slice(), *v, *ts)).collect();
    let body = write_body(&samples);
    let (status, answer) = write(&server, Some(&token), "application/x-protobuf", body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let r = client()
        .post(format!("{prom}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "Prometheus' receiver: {} {}", r.status(), r.text().await.unwrap());
    // The other tenant has a series of the same name, which must never show.
    let theirs = json!([{"metric": "node_temp_celsius", "labels": {"host": "a"}, "value": 999.0, "ts": end - 5000}]);
    assert_eq!(common::ingest(&server, &other, theirs).await, StatusCode::ACCEPTED);

    let ours = |path: String| {
        let token = token.clone();
        let url = server.url(&path);
        async move {
            let r = client().get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{path}: {v}");
            v
        }
    };
    let theirs = |path: String| {
        let url = format!("{prom}{path}");
        async move {
            let v: Value = client().get(url).send().await.unwrap().json().await.unwrap();
            assert_eq!(v["status"], "success", "{path}: {v}");
            v
        }
    };
    let t = (end - 65_000) as f64 / 1000.0;
    for query in [
        "node_temp_celsius",
        r#"node_temp_celsius{host=~"a|b"}"#,
        r#"node_temp_celsius{host!="a"} offset 5m"#,
        r#"{__name__=~"node_.*", host!~"c"}"#,
        "rate(http_requests_total[5m])",
        "irate(http_requests_total[1m])",
        r#"increase(http_requests_total{host="c"}[10m])"#,
        "delta(node_temp_celsius[2m])",
        "sum by (code) (rate(http_requests_total[5m]))",
        "avg without (host) (node_temp_celsius)",
        "max(node_temp_celsius)",
        "min by (host) (node_temp_celsius)",
        "count(http_requests_total)",
        "sum(increase(http_requests_total[15m]))",
        "avg_over_time(node_temp_celsius[10m])",
        "min_over_time(node_temp_celsius[10m])",
        "max_over_time(node_temp_celsius[10m])",
        "sum_over_time(node_temp_celsius[10m])",
        "count_over_time(node_temp_celsius[10m])",
        "last_over_time(node_temp_celsius[10m])",
        "node_temp_celsius > 21",
        "21 < node_temp_celsius",
        "node_temp_celsius > bool 21",
        "2 * node_temp_celsius - 1",
        "-node_temp_celsius",
        "abs(node_temp_celsius - 22)",
        "1 + 2 * 3",
        // Vector matching.
        "100 * (1 - node_filesystem_avail_bytes / node_filesystem_size_bytes)",
        "node_filesystem_avail_bytes < node_filesystem_size_bytes * 0.5",
        "node_filesystem_avail_bytes > bool 0.4 * node_filesystem_size_bytes",
        r#"node_temp_celsius - on(host) node_filesystem_avail_bytes{mountpoint="/data"} / 1e9"#,
        "rate(http_requests_total[5m]) * ignoring(code) node_temp_celsius",
        "node_filesystem_avail_bytes * on(host) group_left(os) node_uname_info",
        "node_temp_celsius / on(host) group_right node_filesystem_size_bytes",
        "node_filesystem_size_bytes >= bool ignoring(mountpoint, os) group_left(os) (node_uname_info * 1e11)",
        "sum by (host) (node_filesystem_avail_bytes) / on(host) group_left sum by (host) (node_filesystem_size_bytes)",
        r#"node_temp_celsius and on(host) http_requests_total{code="200"}"#,
        r#"node_temp_celsius unless on(host) http_requests_total{code="200"}"#,
        r#"node_temp_celsius{host="a"} or node_filesystem_size_bytes"#,
        "node_temp_celsius > 21 or ignoring(mountpoint) node_filesystem_avail_bytes",
        r#"node_uname_info and ignoring(os) node_temp_celsius unless on(os) node_uname_info{os="alpine"}"#,
    ] {
        let path = format!("/api/v1/query?query={}&time={t}", urlencode(query));
        let (a, b) = (ours(format!("/prometheus{path}")).await, theirs(path).await);
        same_result(query, &a["data"], &b["data"]);
    }
    let (start, stop) = ((end - 20 * 60_000) as f64 / 1000.0, (end - 60_000) as f64 / 1000.0);
    for query in [
        "sum(rate(http_requests_total[2m]))",
        "node_temp_celsius",
        "max_over_time(node_temp_celsius[3m]) > 22",
        "100 * (1 - node_filesystem_avail_bytes / node_filesystem_size_bytes)",
        "node_filesystem_avail_bytes * on(host) group_left(os) node_uname_info",
        "node_filesystem_avail_bytes > bool on(host, mountpoint) (node_filesystem_size_bytes / 2)",
        "node_temp_celsius > 21 and on(host) node_filesystem_avail_bytes < 0.5 * node_filesystem_size_bytes",
    ] {
        let path = format!("/api/v1/query_range?query={}&start={start}&end={stop}&step=60", urlencode(query));
        let (a, b) = (ours(format!("/prometheus{path}")).await, theirs(path).await);
        same_result(query, &a["data"], &b["data"]);
    }

    // What Prometheus refuses while evaluating, microdash refuses in the same words.
    for query in [
        "node_temp_celsius + on(host) node_filesystem_avail_bytes",
        "node_filesystem_size_bytes / on(host) group_right node_temp_celsius",
        "node_filesystem_avail_bytes + on(host) node_temp_celsius",
        r#"{__name__=~"node_filesystem_.*"} * 2"#,
    ] {
        let path = format!("/api/v1/query?query={}&time={t}", urlencode(query));
        let r = client().get(server.url(&format!("/prometheus{path}"))).bearer_auth(&token).send().await.unwrap();
        let status = r.status();
        let a: Value = r.json().await.unwrap();
        let r = client().get(format!("{prom}{path}")).send().await.unwrap();
        assert_eq!(status, r.status(), "{query}: {a}");
        let b: Value = r.json().await.unwrap();
        assert_eq!((&a["errorType"], &a["error"]), (&b["errorType"], &b["error"]), "{query}");
        assert_eq!(b["errorType"], "execution", "{query}: {b}");
    }

    // Grafana's default: the same query as a POST form answers the same.
    let r = client()
        .post(server.url("/prometheus/api/v1/query_range"))
        .bearer_auth(&token)
        .form(&[
            ("query", "sum(rate(http_requests_total[2m]))"),
            ("start", &start.to_string()),
            ("end", &stop.to_string()),
            ("step", "60"),
        ])
        .send()
        .await
        .unwrap();
    let form: Value = r.json().await.unwrap();
    let path = format!(
        "/prometheus/api/v1/query_range?query={}&start={start}&end={stop}&step=60",
        urlencode("sum(rate(http_requests_total[2m]))")
    );
    assert_eq!(form, ours(path).await);

    // promtool against microdash gives what microdash's own query API gives.
    let base = server.url("/prometheus").replacen("://", &format!("://promql:{token}@"), 1);
    let out = promtool(&[
        "query",
        "instant",
        "-o",
        "json",
        "--time",
        &t.to_string(),
        &base,
        r#"node_temp_celsius{host="b"}"#,
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let own = ours(format!(
        "/api/v1/query?metric=node_temp_celsius&match=host=b&from={}&to={}&resolution=raw",
        end - 65_000 - 10_000,
        end - 65_000
    ))
    .await;
    let last = own["series"][0]["points"].as_array().unwrap().last().unwrap()[1].as_f64().unwrap();
    assert_eq!(v[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap(), last, "{out} vs {own}");
    let out = promtool(&[
        "query",
        "range",
        "-o",
        "json",
        "--start",
        &start.to_string(),
        "--end",
        &stop.to_string(),
        "--step",
        "1m",
        &base,
        "count(node_temp_celsius)",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v[0]["values"].as_array().unwrap().iter().all(|p| p[1] == "3"),
        "three series, never the bystander's: {out}"
    );
}

/// Prometheus' `data` and microdash's agree: the same result type and series, values equal up
/// to float rounding (sums in another order).
fn same_result(query: &str, ours: &Value, theirs: &Value) {
    assert_eq!(ours["resultType"], theirs["resultType"], "{query}");
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_str().unwrap().parse::<f64>().unwrap(), b.as_str().unwrap().parse::<f64>().unwrap());
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    };
    if ours["resultType"] == "scalar" {
        assert!(close(&ours["result"][1], &theirs["result"][1]), "{query}: {ours} vs {theirs}");
        return;
    }
    let sorted = |v: &Value| {
        let mut r = v["result"].as_array().unwrap().clone();
        r.sort_by_key(|s| s["metric"].to_string());
        r
    };
    let (a, b) = (sorted(ours), sorted(theirs));
    assert!(!b.is_empty(), "{query}: Prometheus answered nothing: {theirs}");
    assert_eq!(a.len(), b.len(), "{query}: {ours} vs {theirs}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["metric"], y["metric"], "{query}");
        if let Some(points) = y["values"].as_array() {
            let ours = x["values"].as_array().unwrap();
            assert_eq!(ours.len(), points.len(), "{query}: {x} vs {y}");
            for (p, q) in ours.iter().zip(points) {
                assert_eq!(p[0], q[0], "{query}");
                assert!(close(&p[1], &q[1]), "{query}: {p} vs {q}");
            }
        } else {
            assert_eq!(x["value"][0], y["value"][0], "{query}");
            assert!(close(&x["value"][1], &y["value"][1]), "{query}: {x} vs {y}");
        }
    }
}

/// Past the raw retention PromQL reads the rollups: the last sample of each minute, at its own
/// time, never an invented point.
#[tokio::test]
async fn promql_past_the_raw_retention_reads_the_last_sample_of_each_minute() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), &[("MICRODASH_RETENTION_RAW", "1h"), ("MICRODASH_RETENTION_INTERVAL", "1s")]);
    let token = create_tenant(&server, "history").await;
    // Ten minutes of a gauge three hours ago, every 10 s at :05, :15, … :55; its value is its index.
    let base = (now_ms() - 3 * 3_600_000) / 60_000 * 60_000 + 5_000;
    let samples: Vec<Value> = (0..60)
        .map(|i| json!({"metric": "old_gauge", "labels": {"host": "a"}, "value": i, "ts": base + i * 10_000}))
        .collect();
    assert_eq!(common::ingest(&server, &token, json!(samples)).await, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(30), "raw samples past the retention purged", async || {
        let v = get(
            &server,
            &token,
            &format!("/api/v1/query?metric=old_gauge&from={base}&to={}&resolution=raw", base + 600_000),
        )
        .await;
        if v["series"].as_array().is_none_or(|s| s.iter().all(|s| s["points"] == json!([]))) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let at = |t: i64| (t as f64 / 1000.0).to_string();
    // At 5.5 minutes: the raw sample would be index 33; the newest minute that ended is minute
    // 4, whose last sample (index 29, at 4:55) is what is left.
    let v =
        get(&server, &token, &format!("/prometheus/api/v1/query?query=old_gauge&time={}", at(base + 330_000))).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "29", "{v}");
    let v = get(
        &server,
        &token,
        &format!("/prometheus/api/v1/query?query=count_over_time(old_gauge%5B10m%5D)&time={}", at(base + 600_000)),
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "10", "one sample per minute: {v}");
}
