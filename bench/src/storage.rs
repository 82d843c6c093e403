//! Bulk ingest and ingest-to-queryable per storage backend and queue, with the same corpus sent
//! to VictoriaMetrics (`/api/v1/import`) in the same run.
//!
//! Each microdash setup gets a fresh database (and a flushed Redis database for the Redis
//! queue); with Redis, one `--role api` process takes the requests and one `--role worker`
//! process writes, as in a distributed deployment squeezed onto this machine.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{
    Deployment, KillOnDrop, Load, Setup, Target, free_port, ingest_to_queryable, pct, start_deployment,
    sustained_ingest,
};

/// One measured setup.
#[derive(Clone)]
pub struct Backend {
    pub name: &'static str,
    pub database: Database,
    pub redis: bool,
    /// With the in-memory head and its log in a local folder (`head_wal_dir`).
    pub head_wal: bool,
    /// Sent to `/api/v1/import` in VictoriaMetrics' JSON lines, the bodies VictoriaMetrics gets,
    /// instead of microdash's bulk JSON.
    pub import: bool,
}

#[derive(Clone)]
pub enum Database {
    Sqlite,
    /// The admin URL of a PostgreSQL server; a fresh database is created on it.
    Postgres(String),
    /// The admin URL of a MariaDB/MySQL server; a fresh database is created on it.
    Mysql(String),
}

pub struct StorageArgs {
    pub postgres_url: Option<String>,
    pub mysql_url: Option<String>,
    pub redis_url: Option<String>,
    pub victoria_metrics: std::path::PathBuf,
    pub load: Load,
    pub probes: usize,
    /// Only the setups whose name contains one of these (case insensitive); empty = all.
    pub setups: Vec<String>,
}

/// The setups measured: SQLite always (its head's log sits beside the file); PostgreSQL and
/// MariaDB, in-process with and without the head (`head_wal_dir`, a local folder) and over Redis,
/// when their URLs are given (`make bench` starts them, as `make test` does). SQLite and the
/// head setups also take VictoriaMetrics' own bodies (`/api/v1/import`).
pub fn backends(args: &StorageArgs) -> Vec<Backend> {
    let sqlite = Backend {
        name: "SQLite, in-process queue",
        database: Database::Sqlite,
        redis: false,
        head_wal: false,
        import: false,
    };
    let mut out = vec![
        sqlite.clone(),
        Backend {
            name: "SQLite, in-process queue, VictoriaMetrics' import format (`/api/v1/import`)",
            import: true,
            ..sqlite
        },
    ];
    let servers = [
        ("PostgreSQL", args.postgres_url.clone().map(Database::Postgres)),
        ("MariaDB", args.mysql_url.clone().map(Database::Mysql)),
    ];
    for (server, database) in servers {
        let Some(database) = database else { continue };
        let name = |what: &str| -> &'static str { format!("{server}, {what}").leak() };
        let head = Backend {
            name: name("in-process queue, head + local log (`head_wal_dir`)"),
            database: database.clone(),
            redis: false,
            head_wal: true,
            import: false,
        };
        out.push(head.clone());
        out.push(Backend { name: name("head + local log, VictoriaMetrics' import format"), import: true, ..head });
        out.push(Backend {
            name: name("in-process queue, rows"),
            database: database.clone(),
            redis: false,
            head_wal: false,
            import: false,
        });
        if args.redis_url.is_some() {
            out.push(Backend {
                name: name("Redis Streams (api + worker)"),
                database,
                redis: true,
                head_wal: false,
                import: false,
            });
        }
    }
    out
}

struct Row {
    name: String,
    /// Committed to the database, end to end.
    samples_per_sec: f64,
    /// With Redis: what the API accepted into the stream, while it had room.
    api_rate: Option<f64>,
    requests: u64,
    errors: u64,
    /// Of the errors, 503 answers, and how many of them had Retry-After.
    overloaded: u64,
    overloaded_with_retry_after: u64,
    peak_rss_mib: f64,
    /// With Redis: each process's own peak RSS over the whole setup (the kernel's high-water
    /// mark, so the worker's drain after the load counts too), and Redis's peak `used_memory`
    /// and stream backlog while the load ran and drained.
    split: Option<Split>,
    idle: Vec<f64>,
    loaded: Vec<f64>,
}

async fn fresh_database(database: &Database) -> Result<Option<String>> {
    use sqlx::Connection;
    let name = format!("microdash_bench_{}_{}", std::process::id(), crate::now_ms() % 1_000_000);
    let create = format!("CREATE DATABASE {name}");
    let url = match database {
        Database::Sqlite => return Ok(None),
        Database::Postgres(url) => {
            let mut admin = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
            sqlx::query(&create).execute(&mut admin).await?;
            url
        }
        Database::Mysql(url) => {
            let mut admin = sqlx::MySqlConnection::connect(url).await.context("connecting to MariaDB")?;
            sqlx::query(&create).execute(&mut admin).await?;
            url
        }
    };
    let base = url.rsplit_once('/').map(|(base, _)| base).unwrap_or(url);
    Ok(Some(format!("{base}/{name}")))
}

async fn flushed_redis(url: &str) -> Result<String> {
    let url = format!("{}/7", url.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await.context("connecting to Redis")?;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await?;
    Ok(url)
}

struct Split {
    api_mib: f64,
    worker_mib: f64,
    redis_used_mib: f64,
    peak_backlog: i64,
}

/// Samples Redis's `used_memory` and the queued-samples counter until `stop` is set.
async fn watch_redis(url: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<(f64, i64)> {
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let (mut used, mut backlog) = (0u64, 0i64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
        let now =
            info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        used = used.max(now);
        let queued: Option<i64> = redis::cmd("GET").arg("microdash:queued-samples").query_async(&mut conn).await?;
        backlog = backlog.max(queued.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((used as f64 / 1024.0 / 1024.0, backlog))
}

/// Samples in the Redis queue that no worker has committed yet.
async fn queued(redis_url: &str) -> Result<i64> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let queued: Option<i64> = redis::cmd("GET").arg("microdash:queued-samples").query_async(&mut conn).await?;
    Ok(queued.unwrap_or(0))
}

/// Waits until the Redis queue has been committed by the worker (at most 5 minutes).
async fn drained(redis_url: &str) -> Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let queued: Option<i64> = redis::cmd("GET").arg("microdash:queued-samples").query_async(&mut conn).await?;
        if queued.unwrap_or(0) <= 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the worker did not drain the Redis queue within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `redis_url`: with the Redis queue, the API answers once samples are in the stream, so the
/// rate that counts is until the worker has committed them all.
async fn measure(
    name: String,
    target: &Target,
    pids: &[u32],
    redis_url: Option<&str>,
    args: &StorageArgs,
) -> Result<Row> {
    eprintln!("[storage] {name}: ingest-to-queryable, idle ({} probes)", args.probes);
    let idle = ingest_to_queryable(target, args.probes).await?;
    eprintln!("[storage] {name}: sustained bulk ingest for {} s", args.load.seconds);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = redis_url.map(|url| tokio::spawn(watch_redis(url.to_string(), stop.clone())));
    let started = Instant::now();
    let ingest = sustained_ingest(target, pids, args.load).await?;
    // With Redis, what the worker committed while the load ran (the rest was still queued):
    // the background load below is paced at half of that, a rate the worker held beside a
    // busy API on this machine (after the load, it drains faster, with the cores to itself).
    let load_elapsed = started.elapsed().as_secs_f64();
    let (samples_per_sec, api_rate, under_load_rate) = match redis_url {
        Some(url) => {
            let left = queued(url).await?;
            drained(url).await?;
            let committed_during = (ingest.accepted as f64 - left as f64).max(0.0) / load_elapsed;
            let overall = ingest.accepted as f64 / started.elapsed().as_secs_f64();
            (overall, Some(ingest.samples_per_sec), committed_during.min(overall))
        }
        None => (ingest.samples_per_sec, None, ingest.samples_per_sec),
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let split = match watcher {
        Some(watcher) => {
            let (redis_used_mib, peak_backlog) = watcher.await??;
            let mib = |pid: u32| crate::peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
            let split = Split { api_mib: mib(pids[0]), worker_mib: mib(pids[1]), redis_used_mib, peak_backlog };
            eprintln!(
                "[storage] {name}: peak RSS api {:.0} MiB, worker {:.0} MiB; Redis used_memory peak {:.0} MiB, \
                 backlog peak {} samples; {} requests answered 503 ({} with Retry-After)",
                split.api_mib,
                split.worker_mib,
                split.redis_used_mib,
                split.peak_backlog,
                ingest.overloaded,
                ingest.overloaded_with_retry_after
            );
            Some(split)
        }
        None => None,
    };
    eprintln!("[storage] {name}: ingest-to-queryable under bulk load at half that rate");
    eprintln!(
        "[storage] {name}: {samples_per_sec:.0} samples/s committed overall, {under_load_rate:.0}/s while the load ran; \
         CPU of the server's processes while it ran: {:.2} s, {:.0} ns an accepted sample",
        ingest.cpu_seconds,
        ingest.cpu_seconds * 1e9 / ingest.accepted.max(1) as f64
    );
    // Fresh samples, as a fleet sends them, of 100 other series (`dc` eu-2): none of the first
    // run's samples is overwritten.
    let background = Load { rate: Some(under_load_rate / 2.0), batch: 1000, dc: "eu-2", ..args.load };
    let (loaded, _) =
        tokio::join!(ingest_to_queryable(target, args.probes / 2), sustained_ingest(target, pids, background));
    if let Some(url) = redis_url {
        drained(url).await?;
    }
    Ok(Row {
        name,
        samples_per_sec,
        api_rate,
        requests: ingest.requests,
        errors: ingest.errors,
        overloaded: ingest.overloaded,
        overloaded_with_retry_after: ingest.overloaded_with_retry_after,
        peak_rss_mib: ingest.peak_rss_mib,
        split,
        idle,
        loaded: loaded?,
    })
}

/// VictoriaMetrics single-node from the Debian package, on a temporary folder.
pub(crate) struct Victoria {
    pub(crate) child: KillOnDrop,
    pub(crate) base: String,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) async fn start_victoria(bin: &Path) -> Result<Victoria> {
    if !bin.exists() {
        bail!("{} does not exist; install the Debian package victoria-metrics", bin.display());
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child = std::process::Command::new(bin)
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting victoria-metrics")?;
    let vm = Victoria { child: KillOnDrop(child), base: format!("http://127.0.0.1:{port}"), dir };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{}/health", vm.base)).send().await
            && r.status().is_success()
        {
            return Ok(vm);
        }
        if Instant::now() > deadline {
            bail!("victoria-metrics did not answer /health within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure_backend(server_bin: &Path, args: &StorageArgs, backend: &Backend) -> Result<Row> {
    let database_url = fresh_database(&backend.database).await?;
    let redis_url = match (&args.redis_url, backend.redis) {
        (Some(url), true) => Some(flushed_redis(url).await?),
        _ => None,
    };
    let setup = Setup { database_url, redis_url, head_wal: backend.head_wal };
    let deployment: Deployment = start_deployment(server_bin, &setup)?;
    let (base, token) = (deployment.api.base.clone(), deployment.api.token.clone());
    let target = if backend.import { Target::Import { base, token } } else { Target::Microdash { base, token } };
    let redis = setup.redis_url.clone();
    measure(backend.name.to_string(), &target, &deployment.pids(), redis.as_deref(), args).await
}

/// One line of the table; `vm_rate` is VictoriaMetrics' samples/s.
fn table_line(row: &Row, vm_rate: f64) -> String {
    let name = match row.api_rate {
        Some(api) => format!("{} (API took {api:.0}/s into Redis while it had room)", row.name),
        None => row.name.clone(),
    };
    let failed = match row.overloaded {
        0 => row.errors.to_string(),
        n if n == row.errors => format!("{n} (503)"),
        n => format!("{} ({n} of them 503)", row.errors),
    };
    let rss = match &row.split {
        Some(s) => format!("{:.0} MiB (api {:.0} + worker {:.0})", s.api_mib + s.worker_mib, s.api_mib, s.worker_mib),
        None => format!("{:.0} MiB", row.peak_rss_mib),
    };
    format!(
        "| {} | {:.0} | {:.2}× | {} / {} | {} | {:.1} ms / {:.1} ms | {:.1} ms / {:.1} ms |\n",
        name,
        row.samples_per_sec,
        row.samples_per_sec / vm_rate,
        row.requests,
        failed,
        rss,
        pct(&row.idle, 0.5),
        pct(&row.idle, 0.99),
        pct(&row.loaded, 0.5),
        pct(&row.loaded, 0.99),
    )
}

/// The sentence on where the memory of the Redis setups is: api, worker, Redis itself.
const SPLIT_PREFIX: &str = "With Redis, peak RSS per process";

fn split_sentence(rows: &[&Row]) -> Option<String> {
    let parts: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let s = row.split.as_ref()?;
            Some(format!(
                "{}: api {:.0} MiB, worker {:.0} MiB, Redis `used_memory` at most {:.0} MiB with a backlog of at \
                 most {} samples, {} requests answered 503 ({} with `Retry-After`)",
                row.name,
                s.api_mib,
                s.worker_mib,
                s.redis_used_mib,
                s.peak_backlog,
                row.overloaded,
                row.overloaded_with_retry_after
            ))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "{SPLIT_PREFIX} (the kernel's high-water mark over the load and the worker's drain after it): {}.\n",
        parts.join("; ")
    ))
}

/// Measures only the setups named in `args.setups` and puts their rows in place of the same
/// rows of the report's storage section (VictoriaMetrics is not measured again: its row there
/// gives the ratio).
pub async fn run_some(server_bin: &Path, args: &StorageArgs, out: &Path, stamp: &str) -> Result<()> {
    let wanted = |b: &Backend| args.setups.iter().any(|w| b.name.to_lowercase().contains(&w.to_lowercase()));
    let chosen: Vec<Backend> = backends(args).into_iter().filter(wanted).collect();
    if chosen.is_empty() {
        bail!("no storage setup matches {:?} (are the database and Redis URLs set?)", args.setups);
    }
    let report = std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let (begin, end) = ("<!-- section:storage -->\n", "<!-- /section:storage -->\n");
    let (Some(b), Some(e)) = (report.find(begin), report.find(end)) else {
        bail!("{} has no storage section to update; run the whole section", out.display());
    };
    let vm_rate: f64 = report[b..e]
        .lines()
        .find(|l| l.starts_with("| VictoriaMetrics"))
        .and_then(|l| l.split('|').nth(2)?.trim().parse().ok())
        .context("the storage section has no VictoriaMetrics row to compare with")?;
    let mut rows = Vec::new();
    for backend in &chosen {
        rows.push(measure_backend(server_bin, args, backend).await?);
    }
    let mut lines: Vec<String> = report[b + begin.len()..e].lines().map(str::to_string).collect();
    for row in &rows {
        let line = table_line(row, vm_rate).trim_end().to_string();
        let same =
            |l: &String| l.starts_with(&format!("| {} |", row.name)) || l.starts_with(&format!("| {} (", row.name));
        match lines.iter().position(same) {
            Some(i) => lines[i] = line,
            None => {
                let last = lines.iter().rposition(|l| l.starts_with('|')).context("no table in the section")?;
                lines.insert(last, line);
            }
        }
    }
    let refs: Vec<&Row> = rows.iter().collect();
    if let Some(sentence) = split_sentence(&refs) {
        let sentence = sentence.trim_end().to_string();
        match lines.iter().position(|l| l.starts_with(SPLIT_PREFIX)) {
            Some(i) => lines[i] = sentence,
            None => {
                let table_end = lines.iter().rposition(|l| l.starts_with('|')).unwrap_or(0);
                lines.insert(table_end + 1, String::new());
                lines.insert(table_end + 2, sentence);
            }
        }
    }
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let note =
        format!("_Rows {} measured again (`--storage-setups`): {}_", names.join("; "), stamp.trim().trim_matches('_'));
    lines.retain(|l| !l.starts_with("_Rows "));
    lines.push(note);
    let text = lines.join("\n");
    crate::report::update(out, "storage", &text)
}

pub async fn run(server_bin: &Path, args: &StorageArgs) -> Result<String> {
    let mut rows = Vec::new();
    for backend in backends(args) {
        rows.push(measure_backend(server_bin, args, &backend).await?);
    }
    let vm = start_victoria(&args.victoria_metrics).await?;
    let vm_pid = vm.child.0.id();
    let vm_row = measure(
        "VictoriaMetrics (Debian), `/api/v1/import`".into(),
        &Target::Victoria { base: vm.base.clone() },
        &[vm_pid],
        None,
        args,
    )
    .await?;
    // The Debian build prints no -version; the package version says it.
    let version = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "victoria-metrics"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    drop(vm);

    let mut out = format!(
        "## HTTP bulk ingest and ingest-to-queryable per backend and queue, next to VictoriaMetrics\n\n\
         The same corpus for everyone: {conns} connections × {batch} samples/request of one metric over 100 \
         series with 2 labels, timestamps moving forward so every sample is new, for {secs} s; then \
         ingest-to-queryable probes (POST one sample, then read it back until it is visible: microdash \
         `GET /api/v1/query`, VictoriaMetrics `GET /api/v1/export`), idle and under bulk load at half the \
         measured rate (with Redis, half the rate the worker committed while the load ran). A microdash 202 means committed to the database (with Redis: durably in the stream; \
         the worker then commits, and samples/s is counted until the worker has committed everything; the API \
         answers 503 once the queue holds `queue_capacity` samples, counted as failed requests). VictoriaMetrics answers 204 once the rows are in its in-memory buffers and \
         makes them searchable and durable about a second later: that is its design, not a fault. \
         The rows name the body format: microdash's bulk JSON (`{{\"samples\":[…]}}`, ~89 bytes a sample) or \
         VictoriaMetrics' JSON lines to microdash's `/api/v1/import`, the very bodies VictoriaMetrics is sent \
         (one line a series, ~19 bytes a sample): the same samples in the same bytes.\n\n\
         | setup | samples/s | vs VM | requests ok / failed | peak RSS | to queryable p50 / p99 idle | p50 / p99 under load |\n\
         |---|---|---|---|---|---|---|\n",
        conns = args.load.connections,
        batch = args.load.batch,
        secs = args.load.seconds,
    );
    for row in rows.iter().chain(std::iter::once(&vm_row)) {
        out.push_str(&table_line(row, vm_row.samples_per_sec));
    }
    let refs: Vec<&Row> = rows.iter().collect();
    if let Some(sentence) = split_sentence(&refs) {
        out.push('\n');
        out.push_str(&sentence);
    }
    out.push_str(&format!(
        "\nVictoriaMetrics: Debian package {version}. Peak RSS sums every process of the setup (api + worker with Redis). \
         PostgreSQL and MariaDB are the test servers of `scripts/services.sh` (Debian packages, default \
         settings, data on this machine's disk); Redis runs without persistence settings beyond Debian's.\n\n\
         Targets from the foundation issue: ≥ 300k samples/s and p99 ingest-to-queryable < 50 ms on this \
         2-core machine (SQLite, embedded mode).\n"
    ));
    Ok(out)
}

/// The VictoriaMetrics import body (JSON lines, one per series) for one bulk request of the
/// corpus; the 13-digit timestamps are at the returned offsets so they can be moved forward.
pub fn victoria_body(batch: usize, start_ts: i64, dc: &str) -> (Vec<u8>, Vec<(usize, i64)>) {
    let per_series = batch.div_ceil(100);
    let mut bytes = Vec::with_capacity(batch * 24);
    let mut ts_at = Vec::with_capacity(batch);
    for host in 0..100.min(batch) {
        let n = (0..per_series).filter(|k| k * 100 + host < batch).count();
        let values: Vec<String> = (0..n).map(|_| format!("{host}")).collect();
        bytes.extend_from_slice(
            format!(
                "{{\"metric\":{{\"__name__\":\"bench.cpu\",\"host\":\"h{host}\",\"dc\":\"{dc}\"}},\"values\":[{}],\"timestamps\":[",
                values.join(",")
            )
            .as_bytes(),
        );
        for k in 0..n {
            if k > 0 {
                bytes.push(b',');
            }
            let ts = start_ts + k as i64;
            ts_at.push((bytes.len(), ts));
            bytes.extend_from_slice(format!("{ts:013}").as_bytes());
        }
        bytes.extend_from_slice(b"]}\n");
    }
    (bytes, ts_at)
}

/// One probe sample for VictoriaMetrics, and whether an export answer holds it.
pub fn victoria_probe(ts: i64, value: f64) -> String {
    json!({"metric": {"__name__": "bench.probe"}, "values": [value], "timestamps": [ts]}).to_string()
}

pub fn victoria_export_has(text: &str, ts: i64) -> bool {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v["timestamps"].as_array().is_some_and(|t| t.iter().any(|t| t.as_i64() == Some(ts))))
}
