//! Bytes per sample on disk (issue 17): a day of data at 10 s into microdash on SQLite and into
//! VictoriaMetrics, then every file of each data directory after a clean stop. microdash is
//! measured twice: before compaction (the row store: raw rows and rollups) and after
//! `microdash compact` (chunks and rollups), which a running server does by itself every
//! retention interval.
//!
//! Two corpora, each measured the same way:
//! - **synthetic**: 100 hosts × 10 busy metrics = 1000 series, 8.64 M samples (gauges with one or
//!   two decimals, byte gauges, counters of bytes and of CPU seconds, a slowly changing
//!   free-space gauge; timestamps with a few ms of jitter), noisy on purpose: its counters move
//!   by uniform random increments, ~1.32 bytes a sample of information before any rollup;
//! - **agent**: what `microdash-agent` really sends. `corpus/agent-hour.jsonl.gz` is an hour of
//!   its output on a Linux VM at a 10 s interval (every series it sent, as stored: see
//!   `corpus/README.md`); each of ⌈1000 / series⌉ hosts makes a day of it by drawing the hour's
//!   10 s steps at random with replacement (`replay`), its timestamps on the agent's grid with
//!   the offsets the recorded collections had. A replay of the hour as it was would
//!   repeat it 24 times a day, and VictoriaMetrics' zstd finds such repeats (a first try measured
//!   it at 0.17 bytes a sample on a replayed 4-minute recording): a bootstrap keeps each step's
//!   increments and clock offsets as recorded, not its long stretches.

use std::collections::BTreeMap;
use std::io::Read;
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

/// One series of a corpus: its metric, its labels (`host` among them) and its points in time
/// order.
pub(crate) struct Series {
    metric: String,
    labels: BTreeMap<String, String>,
    points: Vec<(i64, f64)>,
}

/// A label set with one label, `host="h<host>"`.
fn host_labels(host: usize) -> BTreeMap<String, String> {
    BTreeMap::from([("host".to_string(), format!("h{host}"))])
}

/// A corpus: its series (every one with `POINTS` points, all before `end`) and what the report
/// says of it.
struct Corpus {
    name: &'static str,
    description: String,
    series: Vec<Series>,
}

impl Corpus {
    fn synthetic(end: i64) -> Corpus {
        let series = (0..METRICS.len())
            .flat_map(|m| (0..HOSTS).map(move |h| (m, h)))
            .map(|(m, h)| Series { metric: METRICS[m].into(), labels: host_labels(h), points: series(m, h, end) })
            .collect();
        Corpus {
            name: "synthetic",
            description: format!(
                "{HOSTS} hosts × {n} busy metrics = {total} series at 10 s (gauges with one or two decimals, byte \
                 gauges moving in pages, counters of bytes and of CPU seconds moving by uniform random \
                 increments, a free-space gauge that changes now and then; timestamps with 0–6 ms of jitter): \
                 noisy on purpose, ~1.32 bytes a sample of information in the raw samples alone \
                 (docs/storage.md, \"The chunk format\")",
                n = METRICS.len(),
                total = HOSTS * METRICS.len(),
            ),
            series,
        }
    }

    /// The recorded hour of `microdash-agent` (`corpus/agent-hour.jsonl.gz`) made into a day of
    /// ⌈1000 / its series⌉ hosts (see the module's doc).
    fn agent(end: i64) -> Result<Corpus> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&include_bytes!("../corpus/agent-hour.jsonl.gz")[..])
            .read_to_string(&mut text)
            .context("reading corpus/agent-hour.jsonl.gz")?;
        let mut recorded = Vec::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).context("a line of corpus/agent-hour.jsonl.gz")?;
            let numbers = |key: &str| -> Result<&Vec<Value>> {
                v[key].as_array().with_context(|| format!("`{key}` of a recorded series"))
            };
            let ts: Vec<i64> = numbers("ts")?.iter().filter_map(Value::as_i64).collect();
            // Strings, so the doubles read back exactly whatever the JSON parser's rounding.
            let values = numbers("values")?
                .iter()
                .map(|v| v.as_str().context("a recorded value")?.parse::<f64>().context("a recorded value"))
                .collect::<Result<Vec<f64>>>()?;
            let metric = v["metric"].as_str().context("`metric` of a recorded series")?.to_string();
            let labels: BTreeMap<String, String> =
                serde_json::from_value(v["labels"].clone()).context("`labels` of a recorded series")?;
            if ts.len() != values.len() {
                bail!("{metric}: {} timestamps, {} values", ts.len(), values.len());
            }
            recorded.push((metric, labels, ts, values));
        }
        // Only the series the agent sent at every collection of the hour.
        let n = recorded.iter().map(|r| r.2.len()).max().context("an empty corpus")?;
        recorded.retain(|r| r.2.len() == n);
        if n < 2 {
            bail!("corpus/agent-hour.jsonl.gz holds {n} collection(s); a day needs the steps between two");
        }
        let hosts = 1000usize.div_ceil(recorded.len());
        let mut series = Vec::new();
        for host in 0..hosts {
            let draws = draws(n, host, POINTS);
            for (metric, labels, ts, values) in &recorded {
                let mut labels = labels.clone();
                labels.insert("host".into(), format!("h{host}"));
                series.push(Series {
                    metric: metric.clone(),
                    labels,
                    points: replay(&draws, host * n / hosts, ts, values, end),
                });
            }
        }
        Ok(Corpus {
            name: "agent",
            description: format!(
                "what `microdash-agent` sends: an hour of its output on a Linux VM at a 10 s interval \
                 (`bench/corpus/agent-hour.jsonl.gz`, {n} collections of {per_host} series: CPU, memory, \
                 filesystems, disks, network, pressure, processes, sockets as the agent reads them), made \
                 into a day for each of {hosts} hosts ({total} series) by drawing the recorded 10 s steps \
                 at random with replacement, the same draws for all series of a host: counters add the \
                 drawn increments, gauges move by the drawn changes within the range the hour saw, \
                 timestamps keep the agent's 10 s grid with the drawn collection's offset from it \
                 (`bench/src/disk.rs`, `bench/corpus/README.md`). No stretch \
                 of the hour repeats as a whole, so neither store is handed repeats to find",
                per_host = recorded.len(),
                total = series.len(),
            ),
            series,
        })
    }
}

/// The steps a host takes through the recorded hour: `len - 1` indexes in `1..n`, each naming
/// the recorded step from collection `j - 1` to `j`, drawn with replacement (a bootstrap). Every
/// series of the host takes the same draws, so a busy step is busy for all its counters, as
/// when the agent collects them together.
fn draws(n: usize, host: usize, len: usize) -> Vec<usize> {
    let mut rng = Rng(0x517c_c1b7_2722_0a95 ^ (host as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (1..len).map(|_| 1 + (rng.next() % (n as u64 - 1)) as usize).collect()
}

/// The smallest `e ≤ 6` with every value exactly `m / 10^e` (|m| < 2^53), if any.
fn decimal_scale(values: &[f64]) -> Option<i32> {
    (0..=6).find(|&e| {
        let p = 10f64.powi(e);
        values.iter().all(|&v| (v * p).abs() < 9.0e15 && (v * p).round() / p == v)
    })
}

/// A day of one recorded series (`ts`, `values`, `n ≥ 2` collections) from collection `start`
/// on, taking the recorded steps `draws` names, the last point before `end`:
/// - timestamps keep the agent's clock: a grid at the hour's median gap, each point off it by
///   what the collection its step ends at was off (the agent's ticker keeps to its grid; drawing
///   gaps instead would let the offsets wander);
/// - a series that never falls is a counter: it adds each step's recorded increment (in
///   integer units of its decimals when every value has at most 6; else as doubles);
/// - a gauge whose values are decimals moves by each step's recorded change, turned back
///   where it would leave the range the recording saw, or not at all where that would leave it
///   too (so it stays on the recorded grid of values and within its bounds);
/// - any other gauge takes the recorded value the step ends at.
fn replay(draws: &[usize], start: usize, ts: &[i64], values: &[f64], end: i64) -> Vec<(i64, f64)> {
    let scale = decimal_scale(values);
    let counter = values.windows(2).all(|w| w[1] >= w[0]);
    let p = 10f64.powi(scale.unwrap_or(0));
    let units: Vec<i64> = values.iter().map(|v| (v * p).round() as i64).collect();
    let (low, high) = (units.iter().min().copied().unwrap_or(0), units.iter().max().copied().unwrap_or(0));
    let mut gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let step = gaps[gaps.len() / 2];
    let offsets: Vec<i64> = ts.iter().enumerate().map(|(j, t)| t - ts[0] - j as i64 * step).collect();
    let base = end - STEP_MS / 2 - draws.len() as i64 * step - offsets.iter().max().copied().unwrap_or(0);
    let (mut unit, mut value) = (units[start], values[start]);
    let mut points = Vec::with_capacity(draws.len() + 1);
    points.push((base + offsets[start], value));
    for (k, &j) in draws.iter().enumerate() {
        value = match (scale, counter) {
            (Some(_), _) => {
                let step = units[j] - units[j - 1];
                let inside = |u: i64| (low..=high).contains(&u);
                unit += if counter || inside(unit + step) {
                    step
                } else if inside(unit - step) {
                    -step
                } else {
                    0
                };
                unit as f64 / p
            }
            (None, true) => value + (values[j] - values[j - 1]),
            (None, false) => values[j],
        };
        points.push((base + (k as i64 + 1) * step + offsets[j], value));
    }
    points
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

pub async fn run(server_bin: &Path, victoria_bin: &Path, corpora: &[String]) -> Result<String> {
    // The day ends at the start of the newest closed chunk window, so all of it compacts.
    let now = microdash_testkit::now_ms();
    let end = {
        let aligned = now - 10 * 60_000;
        aligned - aligned.rem_euclid(2 * 3_600_000)
    };
    let mut out = String::from(
        "## Bytes per sample on disk, next to VictoriaMetrics\n\n\
         Two corpora of a day at 10 s, each sent to both. Every file of the data directory is counted after \
         a clean stop (SIGTERM). microdash takes the day through `POST /api/v1/metrics/bulk` (5000 samples a \
         request, in time order as agents send), is measured once as it stood (raw rows and rollups), then \
         after `microdash compact` (a running server compacts each closed 2 h window by itself, 10 min after \
         it closes); VictoriaMetrics through `/api/v1/import`, a line a series. Both hold every point of a \
         series afterwards (checked).\n",
    );
    for name in corpora {
        let corpus = match name.as_str() {
            "synthetic" => Corpus::synthetic(end),
            "agent" => Corpus::agent(end)?,
            other => bail!("--disk-corpora: no corpus {other:?} (synthetic, agent)"),
        };
        out.push_str(&measure(server_bin, victoria_bin, &corpus, end).await?);
    }
    Ok(out)
}

/// One corpus into microdash (row store, then compacted) and VictoriaMetrics: its part of the report.
async fn measure(server_bin: &Path, victoria_bin: &Path, corpus: &Corpus, end: i64) -> Result<String> {
    let samples = corpus.series.iter().map(|s| s.points.len() as u64).sum::<u64>();
    let probe = &corpus.series[0];
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    let name = corpus.name;

    eprintln!("[disk] {name}: microdash (SQLite): {samples} samples in {} series", corpus.series.len());
    // No compaction while the day comes in: the first measure is the row store as it stood.
    let mut server = start_server_with(server_bin, MqttMode::Off, &[("MICRODASH_RETENTION_INTERVAL", "1h".into())])?;
    let started = Instant::now();
    // As agents send: every series' sample of one moment together, 5000 samples a request.
    let mut bulk = BulkSender::new(&http, &server.base, &server.token);
    let labels: Vec<String> =
        corpus.series.iter().map(|s| serde_json::to_string(&s.labels)).collect::<Result<_, _>>()?;
    for i in 0..POINTS {
        for (series, labels) in corpus.series.iter().zip(&labels) {
            let (ts, v) = series.points[i];
            bulk.push_series(&series.metric, labels, ts, v).await?;
        }
    }
    bulk.flush().await?;
    let ingest_s = started.elapsed().as_secs_f64();
    let stored = microdash_points(&http, &server.base, &server.token, probe, end).await?;
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
    let stored = microdash_points(&http, &server.process.base, &server.token, probe, end).await?;
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

    eprintln!("[disk] {name}: VictoriaMetrics: {samples} samples");
    let vm = storage::start_victoria(victoria_bin).await?;
    for series in &corpus.series {
        victoria_import_series(&http, &vm.base, &series.metric, &series.labels, &series.points).await?;
    }
    http.get(format!("{}/internal/force_flush", vm.base)).send().await?;
    let exported = http
        .get(format!("{}/api/v1/export", vm.base))
        .query(&[("match[]", victoria_selector(probe).as_str()), ("start", "0")])
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
        "\n### Corpus \"{name}\": {description}\n\n{samples} samples. microdash took the day in {ingest_s:.0} s; \
         `microdash compact` took {compact_s:.1} s.\n\n\
         | setup | bytes on disk | bytes per sample | vs VM |\n|---|---|---|---|\n",
        description = corpus.description,
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
        self.push_series(metric, &format!("{{\"host\":\"h{host}\"}}"), ts, value).await
    }

    /// Adds a sample of `metric` with `labels` (a JSON object); posts the body once it holds 5000.
    async fn push_series(&mut self, metric: &str, labels: &str, ts: i64, value: f64) -> Result<()> {
        self.body.extend_from_slice(if self.samples == 0 { b"{\"samples\":[" as &[u8] } else { b"," });
        let sample = format!("{{\"metric\":\"{metric}\",\"value\":{value},\"ts\":{ts},\"labels\":{labels}}}");
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
    victoria_import_series(http, base, metric, &host_labels(host), points).await
}

/// One series of `metric` with `labels` into VictoriaMetrics' `/api/v1/import`.
async fn victoria_import_series(
    http: &reqwest::Client,
    base: &str,
    metric: &str,
    labels: &BTreeMap<String, String>,
    points: &[(i64, f64)],
) -> Result<()> {
    let mut name = labels.clone();
    name.insert("__name__".into(), metric.into());
    let values: Vec<String> = points.iter().map(|p| p.1.to_string()).collect();
    let stamps: Vec<String> = points.iter().map(|p| p.0.to_string()).collect();
    let line = format!(
        "{{\"metric\":{},\"values\":[{}],\"timestamps\":[{}]}}\n",
        serde_json::to_string(&name)?,
        values.join(","),
        stamps.join(",")
    );
    let r = http.post(format!("{base}/api/v1/import")).body(line).send().await?;
    if !r.status().is_success() {
        bail!("VictoriaMetrics refused an import: {}", r.status());
    }
    Ok(())
}

/// The selector of exactly `series` (`{__name__="cpu.usage",cpu="0",host="h0"}`): the metric's
/// name may hold dots.
fn victoria_selector(series: &Series) -> String {
    let labels: Vec<String> = series.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{__name__={:?},{}}}", series.metric, labels.join(","))
}

/// Raw points microdash returns for `probe` (matched on every label) over the day.
async fn microdash_points(http: &reqwest::Client, base: &str, token: &str, probe: &Series, end: i64) -> Result<usize> {
    // An hour of room before the day: a recorded clock's step may be a little over 10 s.
    let from = end - POINTS as i64 * STEP_MS - 3_600_000;
    let mut query = vec![
        ("metric", probe.metric.clone()),
        ("from", from.to_string()),
        ("to", end.to_string()),
        ("resolution", "raw".into()),
    ];
    query.extend(probe.labels.iter().map(|(k, v)| ("match", format!("{k}={v}"))));
    let body: Value =
        http.get(format!("{base}/api/v1/query")).query(&query).bearer_auth(token).send().await?.json().await?;
    let series = body["series"].as_array().map_or(&[][..], Vec::as_slice);
    if series.len() != 1 {
        bail!("microdash answered {} series for the probe {} {:?}", series.len(), probe.metric, probe.labels);
    }
    Ok(series[0]["points"].as_array().map_or(0, Vec::len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_name_recorded_steps_and_differ_between_hosts() {
        let a = draws(360, 0, POINTS);
        assert_eq!(a.len(), POINTS - 1);
        assert!(a.iter().all(|&j| (1..360).contains(&j)));
        assert_ne!(a, draws(360, 1, POINTS));
        assert_eq!(a, draws(360, 0, POINTS), "the same corpus every run");
    }

    #[test]
    fn a_replayed_counter_adds_the_drawn_increments_and_a_gauge_stays_in_its_range() {
        // The median gap 10 000; the third collection 1 ms off the grid.
        let ts = [0, 10_000, 20_001, 30_000];
        let end = 1_000_000_000;
        let draws = [3, 1, 3, 2];
        // Increments 0.25, 0.25, 1.25 from 10.5.
        let counter = [10.5, 10.75, 11.0, 12.25];
        let day = replay(&draws, 1, &ts, &counter, end);
        let values: Vec<f64> = day.iter().map(|p| p.1).collect();
        assert_eq!(values, [10.75, 12.0, 12.25, 13.5, 13.75]);
        let gaps: Vec<i64> = day.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert_eq!(gaps, [10_000, 10_000, 10_000, 10_001]);
        assert!(day.last().unwrap().0 < end);

        // From 3 within [1, 3]: +0.5 turns back to -0.5; -2 fits neither way and stays; +0.5;
        // +1 turns back to -1.
        let gauge = [3.0, 1.0, 2.0, 2.5];
        let values: Vec<f64> = replay(&draws, 0, &ts, &gauge, end).iter().map(|p| p.1).collect();
        assert_eq!(values, [3.0, 2.5, 2.5, 3.0, 2.0]);
        // Cumulative floats that no decimal scale holds add their recorded increments as doubles.
        assert_eq!(decimal_scale(&[0.1 + 0.2]), None);
        assert_eq!(decimal_scale(&[1.0, 2.5, 3.25]), Some(2));
    }
}
