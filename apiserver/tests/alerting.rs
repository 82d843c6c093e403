//! Black-box tests of alerting against the real binary, a real webhook receiver (axum on
//! 127.0.0.1:0 in the test) and a real SMTP server (aiosmtpd, scripts/services/smtp.py).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mosquitto::make_certificates;
use common::webhook::Receiver;
use common::{ADMIN_TOKEN, Server, cli, client, free_port, send};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// A real SMTP server: aiosmtpd through scripts/services/smtp.py, one message per file.

struct Smtp {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services").join(name)
}

/// Debian's python3-aiosmtpd installs for /usr/bin/python3, which pyenv or a venv may shadow.
fn python_with_aiosmtpd() -> &'static str {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return python;
        }
    }
    panic!(
        "the SMTP tests need a real SMTP server and python3-aiosmtpd is not installed: \
         run `apt-get install -y python3-aiosmtpd` (or `scripts/services/smtp.sh --install-only`)"
    );
}

impl Smtp {
    fn start(credentials: Option<(&str, &str)>) -> Smtp {
        Self::start_tls(credentials, None)
    }

    /// `tls`: `("starttls" | "tls", certificate dir)` with `server.crt` and `server.key` in it
    /// (`make_certificates`).
    fn start_tls(credentials: Option<(&str, &str)>, tls: Option<(&str, &Path)>) -> Smtp {
        use std::io::BufRead;
        let maildir = tempfile::tempdir().unwrap();
        let mut command = Command::new(python_with_aiosmtpd());
        command.arg(script("smtp.py")).arg("--maildir").arg(maildir.path()).stdout(Stdio::piped());
        if let Some((user, password)) = credentials {
            command.args(["--user", user, "--password", password]);
        }
        if let Some((mode, dir)) = tls {
            command
                .args(["--tls", mode])
                .arg("--cert")
                .arg(dir.join("server.crt"))
                .arg("--key")
                .arg(dir.join("server.key"));
        }
        let mut child = command.spawn().expect("start the SMTP server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            panic!("the SMTP server did not say where it listens: {line:?}");
        });
        Smtp { child, port, maildir }
    }

    fn messages(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(self.maildir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(Instant::now() < deadline, "{} of {n} emails arrived in {timeout:?}", messages.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP helpers.

async fn post(server: &Server, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    send(server, token, reqwest::Method::POST, path, Some(body)).await
}

async fn get(server: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    send(server, token, reqwest::Method::GET, path, None).await
}

async fn sample(server: &Server, metric: &str, value: f64, host: &str) {
    let body = json!({"metric": metric, "value": value, "labels": {"host": host}});
    let (status, answer) = post(server, &server.token, "/api/v1/metrics", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

/// Polls `path` until `check` holds for its JSON, or fails after `timeout`.
async fn eventually(server: &Server, path: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, body) = get(server, &server.token, path).await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never satisfied the check within {timeout:?}; last: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn rule(name: &str, channel: &str) -> Value {
    json!({
        "name": name,
        "metric": "cpu.usage",
        "match": {"host": "web-1"},
        "condition": {"aggregation": "last", "op": ">", "threshold": 90},
        "for": "0s",
        "severity": "critical",
        "channels": [channel],
        "labels": {"team": "a"},
        "annotations": {"summary": "CPU {{ $value }}% on {{ $labels.host }}"}
    })
}

const FAST_RETRIES: [(&str, &str); 3] = [
    ("MICRODASH_NOTIFY_BACKOFF", "200ms"),
    ("MICRODASH_NOTIFY_MAX_BACKOFF", "500ms"),
    ("MICRODASH_NOTIFY_MAX_ATTEMPTS", "50"),
];

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_breach_reaches_the_webhook_signed_at_once_and_its_resolve_follows() {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    let channel = json!({"name": "ops-webhook", "webhook": {"url": receiver.url(), "hmacSecret": "s3cret"},
                         "sendResolved": true});
    assert_eq!(post(&server, &t, "/api/v1/channels", channel).await.0, StatusCode::CREATED);
    assert_eq!(post(&server, &t, "/api/v1/rules", rule("high-cpu", "ops-webhook")).await.0, StatusCode::CREATED);

    sample(&server, "cpu.usage", 50.0, "web-1").await;
    sample(&server, "cpu.usage", 99.0, "web-2").await; // not matched
    let breach = Instant::now();
    sample(&server, "cpu.usage", 95.5, "web-1").await;
    // How fast is for the bench (docs/benchmarks.md); here only that it arrives.
    receiver.wait_for(1, Duration::from_secs(15)).await;
    assert!(receiver.with_hooks(|h| h[0].at >= breach));

    receiver.with_hooks(|hooks| {
        let hook = &hooks[0];
        assert_eq!(hook.header("x-microdash-signature"), hmac_hex("s3cret", &hook.body), "HMAC of the exact body");
        assert_eq!(hook.header("content-type"), "application/json");
        let p = hook.json();
        assert_eq!(hook.header("idempotency-key"), p["idempotencyKey"].as_str().unwrap());
        assert_eq!(p["rule"], "high-cpu");
        assert_eq!(p["state"], "FIRING");
        assert_eq!(p["previousState"], "OK");
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["value"], 95.5);
        assert_eq!(p["tenant"], "default");
        assert_eq!(p["labels"], json!({"host": "web-1", "team": "a"}));
        assert_eq!(p["annotations"]["summary"], "CPU 95.5% on web-1");
        assert_eq!(p["condition"], "last > 90");
        assert!(p["startsAt"].as_str().unwrap().ends_with('Z'));
        assert!(p["atMs"].as_i64().unwrap() > 0);
    });

    // Back to normal: RESOLVED is sent (sendResolved), then the instance settles to OK.
    sample(&server, "cpu.usage", 10.0, "web-1").await;
    receiver.wait_for(2, Duration::from_secs(15)).await;
    receiver.with_hooks(|hooks| {
        let p = hooks[1].json();
        assert_eq!(p["state"], "RESOLVED");
        assert!(p["endsAt"].is_string());
        assert_ne!(hooks[0].header("idempotency-key"), hooks[1].header("idempotency-key"));
    });
    let history = eventually(&server, "/api/v1/alerts/history?rule=high-cpu", Duration::from_secs(5), |h| {
        h["transitions"].as_array().is_some_and(|t| t.len() == 3)
    })
    .await;
    let steps: Vec<(String, String)> = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|t| (t["from"].as_str().unwrap().into(), t["to"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        steps,
        [("OK".into(), "FIRING".into()), ("FIRING".into(), "RESOLVED".into()), ("RESOLVED".into(), "OK".into())]
    );
    let (_, alerts) = get(&server, &t, "/api/v1/alerts").await;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "web-2 is not matched: {alerts}");
    assert_eq!(alerts["alerts"][0]["state"], "OK");
    assert!(alerts["alerts"][0].get("id").is_none(), "no global row id in a payload: {alerts}");

    let deliveries = eventually(&server, "/api/v1/channels/ops-webhook/deliveries", Duration::from_secs(5), |d| {
        d["deliveries"].as_array().is_some_and(|d| d.len() == 2 && d.iter().all(|x| x["status"] == "delivered"))
    })
    .await;
    assert_eq!(deliveries["deliveries"][0]["attemptLog"][0]["statusCode"], 200);
    for d in deliveries["deliveries"].as_array().unwrap() {
        assert!(d.get("id").is_none(), "no global row id in a payload: {d}");
        assert!(d["idempotencyKey"].as_str().unwrap().starts_with("md-"), "the opaque key identifies it: {d}");
    }
    assert_eq!(receiver.count(), 2, "nothing else was sent");
}

#[tokio::test]
async fn a_test_notification_goes_out_and_shows_in_the_delivery_log() {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    post(&server, &t, "/api/v1/channels", json!({"name": "hook", "webhook": {"url": receiver.url()}})).await;
    let (status, result) = post(&server, &t, "/api/v1/channels/hook/test", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    receiver.wait_for(1, Duration::from_secs(15)).await;
    receiver.with_hooks(|h| {
        assert_eq!(h[0].json()["state"], "TEST");
        assert_eq!(h[0].header("x-microdash-signature"), "", "no secret, no signature");
    });
    let (_, log) = get(&server, &t, "/api/v1/channels/hook/deliveries").await;
    assert_eq!(log["deliveries"][0]["state"], "TEST");
    assert_eq!(log["deliveries"][0]["status"], "delivered");
    let (status, _) = post(&server, &t, "/api/v1/channels/nope/test", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_email_arrives_over_smtp_with_auth_a_text_and_an_html_body() {
    let smtp = Smtp::start(Some(("alerts", "pa55word")));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    let channel = json!({"name": "ops-mail", "email": {"to": ["ops@example.com", "oncall@example.com"], "from": "microdash@example.com",
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "username": "alerts", "password": "pa55word"}}});
    let (status, created) = post(&server, &t, "/api/v1/channels", channel).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["email"]["smtp"]["password"], "<set>");
    post(&server, &t, "/api/v1/rules", rule("high-cpu", "ops-mail")).await;
    sample(&server, "cpu.usage", 97.0, "web-1").await;

    let messages = smtp.wait_for(1, Duration::from_secs(10)).await;
    let mail = &messages[0];
    assert!(mail.contains("X-Authenticated-As: alerts"), "{mail}");
    assert!(mail.contains("X-Envelope-To: ops@example.com, oncall@example.com"), "{mail}");
    assert!(mail.contains("Subject: [FIRING] high-cpu (critical) host=web-1, team=a"), "{mail}");
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(mail.contains("text/plain") && mail.contains("text/html"), "{mail}");
    assert!(mail.contains("CPU 97% on web-1"), "the rendered summary is in the body: {mail}");
    assert!(mail.contains("Message-ID: <md-"), "{mail}");

    // Wrong credentials: the attempt fails, and the failure is visible.
    let bad = json!({"email": {"to": ["ops@example.com"], "from": "microdash@example.com",
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "username": "alerts", "password": "wrong"}}});
    let (status, _) = send(&server, &t, reqwest::Method::PUT, "/api/v1/channels/ops-mail", Some(bad)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, result) = post(&server, &t, "/api/v1/channels/ops-mail/test", json!({})).await;
    assert_eq!(result["ok"], false, "{result}");
    assert!(result["attempt"]["error"].as_str().unwrap().contains("SMTP"), "{result}");
}

#[tokio::test]
async fn a_restart_between_transition_and_delivery_delivers_exactly_once() {
    let port = free_port(); // the receiver is down at first
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &FAST_RETRIES);
    let t = server.token.clone();
    let url = format!("http://127.0.0.1:{port}/hook");
    post(&server, &t, "/api/v1/channels", json!({"name": "hook", "webhook": {"url": url, "hmacSecret": "k"}})).await;
    post(&server, &t, "/api/v1/rules", rule("high-cpu", "hook")).await;
    sample(&server, "cpu.usage", 95.0, "web-1").await;

    // The transition is committed and a delivery attempt failed (connection refused)…
    let log = eventually(&server, "/api/v1/channels/hook/deliveries", Duration::from_secs(5), |d| {
        d["deliveries"][0]["attempts"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(log["deliveries"][0]["status"], "pending");
    assert!(log["deliveries"][0]["lastError"].as_str().unwrap().contains("connect"), "{log}");
    let key = log["deliveries"][0]["idempotencyKey"].as_str().unwrap().to_string();

    // …then the server dies without a chance to do anything more.
    server.kill9();
    let receiver = Receiver::start(port, 200).await;
    server.restart();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    // Give a duplicate every chance to show up: the engine rebuilt its state, the outbox ran.
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.with_hooks(|hooks| {
        assert_eq!(hooks.len(), 1, "delivered exactly once");
        assert_eq!(hooks[0].header("idempotency-key"), key);
        assert_eq!(hooks[0].json()["state"], "FIRING");
    });
    let (_, log) = get(&server, &server.token, "/api/v1/channels/hook/deliveries").await;
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["deliveries"][0]["status"], "delivered");
    let (_, history) = get(&server, &server.token, "/api/v1/alerts/history").await;
    assert_eq!(
        history["transitions"].as_array().unwrap().len(),
        1,
        "the restart did not replay the transition: {history}"
    );
    let (_, alerts) = get(&server, &server.token, "/api/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["state"], "FIRING", "the state survived the restart");

    // Still firing after the restart: a further breaching sample does not notify again.
    sample(&server, "cpu.usage", 96.0, "web-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn a_dead_webhook_is_retried_with_backoff_and_its_failure_is_visible() {
    let receiver = Receiver::start(0, 503).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("MICRODASH_NOTIFY_BACKOFF", "100ms"),
            ("MICRODASH_NOTIFY_MAX_BACKOFF", "400ms"),
            ("MICRODASH_NOTIFY_MAX_ATTEMPTS", "4"),
        ],
    );
    let t = server.token.clone();
    post(&server, &t, "/api/v1/channels", json!({"name": "dead", "webhook": {"url": receiver.url()}})).await;
    post(&server, &t, "/api/v1/rules", rule("high-cpu", "dead")).await;
    sample(&server, "cpu.usage", 95.0, "web-1").await;

    let log = eventually(&server, "/api/v1/channels/dead/deliveries", Duration::from_secs(10), |d| {
        d["deliveries"][0]["status"] == "failed"
    })
    .await;
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["attempts"], 4);
    assert!(delivery["lastError"].as_str().unwrap().starts_with("HTTP 503"), "{delivery}");
    let attempts = delivery["attemptLog"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| a["ok"] == false && a["statusCode"] == 503), "{attempts:?}");
    let gaps: Vec<i64> =
        attempts.windows(2).map(|w| w[1]["at"].as_i64().unwrap() - w[0]["at"].as_i64().unwrap()).collect();
    assert!(gaps[0] >= 90 && gaps[1] >= 190 && gaps[2] >= 390, "backoff doubles: {gaps:?}");
    receiver.with_hooks(|hooks| {
        assert_eq!(hooks.len(), 4);
        let key = hooks[0].header("idempotency-key");
        assert!(hooks.iter().all(|h| h.header("idempotency-key") == key), "one key for every attempt");
    });
    let (_, channel) = get(&server, &t, "/api/v1/channels/dead").await;
    assert_eq!(channel["lastDelivery"]["status"], "failed", "{channel}");

    // A 4xx is not retried: the receiver refused this request for good.
    receiver.answer(400);
    sample(&server, "cpu.usage", 10.0, "web-1").await; // RESOLVED notification
    let log = eventually(&server, "/api/v1/channels/dead/deliveries", Duration::from_secs(5), |d| {
        d["deliveries"][0]["state"] == "RESOLVED" && d["deliveries"][0]["status"] == "failed"
    })
    .await;
    assert_eq!(log["deliveries"][0]["attempts"], 1);
}

#[tokio::test]
async fn for_and_no_data_advance_on_the_ticker_without_new_samples() {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    post(&server, &t, "/api/v1/channels", json!({"name": "hook", "webhook": {"url": receiver.url()}})).await;
    let mut r = rule("slow", "hook");
    r["for"] = json!("1s");
    r["noData"] = json!({"state": "NODATA", "after": "3s"});
    r["condition"] = json!({"aggregation": "avg", "window": "10s", "op": ">", "threshold": 90});
    assert_eq!(post(&server, &t, "/api/v1/rules", r).await.0, StatusCode::CREATED);
    sample(&server, "cpu.usage", 95.0, "web-1").await;
    // No further samples: the ticker fires it once `for` elapsed, then declares no data.
    receiver.wait_for(1, Duration::from_secs(15)).await;
    receiver.with_hooks(|h| assert_eq!(h[0].json()["state"], "FIRING"));
    let (_, history) = get(&server, &t, "/api/v1/alerts/history").await;
    let steps = history["transitions"].as_array().unwrap();
    assert_eq!((steps[1]["from"].as_str(), steps[1]["to"].as_str()), (Some("OK"), Some("PENDING")), "{history}");
    assert_eq!((steps[0]["from"].as_str(), steps[0]["to"].as_str()), (Some("PENDING"), Some("FIRING")));
    let held = steps[0]["at"].as_i64().unwrap() - steps[1]["at"].as_i64().unwrap();
    assert!(held >= 1000, "fired {held} ms after pending, before `for` (1s) elapsed");
    receiver.wait_for(2, Duration::from_secs(15)).await;
    receiver.with_hooks(|h| {
        let p = h[1].json();
        assert_eq!(p["state"], "NODATA");
        assert_eq!(p["startsAt"], h[0].json()["startsAt"], "still the same problem");
    });
    // Data comes back and still breaches.
    sample(&server, "cpu.usage", 99.0, "web-1").await;
    let history = eventually(&server, "/api/v1/alerts/history", Duration::from_secs(3), |h| {
        h["transitions"][0]["from"] == "NODATA"
    })
    .await;
    assert_eq!(history["transitions"][0]["to"], "PENDING", "back from NODATA, `for` starts over: {history}");
}

#[tokio::test]
async fn rules_and_channels_validate_hide_secrets_and_stay_within_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let a = server.token.clone();
    let (_, created) = post(&server, ADMIN_TOKEN, "/api/v1/tenants", json!({"name": "team-b"})).await;
    let b = created["token"].as_str().unwrap().to_string();

    // Validation names the field, several at once.
    let mut bad = rule("bad", "hook");
    bad["condition"]["aggregation"] = json!("avg");
    bad["for"] = json!("2 minutes");
    let (status, problem) = post(&server, &a, "/api/v1/rules", bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["field"], "condition.window", "{problem}");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["condition.window", "for"]);
    let mut typo = rule("typo", "hook");
    typo["condition"]["op"] = json!("=>");
    let (status, problem) = post(&server, &a, "/api/v1/rules", typo).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("condition.op")));
    let (status, problem) = post(&server, &a, "/api/v1/rules", json!({"metric": "m"})).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")));
    let mut bad_name = rule("Bad_Name", "hook");
    bad_name["name"] = json!("Bad_Name");
    assert_eq!(post(&server, &a, "/api/v1/rules", bad_name).await.1["field"], "name");

    // CRUD.
    assert_eq!(post(&server, &a, "/api/v1/rules", rule("high-cpu", "hook")).await.0, StatusCode::CREATED);
    assert_eq!(post(&server, &a, "/api/v1/rules", rule("high-cpu", "hook")).await.0, StatusCode::CONFLICT);
    let mut changed = rule("high-cpu", "hook");
    changed["condition"]["threshold"] = json!(80);
    let (status, view) = send(&server, &a, reqwest::Method::PUT, "/api/v1/rules/high-cpu", Some(changed)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["condition"]["threshold"], 80.0);
    assert_eq!(view["status"]["state"], "OK");
    let (status, _) =
        send(&server, &a, reqwest::Method::PUT, "/api/v1/rules/other", Some(rule("high-cpu", "hook"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the body's name must match the path");
    let (_, list) = get(&server, &a, "/api/v1/rules").await;
    assert_eq!(list["rules"].as_array().unwrap().len(), 1);

    // Secrets never come back; `<set>` keeps the stored one.
    let channel = json!({"name": "hook", "webhook": {"url": "http://127.0.0.1:9/x", "hmacSecret": "top-secret"}});
    let (status, view) = post(&server, &a, "/api/v1/channels", channel).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    let (_, view) = get(&server, &a, "/api/v1/channels/hook").await;
    assert_eq!(view["webhook"]["hmacSecret"], "<set>");
    assert!(!view.to_string().contains("top-secret"));
    let (_, list) = get(&server, &a, "/api/v1/channels").await;
    assert!(!list.to_string().contains("top-secret"));
    let mut edited = view.clone();
    edited["repeatInterval"] = json!("1h");
    let (status, _) = send(&server, &a, reqwest::Method::PUT, "/api/v1/channels/hook", Some(edited)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, missing) = post(
        &server,
        &a,
        "/api/v1/channels",
        json!({"name": "new", "webhook": {"url": "http://x/", "hmacSecret": "<set>"}}),
    )
    .await;
    assert_eq!(missing["field"], "webhook.hmacSecret", "{missing}");
    let (_, both) = post(&server, &a, "/api/v1/channels", json!({"name": "x", "webhook": {"url": "ftp://x"}})).await;
    assert_eq!(both["field"], "webhook.url");

    // Another tenant sees none of it and cannot touch it.
    assert_eq!(get(&server, &b, "/api/v1/rules/high-cpu").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&server, &b, "/api/v1/channels/hook").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&server, &b, "/api/v1/channels/hook/deliveries").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&server, &b, reqwest::Method::DELETE, "/api/v1/rules/high-cpu", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&server, &b, "/api/v1/rules").await.1, json!({"rules": []}));
    assert_eq!(get(&server, &b, "/api/v1/alerts").await.1, json!({"alerts": []}));
    let (status, problem) = post(&server, &b, "/api/v1/rules", {
        let mut r = rule("steal", "hook");
        r["tenant"] = json!("default");
        r
    })
    .await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("tenant")));

    // Scopes: read may look, only admin may change.
    let (ok, read_only, _) = cli(dir.path(), &["token", "create", "--tenant", "default", "--scope", "read"]);
    assert!(ok);
    let read_only = read_only.trim();
    assert_eq!(get(&server, read_only, "/api/v1/rules").await.0, StatusCode::OK);
    assert_eq!(post(&server, read_only, "/api/v1/rules", rule("x", "hook")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(post(&server, read_only, "/api/v1/channels/hook/test", json!({})).await.0, StatusCode::FORBIDDEN);

    assert_eq!(
        send(&server, &a, reqwest::Method::DELETE, "/api/v1/rules/high-cpu", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&server, &a, "/api/v1/rules/high-cpu").await.0, StatusCode::NOT_FOUND);

    // The OpenAPI document lists the alerting endpoints.
    let (_, doc) = get(&server, &a, "/openapi.json").await;
    for path in [
        "/api/v1/rules",
        "/api/v1/rules/{name}",
        "/api/v1/channels/{name}/test",
        "/api/v1/channels/{name}/deliveries",
        "/api/v1/alerts",
        "/api/v1/alerts/history",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }
}

#[tokio::test]
async fn microdash_apply_feeds_a_running_server() {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let yaml = format!(
        r#"apiVersion: microdash.io/v1alpha1
kind: NotificationChannel
metadata: {{name: ops-webhook}}
spec:
  tenant: default
  webhook: {{url: "{}", hmacSecret: "from-yaml"}}
---
apiVersion: microdash.io/v1alpha1
kind: AlertRule
metadata: {{name: high-cpu}}
spec:
  tenant: default
  metric: cpu.usage
  condition: {{aggregation: max, window: 1m, op: ">", threshold: 90}}
  channels: [ops-webhook]
"#,
        receiver.url()
    );
    let file = dir.path().join("alerts.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (ok, out, err) = cli(dir.path(), &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "notificationchannel/ops-webhook (tenant default) created\nalertrule/high-cpu (tenant default) created\n"
    );
    // The running server notices within its reload interval.
    eventually(&server, "/api/v1/rules", Duration::from_secs(10), |r| {
        r["rules"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    sample(&server, "cpu.usage", 91.0, "db-1").await;
    receiver.wait_for(1, Duration::from_secs(15)).await;
    receiver.with_hooks(|h| assert_eq!(h[0].header("x-microdash-signature"), hmac_hex("from-yaml", &h[0].body)));

    // A bad file changes nothing and says what is wrong.
    std::fs::write(
        &file,
        "apiVersion: microdash.io/v1alpha1\nkind: AlertRule\nmetadata: {name: x}\nspec: {tenant: default, metric: m}\n",
    )
    .unwrap();
    let (ok, _, err) = cli(dir.path(), &["apply", "-f", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("AlertRule x: spec.body") || err.contains("condition"), "{err}");
}

#[tokio::test]
async fn a_firing_alert_is_repeated_after_the_channels_repeat_interval() {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    let channel = json!({"name": "hook", "webhook": {"url": receiver.url()}, "repeatInterval": "1s"});
    post(&server, &t, "/api/v1/channels", channel).await;
    post(&server, &t, "/api/v1/rules", rule("high-cpu", "hook")).await;
    sample(&server, "cpu.usage", 95.0, "web-1").await;
    // Generous: a cold CI machine running every test at once once took over 5 s here.
    receiver.wait_for(3, Duration::from_secs(20)).await;
    receiver.with_hooks(|hooks| {
        let first = hooks[0].json();
        assert_eq!((first["state"].as_str(), first["repeat"].as_bool()), (Some("FIRING"), Some(false)));
        for hook in &hooks[1..3] {
            let p = hook.json();
            assert_eq!((p["state"].as_str(), p["repeat"].as_bool()), (Some("FIRING"), Some(true)), "{p}");
            assert_eq!(p["startsAt"], first["startsAt"]);
            let gap = hook.at - hooks[0].at;
            assert!(gap >= Duration::from_millis(900), "repeated too early: {gap:?}");
        }
        let keys: std::collections::HashSet<&str> = hooks.iter().map(|h| h.header("idempotency-key")).collect();
        assert_eq!(keys.len(), hooks.len(), "each reminder is its own notification");
    });
    // Resolved: reminders stop.
    sample(&server, "cpu.usage", 5.0, "web-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = receiver.count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.count(), settled, "no reminders once resolved");
    receiver.with_hooks(|hooks| assert_eq!(hooks.last().unwrap().json()["state"], "RESOLVED"));
}

/// `microdash_alert_engine_active` of one process.
async fn engine_active(server: &Server) -> bool {
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().any(|l| l.trim() == "microdash_alert_engine_active 1")
}

#[tokio::test]
async fn with_redis_one_worker_evaluates_and_another_takes_over_when_it_is_killed() {
    // PostgreSQL + Redis: an api process and two workers. Samples are split between the
    // workers' writers; every worker hears every commit over Redis pub/sub; exactly one worker
    // (the lease holder) evaluates. Killing it hands evaluation to the other within the lease.
    let receiver = Receiver::start(0, 200).await;
    let db = common::fresh_database_url("postgres").await;
    // Database 3 of the test Redis belongs to this test.
    let (redis_url, _) = common::fresh_redis(3).await;
    let env = |role: &'static str| {
        vec![
            ("MICRODASH_DATABASE_URL", db.clone()),
            ("MICRODASH_REDIS_URL", redis_url.clone()),
            ("MICRODASH_ROLE", role.to_string()),
            ("MICRODASH_ALERT_LEASE_TTL", "3s".to_string()),
        ]
    };
    let pairs = |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let start = |dir: &Path, role: &'static str| {
        let e = pairs(&env(role));
        let refs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::start_with(dir, &refs)
    };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let api = start(dirs[0].path(), "api");
    let mut workers = [start(dirs[1].path(), "worker"), start(dirs[2].path(), "worker")];
    let t = api.token.clone();
    post(&api, &t, "/api/v1/channels", json!({"name": "hook", "webhook": {"url": receiver.url()}})).await;
    post(&api, &t, "/api/v1/rules", rule("high-cpu", "hook")).await;

    // Exactly one worker evaluates.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let active = [engine_active(&workers[0]).await, engine_active(&workers[1]).await];
        match active {
            [true, false] => break 0,
            [false, true] => break 1,
            [true, true] => panic!("two workers evaluate at once"),
            _ => assert!(Instant::now() < deadline, "no worker took the alert engine lease"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Breaching samples until the rule (created through the api process; workers notice rule
    // changes within a couple of seconds) fires; several go to each worker's writer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.count() == 0 {
        assert!(Instant::now() < deadline, "no FIRING notification");
        sample(&api, "cpu.usage", 95.0, "web-1").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..10 {
        sample(&api, "cpu.usage", 96.0, "web-1").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 1, "one FIRING notification, whichever worker wrote the samples");

    // The evaluating worker dies; the other takes over from the database and resolves.
    workers[leader].kill9();
    let survivor = &workers[1 - leader];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine_active(survivor).await {
        assert!(Instant::now() < deadline, "the surviving worker did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.count() < 2 {
        assert!(Instant::now() < deadline, "no RESOLVED notification after the takeover");
        sample(&api, "cpu.usage", 5.0, "web-1").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.with_hooks(|hooks| {
        let states: Vec<String> = hooks.iter().map(|h| h.json()["state"].as_str().unwrap().to_string()).collect();
        assert_eq!(states, ["FIRING", "RESOLVED"], "the new evaluator continued from the stored FIRING state");
        assert_ne!(hooks[0].header("idempotency-key"), hooks[1].header("idempotency-key"));
    });
    let (_, history) = get(&api, &t, "/api/v1/alerts/history").await;
    let tos: Vec<&str> = history["transitions"].as_array().unwrap().iter().map(|x| x["to"].as_str().unwrap()).collect();
    assert!(tos.contains(&"FIRING") && tos.contains(&"RESOLVED"), "{history}");
}

#[tokio::test]
async fn email_goes_out_over_starttls_and_implicit_tls_to_a_server_of_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let ca = certs.path().join("ca.crt");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("MICRODASH_NOTIFY_CA_FILE", ca.to_str().unwrap())]);
    let t = server.token.clone();
    for mode in ["starttls", "tls"] {
        let smtp = Smtp::start_tls(Some(("alerts", "pa55word")), Some((mode, certs.path())));
        let channel = json!({"name": format!("mail-{mode}"), "email": {"to": ["ops@example.com"], "from": "microdash@example.com",
            "smtp": {"host": "localhost", "port": smtp.port, "tls": mode, "username": "alerts", "password": "pa55word"}}});
        assert_eq!(post(&server, &t, "/api/v1/channels", channel).await.0, StatusCode::CREATED);
        let (status, result) = post(&server, &t, &format!("/api/v1/channels/mail-{mode}/test"), json!({})).await;
        assert_eq!((status, result["ok"].as_bool()), (StatusCode::OK, Some(true)), "{mode}: {result}");
        let mail = smtp.wait_for(1, Duration::from_secs(15)).await.remove(0);
        assert!(mail.contains("X-Authenticated-As: alerts"), "{mode}: authenticated over TLS: {mail}");
    }
    // Without the private CA, the certificate is not trusted and the attempt says why.
    let other_dir = tempfile::tempdir().unwrap();
    let untrusting = Server::start(other_dir.path());
    let smtp = Smtp::start_tls(None, Some(("tls", certs.path())));
    let channel = json!({"name": "mail", "email": {"to": ["ops@example.com"], "from": "microdash@example.com",
        "smtp": {"host": "localhost", "port": smtp.port, "tls": "tls"}}});
    assert_eq!(post(&untrusting, &untrusting.token, "/api/v1/channels", channel).await.0, StatusCode::CREATED);
    let (_, result) = post(&untrusting, &untrusting.token, "/api/v1/channels/mail/test", json!({})).await;
    assert_eq!(result["ok"], false, "{result}");
    let error = result["attempt"]["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate") || error.contains("tls"), "the failure names TLS: {result}");
    assert!(smtp.messages().is_empty());
}

#[test]
fn a_notify_ca_file_that_is_no_certificate_stops_the_server_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let out =
        Command::new(common::bin()).args(["serve", "--check-config", "--notify-ca-file"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notify_ca_file"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Outbound requests (issue 15 item 4): no SSRF through webhook channels.

/// An HTTP server on `ip` that answers every request with `status`, `headers` and `body`;
/// counts what it got.
async fn canned(
    ip: &str,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let headers = headers.clone();
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = axum::response::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(axum::body::Body::from(body)).unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

/// The findings: a tenant token with `admin` scope pointed a channel at 127.0.0.1, 0.0.0.0,
/// decimal and hex loopback forms, 169.254.169.254 or a redirect to them, and `POST …/test`
/// sent the request and showed the answer's body. Now every local address is refused before a
/// byte is sent (literals in any form, names after resolution, every redirect hop), unless
/// `MICRODASH_OUTBOUND_ALLOW` opens the range; and no answer body is shown back.
#[tokio::test]
async fn webhooks_never_reach_local_addresses_nor_echo_bodies() {
    use std::sync::atomic::Ordering;
    // Loopback is a trap here; only 127.0.0.2 (the "public" receivers of this test) is allowed.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("MICRODASH_OUTBOUND_ALLOW", "127.0.0.2/32")]);
    let t = server.token.clone();
    let (trap, trap_hits) = canned("127.0.0.1", 200, vec![], "internal secret: hunter2").await;
    let port = trap.rsplit(':').next().unwrap().to_string();
    let (redirector, _) = canned("127.0.0.2", 302, vec![("location", format!("{trap}/hook"))], "").await;
    let (leaky, leaky_hits) = canned("127.0.0.2", 500, vec![], "stack trace: db password hunter2").await;

    let cases = [
        (format!("{trap}/hook"), "loopback"),
        (format!("http://2130706433:{port}/hook"), "loopback"),
        (format!("http://0x7f000001:{port}/hook"), "loopback"),
        (format!("http://0x7f.1:{port}/hook"), "loopback"),
        (format!("http://localhost:{port}/hook"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/hook"), "loopback"),
        (format!("http://0.0.0.0:{port}/hook"), "this network"),
        ("http://169.254.169.254/latest/meta-data/".to_string(), "link-local"),
        ("http://10.0.0.1/hook".to_string(), "private"),
        (format!("{redirector}/hook"), "redirect refused"),
    ];
    for (i, (url, why)) in cases.iter().enumerate() {
        let name = format!("ssrf-{i}");
        let (status, body) =
            post(&server, &t, "/api/v1/channels", json!({"name": name, "webhook": {"url": url}})).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
        let (status, result) = post(&server, &t, &format!("/api/v1/channels/{name}/test"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{url}: {result}");
        assert_eq!(result["ok"], false, "{url}: {result}");
        let error = result["attempt"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{url}: expected {why:?} in {result}");
        assert!(error.contains("MICRODASH_OUTBOUND_ALLOW"), "{url}: the error says how to allow it: {error}");
    }
    assert_eq!(trap_hits.load(Ordering::SeqCst), 0, "no request reached the loopback service");

    // An allowed receiver's failure shows its status, never its body (nor in the delivery log).
    post(&server, &t, "/api/v1/channels", json!({"name": "leaky", "webhook": {"url": format!("{leaky}/hook")}})).await;
    let (_, result) = post(&server, &t, "/api/v1/channels/leaky/test", json!({})).await;
    assert_eq!(leaky_hits.load(Ordering::SeqCst), 1, "the allowed range is reached");
    assert_eq!(result["attempt"]["statusCode"], 500, "{result}");
    assert_eq!(result["attempt"]["error"], "HTTP 500 Internal Server Error", "{result}");
    let (_, log) = get(&server, &t, "/api/v1/channels/leaky/deliveries").await;
    assert!(!log.to_string().contains("hunter2"), "{log}");

    // A bad allow list stops the start and names its key.
    let out = Command::new(common::bin())
        .args(["serve", "--check-config", "--outbound-allow", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("outbound_allow") && stderr.contains("10.0.0.0/33"), "{stderr}");
}
