//! Grouped notifications and inhibition (issue 23) against the real binary on each database and
//! a real webhook receiver.
//! - A channel with `groupBy` sends one notification per group listing each of its alerts once:
//!   after `groupWait` for a new group, then at most every `groupInterval` when alerts join or
//!   resolve; nothing when nothing changed, and nothing again after a kill -9 and restart.
//! - A rule with `inhibits` mutes the matching alerts of other rules that share its `equal`
//!   labels while it fires; when it resolves, the muted alert still firing is notified once.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::webhook::Receiver;
use common::{Server, send};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn sample(server: &Server, metric: &str, value: f64, host: &str) {
    let body = json!({"metric": metric, "value": value, "labels": {"host": host}});
    let (status, answer) = send(server, &server.token, Method::POST, "/api/v1/metrics", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

async fn until(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples of several hosts in one request (one commit: no evaluation tick falls between them).
async fn samples(server: &Server, metric: &str, value: f64, hosts: &[&str]) {
    let samples: Vec<Value> =
        hosts.iter().map(|h| json!({"metric": metric, "value": value, "labels": {"host": h}})).collect();
    let body = json!({"samples": samples});
    let (status, answer) = send(server, &server.token, Method::POST, "/api/v1/metrics/bulk", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

fn hooks(receiver: &Receiver) -> Vec<Value> {
    receiver.with_hooks(|hooks| hooks.iter().map(|h| h.json()).collect())
}

/// The hosts of a grouped notification's alerts in `state`, asserting each is listed once.
fn hosts(hook: &Value, state: &str) -> BTreeSet<String> {
    let alerts = hook["alerts"].as_array().unwrap_or_else(|| panic!("a grouped notification: {hook}"));
    let listed: Vec<String> = alerts
        .iter()
        .filter(|a| a["state"] == state)
        .map(|a| a["labels"]["host"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "each alert once: {hook}");
    unique
}

fn set(hosts: &[&str]) -> BTreeSet<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

async fn a_group_lists_each_alert_once_as_alerts_join_and_resolve(kind: &str) {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::on_database(kind, dir.path(), &[]).await;
    let t = server.token.clone();
    let channel = json!({"name": "team", "webhook": {"url": receiver.url()}, "groupBy": ["alertname"],
                         "groupWait": "2s", "groupInterval": "3s", "repeatInterval": "0s"});
    let (status, answer) = send(&server, &t, Method::POST, "/api/v1/channels", Some(channel)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // A mistake names its field.
    let bad = json!({"name": "bad", "webhook": {"url": receiver.url()}, "groupWait": "2s"});
    let (status, problem) = send(&server, &t, Method::POST, "/api/v1/channels", Some(bad)).await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("groupWait")), "{problem}");
    let rule = json!({"name": "high-cpu", "metric": "cpu.usage", "for": "0s", "channels": ["team"],
                      "severity": "warning", "annotations": {"summary": "CPU {{ $value }} on {{ $labels.host }}"},
                      "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
    assert_eq!(send(&server, &t, Method::POST, "/api/v1/rules", Some(rule)).await.0, StatusCode::CREATED);

    // Three hosts breach within the group's wait: one notification lists the three.
    samples(&server, "cpu.usage", 95.0, &["web-1", "web-2", "web-3"]).await;
    until("the group's first notification", Duration::from_secs(15), || !hooks(&receiver).is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = hooks(&receiver);
    assert_eq!(first.len(), 1, "one notification for the group: {first:?}");
    let n = &first[0];
    assert_eq!(n["state"], "FIRING");
    assert_eq!(n["groupLabels"], json!({"alertname": "high-cpu"}));
    assert_eq!(n["rule"], "high-cpu");
    assert_eq!(hosts(n, "FIRING"), set(&["web-1", "web-2", "web-3"]));
    assert_eq!(n["alerts"][0]["annotations"]["summary"].as_str().map(|s| s.starts_with("CPU 95 on web-")), Some(true));

    // Nothing changes: nothing is sent, not even after a kill -9 and restart (the group's state
    // was written with its notification).
    server.restart();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(hooks(&receiver).len(), 1, "nothing new to say: {:?}", hooks(&receiver));

    // A fourth host joins: the next notification lists the four firing, each once.
    sample(&server, "cpu.usage", 97.0, "web-4").await;
    until("the notification about the new alert", Duration::from_secs(15), || hooks(&receiver).len() == 2).await;
    let second = &hooks(&receiver)[1];
    assert_eq!(hosts(second, "FIRING"), set(&["web-1", "web-2", "web-3", "web-4"]));
    assert!(hosts(second, "RESOLVED").is_empty());

    // Two resolve: listed as resolved once, the other two still firing.
    samples(&server, "cpu.usage", 10.0, &["web-1", "web-2"]).await;
    until("the notification about the resolved alerts", Duration::from_secs(15), || hooks(&receiver).len() == 3).await;
    let third = &hooks(&receiver)[2];
    assert_eq!(third["state"], "FIRING");
    assert_eq!(hosts(third, "FIRING"), set(&["web-3", "web-4"]));
    assert_eq!(hosts(third, "RESOLVED"), set(&["web-1", "web-2"]));

    // All resolved: one RESOLVED notification, then the group is over.
    samples(&server, "cpu.usage", 10.0, &["web-3", "web-4"]).await;
    until("the group's RESOLVED", Duration::from_secs(15), || hooks(&receiver).len() == 4).await;
    let last = &hooks(&receiver)[3];
    assert_eq!(last["state"], "RESOLVED");
    assert!(hosts(last, "FIRING").is_empty());
    assert_eq!(hosts(last, "RESOLVED"), set(&["web-3", "web-4"]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = hooks(&receiver);
    assert_eq!(all.len(), 4, "nothing after the group ended: {all:?}");
    let keys: BTreeSet<&str> = all.iter().map(|h| h["idempotencyKey"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 4, "each notification has its own key");

    // The outbox shows them like any other notification, delivered once each.
    let (_, listed) = send(&server, &t, Method::GET, "/api/v1/channels/team/deliveries", None).await;
    let delivered = listed["deliveries"].as_array().map(|n| n.iter().filter(|n| n["status"] == "delivered").count());
    assert_eq!(delivered, Some(4), "{listed}");
}

async fn an_inhibiting_alert_mutes_and_its_resolution_unmutes(kind: &str) {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_database(kind, dir.path(), &[]).await;
    let t = server.token.clone();
    let channel = json!({"name": "ops", "webhook": {"url": receiver.url()}, "sendResolved": true});
    assert_eq!(send(&server, &t, Method::POST, "/api/v1/channels", Some(channel)).await.0, StatusCode::CREATED);
    let host_down = json!({"name": "host-down", "metric": "up", "for": "0s", "channels": ["ops"],
                           "severity": "critical",
                           "condition": {"aggregation": "last", "op": "<", "threshold": 1},
                           "inhibits": {"match": {"severity": "warning"}, "equal": ["host"]}});
    let high_cpu = json!({"name": "high-cpu", "metric": "cpu.usage", "for": "0s", "channels": ["ops"],
                          "severity": "warning", "labels": {"severity": "warning"},
                          "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
    for rule in [host_down, high_cpu] {
        let (status, answer) = send(&server, &t, Method::POST, "/api/v1/rules", Some(rule)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let bad = json!({"name": "bad", "metric": "up", "condition": {"aggregation": "last", "op": "<", "threshold": 1},
                     "inhibits": {"equal": ["not a label"]}});
    let (status, problem) = send(&server, &t, Method::POST, "/api/v1/rules", Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "inhibits.equal[0]", "{problem}");

    let notified = |rule: &str, state: &str, host: &str| {
        hooks(&receiver)
            .iter()
            .filter(|h| h["rule"] == rule && h["state"] == state && h["labels"]["host"] == host)
            .count()
    };
    for host in ["web-1", "web-2"] {
        sample(&server, "up", 1.0, host).await;
        sample(&server, "cpu.usage", 10.0, host).await;
    }
    sample(&server, "up", 0.0, "web-1").await;
    until("web-1 is down", Duration::from_secs(15), || notified("host-down", "FIRING", "web-1") == 1).await;

    // Both hosts' CPU breaches: web-2's is sent, web-1's is muted by its host-down.
    sample(&server, "cpu.usage", 99.0, "web-1").await;
    sample(&server, "cpu.usage", 99.0, "web-2").await;
    let cpu2 = || notified("high-cpu", "FIRING", "web-2");
    let cpu1 = || notified("high-cpu", "FIRING", "web-1");
    until("web-2's high CPU", Duration::from_secs(15), || cpu2() == 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(cpu1(), 0, "muted while web-1 is down");
    let (_, alerts) = send(&server, &t, Method::GET, "/api/v1/alerts", None).await;
    let of = |rule: &str, host: &str| {
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule && a["labels"]["host"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("{rule} {host} in {alerts}"))
    };
    assert_eq!(of("high-cpu", "web-1")["state"], "FIRING");
    assert_eq!(of("high-cpu", "web-1")["inhibitedBy"], "host-down");
    assert!(of("high-cpu", "web-2").get("inhibitedBy").is_none(), "{alerts}");
    assert!(of("host-down", "web-1").get("inhibitedBy").is_none(), "a rule never mutes itself: {alerts}");

    // web-1 is back: host-down resolves, and web-1's high CPU, still firing, is sent once.
    sample(&server, "up", 1.0, "web-1").await;
    until("web-1 is back", Duration::from_secs(15), || notified("host-down", "RESOLVED", "web-1") == 1).await;
    until("web-1's high CPU after the inhibition ended", Duration::from_secs(15), || cpu1() == 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((cpu1(), cpu2()), (1, 1), "each sent once");
    let (_, alerts) = send(&server, &t, Method::GET, "/api/v1/alerts", None).await;
    assert!(alerts["alerts"].as_array().unwrap().iter().all(|a| a.get("inhibitedBy").is_none()), "{alerts}");
}

#[tokio::test]
async fn a_group_lists_each_alert_once_as_alerts_join_and_resolve_on_sqlite() {
    a_group_lists_each_alert_once_as_alerts_join_and_resolve("sqlite").await;
}

#[tokio::test]
async fn a_group_lists_each_alert_once_as_alerts_join_and_resolve_on_postgres() {
    a_group_lists_each_alert_once_as_alerts_join_and_resolve("postgres").await;
}

#[tokio::test]
async fn a_group_lists_each_alert_once_as_alerts_join_and_resolve_on_mariadb() {
    a_group_lists_each_alert_once_as_alerts_join_and_resolve("mysql").await;
}

#[tokio::test]
async fn an_inhibiting_alert_mutes_and_its_resolution_unmutes_on_sqlite() {
    an_inhibiting_alert_mutes_and_its_resolution_unmutes("sqlite").await;
}

#[tokio::test]
async fn an_inhibiting_alert_mutes_and_its_resolution_unmutes_on_postgres() {
    an_inhibiting_alert_mutes_and_its_resolution_unmutes("postgres").await;
}

#[tokio::test]
async fn an_inhibiting_alert_mutes_and_its_resolution_unmutes_on_mariadb() {
    an_inhibiting_alert_mutes_and_its_resolution_unmutes("mysql").await;
}
