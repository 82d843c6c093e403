//! Range queries over long history (issue 17): 100 series of one metric over 30 days at 60 s
//! (4.32 M samples) in microdash (SQLite) and VictoriaMetrics, then the two queries a dashboard
//! makes: the whole 30 days at a 1 h step (an average per step), and the last day at raw
//! resolution. microdash is measured as the row store the day came in as, and after `microdash
//! compact` (chunks); the same queries to VictoriaMetrics' `query_range`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::disk::{BulkSender, compact_offline, victoria_import};
use crate::{MqttMode, start_server_with, storage};

const SERIES: usize = 100;
const STEP_MS: i64 = 60_000;
const DAYS: i64 = 30;
const ROUNDS: usize = 15;

fn points_per_series() -> usize {
    (DAYS * 86_400_000 / STEP_MS) as usize
}

fn value(series: usize, i: usize) -> f64 {
    // A two-decimal gauge with a daily shape and some noise, different per series.
    let x = i as f64 * STEP_MS as f64 / 86_400_000.0 * std::f64::consts::TAU;
    let noise = ((i * 7919 + series * 104_729) % 1000) as f64 / 100.0;
    ((40.0 + 20.0 * (x + series as f64).sin() + noise) * 100.0).round() / 100.0
}

/// p50 and max of `ROUNDS` timed GETs, in ms, and the points of the last answer.
async fn timed(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    count: fn(&Value) -> usize,
) -> Result<(f64, f64, usize)> {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut points = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            bail!("{url}: {} {}", response.status(), response.text().await.unwrap_or_default());
        }
        let body: Value = response.json().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        points = count(&body);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() - 1], points))
}

fn microdash_points(body: &Value) -> usize {
    body["series"].as_array().map_or(0, |s| s.iter().map(|s| s["points"].as_array().map_or(0, Vec::len)).sum())
}

fn prometheus_points(body: &Value) -> usize {
    body["data"]["result"].as_array().map_or(0, |s| s.iter().map(|s| s["values"].as_array().map_or(0, Vec::len)).sum())
}

struct Row {
    setup: &'static str,
    long: (f64, f64, usize),
    day: (f64, f64, usize),
}

pub async fn run(server_bin: &Path, victoria_bin: &Path) -> Result<String> {
    let n = points_per_series();
    let now = microdash_testkit::now_ms();
    let end = {
        let aligned = now - 10 * 60_000;
        aligned - aligned.rem_euclid(2 * 3_600_000)
    };
    let start = end - n as i64 * STEP_MS;
    let http = reqwest::Client::new();
    let mut rows = Vec::new();

    eprintln!("[query] microdash (SQLite): {} samples", n * SERIES);
    let mut server = start_server_with(server_bin, MqttMode::Off, &[("MICRODASH_RETENTION_INTERVAL", "1h".into())])?;
    let ingest_started = Instant::now();
    let mut bulk = BulkSender::new(&http, &server.base, &server.token);
    for i in 0..n {
        for s in 0..SERIES {
            bulk.push("node_cpu_percent", s, start + i as i64 * STEP_MS, value(s, i)).await?;
        }
    }
    bulk.flush().await?;
    let ingest_s = ingest_started.elapsed().as_secs_f64();
    let long_url = |base: &str| {
        format!("{base}/api/v1/query?metric=node_cpu_percent&from={start}&to={}&step=3600000&agg=avg", end - 1)
    };
    let day_url = |base: &str| {
        format!("{base}/api/v1/query?metric=node_cpu_percent&from={}&to={}&resolution=raw", end - 86_400_000, end - 1)
    };
    let measure = |base: String, token: String| {
        let http = http.clone();
        async move {
            let long = timed(&http, &long_url(&base), Some(&token), microdash_points).await?;
            let day = timed(&http, &day_url(&base), Some(&token), microdash_points).await?;
            anyhow::Ok((long, day))
        }
    };
    let (long, day) = measure(server.base.clone(), server.token.clone()).await?;
    rows.push(Row { setup: "microdash, SQLite, row store", long, day });

    let dir = server.process.dir().to_path_buf();
    if !server.process.terminate(Duration::from_secs(60)) {
        bail!("microdash did not stop within 60 s");
    }
    compact_offline(server_bin, &dir)?;
    server.process.restart().map_err(|e| anyhow::anyhow!("restarting microdash: {e}"))?;
    let (long, day) = measure(server.process.base.clone(), server.token.clone()).await?;
    rows.push(Row { setup: "microdash, SQLite, compressed chunks", long, day });
    drop(server);

    eprintln!("[query] VictoriaMetrics: {} samples", n * SERIES);
    let vm = storage::start_victoria(victoria_bin).await?;
    for s in 0..SERIES {
        let points: Vec<(i64, f64)> = (0..n).map(|i| (start + i as i64 * STEP_MS, value(s, i))).collect();
        victoria_import(&http, &vm.base, "node_cpu_percent", s, &points).await?;
    }
    http.get(format!("{}/internal/force_flush", vm.base)).send().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secs = |ms: i64| ms as f64 / 1000.0;
    let long = timed(
        &http,
        &format!(
            "{}/api/v1/query_range?query=avg_over_time(node_cpu_percent[1h])&start={}&end={}&step=3600",
            vm.base,
            secs(start + 3_600_000),
            secs(end)
        ),
        None,
        prometheus_points,
    )
    .await?;
    let day = timed(
        &http,
        &format!(
            "{}/api/v1/query_range?query=node_cpu_percent&start={}&end={}&step=60",
            vm.base,
            secs(end - 86_400_000),
            secs(end - 60_000)
        ),
        None,
        prometheus_points,
    )
    .await?;
    rows.push(Row { setup: "VictoriaMetrics (Debian), `query_range`", long, day });
    drop(vm);

    let theirs = (rows[2].long.0, rows[2].day.0);
    let mut out = format!(
        "## Range queries over 30 days, next to VictoriaMetrics\n\n\
         {SERIES} series of one metric (a two-decimal gauge) at 60 s over {DAYS} days, {samples} samples, the same \
         for both (microdash took them through the bulk API in {ingest_s:.0} s). Two queries, each timed {ROUNDS} \
         times over HTTP on this machine (p50 / max, ms): **30 days at a 1 h step**, an average per step \
         (microdash `GET /api/v1/query?…&step=3600000&agg=avg`, which reads the 5m rollup; VictoriaMetrics \
         `query_range` of `avg_over_time(node_cpu_percent[1h])` at `step=3600`), and **the last day at raw \
         resolution** (microdash `resolution=raw`; VictoriaMetrics `query_range` at `step=60`, one point per \
         sample). microdash is measured as the data came in (row store) and after `microdash compact` (chunks, \
         what a running server turns closed windows into). Points returned are counted from each answer.\n\n\
         | setup | 30 d at 1 h: p50 / max | points | vs VM (p50) | 1 d raw: p50 / max | points | vs VM (p50) |\n\
         |---|---|---|---|---|---|---|\n",
        samples = n * SERIES,
    );
    for row in &rows {
        out.push_str(&format!(
            "| {} | {:.1} / {:.1} ms | {} | {:.2}× | {:.1} / {:.1} ms | {} | {:.2}× |\n",
            row.setup,
            row.long.0,
            row.long.1,
            row.long.2,
            row.long.0 / theirs.0,
            row.day.0,
            row.day.1,
            row.day.2,
            row.day.0 / theirs.1,
        ));
    }
    out.push_str(
        "\nAim (issue 17): both under 100 ms for microdash. A ratio above 1 means slower than VictoriaMetrics.\n",
    );
    Ok(out)
}
