//! The in-memory head of the embedded mode: per series, the raw samples of the windows not yet
//! flushed to the database, made durable by the write-ahead log (`wal.rs`) before a request is
//! answered. Reads merge it with rows and chunks; the head wins at an equal timestamp (it holds
//! the newest write). Its 1m/5m buckets are derived from its samples when read or flushed, so
//! an overwrite keeps them exact without bookkeeping.

use rustc_hash::FxHashMap;
use std::sync::RwLock;

use super::chunk::merge;
use super::wal::Row;
use super::{Summary, bucket_of};

#[derive(Default)]
struct SeriesHead {
    tenant_id: i64,
    /// `(ts, value)` in time order, one per timestamp.
    points: Vec<(i64, f64)>,
    /// Samples that came at or before the newest timestamp of `points`, in arrival order (a
    /// later one wins at an equal timestamp, and any of them wins over `points`). They are
    /// folded into `points` in batches, one sort and one merge, instead of one mid-`Vec` insert
    /// (a memmove of the rest of the series) each: several writers sending different time
    /// ranges of the same series, or an agent's spool after an outage, stay linear.
    late: Vec<(i64, f64)>,
}

/// `late` is folded once it holds this many samples, or an eighth of `points` if more.
const FOLD_AT: usize = 256;

impl SeriesHead {
    fn len(&self) -> usize {
        self.points.len() + self.late.len()
    }

    fn put(&mut self, ts: i64, value: f64) {
        match self.points.last() {
            Some(&(last, _)) if last >= ts => {
                if last == ts && self.late.is_empty() {
                    // An overwrite of the newest sample: common (a retry), and free.
                    self.points.last_mut().expect("not empty").1 = value;
                    return;
                }
                self.late.push((ts, value));
                if self.late.len() >= FOLD_AT.max(self.points.len() / 8) {
                    self.fold();
                }
            }
            _ => self.points.push((ts, value)),
        }
    }

    /// Moves `late` into `points`: one per timestamp, the latest write winning.
    fn fold(&mut self) {
        if self.late.is_empty() {
            return;
        }
        let late = sorted_latest(std::mem::take(&mut self.late));
        let start = self.points.partition_point(|p| p.0 < late[0].0);
        merge_into(&mut self.points, start, &late);
    }

    /// The samples in `[from, to]`, in time order, `late` merged in.
    fn range(&self, from: i64, to: i64) -> Vec<(i64, f64)> {
        let start = self.points.partition_point(|p| p.0 < from);
        let end = self.points.partition_point(|p| p.0 <= to).max(start);
        let points = &self.points[start..end];
        if self.late.is_empty() {
            return points.to_vec();
        }
        let late = sorted_latest(self.late.iter().copied().filter(|p| p.0 >= from && p.0 <= to).collect());
        merge(points.to_vec(), late)
    }

    fn newest(&self) -> Option<(i64, f64)> {
        let late = self.late.iter().copied().reduce(|a, b| if b.0 >= a.0 { b } else { a });
        match (self.points.last().copied(), late) {
            (Some(p), Some(l)) => Some(if l.0 >= p.0 { l } else { p }),
            (p, l) => p.or(l),
        }
    }

    fn oldest(&self) -> Option<i64> {
        let late = self.late.iter().map(|p| p.0).min();
        match (self.points.first().map(|p| p.0), late) {
            (Some(p), Some(l)) => Some(p.min(l)),
            (p, l) => p.or(l),
        }
    }

    /// Drops the samples before `before`; returns how many.
    fn drop_before(&mut self, before: i64) -> usize {
        let had = self.len();
        self.fold();
        let cut = self.points.partition_point(|p| p.0 < before);
        self.points.drain(..cut);
        had - self.len()
    }
}

/// `chunk::merge(points[start..], late)` in place: `points` grows by `late.len()` and is
/// filled from the back, so the part before `start` stays where it is and the tail moves once
/// (a fold used to copy the tail three times, into two new vectors and back). Both lists are in
/// time order, one per timestamp; at an equal timestamp `late` wins.
fn merge_into(points: &mut Vec<(i64, f64)>, start: usize, late: &[(i64, f64)]) {
    let (n, m) = (points.len(), late.len());
    points.resize(n + m, (0, 0.0));
    let (mut i, mut j, mut k) = (n, m, n + m);
    while j > 0 {
        k -= 1;
        let newer = late[j - 1];
        if i > start && points[i - 1].0 > newer.0 {
            points[k] = points[i - 1];
            i -= 1;
        } else {
            if i > start && points[i - 1].0 == newer.0 {
                // The same timestamp: the late sample replaces the older one.
                i -= 1;
            }
            points[k] = newer;
            j -= 1;
        }
    }
    // Each replaced sample left one slot free between the untouched head and the merged part.
    if k > i {
        points.copy_within(k.., i);
        points.truncate(n + m - (k - i));
    }
}

/// Samples in arrival order → time order, one per timestamp (the last to arrive).
fn sorted_latest(mut points: Vec<(i64, f64)>) -> Vec<(i64, f64)> {
    // Stable: samples of one timestamp keep their arrival order, and the last of them stays.
    points.sort_by_key(|p| p.0);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(points.len());
    for p in points {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// The head: series id → its samples. Reads take the lock briefly; the writer applies a group
/// at a time.
pub struct Head {
    /// Keyed by series id (the server's own numbers: FxHash, not SipHash).
    series: RwLock<FxHashMap<i64, SeriesHead>>,
    /// Samples held, for the memory gauge.
    samples: std::sync::atomic::AtomicUsize,
    /// The oldest timestamp held (`i64::MAX`: none), kept under the write lock. The writer asks
    /// before every group whether a window closed; scanning every series for it took 9 % of the
    /// server's CPU with 100 000 series.
    oldest: std::sync::atomic::AtomicI64,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            series: RwLock::default(),
            samples: Default::default(),
            oldest: std::sync::atomic::AtomicI64::new(i64::MAX),
        }
    }
}

impl Head {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies rows in order (a later row at an equal timestamp overwrites).
    pub fn apply(&self, rows: &[Row]) {
        let mut series = self.series.write().expect("head poisoned");
        // Samples held move by one per new timestamp, and back by those a fold finds overwritten.
        let (mut grew, mut shrank) = (0, 0);
        let mut oldest = self.oldest.load(std::sync::atomic::Ordering::Relaxed);
        for row in rows {
            oldest = oldest.min(row.ts);
            let entry = series.entry(row.series_id).or_default();
            entry.tenant_id = row.tenant_id;
            let before = entry.len();
            entry.put(row.ts, row.value);
            let after = entry.len();
            if after >= before {
                grew += after - before;
            } else {
                shrank += before - after;
            }
        }
        self.samples.fetch_add(grew, std::sync::atomic::Ordering::Relaxed);
        self.samples.fetch_sub(shrank, std::sync::atomic::Ordering::Relaxed);
        self.oldest.store(oldest, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets `oldest` from what `heads` holds, after samples were dropped.
    fn reset_oldest(&self, heads: &FxHashMap<i64, SeriesHead>) {
        let oldest = heads.values().filter_map(SeriesHead::oldest).min().unwrap_or(i64::MAX);
        self.oldest.store(oldest, std::sync::atomic::Ordering::Relaxed);
    }

    /// Samples held (an overwrite not yet folded in counts twice: this is for memory).
    pub fn len(&self) -> usize {
        self.samples.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Series held.
    pub fn series_count(&self) -> usize {
        self.series.read().expect("head poisoned").len()
    }

    /// The series' samples in `[from, to]`, in time order.
    pub fn raw(&self, series: i64, from: i64, to: i64) -> Vec<(i64, f64)> {
        let heads = self.series.read().expect("head poisoned");
        heads.get(&series).map(|s| s.range(from, to)).unwrap_or_default()
    }

    /// The series' newest sample.
    pub fn last(&self, series: i64) -> Option<(i64, f64)> {
        self.series.read().expect("head poisoned").get(&series).and_then(SeriesHead::newest)
    }

    /// The series' buckets of `width` ms starting in `[from, to]`, from its samples.
    pub fn buckets(&self, series: i64, width: i64, from: i64, to: i64) -> Vec<(i64, Summary)> {
        let points = self.raw(series, from, to.saturating_add(width - 1));
        summarize(&points, width).into_iter().filter(|(b, _)| *b >= from && *b <= to).collect()
    }

    /// Every sample with `ts < before`, as rows grouped by series (to flush).
    pub fn rows_before(&self, before: i64) -> Vec<Row> {
        self.collect(|ts| ts < before)
    }

    /// Every sample held (for a checkpoint or a clean stop).
    pub fn rows(&self) -> Vec<Row> {
        self.collect(|_| true)
    }

    fn collect(&self, keep: impl Fn(i64) -> bool) -> Vec<Row> {
        let heads = self.series.read().expect("head poisoned");
        let mut out = Vec::new();
        for (&series_id, s) in heads.iter() {
            for (ts, value) in s.range(i64::MIN, i64::MAX).into_iter().filter(|p| keep(p.0)) {
                out.push(Row { tenant_id: s.tenant_id, series_id, ts, value });
            }
        }
        out
    }

    /// The oldest timestamp held, if any.
    pub fn oldest(&self) -> Option<i64> {
        Some(self.oldest.load(std::sync::atomic::Ordering::Relaxed)).filter(|&ts| ts != i64::MAX)
    }

    /// Drops every sample with `ts < before` (after they were flushed).
    pub fn drop_before(&self, before: i64) {
        let mut heads = self.series.write().expect("head poisoned");
        let mut dropped = 0;
        heads.retain(|_, s| {
            dropped += s.drop_before(before);
            s.len() > 0
        });
        self.samples.fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
        self.reset_oldest(&heads);
    }

    /// Drops a tenant's samples (the tenant was deleted).
    pub fn forget_tenant(&self, tenant_id: i64) {
        let mut heads = self.series.write().expect("head poisoned");
        let mut dropped = 0;
        heads.retain(|_, s| {
            let gone = s.tenant_id == tenant_id;
            if gone {
                dropped += s.len();
            }
            !gone
        });
        self.samples.fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
        self.reset_oldest(&heads);
    }

    /// Drops a tenant's samples older than `before` (raw retention).
    pub fn purge(&self, tenant_id: i64, before: i64) -> usize {
        let mut heads = self.series.write().expect("head poisoned");
        let mut dropped = 0;
        heads.retain(|_, s| {
            if s.tenant_id == tenant_id {
                dropped += s.drop_before(before);
            }
            s.len() > 0
        });
        self.samples.fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
        self.reset_oldest(&heads);
        dropped
    }
}

/// The buckets of `width` ms of points in time order.
pub fn summarize(points: &[(i64, f64)], width: i64) -> Vec<(i64, Summary)> {
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for &(ts, value) in points {
        let bucket = bucket_of(ts, width);
        let point = Summary::of(ts, value);
        match out.last_mut() {
            Some((b, s)) if *b == bucket => s.merge(&point),
            _ => out.push((bucket, point)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(series: i64, ts: i64, value: f64) -> Row {
        Row { tenant_id: 1, series_id: series, ts, value }
    }

    proptest::proptest! {
        /// The in-place merge of a fold equals `chunk::merge` of the same tail and late samples.
        #[test]
        fn merging_in_place_equals_merging_into_a_new_list(
            points in proptest::collection::btree_map(-50i64..50, -5.0f64..5.0, 0..40),
            late in proptest::collection::btree_map(-50i64..50, -5.0f64..5.0, 1..40),
        ) {
            let points: Vec<(i64, f64)> = points.into_iter().collect();
            let late: Vec<(i64, f64)> = late.into_iter().collect();
            let start = points.partition_point(|p| p.0 < late[0].0);
            let mut expected = points[..start].to_vec();
            expected.extend(merge(points[start..].to_vec(), late.clone()));
            let mut merged = points.clone();
            merge_into(&mut merged, start, &late);
            proptest::prop_assert_eq!(merged, expected);
        }
    }

    #[test]
    fn the_last_write_wins_and_points_stay_in_time_order() {
        let head = Head::new();
        head.apply(&[row(1, 30, 3.0), row(1, 10, 1.0), row(1, 20, 2.0), row(1, 10, 9.0), row(2, 5, 5.0)]);
        assert_eq!(head.raw(1, 0, 100), vec![(10, 9.0), (20, 2.0), (30, 3.0)]);
        assert_eq!(head.raw(1, 15, 25), vec![(20, 2.0)]);
        assert_eq!(head.rows().len(), 4);
        assert_eq!(head.last(1), Some((30, 3.0)));
    }

    #[test]
    fn interleaved_time_ranges_fold_into_one_order_with_the_last_write_winning() {
        // Four writers, each sending its own time range of the same series, a sample at a time:
        // three of four samples land before the newest one.
        let head = Head::new();
        let mut expected = std::collections::BTreeMap::new();
        for i in 0..5_000i64 {
            for w in 0..4i64 {
                let ts = w * 1_000_000 + i * 10;
                head.apply(&[row(1, ts, (ts + w) as f64)]);
                expected.insert(ts, (ts + w) as f64);
            }
            if i % 1_000 == 999 {
                // Overwrites of older samples, some still unfolded, some folded already.
                for ts in [i * 10, 2_000_000 + (i - 500) * 10] {
                    head.apply(&[row(1, ts, -1.0)]);
                    expected.insert(ts, -1.0);
                }
            }
            if i % 777 == 0 {
                // Reads see the late samples before they are folded.
                let want: Vec<_> = expected.iter().map(|(&t, &v)| (t, v)).collect();
                assert_eq!(head.raw(1, i64::MIN, i64::MAX), want);
                assert_eq!(head.rows().len(), want.len());
                // An overwrite not yet folded is held twice.
                assert!(head.len() >= want.len());
            }
        }
        let want: Vec<_> = expected.iter().map(|(&t, &v)| (t, v)).collect();
        assert_eq!(head.raw(1, i64::MIN, i64::MAX), want);
        assert_eq!(
            head.raw(1, 1_000_000, 1_000_050),
            want.iter().copied().filter(|p| (1_000_000..=1_000_050).contains(&p.0)).collect::<Vec<_>>()
        );
        assert_eq!(head.last(1), want.last().copied());
        assert_eq!(head.oldest(), Some(0));
        assert_eq!(head.rows().len(), want.len());
        head.drop_before(2_000_000);
        assert_eq!(head.len(), want.iter().filter(|p| p.0 >= 2_000_000).count());
        assert_eq!(head.raw(1, 0, 1_999_999), vec![]);
        assert_eq!(head.oldest(), Some(2_000_000));
    }

    #[test]
    fn the_oldest_sample_follows_writes_flushes_purges_and_deleted_tenants() {
        let head = Head::new();
        assert_eq!(head.oldest(), None);
        let of = |tenant_id: i64, series_id: i64, ts: i64| Row { tenant_id, series_id, ts, value: 1.0 };
        head.apply(&[of(1, 10, 500), of(2, 20, 300)]);
        head.apply(&[of(1, 11, 700), of(1, 10, 200)]);
        assert_eq!(head.oldest(), Some(200), "a late sample lowers it");
        head.drop_before(250);
        assert_eq!(head.oldest(), Some(300));
        head.purge(2, 400);
        assert_eq!(head.oldest(), Some(500), "tenant 2's only sample was purged");
        head.forget_tenant(1);
        assert_eq!(head.oldest(), None);
        head.apply(&[of(3, 30, 900)]);
        assert_eq!(head.oldest(), Some(900));
    }

    #[test]
    fn the_newest_sample_is_the_last_write_at_the_newest_timestamp() {
        let head = Head::new();
        head.apply(&[row(1, 10, 1.0), row(1, 20, 2.0), row(1, 15, 3.0), row(1, 20, 4.0), row(1, 20, 5.0)]);
        assert_eq!(head.last(1), Some((20, 5.0)));
        assert_eq!(head.raw(1, 0, 100), vec![(10, 1.0), (15, 3.0), (20, 5.0)]);
        assert_eq!(head.rows().len(), 3);
    }

    #[test]
    fn buckets_follow_overwrites_exactly() {
        let head = Head::new();
        head.apply(&[row(1, 0, 1.0), row(1, 30_000, 2.0), row(1, 60_000, 4.0)]);
        head.apply(&[row(1, 30_000, 10.0)]);
        let buckets = head.buckets(1, 60_000, 0, 60_000);
        assert_eq!(buckets.len(), 2);
        assert_eq!((buckets[0].1.count, buckets[0].1.sum, buckets[0].1.max), (2, 11.0, 10.0));
        assert_eq!((buckets[1].0, buckets[1].1.sum), (60_000, 4.0));
    }

    #[test]
    fn flushing_and_deleting_drop_exactly_their_samples() {
        let head = Head::new();
        head.apply(&[row(1, 10, 1.0), row(1, 20, 2.0), Row { tenant_id: 2, series_id: 3, ts: 10, value: 0.0 }]);
        assert_eq!(head.rows_before(15).len(), 2);
        head.drop_before(15);
        assert_eq!(head.raw(1, 0, 100), vec![(20, 2.0)]);
        head.forget_tenant(1);
        assert_eq!(head.rows(), vec![]);
        assert!(head.is_empty());
    }
}
