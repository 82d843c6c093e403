//! The agent's footprint next to Debian's `prometheus-node-exporter`, measured side by side in
//! the same run: the release agent collects every `interval` and posts to a release server,
//! while the bench scrapes node_exporter at the same cadence. CPU is the processes' own user +
//! system time (`/proc/PID/stat`) over the window divided by the collections (or scrapes) in
//! it, so the other work on a shared machine does not count; memory is `VmRSS` at the end of
//! the window and `VmHWM` (peak).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{MqttMode, Server, now_ms, start_server};

pub struct AgentArgs {
    pub agent: PathBuf,
    pub node_exporter: PathBuf,
    /// Collections (and scrapes) measured.
    pub collections: usize,
    pub interval: Duration,
}

struct Process {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) and memory of one process.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_seconds: f64,
    rss_kib: u64,
    peak_rss_kib: u64,
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn usage(pid: u32, ticks: f64) -> Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("the process is gone")?;
    // Fields after the command name, which may hold spaces: state is the 3rd field overall,
    // utime the 14th and stime the 15th.
    let after = &stat[stat.rfind(')').context("odd /proc/PID/stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage { cpu_seconds: (utime + stime) / ticks, rss_kib: kib("VmRSS:"), peak_rss_kib: kib("VmHWM:") })
}

/// The 1-minute load average: how busy the machine was besides the two measured processes.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_node_exporter(bin: &Path) -> Result<(Process, String)> {
    if !bin.exists() {
        bail!("{} is missing; install the Debian package prometheus-node-exporter", bin.display());
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting node_exporter")?;
    Ok((Process { child, _dir: dir }, format!("http://127.0.0.1:{port}/metrics")))
}

fn start_agent(bin: &Path, server: &Server, interval: Duration) -> Result<Process> {
    if !bin.exists() {
        bail!("{} does not exist; build it with `cargo build --profile agent -p microdash-agent`", bin.display());
    }
    let dir = tempfile::tempdir()?;
    let child = Command::new(bin)
        .args(["--server", &server.base, "--token", &server.token, "--host-label", "bench-agent"])
        .arg("--interval")
        .arg(format!("{}ms", interval.as_millis()))
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the agent")?;
    Ok(Process { child, _dir: dir })
}

/// Collections of the bench agent stored with `ts` in `[from, to)`, and samples per collection.
async fn stored_collections(server: &Server, from: i64, to: i64) -> Result<(usize, usize)> {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", server.base);
        let token = server.token.clone();
        async move { http.get(url).bearer_auth(token).send().await?.error_for_status()?.json::<Value>().await }
    };
    let q = get(format!(
        "/api/v1/query?metric=uptime.seconds&match=host=bench-agent&from={from}&to={}&resolution=raw",
        to - 1
    ))
    .await?;
    let collections = q["series"][0]["points"].as_array().map_or(0, Vec::len);
    // Samples per collection: every series of every metric at one timestamp.
    let metrics = get("/api/v1/metrics".into()).await?;
    let mut per_collection = 0;
    for metric in metrics["metrics"].as_array().context("metrics")? {
        let series = get(format!("/api/v1/series?metric={}", metric.as_str().unwrap_or_default())).await?;
        per_collection += series["series"].as_array().map_or(0, Vec::len);
    }
    Ok((collections, per_collection))
}

pub async fn run(server_bin: &Path, args: &AgentArgs) -> Result<String> {
    let ticks = clock_ticks_per_second();
    let server = start_server(server_bin, MqttMode::Off)?;
    let (exporter, exporter_url) = start_node_exporter(&args.node_exporter)?;
    let agent = start_agent(&args.agent, &server, args.interval)?;
    let http = reqwest::Client::new();

    // Warm-up: both processes past their start, the agent connected, node_exporter scraped once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exposition = String::new();
    while exposition.is_empty() {
        if let Ok(r) = http.get(&exporter_url).send().await {
            exposition = r.text().await.unwrap_or_default();
        }
        if Instant::now() > deadline {
            bail!("node_exporter did not answer on {exporter_url}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exporter_series = exposition.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
    tokio::time::sleep(args.interval * 5).await;

    let (agent_pid, exporter_pid) = (agent.child.id(), exporter.child.id());
    let load_before = load_average();
    let from = now_ms();
    let (agent_0, exporter_0) = (usage(agent_pid, ticks)?, usage(exporter_pid, ticks)?);
    eprintln!(
        "[agent] {} collections every {} ms, node_exporter scraped at the same cadence …",
        args.collections,
        args.interval.as_millis()
    );
    let mut ticker = tokio::time::interval(args.interval);
    let mut scrape_ms = Vec::with_capacity(args.collections);
    for _ in 0..args.collections {
        ticker.tick().await;
        let started = Instant::now();
        let body = http.get(&exporter_url).send().await?.error_for_status()?.bytes().await?;
        if body.is_empty() {
            bail!("node_exporter answered an empty scrape");
        }
        scrape_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ticker.tick().await;
    let (agent_1, exporter_1) = (usage(agent_pid, ticks)?, usage(exporter_pid, ticks)?);
    let to = now_ms();
    let load_after = load_average();
    let (collections, samples) = stored_collections(&server, from, to).await?;
    if collections == 0 {
        bail!("the agent stored no collection during the window");
    }

    let agent_ms = (agent_1.cpu_seconds - agent_0.cpu_seconds) * 1000.0 / collections as f64;
    let exporter_ms = (exporter_1.cpu_seconds - exporter_0.cpu_seconds) * 1000.0 / args.collections as f64;
    scrape_ms.sort_by(f64::total_cmp);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let version = Command::new(&args.node_exporter)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().and_then(|l| l.split_whitespace().nth(2)).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into());
    let agent_us_per_series = agent_ms * 1000.0 / samples as f64;
    let exporter_us_per_series = exporter_ms * 1000.0 / exporter_series as f64;
    let agent_rss_mib = mib(agent_1.rss_kib);
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    Ok(format!(
        "## Agent footprint vs prometheus-node-exporter\n\n\
         `microdash-agent` as it ships (`{agent_profile}`, the `agent` profile of Cargo.toml: one codegen unit, \
         fat LTO, size-optimised) runs with `--interval {interval}ms` and posts over HTTP to `{server}` on this machine (whose work is not \
         counted), while the bench scrapes \
         Debian's `prometheus-node-exporter` {version} (default collectors, `127.0.0.1`) at the same cadence, in \
         the same {window:.0} s window. CPU is each process's own user + system time from `/proc/PID/stat` \
         (clock ticks of {tick:.0} ms, summed over the window, so a busy neighbour on a shared machine does not \
         count), divided by the collections the server stored from the agent in the window or by the scrapes; \
         CPU per series divides that by the series of one collection (every series the server stored from the \
         agent) or of one scrape (the exposition's sample lines). Memory is `VmRSS` at the end of the window and \
         `VmHWM`, the peak. The machine's 1-minute load average went from {load_before} to {load_after} during \
         the window.\n\n\
         | measure | microdash-agent | node_exporter | ratio (node_exporter / agent) |\n|---|---|---|---|\n\
         | series per collection / per scrape | {samples} | {exporter_series} | {series_ratio:.2}× |\n\
         | CPU per collection / per scrape | {agent_ms:.2} ms ({collections} collections) | {exporter_ms:.2} ms ({scrapes} scrapes, p50 {p50:.1} ms wall) | {cpu_ratio:.1}× |\n\
         | **CPU per series** | **{agent_us_per_series:.1} µs** | {exporter_us_per_series:.1} µs | {per_series_ratio:.1}× |\n\
         | resident memory, steady | **{agent_rss_mib:.1} MiB** | {exporter_rss:.1} MiB | {rss_ratio:.1}× |\n\
         | resident memory, peak | {agent_peak:.1} MiB | {exporter_peak:.1} MiB | {peak_ratio:.1}× |\n\n\
         The two do not do quite the same work: node_exporter only renders its series when asked; the agent \
         reads procfs and sysfs (see [agent/README.md](../agent/README.md#host-metrics-from-procfs-and-sysfs-linux) \
         for its families and their node_exporter names) and also serializes and posts every collection, spool \
         and all. The agent's CPU per collection includes the HTTP POST and reading the 202.\n\n\
         Aims from issue 22: CPU per series at most half of node_exporter's ({per_series_verdict}: \
         {agent_us_per_series:.1} µs against a limit of {limit:.1} µs), RSS at most 8 MiB ({rss_verdict}: \
         {agent_rss_mib:.1} MiB).\n",
        interval = args.interval.as_millis(),
        agent_profile =
            args.agent.iter().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect::<PathBuf>().display(),
        // `release/microdash` or `debug/microdash`: the profile says what ran, the full path is local.
        server = server_bin.iter().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect::<PathBuf>().display(),
        window = (to - from) as f64 / 1000.0,
        tick = 1000.0 / ticks,
        scrapes = args.collections,
        p50 = crate::pct(&scrape_ms, 0.5),
        series_ratio = exporter_series as f64 / samples as f64,
        cpu_ratio = exporter_ms / agent_ms,
        per_series_ratio = exporter_us_per_series / agent_us_per_series,
        exporter_rss = mib(exporter_1.rss_kib),
        rss_ratio = exporter_1.rss_kib as f64 / agent_1.rss_kib as f64,
        agent_peak = mib(agent_1.peak_rss_kib),
        exporter_peak = mib(exporter_1.peak_rss_kib),
        peak_ratio = exporter_1.peak_rss_kib as f64 / agent_1.peak_rss_kib as f64,
        limit = exporter_us_per_series / 2.0,
        per_series_verdict = verdict(agent_us_per_series <= exporter_us_per_series / 2.0),
        rss_verdict = verdict(agent_rss_mib <= 8.0),
    ))
}
