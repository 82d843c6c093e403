//! The distributed queue: Redis Streams with a consumer group.
//!
//! API processes `XADD` each accepted batch (and count it in a Redis counter, for
//! back-pressure) and answer only once Redis has it. Workers read with `XREADGROUP`, write
//! a group of entries in one database transaction, and `XACK` after the commit. A worker that
//! dies leaves its entries pending; another worker claims them (`XAUTOCLAIM`) after
//! `CLAIM_IDLE`, so delivery is at-least-once and the database's dedupe and upserts make the
//! effect exactly-once. Committed samples go to every API process's live hub over pub/sub.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};

use super::{CommitListener, SubmitError, WriterConfig};
use crate::domain::{Sample, now_ms};
use crate::storage::{DynStore, WriteBatch, WriteOutcome};
use crate::telemetry::Telemetry;

pub const STREAM: &str = "microdash:ingest";
pub const GROUP: &str = "microdash-writers";
pub const QUEUED: &str = "microdash:queued-samples";
pub const LIVE_CHANNEL: &str = "microdash:live";
/// Pending entries idle this long belong to a dead worker and are claimed by another.
pub const CLAIM_IDLE: Duration = Duration::from_secs(15);

#[derive(Serialize, Deserialize)]
struct Entry {
    /// Tenant id.
    t: i64,
    /// Samples.
    s: Vec<Sample>,
}

#[derive(Serialize, Deserialize)]
struct LiveMessage<'a> {
    t: i64,
    #[serde(borrow)]
    s: Vec<LiveSample<'a>>,
}

#[derive(Serialize, Deserialize)]
struct LiveSample<'a> {
    m: &'a str,
    l: crate::domain::Labels,
    ts: i64,
    v: f64,
}

/// The producer side, used by `Writer` in API processes.
pub struct Producer {
    conn: ConnectionManager,
    capacity: usize,
    dedupe_window: Duration,
    /// The queue depth seen at the last submit, for `/metrics`.
    depth: AtomicUsize,
}

pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    Ok(ConnectionManager::new(client).await?)
}

impl Producer {
    pub async fn new(url: &str, config: &WriterConfig) -> anyhow::Result<Self> {
        Ok(Self {
            conn: connect(url).await?,
            capacity: config.queue_capacity,
            dedupe_window: config.dedupe_window,
            depth: AtomicUsize::new(0),
        })
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub async fn submit(&self, tenant_id: i64, samples: Vec<Sample>) -> Result<WriteOutcome, SubmitError> {
        let mut conn = self.conn.clone();
        let unavailable = |e: redis::RedisError| SubmitError::WriteFailed(format!("redis: {e}"));
        let queued: Option<i64> = conn.get(QUEUED).await.map_err(unavailable)?;
        if queued.unwrap_or(0).max(0) as usize + samples.len() > self.capacity {
            return Err(SubmitError::Overloaded);
        }
        let n = samples.len();
        let ids: Vec<String> = samples.iter().filter_map(|s| s.dedupe_id.clone()).collect();
        let entry = serde_json::to_vec(&Entry { t: tenant_id, s: samples }).expect("samples serialize");
        let (_, depth): (String, i64) = redis::pipe()
            .atomic()
            .xadd(STREAM, "*", &[("e", entry)])
            .incr(QUEUED, n as i64)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.depth.store(depth.max(0) as usize, Ordering::Relaxed);
        // The batch is in Redis: from here on nothing can lose it. Repeated dedupe ids are
        // counted here for the answer; the worker's database dedupe is what skips them.
        let mut duplicates = 0;
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("SET")
                    .arg(format!("microdash:dedupe:{tenant_id}:{id}"))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.dedupe_window.as_millis() as u64);
            }
            match pipe.query_async::<Vec<Option<String>>>(&mut conn).await {
                Ok(set) => duplicates = set.iter().filter(|r| r.is_none()).count(),
                Err(err) => tracing::warn!(%err, "Counting duplicates in Redis failed; the database still skips them."),
            }
        }
        Ok(WriteOutcome { accepted: n - duplicates, duplicates, ..Default::default() })
    }
}

/// Creates the consumer group if it does not exist yet (from the start of the stream).
async fn ensure_group(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(STREAM, GROUP, "0").await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// A worker: consumes the stream into the database until the process stops.
pub async fn run_worker(
    url: String,
    consumer: String,
    store: DynStore,
    config: WriterConfig,
    telemetry: Telemetry,
    listeners: Vec<Arc<dyn CommitListener>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match worker_loop(&url, &consumer, &store, &config, &telemetry, &listeners).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(%err, ?backoff, "Worker lost Redis or the database; retrying. Nothing is acknowledged before it is stored.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn worker_loop(
    url: &str,
    consumer: &str,
    store: &DynStore,
    config: &WriterConfig,
    telemetry: &Telemetry,
    listeners: &[Arc<dyn CommitListener>],
) -> anyhow::Result<()> {
    let mut conn = connect(url).await?;
    ensure_group(&mut conn).await?;
    tracing::info!(consumer, "Worker consuming the ingest stream.");
    let mut last_claim = Instant::now() - CLAIM_IDLE;
    // After a failed write (the database was down) this consumer's own entries are still
    // pending: read those first ("0"), then new ones (">").
    let mut own_backlog = true;
    loop {
        let mut entries: Vec<(String, redis::Value)> = Vec::new();
        if last_claim.elapsed() >= CLAIM_IDLE / 3 {
            last_claim = Instant::now();
            let claimed: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    STREAM,
                    GROUP,
                    consumer,
                    CLAIM_IDLE.as_millis() as u64,
                    "0-0",
                    StreamAutoClaimOptions::default().count(200),
                )
                .await?;
            if !claimed.claimed.is_empty() {
                tracing::info!(entries = claimed.claimed.len(), "Claimed entries of a worker that stopped.");
            }
            for id in claimed.claimed {
                if let Some(v) = id.map.get("e") {
                    entries.push((id.id.clone(), v.clone()));
                }
            }
        }
        if entries.is_empty() {
            let from = if own_backlog { "0" } else { ">" };
            let mut options = StreamReadOptions::default().group(GROUP, consumer).count(200);
            if !own_backlog {
                options = options.block(1000);
            }
            let reply: StreamReadReply = conn.xread_options(&[STREAM], &[from], &options).await?;
            own_backlog = own_backlog && reply.keys.iter().any(|k| !k.ids.is_empty());
            for key in reply.keys {
                for id in key.ids {
                    if let Some(v) = id.map.get("e") {
                        entries.push((id.id.clone(), v.clone()));
                    }
                }
            }
        }
        if entries.is_empty() {
            continue;
        }
        let mut ids = Vec::with_capacity(entries.len());
        let mut decoded: Vec<Entry> = Vec::with_capacity(entries.len());
        for (id, value) in entries {
            let bytes: Vec<u8> = redis::from_redis_value(&value)?;
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(entry) => decoded.push(entry),
                Err(err) => tracing::error!(%err, id, "Unreadable stream entry skipped."),
            }
            ids.push(id);
        }
        let started = Instant::now();
        let now = now_ms();
        let since = now - config.dedupe_window.as_millis() as i64;
        let batches: Vec<WriteBatch<'_>> =
            decoded.iter().map(|e| WriteBatch { tenant_id: e.t, samples: &e.s }).collect();
        // A failure returns to run_worker, which retries; the entries stay pending meanwhile.
        let outcomes = store.write(&batches, now, since).await?;
        telemetry.write_batch_seconds.observe(started.elapsed().as_secs_f64());
        let mut live = redis::pipe();
        for (entry, outcome) in decoded.iter().zip(&outcomes) {
            let stored = super::announce(telemetry, listeners, entry.t, &entry.s, outcome);
            let message = LiveMessage {
                t: entry.t,
                s: stored
                    .iter()
                    .map(|s| LiveSample { m: &s.metric, l: s.labels.clone(), ts: s.ts, v: s.value })
                    .collect(),
            };
            live.publish(LIVE_CHANNEL, serde_json::to_vec(&message).expect("live message serializes"));
        }
        let total: usize = decoded.iter().map(|e| e.s.len()).sum();
        redis::pipe()
            .atomic()
            .xack(STREAM, GROUP, &ids)
            .xdel(STREAM, &ids)
            .decr(QUEUED, total as i64)
            .query_async::<()>(&mut conn)
            .await?;
        if let Err(err) = live.query_async::<()>(&mut conn).await {
            tracing::debug!(%err, "Publishing live samples failed.");
        }
    }
}

/// Tells this process's listeners (live hub, alert engine) about the samples every worker
/// commits. Pub/sub is at most once: a sample published while this connection is down is not
/// seen here (it is stored all the same; the alert engine refills windows from the database
/// when it takes over).
pub async fn subscribe_live(url: String, listeners: Vec<Arc<dyn CommitListener>>) {
    use futures_util::StreamExt;
    loop {
        let result: anyhow::Result<()> = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(LIVE_CHANNEL).await?;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload: Vec<u8> = message.get_payload()?;
                if let Ok(live) = serde_json::from_slice::<LiveMessage>(&payload) {
                    let samples: Vec<Sample> = live
                        .s
                        .into_iter()
                        .map(|s| Sample { metric: s.m.to_string(), labels: s.l, ts: s.ts, value: s.v, dedupe_id: None })
                        .collect();
                    let refs: Vec<&Sample> = samples.iter().collect();
                    for listener in &listeners {
                        listener.committed(live.t, &refs);
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(%err, "Live subscription to Redis lost; reconnecting.");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
