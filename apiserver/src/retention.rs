//! The retention job: deletes raw samples, chunks and rollup buckets older than the server's (or
//! the tenant's) retention, in small chunks with pauses, so ingest never waits long behind it;
//! then compacts the raw samples of closed windows into chunks (docs/storage.md).

use std::time::Duration;

use crate::config::Config;
use crate::domain::now_ms;
use crate::storage::chunk_store::{COMPACT_ROWS, Compacted, compact_before};
use crate::storage::{DynStore, Resolution, Retention};

const CHUNK: i64 = 10_000;

/// Raw chunks expired per transaction. Each is decoded to write its window's 1m buckets as a
/// chunk before it goes, so 10 000 of them (7 M samples at 10 s) held SQLite's write lock and a
/// core for seconds: a 30-day query right after a start beside that pass took 1.3–4.1 s instead
/// of ~100 ms (docs/benchmarks.md, query section).
const RAW_CHUNKS: i64 = 256;

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
            deleted += in_chunks(CHUNK, || store.purge(tenant.id, resolution, before, CHUNK)).await?;
            // Chunks go whole, once their newest sample (or bucket) is past the retention.
            let limit = if resolution == Resolution::Raw { RAW_CHUNKS } else { CHUNK };
            deleted += in_chunks(limit, || store.purge_chunks(tenant.id, resolution, before, limit)).await?;
        }
    }
    Ok(deleted)
}

/// Runs `purge` (which deletes at most `limit` rows) until it deletes fewer, pausing between
/// calls to let the writer in; returns the rows deleted.
async fn in_chunks<F, Fut>(limit: i64, mut purge: F) -> crate::storage::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::storage::Result<u64>>,
{
    let mut deleted = 0;
    loop {
        let n = purge().await?;
        deleted += n;
        if n < limit as u64 {
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
    // Not at once (`retention_start_delay`): a server that has been down for days starts with a
    // long pass (each expired raw chunk is decoded to keep its window's 1m buckets), and it
    // would compete with the first dashboards loaded after the start for the CPU and the
    // database. The first 30-day query after a start took 160-182 ms beside it, 105 ms without.
    let first = tokio::time::Instant::now() + config.retention_start_delay;
    let mut tick = tokio::time::interval_at(first, config.retention_interval);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Labels, Sample};
    use crate::storage::{PointQuery, WriteBatch, chunk_store::compact_before};

    /// More expired raw chunks than one transaction takes (`RAW_CHUNKS`): the pass goes on until
    /// all of them are gone, and the 1m buckets of their windows stay, as chunks.
    #[tokio::test]
    async fn a_pass_expires_every_raw_chunk_a_few_hundred_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::storage::open(&format!("sqlite://{}", dir.path().join("r.db").display()), false).await.unwrap();
        store.migrate().await.unwrap();
        let tenant = store.create_tenant("old", None).await.unwrap();
        let now = now_ms();
        let hour = 3_600_000;
        // Two samples in every 2 h window of 50 days: 600 windows, each its own raw chunk.
        let windows = 600i64;
        let first = compact_before(now) - windows * 2 * hour;
        let samples: Vec<Sample> = (0..windows * 2)
            .map(|i| Sample {
                metric: "temp".into(),
                labels: Labels::from([("room".to_string(), "a".to_string())]).into(),
                ts: first + i * hour,
                value: i as f64,
                dedupe_id: None,
            })
            .collect();
        store.write(&[WriteBatch { tenant_id: tenant.id, samples: &samples }], now, 0).await.unwrap();
        while store.compact(tenant.id, compact_before(now), 100_000).await.unwrap().more {}
        let query = |resolution| PointQuery {
            tenant_id: tenant.id,
            metric: "temp".into(),
            matchers: Labels::new(),
            from: first,
            to: now,
            step: None,
            resolution,
            agg: crate::storage::Aggregation::Avg,
            max_points: 100_000,
            last_sample_times: false,
        };
        let minutes = store.query(&query(Resolution::OneMinute)).await.unwrap();
        assert_eq!(minutes[0].points.len(), samples.len());

        // Raw retention only (7 days by default); the 1m buckets are kept longer than the data.
        let config = Config { retention_1m: Duration::from_secs(400 * 86_400), ..Config::default() };
        let deleted = run_once(&store, &config).await.unwrap();
        let kept_from = now - config.retention_raw.as_millis() as i64;
        let raw = store.query(&query(Resolution::Raw)).await.unwrap();
        // A window's chunk ends at its second sample (window + 1 h); it goes once that is past.
        let kept: Vec<(i64, f64)> = samples
            .iter()
            .filter(|s| crate::storage::chunk::window_of(s.ts) + hour >= kept_from)
            .map(|s| (s.ts, s.value))
            .collect();
        let expired = (samples.len() - kept.len()) as u64 / 2;
        assert!(expired > 2 * RAW_CHUNKS as u64, "{expired} expired chunks: more than two transactions' worth");
        assert!(deleted >= expired, "{deleted} deleted of {expired} expired chunks");
        assert_eq!(raw[0].points, kept);
        assert_eq!(store.query(&query(Resolution::OneMinute)).await.unwrap(), minutes, "the 1m buckets stay");
        store.close().await;
    }
}
