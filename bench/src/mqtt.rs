//! MQTT ingest throughput: one publisher (rumqttc, QoS 1) feeds, in turn,
//! 1. Mosquitto with `mosquitto_sub -q 1 > /dev/null` as the only consumer: the drain rate,
//!    what the broker and the publisher manage without microdash;
//! 2. Mosquitto with a microdash bridge as the only consumer, until every sample is committed;
//! 3. microdash's embedded broker, until the last PUBACK (which follows the commit).
//!
//! Each with single-sample messages (a bare number on `metrics/default/{metric}`) and with
//! bulk messages (a JSON array on `metrics/default`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

use crate::{KillOnDrop, MqttMode, Server, start_server};

pub struct MqttArgs {
    pub mosquitto: PathBuf,
    pub messages: usize,
    pub bulk_messages: usize,
    pub bulk_size: usize,
    /// Each measurement is repeated; the report gives medians.
    pub rounds: usize,
}

/// One kind of traffic.
struct Workload {
    name: String,
    messages: Arc<Vec<(String, Bytes)>>,
    samples: u64,
}

impl Workload {
    fn singles(n: usize) -> Workload {
        let messages = (0..n)
            .map(|i| (format!("metrics/default/bench.mqtt{}", i % 100), Bytes::from(format!("{}.5", i % 1000))))
            .collect();
        Workload {
            name: "1 sample per message (a bare number on `metrics/default/{metric}`)".into(),
            messages: Arc::new(messages),
            samples: n as u64,
        }
    }

    fn bulk(n: usize, size: usize) -> Workload {
        // Recent timestamps, well inside raw retention: older ones would meet the retention job
        // deleting them while the bench writes them.
        let start = crate::now_ms() - 3_600_000;
        let messages = (0..n)
            .map(|m| {
                let samples: Vec<_> = (0..size)
                    .map(|i| {
                        // Sample n of the run: series n % 100 at ms n / 100, so every sample is new.
                        let n = m * size + i;
                        json!({"metric":"bench.mqtt.bulk","value": i as f64,
                               "ts": start + (n / 100) as i64, "labels":{"host": format!("h{}", n % 100)}})
                    })
                    .collect();
                ("metrics/default".to_string(), Bytes::from(serde_json::to_vec(&samples).expect("json")))
            })
            .collect();
        Workload {
            name: format!("{size} samples per message (a JSON array on `metrics/default`)"),
            messages: Arc::new(messages),
            samples: (n * size) as u64,
        }
    }
}

struct Rates {
    messages_per_sec: f64,
    samples_per_sec: f64,
}

impl Rates {
    fn of(workload: &Workload, elapsed: Duration) -> Rates {
        let secs = elapsed.as_secs_f64();
        Rates {
            messages_per_sec: workload.messages.len() as f64 / secs,
            samples_per_sec: workload.samples as f64 / secs,
        }
    }
}

/// Mosquitto on a free loopback port, persistence off (the drain rate is about the broker's
/// routing, not its disk), and room for a consumer that acknowledges after a commit.
struct Mosquitto {
    _child: KillOnDrop,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_mosquitto(bin: &Path) -> Result<Mosquitto> {
    if !bin.exists() {
        bail!("{} is missing: run `scripts/services/mosquitto.sh install`", bin.display());
    }
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?.trim().to_string();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nuser {user}\nallow_anonymous true\npersistence false\n\
             max_inflight_messages 10000\nmax_queued_messages 10000000\nlog_dest none\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Mosquitto { _child: KillOnDrop(child), port, _dir: dir })
}

/// Publishes every message at QoS 1 on one connection and returns when all are acknowledged.
async fn publish(port: u16, login: Option<(&str, &str)>, client_id: &str, workload: &Workload) -> Result<Duration> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(1000).set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut events) = AsyncClient::new(options, 1000);
    let messages = workload.messages.clone();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages.iter() {
            client.publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload.clone()).await?;
        }
        anyhow::Ok(client)
    });
    let mut acked = 0;
    while acked < workload.messages.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), events.poll())
            .await
            .context("no PUBACK for 60 s")?
            .context("publisher connection")?;
        if let Event::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }
    let elapsed = started.elapsed();
    let client = sender.await??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), events.poll()).await;
    Ok(elapsed)
}

/// Mosquitto's own rate: publisher → broker → `mosquitto_sub -q 1 > /dev/null`.
async fn drain_rate(broker: &Mosquitto, workload: &Workload) -> Result<Duration> {
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-t", "metrics/#", "-q", "1"])
        .args(["-C", &workload.messages.len().to_string(), "-i", "bench-drain"])
        .stdout(Stdio::null())
        .spawn()
        .context("mosquitto_sub (scripts/services/mosquitto.sh install)")?;
    // Time to connect and subscribe.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    publish(broker.port, None, "bench-publisher", workload).await?;
    let status = tokio::time::timeout(Duration::from_secs(300), sub.wait()).await.context("mosquitto_sub")??;
    if !status.success() {
        bail!("mosquitto_sub failed: {status}");
    }
    Ok(started.elapsed())
}

/// A counter or gauge from the server's `/metrics` (0 when absent).
async fn metric(server: &Server, name: &str) -> Result<f64> {
    let text = reqwest::get(format!("{}/metrics", server.base)).await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0))
}

async fn samples_accepted(server: &Server) -> Result<u64> {
    Ok(metric(server, "microdash_samples_accepted_total").await? as u64)
}

/// Database transactions the writer committed so far.
async fn commits(server: &Server) -> Result<f64> {
    metric(server, "microdash_write_batch_seconds_count").await
}

async fn wait_for_bridge(server: &Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if metric(server, "microdash_mqtt_bridge_connected").await? == 1.0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the bridge did not connect");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publisher → Mosquitto → bridge → committed; also the database commits it took.
async fn through_bridge(server: &Server, broker: &Mosquitto, workload: &Workload) -> Result<(Duration, f64)> {
    let target = samples_accepted(server).await? + workload.samples;
    let commits_before = commits(server).await?;
    let started = Instant::now();
    publish(broker.port, None, "bench-publisher", workload).await?;
    while samples_accepted(server).await? < target {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the bridge did not commit every sample within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    Ok((elapsed, commits(server).await? - commits_before))
}

/// Publisher → embedded broker → committed (the PUBACK follows the commit); also the
/// database commits it took.
async fn through_embedded(server: &Server, workload: &Workload) -> Result<(Duration, f64)> {
    let port: u16 = server.mqtt.as_deref().context("no embedded broker")?.rsplit(':').next().unwrap_or("").parse()?;
    let before = samples_accepted(server).await?;
    let commits_before = commits(server).await?;
    let elapsed = publish(port, Some(("default", &server.token)), "bench-device", workload).await?;
    let after = samples_accepted(server).await?;
    if after - before != workload.samples {
        bail!("the embedded broker committed {} samples of {}", after - before, workload.samples);
    }
    Ok((elapsed, commits(server).await? - commits_before))
}

/// What the store takes over HTTP bulk on this machine: the ceiling no MQTT path can pass.
async fn store_ceiling(server_bin: &Path) -> Result<f64> {
    let server = start_server(server_bin, MqttMode::Off)?;
    let target = crate::Target::Microdash { base: server.base.clone(), token: server.token.clone() };
    let load = crate::Load { connections: 4, batch: 5000, seconds: 8, rate: None, ago_ms: 2 * 86_400_000, dc: "eu-1" };
    Ok(crate::sustained_ingest(&target, &[server.process.pid()], load).await?.samples_per_sec)
}

/// The median of some durations.
fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// One path's runs for one workload: times, and commits per run.
#[derive(Default)]
struct Runs {
    times: Vec<Duration>,
    commits: Vec<f64>,
}

impl Runs {
    fn push(&mut self, (time, commits): (Duration, f64)) {
        self.times.push(time);
        self.commits.push(commits);
    }

    fn rates(&self, workload: &Workload) -> Rates {
        Rates::of(workload, median(self.times.clone()))
    }

    fn samples_per_commit(&self, workload: &Workload) -> f64 {
        let commits: f64 = self.commits.iter().sum();
        workload.samples as f64 * self.commits.len() as f64 / commits.max(1.0)
    }
}

/// Runs every measurement `rounds` times and returns the report section (medians).
pub async fn run(server_bin: &Path, args: &MqttArgs) -> Result<String> {
    let workloads = [Workload::singles(args.messages), Workload::bulk(args.bulk_messages, args.bulk_size)];
    let mut drains: Vec<Vec<Duration>> = vec![Vec::new(); workloads.len()];
    let mut bridged: Vec<Runs> = workloads.iter().map(|_| Runs::default()).collect();
    let mut embedded: Vec<Runs> = workloads.iter().map(|_| Runs::default()).collect();
    let mut ceilings = Vec::new();
    for round in 1..=args.rounds {
        // A fresh Mosquitto per round: a persistent bridge session left from the round before
        // would have messages queued for it during the next drain.
        let broker = start_mosquitto(&args.mosquitto)?;
        // Drain rates first, while nothing else is subscribed.
        for (i, w) in workloads.iter().enumerate() {
            eprintln!("[mqtt round {round}/{}] Mosquitto drain rate: {}", args.rounds, w.name);
            let time = drain_rate(&broker, w).await?;
            eprintln!("  {:.0} samples/s", Rates::of(w, time).samples_per_sec);
            drains[i].push(time);
        }
        {
            let url = format!("mqtt://127.0.0.1:{}", broker.port);
            let server = start_server(server_bin, MqttMode::Bridge(url))?;
            wait_for_bridge(&server).await?;
            for (i, w) in workloads.iter().enumerate() {
                eprintln!("[mqtt round {round}/{}] Mosquitto → bridge → SQLite: {}", args.rounds, w.name);
                let run = through_bridge(&server, &broker, w).await?;
                eprintln!("  {:.0} samples/s, {:.0} commits", Rates::of(w, run.0).samples_per_sec, run.1);
                bridged[i].push(run);
            }
        }
        {
            let server = start_server(server_bin, MqttMode::Embedded)?;
            for (i, w) in workloads.iter().enumerate() {
                eprintln!("[mqtt round {round}/{}] embedded broker → SQLite: {}", args.rounds, w.name);
                let run = through_embedded(&server, w).await?;
                eprintln!("  {:.0} samples/s, {:.0} commits", Rates::of(w, run.0).samples_per_sec, run.1);
                embedded[i].push(run);
            }
        }
        eprintln!("[mqtt round {round}/{}] HTTP bulk → SQLite (the store's ceiling)", args.rounds);
        ceilings.push(store_ceiling(server_bin).await?);
    }
    ceilings.sort_by(f64::total_cmp);
    let ceiling = ceilings[ceilings.len() / 2];

    let mut out = format!(
        "## MQTT ingest (Mosquitto + bridge, and the embedded broker)\n\n\
         One publisher (rumqttc, QoS 1, one connection, up to 1000 messages in flight) on this machine \
         feeds, in the same run: Mosquitto drained by `mosquitto_sub -t 'metrics/#' -q 1 > /dev/null` \
         (the broker's own rate; `mosquitto_sub` writes every message out, one write each, so a consumer that \
         batches can pass it); Mosquitto drained by a microdash bridge, timed until every sample is \
         committed; and microdash's embedded broker, timed until the last PUBACK (sent after the commit). \
         Mosquitto runs with `max_inflight_messages 10000` and persistence off; SQLite as in the storage \
         section. The store's ceiling is HTTP bulk into a fresh SQLite server (4 connections × 5000 \
         samples, 8 s): **{ceiling:.0} samples/s**; no MQTT path can pass it, so the bridge's ratio is \
         taken against the lower of the drain rate and that ceiling. Every figure is the median of {} \
         rounds (a fresh Mosquitto and fresh servers each round); samples per commit = samples / database \
         transactions of the writer.\n\n\
         | payload | path | messages/s | samples/s | samples per commit | vs drain | vs min(drain, store) |\n\
         |---|---|---|---|---|---|---|\n",
        args.rounds
    );
    let mut verdicts = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        let drain = Rates::of(w, median(drains[i].clone()));
        let limit = drain.samples_per_sec.min(ceiling);
        let rows = [
            ("Mosquitto drain (`mosquitto_sub`)", drain.messages_per_sec, drain.samples_per_sec, None),
            (
                "Mosquitto → bridge → SQLite",
                bridged[i].rates(w).messages_per_sec,
                bridged[i].rates(w).samples_per_sec,
                Some(bridged[i].samples_per_commit(w)),
            ),
            (
                "embedded broker → SQLite",
                embedded[i].rates(w).messages_per_sec,
                embedded[i].rates(w).samples_per_sec,
                Some(embedded[i].samples_per_commit(w)),
            ),
        ];
        for (j, (path, mps, sps, per_commit)) in rows.into_iter().enumerate() {
            let payload = if j == 0 { format!("{} × {}", w.messages.len(), w.name) } else { String::new() };
            let per_commit = per_commit.map(|c| format!("{c:.0}")).unwrap_or_default();
            out.push_str(&format!(
                "| {payload} | {path} | {mps:.0} | {sps:.0} | {per_commit} | {:.2}× | {:.2}× |\n",
                mps / drain.messages_per_sec,
                sps / limit
            ));
        }
        let bridge = bridged[i].rates(w).samples_per_sec / limit;
        let bound = if drain.samples_per_sec <= ceiling { "the drain rate" } else { "the store" };
        verdicts.push(format!("{:.2}× with {} (bounded by {bound})", bridge, w.name.split(" (").next().unwrap_or("")));
    }
    out.push_str(&format!(
        "\nAim (issue 4): the bridge is never the bottleneck, ≥ 0.9× what the broker and the store allow. \
         Measured: {}.\n",
        verdicts.join("; ")
    ));
    Ok(out)
}
