//! Breach → webhook received: microdash next to Prometheus + Alertmanager (Debian packages,
//! their shipped example intervals: scrape and evaluation every 15 s, `group_wait` 30 s).
//!
//! One webhook receiver in this process timestamps arrivals. For the side-by-side run, each
//! breach flips a gauge on a tiny exporter (which Prometheus scrapes) and, at the same
//! instant, posts the same value to microdash; both alert on `> 0.5` with `for: 0`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::{KillOnDrop, Server, free_port};

#[derive(Clone, Default)]
pub(crate) struct Shared {
    /// breach id → when its notification arrived, per system.
    pub(crate) microdash: Arc<Mutex<HashMap<String, Instant>>>,
    /// rule → when its first FIRING notification arrived (microdash).
    pub(crate) rules: Arc<Mutex<HashMap<String, Instant>>>,
    alertmanager: Arc<Mutex<HashMap<String, Instant>>>,
    /// breach id → exporter value.
    gauges: Arc<Mutex<HashMap<String, f64>>>,
}

async fn from_microdash(State(s): State<Shared>, body: Bytes) -> &'static str {
    let now = Instant::now();
    if let Ok(v) = serde_json::from_slice::<Value>(&body)
        && v["state"] == "FIRING"
    {
        if let Some(id) = v["labels"]["breach"].as_str() {
            s.microdash.lock().unwrap().entry(id.to_string()).or_insert(now);
        }
        if let Some(rule) = v["rule"].as_str() {
            s.rules.lock().unwrap().entry(rule.to_string()).or_insert(now);
        }
    }
    "ok"
}

async fn from_alertmanager(State(s): State<Shared>, body: Bytes) -> &'static str {
    let now = Instant::now();
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        for alert in v["alerts"].as_array().into_iter().flatten() {
            if alert["status"] == "firing"
                && let Some(id) = alert["labels"]["breach"].as_str()
            {
                s.alertmanager.lock().unwrap().entry(id.to_string()).or_insert(now);
            }
        }
    }
    "ok"
}

async fn exporter(State(s): State<Shared>) -> String {
    let gauges = s.gauges.lock().unwrap();
    let mut out = String::from("# TYPE bench_breach gauge\n");
    for (id, v) in gauges.iter() {
        out.push_str(&format!("bench_breach{{breach=\"{id}\"}} {v}\n"));
    }
    out
}

pub(crate) async fn start_receiver(shared: Shared) -> Result<SocketAddr> {
    let app = axum::Router::new()
        .route("/microdash", post(from_microdash))
        .route("/alertmanager", post(from_alertmanager))
        .route("/metrics", get(exporter))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

pub(crate) async fn setup_microdash(server: &Server, receiver: SocketAddr) -> Result<()> {
    let http = reqwest::Client::new();
    let channel =
        json!({"name": "bench", "webhook": {"url": format!("http://{receiver}/microdash")}, "sendResolved": false});
    let rule = json!({"name": "bench-breach", "metric": "bench.breach",
        "condition": {"aggregation": "last", "op": ">", "threshold": 0.5}, "for": "0s", "channels": ["bench"]});
    // PUT: a second run replaces the first run's receiver.
    for (path, body) in [("/api/v1/channels/bench", channel), ("/api/v1/rules/bench-breach", rule)] {
        let r = http.put(format!("{}{path}", server.base)).bearer_auth(&server.token).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("{path}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
    }
    Ok(())
}

pub(crate) async fn post_sample(http: &reqwest::Client, server: &Server, id: &str, value: f64) -> Result<()> {
    let body = json!({"metric": "bench.breach", "value": value, "labels": {"breach": id}});
    let r = http.post(format!("{}/api/v1/metrics", server.base)).bearer_auth(&server.token).json(&body).send().await?;
    if r.status().as_u16() != 202 {
        bail!("ingest answered {}", r.status());
    }
    Ok(())
}

/// Many breaches one after another on microdash alone: p50/p99 in ms.
pub async fn microdash_sequential(server: &Server, breaches: usize) -> Result<Vec<f64>> {
    let shared = Shared::default();
    let receiver = start_receiver(shared.clone()).await?;
    setup_microdash(server, receiver).await?;
    probe_breaches(server, &shared, breaches).await
}

/// Breaches of the `bench-breach` rule one after another (after `setup_microdash`): breach →
/// webhook in ms, sorted.
pub(crate) async fn probe_breaches(server: &Server, shared: &Shared, breaches: usize) -> Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(breaches);
    for i in 0..breaches {
        let id = format!("s{}", i % 20);
        // Below the threshold first: the instance is OK (or RESOLVED) before the breach.
        post_sample(&http, server, &id, 0.0).await?;
        let started = Instant::now();
        post_sample(&http, server, &id, 1.0).await?;
        let deadline = started + Duration::from_secs(5);
        loop {
            if let Some(at) = shared.microdash.lock().unwrap().remove(&id) {
                latencies.push((at - started).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                bail!("breach {i} never reached the webhook");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn find(binary: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"].iter().map(|d| Path::new(d).join(binary)).find(|p| p.exists())
}

pub struct PeerResult {
    pub microdash: Vec<f64>,
    pub alertmanager: Vec<f64>,
}

/// The same breaches through both systems. Needs Debian's `prometheus` and
/// `prometheus-alertmanager` (`apt-get install -y prometheus prometheus-alertmanager`).
pub async fn side_by_side(server: &Server, breaches: usize, spread: Duration) -> Result<PeerResult> {
    let prometheus = find("prometheus")
        .context("`prometheus` is not installed: apt-get install -y prometheus prometheus-alertmanager")?;
    let alertmanager = find("prometheus-alertmanager")
        .or_else(|| find("alertmanager"))
        .context("Alertmanager is not installed: apt-get install -y prometheus-alertmanager")?;
    let shared = Shared::default();
    let receiver = start_receiver(shared.clone()).await?;
    setup_microdash(server, receiver).await?;
    let dir = tempfile::tempdir()?;
    let (prom_port, am_port) = (free_port()?, free_port()?);

    // Shipped example intervals (Debian's /etc/prometheus/*.yml); grouping per breach so each
    // breach is its own notification, as microdash sends one per instance.
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  group_by: ['alertname', 'breach']\n  group_wait: 30s\n  group_interval: 5m\n  repeat_interval: 3h\n  receiver: bench\n\
             receivers:\n- name: bench\n  webhook_configs:\n  - url: http://{receiver}/alertmanager\n    send_resolved: false\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n- name: bench\n  rules:\n  - alert: BenchBreach\n    expr: bench_breach > 0.5\n    for: 0s\n",
    )?;
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
             alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{am_port}']\n\
             rule_files: ['{rules}']\n\
             scrape_configs:\n- job_name: bench\n  static_configs:\n  - targets: ['{receiver}']\n",
            rules = dir.path().join("rules.yml").display()
        ),
    )?;
    let _am = KillOnDrop(
        Command::new(&alertmanager)
            .arg(format!("--config.file={}", dir.path().join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.path().join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Alertmanager")?,
    );
    let _prom = KillOnDrop(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("prom").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Prometheus")?,
    );
    let http = reqwest::Client::new();
    // Every series exists at 0 before any breach, and Prometheus has scraped it once.
    for i in 0..breaches {
        let id = format!("p{i}");
        shared.gauges.lock().unwrap().insert(id.clone(), 0.0);
        post_sample(&http, server, &id, 0.0).await?;
    }
    let ready = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=count(bench_breach)");
        if let Ok(r) = http.get(url).send().await
            && let Ok(v) = r.json::<Value>().await
            && v["data"]["result"][0]["value"][1].as_str() == Some(&breaches.to_string())
        {
            break;
        }
        if Instant::now() > ready {
            bail!("Prometheus never scraped the exporter");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Breaches at evenly spread moments, so they fall at every phase of the 15 s cycles.
    let mut started = HashMap::new();
    let t0 = Instant::now();
    for i in 0..breaches {
        let at = t0 + spread.mul_f64(i as f64 / breaches as f64);
        tokio::time::sleep_until(at.into()).await;
        let id = format!("p{i}");
        let now = Instant::now();
        shared.gauges.lock().unwrap().insert(id.clone(), 1.0);
        started.insert(id.clone(), now);
        post_sample(&http, server, &id, 1.0).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.alertmanager.lock().unwrap().len() < breaches {
        if Instant::now() > deadline {
            bail!(
                "Alertmanager delivered {} of {breaches} breaches in time",
                shared.alertmanager.lock().unwrap().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let collect = |map: &Mutex<HashMap<String, Instant>>| -> Vec<f64> {
        let map = map.lock().unwrap();
        let mut v: Vec<f64> =
            started.iter().filter_map(|(id, t)| map.get(id).map(|a| (*a - *t).as_secs_f64() * 1000.0)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    Ok(PeerResult { microdash: collect(&shared.microdash), alertmanager: collect(&shared.alertmanager) })
}
