//! The in-memory head of the embedded mode: per series, the raw samples of the windows not yet
//! flushed to the database, made durable by the write-ahead log (`wal.rs`) before a request is
//! answered. Reads merge it with rows and chunks; the head wins at an equal timestamp (it holds
//! the newest write). Its 1m/5m buckets are derived from its samples when read or flushed, so
//! an overwrite keeps them exact without bookkeeping.

use std::collections::HashMap;
use std::sync::RwLock;

use super::wal::Row;
use super::{Summary, bucket_of};

#[derive(Default)]
struct SeriesHead {
    tenant_id: i64,
    /// `(ts, value)` in time order, one per timestamp (the last write wins).
    points: Vec<(i64, f64)>,
}

impl SeriesHead {
    fn put(&mut self, ts: i64, value: f64) -> bool {
        match self.points.last() {
            Some(&(last, _)) if last < ts => {
                self.points.push((ts, value));
                true
            }
            None => {
                self.points.push((ts, value));
                true
            }
            _ => match self.points.binary_search_by_key(&ts, |p| p.0) {
                Ok(i) => {
                    self.points[i].1 = value;
                    false
                }
                Err(i) => {
                    self.points.insert(i, (ts, value));
                    true
                }
            },
        }
    }

    fn range(&self, from: i64, to: i64) -> &[(i64, f64)] {
        let start = self.points.partition_point(|p| p.0 < from);
        let end = self.points.partition_point(|p| p.0 <= to);
        &self.points[start..end.max(start)]
    }
}

/// The head: series id → its samples. Reads take the lock briefly; the writer applies a group
/// at a time.
#[derive(Default)]
pub struct Head {
    series: RwLock<HashMap<i64, SeriesHead>>,
    /// Samples held, for the memory gauge.
    samples: std::sync::atomic::AtomicUsize,
}

impl Head {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies rows in order (a later row at an equal timestamp overwrites).
    pub fn apply(&self, rows: &[Row]) {
        let mut series = self.series.write().expect("head poisoned");
        let mut added = 0;
        for row in rows {
            let entry = series.entry(row.series_id).or_default();
            entry.tenant_id = row.tenant_id;
            if entry.put(row.ts, row.value) {
                added += 1;
            }
        }
        self.samples.fetch_add(added, std::sync::atomic::Ordering::Relaxed);
    }

    /// Samples held.
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
        heads.get(&series).map(|s| s.range(from, to).to_vec()).unwrap_or_default()
    }

    /// The series' newest sample.
    pub fn last(&self, series: i64) -> Option<(i64, f64)> {
        self.series.read().expect("head poisoned").get(&series).and_then(|s| s.points.last().copied())
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
            for &(ts, value) in s.points.iter().filter(|p| keep(p.0)) {
                out.push(Row { tenant_id: s.tenant_id, series_id, ts, value });
            }
        }
        out
    }

    /// The oldest timestamp held, if any.
    pub fn oldest(&self) -> Option<i64> {
        self.series.read().expect("head poisoned").values().filter_map(|s| s.points.first().map(|p| p.0)).min()
    }

    /// Drops every sample with `ts < before` (after they were flushed).
    pub fn drop_before(&self, before: i64) {
        let mut heads = self.series.write().expect("head poisoned");
        let mut dropped = 0;
        heads.retain(|_, s| {
            let cut = s.points.partition_point(|p| p.0 < before);
            dropped += cut;
            s.points.drain(..cut);
            !s.points.is_empty()
        });
        self.samples.fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops a tenant's samples (the tenant was deleted).
    pub fn forget_tenant(&self, tenant_id: i64) {
        let mut heads = self.series.write().expect("head poisoned");
        let mut dropped = 0;
        heads.retain(|_, s| {
            let gone = s.tenant_id == tenant_id;
            if gone {
                dropped += s.points.len();
            }
            !gone
        });
        self.samples.fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops a tenant's samples older than `before` (raw retention).
    pub fn purge(&self, tenant_id: i64, before: i64) -> usize {
        let mut heads = self.series.write().expect("head poisoned");
        let mut dropped = 0;
        heads.retain(|_, s| {
            if s.tenant_id == tenant_id {
                let cut = s.points.partition_point(|p| p.0 < before);
                dropped += cut;
                s.points.drain(..cut);
            }
            !s.points.is_empty()
        });
        self.samples.fetch_sub(dropped, std::sync::atomic::Ordering::Relaxed);
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

    #[test]
    fn the_last_write_wins_and_points_stay_in_time_order() {
        let head = Head::new();
        head.apply(&[row(1, 30, 3.0), row(1, 10, 1.0), row(1, 20, 2.0), row(1, 10, 9.0), row(2, 5, 5.0)]);
        assert_eq!(head.raw(1, 0, 100), vec![(10, 9.0), (20, 2.0), (30, 3.0)]);
        assert_eq!(head.raw(1, 15, 25), vec![(20, 2.0)]);
        assert_eq!(head.len(), 4);
        assert_eq!(head.last(1), Some((30, 3.0)));
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
