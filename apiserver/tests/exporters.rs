//! Exporters (issue 18, item 3): a tenant admin sets one, and the server pushes the tenant's
//! newest samples to an OTLP/HTTP receiver: a receiver in this test (axum on loopback) that
//! decodes what arrives with the OpenTelemetry protobufs (`opentelemetry-proto`), and that
//! answers 503 to the first pushes so the retries are seen. Loopback is allowed to the server
//! with `MICRODASH_OUTBOUND_ALLOW`, as an operator would allow a collector on a private network.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, client, create_tenant, ingest, now_ms};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One data point as the receiver saw it: `(tenant attribute, metric, host label, value)`.
type Seen = (String, String, String, f64);

/// What the receiver got: per accepted push, the authorization header and its points.
#[derive(Default)]
struct Received {
    refused: usize,
    pushes: Vec<(String, Vec<Seen>)>,
}

async fn receiver(refuse_first: usize) -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let mut r = state.lock().unwrap();
                if r.refused < refuse_first {
                    r.refused += 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let request = ExportMetricsServiceRequest::decode(body).unwrap();
                let mut points = Vec::new();
                for rm in &request.resource_metrics {
                    let attr = |key: &str| {
                        rm.resource
                            .as_ref()
                            .unwrap()
                            .attributes
                            .iter()
                            .find(|kv| kv.key == key)
                            .map(|kv| format!("{:?}", kv.value))
                    };
                    let tenant = attr("microdash.tenant").unwrap_or_default();
                    for sm in &rm.scope_metrics {
                        for m in &sm.metrics {
                            let Some(metric::Data::Gauge(g)) = &m.data else { panic!("gauges only: {m:?}") };
                            for p in &g.data_points {
                                let host = p
                                    .attributes
                                    .iter()
                                    .find(|kv| kv.key == "host")
                                    .map(|kv| format!("{:?}", kv.value))
                                    .unwrap_or_default();
                                let Some(number_data_point::Value::AsDouble(v)) = p.value else { panic!("doubles") };
                                points.push((tenant.clone(), m.name.clone(), host, v));
                            }
                        }
                    }
                }
                let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                r.pushes.push((auth, points));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn eventually<T, F: AsyncFnMut() -> Option<T>>(within: Duration, what: &str, mut check: F) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(server: &Server, token: &str, name: &str, spec: Value) -> (StatusCode, Value) {
    let r = client()
        .put(server.url(&format!("/api/v1/exporters/{name}")))
        .bearer_auth(token)
        .json(&spec)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn list(server: &Server, token: &str) -> Value {
    client().get(server.url("/api/v1/exporters")).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn an_exporter_pushes_the_tenants_newest_samples_to_an_otlp_receiver_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("MICRODASH_OUTBOUND_ALLOW", "127.0.0.1/32")]);
    let token = create_tenant(&server, "fleet").await;
    let other = create_tenant(&server, "others").await;
    let now = now_ms();
    let samples = json!([
        {"metric": "cpu.usage", "labels": {"host": "web-1"}, "value": 0.5, "ts": now - 1000},
        {"metric": "mem_free", "labels": {"host": "web-1"}, "value": 1024.0, "ts": now - 1000},
    ]);
    assert_eq!(ingest(&server, &token, samples).await, StatusCode::ACCEPTED);
    let theirs = json!([{"metric": "cpu.usage", "labels": {"host": "secret-host"}, "value": 9.0, "ts": now}]);
    assert_eq!(ingest(&server, &other, theirs).await, StatusCode::ACCEPTED);

    let (endpoint, received) = receiver(2).await;
    let spec = json!({
        "endpoint": endpoint, "headers": {"Authorization": "Bearer collector-secret"},
        "interval": "1s", "match": ["cpu_usage"]
    });
    let (status, created) = put(&server, &token, "collector", spec.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["headers"], json!(["Authorization"]), "header values are never shown: {created}");
    assert!(!created.to_string().contains("collector-secret"));

    // Two 503s, then the push arrives: the tenant's cpu.usage only, with the configured header.
    let first = eventually(Duration::from_secs(20), "the first push taken", async || {
        received.lock().unwrap().pushes.first().cloned()
    })
    .await;
    assert_eq!(first.0, "Bearer collector-secret");
    assert_eq!(first.1.len(), 1, "{first:?}");
    let (tenant, metric, host, value) = &first.1[0];
    assert!(tenant.contains("fleet") && metric == "cpu.usage" && host.contains("web-1") && *value == 0.5, "{first:?}");
    assert_eq!(received.lock().unwrap().refused, 2);
    let status = eventually(Duration::from_secs(10), "the status", async || {
        let v = list(&server, &token).await;
        (v["exporters"][0]["status"]["pushed_batches"].as_u64() >= Some(1)).then_some(v)
    })
    .await;
    let s = &status["exporters"][0]["status"];
    assert_eq!(s["last_error"], "HTTP 503 Service Unavailable", "{status}");
    assert!(s["last_success_at"].as_i64().is_some(), "{status}");

    // A new sample is pushed once; an unchanged series is not pushed again.
    let pushes_before = received.lock().unwrap().pushes.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(received.lock().unwrap().pushes.len(), pushes_before, "nothing new, nothing pushed");
    let next = json!([{"metric": "cpu.usage", "labels": {"host": "web-1"}, "value": 0.75, "ts": now_ms()}]);
    assert_eq!(ingest(&server, &token, next).await, StatusCode::ACCEPTED);
    let pushed = eventually(Duration::from_secs(10), "the new sample pushed", async || {
        let r = received.lock().unwrap();
        r.pushes.iter().skip(pushes_before).find(|p| p.1.iter().any(|x| x.3 == 0.75)).cloned()
    })
    .await;
    assert_eq!(pushed.1.len(), 1, "{pushed:?}");
    // Nothing of the other tenant was ever pushed.
    assert!(received.lock().unwrap().pushes.iter().all(|p| p.1.iter().all(|x| !x.2.contains("secret-host"))));
    assert_eq!(list(&server, &other).await["exporters"], json!([]));

    // Deleted: no push after it.
    let r = client().delete(server.url("/api/v1/exporters/collector")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = received.lock().unwrap().pushes.len();
    let again = json!([{"metric": "cpu.usage", "labels": {"host": "web-1"}, "value": 1.0, "ts": now_ms()}]);
    assert_eq!(ingest(&server, &token, again).await, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(received.lock().unwrap().pushes.len(), count, "a deleted exporter pushes nothing");
}

#[tokio::test]
async fn a_bad_exporter_is_refused_field_by_field_and_only_a_tenant_admin_sets_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "fleet").await;
    for (spec, field) in [
        (json!({"endpoint": "ftp://collector/v1/metrics"}), "endpoint"),
        (json!({"endpoint": "http://collector:4318/v1/metrics", "interval": "0s"}), "interval"),
        (json!({"endpoint": "http://collector:4318/v1/metrics", "match": ["rate(x[5m])"]}), "match[0]"),
        (json!({"endpoint": "http://collector:4318/v1/metrics", "headers": {"bad name": "x"}}), "headers.bad name"),
        // Metadata and private addresses are refused unless the operator allows them (the test
        // server allows loopback only).
        (json!({"endpoint": "http://169.254.169.254/latest"}), "endpoint"),
        (json!({"endpoint": "http://10.1.2.3:4318/v1/metrics"}), "endpoint"),
        (json!({"endpoint": "http://collector:4318/v1/metrics", "surprise": 1}), "body"),
    ] {
        let (status, problem) = put(&server, &token, "x", spec.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spec}: {problem}");
        assert_eq!(problem["field"], field, "{spec}: {problem}");
    }
    let (status, _) = put(&server, &token, "Bad_Name", json!({"endpoint": "http://collector:4318/v1/metrics"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A read-only token cannot set one.
    let r = client()
        .post(server.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .json(&json!({"scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    let reader = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let (status, _) = put(&server, &reader, "x", json!({"endpoint": "http://collector:4318/v1/metrics"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(list(&server, &reader).await["exporters"], json!([]));
}
