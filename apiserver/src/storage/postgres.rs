//! The PostgreSQL adapter. Bulk writes send whole columns as arrays (`UNNEST`), so one
//! statement carries thousands of rows with three binds.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{PgPool, Row};

use super::sql_common::SqlAdapter;
use super::{Result, SeriesCache, Summary};

pub struct PostgresStore {
    pool: PgPool,
    series_ids: SeriesCache,
    /// When this process last wrote into a closed window (see `ChunkStore::last_late_write`).
    late_writes: super::chunk_store::LateWrites,
    head: super::HeadSlot,
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

impl PostgresStore {
    pub async fn open(url: &str) -> Result<Self> {
        let pool = super::sql_common::server_pool().connect(url).await?;
        Ok(Self { pool, series_ids: SeriesCache::default(), late_writes: Default::default(), head: Default::default() })
    }
}

#[async_trait]
impl SqlAdapter for PostgresStore {
    type Db = sqlx::Postgres;

    const ROWS_PER_INSERT: usize = 5000;

    fn pool(&self) -> &sqlx::Pool<Self::Db> {
        &self.pool
    }

    async fn migrate_schema(&self) -> Result<()> {
        sqlx::migrate!("../migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    async fn insert_tenant(&self, name: &str, display_name: Option<&str>, now: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO tenants (name, display_name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(display_name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One statement: the ids not seen since `since` are (re)recorded and returned.
    async fn record_dedupe(
        tx: &mut PgConnection,
        tenant_id: i64,
        ids: &[&str],
        now: i64,
        since: i64,
    ) -> Result<HashSet<String>> {
        let fresh: Vec<String> = sqlx::query_scalar(
            "INSERT INTO dedupe (tenant_id, dedupe_id, seen_at) SELECT $1, id, $3 FROM UNNEST($2::text[]) AS id \
             ON CONFLICT (tenant_id, dedupe_id) DO UPDATE SET seen_at = excluded.seen_at \
             WHERE dedupe.seen_at < $4 RETURNING dedupe_id",
        )
        .bind(tenant_id)
        .bind(ids)
        .bind(now)
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        let fresh: HashSet<&str> = fresh.iter().map(String::as_str).collect();
        Ok(ids.iter().filter(|id| !fresh.contains(**id)).map(|id| id.to_string()).collect())
    }
    async fn series_id(tx: &mut PgConnection, tenant_id: i64, metric: &str, labels: &str, now: i64) -> Result<i64> {
        sqlx::query(
            "INSERT INTO series (tenant_id, metric, labels, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, metric, labels) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(metric)
        .bind(labels)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM series WHERE tenant_id = $1 AND metric = $2 AND labels = $3")
            .bind(tenant_id)
            .bind(metric)
            .bind(labels)
            .fetch_one(&mut *tx)
            .await?)
    }

    async fn insert_samples(tx: &mut PgConnection, rows: &[(i64, i64, f64)], upsert: bool) -> Result<u64> {
        let (series, ts, values) = columns(rows);
        let on_conflict = if upsert {
            "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
        } else {
            "ON CONFLICT (series_id, ts) DO NOTHING"
        };
        let sql = format!(
            "INSERT INTO samples (series_id, ts, value) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[]) {on_conflict}"
        );
        Ok(sqlx::query(&sql).bind(series).bind(ts).bind(values).execute(&mut *tx).await?.rows_affected())
    }

    /// The deltas go in as columns (`UNNEST`), one statement a table.
    async fn merge_rollups(tx: &mut PgConnection, table: &str, deltas: &[((i64, i64), Summary)]) -> Result<()> {
        let mut cols = RollupColumns::default();
        for ((series, bucket), s) in deltas {
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
        Ok(())
    }

    /// `INSERT … SELECT` from the finer rows.
    async fn recompute_rollups(
        tx: &mut PgConnection,
        table: &str,
        width: i64,
        buckets: &HashSet<(i64, i64)>,
    ) -> Result<()> {
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
        for &(series, bucket) in buckets {
            sqlx::query(&recompute).bind(series).bind(bucket).bind(bucket + width).execute(&mut *tx).await?;
        }
        Ok(())
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

super::status_pages::sql_status_page_store! {
    store: PostgresStore,
    row: PgRow,
    sql: crate::storage::sql_alerts::numbered,
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

/// A metric's series with the newest raw sample of each, by a lateral join.
const SERIES_WITH_LAST: &str = "SELECT s.id, s.labels, l.ts, l.value FROM series s \
     LEFT JOIN LATERAL (SELECT ts, value FROM samples WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) l ON true \
     WHERE s.tenant_id = ? AND s.metric = ? ORDER BY s.labels";

super::sql_common::sql_common_store! {
    store: PostgresStore,
    db: sqlx::Postgres,
    sql: crate::storage::sql_alerts::numbered,
    chunk: crate::storage::tenancy::chunk_by_subquery,
    upsert: crate::storage::sql_alerts::on_conflict_update,
    share_lock: " FOR SHARE",
    metric_names: "SELECT DISTINCT metric FROM series WHERE tenant_id = ? ORDER BY metric",
    series_with_last: SERIES_WITH_LAST,
}
