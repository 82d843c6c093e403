//! Compressed chunks in the SQL backends (docs/storage.md): compaction moves the raw samples of
//! closed 2 h windows into `chunks` rows (storage/chunk.rs), reads merge chunks with raw rows,
//! retention drops whole chunks, and a write into a compacted window first moves that window's
//! chunk back to raw rows, so overwrites and rollups stay exact. The SQL is written once, in
//! `sql_chunk_store!`, for the three backends.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::chunk::{self, window_of};
use super::{Resolution, Result, StoreError, Summary};

/// Samples at most in one chunk row: a series sampled every second fills a 2 h window with
/// 7200, and a denser one gets several chunks per window.
pub const MAX_CHUNK_SAMPLES: usize = 8192;

/// A window is compacted once it closed this long ago: samples that arrive later than that
/// reopen its chunk (correct, but slower). It is also the clock skew tolerated between the
/// processes of a distributed setup (a writer checks for chunks only in windows its own clock
/// says are closed).
pub const COMPACT_AFTER_MS: i64 = 10 * 60_000;

/// Raw rows moved per compaction transaction.
pub const COMPACT_ROWS: i64 = 20_000;

/// When this process last wrote samples into a closed window (wall clock, ms; 0 = never). A
/// background compaction pass is skipped when this happened since the previous pass (a
/// backfill, an agent's spool after an outage, an import are under way): compacting a window
/// that is still being written, only to reopen it on the next batch, is work thrown away (a day
/// imported in time order took 7× longer with the two chasing each other).
#[derive(Debug, Default)]
pub struct LateWrites(std::sync::atomic::AtomicI64);

impl LateWrites {
    pub fn mark(&self) {
        self.0.store(crate::domain::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn last(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Windows (by start) before which raw samples are compacted at `now`.
pub fn compact_before(now: i64) -> i64 {
    window_of(now - COMPACT_AFTER_MS)
}

/// The window width of a chunk table (or of the row table it is made from): a day for the 5m
/// rollup, 2 h otherwise.
pub fn table_window(table: &str) -> i64 {
    if table.starts_with("rollup_5m") { chunk::DAY_WINDOW_MS } else { chunk::WINDOW_MS }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Raw rows moved into chunks.
    pub samples: u64,
    /// Rollup rows (1m and 5m) moved into rollup chunks.
    pub buckets: u64,
    /// Chunk rows written.
    pub chunks: u64,
    /// A read hit the limit: there may be more to move.
    pub more: bool,
}

/// The chunk table of a resolution.
pub fn chunk_table(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Raw => "chunks",
        Resolution::OneMinute => "rollup_1m_chunks",
        Resolution::FiveMinutes => "rollup_5m_chunks",
    }
}

/// The rollup rows of a compacted window: `(series, bucket, count, sum, min, max, last, last_ts)`.
pub type SeriesRollupRow = (i64, i64, i64, f64, f64, f64, f64, i64);

/// A rollup read's union of rows and chunks (`bucket, …, NULL` / `start_ts, NULL…, data`).
pub type RollupUnionRow =
    (i64, Option<i64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<i64>, Option<Vec<u8>>);

/// Rollup buckets in `[from, to]` from a union read, in time order. A bucket found both as a row
/// and in a chunk (a write into a compacted window by a process whose clock said it was still
/// open) is the merge of the two.
pub fn split_rollup_union(
    rows: Vec<RollupUnionRow>,
    from: i64,
    to: i64,
    wanted: chunk::Columns,
) -> Result<Vec<(i64, Summary)>> {
    let mut buckets: Vec<(i64, Summary)> = Vec::with_capacity(rows.len());
    let mut chunks = Vec::new();
    for row in rows {
        match row {
            (_, _, _, _, _, _, _, Some(data)) => chunks.push(data),
            (bucket, Some(count), Some(sum), Some(min), Some(max), Some(last), Some(last_ts), None) => {
                buckets.push((bucket, Summary { count, sum, min, max, last, last_ts }))
            }
            _ => {}
        }
    }
    if chunks.is_empty() {
        return Ok(buckets);
    }
    Ok(merge_summaries(chunk_summaries(&chunks, from, to, wanted)?, buckets))
}

/// Decodes the `wanted` columns of rollup chunks and keeps their buckets in `[from, to]`, in
/// time order.
pub fn chunk_summaries(chunks: &[Vec<u8>], from: i64, to: i64, wanted: chunk::Columns) -> Result<Vec<(i64, Summary)>> {
    let mut out = Vec::new();
    for data in chunks {
        chunk::append_summary_columns(data, wanted, &mut out).map_err(corrupt)?;
    }
    out.retain(|(b, _)| *b >= from && *b <= to);
    // Chunks of one series do not overlap: this finds them in order (one pass) unless they came
    // in another.
    out.sort_by_key(|(b, _)| *b);
    Ok(out)
}

/// Two lists of buckets (each in time order, a bucket at most once) as one; a bucket in both is
/// their merge. When one is empty the other is the answer as it is (a read of compacted
/// windows only: no copy, no sort).
pub fn merge_summaries(a: Vec<(i64, Summary)>, b: Vec<(i64, Summary)>) -> Vec<(i64, Summary)> {
    if b.is_empty() {
        return a;
    }
    if a.is_empty() {
        return b;
    }
    let mut all = a;
    all.extend(b);
    all.sort_by_key(|(bucket, _)| *bucket);
    let mut out: Vec<(i64, Summary)> = Vec::with_capacity(all.len());
    for (bucket, summary) in all {
        match out.last_mut() {
            Some((b, acc)) if *b == bucket => acc.merge(&summary),
            _ => out.push((bucket, summary)),
        }
    }
    out
}

/// The 1m buckets of raw points in time order: the summaries the writer keeps as rows.
pub fn minute_buckets(points: &[(i64, f64)]) -> Vec<(i64, Summary)> {
    super::head::summarize(points, Resolution::OneMinute.width_ms())
}

/// The windows (2 h) that rollup chunk rows of a union read (`start_ts, …, data`) belong to.
pub fn chunk_windows(rows: &[RollupUnionRow], span: i64) -> BTreeSet<i64> {
    rows.iter().filter(|row| row.7.is_some()).map(|row| chunk::window_in(row.0, span)).collect()
}

/// The 1m buckets in `[from, to]` of a series, given what the 1m tables hold (`stored`, from
/// rows and chunks; `minute_chunks`, the windows that have a 1m chunk) and the raw rows and
/// chunks of the same range.
///
/// Compaction keeps no 1m chunk for a window while its raw chunk is kept (the raw chunk holds
/// everything the buckets summarize, docs/storage.md): a window that has a raw chunk and no 1m
/// chunk gets its buckets from its raw samples (chunks and rows, a row winning at an equal
/// timestamp), and whatever 1m rows it has are ignored (they are that window's buckets before
/// compaction, or partial ones of a write that did not reopen it). Other windows keep `stored`.
pub fn with_derived_minutes(
    stored: Vec<(i64, Summary)>,
    minute_chunks: &BTreeSet<i64>,
    raw_rows: Vec<(i64, f64)>,
    raw_chunks: &[Vec<u8>],
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Summary)>> {
    if raw_chunks.is_empty() {
        return Ok(stored);
    }
    let mut chunked = chunk_points(raw_chunks, i64::MIN, i64::MAX)?;
    let derived: BTreeSet<i64> =
        chunked.iter().map(|&(ts, _)| window_of(ts)).filter(|w| !minute_chunks.contains(w)).collect();
    if derived.is_empty() {
        return Ok(stored);
    }
    chunked.retain(|&(ts, _)| derived.contains(&window_of(ts)));
    let rows: Vec<(i64, f64)> = raw_rows.into_iter().filter(|&(ts, _)| derived.contains(&window_of(ts))).collect();
    let mut buckets = minute_buckets(&chunk::merge(chunked, rows));
    buckets.retain(|(b, _)| *b >= from && *b <= to);
    let mut stored = stored;
    stored.retain(|(b, _)| !derived.contains(&window_of(*b)));
    Ok(merge_summaries(stored, buckets))
}

#[async_trait]
pub trait ChunkStore: Send + Sync {
    /// Moves at most `limit` raw samples, and as many rows of each rollup, of a tenant older than
    /// `before` (a window start) into chunks, in one transaction that excludes the tenant's
    /// writers. Loop while it says `more`.
    async fn compact(&self, tenant_id: i64, before: i64, limit: i64) -> Result<Compacted>;
    /// Deletes at most `limit` chunks of a tenant and resolution whose newest sample (or bucket)
    /// is older than `before`.
    async fn purge_chunks(&self, tenant_id: i64, resolution: Resolution, before: i64, limit: i64) -> Result<u64>;
    /// The newest sample kept in a chunk of the series.
    async fn last_chunk_point(&self, series: i64) -> Result<Option<(i64, f64)>>;
    /// A series' newest point: `newest_row` (from its raw rows) if there is one, else the newest
    /// sample of its chunks.
    async fn last_point(&self, series: i64, newest_row: Option<(i64, f64)>) -> Result<Option<(i64, f64)>> {
        match newest_row {
            Some(point) => Ok(Some(point)),
            None => self.last_chunk_point(series).await,
        }
    }
    /// Gives the space that compaction freed back to the file system where the backend keeps
    /// it otherwise (SQLite's free pages); a no-op elsewhere.
    async fn reclaim_space(&self) -> Result<()>;
    /// When this process last wrote into a closed window (`LateWrites`).
    fn last_late_write(&self) -> i64;
    /// How many raw samples and rollup buckets of live tenants, older than `before`, are still
    /// rows: what compaction up to `before` has left to move (a full count; for progress).
    async fn rows_before(&self, before: i64) -> Result<u64>;
}

pub(crate) fn corrupt(err: chunk::CorruptChunk) -> StoreError {
    StoreError::corrupt(err)
}

/// Decodes the chunks a read returned and keeps their points in `[from, to]`, in time order.
pub fn chunk_points(chunks: &[Vec<u8>], from: i64, to: i64) -> Result<Vec<(i64, f64)>> {
    let mut out = Vec::new();
    for data in chunks {
        let points = chunk::decode(data).map_err(corrupt)?;
        out.extend(points.into_iter().filter(|&(ts, _)| ts >= from && ts <= to));
    }
    out.sort_by_key(|&(ts, _)| ts);
    Ok(out)
}

/// Raw rows `(series, ts, value)` (ordered by series, then time) grouped by series and window.
pub fn group_by_window(rows: Vec<(i64, i64, f64)>) -> BTreeMap<(i64, i64), Vec<(i64, f64)>> {
    let mut groups: BTreeMap<(i64, i64), Vec<(i64, f64)>> = BTreeMap::new();
    for (series, ts, value) in rows {
        groups.entry((series, window_of(ts))).or_default().push((ts, value));
    }
    groups
}

/// The (window start → series) pairs of rows that fall in windows closed at `now`, which may
/// hold a chunk to reopen before the rows are written.
pub fn closed_windows(rows: &[(i64, i64, f64)], now: i64) -> BTreeMap<i64, Vec<i64>> {
    let current = window_of(now);
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for &(series, ts, _) in rows {
        let window = window_of(ts);
        if window < current {
            out.entry(window).or_default().push(series);
        }
    }
    for series in out.values_mut() {
        series.sort_unstable();
        series.dedup();
    }
    out
}

/// A point read's union of raw rows `(ts, value, NULL)` and chunks `(start_ts, NULL, data)`,
/// split into raw points (in time order) and chunk data.
pub type UnionRow = (i64, Option<f64>, Option<Vec<u8>>);

pub fn split_union(rows: Vec<UnionRow>) -> (Vec<(i64, f64)>, Vec<Vec<u8>>) {
    let mut points = Vec::with_capacity(rows.len());
    let mut chunks = Vec::new();
    for (ts, value, data) in rows {
        match (value, data) {
            (_, Some(data)) => chunks.push(data),
            (Some(value), None) => points.push((ts, value)),
            (None, None) => {}
        }
    }
    if !points.is_sorted_by_key(|&(ts, _)| ts) {
        points.sort_by_key(|&(ts, _)| ts);
    }
    (points, chunks)
}

/// The chunk rows `(start_ts, end_ts, count, data)` of merged points, at most
/// `MAX_CHUNK_SAMPLES` each.
pub fn split_chunks(points: &[(i64, f64)]) -> Vec<(i64, i64, i64, Vec<u8>)> {
    points
        .chunks(MAX_CHUNK_SAMPLES)
        .map(|part| (part[0].0, part[part.len() - 1].0, part.len() as i64, chunk::encode(part)))
        .collect()
}

/// Implements `ChunkStore` for `$store` (which has `pool`, `begin_write` and `purge_gate`) and
/// defines `reopen_chunks` for its writer. `lock`: the row-lock suffix of a `SELECT` (`" FOR
/// UPDATE"`, or `""` on SQLite, whose writers are serialized by the write gate);
/// `insert_ignore`: the `INSERT` that skips rows already there; `on_conflict_nothing`: its tail
/// (without a conflict target: it serves `samples` and the rollup tables);
/// `nulls`: typed NULLs (integer, float, blob) for a UNION; `reclaim`: the statement that
/// returns free space to the file system, or `""`.
macro_rules! sql_chunk_store {
    (
        store: $store:ty,
        db: $db:ty,
        sql: $sql:path,
        chunk: $chunk:path,
        lock: $lock:expr,
        insert_ignore: $insert_ignore:expr,
        on_conflict_nothing: $on_conflict_nothing:expr,
        nulls: $nulls:expr,
        reclaim: $reclaim:expr $(,)?
    ) => {
        mod sql_chunk_impl {
            use async_trait::async_trait;

            use super::*;
            use crate::storage::chunk;
            use crate::storage::chunk_store::{self, ChunkStore, Compacted};
            use crate::storage::{Resolution, Result, Summary};

            /// Takes the chunks of `table` in one window of a series out (read, then deleted).
            async fn take_window_chunks(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &str,
                series: i64,
                window: i64,
            ) -> Result<Vec<Vec<u8>>> {
                let old: Vec<Vec<u8>> = sqlx::query_scalar(&$sql(&format!(
                    "SELECT data FROM {table} WHERE series_id = ? AND start_ts >= ? AND start_ts < ?"
                )))
                .bind(series)
                .bind(window)
                .bind(window + chunk_store::table_window(table))
                .fetch_all(&mut *conn)
                .await?;
                if !old.is_empty() {
                    sqlx::query(&$sql(&format!("DELETE FROM {table} WHERE series_id = ? AND start_ts >= ? AND start_ts < ?")))
                        .bind(series)
                        .bind(window)
                        .bind(window + chunk_store::table_window(table))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(old)
            }

            /// Whether `table` (a chunk table, or `samples`) holds anything of a series in the
            /// 2 h window starting at `window`.
            async fn window_has(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &str,
                series: i64,
                window: i64,
            ) -> Result<bool> {
                let ts = if table == "samples" { "ts" } else { "start_ts" };
                let found: Option<i64> = sqlx::query_scalar(&$sql(&format!(
                    "SELECT series_id FROM {table} WHERE series_id = ? AND {ts} >= ? AND {ts} < ? LIMIT 1"
                )))
                .bind(series)
                .bind(window)
                .bind(window + chunk::WINDOW_MS)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(found.is_some())
            }

            /// Locks a tenant's row against its writers (they hold a shared lock on it for their
            /// whole transaction: this waits for them, and they for it); false when the tenant is
            /// deleted.
            async fn lock_live_tenant(conn: &mut <$db as sqlx::Database>::Connection, tenant_id: i64) -> Result<bool> {
                let live: Option<i64> = sqlx::query_scalar(&$sql(&format!(
                    "SELECT id FROM tenants WHERE id = ? AND deleted_at IS NULL{}",
                    $lock
                )))
                .bind(tenant_id)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(live.is_some())
            }

            /// Deletes a series' rows of a rollup table with buckets in `[first, last]`.
            async fn delete_buckets(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &str,
                series: i64,
                first: i64,
                last: i64,
            ) -> Result<()> {
                sqlx::query(&$sql(&format!("DELETE FROM {table} WHERE series_id = ? AND bucket >= ? AND bucket <= ?")))
                    .bind(series)
                    .bind(first)
                    .bind(last)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// A series' raw samples in the 2 h window at `window`, chunks and rows (a row winning
            /// at an equal timestamp), as 1m buckets.
            async fn window_minutes(
                conn: &mut <$db as sqlx::Database>::Connection,
                series: i64,
                window: i64,
            ) -> Result<Vec<(i64, Summary)>> {
                let end = window + chunk::WINDOW_MS;
                let chunks: Vec<Vec<u8>> =
                    sqlx::query_scalar(&$sql("SELECT data FROM chunks WHERE series_id = ? AND start_ts >= ? AND start_ts < ?"))
                        .bind(series)
                        .bind(window)
                        .bind(end)
                        .fetch_all(&mut *conn)
                        .await?;
                let rows: Vec<(i64, f64)> = sqlx::query_as(&$sql(
                    "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                ))
                .bind(series)
                .bind(window)
                .bind(end)
                .fetch_all(&mut *conn)
                .await?;
                let points = chunk::merge(chunk_store::chunk_points(&chunks, i64::MIN, i64::MAX)?, rows);
                Ok(chunk_store::minute_buckets(&points))
            }

            /// Inserts a series' buckets into a rollup table, skipping buckets already there.
            async fn insert_bucket_rows(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &str,
                series: i64,
                buckets: &[(i64, Summary)],
            ) -> Result<()> {
                for part in buckets.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                        "{} INTO {table} (series_id, bucket, count, sum, min, max, last, last_ts) ",
                        $insert_ignore
                    ));
                    qb.push_values(part, |mut b, (bucket, s)| {
                        b.push_bind(series)
                            .push_bind(*bucket)
                            .push_bind(s.count)
                            .push_bind(s.sum)
                            .push_bind(s.min)
                            .push_bind(s.max)
                            .push_bind(s.last)
                            .push_bind(s.last_ts);
                    });
                    qb.push($on_conflict_nothing);
                    qb.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            async fn insert_chunk(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &str,
                series: i64,
                (start, end, count, data): (i64, i64, i64, Vec<u8>),
            ) -> Result<()> {
                sqlx::query(&$sql(&format!(
                    "INSERT INTO {table} (series_id, start_ts, end_ts, count, data) VALUES (?, ?, ?, ?, ?)"
                )))
                .bind(series)
                .bind(start)
                .bind(end)
                .bind(count)
                .bind(data)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            #[async_trait]
            impl ChunkStore for $store {
                async fn compact(&self, tenant_id: i64, before: i64, limit: i64) -> Result<Compacted> {
                    let _gate = self.purge_gate().await;
                    let mut tx = self.begin_write().await?;
                    if !lock_live_tenant(&mut *tx, tenant_id).await? {
                        return Ok(Compacted::default());
                    }
                    let rows: Vec<(i64, i64, f64)> = sqlx::query_as(&$sql(
                        "SELECT series_id, ts, value FROM samples \
                         WHERE series_id IN (SELECT id FROM series WHERE tenant_id = ?) AND ts < ? \
                         ORDER BY series_id, ts LIMIT ?",
                    ))
                    .bind(tenant_id)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut done =
                        Compacted { samples: rows.len() as u64, more: rows.len() as i64 >= limit, ..Default::default() };
                    // Raw rows go in series order: while some are left, the series before the last
                    // one read have none left, and only their 1m rows are taken this pass (the 1m
                    // rows of a window wait for its raw rows, below; reading and skipping those of
                    // the other series made `microdash compact` 2.7× slower).
                    let finished_below = if done.more { rows.last().map(|r| r.0) } else { None };
                    for ((series, window), raw) in chunk_store::group_by_window(rows) {
                        let old = take_window_chunks(&mut *tx, "chunks", series, window).await?;
                        // Exactly the rows read: they are in time order, and no writer of the
                        // tenant runs until this commits.
                        sqlx::query(&$sql("DELETE FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ?"))
                            .bind(series)
                            .bind(raw[0].0)
                            .bind(raw[raw.len() - 1].0)
                            .execute(&mut *tx)
                            .await?;
                        let points = chunk::merge(chunk_store::chunk_points(&old, i64::MIN, i64::MAX)?, raw);
                        for row in chunk_store::split_chunks(&points) {
                            insert_chunk(&mut *tx, "chunks", series, row).await?;
                            done.chunks += 1;
                        }
                    }
                    // 5m rows too are taken up to the 2 h cut: those of each closed window are merged
                    // into their day's chunk (rewritten up to 12 times a day). Waiting for the day
                    // to close kept up to a day of 5m buckets as rows, ~37 bytes each (the disk
                    // bench's day, across two dates, held 16 MB of them: 1.85 bytes a sample).
                    for table in ["rollup_1m", "rollup_5m"] {
                        let bound = if table == "rollup_1m" { finished_below } else { None };
                        let rows: Vec<chunk_store::SeriesRollupRow> = sqlx::query_as(&$sql(&format!(
                            "SELECT series_id, bucket, count, sum, min, max, last, last_ts FROM {table} \
                             WHERE series_id IN (SELECT id FROM series WHERE tenant_id = ?) AND bucket < ? \
                             AND series_id < ? ORDER BY series_id, bucket LIMIT ?"
                        )))
                        .bind(tenant_id)
                        .bind(before)
                        .bind(bound.unwrap_or(i64::MAX))
                        .bind(limit)
                        .fetch_all(&mut *tx)
                        .await?;
                        done.buckets += rows.len() as u64;
                        done.more |= rows.len() as i64 >= limit;
                        let mut groups: std::collections::BTreeMap<(i64, i64), Vec<(i64, Summary)>> = Default::default();
                        for (series, bucket, count, sum, min, max, last, last_ts) in rows {
                            groups
                                .entry((series, chunk::window_in(bucket, chunk_store::table_window(table))))
                                .or_default()
                                .push((bucket, Summary { count, sum, min, max, last, last_ts }));
                        }
                        let chunks = format!("{table}_chunks");
                        for ((series, window), buckets) in groups {
                            // A window whose raw samples are kept as a chunk needs no 1m chunk:
                            // reads derive its buckets from the raw chunk (`with_derived_minutes`),
                            // and retention writes the 1m chunk when the raw one expires. While
                            // raw rows of the window wait for a later pass (the limit), its 1m
                            // rows wait too.
                            if table == "rollup_1m" && !window_has(&mut *tx, &chunks, series, window).await? {
                                if window_has(&mut *tx, "chunks", series, window).await? {
                                    delete_buckets(&mut *tx, table, series, buckets[0].0, buckets[buckets.len() - 1].0).await?;
                                    continue;
                                }
                                if window_has(&mut *tx, "samples", series, window).await? {
                                    continue;
                                }
                            }
                            let old = take_window_chunks(&mut *tx, &chunks, series, window).await?;
                            delete_buckets(&mut *tx, table, series, buckets[0].0, buckets[buckets.len() - 1].0).await?;
                            let merged = chunk_store::merge_summaries(chunk_store::chunk_summaries(&old, i64::MIN, i64::MAX, chunk::Columns::ALL)?, buckets);
                            let row = (merged[0].0, merged[merged.len() - 1].0, merged.len() as i64, chunk::encode_summaries(&merged));
                            insert_chunk(&mut *tx, &chunks, series, row).await?;
                            done.chunks += 1;
                        }
                    }
                    tx.commit().await?;
                    Ok(done)
                }

                async fn purge_chunks(&self, tenant_id: i64, resolution: Resolution, before: i64, limit: i64) -> Result<u64> {
                    if resolution == Resolution::Raw {
                        return self.purge_raw_chunks(tenant_id, before, limit).await;
                    }
                    let _gate = self.purge_gate().await;
                    Ok(sqlx::query(&$sql(&$chunk(
                        chunk_store::chunk_table(resolution),
                        "series_id, start_ts",
                        "series_id IN (SELECT id FROM series WHERE tenant_id = ?) AND end_ts < ?",
                    )))
                    .bind(tenant_id)
                    .bind(before)
                    .bind(limit)
                    .execute(self.writes())
                    .await?
                    .rows_affected())
                }

                fn last_late_write(&self) -> i64 {
                    self.late_writes.last()
                }

                async fn rows_before(&self, before: i64) -> Result<u64> {
                    let mut total = 0;
                    for (table, ts) in [("samples", "ts"), ("rollup_1m", "bucket"), ("rollup_5m", "bucket")] {
                        let n: i64 = sqlx::query_scalar(&$sql(&format!(
                            "SELECT COUNT(*) FROM {table} WHERE {ts} < ? AND series_id IN \
                             (SELECT s.id FROM series s JOIN tenants t ON t.id = s.tenant_id WHERE t.deleted_at IS NULL)"
                        )))
                        .bind(before)
                        .fetch_one(&self.pool)
                        .await?;
                        total += n.max(0) as u64;
                    }
                    Ok(total)
                }

                async fn reclaim_space(&self) -> Result<()> {
                    if !$reclaim.is_empty() {
                        let _gate = self.purge_gate().await;
                        sqlx::query($reclaim).execute(self.writes()).await?;
                    }
                    Ok(())
                }

                async fn last_chunk_point(&self, series: i64) -> Result<Option<(i64, f64)>> {
                    let data: Option<Vec<u8>> = sqlx::query_scalar(&$sql(
                        "SELECT data FROM chunks WHERE series_id = ? ORDER BY start_ts DESC LIMIT 1",
                    ))
                    .bind(series)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(match data {
                        Some(data) => chunk::decode(&data).map_err(chunk_store::corrupt)?.last().copied(),
                        None => None,
                    })
                }
            }

            impl $store {
                /// `purge_chunks` of raw chunks: a window that has no 1m chunk (its buckets were
                /// derived from the raw chunk) first gets one, from all its raw samples, and its
                /// 1m rows go; then the chunks are deleted. In one transaction that excludes the
                /// tenant's writers, as compaction does, so a write reopening the window waits.
                async fn purge_raw_chunks(&self, tenant_id: i64, before: i64, limit: i64) -> Result<u64> {
                    let _gate = self.purge_gate().await;
                    let mut tx = self.begin_write().await?;
                    if !lock_live_tenant(&mut *tx, tenant_id).await? {
                        return Ok(0);
                    }
                    let keys: Vec<(i64, i64)> = sqlx::query_as(&$sql(
                        "SELECT series_id, start_ts FROM chunks \
                         WHERE series_id IN (SELECT id FROM series WHERE tenant_id = ?) AND end_ts < ? \
                         ORDER BY series_id, start_ts LIMIT ?",
                    ))
                    .bind(tenant_id)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                    let windows: std::collections::BTreeSet<(i64, i64)> =
                        keys.iter().map(|&(series, start)| (series, chunk::window_of(start))).collect();
                    for (series, window) in windows {
                        if window_has(&mut *tx, "rollup_1m_chunks", series, window).await? {
                            continue;
                        }
                        let buckets = window_minutes(&mut *tx, series, window).await?;
                        delete_buckets(&mut *tx, "rollup_1m", series, window, window + chunk::WINDOW_MS - 1).await?;
                        if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
                            let row = (first.0, last.0, buckets.len() as i64, chunk::encode_summaries(&buckets));
                            insert_chunk(&mut *tx, "rollup_1m_chunks", series, row).await?;
                        }
                    }
                    for &(series, start) in &keys {
                        sqlx::query(&$sql("DELETE FROM chunks WHERE series_id = ? AND start_ts = ?"))
                            .bind(series)
                            .bind(start)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(keys.len() as u64)
                }
            }

            /// Moves the chunks (raw, 1m, 5m) of closed windows that `rows` write into back to
            /// rows, in the writer's transaction, so the write sees (and overwrites, and
            /// re-rolls-up) them as if they had never been compacted; compaction takes the
            /// window again later.
            pub(crate) async fn reopen_chunks(
                conn: &mut <$db as sqlx::Database>::Connection,
                rows: &[(i64, i64, f64)],
                now: i64,
                late_writes: &chunk_store::LateWrites,
            ) -> Result<()> {
                let closed = chunk_store::closed_windows(rows, now);
                if !closed.is_empty() {
                    late_writes.mark();
                }
                for (window, series) in closed {
                    // Series whose 1m rows this window already rebuilt: `window_minutes` reads
                    // the chunks not yet moved as well, so the first of a window's raw chunks
                    // rebuilds it whole.
                    let mut rebuilt = std::collections::HashSet::new();
                    for ids in series.chunks(500) {
                        for (table, rows_table) in
                            [("chunks", "samples"), ("rollup_1m_chunks", "rollup_1m"), ("rollup_5m_chunks", "rollup_5m")]
                        {
                            // The chunks' keys, read without locks, then each chunk locked by its
                            // exact key: a locked range would also lock the gap up to the next
                            // series' chunk in MariaDB, and writers of neighbouring series
                            // deadlocked on those gaps. Compaction cannot add a chunk meanwhile
                            // (the tenant's row is shared-locked); another writer may have taken
                            // one out, which the locked read then does not find.
                            let sql = $sql(&format!(
                                "SELECT series_id, start_ts FROM {table} \
                                 WHERE start_ts >= ? AND start_ts < ? AND series_id IN ({})",
                                vec!["?"; ids.len()].join(", "),
                            ));
                            // A 2 h window lies in one day: the day's 5m chunk, if it exists,
                            // is reopened with it.
                            let span = chunk_store::table_window(table);
                            let start = chunk::window_in(window, span);
                            let mut query = sqlx::query_as::<_, (i64, i64)>(&sql).bind(start).bind(start + span);
                            for id in ids {
                                query = query.bind(*id);
                            }
                            for (series, start) in query.fetch_all(&mut *conn).await? {
                                let data: Option<Vec<u8>> = sqlx::query_scalar(&$sql(&format!(
                                    "SELECT data FROM {table} WHERE series_id = ? AND start_ts = ?{}",
                                    $lock
                                )))
                                .bind(series)
                                .bind(start)
                                .fetch_optional(&mut *conn)
                                .await?;
                                let Some(data) = data else { continue };
                                if table == "chunks" {
                                    let points = chunk::decode(&data).map_err(chunk_store::corrupt)?;
                                    for part in points.chunks(1000) {
                                        let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                                            "{} INTO samples (series_id, ts, value) ",
                                            $insert_ignore
                                        ));
                                        qb.push_values(part, |mut b, (ts, value)| {
                                            b.push_bind(series).push_bind(*ts).push_bind(*value);
                                        });
                                        qb.push($on_conflict_nothing);
                                        qb.build().execute(&mut *conn).await?;
                                    }
                                } else {
                                    let buckets = chunk::decode_summaries(&data).map_err(chunk_store::corrupt)?;
                                    insert_bucket_rows(&mut *conn, rows_table, series, &buckets).await?;
                                }
                                sqlx::query(&$sql(&format!("DELETE FROM {table} WHERE series_id = ? AND start_ts = ?")))
                                    .bind(series)
                                    .bind(start)
                                    .execute(&mut *conn)
                                    .await?;
                                // Without a 1m chunk the window's buckets were derived from this
                                // raw chunk: as rows again, the writer's rollup update needs them
                                // as rows too, whole.
                                if table == "chunks"
                                    && rebuilt.insert(series)
                                    && !window_has(&mut *conn, "rollup_1m_chunks", series, window).await?
                                {
                                    let buckets = window_minutes(&mut *conn, series, window).await?;
                                    delete_buckets(&mut *conn, "rollup_1m", series, window, window + chunk::WINDOW_MS - 1).await?;
                                    insert_bucket_rows(&mut *conn, "rollup_1m", series, &buckets).await?;
                                }
                            }
                        }
                    }
                }
                Ok(())
            }

            /// Raw `(ts, value)` of a series in `[from, to]` (at most `limit`) and the chunks that
            /// may hold points there, in one statement (one snapshot).
            pub(crate) async fn raw_rows_with_chunks(
                pool: &sqlx::Pool<$db>,
                series: i64,
                from: i64,
                to: i64,
                limit: i64,
            ) -> Result<(Vec<(i64, f64)>, Vec<Vec<u8>>)> {
                let (_, null_float, null_blob) = $nulls;
                let sql = format!(
                    "SELECT ts, value, {null_blob} AS data FROM \
                       (SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts LIMIT ?) r \
                     UNION ALL \
                     SELECT start_ts, {null_float}, data FROM chunks \
                     WHERE series_id = ? AND start_ts >= ? AND start_ts <= ? AND end_ts >= ?"
                );
                let rows: Vec<chunk_store::UnionRow> = sqlx::query_as(&$sql(&sql))
                    .bind(series)
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .bind(series)
                    .bind(chunk::window_of(from))
                    .bind(to)
                    .bind(from)
                    .fetch_all(pool)
                    .await?;
                Ok(chunk_store::split_union(rows))
            }

            /// Rollup buckets of `table` starting in `[from, to]`, from its rows and its chunks in
            /// one statement (one snapshot), in time order (at most `limit` rows), and the windows
            /// that had a chunk.
            pub(crate) async fn rollup_rows_with_chunks(
                pool: &sqlx::Pool<$db>,
                table: &str,
                series: i64,
                from: i64,
                to: i64,
                limit: i64,
                wanted: chunk::Columns,
            ) -> Result<(Vec<(i64, Summary)>, std::collections::BTreeSet<i64>)> {
                let (null_int, null_float, null_blob) = $nulls;
                let sql = format!(
                    "SELECT bucket, count, sum, min, max, last, last_ts, {null_blob} AS data FROM \
                       (SELECT bucket, count, sum, min, max, last, last_ts FROM {table} \
                        WHERE series_id = ? AND bucket >= ? AND bucket <= ? ORDER BY bucket LIMIT ?) r \
                     UNION ALL \
                     SELECT start_ts, {null_int}, {null_float}, {null_float}, {null_float}, {null_float}, {null_int}, data \
                     FROM {table}_chunks WHERE series_id = ? AND start_ts >= ? AND start_ts <= ? AND end_ts >= ?"
                );
                let rows: Vec<chunk_store::RollupUnionRow> = sqlx::query_as(&$sql(&sql))
                    .bind(series)
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .bind(series)
                    .bind(chunk::window_in(from, chunk_store::table_window(table)))
                    .bind(to)
                    .bind(from)
                    .fetch_all(pool)
                    .await?;
                let windows = chunk_store::chunk_windows(&rows, chunk_store::table_window(table));
                Ok((chunk_store::split_rollup_union(rows, from, to, wanted)?, windows))
            }
        }
        pub(crate) use sql_chunk_impl::{raw_rows_with_chunks, reopen_chunks, rollup_rows_with_chunks};
    };
}

pub(crate) use sql_chunk_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(bucket: i64, value: f64) -> (i64, Summary) {
        (bucket, Summary::of(bucket, value))
    }

    /// A window with a raw chunk and no 1m chunk is summarized from its raw samples (a row
    /// winning over the chunk at an equal timestamp), its 1m rows ignored; a window with a 1m
    /// chunk, or without a raw chunk, keeps what the 1m tables said.
    #[test]
    fn windows_with_a_raw_chunk_and_no_1m_chunk_are_summarized_from_raw() {
        let w = chunk::WINDOW_MS;
        // Window 0: raw chunk only. Window 1: raw chunk and a 1m chunk. Window 2: 1m rows only.
        let raw_chunks = vec![chunk::encode(&[(0, 1.0), (10_000, 2.0), (60_000, 5.0)]), chunk::encode(&[(w, 7.0)])];
        let raw_rows = vec![(10_000, 3.0), (2 * w, 100.0)];
        let stored = vec![at(0, 42.0), at(w, 8.0), at(2 * w, 9.0)];
        let minute_chunks: BTreeSet<i64> = [w].into();
        let got = with_derived_minutes(stored, &minute_chunks, raw_rows, &raw_chunks, 0, 3 * w).unwrap();
        let first = Summary { count: 2, sum: 4.0, min: 1.0, max: 3.0, last: 3.0, last_ts: 10_000 };
        assert_eq!(got, vec![(0, first), at(60_000, 5.0), at(w, 8.0), at(2 * w, 9.0)]);
        // Cut to the buckets asked for.
        let got = with_derived_minutes(vec![], &BTreeSet::new(), vec![], &raw_chunks, 60_000, 60_000).unwrap();
        assert_eq!(got, vec![at(60_000, 5.0)]);
        // No raw chunk: the 1m tables' answer as it is.
        assert_eq!(
            with_derived_minutes(vec![at(0, 1.0)], &BTreeSet::new(), vec![(0, 2.0)], &[], 0, w).unwrap(),
            vec![at(0, 1.0)]
        );
    }
}
