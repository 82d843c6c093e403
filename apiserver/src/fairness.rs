//! Fairness between tenants and bounds on what requests hold at once.
//!
//! - **Ingest bytes**: an HTTP ingest request takes its body's size (`Content-Length`, or
//!   `max_body_bytes` when unknown) from the tenant's allowance (`max_inflight_ingest_bytes_per_tenant`,
//!   over it: 429) and then from the server's (`max_inflight_ingest_bytes`, waited for) before it
//!   reads the body, and gives both back once it is answered. A body's samples are parsed,
//!   queued, written and sent live, each a copy: in flight, a body takes up to about 24 times
//!   its size (measured), so the server's memory for ingest stays under about 24 times the
//!   server's allowance, whatever the number of concurrent requests; the rest wait, unread, in
//!   their sockets.
//! - **Streams**: a tenant holds at most `max_streams_per_tenant` live streams (429 past it).
//! - **Stream backfill**: a stream reading its gap from storage holds one of the tenant's
//!   `BACKFILL_PER_TENANT` slots and one of the server's `BACKFILL_SLOTS` only while it reads a
//!   slice, never while it waits for its client to take what was read: a client that does not
//!   read cannot hold up anybody else's resume.
//! - **Memory back after a burst**: once no ingest body is held and at least
//!   `TRIM_AFTER_BYTES` went through since the last time, the allocator is asked to give its
//!   free memory back to the system (glibc keeps it otherwise).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slices of stream backfill read from storage at once, across tenants.
pub const BACKFILL_SLOTS: usize = 4;
/// The same, per tenant.
pub const BACKFILL_PER_TENANT: usize = 2;
/// Ingest bytes after which an idle moment returns free memory to the system.
const TRIM_AFTER_BYTES: usize = 32 * 1024 * 1024;

/// One semaphore per tenant, made on first use.
pub struct PerTenant {
    permits: usize,
    semaphores: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl PerTenant {
    pub fn new(permits: usize) -> Self {
        Self { permits, semaphores: Mutex::new(HashMap::new()) }
    }

    fn of(&self, tenant_id: i64) -> Arc<Semaphore> {
        self.semaphores
            .lock()
            .expect("fairness poisoned")
            .entry(tenant_id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.permits)))
            .clone()
    }

    /// `n` permits of the tenant (at most all of them), or `None` when they are taken.
    pub fn try_take(&self, tenant_id: i64, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n.min(self.permits)).unwrap_or(u32::MAX);
        self.of(tenant_id).try_acquire_many_owned(n).ok()
    }

    pub async fn take(&self, tenant_id: i64, n: usize) -> OwnedSemaphorePermit {
        let n = u32::try_from(n.min(self.permits)).unwrap_or(u32::MAX);
        self.of(tenant_id).acquire_many_owned(n).await.expect("never closed")
    }

    pub fn capacity(&self) -> usize {
        self.permits
    }
}

pub struct Fairness {
    pub ingest_bytes_per_tenant: PerTenant,
    ingest_bytes: Arc<Semaphore>,
    ingest_bytes_max: usize,
    pub streams: PerTenant,
    pub backfill_per_tenant: PerTenant,
    pub backfill: Semaphore,
    /// Ingest bytes since memory was last given back.
    since_trim: AtomicUsize,
}

/// What one ingest request holds until it is answered.
pub struct IngestPermit {
    _tenant: OwnedSemaphorePermit,
    _server: OwnedSemaphorePermit,
}

impl Fairness {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            ingest_bytes_per_tenant: PerTenant::new(config.max_inflight_ingest_bytes_per_tenant),
            ingest_bytes: Arc::new(Semaphore::new(config.max_inflight_ingest_bytes)),
            ingest_bytes_max: config.max_inflight_ingest_bytes,
            streams: PerTenant::new(config.max_streams_per_tenant),
            backfill_per_tenant: PerTenant::new(BACKFILL_PER_TENANT),
            backfill: Semaphore::new(BACKFILL_SLOTS),
            since_trim: AtomicUsize::new(0),
        }
    }

    /// Room for a body of `bytes`: the tenant's at once (`None` when it has too much in flight),
    /// then the server's, waited for.
    pub async fn ingest(&self, tenant_id: i64, bytes: usize) -> Option<IngestPermit> {
        let tenant = self.ingest_bytes_per_tenant.try_take(tenant_id, bytes)?;
        let n = u32::try_from(bytes.min(self.ingest_bytes_max)).unwrap_or(u32::MAX);
        let server = self.ingest_bytes.clone().acquire_many_owned(n).await.expect("never closed");
        self.since_trim.fetch_add(bytes, Ordering::Relaxed);
        Some(IngestPermit { _tenant: tenant, _server: server })
    }

    /// Gives free memory back to the system after bursts, until the process exits.
    pub fn start_trimmer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let fairness = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let idle = fairness.ingest_bytes.available_permits() == fairness.ingest_bytes_max;
                if idle && fairness.since_trim.load(Ordering::Relaxed) >= TRIM_AFTER_BYTES {
                    fairness.since_trim.store(0, Ordering::Relaxed);
                    crate::pipeline::release_free_memory();
                }
            }
        })
    }
}
