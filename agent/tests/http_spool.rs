//! Delivery edge cases the real server cannot be made to produce on cue (a 503 with
//! `Retry-After`, a hung request, a 4xx for one batch): the real shipper, HTTP sink and spool
//! against a small programmable axum server on 127.0.0.1. `tests/system.rs` runs the agent
//! binary against the real `microdash serve`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use microdash_agent::config::Secret;
use microdash_agent::sample::{Batch, Sample, SampleBatchBody};
use microdash_agent::shipper::{Shipper, ShipperOptions, Stats};
use microdash_agent::sink::{HttpSink, Sink};
use microdash_agent::spool::Spool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const TOKEN: &str = "test-token";

/// How the test server answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    /// 503 with `Retry-After: 1` for this many requests, then accept.
    BusyFor(u32),
    /// Never answer (a hung server).
    Hang,
}

#[derive(Clone)]
struct TestServer {
    inner: Arc<Mutex<Recorded>>,
}

struct Recorded {
    answer: Answer,
    /// Batch sequence numbers in the order the server stored them.
    stored: Vec<u64>,
    seen_dedupe_ids: HashSet<String>,
    duplicates: u64,
    requests: Vec<Instant>,
}

impl TestServer {
    fn new(answer: Answer) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Recorded {
                answer,
                stored: Vec::new(),
                seen_dedupe_ids: HashSet::new(),
                duplicates: 0,
                requests: Vec::new(),
            })),
        }
    }

    fn stored(&self) -> Vec<u64> {
        self.inner.lock().unwrap().stored.clone()
    }

    fn duplicates(&self) -> u64 {
        self.inner.lock().unwrap().duplicates
    }

    fn requests(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().requests.clone()
    }

    async fn serve(&self, addr: SocketAddr) -> JoinHandle<()> {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let app = Router::new().route("/api/v1/metrics/bulk", post(bulk)).with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        })
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::json!({"title": status.canonical_reason(), "detail": detail}).to_string(),
    )
        .into_response()
}

async fn bulk(State(server): State<TestServer>, headers: HeaderMap, body: String) -> Response {
    let answer = {
        let mut recorded = server.inner.lock().unwrap();
        recorded.requests.push(Instant::now());
        let answer = recorded.answer;
        if let Answer::BusyFor(n) = answer {
            recorded.answer = if n <= 1 { Answer::Accept } else { Answer::BusyFor(n - 1) };
        }
        answer
    };
    match answer {
        Answer::Hang => std::future::pending().await,
        Answer::BusyFor(_) => {
            return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")]).into_response();
        }
        Answer::Accept => {}
    }
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return problem(StatusCode::UNAUTHORIZED, "missing or wrong token");
    }
    let Ok(batch) = serde_json::from_str::<SampleBatchBody>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "not a sample batch");
    };
    if let Some(index) = batch.samples.iter().position(|s| s.metric.contains(' ')) {
        return problem(StatusCode::BAD_REQUEST, &format!("sample {index}: invalid metric name"));
    }
    let mut recorded = server.inner.lock().unwrap();
    let (mut accepted, mut duplicates) = (0, 0);
    for sample in &batch.samples {
        if recorded.seen_dedupe_ids.insert(sample.dedupe_id.clone()) {
            accepted += 1;
        } else {
            duplicates += 1;
        }
    }
    recorded.duplicates += duplicates;
    if accepted > 0 {
        recorded.stored.push(seq_of(&batch.samples[0]));
    }
    (StatusCode::ACCEPTED, axum::Json(serde_json::json!({"accepted": accepted, "duplicates": duplicates})))
        .into_response()
}

fn seq_of(sample: &Sample) -> u64 {
    sample.dedupe_id.split('-').nth(1).unwrap().parse().unwrap()
}

fn batch(seq: u64) -> Batch {
    batch_named(seq, "test.metric")
}

fn batch_named(seq: u64, metric: &str) -> Batch {
    let samples = (0..3)
        .map(|index| Sample {
            metric: metric.to_owned(),
            value: seq as f64,
            ts: 1_764_104_400_000 + seq as i64,
            labels: BTreeMap::from([("host".to_owned(), "t".to_owned())]),
            dedupe_id: format!("t-{seq}-{index}"),
        })
        .collect();
    Batch::new(seq, samples)
}

/// An address nothing listens on (yet): bind an ephemeral port and let it go.
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
    fn start(addr: SocketAddr, spool_dir: &Path, backoff: Duration) -> Self {
        Self::start_with_spool_bound(addr, spool_dir, backoff, 1 << 20)
    }

    fn start_with_spool_bound(addr: SocketAddr, spool_dir: &Path, backoff: Duration, max_bytes: u64) -> Self {
        let server = format!("http://{addr}").parse().unwrap();
        let sink = Sink::Http(HttpSink::new(&server, Secret(TOKEN.into()), None).unwrap());
        let spool = Spool::open(spool_dir, max_bytes).unwrap();
        let options = ShipperOptions { backoff_min: backoff, backoff_max: backoff * 4 };
        let (batches, batch_rx) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let shipper = tokio::spawn(Shipper::new(sink, spool, options).run(batch_rx, stop_rx));
        Self { batches, stop, shipper }
    }

    async fn send(&self, batch: Batch) {
        self.batches.send(batch).await.unwrap();
    }

    async fn stop(self) -> Stats {
        self.stop.send(true).unwrap();
        drop(self.batches);
        tokio::time::timeout(Duration::from_secs(5), self.shipper).await.expect("the shipper stops promptly").unwrap()
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
async fn server_down_spools_then_server_up_replays_each_batch_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let agent = Running::start(addr, dir.path(), Duration::from_millis(50));

    for seq in 1..=5 {
        agent.send(batch(seq)).await;
    }
    eventually("five batches in the spool", || spool_files(dir.path()) == 5).await;

    let server = TestServer::new(Answer::Accept);
    let _serving = server.serve(addr).await;
    for seq in 6..=8 {
        agent.send(batch(seq)).await;
    }
    eventually("all batches stored", || server.stored().len() == 8).await;

    let stats = agent.stop().await;
    assert_eq!(server.stored(), (1..=8).collect::<Vec<_>>());
    assert_eq!(server.duplicates(), 0, "no batch was sent twice");
    assert_eq!(spool_files(dir.path()), 0, "replayed files are deleted");
    assert_eq!(stats.spooled, stats.replayed);
    assert!(stats.replayed >= 5, "{stats:?}");
    assert_eq!(stats.sent + stats.replayed, 8);
}

#[tokio::test]
async fn a_restart_replays_the_previous_runs_spool_before_new_batches() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut previous_run = Spool::open(dir.path(), 1 << 20).unwrap();
        for seq in 1..=3 {
            previous_run.append(&batch(seq)).unwrap();
        }
        // And a crash mid-append.
        std::fs::write(dir.path().join("00000000000000000004.json.tmp"), b"{\"samp").unwrap();
    }
    let addr = free_addr();
    let server = TestServer::new(Answer::Accept);
    let _serving = server.serve(addr).await;
    let agent = Running::start(addr, dir.path(), Duration::from_millis(50));
    agent.send(batch(5)).await;
    eventually("all batches stored", || server.stored().len() == 4).await;

    let stats = agent.stop().await;
    assert_eq!(server.stored(), vec![1, 2, 3, 5]);
    assert_eq!(stats.replayed + stats.sent, 4);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_rejected_batch_is_dropped_and_counted_and_the_rest_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let server = TestServer::new(Answer::Accept);
    let _serving = server.serve(addr).await;
    let agent = Running::start(addr, dir.path(), Duration::from_millis(50));

    agent.send(batch(1)).await;
    agent.send(batch_named(2, "bad name")).await;
    agent.send(batch(3)).await;
    eventually("good batches stored", || server.stored().len() == 2).await;

    let stats = agent.stop().await;
    assert_eq!(server.stored(), vec![1, 3]);
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.spooled, 0, "a rejected batch is not spooled");
    assert_eq!(spool_files(dir.path()), 0);
}

#[tokio::test]
async fn busy_server_is_retried_after_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let server = TestServer::new(Answer::BusyFor(1));
    let _serving = server.serve(addr).await;
    // The backoff alone would retry after 300 ms: only the header explains waiting a second.
    let agent = Running::start(addr, dir.path(), Duration::from_millis(300));

    agent.send(batch(1)).await;
    agent.send(batch(2)).await;
    eventually("both batches stored", || server.stored().len() == 2).await;

    let stats = agent.stop().await;
    assert_eq!(server.stored(), vec![1, 2]);
    let requests = server.requests();
    let waited = requests[1] - requests[0];
    assert!(waited >= Duration::from_millis(900), "retried after {waited:?}");
    assert!(stats.spooled >= 1);
    assert_eq!(spool_files(dir.path()), 0);
}

#[tokio::test]
async fn stopping_mid_send_keeps_the_batch_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let server = TestServer::new(Answer::Hang);
    let _serving = server.serve(addr).await;
    let agent = Running::start(addr, dir.path(), Duration::from_millis(50));

    agent.send(batch(1)).await;
    eventually("the request reached the server", || !server.requests().is_empty()).await;
    agent.send(batch(2)).await;

    let stats = agent.stop().await;
    assert_eq!(stats.spooled, 2, "{stats:?}");
    assert_eq!(spool_files(dir.path()), 2);
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(spool.read(1).unwrap(), batch(1));
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_batches_and_replays_the_rest_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let three_batches = 3 * batch(1).body.len() as u64;
    let agent = Running::start_with_spool_bound(addr, dir.path(), Duration::from_millis(50), three_batches);
    for seq in 1..=6 {
        agent.send(batch(seq)).await;
    }
    eventually("six batches handled", || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names.len() == 3 && names[0].to_string_lossy().starts_with("00000000000000000004")
    })
    .await;

    let server = TestServer::new(Answer::Accept);
    let _serving = server.serve(addr).await;
    eventually("the kept batches stored", || server.stored().len() == 3).await;
    let stats = agent.stop().await;
    assert_eq!(server.stored(), vec![4, 5, 6]);
    assert_eq!(stats.dropped_spool_full, 3);
}
