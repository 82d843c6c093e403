//! The distributed queue: Redis Streams with a consumer group.
//!
//! API processes add each accepted request to the stream, cut into entries of at most
//! `ENTRY_SAMPLES` samples, and answer only once Redis has them. The stream's backlog (the
//! samples of every entry not yet committed, delivered to a worker or not) is kept in
//! `QUEUED` by the same Lua scripts that add and delete entries, so it is exact; the add
//! script refuses a request that would take it over `queue_capacity` before adding anything
//! (the API answers 503 with Retry-After), so the check and the add are one step even with
//! many API processes. Workers read with `XREADGROUP` at most `worker_batch_samples` samples
//! at a time (reading the next batch while the last one is written), write a batch in one
//! database transaction, then `XACK` and `XDEL` its entries. A worker that dies leaves its
//! entries pending; another worker claims them (`XAUTOCLAIM`) after `CLAIM_IDLE`, so delivery
//! is at-least-once and the database's dedupe and upserts make the effect exactly-once.
//! Committed samples go to every API process's live hub over pub/sub.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{CommitListener, SubmitError, WriterConfig};
use crate::domain::{Sample, now_ms};
use crate::storage::{DynStore, WriteBatch};
use crate::telemetry::Telemetry;

pub const STREAM: &str = "microdash:ingest";
pub const GROUP: &str = "microdash-writers";
/// Samples in the stream's entries that no worker has committed yet.
pub const QUEUED: &str = "microdash:queued-samples";
pub const LIVE_CHANNEL: &str = "microdash:live";
/// Pending entries idle this long belong to a dead worker and are claimed by another.
pub const CLAIM_IDLE: Duration = Duration::from_secs(15);
/// Samples per stream entry, at most: a worker that reads `n` entries holds at most
/// `n × ENTRY_SAMPLES` samples, whatever the size of the requests they came from.
pub const ENTRY_SAMPLES: usize = 1000;
/// Non-blocking reads a worker makes to fill one batch of small entries.
const READS_PER_BATCH: usize = 32;

/// Adds a request's entries and counts their samples, or refuses all of them when the backlog
/// would pass the capacity. KEYS: the stream, the counter. ARGV: the capacity, the request's
/// samples, then for each entry its sample count and its JSON. Returns {added (0|1), backlog}.
const ADD: &str = r"
local len = redis.call('XLEN', KEYS[1])
local queued = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), 0)
if len == 0 and queued ~= 0 then
  -- An empty stream holds no samples: the count was left by something else (an older
  -- version, a restored or edited key). Start again from the truth.
  queued = 0
  redis.call('SET', KEYS[2], 0)
end
local n = tonumber(ARGV[2])
if queued + n > tonumber(ARGV[1]) then
  return {0, queued}
end
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 'n', ARGV[i], 'e', ARGV[i + 1])
end
return {1, redis.call('INCRBY', KEYS[2], n)}
";

/// Acknowledges and deletes committed entries and takes their samples off the backlog, once
/// per entry even when two workers committed it (a claim of a slow worker's entries).
/// KEYS: the stream, the counter. ARGV: the group, then for each entry its id and samples.
/// Returns the samples taken off.
const DONE: &str = r"
local done = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    done = done + tonumber(ARGV[i + 1])
  end
end
if done > 0 then
  redis.call('DECRBY', KEYS[2], done)
end
return done
";

#[derive(Serialize, Deserialize)]
struct Entry {
    /// Tenant id.
    t: i64,
    /// Samples.
    s: Vec<Sample>,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    t: i64,
    s: &'a [Sample],
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
    l: crate::domain::sample::SharedLabels,
    ts: i64,
    v: f64,
}

/// The producer side, used by `Writer` in API processes.
pub struct Producer {
    conn: ConnectionManager,
    capacity: usize,
    dedupe_window: Duration,
    /// The stream's backlog seen at the last submit, for `/metrics`.
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

    /// Adds the samples to the stream, or refuses them all (`Overloaded`) when the stream's
    /// backlog would pass `queue_capacity`: nothing is added then.
    pub async fn submit(&self, tenant_id: i64, samples: Vec<Sample>) -> Result<super::WriteOutcome, SubmitError> {
        let mut conn = self.conn.clone();
        let unavailable = |e: redis::RedisError| SubmitError::WriteFailed(format!("redis: {e}"));
        let n = samples.len();
        // EVAL with the script's text (Redis keeps it compiled): a few hundred bytes a request.
        let mut add = redis::cmd("EVAL");
        add.arg(ADD).arg(2).arg(STREAM).arg(QUEUED).arg(self.capacity).arg(n);
        for chunk in samples.chunks(ENTRY_SAMPLES) {
            let entry = serde_json::to_vec(&EntryRef { t: tenant_id, s: chunk }).expect("samples serialize");
            add.arg(chunk.len()).arg(entry);
        }
        let (added, depth): (i64, i64) = add.query_async(&mut conn).await.map_err(unavailable)?;
        self.depth.store(depth.max(0) as usize, Ordering::Relaxed);
        if added == 0 {
            return Err(SubmitError::Overloaded);
        }
        // The batch is in Redis: from here on nothing can lose it. Repeated dedupe ids are
        // counted here for the answer; the worker's database dedupe is what skips them.
        let ids: Vec<&str> = samples.iter().filter_map(|s| s.dedupe_id.as_deref()).collect();
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
        Ok(super::WriteOutcome { accepted: n - duplicates, duplicates, ..Default::default() })
    }
}

/// Creates the consumer group if it does not exist yet (from the start of the stream).
pub(crate) async fn ensure_group(conn: &mut ConnectionManager) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(STREAM, GROUP, "0").await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// A worker: consumes the stream into the database until the process stops.
/// `config.max_group_samples` is the most samples it reads and commits at once.
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

/// Entries read for one transaction.
#[derive(Default)]
pub(crate) struct Batch {
    /// Each entry's id and the samples it counts for in the backlog.
    ids: Vec<(String, usize)>,
    entries: Vec<Entry>,
}

impl Batch {
    pub(crate) fn samples(&self) -> usize {
        self.entries.iter().map(|e| e.s.len()).sum()
    }

    pub(crate) fn entries(&self) -> usize {
        self.ids.len()
    }

    fn push(&mut self, id: &StreamId) {
        let Some(value) = id.map.get("e") else { return };
        let entry = redis::from_redis_value::<Vec<u8>>(value)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string()));
        let counted = id.map.get("n").and_then(|n| redis::from_redis_value::<usize>(n).ok());
        match entry {
            Ok(entry) => {
                self.ids.push((id.id.clone(), counted.unwrap_or(entry.s.len())));
                self.entries.push(entry);
            }
            Err(err) => {
                // Acknowledged with the rest, so it does not come back forever.
                tracing::error!(%err, id = id.id, "Unreadable stream entry skipped.");
                self.ids.push((id.id.clone(), counted.unwrap_or(0)));
            }
        }
    }
}

/// Where a worker's reads stand.
pub(crate) struct Reader {
    consumer: String,
    /// Samples per batch, at most (`worker_batch_samples`).
    budget: usize,
    last_claim: Instant,
    /// After a restart (the database was down, or the process), this consumer's own pending
    /// entries are read first, from here on; then new ones (">").
    own_backlog: Option<String>,
}

impl Reader {
    pub(crate) fn new(consumer: &str, budget: usize) -> Self {
        Self {
            consumer: consumer.to_string(),
            budget: budget.max(ENTRY_SAMPLES),
            last_claim: Instant::now() - CLAIM_IDLE,
            own_backlog: Some("0".into()),
        }
    }

    /// Entries that fit in the rest of the budget, whatever their size.
    fn room(&self, batch: &Batch) -> usize {
        self.budget.saturating_sub(batch.samples()) / ENTRY_SAMPLES
    }

    /// The next batch: entries of dead workers, then this consumer's own pending ones, then new
    /// ones (waiting up to `block` for the first). At most `budget` samples (an entry written
    /// by an older version may hold more than `ENTRY_SAMPLES`). Empty when nothing came.
    pub(crate) async fn next(&mut self, conn: &mut ConnectionManager, block: Duration) -> anyhow::Result<Batch> {
        let mut batch = Batch::default();
        if self.last_claim.elapsed() >= CLAIM_IDLE / 3 {
            self.last_claim = Instant::now();
            let claimed: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    STREAM,
                    GROUP,
                    &self.consumer,
                    CLAIM_IDLE.as_millis() as u64,
                    "0-0",
                    StreamAutoClaimOptions::default().count(self.room(&batch)),
                )
                .await?;
            if !claimed.claimed.is_empty() {
                tracing::info!(entries = claimed.claimed.len(), "Claimed entries of a worker that stopped.");
            }
            for id in &claimed.claimed {
                batch.push(id);
            }
            if !batch.ids.is_empty() {
                return Ok(batch);
            }
        }
        if let Some(from) = self.own_backlog.take() {
            let options = StreamReadOptions::default().group(GROUP, &self.consumer).count(self.room(&batch));
            let reply: StreamReadReply = conn.xread_options(&[STREAM], &[from.as_str()], &options).await?;
            for id in reply.keys.iter().flat_map(|k| &k.ids) {
                batch.push(id);
            }
            if let Some((last, _)) = batch.ids.last() {
                self.own_backlog = Some(last.clone());
                return Ok(batch);
            }
        }
        for read in 0..READS_PER_BATCH {
            let room = self.room(&batch);
            if room == 0 {
                break;
            }
            let mut options = StreamReadOptions::default().group(GROUP, &self.consumer).count(room);
            if read == 0 && !block.is_zero() {
                options = options.block(block.as_millis() as usize);
            }
            let reply: StreamReadReply = conn.xread_options(&[STREAM], &[">"], &options).await?;
            let got = reply.keys.iter().map(|k| k.ids.len()).sum::<usize>();
            for id in reply.keys.iter().flat_map(|k| &k.ids) {
                batch.push(id);
            }
            if got < room {
                break;
            }
        }
        Ok(batch)
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Samples committed after which an idle worker gives its free memory back.
const TRIM_AFTER_SAMPLES: usize = 200_000;

async fn worker_loop(
    url: &str,
    consumer: &str,
    store: &DynStore,
    config: &WriterConfig,
    telemetry: &Telemetry,
    listeners: &[Arc<dyn CommitListener>],
) -> anyhow::Result<()> {
    // Two connections: a blocking read must not hold up the acknowledgements.
    let mut conn = connect(url).await?;
    let mut read_conn = connect(url).await?;
    ensure_group(&mut conn).await?;
    tracing::info!(consumer, batch_samples = config.max_group_samples, "Worker consuming the ingest stream.");
    // The next batch is read and decoded while the last one is written, and no further: the
    // reader starts a read only once the committer has taken the batch before, so at most two
    // batches are held (one being written, one read or waiting).
    let (tx, mut rx) = mpsc::channel::<Batch>(1);
    let taken = Arc::new(tokio::sync::Semaphore::new(1));
    let mut reader = Reader::new(consumer, config.max_group_samples);
    let reading = tokio::spawn({
        let taken = taken.clone();
        async move {
            loop {
                taken.acquire().await?.forget();
                let mut batch = reader.next(&mut read_conn, Duration::from_secs(1)).await?;
                while batch.ids.is_empty() {
                    batch = reader.next(&mut read_conn, Duration::from_secs(1)).await?;
                }
                if tx.send(batch).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        }
    });
    let _stop_reading = AbortOnDrop(reading.abort_handle());
    let mut since_trim = 0usize;
    loop {
        let batch = match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(batch)) => {
                taken.add_permits(1);
                batch
            }
            Ok(None) => break,
            Err(_) => {
                // Idle: the backlog is drained; give back what the burst took.
                if since_trim >= TRIM_AFTER_SAMPLES {
                    since_trim = 0;
                    super::release_free_memory();
                }
                continue;
            }
        };
        since_trim += batch.samples();
        commit(&mut conn, store, config, telemetry, listeners, batch).await?;
    }
    // The reader stopped: its error says why.
    reading.await??;
    anyhow::bail!("the stream reader stopped")
}

/// Writes a batch in one transaction, then acknowledges and deletes its entries and publishes
/// its samples to the live channel. A failure leaves the entries pending (read again).
pub(crate) async fn commit(
    conn: &mut ConnectionManager,
    store: &DynStore,
    config: &WriterConfig,
    telemetry: &Telemetry,
    listeners: &[Arc<dyn CommitListener>],
    batch: Batch,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let now = now_ms();
    let since = now - config.dedupe_window.as_millis() as i64;
    let batches: Vec<WriteBatch<'_>> =
        batch.entries.iter().map(|e| WriteBatch { tenant_id: e.t, samples: &e.s }).collect();
    // A failure returns to run_worker, which retries; the entries stay pending meanwhile.
    let outcomes = store.write(&batches, now, since).await?;
    telemetry.write_batch_seconds.observe(started.elapsed().as_secs_f64());
    tracing::debug!(entries = batch.entries(), samples = batch.samples(), "Batch committed.");
    let mut live = redis::pipe();
    for (entry, outcome) in batch.entries.iter().zip(&outcomes) {
        let stored = super::announce(telemetry, listeners, entry.t, &entry.s, outcome);
        let message = LiveMessage {
            t: entry.t,
            s: stored.iter().map(|s| LiveSample { m: &s.metric, l: s.labels.clone(), ts: s.ts, v: s.value }).collect(),
        };
        live.publish(LIVE_CHANNEL, serde_json::to_vec(&message).expect("live message serializes"));
    }
    let mut ack = redis::cmd("EVAL");
    ack.arg(DONE).arg(2).arg(STREAM).arg(QUEUED).arg(GROUP);
    for (id, n) in &batch.ids {
        ack.arg(id).arg(*n);
    }
    ack.query_async::<i64>(conn).await?;
    if let Err(err) = live.query_async::<()>(conn).await {
        tracing::debug!(%err, "Publishing live samples failed.");
    }
    Ok(())
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
                        .map(|s| Sample { metric: s.m.into(), labels: s.l, ts: s.ts, value: s.v, dedupe_id: None })
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
