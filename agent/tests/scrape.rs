//! `--scrape`: the agent scrapes Debian's `prometheus-node-exporter` and the microdash server's
//! own `/metrics`, and their samples arrive in the real server with their labels, through the
//! same batches (and spool) as the host's.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Agent, NodeExporter, Server, eventually_async, unique_host};

#[tokio::test]
async fn node_exporter_and_the_servers_own_metrics_arrive_with_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let exporter = NodeExporter::start();
    let exporter_url = exporter.url();
    eventually_async("node_exporter answers", Duration::from_secs(20), || {
        let url = exporter_url.clone();
        async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let server_metrics = server.url("/metrics");
    let server_instance = server.base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let exporter_instance = format!("127.0.0.1:{}", exporter.port);

    let host = unique_host("scraper");
    let mut agent = Agent::start(
        &dir.path().join("spool"),
        &[
            "--server",
            &server.base,
            "--token",
            &server.token,
            "--interval",
            "1s",
            "--host-label",
            &host,
            "--scrape",
            &exporter_url,
            "--scrape",
            &server_metrics,
        ],
    );

    // Both targets up, as the agent's own scrape.up says.
    eventually_async("scrape.up of both targets", Duration::from_secs(30), || {
        let (server, host) = (&server, &host);
        async move {
            let up = server.points("scrape.up", host).await;
            up.len() == 2 && up.values().all(|points| points.last().is_some_and(|(_, v)| *v == 1.0))
        }
    })
    .await;
    let up = server.points("scrape.up", &host).await;
    let instances: Vec<&str> = up.keys().map(|labels| labels["instance"].as_str()).collect();
    assert_eq!(instances.len(), 2);
    assert!(
        instances.contains(&exporter_instance.as_str()) && instances.contains(&server_instance.as_str()),
        "{instances:?}"
    );

    // node_exporter's series: names as exposed, its labels plus host and instance.
    let mem_total = server.points("node_memory_MemTotal_bytes", &host).await;
    let (labels, points) = mem_total.iter().next().expect("node_memory_MemTotal_bytes stored");
    assert_eq!(labels["instance"], exporter_instance);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(points[0].1, kib * 1024.0);
    let cpu = server.points("node_cpu_seconds_total", &host).await;
    assert!(
        cpu.keys().any(|l| l["cpu"] == "0" && l["mode"] == "idle" && l["instance"] == exporter_instance),
        "{:?}",
        cpu.keys().take(3).collect::<Vec<_>>()
    );
    // A summary, flattened with its quantile label.
    let gc = server.points("go_gc_duration_seconds", &host).await;
    assert!(gc.keys().any(|l| l.get("quantile").map(String::as_str) == Some("0.5")), "{:?}", gc.keys());
    assert!(!server.points("go_gc_duration_seconds_count", &host).await.is_empty());

    // The server's own /metrics, labelled with its instance.
    let accepted = server.points("microdash_samples_accepted_total", &host).await;
    assert!(!accepted.is_empty(), "microdash_samples_accepted_total scraped from {server_metrics}");
    assert!(accepted.keys().all(|l| l["instance"] == server_instance), "{:?}", accepted.keys());
    // And the agent's own host metrics in the same collections.
    assert!(!server.points("cpu.seconds_total", &host).await.is_empty());

    assert!(agent.terminate().success());
}

#[test]
fn once_prints_the_scraped_samples_and_an_unreachable_target_is_down() {
    let exporter = NodeExporter::start();
    let dead = format!("http://127.0.0.1:{}/metrics", common::mosquitto::free_port());
    // node_exporter may take a moment to listen: retry --once until its samples are there.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let out = Command::new(common::AGENT_BIN)
            .args(["--once", "--host-label", "once", "--scrape", &exporter.url(), "--scrape", &dead])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let samples = body["samples"].as_array().unwrap().clone();
        if samples.iter().any(|s| s["metric"] == "node_load1") {
            break samples;
        }
        assert!(std::time::Instant::now() < deadline, "node_exporter never answered");
        std::thread::sleep(Duration::from_millis(200));
    };
    let up = |instance: &str| {
        samples
            .iter()
            .find(|s| s["metric"] == "scrape.up" && s["labels"]["instance"] == instance)
            .map(|s| s["value"].as_f64().unwrap())
    };
    assert_eq!(up(&format!("127.0.0.1:{}", exporter.port)), Some(1.0));
    assert_eq!(up(dead.trim_start_matches("http://").trim_end_matches("/metrics")), Some(0.0));
    let scraped = samples.iter().filter(|s| s["metric"].as_str().unwrap().starts_with("node_")).count();
    let count = samples
        .iter()
        .find(|s| s["metric"] == "scrape.samples" && s["labels"]["instance"] == format!("127.0.0.1:{}", exporter.port))
        .map(|s| s["value"].as_f64().unwrap() as usize)
        .unwrap();
    assert!(scraped > 100 && count >= scraped, "{scraped} node_ samples, scrape.samples {count}");
    // Dedupe ids go on after the host's samples: unique within the batch.
    let ids: std::collections::BTreeSet<&str> = samples.iter().map(|s| s["dedupe_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), samples.len());
}
