//! microdash's own metrics, exposed on `GET /metrics` in the Prometheus text format.
//! Label values are bounded: routes are the matched templates, reasons a fixed set.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Why samples or requests were refused; a closed set so the label stays bounded.
pub mod reason {
    pub const MALFORMED: &str = "malformed";
    pub const INVALID_SAMPLE: &str = "invalid_sample";
    pub const BATCH_TOO_LARGE: &str = "batch_too_large";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const OVERLOADED: &str = "overloaded";
    pub const WRITE_FAILED: &str = "write_failed";
}

#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub samples_accepted: Counter,
    pub samples_duplicate: Counter,
    /// Requests refused at ingest, by reason (a refused request stores none of its samples).
    pub ingest_rejected: Family<ReasonLabels, Counter>,
    pub queue_depth: Gauge,
    pub write_batch_seconds: Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("microdash");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", http_requests.clone());
        let samples_accepted = Counter::default();
        registry.register("samples_accepted", "Samples durably stored", samples_accepted.clone());
        let samples_duplicate = Counter::default();
        registry.register("samples_duplicate", "Samples skipped as repeats of a dedupe_id", samples_duplicate.clone());
        let ingest_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests_rejected",
            "Requests refused, by reason (ingest validation, auth, limits, overload)",
            ingest_rejected.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Samples accepted into the write queue and not yet committed",
            queue_depth.clone(),
        );
        let write_batch_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "write_batch_seconds",
            "Time to commit one group of ingest requests",
            write_batch_seconds.clone(),
        );
        Self {
            registry: Arc::new(registry),
            http_requests,
            samples_accepted,
            samples_duplicate,
            ingest_rejected,
            queue_depth,
            write_batch_seconds,
        }
    }

    pub fn reject(&self, reason: &'static str) {
        self.ingest_rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
