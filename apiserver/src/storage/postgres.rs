//! The PostgreSQL adapter. Bulk writes send whole columns as arrays (`UNNEST`), so one
//! statement carries thousands of rows with three binds.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use microdash_model::Scope;
use sqlx::postgres::{PgConnection, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use super::chunk::Columns;
use super::chunk_store::ChunkStore;
use super::{
    CachedSeries, PointQuery, PointRows, Resolution, Result, Retention, SeriesCache, SeriesInfo, SeriesPoints,
    SeriesRef, SessionRecord, Store, StoreError, Summary, TenantLimits, TenantRecord, WriteBatch, WriteOutcome,
    bucket_of, group_by_series, labels_key, labels_match, last_wins, query_points, rollup_deltas, split_duplicates,
};
use crate::domain::token::parse_scopes;
use crate::domain::{Labels, Principal, TokenHash};

const ROWS_PER_INSERT: usize = 5000;

pub struct PostgresStore {
    pool: PgPool,
    series_ids: SeriesCache,
    /// When this process last wrote into a closed window (see `ChunkStore::last_late_write`).
    late_writes: super::chunk_store::LateWrites,
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::corrupt(e)
}

fn principal_from_row(row: &PgRow) -> Result<Principal> {
    let scopes_text: String = row.try_get("scopes")?;
    Ok(Principal::Tenant {
        tenant_id: row.try_get("tenant_id")?,
        tenant: row.try_get("tenant")?,
        token_id: row.try_get("token_id")?,
        scopes: parse_scopes(&scopes_text).map_err(decode_err)?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn tenant_from_row(row: &PgRow) -> Result<TenantRecord> {
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

fn columns(rows: &[(i64, i64, f64)]) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
    let mut a = Vec::with_capacity(rows.len());
    let mut b = Vec::with_capacity(rows.len());
    let mut c = Vec::with_capacity(rows.len());
    for &(x, y, z) in rows {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}

async fn insert_samples(tx: &mut PgConnection, rows: &[(i64, i64, f64)], on_conflict: &str) -> Result<u64> {
    let (series, ts, values) = columns(rows);
    let sql = format!(
        "INSERT INTO samples (series_id, ts, value) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[]) {on_conflict}"
    );
    Ok(sqlx::query(&sql).bind(series).bind(ts).bind(values).execute(&mut *tx).await?.rows_affected())
}

/// Rollup deltas as columns, for `UNNEST`.
#[derive(Default)]
struct RollupColumns {
    series: Vec<i64>,
    bucket: Vec<i64>,
    count: Vec<i64>,
    sum: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    last: Vec<f64>,
    last_ts: Vec<i64>,
}

/// See `sqlite::update_rollups`: the same plan in PostgreSQL's dialect.
async fn update_rollups(
    tx: &mut PgConnection,
    new_rows: &[(i64, i64, f64)],
    dirty: &HashSet<(i64, i64)>,
) -> Result<()> {
    let dirty_5m: HashSet<(i64, i64)> = dirty.iter().map(|&(s, b)| (s, bucket_of(b, 300_000))).collect();
    for (table, width, skip) in [("rollup_1m", 60_000i64, dirty), ("rollup_5m", 300_000, &dirty_5m)] {
        let deltas: Vec<((i64, i64), Summary)> =
            rollup_deltas(new_rows, width).into_iter().filter(|(key, _)| !skip.contains(key)).collect();
        if !deltas.is_empty() {
            let mut cols = RollupColumns::default();
            for ((series, bucket), s) in &deltas {
                cols.series.push(*series);
                cols.bucket.push(*bucket);
                cols.count.push(s.count);
                cols.sum.push(s.sum);
                cols.min.push(s.min);
                cols.max.push(s.max);
                cols.last.push(s.last);
                cols.last_ts.push(s.last_ts);
            }
            let sql = format!(
                "INSERT INTO {table} AS r (series_id, bucket, count, sum, min, max, last, last_ts) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[], \
                                      $6::float8[], $7::float8[], $8::bigint[]) \
                 ON CONFLICT (series_id, bucket) DO UPDATE SET count = r.count + excluded.count, \
                 sum = r.sum + excluded.sum, min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max), \
                 last = CASE WHEN excluded.last_ts >= r.last_ts THEN excluded.last ELSE r.last END, \
                 last_ts = GREATEST(r.last_ts, excluded.last_ts)"
            );
            sqlx::query(&sql)
                .bind(cols.series)
                .bind(cols.bucket)
                .bind(cols.count)
                .bind(cols.sum)
                .bind(cols.min)
                .bind(cols.max)
                .bind(cols.last)
                .bind(cols.last_ts)
                .execute(&mut *tx)
                .await?;
        }
        let (source, value, count, sum, min, max, ts, key) = if width == 60_000 {
            ("samples", "value", "count(*)", "sum(value)", "min(value)", "max(value)", "ts", "ts")
        } else {
            ("rollup_1m", "last", "sum(count)::bigint", "sum(sum)", "min(min)", "max(max)", "last_ts", "bucket")
        };
        let recompute = format!(
            "INSERT INTO {table} (series_id, bucket, count, sum, min, max, last, last_ts) \
             SELECT $1::bigint, $2::bigint, {count}, {sum}, {min}, {max}, \
                    (SELECT {value} FROM {source} WHERE series_id = $1 AND {key} >= $2 AND {key} < $3 ORDER BY {ts} DESC LIMIT 1), \
                    max({ts}) \
             FROM {source} WHERE series_id = $1 AND {key} >= $2 AND {key} < $3 \
             ON CONFLICT (series_id, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum, \
             min = excluded.min, max = excluded.max, last = excluded.last, last_ts = excluded.last_ts"
        );
        for &(series, bucket) in skip {
            sqlx::query(&recompute).bind(series).bind(bucket).bind(bucket + width).execute(&mut *tx).await?;
        }
    }
    Ok(())
}

impl PostgresStore {
    /// A transaction that will write.
    pub(crate) async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await
    }

    /// Purge chunks need no gate here: row locks keep them out of the writer's way.
    pub(crate) async fn purge_gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    pub async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool, series_ids: SeriesCache::default(), late_writes: Default::default() })
    }

    async fn resolve_series(
        &self,
        tx: &mut PgConnection,
        wanted: &[SeriesRef<'_>],
        now: i64,
    ) -> Result<(Vec<i64>, Vec<(u64, CachedSeries)>)> {
        let (mut ids, missing) = self.series_ids.lookup(wanted);
        let mut fresh = Vec::with_capacity(missing.len());
        for i in missing {
            let series = &wanted[i];
            let labels = labels_key(series.labels);
            sqlx::query(
                "INSERT INTO series (tenant_id, metric, labels, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, metric, labels) DO NOTHING",
            )
            .bind(series.tenant_id)
            .bind(series.metric)
            .bind(&labels)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let id: i64 =
                sqlx::query_scalar("SELECT id FROM series WHERE tenant_id = $1 AND metric = $2 AND labels = $3")
                    .bind(series.tenant_id)
                    .bind(series.metric)
                    .bind(&labels)
                    .fetch_one(&mut *tx)
                    .await?;
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
}

#[async_trait]
impl PointRows for PostgresStore {
    async fn series_rows(&self, tenant_id: i64, metric: &str) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as("SELECT id, labels FROM series WHERE tenant_id = $1 AND metric = $2 ORDER BY labels")
            .bind(tenant_id)
            .bind(metric)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn raw_rows(&self, series: i64, from: i64, to: i64, limit: i64) -> Result<(Vec<(i64, f64)>, Vec<Vec<u8>>)> {
        raw_rows_with_chunks(&self.pool, series, from, to, limit).await
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
        rollup_rows_with_chunks(&self.pool, table, series, from, to, limit, wanted).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str, display_name: Option<&str>) -> Result<TenantRecord> {
        let now = crate::domain::now_ms();
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO tenants (name, display_name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(display_name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let id = id.ok_or_else(|| StoreError::Conflict(format!("tenant {name:?}")))?;
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
        let row = sqlx::query("SELECT * FROM tenants WHERE name = $1 AND deleted_at IS NULL")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        let rows =
            sqlx::query("SELECT * FROM tenants WHERE deleted_at IS NULL ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(tenant_from_row).collect()
    }

    fn forget_tenant(&self, tenant_id: i64) {
        self.series_ids.forget_tenant(tenant_id);
    }

    async fn set_retention(&self, name: &str, retention: &Retention) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE tenants SET retention_raw_ms = $1, retention_1m_ms = $2, retention_5m_ms = $3 WHERE name = $4",
        )
        .bind(retention.raw_ms)
        .bind(retention.m1_ms)
        .bind(retention.m5_ms)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn purge(&self, tenant_id: i64, resolution: Resolution, before: i64, limit: i64) -> Result<u64> {
        let (table, column) = match resolution {
            Resolution::Raw => ("samples", "ts"),
            Resolution::OneMinute => ("rollup_1m", "bucket"),
            Resolution::FiveMinutes => ("rollup_5m", "bucket"),
        };
        let sql = format!(
            "DELETE FROM {table} WHERE (series_id, {column}) IN \
             (SELECT series_id, {column} FROM {table} \
              WHERE series_id IN (SELECT id FROM series WHERE tenant_id = $1) AND {column} < $2 LIMIT $3)"
        );
        Ok(sqlx::query(&sql).bind(tenant_id).bind(before).bind(limit).execute(&self.pool).await?.rows_affected())
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.tenant_id, t.scopes, t.expires_at, n.name AS tenant, t.hash \
             FROM tokens t JOIN tenants n ON n.id = t.tenant_id AND n.deleted_at IS NULL WHERE t.hash = $1",
        )
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
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(crate::domain::now_ms())
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sessions (hash, token_id, expires_at) VALUES ($1, $2, $3)")
            .bind(&hash.0[..])
            .bind(token_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_session(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT s.expires_at AS session_expires_at, t.expires_at, t.id AS token_id, t.tenant_id, t.scopes, n.name AS tenant \
             FROM sessions s JOIN tokens t ON t.id = s.token_id JOIN tenants n ON n.id = t.tenant_id AND n.deleted_at IS NULL \
             WHERE s.hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord { principal: principal_from_row(&row)?, expires_at: row.try_get("session_expires_at")? }))
    }

    async fn delete_session(&self, hash: &TokenHash) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE hash = $1").bind(&hash.0[..]).execute(&self.pool).await?;
        Ok(())
    }

    async fn write(&self, batches: &[WriteBatch<'_>], now: i64, dedupe_since: i64) -> Result<Vec<WriteOutcome>> {
        super::retry_deadlocks(|| self.write_once(batches, now, dedupe_since)).await
    }

    async fn purge_dedupe(&self, before: i64, limit: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM dedupe WHERE (tenant_id, dedupe_id) IN \
             (SELECT tenant_id, dedupe_id FROM dedupe WHERE seen_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn metric_names(&self, tenant_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT metric FROM series WHERE tenant_id = $1 ORDER BY metric")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn series(&self, tenant_id: i64, metric: &str, matchers: &Labels) -> Result<Vec<SeriesInfo>> {
        let rows = sqlx::query(
            "SELECT s.id, s.labels, l.ts, l.value FROM series s \
             LEFT JOIN LATERAL (SELECT ts, value FROM samples WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) l ON true \
             WHERE s.tenant_id = $1 AND s.metric = $2 ORDER BY s.labels",
        )
        .bind(tenant_id)
        .bind(metric)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let labels: Labels = serde_json::from_str(row.try_get::<&str, _>("labels")?).map_err(decode_err)?;
            if !labels_match(&labels, matchers) {
                continue;
            }
            let ts: Option<i64> = row.try_get("ts")?;
            let value: Option<f64> = row.try_get("value")?;
            let last = self.last_point(row.try_get("id")?, ts.zip(value)).await?;
            out.push(SeriesInfo { labels, last });
        }
        Ok(out)
    }

    async fn query(&self, query: &PointQuery) -> Result<Vec<SeriesPoints>> {
        query_points(self, query).await
    }

    async fn list_dashboards(&self, tenant_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT body FROM dashboards WHERE tenant_id = $1 ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_dashboard(&self, tenant_id: i64, name: &str, body: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboards (tenant_id, name, body, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_dashboard(&self, tenant_id: i64, name: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM dashboards WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

fn text_column(row: &PgRow, column: &str) -> Result<Option<String>> {
    Ok(row.try_get(column)?)
}

super::sql_alerts::sql_alert_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    row: PgRow,
    sql: crate::storage::sql_alerts::numbered,
    text: text_column,
    insert_ignore: crate::storage::sql_alerts::on_conflict_do_nothing,
}

super::tenancy::sql_tenancy_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    sql: crate::storage::sql_alerts::numbered,
    chunk: crate::storage::tenancy::chunk_by_subquery,
    series_keys: "SELECT metric, labels FROM series WHERE tenant_id = ?",
}

super::chunk_store::sql_chunk_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    sql: crate::storage::sql_alerts::numbered,
    chunk: crate::storage::tenancy::chunk_by_subquery,
    lock: " FOR UPDATE",
    insert_ignore: "INSERT",
    on_conflict_nothing: " ON CONFLICT DO NOTHING",
    nulls: ("NULL::bigint", "NULL::float8", "NULL::bytea"),
    reclaim: "",
}

impl PostgresStore {
    /// One attempt of `Store::write`, in one transaction (rolled back whole on any error).
    async fn write_once(&self, batches: &[WriteBatch<'_>], now: i64, dedupe_since: i64) -> Result<Vec<WriteOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut kept: Vec<(i64, Vec<&crate::domain::Sample>)> = Vec::with_capacity(batches.len());
        // A tenant deleted since its requests were accepted gets nothing written, and does not
        // fail the other tenants' batches of this group.
        let tenants = super::tenants_of(batches);
        let sql = super::live_tenants_sql(tenants.len(), " FOR SHARE");
        let sql = crate::storage::sql_alerts::numbered(&sql);
        let mut alive = sqlx::query_scalar::<_, i64>(&sql);
        for id in &tenants {
            alive = alive.bind(*id);
        }
        let alive: HashSet<i64> = alive.fetch_all(&mut *tx).await?.into_iter().collect();
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
            let seen: HashSet<String> = if unique.is_empty() {
                HashSet::new()
            } else {
                let fresh: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO dedupe (tenant_id, dedupe_id, seen_at) SELECT $1, id, $3 FROM UNNEST($2::text[]) AS id \
                     ON CONFLICT (tenant_id, dedupe_id) DO UPDATE SET seen_at = excluded.seen_at \
                     WHERE dedupe.seen_at < $4 RETURNING dedupe_id",
                )
                .bind(batch.tenant_id)
                .bind(&unique)
                .bind(now)
                .bind(dedupe_since)
                .fetch_all(&mut *tx)
                .await?;
                let fresh: HashSet<&str> = fresh.iter().map(String::as_str).collect();
                unique.iter().filter(|id| !fresh.contains(**id)).map(|id| id.to_string()).collect()
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
        let (wanted, rows) = group_by_series(&kept);
        let (ids, fresh) = self.resolve_series(&mut tx, &wanted, now).await?;
        let mut rows: Vec<(i64, i64, f64)> = rows.into_iter().map(|(slot, ts, value)| (ids[slot], ts, value)).collect();
        // PostgreSQL refuses to upsert one row twice in a statement: keep the last of each.
        last_wins(&mut rows);
        reopen_chunks(&mut tx, &rows, now, &self.late_writes).await?;
        let mut new_rows: Vec<(i64, i64, f64)> = Vec::with_capacity(rows.len());
        let mut dirty: HashSet<(i64, i64)> = HashSet::new();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let inserted = insert_samples(&mut tx, chunk, "ON CONFLICT (series_id, ts) DO NOTHING").await?;
            if inserted == chunk.len() as u64 {
                new_rows.extend_from_slice(chunk);
            } else {
                insert_samples(&mut tx, chunk, "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value")
                    .await?;
                dirty.extend(chunk.iter().map(|&(series, ts, _)| (series, bucket_of(ts, 60_000))));
            }
        }
        update_rollups(&mut tx, &new_rows, &dirty).await?;
        tx.commit().await?;
        self.series_ids.remember(fresh);
        Ok(outcomes)
    }
}
