//! Black-box tests of the public status pages (docs/status-pages.md) against the real binary:
//! the tenant API (CRUD, validation, scopes, isolation), and the public page, JSON, badge and
//! stream following an alert rule as it fires and resolves, read without a token and showing
//! nothing of the tenant beyond what it chose. On SQLite, PostgreSQL and MariaDB.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Server, client, create_tenant, send};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn put_page(server: &Server, token: &str, slug: &str, body: Value) -> (StatusCode, Value) {
    send(server, token, reqwest::Method::PUT, &format!("/api/v1/status-pages/{slug}"), Some(body)).await
}

/// A GET without any credentials: what the public gets (status, content type, cache-control, body).
async fn public(server: &Server, path: &str) -> (StatusCode, String, String, String) {
    let response = client().get(server.url(path)).send().await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let (content_type, cache) = (header("content-type"), header("cache-control"));
    let status = response.status();
    (status, content_type, cache, response.text().await.unwrap())
}

async fn public_json(server: &Server, slug: &str) -> Value {
    let (status, content_type, _, body) = public(server, &format!("/status/{slug}.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/json");
    serde_json::from_str(&body).unwrap()
}

/// Polls the public JSON until `check` holds (a guard against a hang, not a timing assertion).
async fn eventually(server: &Server, slug: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = public_json(server, slug).await;
        if check(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "the page never satisfied the check; last: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rule(name: &str, metric: &str) -> Value {
    json!({
        "name": name,
        "metric": metric,
        "match": {"host": "db-secret-host"},
        "condition": {"aggregation": "last", "op": ">", "threshold": 90},
        "for": "0s",
        "severity": "critical",
        "labels": {"team": "secret-team"},
    })
}

async fn sample(server: &Server, token: &str, metric: &str, value: f64) {
    let body = json!({"metric": metric, "value": value, "labels": {"host": "db-secret-host"}});
    let (status, answer) = send(server, token, reqwest::Method::POST, "/api/v1/metrics", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

async fn token_with(server: &Server, admin_token: &str, scopes: &[&str]) -> String {
    let (status, body) =
        send(server, admin_token, reqwest::Method::POST, "/api/v1/tokens", Some(json!({"scopes": scopes}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------

async fn crud_validation_scopes_and_isolation(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_database(kind, dir.path(), &[]).await;
    let acme = create_tenant(&server, "acme").await;
    let other = create_tenant(&server, "umbrella").await;
    for token in [&acme, &other] {
        let (status, body) =
            send(&server, token, reqwest::Method::POST, "/api/v1/rules", Some(rule("db-up", "db.lag"))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let page = json!({"title": "Acme status", "components": [{"name": "Database", "rule": "db-up"}]});

    // Created, then replaced; listed and read back.
    let (status, body) = put_page(&server, &acme, "acme", page.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["slug"], "acme");
    assert_eq!(body["publicUrl"], "/status/acme");
    assert_eq!(body["components"], json!([{"name": "Database", "rule": "db-up"}]));
    let mut edited = body.clone();
    edited["title"] = json!("Acme systems");
    let (status, body) = put_page(&server, &acme, "acme", edited).await;
    assert_eq!(status, StatusCode::OK, "an edited answer goes back as it is: {body}");
    assert_eq!(body["title"], "Acme systems");
    let (status, list) = send(&server, &acme, reqwest::Method::GET, "/api/v1/status-pages", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["pages"].as_array().unwrap().len(), 1, "{list}");
    let (status, one) = send(&server, &acme, reqwest::Method::GET, "/api/v1/status-pages/acme", None).await;
    assert_eq!((status, one["title"].as_str()), (StatusCode::OK, Some("Acme systems")));

    // Validation: problem+json naming the field.
    let cases = [
        (json!({"components": page["components"]}), "title", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"title": " ", "components": page["components"]}), "title", StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"title": "x".repeat(101), "components": page["components"]}),
            "title",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"title": "T", "components": []}), "components", StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"title": "T", "components": [{"name": "A", "rule": "nope"}]}),
            "components[0].rule",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"title": "T", "components": [{"name": "A", "rule": "db-up"}, {"name": "A", "rule": "db-up"}]}),
            "components[1].name",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"title": "T", "components": [{"name": "A", "rule": "db-up", "metric": "x"}]}),
            "components[0].metric",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"title": "T", "components": page["components"], "tenant": "acme"}),
            "tenant",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, field, expected) in cases {
        let (status, problem) = put_page(&server, &acme, "acme-2", body.clone()).await;
        assert_eq!((status, problem["field"].as_str()), (expected, Some(field)), "{body} → {problem}");
    }
    let response = client()
        .put(server.url("/api/v1/status-pages/Not_A_Slug"))
        .bearer_auth(&acme)
        .json(&page)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "slug");

    // Scopes: read lists, only admin changes.
    let reader = token_with(&server, &acme, &["read"]).await;
    let ingester = token_with(&server, &acme, &["ingest"]).await;
    assert_eq!(send(&server, &reader, reqwest::Method::GET, "/api/v1/status-pages", None).await.0, StatusCode::OK);
    assert_eq!(put_page(&server, &reader, "acme", page.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        send(&server, &reader, reqwest::Method::DELETE, "/api/v1/status-pages/acme", None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&server, &ingester, reqwest::Method::GET, "/api/v1/status-pages", None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        client().get(server.url("/api/v1/status-pages")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Isolation: the other tenant neither sees nor takes the slug.
    let (status, _) = send(&server, &other, reqwest::Method::GET, "/api/v1/status-pages/acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = put_page(&server, &other, "acme", page.clone()).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::CONFLICT, Some("slug")), "{problem}");
    assert!(!problem.to_string().contains("Acme"), "nothing of the owner in the refusal: {problem}");
    assert_eq!(
        send(&server, &other, reqwest::Method::DELETE, "/api/v1/status-pages/acme", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = send(&server, &other, reqwest::Method::GET, "/api/v1/status-pages", None).await;
    assert_eq!(list["pages"], json!([]));
    assert_eq!(public_json(&server, "acme").await["title"], "Acme systems", "still the owner's");

    // Delete: gone for the tenant and the public.
    assert_eq!(
        send(&server, &acme, reqwest::Method::DELETE, "/api/v1/status-pages/acme", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&server, &acme, reqwest::Method::DELETE, "/api/v1/status-pages/acme", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, content_type, _, _) = public(&server, "/status/acme.json").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::NOT_FOUND, "application/problem+json"));
    let (status, content_type, _, _) = public(&server, "/status/acme").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::NOT_FOUND, "text/html; charset=utf-8"));

    // Now free, the slug goes to the other tenant; deleting that tenant takes its page along.
    assert_eq!(put_page(&server, &other, "acme", page.clone()).await.0, StatusCode::CREATED);
    let response =
        client().delete(server.url("/api/v1/tenants/umbrella")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(public(&server, "/status/acme.json").await.0, StatusCode::NOT_FOUND);
    assert_eq!(put_page(&server, &acme, "acme", page).await.0, StatusCode::CREATED, "the slug is free again");
}

#[tokio::test]
async fn crud_validation_scopes_and_isolation_on_sqlite() {
    crud_validation_scopes_and_isolation("sqlite").await;
}

#[tokio::test]
async fn crud_validation_scopes_and_isolation_on_postgres() {
    crud_validation_scopes_and_isolation("postgres").await;
}

#[tokio::test]
async fn crud_validation_scopes_and_isolation_on_mariadb() {
    crud_validation_scopes_and_isolation("mysql").await;
}

// ---------------------------------------------------------------------------------------

/// Reads SSE `status` events of a public stream.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(server: &Server, slug: &str) -> Events {
        let response = client()
            .get(server.url(&format!("/status/{slug}/stream")))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        Events { response, buffer: String::new() }
    }

    /// The next `status` event's page.
    async fn next_status(&mut self) -> Value {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: status") {
                    let data: String =
                        block.lines().filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:"))).collect();
                    return serde_json::from_str(&data).unwrap();
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }
}

async fn the_public_page_follows_its_rule(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_database(kind, dir.path(), &[]).await;
    let token = create_tenant(&server, "secret-tenant-name").await;
    for r in [rule("db-up", "secret.metric.name"), rule("hidden-rule", "other.secret.metric")] {
        let (status, body) = send(&server, &token, reqwest::Method::POST, "/api/v1/rules", Some(r)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let page = json!({"title": "Public status", "components": [{"name": "Database", "rule": "db-up"}]});
    assert_eq!(put_page(&server, &token, "public-status", page).await.0, StatusCode::CREATED);
    sample(&server, &token, "secret.metric.name", 10.0).await;

    let first = public_json(&server, "public-status").await;
    assert_eq!(first["status"], "operational");
    assert_eq!(first["components"][0]["status"], "operational");
    let history = first["components"][0]["history"].as_array().unwrap();
    assert_eq!(history.len(), 90);
    assert_eq!(history[89]["status"], "operational", "today: {first}");
    assert_eq!(history[0]["status"], Value::Null, "before the rule existed");
    assert_eq!(first["incidents"], json!([]));

    let mut events = Events::open(&server, "public-status").await;
    assert_eq!(events.next_status().await["components"][0]["status"], "operational", "the stream starts with the page");

    // The rule fires: down everywhere, and the stream says so.
    sample(&server, &token, "secret.metric.name", 99.5).await;
    let live = events.next_status().await;
    assert_eq!(live["components"][0]["status"], "down", "{live}");
    let down = eventually(&server, "public-status", |p| p["components"][0]["status"] == "down").await;
    assert_eq!(down["status"], "down");
    assert_eq!(down["components"][0]["history"][89]["status"], "down");
    assert_eq!(down["incidents"][0]["component"], "Database");
    assert_eq!(down["incidents"][0]["resolved_at"], Value::Null);
    let (status, content_type, cache, svg) = public(&server, "/status/public-status/badge/Database.svg").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/svg+xml"));
    assert!(cache.starts_with("public"), "{cache}");
    assert!(svg.contains("Database: down") && svg.contains("#cf222e"), "{svg}");
    let (status, content_type, cache, html) = public(&server, "/status/public-status").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
    assert_eq!(cache, "public, max-age=10");
    assert!(html.contains("data-component=\"Database\" data-status=\"down\""), "{html}");

    // Resolved: operational again, the incident closed, the day still shows the outage.
    sample(&server, &token, "secret.metric.name", 5.0).await;
    let live = events.next_status().await;
    assert_eq!(live["components"][0]["status"], "operational", "{live}");
    let up = eventually(&server, "public-status", |p| p["components"][0]["status"] == "operational").await;
    assert_eq!(up["status"], "operational");
    assert!(up["incidents"][0]["resolved_at"].as_i64().unwrap() >= up["incidents"][0]["started_at"].as_i64().unwrap());
    assert_eq!(up["incidents"][0]["status"], "down");
    assert_eq!(up["components"][0]["history"][89]["status"], "down", "the worst of the day");
    let (_, _, _, svg) = public(&server, "/status/public-status/badge/Database.svg").await;
    assert!(svg.contains("Database: operational"), "{svg}");

    // Nothing of the tenant beyond what it chose, in any public answer.
    let (_, _, _, json_text) = public(&server, "/status/public-status.json").await;
    let (_, _, _, html) = public(&server, "/status/public-status").await;
    for text in [&json_text, &html, &svg, &live.to_string()] {
        for secret in [
            "secret-tenant-name",
            "secret.metric.name",
            "other.secret.metric",
            "db-secret-host",
            "secret-team",
            "db-up",
            "hidden-rule",
            "99.5",
            "tenant_id",
            token.as_str(),
        ] {
            assert!(!text.contains(secret), "{secret:?} is public: {text}");
        }
    }

    // Conditional requests and unknown things.
    let response = client().get(server.url("/status/public-status.json")).send().await.unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let again =
        client().get(server.url("/status/public-status.json")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(public(&server, "/status/public-status/badge/Nope.svg").await.0, StatusCode::NOT_FOUND);
    assert_eq!(public(&server, "/status/no-such-page.json").await.0, StatusCode::NOT_FOUND);
    assert_eq!(public(&server, "/status/no-such-page/stream").await.0, StatusCode::NOT_FOUND);
    let (status, content_type, _, script) = public(&server, "/status-page.js").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/javascript; charset=utf-8"));
    assert!(script.contains("EventSource"));
}

#[tokio::test]
async fn the_public_page_follows_its_rule_on_sqlite() {
    the_public_page_follows_its_rule("sqlite").await;
}

#[tokio::test]
async fn the_public_page_follows_its_rule_on_postgres() {
    the_public_page_follows_its_rule("postgres").await;
}

#[tokio::test]
async fn the_public_page_follows_its_rule_on_mariadb() {
    the_public_page_follows_its_rule("mysql").await;
}
