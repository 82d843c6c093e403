//! The live stream behind the reverse proxies users put in front of it (issue 20): Debian's
//! `nginx` with its default proxy settings (answers buffered, HTTP/1.0 to the upstream) and
//! `haproxy` with the timeouts of Debian's configuration, both real processes on loopback,
//! installed by the test command. A sample must come through at once, and a quiet stream must
//! outlive the proxies' idle timeouts (here shortened to 20 s so the test stays short; the
//! server's keep-alive, 15 s, is what keeps it open either way).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Server, client, create_tenant, free_port, ingest, now_ms};
use reqwest::StatusCode;
use serde_json::json;

/// nginx in front of `upstream`, with nothing but `proxy_pass` (and `proxy_read_timeout`,
/// shortened from 60 s): every other proxy setting is nginx's default.
fn nginx(dir: &Path, upstream: &str, read_timeout: &str) -> (Daemon, u16) {
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass {upstream};\n\
               proxy_read_timeout {read_timeout};\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .args(["-g", "daemon off;", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx (Debian's nginx-light, installed by the test command)");
    (Daemon(child), port)
}

/// haproxy in front of `upstream` with the defaults of Debian's `/etc/haproxy/haproxy.cfg`
/// (`mode http`, `option httplog`, `option dontlognull`), its 50 s client and server timeouts
/// shortened to `timeout`.
fn haproxy(dir: &Path, upstream: &str, timeout: &str) -> (Daemon, u16) {
    let port = free_port();
    let conf = format!(
        "defaults\n  mode http\n  option httplog\n  option dontlognull\n  timeout connect 5s\n\
           timeout client {timeout}\n  timeout server {timeout}\n\
         frontend web\n  bind 127.0.0.1:{port}\n  default_backend microdash\n\
         backend microdash\n  server s1 {upstream}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("/usr/sbin/haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy (Debian's, installed by the test command)");
    (Daemon(child), port)
}

/// Waits until `port` answers HTTP (the proxy is up and reaches the server).
async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client().get(format!("http://127.0.0.1:{port}/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "the proxy on {port} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the `data:` of `event: sample` events from a stream.
struct Events {
    response: reqwest::Response,
    pending: String,
}

impl Events {
    async fn open(port: u16, token: &str) -> Events {
        let request = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/api/v1/stream?metric=through"))
            .bearer_auth(token);
        // A proxy that buffers the stream holds back even its headers (nginx without the
        // server's `X-Accel-Buffering: no` does): that must fail here, not hang.
        let response = tokio::time::timeout(Duration::from_secs(5), request.send())
            .await
            .unwrap_or_else(|_| panic!("no answer through the proxy on {port} within 5 s (held back by it?)"))
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Events { response, pending: String::new() }
    }

    /// The value of the next sample, which must arrive within `within`.
    async fn next_sample(&mut self, within: Duration) -> f64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: sample") {
                    let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                    return serde_json::from_str::<serde_json::Value>(data).unwrap()["value"].as_f64().unwrap();
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no sample within {within:?} (held back by the proxy?)"))
                .unwrap()
                .expect("the stream stays open");
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn send(server: &Server, token: &str, value: f64) {
    let sample = json!([{"metric": "through", "value": value, "ts": now_ms(), "labels": {"via": "proxy"}}]);
    assert_eq!(ingest(server, token, sample).await, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_stream_passes_nginx_and_haproxy_at_once_and_outlives_their_idle_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = create_tenant(&server, "acme").await;
    let upstream = server.url("");
    let nginx_dir = dir.path().join("nginx");
    let haproxy_dir = dir.path().join("haproxy");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    std::fs::create_dir_all(&haproxy_dir).unwrap();
    let (nginx_daemon, nginx_port) = nginx(&nginx_dir, &upstream, "20s");
    let (haproxy_daemon, haproxy_port) = haproxy(&haproxy_dir, upstream.trim_start_matches("http://"), "20s");
    wait_ready(nginx_port).await;
    wait_ready(haproxy_port).await;

    // What the server sends for proxies, on the stream itself.
    let direct = client().get(server.url("/api/v1/stream")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(direct.headers()["x-accel-buffering"], "no");
    assert_eq!(direct.headers()["cache-control"], "no-cache, no-transform");
    drop(direct);
    // Every event stream gets them: the alert transitions' and the MCP endpoint's too.
    let alerts = client().get(server.url("/api/v1/alerts/stream")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(alerts.status(), StatusCode::OK);
    assert_eq!(alerts.headers()["x-accel-buffering"], "no");
    drop(alerts);
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let mcp = client()
        .post(server.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), StatusCode::OK);
    assert!(mcp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(mcp.headers()["x-accel-buffering"], "no");
    assert_eq!(mcp.headers()["cache-control"], "no-cache, no-transform");
    drop(mcp);

    let mut via_nginx = Events::open(nginx_port, &token).await;
    let mut via_haproxy = Events::open(haproxy_port, &token).await;
    // Give both streams a moment to subscribe, then a sample must pass each at once (nginx
    // would hold it in its buffer without `X-Accel-Buffering: no`).
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&server, &token, 1.0).await;
    assert_eq!(via_nginx.next_sample(Duration::from_secs(3)).await, 1.0);
    assert_eq!(via_haproxy.next_sample(Duration::from_secs(3)).await, 1.0);

    // Quiet for longer than both proxies' idle timeouts: the keep-alives hold the streams open.
    tokio::time::sleep(Duration::from_secs(25)).await;
    send(&server, &token, 2.0).await;
    assert_eq!(via_nginx.next_sample(Duration::from_secs(3)).await, 2.0);
    assert_eq!(via_haproxy.next_sample(Duration::from_secs(3)).await, 2.0);

    // Stopped proxies leave nothing behind: nginx's worker, not only its master, is gone (a
    // SIGKILL of the master had left the worker listening after the run).
    drop((via_nginx, via_haproxy));
    drop((nginx_daemon, haproxy_daemon));
    for port in [nginx_port, haproxy_port] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "something still listens on {port}");
    }
}
