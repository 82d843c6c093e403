//! A harness that runs the real `microdash` binary on 127.0.0.1:0 with a temporary data folder.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod mosquitto;
pub mod webhook;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct Server {
    child: Child,
    pub base: String,
    /// `127.0.0.1:PORT` of the embedded MQTT broker, when it runs.
    pub mqtt: Option<String>,
    pub dir: PathBuf,
    pub token: String,
    env: Vec<(String, String)>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_microdash")
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &[])
    }

    /// Starts the server with extra `MICRODASH_*` environment variables.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn(dir, env, "127.0.0.1:0", "off")
    }

    /// Starts the server with its embedded MQTT broker on a free loopback port.
    pub fn start_with_mqtt(dir: &Path, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn(dir, env, "127.0.0.1:0", "127.0.0.1:0")
    }

    fn spawn(dir: &Path, env: Vec<(String, String)>, listen: &str, mqtt_listen: &str) -> Server {
        let mut command = Command::new(bin());
        command.args(["serve", "--listen", listen, "--mqtt-listen", mqtt_listen, "--log-format", "json"]);
        if !env.iter().any(|(k, _)| k == "MICRODASH_DATABASE_URL") {
            command.arg("--database-url").arg(format!("sqlite://{}", dir.join("microdash.db").display()));
        }
        command
            .arg("--data-dir")
            .arg(dir)
            .env("MICRODASH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("MICRODASH_LOG", "info")
            // Most tests write timestamps near 1970; keep them (tests of retention override).
            .env("MICRODASH_RETENTION_RAW", "36500d")
            .env("MICRODASH_RETENTION_1M", "36500d")
            .env("MICRODASH_RETENTION_5M", "36500d")
            // The tests' webhook receivers listen on loopback, which is refused by default
            // (tests of that refusal override this).
            .env("MICRODASH_OUTBOUND_ALLOW", "127.0.0.0/8,::1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start microdash");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    // The MQTT address is logged before the HTTP one.
                    if let Some(addr) = v["fields"]["mqtt_listen"].as_str() {
                        let _ = tx.send(("mqtt", addr.to_string()));
                    }
                    if let Some(addr) = v["fields"]["listen"].as_str() {
                        let _ = tx.send(("http", addr.to_string()));
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
            match rx.recv_timeout(Duration::from_secs(30)).expect("server did not report its address") {
                ("mqtt", addr) => mqtt = Some(addr),
                (_, addr) => break addr,
            }
        };
        // Only the process that created tenant `default` has its token file.
        let token = std::fs::read_to_string(dir.join("default-tenant.token")).unwrap_or_default().trim().to_string();
        Server { child, base: format!("http://{addr}"), mqtt, dir: dir.to_path_buf(), token, env }
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; true when it exited with 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Starts again on the same data folder and port.
    pub fn restart(&mut self) {
        let listen = self.base.trim_start_matches("http://").to_string();
        let mqtt_listen = self.mqtt.clone().unwrap_or_else(|| "off".into());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let fresh = Self::spawn(&self.dir.clone(), std::mem::take(&mut self.env), &listen, &mqtt_listen);
        *self = fresh;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a tenant through the admin API; answers its first token.
pub async fn create_tenant(server: &Server, name: &str) -> String {
    let r = client()
        .post(server.url("/api/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .body(serde_json::json!({ "name": name }).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    assert_eq!(status, reqwest::StatusCode::CREATED, "creating tenant {name}: {body}");
    body["token"].as_str().unwrap().to_string()
}

/// `POST /api/v1/metrics/bulk` of `samples` (a JSON array) with `token`; the status.
pub async fn ingest(server: &Server, token: &str, samples: serde_json::Value) -> reqwest::StatusCode {
    client()
        .post(server.url("/api/v1/metrics/bulk"))
        .bearer_auth(token)
        .body(serde_json::json!({ "samples": samples }).to_string())
        .send()
        .await
        .unwrap()
        .status()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Runs the CLI against a data folder and returns (status ok, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env("MICRODASH_DATABASE_URL", format!("sqlite://{}", dir.join("microdash.db").display()))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new, empty database on the test PostgreSQL (`postgres`) or MariaDB (`mysql`) server that
/// `scripts/services.sh` starts; the test fails with the command to run when it is not there.
/// Database `db` of the test Redis (one number per test, so tests never share a stream), emptied;
/// its URL and a connection to it.
pub async fn fresh_redis(db: u8) -> (String, redis::aio::MultiplexedConnection) {
    let base = std::env::var("MICRODASH_TEST_REDIS_URL").expect(
        "MICRODASH_TEST_REDIS_URL is not set: start the test services with `eval \"$(scripts/services.sh start)\"`",
    );
    let url = format!("{base}/{db}");
    let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    (url, conn)
}

pub async fn fresh_database_url(kind: &str) -> String {
    use sqlx::Connection;
    let var = format!("MICRODASH_TEST_{}_URL", kind.to_uppercase());
    let url = std::env::var(&var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test services with `eval \"$(scripts/services.sh start)\"` (make test does)"
        )
    });
    // 48 random bits: tests of one binary run in parallel and CI databases outlive a process, so
    // neither the pid nor the clock is unique enough (pid*1000 + nanos%1000 collided in CI).
    let name = format!("md_test_{}", hex::encode(rand::random::<[u8; 6]>()));
    let create = format!("CREATE DATABASE {name}");
    if kind == "postgres" {
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect to the test PostgreSQL");
        sqlx::query(&create).execute(&mut admin).await.unwrap();
    } else {
        let mut admin = sqlx::MySqlConnection::connect(&url).await.expect("connect to the test MariaDB");
        sqlx::query(&create).execute(&mut admin).await.unwrap();
    }
    let base = url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&url);
    format!("{base}/{name}")
}
