//! Storage: the `Store` trait the use cases depend on, and one adapter per SQL backend.
//!
//! Aggregation over time buckets lives here in plain Rust so every backend answers queries the
//! same way; the backends only fetch rows.

pub mod alerts;
pub mod chunk;
pub mod chunk_store;
mod error;
pub mod head;
pub mod mysql;
pub mod postgres;
mod sql_alerts;
mod sql_common;
pub mod sqlite;
pub mod status_pages;
pub mod tenancy;
pub mod wal;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

pub use alerts::AlertStore;
pub use error::{DatabaseError, StoreError};
pub use status_pages::StatusPageStore;
pub use tenancy::{AuthEvent, TenancyStore, TokenIds, TokenInfo};

use crate::domain::{Labels, Principal, Sample, TokenHash};

#[cfg(test)]
mod tests;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs a write transaction again when it was a deadlock's victim (rolled back whole, so the
/// retry sees nothing of it), up to 5 times with a short, growing pause. InnoDB's next-key locks
/// make such deadlocks a normal event between writers of neighbouring series (an `INSERT …
/// SELECT` that recomputes a rollup locks the gap up to the next series' first row).
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Err(err) if err.is_deadlock() && tries < 5 => {
                tries += 1;
                tracing::debug!(%err, tries, "A write transaction lost a deadlock; running it again.");
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
            }
            other => return other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TenantRecord {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Overrides of the server's retention for this tenant.
    pub retention: Retention,
    /// The tenant's intake limits; `None` = the server's default.
    pub limits: TenantLimits,
}

/// Intake limits of one tenant (`PUT /api/v1/tenants/{name}/limits`); `None` = the server's
/// default: `tenant_rate_limit` samples/s, no cap on series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct TenantLimits {
    /// Samples per second (the long-run rate; one second's worth may come at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<i64>,
    /// Distinct series. Samples of existing series are accepted past it; new series are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<i64>,
}

/// Retention overrides in ms; `None` = the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "one_minute_ms")]
    pub m1_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "five_minutes_ms")]
    pub m5_ms: Option<i64>,
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
    /// The tenant was deleted (or marked for deletion) before the write: nothing was stored.
    #[serde(skip)]
    #[schema(ignore)]
    pub tenant_gone: bool,
}

impl WriteOutcome {
    pub fn gone() -> Self {
        WriteOutcome { tenant_gone: true, ..Default::default() }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
}

impl Aggregation {
    /// The rollup fields `Summary::result` reads for this aggregation (and `count`).
    pub fn columns(self) -> chunk::Columns {
        let none = chunk::Columns::NONE;
        match self {
            Aggregation::Avg | Aggregation::Sum => chunk::Columns { sum: true, ..none },
            Aggregation::Min => chunk::Columns { min: true, ..none },
            Aggregation::Max => chunk::Columns { max: true, ..none },
            Aggregation::Count => none,
            Aggregation::Last => chunk::Columns { last: true, ..none },
        }
    }
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
    /// Bucket width in ms; `None` returns raw points (or the rollup's own buckets).
    pub step: Option<i64>,
    pub resolution: Resolution,
    pub agg: Aggregation,
    /// Refuse to read more raw rows than this.
    pub max_points: usize,
    /// With a rollup resolution and no step: each bucket answers its last sample at that
    /// sample's own time, a true subset of the raw samples (what PromQL reads past the raw
    /// retention), instead of the bucket's aggregate at the bucket's start.
    pub last_sample_times: bool,
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
pub trait Store:
    alerts::AlertStore
    + tenancy::TenancyStore
    + chunk_store::ChunkStore
    + status_pages::StatusPageStore
    + Send
    + Sync
    + 'static
{
    /// Applies pending migrations of this backend.
    async fn migrate(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    /// At a clean stop, after the last write: closes the connections, leaving the database tidy
    /// (SQLite: its last connection checkpoints the write-ahead log into the file and deletes it).
    async fn close(&self) {}
    /// Once, from `microdash migrate`: makes the space that compaction frees go back to the file
    /// system where the database was created without that (an SQLite file from before chunks,
    /// with `auto_vacuum = NONE`, is rewritten by `VACUUM`). True when it rewrote something.
    async fn enable_reclaim(&self) -> Result<bool> {
        Ok(false)
    }

    async fn create_tenant(&self, name: &str, display_name: Option<&str>) -> Result<TenantRecord>;
    async fn get_tenant(&self, name: &str) -> Result<Option<TenantRecord>>;
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>>;
    /// Deletes a tenant and everything it owned, in chunks of `tenancy::PURGE_CHUNK` rows (the
    /// tenant is hidden from the first moment on). False when there is no such tenant.
    async fn delete_tenant(&self, name: &str) -> Result<bool> {
        let Some(id) = self.mark_tenant_deleted(name).await? else { return Ok(false) };
        while self.purge_deleted_tenant(id, tenancy::PURGE_CHUNK).await? > 0 {}
        Ok(true)
    }
    /// Forgets what this process caches about a tenant (after its deletion elsewhere).
    fn forget_tenant(&self, tenant_id: i64);
    async fn set_retention(&self, name: &str, retention: &Retention) -> Result<bool>;
    /// Deletes at most `limit` points of one tenant and resolution older than `before`.
    async fn purge(&self, tenant_id: i64, resolution: Resolution, before: i64, limit: i64) -> Result<u64>;

    /// The principal of a token of a live tenant, expired or not (the caller checks
    /// `expires_at`, also on its cached copies).
    async fn find_token(&self, hash: &TokenHash) -> Result<Option<Principal>>;

    async fn create_session(&self, hash: &TokenHash, token_id: i64, expires_at: i64) -> Result<()>;
    async fn find_session(&self, hash: &TokenHash) -> Result<Option<SessionRecord>>;
    async fn delete_session(&self, hash: &TokenHash) -> Result<()>;

    /// Writes every batch in one transaction; dedupe ids seen since `dedupe_since` count as
    /// duplicates. Returns an outcome per batch, in order. A batch of a tenant that was deleted
    /// meanwhile is not written (`tenant_gone`) and does not fail the others.
    async fn write(&self, batches: &[WriteBatch<'_>], now: i64, dedupe_since: i64) -> Result<Vec<WriteOutcome>>;
    /// Forgets dedupe ids older than `before`, at most `limit` of them; returns how many.
    async fn purge_dedupe(&self, before: i64, limit: i64) -> Result<u64>;

    async fn metric_names(&self, tenant_id: i64) -> Result<Vec<String>>;
    async fn series(&self, tenant_id: i64, metric: &str, matchers: &Labels) -> Result<Vec<SeriesInfo>>;
    async fn query(&self, query: &PointQuery) -> Result<Vec<SeriesPoints>>;

    async fn list_dashboards(&self, tenant_id: i64) -> Result<Vec<String>>;
    async fn put_dashboard(&self, tenant_id: i64, name: &str, body: &str, now: i64) -> Result<()>;
    async fn delete_dashboard(&self, tenant_id: i64, name: &str) -> Result<bool>;

    /// Makes the reads merge `head` (the embedded writer's). Stores without one ignore it.
    fn attach_head(&self, _head: Arc<head::Head>) {}
    /// The head the reads merge, if any.
    fn head(&self) -> Option<Arc<head::Head>> {
        None
    }
    /// Like `write`, but the samples `head` accepts are not written as rows: they go to
    /// `head.log` inside the transaction, after dedupe ids and series ids are settled and
    /// before the commit (a crash between the two leaves an unanswered request whose retry
    /// overwrites the same samples with the same values).
    async fn write_with_head(
        &self,
        batches: &[WriteBatch<'_>],
        now: i64,
        dedupe_since: i64,
        _head: &mut dyn HeadSink,
    ) -> Result<Vec<WriteOutcome>> {
        self.write(batches, now, dedupe_since).await
    }
    /// Writes `(series, ts, value)` rows of existing series in one transaction, as `write` would
    /// (overwrites win, rollups stay exact, compacted windows are reopened): the head's flush.
    async fn write_rows(&self, rows: &[(i64, i64, f64)], now: i64) -> Result<()>;
    /// Which of `ids` are series of live tenants (replay drops rows of a series whose creation was
    /// rolled back).
    async fn existing_series(&self, ids: &[i64]) -> Result<HashSet<i64>>;
}

pub type DynStore = Arc<dyn Store>;

/// Where a SQL store finds the head its reads merge (set once, by the embedded writer).
pub type HeadSlot = std::sync::OnceLock<Arc<head::Head>>;

/// What `Store::write_with_head` hands the rows of open windows to, inside the write's
/// transaction and before its commit: the embedded writer's log and head.
pub trait HeadSink: Send {
    /// True when a sample at `ts` belongs in the head (its window is not flushed yet).
    fn accepts(&self, ts: i64) -> bool;
    /// Writes `rows` to the log and applies them to the head. With `durable_now` the log is
    /// fsync'd before this returns (the transaction recorded dedupe ids: it must not commit
    /// before the samples they stand for are durable); otherwise the sink makes them durable
    /// after the commit and before any request of the group is answered.
    fn log(&mut self, rows: &[wal::Row], durable_now: bool) -> Result<()>;
}

/// The reads a point query needs. The backends differ only in SQL dialect, so the query itself
/// (matching series, choosing raw or rollup rows, folding them by step, the point limit) is
/// written once, in `query_points`.
#[async_trait]
pub trait PointRows: Sync {
    /// `(id, labels JSON)` of a metric's series.
    async fn series_rows(&self, tenant_id: i64, metric: &str) -> Result<Vec<(i64, String)>>;
    /// Raw `(ts, value)` of a series in `[from, to]` in time order, at most `limit`, and the
    /// data of the chunks that may hold points in that range, read in one statement (one
    /// snapshot: compaction moving rows between the two never hides or doubles a sample).
    async fn raw_rows(&self, series: i64, from: i64, to: i64, limit: i64) -> Result<(Vec<(i64, f64)>, Vec<Vec<u8>>)>;
    /// Buckets of `table` (`rollup_1m` or `rollup_5m`) starting in `[from, to]`, in time order;
    /// of the buckets kept in chunks only the `wanted` fields are filled in.
    async fn rollup_rows(
        &self,
        table: &str,
        series: i64,
        from: i64,
        to: i64,
        limit: i64,
        wanted: chunk::Columns,
    ) -> Result<Vec<(i64, Summary)>>;
}

/// How many series a query reads at once: the database works on the next ones (SQLite: on its
/// connections' threads) while one is decoded and folded here.
pub(crate) const SERIES_IN_FLIGHT: usize = 4;

pub async fn query_points(source: &impl PointRows, query: &PointQuery) -> Result<Vec<SeriesPoints>> {
    use futures_util::{StreamExt, TryStreamExt};
    let mut wanted = Vec::new();
    for (id, labels) in source.series_rows(query.tenant_id, &query.metric).await? {
        let labels: Labels = serde_json::from_str(&labels).map_err(StoreError::corrupt)?;
        if labels_match(&labels, &query.matchers) {
            wanted.push((id, labels));
        }
    }
    // One row past the budget tells that it was crossed. The running total is checked in series
    // order, so at most `SERIES_IN_FLIGHT` series are read past it.
    let limit = (query.max_points + 1) as i64;
    let mut reads = futures_util::stream::iter(wanted)
        .map(|(id, labels)| async move {
            let (read, points) = series_points(source, query, id, limit).await?;
            Ok::<_, StoreError>((read, SeriesPoints { labels, points }))
        })
        .buffered(SERIES_IN_FLIGHT);
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some((read, series)) = reads.try_next().await? {
        total += read;
        if total > query.max_points {
            return Err(StoreError::TooManyPoints(query.max_points + 1));
        }
        out.push(series);
    }
    Ok(out)
}

/// One series' answer to `query`, and how many points or buckets were read for it.
async fn series_points(
    source: &impl PointRows,
    query: &PointQuery,
    id: i64,
    limit: i64,
) -> Result<(usize, Vec<(i64, f64)>)> {
    Ok(match query.resolution {
        Resolution::Raw => {
            let (rows, chunks) = source.raw_rows(id, query.from, query.to, limit).await?;
            let points = if chunks.is_empty() {
                rows
            } else {
                chunk::merge(chunk_store::chunk_points(&chunks, query.from, query.to)?, rows)
            };
            let read = points.len();
            match query.step {
                Some(step) => (read, aggregate(&points, step, query.agg)),
                None => (read, points),
            }
        }
        rollup => {
            let table = if rollup == Resolution::OneMinute { "rollup_1m" } else { "rollup_5m" };
            let width = rollup.width_ms();
            // Each bucket answers its last sample at its own time (`PointQuery::last_sample_times`).
            let last_samples = query.last_sample_times && query.step.is_none();
            let wanted = if last_samples { Aggregation::Last.columns() } else { query.agg.columns() };
            let rows = source.rollup_rows(table, id, bucket_of(query.from, width), query.to, limit, wanted).await?;
            let read = rows.len();
            if last_samples {
                (read, rows.into_iter().map(|(_, summary)| (summary.last_ts, summary.last)).collect())
            } else {
                (read, fold_summaries(rows, query.step.unwrap_or(width).max(width), query.agg))
            }
        }
    })
}

/// Opens the store for a database URL.
pub async fn open(url: &str, sqlite_synchronous_full: bool) -> anyhow::Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url, sqlite_synchronous_full).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        Ok(Arc::new(mysql::MySqlStore::open(&mysql_url(url)).await?))
    } else {
        anyhow::bail!("database_url: use sqlite://PATH, postgres://… or mysql://… (MariaDB)")
    }
}

/// `mariadb://…` is accepted as another name of `mysql://…`: only the scheme changes (a host
/// named `mariadb`, as in Compose, stays as it is).
fn mysql_url(url: &str) -> String {
    match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn only_a_mariadb_scheme_is_renamed_never_the_host() {
        assert_eq!(super::mysql_url("mysql://u:p@mariadb:3306/db"), "mysql://u:p@mariadb:3306/db");
        assert_eq!(super::mysql_url("mariadb://u:p@mariadb:3306/db"), "mysql://u:p@mariadb:3306/db");
        assert_eq!(super::mysql_url("mariadb://u:mariadb:@h/db"), "mysql://u:mariadb:@h/db");
    }
}

#[cfg(test)]
mod series_cache_tests {
    use super::SeriesCache;

    /// A tenant forgotten (deleted) is never taken for alive again, even when a read that began
    /// before its deletion reports it alive afterwards.
    #[test]
    fn a_forgotten_tenant_stays_dead() {
        let cache = SeriesCache::default();
        assert!(!cache.tenants_alive(&[1]), "unknown");
        cache.remember_alive([1, 2]);
        assert!(cache.tenants_alive(&[1, 2]));
        assert!(!cache.tenants_alive(&[1, 3]), "all of them, or read again");
        cache.forget_tenant(1);
        assert!(!cache.tenants_alive(&[1]));
        assert!(cache.tenants_alive(&[2]));
        cache.remember_alive([1]);
        assert!(!cache.tenants_alive(&[1]), "a late report of the old read");
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

/// Where points come from: raw samples or a rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    Raw,
    OneMinute,
    FiveMinutes,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::OneMinute => "1m",
            Resolution::FiveMinutes => "5m",
        }
    }

    /// Width of one bucket in ms (1 for raw samples).
    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::Raw => 1,
            Resolution::OneMinute => 60_000,
            Resolution::FiveMinutes => 300_000,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "raw" => Some(Resolution::Raw),
            "1m" => Some(Resolution::OneMinute),
            "5m" => Some(Resolution::FiveMinutes),
            _ => None,
        }
    }
}

/// Start of the bucket of `width` ms that holds `ts`.
pub fn bucket_of(ts: i64, width: i64) -> i64 {
    ts - ts.rem_euclid(width)
}

/// count/sum/min/max/last of a set of points: what a rollup bucket keeps, and what any
/// aggregation is computed from. Merging two summaries gives the summary of the union.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The value at `last_ts`, the newest point.
    pub last: f64,
    pub last_ts: i64,
}

impl Summary {
    pub fn of(ts: i64, value: f64) -> Self {
        Summary { count: 1, sum: value, min: value, max: value, last: value, last_ts: ts }
    }

    pub fn merge(&mut self, other: &Summary) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last_ts >= self.last_ts {
            self.last = other.last;
            self.last_ts = other.last_ts;
        }
    }

    pub fn result(&self, agg: Aggregation) -> f64 {
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

/// Folds bucket summaries (bucket start, summary), in time order, into buckets of `step` ms.
pub fn fold_summaries(rows: impl IntoIterator<Item = (i64, Summary)>, step: i64, agg: Aggregation) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut current: Option<(i64, Summary)> = None;
    for (ts, summary) in rows {
        let bucket = bucket_of(ts, step);
        match &mut current {
            Some((b, acc)) if *b == bucket => acc.merge(&summary),
            _ => {
                if let Some((b, acc)) = current.take() {
                    out.push((b, acc.result(agg)));
                }
                current = Some((bucket, summary));
            }
        }
    }
    if let Some((b, acc)) = current {
        out.push((b, acc.result(agg)));
    }
    out
}

/// Folds raw points (in time order) into buckets of `step` ms.
pub fn aggregate(points: &[(i64, f64)], step: i64, agg: Aggregation) -> Vec<(i64, f64)> {
    fold_summaries(points.iter().map(|&(ts, v)| (ts, Summary::of(ts, v))), step, agg)
}

/// The per-bucket summaries of new rows `(series, ts, value)`, to merge into a rollup.
pub fn rollup_deltas(rows: &[(i64, i64, f64)], width: i64) -> HashMap<(i64, i64), Summary> {
    let mut deltas: HashMap<(i64, i64), Summary> = HashMap::new();
    for &(series, ts, value) in rows {
        let point = Summary::of(ts, value);
        deltas.entry((series, bucket_of(ts, width))).and_modify(|s| s.merge(&point)).or_insert(point);
    }
    deltas
}

/// Picks the resolution for a query without an explicit one: rollups for long ranges or wide
/// steps, and whenever raw samples of the range may already be gone.
pub fn choose_resolution(from: i64, to: i64, step: Option<i64>, raw_kept_since: i64) -> Resolution {
    let range = to - from;
    let step = step.unwrap_or(0);
    if step >= 300_000 || range > 2 * 86_400_000 {
        Resolution::FiveMinutes
    } else if step >= 60_000 || range > 6 * 3_600_000 || from < raw_kept_since {
        Resolution::OneMinute
    } else {
        Resolution::Raw
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

/// Series ids the write path already knows: series hash → the series with that hash (almost
/// always one). Filled only after a commit, so a rolled-back id is never cached. Also which
/// tenants were alive a moment ago (`tenants_alive`), for the writes that take no transaction.
#[derive(Default)]
pub struct SeriesCache {
    series: std::sync::Mutex<HashMap<u64, Vec<CachedSeries>>>,
    tenants: std::sync::Mutex<TenantLiveness>,
}

/// Tenants read alive, with when; and tenants this process was told are deleted (ids are never
/// reused), which are never taken for alive again.
#[derive(Default)]
struct TenantLiveness {
    alive: HashMap<i64, std::time::Instant>,
    forgotten: std::collections::HashSet<i64>,
}

/// Entries past which the cache starts over, to bound memory.
const SERIES_CACHE_MAX: usize = 1_000_000;

/// How long a tenant read alive is taken for alive without reading it again. A deletion in
/// this process clears it at once (`forget_tenant`); one in another process reaches this one
/// through the auth events' poll (`auth::POLL_INTERVAL`), or after this long at the latest.
pub const TENANT_ALIVE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl SeriesCache {
    /// Ids of `wanted` by position (0 where unknown) and the positions not in the cache.
    pub fn lookup(&self, wanted: &[SeriesRef<'_>]) -> (Vec<i64>, Vec<usize>) {
        let cache = self.series.lock().expect("series cache poisoned");
        let mut ids = vec![0i64; wanted.len()];
        let mut missing = Vec::new();
        for (i, series) in wanted.iter().enumerate() {
            match cache.get(&series.hash).and_then(|bucket| bucket.iter().find(|c| c.is(series))) {
                Some(cached) => ids[i] = cached.id,
                None => missing.push(i),
            }
        }
        (ids, missing)
    }

    pub fn remember(&self, fresh: Vec<(u64, CachedSeries)>) {
        let mut cache = self.series.lock().expect("series cache poisoned");
        if cache.len() + fresh.len() > SERIES_CACHE_MAX {
            cache.clear();
        }
        for (hash, entry) in fresh {
            cache.entry(hash).or_default().push(entry);
        }
    }

    /// True when every one of `tenants` was read alive less than `TENANT_ALIVE_FOR` ago and
    /// not forgotten since.
    pub fn tenants_alive(&self, tenants: &[i64]) -> bool {
        let known = self.tenants.lock().expect("tenant cache poisoned");
        tenants.iter().all(|id| known.alive.get(id).is_some_and(|at| at.elapsed() < TENANT_ALIVE_FOR))
    }

    /// Notes `tenants` as read alive from the database just now (after the read: a tenant
    /// forgotten meanwhile stays forgotten).
    pub fn remember_alive(&self, tenants: impl IntoIterator<Item = i64>) {
        let mut known = self.tenants.lock().expect("tenant cache poisoned");
        let now = std::time::Instant::now();
        for id in tenants {
            if !known.forgotten.contains(&id) {
                known.alive.insert(id, now);
            }
        }
    }

    pub fn forget_tenant(&self, tenant_id: i64) {
        {
            let mut known = self.tenants.lock().expect("tenant cache poisoned");
            known.alive.remove(&tenant_id);
            known.forgotten.insert(tenant_id);
        }
        self.series.lock().expect("series cache poisoned").retain(|_, bucket| {
            bucket.retain(|c| c.tenant_id != tenant_id);
            !bucket.is_empty()
        });
    }
}

/// The distinct series of a group and, per sample, `(index into the series, ts, value)`.
pub fn group_by_series<'a>(kept: &'a [(i64, Vec<&'a Sample>)]) -> (Vec<SeriesRef<'a>>, Vec<(usize, i64, f64)>) {
    let mut distinct: HashMap<u64, Vec<usize>> = HashMap::new();
    // The samples of one request share their metric and labels (`ingest::Interner`): keyed by
    // those addresses, a series is hashed by value once per request, not once per sample. The
    // samples outlive this map, so no address is reused while it lives.
    let mut by_address: rustc_hash::FxHashMap<(i64, usize, usize), usize> = Default::default();
    let mut wanted: Vec<SeriesRef<'_>> = Vec::new();
    let mut rows = Vec::with_capacity(kept.iter().map(|(_, s)| s.len()).sum());
    for (tenant_id, samples) in kept {
        for sample in samples {
            let address = (*tenant_id, Arc::as_ptr(&sample.metric) as *const u8 as usize, sample.labels.ptr());
            let slot = match by_address.get(&address) {
                Some(&slot) => slot,
                None => {
                    let series = SeriesRef::new(*tenant_id, &sample.metric, &sample.labels);
                    let bucket = distinct.entry(series.hash).or_default();
                    let slot = match bucket.iter().find(|&&i| wanted[i].same(&series)) {
                        Some(&i) => i,
                        None => {
                            bucket.push(wanted.len());
                            wanted.push(series);
                            wanted.len() - 1
                        }
                    };
                    by_address.insert(address, slot);
                    slot
                }
            };
            rows.push((slot, sample.ts, sample.value));
        }
    }
    (wanted, rows)
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
