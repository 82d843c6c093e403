//! Runs the tenants' exporters (issue 18, item 3; the spec is `domain/exporter.rs`): every
//! `interval` each exporter takes the newest sample of each selected series that it has not
//! pushed yet, as an OTel periodic reader exports a gauge's current value, and pushes them as
//! one OTLP/HTTP protobuf request. A push that fails with 429, a 5xx or no answer stays queued
//! and is retried with a doubling backoff (1 s to 60 s); the queue holds at most `MAX_QUEUE`
//! pushes, the oldest dropped (and counted) past it. Another 4xx drops the push: the receiver
//! will not take it. Requests go through the outbound policy (no loopback, private, link-local
//! or metadata addresses unless `outbound_allow` lets them), and a status reports the last
//! success and the last error in a few words, never the receiver's body.
//!
//! One process runs them: the one that evaluates alerts (role `all` or `worker`). Exporters are
//! read from the database every `RELOAD` and at once after a change made through this process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::domain::exporter::{Checked, ExporterSpec, Point, otlp_request};
use crate::domain::now_ms;
use crate::domain::promql::LOOKBACK_MS;
use crate::outbound::OutboundPolicy;
use crate::series_select::{self, SelectError};
use crate::storage::{DynStore, labels_key};

/// Pushes kept for a receiver that does not take them, per exporter.
pub const MAX_QUEUE: usize = 60;
/// Series one push may carry.
pub const MAX_SERIES: usize = 100_000;
const RELOAD: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How an exporter is doing, as this process saw it since it started.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ExporterStatus {
    /// Pushes the receiver took, and their samples.
    pub pushed_batches: u64,
    pub pushed_samples: u64,
    /// Pushes given up: refused by the receiver with a 4xx, or dropped from a full queue.
    pub dropped_batches: u64,
    /// Pushes waiting for the receiver.
    pub pending_batches: usize,
    /// Unix ms of the last push the receiver took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<i64>,
    /// The last failure in a few words (`HTTP 503`, `could not connect`, `refused: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
}

type Key = (i64, String);

struct Running {
    spec: String,
    status: Arc<Mutex<ExporterStatus>>,
    task: tokio::task::JoinHandle<()>,
}

/// The exporters of every tenant, where this process runs them.
#[derive(Clone)]
pub struct Exporters {
    running: Option<Arc<Mutex<HashMap<Key, Running>>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Exporters {
    /// A process that does not run exporters (role `api`; tests of other parts).
    pub fn disabled() -> Self {
        Exporters { running: None, wake: Arc::new(tokio::sync::Notify::new()) }
    }

    pub fn start(store: DynStore, outbound: Arc<OutboundPolicy>) -> Self {
        let exporters = Exporters {
            running: Some(Arc::new(Mutex::new(HashMap::new()))),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        tokio::spawn(exporters.clone().supervise(store, outbound));
        exporters
    }

    /// Re-reads the exporters now (after a change made through this process).
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// The status of a tenant's exporter; `None` where exporters do not run here.
    pub fn status(&self, tenant_id: i64, name: &str) -> Option<ExporterStatus> {
        let running = self.running.as_ref()?.lock().expect("not poisoned");
        Some(
            running
                .get(&(tenant_id, name.to_string()))
                .map(|r| r.status.lock().expect("not poisoned").clone())
                .unwrap_or_default(),
        )
    }

    async fn supervise(self, store: DynStore, outbound: Arc<OutboundPolicy>) {
        let Some(running) = self.running.clone() else { return };
        let client = match outbound.client_builder().timeout(TIMEOUT).build() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "Exporters cannot start: no HTTP client.");
                return;
            }
        };
        loop {
            match store.all_exporters().await {
                Ok(all) => {
                    let mut running = running.lock().expect("not poisoned");
                    let wanted: HashMap<Key, (String, String)> = all
                        .into_iter()
                        .map(|(tenant_id, tenant, name, spec)| ((tenant_id, name), (tenant, spec)))
                        .collect();
                    running.retain(|key, r| {
                        let keep = wanted.get(key).is_some_and(|(_, spec)| *spec == r.spec);
                        if !keep {
                            r.task.abort();
                        }
                        keep
                    });
                    for (key, (tenant, spec)) in wanted {
                        if running.contains_key(&key) {
                            continue;
                        }
                        let checked =
                            serde_json::from_str::<ExporterSpec>(&spec).map_err(|e| e.to_string()).and_then(|s| {
                                s.check().map_err(|errors| {
                                    format!("{} invalid field(s), first {}", errors.len(), errors[0].field)
                                })
                            });
                        let status = Arc::new(Mutex::new(ExporterStatus::default()));
                        let task = match checked {
                            Ok(checked) => tokio::spawn(run(
                                Target { tenant_id: key.0, tenant, checked },
                                store.clone(),
                                client.clone(),
                                outbound.clone(),
                                status.clone(),
                            )),
                            Err(why) => {
                                failed(&status, format!("stored spec is invalid: {why}"));
                                tokio::spawn(async {})
                            }
                        };
                        running.insert(key, Running { spec, status, task });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Reading the exporters failed; retrying."),
            }
            let _ = tokio::time::timeout(RELOAD, self.wake.notified()).await;
        }
    }
}

struct Target {
    tenant_id: i64,
    tenant: String,
    checked: Checked,
}

fn failed(status: &Mutex<ExporterStatus>, why: String) {
    let mut status = status.lock().expect("not poisoned");
    status.last_error = Some(why);
    status.last_error_at = Some(now_ms());
}

/// One exporter: collect every interval, push what is queued when the receiver may take it.
async fn run(
    target: Target,
    store: DynStore,
    client: reqwest::Client,
    outbound: Arc<OutboundPolicy>,
    status: Arc<Mutex<ExporterStatus>>,
) {
    let interval = target.checked.interval;
    // The newest sample pushed per series; a first push takes what is within the lookback.
    let mut pushed_until: HashMap<String, i64> = HashMap::new();
    let since_start = now_ms() - LOOKBACK_MS;
    let mut queue: VecDeque<(Vec<u8>, u64)> = VecDeque::new();
    let mut next_collect = Instant::now();
    let mut retry_at = Instant::now();
    let mut backoff = Duration::from_secs(1);
    loop {
        if Instant::now() >= next_collect {
            match collect(&target, &store, &mut pushed_until, since_start).await {
                Ok(Some(push)) => {
                    queue.push_back(push);
                    if queue.len() > MAX_QUEUE {
                        queue.pop_front();
                        status.lock().expect("not poisoned").dropped_batches += 1;
                    }
                }
                Ok(None) => {}
                Err(why) => failed(&status, why),
            }
            next_collect = (next_collect + interval).max(Instant::now());
        }
        if !queue.is_empty() && Instant::now() >= retry_at {
            let (body, samples) = queue.front().expect("not empty");
            match push(&client, &outbound, &target.checked, body.clone()).await {
                Pushed::Taken => {
                    let mut s = status.lock().expect("not poisoned");
                    s.pushed_batches += 1;
                    s.pushed_samples += samples;
                    s.last_success_at = Some(now_ms());
                    queue.pop_front();
                    backoff = Duration::from_secs(1);
                }
                Pushed::Retry(why) => {
                    failed(&status, why);
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Pushed::Refused(why) => {
                    failed(&status, why);
                    status.lock().expect("not poisoned").dropped_batches += 1;
                    queue.pop_front();
                }
            }
        }
        status.lock().expect("not poisoned").pending_batches = queue.len();
        let wake = if queue.is_empty() { next_collect } else { next_collect.min(retry_at) };
        tokio::time::sleep_until(wake.max(Instant::now() + Duration::from_millis(20))).await;
    }
}

/// The request of the series' samples not pushed yet; `None` when there are none.
async fn collect(
    target: &Target,
    store: &DynStore,
    pushed_until: &mut HashMap<String, i64>,
    since_start: i64,
) -> Result<Option<(Vec<u8>, u64)>, String> {
    let found = match series_select::matching(
        store,
        target.tenant_id,
        &target.checked.selectors,
        Some(since_start),
        MAX_SERIES,
    )
    .await
    {
        Ok(found) => found,
        Err(SelectError::TooMany(max)) => return Err(format!("the selectors match more than {max} series")),
        Err(SelectError::Store(e)) => return Err(format!("reading the series failed: {e}")),
    };
    let mut points = Vec::new();
    for m in found {
        let Some((ts, value)) = m.last else { continue };
        let key = format!("{}{}", m.metric, labels_key(&m.labels));
        if pushed_until.get(&key).is_some_and(|&until| until >= ts) {
            continue;
        }
        pushed_until.insert(key, ts);
        points.push(Point { metric: m.metric, labels: m.labels, ts, value });
    }
    if points.is_empty() {
        return Ok(None);
    }
    let samples = points.len() as u64;
    Ok(Some((otlp_request(&target.tenant, points).encode_to_vec(), samples)))
}

enum Pushed {
    Taken,
    /// 429, a 5xx or no answer: kept and tried again.
    Retry(String),
    /// Another 4xx, or an address the outbound policy refuses: given up.
    Refused(String),
}

async fn push(client: &reqwest::Client, outbound: &OutboundPolicy, checked: &Checked, body: Vec<u8>) -> Pushed {
    if let Err(why) = outbound.check_url(&checked.endpoint) {
        return Pushed::Refused(format!("refused: {why}"));
    }
    let mut request = client
        .post(checked.endpoint.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body);
    for (name, value) in &checked.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Pushed::Taken,
        Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
            Pushed::Retry(format!("HTTP {}", r.status()))
        }
        Ok(r) => Pushed::Refused(format!("HTTP {}: the receiver refused the push", r.status())),
        Err(e) if e.is_timeout() => Pushed::Retry("timed out".into()),
        Err(e) if e.is_connect() => Pushed::Retry(match std::error::Error::source(&e).map(|s| s.to_string()) {
            Some(why) if why.contains("refused:") || why.contains("outbound") => format!("refused: {why}"),
            _ => "could not connect".into(),
        }),
        Err(_) => Pushed::Retry("the request failed".into()),
    }
}
