//! Per-tenant intake limits: samples per second and distinct series, as set by
//! `PUT /api/v1/tenants/{name}/limits` (or the operator's `Tenant.spec.limits`), enforced in
//! front of the write queue for HTTP and MQTT alike, so one noisy tenant cannot take the server.
//!
//! - **Rate**: a token bucket per tenant holding one second of its rate. HTTP answers a request
//!   over it with 429 and `Retry-After`; MQTT 3.1.1 has no negative acknowledgement, so there the
//!   limit is back-pressure: the PUBACK waits until the samples fit (the client's in-flight
//!   window fills and it slows down), the way brokers throttle. A tenant without its own rate
//!   gets the server's `tenant_rate_limit`, whose bucket holds a full batch.
//! - **Series**: the tenant's series are loaded once (and again every `SERIES_RELOAD`) when it
//!   has a cap; a sample of a known series always passes, a new series passes while the tenant
//!   is under its cap, and the rest are refused (HTTP: 422 naming the limit, the samples of
//!   existing series in the request are stored; MQTT: the samples are dropped and counted, as
//!   any unusable payload). The count is kept by this process: other replicas' new series are
//!   seen at the next reload, so several replicas can overshoot the cap by what they admit in
//!   between.
//!
//! Limits changed by this process apply at once (`changed`); changed elsewhere (the CLI,
//! another replica), within `REFRESH`.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::domain::{Labels, Sample};
use crate::storage::{DynStore, SeriesRef, TenantLimits};
use crate::telemetry::{LimitLabels, Telemetry};

/// How long a tenant's limits are used before they are read again.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long a capped tenant's set of series is used before it is read again.
const SERIES_RELOAD: Duration = Duration::from_secs(60);
/// Tenants remembered at most; past it the table starts over (buckets refill).
const TENANTS_MAX: usize = 100_000;

/// The names of the limits, as problem+json, the metrics and the API call them.
pub mod name {
    pub const RATE: &str = "samples_per_second";
    pub const SERIES: &str = "series";
}

/// Why samples were not let through.
#[derive(Debug, Clone, PartialEq)]
pub enum RateRefusal {
    /// Over the tenant's rate: the request would pass after `retry_after`.
    Later { per_second: u32, retry_after: Duration },
    /// The request alone holds more samples than one second of the rate allows at once.
    TooLarge { per_second: u32, burst: u32 },
}

/// Samples of new series refused because the tenant is at its cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRefusal {
    pub limit: u64,
    /// Positions of the refused samples in the request, in order.
    pub refused: Vec<usize>,
    /// The refused series, as `metric{k="v"}`, a few at most.
    pub examples: Vec<String>,
}

struct Rate {
    per_second: NonZeroU32,
    burst: NonZeroU32,
    bucket: DefaultDirectRateLimiter,
}

impl Rate {
    fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self { per_second, burst, bucket: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)) }
    }
}

/// The series of a capped tenant this process knows of (hashes of `SeriesRef`).
#[derive(Default)]
struct SeriesSet {
    loaded: Option<Instant>,
    known: HashSet<u64>,
}

struct TenantIntake {
    name: String,
    limits: TenantLimits,
    fetched: Mutex<Instant>,
    rate: Option<Rate>,
    series: Arc<tokio::sync::Mutex<SeriesSet>>,
}

pub struct IntakeLimits {
    store: DynStore,
    telemetry: Telemetry,
    /// The server's `tenant_rate_limit` and the burst of its bucket; `None` = unlimited.
    default_rate: Option<(NonZeroU32, NonZeroU32)>,
    tenants: Mutex<HashMap<i64, Arc<TenantIntake>>>,
}

impl IntakeLimits {
    /// `default_rate`: samples/s of a tenant without its own limit (0 = unlimited); its bucket
    /// holds at least `max_batch_samples`, so a full batch always fits.
    pub fn new(store: DynStore, telemetry: Telemetry, default_rate: u32, max_batch_samples: usize) -> Self {
        let default_rate = NonZeroU32::new(default_rate).map(|rate| {
            let burst =
                NonZeroU32::new(default_rate.max(u32::try_from(max_batch_samples).unwrap_or(u32::MAX))).unwrap_or(rate);
            (rate, burst)
        });
        Self { store, telemetry, default_rate, tenants: Mutex::new(HashMap::new()) }
    }

    /// Forgets what is known of the tenant's limits: the next request reads them again.
    pub fn changed(&self, tenant_id: i64) {
        self.tenants.lock().expect("limits poisoned").remove(&tenant_id);
    }

    async fn entry(&self, tenant_id: i64) -> Arc<TenantIntake> {
        let cached = self.tenants.lock().expect("limits poisoned").get(&tenant_id).cloned();
        if let Some(entry) = &cached
            && entry.fetched.lock().expect("limits poisoned").elapsed() < REFRESH
        {
            return entry.clone();
        }
        let read = match self.store.limits_of(tenant_id).await {
            Ok(read) => read,
            Err(err) => {
                // Keep enforcing what was known rather than letting everything through.
                tracing::warn!(%err, tenant_id, "Reading a tenant's limits failed; keeping the last known.");
                if let Some(entry) = cached {
                    return entry;
                }
                None
            }
        };
        let (name, limits) = read.unwrap_or_else(|| (format!("#{tenant_id}"), TenantLimits::default()));
        if let Some(entry) = &cached
            && entry.limits == limits
        {
            *entry.fetched.lock().expect("limits poisoned") = Instant::now();
            return entry.clone();
        }
        let rate = match limits.samples_per_second {
            Some(rate) => {
                let rate = NonZeroU32::new(u32::try_from(rate.max(1)).unwrap_or(u32::MAX)).expect("at least 1");
                Some(Rate::new(rate, rate))
            }
            None => self.default_rate.map(|(rate, burst)| Rate::new(rate, burst)),
        };
        let series = cached.map(|c| c.series.clone()).unwrap_or_default();
        let entry = Arc::new(TenantIntake { name, limits, fetched: Mutex::new(Instant::now()), rate, series });
        let mut tenants = self.tenants.lock().expect("limits poisoned");
        if tenants.len() >= TENANTS_MAX {
            tenants.clear();
        }
        tenants.insert(tenant_id, entry.clone());
        entry
    }

    fn refused(&self, tenant: &str, limit: &'static str, samples: usize) {
        self.telemetry
            .limit_refusals
            .get_or_create(&LimitLabels { tenant: tenant.to_string(), limit })
            .inc_by(samples as u64);
    }

    /// Takes `n` samples from the tenant's rate, or says why not (HTTP: nothing is waited for).
    pub async fn check_rate(&self, tenant_id: i64, n: usize) -> Result<(), RateRefusal> {
        let entry = self.entry(tenant_id).await;
        let Some(rate) = &entry.rate else { return Ok(()) };
        let Some(n) = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)) else { return Ok(()) };
        let refusal = match rate.bucket.check_n(n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => RateRefusal::Later {
                per_second: rate.per_second.get(),
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
            Err(_) => RateRefusal::TooLarge { per_second: rate.per_second.get(), burst: rate.burst.get() },
        };
        self.refused(&entry.name, name::RATE, n.get() as usize);
        Err(refusal)
    }

    /// Waits until `n` samples fit the tenant's rate (MQTT's back-pressure), a bucket's worth
    /// at a time. Returns whether it had to wait.
    pub async fn wait_rate(&self, tenant_id: i64, n: usize) -> bool {
        let entry = self.entry(tenant_id).await;
        let Some(rate) = &entry.rate else { return false };
        let mut left = u32::try_from(n).unwrap_or(u32::MAX);
        let mut waited = false;
        while let Some(take) = NonZeroU32::new(left.min(rate.burst.get())) {
            if rate.bucket.check_n(take) != Ok(Ok(())) {
                if !waited {
                    self.telemetry
                        .limit_delays
                        .get_or_create(&LimitLabels { tenant: entry.name.clone(), limit: name::RATE })
                        .inc();
                }
                waited = true;
                let _ = rate.bucket.until_n_ready(take).await;
            }
            left -= take.get();
        }
        waited
    }

    /// The samples of new series past the tenant's cap; `None` when all may be stored. A store
    /// error lets the samples through (the cap is a guard, not a reason to lose data).
    pub async fn check_series(&self, tenant_id: i64, samples: &[Sample]) -> Option<SeriesRefusal> {
        let entry = self.entry(tenant_id).await;
        let cap = u64::try_from(entry.limits.series?).unwrap_or(0);
        let mut set = entry.series.lock().await;
        if set.loaded.is_none_or(|at| at.elapsed() >= SERIES_RELOAD) {
            match self.store.series_keys(tenant_id).await {
                Ok(keys) => {
                    set.known = keys
                        .iter()
                        .filter_map(|(metric, labels)| {
                            let labels: Labels = serde_json::from_str(labels).ok()?;
                            Some(SeriesRef::new(tenant_id, metric, &labels).hash)
                        })
                        .collect();
                    set.loaded = Some(Instant::now());
                }
                Err(err) => {
                    tracing::warn!(%err, tenant = %entry.name, "Reading a tenant's series failed; not capping this request.");
                    return None;
                }
            }
        }
        let mut refused = Vec::new();
        let mut examples = Vec::new();
        for (i, sample) in samples.iter().enumerate() {
            let hash = SeriesRef::new(tenant_id, &sample.metric, &sample.labels).hash;
            if set.known.contains(&hash) {
                continue;
            }
            if (set.known.len() as u64) < cap {
                set.known.insert(hash);
                continue;
            }
            refused.push(i);
            if examples.len() < 5 {
                let shown = series_text(sample);
                if !examples.contains(&shown) {
                    examples.push(shown);
                }
            }
        }
        if refused.is_empty() {
            return None;
        }
        self.refused(&entry.name, name::SERIES, refused.len());
        Some(SeriesRefusal { limit: cap, refused, examples })
    }
}

/// `metric{k="v",…}` as Prometheus writes a series.
fn series_text(sample: &Sample) -> String {
    if sample.labels.is_empty() {
        return sample.metric.to_string();
    }
    let labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}{{{}}}", sample.metric, labels.join(","))
}

/// Removes the samples at `refused` (sorted positions) from `samples`.
pub fn without(samples: Vec<Sample>, refused: &[usize]) -> Vec<Sample> {
    samples.into_iter().enumerate().filter(|(i, _)| refused.binary_search(i).is_err()).map(|(_, s)| s).collect()
}
