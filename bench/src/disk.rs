//! Bytes per sample on disk (issue 17): a day of agent-like data (100 hosts × 10 metrics = 1000
//! series at 10 s, 8.64 M samples: gauges with one or two decimals, byte gauges, counters of
//! bytes and of CPU seconds, a slowly changing free-space gauge; timestamps with a few ms of
//! jitter) into microdash on SQLite and into VictoriaMetrics, then every file of each data
//! directory after a clean stop. microdash is measured twice: before compaction (the row
//! store: raw rows and rollups) and after `microdash compact` (chunks and rollups), which a
//! running server does by itself every retention interval.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{MqttMode, start_server_with, storage};

const HOSTS: usize = 100;
const METRICS: [&str; 10] = [
    "node_cpu_percent",
    "node_load1",
    "node_memory_used_bytes",
    "node_memory_available_bytes",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_disk_read_bytes_total",
    "node_filesystem_free_bytes",
    "node_cpu_seconds_total",
    "node_temperature_celsius",
];
const STEP_MS: i64 = 10_000;
const POINTS: usize = 8640;

/// A small deterministic generator (xorshift), so every run stores the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

/// The points of one series: `(ts, value)` for the day ending at `end`.
fn series(metric: usize, host: usize, end: i64) -> Vec<(i64, f64)> {
    let mut rng =
        Rng(0x9e37_79b9_7f4a_7c15 ^ ((metric as u64) << 32 | host as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    for _ in 0..4 {
        rng.next();
    }
    let start = end - POINTS as i64 * STEP_MS;
    let mut v = match metric {
        0 => 20.0 + rng.unit() * 30.0,
        1 => 0.5 + rng.unit() * 2.0,
        2 => 4e9 + (rng.unit() * 4e9).round(),
        3 => 8e9 + (rng.unit() * 4e9).round(),
        4..=6 => (rng.unit() * 1e12).round(),
        7 => 2e11 + (rng.unit() * 1e11).round(),
        8 => round(rng.unit() * 1e6, 2),
        _ => round(40.0 + rng.unit() * 20.0, 1),
    };
    (0..POINTS)
        .map(|i| {
            let jitter = (rng.next() % 7) as i64;
            v = match metric {
                0 => round((v + (rng.unit() - 0.5) * 4.0).clamp(0.0, 100.0), 2),
                1 => round((v + (rng.unit() - 0.5) * 0.2).max(0.0), 2),
                2 | 3 => v + ((rng.unit() - 0.5) * 64.0).round() * 4096.0,
                4 | 5 => v + (rng.unit() * 200_000.0).round(),
                6 => v + if rng.unit() < 0.7 { 0.0 } else { (rng.unit() * 64.0).round() * 4096.0 },
                7 => v - if rng.unit() < 0.95 { 0.0 } else { (rng.unit() * 256.0).round() * 4096.0 },
                8 => round(v + rng.unit() * 20.0, 2),
                _ => round((v + (rng.unit() - 0.5)).clamp(20.0, 90.0), 1),
            };
            (start + i as i64 * STEP_MS + jitter, v)
        })
        .collect()
}

/// Every file under `dir`, each named on stderr.
fn dir_bytes(dir: &Path) -> Result<u64> {
    Ok(files(dir, dir)?.iter().map(|(_, bytes)| bytes).sum())
}

/// Every file under `dir` with its size, named relative to `root`, largest first.
fn files(dir: &Path, root: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            out.extend(files(&entry.path(), root)?);
        } else {
            eprintln!("[disk]   {} {}", meta.len(), entry.path().display());
            let name = entry.path().strip_prefix(root).unwrap_or(&entry.path()).display().to_string();
            out.push((name, meta.len()));
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.1));
    Ok(out)
}

pub struct DiskRow {
    pub setup: String,
    pub bytes: u64,
}

pub async fn run(server_bin: &Path, victoria_bin: &Path) -> Result<String> {
    let samples = (HOSTS * METRICS.len() * POINTS) as u64;
    // The day ends at the start of the newest closed chunk window, so all of it compacts.
    let now = microdash_testkit::now_ms();
    let end = {
        let aligned = now - 10 * 60_000;
        aligned - aligned.rem_euclid(2 * 3_600_000)
    };
    let corpus: Vec<Vec<(i64, f64)>> =
        (0..METRICS.len()).flat_map(|m| (0..HOSTS).map(move |h| (m, h))).map(|(m, h)| series(m, h, end)).collect();
    let http = reqwest::Client::new();
    let mut rows = Vec::new();

    eprintln!("[disk] microdash (SQLite): {samples} samples");
    // No compaction while the day comes in: the first measure is the row store as it stood.
    let mut server = start_server_with(server_bin, MqttMode::Off, &[("MICRODASH_RETENTION_INTERVAL", "1h".into())])?;
    let started = Instant::now();
    // As agents send: every series' sample of one moment together, 5000 samples a request.
    let mut bulk = BulkSender::new(&http, &server.base, &server.token);
    for i in 0..POINTS {
        for (s, points) in corpus.iter().enumerate() {
            let (ts, v) = points[i];
            bulk.push(METRICS[s / HOSTS], s % HOSTS, ts, v).await?;
        }
    }
    bulk.flush().await?;
    let ingest_s = started.elapsed().as_secs_f64();
    let stored = microdash_points(&http, &server.base, &server.token, end).await?;
    if stored != POINTS {
        bail!("microdash holds {stored} of {POINTS} points of one series");
    }
    let dir = server.process.dir().to_path_buf();
    if !server.process.terminate(Duration::from_secs(60)) {
        bail!("microdash did not stop within 60 s");
    }
    rows.push(DiskRow {
        setup: "microdash, SQLite, row store (raw rows + 1m/5m rollups)".into(),
        bytes: dir_bytes(&dir)?,
    });
    let compact_started = Instant::now();
    compact_offline(server_bin, &dir)?;
    let compact_s = compact_started.elapsed().as_secs_f64();
    server.process.restart().map_err(|e| anyhow::anyhow!("restarting microdash: {e}"))?;
    let stored = microdash_points(&http, &server.process.base, &server.token, end).await?;
    if stored != POINTS {
        bail!("after compaction microdash holds {stored} of {POINTS} points of one series");
    }
    if !server.process.terminate(Duration::from_secs(60)) {
        bail!("microdash did not stop within 60 s");
    }
    rows.push(DiskRow {
        setup: "microdash, SQLite, compressed chunks (raw and 5m rollups; 1m derived from raw)".into(),
        bytes: dir_bytes(&dir)?,
    });
    // What the chunks themselves take, per table (the rest: pages' free space, series, indexes).
    let mut split = Vec::new();
    let compacted_files = files(&dir, &dir)?;
    let free_bytes: i64;
    let pages: String;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", dir.join("bench.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await?;
        for table in ["chunks", "rollup_1m_chunks", "rollup_5m_chunks"] {
            let bytes: Option<i64> =
                sqlx::query_scalar(&format!("SELECT SUM(LENGTH(data)) FROM {table}")).fetch_one(&mut db).await?;
            split.push((table, bytes.unwrap_or(0) as f64 / samples as f64));
        }
        let free_pages: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&mut db).await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut db).await?;
        free_bytes = free_pages * page_size;
        // Where the file's pages went, per table and index (SQLite's `dbstat`).
        let tables: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT name, SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC LIMIT 8",
        )
        .fetch_all(&mut db)
        .await?;
        pages = tables
            .iter()
            .map(|(name, bytes, payload)| format!("`{name}` {bytes} bytes ({payload} of data)"))
            .collect::<Vec<_>>()
            .join(", ");
    }
    drop(server);

    eprintln!("[disk] VictoriaMetrics: {samples} samples");
    let vm = storage::start_victoria(victoria_bin).await?;
    for (s, points) in corpus.iter().enumerate() {
        victoria_import(&http, &vm.base, METRICS[s / HOSTS], s % HOSTS, points).await?;
    }
    http.get(format!("{}/internal/force_flush", vm.base)).send().await?;
    let exported = http
        .get(format!("{}/api/v1/export", vm.base))
        .query(&[("match[]", "node_cpu_percent{host=\"h0\"}"), ("start", "0")])
        .send()
        .await?
        .text()
        .await?;
    let got = exported
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["timestamps"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    if got != POINTS {
        bail!("VictoriaMetrics holds {got} of {POINTS} points of one series");
    }
    // A clean stop: SIGTERM, and VictoriaMetrics flushes its in-memory parts first.
    let mut vm = vm;
    std::process::Command::new("kill").args(["-TERM", &vm.child.0.id().to_string()]).status()?;
    vm.child.0.wait()?;
    rows.push(DiskRow { setup: "VictoriaMetrics (Debian), `/api/v1/import`".into(), bytes: dir_bytes(vm.dir.path())? });

    let theirs = rows.last().expect("three rows").bytes as f64 / samples as f64;
    let mut out = format!(
        "## Bytes per sample on disk, next to VictoriaMetrics\n\n\
         A day of agent-like data: {HOSTS} hosts × {n} metrics = {series} series at 10 s, {samples} samples (gauges \
         with one or two decimals, byte gauges moving in pages, counters of bytes and of CPU seconds, a \
         free-space gauge that changes now and then; timestamps with 0–6 ms of jitter), the same corpus for \
         both. Every file of the data directory is counted after a clean stop (SIGTERM). microdash took the \
         day through `POST /api/v1/metrics/bulk` in {ingest_s:.0} s (5000 samples a request, in time order as \
         agents send), is measured once as it stood (raw rows and rollups), then after `microdash compact` \
         ({compact_s:.1} s; a running server compacts each closed 2 h window by itself, 10 min after it \
         closes). Both hold all {POINTS} points of a series afterwards (checked).\n\n\
         | setup | bytes on disk | bytes per sample | vs VM |\n|---|---|---|---|\n",
        n = METRICS.len(),
        series = HOSTS * METRICS.len(),
    );
    for row in &rows {
        let per = row.bytes as f64 / samples as f64;
        out.push_str(&format!(
            "| {} | {:.1} MiB | {per:.2} | {:.1}× |\n",
            row.setup,
            row.bytes as f64 / 1_048_576.0,
            per / theirs
        ));
    }
    out.push_str(&format!(
        "\nOf microdash's compacted figure, the chunk data itself (`apiserver/src/storage/chunk.rs`: timestamps \
         as offsets from the grid of the chunk's median step or deviations from it, values as decimal deltas divided by their common divisor or as \
         XOR, each column in the cheapest of its integer codes) takes, in bytes per sample: raw {:.2}, 1m \
         rollups {:.2}, 5m rollups {:.2}; the rest is SQLite's pages and indexes around them ({:.2} of it in \
         free pages), and the series. The files: {}. The largest tables and indexes in the file: {}. \
         docs/storage.md says what comes next.\n",
        split[0].1,
        split[1].1,
        split[2].1,
        free_bytes as f64 / samples as f64,
        compacted_files.iter().map(|(name, bytes)| format!("`{name}` {bytes} bytes")).collect::<Vec<_>>().join(", "),
        pages,
    ));
    Ok(out)
}

/// Samples of a corpus, posted to microdash's bulk API 5000 at a time (`{"samples":[…]}`).
pub(crate) struct BulkSender<'a> {
    http: &'a reqwest::Client,
    url: String,
    token: &'a str,
    body: Vec<u8>,
    samples: usize,
}

impl<'a> BulkSender<'a> {
    pub(crate) fn new(http: &'a reqwest::Client, base: &str, token: &'a str) -> Self {
        let url = format!("{base}/api/v1/metrics/bulk");
        BulkSender { http, url, token, body: Vec::with_capacity(5000 * 120), samples: 0 }
    }

    /// Adds a sample of `metric{host="h<host>"}`; posts the body once it holds 5000.
    pub(crate) async fn push(&mut self, metric: &str, host: usize, ts: i64, value: f64) -> Result<()> {
        self.body.extend_from_slice(if self.samples == 0 { b"{\"samples\":[" as &[u8] } else { b"," });
        let sample =
            format!("{{\"metric\":\"{metric}\",\"value\":{value},\"ts\":{ts},\"labels\":{{\"host\":\"h{host}\"}}}}");
        self.body.extend_from_slice(sample.as_bytes());
        self.samples += 1;
        if self.samples == 5000 { self.flush().await } else { Ok(()) }
    }

    /// Posts what is left.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if self.samples == 0 {
            return Ok(());
        }
        self.body.extend_from_slice(b"]}");
        self.samples = 0;
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(self.token)
            .header("content-type", "application/json")
            .body(std::mem::take(&mut self.body))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("microdash refused a bulk request: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        Ok(())
    }
}

/// `microdash compact` on the SQLite database of a stopped bench server's folder.
pub(crate) fn compact_offline(server_bin: &Path, dir: &Path) -> Result<()> {
    let status = std::process::Command::new(server_bin)
        .arg("compact")
        .env("MICRODASH_DATABASE_URL", format!("sqlite://{}", dir.join("bench.db").display()))
        .stderr(std::process::Stdio::null())
        .status()
        .context("running microdash compact")?;
    if !status.success() {
        bail!("microdash compact failed: {status}");
    }
    Ok(())
}

/// One series into VictoriaMetrics' `/api/v1/import` (a JSON line).
pub(crate) async fn victoria_import(
    http: &reqwest::Client,
    base: &str,
    metric: &str,
    host: usize,
    points: &[(i64, f64)],
) -> Result<()> {
    let values: Vec<String> = points.iter().map(|p| p.1.to_string()).collect();
    let stamps: Vec<String> = points.iter().map(|p| p.0.to_string()).collect();
    let line = format!(
        "{{\"metric\":{{\"__name__\":\"{metric}\",\"host\":\"h{host}\"}},\"values\":[{}],\"timestamps\":[{}]}}\n",
        values.join(","),
        stamps.join(",")
    );
    let r = http.post(format!("{base}/api/v1/import")).body(line).send().await?;
    if !r.status().is_success() {
        bail!("VictoriaMetrics refused an import: {}", r.status());
    }
    Ok(())
}

/// Raw points microdash returns for one series of the corpus over the day.
async fn microdash_points(http: &reqwest::Client, base: &str, token: &str, end: i64) -> Result<usize> {
    let from = end - POINTS as i64 * STEP_MS;
    let body: Value = http
        .get(format!("{base}/api/v1/query?metric=node_cpu_percent&match=host=h0&from={from}&to={end}&resolution=raw"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(body["series"][0]["points"].as_array().map_or(0, Vec::len))
}
