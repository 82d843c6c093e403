//! MQTT delivery against a minimal MQTT 3.1.1 broker on 127.0.0.1 (CONNECT/CONNACK,
//! PUBLISH/PUBACK, PINGREQ/PINGRESP), built from rumqttc's own packet codec.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use microdash_agent::config::Secret;
use microdash_agent::sample::{Batch, Sample};
use microdash_agent::shipper::{Shipper, ShipperOptions, Stats};
use microdash_agent::sink::{MqttSink, Sink};
use microdash_agent::spool::Spool;
use rumqttc::{ConnAck, ConnectReturnCode, Packet, PubAck, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const TENANT: &str = "acme";
const TOKEN: &str = "ingest-token";
const MAX_PACKET: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Published {
    topic: String,
    qos: QoS,
    payload: Vec<u8>,
}

#[derive(Clone, Default)]
struct FakeBroker {
    published: Arc<Mutex<Vec<Published>>>,
    logins: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeBroker {
    async fn serve(&self, addr: SocketAddr) -> JoinHandle<()> {
        let listener = TcpListener::bind(addr).await.unwrap();
        let broker = self.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let broker = broker.clone();
                tokio::spawn(async move { broker.session(socket).await });
            }
        })
    }

    async fn session(&self, mut socket: TcpStream) {
        let mut input = BytesMut::new();
        loop {
            let packet = match Packet::read(&mut input, MAX_PACKET) {
                Ok(packet) => packet,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    if socket.read_buf(&mut input).await.unwrap_or(0) == 0 {
                        return;
                    }
                    continue;
                }
                Err(error) => panic!("bad packet from the agent: {error}"),
            };
            let reply = match packet {
                Packet::Connect(connect) => {
                    let login = connect.login.map(|l| (l.username, l.password)).unwrap_or_default();
                    let ok = login == (TENANT.to_owned(), TOKEN.to_owned());
                    self.logins.lock().unwrap().push(login);
                    let code = if ok { ConnectReturnCode::Success } else { ConnectReturnCode::BadUserNamePassword };
                    Packet::ConnAck(ConnAck::new(code, false))
                }
                Packet::Publish(publish) => {
                    self.published.lock().unwrap().push(Published {
                        topic: publish.topic,
                        qos: publish.qos,
                        payload: publish.payload.to_vec(),
                    });
                    Packet::PubAck(PubAck::new(publish.pkid))
                }
                Packet::PingReq => Packet::PingResp,
                Packet::Disconnect => return,
                other => panic!("unexpected packet {other:?}"),
            };
            let mut output = BytesMut::new();
            reply.write(&mut output, MAX_PACKET).unwrap();
            if socket.write_all(&output).await.is_err() {
                return;
            }
        }
    }

    fn published(&self) -> Vec<Published> {
        self.published.lock().unwrap().clone()
    }

    fn published_seqs(&self) -> Vec<u64> {
        self.published()
            .iter()
            .map(|p| {
                let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                let id = body["samples"][0]["dedupe_id"].as_str().unwrap().to_owned();
                id.split('-').nth(1).unwrap().parse().unwrap()
            })
            .collect()
    }
}

fn batch(seq: u64) -> Batch {
    let samples = (0..3)
        .map(|index| Sample {
            metric: "test.metric".to_owned(),
            value: seq as f64,
            ts: 1_764_104_400_000 + seq as i64,
            labels: BTreeMap::from([("host".to_owned(), "t".to_owned())]),
            dedupe_id: format!("t-{seq}-{index}"),
        })
        .collect();
    Batch::new(seq, samples)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"))
        .count()
}

struct Running {
    batches: mpsc::Sender<Batch>,
    stop: watch::Sender<bool>,
    shipper: JoinHandle<Stats>,
}

impl Running {
    fn start(addr: SocketAddr, token: &str, spool_dir: &Path) -> Self {
        let url = format!("mqtt://{addr}");
        let sink = MqttSink::new(&url, TENANT, &Secret(token.into()), "t", Duration::from_secs(10)).unwrap();
        let spool = Spool::open(spool_dir, 1 << 20).unwrap();
        let options =
            ShipperOptions { backoff_min: Duration::from_millis(50), backoff_max: Duration::from_millis(200) };
        let (batches, batch_rx) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let shipper = tokio::spawn(Shipper::new(Sink::Mqtt(Box::new(sink)), spool, options).run(batch_rx, stop_rx));
        Self { batches, stop, shipper }
    }

    async fn stop(self) -> Stats {
        self.stop.send(true).unwrap();
        drop(self.batches);
        tokio::time::timeout(Duration::from_secs(5), self.shipper).await.expect("stops promptly").unwrap()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn batches_are_published_to_the_tenant_topic_at_qos1_with_tenant_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let broker = FakeBroker::default();
    let _serving = broker.serve(addr).await;
    let agent = Running::start(addr, TOKEN, dir.path());
    for seq in 1..=3 {
        agent.batches.send(batch(seq)).await.unwrap();
    }
    eventually("three publishes", || broker.published().len() == 3).await;
    let stats = agent.stop().await;

    let published = broker.published();
    assert!(published.iter().all(|p| p.topic == "metrics/acme" && p.qos == QoS::AtLeastOnce));
    assert_eq!(published[0].payload, batch(1).body, "the body is {{\"samples\":[...]}}");
    assert_eq!(broker.published_seqs(), vec![1, 2, 3]);
    assert_eq!(broker.logins.lock().unwrap()[0], (TENANT.to_owned(), TOKEN.to_owned()));
    assert_eq!(broker.logins.lock().unwrap().len(), 1, "one connection is kept across sends");
    assert_eq!(stats.sent, 3);
}

#[tokio::test]
async fn broker_down_spools_then_broker_up_replays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let agent = Running::start(addr, TOKEN, dir.path());
    for seq in 1..=3 {
        agent.batches.send(batch(seq)).await.unwrap();
    }
    eventually("three batches spooled", || spool_files(dir.path()) == 3).await;

    let broker = FakeBroker::default();
    let _serving = broker.serve(addr).await;
    agent.batches.send(batch(4)).await.unwrap();
    eventually("all four published", || broker.published().len() == 4).await;
    let stats = agent.stop().await;

    assert_eq!(broker.published_seqs(), vec![1, 2, 3, 4]);
    assert_eq!(spool_files(dir.path()), 0);
    assert_eq!(stats.replayed + stats.sent, 4);
}

#[tokio::test]
async fn refused_credentials_drop_the_batch_and_count_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let broker = FakeBroker::default();
    let _serving = broker.serve(addr).await;
    let agent = Running::start(addr, "wrong-token", dir.path());
    agent.batches.send(batch(1)).await.unwrap();
    eventually("a login attempt", || !broker.logins.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = agent.stop().await;

    assert!(broker.published().is_empty());
    assert_eq!(stats.rejected, 1, "{stats:?}");
    assert_eq!(spool_files(dir.path()), 0);
}
