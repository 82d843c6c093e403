//! The MariaDB / MySQL adapter (InnoDB). Long text keys are looked up through a SHA-256
//! column, upserts use `ON DUPLICATE KEY UPDATE`, inserts of possibly-existing rows
//! `INSERT IGNORE`.

use std::collections::HashSet;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::mysql::MySqlConnection;
use sqlx::{MySqlPool, QueryBuilder, Row};

use super::sql_common::SqlAdapter;
use super::{Result, SeriesCache, StoreError, Summary};

pub struct MySqlStore {
    pool: MySqlPool,
    series_ids: SeriesCache,
    /// When this process last wrote into a closed window (see `ChunkStore::last_late_write`).
    late_writes: super::chunk_store::LateWrites,
    head: super::HeadSlot,
}

impl MySqlStore {
    pub async fn open(url: &str) -> Result<Self> {
        let pool = super::sql_common::server_pool().connect(url).await?;
        Ok(Self { pool, series_ids: SeriesCache::default(), late_writes: Default::default(), head: Default::default() })
    }
}

#[async_trait]
impl SqlAdapter for MySqlStore {
    type Db = sqlx::MySql;

    const ROWS_PER_INSERT: usize = 2000;

    fn pool(&self) -> &sqlx::Pool<Self::Db> {
        &self.pool
    }

    async fn migrate_schema(&self) -> Result<()> {
        sqlx::migrate!("../migrations/mysql").run(&self.pool).await?;
        Ok(())
    }

    async fn insert_tenant(&self, name: &str, display_name: Option<&str>, now: i64) -> Result<Option<i64>> {
        let result = sqlx::query("INSERT IGNORE INTO tenants (name, display_name, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(display_name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok((result.rows_affected() > 0).then_some(result.last_insert_id() as i64))
    }

    /// Reads the ids seen since `since` with a lock (a concurrent writer of the same ids waits),
    /// then inserts the others.
    async fn record_dedupe(
        tx: &mut MySqlConnection,
        tenant_id: i64,
        ids: &[&str],
        now: i64,
        since: i64,
    ) -> Result<HashSet<String>> {
        let mut seen = HashSet::new();
        for chunk in ids.chunks(Self::ROWS_PER_INSERT) {
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
    /// Labels are looked up by their SHA-256 (`labels_hash`), as long text keys cannot be indexed.
    async fn series_id(tx: &mut MySqlConnection, tenant_id: i64, metric: &str, labels: &str, now: i64) -> Result<i64> {
        let hash: [u8; 32] = Sha256::digest(labels.as_bytes()).into();
        sqlx::query(
            "INSERT IGNORE INTO series (tenant_id, metric, labels, labels_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(metric)
        .bind(labels)
        .bind(&hash[..])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM series WHERE tenant_id = ? AND metric = ? AND labels_hash = ?")
            .bind(tenant_id)
            .bind(metric)
            .bind(&hash[..])
            .fetch_one(&mut *tx)
            .await?)
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

    /// Multi-row `VALUES` with `ON DUPLICATE KEY UPDATE`.
    async fn merge_rollups(tx: &mut MySqlConnection, table: &str, deltas: &[((i64, i64), Summary)]) -> Result<()> {
        for chunk in deltas.chunks(Self::ROWS_PER_INSERT / 3) {
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
        Ok(())
    }

    /// `INSERT … SELECT` from the finer rows (`?` binds each value in place).
    async fn recompute_rollups(
        tx: &mut MySqlConnection,
        table: &str,
        width: i64,
        buckets: &HashSet<(i64, i64)>,
    ) -> Result<()> {
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
        for &(series, bucket) in buckets {
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
        Ok(())
    }
}

/// Text columns with a binary collation (`utf8mb4_bin`) arrive flagged as binary: read bytes.
fn text_column(row: &sqlx::mysql::MySqlRow, column: &str) -> Result<Option<String>> {
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes.map(|b| String::from_utf8(b).map_err(StoreError::corrupt)).transpose()
}

super::sql_alerts::sql_alert_store! {
    store: MySqlStore,
    db: sqlx::MySql,
    row: sqlx::mysql::MySqlRow,
    sql: crate::storage::sql_alerts::question_marks,
    text: text_column,
    insert_ignore: crate::storage::sql_alerts::insert_ignore,
}

super::status_pages::sql_status_page_store! {
    store: MySqlStore,
    row: sqlx::mysql::MySqlRow,
    sql: crate::storage::sql_alerts::question_marks,
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

super::sql_common::sql_common_store! {
    store: MySqlStore,
    db: sqlx::MySql,
    sql: crate::storage::sql_alerts::question_marks,
    chunk: crate::storage::tenancy::chunk_by_limit,
    upsert: crate::storage::sql_alerts::on_duplicate_key_update,
    share_lock: " LOCK IN SHARE MODE",
    metric_names: "SELECT DISTINCT CAST(metric AS CHAR CHARACTER SET utf8mb4) FROM series WHERE tenant_id = ? ORDER BY 1",
    series_with_last: crate::storage::sql_common::SERIES_WITH_LAST,
}
