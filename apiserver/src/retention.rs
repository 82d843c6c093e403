//! The retention job: deletes raw samples, chunks and rollup buckets older than the server's (or
//! the tenant's) retention, in small chunks with pauses, so ingest never waits long behind it;
//! then compacts the raw samples of closed windows into chunks (docs/storage.md).

use std::time::Duration;

use crate::config::Config;
use crate::domain::now_ms;
use crate::storage::chunk_store::{COMPACT_ROWS, Compacted, compact_before};
use crate::storage::{DynStore, Resolution, Retention};

const CHUNK: i64 = 10_000;

/// The retention of each resolution for a tenant, in ms.
pub fn effective(config: &Config, tenant: &Retention) -> [(Resolution, i64); 3] {
    [
        (Resolution::Raw, tenant.raw_ms.unwrap_or(config.retention_raw.as_millis() as i64)),
        (Resolution::OneMinute, tenant.m1_ms.unwrap_or(config.retention_1m.as_millis() as i64)),
        (Resolution::FiveMinutes, tenant.m5_ms.unwrap_or(config.retention_5m.as_millis() as i64)),
    ]
}

/// One pass over every tenant and resolution; returns how many points were deleted.
pub async fn run_once(store: &DynStore, config: &Config) -> crate::storage::Result<u64> {
    let mut deleted = 0;
    for tenant in store.list_tenants().await? {
        for (resolution, keep_ms) in effective(config, &tenant.retention) {
            let before = now_ms() - keep_ms;
            deleted += in_chunks(|| store.purge(tenant.id, resolution, before, CHUNK)).await?;
            // Chunks go whole, once their newest sample (or bucket) is past the retention.
            deleted += in_chunks(|| store.purge_chunks(tenant.id, resolution, before, CHUNK)).await?;
        }
    }
    Ok(deleted)
}

/// Runs `purge` (which deletes at most `CHUNK` rows) until it deletes fewer, pausing between
/// calls to let the writer in; returns the rows deleted.
async fn in_chunks<F, Fut>(mut purge: F) -> crate::storage::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::storage::Result<u64>>,
{
    let mut deleted = 0;
    loop {
        let n = purge().await?;
        deleted += n;
        if n < CHUNK as u64 {
            return Ok(deleted);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Compacts the raw samples of every tenant's closed windows into chunks (storage/chunk_store.rs);
/// returns the samples moved. Skipped when this process wrote into closed windows since
/// `quiet_since` (the previous pass: a backfill is under way), and stops early when that
/// happens meanwhile; a pass after the backfill takes them.
pub async fn compact_once(store: &DynStore, now: i64, quiet_since: i64) -> crate::storage::Result<Compacted> {
    let last = store.last_late_write();
    if last > 0 && last >= quiet_since {
        tracing::debug!("Compaction waits: samples are arriving for closed windows.");
        return Ok(Compacted::default());
    }
    let done = compact_with_progress(store, now, |_, _| {}).await?;
    if done.samples + done.buckets > 0 {
        store.reclaim_space().await?;
    }
    Ok(done)
}

/// `compact_once`, telling `progress` the tenants done so far and their count after each
/// transaction, and the running total.
pub async fn compact_with_progress(
    store: &DynStore,
    now: i64,
    mut progress: impl FnMut((usize, usize), Compacted),
) -> crate::storage::Result<Compacted> {
    let before = compact_before(now);
    let mut total = Compacted::default();
    let tenants = store.list_tenants().await?;
    let late_writes_before = store.last_late_write();
    'tenants: for (done_tenants, tenant) in tenants.iter().enumerate() {
        loop {
            if store.last_late_write() != late_writes_before {
                break 'tenants;
            }
            let done = store.compact(tenant.id, before, COMPACT_ROWS).await?;
            total.samples += done.samples;
            total.buckets += done.buckets;
            total.chunks += done.chunks;
            progress((done_tenants, tenants.len()), total);
            if !done.more {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(total)
}

pub async fn run_forever(store: DynStore, config: std::sync::Arc<Config>) {
    let mut tick = tokio::time::interval(config.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass runs unless a closed window was written before it.
    let mut quiet_since = 1;
    loop {
        tick.tick().await;
        match run_once(&store, &config).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "Retention: old points deleted."),
            Err(err) => tracing::warn!(%err, "Retention pass failed; will retry."),
        }
        let started = now_ms();
        let result = compact_once(&store, started, quiet_since).await;
        quiet_since = started;
        match result {
            Ok(done) if done.samples + done.buckets == 0 => {}
            Ok(done) => tracing::info!(
                samples = done.samples,
                buckets = done.buckets,
                chunks = done.chunks,
                "Compaction: raw samples and rollup buckets moved into chunks."
            ),
            Err(err) => tracing::warn!(%err, "Compaction pass failed; will retry."),
        }
    }
}
