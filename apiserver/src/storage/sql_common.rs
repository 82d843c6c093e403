//! `Store` and `PointRows` for every SQL backend: tenants, tokens, sessions, dashboards, series
//! lookup, retention purges and the writer's transaction, written once in `sql_common_store!`.
//!
//! What differs per backend comes in two ways, as in `sql_alert_store!`, `sql_tenancy_store!`
//! and `sql_chunk_store!`:
//! - dialect points of the SQL text, passed to the macro: placeholders (`sql`), chunked
//!   deletes (`chunk`), upserts (`upsert`), the shared lock of the writer's tenant check, and the
//!   few statements that are not the same text everywhere;
//! - the steps that are different code per backend, which each adapter implements as
//!   `SqlAdapter`: applying its migrations, inserting a tenant (RETURNING / last insert id),
//!   and the writer's steps that use the dialect's bulk forms (dedupe ids, series ids, sample
//!   inserts, rollup merges).

use std::collections::HashSet;

use async_trait::async_trait;

use super::{CachedSeries, Result, SeriesCache, SeriesRef, Summary, WriteBatch, bucket_of, labels_key, rollup_deltas};

/// The backend-specific steps `sql_common_store!` builds `Store` from.
#[async_trait]
pub(crate) trait SqlAdapter: Send + Sync {
    type Db: sqlx::Database;

    /// Rows per multi-row statement of the writer (samples; the rollups take a third of it).
    const ROWS_PER_INSERT: usize;

    fn pool(&self) -> &sqlx::Pool<Self::Db>;
    /// Where statements that write go: the pool itself where row locks let writers run side by
    /// side; SQLite's one connection (see `SqliteStore::writes`).
    fn writes(&self) -> &sqlx::Pool<Self::Db> {
        self.pool()
    }
    /// A transaction that will write.
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Self::Db>> {
        self.writes().begin().await
    }
    /// What the writer and every purge or compaction chunk take first: nothing where row locks
    /// keep them out of each other's way.
    async fn purge_gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    /// Applies this backend's migrations (`Store::migrate`).
    async fn migrate_schema(&self) -> Result<()>;
    /// `Store::close`: nothing unless the backend has something to tidy up.
    async fn close_pool(&self) {}
    /// `Store::enable_reclaim`: nothing unless the backend keeps freed space otherwise.
    async fn reclaim_on_migrate(&self) -> Result<bool> {
        Ok(false)
    }
    /// Inserts a tenant unless its name is taken; its id, `None` when the name was taken.
    async fn insert_tenant(&self, name: &str, display_name: Option<&str>, now: i64) -> Result<Option<i64>>;

    /// The dedupe ids of `ids` (distinct) seen since `since`; records the others as seen `now`.
    async fn record_dedupe(
        conn: &mut Conn<Self>,
        tenant_id: i64,
        ids: &[&str],
        now: i64,
        since: i64,
    ) -> Result<HashSet<String>>;
    /// The id of a series, inserted unless it exists (`resolve_series` asks only for those not
    /// in the cache).
    async fn series_id(conn: &mut Conn<Self>, tenant_id: i64, metric: &str, labels: &str, now: i64) -> Result<i64>;
    /// Inserts `(series, ts, value)` rows: skipping existing keys, or (`upsert`) overwriting
    /// their values. Returns the rows the database counts as affected.
    async fn insert_samples(conn: &mut Conn<Self>, rows: &[(i64, i64, f64)], upsert: bool) -> Result<u64>;
    /// Merges per-bucket summaries of new samples into `table`'s buckets (count and sum add up,
    /// min and max widen, the newer `last` wins); `deltas` is not empty.
    async fn merge_rollups(conn: &mut Conn<Self>, table: &str, deltas: &[((i64, i64), Summary)]) -> Result<()>;
    /// Recomputes `buckets` (series, bucket start) of `table` (buckets of `width` ms) whole: the
    /// 1m rollup from raw samples, the 5m rollup from the 1m rollup.
    async fn recompute_rollups(
        conn: &mut Conn<Self>,
        table: &str,
        width: i64,
        buckets: &HashSet<(i64, i64)>,
    ) -> Result<()>;
}

/// The connection type of an adapter's database.
pub(crate) type Conn<S> = <<S as SqlAdapter>::Db as sqlx::Database>::Connection;

/// The pool of a server backend (PostgreSQL, MariaDB): up to 16 connections, one kept open,
/// 10 s to get one.
pub(crate) fn server_pool<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(16)
        .min_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
}

/// A metric's series with the newest raw sample of each, by two correlated subqueries (SQLite,
/// MariaDB; PostgreSQL uses a lateral join).
pub(crate) const SERIES_WITH_LAST: &str = "SELECT s.id, s.labels, (SELECT ts FROM samples WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) AS ts, \
            (SELECT value FROM samples WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) AS value \
     FROM series s WHERE s.tenant_id = ? AND s.metric = ? ORDER BY s.labels";

/// Series ids of `wanted` (by position), from the cache or the database, and the newly resolved
/// entries to cache once the transaction commits.
pub(crate) async fn resolve_series<S: SqlAdapter>(
    cache: &SeriesCache,
    conn: &mut Conn<S>,
    wanted: &[SeriesRef<'_>],
    now: i64,
) -> Result<(Vec<i64>, Vec<(u64, CachedSeries)>)> {
    let (mut ids, missing) = cache.lookup(wanted);
    let mut fresh = Vec::with_capacity(missing.len());
    for i in missing {
        let series = &wanted[i];
        let id = S::series_id(&mut *conn, series.tenant_id, series.metric, &labels_key(series.labels), now).await?;
        ids[i] = id;
        fresh.push((
            series.hash,
            CachedSeries {
                tenant_id: series.tenant_id,
                metric: series.metric.to_string(),
                labels: series.labels.clone(),
                id,
            },
        ));
    }
    Ok((ids, fresh))
}

/// Brings the 1m and 5m rollups up to date with a transaction's samples: `new_rows` merge in;
/// buckets in `dirty` (1m buckets where a sample was overwritten) are recomputed from raw, and
/// the 5m buckets holding them from the 1m rollup.
pub(crate) async fn update_rollups<S: SqlAdapter>(
    conn: &mut Conn<S>,
    new_rows: &[(i64, i64, f64)],
    dirty: &HashSet<(i64, i64)>,
) -> Result<()> {
    let dirty_5m: HashSet<(i64, i64)> = dirty.iter().map(|&(s, b)| (s, bucket_of(b, 300_000))).collect();
    for (table, width, recompute) in [("rollup_1m", 60_000, dirty), ("rollup_5m", 300_000, &dirty_5m)] {
        let deltas: Vec<((i64, i64), Summary)> =
            rollup_deltas(new_rows, width).into_iter().filter(|(key, _)| !recompute.contains(key)).collect();
        if !deltas.is_empty() {
            S::merge_rollups(&mut *conn, table, &deltas).await?;
        }
        if !recompute.is_empty() {
            S::recompute_rollups(&mut *conn, table, width, recompute).await?;
        }
    }
    Ok(())
}

/// The distinct tenants of a group of batches.
pub(crate) fn tenants_of(batches: &[WriteBatch<'_>]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches.iter().map(|b| b.tenant_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `SELECT` of the tenants among `n` ids (`?` placeholders) that are not deleted, followed by
/// `lock` (a shared lock on PostgreSQL and MariaDB, so a deletion waits for the write).
pub(crate) fn live_tenants_sql(n: usize, lock: &str) -> String {
    format!("SELECT id FROM tenants WHERE deleted_at IS NULL AND id IN ({}){lock}", vec!["?"; n.max(1)].join(", "))
}

/// Implements `Store` and `PointRows` for `$store`, which implements `SqlAdapter` and has
/// `pool`, `series_ids`, `late_writes`, `begin_write` and `purge_gate` (the write gate on SQLite),
/// with `reopen_chunks` and the chunk reads of `sql_chunk_store!` in scope.
/// - `sql`, `chunk`: as in `sql_tenancy_store!` (placeholders; a chunked `DELETE`);
/// - `upsert`: `INSERT … VALUES …` that overwrites the given columns of an existing row;
/// - `share_lock`: the suffix of the writer's `SELECT` of live tenants that keeps a deletion
///   (and compaction) out until the write commits (`""` on SQLite, which has one writer);
/// - `metric_names`: the query of a tenant's distinct metric names (decoded as text);
/// - `series_with_last`: the query of a metric's series `(id, labels, ts, value)` with the
///   newest raw sample of each (see `SERIES_WITH_LAST`).
macro_rules! sql_common_store {
    (
        store: $store:ty,
        db: $db:ty,
        sql: $sql:path,
        chunk: $chunk:path,
        upsert: $upsert:path,
        share_lock: $share_lock:expr,
        metric_names: $metric_names:expr,
        series_with_last: $series_with_last:expr $(,)?
    ) => {
        mod sql_common_impl {
            use std::collections::HashSet;

            use async_trait::async_trait;
            use sqlx::Row;

            use super::*;
            use crate::domain::token::parse_scopes;
            use crate::domain::{Labels, Principal, Sample, TokenHash};
            use crate::storage::chunk::Columns;
            use crate::storage::chunk_store::ChunkStore;
            use crate::storage::sql_common::SqlAdapter;
            use crate::storage::{
                PointQuery, PointRows, Resolution, Result, Retention, SeriesInfo, SeriesPoints, SessionRecord, Store,
                StoreError, Summary, TenantLimits, TenantRecord, WriteBatch, WriteOutcome, bucket_of,
                group_by_series, labels_match, last_wins, query_points, split_duplicates,
            };

            type DbRow = <$db as sqlx::Database>::Row;

            fn principal_from_row(row: &DbRow) -> Result<Principal> {
                let scopes_text: String = row.try_get("scopes")?;
                Ok(Principal::Tenant {
                    tenant_id: row.try_get("tenant_id")?,
                    tenant: row.try_get("tenant")?,
                    token_id: row.try_get("token_id")?,
                    scopes: parse_scopes(&scopes_text).map_err(StoreError::corrupt)?,
                    expires_at: row.try_get("expires_at")?,
                })
            }

            fn tenant_from_row(row: &DbRow) -> Result<TenantRecord> {
                Ok(TenantRecord {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    display_name: row.try_get("display_name")?,
                    created_at: row.try_get("created_at")?,
                    retention: Retention {
                        raw_ms: row.try_get("retention_raw_ms")?,
                        m1_ms: row.try_get("retention_1m_ms")?,
                        m5_ms: row.try_get("retention_5m_ms")?,
                    },
                    limits: TenantLimits {
                        samples_per_second: row.try_get("limit_samples_per_second")?,
                        series: row.try_get("limit_series")?,
                    },
                })
            }

            impl $store {
                /// One attempt of `Store::write`, in one transaction (rolled back whole on any
                /// error).
                async fn write_once(
                    &self,
                    batches: &[WriteBatch<'_>],
                    now: i64,
                    dedupe_since: i64,
                    mut head: Option<&mut dyn crate::storage::HeadSink>,
                ) -> Result<Vec<WriteOutcome>> {
                    // SQLite: the write gate (see `SqliteStore::write_gate`); nothing elsewhere.
                    let _gate = self.purge_gate().await;
                    let mut tx = self.begin_write().await?;
                    let mut outcomes = Vec::with_capacity(batches.len());
                    let mut kept: Vec<(i64, Vec<&Sample>)> = Vec::with_capacity(batches.len());
                    let mut recorded_dedupe = false;
                    // A tenant deleted since its requests were accepted gets nothing written, and
                    // does not fail the other tenants' batches of this group.
                    let tenants = crate::storage::sql_common::tenants_of(batches);
                    let alive = Self::live_tenants(&mut *tx, &tenants, $share_lock).await?;
                    for batch in batches {
                        if !alive.contains(&batch.tenant_id) {
                            outcomes.push(WriteOutcome::gone());
                            kept.push((batch.tenant_id, Vec::new()));
                            continue;
                        }
                        let unique: Vec<&str> = batch
                            .samples
                            .iter()
                            .filter_map(|s| s.dedupe_id.as_deref())
                            .collect::<HashSet<_>>()
                            .into_iter()
                            .collect();
                        let seen = if unique.is_empty() {
                            HashSet::new()
                        } else {
                            recorded_dedupe = true;
                            Self::record_dedupe(&mut tx, batch.tenant_id, &unique, now, dedupe_since).await?
                        };
                        let seen_refs: HashSet<&str> = seen.iter().map(String::as_str).collect();
                        let (keep, duplicates) = split_duplicates(batch.samples, &seen_refs);
                        outcomes.push(WriteOutcome {
                            accepted: keep.len(),
                            duplicates: duplicates.len(),
                            duplicate_indices: duplicates,
                            tenant_gone: false,
                        });
                        kept.push((batch.tenant_id, keep));
                    }
                    let (wanted, slots) = group_by_series(&kept);
                    let (ids, fresh) =
                        crate::storage::sql_common::resolve_series::<Self>(&self.series_ids, &mut tx, &wanted, now)
                            .await?;
                    // With a head, the samples of its windows go to its log (in request order, so
                    // the last write wins there too) and only late ones become rows.
                    let mut head_rows: Vec<crate::storage::wal::Row> = Vec::new();
                    let mut rows: Vec<(i64, i64, f64)> = Vec::with_capacity(slots.len());
                    for (slot, ts, value) in slots {
                        match head.as_deref() {
                            Some(sink) if sink.accepts(ts) => head_rows.push(crate::storage::wal::Row {
                                tenant_id: wanted[slot].tenant_id,
                                series_id: ids[slot],
                                ts,
                                value,
                            }),
                            _ => rows.push((ids[slot], ts, value)),
                        }
                    }
                    // One statement never writes a row twice: PostgreSQL refuses to upsert a row
                    // twice, and INSERT IGNORE keeps the first of two equal keys.
                    last_wins(&mut rows);
                    self.rows_into(&mut tx, &rows, now).await?;
                    if let Some(sink) = head.as_deref_mut() {
                        sink.log(&head_rows, recorded_dedupe)?;
                    }
                    tx.commit().await?;
                    self.series_ids.remember(fresh);
                    Ok(outcomes)
                }

                /// Those of `tenants` (distinct ids) that are not deleted, read on `conn` with `lock` after
                /// the `SELECT` (see `live_tenants_sql`).
                async fn live_tenants(
                    conn: &mut <$db as sqlx::Database>::Connection,
                    tenants: &[i64],
                    lock: &str,
                ) -> Result<HashSet<i64>> {
                    let sql = $sql(&crate::storage::sql_common::live_tenants_sql(tenants.len(), lock));
                    let mut alive = sqlx::query_scalar::<_, i64>(&sql);
                    for id in tenants {
                        alive = alive.bind(*id);
                    }
                    Ok(alive.fetch_all(&mut *conn).await?.into_iter().collect())
                }

                /// The common group with a head: no dedupe id to record, every series known
                /// (the cache), every sample in the head's windows. Nothing goes to the database
                /// then, so no transaction: the tenants still alive are read on the pool (or
                /// taken from `SeriesCache::tenants_alive` when read a moment ago), and the
                /// samples go to the head's log. Under the bench's load a transaction's
                /// `BEGIN` alone took 0.5-0.6 ms of the writer's 2.4 ms per group (a round trip
                /// to the connection's thread, which waits for a core like everything else), and
                /// the writer is ingest's one serial step. A tenant deleted between this read (or
                /// the cached one, within `TENANT_ALIVE_FOR`, when the deletion was another
                /// process's and its auth event has not reached this one yet) and the log keeps
                /// its samples in the head until its window is flushed, which drops them
                /// (`existing_series`), as it drops those of a tenant deleted right after a
                /// commit. `None`: the transaction is needed (`write_once`).
                async fn write_to_head_only(
                    &self,
                    batches: &[WriteBatch<'_>],
                    sink: &mut dyn crate::storage::HeadSink,
                ) -> Result<Option<Vec<WriteOutcome>>> {
                    if batches.iter().any(|b| b.samples.iter().any(|s| s.dedupe_id.is_some())) {
                        return Ok(None);
                    }
                    // No lock: nothing is written for a deletion to wait for. Tenants read
                    // alive a moment ago are not read again (`SeriesCache::tenants_alive`): the
                    // read was a round trip to a connection's thread on every group, ~0.4 ms of
                    // the writer's ~2.3 ms per group under the bench's load.
                    let tenants = crate::storage::sql_common::tenants_of(batches);
                    let alive: HashSet<i64> = if self.series_ids.tenants_alive(&tenants) {
                        tenants.into_iter().collect()
                    } else {
                        let alive = Self::live_tenants(&mut *self.pool().acquire().await?, &tenants, "").await?;
                        self.series_ids.remember_alive(alive.iter().copied());
                        alive
                    };
                    let mut outcomes = Vec::with_capacity(batches.len());
                    let mut kept: Vec<(i64, Vec<&Sample>)> = Vec::with_capacity(batches.len());
                    for batch in batches {
                        if alive.contains(&batch.tenant_id) {
                            outcomes.push(WriteOutcome {
                                accepted: batch.samples.len(),
                                duplicates: 0,
                                duplicate_indices: Vec::new(),
                                tenant_gone: false,
                            });
                            kept.push((batch.tenant_id, batch.samples.iter().collect()));
                        } else {
                            outcomes.push(WriteOutcome::gone());
                            kept.push((batch.tenant_id, Vec::new()));
                        }
                    }
                    let (wanted, slots) = group_by_series(&kept);
                    let (ids, missing) = self.series_ids.lookup(&wanted);
                    if !missing.is_empty() || slots.iter().any(|&(_, ts, _)| !sink.accepts(ts)) {
                        return Ok(None);
                    }
                    let rows: Vec<crate::storage::wal::Row> = slots
                        .into_iter()
                        .map(|(slot, ts, value)| crate::storage::wal::Row {
                            tenant_id: wanted[slot].tenant_id,
                            series_id: ids[slot],
                            ts,
                            value,
                        })
                        .collect();
                    sink.log(&rows, false)?;
                    Ok(Some(outcomes))
                }

                /// Writes `(series, ts, value)` rows (one per key) in `tx`: reopening compacted
                /// windows they land in, inserting or overwriting, and updating the rollups.
                async fn rows_into(
                    &self,
                    tx: &mut <$db as sqlx::Database>::Connection,
                    rows: &[(i64, i64, f64)],
                    now: i64,
                ) -> Result<()> {
                    reopen_chunks(&mut *tx, rows, now, &self.late_writes).await?;
                    // New rows go in skipping existing keys, so a chunk that inserted every row
                    // is known to be all new and merges into the rollups incrementally. A chunk
                    // that hit existing rows is written again as an upsert (last write wins) and
                    // its buckets are recomputed.
                    let mut new_rows: Vec<(i64, i64, f64)> = Vec::with_capacity(rows.len());
                    let mut dirty: HashSet<(i64, i64)> = HashSet::new();
                    for chunk in rows.chunks(<Self as SqlAdapter>::ROWS_PER_INSERT) {
                        let inserted = Self::insert_samples(&mut *tx, chunk, false).await?;
                        if inserted == chunk.len() as u64 {
                            new_rows.extend_from_slice(chunk);
                        } else {
                            Self::insert_samples(&mut *tx, chunk, true).await?;
                            dirty.extend(chunk.iter().map(|&(series, ts, _)| (series, bucket_of(ts, 60_000))));
                        }
                    }
                    crate::storage::sql_common::update_rollups::<Self>(&mut *tx, &new_rows, &dirty).await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl PointRows for $store {
                async fn series_rows(&self, tenant_id: i64, metric: &str) -> Result<Vec<(i64, String)>> {
                    Ok(sqlx::query_as(&$sql(
                        "SELECT id, labels FROM series WHERE tenant_id = ? AND metric = ? ORDER BY labels",
                    ))
                    .bind(tenant_id)
                    .bind(metric)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn raw_rows(
                    &self,
                    series: i64,
                    from: i64,
                    to: i64,
                    limit: i64,
                ) -> Result<(Vec<(i64, f64)>, Vec<Vec<u8>>)> {
                    let (rows, chunks) = raw_rows_with_chunks(&self.pool, series, from, to, limit).await?;
                    Ok(match self.head.get() {
                        Some(head) => (crate::storage::chunk::merge(rows, head.raw(series, from, to)), chunks),
                        None => (rows, chunks),
                    })
                }

                async fn rollup_rows(
                    &self,
                    table: &str,
                    series: i64,
                    from: i64,
                    to: i64,
                    limit: i64,
                    wanted: Columns,
                ) -> Result<Vec<(i64, Summary)>> {
                    let (rows, minute_chunks) =
                        rollup_rows_with_chunks(&self.pool, table, series, from, to, limit, wanted).await?;
                    // The 1m buckets of compacted windows come from their raw chunks (see
                    // `chunk_store::with_derived_minutes`), read after the 1m tables: a window
                    // compacted in between is then found as a raw chunk. Only closed windows can
                    // have one, so reads of open windows alone skip this.
                    use crate::storage::chunk_store::{compact_before, with_derived_minutes};
                    let minute = crate::storage::Resolution::OneMinute.width_ms();
                    let closed_end = to.saturating_add(minute - 1).min(compact_before(crate::domain::now_ms()) - 1);
                    let rows = if table == "rollup_1m" && closed_end >= from {
                        let start = crate::storage::chunk::window_of(from);
                        let (raw, raw_chunks) = raw_rows_with_chunks(&self.pool, series, start, closed_end, 100_000_000).await?;
                        with_derived_minutes(rows, &minute_chunks, raw, &raw_chunks, from, to)?
                    } else {
                        rows
                    };
                    let Some(head) = self.head.get() else { return Ok(rows) };
                    let width = if table == "rollup_1m" { 60_000 } else { 300_000 };
                    let fresh = head.buckets(series, width, from, to);
                    if fresh.is_empty() {
                        return Ok(rows);
                    }
                    // A bucket only the head has is its summary; one the database has too (written
                    // before a restart, or a flush under way) is recomputed from both sides' raw
                    // samples, the head winning at an equal timestamp, so an overwrite is counted
                    // once.
                    let mut merged: std::collections::BTreeMap<i64, Summary> = rows.into_iter().collect();
                    for (bucket, summary) in fresh {
                        let exact = if merged.contains_key(&bucket) {
                            let end = bucket + width - 1;
                            let (db, chunks) = raw_rows_with_chunks(&self.pool, series, bucket, end, 1_000_000).await?;
                            let db = if chunks.is_empty() {
                                db
                            } else {
                                crate::storage::chunk::merge(crate::storage::chunk_store::chunk_points(&chunks, bucket, end)?, db)
                            };
                            let all = crate::storage::chunk::merge(db, head.raw(series, bucket, end));
                            crate::storage::head::summarize(&all, width).first().map(|b| b.1).unwrap_or(summary)
                        } else {
                            summary
                        };
                        merged.insert(bucket, exact);
                    }
                    Ok(merged.into_iter().collect())
                }
            }

            #[async_trait]
            impl Store for $store {
                async fn migrate(&self) -> Result<()> {
                    self.migrate_schema().await
                }

                async fn ping(&self) -> Result<()> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                async fn close(&self) {
                    self.close_pool().await
                }

                async fn enable_reclaim(&self) -> Result<bool> {
                    self.reclaim_on_migrate().await
                }

                async fn create_tenant(&self, name: &str, display_name: Option<&str>) -> Result<TenantRecord> {
                    let now = crate::domain::now_ms();
                    let id = self
                        .insert_tenant(name, display_name, now)
                        .await?
                        .ok_or_else(|| StoreError::Conflict(format!("tenant {name:?}")))?;
                    Ok(TenantRecord {
                        id,
                        name: name.to_string(),
                        display_name: display_name.map(str::to_string),
                        created_at: now,
                        retention: Retention::default(),
                        limits: TenantLimits::default(),
                    })
                }

                async fn get_tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
                    let row = sqlx::query(&$sql("SELECT * FROM tenants WHERE name = ? AND deleted_at IS NULL"))
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(tenant_from_row).transpose()
                }

                async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
                    let rows = sqlx::query("SELECT * FROM tenants WHERE deleted_at IS NULL ORDER BY name")
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(tenant_from_row).collect()
                }

                fn forget_tenant(&self, tenant_id: i64) {
                    self.series_ids.forget_tenant(tenant_id);
                    if let Some(head) = self.head.get() {
                        head.forget_tenant(tenant_id);
                    }
                }

                async fn set_retention(&self, name: &str, retention: &Retention) -> Result<bool> {
                    let r = sqlx::query(&$sql(
                        "UPDATE tenants SET retention_raw_ms = ?, retention_1m_ms = ?, retention_5m_ms = ? WHERE name = ?",
                    ))
                    .bind(retention.raw_ms)
                    .bind(retention.m1_ms)
                    .bind(retention.m5_ms)
                    .bind(name)
                    .execute(self.writes())
                    .await?;
                    // MariaDB counts only changed rows as affected: then look the tenant up.
                    Ok(r.rows_affected() > 0 || self.get_tenant(name).await?.is_some())
                }

                async fn purge(&self, tenant_id: i64, resolution: Resolution, before: i64, limit: i64) -> Result<u64> {
                    let _gate = self.purge_gate().await;
                    let (table, column) = match resolution {
                        Resolution::Raw => ("samples", "ts"),
                        Resolution::OneMinute => ("rollup_1m", "bucket"),
                        Resolution::FiveMinutes => ("rollup_5m", "bucket"),
                    };
                    let sql = $sql(&$chunk(
                        table,
                        &format!("series_id, {column}"),
                        &format!("series_id IN (SELECT id FROM series WHERE tenant_id = ?) AND {column} < ?"),
                    ));
                    Ok(sqlx::query(&sql)
                        .bind(tenant_id)
                        .bind(before)
                        .bind(limit)
                        .execute(self.writes())
                        .await?
                        .rows_affected())
                }

                async fn find_token(&self, hash: &TokenHash) -> Result<Option<Principal>> {
                    let row = sqlx::query(&$sql(
                        "SELECT t.id AS token_id, t.tenant_id, t.scopes, t.expires_at, n.name AS tenant, t.hash \
                         FROM tokens t JOIN tenants n ON n.id = t.tenant_id AND n.deleted_at IS NULL WHERE t.hash = ?",
                    ))
                    .bind(&hash.0[..])
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let stored: Vec<u8> = row.try_get("hash")?;
                    if !TokenHash(stored.try_into().unwrap_or([0; 32])).matches(hash) {
                        return Ok(None);
                    }
                    principal_from_row(&row).map(Some)
                }

                async fn create_session(&self, hash: &TokenHash, token_id: i64, expires_at: i64) -> Result<()> {
                    sqlx::query(&$sql("DELETE FROM sessions WHERE expires_at < ?"))
                        .bind(crate::domain::now_ms())
                        .execute(self.writes())
                        .await?;
                    sqlx::query(&$sql("INSERT INTO sessions (hash, token_id, expires_at) VALUES (?, ?, ?)"))
                        .bind(&hash.0[..])
                        .bind(token_id)
                        .bind(expires_at)
                        .execute(self.writes())
                        .await?;
                    Ok(())
                }

                async fn find_session(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
                    let row = sqlx::query(&$sql(
                        "SELECT s.expires_at AS session_expires_at, t.expires_at, t.id AS token_id, t.tenant_id, \
                                t.scopes, n.name AS tenant \
                         FROM sessions s JOIN tokens t ON t.id = s.token_id \
                         JOIN tenants n ON n.id = t.tenant_id AND n.deleted_at IS NULL \
                         WHERE s.hash = ?",
                    ))
                    .bind(&hash.0[..])
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    Ok(Some(SessionRecord {
                        principal: principal_from_row(&row)?,
                        expires_at: row.try_get("session_expires_at")?,
                    }))
                }

                async fn delete_session(&self, hash: &TokenHash) -> Result<()> {
                    sqlx::query(&$sql("DELETE FROM sessions WHERE hash = ?"))
                        .bind(&hash.0[..])
                        .execute(self.writes())
                        .await?;
                    Ok(())
                }

                async fn write(
                    &self,
                    batches: &[WriteBatch<'_>],
                    now: i64,
                    dedupe_since: i64,
                ) -> Result<Vec<WriteOutcome>> {
                    crate::storage::retry_deadlocks(|| self.write_once(batches, now, dedupe_since, None)).await
                }

                fn attach_head(&self, head: std::sync::Arc<crate::storage::head::Head>) {
                    let _ = self.head.set(head);
                }

                fn head(&self) -> Option<std::sync::Arc<crate::storage::head::Head>> {
                    self.head.get().cloned()
                }

                async fn write_with_head(
                    &self,
                    batches: &[WriteBatch<'_>],
                    now: i64,
                    dedupe_since: i64,
                    sink: &mut dyn crate::storage::HeadSink,
                ) -> Result<Vec<WriteOutcome>> {
                    if let Some(outcomes) = self.write_to_head_only(batches, sink).await? {
                        return Ok(outcomes);
                    }
                    // `retry_deadlocks` by hand: its closure cannot lend `sink` to each attempt.
                    let mut tries = 0u32;
                    loop {
                        match self.write_once(batches, now, dedupe_since, Some(&mut *sink)).await {
                            Err(err) if err.is_deadlock() && tries < 5 => {
                                tries += 1;
                                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
                            }
                            other => return other,
                        }
                    }
                }

                async fn write_rows(&self, rows: &[(i64, i64, f64)], now: i64) -> Result<()> {
                    let mut rows = rows.to_vec();
                    last_wins(&mut rows);
                    crate::storage::retry_deadlocks(|| async {
                        let _gate = self.purge_gate().await;
                        let mut tx = self.begin_write().await?;
                        self.rows_into(&mut tx, &rows, now).await?;
                        tx.commit().await?;
                        Ok(())
                    })
                    .await
                }

                async fn existing_series(&self, ids: &[i64]) -> Result<HashSet<i64>> {
                    let mut found = HashSet::new();
                    for part in ids.chunks(500) {
                        let sql = $sql(&format!(
                            "SELECT s.id FROM series s JOIN tenants t ON t.id = s.tenant_id \
                             WHERE t.deleted_at IS NULL AND s.id IN ({})",
                            vec!["?"; part.len()].join(", ")
                        ));
                        let mut query = sqlx::query_scalar::<_, i64>(&sql);
                        for id in part {
                            query = query.bind(*id);
                        }
                        found.extend(query.fetch_all(&self.pool).await?);
                    }
                    Ok(found)
                }

                async fn purge_dedupe(&self, before: i64, limit: i64) -> Result<u64> {
                    Ok(sqlx::query(&$sql(&$chunk("dedupe", "tenant_id, dedupe_id", "seen_at < ?")))
                        .bind(before)
                        .bind(limit)
                        .execute(self.writes())
                        .await?
                        .rows_affected())
                }

                async fn metric_names(&self, tenant_id: i64) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(&$sql($metric_names)).bind(tenant_id).fetch_all(&self.pool).await?)
                }

                async fn series(&self, tenant_id: i64, metric: &str, matchers: &Labels) -> Result<Vec<SeriesInfo>> {
                    let rows = sqlx::query(&$sql($series_with_last))
                        .bind(tenant_id)
                        .bind(metric)
                        .fetch_all(&self.pool)
                        .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let labels: Labels = serde_json::from_str(&row.try_get::<String, _>("labels")?)
                            .map_err(StoreError::corrupt)?;
                        if !labels_match(&labels, matchers) {
                            continue;
                        }
                        let ts: Option<i64> = row.try_get("ts")?;
                        let value: Option<f64> = row.try_get("value")?;
                        let id: i64 = row.try_get("id")?;
                        // The head holds open windows, newer than any chunk: a series it has
                        // needs no chunk read (one query per series, 5000 per metric, made a
                        // 100 000-rule start-up take 108 s instead of 20).
                        let row = ts.zip(value);
                        let last = match self.head.get().and_then(|head| head.last(id)) {
                            Some(newest) if row.is_none_or(|(ts, _)| ts <= newest.0) => Some(newest),
                            Some(_) => row,
                            None => self.last_point(id, row).await?,
                        };
                        out.push(SeriesInfo { labels, last });
                    }
                    Ok(out)
                }

                async fn query(&self, query: &PointQuery) -> Result<Vec<SeriesPoints>> {
                    query_points(self, query).await
                }

                async fn list_dashboards(&self, tenant_id: i64) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(&$sql("SELECT body FROM dashboards WHERE tenant_id = ? ORDER BY name"))
                        .bind(tenant_id)
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn put_dashboard(&self, tenant_id: i64, name: &str, body: &str, now: i64) -> Result<()> {
                    sqlx::query(&$sql(&$upsert(
                        "INSERT INTO dashboards (tenant_id, name, body, updated_at) VALUES (?, ?, ?, ?)",
                        "tenant_id, name",
                        &["body", "updated_at"],
                    )))
                    .bind(tenant_id)
                    .bind(name)
                    .bind(body)
                    .bind(now)
                    .execute(self.writes())
                    .await?;
                    Ok(())
                }

                async fn delete_dashboard(&self, tenant_id: i64, name: &str) -> Result<bool> {
                    let r = sqlx::query(&$sql("DELETE FROM dashboards WHERE tenant_id = ? AND name = ?"))
                        .bind(tenant_id)
                        .bind(name)
                        .execute(self.writes())
                        .await?;
                    Ok(r.rows_affected() > 0)
                }
            }
        }
    };
}

pub(crate) use sql_common_store;
