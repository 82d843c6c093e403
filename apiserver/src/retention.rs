//! The retention job: deletes raw samples and rollup buckets older than the server's (or the
//! tenant's) retention, in small chunks with pauses, so ingest never waits long behind it.

use std::time::Duration;

use crate::config::Config;
use crate::domain::now_ms;
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
            loop {
                let n = store.purge(tenant.id, resolution, before, CHUNK).await?;
                deleted += n;
                if n < CHUNK as u64 {
                    break;
                }
                // Let the writer in between chunks.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(deleted)
}

pub async fn run_forever(store: DynStore, config: std::sync::Arc<Config>) {
    let mut tick = tokio::time::interval(config.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match run_once(&store, &config).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "Retention: old points deleted."),
            Err(err) => tracing::warn!(%err, "Retention pass failed; will retry."),
        }
    }
}
