//! Handler-level tests: `app(state)` driven in-process with `tower::ServiceExt::oneshot` over a
//! temporary SQLite database and the in-process writer, no server process and no port. One or
//! more per HTTP resource, on what a handler decides: validation, auth and scopes, and the
//! problem+json shape of every refusal. What needs a process (kill -9, signals, ports, MQTT,
//! other databases) stays in the black-box tests beside this file.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use microdash::config::{Config, ConfigLayer};
use microdash::http::{AppState, app};
use microdash::live::LiveHub;
use microdash::pipeline::{Writer, WriterConfig};
use microdash::storage::DynStore;
use microdash::telemetry::Telemetry;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "in-process-admin-token-0123456789";

struct Api {
    router: Router,
    store: DynStore,
    /// Every scope of tenant `acme`.
    token: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    /// A problem+json with this status; answers its body.
    fn problem(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.content_type(), "application/problem+json", "{}", String::from_utf8_lossy(&self.body));
        let body = self.json();
        assert_eq!(body["status"].as_u64(), Some(status.as_u16() as u64), "{body}");
        assert!(body["title"].is_string() && !body["detail"].as_str().unwrap_or("").is_empty(), "{body}");
        body
    }
}

async fn api() -> Api {
    api_with(|_| {}).await
}

/// `api()` with more settings.
async fn api_with(settings: impl FnOnce(&mut ConfigLayer)) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let mut layer = ConfigLayer {
        database_url: Some(url.clone()),
        data_dir: Some(dir.path().to_path_buf()),
        admin_token: Some(ADMIN.into()),
        ..Default::default()
    };
    settings(&mut layer);
    let config = Config::resolve(layer).unwrap();
    let store = microdash::storage::open(&url, false).await.unwrap();
    store.migrate().await.unwrap();
    let telemetry = Telemetry::new();
    let hub = Arc::new(LiveHub::new(1_024, 1_024));
    let writer_config =
        WriterConfig { queue_capacity: 10_000, max_group_samples: 10_000, dedupe_window: Duration::from_secs(60) };
    let (writer, _task) = Writer::start(store.clone(), writer_config, telemetry.clone(), vec![hub.clone()]);
    let (_, token) = microdash::tenants::create_tenant(&store, "acme", None).await.unwrap();
    let state = AppState::new(store.clone(), writer, config, telemetry, hub);
    Api { router: app(state), store, token: token.expose().to_string(), _dir: dir }
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Body>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(body.unwrap_or_else(Body::empty)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Some(&self.token), None).await
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Answer {
        self.call(method, path, Some(&self.token), Some(Body::from(body.to_string()))).await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, Some(ADMIN), body.map(|b| Body::from(b.to_string()))).await
    }

    /// A token of `acme` with only these scopes.
    async fn token_with(&self, scopes: &[&str]) -> String {
        let answer = self.admin(Method::POST, "/api/v1/tenants/acme/tokens", Some(json!({"scopes": scopes}))).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        answer.json()["token"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn metrics_ingest_validates_each_sample_and_needs_the_ingest_scope() {
    let api = api().await;
    let ok = api.send(Method::POST, "/api/v1/metrics", json!({"metric": "cpu.usage", "value": 1.5})).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&ok.body));
    // A bad name, a non-finite value, a far-future timestamp: 422 naming the field.
    for (sample, field) in [
        (json!({"metric": "bad name", "value": 1}), "metric"),
        (json!({"metric": "m", "value": "NaN"}), "value"),
        (json!({"metric": "m", "value": 1, "ts": 32_503_680_000_000_i64}), "ts"),
    ] {
        let body =
            api.send(Method::POST, "/api/v1/metrics", sample.clone()).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], field, "{sample}: {body}");
    }
    api.send(Method::POST, "/api/v1/metrics", json!("not an object")).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let raw = api.call(Method::POST, "/api/v1/metrics", Some(&api.token), Some(Body::from("{"))).await;
    raw.problem(StatusCode::BAD_REQUEST);
    // No token, a wrong token, a token without `ingest`.
    let none = api.call(Method::POST, "/api/v1/metrics", None, Some(Body::from(r#"{"metric":"m","value":1}"#))).await;
    none.problem(StatusCode::UNAUTHORIZED);
    let wrong = api.call(Method::POST, "/api/v1/metrics", Some("mdt_nope"), Some(Body::from("{}"))).await;
    wrong.problem(StatusCode::UNAUTHORIZED);
    let reader = api.token_with(&["read"]).await;
    let refused =
        api.call(Method::POST, "/api/v1/metrics", Some(&reader), Some(Body::from(r#"{"metric":"m","value":1}"#))).await;
    assert!(refused.problem(StatusCode::FORBIDDEN)["detail"].as_str().unwrap().contains("ingest"));
}

#[tokio::test]
async fn bulk_ingest_names_the_index_of_a_bad_sample_and_stores_nothing_of_it() {
    let api = api().await;
    let bulk = json!([{"metric": "m", "value": 1}, {"metric": "m", "value": 2}, {"metric": "m", "value": true}]);
    let body = api.send(Method::POST, "/api/v1/metrics/bulk", bulk).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["index"], 2, "{body}");
    let good = api.send(Method::POST, "/api/v1/metrics/bulk", json!([{"metric": "m", "value": 1}])).await;
    assert_eq!(good.status, StatusCode::ACCEPTED);
    let metrics = api.get("/api/v1/metrics").await;
    assert_eq!(metrics.json()["metrics"], json!(["m"]), "only the good bulk was stored");
}

#[tokio::test]
async fn protocol_endpoints_refuse_undecodable_bodies_as_problems() {
    let api = api().await;
    for path in ["/api/v1/write", "/v1/metrics"] {
        let answer =
            api.call(Method::POST, path, Some(&api.token), Some(Body::from(&b"\xff\x00 not protobuf"[..]))).await;
        assert!(answer.status.is_client_error(), "{path}: {}", answer.status);
        assert_eq!(answer.content_type(), "application/problem+json", "{path}");
    }
    let influx = api.call(Method::POST, "/api/v2/write", Some(&api.token), Some(Body::from("cpu value=oops"))).await;
    assert!(influx.status.is_client_error(), "{}", influx.status);
    assert_eq!(influx.content_type(), "application/problem+json");
    let good = api.call(Method::POST, "/api/v2/write", Some(&api.token), Some(Body::from("cpu value=1"))).await;
    assert_eq!(good.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&good.body));
}

#[tokio::test]
async fn query_series_and_metrics_read_what_was_written_and_refuse_bad_ranges() {
    let api = api().await;
    let now = chrono::Utc::now().timestamp_millis();
    let sample = json!({"metric": "temp", "value": 21.5, "ts": now, "labels": {"room": "a"}});
    assert_eq!(api.send(Method::POST, "/api/v1/metrics", sample).await.status, StatusCode::ACCEPTED);
    // The 202 means committed: the in-process writer answers after the commit.
    let series = api.get("/api/v1/series?metric=temp").await;
    assert_eq!(series.status, StatusCode::OK);
    assert_eq!(series.json()["series"][0]["labels"]["room"], "a", "{}", series.json());
    let from = now - 60_000;
    let to = now + 1_000;
    let query = api.get(&format!("/api/v1/query?metric=temp&from={from}&to={to}")).await;
    assert_eq!(query.status, StatusCode::OK);
    assert_eq!(query.json()["series"][0]["points"][0][1], 21.5, "{}", query.json());
    let bad = api.get(&format!("/api/v1/query?metric=temp&from={to}&to={from}")).await.problem(StatusCode::BAD_REQUEST);
    assert!(bad["detail"].as_str().unwrap().contains("from"), "{bad}");
    let bad_name = api.get("/api/v1/query?metric=bad%20name").await;
    assert!(bad_name.status.is_client_error() && bad_name.content_type() == "application/problem+json");
    let missing = api.get("/api/v1/query").await;
    assert!(missing.status.is_client_error() && missing.content_type() == "application/problem+json");
    let ingest_only = api.token_with(&["ingest"]).await;
    let refused = api.call(Method::GET, "/api/v1/metrics", Some(&ingest_only), None).await;
    refused.problem(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_live_stream_answers_an_event_stream_and_refuses_a_bad_metric() {
    let api = api().await;
    let bad = api.get("/api/v1/stream?metric=bad%20name").await;
    assert!(bad.status.is_client_error() && bad.content_type() == "application/problem+json", "{}", bad.status);
    let request = Request::builder()
        .uri("/api/v1/stream?metric=m")
        .header(header::AUTHORIZATION, format!("Bearer {}", api.token))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
}

#[tokio::test]
async fn a_session_is_made_from_a_token_and_sets_a_private_cookie() {
    let api = api().await;
    let wrong = api.send(Method::POST, "/api/v1/session", json!({"token": "mdt_wrong"})).await;
    wrong.problem(StatusCode::UNAUTHORIZED);
    let login = api
        .call(Method::POST, "/api/v1/session", None, Some(Body::from(json!({"token": api.token}).to_string())))
        .await;
    assert!(login.status.is_success(), "{}", String::from_utf8_lossy(&login.body));
    let cookie = login.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite"), "{cookie}");
    assert!(!cookie.contains(&api.token), "the cookie is a session, never the token");
    let me = api.get("/api/v1/session").await;
    assert_eq!(me.json()["tenant"], "acme");
    api.call(Method::GET, "/api/v1/session", None, None).await.problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dashboards_are_validated_and_kept_per_name() {
    let api = api().await;
    let dashboard = json!({"title": "Hosts", "panels": []});
    let put = api.send(Method::PUT, "/api/v1/dashboards/hosts", dashboard).await;
    assert!(put.status.is_success(), "{}", String::from_utf8_lossy(&put.body));
    let list = api.get("/api/v1/dashboards").await.json();
    assert!(list.to_string().contains("Hosts"), "{list}");
    api.send(Method::PUT, "/api/v1/dashboards/hosts", json!([1, 2])).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let gone = api.call(Method::DELETE, "/api/v1/dashboards/nothing-here", Some(&api.token), None).await;
    gone.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rules_name_the_invalid_field_and_stay_within_the_tenant() {
    let api = api().await;
    let bad = json!({"name": "high-cpu", "metric": "cpu", "condition": {"aggregation": "avg", "op": ">", "threshold": 90, "window": "soon"}});
    let body = api.send(Method::POST, "/api/v1/rules", bad).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().contains("condition.window"), "{body}");
    let good = json!({"name": "high-cpu", "metric": "cpu", "condition": {"aggregation": "avg", "op": ">", "threshold": 90, "window": "1m"}});
    let created = api.send(Method::POST, "/api/v1/rules", good.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    api.send(Method::POST, "/api/v1/rules", good).await.problem(StatusCode::CONFLICT);
    assert_eq!(api.get("/api/v1/rules/high-cpu").await.status, StatusCode::OK);
    api.get("/api/v1/rules/nope").await.problem(StatusCode::NOT_FOUND);
    api.get("/api/v1/rules/%FF%FE").await.problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn channels_validate_hide_secrets_and_answer_404_for_a_missing_one() {
    let api = api().await;
    let bad = json!({"name": "hook", "webhook": {"url": "not a url"}});
    api.send(Method::POST, "/api/v1/channels", bad).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let good = json!({"name": "hook", "webhook": {"url": "https://hooks.example/x", "hmacSecret": "s3cr3t-value"}});
    let created = api.send(Method::POST, "/api/v1/channels", good).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    let read = api.get("/api/v1/channels/hook").await;
    assert!(!String::from_utf8_lossy(&read.body).contains("s3cr3t-value"), "secrets read back hidden");
    assert_eq!(api.get("/api/v1/channels").await.json()["channels"].as_array().unwrap().len(), 1);
    api.get("/api/v1/channels/nope/deliveries").await.problem(StatusCode::NOT_FOUND);
    api.send(Method::POST, "/api/v1/channels/nope/test", json!({})).await.problem(StatusCode::NOT_FOUND);
    let deliveries = api.get("/api/v1/channels/hook/deliveries").await;
    assert_eq!(deliveries.json()["deliveries"], json!([]));
}

#[tokio::test]
async fn alerts_history_and_the_alert_stream_answer_within_the_tenant() {
    let api = api().await;
    assert_eq!(api.get("/api/v1/alerts").await.json()["alerts"], json!([]));
    assert_eq!(api.get("/api/v1/alerts/history").await.json()["transitions"], json!([]));
    api.get("/api/v1/alerts/history?limit=abc").await.problem(StatusCode::BAD_REQUEST);
    // This state runs no alert engine: the stream says where to look instead.
    let stream = api.get("/api/v1/alerts/stream").await.problem(StatusCode::NOT_FOUND);
    assert!(stream["detail"].as_str().unwrap().contains("/api/v1/alerts"), "{stream}");
}

#[tokio::test]
async fn a_tenant_manages_its_tokens_with_the_admin_scope_only() {
    let api = api().await;
    let listed = api.get("/api/v1/tokens").await.json();
    assert_eq!((listed["tokens"][0]["id"].as_i64(), listed["current"].as_i64()), (Some(1), Some(1)), "{listed}");
    let reader = api.token_with(&["read"]).await;
    api.call(Method::GET, "/api/v1/tokens", Some(&reader), None).await.problem(StatusCode::FORBIDDEN);
    let created = api.send(Method::POST, "/api/v1/tokens", json!({"scopes": ["read"], "expires_in": "1ms"})).await;
    assert_eq!(created.problem(StatusCode::UNPROCESSABLE_ENTITY)["field"], "expires_in");
    api.call(Method::DELETE, "/api/v1/tokens/99", Some(&api.token), None).await.problem(StatusCode::NOT_FOUND);
    let revoked = api.call(Method::DELETE, "/api/v1/tokens/2", Some(&api.token), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert!(api.store.list_tokens(1).await.unwrap().iter().all(|t| t.number != 2));
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token_and_names_bad_fields() {
    let api = api().await;
    api.get("/api/v1/tenants").await.problem(StatusCode::FORBIDDEN);
    api.call(Method::GET, "/api/v1/tenants", None, None).await.problem(StatusCode::UNAUTHORIZED);
    let listed = api.admin(Method::GET, "/api/v1/tenants", None).await;
    assert_eq!(listed.json()["tenants"][0]["name"], "acme");
    let bad = api.admin(Method::POST, "/api/v1/tenants", Some(json!({"name": "Not Valid!"}))).await;
    assert_eq!(bad.problem(StatusCode::UNPROCESSABLE_ENTITY)["field"], "name");
    api.admin(Method::POST, "/api/v1/tenants", Some(json!({"name": "acme"}))).await.problem(StatusCode::CONFLICT);
    api.admin(Method::GET, "/api/v1/tenants/nobody", None).await.problem(StatusCode::NOT_FOUND);
    api.admin(Method::GET, "/api/v1/tenants/nobody/tokens", None).await.problem(StatusCode::NOT_FOUND);
    let retention = api.admin(Method::PUT, "/api/v1/tenants/acme/retention", Some(json!({"raw": "soon"}))).await;
    assert_eq!(retention.problem(StatusCode::UNPROCESSABLE_ENTITY)["field"], "raw");
    let limits = api.admin(Method::PUT, "/api/v1/tenants/acme/limits", Some(json!({"series": 0}))).await;
    assert_eq!(limits.problem(StatusCode::UNPROCESSABLE_ENTITY)["field"], "series");
    let set = api.admin(Method::PUT, "/api/v1/tenants/acme/limits", Some(json!({"samples_per_second": 5}))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", String::from_utf8_lossy(&set.body));
    let deleted = api.admin(Method::DELETE, "/api/v1/tenants/acme", None).await;
    assert!(deleted.status.is_success(), "{}", deleted.status);
    api.get("/api/v1/metrics").await.problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn operations_endpoints_the_contract_and_unknown_paths() {
    let api = api().await;
    assert_eq!(api.call(Method::GET, "/healthz", None, None).await.json()["status"], "ok");
    assert_eq!(api.call(Method::GET, "/readyz", None, None).await.json()["status"], "ready");
    let metrics = api.call(Method::GET, "/metrics", None, None).await;
    assert!(metrics.content_type().starts_with("application/openmetrics-text"));
    assert!(String::from_utf8_lossy(&metrics.body).contains("# EOF"));
    let doc = api.call(Method::GET, "/openapi.json", None, None).await.json();
    assert!(doc["paths"]["/api/v1/metrics"]["post"].is_object());
    let unknown = api.get("/api/v1/nothing-here").await.problem(StatusCode::NOT_FOUND);
    assert!(unknown["detail"].as_str().unwrap().contains("/openapi.json"), "{unknown}");
    let wrong_method = api.call(Method::PUT, "/api/v1/metrics", Some(&api.token), None).await;
    wrong_method.problem(StatusCode::METHOD_NOT_ALLOWED);
    // Every answer carries the browser safety headers.
    let page = api.call(Method::GET, "/", None, None).await;
    assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
}

/// The dashboard's API types are generated from `dashboard/src/api/openapi.json` (`npm run
/// api-types`), so that copy of the server's document must be the server's: this fails when
/// they differ and names the command that rewrites it.
#[tokio::test]
async fn the_dashboards_copy_of_the_openapi_document_is_the_servers() {
    let api = api().await;
    let live = api.call(Method::GET, "/openapi.json", None, None).await.json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/src/api/openapi.json");
    let text = serde_json::to_string_pretty(&live).unwrap() + "\n";
    if std::env::var_os("MICRODASH_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} differs from the server's /openapi.json: run `MICRODASH_WRITE_OPENAPI=1 cargo test -p microdash --test \
         in_process openapi` and then `npm run api-types` in dashboard/",
        path.display()
    );
}

#[tokio::test]
async fn the_dashboard_is_sent_precompressed_by_accept_encoding() {
    use std::io::{Read, Write};
    let assets = tempfile::tempdir().unwrap();
    std::fs::create_dir(assets.path().join("assets")).unwrap();
    let script = "console.log('first chart');\n".repeat(200);
    let gzip = |text: &str| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    };
    let index = "<!doctype html><title>microdash</title>".repeat(50);
    std::fs::write(assets.path().join("index.html"), &index).unwrap();
    std::fs::write(assets.path().join("index.html.gz"), gzip(&index)).unwrap();
    std::fs::write(assets.path().join("assets/app.js"), &script).unwrap();
    std::fs::write(assets.path().join("assets/app.js.gz"), gzip(&script)).unwrap();
    // What the build makes with Brotli; its bytes are not decoded here, only chosen.
    std::fs::write(assets.path().join("assets/app.js.br"), b"brotli bytes").unwrap();
    let dashboard_dir = assets.path().to_path_buf();
    let api = api_with(|layer| layer.dashboard_dir = Some(dashboard_dir)).await;
    let get = |path: &'static str, accept: Option<&'static str>| {
        let mut request = Request::builder().uri(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        let router = api.router.clone();
        async move {
            let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            let headers = response.headers().clone();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (headers, body)
        }
    };
    let encoding = |headers: &HeaderMap| headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap().to_string());

    // gzip only: the gzip copy, which is the file.
    let (headers, body) = get("/assets/app.js", Some("gzip, deflate")).await;
    assert_eq!(encoding(&headers).as_deref(), Some("gzip"));
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript");
    assert_eq!(headers[header::VARY], "accept-encoding");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text, script);
    // Brotli preferred when accepted; refused by weight 0; no header: the file as it is.
    let (headers, body) = get("/assets/app.js", Some("gzip, deflate, br, zstd")).await;
    assert_eq!((encoding(&headers).as_deref(), &body[..]), (Some("br"), &b"brotli bytes"[..]));
    let (headers, _) = get("/assets/app.js", Some("br;q=0, gzip")).await;
    assert_eq!(encoding(&headers).as_deref(), Some("gzip"));
    let (headers, body) = get("/assets/app.js", None).await;
    assert_eq!((encoding(&headers), body.len()), (None, script.len()));
    assert_eq!(headers[header::VARY], "accept-encoding");
    // A client-side route gets index.html, compressed too; a missing file is a 404.
    let (headers, body) = get("/dashboards/web", Some("gzip")).await;
    assert_eq!(
        (encoding(&headers).as_deref(), headers[header::CACHE_CONTROL].to_str().unwrap()),
        (Some("gzip"), "no-cache")
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text, index);
    let missing = api.call(Method::GET, "/assets/missing.js", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
