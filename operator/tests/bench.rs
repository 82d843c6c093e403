//! The operator benchmark (not a test: `#[ignore]`d, run by `scripts/bench-operator.sh`):
//! the real `microdash-operator` binary against the real kube-apiserver and `microdash serve`;
//! its RSS at idle, and how long 100 AlertRules take from creation to Accepted + Synced.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kube::Api;
use kube::api::PostParams;
use microdash_operator::resources::{AlertRule, Tenant};
use serde_json::json;

/// Kills the operator when the benchmark ends, also when it panics: a stray operator watching
/// the cluster would write stale statuses into the next run.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test]
#[ignore = "a benchmark: run scripts/bench-operator.sh"]
async fn operator_idle_memory_and_latency_for_100_rules() {
    const RULES: usize = 100;
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "bench").await;
    let server = Microdash::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let operator = Command::new(env!("CARGO_BIN_EXE_microdash-operator"))
        .env("KUBECONFIG", kubeconfig_path())
        .env("MICRODASH_SERVER_URL", &server.base)
        .env("MICRODASH_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MICRODASH_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("MICRODASH_OPERATOR_RESYNC", "30s")
        .env("POD_NAMESPACE", &ns)
        // Only this namespace: what other runs left in the cluster stays out of the figures.
        .env("MICRODASH_OPERATOR_NAMESPACE", &ns)
        .env("MICRODASH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(std::env::temp_dir().join("microdash-operator-bench.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = operator.id();
    let operator = KillOnDrop(operator);
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), "the operator holds the lease", || async {
        match http.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            Ok(r) => match r.text().await.unwrap_or_default().as_str() {
                "leader" => Ok(()),
                other => Err(other.to_string()),
            },
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_empty = rss_mib(pid);

    // The rules' tenant, bound to this namespace (the operator makes it in the server).
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns},
        "spec": {"tokenSecret": {"namespace": ns}}
    }))
    .unwrap();
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants.create(&PostParams::default(), &tenant).await.unwrap();
    eventually(Duration::from_secs(60), "the tenant is Ready", || async {
        let status = serde_json::to_value(tenants.get(&ns).await.map_err(|e| e.to_string())?.status).unwrap();
        if condition(&status, "Ready").is_some_and(|c| c.0 == "True") { Ok(()) } else { Err(status.to_string()) }
    })
    .await;
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    for i in 0..RULES {
        let rule: AlertRule = serde_json::from_value(json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "AlertRule", "metadata": {"name": format!("rule-{i:03}")},
            "spec": {"tenant": ns, "metric": format!("bench.m{i}"),
                     "condition": {"aggregation": "avg", "window": "1m", "op": ">", "threshold": 90}, "for": "1m"}
        }))
        .unwrap();
        rules.create(&PostParams::default(), &rule).await.unwrap();
    }
    let created = started.elapsed();
    eventually(Duration::from_secs(120), "every rule Accepted and Synced", || async {
        let list = rules.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let done = list
            .items
            .iter()
            .filter(|r| {
                let status = serde_json::to_value(&r.status).unwrap();
                condition(&status, "Accepted").is_some_and(|c| c.0 == "True")
                    && condition(&status, "Synced").is_some_and(|c| c.0 == "True")
            })
            .count();
        if done == RULES { Ok(()) } else { Err(format!("{done}/{RULES}")) }
    })
    .await;
    let all_synced = started.elapsed();
    let peak_after = rss_mib(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_full = rss_mib(pid);
    let in_server = server
        .as_tenant(reqwest::Method::GET, "/api/v1/rules", &ns)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["rules"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(in_server, RULES);
    let metrics = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    drop(operator);

    println!("| operator RSS at idle, no resources | {idle_empty:.1} MiB |");
    println!("| {RULES} AlertRules created (kube API calls, one after another) | {:.2} s |", created.as_secs_f64());
    println!(
        "| {RULES} AlertRules from the first create to all Accepted + Synced in status | **{:.2} s** |",
        all_synced.as_secs_f64()
    );
    println!(
        "| operator RSS right after / 10 s later at idle with {RULES} rules | {peak_after:.1} MiB / {idle_full:.1} MiB |"
    );
    for line in metrics
        .lines()
        .filter(|l| l.contains("reconcile_duration_seconds_sum") || l.contains("reconcile_duration_seconds_count"))
    {
        println!("metric: {line}");
    }
}
