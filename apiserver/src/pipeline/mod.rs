//! The ingest pipeline of the embedded mode: a bounded queue in front of one writer task that
//! commits many requests in one transaction (group commit), then answers each of them.
//!
//! A request is answered only after its transaction commits (and, with the head, its log
//! record is fsync'd), so a 2xx means durable. When the queue is full, `submit` fails at once
//! with `Overloaded` and the caller answers 503.
//!
//! Two stages: the writer task (the serial one: transaction, log write, head) hands each
//! committed group to the answering thread, which waits for the log's `fdatasync` (one for
//! every group written meanwhile), tells the listeners and answers. So the writer prepares the
//! next group while the disk syncs the last one. A sample is in the head (readable) from its
//! log write on, a moment before its `fdatasync` returns; a request is answered, and the live
//! stream and the alert engine hear of its samples, only after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::domain::{Sample, now_ms};
use crate::storage::chunk::window_of;
use crate::storage::chunk_store::compact_before;
use crate::storage::head::Head;
use crate::storage::wal::{Row, Wal};
use crate::storage::{DatabaseError, DynStore, HeadSink, StoreError, WriteBatch, WriteOutcome};
use crate::telemetry::Telemetry;

/// A request waiting for the writer.
struct Pending {
    tenant_id: i64,
    samples: Vec<Sample>,
    reply: oneshot::Sender<Result<WriteOutcome, String>>,
    /// Held until the samples are committed: the queue bound counts samples, not requests.
    _permit: OwnedSemaphorePermit,
}

impl Pending {
    /// Answers with an error; the queue's room comes back first.
    fn fail(self, message: String) {
        let Pending { reply, _permit: permit, .. } = self;
        drop(permit);
        let _ = reply.send(Err(message));
    }
}

/// Told about every sample right after its commit (and before its request is answered): the
/// live hub, and the alert engine, which evaluates rules on each arriving sample.
pub trait CommitListener: Send + Sync {
    /// Must not block: hand the samples off and return.
    fn committed(&self, tenant_id: i64, samples: &[&Sample]);
}

/// Counts a committed batch and tells the listeners about the samples actually stored (not
/// those skipped as duplicates); returns those samples.
fn announce<'a>(
    telemetry: &Telemetry,
    listeners: &[Arc<dyn CommitListener>],
    tenant_id: i64,
    samples: &'a [Sample],
    outcome: &WriteOutcome,
) -> Vec<&'a Sample> {
    if outcome.tenant_gone {
        return Vec::new();
    }
    telemetry.samples_accepted.inc_by(outcome.accepted as u64);
    telemetry.samples_duplicate.inc_by(outcome.duplicates as u64);
    let skipped = &outcome.duplicate_indices;
    let stored: Vec<&Sample> = if skipped.is_empty() {
        samples.iter().collect()
    } else {
        samples.iter().enumerate().filter(|(i, _)| skipped.binary_search(i).is_err()).map(|(_, s)| s).collect()
    };
    for listener in listeners {
        listener.committed(tenant_id, &stored);
    }
    stored
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the ingest queue is full")]
    Overloaded,
    #[error("the write failed: {0}")]
    WriteFailed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The tenant was deleted after the request was authenticated: nothing was stored, and
    /// nothing ever will be (retrying is pointless).
    #[error("the tenant was deleted")]
    TenantGone,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Samples accepted but not yet committed, across all requests.
    pub queue_capacity: usize,
    /// Samples per transaction, at most.
    pub max_group_samples: usize,
    /// How long dedupe ids are remembered.
    pub dedupe_window: Duration,
}

/// The handle the HTTP and MQTT front ends submit to.
#[derive(Clone)]
pub struct Writer(Backend);

#[derive(Clone)]
enum Backend {
    /// The embedded mode: an in-process queue in front of this process's writer task.
    Local { tx: mpsc::UnboundedSender<Pending>, capacity: Arc<Semaphore>, queue_capacity: usize },
    /// The distributed mode: Redis Streams, drained by worker processes.
    Redis(Arc<redis::Producer>),
}

impl Writer {
    /// Starts the writer task. It stops once every `Writer` handle is dropped and the queue is
    /// drained, so a graceful shutdown commits everything already accepted.
    pub fn start(
        store: DynStore,
        config: WriterConfig,
        telemetry: Telemetry,
        listeners: Vec<Arc<dyn CommitListener>>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = Arc::new(Semaphore::new(config.queue_capacity));
        let handle = tokio::spawn(run(store, config.clone(), rx, telemetry, listeners, None));
        (Self(Backend::Local { tx, capacity, queue_capacity: config.queue_capacity }), handle)
    }

    /// `start` with the in-memory head and its write-ahead log in `wal_dir`: replays the log
    /// into the head first (the caller serves requests only after this returns), so samples
    /// of open windows are kept in memory and made durable by one fsync'd log record per
    /// group instead of database rows (docs/storage.md).
    pub async fn start_with_head(
        store: DynStore,
        config: WriterConfig,
        telemetry: Telemetry,
        listeners: Vec<Arc<dyn CommitListener>>,
        wal_dir: &std::path::Path,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        use anyhow::Context;
        let started = Instant::now();
        let (mut wal, replayed) = Wal::open(wal_dir)
            .with_context(|| format!("opening the head's write-ahead log in {}", wal_dir.display()))?;
        let head = Arc::new(Head::new());
        if !replayed.rows.is_empty() {
            tracing::info!(
                segments = replayed.segments,
                records = replayed.records,
                samples = replayed.rows.len(),
                "Replaying the head's write-ahead log."
            );
            let mut ids: Vec<i64> = replayed.rows.iter().map(|r| r.series_id).collect();
            ids.sort_unstable();
            ids.dedup();
            // A series created by a transaction that never committed (a crash right after the
            // log's fsync) does not exist: its samples were never acknowledged.
            let live = store.existing_series(&ids).await.context("replaying the head's write-ahead log")?;
            let rows: Vec<_> = replayed.rows.into_iter().filter(|r| live.contains(&r.series_id)).collect();
            head.apply(&rows);
        }
        // The replayed head becomes one fresh segment: rows of series that do not exist are
        // gone from the log before any new series could take their ids.
        wal.checkpoint(&head.rows()).context("checkpointing the head's write-ahead log")?;
        tracing::info!(
            samples = head.len(),
            series = head.series_count(),
            truncated_bytes = replayed.truncated,
            ms = started.elapsed().as_millis() as u64,
            dir = %wal_dir.display(),
            "Head ready."
        );
        store.attach_head(head.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = Arc::new(Semaphore::new(config.queue_capacity));
        let state = HeadState { head, wal };
        let handle = tokio::spawn(run(store, config.clone(), rx, telemetry, listeners, Some(state)));
        Ok((Self(Backend::Local { tx, capacity, queue_capacity: config.queue_capacity }), handle))
    }

    /// A writer that queues into Redis Streams for the workers.
    pub fn redis(producer: redis::Producer) -> Self {
        Self(Backend::Redis(Arc::new(producer)))
    }

    /// Queues the samples and waits for their commit; fails at once when the queue is full.
    pub async fn submit(&self, tenant_id: i64, samples: Vec<Sample>) -> Result<WriteOutcome, SubmitError> {
        if samples.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let (tx, capacity) = match &self.0 {
            Backend::Local { tx, capacity, .. } => (tx, capacity),
            Backend::Redis(producer) => return producer.submit(tenant_id, samples).await,
        };
        let n = u32::try_from(samples.len()).map_err(|_| SubmitError::Overloaded)?;
        let permit = capacity.clone().try_acquire_many_owned(n).map_err(|_| SubmitError::Overloaded)?;
        Self::enqueue(tx, tenant_id, samples, permit).await
    }

    /// Like `submit`, but waits for room in the queue instead of failing: MQTT has no 503, so
    /// its back-pressure is a later acknowledgement. More than `queue_capacity` samples at once
    /// could never fit and fail with `Overloaded`.
    pub async fn submit_waiting(&self, tenant_id: i64, samples: Vec<Sample>) -> Result<WriteOutcome, SubmitError> {
        if samples.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let (tx, capacity, queue_capacity) = match &self.0 {
            Backend::Local { tx, capacity, queue_capacity } => (tx, capacity, *queue_capacity),
            // Redis answers at once; a full stream waits here until the workers catch up.
            Backend::Redis(producer) => loop {
                match producer.submit(tenant_id, samples.clone()).await {
                    Err(SubmitError::Overloaded) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                    other => return other,
                }
            },
        };
        if samples.len() > queue_capacity {
            return Err(SubmitError::Overloaded);
        }
        let n = u32::try_from(samples.len()).map_err(|_| SubmitError::Overloaded)?;
        let permit = capacity.clone().acquire_many_owned(n).await.map_err(|_| SubmitError::ShuttingDown)?;
        Self::enqueue(tx, tenant_id, samples, permit).await
    }

    async fn enqueue(
        tx: &mpsc::UnboundedSender<Pending>,
        tenant_id: i64,
        samples: Vec<Sample>,
        permit: OwnedSemaphorePermit,
    ) -> Result<WriteOutcome, SubmitError> {
        let (reply, answer) = oneshot::channel();
        tx.send(Pending { tenant_id, samples, reply, _permit: permit }).map_err(|_| SubmitError::ShuttingDown)?;
        match answer.await {
            Ok(Ok(outcome)) if outcome.tenant_gone => Err(SubmitError::TenantGone),
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(message)) => Err(SubmitError::WriteFailed(message)),
            Err(_) => Err(SubmitError::ShuttingDown),
        }
    }

    /// Samples queued or being written right now.
    pub fn depth(&self) -> usize {
        match &self.0 {
            Backend::Local { capacity, queue_capacity, .. } => queue_capacity - capacity.available_permits(),
            Backend::Redis(producer) => producer.depth(),
        }
    }
}

/// The head and its log, owned by the writer task.
struct HeadState {
    head: Arc<Head>,
    wal: Wal,
}

/// The head's side of one write: samples of windows not yet flushed at `cut` go to the log, then
/// to the head.
struct Sink<'a> {
    state: &'a mut HeadState,
    cut: i64,
    /// A record was written and not fsync'd: the answering thread syncs before answering.
    unsynced: bool,
}

impl HeadSink for Sink<'_> {
    fn accepts(&self, ts: i64) -> bool {
        window_of(ts) >= self.cut
    }

    fn log(&mut self, rows: &[Row], durable_now: bool) -> crate::storage::Result<()> {
        let wal = &mut self.state.wal;
        let written = if durable_now { wal.append(rows) } else { wal.write(rows) };
        written.map_err(|e| StoreError::Database(DatabaseError::new(format!("the head's write-ahead log: {e}"))))?;
        self.unsynced |= !durable_now && !rows.is_empty();
        self.state.head.apply(rows);
        Ok(())
    }
}

/// What the writer hands the answering thread.
enum Answer {
    /// A committed group: once `sync` (the log's segment, when a record of the group is not
    /// fsync'd yet) is synced, its listeners are told and its requests answered.
    Group { group: Vec<Pending>, outcomes: Vec<WriteOutcome>, sync: Option<Arc<std::fs::File>> },
    /// Answered once every group handed over before it is: the writer waits for this before it
    /// flushes the head and checkpoints the log (a new segment; older ones deleted).
    Barrier(oneshot::Sender<()>),
}

type Answers = std::sync::mpsc::Sender<Answer>;

/// Waits until the answering thread has answered every group handed to it so far.
async fn drain(answers: &Answers) {
    let (done, wait) = oneshot::channel();
    if answers.send(Answer::Barrier(done)).is_ok() {
        let _ = wait.await;
    }
}

/// The answering thread: per round, every group handed over so far; one `fdatasync` for those
/// whose records are not durable yet, then, in order, listeners told and requests answered,
/// then the round's samples freed. A thread of its own, not a task: the sync blocks, and a
/// task would hand it to the blocking pool and be woken again after it, two more hand-offs
/// between threads per round on a machine whose cores are busy parsing.
fn answer(rx: std::sync::mpsc::Receiver<Answer>, telemetry: Telemetry, listeners: Vec<Arc<dyn CommitListener>>) {
    let mut round: Vec<Answer> = Vec::new();
    while let Ok(first) = rx.recv() {
        round.push(first);
        while let Ok(next) = rx.try_recv() {
            round.push(next);
        }
        // Groups between two barriers write to one segment (segments change only behind a
        // barrier): the last handle syncs every record before it.
        let handle = round.iter().rev().find_map(|a| match a {
            Answer::Group { sync: Some(file), .. } => Some(file),
            _ => None,
        });
        let synced: Result<(), String> = match handle {
            None => Ok(()),
            Some(file) => file.sync_data().map_err(|err| format!("the head's write-ahead log: {err}")),
        };
        if let Err(err) = &synced {
            tracing::error!(%err, "Syncing the head's write-ahead log failed; its requests get 503.");
        }
        let mut spent = Vec::new();
        for item in round.drain(..) {
            match item {
                Answer::Barrier(done) => {
                    let _ = done.send(());
                }
                Answer::Group { group, outcomes, sync } => match (&synced, sync) {
                    (Err(err), Some(_)) => {
                        for pending in group {
                            pending.fail(err.clone());
                        }
                    }
                    _ => {
                        for (pending, outcome) in group.into_iter().zip(outcomes) {
                            let Pending { tenant_id, samples, reply, _permit: permit } = pending;
                            announce(&telemetry, &listeners, tenant_id, &samples, &outcome);
                            // The queue's room comes back before the answer, so whoever hears
                            // it sees the queue without these samples.
                            drop(permit);
                            let _ = reply.send(Ok(outcome));
                            spent.push(samples);
                        }
                    }
                },
            }
        }
        // Freed here, after the answers: the requests' tasks allocated them, and the writer
        // is ingest's one serial step.
        drop(spent);
    }
}

/// Rows per flush transaction.
const FLUSH_ROWS: usize = 50_000;

/// Writes the head's samples before `before` (all of them with `i64::MAX`) to the database,
/// then drops them from the head and checkpoints the log (a new segment with what the head
/// still holds; older segments deleted). On failure everything stays, for the next try.
async fn flush(store: &DynStore, state: &mut HeadState, before: i64, answers: &Answers) -> bool {
    let started = Instant::now();
    // Every record written so far is synced (and its requests answered) before the head's
    // samples go to the database and the log's older segments are deleted.
    drain(answers).await;
    let rows = state.head.rows_before(before);
    if rows.is_empty() {
        return true;
    }
    let result: Result<usize, StoreError> = async {
        let mut ids: Vec<i64> = rows.iter().map(|r| r.series_id).collect();
        ids.sort_unstable();
        ids.dedup();
        // Samples of a deleted tenant are dropped, not written.
        let live = store.existing_series(&ids).await?;
        let rows: Vec<(i64, i64, f64)> =
            rows.iter().filter(|r| live.contains(&r.series_id)).map(|r| (r.series_id, r.ts, r.value)).collect();
        for part in rows.chunks(FLUSH_ROWS) {
            store.write_rows(part, now_ms()).await?;
        }
        Ok(rows.len())
    }
    .await;
    match result {
        Ok(written) => {
            state.head.drop_before(before);
            if let Err(err) = state.wal.checkpoint(&state.head.rows()) {
                tracing::error!(%err, "Checkpointing the head's write-ahead log failed; it keeps its older segments.");
            }
            tracing::info!(
                samples = written,
                ms = started.elapsed().as_millis() as u64,
                left_in_head = state.head.len(),
                "Flushed closed windows of the head to the database."
            );
            true
        }
        Err(err) => {
            tracing::warn!(%err, "Flushing the head failed; it keeps the samples and tries again.");
            false
        }
    }
}

/// How often an idle writer looks for closed windows to flush.
const FLUSH_CHECK: Duration = Duration::from_secs(10);

async fn run(
    store: DynStore,
    config: WriterConfig,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    telemetry: Telemetry,
    listeners: Vec<Arc<dyn CommitListener>>,
    mut head: Option<HeadState>,
) {
    let (answers, answers_rx) = std::sync::mpsc::channel();
    let answering = {
        let telemetry = telemetry.clone();
        std::thread::Builder::new()
            .name("microdash-answers".into())
            .spawn(move || answer(answers_rx, telemetry, listeners))
            .expect("starting the answering thread")
    };
    let mut group: Vec<Pending> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = match head.as_mut() {
            Some(state) => tokio::select! {
                next = rx.recv() => next,
                _ = tick.tick() => {
                    let _ = flush_closed(&store, state, &answers).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else { break };
        let mut samples = first.samples.len();
        group.push(first);
        // Take whatever else is already waiting: under load, groups grow by themselves and
        // the cost of a commit is shared; when idle, a lone request is written at once.
        while samples < config.max_group_samples {
            match rx.try_recv() {
                Ok(next) => {
                    samples += next.samples.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        write_group(&store, &config, &mut group, &telemetry, &answers, head.as_mut()).await;
    }
    if let Some(mut state) = head {
        // A clean stop: everything goes to the database and no log is left behind.
        if flush(&store, &mut state, i64::MAX, &answers).await {
            if let Err(err) = state.wal.remove() {
                tracing::warn!(%err, "Removing the head's write-ahead log failed.");
            }
        } else {
            tracing::error!(
                "The head could not be written out at stop; its log stays and is replayed at the next start."
            );
        }
    }
    drop(answers);
    let _ = tokio::task::spawn_blocking(move || answering.join()).await;
    tracing::info!("Writer drained and stopped.");
}

/// Flushes the windows that compaction's rule calls closed (`compact_before`), if the head
/// holds any.
async fn flush_closed(store: &DynStore, state: &mut HeadState, answers: &Answers) -> bool {
    let cut = compact_before(now_ms());
    if state.head.oldest().is_some_and(|oldest| oldest < cut) { flush(store, state, cut, answers).await } else { true }
}

/// Writes one group, retrying a failed transaction a few times before failing the requests:
/// a busy or briefly unavailable database should not turn into client errors.
async fn write_group(
    store: &DynStore,
    config: &WriterConfig,
    group: &mut Vec<Pending>,
    telemetry: &Telemetry,
    answers: &Answers,
    mut head: Option<&mut HeadState>,
) {
    let started = Instant::now();
    let now = now_ms();
    let since = now - config.dedupe_window.as_millis() as i64;
    // Closed windows leave the head before anything is classified against the same cut, so a
    // late sample never lands in the database ahead of older head samples of its window.
    let mut cut = compact_before(now);
    if let Some(state) = head.as_deref_mut()
        && !flush_closed(store, state, answers).await
    {
        // The head still holds those windows: their samples keep going there.
        cut = state.head.oldest().map_or(cut, |oldest| cut.min(window_of(oldest)));
    }
    let mut attempt = 0;
    let mut unsynced = false;
    let result: Result<Vec<WriteOutcome>, StoreError> = loop {
        let batches: Vec<WriteBatch<'_>> =
            group.iter().map(|p| WriteBatch { tenant_id: p.tenant_id, samples: &p.samples }).collect();
        let written = match head.as_deref_mut() {
            Some(state) => {
                let mut sink = Sink { state, cut, unsynced: false };
                let written = store.write_with_head(&batches, now, since, &mut sink).await;
                // A failed attempt's record is in the log too: it is synced with the retry's.
                unsynced |= sink.unsynced;
                written
            }
            None => store.write(&batches, now, since).await,
        };
        match written {
            Ok(outcomes) => break Ok(outcomes),
            Err(err) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(%err, attempt, "Write failed; retrying.");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            Err(err) => break Err(err),
        }
    };
    let total: usize = group.iter().map(|p| p.samples.len()).sum();
    telemetry.write_batch_seconds.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            tracing::debug!(requests = group.len(), samples = total, "Group committed.");
            let sync = head.as_deref().filter(|_| unsynced).map(|state| state.wal.sync_handle());
            let group = std::mem::take(group);
            if let Err(std::sync::mpsc::SendError(Answer::Group { group, .. })) =
                answers.send(Answer::Group { group, outcomes, sync })
            {
                for pending in group {
                    pending.fail("the server is shutting down".into());
                }
            }
        }
        Err(err) => {
            tracing::error!(%err, requests = group.len(), samples = total, "Write failed; the requests get 503 and nothing was acknowledged.");
            let message = err.to_string();
            for pending in group.drain(..) {
                pending.fail(message.clone());
            }
        }
    }
}

/// Returns the allocator's free memory to the system (glibc keeps it otherwise): after an
/// ingest burst (`crate::fairness`) and once a worker has drained a backlog.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap structures, under its own locks.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released, "Returned free memory to the system after a burst.");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

pub mod redis;

#[cfg(test)]
mod tests;
