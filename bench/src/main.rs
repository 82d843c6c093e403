//! `make bench`: starts release `microdash` processes and measures bulk ingest and
//! ingest-to-queryable per storage backend and queue (next to VictoriaMetrics), alerting
//! latency (next to Prometheus + Alertmanager), and MQTT ingest through Mosquitto + the bridge
//! and through the embedded broker (next to Mosquitto's own drain rate), and the agent's
//! footprint (next to node_exporter). Each section replaces its own part of
//! `docs/benchmarks.md`; `--only storage|alerts|alert-scale|mqtt|agent|live|remote-write|disk|query` runs one.
//!
//! Client and server share this machine's cores; the client pre-builds every body so its own
//! work per request is a memcpy and the HTTP exchange.

mod agent;
mod alert_scale;
mod alerts;
mod disk;
mod live;
mod mqtt;
mod query;
mod remote_write;
mod report;
mod storage;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// HTTP bulk ingest and ingest-to-queryable per backend and queue, next to VictoriaMetrics.
    #[value(alias = "http")]
    Storage,
    Mqtt,
    Alerts,
    /// Alerting with 10 000 and 100 000 rules: rule writes, loading, breach → webhook, memory.
    #[value(alias = "alert_scale")]
    AlertScale,
    /// Ingest → SSE received, and in Chromium first chart painted and ingest → point painted.
    Live,
    /// The agent's CPU per collection and memory, next to prometheus-node-exporter.
    Agent,
    /// Prometheus remote_write ingest, next to VictoriaMetrics' remote_write endpoint.
    #[value(alias = "remote_write")]
    RemoteWrite,
    /// Bytes per sample on disk after a day of agent-like data, next to VictoriaMetrics.
    Disk,
    /// 30-day and 1-day range queries over 100 series, next to VictoriaMetrics.
    Query,
}

#[derive(Parser)]
struct Args {
    /// Run one section only (default: all).
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// The Mosquitto binary for the MQTT section.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// Single-sample MQTT messages per run.
    #[arg(long, default_value_t = 100_000)]
    mqtt_messages: usize,
    /// Bulk MQTT messages per run.
    #[arg(long, default_value_t = 30_000)]
    mqtt_bulk_messages: usize,
    /// Samples per bulk MQTT message.
    #[arg(long, default_value_t = 50)]
    mqtt_bulk_size: usize,
    /// MQTT measurements are repeated this many times; the report gives medians.
    #[arg(long, default_value_t = 3)]
    mqtt_rounds: usize,
    /// The server binary to measure.
    #[arg(long, default_value = "target/release/microdash")]
    server: PathBuf,
    /// Seconds of sustained ingest per run.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Samples per bulk request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Concurrent ingest connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Latency probes (one sample each, then a query until it is visible).
    #[arg(long, default_value_t = 500)]
    probes: usize,
    /// Breaches measured one after another on microdash alone.
    #[arg(long, default_value_t = 500)]
    alert_breaches: usize,
    /// Breaches sent through microdash and Prometheus + Alertmanager side by side.
    #[arg(long, default_value_t = 20)]
    peer_breaches: usize,
    /// Seconds over which the side-by-side breaches are spread (covers every phase of the
    /// peer's 15 s scrape and evaluation cycles).
    #[arg(long, default_value_t = 60)]
    peer_spread: u64,
    /// Rule counts of the alert-scale section.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
    alert_scale_rules: Vec<usize>,
    /// Breaches per alert-scale measurement.
    #[arg(long, default_value_t = 100)]
    alert_scale_probes: usize,
    /// Rules written through the API in the alert-scale burst.
    #[arg(long, default_value_t = 10_000)]
    alert_scale_burst: usize,
    /// PostgreSQL admin URL: a fresh database is created on it (unset = not measured).
    #[arg(long, env = "MICRODASH_TEST_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// MariaDB/MySQL admin URL: a fresh database is created on it (unset = not measured).
    #[arg(long, env = "MICRODASH_TEST_MYSQL_URL")]
    mysql_url: Option<String>,
    /// Redis for the api + worker setups; its database 7 is flushed (unset = not measured).
    #[arg(long, env = "MICRODASH_TEST_REDIS_URL")]
    redis_url: Option<String>,
    /// The VictoriaMetrics binary (Debian package victoria-metrics).
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    victoria_metrics: PathBuf,
    /// Probes per ingest → SSE latency run of the live section.
    #[arg(long, default_value_t = 500)]
    live_probes: usize,
    /// Samples/s of the bulk ingest under which the live section measures again.
    #[arg(long, default_value_t = 100_000.0)]
    live_load_rate: f64,
    /// Browser navigations (each in a fresh context) timed to the first chart painted, idle;
    /// half as many under the bulk ingest. With 100 the p99 is the second slowest, not the
    /// slowest (the browser's first navigation is most often that one).
    #[arg(long, default_value_t = 100)]
    live_navigations: usize,
    /// Browser ingest → point painted probes.
    #[arg(long, default_value_t = 100)]
    live_browser_probes: usize,
    /// The e2e test folder, whose node_modules hold Playwright (the live section's browser).
    #[arg(long, default_value = "tests/e2e")]
    e2e_dir: PathBuf,
    /// The agent binary for the agent section.
    #[arg(long, default_value = "target/release/microdash-agent")]
    agent: PathBuf,
    /// Debian's node_exporter, measured beside the agent.
    #[arg(long, default_value = "/usr/bin/prometheus-node-exporter")]
    node_exporter: PathBuf,
    /// Agent collections (and node_exporter scrapes) measured.
    #[arg(long, default_value_t = 60)]
    agent_collections: usize,
    /// Milliseconds between agent collections and between node_exporter scrapes.
    #[arg(long, default_value_t = 1000)]
    agent_interval_ms: u64,
    /// Storage section: measure only the setups whose name contains one of these (case
    /// insensitive, e.g. `redis`); their rows replace the same rows of the report, the others
    /// and VictoriaMetrics' row stay as they were.
    #[arg(long, value_delimiter = ',')]
    storage_setups: Vec<String>,
    /// Disk section: the corpora to measure (`synthetic`, `agent`); a run of one writes a section
    /// with that corpus only.
    #[arg(long, value_delimiter = ',', default_values_t = ["synthetic".to_string(), "agent".to_string()])]
    disk_corpora: Vec<String>,
    /// Where to write the report.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
}

/// A measured `microdash serve` (the workspace's test kit), killed when dropped, and its
/// temporary folder (removed after it).
pub struct Server {
    process: microdash_testkit::Server,
    pub base: String,
    pub token: String,
    /// The embedded MQTT broker's address, when it runs.
    mqtt: Option<String>,
    _dir: tempfile::TempDir,
}

/// How the measured server takes MQTT.
enum MqttMode {
    Off,
    Embedded,
    /// A bridge from the broker at this URL.
    Bridge(String),
}

fn start_server(bin: &Path, mqtt: MqttMode) -> Result<Server> {
    start_server_with(bin, mqtt, &[])
}

/// Where a measured deployment keeps its data; `None` = SQLite in a temporary folder, and the
/// in-process queue.
#[derive(Default)]
pub struct Setup {
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// PostgreSQL or MariaDB with the in-memory head and its log in a local folder
    /// (`head_wal_dir`); SQLite keeps its log beside the file anyway.
    pub head_wal: bool,
}

/// One process, or an api process and a worker process sharing a Redis queue.
pub struct Deployment {
    pub api: Server,
    pub worker: Option<Server>,
    /// The head's log folder, removed with the deployment.
    _head_wal_dir: Option<tempfile::TempDir>,
}

impl Deployment {
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.api).chain(self.worker.as_ref()).map(|s| s.process.pid()).collect()
    }
}

pub fn start_deployment(bin: &Path, setup: &Setup) -> Result<Deployment> {
    let mut env: Vec<(&str, String)> = Vec::new();
    if let Some(url) = &setup.database_url {
        env.push(("MICRODASH_DATABASE_URL", url.clone()));
    }
    let Some(redis) = &setup.redis_url else {
        let head_wal_dir = match setup.head_wal {
            true => Some(tempfile::tempdir()?),
            false => None,
        };
        if let Some(dir) = &head_wal_dir {
            env.push(("MICRODASH_HEAD_WAL_DIR", dir.path().display().to_string()));
        }
        let api = start_server_with(bin, MqttMode::Off, &env)?;
        return Ok(Deployment { api, worker: None, _head_wal_dir: head_wal_dir });
    };
    env.push(("MICRODASH_REDIS_URL", redis.clone()));
    let mut worker_env = env.clone();
    worker_env.push(("MICRODASH_ROLE", "worker".into()));
    // The worker first: it applies the migrations and creates the default tenant.
    let worker = start_server_with(bin, MqttMode::Off, &worker_env)?;
    env.push(("MICRODASH_ROLE", "api".into()));
    let mut api = start_server_with(bin, MqttMode::Off, &env)?;
    if api.token.is_empty() {
        api.token = worker.token.clone();
    }
    Ok(Deployment { api, worker: Some(worker), _head_wal_dir: None })
}

fn start_server_with(bin: &Path, mqtt: MqttMode, env: &[(&str, String)]) -> Result<Server> {
    if !bin.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p microdash`", bin.display());
    }
    let dir = tempfile::tempdir()?;
    let mut serve = microdash_testkit::Serve::new(bin, dir.path())
        .env("MICRODASH_DATABASE_URL", format!("sqlite://{}", dir.path().join("bench.db").display()))
        .log("warn,microdash::server=info,microdash::mqtt=info,microdash::alerting::engine=info")
        .env("MICRODASH_TENANT_RATE_LIMIT", "0")
        // The bench's webhook receivers listen on loopback, which webhooks may not reach by
        // default (the outbound policy).
        .env("MICRODASH_OUTBOUND_ALLOW", "127.0.0.0/8,::1");
    match &mqtt {
        MqttMode::Off => {}
        MqttMode::Embedded => serve = serve.with_mqtt(),
        MqttMode::Bridge(url) => {
            serve = serve
                .env("MICRODASH_MQTT_URL", url)
                .env("MICRODASH_MQTT_CLIENT_ID", format!("bench-{}", std::process::id()))
        }
    }
    let process = serve.envs(env).start().map_err(|e| anyhow::anyhow!("starting the server: {e}"))?;
    Ok(Server {
        base: process.base.clone(),
        token: process.token.clone(),
        mqtt: process.mqtt.clone(),
        process,
        _dir: dir,
    })
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The most the process ever had resident (the kernel's high-water mark), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// CPU time the process has used so far (user and system, all its threads), in seconds.
/// `/proc/{pid}/stat` counts it in USER_HZ ticks, which Linux fixes at 100.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis come fields 3 (state) onwards: utime is field
    // 14 and stime field 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A pre-built bulk body whose timestamps can be moved forward in place, so every request
/// carries new samples (no overwrites) without the client re-serializing JSON.
struct Body {
    bytes: Vec<u8>,
    /// Byte offsets of the 13-digit `ts` values and their timestamps in round 0.
    ts_at: Vec<(usize, i64)>,
    /// A remote_write body (compressed: encoded again for each round): its batch and first ts.
    remote_write: Option<(usize, i64)>,
}

impl Body {
    /// `batch` samples over 100 series of one metric, from `start_ts`, 100 series per ms.
    fn new(batch: usize, start_ts: i64, dc: &str) -> Body {
        let mut bytes = Vec::with_capacity(batch * 110);
        let mut ts_at = Vec::with_capacity(batch);
        bytes.extend_from_slice(b"{\"samples\":[");
        for i in 0..batch {
            if i > 0 {
                bytes.push(b',');
            }
            let ts = start_ts + (i / 100) as i64;
            bytes.extend_from_slice(format!("{{\"metric\":\"bench.cpu\",\"value\":{},\"ts\":", i % 100).as_bytes());
            ts_at.push((bytes.len(), ts));
            bytes.extend_from_slice(format!("{ts:013}").as_bytes());
            bytes.extend_from_slice(format!(",\"labels\":{{\"host\":\"h{}\",\"dc\":\"{dc}\"}}}}", i % 100).as_bytes());
        }
        bytes.extend_from_slice(b"]}");
        Body { bytes, ts_at, remote_write: None }
    }

    /// The same samples as a remote_write request.
    fn remote_write(batch: usize, start_ts: i64) -> Body {
        Body { bytes: Vec::new(), ts_at: Vec::new(), remote_write: Some((batch, start_ts)) }
    }

    /// The same samples as VictoriaMetrics import lines.
    fn victoria(batch: usize, start_ts: i64, dc: &str) -> Body {
        let (bytes, ts_at) = storage::victoria_body(batch, start_ts, dc);
        Body { bytes, ts_at, remote_write: None }
    }

    /// The body with every timestamp moved `shift` ms forward.
    fn shifted(&self, shift: i64) -> Vec<u8> {
        if let Some((batch, start_ts)) = self.remote_write {
            return remote_write::body(batch, start_ts + shift);
        }
        let mut out = self.bytes.clone();
        for &(at, ts) in &self.ts_at {
            out[at..at + 13].copy_from_slice(format!("{:013}", ts + shift).as_bytes());
        }
        out
    }
}

/// Where ingest goes: microdash's bulk API, or VictoriaMetrics' import API.
pub enum Target {
    Microdash {
        base: String,
        token: String,
    },
    Victoria {
        base: String,
    },
    /// Prometheus remote_write 1.0 (snappy protobuf) to `{base}/api/v1/write`: microdash with
    /// its token, or VictoriaMetrics without one.
    RemoteWrite {
        base: String,
        token: Option<String>,
    },
    /// microdash's `/api/v1/import`: VictoriaMetrics' JSON lines, the very bodies VictoriaMetrics
    /// is sent. Its ingest-to-queryable probes are `Microdash`'s.
    Import {
        base: String,
        token: String,
    },
}

impl Target {
    fn bulk_url(&self) -> String {
        match self {
            Target::Microdash { base, .. } => format!("{base}/api/v1/metrics/bulk"),
            Target::Victoria { base } | Target::Import { base, .. } => format!("{base}/api/v1/import"),
            Target::RemoteWrite { base, .. } => format!("{base}/api/v1/write"),
        }
    }

    fn request(&self, http: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
        match self {
            Target::Microdash { token, .. } | Target::Import { token, .. } => http.post(url).bearer_auth(token),
            Target::Victoria { .. } => http.post(url),
            Target::RemoteWrite { token, .. } => {
                let request = http
                    .post(url)
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0");
                match token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
            }
        }
    }

    /// VictoriaMetrics answers 204 with no body: every sample of the request was taken; so does
    /// microdash's import.
    fn answers_204(&self) -> bool {
        matches!(self, Target::Victoria { .. } | Target::RemoteWrite { token: None, .. } | Target::Import { .. })
    }
}

/// The shape of one sustained-ingest run.
#[derive(Clone, Copy)]
pub struct Load {
    connections: usize,
    batch: usize,
    seconds: u64,
    /// Total samples/s to pace at; `None` sends as fast as answers come back.
    rate: Option<f64>,
    /// How long before now the timestamps start (ms): two runs on one server need ranges far
    /// apart, or the second overwrites the first's samples (refused requests move the
    /// timestamps forward too).
    ago_ms: i64,
    /// The `dc` label of its 100 series: a second run with another writes other series, so it
    /// can send fresh timestamps too.
    dc: &'static str,
}

pub struct IngestResult {
    pub accepted: u64,
    pub samples_per_sec: f64,
    pub requests: u64,
    pub errors: u64,
    /// Of the errors, the 503 answers (overloaded) and how many of those carried Retry-After.
    pub overloaded: u64,
    pub overloaded_with_retry_after: u64,
    pub peak_rss_mib: f64,
    /// CPU time the measured processes used from the first request to the last answer.
    pub cpu_seconds: f64,
}

pub async fn sustained_ingest(target: &Target, pids: &[u32], load: Load) -> Result<IngestResult> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(load.connections).build()?;
    let per_conn = 64;
    // `ago_ms` 540 000 sends fresh samples, as agents do (microdash keeps those in its in-memory
    // head): the connections start `SPACING_MS` apart from 9 min ago, each moves about that far
    // on in a run, and none may get past the server's `max_future`. Days ago, samples take the
    // late path (rows of closed windows).
    const SPACING_MS: i64 = 180_000;
    const MAX_FUTURE_MS: i64 = 600_000;
    let start_ts = now_ms() - load.ago_ms;
    let most = ((MAX_FUTURE_MS + load.ago_ms - SPACING_MS) / SPACING_MS + 1).max(1);
    if load.connections as i64 > most {
        bail!(
            "--connections {}: each connection's timestamps start {} min after the previous one's, from {} s ago, \
             so the later ones would pass the server's max_future ({} min ahead) and be refused; use at most {most}",
            load.connections,
            SPACING_MS / 60_000,
            load.ago_ms / 1000,
            MAX_FUTURE_MS / 60_000
        );
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let overloaded = Arc::new(AtomicU64::new(0));
    let retry_after = Arc::new(AtomicU64::new(0));
    let span = (per_conn * load.batch / 100 + 1) as i64;
    let prepared: Vec<Vec<Body>> = (0..load.connections)
        .map(|c| {
            (0..per_conn)
                .map(|b| {
                    let ts = start_ts + c as i64 * SPACING_MS + b as i64 * span / per_conn as i64;
                    match target {
                        Target::Microdash { .. } => Body::new(load.batch, ts, load.dc),
                        Target::Victoria { .. } | Target::Import { .. } => Body::victoria(load.batch, ts, load.dc),
                        Target::RemoteWrite { .. } => Body::remote_write(load.batch, ts),
                    }
                })
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let mut tasks = Vec::new();
    let victoria = target.answers_204();
    for bodies in prepared {
        let (http, url) = (http.clone(), target.bulk_url());
        let request = target.request(&http, url);
        let (accepted, requests, errors) = (accepted.clone(), requests.clone(), errors.clone());
        let (overloaded, retry_after) = (overloaded.clone(), retry_after.clone());
        let pace = load.rate.map(|rate| Duration::from_secs_f64(load.batch as f64 * load.connections as f64 / rate));
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut ticker = pace.map(tokio::time::interval);
            while Instant::now() < deadline {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                // Each round moves the timestamps past the previous one: every sample is new.
                let round = (i / bodies.len()) as i64;
                let body = bodies[i % bodies.len()].shifted(round * span);
                i += 1;
                let request = request.try_clone().expect("a body-less builder clones");
                match request.body(body).send().await {
                    Ok(r) if victoria && r.status().as_u16() == 204 => {
                        accepted.fetch_add(load.batch as u64, Ordering::Relaxed);
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status().as_u16() == 202 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        if r.status().as_u16() == 503 {
                            overloaded.fetch_add(1, Ordering::Relaxed);
                            if r.headers().contains_key("retry-after") {
                                retry_after.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            let status = r.status();
                            eprintln!("\n  first error: {status} {}", r.text().await.unwrap_or_default());
                        }
                    }
                    Err(err) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("\n  first error: {err}");
                        }
                    }
                }
            }
        }));
    }
    let cpu = || pids.iter().filter_map(|&pid| cpu_seconds(pid)).sum::<f64>();
    let cpu_before = cpu();
    let started = Instant::now();
    let mut peak = 0u64;
    let mut last_print = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(pids.iter().filter_map(|&pid| rss_kib(pid)).sum());
        if last_print.elapsed() > Duration::from_secs(1) {
            eprint!(
                "\r  ingest: {:>5.1}s  {:>12} samples accepted",
                started.elapsed().as_secs_f64(),
                accepted.load(Ordering::Relaxed)
            );
            last_print = Instant::now();
        }
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu() - cpu_before;
    eprintln!();
    Ok(IngestResult {
        accepted: accepted.load(Ordering::Relaxed),
        samples_per_sec: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        requests: requests.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        overloaded: overloaded.load(Ordering::Relaxed),
        overloaded_with_retry_after: retry_after.load(Ordering::Relaxed),
        peak_rss_mib: peak as f64 / 1024.0,
        cpu_seconds,
    })
}

/// Sends one sample and queries until it is visible; returns the latencies in ms.
pub async fn ingest_to_queryable(target: &Target, probes: usize) -> Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(probes);
    let base_ts = now_ms() - 86_400_000;
    for i in 0..probes {
        let ts = base_ts + i as i64;
        let started = Instant::now();
        let status = match target {
            Target::Microdash { base, token } | Target::Import { base, token } => http
                .post(format!("{base}/api/v1/metrics"))
                .bearer_auth(token)
                .json(&json!({"metric":"bench.probe","value": i as f64,"ts": ts}))
                .send()
                .await?
                .status(),
            Target::Victoria { base } => http
                .post(format!("{base}/api/v1/import"))
                .body(storage::victoria_probe(ts, i as f64))
                .send()
                .await?
                .status(),
            Target::RemoteWrite { .. } => bail!("ingest-to-queryable probes take the JSON and import paths"),
        };
        if !status.is_success() {
            bail!("probe ingest answered {status}");
        }
        loop {
            let found = match target {
                Target::Microdash { base, token } | Target::Import { base, token } => {
                    let q: Value = http
                        .get(format!("{base}/api/v1/query?metric=bench.probe&from={ts}&to={ts}"))
                        .bearer_auth(token)
                        .send()
                        .await?
                        .json()
                        .await?;
                    q["series"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| !s["points"].as_array().is_none_or(|p| p.is_empty())))
                }
                Target::Victoria { base } => {
                    let text = http
                        .get(format!("{base}/api/v1/export"))
                        .query(&[
                            ("match[]", "bench.probe".to_string()),
                            ("start", format!("{:.3}", ts as f64 / 1000.0)),
                            ("end", format!("{:.3}", ts as f64 / 1000.0)),
                        ])
                        .send()
                        .await?
                        .text()
                        .await?;
                    storage::victoria_export_has(&text, ts)
                }
                Target::RemoteWrite { .. } => bail!("ingest-to-queryable probes take the JSON and import paths"),
            };
            if found {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("probe {i} not visible after 10 s");
            }
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| o.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem}, {os}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let stamp = format!("_Measured {} on {}._\n", utc_now(), machine());
    let wants = |section: Section| args.only.is_none() || args.only == Some(section);
    if wants(Section::Storage) {
        let storage_args = storage::StorageArgs {
            postgres_url: args.postgres_url.clone(),
            mysql_url: args.mysql_url.clone(),
            redis_url: args.redis_url.clone(),
            victoria_metrics: args.victoria_metrics.clone(),
            load: Load {
                connections: args.connections,
                batch: args.batch,
                seconds: args.seconds,
                rate: None,
                // Fresh samples: the in-memory head's path (the loaded run writes fresh samples of
                // other series).
                ago_ms: 540_000,
                dc: "eu-1",
            },
            probes: args.probes,
            setups: args.storage_setups.clone(),
        };
        if storage_args.setups.is_empty() {
            let text = storage::run(&args.server, &storage_args).await?;
            report::update(&args.out, "storage", &format!("{text}\n{stamp}"))?;
        } else {
            storage::run_some(&args.server, &storage_args, &args.out, &stamp).await?;
        }
    }
    if wants(Section::Alerts) {
        let server = start_server(&args.server, MqttMode::Off)?;
        let text = alerting_section(&server, &args).await?;
        report::update(&args.out, "alerts", &format!("{text}\n{stamp}"))?;
    }
    if wants(Section::AlertScale) {
        let scale_args = alert_scale::ScaleArgs {
            rule_counts: args.alert_scale_rules.clone(),
            probes: args.alert_scale_probes,
            load_rate: 100_000.0,
            burst: args.alert_scale_burst,
        };
        let text = alert_scale::run(&args.server, &scale_args).await?;
        report::update(&args.out, "alert_scale", &format!("{text}\n{stamp}"))?;
    }
    if wants(Section::Mqtt) {
        eprintln!("MQTT ingest: {} …", args.server.display());
        let mqtt_args = mqtt::MqttArgs {
            mosquitto: args.mosquitto.clone(),
            messages: args.mqtt_messages,
            bulk_messages: args.mqtt_bulk_messages,
            bulk_size: args.mqtt_bulk_size,
            rounds: args.mqtt_rounds,
        };
        let text = mqtt::run(&args.server, &mqtt_args).await?;
        report::update(&args.out, "mqtt", &format!("{text}\n{stamp}"))?;
    }
    if args.only.is_none() || args.only == Some(Section::Live) {
        let live_args = live::LiveArgs {
            probes: args.live_probes,
            load_rate: args.live_load_rate,
            navigations: args.live_navigations,
            browser_probes: args.live_browser_probes,
            e2e_dir: args.e2e_dir.clone(),
        };
        let text = live::run(&args.server, &live_args).await?;
        report::update(&args.out, "live", &format!("{text}\n{stamp}"))?;
    }
    if wants(Section::Agent) {
        eprintln!("Agent footprint: {} and {} …", args.agent.display(), args.node_exporter.display());
        let agent_args = agent::AgentArgs {
            agent: args.agent.clone(),
            node_exporter: args.node_exporter.clone(),
            collections: args.agent_collections,
            interval: Duration::from_millis(args.agent_interval_ms),
        };
        let text = agent::run(&args.server, &agent_args).await?;
        report::update(&args.out, "agent", &format!("{text}\n{stamp}"))?;
    }
    if wants(Section::RemoteWrite) {
        let load = Load {
            connections: args.connections,
            batch: args.batch,
            seconds: args.seconds,
            rate: None,
            ago_ms: 2 * 86_400_000,
            dc: "eu-1",
        };
        let text = remote_write::run(&args.server, &args.victoria_metrics, load).await?;
        report::update(&args.out, "remote_write", &format!("{text}\n{stamp}"))?;
    }
    if wants(Section::Disk) {
        let text = disk::run(&args.server, &args.victoria_metrics, &args.disk_corpora).await?;
        report::update(&args.out, "disk", &format!("{text}\n{stamp}"))?;
    }
    if wants(Section::Query) {
        let text = query::run(&args.server, &args.victoria_metrics).await?;
        report::update(&args.out, "query", &format!("{text}\n{stamp}"))?;
    }
    println!("{}", std::fs::read_to_string(&args.out)?);
    eprintln!("Wrote {}", args.out.display());
    Ok(())
}

fn utc_now() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The alerting section: microdash alone over many breaches, then side by side with the peer.
async fn alerting_section(server: &Server, args: &Args) -> Result<String> {
    eprintln!("[alerts 1/2] breach → webhook, microdash alone ({} breaches)", args.alert_breaches);
    let alone = alerts::microdash_sequential(server, args.alert_breaches).await?;
    eprintln!(
        "[alerts 2/2] breach → webhook, microdash and Prometheus + Alertmanager side by side ({} breaches over {} s)",
        args.peer_breaches, args.peer_spread
    );
    let peer = alerts::side_by_side(server, args.peer_breaches, Duration::from_secs(args.peer_spread)).await;
    let mut text = format!(
        "\n## Alerting: breach → webhook received\n\n\
         A rule `last > 0.5` with `for: 0s` and a webhook channel; the clock starts before the POST of the \
         breaching sample and stops when the local receiver has the FIRING notification (it went through the \
         engine, the transition + outbox transaction, and an HTTP POST).\n\n\
         | measure | value |\n|---|---|\n\
         | microdash alone, p50 / p99 | **{p50:.1} ms / {p99:.1} ms** ({n} breaches, one after another) |\n",
        p50 = pct(&alone, 0.5),
        p99 = pct(&alone, 0.99),
        n = alone.len(),
    );
    match peer {
        Ok(peer) => {
            let (m50, m99) = (pct(&peer.microdash, 0.5), pct(&peer.microdash, 0.99));
            let (a50, a99) = (pct(&peer.alertmanager, 0.5), pct(&peer.alertmanager, 0.99));
            text.push_str(&format!(
                "| same breaches, microdash p50 / p99 | {m50:.1} ms / {m99:.1} ms ({n} breaches spread over {spread} s) |\n\
                 | same breaches, Prometheus 2.42 + Alertmanager 0.25 p50 / p99 | {a50:.0} ms / {a99:.0} ms |\n\
                 | ratio (peer / microdash) p50 / p99 | **{r50:.0}× / {r99:.0}×** |\n\n\
                 The peer runs Debian's packages with the intervals of their shipped example configuration \
                 (`scrape_interval` and `evaluation_interval` 15 s, Alertmanager `group_wait` 30 s), grouped by \
                 breach so each breach is its own notification. It scrapes a tiny exporter in the bench whose gauge \
                 flips at the same instant the sample is posted to microdash. Its latency is dominated by those \
                 intervals by design; the ratio shows what evaluating on arrival buys, not a defect of the peer.\n",
                n = peer.microdash.len(),
                spread = args.peer_spread,
                r50 = a50 / m50,
                r99 = a99 / m99,
            ));
        }
        Err(err) => {
            eprintln!("Side-by-side run skipped: {err:#}");
            text.push_str(&format!("\nThe side-by-side run with Prometheus + Alertmanager did not run: {err:#}\n"));
        }
    }
    text.push_str("\nAim from issue 6: p99 < 500 ms.\n");
    Ok(text)
}
