//! A webhook receiver for the tests: records every request (headers, body, arrival time) and
//! answers with a chosen status.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use serde_json::Value;

pub struct Hook {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Clone)]
struct Recorder {
    hooks: Arc<Mutex<Vec<Hook>>>,
    status: Arc<AtomicU16>,
}

pub struct Receiver {
    addr: SocketAddr,
    recorder: Recorder,
    task: tokio::task::JoinHandle<()>,
}

async fn record(State(r): State<Recorder>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    r.hooks.lock().unwrap().push(Hook { headers, body: body.to_vec(), at: Instant::now() });
    AxumStatus::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

impl Receiver {
    /// Listens on `port` (0 = any) and answers `status` to every request.
    pub async fn start(port: u16, status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let recorder = Recorder { hooks: Arc::default(), status: Arc::new(AtomicU16::new(status)) };
        let app = axum::Router::new().route("/hook", axum::routing::post(record)).with_state(recorder.clone());
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, recorder, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn count(&self) -> usize {
        self.recorder.hooks.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            assert!(Instant::now() < deadline, "the webhook got {} of {n} requests in {timeout:?}", self.count());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The status answered from now on.
    pub fn answer(&self, status: u16) {
        self.recorder.status.store(status, Ordering::SeqCst);
    }

    pub fn with_hooks<T>(&self, f: impl FnOnce(&[Hook]) -> T) -> T {
        f(&self.recorder.hooks.lock().unwrap())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
