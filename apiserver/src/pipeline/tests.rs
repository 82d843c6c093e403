use std::time::Duration;

use sqlx::Connection;

use super::*;
use crate::domain::Labels;
use crate::live::LiveHub;
use crate::storage::{Aggregation, PointQuery, open};

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample { metric: "m".into(), labels: Default::default(), ts: i as i64, value: 1.0, dedupe_id: None })
        .collect()
}

/// A migrated SQLite store in `dir`, and its URL (for more connections to the same file).
async fn sqlite_store(dir: &tempfile::TempDir, file: &str) -> (String, DynStore) {
    let url = format!("sqlite://{}", dir.path().join(file).display());
    let store = open(&url, false).await.unwrap();
    store.migrate().await.unwrap();
    (url, store)
}

/// A real SQLite database held locked by another connection stands in for a slow database.
#[tokio::test]
async fn a_full_queue_refuses_at_once_and_what_it_holds_is_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_store(&dir, "p.db").await;
    let tenant = store.create_tenant("t", None).await.unwrap();

    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();

    let hub = Arc::new(LiveHub::new(16, 16));
    let config = WriterConfig { queue_capacity: 10, max_group_samples: 100, dedupe_window: Duration::from_secs(60) };
    let (writer, task) = Writer::start(store.clone(), config, Telemetry::new(), vec![hub]);
    let first = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.submit(tenant.id, samples(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(writer.depth(), 10);
    assert!(matches!(writer.submit(tenant.id, samples(1)).await, Err(SubmitError::Overloaded)));
    assert!(!first.is_finished(), "no answer before the commit");

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let outcome = first.await.unwrap().unwrap();
    assert_eq!(outcome.accepted, 10);
    assert_eq!(writer.depth(), 0);
    let stored = store
        .query(&PointQuery {
            tenant_id: tenant.id,
            metric: "m".into(),
            matchers: Labels::new(),
            from: 0,
            to: 100,
            step: None,
            resolution: crate::storage::Resolution::Raw,
            agg: Aggregation::Avg,
            max_points: 100,
            last_sample_times: false,
        })
        .await
        .unwrap();
    assert_eq!(stored[0].points.len(), 10);

    // Dropping the last handle drains and stops the writer.
    drop(writer);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_waiting_submit_holds_until_there_is_room_then_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_store(&dir, "p.db").await;
    let tenant = store.create_tenant("t", None).await.unwrap();
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();

    let config = WriterConfig { queue_capacity: 10, max_group_samples: 100, dedupe_window: Duration::from_secs(60) };
    let (writer, _task) = Writer::start(store.clone(), config, Telemetry::new(), vec![]);
    let first = tokio::spawn({
        let writer = writer.clone();
        async move { writer.submit(tenant.id, samples(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn({
        let writer = writer.clone();
        async move { writer.submit_waiting(tenant.id, samples(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "waits for room instead of failing");
    assert!(matches!(writer.submit_waiting(tenant.id, samples(11)).await, Err(SubmitError::Overloaded)));

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().accepted, 10);
    assert_eq!(waiting.await.unwrap().unwrap().accepted, 5);
}

fn raw_query(tenant_id: i64, from: i64, to: i64) -> PointQuery {
    PointQuery {
        tenant_id,
        metric: "m".into(),
        matchers: Labels::new(),
        from,
        to,
        step: None,
        resolution: crate::storage::Resolution::Raw,
        agg: Aggregation::Avg,
        max_points: 100_000,
        last_sample_times: false,
    }
}

fn recent(now: i64, n: i64, value: f64) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            metric: "m".into(),
            labels: Default::default(),
            ts: now - 10_000 * i,
            value,
            dedupe_id: None,
        })
        .collect()
}

/// Fresh samples live in the head (no rows) and are read from it; a late sample takes the row
/// path; an overwrite in the head keeps the 1m rollup exact; a lost process (the task aborted,
/// the log left as it was) is replayed; a clean stop writes the head out and leaves no log.
#[tokio::test]
async fn the_head_serves_reads_survives_a_crash_by_its_log_and_is_written_out_at_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_store(&dir, "h.db").await;
    let wal = dir.path().join("h.db.head-wal");
    let tenant = store.create_tenant("t", None).await.unwrap();
    let config =
        WriterConfig { queue_capacity: 10_000, max_group_samples: 1000, dedupe_window: Duration::from_secs(60) };
    let now = crate::domain::now_ms();

    let (writer, task) =
        Writer::start_with_head(store.clone(), config.clone(), Telemetry::new(), vec![], &wal).await.unwrap();
    assert_eq!(writer.submit(tenant.id, recent(now, 5, 1.0)).await.unwrap().accepted, 5);
    // An overwrite of the newest sample, and one sample days ago (a closed window).
    writer.submit(tenant.id, recent(now, 1, 7.0)).await.unwrap();
    let mut late = recent(now - 3 * 86_400_000, 1, 2.0);
    late[0].dedupe_id = Some("late-1".into());
    writer.submit(tenant.id, late.clone()).await.unwrap();
    assert_eq!(writer.submit(tenant.id, late).await.unwrap().duplicates, 1, "dedupe ids work as before");

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM samples").fetch_one(&mut conn).await.unwrap();
    assert_eq!(rows, 1, "only the late sample is a row");
    let points = &store.query(&raw_query(tenant.id, now - 100_000, now)).await.unwrap()[0].points;
    assert_eq!(points.len(), 5);
    assert_eq!(points.last(), Some(&(now, 7.0)), "the last write wins");
    let mut minute = raw_query(tenant.id, now - 100_000, now);
    minute.resolution = crate::storage::Resolution::OneMinute;
    minute.agg = Aggregation::Sum;
    minute.step = Some(3_600_000);
    let sum: f64 = store.query(&minute).await.unwrap()[0].points.iter().map(|p| p.1).sum();
    assert_eq!(sum, 11.0, "4 × 1.0 + 7.0: the overwritten 1.0 is not counted");

    // A crash: the task is gone without writing anything out, the log stays.
    task.abort();
    let _ = task.await;
    drop(writer);
    let store = open(&url, false).await.unwrap();
    let (writer, task) =
        Writer::start_with_head(store.clone(), config.clone(), Telemetry::new(), vec![], &wal).await.unwrap();
    let points = &store.query(&raw_query(tenant.id, now - 100_000, now)).await.unwrap()[0].points;
    assert_eq!(points.len(), 5, "replayed from the log");
    assert_eq!(points.last(), Some(&(now, 7.0)));

    // A clean stop: rows in the database, no log left.
    drop(writer);
    task.await.unwrap();
    assert!(!wal.exists(), "no log after a clean stop");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM samples").fetch_one(&mut conn).await.unwrap();
    assert_eq!(rows, 6);
    let store = open(&url, false).await.unwrap();
    let (writer, _task) = Writer::start_with_head(store.clone(), config, Telemetry::new(), vec![], &wal).await.unwrap();
    // A new overwrite of a sample that is now a row: the head wins, the rollup counts it once.
    writer.submit(tenant.id, recent(now, 1, 3.0)).await.unwrap();
    let points = &store.query(&raw_query(tenant.id, now - 100_000, now)).await.unwrap()[0].points;
    assert_eq!(points.len(), 5);
    assert_eq!(points.last(), Some(&(now, 3.0)));
    let sum: f64 = store.query(&minute).await.unwrap()[0].points.iter().map(|p| p.1).sum();
    assert_eq!(sum, 7.0, "4 × 1.0 + 3.0");
}

async fn raw_points(store: &DynStore, tenant_id: i64, to: i64) -> usize {
    let series = store.query(&raw_query(tenant_id, 0, to)).await.unwrap();
    series.iter().map(|s| s.points.len()).sum()
}

/// The Redis queue against the test Redis (database 4 is this test's) and a real SQLite
/// database: a request is cut into entries of at most `ENTRY_SAMPLES`, one over the backlog's
/// bound is refused whole (nothing added), a worker reads at most its batch of samples at a
/// time, and committing takes exactly the committed samples off the backlog.
#[tokio::test]
async fn the_redis_backlog_is_exact_and_a_worker_reads_bounded_batches() {
    use ::redis::AsyncCommands;
    let base = std::env::var("MICRODASH_TEST_REDIS_URL").expect(
        "MICRODASH_TEST_REDIS_URL is not set: start the test services with `eval \"$(scripts/services.sh start)\"`",
    );
    let url = format!("{base}/4");
    let mut conn = redis::connect(&url).await.unwrap();
    let _: () = ::redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&format!("sqlite://{}", dir.path().join("p.db").display()), false).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("t", None).await.unwrap();
    let config = WriterConfig { queue_capacity: 5000, max_group_samples: 2000, dedupe_window: Duration::from_secs(60) };
    let producer = redis::Producer::new(&url, &config).await.unwrap();
    let backlog = |conn: &mut ::redis::aio::ConnectionManager| {
        let mut conn = conn.clone();
        async move {
            let entries: usize = conn.xlen(redis::STREAM).await.unwrap();
            let samples: Option<i64> = conn.get(redis::QUEUED).await.unwrap();
            (entries, samples.unwrap_or(0))
        }
    };

    // A count left over on an empty stream (an older version's) does not refuse anything.
    let _: () = conn.set(redis::QUEUED, 1_000_000).await.unwrap();
    assert_eq!(producer.submit(tenant.id, samples(2500)).await.unwrap().accepted, 2500);
    assert_eq!(backlog(&mut conn).await, (3, 2500), "2500 samples in entries of 1000, 1000 and 500");
    assert_eq!(producer.depth(), 2500);
    // 2501 more would pass 5000: refused whole, nothing added.
    assert!(matches!(producer.submit(tenant.id, samples(2501)).await, Err(SubmitError::Overloaded)));
    assert_eq!(backlog(&mut conn).await, (3, 2500));

    redis::ensure_group(&mut conn).await.unwrap();
    let mut reader = redis::Reader::new("w", 2000);
    let first = reader.next(&mut conn, Duration::ZERO).await.unwrap();
    assert_eq!((first.entries(), first.samples()), (2, 2000), "a batch holds at most 2000 samples");
    let second = reader.next(&mut conn, Duration::ZERO).await.unwrap();
    assert_eq!((second.entries(), second.samples()), (1, 500));
    assert_eq!(reader.next(&mut conn, Duration::ZERO).await.unwrap().entries(), 0);

    let telemetry = Telemetry::new();
    redis::commit(&mut conn, &store, &config, &telemetry, &[], first).await.unwrap();
    assert_eq!(backlog(&mut conn).await, (1, 500), "committed entries leave the stream and the backlog");
    assert_eq!(raw_points(&store, tenant.id, 10_000).await, 2000);
    redis::commit(&mut conn, &store, &config, &telemetry, &[], second).await.unwrap();
    assert_eq!(backlog(&mut conn).await, (0, 0));
    assert_eq!(raw_points(&store, tenant.id, 10_000).await, 2500);
    let pending: ::redis::streams::StreamPendingReply = conn.xpending(redis::STREAM, redis::GROUP).await.unwrap();
    assert_eq!(pending.count(), 0);
}

/// Writes that take no transaction do not read the tenant's row again for a moment
/// (`SeriesCache::tenants_alive`); a deletion still stops them: at once when this process
/// hears of it (`forget_tenant`, as the auth events do), and within `TENANT_ALIVE_FOR` when
/// only the database knows (another process deleted it and no event reached this one).
#[tokio::test]
async fn a_deleted_tenant_is_refused_though_writes_took_it_for_alive() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_store(&dir, "g.db").await;
    let config =
        WriterConfig { queue_capacity: 10_000, max_group_samples: 1000, dedupe_window: Duration::from_secs(60) };
    let (writer, _task) =
        Writer::start_with_head(store.clone(), config, Telemetry::new(), vec![], &dir.path().join("g.db.head-wal"))
            .await
            .unwrap();
    let now = crate::domain::now_ms();
    let heard = store.create_tenant("heard", None).await.unwrap();
    let unheard = store.create_tenant("unheard", None).await.unwrap();
    for tenant in [&heard, &unheard] {
        // The first write creates the series (a transaction); the next ones take the head alone.
        for value in [1.0, 2.0, 3.0] {
            assert_eq!(writer.submit(tenant.id, recent(now, 3, value)).await.unwrap().accepted, 3);
        }
    }

    // Deleted by another process (its own store on the same file): this one's caches still
    // hold both tenants and their series.
    let elsewhere = open(&url, false).await.unwrap();
    assert_eq!(elsewhere.mark_tenant_deleted("heard").await.unwrap(), Some(heard.id));
    store.forget_tenant(heard.id);
    assert!(matches!(writer.submit(heard.id, recent(now, 3, 4.0)).await, Err(SubmitError::TenantGone)));

    assert_eq!(elsewhere.mark_tenant_deleted("unheard").await.unwrap(), Some(unheard.id));
    tokio::time::sleep(crate::storage::TENANT_ALIVE_FOR + Duration::from_millis(100)).await;
    assert!(matches!(writer.submit(unheard.id, recent(now, 3, 4.0)).await, Err(SubmitError::TenantGone)));
}
