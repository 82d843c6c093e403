//! A harness that runs the real `microdash` binary on 127.0.0.1:0 with a temporary data folder
//! (started by the workspace's test kit, `testkit/`), and the helpers the server's tests share.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub mod mosquitto;
pub mod webhook;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A child process (Prometheus, nginx, haproxy, …) stopped when dropped.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    /// Asks the process to stop (SIGTERM), and kills it if it has not within 5 s. A SIGKILL alone
    /// left nginx's worker behind, an orphan holding the test's port after the run: only a
    /// master that is asked to stop takes its workers down with it.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on our own child's pid; it is not reaped yet, so the pid is its.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on (yet).
pub fn free_port() -> u16 {
    mosquitto::free_port()
}

/// The real `microdash serve` of the test kit, with the defaults of the server's own tests.
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

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_microdash")
}

/// The server of these tests: the admin token, retention that keeps timestamps near 1970 (most
/// tests write such; tests of retention override it), and webhooks to loopback allowed (the
/// tests' receivers listen there; tests of that refusal override it).
fn serve(dir: &Path, env: &[(&str, &str)]) -> microdash_testkit::Serve {
    microdash_testkit::Serve::new(bin(), dir)
        .env("MICRODASH_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MICRODASH_RETENTION_RAW", "36500d")
        .env("MICRODASH_RETENTION_1M", "36500d")
        .env("MICRODASH_RETENTION_5M", "36500d")
        .env("MICRODASH_OUTBOUND_ALLOW", "127.0.0.0/8,::1")
        .envs(env)
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &[])
    }

    /// Starts the server with extra `MICRODASH_*` environment variables.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server(serve(dir, env).start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts the server with its embedded MQTT broker on a free loopback port.
    pub fn start_with_mqtt(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server(serve(dir, env).with_mqtt().start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts the server on a fresh database of `kind`: `sqlite` (embedded, in `dir`),
    /// `postgres` or `mysql` (MariaDB), with extra `MICRODASH_*` variables.
    pub async fn on_database(kind: &str, dir: &Path, env: &[(&str, &str)]) -> Server {
        let url = match kind {
            "sqlite" => None,
            other => Some(fresh_database_url(other).await),
        };
        let mut all: Vec<(&str, &str)> = url.iter().map(|u| ("MICRODASH_DATABASE_URL", u.as_str())).collect();
        all.extend_from_slice(env);
        Self::start_with(dir, &all)
    }

    /// Starts again on the same data folder and ports (SIGKILL first).
    pub fn restart(&mut self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e}"));
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
    microdash_testkit::now_ms()
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

/// A request with `token` and an optional JSON body; the status and the answer (JSON, or the
/// text as a JSON string).
pub async fn send(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = client().request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}
