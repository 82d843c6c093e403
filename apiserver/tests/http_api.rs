//! Black-box tests of the HTTP API against the real binary and a real SQLite file.

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, Server, cli, client};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(server: &Server, token: &str, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = client().post(server.url(path)).bearer_auth(token).body(body).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get(server: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn points(v: &Value) -> usize {
    v["series"].as_array().unwrap().iter().map(|s| s["points"].as_array().unwrap().len()).sum()
}

#[tokio::test]
async fn ingest_single_and_bulk_then_query_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = &server.token;
    let (status, body) =
        post(&server, t, "/api/v1/metrics", r#"{"metric":"cpu.usage","value":42.5,"ts":1000,"labels":{"host":"a"}}"#)
            .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted":1,"duplicates":0})));
    let bulk = json!({"samples":[
        {"metric":"cpu.usage","value":1.5,"ts":"1970-01-01T00:00:02Z","labels":{"host":"a"}},
        {"metric":"cpu.usage","value":7,"ts":3000,"labels":{"host":"b"}},
        {"metric":"mem.used","value":1e9,"ts":3000}
    ]});
    let (status, body) = post(&server, t, "/api/v1/metrics/bulk", bulk.to_string()).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted":3,"duplicates":0})));
    // A bare array works too, and a sample without ts gets the time of receipt.
    let (status, _) = post(&server, t, "/api/v1/metrics/bulk", r#"[{"metric":"up","value":1}]"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (_, metrics) = get(&server, t, "/api/v1/metrics").await;
    assert_eq!(metrics, json!({"metrics":["cpu.usage","mem.used","up"]}));
    let (_, series) = get(&server, t, "/api/v1/series?metric=cpu.usage").await;
    assert_eq!(series["series"].as_array().unwrap().len(), 2);
    let (status, q) = get(&server, t, "/api/v1/query?metric=cpu.usage&match=host=a&from=0&to=10000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(q, json!({"resolution":"raw","series":[{"labels":{"host":"a"},"points":[[1000,42.5],[2000,1.5]]}]}));
    let (_, q) = get(&server, t, "/api/v1/query?metric=cpu.usage&from=0&to=10000&step=10s&agg=max").await;
    assert_eq!(q["series"][0]["points"], json!([[0, 42.5]]));
    assert_eq!(q["series"][1]["points"], json!([[0, 7.0]]));
    let (_, q) = get(&server, t, "/api/v1/query?metric=up").await;
    assert_eq!(points(&q), 1, "default range is the last hour");

    // Same series and ts: the last write wins.
    post(&server, t, "/api/v1/metrics", r#"{"metric":"cpu.usage","value":99,"ts":1000,"labels":{"host":"a"}}"#).await;
    let (_, q) = get(&server, t, "/api/v1/query?metric=cpu.usage&match=host=a&from=0&to=1500").await;
    assert_eq!(q["series"][0]["points"], json!([[1000, 99.0]]));
}

#[tokio::test]
async fn every_validation_error_is_a_helpful_problem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[("MICRODASH_MAX_BODY_BYTES", "4096"), ("MICRODASH_MAX_BATCH_SAMPLES", "5"), ("MICRODASH_MAX_LABELS", "3")],
    );
    let t = &server.token;
    let far_future = chrono_like_now_ms() + 86_400_000;
    // (path, body, status, field, index)
    type Case<'a> = (&'a str, String, StatusCode, Option<&'a str>, Option<u64>);
    let cases: Vec<Case> = vec![
        ("/api/v1/metrics", "{\"metric\":".into(), StatusCode::BAD_REQUEST, None, None),
        ("/api/v1/metrics", "not json".into(), StatusCode::BAD_REQUEST, None, None),
        (
            "/api/v1/metrics",
            r#"{"metric":"a","value":"high"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("value"),
            None,
        ),
        (
            "/api/v1/metrics",
            r#"{"metric":"a","value":"NaN"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("value"),
            None,
        ),
        ("/api/v1/metrics", r#"{"metric":"a","value":NaN}"#.into(), StatusCode::BAD_REQUEST, None, None),
        ("/api/v1/metrics", r#"{"metric":"a","value":Infinity}"#.into(), StatusCode::BAD_REQUEST, None, None),
        (
            "/api/v1/metrics",
            r#"{"metric":"","value":1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("metric"),
            None,
        ),
        ("/api/v1/metrics", r#"{"value":1}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, Some("metric"), None),
        (
            "/api/v1/metrics",
            r#"{"metric":"a b","value":1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("metric"),
            None,
        ),
        (
            "/api/v1/metrics",
            r#"{"metric":"a","value":1,"labels":{"bad key":"x"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("labels.bad key"),
            None,
        ),
        (
            "/api/v1/metrics",
            r#"{"metric":"a","value":1,"labels":{"a":"1","b":"2","c":"3","d":"4"}}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("labels"),
            None,
        ),
        (
            "/api/v1/metrics",
            r#"{"metric":"a","value":1,"ts":-1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ts"),
            None,
        ),
        (
            "/api/v1/metrics",
            format!(r#"{{"metric":"a","value":1,"ts":{far_future}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("ts"),
            None,
        ),
        (
            "/api/v1/metrics/bulk",
            r#"{"samples":[{"metric":"a","value":1},{"metric":"b","value":true}]}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("value"),
            Some(1),
        ),
        (
            "/api/v1/metrics/bulk",
            json!({"samples": vec![json!({"metric":"a","value":1}); 6]}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("samples"),
            None,
        ),
        (
            "/api/v1/metrics/bulk",
            format!(r#"{{"samples":[{{"metric":"a","value":1,"labels":{{"pad":"{}"}}}}]}}"#, "x".repeat(5000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            None,
        ),
    ];
    for (path, body, status, field, index) in cases {
        let r = client().post(server.url(path)).bearer_auth(t).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{body}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["status"], status.as_u16(), "{body}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
        assert_eq!(problem["field"].as_str(), field, "{body}: {problem}");
        assert_eq!(problem["index"].as_u64(), index, "{body}: {problem}");
    }
    // Nothing of the refused requests was stored.
    let (_, metrics) = get(&server, t, "/api/v1/metrics").await;
    assert_eq!(metrics, json!({"metrics": []}));

    // Auth errors are problems too.
    let r = client().post(server.url("/api/v1/metrics")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (status, _) = post(&server, "mdt_wrong", "/api/v1/metrics", r#"{"metric":"a","value":1}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Bad query parameters name the parameter.
    let (status, p) = get(&server, t, "/api/v1/query?metric=a&agg=median").await;
    assert_eq!((status, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("agg")));
    let (status, p) = get(&server, t, "/api/v1/query").await;
    assert_eq!((status, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("metric")));
    let (status, p) = get(&server, t, "/api/v1/query?metric=a&from=yesterday").await;
    assert_eq!((status, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
    // Unicode label values are data, not errors.
    let (status, _) =
        post(&server, t, "/api/v1/metrics", r#"{"metric":"temp","value":-3.5,"labels":{"city":"Zürich 東京 🚀"}}"#)
            .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, s) = get(&server, t, "/api/v1/series?metric=temp").await;
    assert_eq!(s["series"][0]["labels"]["city"], "Zürich 東京 🚀");
}

fn chrono_like_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn a_tenant_never_reaches_another_tenants_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = server.token.clone();
    let (status, created) = post(&server, ADMIN_TOKEN, "/api/v1/tenants", r#"{"name":"team-b"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let b = created["token"].as_str().unwrap().to_string();

    post(&server, &a, "/api/v1/metrics", r#"{"metric":"secret.a","value":1,"labels":{"host":"a"}}"#).await;
    post(&server, &b, "/api/v1/metrics", r#"{"metric":"shared","value":2}"#).await;
    post(&server, &a, "/api/v1/metrics", r#"{"metric":"shared","value":1}"#).await;

    // Reads see only their own tenant.
    assert_eq!(get(&server, &b, "/api/v1/metrics").await.1, json!({"metrics":["shared"]}));
    assert_eq!(get(&server, &b, "/api/v1/series?metric=secret.a").await.1["series"], json!([]));
    assert_eq!(get(&server, &b, "/api/v1/query?metric=secret.a").await.1["series"], json!([]));
    let (_, q) = get(&server, &b, "/api/v1/query?metric=shared").await;
    assert_eq!(q["series"][0]["points"][0][1], 2.0, "B sees its own value only");
    assert_eq!(points(&q), 1);

    // The live stream of B never carries A's samples.
    let mut stream = client().get(server.url("/api/v1/stream")).bearer_auth(&b).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    post(&server, &a, "/api/v1/metrics", r#"{"metric":"secret.a","value":3}"#).await;
    post(&server, &b, "/api/v1/metrics", r#"{"metric":"shared","value":4}"#).await;
    let mut seen = String::new();
    while !seen.contains("\"value\":4") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("secret.a"), "{seen}");

    // Dashboards are per tenant; B cannot delete A's.
    let r = client()
        .put(server.url("/api/v1/dashboards/main"))
        .bearer_auth(&a)
        .body(r#"{"title":"A","panels":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(get(&server, &b, "/api/v1/dashboards").await.1, json!({"dashboards":[]}));
    let r = client().delete(server.url("/api/v1/dashboards/main")).bearer_auth(&b).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Tenant tokens cannot administer tenants; the admin token cannot read tenant data.
    for token in [&a, &b] {
        assert_eq!(get(&server, token, "/api/v1/tenants").await.0, StatusCode::FORBIDDEN);
        assert_eq!(post(&server, token, "/api/v1/tenants", r#"{"name":"x"}"#).await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            post(&server, token, "/api/v1/tenants/default/tokens", r#"{"scopes":["read"]}"#).await.0,
            StatusCode::FORBIDDEN
        );
        let r = client().delete(server.url("/api/v1/tenants/default")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(get(&server, ADMIN_TOKEN, "/api/v1/metrics").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        post(&server, ADMIN_TOKEN, "/api/v1/metrics", r#"{"metric":"a","value":1}"#).await.0,
        StatusCode::FORBIDDEN
    );

    // Scopes: a read-only token of B cannot write.
    let (status, created) = post(&server, ADMIN_TOKEN, "/api/v1/tenants/team-b/tokens", r#"{"scopes":["read"]}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let b_read = created["token"].as_str().unwrap();
    assert_eq!(post(&server, b_read, "/api/v1/metrics", r#"{"metric":"a","value":1}"#).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&server, b_read, "/api/v1/metrics").await.0, StatusCode::OK);

    // Deleting B revokes its tokens at once.
    let r = client().delete(server.url("/api/v1/tenants/team-b")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&server, &b, "/api/v1/metrics").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&server, &a, "/api/v1/metrics").await.1, json!({"metrics":["secret.a","shared"]}));
}

#[tokio::test]
async fn a_repeated_dedupe_id_is_counted_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = &server.token;
    let body =
        r#"[{"metric":"m","value":1,"ts":1000,"dedupe_id":"x1"},{"metric":"m","value":2,"ts":2000,"dedupe_id":"x2"}]"#;
    assert_eq!(post(&server, t, "/api/v1/metrics/bulk", body).await.1, json!({"accepted":2,"duplicates":0}));
    assert_eq!(post(&server, t, "/api/v1/metrics/bulk", body).await.1, json!({"accepted":0,"duplicates":2}));
    let again = r#"{"metric":"m","value":5,"ts":3000,"dedupe_id":"x1"}"#;
    assert_eq!(post(&server, t, "/api/v1/metrics", again).await.1, json!({"accepted":0,"duplicates":1}));
    let (_, q) = get(&server, t, "/api/v1/query?metric=m&from=0&to=10000").await;
    assert_eq!(q["series"][0]["points"], json!([[1000, 1.0], [2000, 2.0]]));
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("microdash_samples_duplicate_total 3"), "{metrics}");
}

#[tokio::test]
async fn kill_9_right_after_2xx_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_scenario(Server::start(dir.path())).await;
}

/// Fresh samples (the in-memory head and its log on SQLite), then a clean stop and start:
/// everything is there, and no log is left behind.
#[tokio::test]
async fn kill_9_right_after_2xx_loses_nothing_kept_in_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let base = common::now_ms() - 600_000;
    kill_9_scenario_at(&mut server, base).await;
    let log = dir.path().join("microdash.db.head-wal");
    assert!(log.exists(), "fresh samples went through the head's log");
    assert!(server.terminate(Duration::from_secs(30)), "a clean stop: {}", server.log());
    assert!(!log.exists(), "a clean stop writes the head out and leaves no log");
    server.restart();
    let query = format!("/api/v1/query?metric=burst&from={base}&to={}&resolution=raw", base + 1_000_000);
    let (_, q) = get(&server, &server.token, &query).await;
    assert_eq!(points(&q), 8 * 25 * 200, "the head written out at the stop is read back");
}

#[tokio::test]
async fn kill_9_right_after_2xx_loses_nothing_on_postgres() {
    kill_9_on("postgres", false).await;
}

#[tokio::test]
async fn kill_9_right_after_2xx_loses_nothing_on_mariadb() {
    kill_9_on("mysql", false).await;
}

#[tokio::test]
async fn kill_9_right_after_2xx_loses_nothing_on_postgres_with_a_head() {
    kill_9_on("postgres", true).await;
}

#[tokio::test]
async fn kill_9_right_after_2xx_loses_nothing_on_mariadb_with_a_head() {
    kill_9_on("mysql", true).await;
}

async fn kill_9_on(kind: &str, head: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(kind).await;
    let wal = dir.path().join("head-wal");
    let wal = wal.to_str().unwrap();
    let mut env = vec![("MICRODASH_DATABASE_URL", url.as_str())];
    if head {
        env.push(("MICRODASH_HEAD_WAL_DIR", wal));
    }
    let mut server = Server::start_with(dir.path(), &env);
    // The same API on the other backend, then the durability scenario.
    let (status, _) = post(&server, &server.token, "/api/v1/metrics", r#"{"metric":"db","value":1,"ts":1000}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, q) = get(&server, &server.token, "/api/v1/query?metric=db&from=0&to=2000").await;
    assert_eq!(q["series"][0]["points"], json!([[1000, 1.0]]));
    if head {
        kill_9_scenario_at(&mut server, common::now_ms() - 600_000).await;
        assert!(dir.path().join("head-wal").exists());
    } else {
        kill_9_scenario(server).await;
    }
}

async fn kill_9_scenario(mut server: Server) {
    kill_9_scenario_at(&mut server, 1_000_000).await;
}

/// 8 writers × 25 requests × 200 samples from `base` on, kill -9 right after the last 2xx, a
/// restart: every acknowledged sample is there.
async fn kill_9_scenario_at(server: &mut Server, base: i64) {
    let token = server.token.clone();
    let http = client();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (http, url, token) = (http.clone(), server.url("/api/v1/metrics/bulk"), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for batch in 0..25 {
                let samples: Vec<Value> = (0..200)
                    .map(|i| json!({"metric":"burst","value":i,"ts":base + (batch * 200 + i),"labels":{"w":worker.to_string()}}))
                    .collect();
                let r = http.post(&url).bearer_auth(&token).json(&json!({"samples":samples})).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                accepted += r.json::<Value>().await.unwrap()["accepted"].as_u64().unwrap();
            }
            accepted
        }));
    }
    let mut acknowledged = 0;
    for t in tasks {
        acknowledged += t.await.unwrap();
    }
    server.kill9();
    assert_eq!(acknowledged, 8 * 25 * 200);
    server.restart();
    let query = format!("/api/v1/query?metric=burst&from={base}&to={}&resolution=raw", base + 1_000_000);
    let (_, q) = get(server, &server.token, &query).await;
    assert_eq!(points(&q) as u64, acknowledged, "every acknowledged sample survived kill -9");
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let http = client();
    assert_eq!(http.get(server.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let ready: Value = http.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    post(&server, &server.token, "/api/v1/metrics", "{").await;
    let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "microdash_http_requests_total{",
        "microdash_samples_accepted_total",
        "microdash_requests_rejected_total{reason=\"malformed\"} 1",
        "microdash_queue_depth",
        "microdash_write_batch_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let doc: Value = http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/api/v1/metrics",
        "/api/v1/metrics/bulk",
        "/api/v1/series",
        "/api/v1/query",
        "/api/v1/stream",
        "/api/v1/tenants",
        "/api/v1/tenants/{name}/tokens",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    // Unknown API paths are problems; other paths serve the dashboard.
    let r = http.get(server.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http.get(server.url("/explore")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

/// Found by schemathesis: the server took inputs that the OpenAPI document forbids, and the
/// document did not declare every error answer.
#[tokio::test]
async fn what_the_openapi_document_forbids_is_refused_as_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let http = client();
    // A struct body must be a JSON object: serde alone filled one from an array.
    let r = http
        .put(server.url("/api/v1/tenants/default/retention"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("[null, null]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // A last_event_id that is not an id was ignored (a 200 stream); the header stays lenient.
    let (status, body) = get(&server, &server.token, "/api/v1/stream?last_event_id=false").await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("last_event_id")), "{body}");
    // An undeclared method is a problem with Allow, like every other error.
    let r = http.patch(server.url("/api/v1/metrics")).bearer_auth(&server.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.headers().contains_key("allow"));
    // The document declares the shared answers, all as problem+json.
    let doc: Value = http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let op = &doc["paths"]["/api/v1/rules/{name}"]["put"];
    for status in ["400", "401", "403", "404", "413", "422", "503"] {
        let content = &op["responses"][status]["content"];
        assert!(content.get("application/problem+json").is_some(), "{status}: {op}");
        assert!(content.get("application/json").is_none(), "{status}: {op}");
    }
    assert!(doc["paths"]["/api/v1/session"]["delete"]["security"] == json!([{}]));
}

#[tokio::test]
async fn dashboard_login_uses_an_http_only_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let r = http.post(server.url("/api/v1/session")).body(r#"{"token":"mdt_nope"}"#).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("Invalid token"));
    assert_eq!(http.get(server.url("/api/v1/metrics")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let r = http.post(server.url("/api/v1/session")).json(&json!({"token": server.token})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains(&server.token), "the cookie is a session id, not the token");
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["tenant"], "default");
    assert_eq!(http.get(server.url("/api/v1/metrics")).send().await.unwrap().status(), StatusCode::OK);
    let r = http.delete(server.url("/api/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(http.get(server.url("/api/v1/session")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_stream_resumes_from_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    let mut stream = client().get(server.url("/api/v1/stream?metric=live")).bearer_auth(&t).send().await.unwrap();
    post(&server, &t, "/api/v1/metrics", r#"{"metric":"other","value":0}"#).await;
    post(&server, &t, "/api/v1/metrics", r#"{"metric":"live","value":1}"#).await;
    let mut text = String::new();
    while !text.contains("\"value\":1") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: sample"), "{text}");
    assert!(!text.contains("other"), "the metric filter applies: {text}");
    let id: u64 = text.lines().rev().find_map(|l| l.strip_prefix("id: ")).unwrap().trim().parse().unwrap();
    drop(stream);
    // Samples sent while disconnected are replayed after the last seen id.
    post(&server, &t, "/api/v1/metrics/bulk", r#"[{"metric":"live","value":2},{"metric":"live","value":3}]"#).await;
    let mut stream = client()
        .get(server.url("/api/v1/stream?metric=live"))
        .bearer_auth(&t)
        .header("Last-Event-ID", id.to_string())
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("\"value\":3") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"value\":2"));
    assert!(!text.contains("\"value\":1"), "already seen events are not repeated: {text}");
}

#[tokio::test]
async fn tenant_rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), &[("MICRODASH_TENANT_RATE_LIMIT", "10"), ("MICRODASH_MAX_BATCH_SAMPLES", "10")]);
    let batch = json!(vec![json!({"metric":"m","value":1}); 10]).to_string();
    let mut limited = None;
    for _ in 0..5 {
        let r = client()
            .post(server.url("/api/v1/metrics/bulk"))
            .bearer_auth(&server.token)
            .body(batch.clone())
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the fifth batch of 10 within a second must be limited");
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[test]
fn cli_manages_tenants_and_tokens_and_explains_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, token, _) = cli(dir.path(), &["tenant", "create", "acme", "--display-name", "ACME"]);
    assert!(ok);
    assert!(token.trim().starts_with("mdt_"));
    let (ok, _, err) = cli(dir.path(), &["tenant", "create", "acme"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = cli(dir.path(), &["tenant", "create", "Bad_Name"]);
    assert!(!ok && err.contains("lowercase"), "{err}");
    let (ok, read_token, _) = cli(dir.path(), &["token", "create", "--tenant", "acme", "--scope", "read"]);
    assert!(ok && read_token.trim().starts_with("mdt_"));
    let (ok, _, err) = cli(dir.path(), &["token", "create", "--tenant", "nobody", "--scope", "read"]);
    assert!(!ok && err.contains("microdash tenant create nobody"), "{err}");
    let (ok, _, err) = cli(dir.path(), &["token", "create", "--tenant", "acme", "--scope", "root"]);
    assert!(!ok && err.contains("ingest, read, admin"), "{err}");
    let (ok, list, _) = cli(dir.path(), &["tenant", "list"]);
    assert!(ok && list.contains("acme\tACME"), "{list}");
    // The stored form is a hash: the token text is nowhere in the database file.
    let db = std::fs::read(dir.path().join("microdash.db")).unwrap();
    let wal = std::fs::read(dir.path().join("microdash.db-wal")).unwrap_or_default();
    for secret in [token.trim(), read_token.trim()] {
        let needle = secret.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle));
    }
}

#[tokio::test]
async fn cli_tokens_work_against_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (ok, ingest_only, _) = cli(dir.path(), &["token", "create", "--tenant", "default", "--scope", "ingest"]);
    assert!(ok);
    let ingest_only = ingest_only.trim();
    assert_eq!(
        post(&server, ingest_only, "/api/v1/metrics", r#"{"metric":"a","value":1}"#).await.0,
        StatusCode::ACCEPTED
    );
    let (status, p) = get(&server, ingest_only, "/api/v1/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(p["detail"].as_str().unwrap().contains("read"));
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--check-config", "--max-labels", "7"])
        .env("MICRODASH_ADMIN_TOKEN", "a-very-secret-admin-token")
        .env("MICRODASH_LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:9999") && text.contains("max_labels: 7"), "{text}");
    assert!(!text.contains("a-very-secret"), "{text}");
    let out =
        std::process::Command::new(common::bin()).args(["serve", "--check-config", "--role", "boss"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`role`"));
}

#[tokio::test]
async fn sigterm_stops_cleanly_even_with_a_live_stream_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut stream = client().get(server.url("/api/v1/stream")).bearer_auth(&server.token).send().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("retry: 1000"), "the stream advises a 1 s reconnect");
    let (status, _) = post(&server, &server.token, "/api/v1/metrics", r#"{"metric":"m","value":1}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(server.terminate(Duration::from_secs(10)), "SIGTERM must end the process although a stream is open");
    server.restart();
    let (_, q) = get(&server, &server.token, "/api/v1/query?metric=m").await;
    assert_eq!(points(&q), 1);
}

#[tokio::test]
async fn long_ranges_answer_from_rollups_which_outlive_raw_retention() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("MICRODASH_RETENTION_INTERVAL", "200ms")]);
    let t = &server.token;
    let now = chrono_like_now_ms();
    let old = now - 3 * 3_600_000;
    let old_bucket = old - old.rem_euclid(60_000);
    let body = json!([
        {"metric":"temp","value":10,"ts":old_bucket + 1_000},
        {"metric":"temp","value":30,"ts":old_bucket + 2_000},
        {"metric":"temp","value":5,"ts":now - 1_000}
    ]);
    assert_eq!(post(&server, t, "/api/v1/metrics/bulk", body.to_string()).await.0, StatusCode::ACCEPTED);

    let day = format!("/api/v1/query?metric=temp&from={}&to={now}", now - 86_400_000);
    let (_, q) = get(&server, t, &day).await;
    assert_eq!(q["resolution"], "1m", "a day is answered from the 1m rollup");
    assert_eq!(q["series"][0]["points"][0], json!([old_bucket, 20.0]), "avg of the old minute");
    let (_, q) = get(&server, t, &format!("{day}&agg=max&resolution=5m")).await;
    assert_eq!(q["resolution"], "5m");
    assert_eq!(q["series"][0]["points"][0][1], 30.0);
    let (_, q) = get(&server, t, &format!("{day}&resolution=raw")).await;
    assert_eq!(points(&q), 3);
    let (status, p) = get(&server, t, &format!("{day}&resolution=10s")).await;
    assert_eq!((status, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("resolution")));

    // Keep raw samples for one hour only: the old ones go, their rollups stay.
    let r = client()
        .put(server.url("/api/v1/tenants/default/retention"))
        .bearer_auth(ADMIN_TOKEN)
        .body(r#"{"raw":"1h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tenant: Value = r.json().await.unwrap();
    assert_eq!(tenant["retention"]["raw_ms"], 3_600_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, q) = get(&server, t, &format!("{day}&resolution=raw")).await;
        if points(&q) == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retention did not delete the old raw samples: {q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, q) = get(&server, t, &format!("{day}&agg=count")).await;
    assert_eq!(q["series"][0]["points"][0], json!([old_bucket, 2.0]), "the 1m rollup outlives raw retention");
    let r = client()
        .put(server.url("/api/v1/tenants/default/retention"))
        .bearer_auth(ADMIN_TOKEN)
        .body(r#"{"raw":"soon"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The distributed mode: an API process queues into Redis Streams, workers write to
/// PostgreSQL. A worker killed mid-stream leaves its entries pending; another claims them.
/// Every accepted sample ends up stored exactly once: raw count and rollup counts agree.
#[tokio::test]
async fn api_and_workers_store_everything_once_although_a_worker_is_killed() {
    use redis::AsyncCommands;
    // Database 1 of the test Redis belongs to this test.
    let (redis_url, mut conn) = common::fresh_redis(1).await;
    let db = common::fresh_database_url("postgres").await;
    let env = |role: &'static str| {
        vec![
            ("MICRODASH_DATABASE_URL", db.clone()),
            ("MICRODASH_REDIS_URL", redis_url.clone()),
            ("MICRODASH_ROLE", role.to_string()),
        ]
    };
    let as_refs = |v: &Vec<(&'static str, String)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let api_dir = tempfile::tempdir().unwrap();
    let api_env = as_refs(&env("api"));
    let api = Server::start_with(api_dir.path(), &api_env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let worker_env = as_refs(&env("worker"));
    let worker_env: Vec<(&str, &str)> = worker_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let batches = 40;
    let per_batch = 500;
    for b in 0..batches {
        let samples: Vec<Value> = (0..per_batch)
            .map(|i| json!({"metric":"dist","value":1,"ts": 1_000_000 + (b * per_batch + i) as i64,"labels":{"b": (b % 4).to_string()}}))
            .collect();
        let (status, body) =
            post(&api, &api.token, "/api/v1/metrics/bulk", json!({"samples": samples}).to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // A worker that read 10 entries and died before committing them: they stay pending.
    let _: redis::RedisResult<()> = conn.xgroup_create_mkstream("microdash:ingest", "microdash-writers", "0").await;
    let opts = redis::streams::StreamReadOptions::default().group("microdash-writers", "crashed-worker").count(10);
    let read: redis::streams::StreamReadReply = conn.xread_options(&["microdash:ingest"], &[">"], &opts).await.unwrap();
    assert_eq!(read.keys[0].ids.len(), 10);
    // A real worker killed with -9 while it works through the rest, then a second one.
    let mut worker_a = Server::start_with(dir_a.path(), &worker_env);
    tokio::time::sleep(Duration::from_millis(150)).await;
    worker_a.kill9();
    let _worker_b = Server::start_with(dir_b.path(), &worker_env);
    let expected = (batches * per_batch) as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let query = "/api/v1/query?metric=dist&from=0&to=2000000&resolution=raw";
    loop {
        let (_, q) = get(&api, &api.token, query).await;
        if points(&q) as u64 == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {} of {expected} stored", points(&q));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, counts) =
        get(&api, &api.token, "/api/v1/query?metric=dist&from=0&to=2000000&resolution=5m&agg=count").await;
    let rolled: f64 = counts["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()))
        .sum();
    assert_eq!(rolled as u64, expected, "redelivered entries must not be counted twice in rollups");
    // Acknowledgements follow the commit.
    loop {
        let queued: Option<i64> = conn.get("microdash:queued-samples").await.unwrap();
        if queued.unwrap_or(0) == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{queued:?} samples still unacknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending: redis::streams::StreamPendingReply =
        conn.xpending("microdash:ingest", "microdash-writers").await.unwrap();
    assert_eq!(pending.count(), 0, "no entry left pending");
}

/// The database goes away under ingest (its connections are cut and refused) while the API
/// keeps accepting into Redis; once it is back, the worker writes everything. Nothing that was
/// answered 202 is lost.
#[tokio::test]
async fn a_database_outage_fills_the_redis_queue_to_503_and_loses_nothing_accepted() {
    use redis::AsyncCommands;
    use sqlx::Connection;
    // Database 2 of the test Redis belongs to this test.
    let (redis_url, mut conn) = common::fresh_redis(2).await;
    let db = common::fresh_database_url("postgres").await;
    let name = db.rsplit('/').next().unwrap().to_string();
    let admin_url = std::env::var("MICRODASH_TEST_POSTGRES_URL").unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();

    let env = |role: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("MICRODASH_DATABASE_URL", db.clone()),
            ("MICRODASH_REDIS_URL", redis_url.clone()),
            ("MICRODASH_ROLE", role.into()),
            // The bound of the durable queue: 15 batches of 100 while nothing drains it.
            ("MICRODASH_QUEUE_CAPACITY", "1500".into()),
            ("MICRODASH_MAX_BATCH_SAMPLES", "100".into()),
        ]
    };
    let (api_env, worker_env) = (env("api"), env("worker"));
    let api_dir = tempfile::tempdir().unwrap();
    let api = Server::start_with(api_dir.path(), &str_pairs(&api_env));
    let worker_dir = tempfile::tempdir().unwrap();
    let _worker = Server::start_with(worker_dir.path(), &str_pairs(&worker_env));

    let send = |from: usize| {
        let samples: Vec<Value> =
            (from..from + 100).map(|i| json!({"metric":"outage","value":1,"ts": 1_000_000 + i as i64})).collect();
        json!({ "samples": samples }).to_string()
    };
    let mut accepted = 0u64;
    for b in 0..5 {
        let (status, body) = post(&api, &api.token, "/api/v1/metrics/bulk", send(b * 100)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted += body["accepted"].as_u64().unwrap();
    }
    wait_for_stored(&api, "outage", 500).await;
    // The outage: no new connections, existing ones cut.
    sqlx::query(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        .execute(&mut admin)
        .await
        .unwrap();
    // The API keeps accepting into Redis until the queue is full, then answers 503.
    let mut b = 5;
    let refused = loop {
        let r = client()
            .post(api.url("/api/v1/metrics/bulk"))
            .bearer_auth(&api.token)
            .body(send(b * 100))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let body: Value = r.json().await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break (retry_after, body);
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted += body["accepted"].as_u64().unwrap();
        b += 1;
        assert!(b < 40, "the queue never filled: its bound is not enforced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(accepted, 2000, "500 written before the outage, 1500 queued during it");
    let (retry_after, problem) = refused;
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "503 without Retry-After");
    assert_eq!(problem["status"], 503, "{problem}");
    let queued: Option<i64> = conn.get("microdash:queued-samples").await.unwrap();
    assert_eq!(queued, Some(1500), "the accepted samples wait in Redis while the database is away");
    sqlx::query(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")).execute(&mut admin).await.unwrap();

    wait_for_stored(&api, "outage", accepted as usize).await;
    // Drained: the queue takes samples again.
    let (status, body) = post(&api, &api.token, "/api/v1/metrics/bulk", send(b * 100)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Overload in the distributed mode: with no worker running, the API takes requests into
/// the Redis stream until its backlog would pass `queue_capacity`, then sheds with 503 +
/// Retry-After (problem+json) and adds nothing; many requests at once cannot slip past the
/// bound. A worker started later commits every sample that was answered 202, once: its
/// timestamps are exactly the stored ones, a retried 202'd request counts as duplicates.
#[tokio::test]
async fn an_overloaded_api_sheds_by_the_stream_backlog_and_every_202_is_committed() {
    use redis::AsyncCommands;
    // Database 5 of the test Redis belongs to this test.
    let (redis_url, mut conn) = common::fresh_redis(5).await;
    let db = common::fresh_database_url("postgres").await;
    let env = |role: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("MICRODASH_DATABASE_URL", db.clone()),
            ("MICRODASH_REDIS_URL", redis_url.clone()),
            ("MICRODASH_ROLE", role.into()),
            ("MICRODASH_QUEUE_CAPACITY", "1500".into()),
            ("MICRODASH_MAX_BATCH_SAMPLES", "100".into()),
            ("MICRODASH_WORKER_BATCH_SAMPLES", "1000".into()),
        ]
    };
    // The worker applies the migrations and creates the tenant; it is stopped before any
    // ingest, so nothing drains the stream.
    let worker_env = env("worker");
    let worker_dir = tempfile::tempdir().unwrap();
    let mut worker = Server::start_with(worker_dir.path(), &str_pairs(&worker_env));
    let token = worker.token.clone();
    worker.kill9();
    let api_env = env("api");
    let api_dir = tempfile::tempdir().unwrap();
    let mut api = Server::start_with(api_dir.path(), &str_pairs(&api_env));
    api.token = token.clone();
    // A count left in Redis while the stream is empty (an older version's) must not shed.
    let _: () = conn.set("microdash:queued-samples", 1_000_000).await.unwrap();

    let body = |request: usize| {
        let samples: Vec<Value> = (0..100)
            .map(|i| {
                let n = request * 100 + i;
                json!({"metric":"overload","value":1,"ts": 1_000_000 + n as i64,"dedupe_id": format!("d{n}")})
            })
            .collect();
        json!({ "samples": samples }).to_string()
    };
    // 40 requests of 100 samples at once; room for 15 of them.
    let answers = futures_util::future::join_all((0..40).map(|request| {
        let (url, token, body) = (api.url("/api/v1/metrics/bulk"), token.clone(), body(request));
        async move {
            let r = client().post(url).bearer_auth(token).body(body).send().await.unwrap();
            let status = r.status();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
            (request, status, retry_after, content_type, r.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (request, status, retry_after, content_type, answer) in answers {
        match status {
            StatusCode::ACCEPTED => {
                assert_eq!(answer["accepted"], 100, "{answer}");
                accepted.push(request);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "503 without Retry-After");
                assert_eq!(content_type.as_deref(), Some("application/problem+json"));
                assert_eq!(answer["status"], 503, "{answer}");
                assert!(answer["detail"].as_str().unwrap().contains("queue is full"), "{answer}");
                refused.push(request);
            }
            other => panic!("request {request}: {other} {answer}"),
        }
    }
    assert_eq!(accepted.len(), 15, "exactly the requests that fit in the backlog are accepted");
    assert_eq!(refused.len(), 25);
    let entries: usize = conn.xlen("microdash:ingest").await.unwrap();
    let queued: Option<i64> = conn.get("microdash:queued-samples").await.unwrap();
    assert_eq!((entries, queued), (15, Some(1500)), "the stream holds the 202'd requests and nothing refused");

    // A worker catches up: every 202'd sample is stored, and only those.
    let worker_dir = tempfile::tempdir().unwrap();
    let _worker = Server::start_with(worker_dir.path(), &str_pairs(&worker_env));
    wait_for_stored(&api, "overload", 1500).await;
    let (_, q) = get(&api, &token, "/api/v1/query?metric=overload&from=0&to=2000000&resolution=raw").await;
    let mut stored: Vec<i64> =
        q["series"][0]["points"].as_array().unwrap().iter().map(|p| p[0].as_i64().unwrap()).collect();
    stored.sort_unstable();
    let mut expected: Vec<i64> =
        accepted.iter().flat_map(|r| (0..100).map(move |i| 1_000_000 + (r * 100 + i) as i64)).collect();
    expected.sort_unstable();
    assert_eq!(stored, expected, "the stored samples are exactly the accepted ones");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let entries: usize = conn.xlen("microdash:ingest").await.unwrap();
        let queued: Option<i64> = conn.get("microdash:queued-samples").await.unwrap();
        if (entries, queued) == (0, Some(0)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "backlog left after the commit: {entries} entries, {queued:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Retried: a 202'd request is all duplicates, a refused one is taken now.
    let (status, answer) = post(&api, &token, "/api/v1/metrics/bulk", body(accepted[0])).await;
    assert_eq!(
        (status, answer["accepted"].clone(), answer["duplicates"].clone()),
        (StatusCode::ACCEPTED, json!(0), json!(100))
    );
    let (status, answer) = post(&api, &token, "/api/v1/metrics/bulk", body(refused[0])).await;
    assert_eq!((status, answer["accepted"].clone()), (StatusCode::ACCEPTED, json!(100)), "{answer}");
    wait_for_stored(&api, "overload", 1600).await;
}

/// Waits (up to 60 s) until exactly `n` raw points of `metric` are stored.
async fn wait_for_stored(server: &Server, metric: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    loop {
        let r = client()
            .get(server.url(&format!("/api/v1/query?metric={metric}&from=0&to=2000000&resolution=raw")))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            seen = points(&r.json().await.unwrap());
            if seen == n {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{seen} of {n} accepted samples of {metric} were stored");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn str_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The operator's way in: the admin token acts on one tenant named in `X-Microdash-Tenant`;
/// tenant tokens still cannot cross to another tenant.
#[tokio::test]
async fn the_admin_token_acts_on_the_tenant_named_in_x_microdash_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = server.token.clone();
    let (status, created) = post(&server, ADMIN_TOKEN, "/api/v1/tenants", r#"{"name":"team-b"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let b = created["token"].as_str().unwrap().to_string();
    let as_tenant = |method: reqwest::Method, path: &str, tenant: &str, token: &str| {
        client().request(method, server.url(path)).bearer_auth(token).header("X-Microdash-Tenant", tenant)
    };
    let rule = r#"{"name":"high","metric":"cpu","condition":{"aggregation":"last","op":">","threshold":1}}"#;

    // The admin creates a rule in team-b; team-b sees it, the default tenant does not.
    let r = as_tenant(reqwest::Method::POST, "/api/v1/rules", "team-b", ADMIN_TOKEN).body(rule).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    assert_eq!(get(&server, &b, "/api/v1/rules").await.1["rules"][0]["name"], "high");
    assert_eq!(get(&server, &a, "/api/v1/rules").await.1["rules"], json!([]));
    let r = as_tenant(reqwest::Method::GET, "/api/v1/alerts", "team-b", ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // An unknown tenant is a 404 problem naming it.
    let r = as_tenant(reqwest::Method::GET, "/api/v1/rules", "nobody", ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(r.text().await.unwrap().contains("nobody"));

    // Without the header the admin token still cannot read tenant data.
    assert_eq!(get(&server, ADMIN_TOKEN, "/api/v1/rules").await.0, StatusCode::FORBIDDEN);

    // A tenant token naming another tenant is refused whether that tenant exists or not;
    // naming its own tenant changes nothing.
    for other in ["default", "nobody"] {
        let r = as_tenant(reqwest::Method::GET, "/api/v1/rules", other, &b).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "team-b's token naming {other}");
    }
    let r = as_tenant(reqwest::Method::GET, "/api/v1/rules", "team-b", &b).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Tenant tokens still cannot manage tenants, header or not.
    let r = as_tenant(reqwest::Method::GET, "/api/v1/tenants", "team-b", &b).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// Browser safety (issue 15 item 5): every answer carries a CSP that forbids framing, nosniff and
/// a referrer policy; a write with the session cookie must come from the server's own origin with
/// a JSON body, so another page, even of the same site, cannot make one with the user's cookie
/// (the finding: a `text/plain` form post from another origin created a channel and ingested).
/// Bearer clients are unaffected.
#[tokio::test]
async fn cookie_writes_need_the_same_origin_and_json_and_pages_carry_safety_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for path in ["/", "/api/v1/metrics", "/healthz"] {
        let r = client().get(server.url(path)).send().await.unwrap();
        let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
        assert!(header("content-security-policy").contains("script-src 'self'"), "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }

    let own = server.url("");
    let evil = "http://evil.localhost:9";
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    // Login from another origin is refused (no session planted by another page).
    let r = http
        .post(server.url("/api/v1/session"))
        .header("origin", evil)
        .json(&json!({"token": server.token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(http.get(server.url("/api/v1/session")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(server.url("/api/v1/session"))
        .header("origin", &own)
        .json(&json!({"token": server.token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let sample = r#"{"metric":"csrf.probe","value":1}"#;
    let channel = json!({"name": "csrf", "webhook": {"url": "http://127.0.0.1:9/hook"}}).to_string();
    let cookie_write = |path: &str, origin: Option<&str>, content_type: &str, body: &str| {
        let mut request = http.post(server.url(path)).header("content-type", content_type).body(body.to_string());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    for (origin, content_type, expected, field) in [
        (Some(evil), "application/json", StatusCode::FORBIDDEN, "Origin"),
        (None, "application/json", StatusCode::FORBIDDEN, "Origin"),
        (Some("null"), "application/json", StatusCode::FORBIDDEN, "Origin"),
        (Some(own.as_str()), "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
    ] {
        for (path, body) in [("/api/v1/metrics", sample), ("/api/v1/channels", channel.as_str())] {
            let r = cookie_write(path, origin, content_type, body).await.unwrap();
            assert_eq!(r.status(), expected, "{path} from {origin:?} as {content_type}");
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["field"], field, "{problem}");
        }
    }
    let (status, body) = get(&server, &server.token, "/api/v1/channels").await;
    assert_eq!((status, body["channels"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "nothing was created");
    let (_, body) = get(&server, &server.token, "/api/v1/metrics").await;
    assert!(!body.to_string().contains("csrf.probe"), "nothing was ingested: {body}");

    // The dashboard itself: same origin, JSON.
    let r = cookie_write("/api/v1/channels", Some(&own), "application/json", &channel).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    let r = cookie_write("/api/v1/metrics", Some(&own), "application/json", sample).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Reads with the cookie need no Origin; bearer writes need neither Origin nor JSON.
    assert_eq!(http.get(server.url("/api/v1/metrics")).send().await.unwrap().status(), StatusCode::OK);
    let r = client()
        .post(server.url("/api/v1/metrics"))
        .bearer_auth(&server.token)
        .header("content-type", "text/plain")
        .body(sample)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// Storage engine (docs/storage.md): a running server compacts closed windows into chunks by
/// itself, answers the same from them, reopens a chunk for a late overwrite, and a clean stop
/// leaves no write-ahead log behind; `microdash compact` does the same on demand.
#[tokio::test]
async fn closed_windows_become_chunks_and_answer_the_same() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &[("MICRODASH_RETENTION_INTERVAL", "200ms")]);
    let t = server.token.clone();
    // 2000 samples in a window that closed two days ago, at 10 s.
    let window = 2 * 3_600_000;
    let start = (chrono_like_now_ms() - 2 * 86_400_000) / window * window;
    let samples: Vec<Value> = (0..2000)
        .map(|i| json!({"metric":"disk.used","value": (i % 97) as f64 / 8.0,"ts": start + i * 3_600 + i % 5,"labels":{"host":"a"}}))
        .collect();
    let (status, _) = post(&server, &t, "/api/v1/metrics/bulk", json!({ "samples": samples }).to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let range = format!("/api/v1/query?metric=disk.used&from={start}&to={}&resolution=raw", start + window);
    let rolled = format!("/api/v1/query?metric=disk.used&from={start}&to={}&resolution=1m", start + window);
    let (_, before) = get(&server, &t, &range).await;
    let (_, before_1m) = get(&server, &t, &rolled).await;
    assert_eq!(points(&before), 2000);

    let db = format!("sqlite://{}", dir.path().join("microdash.db").display());
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count("SELECT COUNT(*) FROM chunks").await == 0 {
        assert!(std::time::Instant::now() < deadline, "the server did not compact the closed window within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count("SELECT COUNT(*) FROM samples").await, 0, "the raw rows moved into the chunk");
    assert_eq!(count("SELECT COUNT(*) FROM rollup_1m").await, 0, "and so did the 1m buckets");
    assert_eq!(get(&server, &t, &range).await.1, before);
    assert_eq!(get(&server, &t, &rolled).await.1, before_1m);

    // A late overwrite lands in the compacted window: the chunk is reopened, the value and the
    // 1m bucket change, and the window is compacted again.
    let late = json!({"metric":"disk.used","value": 1000.0,"ts": start + 3_601,"labels":{"host":"a"}});
    assert_eq!(post(&server, &t, "/api/v1/metrics", late.to_string()).await.0, StatusCode::ACCEPTED);
    let (_, after) = get(&server, &t, &range).await;
    assert_eq!(points(&after), 2000);
    assert_eq!(after["series"][0]["points"][1], json!([start + 3_601, 1000.0]));
    let (_, after_1m) = get(&server, &t, &format!("{rolled}&agg=max")).await;
    assert_eq!(after_1m["series"][0]["points"][0][1], json!(1000.0));

    // A clean stop checkpoints and truncates SQLite's log.
    assert!(server.terminate(Duration::from_secs(10)));
    let wal = dir.path().join("microdash.db-wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0, "a clean stop leaves no write-ahead log");
    let (ok, _, stderr) = cli(dir.path(), &["compact"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("Compacted"), "{stderr}");
    assert_eq!(count("SELECT COUNT(*) FROM samples").await, 0);
    server.restart();
    assert_eq!(get(&server, &server.token.clone(), &range).await.1, after);
}

/// A database written by a version that kept every sample as a row (here: a server that has
/// not compacted yet) is converted by `microdash migrate`; killed with -9 halfway, the next run
/// carries on, and every answer is the same as before, at every resolution.
#[tokio::test]
async fn migrate_converts_rows_into_chunks_and_resumes_after_kill_9() {
    use sqlx::Connection;
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("microdash.db").display());
    {
        // A file from before chunks: created without incremental auto-vacuum, which a file that
        // already has a table keeps.
        let options: sqlx::sqlite::SqliteConnectOptions = db.parse().unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true)).await.unwrap();
        sqlx::query("PRAGMA auto_vacuum = NONE").execute(&mut conn).await.unwrap();
        sqlx::query("CREATE TABLE legacy_note (text TEXT)").execute(&mut conn).await.unwrap();
    }
    // No retention or compaction pass while the server runs: the rows stay rows for `migrate`.
    let mut server = Server::start_with(
        dir.path(),
        &[("MICRODASH_RETENTION_INTERVAL", "1h"), ("MICRODASH_RETENTION_START_DELAY", "1h")],
    );
    let t = server.token.clone();
    // 10 series × 3 days at 20 s, in windows that closed days ago: 129 600 samples, which take
    // several steps of 20 000 rows.
    let day = 86_400_000;
    let start = (chrono_like_now_ms() - 5 * day) / day * day;
    let samples: Vec<Value> = (0..12_960i64)
        .flat_map(|i| {
            (0..10).map(move |host| {
                json!({"metric":"load","value": ((i * 7 + host * 13) % 101) as f64 / 4.0,"ts": start + i * 20_000,
                       "labels":{"host": format!("h{host}")}})
            })
        })
        .collect();
    for batch in samples.chunks(5000) {
        let (status, body) = post(&server, &t, "/api/v1/metrics/bulk", json!({ "samples": batch }).to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let queries: Vec<String> = ["raw", "1m", "5m"]
        .iter()
        .map(|r| format!("/api/v1/query?metric=load&from={start}&to={}&resolution={r}", start + 3 * day))
        .collect();
    let mut before = Vec::new();
    for q in &queries {
        before.push(get(&server, &t, q).await.1);
    }
    assert_eq!(points(&before[0]), 129_600);
    assert!(server.terminate(Duration::from_secs(10)));
    let file_size = || std::fs::metadata(dir.path().join("microdash.db")).unwrap().len();
    let size_as_rows = file_size();

    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
        }
    };
    let rows =
        "SELECT (SELECT COUNT(*) FROM samples) + (SELECT COUNT(*) FROM rollup_1m) + (SELECT COUNT(*) FROM rollup_5m)";
    let all_rows = count(rows).await;
    assert_eq!(all_rows, 129_600 + 43_200 + 8_640);

    // First run: killed as soon as it reports progress (stderr is a pipe: plain lines, not a bar).
    let mut first = std::process::Command::new(common::bin())
        .args(["migrate", "--database-url", &db])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    for line in std::io::BufReader::new(first.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push(line.clone());
        if line.starts_with("Converting: ") {
            first.kill().unwrap();
            break;
        }
    }
    first.wait().unwrap();
    let said = said.join("\n");
    assert!(said.contains("181440 samples and rollup buckets") && said.contains("running it again resumes"), "{said}");
    let left = count(rows).await;
    assert!(left > 0 && left < all_rows, "killed halfway: {left} of {all_rows} rows left\n{said}");
    assert!(count("SELECT COUNT(*) FROM chunks").await > 0);

    // Second run: converts what is left, and says so.
    let (ok, _, stderr) = cli(dir.path(), &["migrate"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("{left} samples and rollup buckets")) && stderr.contains("Converted"), "{stderr}");
    assert_eq!(count(rows).await, 0, "every closed window is in chunks");
    assert_eq!(count("SELECT SUM(count) FROM chunks").await, 129_600, "no sample lost or doubled");
    assert!(stderr.contains("Rewrote the database file"), "{stderr}");
    assert_eq!(count("PRAGMA auto_vacuum").await, 2, "incremental from now on");
    assert!(file_size() * 4 < size_as_rows, "the file shrank: {} → {} bytes", size_as_rows, file_size());
    let (ok, _, stderr) = cli(dir.path(), &["migrate"]);
    assert!(ok && !stderr.contains("Converted"), "a third run has nothing to do: {stderr}");

    server.restart();
    for (q, expected) in queries.iter().zip(&before) {
        assert_eq!(&get(&server, &server.token.clone(), q).await.1, expected, "{q}");
    }
}
