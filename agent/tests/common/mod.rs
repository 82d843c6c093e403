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
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_microdash-agent");

/// `target/<profile>/microdash`, checked to be newer than the server's sources.
pub fn server_bin() -> PathBuf {
    let bin = Path::new(AGENT_BIN).with_file_name("microdash");
    let build = "build it with `cargo build -p microdash` (with the same CARGO_TARGET_DIR and profile), or run \
                 `cargo test --workspace`, which builds it";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {build}", bin.display()));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apiserver/src");
    if let Some((newest, path)) = newest_file(&sources) {
        assert!(built >= newest, "{} is older than {}: {build}", bin.display(), path.display());
    }
    bin
}

fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_file(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok().map(|t| (t, path))
        };
        if let Some(candidate) = candidate
            && newest.as_ref().is_none_or(|(t, _)| candidate.0 > *t)
        {
            newest = Some(candidate);
        }
    }
    newest
}

/// A `microdash serve` process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT` of the embedded MQTT broker, when it runs.
    pub mqtt: Option<String>,
    pub dir: PathBuf,
    /// The token of tenant `default` (all scopes), created on the first start.
    pub token: String,
    env: Vec<(String, String)>,
}

impl Server {
    /// HTTP only.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn(dir, owned(env), "127.0.0.1:0", "off", None)
    }

    /// With the embedded MQTT broker on a free loopback port.
    pub fn start_with_mqtt(dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn(dir, owned(env), "127.0.0.1:0", "127.0.0.1:0", None)
    }

    fn spawn(dir: &Path, env: Vec<(String, String)>, listen: &str, mqtt_listen: &str, token: Option<String>) -> Server {
        let mut child = Command::new(server_bin())
            .args(["serve", "--listen", listen, "--mqtt-listen", mqtt_listen, "--log-format", "json"])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("microdash.db").display()))
            .arg("--data-dir")
            .arg(dir)
            .env("MICRODASH_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start microdash");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Ok(v) = serde_json::from_str::<Value>(&line) {
                    // The MQTT address is logged before the HTTP one.
                    if let Some(addr) = v["fields"]["mqtt_listen"].as_str() {
                        let _ = tx.send(("mqtt", addr.to_owned()));
                    }
                    if let Some(addr) = v["fields"]["listen"].as_str() {
                        let _ = tx.send(("http", addr.to_owned()));
                        sent = true;
                    }
                }
                if std::env::var("MICRODASH_TEST_LOGS").is_ok() {
                    eprintln!("server: {line}");
                }
            }
        });
        let mut mqtt = None;
        let addr = loop {
            match rx.recv_timeout(Duration::from_secs(30)).expect("the server did not report its address") {
                ("mqtt", addr) => mqtt = Some(addr),
                (_, addr) => break addr,
            }
        };
        let token = token.unwrap_or_else(|| {
            std::fs::read_to_string(dir.join("default-tenant.token")).expect("default-tenant.token").trim().to_owned()
        });
        Server { child, base: format!("http://{addr}"), mqtt, dir: dir.to_path_buf(), token, env }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().unwrap();
    }

    /// Starts again on the same database and the same ports (after `kill9`).
    pub fn restart(&mut self) {
        let listen = self.base.trim_start_matches("http://").to_owned();
        let mqtt_listen = self.mqtt.clone().unwrap_or_else(|| "off".into());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let env = std::mem::take(&mut self.env);
        *self = Self::spawn(&self.dir.clone(), env, &listen, &mqtt_listen, Some(self.token.clone()));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A host label no other test (or earlier run on the same broker) uses.
pub fn unique_host(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
