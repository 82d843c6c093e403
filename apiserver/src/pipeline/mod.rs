//! The ingest pipeline of the embedded mode: a bounded queue in front of one writer task that
//! commits many requests in one transaction (group commit), then answers each of them.
//!
//! A request is answered only after its transaction commits, so a 2xx means durable. When the
//! queue is full, `submit` fails at once with `Overloaded` and the caller answers 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::domain::{Sample, now_ms};
use crate::storage::{DynStore, StoreError, WriteBatch, WriteOutcome};
use crate::telemetry::Telemetry;

/// A request waiting for the writer.
struct Pending {
    tenant_id: i64,
    samples: Vec<Sample>,
    reply: oneshot::Sender<Result<WriteOutcome, String>>,
    /// Held until the samples are committed: the queue bound counts samples, not requests.
    _permit: OwnedSemaphorePermit,
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
        let handle = tokio::spawn(run(store, config.clone(), rx, telemetry, listeners));
        (Self(Backend::Local { tx, capacity, queue_capacity: config.queue_capacity }), handle)
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

async fn run(
    store: DynStore,
    config: WriterConfig,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    telemetry: Telemetry,
    listeners: Vec<Arc<dyn CommitListener>>,
) {
    let mut group: Vec<Pending> = Vec::new();
    while let Some(first) = rx.recv().await {
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
        write_group(&store, &config, &mut group, &telemetry, &listeners).await;
    }
    tracing::info!("Writer drained and stopped.");
}

/// Writes one group, retrying a failed transaction a few times before failing the requests:
/// a busy or briefly unavailable database should not turn into client errors.
async fn write_group(
    store: &DynStore,
    config: &WriterConfig,
    group: &mut Vec<Pending>,
    telemetry: &Telemetry,
    listeners: &[Arc<dyn CommitListener>],
) {
    let started = Instant::now();
    let now = now_ms();
    let since = now - config.dedupe_window.as_millis() as i64;
    let mut attempt = 0;
    let result: Result<Vec<WriteOutcome>, StoreError> = loop {
        let batches: Vec<WriteBatch<'_>> =
            group.iter().map(|p| WriteBatch { tenant_id: p.tenant_id, samples: &p.samples }).collect();
        match store.write(&batches, now, since).await {
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
            for (pending, outcome) in group.drain(..).zip(outcomes) {
                let Pending { tenant_id, samples, reply, _permit } = pending;
                announce(telemetry, listeners, tenant_id, &samples, &outcome);
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::error!(%err, requests = group.len(), samples = total, "Write failed; the requests get 503 and nothing was acknowledged.");
            let message = err.to_string();
            for pending in group.drain(..) {
                let _ = pending.reply.send(Err(message.clone()));
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
