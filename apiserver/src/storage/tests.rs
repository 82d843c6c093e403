//! The storage suite: the same scenarios for every backend (SQLite here; the others plug in
//! by calling `suite`), plus the pure helpers.

use super::*;
use crate::domain::{Sample, Token};
use microdash_model::Scope;

mod tenancy;

fn s(metric: &str, host: &str, ts: i64, value: f64, dedupe: Option<&str>) -> Sample {
    Sample {
        metric: metric.into(),
        labels: Labels::from([("host".to_string(), host.to_string())]).into(),
        ts,
        value,
        dedupe_id: dedupe.map(str::to_string),
    }
}

fn outcome(accepted: usize, duplicates: usize) -> WriteOutcome {
    WriteOutcome { accepted, duplicates, ..Default::default() }
}

#[test]
fn aggregation_buckets_by_step() {
    let points = [(0, 1.0), (500, 3.0), (1000, 10.0), (2500, 4.0), (2999, 2.0)];
    assert_eq!(aggregate(&points, 1000, Aggregation::Avg), vec![(0, 2.0), (1000, 10.0), (2000, 3.0)]);
    assert_eq!(aggregate(&points, 1000, Aggregation::Max), vec![(0, 3.0), (1000, 10.0), (2000, 4.0)]);
    assert_eq!(aggregate(&points, 1000, Aggregation::Min), vec![(0, 1.0), (1000, 10.0), (2000, 2.0)]);
    assert_eq!(aggregate(&points, 1000, Aggregation::Sum), vec![(0, 4.0), (1000, 10.0), (2000, 6.0)]);
    assert_eq!(aggregate(&points, 1000, Aggregation::Count), vec![(0, 2.0), (1000, 1.0), (2000, 2.0)]);
    assert_eq!(aggregate(&points, 1000, Aggregation::Last), vec![(0, 3.0), (1000, 10.0), (2000, 2.0)]);
    assert!(aggregate(&[], 1000, Aggregation::Avg).is_empty());
}

#[test]
fn repeats_within_a_batch_are_duplicates() {
    let batch = [
        s("a", "x", 1, 1.0, Some("1")),
        s("a", "x", 2, 1.0, Some("1")),
        s("a", "x", 3, 1.0, None),
        s("a", "x", 4, 1.0, Some("2")),
    ];
    let seen = HashSet::from(["2"]);
    let (keep, dups) = split_duplicates(&batch, &seen);
    assert_eq!(dups, vec![1, 3]);
    assert_eq!(keep.iter().map(|s| s.ts).collect::<Vec<_>>(), vec![1, 3]);
}

#[test]
fn last_write_wins_per_series_and_ts() {
    let mut rows = vec![(1, 10, 1.0), (2, 10, 2.0), (1, 10, 3.0), (1, 11, 4.0)];
    last_wins(&mut rows);
    assert_eq!(rows, vec![(1, 10, 3.0), (2, 10, 2.0), (1, 11, 4.0)]);
}

/// Behaviour every backend must share.
pub async fn suite(store: DynStore) {
    store.migrate().await.unwrap();
    let a = store.create_tenant("team-a", Some("Team A")).await.unwrap();
    let b = store.create_tenant("team-b", None).await.unwrap();
    assert!(matches!(store.create_tenant("team-a", None).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.list_tenants().await.unwrap().len(), 2);

    // Tokens resolve to their tenant only.
    let token = Token::generate();
    let token_id = store
        .create_token(a.id, &token.hash(), &token.display_prefix(), &[Scope::Ingest, Scope::Read], None)
        .await
        .unwrap()
        .token_id;
    match store.find_token(&token.hash()).await.unwrap() {
        Some(Principal::Tenant { tenant_id, tenant, token_id: id, scopes, expires_at: None }) => {
            assert_eq!((tenant_id, tenant.as_str(), id), (a.id, "team-a", token_id));
            assert_eq!(scopes, vec![Scope::Ingest, Scope::Read]);
        }
        other => panic!("{other:?}"),
    }
    assert!(store.find_token(&Token::generate().hash()).await.unwrap().is_none());

    // Writes, dedupe and last-write-wins.
    let now = 1_000_000;
    let batch_a =
        [s("cpu", "h1", 1000, 1.0, Some("d1")), s("cpu", "h2", 1000, 2.0, None), s("cpu", "h1", 2000, 3.0, None)];
    let batch_b = [s("cpu", "h1", 1000, 99.0, None), s("mem", "h9", 1000, 5.0, Some("d1"))];
    let out = store
        .write(
            &[WriteBatch { tenant_id: a.id, samples: &batch_a }, WriteBatch { tenant_id: b.id, samples: &batch_b }],
            now,
            0,
        )
        .await
        .unwrap();
    assert_eq!(out, vec![outcome(3, 0), outcome(2, 0)]);
    let again = [s("cpu", "h1", 1000, 7.0, Some("d1")), s("cpu", "h1", 2000, 4.0, None)];
    let out = store.write(&[WriteBatch { tenant_id: a.id, samples: &again }], now, 0).await.unwrap();
    assert_eq!(
        out,
        vec![WriteOutcome { accepted: 1, duplicates: 1, duplicate_indices: vec![0], ..Default::default() }]
    );
    // Within one batch too, the last sample of a (series, ts) wins.
    let twice = [s("cpu", "h2", 5000, 1.0, None), s("cpu", "h2", 5000, 2.0, None)];
    store.write(&[WriteBatch { tenant_id: a.id, samples: &twice }], now, 0).await.unwrap();
    let h2 = Labels::from([("host".to_string(), "h2".to_string())]);
    assert_eq!(store.series(a.id, "cpu", &h2).await.unwrap()[0].last, Some((5000, 2.0)));
    // Past the window the same id is new again.
    let out = store.write(&[WriteBatch { tenant_id: a.id, samples: &again[..1] }], now + 10, now + 5).await.unwrap();
    assert_eq!(out, vec![outcome(1, 0)]);

    assert_eq!(store.metric_names(a.id).await.unwrap(), vec!["cpu"]);
    assert_eq!(store.metric_names(b.id).await.unwrap(), vec!["cpu", "mem"]);

    let h1 = Labels::from([("host".to_string(), "h1".to_string())]);
    let series = store.series(a.id, "cpu", &Labels::new()).await.unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(store.series(a.id, "cpu", &h1).await.unwrap()[0].last, Some((2000, 4.0)));

    let query = PointQuery {
        tenant_id: a.id,
        metric: "cpu".into(),
        matchers: h1.clone(),
        from: 0,
        to: 10_000,
        step: None,
        resolution: Resolution::Raw,
        agg: Aggregation::Avg,
        max_points: 1000,
        last_sample_times: false,
    };
    let result = store.query(&query).await.unwrap();
    assert_eq!(result, vec![SeriesPoints { labels: h1.clone(), points: vec![(1000, 7.0), (2000, 4.0)] }]);
    let stepped =
        store.query(&PointQuery { step: Some(10_000), matchers: Labels::new(), ..query.clone() }).await.unwrap();
    assert_eq!(stepped.iter().map(|s| s.points.clone()).collect::<Vec<_>>(), vec![vec![(0, 5.5)], vec![(0, 2.0)]]);
    assert!(matches!(
        store.query(&PointQuery { max_points: 1, ..query.clone() }).await,
        Err(StoreError::TooManyPoints(_))
    ));
    // The other tenant's identical series is untouched.
    let other = store.query(&PointQuery { tenant_id: b.id, ..query.clone() }).await.unwrap();
    assert_eq!(other[0].points, vec![(1000, 99.0)]);

    // Dedupe ids expire.
    assert!(store.purge_dedupe(now + 100, 10_000).await.unwrap() >= 1);

    // Dashboards are per tenant.
    store.put_dashboard(a.id, "main", "{\"name\":\"main\"}", now).await.unwrap();
    assert_eq!(store.list_dashboards(a.id).await.unwrap().len(), 1);
    assert!(store.list_dashboards(b.id).await.unwrap().is_empty());
    assert!(!store.delete_dashboard(b.id, "main").await.unwrap());
    assert!(store.delete_dashboard(a.id, "main").await.unwrap());

    // Retention deletes old points of one tenant and resolution only.
    let old = [s("old", "h1", 1_000, 1.0, None), s("old", "h1", 200_000, 2.0, None)];
    store.write(&[WriteBatch { tenant_id: a.id, samples: &old }], now, 0).await.unwrap();
    store.write(&[WriteBatch { tenant_id: b.id, samples: &old }], now, 0).await.unwrap();
    // Tenant A's raw points before 100 s: cpu at 1, 2 and 5 s and old at 1 s; in chunks of 2.
    assert_eq!(store.purge(a.id, Resolution::Raw, 100_000, 2).await.unwrap(), 2);
    assert_eq!(store.purge(a.id, Resolution::Raw, 100_000, 10).await.unwrap(), 3);
    assert_eq!(store.purge(a.id, Resolution::Raw, 100_000, 10).await.unwrap(), 0);
    assert!(store.purge(a.id, Resolution::OneMinute, 60_000, 10).await.unwrap() >= 1);
    assert_eq!(store.purge(a.id, Resolution::FiveMinutes, 0, 10).await.unwrap(), 0);
    let old_q = PointQuery { metric: "old".into(), matchers: Labels::new(), ..query.clone() };
    let raw_a = store.query(&PointQuery { to: 1_000_000, ..old_q.clone() }).await.unwrap();
    assert_eq!(raw_a[0].points, vec![(200_000, 2.0)]);
    let raw_b = store.query(&PointQuery { tenant_id: b.id, to: 1_000_000, ..old_q.clone() }).await.unwrap();
    assert_eq!(raw_b[0].points.len(), 2, "the other tenant keeps its points");
    let five = store
        .query(&PointQuery {
            to: 1_000_000,
            resolution: Resolution::FiveMinutes,
            agg: Aggregation::Count,
            ..old_q.clone()
        })
        .await
        .unwrap();
    assert_eq!(five[0].points, vec![(0, 2.0)], "the 5m rollup still summarizes both");
    assert!(
        store.set_retention("team-a", &Retention { raw_ms: Some(3_600_000), ..Retention::default() }).await.unwrap()
    );
    assert_eq!(store.get_tenant("team-a").await.unwrap().unwrap().retention.raw_ms, Some(3_600_000));
    assert!(!store.set_retention("nobody", &Retention::default()).await.unwrap());

    // Deleting a tenant removes its data and tokens.
    assert!(store.delete_tenant("team-a").await.unwrap());
    assert!(store.find_token(&token.hash()).await.unwrap().is_none());
    assert!(store.get_tenant("team-a").await.unwrap().is_none());
    assert!(!store.delete_tenant("team-a").await.unwrap());
}

/// Compaction, reads across chunks and raw rows, retention by whole chunks, the series' last
/// point from a chunk, and a tenant's deletion taking its chunks along: on every backend.
pub async fn chunk_suite(store: DynStore) {
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("chunky", None).await.unwrap();
    let hour = 3_600_000;
    let now = 50 * hour;
    // Two series over 5 h at 10 s: windows [0, 2h), [2h, 4h), [4h, 6h).
    let samples: Vec<Sample> = (0..1800i64)
        .flat_map(|i| {
            let ts = i * 10_000 + i % 7;
            [s("cpu", "a", ts, (i % 100) as f64 / 4.0, None), s("cpu", "b", ts, 1e6 + i as f64 * 1.5, None)]
        })
        .collect();
    store.write(&[WriteBatch { tenant_id: tenant.id, samples: &samples }], now, 0).await.unwrap();
    let query = |from: i64, to: i64, resolution: Resolution| PointQuery {
        tenant_id: tenant.id,
        metric: "cpu".into(),
        matchers: Labels::new(),
        from,
        to,
        step: None,
        resolution,
        agg: Aggregation::Avg,
        max_points: 100_000,
        last_sample_times: false,
    };
    let before = store.query(&query(0, 6 * hour, Resolution::Raw)).await.unwrap();
    let rollups = store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap();
    let last = store.series(tenant.id, "cpu", &Labels::new()).await.unwrap();
    // Only closed windows (before 4 h here) are compacted: the last one stays raw.
    let done = store.compact(tenant.id, 4 * hour, 100_000).await.unwrap();
    // Per series and window: a chunk of samples, and no chunk of 1m buckets (they are derived
    // from the raw chunk while it is kept; the 1m rows go); the 5m buckets of the closed windows
    // go into their day's chunk (one per series).
    assert_eq!(done, chunk_store::Compacted { samples: 2 * 1440, buckets: 2 * (240 + 48), chunks: 2 * 3, more: false });
    assert_eq!(store.compact(tenant.id, 4 * hour, 100_000).await.unwrap(), Default::default(), "nothing left to move");
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::Raw)).await.unwrap(), before);
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap(), rollups);
    // A range inside one chunk, and one across a chunk's edge into raw rows.
    let inner = store.query(&query(hour, hour + 60_000, Resolution::Raw)).await.unwrap();
    assert_eq!(inner[0].points.len(), 6);
    assert_eq!(inner[0].points, before[0].points[360..366].to_vec());
    let edge = store.query(&query(4 * hour - 30_000, 4 * hour + 30_000, Resolution::Raw)).await.unwrap();
    assert_eq!(edge[1].points, before[1].points[1437..1443].to_vec());
    assert_eq!(store.series(tenant.id, "cpu", &Labels::new()).await.unwrap(), last);

    // The day closed: everything compacted, the last window's 5m buckets merged into the day's
    // chunk (rewritten: still one per series); the series' last point now comes from a chunk.
    let done = store.compact(tenant.id, 24 * hour, 100_000).await.unwrap();
    assert_eq!(done, chunk_store::Compacted { samples: 2 * 360, buckets: 2 * (60 + 12), chunks: 2 * 2, more: false });
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap(), rollups);
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::FiveMinutes)).await.unwrap()[0].points.len(), 60);
    assert_eq!(store.series(tenant.id, "cpu", &Labels::new()).await.unwrap(), last);

    // An overwrite and a new sample in a compacted window reopen its chunk: the value changes,
    // the rollup stays exact, and the window compacts again.
    let late = [s("cpu", "a", 600_000 + 60 % 7, 99.0, None), s("cpu", "a", 600_005, 7.0, None)];
    store.write(&[WriteBatch { tenant_id: tenant.id, samples: &late }], now, 0).await.unwrap();
    let after = store.query(&query(600_000, 600_010, Resolution::Raw)).await.unwrap();
    assert_eq!(after[0].points, vec![(600_004, 99.0), (600_005, 7.0)]);
    for agg in [Aggregation::Count, Aggregation::Sum, Aggregation::Last] {
        let raw = store
            .query(&PointQuery { step: Some(60_000), agg, ..query(0, 2 * hour - 1, Resolution::Raw) })
            .await
            .unwrap();
        let rolled = store.query(&PointQuery { agg, ..query(0, 2 * hour - 1, Resolution::OneMinute) }).await.unwrap();
        assert_eq!(raw, rolled, "{agg:?}");
    }
    let again = store.compact(tenant.id, 24 * hour, 100_000).await.unwrap();
    assert_eq!((again.samples, again.buckets, again.chunks), (721, 120 + 60, 2), "the reopened window and day");
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap()[1], rollups[1]);

    // A small limit cuts windows in the middle; what is moved later merges into their chunks.
    let late: Vec<Sample> = (0..50).map(|i| s("cpu", "b", 3 * hour + i * 10_000 + 1, i as f64, None)).collect();
    store.write(&[WriteBatch { tenant_id: tenant.id, samples: &late }], now, 0).await.unwrap();
    let expected = store.query(&query(0, 6 * hour, Resolution::Raw)).await.unwrap();
    let expected_5m = store.query(&query(0, 6 * hour, Resolution::FiveMinutes)).await.unwrap();
    let expected_1m = store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap();
    let mut passes = 0;
    while store.compact(tenant.id, 24 * hour, 7).await.unwrap().more {
        passes += 1;
        // Between passes a window is part chunk, part rows: its 1m buckets stay whole.
        if passes % 40 == 0 {
            assert_eq!(
                store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap(),
                expected_1m,
                "pass {passes}"
            );
        }
    }
    assert!(passes > 100, "{passes} passes of at most 7 rows");
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::Raw)).await.unwrap(), expected);
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::FiveMinutes)).await.unwrap(), expected_5m);
    assert_eq!(store.query(&query(0, 6 * hour, Resolution::OneMinute)).await.unwrap(), expected_1m);

    // Retention drops whole chunks: those whose newest sample is older than the cut.
    let first_window = store.query(&query(0, 2 * hour - 1, Resolution::OneMinute)).await.unwrap();
    let dropped = store.purge_chunks(tenant.id, Resolution::Raw, 2 * hour + 1, 1000).await.unwrap();
    assert_eq!(dropped, 2, "the first window of each series");
    // The 1m buckets of that window stay (their retention is longer) until theirs comes: the
    // purge wrote them as a chunk before the raw one went.
    assert_eq!(store.query(&query(0, 2 * hour - 1, Resolution::OneMinute)).await.unwrap(), first_window);
    assert_eq!(first_window[0].points.len(), 120);
    assert_eq!(store.purge_chunks(tenant.id, Resolution::OneMinute, 2 * hour, 1000).await.unwrap(), 2);
    assert!(
        store.query(&query(0, 2 * hour - 1, Resolution::OneMinute)).await.unwrap().iter().all(|s| s.points.is_empty())
    );
    // The later windows have no 1m chunk at all: their buckets come from the raw chunks, exactly
    // what the raw samples say.
    assert_eq!(store.purge_chunks(tenant.id, Resolution::OneMinute, i64::MAX, 1000).await.unwrap(), 0);
    for agg in [Aggregation::Count, Aggregation::Sum, Aggregation::Min, Aggregation::Max, Aggregation::Last] {
        let raw = store
            .query(&PointQuery { step: Some(60_000), agg, ..query(2 * hour, 6 * hour - 1, Resolution::Raw) })
            .await
            .unwrap();
        let rolled =
            store.query(&PointQuery { agg, ..query(2 * hour, 6 * hour - 1, Resolution::OneMinute) }).await.unwrap();
        assert_eq!(raw, rolled, "{agg:?}");
    }
    let kept = store.query(&query(0, 6 * hour, Resolution::Raw)).await.unwrap();
    assert!(kept.iter().all(|s| s.points.first().unwrap().0 >= 2 * hour), "{:?}", kept[0].points.first());
    assert_eq!(kept[0].points.len(), 1800 - 720);

    assert!(store.delete_tenant("chunky").await.unwrap());
    let again = store.create_tenant("chunky", None).await.unwrap();
    assert!(
        store
            .query(&PointQuery { tenant_id: again.id, ..query(0, 6 * hour, Resolution::Raw) })
            .await
            .unwrap()
            .is_empty()
    );
    for resolution in [Resolution::Raw, Resolution::OneMinute, Resolution::FiveMinutes] {
        assert_eq!(
            store.purge_chunks(tenant.id, resolution, i64::MAX, 1000).await.unwrap(),
            0,
            "the deletion took them"
        );
    }
}

/// Writers reopening and overwriting compacted windows while compaction runs beside them, in
/// small transactions: no sample lost or doubled, no deadlock, rollups still exact.
pub async fn compaction_beside_writers_suite(store: DynStore) {
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("racing", None).await.unwrap();
    // After the day closed: raw, 1m and the day's 5m chunks are all compacted and reopened.
    let now = 30 * 3_600_000;
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut model = std::collections::BTreeMap::new();
                let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ (w + 1);
                for round in 0..30 {
                    let batch: Vec<Sample> = (0..40)
                        .map(|_| {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            // 3 windows, a coarse grid: overwrites and reopened chunks.
                            let ts = (seed % 1440) as i64 * 15_000;
                            let value = (seed >> 32) as f64 % 100.0 + round as f64;
                            model.insert(ts, value);
                            s("race", &format!("w{w}"), ts, value, None)
                        })
                        .collect();
                    store.write(&[WriteBatch { tenant_id: tenant.id, samples: &batch }], now, 0).await?;
                }
                Ok::<_, StoreError>(model)
            })
        })
        .collect();
    let compactor = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut moved = 0;
            for _ in 0..400 {
                moved += store.compact(tenant.id, chunk::window_of(now), 50).await?.samples;
                tokio::task::yield_now().await;
            }
            Ok::<_, StoreError>(moved)
        })
    };
    let mut models = Vec::new();
    for writer in writers {
        models.push(writer.await.unwrap().expect("a writer failed beside compaction"));
    }
    assert!(compactor.await.unwrap().expect("compaction failed beside writers") > 0);
    while store.compact(tenant.id, chunk::window_of(now), 10_000).await.unwrap().more {}
    let base = PointQuery {
        tenant_id: tenant.id,
        metric: "race".into(),
        matchers: Labels::new(),
        from: 0,
        to: 6 * 3_600_000,
        step: None,
        resolution: Resolution::Raw,
        agg: Aggregation::Sum,
        max_points: 1_000_000,
        last_sample_times: false,
    };
    let raw = store.query(&base).await.unwrap();
    assert_eq!(raw.len(), 4);
    for (series, model) in raw.iter().zip(&models) {
        let expected: Vec<(i64, f64)> = model.iter().map(|(&ts, &v)| (ts, v)).collect();
        assert_eq!(series.points, expected, "{:?}", series.labels);
    }
    for resolution in [Resolution::OneMinute, Resolution::FiveMinutes] {
        for agg in [Aggregation::Count, Aggregation::Sum, Aggregation::Max, Aggregation::Last] {
            let from_raw =
                store.query(&PointQuery { step: Some(resolution.width_ms()), agg, ..base.clone() }).await.unwrap();
            let rolled = store.query(&PointQuery { resolution, agg, ..base.clone() }).await.unwrap();
            assert_eq!(from_raw, rolled, "{agg:?} at {resolution:?}");
        }
    }
}

#[tokio::test]
async fn sqlite_compacts_beside_writers() {
    let dir = tempfile::tempdir().unwrap();
    compaction_beside_writers_suite(
        open(&format!("sqlite://{}", dir.path().join("w.db").display()), false).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn postgres_compacts_beside_writers() {
    compaction_beside_writers_suite(fresh_postgres().await).await;
}

#[tokio::test]
async fn mariadb_compacts_beside_writers() {
    compaction_beside_writers_suite(fresh_mysql().await).await;
}

#[tokio::test]
async fn sqlite_passes_the_chunk_suite() {
    let dir = tempfile::tempdir().unwrap();
    chunk_suite(open(&format!("sqlite://{}", dir.path().join("c.db").display()), false).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_passes_the_storage_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    suite(open(&url, false).await.unwrap()).await;
}

/// Rollups must equal an aggregation of the final raw samples, whatever order the samples
/// arrived in, late ones and overwrites of the same (series, ts) included; and the raw points
/// must be the last value written per (series, ts). With `compact`, the tenant's closed windows
/// are compacted after every batch, at most that many samples per transaction (so windows are
/// cut in the middle too), and every later batch writes into compacted windows.
pub async fn check_rollups_match_raw(store: &DynStore, tenant_id: i64, batches: &[Vec<Sample>], compact: Option<i64>) {
    // With compaction the writer's clock is past every window of the batches.
    // With compaction, "now" is after the day of the data closed, so the 5m rollup's day chunks
    // are made and reopened too.
    let now = if compact.is_some() { 30 * 3_600_000 } else { 0 };
    let mut model: std::collections::BTreeMap<(String, i64), f64> = Default::default();
    let mut compacted = 0;
    for batch in batches {
        store.write(&[WriteBatch { tenant_id, samples: batch }], now, 0).await.unwrap();
        for sample in batch {
            model.insert((sample.labels["host"].clone(), sample.ts), sample.value);
        }
        if let Some(limit) = compact {
            loop {
                let done = store.compact(tenant_id, chunk::window_of(now), limit).await.unwrap();
                compacted += done.samples;
                if !done.more {
                    break;
                }
            }
        }
    }
    assert_eq!(compact.is_some(), compacted > 0, "compaction ran when asked, and only then");
    assert_reads_match(store, tenant_id, &model, "").await;
}

/// Raw reads are `model` (the last value written per (series, ts)), no point comes twice, and
/// every rollup equals the raw samples aggregated at its width. `context` ends each message.
async fn assert_reads_match(
    store: &DynStore,
    tenant_id: i64,
    model: &std::collections::BTreeMap<(String, i64), f64>,
    context: &str,
) {
    let base = PointQuery {
        tenant_id,
        metric: "m".into(),
        matchers: Labels::new(),
        from: 0,
        to: 6 * 3_600_000,
        step: None,
        resolution: Resolution::Raw,
        agg: Aggregation::Avg,
        max_points: 1_000_000,
        last_sample_times: false,
    };
    let raw = store.query(&base).await.unwrap();
    let got: std::collections::BTreeMap<(String, i64), f64> = raw
        .iter()
        .flat_map(|series| series.points.iter().map(|&(ts, v)| ((series.labels["host"].clone(), ts), v)))
        .collect();
    assert_eq!(&got, model, "raw points are the last value written per (series, ts){context}");
    assert_eq!(raw.iter().map(|s| s.points.len()).sum::<usize>(), model.len(), "no point twice{context}");
    for agg in
        [Aggregation::Count, Aggregation::Sum, Aggregation::Min, Aggregation::Max, Aggregation::Last, Aggregation::Avg]
    {
        for resolution in [Resolution::OneMinute, Resolution::FiveMinutes] {
            let width = resolution.width_ms();
            let raw = store.query(&PointQuery { step: Some(width), agg, ..base.clone() }).await.unwrap();
            let rolled = store.query(&PointQuery { resolution, agg, ..base.clone() }).await.unwrap();
            assert_eq!(raw, rolled, "{agg:?} at {resolution:?}{context}");
        }
    }
}

fn arb_batches() -> impl proptest::strategy::Strategy<Value = (Vec<Vec<Sample>>, Option<i64>)> {
    use proptest::prelude::*;
    // Few series, timestamps over 5 hours (three chunk windows) on a coarse grid so overwrites
    // happen often, integer values so sums are exact in any order.
    let sample = (0..3u8, 0..1200i64, -50..50i32).prop_map(|(host, slot, v)| Sample {
        metric: "m".into(),
        labels: Labels::from([("host".to_string(), format!("h{host}"))]).into(),
        ts: slot * 15_000,
        value: v as f64,
        dedupe_id: None,
    });
    (proptest::collection::vec(proptest::collection::vec(sample, 1..60), 1..8), proptest::option::of(1i64..40))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]
    #[test]
    fn sqlite_rollups_equal_aggregated_raw((batches, compact) in arb_batches()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(&format!("sqlite://{}", dir.path().join("r.db").display()), false).await.unwrap();
            store.migrate().await.unwrap();
            let tenant = store.create_tenant("t", None).await.unwrap();
            check_rollups_match_raw(&store, tenant.id, &batches, compact).await;
        });
    }
}

/// The head's sink in tests: every sample goes to the head, no log.
struct TestSink(std::sync::Arc<super::head::Head>);

/// Records what the write asked of the log: `durable_now` per call.
struct DurabilitySink(Vec<bool>);

impl super::HeadSink for DurabilitySink {
    fn accepts(&self, _ts: i64) -> bool {
        true
    }

    fn log(&mut self, _rows: &[super::wal::Row], durable_now: bool) -> Result<()> {
        self.0.push(durable_now);
        Ok(())
    }
}

/// A write that records dedupe ids must not commit before its samples are durable (a crash in
/// between would refuse the retry of samples never stored), so it asks the log to sync before
/// the commit; a write without them leaves the sync to after the commit (the answering thread).
#[tokio::test]
async fn only_writes_with_dedupe_ids_sync_the_log_before_they_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&format!("sqlite://{}", dir.path().join("d.db").display()), false).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("t", None).await.unwrap();
    let mut sink = DurabilitySink(Vec::new());
    let plain = [s("m", "a", 1, 1.0, None), s("m", "b", 1, 2.0, None)];
    let keyed = [s("m", "a", 2, 1.0, None), s("m", "b", 2, 2.0, Some("x"))];
    // The same id again: a duplicate (seen); the other sample is new.
    let again = [s("m", "b", 3, 2.0, Some("x")), s("m", "a", 3, 1.0, None)];
    for samples in [&plain, &keyed] {
        store.write_with_head(&[WriteBatch { tenant_id: tenant.id, samples }], 0, 0, &mut sink).await.unwrap();
    }
    let outcomes =
        store.write_with_head(&[WriteBatch { tenant_id: tenant.id, samples: &again }], 0, 0, &mut sink).await.unwrap();
    assert_eq!((outcomes[0].accepted, outcomes[0].duplicates), (1, 1));
    assert_eq!(sink.0, [false, true, true]);
}

impl super::HeadSink for TestSink {
    fn accepts(&self, _ts: i64) -> bool {
        true
    }

    fn log(&mut self, rows: &[super::wal::Row], _durable_now: bool) -> Result<()> {
        self.0.apply(rows);
        Ok(())
    }
}

/// The first half of the batches written as rows (as before a restart), the rest into the head:
/// raw reads are the last value per (series, ts), and every rollup equals the raw samples
/// aggregated, across head and database; the same after the head is flushed.
async fn check_rollups_match_raw_with_head(store: &DynStore, tenant_id: i64, batches: &[Vec<Sample>]) {
    let head = std::sync::Arc::new(super::head::Head::new());
    store.attach_head(head.clone());
    let mut model: std::collections::BTreeMap<(String, i64), f64> = Default::default();
    let mut sink = TestSink(head.clone());
    for (i, batch) in batches.iter().enumerate() {
        let one = [WriteBatch { tenant_id, samples: batch }];
        if i < batches.len() / 2 {
            store.write(&one, 0, 0).await.unwrap();
        } else {
            store.write_with_head(&one, 0, 0, &mut sink).await.unwrap();
        }
        for sample in batch {
            model.insert((sample.labels["host"].clone(), sample.ts), sample.value);
        }
    }
    for flushed in [false, true] {
        if flushed {
            let rows: Vec<(i64, i64, f64)> = head.rows().iter().map(|r| (r.series_id, r.ts, r.value)).collect();
            store.write_rows(&rows, 0).await.unwrap();
            head.drop_before(i64::MAX);
        }
        assert_reads_match(store, tenant_id, &model, &format!(", flushed: {flushed}")).await;
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]
    #[test]
    fn sqlite_rollups_equal_aggregated_raw_across_head_and_rows((batches, _) in arb_batches()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(&format!("sqlite://{}", dir.path().join("r.db").display()), false).await.unwrap();
            store.migrate().await.unwrap();
            let tenant = store.create_tenant("t", None).await.unwrap();
            check_rollups_match_raw_with_head(&store, tenant.id, &batches).await;
        });
    }
}

#[test]
fn resolution_follows_range_and_step() {
    let h = 3_600_000;
    assert_eq!(choose_resolution(0, h, None, 0), Resolution::Raw);
    assert_eq!(choose_resolution(0, h, Some(60_000), 0), Resolution::OneMinute);
    assert_eq!(choose_resolution(0, 24 * h, None, 0), Resolution::OneMinute);
    assert_eq!(choose_resolution(0, 7 * 24 * h, None, 0), Resolution::FiveMinutes);
    assert_eq!(choose_resolution(0, h, Some(300_000), 0), Resolution::FiveMinutes);
    assert_eq!(choose_resolution(0, h, None, 10), Resolution::OneMinute, "raw already purged there");
}

/// A new, empty database on the test PostgreSQL (`postgres`) or MariaDB (`mysql`) server that
/// `scripts/services.sh` starts; fails with the command to run when it is not there.
async fn fresh_store(kind: &str) -> DynStore {
    open(&fresh_url(kind).await, false).await.unwrap()
}

/// The URL of a new, empty database on the test PostgreSQL (`postgres`) or MariaDB (`mysql`).
pub(crate) async fn fresh_url(kind: &str) -> String {
    use sqlx::Connection;
    let var = format!("MICRODASH_TEST_{}_URL", kind.to_uppercase());
    let url = std::env::var(&var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the test services with `eval \"$(scripts/services.sh start)\"` (make test does)"
        )
    });
    let name = format!("md_test_{}", hex::encode(rand::random::<[u8; 6]>()));
    let create = format!("CREATE DATABASE {name}");
    if kind == "postgres" {
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect to the test PostgreSQL");
        sqlx::query(&create).execute(&mut admin).await.unwrap();
    } else {
        let mut admin = sqlx::MySqlConnection::connect(&url).await.expect("connect to the test MariaDB");
        sqlx::query(&create).execute(&mut admin).await.unwrap();
    }
    let base = url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&url);
    format!("{base}/{name}")
}

async fn fresh_postgres() -> DynStore {
    fresh_store("postgres").await
}

async fn fresh_mysql() -> DynStore {
    fresh_store("mysql").await
}

#[tokio::test]
async fn postgres_passes_the_storage_suite() {
    suite(fresh_postgres().await).await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]
    #[test]
    fn postgres_rollups_equal_aggregated_raw((batches, compact) in arb_batches()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = fresh_postgres().await;
            store.migrate().await.unwrap();
            let tenant = store.create_tenant("t", None).await.unwrap();
            check_rollups_match_raw(&store, tenant.id, &batches, compact).await;
        });
    }
}

#[tokio::test]
async fn postgres_passes_the_chunk_suite() {
    chunk_suite(fresh_postgres().await).await;
}

#[tokio::test]
async fn mariadb_passes_the_chunk_suite() {
    chunk_suite(fresh_mysql().await).await;
}

#[tokio::test]
async fn mariadb_passes_the_storage_suite() {
    suite(fresh_mysql().await).await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]
    #[test]
    fn mariadb_rollups_equal_aggregated_raw((batches, compact) in arb_batches()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = fresh_mysql().await;
            store.migrate().await.unwrap();
            let tenant = store.create_tenant("t", None).await.unwrap();
            check_rollups_match_raw(&store, tenant.id, &batches, compact).await;
        });
    }
}

/// What the alert engine, the outbox and the rule API keep: the same on every backend.
pub async fn alert_suite(store: DynStore) {
    use crate::domain::alerting::{AlertState, Instance, Transition};
    use alerts::{AttemptOutcome, AttemptRecord, DeliveryStatus, NewNotification, SpecKind, TransitionWrite};
    store.migrate().await.unwrap();
    let a = store.create_tenant("alerts-a", None).await.unwrap();
    let b = store.create_tenant("alerts-b", None).await.unwrap();

    // Specs: create, conflict, update, list per tenant and all, fingerprint moves, delete.
    let before = store.specs_fingerprint().await.unwrap();
    assert!(store.put_spec(SpecKind::Rule, a.id, "high-cpu", r#"{"metric":"cpu"}"#, 1000, true).await.unwrap());
    assert!(matches!(
        store.put_spec(SpecKind::Rule, a.id, "high-cpu", "{}", 1001, true).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!store.put_spec(SpecKind::Rule, a.id, "high-cpu", r#"{"metric":"cpü"}"#, 2000, false).await.unwrap());
    assert!(store.put_spec(SpecKind::Rule, b.id, "high-cpu", r#"{"metric":"b"}"#, 1500, true).await.unwrap());
    assert!(store.put_spec(SpecKind::Channel, a.id, "Hook", r#"{"webhook":{}}"#, 1500, true).await.unwrap());
    let after = store.specs_fingerprint().await.unwrap();
    assert_ne!(before, after);
    assert_eq!((after.rules, after.rules_updated_at, after.channels), (2, 2000, 1));
    // What changed since a time: the rules written then or later, oldest first, any tenant.
    let changed = store.list_specs_changed_since(SpecKind::Rule, 1500).await.unwrap();
    assert_eq!(changed.total, 2);
    let changed: Vec<_> = changed.records.iter().map(|r| (r.tenant_id, r.name.as_str(), r.updated_at)).collect();
    assert_eq!(changed, [(b.id, "high-cpu", 1500), (a.id, "high-cpu", 2000)]);
    let none = store.list_specs_changed_since(SpecKind::Rule, 2001).await.unwrap();
    assert_eq!((none.total, none.records.len()), (2, 0), "the count comes without any change");
    let rule = store.get_spec(SpecKind::Rule, a.id, "high-cpu").await.unwrap().unwrap();
    assert_eq!((rule.spec.as_str(), rule.created_at, rule.updated_at), (r#"{"metric":"cpü"}"#, 1000, 2000));
    assert!(store.get_spec(SpecKind::Rule, a.id, "HIGH-CPU").await.unwrap().is_none(), "names are case-sensitive");
    // Several keys in one read: each tenant's own, missing ones left out, a channel not a rule.
    let keys =
        [(a.id, "high-cpu".to_string()), (b.id, "high-cpu".into()), (a.id, "HIGH-CPU".into()), (a.id, "Hook".into())];
    let mut got: Vec<_> = store
        .get_specs(SpecKind::Rule, &keys)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.tenant_id, r.name, r.spec))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (a.id, "high-cpu".into(), r#"{"metric":"cpü"}"#.into()),
            (b.id, "high-cpu".into(), r#"{"metric":"b"}"#.into())
        ]
    );
    assert!(store.get_specs(SpecKind::Rule, &[]).await.unwrap().is_empty());
    assert_eq!(store.get_specs(SpecKind::Channel, &keys[3..]).await.unwrap().len(), 1);
    assert_eq!(store.list_specs(SpecKind::Rule, Some(a.id)).await.unwrap().len(), 1);
    assert_eq!(store.list_specs(SpecKind::Rule, None).await.unwrap().len(), 2);
    assert_eq!(store.list_specs(SpecKind::Channel, Some(b.id)).await.unwrap().len(), 0);

    // Instances: insert once, the same labels give the same row.
    let labels = Labels::from([("host".to_string(), "wéb-1".to_string())]);
    let first = store.upsert_instance(a.id, "high-cpu", &labels, &Instance::new(10)).await.unwrap();
    let again = store.upsert_instance(a.id, "high-cpu", &labels, &Instance::new(99)).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!((again.instance.since, again.seq, again.labels.clone()), (10, 0, labels.clone()));
    let other = store.upsert_instance(b.id, "high-cpu", &labels, &Instance::new(10)).await.unwrap();
    assert_ne!(other.id, first.id);
    assert_eq!(store.list_instances(Some(a.id)).await.unwrap().len(), 1);
    assert_eq!(store.list_instances(None).await.unwrap().len(), 2);
    // Several at once, in one transaction: the records come in the order asked, an existing
    // one as stored, a new one made.
    let web2 = Labels::from([("host".to_string(), "web-2 ✓".to_string())]);
    let batch = [
        alerts::NewInstance { tenant_id: a.id, rule: "high-cpu", labels: &web2, instance: &Instance::new(40) },
        alerts::NewInstance { tenant_id: a.id, rule: "high-cpu", labels: &labels, instance: &Instance::new(50) },
    ];
    let made = store.upsert_instances(&batch).await.unwrap();
    assert_eq!(made.iter().map(|r| r.labels.clone()).collect::<Vec<_>>(), [web2.clone(), labels.clone()]);
    assert_eq!((made[1].id, made[1].instance.since), (first.id, 10), "the stored one, untouched");
    assert_eq!(made[0].instance.since, 40);
    assert!(store.upsert_instances(&[]).await.unwrap().is_empty());
    store.delete_instance(made[0].id).await.unwrap();
    // The instances of several rules in one read, by tenant and rule.
    let of = |keys: Vec<(i64, &str)>| {
        let keys: Vec<(i64, String)> = keys.into_iter().map(|(t, n)| (t, n.to_string())).collect();
        let store = store.clone();
        async move {
            let mut ids: Vec<i64> = store.list_instances_of(&keys).await.unwrap().iter().map(|i| i.id).collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        of(vec![(a.id, "high-cpu"), (b.id, "high-cpu")]).await,
        [first.id.min(other.id), first.id.max(other.id)]
    );
    assert_eq!(of(vec![(b.id, "high-cpu"), (a.id, "other")]).await, [other.id]);
    assert_eq!(of(vec![(b.id + a.id + 1, "high-cpu")]).await, Vec::<i64>::new());
    assert!(of(vec![]).await.is_empty());

    // A transition with its notifications, in one transaction; a replay queues nothing new.
    let mut firing = Instance::new(10);
    firing.state = AlertState::Firing;
    firing.since = 20;
    firing.value = Some(97.5);
    let transition = Transition { from: AlertState::Ok, to: AlertState::Firing, at: 20, value: Some(97.5) };
    let note = |key: &str| NewNotification {
        tenant_id: a.id,
        channel: "Hook".into(),
        instance_id: Some(first.id),
        rule: Some("high-cpu".into()),
        state: "FIRING".into(),
        idempotency_key: key.into(),
        payload: r#"{"state":"FIRING","summary":"CPU 97.5% ✓"}"#.into(),
        created_at: 20,
    };
    let notes = [note(&format!("{}-1-Hook", first.id))];
    let write = |seq| TransitionWrite {
        instance_id: first.id,
        tenant_id: a.id,
        rule: "high-cpu",
        labels: &labels,
        instance: &firing,
        seq,
        transition: &transition,
        notifications: &notes,
    };
    let t1 = store.record_transition(write(1)).await.unwrap();
    let t2 = store.record_transition(write(1)).await.unwrap();
    assert_eq!((t1, t2), (1, 2), "transitions are numbered per tenant from 1");
    // Another tenant's transitions have numbers of their own.
    let b_write = TransitionWrite { instance_id: other.id, tenant_id: b.id, notifications: &[], ..write(1) };
    assert_eq!(store.record_transition(b_write).await.unwrap(), 1, "tenant b's first transition is its 1");
    assert_eq!(store.record_transition(write(1)).await.unwrap(), 3, "tenant a goes on at 3");
    let stored = store.list_instances(Some(a.id)).await.unwrap().remove(0);
    assert_eq!((stored.instance.state, stored.instance.value, stored.seq), (AlertState::Firing, Some(97.5), 1));
    let history = store.list_transitions(a.id, Some("high-cpu"), None, 10).await.unwrap();
    assert_eq!(history.iter().map(|t| t.id).collect::<Vec<_>>(), vec![3, t2, t1], "newest first");
    assert_eq!(
        (history[0].from, history[0].to, history[0].labels.clone()),
        (AlertState::Ok, AlertState::Firing, labels.clone())
    );
    assert_eq!(store.list_transitions(a.id, None, Some(t2), 10).await.unwrap().len(), 1);
    assert_eq!(store.list_transitions(b.id, None, None, 10).await.unwrap().len(), 1);
    assert!(store.list_transitions(a.id, Some("other"), None, 10).await.unwrap().is_empty());

    // The outbox: one row despite the replay; claim is exclusive; attempts are recorded.
    assert_eq!(store.insert_notifications(&notes).await.unwrap(), 0, "a known key is skipped");
    assert_eq!(store.insert_notifications(&[note("test-1")]).await.unwrap(), 1);
    let due = store.due_notifications(20, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(store.due_notifications(19, 10).await.unwrap().is_empty());
    let n = &due[0];
    assert_eq!((n.status, n.attempts, n.payload.as_str()), (DeliveryStatus::Pending, 0, notes[0].payload.as_str()));
    assert!(store.claim_notification(n.id, n.next_attempt_at, 60_000).await.unwrap());
    assert!(!store.claim_notification(n.id, n.next_attempt_at, 60_000).await.unwrap(), "claimed once only");
    let attempt = |ok, code: Option<u16>, error: Option<&str>| AttemptRecord {
        notification_id: n.id,
        at: 30,
        ok,
        status_code: code,
        error: error.map(str::to_string),
        duration_ms: 4,
    };
    store
        .finish_attempt(&attempt(false, Some(503), Some("503 Service Unavailable")), AttemptOutcome::RetryAt(40))
        .await
        .unwrap();
    store.finish_attempt(&attempt(true, Some(200), None), AttemptOutcome::Delivered).await.unwrap();
    let listed = store.list_notifications(a.id, Some("Hook"), 10).await.unwrap();
    let delivered = listed.iter().find(|x| x.id == n.id).unwrap();
    assert_eq!(
        (delivered.status, delivered.attempts, delivered.delivered_at),
        (DeliveryStatus::Delivered, 2, Some(30))
    );
    assert!(store.list_notifications(a.id, Some("hook"), 10).await.unwrap().is_empty());
    assert!(store.list_notifications(b.id, None, 10).await.unwrap().is_empty());
    let attempts = store.list_attempts(&[n.id]).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[0].ok, attempts[0].status_code, attempts[0].error.as_deref()),
        (false, Some(503), Some("503 Service Unavailable"))
    );
    assert!(attempts[1].ok);
    assert_eq!(store.last_notifications_of(&[first.id]).await.unwrap(), vec![(first.id, "Hook".to_string(), 20)]);
    assert!(store.last_notifications_of(&[first.id + 1000]).await.unwrap().is_empty(), "only the instances asked for");
    assert!(store.last_notifications_of(&[]).await.unwrap().is_empty());

    // Leases: one owner at a time; renewable by its owner; free once expired or released.
    assert!(store.acquire_lease("engine", "w1", 100, 200).await.unwrap());
    assert!(!store.acquire_lease("engine", "w2", 150, 250).await.unwrap(), "held by w1 until 200");
    assert!(store.acquire_lease("engine", "w1", 150, 250).await.unwrap(), "renewed");
    assert!(store.acquire_lease("engine", "w1", 150, 250).await.unwrap(), "renewing to the same time holds too");
    assert!(!store.acquire_lease("engine", "w2", 240, 340).await.unwrap());
    assert!(store.acquire_lease("engine", "w2", 251, 351).await.unwrap(), "expired: taken over");
    assert!(!store.acquire_lease("engine", "w1", 260, 360).await.unwrap());
    store.release_lease("engine", "w1").await.unwrap();
    assert!(!store.acquire_lease("engine", "w1", 261, 361).await.unwrap(), "only the owner releases");
    store.release_lease("engine", "w2").await.unwrap();
    assert!(store.acquire_lease("engine", "w1", 262, 362).await.unwrap(), "released: free at once");

    // Deleting a rule takes its instances along; the history stays.
    assert!(store.delete_spec(SpecKind::Rule, a.id, "high-cpu").await.unwrap());
    assert!(!store.delete_spec(SpecKind::Rule, a.id, "high-cpu").await.unwrap());
    assert!(store.list_instances(Some(a.id)).await.unwrap().is_empty());
    assert_eq!(store.list_instances(Some(b.id)).await.unwrap().len(), 1);
    assert_eq!(store.list_transitions(a.id, None, None, 10).await.unwrap().len(), 3);
    store.delete_instance(other.id).await.unwrap();
    assert!(store.list_instances(None).await.unwrap().is_empty());

    // A Kubernetes object name at full length (the operator's NAMESPACE.NAME, 253 characters)
    // fits every backend: the rule, its channel, its instances.
    let long = format!("{}.{}", "n".repeat(63), "r".repeat(189));
    assert!(store.put_spec(SpecKind::Rule, b.id, &long, "{}", 3000, true).await.unwrap());
    assert!(store.put_spec(SpecKind::Channel, b.id, &long, "{}", 3000, true).await.unwrap());
    assert_eq!(store.get_spec(SpecKind::Rule, b.id, &long).await.unwrap().unwrap().name, long);
    let long_instance = store.upsert_instance(b.id, &long, &labels, &Instance::new(30)).await.unwrap();
    assert_eq!(long_instance.rule, long);
    assert!(store.delete_spec(SpecKind::Rule, b.id, &long).await.unwrap());
    assert!(store.delete_spec(SpecKind::Channel, b.id, &long).await.unwrap());
}

#[tokio::test]
async fn sqlite_passes_the_alert_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    alert_suite(open(&url, false).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_passes_the_alert_suite() {
    alert_suite(fresh_postgres().await).await;
}

#[tokio::test]
async fn mariadb_passes_the_alert_suite() {
    alert_suite(fresh_mysql().await).await;
}

/// Many connections writing at once (ingest, rule PUTs, tenant deletes that read before they
/// write) wait for each other; none fails with "database is locked" or a deadlock.
pub async fn concurrent_writers_suite(store: DynStore) {
    use alerts::SpecKind;
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("busy", None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("rule-{i}");
            store.put_spec(SpecKind::Rule, tenant.id, &name, "{}", i, true).await?;
            store.put_spec(SpecKind::Rule, tenant.id, &name, r#"{"v":2}"#, i + 1, false).await?;
            let samples: Vec<Sample> = (0..200).map(|n| s("load", &format!("h{i}"), n, n as f64, None)).collect();
            store.write(&[WriteBatch { tenant_id: tenant.id, samples: &samples }], 1000, 0).await?;
            let doomed = store.create_tenant(&format!("gone-{i}"), None).await?;
            assert!(store.delete_tenant(&doomed.name).await?);
            store.delete_spec(SpecKind::Rule, tenant.id, &name).await?;
            Ok::<_, StoreError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("a concurrent writer failed");
    }
    assert!(store.list_specs(SpecKind::Rule, Some(tenant.id)).await.unwrap().is_empty());
    let points = store
        .query(&PointQuery {
            tenant_id: tenant.id,
            metric: "load".into(),
            matchers: Labels::new(),
            from: 0,
            to: 1000,
            step: None,
            resolution: Resolution::Raw,
            agg: Aggregation::Avg,
            max_points: 100_000,
            last_sample_times: false,
        })
        .await
        .unwrap();
    assert_eq!(points.iter().map(|s| s.points.len()).sum::<usize>(), 24 * 200);
}

#[tokio::test]
async fn sqlite_concurrent_writers_wait_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    concurrent_writers_suite(open(&url, false).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_concurrent_writers_wait_instead_of_failing() {
    concurrent_writers_suite(fresh_postgres().await).await;
}

#[tokio::test]
async fn mariadb_concurrent_writers_wait_instead_of_failing() {
    concurrent_writers_suite(fresh_mysql().await).await;
}

/// `group_by_series` keys samples by the addresses of their shared names and labels; equal
/// series from different requests (other addresses) still get one slot, and different series
/// never share one.
#[test]
fn grouping_by_series_joins_equal_series_of_different_requests() {
    let first = crate::ingest::parse_bulk(
        br#"[{"metric":"m","value":1,"ts":1,"labels":{"host":"a"}},{"metric":"m","value":2,"ts":1,"labels":{"host":"b"}},
             {"metric":"m","value":3,"ts":2,"labels":{"host":"a"}}]"#,
        &crate::domain::Limits::default(),
        10,
    )
    .unwrap();
    let second = [s("m", "a", 3, 4.0, None), s("m", "b", 3, 5.0, None), s("n", "a", 3, 6.0, None)];
    let kept = vec![(1, first.iter().collect::<Vec<_>>()), (1, second.iter().collect()), (2, second.iter().collect())];
    let (wanted, rows) = crate::storage::group_by_series(&kept);
    let names: Vec<String> = wanted
        .iter()
        .map(|w| format!("{}:{}{{{}}}", w.tenant_id, w.metric, w.labels.values().cloned().collect::<String>()))
        .collect();
    assert_eq!(names, ["1:m{a}", "1:m{b}", "1:n{a}", "2:m{a}", "2:m{b}", "2:n{a}"]);
    let slots: Vec<usize> = rows.iter().map(|r| r.0).collect();
    assert_eq!(slots, [0, 1, 0, 0, 1, 2, 3, 4, 5]);
}
