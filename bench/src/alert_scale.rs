//! Alerting at fleet scale (issue 23): rule writes per second through `microdash apply` and
//! through the API, how long a server takes to load the rules (after an apply, and at a
//! restart), breach → webhook with many rules (idle, under unrelated bulk ingest, and during a
//! burst of rule writes through the API and one by `microdash apply -f`), and the server's memory per rule and per instance.
//!
//! The rules are a fleet's: 20 rules per host over 20 metrics (`fleet.m0` … `fleet.m19`, each
//! matching `host = hN`), for `n / 20` hosts. The breaches go to a separate rule (`bench-breach`)
//! through the same webhook receiver as the alerting section.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::alerts::{self, Shared};
use crate::{Load, MqttMode, Server, Target, pct, rss_kib, start_server_with, sustained_ingest};

pub struct ScaleArgs {
    pub rule_counts: Vec<usize>,
    /// Breaches per measurement.
    pub probes: usize,
    /// Samples/s of unrelated bulk ingest under which the breaches are measured again.
    pub load_rate: f64,
    /// Rules written through the API in the burst.
    pub burst: usize,
}

const RULES_PER_HOST: usize = 20;
const BURST_WRITERS: usize = 8;

fn fleet_spec(i: usize, prefix: &str) -> serde_json::Value {
    json!({
        "metric": format!("{prefix}.m{}", i % RULES_PER_HOST),
        "match": {"host": format!("h{}", i / RULES_PER_HOST)},
        "condition": {"aggregation": "last", "op": ">", "threshold": 90},
        "for": "0s",
        "channels": ["bench"]
    })
}

fn fleet_yaml(n: usize) -> String {
    rules_yaml("fleet", 0..n)
}

/// AlertRule documents `{prefix}-{i}` for each `i`, on the fleet's metrics and hosts.
fn rules_yaml(prefix: &str, range: std::ops::Range<usize>) -> String {
    let mut yaml = String::with_capacity(range.len() * 260);
    for i in range {
        yaml.push_str(&format!(
            "---\napiVersion: microdash.io/v1alpha1\nkind: AlertRule\nmetadata: {{name: {prefix}-{i}}}\n\
             spec: {{tenant: default, metric: fleet.m{}, match: {{host: h{}}}, for: 0s, channels: [bench], \
             condition: {{aggregation: last, op: '>', threshold: 90}}}}\n",
            i % RULES_PER_HOST,
            i / RULES_PER_HOST
        ));
    }
    yaml
}

async fn post_bulk(http: &reqwest::Client, server: &Server, samples: Vec<serde_json::Value>) -> Result<()> {
    let r = http
        .post(format!("{}/api/v1/metrics/bulk", server.base))
        .bearer_auth(&server.token)
        .json(&json!({ "samples": samples }))
        .send()
        .await?;
    if r.status().as_u16() != 202 {
        bail!("bulk ingest answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(())
}

/// Breaches `rule`'s series (rule `fleet-i` watches `fleet.m{i % 20}` of host `h{i / 20}`) every
/// 200 ms until its notification arrives; fails after `timeout`.
async fn until_fired(server: &Server, shared: &Shared, i: usize, timeout: Duration) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    let sample = json!({"metric": format!("fleet.m{}", i % RULES_PER_HOST), "value": 95.0,
                        "labels": {"host": format!("h{}", i / RULES_PER_HOST)}});
    while !shared.rules.lock().unwrap().contains_key(&format!("fleet-{i}")) {
        if Instant::now() > deadline {
            bail!("rule fleet-{i} did not fire within {timeout:?}");
        }
        post_bulk(&http, server, vec![sample.clone()]).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `microdash_alert_instances` from the server's `/metrics`.
async fn instances(http: &reqwest::Client, server: &Server) -> Result<f64> {
    let text = http.get(format!("{}/metrics", server.base)).send().await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("microdash_alert_instances "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

fn latency_cells(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    format!(
        "{:.1} / {:.1} ms (max {:.1}, {} breaches)",
        pct(sorted, 0.50),
        pct(sorted, 0.99),
        sorted[sorted.len() - 1],
        sorted.len()
    )
}

struct Row {
    rules: usize,
    apply_secs: f64,
    loaded_secs: f64,
    restart_secs: Option<f64>,
    rss_base_mib: f64,
    rss_rules_mib: f64,
    rss_instances_mib: f64,
    idle: Vec<f64>,
    loaded: Vec<f64>,
    load_rate: f64,
    burst: Option<(usize, f64, Vec<f64>)>,
    /// Rules written by `microdash apply -f`, their rate, and the breaches meanwhile.
    apply_burst: Option<(usize, f64, Vec<f64>)>,
}

async fn measure(bin: &Path, n: usize, args: &ScaleArgs) -> Result<Row> {
    let mut server = start_server_with(bin, MqttMode::Off, &[])?;
    let db = format!("sqlite://{}", server._dir.path().join("bench.db").display());
    let pid = server.process.pid();
    let shared = Shared::default();
    let receiver = alerts::start_receiver(shared.clone()).await?;
    alerts::setup_microdash(&server, receiver).await?;
    // Warm: the breach path once, so the baseline holds what serving costs anyway.
    alerts::probe_breaches(&server, &shared, 5).await?;
    let rss_base = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;

    eprintln!("[alert scale {n}] microdash apply -f of {n} rules");
    let file = server._dir.path().join("rules.yaml");
    std::fs::write(&file, fleet_yaml(n))?;
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["apply", "-f"])
        .arg(&file)
        .args(["--database-url", &db])
        .output()
        .context("running microdash apply")?;
    if !out.status.success() {
        bail!("microdash apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let apply_secs = started.elapsed().as_secs_f64();
    eprintln!("[alert scale {n}] applied in {apply_secs:.1} s; waiting until the server evaluates every rule");
    let applied = Instant::now();
    until_fired(&server, &shared, n - 1, Duration::from_secs(600)).await?;
    until_fired(&server, &shared, 0, Duration::from_secs(600)).await?;
    let loaded_secs = applied.elapsed().as_secs_f64();
    let rss_rules = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;

    eprintln!("[alert scale {n}] one sample per rule's series (an instance each)");
    let http = reqwest::Client::new();
    let hosts = n.div_ceil(RULES_PER_HOST);
    let mut samples = Vec::with_capacity(5000);
    for i in 0..n {
        samples.push(json!({"metric": format!("fleet.m{}", i % RULES_PER_HOST), "value": 10.0,
                            "labels": {"host": format!("h{}", i / RULES_PER_HOST)}}));
        if samples.len() == 5000 {
            post_bulk(&http, &server, std::mem::take(&mut samples)).await?;
        }
    }
    if !samples.is_empty() {
        post_bulk(&http, &server, samples).await?;
    }
    // Until the engine has made them (each is a row): its instance gauge.
    let deadline = Instant::now() + Duration::from_secs(300);
    while instances(&http, &server).await? < n as f64 {
        if Instant::now() > deadline {
            bail!("the engine did not make an instance per rule within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss_instances = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    eprintln!("[alert scale {n}] {hosts} hosts; breach → webhook, idle");
    let idle = alerts::probe_breaches(&server, &shared, args.probes).await?;

    eprintln!("[alert scale {n}] breach → webhook under {} samples/s of unrelated ingest", args.load_rate);
    let target = Target::Microdash { base: server.base.clone(), token: server.token.clone() };
    let load =
        Load { connections: 2, batch: 1000, seconds: 20, rate: Some(args.load_rate), ago_ms: 540_000, dc: "eu-1" };
    let pids = [pid];
    let (ingest, loaded) = tokio::join!(sustained_ingest(&target, &pids, load), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        alerts::probe_breaches(&server, &shared, args.probes).await
    });
    let (ingest, loaded) = (ingest?, loaded?);

    let burst = if args.burst > 0 {
        eprintln!("[alert scale {n}] {} rule writes through the API (8 writers) with breaches meanwhile", args.burst);
        let written = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut writers = Vec::new();
        for w in 0..BURST_WRITERS {
            let (base, token, written, total) =
                (server.base.clone(), server.token.clone(), written.clone(), args.burst);
            writers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in (w..total).step_by(BURST_WRITERS) {
                    let r = http
                        .put(format!("{base}/api/v1/rules/burst-{i}"))
                        .bearer_auth(&token)
                        .json(&fleet_spec(i, "burst"))
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        bail!("PUT burst-{i}: {}", r.status());
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        let mut during = Vec::new();
        while written.load(Ordering::Relaxed) < args.burst * 9 / 10 {
            during.extend(alerts::probe_breaches(&server, &shared, 10).await?);
        }
        for w in writers {
            w.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        during.sort_by(f64::total_cmp);
        Some((args.burst, args.burst as f64 / secs, during))
    } else {
        None
    };

    let apply_burst = if args.burst > 0 {
        eprintln!("[alert scale {n}] {} new rules by microdash apply -f with breaches meanwhile", args.burst);
        let file = server._dir.path().join("burst.yaml");
        std::fs::write(&file, rules_yaml("applied", 0..args.burst))?;
        let started = Instant::now();
        let mut apply = tokio::process::Command::new(bin)
            .args(["apply", "-f"])
            .arg(&file)
            .args(["--database-url", &db])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running microdash apply")?;
        let mut during = Vec::new();
        let status = loop {
            if let Some(status) = apply.try_wait()? {
                break status;
            }
            during.extend(alerts::probe_breaches(&server, &shared, 10).await?);
        };
        let secs = started.elapsed().as_secs_f64();
        if !status.success() {
            let out = apply.wait_with_output().await?;
            bail!("microdash apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        during.sort_by(f64::total_cmp);
        Some((args.burst, args.burst as f64 / secs, during))
    } else {
        None
    };

    let restart_secs = {
        eprintln!("[alert scale {n}] restart (kill -9, start) until the rules are loaded");
        let started = Instant::now();
        server.process.restart().map_err(|e| anyhow::anyhow!(e))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while !server.process.log().contains("Alert rules loaded.") {
            if Instant::now() > deadline {
                bail!("the restarted server did not log that its rules are loaded");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(started.elapsed().as_secs_f64())
    };

    Ok(Row {
        rules: n,
        apply_secs,
        loaded_secs,
        restart_secs,
        rss_base_mib: rss_base,
        rss_rules_mib: rss_rules,
        rss_instances_mib: rss_instances,
        idle,
        loaded,
        load_rate: ingest.samples_per_sec,
        burst,
        apply_burst,
    })
}

pub async fn run(bin: &Path, args: &ScaleArgs) -> Result<String> {
    let mut rows = Vec::new();
    for &n in &args.rule_counts {
        rows.push(measure(bin, n, args).await?);
    }
    let mut out = String::from(
        "## Alerting at fleet scale: many rules, rule bursts, memory\n\n\
         A fleet's rules: 20 rules per host over 20 metrics (each `last > 90` on one host's series), \
         written by `microdash apply -f` into a running server's SQLite database; the server finds \
         them by polling (every 2 s) and loads them between samples (up to 256 rules of one metric per step). *Evaluated \
         after apply* runs from the end of the apply until breaches of the file's first and last \
         rules were both notified. Breach → webhook is measured on a separate rule as in the \
         alerting section (one breach after the other), with every fleet rule loaded and holding \
         an instance; then under paced bulk ingest of an unrelated metric; then while 8 clients \
         write new rules through `PUT /api/v1/rules/{name}`; then while `microdash apply -f` writes as \
         many new rules into the database (found by the server's poll). Memory is the server's RSS: before \
         the rules, with the rules loaded, and with one instance per rule.\n\n\
         | rules | apply -f | evaluated after apply | restart → loaded | breach → webhook idle p50 / p99 | under ingest p50 / p99 | API burst: rules/s, breach p50 / p99 during it | apply -f burst: rules/s, breach p50 / p99 during it | RSS: base → rules → instances | per rule / per instance |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        let per_rule = (r.rss_rules_mib - r.rss_base_mib) * 1024.0 / r.rules as f64;
        let per_instance = (r.rss_instances_mib - r.rss_rules_mib) * 1024.0 / r.rules as f64;
        out.push_str(&format!(
            "| {} | {:.1} s ({:.0} rules/s) | {:.1} s | {} | {} | {} (at {:.0} samples/s) | {} | {} | {:.0} → {:.0} → {:.0} MiB | {:.2} / {:.2} KiB |\n",
            r.rules,
            r.apply_secs,
            r.rules as f64 / r.apply_secs,
            r.loaded_secs,
            r.restart_secs.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "–".into()),
            latency_cells(&r.idle),
            latency_cells(&r.loaded),
            r.load_rate,
            r.burst
                .as_ref()
                .map(|(n, rate, during)| format!("{n} rules at {rate:.0}/s; {}", latency_cells(during)))
                .unwrap_or_else(|| "–".into()),
            r.apply_burst
                .as_ref()
                .map(|(n, rate, during)| format!("{n} rules at {rate:.0}/s; {}", latency_cells(during)))
                .unwrap_or_else(|| "–".into()),
            r.rss_base_mib,
            r.rss_rules_mib,
            r.rss_instances_mib,
            per_rule,
            per_instance,
        ));
    }
    Ok(out)
}
