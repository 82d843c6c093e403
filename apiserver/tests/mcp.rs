//! The MCP server (issue 21) with real MCP clients: the official Python SDK (PyPI `mcp`, in the
//! test command's virtualenv, `MICRODASH_TEST_PYTHON`) over Streamable HTTP (`/mcp`, both the
//! current protocol and the 2025 one with sessions) and over stdio (`microdash mcp` started as a
//! subprocess by the SDK), and the MCP conformance suite (npm `@modelcontextprotocol/conformance`,
//! installed by the test command, `MICRODASH_TEST_MCP_CONFORMANCE`).
//!
//! Every tool answer is compared with what the HTTP API answers for the same call, tenants are
//! kept apart through every tool, and a read-scoped token sees and runs no mutating tool.

mod common;

use std::process::Command;
use std::time::Duration;

use common::webhook::Receiver;
use common::{ADMIN_TOKEN, Server, client, create_tenant, ingest, now_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn python() -> String {
    std::env::var("MICRODASH_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("MICRODASH_TEST_PYTHON is not set: the test command makes the client libraries' virtualenv (make test)")
    })
}

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");

/// Runs the Python SDK client: `mode` is `http` or `stdio`, `legacy` picks the 2025 protocol.
fn mcp_client(server: &Server, mode: &str, legacy: bool, token: &str, calls: &Value) -> Value {
    let mut command = Command::new(python());
    command.arg(CLIENT).arg(mode);
    if mode == "http" {
        command.arg(server.url("/mcp"));
    } else {
        command.arg(common::bin()).arg(server.url(""));
    }
    command.arg(token).arg(calls.to_string());
    if legacy {
        command.env("MCP_CLIENT_MODE", "legacy");
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "the MCP client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
}

async fn http(server: &Server, token: &str, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = client().request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

async fn get(server: &Server, token: &str, path: &str) -> Value {
    let (status, body) = http(server, token, reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Two tenants: `acme` with two hosts, a firing rule and a webhook receiver; `other` with a
/// secret host, a secret metric and a rule of its own. Answers (acme's token, its read-only
/// token, other's token, the time range of the samples).
struct Fleet {
    acme: String,
    reader: String,
    from: i64,
    to: i64,
    hook: Receiver,
}

async fn fleet(server: &Server) -> Fleet {
    let acme = create_tenant(server, "acme").await;
    let other = create_tenant(server, "other").await;
    let hook = Receiver::start(0, 200).await;
    let rule = json!({"name": "cpu-high", "metric": "cpu.usage", "condition": {"aggregation": "last", "op": ">", "threshold": 50}});
    let (status, body) = http(server, &acme, reqwest::Method::POST, "/api/v1/rules", Some(&rule)).await;
    assert_eq!(status, 201, "{body}");
    let secret = json!({"name": "secret-rule", "metric": "other.secret", "condition": {"aggregation": "last", "op": ">", "threshold": 0}});
    let (status, body) = http(server, &other, reqwest::Method::POST, "/api/v1/rules", Some(&secret)).await;
    assert_eq!(status, 201, "{body}");
    // Two hours of samples a minute apart, the last one a minute ago.
    let to = (now_ms() / 60_000 - 1) * 60_000;
    let from = to - 2 * 3_600_000;
    let mut samples = Vec::new();
    for i in 0..=120 {
        let ts = from + i * 60_000;
        samples.push(
            json!({"metric": "cpu.usage", "labels": {"host": "web-1"}, "value": 20.0 + (i % 7) as f64, "ts": ts}),
        );
        samples.push(
            json!({"metric": "cpu.usage", "labels": {"host": "web-2"}, "value": 70.0 + (i % 5) as f64, "ts": ts}),
        );
    }
    assert_eq!(ingest(server, &acme, json!(samples)).await, StatusCode::ACCEPTED);
    let theirs = json!([
        {"metric": "cpu.usage", "labels": {"host": "secret-host"}, "value": 99.0, "ts": to},
        {"metric": "other.secret", "labels": {"host": "secret-host"}, "value": 1.0, "ts": to},
    ]);
    assert_eq!(ingest(server, &other, theirs).await, StatusCode::ACCEPTED);
    let (status, body) =
        http(server, &acme, reqwest::Method::POST, "/api/v1/tokens", Some(&json!({"scopes": ["read"]}))).await;
    assert_eq!(status, 201, "{body}");
    let reader = body["token"].as_str().unwrap().to_string();
    // The rule fires for web-2 (its newest value is above 50), not for web-1.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = get(server, &acme, "/api/v1/alerts").await;
        let firing = alerts["alerts"].as_array().unwrap().iter().filter(|a| a["state"] == "FIRING").count();
        if firing == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the rule did not fire: {alerts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Fleet { acme, reader, from, to, hook }
}

/// The structured answer of call `i`, which must have succeeded.
fn ok(out: &Value, i: usize) -> &Value {
    let r = &out["results"][i];
    assert_eq!(r["isError"], false, "call {i} failed: {r}");
    &r["structured"]
}

/// The problem of call `i`, which must have failed as a tool error.
fn problem(out: &Value, i: usize) -> &Value {
    let r = &out["results"][i];
    assert_eq!(r["isError"], true, "call {i} did not fail: {r}");
    &r["structured"]
}

fn tool_names(out: &Value) -> Vec<String> {
    out["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

const READ_TOOLS: [&str; 11] = [
    "list_metrics",
    "list_label_values",
    "latest_values",
    "query_range",
    "promql_query",
    "list_alerts",
    "alert_history",
    "list_rules",
    "explain_rule",
    "list_channels",
    "list_dashboards",
];
const WRITE_TOOLS: [&str; 5] = ["put_rule", "delete_rule", "put_channel", "delete_channel", "test_channel"];

#[tokio::test]
async fn every_tool_answers_what_the_http_api_answers_over_http_and_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let f = fleet(&server).await;
    let (from, to) = (f.from, f.to);
    let promql_time = (to / 1000).to_string();
    let read_calls = json!([
        ["list_metrics", {}],
        ["list_label_values", {"label": "host", "metric": "cpu.usage"}],
        ["latest_values", {"metric": "cpu.usage", "match": {"host": "web-2"}}],
        ["query_range", {"metric": "cpu.usage", "from": from.to_string(), "to": to.to_string(), "step": "10m", "agg": "max"}],
        ["query_range", {"metric": "cpu.usage", "from": from.to_string(), "to": to.to_string()}],
        ["promql_query", {"query": "{__name__=\"cpu.usage\"}", "time": promql_time}],
        ["list_alerts", {}],
        ["alert_history", {"rule": "cpu-high"}],
        ["list_rules", {}],
        ["explain_rule", {"name": "cpu-high"}],
        ["list_channels", {}],
        ["list_dashboards", {}],
    ]);
    // The same reads over the HTTP API (the budgeted query: 2 h in at most 120 points, both ends
    // inclusive and buckets aligned to the step: 7200 s / 118 rounded up = 62 s).
    let sel = "%7B__name__%3D%22cpu.usage%22%7D";
    let expected = [
        get(&server, &f.acme, "/api/v1/metrics").await,
        get(&server, &f.acme, &format!("/prometheus/api/v1/label/host/values?match[]={sel}")).await,
        get(&server, &f.acme, "/api/v1/series?metric=cpu.usage&match=host=web-2").await,
        get(&server, &f.acme, &format!("/api/v1/query?metric=cpu.usage&from={from}&to={to}&step=10m&agg=max")).await,
        get(&server, &f.acme, &format!("/api/v1/query?metric=cpu.usage&from={from}&to={to}&step=62000")).await,
        get(&server, &f.acme, &format!("/prometheus/api/v1/query?query={sel}&time={promql_time}")).await,
        get(&server, &f.acme, "/api/v1/alerts").await,
        get(&server, &f.acme, "/api/v1/alerts/history?rule=cpu-high").await,
        get(&server, &f.acme, "/api/v1/rules").await,
    ];
    let channels = get(&server, &f.acme, "/api/v1/channels").await;
    let dashboards = get(&server, &f.acme, "/api/v1/dashboards").await;

    for (mode, legacy) in [("http", false), ("http", true), ("stdio", true)] {
        let out = mcp_client(&server, mode, legacy, &f.acme, &read_calls);
        let names = tool_names(&out);
        assert_eq!(names, READ_TOOLS.iter().chain(WRITE_TOOLS.iter()).map(|s| s.to_string()).collect::<Vec<_>>());
        for tool in out["tools"].as_array().unwrap() {
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
            assert!(tool["description"].as_str().unwrap().len() > 40, "{tool}");
        }
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(ok(&out, i), want, "{mode} (legacy {legacy}): call {i} {}", read_calls[i]);
        }
        // The point budget: 121 samples a series in 2 h, at most 120 points without a step.
        for series in ok(&out, 4)["series"].as_array().unwrap() {
            assert!(series["points"].as_array().unwrap().len() <= 120, "{series}");
        }
        let explained = ok(&out, 9);
        assert_eq!(explained["rule"]["name"], "cpu-high");
        assert_eq!(explained["condition"], "the newest sample of `cpu.usage` > 50, per series; fires at once");
        let instances = explained["instances"].as_array().unwrap();
        assert_eq!(instances.len(), 2, "{explained}");
        for instance in instances {
            let host = instance["labels"]["host"].as_str().unwrap();
            let text = instance["explanation"].as_str().unwrap();
            if host == "web-2" {
                assert!(text.starts_with("FIRING") && text.contains("> 50 holds"), "{text}");
            } else {
                assert!(text.starts_with("OK") && text.contains("does not hold"), "{text}");
            }
        }
        assert_eq!(explained["recentTransitions"], expected[7]["transitions"]);
        assert_eq!(ok(&out, 10), &channels);
        assert_eq!(ok(&out, 11), &dashboards);
    }

    // The mutating tools, over HTTP and over stdio; each answer checked against the API.
    for (mode, legacy) in [("http", false), ("stdio", true)] {
        let bad_rule =
            json!({"metric": "cpu.usage", "condition": {"aggregation": "avg", "op": ">", "threshold": "high"}});
        let calls = json!([
            ["put_channel", {"name": "hook", "spec": {"webhook": {"url": f.hook.url()}}}],
            ["test_channel", {"name": "hook"}],
            ["put_rule", {"name": "mcp-rule", "spec": {"metric": "cpu.usage", "match": {"host": "web-1"},
                "condition": {"aggregation": "avg", "window": "5m", "op": ">", "threshold": 90}, "channels": ["hook"]}}],
            ["put_rule", {"name": "mcp-bad", "spec": bad_rule}],
            ["query_range", {"from": "now-1h"}],
            ["delete_rule", {"name": "mcp-rule"}],
            ["delete_rule", {"name": "mcp-rule"}],
            ["delete_channel", {"name": "hook"}],
            ["no_such_tool", {}],
        ]);
        let hooks_before = f.hook.count();
        let out = mcp_client(&server, mode, legacy, &f.acme, &calls);
        assert_eq!(ok(&out, 0)["name"], "hook");
        assert_eq!(ok(&out, 0)["webhook"]["url"], f.hook.url());
        f.hook.wait_for(hooks_before + 1, Duration::from_secs(10)).await;
        assert_eq!(out["results"][1]["isError"], false, "{}", out["results"][1]);
        let stored = ok(&out, 2);
        assert_eq!(stored["name"], "mcp-rule");
        assert_eq!(stored["condition"]["threshold"], 90.0);
        // The refused spec: the same problem, field and reason as the HTTP API's.
        let (status, http_problem) =
            http(&server, &f.acme, reqwest::Method::PUT, "/api/v1/rules/mcp-bad", Some(&bad_rule)).await;
        assert_eq!(status, 422);
        assert_eq!(problem(&out, 3), &http_problem);
        assert_eq!(problem(&out, 3)["field"], "condition.threshold");
        // Arguments a tool refuses itself name the field too.
        assert_eq!(problem(&out, 4)["field"], "metric");
        assert_eq!(out["results"][5]["text"], "Deleted rule \"mcp-rule\".");
        assert_eq!(problem(&out, 6)["status"], 404);
        assert_eq!(out["results"][7]["isError"], false);
        assert!(out["results"][8]["protocolError"].as_str().unwrap().contains("no_such_tool"), "{}", out["results"][8]);
        let (status, _) = http(&server, &f.acme, reqwest::Method::GET, "/api/v1/rules/mcp-rule", None).await;
        assert_eq!(status, 404, "{mode}: the rule is gone");
        let (status, _) = http(&server, &f.acme, reqwest::Method::GET, "/api/v1/channels/hook", None).await;
        assert_eq!(status, 404, "{mode}: the channel is gone");
    }
}

#[tokio::test]
async fn a_token_sees_only_its_tenant_and_a_read_token_runs_no_mutating_tool() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let f = fleet(&server).await;
    let calls = json!([
        ["list_metrics", {}],
        ["list_label_values", {"label": "host"}],
        ["latest_values", {"metric": "cpu.usage"}],
        ["promql_query", {"query": "{__name__=~\".+\"}"}],
        ["explain_rule", {"name": "secret-rule"}],
        ["alert_history", {"rule": "secret-rule"}],
        ["list_rules", {}],
        ["list_alerts", {}],
        ["query_range", {"metric": "other.secret", "from": "now-3h"}],
        ["put_rule", {"name": "sneaky", "spec": {"metric": "cpu.usage", "condition": {"aggregation": "last", "op": ">", "threshold": 1}}}],
        ["delete_rule", {"name": "cpu-high"}],
        ["put_channel", {"name": "hook", "spec": {"webhook": {"url": f.hook.url()}}}],
    ]);
    // The reader first: afterwards nothing it tried may have changed.
    for (token, reader) in [(&f.reader, true), (&f.acme, false)] {
        for (mode, legacy) in [("http", false), ("stdio", true)] {
            let out = mcp_client(&server, mode, legacy, token, &calls);
            let everything = out["results"].to_string();
            for theirs in ["secret-host", "other.secret", "\"other\""] {
                assert!(!everything.contains(theirs), "{mode}: another tenant's data leaked: {everything}");
            }
            assert_eq!(ok(&out, 0)["metrics"], json!(["cpu.usage"]));
            assert_eq!(ok(&out, 1)["data"], json!(["web-1", "web-2"]));
            assert_eq!(ok(&out, 2)["series"].as_array().unwrap().len(), 2);
            assert_eq!(problem(&out, 4)["status"], 404);
            assert_eq!(ok(&out, 5)["transitions"], json!([]));
            assert_eq!(ok(&out, 8)["series"], json!([]));
            if reader {
                assert_eq!(tool_names(&out), READ_TOOLS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
                assert!(out["tools"].as_array().unwrap().iter().all(|t| t["readOnly"] == true));
                for i in 9..12 {
                    assert_eq!(problem(&out, i)["status"], 403, "{mode}: call {i}");
                    assert_eq!(problem(&out, i)["detail"], "this token lacks the `admin` scope");
                }
                // The reader changed nothing.
                let (status, _) = http(&server, &f.acme, reqwest::Method::GET, "/api/v1/rules/sneaky", None).await;
                assert_eq!(status, 404);
                get(&server, &f.acme, "/api/v1/rules/cpu-high").await;
                let (status, _) = http(&server, &f.acme, reqwest::Method::GET, "/api/v1/channels/hook", None).await;
                assert_eq!(status, 404);
            } else {
                assert_eq!(tool_names(&out).len(), READ_TOOLS.len() + WRITE_TOOLS.len());
                assert_eq!(ok(&out, 9)["name"], "sneaky");
            }
        }
    }

    // No token, a wrong token, the admin token alone, an ingest-only token: refused before MCP.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _) = http_raw(&server, None, &init).await;
    assert_eq!(status, 401);
    let (status, _) = http_raw(&server, Some("not-a-token"), &init).await;
    assert_eq!(status, 401);
    let (status, body) = http_raw(&server, Some(ADMIN_TOKEN), &init).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(
        &server,
        ADMIN_TOKEN,
        reqwest::Method::POST,
        "/api/v1/tenants/acme/tokens",
        Some(&json!({"scopes": ["ingest"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_raw(&server, body["token"].as_str(), &init).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("`read` scope"), "{body}");
}

async fn http_raw(server: &Server, token: Option<&str>, body: &Value) -> (u16, String) {
    let mut request = client()
        .post(server.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The scenarios of the conformance suite that apply to microdash's server (see docs/mcp.md for
/// those that do not and why).
const CONFORMANCE: [&str; 6] = [
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

/// A loopback proxy that adds the tenant's bearer token to every request: the conformance
/// suite's `server --url` has no option for credentials, and `/mcp` needs them.
async fn authenticating_proxy(target: String, token: String) -> std::net::SocketAddr {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let upstream = reqwest::Client::new();
    let handler = move |request: Request| {
        let (upstream, target, token) = (upstream.clone(), target.clone(), token.clone());
        async move {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
            let mut forward = upstream
                .request(parts.method.clone(), format!("{target}{}", parts.uri.path_and_query().unwrap()))
                .bearer_auth(&token)
                .body(bytes);
            for (name, value) in &parts.headers {
                if name != "host" && name != "authorization" && name != "content-length" {
                    forward = forward.header(name, value);
                }
            }
            let answer = forward.send().await.unwrap();
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                response = response.header(name, value);
            }
            response.body(Body::from_stream(answer.bytes_stream())).unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(handler);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn the_mcp_conformance_suite_passes_its_applicable_scenarios() {
    let suite = std::env::var("MICRODASH_TEST_MCP_CONFORMANCE").unwrap_or_else(|_| {
        panic!("MICRODASH_TEST_MCP_CONFORMANCE is not set: the test command installs the suite (make test)")
    });
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "acme").await;
    let proxy = authenticating_proxy(server.url(""), token).await;
    for scenario in CONFORMANCE {
        let out_dir = dir.path().join(scenario);
        let out = tokio::process::Command::new("node")
            .arg(&suite)
            .args(["server", "--url", &format!("http://localhost:{}/mcp", proxy.port()), "--scenario", scenario])
            .arg("-o")
            .arg(&out_dir)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(", 0 failed"),
            "conformance scenario {scenario} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
