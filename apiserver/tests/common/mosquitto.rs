//! A real Mosquitto for the bridge tests, and helpers that publish like devices do.
//!
//! Tests that need their own broker (to restart it, or with an ACL or TLS) start
//! `/usr/sbin/mosquitto` themselves on a free loopback port; the plain bridge test uses the
//! broker named by `MICRODASH_TEST_MOSQUITTO` (`host:port`), which
//! `scripts/services/mosquitto.sh start DIR PORT` provides. Both fail, not skip, when missing.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};

pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";
const HELP: &str =
    "install it with `scripts/services/mosquitto.sh install` (Debian packages mosquitto and mosquitto-clients)";

/// The broker named by `MICRODASH_TEST_MOSQUITTO`.
pub fn shared_broker() -> String {
    std::env::var("MICRODASH_TEST_MOSQUITTO").unwrap_or_else(|_| {
        panic!(
            "MICRODASH_TEST_MOSQUITTO is not set: start a broker with `scripts/services/mosquitto.sh start DIR PORT` \
             and export MICRODASH_TEST_MOSQUITTO=127.0.0.1:PORT"
        )
    })
}

/// Run as root, Mosquitto switches to its own user unless told to stay: it could not write
/// its persistence file into our temporary folder.
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Mosquitto process of this test, with persistence in its own folder.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
}

impl Mosquitto {
    /// `extra` is appended to the configuration (an ACL, TLS, another listener…).
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        Self::start_on(dir, free_port(), extra)
    }

    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        assert!(Path::new(MOSQUITTO_BIN).exists(), "{MOSQUITTO_BIN} is missing: {HELP}");
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        let listener = if extra.contains("listener ") { String::new() } else { format!("listener {port} 127.0.0.1\n") };
        let anonymous = if extra.contains("allow_anonymous") { "" } else { "allow_anonymous true\n" };
        std::fs::write(
            &conf,
            format!(
                "{listener}user {user}\n{anonymous}persistence true\npersistence_location {dir}/\n\
                 log_dest file {dir}/mosquitto.log\nmax_queued_messages 1000000\nmax_inflight_messages 1000\n{extra}\n",
                dir = dir.display(),
                user = current_user(),
            ),
        )
        .unwrap();
        let mut broker = Mosquitto { child: None, port, conf };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let child = Command::new(MOSQUITTO_BIN)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO_BIN}: {e}; {HELP}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {} (see its log)", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: Mosquitto saves its persistence file (sessions, queued messages) and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `mosquitto_pub` with these arguments; true when it exited with 0.
pub fn mosquitto_pub(args: &[&str]) -> (bool, String) {
    let out = Command::new("mosquitto_pub")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mosquitto_pub: {e}; {HELP}"));
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A device: publishes every message at QoS 1 with rumqttc and waits for all PUBACKs.
/// `Err` with the connection error when the broker refuses or drops it.
pub async fn publish_all(
    port: u16,
    login: Option<(&str, &str)>,
    client_id: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> Result<(), ConnectionError> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024).set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut events) = AsyncClient::new(options, 64);
    let expected = messages.len();
    let publisher = tokio::spawn(async move {
        for (topic, payload) in messages {
            client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < expected {
        let event =
            tokio::time::timeout(Duration::from_secs(30), events.poll()).await.expect("no progress for 30 s")?;
        if let Event::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }
    let client = publisher.await.unwrap();
    client.disconnect().await.unwrap();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
        if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
            break;
        }
    }
    Ok(())
}

/// A CA (`ca.crt`) and a server certificate (`server.crt`, `server.key`) for `localhost` and
/// 127.0.0.1, made with the openssl CLI; for the TLS brokers here and the SMTP server of the
/// alerting tests.
pub fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=microdash test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Ends the persistent session a test left on a shared broker.
pub async fn forget_session(port: u16, client_id: &str) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(options, 4);
    let _ = tokio::time::timeout(Duration::from_secs(5), events.poll()).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), events.poll()).await;
}
