//! System-test harness: the real `microdash serve` binary on 127.0.0.1:0 with a temporary
//! SQLite database, and the real `microdash-agent` binary pointed at it.
//!
//! The server binary is the one Cargo builds next to this package's binaries
//! (`target/<profile>/microdash`; `cargo test --workspace` builds it). A missing or stale
//! one fails the test with the command that builds it: a test of the agent against an old
//! server would prove nothing.

#![allow(dead_code)]

/// The Mosquitto helpers of the server's own tests (a private broker per test, TLS certificates).
#[path = "../../../apiserver/tests/common/mosquitto.rs"]
pub mod mosquitto;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_microdash-agent");

/// `target/<profile>/microdash`, checked to be newer than the server's sources.
pub fn server_bin() -> PathBuf {
    microdash_testkit::microdash_beside_tests()
}

/// A `microdash serve` process of the test kit, with the helpers of the agent's tests.
pub struct Server(microdash_testkit::Server);

impl std::ops::Deref for Server {
    type Target = microdash_testkit::Server;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Server {
    /// HTTP only.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn(microdash_testkit::Serve::new(server_bin(), dir).envs(env))
    }

    /// With the embedded MQTT broker on a free loopback port.
    pub fn start_with_mqtt(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn(microdash_testkit::Serve::new(server_bin(), dir).envs(env).with_mqtt())
    }

    fn spawn(serve: microdash_testkit::Serve) -> Server {
        let server = serve.start().unwrap_or_else(|e| panic!("{e}"));
        assert!(!server.token.is_empty(), "the server created no default-tenant.token in {}", server.dir().display());
        Server(server)
    }

    /// Starts again on the same database and the same ports (after `kill9`).
    pub fn restart(&mut self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The embedded broker's port.
    pub fn mqtt_port(&self) -> u16 {
        let addr = self.mqtt.as_deref().expect("the embedded broker runs");
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `GET path` with the tenant token; panics unless 200.
    pub async fn get(&self, path: &str) -> Value {
        let response = client().get(self.url(path)).bearer_auth(&self.token).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap()
    }

    /// Raw points of `metric` for the agent's `host`, per series (labels without `host`).
    pub async fn points(&self, metric: &str, host: &str) -> BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>> {
        let to = now_ms() + 3_600_000;
        let v =
            self.get(&format!("/api/v1/query?metric={metric}&match=host={host}&from=0&to={to}&resolution=raw")).await;
        let mut out = BTreeMap::new();
        for series in v["series"].as_array().unwrap() {
            let mut labels: BTreeMap<String, String> = serde_json::from_value(series["labels"].clone()).unwrap();
            labels.remove("host");
            let points = series["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            out.insert(labels, points);
        }
        out
    }

    /// Timestamps of `uptime.seconds` (one sample per collection) for `host`.
    pub async fn collection_timestamps(&self, host: &str) -> Vec<i64> {
        let series = self.points("uptime.seconds", host).await;
        series.values().flatten().map(|(ts, _)| *ts).collect()
    }

    /// Every point of every metric for `host`.
    pub async fn all_points(&self, host: &str) -> usize {
        let metrics = self.get("/api/v1/metrics").await;
        let mut total = 0;
        for metric in metrics["metrics"].as_array().unwrap() {
            let series = self.points(metric.as_str().unwrap(), host).await;
            total += series.values().map(Vec::len).sum::<usize>();
        }
        total
    }

    /// A line of `/metrics`, e.g. `microdash_samples_accepted_total`; 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = client().get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Waits until the bridge to an external broker is connected and subscribed.
    pub async fn wait_until_bridged(&self) {
        eventually_async("the bridge connects", Duration::from_secs(20), || async move {
            self.metric("microdash_mqtt_bridge_connected").await >= 1.0
        })
        .await;
        // The subscription follows the CONNACK.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A `microdash-agent` process with DEBUG logs collected, so a test can read which
/// collections it made (`Collected. seq=… ts=…`) and which state changes it logged.
pub struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pub spool_dir: PathBuf,
}

impl Agent {
    /// `args` besides `--spool-dir`.
    pub fn start(spool_dir: &Path, args: &[&str]) -> Agent {
        let mut child = Command::new(AGENT_BIN)
            .args(args)
            .arg("--spool-dir")
            .arg(spool_dir)
            .env("RUST_LOG", "microdash_agent=debug")
            .env_remove("MICRODASH_AGENT_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start microdash-agent");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("MICRODASH_TEST_LOGS").is_ok() {
                    eprintln!("agent: {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
        Agent { child, log, spool_dir: spool_dir.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Lines containing `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        self.log().into_iter().filter(|l| l.contains(text)).collect()
    }

    pub async fn wait_for_line(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines_with(text).into_iter().next() {
                return line;
            }
            assert!(Instant::now() < deadline, "the agent did not log `{text}` within {within:?}; its log:\n{}", {
                self.log().join("\n")
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `ts` of every collection so far, in order.
    pub fn collected(&self) -> Vec<i64> {
        self.lines_with("Collected.").iter().map(|line| field(line, "ts").parse().unwrap()).collect()
    }

    /// The `ts` of the batches in the spool.
    pub fn spooled(&self) -> BTreeSet<i64> {
        spooled_timestamps(&self.spool_dir)
    }

    /// SIGTERM and wait for the exit (the agent spools what it could not send).
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not stop within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// The value of `key=value` in a tracing line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key}= in: {line}")) + key.len() + 2;
    line[start..].split_whitespace().next().unwrap().trim_matches('"')
}

/// The `ts` of every batch file in a spool directory.
pub fn spooled_timestamps(dir: &Path) -> BTreeSet<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| {
            let body: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            body["samples"][0]["ts"].as_i64()
        })
        .collect()
}

/// Polls `check` every 50 ms until it holds; panics after `within`.
pub async fn eventually_async<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn now_ms() -> i64 {
    microdash_testkit::now_ms()
}

/// A host label no other test (or earlier run on the same broker) uses.
pub fn unique_host(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Debian's node_exporter on a free loopback port, killed on drop.
pub struct NodeExporter {
    child: Child,
    pub port: u16,
}

impl NodeExporter {
    pub fn start() -> NodeExporter {
        let port = mosquitto::free_port();
        let child = Command::new("/usr/bin/prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "/usr/bin/prometheus-node-exporter (Debian's prometheus-node-exporter; scripts/test.sh installs it)",
            );
        NodeExporter { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
