//! Storage: the `Store` trait the use cases depend on, and one adapter per SQL backend.
//!
//! Aggregation over time buckets lives here in plain Rust so every backend answers queries the
//! same way; the backends only fetch rows.

pub mod alerts;
pub mod sqlite;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

pub use alerts::AlertStore;

use crate::domain::{Labels, Principal, Sample, TokenHash};

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("too many points ({0}); narrow the time range or pass a step")]
    TooManyPoints(usize),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TenantRecord {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The samples of one request, for one tenant, as the writer hands them to the store.
pub struct WriteBatch<'a> {
    pub tenant_id: i64,
    pub samples: &'a [Sample],
}

/// What happened to one `WriteBatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct WriteOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    /// Positions of the samples skipped as duplicates, so only stored samples go live.
    #[serde(skip)]
    #[schema(ignore)]
    pub duplicate_indices: Vec<usize>,
}

/// A series of a metric and its latest point.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SeriesInfo {
    pub labels: Labels,
    /// `[ts_ms, value]` of the newest sample, if any.
    #[schema(value_type = Option<Vec<f64>>)]
    pub last: Option<(i64, f64)>,
}

/// How points in one time bucket are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
}

/// A query for points of one metric.
#[derive(Debug, Clone)]
pub struct PointQuery {
    pub tenant_id: i64,
    pub metric: String,
    /// Label equality matchers.
    pub matchers: Labels,
    pub from: i64,
    pub to: i64,
    /// Bucket width in ms; `None` returns raw points.
    pub step: Option<i64>,
    pub agg: Aggregation,
    /// Refuse to read more raw rows than this.
    pub max_points: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SeriesPoints {
    pub labels: Labels,
    /// `[ts_ms, value]` pairs in time order.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<(i64, f64)>,
}

/// A dashboard session looked up by the hash of its cookie.
pub struct SessionRecord {
    pub principal: Principal,
    pub expires_at: i64,
}

#[async_trait]
pub trait Store: alerts::AlertStore + Send + Sync + 'static {
    /// Applies pending migrations of this backend.
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;

    async fn create_tenant(&self, name: &str, display_name: Option<&str>) -> Result<TenantRecord>;
    async fn get_tenant(&self, name: &str) -> Result<Option<TenantRecord>>;
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>>;
    async fn delete_tenant(&self, name: &str) -> Result<bool>;

    async fn create_token(&self, tenant_id: i64, hash: &TokenHash, prefix: &str, scopes: &[Scope]) -> Result<i64>;
    async fn find_token(&self, hash: &TokenHash) -> Result<Option<Principal>>;

    async fn create_session(&self, hash: &TokenHash, token_id: i64, expires_at: i64) -> Result<()>;
    async fn find_session(&self, hash: &TokenHash) -> Result<Option<SessionRecord>>;
    async fn delete_session(&self, hash: &TokenHash) -> Result<()>;

    /// Writes every batch in one transaction; dedupe ids seen since `dedupe_since` count as
    /// duplicates. Returns an outcome per batch, in order.
    async fn write(&self, batches: &[WriteBatch<'_>], now: i64, dedupe_since: i64) -> Result<Vec<WriteOutcome>>;
    /// Forgets dedupe ids older than `before`, at most `limit` of them; returns how many.
    async fn purge_dedupe(&self, before: i64, limit: i64) -> Result<u64>;

    async fn metric_names(&self, tenant_id: i64) -> Result<Vec<String>>;
    async fn series(&self, tenant_id: i64, metric: &str, matchers: &Labels) -> Result<Vec<SeriesInfo>>;
    async fn query(&self, query: &PointQuery) -> Result<Vec<SeriesPoints>>;

    async fn list_dashboards(&self, tenant_id: i64) -> Result<Vec<String>>;
    async fn put_dashboard(&self, tenant_id: i64, name: &str, body: &str, now: i64) -> Result<()>;
    async fn delete_dashboard(&self, tenant_id: i64, name: &str) -> Result<bool>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store for a database URL.
pub async fn open(url: &str, sqlite_synchronous_full: bool) -> anyhow::Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url, sqlite_synchronous_full).await?))
    } else {
        anyhow::bail!(
            "database_url {url:?}: only sqlite:// URLs are supported in this version (MariaDB and PostgreSQL are planned)"
        )
    }
}

/// True when every matcher equals the series' label.
pub fn labels_match(labels: &Labels, matchers: &Labels) -> bool {
    matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The dedupe work of one batch: which samples to store, how many were duplicates.
/// Repeats inside the batch count as duplicates before the database is asked.
pub fn split_duplicates<'a>(samples: &'a [Sample], already_seen: &HashSet<&str>) -> (Vec<&'a Sample>, Vec<usize>) {
    let mut seen_here: HashSet<&str> = HashSet::new();
    let mut keep = Vec::with_capacity(samples.len());
    let mut duplicates = Vec::new();
    for (index, sample) in samples.iter().enumerate() {
        match sample.dedupe_id.as_deref() {
            Some(id) if already_seen.contains(id) || !seen_here.insert(id) => duplicates.push(index),
            _ => keep.push(sample),
        }
    }
    (keep, duplicates)
}

/// Folds raw points (in time order) into buckets of `step` ms.
pub fn aggregate(points: &[(i64, f64)], step: i64, agg: Aggregation) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut current: Option<(i64, Acc)> = None;
    for &(ts, value) in points {
        let bucket = ts - ts.rem_euclid(step);
        match &mut current {
            Some((b, acc)) if *b == bucket => acc.add(value),
            _ => {
                if let Some((b, acc)) = current.take() {
                    out.push((b, acc.result(agg)));
                }
                current = Some((bucket, Acc::new(value)));
            }
        }
    }
    if let Some((b, acc)) = current {
        out.push((b, acc.result(agg)));
    }
    out
}

/// count/sum/min/max/last of a bucket: the same five numbers rollups keep.
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

impl Acc {
    fn new(v: f64) -> Self {
        Acc { count: 1, sum: v, min: v, max: v, last: v }
    }
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }
    fn result(&self, agg: Aggregation) -> f64 {
        match agg {
            Aggregation::Avg => self.sum / self.count as f64,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Sum => self.sum,
            Aggregation::Count => self.count as f64,
            Aggregation::Last => self.last,
        }
    }
}

/// Canonical JSON of a label set: the identity of a series within its metric.
pub fn labels_key(labels: &Labels) -> String {
    serde_json::to_string(labels).expect("string maps always serialize")
}

/// A series as a sample names it, borrowed, with its hash precomputed.
pub struct SeriesRef<'a> {
    pub hash: u64,
    pub tenant_id: i64,
    pub metric: &'a str,
    pub labels: &'a Labels,
}

impl<'a> SeriesRef<'a> {
    pub fn new(tenant_id: i64, metric: &'a str, labels: &'a Labels) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tenant_id, metric, labels).hash(&mut hasher);
        SeriesRef { hash: hasher.finish(), tenant_id, metric, labels }
    }

    pub fn same(&self, other: &SeriesRef<'_>) -> bool {
        self.tenant_id == other.tenant_id && self.metric == other.metric && self.labels == other.labels
    }
}

/// A series id the store already knows, for the write path's cache.
pub struct CachedSeries {
    pub tenant_id: i64,
    pub metric: String,
    pub labels: Labels,
    pub id: i64,
}

impl CachedSeries {
    pub fn is(&self, series: &SeriesRef<'_>) -> bool {
        self.tenant_id == series.tenant_id && self.metric == series.metric && &self.labels == series.labels
    }
}

/// Keeps the last sample per (series, ts) so one statement never writes a row twice.
pub fn last_wins(rows: &mut Vec<(i64, i64, f64)>) {
    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<(i64, i64, f64)> = Vec::with_capacity(rows.len());
    for &(series, ts, value) in rows.iter() {
        match index.get(&(series, ts)) {
            Some(&i) => out[i].2 = value,
            None => {
                index.insert((series, ts), out.len());
                out.push((series, ts, value));
            }
        }
    }
    *rows = out;
}
