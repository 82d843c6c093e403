//! A tenant's series that Prometheus selectors match, with their newest sample: what the
//! Prometheus API (`http/prometheus.rs`) lists and federates and what exporters push. The
//! selectors see Prometheus' names (`domain/promql.rs`); the answer keeps microdash's.

use crate::domain::Labels;
use crate::domain::promql::{Selector, prometheus_labels, prometheus_name};
use crate::storage::{DynStore, StoreError};

/// A selected series: microdash's metric name and labels, its Prometheus labels (with
/// `__name__`), and its newest sample.
pub struct Matched {
    pub metric: String,
    pub labels: Labels,
    pub prometheus: Labels,
    pub last: Option<(i64, f64)>,
}

pub enum SelectError {
    /// More than the `max` series asked for match.
    TooMany(usize),
    Store(StoreError),
}

impl From<StoreError> for SelectError {
    fn from(e: StoreError) -> Self {
        SelectError::Store(e)
    }
}

/// The tenant's series that any of `selectors` matches and whose newest sample is at or after
/// `since`; at most `max`. Metrics are filtered by name first; series of a metric are read once.
pub async fn matching(
    store: &DynStore,
    tenant_id: i64,
    selectors: &[Selector],
    since: Option<i64>,
    max: usize,
) -> Result<Vec<Matched>, SelectError> {
    let mut out = Vec::new();
    for metric in store.metric_names(tenant_id).await? {
        let name = prometheus_name(&metric);
        if !selectors.iter().any(|s| s.may_select_metric(&name)) {
            continue;
        }
        for info in store.series(tenant_id, &metric, &Labels::new()).await? {
            if since.is_some_and(|since| info.last.is_none_or(|(ts, _)| ts < since)) {
                continue;
            }
            let prometheus = prometheus_labels(&metric, &info.labels);
            if selectors.iter().any(|s| s.matches(&prometheus)) {
                if out.len() == max {
                    return Err(SelectError::TooMany(max));
                }
                out.push(Matched { metric: metric.clone(), labels: info.labels, prometheus, last: info.last });
            }
        }
    }
    Ok(out)
}
