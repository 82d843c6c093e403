//! The one harness that starts `microdash serve` for the tests of every crate (`apiserver`,
//! `agent`, `operator`) and for `bench`: the command line, the temporary SQLite database, the
//! addresses read from the server's JSON log (HTTP and the embedded MQTT broker), the token of
//! tenant `default`, and a process that is killed when dropped. Each crate adds only what is its
//! own (the server's tests its defaults, the operator its admin client).
//!
//! Nothing here is a test double: it runs the real binary.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// How long a server may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a server. `Serve::new(bin, dir)` then the builder methods, then `start`.
#[derive(Debug, Clone)]
pub struct Serve {
    bin: PathBuf,
    dir: PathBuf,
    listen: String,
    mqtt_listen: String,
    env: Vec<(String, String)>,
    log_filter: String,
}

impl Serve {
    /// `bin serve` with its data folder `dir` (and SQLite `dir/microdash.db`, unless
    /// `MICRODASH_DATABASE_URL` is among the environment), HTTP on a free loopback port, no
    /// MQTT broker, `MICRODASH_LOG=info`.
    pub fn new(bin: impl Into<PathBuf>, dir: &Path) -> Serve {
        Serve {
            bin: bin.into(),
            dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            mqtt_listen: "off".into(),
            env: Vec::new(),
            log_filter: "info".into(),
        }
    }

    /// The embedded MQTT broker on a free loopback port.
    pub fn with_mqtt(mut self) -> Serve {
        self.mqtt_listen = "127.0.0.1:0".into();
        self
    }

    /// These addresses (to start again on the ports a stopped server had).
    pub fn on(mut self, listen: &str, mqtt_listen: Option<&str>) -> Serve {
        self.listen = listen.into();
        self.mqtt_listen = mqtt_listen.unwrap_or("off").into();
        self
    }

    /// One more environment variable; later ones win over earlier ones.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Serve {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<K: AsRef<str>, V: AsRef<str>>(mut self, vars: &[(K, V)]) -> Serve {
        self.env.extend(vars.iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())));
        self
    }

    /// `MICRODASH_LOG` (default `info`; the address lines are logged at info).
    pub fn log(mut self, filter: &str) -> Serve {
        self.log_filter = filter.into();
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the process and waits until it reports where it listens; an error says why not
    /// (the binary is missing, or the server stopped or said nothing within 30 s, with its last
    /// log lines).
    pub fn start(&self) -> Result<Server, String> {
        if !self.bin.exists() {
            return Err(format!("{} is missing: build it with `cargo build -p microdash`", self.bin.display()));
        }
        let mut command = Command::new(&self.bin);
        command.args(["serve", "--listen", &self.listen, "--mqtt-listen", &self.mqtt_listen, "--log-format", "json"]);
        if !self.env.iter().any(|(k, _)| k == "MICRODASH_DATABASE_URL") {
            command.arg("--database-url").arg(format!("sqlite://{}", self.dir.join("microdash.db").display()));
        }
        let mut child = command
            .arg("--data-dir")
            .arg(&self.dir)
            .env("MICRODASH_LOG", &self.log_filter)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let kept: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let keep = kept.clone();
        // Reads the log to its end, so a full pipe never blocks the server's logging.
        std::thread::spawn(move || {
            let echo = std::env::var("MICRODASH_TEST_LOGS").is_ok();
            let mut reported = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !reported {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        // The MQTT address is logged before the HTTP one.
                        if let Some(addr) = v["fields"]["mqtt_listen"].as_str() {
                            let _ = tx.send(Line::Mqtt(addr.to_string()));
                        }
                        if let Some(addr) = v["fields"]["listen"].as_str() {
                            let _ = tx.send(Line::Http(addr.to_string()));
                            reported = true;
                        }
                    }
                    if !reported {
                        let _ = tx.send(Line::Other(line.clone()));
                    }
                }
                if echo {
                    eprintln!("microdash: {line}");
                }
                let mut keep = keep.lock().expect("log poisoned");
                if keep.len() == LOG_LINES_KEPT {
                    keep.pop_front();
                }
                keep.push_back(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut mqtt, mut last) = (None, Vec::new());
        let http = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Line::Mqtt(addr)) => mqtt = Some(addr),
                Ok(Line::Http(addr)) => break addr,
                Ok(Line::Other(line)) => {
                    last.push(line);
                    if last.len() > 20 {
                        last.remove(0);
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!(
                        "the server did not report its address ({status}); its last log lines:\n{}",
                        last.join("\n")
                    ));
                }
            }
        };
        // Only the process that created tenant `default` has its token file.
        let token =
            std::fs::read_to_string(self.dir.join("default-tenant.token")).unwrap_or_default().trim().to_string();
        Ok(Server { child, base: format!("http://{http}"), mqtt, token, serve: self.clone(), log: kept })
    }
}

enum Line {
    Http(String),
    Mqtt(String),
    Other(String),
}

/// A running `microdash serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT` of the embedded MQTT broker, when it runs.
    pub mqtt: Option<String>,
    /// The token of tenant `default` (all scopes); empty unless this process created it.
    pub token: String,
    serve: Serve,
    /// The newest `LOG_LINES_KEPT` lines of its log.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Log lines a `Server` keeps for `log()`.
const LOG_LINES_KEPT: usize = 5000;

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The newest lines of the server's log (JSON, one per line), joined by newlines.
    pub fn log(&self) -> String {
        self.log.lock().expect("log poisoned").iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.serve.dir
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit; true when it exited with 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the process (SIGKILL) and starts it again on the same data folder, environment and
    /// ports; the token of tenant `default` is kept.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill9();
        let listen = self.base.trim_start_matches("http://").to_string();
        let serve = self.serve.clone().on(&listen, self.mqtt.as_deref());
        let token = std::mem::take(&mut self.token);
        let mut fresh = serve.start()?;
        if fresh.token.is_empty() {
            fresh.token = token;
        }
        *self = fresh;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` beside the running test executable (`target/<profile>/name`, which `cargo test
/// --workspace` builds), checked to be newer than every file under `sources`: a test against
/// an old binary would prove nothing. Panics with the command that builds it.
pub fn binary_beside_tests(name: &str, sources: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let bin = exe.parent().and_then(Path::parent).expect("target/<profile>").join(name);
    let build = format!(
        "build it with `cargo build -p {name}` (with the same CARGO_TARGET_DIR and profile), or run `cargo test \
         --workspace`, which builds it"
    );
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {build}", bin.display()));
    if let Some((newest, path)) = newest_file(sources) {
        assert!(built >= newest, "{} is older than {}: {build}", bin.display(), path.display());
    }
    bin
}

/// `target/<profile>/microdash` beside the running test executable, checked to be newer than
/// the server's sources (`apiserver/src`): what the tests of the other crates run.
pub fn microdash_beside_tests() -> PathBuf {
    binary_beside_tests("microdash", &Path::new(env!("CARGO_MANIFEST_DIR")).join("../apiserver/src"))
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

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis() as i64
}
