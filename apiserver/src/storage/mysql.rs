//! The MariaDB / MySQL adapter (InnoDB). Long text keys are looked up through a SHA-256
//! column, upserts use `ON DUPLICATE KEY UPDATE`, inserts of possibly-existing rows
//! `INSERT IGNORE`.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use microdash_model::Scope;
use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnection, MySqlPoolOptions, MySqlRow};
use sqlx::{MySqlPool, QueryBuilder, Row};

use super::chunk::Columns;
use super::chunk_store::ChunkStore;
use super::{
    CachedSeries, PointQuery, PointRows, Resolution, Result, Retention, SeriesCache, SeriesInfo, SeriesPoints,
    SeriesRef, SessionRecord, Store, StoreError, Summary, TenantLimits, TenantRecord, WriteBatch, WriteOutcome,
    bucket_of, group_by_series, labels_key, labels_match, last_wins, query_points, rollup_deltas, split_duplicates,
};
use crate::domain::token::parse_scopes;
use crate::domain::{Labels, Principal, TokenHash};

const ROWS_PER_INSERT: usize = 2000;

pub struct MySqlStore {
    pool: MySqlPool,
    series_ids: SeriesCache,
    /// When this process last wrote into a closed window (see `ChunkStore::last_late_write`).
    late_writes: super::chunk_store::LateWrites,
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::corrupt(e)
}

fn principal_from_row(row: &MySqlRow) -> Result<Principal> {
    let scopes_text: String = row.try_get("scopes")?;
    Ok(Principal::Tenant {
        tenant_id: row.try_get("tenant_id")?,
        tenant: row.try_get("tenant")?,
        token_id: row.try_get("token_id")?,
        scopes: parse_scopes(&scopes_text).map_err(decode_err)?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn tenant_from_row(row: &MySqlRow) -> Result<TenantRecord> {
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

async fn insert_samples(tx: &mut MySqlConnection, rows: &[(i64, i64, f64)], upsert: bool) -> Result<u64> {
    let mut qb = QueryBuilder::new(if upsert {
        "INSERT INTO samples (series_id, ts, value) "
    } else {
        "INSERT IGNORE INTO samples (series_id, ts, value) "
    });
    qb.push_values(rows, |mut row, (series, ts, value)| {
        row.push_bind(series).push_bind(ts).push_bind(value);
    });
    if upsert {
        qb.push(" ON DUPLICATE KEY UPDATE value = VALUES(value)");
    }
    Ok(qb.build().execute(&mut *tx).await?.rows_affected())
}

/// See `sqlite::update_rollups`: the same plan in MariaDB's dialect.
async fn update_rollups(
    tx: &mut MySqlConnection,
    new_rows: &[(i64, i64, f64)],
    dirty: &HashSet<(i64, i64)>,
) -> Result<()> {
    let dirty_5m: HashSet<(i64, i64)> = dirty.iter().map(|&(s, b)| (s, bucket_of(b, 300_000))).collect();
    for (table, width, skip) in [("rollup_1m", 60_000i64, dirty), ("rollup_5m", 300_000, &dirty_5m)] {
        let deltas: Vec<((i64, i64), Summary)> =
            rollup_deltas(new_rows, width).into_iter().filter(|(key, _)| !skip.contains(key)).collect();
        for chunk in deltas.chunks(ROWS_PER_INSERT / 3) {
            let mut qb = QueryBuilder::new(format!(
                "INSERT INTO {table} (series_id, bucket, count, sum, min, max, last, last_ts) "
            ));
            qb.push_values(chunk, |mut row, ((series, bucket), s)| {
                row.push_bind(series)
                    .push_bind(bucket)
                    .push_bind(s.count)
                    .push_bind(s.sum)
                    .push_bind(s.min)
                    .push_bind(s.max)
                    .push_bind(s.last)
                    .push_bind(s.last_ts);
            });
            // Assignments run left to right and see earlier ones: `last` before `last_ts`.
            qb.push(
                " ON DUPLICATE KEY UPDATE count = count + VALUES(count), sum = sum + VALUES(sum), \
                 min = LEAST(min, VALUES(min)), max = GREATEST(max, VALUES(max)), \
                 last = IF(VALUES(last_ts) >= last_ts, VALUES(last), last), \
                 last_ts = GREATEST(last_ts, VALUES(last_ts))",
            );
            qb.build().execute(&mut *tx).await?;
        }
        let (source, value, count, sum, min, max, ts, key) = if width == 60_000 {
            ("samples", "value", "COUNT(*)", "SUM(value)", "MIN(value)", "MAX(value)", "ts", "ts")
        } else {
            ("rollup_1m", "last", "CAST(SUM(count) AS SIGNED)", "SUM(sum)", "MIN(min)", "MAX(max)", "last_ts", "bucket")
        };
        let recompute = format!(
            "INSERT INTO {table} (series_id, bucket, count, sum, min, max, last, last_ts) \
             SELECT ?, ?, {count}, {sum}, {min}, {max}, \
                    (SELECT {value} FROM {source} WHERE series_id = ? AND {key} >= ? AND {key} < ? ORDER BY {ts} DESC LIMIT 1), \
                    MAX({ts}) \
             FROM {source} WHERE series_id = ? AND {key} >= ? AND {key} < ? \
             ON DUPLICATE KEY UPDATE count = VALUES(count), sum = VALUES(sum), min = VALUES(min), \
             max = VALUES(max), last = VALUES(last), last_ts = VALUES(last_ts)"
        );
        for &(series, bucket) in skip {
            let end = bucket + width;
            sqlx::query(&recompute)
                .bind(series)
                .bind(bucket)
                .bind(series)
                .bind(bucket)
                .bind(end)
                .bind(series)
                .bind(bucket)
                .bind(end)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

impl MySqlStore {
    /// A transaction that will write.
    pub(crate) async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::MySql>> {
        self.pool.begin().await
    }

    /// Purge chunks need no gate here: row locks keep them out of the writer's way.
    pub(crate) async fn purge_gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    pub async fn open(url: &str) -> Result<Self> {
        let pool = MySqlPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool, series_ids: SeriesCache::default(), late_writes: Default::default() })
    }

    async fn resolve_series(
        &self,
        tx: &mut MySqlConnection,
        wanted: &[SeriesRef<'_>],
        now: i64,
    ) -> Result<(Vec<i64>, Vec<(u64, CachedSeries)>)> {
        let (mut ids, missing) = self.series_ids.lookup(wanted);
        let mut fresh = Vec::with_capacity(missing.len());
        for i in missing {
            let series = &wanted[i];
            let labels = labels_key(series.labels);
            let hash: [u8; 32] = Sha256::digest(labels.as_bytes()).into();
            sqlx::query(
                "INSERT IGNORE INTO series (tenant_id, metric, labels, labels_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(series.tenant_id)
            .bind(series.metric)
            .bind(&labels)
            .bind(&hash[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let id: i64 =
                sqlx::query_scalar("SELECT id FROM series WHERE tenant_id = ? AND metric = ? AND labels_hash = ?")
                    .bind(series.tenant_id)
                    .bind(series.metric)
                    .bind(&hash[..])
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

    /// The dedupe ids of `ids` seen since `since` (locked, so a concurrent writer waits), and
    /// records the others as seen now.
    async fn record_dedupe(
        tx: &mut MySqlConnection,
        tenant_id: i64,
        ids: &[&str],
        now: i64,
        since: i64,
    ) -> Result<HashSet<String>> {
        let mut seen = HashSet::new();
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::new(
                "SELECT CAST(dedupe_id AS CHAR CHARACTER SET utf8mb4) FROM dedupe WHERE tenant_id = ",
            );
            qb.push_bind(tenant_id).push(" AND seen_at >= ").push_bind(since).push(" AND dedupe_id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(") FOR UPDATE");
            let found: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            seen.extend(found);
            let new: Vec<&str> = chunk.iter().copied().filter(|id| !seen.contains(*id)).collect();
            if new.is_empty() {
                continue;
            }
            let mut qb = QueryBuilder::new("INSERT INTO dedupe (tenant_id, dedupe_id, seen_at) ");
            qb.push_values(new, |mut row, id| {
                row.push_bind(tenant_id).push_bind(id).push_bind(now);
            });
            qb.push(" ON DUPLICATE KEY UPDATE seen_at = VALUES(seen_at)");
            qb.build().execute(&mut *tx).await?;
        }
        Ok(seen)
    }
}

#[async_trait]
impl PointRows for MySqlStore {
    async fn series_rows(&self, tenant_id: i64, metric: &str) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as("SELECT id, labels FROM series WHERE tenant_id = ? AND metric = ? ORDER BY labels")
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
impl Store for MySqlStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/mysql").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str, display_name: Option<&str>) -> Result<TenantRecord> {
        let now = crate::domain::now_ms();
        let result = sqlx::query("INSERT IGNORE INTO tenants (name, display_name, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(display_name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("tenant {name:?}")));
        }
        Ok(TenantRecord {
            id: result.last_insert_id() as i64,
            name: name.to_string(),
            display_name: display_name.map(str::to_string),
            created_at: now,
            retention: Retention::default(),
            limits: TenantLimits::default(),
        })
    }

    async fn get_tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE name = ? AND deleted_at IS NULL")
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
        // MariaDB counts only changed rows as affected: look the tenant up instead.
        let r = sqlx::query(
            "UPDATE tenants SET retention_raw_ms = ?, retention_1m_ms = ?, retention_5m_ms = ? WHERE name = ?",
        )
        .bind(retention.raw_ms)
        .bind(retention.m1_ms)
        .bind(retention.m5_ms)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0 || self.get_tenant(name).await?.is_some())
    }

    async fn purge(&self, tenant_id: i64, resolution: Resolution, before: i64, limit: i64) -> Result<u64> {
        let (table, column) = match resolution {
            Resolution::Raw => ("samples", "ts"),
            Resolution::OneMinute => ("rollup_1m", "bucket"),
            Resolution::FiveMinutes => ("rollup_5m", "bucket"),
        };
        let sql = format!(
            "DELETE FROM {table} WHERE series_id IN (SELECT id FROM series WHERE tenant_id = ?) AND {column} < ? LIMIT ?"
        );
        Ok(sqlx::query(&sql).bind(tenant_id).bind(before).bind(limit).execute(&self.pool).await?.rows_affected())
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT t.id AS token_id, t.tenant_id, t.scopes, t.expires_at, n.name AS tenant, t.hash \
             FROM tokens t JOIN tenants n ON n.id = t.tenant_id AND n.deleted_at IS NULL WHERE t.hash = ?",
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
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(crate::domain::now_ms())
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sessions (hash, token_id, expires_at) VALUES (?, ?, ?)")
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
             WHERE s.hash = ?",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord { principal: principal_from_row(&row)?, expires_at: row.try_get("session_expires_at")? }))
    }

    async fn delete_session(&self, hash: &TokenHash) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE hash = ?").bind(&hash.0[..]).execute(&self.pool).await?;
        Ok(())
    }

    async fn write(&self, batches: &[WriteBatch<'_>], now: i64, dedupe_since: i64) -> Result<Vec<WriteOutcome>> {
        super::retry_deadlocks(|| self.write_once(batches, now, dedupe_since)).await
    }

    async fn purge_dedupe(&self, before: i64, limit: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM dedupe WHERE seen_at < ? LIMIT ?")
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn metric_names(&self, tenant_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT CAST(metric AS CHAR CHARACTER SET utf8mb4) FROM series WHERE tenant_id = ? ORDER BY 1",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn series(&self, tenant_id: i64, metric: &str, matchers: &Labels) -> Result<Vec<SeriesInfo>> {
        let rows = sqlx::query(
            "SELECT s.id, s.labels, (SELECT ts FROM samples WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) AS ts, \
                    (SELECT value FROM samples WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) AS value \
             FROM series s WHERE s.tenant_id = ? AND s.metric = ? ORDER BY s.labels",
        )
        .bind(tenant_id)
        .bind(metric)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let labels: Labels = serde_json::from_str(&row.try_get::<String, _>("labels")?).map_err(decode_err)?;
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
        Ok(sqlx::query_scalar("SELECT body FROM dashboards WHERE tenant_id = ? ORDER BY name")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn put_dashboard(&self, tenant_id: i64, name: &str, body: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboards (tenant_id, name, body, updated_at) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE body = VALUES(body), updated_at = VALUES(updated_at)",
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
        let r = sqlx::query("DELETE FROM dashboards WHERE tenant_id = ? AND name = ?")
            .bind(tenant_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

/// Text columns with a binary collation (`utf8mb4_bin`) arrive flagged as binary: read bytes.
fn text_column(row: &sqlx::mysql::MySqlRow, column: &str) -> Result<Option<String>> {
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes.map(|b| String::from_utf8(b).map_err(decode_err)).transpose()
}

super::sql_alerts::sql_alert_store! {
    store: MySqlStore,
    db: sqlx::MySql,
    row: sqlx::mysql::MySqlRow,
    sql: crate::storage::sql_alerts::question_marks,
    text: text_column,
    insert_ignore: crate::storage::sql_alerts::insert_ignore,
}

super::tenancy::sql_tenancy_store! {
    store: MySqlStore,
    db: sqlx::MySql,
    sql: crate::storage::sql_alerts::question_marks,
    chunk: crate::storage::tenancy::chunk_by_limit,
    series_keys: "SELECT CAST(metric AS CHAR CHARACTER SET utf8mb4), labels FROM series WHERE tenant_id = ?",
}

super::chunk_store::sql_chunk_store! {
    store: MySqlStore,
    db: sqlx::MySql,
    sql: crate::storage::sql_alerts::question_marks,
    chunk: crate::storage::tenancy::chunk_by_limit,
    lock: " FOR UPDATE",
    insert_ignore: "INSERT IGNORE",
    on_conflict_nothing: "",
    nulls: ("NULL", "NULL", "NULL"),
    reclaim: "",
}

impl MySqlStore {
    /// One attempt of `Store::write`, in one transaction (rolled back whole on any error).
    async fn write_once(&self, batches: &[WriteBatch<'_>], now: i64, dedupe_since: i64) -> Result<Vec<WriteOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut kept: Vec<(i64, Vec<&crate::domain::Sample>)> = Vec::with_capacity(batches.len());
        // A tenant deleted since its requests were accepted gets nothing written, and does not
        // fail the other tenants' batches of this group.
        let tenants = super::tenants_of(batches);
        let sql = super::live_tenants_sql(tenants.len(), " LOCK IN SHARE MODE");
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
            let seen = if unique.is_empty() {
                HashSet::new()
            } else {
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
        let (wanted, rows) = group_by_series(&kept);
        let (ids, fresh) = self.resolve_series(&mut tx, &wanted, now).await?;
        let mut rows: Vec<(i64, i64, f64)> = rows.into_iter().map(|(slot, ts, value)| (ids[slot], ts, value)).collect();
        // INSERT IGNORE keeps the first of two equal keys: keep only the last beforehand.
        last_wins(&mut rows);
        reopen_chunks(&mut tx, &rows, now, &self.late_writes).await?;
        let mut new_rows: Vec<(i64, i64, f64)> = Vec::with_capacity(rows.len());
        let mut dirty: HashSet<(i64, i64)> = HashSet::new();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let inserted = insert_samples(&mut tx, chunk, false).await?;
            if inserted == chunk.len() as u64 {
                new_rows.extend_from_slice(chunk);
            } else {
                insert_samples(&mut tx, chunk, true).await?;
                dirty.extend(chunk.iter().map(|&(series, ts, _)| (series, bucket_of(ts, 60_000))));
            }
        }
        update_rollups(&mut tx, &new_rows, &dirty).await?;
        tx.commit().await?;
        self.series_ids.remember(fresh);
        Ok(outcomes)
    }
}
