//! Tenancy over time, against the real binary: a deleted tenant (through the admin API or the
//! CLI on the database while the server runs) is refused and its streams and MQTT sessions
//! closed within a second, and a tenant created next under the same name finds nothing of it
//! (raw, 1m, 5m, series, streams, alerts); tokens are listed, expire and are revoked, on every
//! surface. On SQLite, PostgreSQL and MariaDB.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Server, client, create_tenant, ingest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn admin(server: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = client().request(method, server.url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(server: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every value a query at `resolution` answers for metric `m`, over all time.
async fn values(server: &Server, token: &str, resolution: &str) -> Vec<f64> {
    let (status, body) =
        get(server, token, &format!("/api/v1/query?metric=m&from=0&to=now&resolution={resolution}&agg=sum")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()))
        .collect()
}

/// Waits up to `within` for `check`; returns how long it took.
async fn eventually<F: AsyncFnMut() -> bool>(within: Duration, what: &str, mut check: F) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An open `GET /api/v1/stream`; `ended` tells whether the server closed it.
struct Stream {
    response: reqwest::Response,
    text: String,
}

impl Stream {
    async fn open(server: &Server, token: &str) -> Stream {
        let response = client().get(server.url("/api/v1/stream?metric=m")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut stream = Stream { response, text: String::new() };
        // The first event (`ready`) says the stream is subscribed.
        while !stream.text.contains("event: ready") {
            let chunk = stream.response.chunk().await.unwrap().expect("the stream starts");
            stream.text.push_str(&String::from_utf8_lossy(&chunk));
        }
        stream
    }

    /// Reads until the server ends the stream (true) or `within` passes (false).
    async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => return true,
            }
        }
    }
}

/// A raw MQTT 3.1.1 client of the embedded broker: CONNECT with username and password.
async fn mqtt_connect(server: &Server, username: &str, password: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.mqtt.as_deref().expect("the embedded broker runs")).await.unwrap();
    let mut payload = Vec::new();
    for field in [&format!("c-{}", rand_id())[..], username, password] {
        payload.extend_from_slice(&(field.len() as u16).to_be_bytes());
        payload.extend_from_slice(field.as_bytes());
    }
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    body.extend_from_slice(&payload);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await.unwrap();
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    stream
}

/// A QoS 0 PUBLISH of `value` to `metrics/{tenant}/{metric}`.
async fn mqtt_publish(stream: &mut TcpStream, tenant: &str, metric: &str, value: f64) -> std::io::Result<()> {
    let topic = format!("metrics/{tenant}/{metric}");
    let payload = value.to_string();
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload.as_bytes());
    let mut packet = vec![0x30, body.len() as u8];
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await
}

/// True when the broker closes the connection within `within`.
async fn mqtt_closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn rand_id() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

/// Runs the CLI against the server's database.
fn cli(server_db: &str, args: &[&str]) -> (bool, String, String) {
    let out =
        std::process::Command::new(common::bin()).args(args).env("MICRODASH_DATABASE_URL", server_db).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Setup {
    server: Server,
    db: String,
    _dir: tempfile::TempDir,
}

async fn setup(kind: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = match kind {
        "sqlite" => format!("sqlite://{}", dir.path().join("microdash.db").display()),
        other => common::fresh_database_url(other).await,
    };
    let server = Server::start_with_mqtt(dir.path(), &[("MICRODASH_DATABASE_URL", &db)]);
    Setup { server, db, _dir: dir }
}

/// The scenarios of the issue: a tenant deleted while its token is cached, a stream and an MQTT
/// session are open, then a tenant of the same name created; by the CLI or the admin API.
async fn deleted_then_recreated(kind: &str, through_cli: bool) {
    let Setup { server, db, _dir } = setup(kind).await;
    let bystander = create_tenant(&server, "bystander").await;
    let old = create_tenant(&server, "acme").await;
    // Old points: in raw, 1m and 5m; a rule that fires on them.
    let old_samples: Vec<Value> =
        (0..10).map(|i| json!({"metric":"m","value":1000.0 + i as f64,"ts":60_000 * i})).collect();
    assert_eq!(ingest(&server, &old, json!(old_samples)).await, StatusCode::ACCEPTED);
    let rule = json!({"name":"hot","metric":"m","condition":{"aggregation":"last","op":">","threshold":0},"for":"0s"});
    let r = client().post(server.url("/api/v1/rules")).bearer_auth(&old).body(rule.to_string()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    // The token is in the server's cache now, and the rule fires.
    assert_eq!(ingest(&server, &old, json!([{"metric":"m","value":1.0}])).await, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(10), "the rule fires", async || {
        get(&server, &old, "/api/v1/alerts").await.1.to_string().contains("hot")
    })
    .await;
    // A stream and an MQTT session are open.
    let mut stream = Stream::open(&server, &old).await;
    let mut mqtt = mqtt_connect(&server, "acme", &old).await;
    mqtt_publish(&mut mqtt, "acme", "m", 2.0).await.unwrap();

    let started = Instant::now();
    if through_cli {
        let (ok, _, err) = cli(&db, &["tenant", "delete", "acme"]);
        assert!(ok, "{err}");
    } else {
        let (status, body) = admin(&server, reqwest::Method::DELETE, "/api/v1/tenants/acme", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let deleted_at = started.elapsed();
    // Within a second of the deletion: refused, stream closed, MQTT session closed.
    let refused =
        eventually(Duration::from_secs(1) + deleted_at, "the deleted tenant's token is refused", async || {
            ingest(&server, &old, json!([{"metric":"m","value":3.0}])).await == StatusCode::UNAUTHORIZED
        })
        .await;
    assert!(stream.ends_within(Duration::from_secs(1)).await, "the deleted tenant's stream stays open");
    assert!(
        mqtt_closed_within(&mut mqtt, Duration::from_secs(1)).await,
        "the deleted tenant's MQTT session stays open"
    );
    eprintln!("{kind}: deleted in {deleted_at:?}, token refused after {refused:?}");

    // The same name again.
    let new = create_tenant(&server, "acme").await;
    let mut new_stream = Stream::open(&server, &new).await;
    assert_eq!(ingest(&server, &new, json!([{"metric":"m","value":7.0,"ts":30_000}])).await, StatusCode::ACCEPTED);
    assert_eq!(
        ingest(&server, &bystander, json!([{"metric":"m","value":5.0,"ts":30_000}])).await,
        StatusCode::ACCEPTED
    );
    for resolution in ["raw", "1m", "5m"] {
        assert_eq!(values(&server, &new, resolution).await, vec![7.0], "{resolution}: the deleted tenant's points");
    }
    let (_, series) = get(&server, &new, "/api/v1/series?metric=m").await;
    assert_eq!(
        series.as_array().map(|a| a.len()).or(series["series"].as_array().map(|a| a.len())),
        Some(1),
        "{series}"
    );
    let (_, alerts) = get(&server, &new, "/api/v1/alerts").await;
    assert!(!alerts.to_string().contains("hot"), "the deleted tenant's alerts: {alerts}");
    let (_, rules) = get(&server, &new, "/api/v1/rules").await;
    assert!(!rules.to_string().contains("hot"), "the deleted tenant's rules: {rules}");
    assert_eq!(ingest(&server, &old, json!([{"metric":"m","value":3.0}])).await, StatusCode::UNAUTHORIZED);
    // The new tenant's stream sees its own sample only; the old one is closed for good.
    assert!(!new_stream.ends_within(Duration::from_millis(500)).await);
    assert!(new_stream.text.contains("\"value\":7.0"), "{}", new_stream.text);
    assert!(!new_stream.text.contains("\"value\":5.0"), "another tenant's sample: {}", new_stream.text);
    assert!(!stream.text.contains("\"value\":7.0"), "the deleted tenant's stream saw the new tenant: {}", stream.text);
}

#[tokio::test]
async fn sqlite_cli_deletion_reaches_the_running_server() {
    deleted_then_recreated("sqlite", true).await;
}

#[tokio::test]
async fn sqlite_api_deletion_closes_everything_at_once() {
    deleted_then_recreated("sqlite", false).await;
}

#[tokio::test]
async fn postgres_cli_deletion_reaches_the_running_server() {
    deleted_then_recreated("postgres", true).await;
}

#[tokio::test]
async fn postgres_api_deletion_closes_everything_at_once() {
    deleted_then_recreated("postgres", false).await;
}

#[tokio::test]
async fn mariadb_cli_deletion_reaches_the_running_server() {
    deleted_then_recreated("mysql", true).await;
}

#[tokio::test]
async fn mariadb_api_deletion_closes_everything_at_once() {
    deleted_then_recreated("mysql", false).await;
}

/// A deleted tenant's MQTT publishes (new series each time) while other tenants ingest over
/// HTTP: nobody else ever gets a 503.
#[tokio::test]
async fn a_deleted_tenants_mqtt_publishes_never_fail_other_tenants() {
    // `_dir` is bound: dropped here it would delete the database under the running server.
    let Setup { server, _dir, .. } = setup("sqlite").await;
    let bystander = create_tenant(&server, "bystander").await;
    let doomed = create_tenant(&server, "doomed").await;
    let mut mqtt = mqtt_connect(&server, "doomed", &doomed).await;
    let publisher = tokio::spawn(async move {
        for i in 0..5_000 {
            if mqtt_publish(&mut mqtt, "doomed", &format!("m{i}"), i as f64).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        5_000
    });
    let ingest_loop = {
        let base = server.base.clone();
        let token = bystander.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let until = Instant::now() + Duration::from_secs(3);
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                let r = client()
                    .post(format!("{base}/api/v1/metrics"))
                    .bearer_auth(&token)
                    .body(json!({"metric":format!("b{}", i % 50),"value":1.0}).to_string())
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status());
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = admin(&server, reqwest::Method::DELETE, "/api/v1/tenants/doomed", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let statuses = ingest_loop.await.unwrap();
    let failed = statuses.iter().filter(|s| **s != StatusCode::ACCEPTED).count();
    assert_eq!(failed, 0, "{failed} of {} requests of another tenant failed: {statuses:?}", statuses.len());
    let published = tokio::time::timeout(Duration::from_secs(5), publisher).await.expect("the session closes").unwrap();
    assert!(published < 5_000, "the deleted tenant kept publishing");
}

async fn tokens(server: &Server, tenant: &str) -> Vec<Value> {
    let (status, body) = admin(server, reqwest::Method::GET, &format!("/api/v1/tenants/{tenant}/tokens"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["tokens"].as_array().unwrap().clone()
}

async fn token_lifecycle(kind: &str) {
    let Setup { server, db, _dir } = setup(kind).await;
    let first = create_tenant(&server, "acme").await;
    // A token that expires in 3 s: works, then is refused and its stream and MQTT session end.
    let (status, created) = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/tenants/acme/tokens",
        Some(json!({"scopes":["ingest","read"],"expires_in":"3s"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let short = created["token"].as_str().unwrap().to_string();
    let short_id = created["id"].as_i64().unwrap();
    assert!(created["expires_at"].as_i64().is_some());
    assert_eq!(ingest(&server, &short, json!([{"metric":"m","value":1.0}])).await, StatusCode::ACCEPTED);
    let mut short_stream = Stream::open(&server, &short).await;
    let mut short_mqtt = mqtt_connect(&server, "acme", &short).await;

    // The list: id, prefix, scopes, created, expires, last used; never a secret or hash.
    let list = tokens(&server, "acme").await;
    assert_eq!(list.len(), 2, "{list:?}");
    let listed = list.iter().find(|t| t["id"] == short_id).unwrap();
    assert_eq!(listed["scopes"], json!(["ingest", "read"]));
    assert!(short.starts_with(listed["prefix"].as_str().unwrap()));
    assert!(listed["created_at"].as_i64().is_some() && listed["expires_at"].as_i64().is_some());
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(&short[10..]) && !text.contains(&first[10..]) && !text.contains("hash"), "{text}");
    // Last use is recorded within a few seconds.
    eventually(Duration::from_secs(8), "last_used_at", async || {
        tokens(&server, "acme").await.iter().any(|t| t["id"] == short_id && t["last_used_at"].as_i64().is_some())
    })
    .await;

    assert!(short_stream.ends_within(Duration::from_secs(5)).await, "the expired token's stream stays open");
    assert!(mqtt_closed_within(&mut short_mqtt, Duration::from_secs(1)).await, "its MQTT session stays open");
    assert_eq!(ingest(&server, &short, json!([{"metric":"m","value":1.0}])).await, StatusCode::UNAUTHORIZED);

    // Revoked through the API: refused at once, stream and MQTT session closed.
    let (_, created) =
        admin(&server, reqwest::Method::POST, "/api/v1/tenants/acme/tokens", Some(json!({"scopes":["ingest","read"]})))
            .await;
    let revoked = created["token"].as_str().unwrap().to_string();
    let revoked_id = created["id"].as_i64().unwrap();
    assert_eq!(ingest(&server, &revoked, json!([{"metric":"m","value":1.0}])).await, StatusCode::ACCEPTED);
    let mut stream = Stream::open(&server, &revoked).await;
    let mut mqtt = mqtt_connect(&server, "acme", &revoked).await;
    let (status, _) =
        admin(&server, reqwest::Method::DELETE, &format!("/api/v1/tenants/acme/tokens/{revoked_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(ingest(&server, &revoked, json!([{"metric":"m","value":1.0}])).await, StatusCode::UNAUTHORIZED);
    assert!(stream.ends_within(Duration::from_secs(1)).await, "the revoked token's stream stays open");
    assert!(mqtt_closed_within(&mut mqtt, Duration::from_secs(1)).await, "its MQTT session stays open");
    let (status, body) =
        admin(&server, reqwest::Method::DELETE, &format!("/api/v1/tenants/acme/tokens/{revoked_id}"), None).await;
    assert_eq!((status, body["status"].as_u64()), (StatusCode::NOT_FOUND, Some(404)));
    // A re-issued token leaves the old one revocable on its own, and the first still works.
    assert_eq!(ingest(&server, &first, json!([{"metric":"m","value":1.0}])).await, StatusCode::ACCEPTED);

    // Revoked through the CLI on the database: refused within a second.
    let (_, created) =
        admin(&server, reqwest::Method::POST, "/api/v1/tenants/acme/tokens", Some(json!({"scopes":["ingest"]}))).await;
    let by_cli = created["token"].as_str().unwrap().to_string();
    let by_cli_id = created["id"].as_i64().unwrap();
    assert_eq!(ingest(&server, &by_cli, json!([{"metric":"m","value":1.0}])).await, StatusCode::ACCEPTED);
    let (ok, out, err) = cli(&db, &["token", "list", "--tenant", "acme"]);
    assert!(ok && out.contains(&by_cli_id.to_string()) && !out.contains(&by_cli[10..]), "{out}{err}");
    let (ok, _, err) = cli(&db, &["token", "revoke", "--tenant", "acme", &by_cli_id.to_string()]);
    assert!(ok, "{err}");
    eventually(Duration::from_secs(1), "the token revoked by the CLI is refused", async || {
        ingest(&server, &by_cli, json!([{"metric":"m","value":1.0}])).await == StatusCode::UNAUTHORIZED
    })
    .await;
    let (ok, _, err) = cli(&db, &["token", "revoke", "--tenant", "acme", &by_cli_id.to_string()]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = cli(&db, &["token", "create", "--tenant", "acme", "--expires-in", "soon"]);
    assert!(!ok && err.contains("--expires-in"), "{err}");

    // Bad input: problem+json naming the field.
    for bad in ["soon", "0s", "100000000000y", ""] {
        let (status, body) = admin(
            &server,
            reqwest::Method::POST,
            "/api/v1/tenants/acme/tokens",
            Some(json!({"scopes":["read"],"expires_in":bad})),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("expires_in")),
            "{bad}: {body}"
        );
    }
    let (status, body) = admin(&server, reqwest::Method::DELETE, "/api/v1/tenants/acme/tokens/abc", None).await;
    assert_eq!((status, body["status"].as_u64()), (StatusCode::NOT_FOUND, Some(404)), "{body}");
    let (status, _) = admin(&server, reqwest::Method::GET, "/api/v1/tenants/nobody/tokens", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The OpenAPI document describes the token endpoints.
    let (_, doc) = get(&server, &first, "/openapi.json").await;
    let paths = &doc["paths"];
    assert!(paths["/api/v1/tenants/{name}/tokens"]["get"].is_object(), "list");
    assert!(paths["/api/v1/tenants/{name}/tokens"]["post"]["requestBody"].to_string().contains("CreateToken"));
    assert!(paths["/api/v1/tenants/{name}/tokens/{id}"]["delete"]["responses"]["404"].is_object(), "revoke");
    assert!(doc["components"]["schemas"]["CreateToken"]["properties"]["expires_in"].is_object());
    // Only the admin token manages tokens.
    let (status, _) = get(&server, &first, "/api/v1/tenants/acme/tokens").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sqlite_tokens_are_listed_expire_and_are_revoked_everywhere() {
    token_lifecycle("sqlite").await;
}

#[tokio::test]
async fn postgres_tokens_are_listed_expire_and_are_revoked_everywhere() {
    token_lifecycle("postgres").await;
}

#[tokio::test]
async fn mariadb_tokens_are_listed_expire_and_are_revoked_everywhere() {
    token_lifecycle("mysql").await;
}

/// Item 7 of the issue: times and durations that overflowed, and errors that were not
/// problem+json (axum's own rejections and a 405).
#[tokio::test]
async fn out_of_range_times_and_every_error_are_problems() {
    // `_dir` is bound: dropped here it would delete the database under the running server.
    let Setup { server, _dir, .. } = setup("sqlite").await;
    let token = create_tenant(&server, "acme").await;
    for query in [
        "from=-9223372036854775807&to=9223372036854775807&step=1",
        "from=now-100000000000y",
        "from=0&to=9223372036854775807",
        "step=100000000000y",
    ] {
        let r = client()
            .get(server.url(&format!("/api/v1/query?metric=m&{query}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert!(body["field"].is_string(), "{query}: {body}");
    }
    // /stream refuses a metric name that /query refuses.
    let r = client().get(server.url("/api/v1/stream?metric=bad%20name")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "metric", "{body}");
    let (status, body) =
        admin(&server, reqwest::Method::PUT, "/api/v1/tenants/acme/retention", Some(json!({"raw":"292471000y"}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("raw")), "{body}");
    for (method, path, expected) in [
        (reqwest::Method::GET, "/api/v1/alerts/history?limit=abc", StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/api/v1/channels/x/deliveries?limit=abc", StatusCode::BAD_REQUEST),
        (reqwest::Method::PUT, "/api/v1/metrics", StatusCode::METHOD_NOT_ALLOWED),
        (reqwest::Method::GET, "/api/v1/rules/%FF%FE", StatusCode::BAD_REQUEST),
    ] {
        let r = client().request(method.clone(), server.url(path)).bearer_auth(&token).send().await.unwrap();
        let status = r.status();
        let allow = r.headers().get("allow").cloned();
        assert_eq!(
            r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()),
            Some("application/problem+json".into()),
            "{method} {path}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["status"].as_u64()),
            (expected, Some(expected.as_u16() as u64)),
            "{method} {path}: {body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty());
        if path.contains("limit=abc") {
            assert_eq!(body["field"], "limit", "{body}");
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(allow.is_some(), "405 keeps its Allow header");
        }
    }
}

/// A token handed out before the database lost its record (here: the tenant deleted and
/// recreated, as after a restore) is registered again by value, as the Kubernetes operator does
/// with a Tenant's Secret: it authenticates again with the scopes asked for; a second
/// registration is a conflict, a weak secret and a non-admin caller are refused.
#[tokio::test]
async fn a_lost_token_is_registered_again_by_value() {
    // `_dir` is bound: dropped here it would delete the database under the running server.
    let Setup { server, _dir, .. } = setup("sqlite").await;
    let old = create_tenant(&server, "restored").await;
    assert_eq!(get(&server, &old, "/api/v1/session").await.0, StatusCode::OK);
    let (status, _) = admin(&server, reqwest::Method::DELETE, "/api/v1/tenants/restored", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let fresh = create_tenant(&server, "restored").await;
    eventually(Duration::from_secs(2), "the old token refused", async || {
        get(&server, &old, "/api/v1/session").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;

    let path = "/api/v1/tenants/restored/tokens";
    let register = json!({ "scopes": ["ingest", "read"], "token": old });
    let (status, body) = admin(&server, reqwest::Method::POST, path, Some(register.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"], old.as_str(), "the answer is the registered secret, not a new one");
    let (status, session) = get(&server, &old, "/api/v1/session").await;
    assert_eq!((status, session["tenant"].as_str()), (StatusCode::OK, Some("restored")), "{session}");
    assert_eq!(session["scopes"], json!(["ingest", "read"]));
    assert_eq!(ingest(&server, &old, json!([{ "metric": "m", "value": 1.0 }])).await, StatusCode::ACCEPTED);

    // Registered already (to this tenant): a conflict, not a second row.
    let (status, body) = admin(&server, reqwest::Method::POST, path, Some(register.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Another tenant's live token cannot be taken over either.
    let (status, _) = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/tenants/restored/tokens",
        Some(json!({ "scopes": ["read"], "token": fresh })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    create_tenant(&server, "other").await;
    let (status, _) = admin(
        &server,
        reqwest::Method::POST,
        "/api/v1/tenants/other/tokens",
        Some(json!({ "scopes": ["read"], "token": old })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(get(&server, &old, "/api/v1/session").await.1["tenant"], "restored");
    for weak in ["short", "a token with spaces in it that is long enough"] {
        let (status, body) =
            admin(&server, reqwest::Method::POST, path, Some(json!({ "scopes": ["read"], "token": weak }))).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("token")), "{body}");
    }
    // Only the admin registers tokens.
    let r = client()
        .post(server.url(path))
        .bearer_auth(&fresh)
        .body(json!({ "scopes": ["read"], "token": "x".repeat(40) }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let listed = tokens(&server, "restored").await;
    assert_eq!(listed.len(), 2, "the tenant's first token and the registered one: {listed:?}");
}

/// A tenant manages its own tokens (the dashboard's Tokens page) with its `admin` scope: lists
/// them with its own marked, creates an expiring read-only one (secret shown once), revokes it
/// (refused within a second); it can neither see nor revoke another tenant's tokens, and a
/// token without `admin` cannot manage tokens.
#[tokio::test]
async fn a_tenant_manages_its_own_tokens_and_no_one_elses() {
    // `_dir` is bound: dropped here it would delete the database under the running server.
    let Setup { server, _dir, .. } = setup("sqlite").await;
    let acme = create_tenant(&server, "acme").await;
    let other = create_tenant(&server, "other").await;
    let request = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = client().request(method, server.url(path)).bearer_auth(token);
        if let Some(body) = body {
            r = r.body(body.to_string());
        }
        r.send()
    };
    let r = request(&acme, reqwest::Method::GET, "/api/v1/tokens", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["current"], listed["tokens"][0]["id"], "its own token is marked: {listed}");
    assert!(!listed.to_string().contains(&acme), "never the secret");

    let r =
        request(&acme, reqwest::Method::POST, "/api/v1/tokens", Some(json!({"scopes": ["read"], "expires_in": "30d"})))
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let reader = created["token"].as_str().unwrap().to_string();
    assert_eq!((created["tenant"].as_str(), created["scopes"].clone()), (Some("acme"), json!(["read"])));
    assert!(created["expires_at"].as_i64().unwrap() > 0);
    assert_eq!(get(&server, &reader, "/api/v1/metrics").await.0, StatusCode::OK);
    // Without `admin` a token manages no tokens.
    let r = request(&reader, reqwest::Method::GET, "/api/v1/tokens", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r =
        request(&reader, reqwest::Method::POST, "/api/v1/tokens", Some(json!({"scopes": ["admin"]}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no escalation from read to admin");
    // Registering a chosen secret is for the server's admin only.
    let r = request(
        &acme,
        reqwest::Method::POST,
        "/api/v1/tokens",
        Some(json!({"scopes": ["read"], "token": "y".repeat(40)})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "token");
    // Mistakes are problems that name the field.
    let r = request(&acme, reqwest::Method::POST, "/api/v1/tokens", Some(json!({"scopes": ["root"]}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "scopes");
    let r =
        request(&acme, reqwest::Method::POST, "/api/v1/tokens", Some(json!({"scopes": ["read"], "expires_in": "1ms"})))
            .await
            .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "expires_in");

    // Another tenant's token: invisible and not revocable (404, and it keeps working).
    let r = request(&other, reqwest::Method::GET, "/api/v1/tokens", None).await.unwrap();
    let others: Value = r.json().await.unwrap();
    assert_eq!(others["tokens"].as_array().unwrap().len(), 1, "{others}");
    let reader_id = created["id"].as_i64().unwrap();
    assert_eq!((listed["tokens"][0]["id"].as_i64(), others["tokens"][0]["id"].as_i64()), (Some(1), Some(1)));
    assert_eq!(reader_id, 2, "numbered within the tenant: {created}");
    let r = request(&other, reqwest::Method::DELETE, &format!("/api/v1/tokens/{reader_id}"), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&server, &reader, "/api/v1/metrics").await.0, StatusCode::OK);
    // The other tenant's second token is its own number 2; revoking it leaves acme's alone.
    let r = request(&other, reqwest::Method::POST, "/api/v1/tokens", Some(json!({"scopes": ["read"]}))).await.unwrap();
    let others_second: Value = r.json().await.unwrap();
    assert_eq!(others_second["id"], 2, "other tenants' tokens do not count: {others_second}");
    let r = request(&other, reqwest::Method::DELETE, "/api/v1/tokens/2", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(1), "other's revoked token refused", async || {
        get(&server, others_second["token"].as_str().unwrap(), "/api/v1/metrics").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(get(&server, &reader, "/api/v1/metrics").await.0, StatusCode::OK, "acme's token 2 still works");

    let r = request(&acme, reqwest::Method::DELETE, &format!("/api/v1/tokens/{reader_id}"), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(1), "the revoked token refused", async || {
        get(&server, &reader, "/api/v1/metrics").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    let r = request(&acme, reqwest::Method::DELETE, &format!("/api/v1/tokens/{reader_id}"), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "revoked already");
}

/// A bulk of `samples`: status, body and `Retry-After`.
async fn ingest_full(server: &Server, token: &str, samples: Value) -> (StatusCode, Value, Option<String>) {
    let r = client()
        .post(server.url("/api/v1/metrics/bulk"))
        .bearer_auth(token)
        .body(json!({ "samples": samples }).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

/// Samples of metric `m` with label `h` from `hosts`, at `ts`.
fn hosts(hosts: impl IntoIterator<Item = u32>, ts: i64) -> Value {
    Value::Array(
        hosts
            .into_iter()
            .map(|h| json!({ "metric": "m", "labels": { "h": h.to_string() }, "value": h, "ts": ts }))
            .collect(),
    )
}

async fn metrics_text(server: &Server) -> String {
    client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// Issue 15, item 3: a tenant's `samples_per_second` and `series` limits, set through the admin
/// API, refuse what is over them with a problem that names the limit, keep accepting samples
/// of existing series, leave other tenants untouched, and are counted per tenant in /metrics.
async fn limits_are_enforced(kind: &str) {
    let Setup { server, _dir, .. } = setup(kind).await;
    let a = create_tenant(&server, "noisy").await;
    let b = create_tenant(&server, "quiet").await;
    let put = |body: Value| admin(&server, reqwest::Method::PUT, "/api/v1/tenants/noisy/limits", Some(body));

    // Bad input: a clear problem naming the field; nothing changes.
    let (status, body) = put(json!({ "series": 0 })).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("series")), "{body}");
    let (status, body) = put(json!({ "samples_per_second": 5_000_000_000i64 })).await;
    assert_eq!(body["field"], "samples_per_second", "{status} {body}");
    let (status, _) = put(json!({ "series": 3, "burst": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        admin(&server, reqwest::Method::PUT, "/api/v1/tenants/nobody/limits", Some(json!({ "series": 3 }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = client()
        .put(server.url("/api/v1/tenants/noisy/limits"))
        .bearer_auth(&a)
        .body(json!({ "series": 1_000_000 }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a tenant cannot raise its own limits");

    let (status, body) = put(json!({ "samples_per_second": 40, "series": 3 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["limits"], json!({ "samples_per_second": 40, "series": 3 }));
    let (_, tenant) = admin(&server, reqwest::Method::GET, "/api/v1/tenants/noisy", None).await;
    assert_eq!(tenant["limits"]["series"], 3, "{tenant}");

    // Series: three fit; a fourth is refused while the existing ones are still stored.
    let now = common::now_ms();
    let (status, body, _) = ingest_full(&server, &a, hosts(1..=3, now - 10_000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body, _) = ingest_full(&server, &a, hosts([1, 2, 4, 5], now - 9_000)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["limit"], "series", "{body}");
    assert_eq!((body["accepted"].as_u64(), body["refused"].as_u64()), (Some(2), Some(2)), "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(r#"m{h="4"}"#) && detail.contains("limit of 3 series"), "{detail}");
    assert_eq!(body["type"], "about:blank");
    let (_, series) = get(&server, &a, "/api/v1/series?metric=m").await;
    let mut seen: Vec<String> =
        series["series"].as_array().unwrap().iter().map(|s| s["labels"]["h"].as_str().unwrap().to_string()).collect();
    seen.sort();
    assert_eq!(seen, ["1", "2", "3"], "no series past the cap: {series}");
    let (_, points) = get(&server, &a, "/api/v1/query?metric=m&match=h=1&from=0&to=now&resolution=raw").await;
    assert_eq!(points["series"][0]["points"].as_array().unwrap().len(), 2, "{points}");
    // The other tenant has no cap.
    let (status, body, _) = ingest_full(&server, &b, hosts(1..=20, now)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Rate: 40 samples/s, one second's worth at once. A request larger than that can never
    // pass (413); then requests of existing series pass until the bucket is empty (429 with
    // Retry-After, nothing stored), while the quiet tenant is untouched.
    let (status, body, _) =
        ingest_full(&server, &a, Value::Array(vec![json!({"metric":"m","labels":{"h":"1"},"value":1}); 41])).await;
    assert_eq!((status, body["limit"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("samples_per_second")), "{body}");
    let mut refused = None;
    for i in 0..20 {
        let (status, body, retry) = ingest_full(&server, &a, hosts(1..=3, now - 8_000 + i)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((body, retry));
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (body, retry) = refused.expect("the rate limit refuses within 60 samples");
    assert_eq!(body["limit"], "samples_per_second", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("40 samples/s"), "{body}");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    let (status, _, _) = ingest_full(&server, &b, hosts(1..=20, now + 1)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let text = metrics_text(&server).await;
    for limit in ["series", "samples_per_second"] {
        let line = format!(r#"microdash_tenant_limit_refused_samples_total{{tenant="noisy",limit="{limit}"}}"#);
        assert!(text.lines().any(|l| l.starts_with(&line)), "{line} in /metrics:\n{text}");
    }
    assert!(!text.contains(r#"tenant="quiet""#), "the quiet tenant was never refused");

    // Back to the server's defaults: the new series is accepted at once.
    let (status, body) = put(json!({})).await;
    assert_eq!((status, &body["limits"]), (StatusCode::OK, &json!({})), "{body}");
    let (status, body, _) = ingest_full(&server, &a, hosts([4], now)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn sqlite_tenant_limits_are_enforced() {
    limits_are_enforced("sqlite").await;
}

#[tokio::test]
async fn postgres_tenant_limits_are_enforced() {
    limits_are_enforced("postgres").await;
}

#[tokio::test]
async fn mariadb_tenant_limits_are_enforced() {
    limits_are_enforced("mysql").await;
}
