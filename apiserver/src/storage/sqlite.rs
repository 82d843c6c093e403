//! The SQLite adapter: the embedded default. One file, WAL journal, every write in one
//! transaction per group commit.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};

use super::sql_common::SqlAdapter;
use super::{Result, SeriesCache, StoreError, Summary};

pub struct SqliteStore {
    /// Reads (WAL mode: they never wait for the writer).
    pool: SqlitePool,
    /// Every statement that writes, on one connection. SQLite has one write lock, and a
    /// connection that finds it taken waits in its busy handler and retries, so a waiter loses
    /// to whoever asks right after each commit: with 8 clients writing rules (and SQLite's
    /// default handler, which slept 1, 2, 5 … 100 ms), a breach's sample waited up to 211 ms
    /// for the writer's turn. The pool's queue is first come, first served, and a write waits
    /// only as long as the writes before it. Another process's writes (`microdash apply -f`)
    /// are waited for by polling (`poll_when_busy`).
    writes: SqlitePool,
    series_ids: SeriesCache,
    /// When this process last wrote into a closed window (see `ChunkStore::last_late_write`).
    late_writes: super::chunk_store::LateWrites,
    head: super::HeadSlot,
    /// Taken by the writer and by every purge chunk (retention, deleted tenants), first come
    /// first served: SQLite has one write lock, and its busy handler lets a waiting writer
    /// lose to a purge that grabs the lock again right after each chunk (a group commit of
    /// another tenant once waited 1.1 s behind a tenant's purge).
    write_gate: tokio::sync::Mutex<()>,
    /// The background checkpointer (`checkpoint_forever`), stopped at close.
    checkpointer: tokio::task::AbortHandle,
}

/// How long a statement waits for a lock another process holds before it fails with
/// `SQLITE_BUSY` (the `busy_timeout` this replaces was 10 s too).
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Replaces SQLite's busy handler on a new connection with one that retries every 200 µs, then
/// every 1 ms, for `BUSY_WAIT`. `sqlite3_busy_timeout`'s handler sleeps 1, 2, 5, 10, 15, 20,
/// 25, 25, 25, 50, 50, then 100 ms between tries, so a connection that finds the lock taken by
/// another process writing back to back (`microdash apply -f` of 100 000 rules into the server's
/// file) misses every short gap between that process's commits: a breach's transition and its
/// outbox claim waited up to 230 ms each. The lock of a WAL database is a file lock that SQLite
/// only tries, so polling is the only way to be quick; a try costs a `fcntl` call.
///
/// The handler runs on sqlx's worker thread of the connection, never on the async runtime.
async fn poll_when_busy(conn: &mut sqlx::SqliteConnection) -> std::result::Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is the connection's open `sqlite3*`, locked for the call; the handler
    // is a plain function that reads no user data (the pointer passed is null).
    let status = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(handle.as_raw_handle().as_ptr(), Some(busy), std::ptr::null_mut())
    };
    if status != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(format!("sqlite3_busy_handler returned {status}").into()));
    }
    Ok(())
}

/// The number of short tries before the 1 ms ones.
const SHORT_TRIES: i32 = 50;
const SHORT_SLEEP: Duration = Duration::from_micros(200);
const LONG_SLEEP: Duration = Duration::from_millis(1);

/// SQLite's busy handler: `tries` is how often it was called for this lock; a non-zero result
/// tries again, zero gives up with `SQLITE_BUSY`.
unsafe extern "C" fn busy(_: *mut std::ffi::c_void, tries: std::ffi::c_int) -> std::ffi::c_int {
    #[cfg(test)]
    tests::BUSY_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::ffi::c_int::from(busy_sleep(tries).map(std::thread::sleep).is_some())
}

/// The sleep before try `tries + 1`, or `None` once `BUSY_WAIT` is spent.
fn busy_sleep(tries: i32) -> Option<Duration> {
    let short = SHORT_SLEEP * SHORT_TRIES as u32;
    let long_tries = ((BUSY_WAIT - short).as_micros() / LONG_SLEEP.as_micros()) as i32;
    match tries {
        t if t < SHORT_TRIES => Some(SHORT_SLEEP),
        t if t < SHORT_TRIES + long_tries => Some(LONG_SLEEP),
        _ => None,
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. `synchronous_full` fsyncs every commit,
    /// which also survives power loss; the default (NORMAL with WAL) survives a crash of the
    /// process, which is what a 2xx promises.
    pub async fn open(url: &str, synchronous_full: bool) -> Result<Self> {
        let parsed = SqliteConnectOptions::from_str(url)?;
        create_private(parsed.get_filename(), url).map_err(|e| StoreError::from(sqlx::Error::Io(e)))?;
        let options = parsed
            .create_if_missing(true)
            // Takes effect on a new file only (sqlx sets it before the journal mode, as SQLite
            // requires): compaction frees most of the pages raw samples took, and
            // `reclaim_space` returns them to the disk.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            // Also a new file's only: a compressed chunk is 1–3 KiB, and 4 KiB pages left 28 %
            // of the chunk table's pages unused (two chunks a page); 16 KiB pages about a tenth
            // (docs/storage.md "Space on SQLite").
            .page_size(16384)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
            .busy_timeout(BUSY_WAIT)
            .foreign_keys(true)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Checkpoints run in the background task below, not inside the writer's commits.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", WAL_LIMIT_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A range query reads `SERIES_IN_FLIGHT` series at once: those connections are
            // opened at start (sqlx does it in the background), not by the first dashboard.
            .min_connections(crate::storage::SERIES_IN_FLIGHT as u32)
            .after_connect(|conn, _| Box::pin(poll_when_busy(conn)))
            .connect_with(options.clone())
            .await?;
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_connect(|conn, _| Box::pin(poll_when_busy(conn)))
            .connect_with(options)
            .await?;
        let checkpointer = tokio::spawn(checkpoint_forever(pool.clone())).abort_handle();
        Ok(Self {
            pool,
            writes,
            series_ids: SeriesCache::default(),
            late_writes: Default::default(),
            head: Default::default(),
            write_gate: tokio::sync::Mutex::new(()),
            checkpointer,
        })
    }

    /// Rebuilds `tenants`, `tokens` and `series` with `AUTOINCREMENT` where they lack it (the
    /// schema before migration 0004), so their ids are never handed out twice: a plain
    /// `INTEGER PRIMARY KEY` gives the largest id again once its row is deleted, and a deleted
    /// tenant's leftovers (rollups, streams) then belonged to whoever got it next.
    ///
    /// Not a migration file: rebuilding a table others reference needs `PRAGMA foreign_keys =
    /// OFF` (with them on, `DROP TABLE tenants` cascades to every child row), and SQLite ignores
    /// that pragma inside a transaction, which is where sqlx runs every migration. Here it runs
    /// on one connection, in one transaction of its own: all or nothing, and idempotent.
    async fn rebuild_with_autoincrement(&self) -> Result<()> {
        const TABLES: [&str; 3] = ["tenants", "tokens", "series"];
        let mut todo = Vec::new();
        for table in TABLES {
            let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(table)
                .fetch_one(&self.pool)
                .await?;
            if !sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
                todo.push((table, sql));
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *conn).await?;
        let result = async {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            for (table, sql) in &todo {
                let indexes: Vec<String> = sqlx::query_scalar(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                )
                .bind(table)
                .fetch_all(&mut *tx)
                .await?;
                let create = sql
                    .replacen(&format!("CREATE TABLE {table}"), &format!("CREATE TABLE {table}_rebuilt"), 1)
                    .replacen("INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT", 1);
                if !create.contains(&format!("{table}_rebuilt")) {
                    return Err(StoreError::Database(super::DatabaseError::new(format!(
                        "unexpected schema of table {table}: {sql}"
                    ))));
                }
                sqlx::query(&create).execute(&mut *tx).await?;
                sqlx::query(&format!("INSERT INTO {table}_rebuilt SELECT * FROM {table}")).execute(&mut *tx).await?;
                sqlx::query(&format!("DROP TABLE {table}")).execute(&mut *tx).await?;
                sqlx::query(&format!("ALTER TABLE {table}_rebuilt RENAME TO {table}")).execute(&mut *tx).await?;
                for index in indexes {
                    sqlx::query(&index).execute(&mut *tx).await?;
                }
            }
            // Ids freed before this rebuild stay unused too, as far as rows that point at them
            // tell: rollups that the old SQLite deletion left behind keep their series id.
            for (table, used) in [
                ("tenants", "SELECT MAX(id) FROM (SELECT MAX(id) AS id FROM tenants UNION ALL SELECT MAX(tenant_id) FROM series \
                  UNION ALL SELECT MAX(tenant_id) FROM dedupe UNION ALL SELECT MAX(tenant_id) FROM alert_transitions \
                  UNION ALL SELECT MAX(tenant_id) FROM notifications)"),
                ("tokens", "SELECT MAX(id) FROM tokens"),
                ("series", "SELECT MAX(id) FROM (SELECT MAX(id) AS id FROM series UNION ALL SELECT MAX(series_id) FROM samples \
                  UNION ALL SELECT MAX(series_id) FROM rollup_1m UNION ALL SELECT MAX(series_id) FROM rollup_5m)"),
            ] {
                let max: Option<i64> = sqlx::query_scalar(used).fetch_one(&mut *tx).await?;
                sqlx::query("DELETE FROM sqlite_sequence WHERE name = ?").bind(table).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
                    .bind(table)
                    .bind(max.unwrap_or(0))
                    .execute(&mut *tx)
                    .await?;
            }
            // Rollup rows of series that no longer exist (left by the old deletion) go.
            for table in ["rollup_1m", "rollup_5m"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE series_id NOT IN (SELECT id FROM series)"))
                    .execute(&mut *tx)
                    .await?;
            }
            let broken: Vec<sqlx::sqlite::SqliteRow> =
                sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut *tx).await?;
            if !broken.is_empty() {
                return Err(StoreError::Database(super::DatabaseError::new(format!(
                    "{} rows break a foreign key after rebuilding tables; nothing was changed",
                    broken.len()
                ))));
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
        if result.is_ok() {
            tracing::info!(tables = ?todo.iter().map(|(t, _)| *t).collect::<Vec<_>>(), "Rebuilt tables so their ids are never reused.");
        }
        result
    }
}

/// How long a clean stop waits for borrowed connections to come back.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a clean stop copies the write-ahead log into the database before closing.
const COPY_AT_CLOSE: Duration = Duration::from_secs(60);

#[async_trait]
impl SqlAdapter for SqliteStore {
    type Db = sqlx::Sqlite;

    /// 3 binds a row, well under SQLite's 32766 variable limit.
    const ROWS_PER_INSERT: usize = 2000;

    fn pool(&self) -> &sqlx::Pool<Self::Db> {
        &self.pool
    }

    fn writes(&self) -> &sqlx::Pool<Self::Db> {
        &self.writes
    }

    /// A transaction that will write. `BEGIN IMMEDIATE` takes SQLite's write lock at the start,
    /// waiting (busy timeout) for another writer to finish; a plain `BEGIN` that reads first
    /// fails at once with "database is locked" when it must upgrade to a write lock that another
    /// connection took meanwhile (seen under concurrent rule PUTs from the operator).
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writes.begin_with("BEGIN IMMEDIATE").await
    }

    /// The gate of the writer and of every purge or compaction chunk (see `write_gate`).
    async fn purge_gate(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.write_gate.lock().await)
    }

    async fn migrate_schema(&self) -> Result<()> {
        sqlx::migrate!("../migrations/sqlite").run(&self.pool).await?;
        self.rebuild_with_autoincrement().await
    }

    async fn close_pool(&self) {
        let _gate = self.write_gate.lock().await;
        // The last connection to close checkpoints the log into the database and deletes it.
        // An explicit `wal_checkpoint(TRUNCATE)` is not used: it waits `BUSY_WAIT` (10 s) for
        // any reader, and a statement left unfinished by a task cancelled at shutdown is one;
        // closing the connections finalizes such statements instead. But that last close copies
        // the whole log within `CLOSE_TIMEOUT`, and a log of a few hundred MB (a compaction's, or
        // the head written out as rows) took longer: the process exited mid-copy and left it
        // (286 MB after the disk bench's clean stop, which counts it). So the log is copied first,
        // PASSIVE (no waiting for readers), with the checkpointer stopped so that it does not hold
        // the checkpoint; the close then has only the rest to copy.
        self.checkpointer.abort();
        let started = std::time::Instant::now();
        match tokio::time::timeout(COPY_AT_CLOSE, copy_log(&self.pool)).await {
            Ok(Ok(frames)) => {
                tracing::debug!(frames, elapsed = ?started.elapsed(), "Copied the write-ahead log into the database.")
            }
            Ok(Err(err)) => tracing::warn!(%err, "Copying the write-ahead log into the database at stop failed."),
            Err(_) => tracing::warn!(
                timeout = ?COPY_AT_CLOSE,
                "Copying the write-ahead log into the database took too long; SQLite replays it on the next start."
            ),
        }
        let closed = async {
            self.writes.close().await;
            self.pool.close().await;
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closed).await.is_err() {
            tracing::warn!(
                timeout = ?CLOSE_TIMEOUT,
                "Database connections were still in use at shutdown; SQLite replays its log on the next start."
            );
        }
    }

    async fn reclaim_on_migrate(&self) -> Result<bool> {
        let _gate = self.write_gate.lock().await;
        let mut conn = self.pool.acquire().await?;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&mut *conn).await?;
        if mode == 2 {
            return Ok(false);
        }
        // The mode of a file that has tables changes only with a VACUUM on the same connection.
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL").execute(&mut *conn).await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        Ok(true)
    }

    async fn insert_tenant(&self, name: &str, display_name: Option<&str>, now: i64) -> Result<Option<i64>> {
        let result = sqlx::query(
            "INSERT INTO tenants (name, display_name, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(display_name)
        .bind(now)
        .execute(self.writes())
        .await?;
        Ok((result.rows_affected() > 0).then_some(result.last_insert_rowid()))
    }

    /// Returns the dedupe ids of `ids` that were already seen since `since`, recording the rest.
    async fn record_dedupe(
        tx: &mut sqlx::SqliteConnection,
        tenant_id: i64,
        ids: &[&str],
        now: i64,
        since: i64,
    ) -> Result<HashSet<String>> {
        let mut fresh: HashSet<String> = HashSet::with_capacity(ids.len());
        for chunk in ids.chunks(Self::ROWS_PER_INSERT) {
            let mut qb = QueryBuilder::new("INSERT INTO dedupe (tenant_id, dedupe_id, seen_at) ");
            qb.push_values(chunk, |mut row, id| {
                row.push_bind(tenant_id).push_bind(*id).push_bind(now);
            });
            qb.push(
                " ON CONFLICT (tenant_id, dedupe_id) DO UPDATE SET seen_at = excluded.seen_at WHERE dedupe.seen_at < ",
            )
            .push_bind(since)
            .push(" RETURNING dedupe_id");
            let rows: Vec<String> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            fresh.extend(rows);
        }
        Ok(ids.iter().filter(|id| !fresh.contains(**id)).map(|id| id.to_string()).collect())
    }
    async fn series_id(
        tx: &mut sqlx::SqliteConnection,
        tenant_id: i64,
        metric: &str,
        labels: &str,
        now: i64,
    ) -> Result<i64> {
        sqlx::query(
            "INSERT INTO series (tenant_id, metric, labels, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id, metric, labels) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(metric)
        .bind(labels)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM series WHERE tenant_id = ? AND metric = ? AND labels = ?")
            .bind(tenant_id)
            .bind(metric)
            .bind(labels)
            .fetch_one(&mut *tx)
            .await?)
    }

    async fn insert_samples(tx: &mut sqlx::SqliteConnection, rows: &[(i64, i64, f64)], upsert: bool) -> Result<u64> {
        let mut qb = QueryBuilder::new("INSERT INTO samples (series_id, ts, value) ");
        qb.push_values(rows, |mut row, (series, ts, value)| {
            row.push_bind(series).push_bind(ts).push_bind(value);
        });
        qb.push(if upsert {
            " ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
        } else {
            " ON CONFLICT (series_id, ts) DO NOTHING"
        });
        Ok(qb.build().execute(&mut *tx).await?.rows_affected())
    }

    /// Multi-row `VALUES` upserts that add to the bucket (`excluded`).
    async fn merge_rollups(
        tx: &mut sqlx::SqliteConnection,
        table: &str,
        deltas: &[((i64, i64), Summary)],
    ) -> Result<()> {
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
            qb.push(format!(
                " ON CONFLICT (series_id, bucket) DO UPDATE SET count = {table}.count + excluded.count, \
             sum = {table}.sum + excluded.sum, min = min({table}.min, excluded.min), \
             max = max({table}.max, excluded.max), \
             last = CASE WHEN excluded.last_ts >= {table}.last_ts THEN excluded.last ELSE {table}.last END, \
             last_ts = max({table}.last_ts, excluded.last_ts)"
            ));
            qb.build().execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// `INSERT … SELECT` from the finer rows; `?1` etc. bind each value once.
    async fn recompute_rollups(
        tx: &mut sqlx::SqliteConnection,
        table: &str,
        width: i64,
        buckets: &HashSet<(i64, i64)>,
    ) -> Result<()> {
        let (source, value, count, sum, min, max, ts, key) = if width == 60_000 {
            ("samples", "value", "count(*)", "sum(value)", "min(value)", "max(value)", "ts", "ts")
        } else {
            ("rollup_1m", "last", "sum(count)", "sum(sum)", "min(min)", "max(max)", "last_ts", "bucket")
        };
        let recompute = format!(
            "INSERT INTO {table} (series_id, bucket, count, sum, min, max, last, last_ts) \
         SELECT ?1, ?2, {count}, {sum}, {min}, {max}, \
                (SELECT {value} FROM {source} WHERE series_id = ?1 AND {key} >= ?2 AND {key} < ?3 ORDER BY {ts} DESC LIMIT 1), \
                max({ts}) \
         FROM {source} WHERE series_id = ?1 AND {key} >= ?2 AND {key} < ?3 \
         ON CONFLICT (series_id, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum, \
         min = excluded.min, max = excluded.max, last = excluded.last, last_ts = excluded.last_ts"
        );
        for &(series, bucket) in buckets {
            sqlx::query(&recompute).bind(series).bind(bucket).bind(bucket + width).execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// Creates the database file readable by its owner only (0600) when it does not exist yet:
/// it holds every tenant's data. SQLite gives its `-wal` and `-shm` files the same mode.
fn create_private(path: &std::path::Path, url: &str) -> std::io::Result<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || url.contains("mode=memory") {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A folder that does not exist: let SQLite say so as it always did.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The write-ahead log's size past which the checkpointer makes the writer wait for a full
/// checkpoint that also truncates the log; also the size SQLite cuts a log back to when it
/// starts over (`journal_size_limit`: otherwise the file keeps the size of its largest
/// transaction, e.g. a compaction's, even after a clean stop).
const WAL_LIMIT_BYTES: i64 = 64 << 20;

/// Copies the whole write-ahead log into the database, then truncates it: PASSIVE checkpoints
/// (they never wait for readers) until one reports every frame copied. A checkpoint still
/// running elsewhere (the checkpointer's, aborted at close, finishes on its connection's thread)
/// makes one report "busy" without copying anything: it is tried again. The frames copied.
async fn copy_log(pool: &SqlitePool) -> sqlx::Result<i64> {
    loop {
        // (busy, frames in the log, frames copied)
        let (busy, frames, copied) =
            sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await?;
        if busy == 0 && copied >= frames {
            // Nothing left to copy: the truncation only resets the file (and waits for no reader
            // that matters: the close comes next anyway).
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool),
            )
            .await;
            return Ok(frames);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `WAL_LIMIT_BYTES` in frames of the file's pages (a frame is a page; 16 KiB in a new file,
/// 4 KiB in one created before that, so counting frames alone let the log reach 256 MiB).
fn wal_limit_frames(page_size: i64) -> i64 {
    WAL_LIMIT_BYTES / page_size.max(512)
}

/// Copies the write-ahead log into the database every second, without blocking the writer
/// (PASSIVE), so the writer's commits do not pay for checkpoints. Under a steady stream of
/// commits the log never empties that way: the writer appends while the copy runs, and the log
/// only starts over once it was copied whole. So past `WAL_TRUNCATE_FRAMES` the writer waits
/// for one TRUNCATE checkpoint: a short pause (most of the log is already copied) that resets
/// the log (the MQTT bulk bench had let it reach 470 MB).
async fn checkpoint_forever(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut limit = None;
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if limit.is_none() {
            limit = sqlx::query_scalar::<_, i64>("PRAGMA page_size").fetch_one(&pool).await.ok().map(wal_limit_frames);
        }
        let limit = limit.unwrap_or_else(|| wal_limit_frames(4096));
        // (busy, frames in the log, frames copied)
        let passive = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
        let result = match passive {
            Ok((_, frames, _)) if frames > limit => {
                tracing::debug!(frames, "Write-ahead log over its limit; truncating it.");
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(err) = result {
            tracing::debug!(%err, "WAL checkpoint failed; will retry.");
        }
    }
}

fn text_column(row: &sqlx::sqlite::SqliteRow, column: &str) -> Result<Option<String>> {
    Ok(row.try_get(column)?)
}

super::sql_alerts::sql_alert_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    row: sqlx::sqlite::SqliteRow,
    sql: crate::storage::sql_alerts::question_marks,
    text: text_column,
    insert_ignore: crate::storage::sql_alerts::on_conflict_do_nothing,
}

super::status_pages::sql_status_page_store! {
    store: SqliteStore,
    row: sqlx::sqlite::SqliteRow,
    sql: crate::storage::sql_alerts::question_marks,
    insert_ignore: crate::storage::sql_alerts::on_conflict_do_nothing,
}

super::tenancy::sql_tenancy_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    sql: crate::storage::sql_alerts::question_marks,
    chunk: crate::storage::tenancy::chunk_by_subquery,
    series_keys: "SELECT metric, labels FROM series WHERE tenant_id = ?",
}

super::chunk_store::sql_chunk_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    sql: crate::storage::sql_alerts::question_marks,
    chunk: crate::storage::tenancy::chunk_by_subquery,
    lock: "",
    insert_ignore: "INSERT",
    on_conflict_nothing: " ON CONFLICT DO NOTHING",
    nulls: ("NULL", "NULL", "NULL"),
    reclaim: "PRAGMA incremental_vacuum",
}

super::sql_common::sql_common_store! {
    store: SqliteStore,
    db: sqlx::Sqlite,
    sql: crate::storage::sql_alerts::question_marks,
    chunk: crate::storage::tenancy::chunk_by_subquery,
    upsert: crate::storage::sql_alerts::on_conflict_update,
    share_lock: "",
    metric_names: "SELECT DISTINCT metric FROM series WHERE tenant_id = ? ORDER BY metric",
    series_with_last: crate::storage::sql_common::SERIES_WITH_LAST,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use sqlx::Connection;

    use super::*;
    use crate::storage::Store;

    /// How often `busy` ran, in this test binary.
    pub(super) static BUSY_CALLS: AtomicU64 = AtomicU64::new(0);

    #[test]
    fn the_busy_handler_gives_up_after_the_busy_wait() {
        let waited: Duration = (0..).map_while(busy_sleep).sum();
        assert_eq!(waited, BUSY_WAIT);
        assert_eq!(busy_sleep(0), Some(SHORT_SLEEP));
        assert_eq!(busy_sleep(SHORT_TRIES), Some(LONG_SLEEP));
    }

    /// Another process holds the write lock for 200 ms; the store's write waits, tries often
    /// (SQLite's own handler would try about ten times in 200 ms, sleeping up to 50 ms between
    /// tries) and succeeds once the lock is free.
    #[tokio::test]
    async fn a_write_polls_for_a_lock_another_process_holds_and_succeeds_once_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("busy.db").display());
        let store = SqliteStore::open(&url, false).await.unwrap();
        store.migrate().await.unwrap();
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        let before = BUSY_CALLS.load(Ordering::Relaxed);
        let write = tokio::spawn(async move { store.create_tenant("waits", None).await.map(|t| t.name) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!write.is_finished(), "the write went through while another connection held the lock");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        assert_eq!(write.await.unwrap().unwrap(), "waits");
        let tries = BUSY_CALLS.load(Ordering::Relaxed) - before;
        assert!(tries > 20, "the write tried {tries} times in 200 ms");
    }

    /// A new file gets 16 KiB pages (chunks pack into them); a file made with other pages
    /// keeps them, since a WAL database cannot change its page size without a rewrite.
    #[tokio::test]
    async fn a_new_file_has_16_kib_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |url: String| async move {
            let store = SqliteStore::open(&url, false).await.unwrap();
            store.migrate().await.unwrap();
            let size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&store.pool).await.unwrap();
            store.close_pool().await;
            size
        };
        let new = format!("sqlite://{}", dir.path().join("new.db").display());
        assert_eq!(page_size(new.clone()).await, 16384);
        assert_eq!(page_size(new).await, 16384, "reopened");

        let old = dir.path().join("old.db");
        {
            let mut conn =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", old.display())).await.unwrap();
            sqlx::query("PRAGMA page_size = 4096").execute(&mut conn).await.unwrap();
            sqlx::query("PRAGMA journal_mode = WAL").execute(&mut conn).await.unwrap();
            sqlx::query("CREATE TABLE before_us (x INTEGER)").execute(&mut conn).await.unwrap();
        }
        assert_eq!(page_size(format!("sqlite://{}", old.display())).await, 4096);
    }

    /// A transaction larger than the log's limit (a compaction's, a clean stop's flush) leaves
    /// a log of its size; the checkpointer cuts it back within seconds, whatever the page size
    /// (it counted 4 KiB frames, so 16 KiB pages let 256 MiB stay).
    #[tokio::test]
    async fn a_log_past_its_limit_is_cut_back_by_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.db");
        let store = SqliteStore::open(&format!("sqlite://{}", file.display()), false).await.unwrap();
        let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit").fetch_one(&store.pool).await.unwrap();
        assert_eq!(limit, WAL_LIMIT_BYTES);
        let mut tx = store.writes.begin().await.unwrap();
        sqlx::query("CREATE TABLE filler (data BLOB)").execute(&mut *tx).await.unwrap();
        for _ in 0..80 {
            sqlx::query("INSERT INTO filler VALUES (randomblob(1048576))").execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        let wal = dir.path().join("big.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size() > WAL_LIMIT_BYTES as u64, "the transaction's log: {} bytes", size());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size() > WAL_LIMIT_BYTES as u64 {
            assert!(std::time::Instant::now() < deadline, "the log still holds {} bytes after 30 s", size());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM filler").fetch_one(&store.pool).await.unwrap();
        assert_eq!(rows, 80, "and nothing was lost");
        store.close_pool().await;
    }

    /// A clean stop right after a large transaction copies its log into the database and
    /// deletes it: the disk bench's stop had left 286 MB of log, counted as disk use.
    #[tokio::test]
    async fn a_clean_close_leaves_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("closed.db");
        let url = format!("sqlite://{}", file.display());
        let store = SqliteStore::open(&url, false).await.unwrap();
        let mut tx = store.writes.begin().await.unwrap();
        sqlx::query("CREATE TABLE filler (data BLOB)").execute(&mut *tx).await.unwrap();
        for _ in 0..96 {
            sqlx::query("INSERT INTO filler VALUES (randomblob(1048576))").execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        // A reader still holding a statement at the stop, as a cancelled task's would.
        let mut reader = store.pool.acquire().await.unwrap();
        let _count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM filler").fetch_one(&mut *reader).await.unwrap();
        drop(reader);
        store.close_pool().await;
        let wal = dir.path().join("closed.db-wal");
        assert!(
            !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
            "a log of {:?} bytes was left",
            std::fs::metadata(&wal).map(|m| m.len())
        );
        assert!(std::fs::metadata(&file).unwrap().len() > 96 << 20, "the database holds the rows");
        let store = SqliteStore::open(&url, false).await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM filler").fetch_one(&store.pool).await.unwrap();
        assert_eq!(rows, 96);
        store.close_pool().await;
    }
}
