//! The agent against the real server: the `microdash-agent` binary ships to a real
//! `microdash serve` (SQLite) over HTTP, over MQTT through the embedded broker, through a real
//! Mosquitto and the bridge, and over mqtts://; its spool carries every collection across a
//! `kill -9` of the server, stored exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::mosquitto::{Mosquitto, forget_session, make_certificates, shared_broker};
use common::{Agent, Server, eventually_async, now_ms, signal, unique_host};

/// Metrics every Linux host reports, with one series per label set that cannot come and go
/// during a test (unlike network interfaces or mounts).
const STABLE_METRICS: &[&str] = &["cpu.usage", "load.1", "mem.used", "mem.total", "swap.total", "uptime.seconds"];

/// Waits until at least `n` collections of `host` are stored.
async fn wait_for_collections(server: &Server, host: &str, n: usize, within: Duration) {
    eventually_async(&format!("{n} collections of {host} stored"), within, || async move {
        server.collection_timestamps(host).await.len() >= n
    })
    .await;
}

/// Checks what one collection looks like once stored: every documented metric with its labels.
async fn assert_documented_metrics(server: &Server, host: &str) {
    let names = server.get("/api/v1/metrics").await;
    let names: BTreeSet<&str> = names["metrics"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    for expected in [
        "cpu.usage",
        "load.1",
        "load.5",
        "load.15",
        "mem.used",
        "mem.total",
        "swap.used",
        "swap.total",
        "disk.used",
        "disk.total",
        "disk.read_bytes",
        "disk.written_bytes",
        "net.rx_bytes",
        "net.tx_bytes",
        "uptime.seconds",
        "process.count",
    ] {
        assert!(names.contains(expected), "{expected} missing from {names:?}");
    }
    let cpu = server.points("cpu.usage", host).await;
    let cores: BTreeSet<&str> = cpu.keys().map(|labels| labels["cpu"].as_str()).collect();
    assert!(cores.contains("total") && cores.contains("0"), "{cores:?}");
    let disk = server.points("disk.used", host).await;
    assert!(disk.keys().any(|labels| labels["mount"] == "/"), "{:?}", disk.keys());
    let net = server.points("net.rx_bytes", host).await;
    assert!(net.keys().any(|labels| labels["iface"] == "lo"), "{:?}", net.keys());
    let mem = server.points("mem.total", host).await;
    let (_, total) = mem.values().next().unwrap()[0];
    assert!(total > 64.0 * 1024.0 * 1024.0, "mem.total {total}");
}

#[tokio::test]
async fn http_samples_become_queryable_through_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let host = unique_host("http");
    let mut agent = Agent::start(
        &dir.path().join("spool"),
        &["--server", &server.base, "--token", &server.token, "--interval", "500ms", "--host-label", &host],
    );
    wait_for_collections(&server, &host, 3, Duration::from_secs(30)).await;
    assert_documented_metrics(&server, &host).await;
    assert!(agent.terminate().success());

    // Quiet: a line per state change, none per batch (DEBUG aside).
    let log = agent.log();
    // The systemd collector's one line (on or off, as this host has a system bus or not) aside.
    let (systemd, loud): (Vec<&String>, Vec<&String>) =
        log.iter().filter(|l| !l.contains("DEBUG")).partition(|l| l.contains("systemd unit states"));
    assert!(systemd.len() <= 1, "{systemd:#?}");
    assert_eq!(agent.lines_with("Connected to the server.").len(), 1);
    assert!(loud.len() <= 4, "more than the start, connect and stop lines:\n{loud:#?}");
    assert!(!log.iter().any(|l| l.contains(&server.token)), "the token must never be logged");
}

/// Stops the server with `kill -9` while the agent collects every 300 ms, restarts it on the
/// same database, and checks that every collection is stored exactly once: each one present
/// (those made during the outage included), and the server's count of accepted samples over
/// both of its lives equal to the points stored (a replay stored again would count twice).
/// Then replays copies of batches the server already has, as a run after a crash that lost
/// their acknowledgement would: all duplicates, nothing stored.
async fn outage_and_replay(mqtt: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = if mqtt { Server::start_with_mqtt(dir.path(), &[]) } else { Server::start(dir.path(), &[]) };
    let host = unique_host(if mqtt { "spool-mqtt" } else { "spool-http" });
    // Owned: the server restarts on the same addresses while the arguments are still in use.
    let (base, token) = (server.base.clone(), server.token.clone());
    let mqtt_url = server.mqtt.as_ref().map(|addr| format!("mqtt://{addr}"));
    let destination = match &mqtt_url {
        Some(url) => vec!["--mqtt", url, "--tenant", "default"],
        None => vec!["--server", &base],
    };
    let args = [&destination[..], &["--token", &token, "--interval", "300ms", "--host-label", &host]].concat();
    let mut agent = Agent::start(&dir.path().join("spool"), &args);
    wait_for_collections(&server, &host, 3, Duration::from_secs(30)).await;

    // Freeze the agent, so what the first server life stored and counted is settled at the kill.
    signal(agent.pid(), "STOP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted_first_life = server.metric("microdash_samples_accepted_total").await as usize;
    assert_eq!(accepted_first_life, server.all_points(&host).await);
    server.kill9();
    let down_at = now_ms();
    signal(agent.pid(), "CONT");

    agent.wait_for_line("spooling batches until it answers", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spooled = agent.spooled();
    assert!(spooled.len() >= 5, "only {} batches spooled during a 3 s outage at 300 ms", spooled.len());
    // Copies of three spooled batches, to replay once more after they were stored.
    let copies = spool_files(&agent.spool_dir).into_iter().take(3).collect::<Vec<_>>();

    server.restart();
    let up_at = now_ms();
    let replayed = agent.wait_for_line("Replayed spooled batches.", Duration::from_secs(40)).await;
    let spool = &agent;
    eventually_async("the spool drains", Duration::from_secs(30), || async move { spool.spooled().is_empty() }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(agent.terminate().success());

    let collected: Vec<i64> = agent.collected();
    let collected_set: BTreeSet<i64> = collected.iter().copied().collect();
    assert_eq!(collected.len(), collected_set.len(), "collection timestamps are unique");
    let left_in_spool = agent.spooled();
    assert!(left_in_spool.len() <= 2, "the stop left {} batches", left_in_spool.len());
    let stored: BTreeSet<i64> = server.collection_timestamps(&host).await.into_iter().collect();
    let must_be_stored: BTreeSet<i64> = collected_set.difference(&left_in_spool).copied().collect();
    let missing: Vec<_> = must_be_stored.difference(&stored).collect();
    assert!(missing.is_empty(), "collections never stored: {missing:?}");
    assert!(stored.is_subset(&collected_set), "stored timestamps the agent never collected");
    let during_outage = collected.iter().filter(|ts| (down_at..up_at).contains(*ts)).count();
    assert!(during_outage >= 5, "{during_outage} collections during the outage");
    assert!(common::field(&replayed, "batches").parse::<usize>().unwrap() >= 1);

    // One point per collection in every series that exists all along.
    for metric in STABLE_METRICS {
        for (labels, points) in server.points(metric, &host).await {
            let timestamps: Vec<i64> = points.iter().map(|(ts, _)| *ts).collect();
            let distinct: BTreeSet<i64> = timestamps.iter().copied().collect();
            assert_eq!(timestamps.len(), distinct.len(), "{metric}{labels:?}: a timestamp twice");
            assert_eq!(distinct, stored, "{metric}{labels:?}: not one point per stored collection");
        }
    }
    // Exactly once as the server counts: accepted samples over both lives = points stored.
    let accepted_second_life = server.metric("microdash_samples_accepted_total").await as usize;
    assert_eq!(accepted_first_life + accepted_second_life, server.all_points(&host).await);

    // A batch stored but still in the spool (its 2xx or PUBACK lost in a crash) is sent again
    // by the next run: the server recognises every sample as a duplicate and stores none.
    // The stop may also have left a batch that the server had already stored (SIGTERM between
    // its 2xx and the file's removal): the next run replays that one too, all duplicates.
    let mut copied_samples: usize = spool_files(&agent.spool_dir)
        .iter()
        .map(|(_, body)| serde_json::from_slice::<serde_json::Value>(body).unwrap())
        .filter(|batch| stored.contains(&batch["samples"][0]["ts"].as_i64().unwrap()))
        .map(|batch| batch["samples"].as_array().unwrap().len())
        .sum();
    let duplicates_before = server.metric("microdash_samples_duplicate_total").await as usize;
    for (name, body) in &copies {
        std::fs::write(agent.spool_dir.join(name), body).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap();
        copied_samples += parsed["samples"].as_array().unwrap().len();
    }
    let mut next_run = Agent::start(&dir.path().join("spool"), &args);
    next_run.wait_for_line("Replayed spooled batches.", Duration::from_secs(20)).await;
    assert!(next_run.terminate().success());
    let duplicates = server.metric("microdash_samples_duplicate_total").await as usize - duplicates_before;
    assert_eq!(
        duplicates, copied_samples,
        "every sample of the replayed copies (and of a stored leftover) is a duplicate"
    );
    let accepted_second_life = server.metric("microdash_samples_accepted_total").await as usize;
    assert_eq!(accepted_first_life + accepted_second_life, server.all_points(&host).await);
}

/// `(file name, content)` of the batch files in a spool, oldest first.
fn spool_files(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn http_spool_survives_a_server_kill_and_stores_every_collection_once() {
    outage_and_replay(false).await;
}

#[tokio::test]
async fn mqtt_spool_survives_an_embedded_broker_kill_and_stores_every_collection_once() {
    outage_and_replay(true).await;
}

#[tokio::test]
async fn mqtt_through_the_embedded_broker_with_tenant_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_mqtt(dir.path(), &[]);
    let url = format!("mqtt://{}", server.mqtt.as_ref().unwrap());
    let host = unique_host("embedded");
    let mut agent = Agent::start(
        &dir.path().join("spool"),
        &[
            "--mqtt",
            &url,
            "--tenant",
            "default",
            "--token",
            &server.token,
            "--interval",
            "500ms",
            "--host-label",
            &host,
        ],
    );
    wait_for_collections(&server, &host, 3, Duration::from_secs(30)).await;
    assert_documented_metrics(&server, &host).await;
    assert!(agent.terminate().success());
    assert_eq!(agent.lines_with("Connected to the server.").len(), 1);

    // A wrong token: the broker refuses the login, the agent says so and drops the batch.
    let mut refused = Agent::start(
        &dir.path().join("spool-refused"),
        &["--mqtt", &url, "--tenant", "default", "--token", "wrong", "--interval", "500ms", "--host-label", "refused"],
    );
    let line = refused.wait_for_line("Server rejected a batch", Duration::from_secs(15)).await;
    assert!(line.contains("ERROR") && line.contains("refused the credentials"), "{line}");
    assert!(refused.terminate().success());
    assert!(server.collection_timestamps("refused").await.is_empty());
}

#[tokio::test]
async fn mqtt_through_mosquitto_and_the_bridge() {
    let broker = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    let client_id = format!("agent-test-{}", std::process::id());
    let server = Server::start(
        dir.path(),
        &[("MICRODASH_MQTT_URL", &format!("mqtt://{broker}")), ("MICRODASH_MQTT_CLIENT_ID", &client_id)],
    );
    server.wait_until_bridged().await;
    let host = unique_host("mosquitto");
    let url = format!("mqtt://{broker}");
    // The test broker allows anonymous clients; the token is sent and ignored.
    let mut agent = Agent::start(
        &dir.path().join("spool"),
        &["--mqtt", &url, "--tenant", "default", "--token", "t", "--interval", "500ms", "--host-label", &host],
    );
    wait_for_collections(&server, &host, 3, Duration::from_secs(30)).await;
    assert_documented_metrics(&server, &host).await;
    assert!(agent.terminate().success());
    drop(server);
    forget_session(broker.rsplit(':').next().unwrap().parse().unwrap(), &client_id).await;
}

#[tokio::test]
async fn mqtts_verifies_the_broker_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    make_certificates(&tls);
    let tls_port = common::mosquitto::free_port();
    let plain_port = common::mosquitto::free_port();
    // One broker, two listeners: the agent publishes over TLS, the server's bridge reads plain.
    let _broker = Mosquitto::start_on(
        &dir.path().join("mosquitto"),
        tls_port,
        &format!(
            "listener {tls_port} 127.0.0.1\ncertfile {t}/server.crt\nkeyfile {t}/server.key\n\
             listener {plain_port} 127.0.0.1\n",
            t = tls.display()
        ),
    );
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = Server::start(
        &server_dir,
        &[
            ("MICRODASH_MQTT_URL", &format!("mqtt://127.0.0.1:{plain_port}")),
            ("MICRODASH_MQTT_CLIENT_ID", "agent-tls-test"),
        ],
    );
    server.wait_until_bridged().await;
    let url = format!("mqtts://localhost:{tls_port}");
    let ca = tls.join("ca.crt");
    let host = unique_host("mqtts");
    let common_args = ["--mqtt", &url, "--tenant", "default", "--token", "t", "--interval", "500ms"];

    // Without the CA, the broker's certificate is not trusted: nothing is sent, all is spooled.
    let untrusting_host = unique_host("untrusting");
    let mut untrusting = Agent::start(
        &dir.path().join("spool-untrusting"),
        &[&common_args[..], &["--host-label", &untrusting_host]].concat(),
    );
    let line = untrusting.wait_for_line("Server unavailable", Duration::from_secs(15)).await;
    assert!(line.to_lowercase().contains("certificate"), "{line}");

    let mut agent = Agent::start(
        &dir.path().join("spool"),
        &[&common_args[..], &["--ca-file", ca.to_str().unwrap(), "--host-label", &host]].concat(),
    );
    wait_for_collections(&server, &host, 3, Duration::from_secs(30)).await;
    assert!(agent.terminate().success());
    assert!(untrusting.terminate().success());
    assert!(server.collection_timestamps(&untrusting_host).await.is_empty());
    assert!(!untrusting.spooled().is_empty(), "batches wait in the spool for a fixed configuration");
}

/// A container without `hostPID` or `hostNetwork`: new PID, mount, UTS and network
/// namespaces (`unshare`), the host's `/proc` and `/` bind-mounted at `/host/proc` and
/// `/host/root` inside. Without flags the agent sees the container; with `--proc-root` and
/// `--root`, running as nobody like the DaemonSet, it reports the host.
#[cfg(target_os = "linux")]
#[test]
fn in_a_container_with_host_proc_and_root_mounted_the_agent_reports_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = r#"
        set -eu
        D=$1; AGENT=$2
        mkdir -p "$D/host/proc" "$D/host/root"
        mount --rbind /proc "$D/host/proc"
        mount --rbind / "$D/host/root"
        # What a container runtime gives a container: its own procfs and sysfs.
        mount -t proc proc /proc
        mount -t sysfs sysfs /sys
        hostname agent-container
        "$AGENT" --once > "$D/container.json"
        # As the DaemonSet runs it: user nobody, no capabilities.
        chmod 755 "$D"
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$AGENT" --once --proc-root "$D/host/proc" --root "$D/host/root" > "$D/host.json"
    "#;
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--pid", "--uts", "--net", "--fork", "--propagation", "private", "sh", "-c", script, "sh"])
        .args([&d, common::AGENT_BIN])
        .env_remove("MICRODASH_AGENT_HOST_LABEL")
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        out.status.success(),
        "unshare needs root (CAP_SYS_ADMIN) to make the namespaces: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| -> Vec<(String, BTreeMap<String, String>, f64)> {
        let body: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap();
        body["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"].as_str().unwrap().to_owned(),
                    serde_json::from_value(s["labels"].clone()).unwrap(),
                    s["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let value = |samples: &[(String, BTreeMap<String, String>, f64)], metric: &str| {
        samples.iter().find(|(m, _, _)| m == metric).map(|(_, _, v)| *v).unwrap()
    };
    let labels_of =
        |samples: &[(String, BTreeMap<String, String>, f64)], metric: &str, key: &str| -> BTreeSet<String> {
            samples.iter().filter(|(m, _, _)| m == metric).map(|(_, l, _)| l[key].clone()).collect()
        };
    let container = read("container.json");
    let host = read("host.json");

    // The container's own view: its hostname, its two processes, a lone loopback.
    assert_eq!(container[0].1["host"], "agent-container");
    assert!(value(&container, "process.count") <= 3.0, "{}", value(&container, "process.count"));
    assert_eq!(labels_of(&container, "net.rx_bytes", "iface"), BTreeSet::from(["lo".to_owned()]));

    // The host's view, through the mounts.
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap().trim().to_owned();
    assert_eq!(host[0].1["host"], hostname);
    let host_processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .count() as f64;
    assert!(
        value(&host, "process.count") >= host_processes / 2.0,
        "{} vs {host_processes}",
        value(&host, "process.count")
    );
    let host_ifaces: BTreeSet<String> = std::fs::read_to_string("/proc/1/net/dev")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(iface, _)| iface.trim().to_owned()))
        .collect();
    assert_eq!(labels_of(&host, "net.rx_bytes", "iface"), host_ifaces);
    let mounts = labels_of(&host, "disk.total", "mount");
    assert!(mounts.contains("/"), "{mounts:?}");
    assert!(!mounts.iter().any(|m| m.starts_with(&d)), "mount points are the host's, not under {d}: {mounts:?}");
    let root = rustix::fs::statvfs("/").unwrap();
    let root_total = host.iter().find(|(m, l, _)| m == "disk.total" && l["mount"] == "/").unwrap().2;
    assert_eq!(root_total, (root.f_blocks * root.f_frsize) as f64);
    // CPU, memory and uptime are host-wide in any /proc.
    assert_eq!(value(&host, "mem.total"), value(&container, "mem.total"));
}
