//! Live streaming latency:
//! 1. ingest → SSE event received: an SSE client (this process) reads `GET /api/v1/stream`
//!    filtered on one metric; each probe POSTs one sample and times until its event arrives.
//!    Idle, then while other samples are bulk-ingested at a steady rate (with a second,
//!    unfiltered stream draining everything, as an overview page would).
//! 2. In Debian's Chromium (`tests/e2e/bench/live-chart.cjs`): navigation → first chart painted
//!    (Chromium driven over the DevTools protocol itself, so that nothing of the tool runs in the
//!    page), and ingest → point painted on an open live chart (Playwright as a library).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{MqttMode, Server, now_ms, pct, start_server};

pub struct LiveArgs {
    /// Probes per SSE latency run.
    pub probes: usize,
    /// Samples/s of the background bulk ingest.
    pub load_rate: f64,
    /// Fresh-context navigations in the browser.
    pub navigations: usize,
    /// Ingest → painted probes in the browser.
    pub browser_probes: usize,
    /// `tests/e2e`, whose node_modules hold Playwright.
    pub e2e_dir: PathBuf,
}

const PROBE_METRIC: &str = "bench.live";

pub async fn run(bin: &Path, args: &LiveArgs) -> Result<String> {
    eprintln!("Live streaming: {} …", bin.display());
    let server = start_server(bin, MqttMode::Off)?;

    eprintln!("[live 1/4] ingest → SSE received, idle ({} probes)", args.probes);
    let idle = sse_latency(&server, args.probes).await?;

    eprintln!("[live 2/4] ingest → SSE received under bulk ingest at {:.0} samples/s", args.load_rate);
    let load = Load::start(&server, args.load_rate);
    let drain = Drain::start(&server).await?;
    // Let the load settle before probing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let drain_from = drain.events.load(Ordering::Relaxed);
    let load_from = load.accepted.load(Ordering::Relaxed);
    let started = Instant::now();
    let loaded = sse_latency(&server, args.probes).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ingested = (load.accepted.load(Ordering::Relaxed) - load_from) as f64 / elapsed;
    let drained = (drain.events.load(Ordering::Relaxed) - drain_from) as f64 / elapsed;
    let resets = drain.resets.load(Ordering::Relaxed);
    let load_errors = load.stop().await;
    drain.stop();
    let loaded = loaded?;

    eprintln!(
        "[live 3/4] browser, idle: {} navigations, {} ingest → painted probes",
        args.navigations, args.browser_probes
    );
    let browser_idle = browser(&server, args, args.navigations, args.browser_probes).await?;
    eprintln!("[live 4/4] browser, under the same bulk ingest");
    let load = Load::start(&server, args.load_rate);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let browser_loaded = browser(&server, args, args.navigations.div_ceil(2), args.browser_probes / 2).await;
    let browser_load_errors = load.stop().await;
    let browser_loaded = browser_loaded?;

    let row = |name: &str, v: &[f64], what: &str| {
        format!(
            "| {name} | **{:.1} ms / {:.1} ms** | {:.1} ms | {} {what} |\n",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0),
            v.len()
        )
    };
    let mut text = String::from(
        "\n## Live stream: ingest → SSE → chart\n\n\
         Ingest → SSE: an SSE client in the bench reads `GET /api/v1/stream?metric=bench.live`; each probe POSTs one \
         sample to `/api/v1/metrics` and the clock stops when its `event: sample` arrives (it went through the \
         durable commit, the live hub and the stream). In the browser (Debian's Chromium, headless, driven by \
         `tests/e2e/bench/live-chart.cjs`): *first chart painted* is measured by the page itself, from the start of \
         the navigation to the first animation frame in which the explorer's live chart has drawn its points \
         (`data-points` > 0 on the chart, set after each uPlot redraw), each in a fresh browser context (cold cache, \
         logged in by cookie), with Chromium driven over the DevTools protocol and nothing but that check added to \
         the page (Playwright adds an isolated world to every document and its injected script to the page, on the \
         main thread the chart waits for); *ingest → painted* runs from before the POST until the open chart's newest drawn \
         timestamp (`data-last-ts`) is the sample's (polled every animation frame). The chart throttles repaints \
         to five per second, which that figure includes.\n\n\
         | measure | p50 / p99 | max | samples |\n|---|---|---|---|\n",
    );
    text.push_str(&row("ingest → SSE received, idle", &idle, "probes"));
    text.push_str(&row("ingest → SSE received, under bulk ingest", &loaded, "probes"));
    text.push_str(&row("navigation → first chart painted, idle", &browser_idle.first_paint, "navigations"));
    text.push_str(&row("ingest → point painted, idle", &browser_idle.ingest_to_paint, "probes"));
    text.push_str(&row(
        "navigation → first chart painted, under bulk ingest",
        &browser_loaded.first_paint,
        "navigations",
    ));
    text.push_str(&row("ingest → point painted, under bulk ingest", &browser_loaded.ingest_to_paint, "probes"));
    text.push_str("\nWhere a first chart's time goes. ");
    text.push_str(&browser_idle.breakdown("Idle"));
    text.push_str(&browser_loaded.breakdown("Under bulk ingest"));
    text.push_str(
        "The page's first script (a classic one in the head, which runs as soon as it arrives) preloads the \
         route's chunks with the entry and starts the session check and the explorer's first query \
         (`dashboard/src/earlyStart.ts`, docs/live.md \"The first chart\"); the code is precompressed (Brotli or \
         gzip, by Accept-Encoding).\n",
    );
    text.push_str(&format!(
        "\nBulk ingest during the loaded runs: {ingested:.0} samples/s accepted (paced at {rate:.0}/s, 1000 samples per \
         request, 100 series of another metric; {errs} refused requests), while an unfiltered stream (like the \
         overview page's) received {drained:.0} events/s and {resets} resets (a reset tells a client that fell \
         behind to reload).\n\n\
         Targets: from issue 5, a sample on an open chart well under a second after it is sent; from issue 20, \
         the first chart painted within 300 ms (p99) idle and 500 ms under the bulk load.\n",
        rate = args.load_rate,
        errs = load_errors + browser_load_errors,
    ));
    Ok(text)
}

/// Samples of one SSE stream as they arrive: `(value, when)`; resets as `None`.
async fn open_stream(
    server: &Server,
    query: &str,
) -> Result<(mpsc::UnboundedReceiver<Option<(f64, Instant)>>, tokio::task::JoinHandle<()>)> {
    let http = reqwest::Client::new();
    let mut response =
        http.get(format!("{}/api/v1/stream{query}", server.base)).bearer_auth(&server.token).send().await?;
    if !response.status().is_success() {
        bail!("the stream answered {}", response.status());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut pending = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let at = Instant::now();
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                let event = if block.contains("event: reset") {
                    Some(None)
                } else {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .and_then(|d| serde_json::from_str::<Value>(d).ok())
                        .and_then(|v| v["value"].as_f64())
                        .map(|v| Some((v, at)))
                };
                if let Some(event) = event
                    && tx.send(event).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok((rx, task))
}

/// POSTs one sample at a time and times until the stream delivers it; sorted ms.
async fn sse_latency(server: &Server, probes: usize) -> Result<Vec<f64>> {
    let (mut events, task) = open_stream(server, &format!("?metric={PROBE_METRIC}")).await?;
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(probes);
    // Values unique across runs: the stream of a later run must not match an earlier probe.
    let base = (now_ms() % 1_000_000_000) as f64 * 1000.0;
    for i in 0..probes {
        let value = base + i as f64;
        let started = Instant::now();
        let r = http
            .post(format!("{}/api/v1/metrics", server.base))
            .bearer_auth(&server.token)
            .json(&json!({"metric": PROBE_METRIC, "value": value, "labels": {"host": "bench"}}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("probe ingest answered {}", r.status());
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(Some((v, at)))) if v == value => {
                    latencies.push(at.duration_since(started).as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the stream ended"),
                Err(_) => bail!("probe {i} not received within 10 s"),
            }
        }
        // Not back to back: a probe should not find the server still busy with the last one.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task.abort();
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Paced bulk ingest of another metric in the background.
struct Load {
    accepted: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server, rate: f64) -> Load {
        const BATCH: usize = 1000;
        const CONNECTIONS: usize = 2;
        let (accepted, errors, stop) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let http = reqwest::Client::new();
        let every = Duration::from_secs_f64(BATCH as f64 * CONNECTIONS as f64 / rate);
        let tasks = (0..CONNECTIONS)
            .map(|conn| {
                let (http, url, token) =
                    (http.clone(), format!("{}/api/v1/metrics/bulk", server.base), server.token.clone());
                let (accepted, errors, stop) = (accepted.clone(), errors.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut ticker = tokio::time::interval(every);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut next_ts = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        ticker.tick().await;
                        // Recent timestamps, new for every request: 10 per series.
                        let ts = now_ms().max(next_ts);
                        next_ts = ts + (BATCH / 100) as i64;
                        let samples: Vec<Value> = (0..BATCH)
                            .map(|i| {
                                json!({"metric":"bench.load","value": i % 100,"ts": ts + (i / 100) as i64,
                                       "labels":{"host": format!("h{}", i % 100), "conn": conn.to_string()}})
                            })
                            .collect();
                        match http.post(&url).bearer_auth(&token).json(&samples).send().await {
                            Ok(r) if r.status().as_u16() == 202 => {
                                accepted.fetch_add(BATCH as u64, Ordering::Relaxed);
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Load { accepted, errors, stop, tasks }
    }

    /// Stops and returns the number of refused or failed requests.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.errors.load(Ordering::Relaxed)
    }
}

/// An unfiltered stream that counts what it receives.
struct Drain {
    events: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drain {
    async fn start(server: &Server) -> Result<Drain> {
        let (mut rx, reader) = open_stream(server, "").await?;
        let (events, resets) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counter = {
            let (events, resets) = (events.clone(), resets.clone());
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    match event {
                        Some(_) => events.fetch_add(1, Ordering::Relaxed),
                        None => resets.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        Ok(Drain { events, resets, tasks: [reader, counter] })
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

struct Browser {
    first_paint: Vec<f64>,
    /// Per navigation: when the code, the session check and the first query had arrived, and the code's size.
    detail: Vec<Value>,
    ingest_to_paint: Vec<f64>,
}

impl Browser {
    /// Median of one field of `detail`.
    fn median(&self, key: &str) -> f64 {
        let mut v: Vec<f64> = self.detail.iter().filter_map(|d| d[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() { f64::NAN } else { pct(&v, 0.5) }
    }

    /// A sentence on where the time of a first chart went.
    fn breakdown(&self, when: &str) -> String {
        format!(
            "{when} (medians, ms since the navigation started): the page's code ({files:.0} files of JS and CSS, \
             {unpacked:.0} KiB, {sent:.0} KiB as sent) had arrived at {code:.0} ms, the session check answered at \
             {session:.0} ms, the first query at {query:.0} ms, and the chart was painted at {painted:.0} ms.\n",
            files = self.median("code_files"),
            unpacked = self.median("code_bytes") / 1024.0,
            sent = self.median("code_sent_bytes") / 1024.0,
            code = self.median("code_ms"),
            session = self.median("session_ms"),
            query = self.median("query_ms"),
            painted = pct(&self.first_paint, 0.5),
        )
    }
}

/// Runs the Playwright script against `server`; sorted ms.
async fn browser(server: &Server, args: &LiveArgs, navigations: usize, probes: usize) -> Result<Browser> {
    let script = args.e2e_dir.join("bench/live-chart.cjs");
    if !args.e2e_dir.join("node_modules/@playwright/test").exists() {
        bail!("{} has no node_modules: run `npm ci` there", args.e2e_dir.display());
    }
    let out = tempfile::NamedTempFile::new()?;
    let status = tokio::process::Command::new("node")
        .arg(&script)
        .args(["--base", &server.base, "--token", &server.token, "--metric", PROBE_METRIC])
        .args(["--navigations", &navigations.to_string(), "--probes", &probes.to_string()])
        .arg("--out")
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .with_context(|| format!("running node {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    let result: Value = serde_json::from_slice(&std::fs::read(out.path())?)?;
    let sorted = |key: &str| {
        let mut v: Vec<f64> = result[key].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let detail = result["first_paint_detail"].as_array().cloned().unwrap_or_default();
    Ok(Browser { first_paint: sorted("first_paint_ms"), detail, ingest_to_paint: sorted("ingest_to_paint_ms") })
}
