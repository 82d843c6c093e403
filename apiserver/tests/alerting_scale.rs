//! Alerting with many rules (issue 23), against the real binary on each database and a real
//! webhook receiver: a burst of ten thousand rule writes must not hold back the evaluation of
//! samples, and every rule of the burst is evaluated once it is written. How fast is for the
//! bench (`make bench ARGS='--only alerts'`); here only that it happens, within deadlines far
//! above any healthy figure (the engine before incremental loading missed them by minutes).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::webhook::Receiver;
use common::{Server, cli, send};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BURST: usize = 10_000;
/// Concurrent writers of the burst: about what `kubectl apply -f` of a folder or an operator
/// reconciling many objects does.
const WRITERS: usize = 8;

async fn sample(server: &Server, metric: &str, value: f64, host: &str) {
    let body = json!({"metric": metric, "value": value, "labels": {"host": host}});
    let (status, answer) = send(server, &server.token, reqwest::Method::POST, "/api/v1/metrics", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

fn fleet_rule(i: usize) -> Value {
    json!({
        "metric": "fleet.cpu",
        "match": {"host": format!("h{i}")},
        "condition": {"aggregation": "last", "op": ">", "threshold": 90},
        "for": "0s",
        "channels": ["ops"]
    })
}

/// Waits for a FIRING notification of `rule`; answers how long it took.
async fn notified(receiver: &Receiver, rule: &str, since: Instant, timeout: Duration) -> Duration {
    let deadline = since + timeout;
    loop {
        let at = receiver.with_hooks(|hooks| {
            hooks.iter().find(|h| h.json()["rule"] == rule && h.json()["state"] == "FIRING").map(|h| h.at)
        });
        if let Some(at) = at {
            return at.saturating_duration_since(since);
        }
        assert!(Instant::now() < deadline, "no FIRING notification of {rule} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn breach_during_a_burst(kind: &str) {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::on_database(kind, dir.path(), &[]).await);
    let channel = json!({"name": "ops", "webhook": {"url": receiver.url()}});
    assert_eq!(
        send(&server, &server.token, reqwest::Method::POST, "/api/v1/channels", Some(channel)).await.0,
        StatusCode::CREATED
    );
    let canary = json!({"name": "canary", "metric": "canary.temp",
                        "condition": {"aggregation": "last", "op": ">", "threshold": 50}, "for": "0s",
                        "channels": ["ops"]});
    assert_eq!(
        send(&server, &server.token, reqwest::Method::POST, "/api/v1/rules", Some(canary)).await.0,
        StatusCode::CREATED
    );
    sample(&server, "canary.temp", 20.0, "probe").await;

    // The burst: BURST rules written by WRITERS clients at once.
    let written = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (server, written) = (server.clone(), written.clone());
        writers.push(tokio::spawn(async move {
            for i in (w..BURST).step_by(WRITERS) {
                let path = format!("/api/v1/rules/fleet-{i}");
                let (status, body) =
                    send(&server, &server.token, reqwest::Method::PUT, &path, Some(fleet_rule(i))).await;
                assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
                written.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // A breach of the canary in the middle of the burst is notified while the burst goes on.
    while written.load(Ordering::Relaxed) < BURST / 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let breach = Instant::now();
    sample(&server, "canary.temp", 99.0, "probe").await;
    let took = notified(&receiver, "canary", breach, Duration::from_secs(20)).await;
    let during = written.load(Ordering::Relaxed);
    eprintln!("{kind}: canary notified {took:?} after its breach, {during} of {BURST} rules written by then");
    assert!(during < BURST, "the breach was notified while the burst still ran ({during} of {BURST} written)");
    for writer in writers {
        writer.await.unwrap();
    }

    // Every rule of the burst is evaluated: breaches of the first and the last one are notified.
    let breach = Instant::now();
    sample(&server, "fleet.cpu", 95.0, &format!("h{}", BURST - 1)).await;
    sample(&server, "fleet.cpu", 95.0, "h0").await;
    sample(&server, "fleet.cpu", 10.0, "h1").await;
    notified(&receiver, &format!("fleet-{}", BURST - 1), breach, Duration::from_secs(60)).await;
    notified(&receiver, "fleet-0", breach, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let firing: Vec<String> = receiver.with_hooks(|hooks| {
        hooks
            .iter()
            .filter(|h| h.json()["state"] == "FIRING")
            .map(|h| h.json()["rule"].as_str().unwrap().to_string())
            .collect()
    });
    let mut firing_sorted = firing.clone();
    firing_sorted.sort();
    assert_eq!(firing_sorted, ["canary", "fleet-0", &format!("fleet-{}", BURST - 1)], "each breach once, nothing else");

    // A deleted rule stops being evaluated.
    let (status, _) = send(&server, &server.token, reqwest::Method::DELETE, "/api/v1/rules/fleet-7", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&server, &server.token, reqwest::Method::DELETE, "/api/v1/rules/fleet-8", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    sample(&server, "fleet.cpu", 97.0, "h7").await;
    sample(&server, "fleet.cpu", 97.0, "h9").await;
    let breach = Instant::now();
    notified(&receiver, "fleet-9", breach, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.with_hooks(|hooks| {
        assert!(!hooks.iter().any(|h| h.json()["rule"] == "fleet-7"), "a deleted rule fired");
    });
}

#[tokio::test]
async fn a_breach_during_a_burst_of_rule_writes_is_notified_on_sqlite() {
    breach_during_a_burst("sqlite").await;
}

#[tokio::test]
async fn a_breach_during_a_burst_of_rule_writes_is_notified_on_postgres() {
    breach_during_a_burst("postgres").await;
}

#[tokio::test]
async fn a_breach_during_a_burst_of_rule_writes_is_notified_on_mariadb() {
    breach_during_a_burst("mysql").await;
}

/// `microdash apply -f` of ten thousand rules into a running server's database: the server finds
/// them by itself (no write went through its API), loads them with a progress log, and a breach
/// meanwhile is notified.
#[tokio::test]
async fn ten_thousand_rules_applied_from_a_file_are_loaded_and_evaluated() {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = json!({"name": "ops", "webhook": {"url": receiver.url()}});
    assert_eq!(
        send(&server, &server.token, reqwest::Method::POST, "/api/v1/channels", Some(channel)).await.0,
        StatusCode::CREATED
    );
    let mut yaml = String::new();
    for i in 0..BURST {
        yaml.push_str(&format!(
            "---\napiVersion: microdash.io/v1alpha1\nkind: AlertRule\nmetadata: {{name: applied-{i}}}\n\
             spec: {{tenant: default, metric: fleet.mem, match: {{host: h{i}}}, for: 0s, channels: [ops], \
             condition: {{aggregation: last, op: '>', threshold: 90}}}}\n"
        ));
    }
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (ok, out, err) = cli(dir.path(), &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), BURST, "one line per rule");

    // Breaches of the last rule of the file and of the first, until both are notified (the
    // server polls for changes made elsewhere every two seconds, then loads the rules).
    let started = Instant::now();
    let last = format!("applied-{}", BURST - 1);
    loop {
        sample(&server, "fleet.mem", 95.0, &format!("h{}", BURST - 1)).await;
        sample(&server, "fleet.mem", 96.0, "h0").await;
        let both = receiver.with_hooks(|hooks| {
            let fired = |rule: &str| hooks.iter().any(|h| h.json()["rule"] == rule && h.json()["state"] == "FIRING");
            fired(&last) && fired("applied-0")
        });
        if both {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the applied rules were not evaluated within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("applied rules evaluated {:?} after the apply", started.elapsed());
    let log = server.log();
    assert!(log.contains("Loading alert rules"), "a progress log while loading: {log}");
    assert!(log.contains("Alert rules loaded."), "and its end: {log}");
}
