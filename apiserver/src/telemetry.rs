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

/// Where an MQTT message came in: `embedded` (our broker) or `bridge` (an external broker).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MqttLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MqttDropLabels {
    pub source: &'static str,
    pub reason: &'static str,
}

/// A tenant's intake limit (`samples_per_second` or `series`). Tenants are few and made by the
/// admin, so the label stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub tenant: String,
    pub limit: &'static str,
}

/// Why samples or requests were refused; a closed set so the label stays bounded.
pub mod reason {
    pub const MALFORMED: &str = "malformed";
    pub const INVALID_SAMPLE: &str = "invalid_sample";
    pub const BATCH_TOO_LARGE: &str = "batch_too_large";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const SERIES_LIMITED: &str = "series_limited";
    pub const OVERLOADED: &str = "overloaded";
    pub const WRITE_FAILED: &str = "write_failed";
    pub const CROSS_ORIGIN: &str = "cross_origin";
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
    /// MQTT messages received, by source.
    pub mqtt_messages: Family<MqttLabels, Counter>,
    /// MQTT messages acknowledged and dropped (bad topic, payload, size, tenant), by source and reason.
    pub mqtt_dropped: Family<MqttDropLabels, Counter>,
    /// Commits of MQTT samples that failed and were retried before the acknowledgement.
    pub mqtt_write_retries: Family<MqttLabels, Counter>,
    /// Clients connected to the embedded broker.
    pub mqtt_connections: Gauge,
    /// Connections the embedded broker refused, by reason.
    pub mqtt_connections_refused: Family<ReasonLabels, Counter>,
    /// 1 while the bridge is connected to the external broker.
    pub mqtt_bridge_connected: Gauge,
    /// Times the bridge lost or could not open its connection.
    pub mqtt_bridge_connection_errors: Counter,
    /// 1 while this process evaluates the alert rules (always in embedded mode; the lease
    /// holder among workers sharing Redis).
    pub alert_engine_active: Gauge,
    /// Rules this process evaluates.
    pub alert_rules: Gauge,
    /// Rule instances (rule × matched series) this process evaluates.
    pub alert_instances: Gauge,
    /// Alert state transitions persisted, by the state entered.
    pub alert_transitions: Family<StateLabels, Counter>,
    /// Notification delivery attempts, by outcome (delivered, retry, failed).
    pub notification_attempts: Family<OutcomeLabels, Counter>,
    /// Samples refused by a tenant's intake limit, by tenant and limit.
    pub limit_refusals: Family<LimitLabels, Counter>,
    /// MQTT batches held back until they fit a tenant's rate, by tenant.
    pub limit_delays: Family<LimitLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
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
        let mqtt_messages = Family::<MqttLabels, Counter>::default();
        registry.register(
            "mqtt_messages",
            "MQTT messages received, by source (embedded broker or bridge)",
            mqtt_messages.clone(),
        );
        let mqtt_dropped = Family::<MqttDropLabels, Counter>::default();
        registry.register(
            "mqtt_messages_dropped",
            "MQTT messages acknowledged but not stored, by source and reason (bad_topic, unknown_tenant, \
             forbidden_topic, malformed, invalid_sample, batch_too_large, oversize)",
            mqtt_dropped.clone(),
        );
        let mqtt_write_retries = Family::<MqttLabels, Counter>::default();
        registry.register(
            "mqtt_write_retries",
            "Failed commits of MQTT samples, retried before acknowledging",
            mqtt_write_retries.clone(),
        );
        let mqtt_connections = Gauge::default();
        registry.register(
            "mqtt_connections",
            "Clients connected to the embedded MQTT broker",
            mqtt_connections.clone(),
        );
        let mqtt_connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mqtt_connections_refused",
            "Connections the embedded MQTT broker refused, by reason",
            mqtt_connections_refused.clone(),
        );
        let mqtt_bridge_connected = Gauge::default();
        registry.register(
            "mqtt_bridge_connected",
            "1 while the MQTT bridge is connected to the external broker and subscribed",
            mqtt_bridge_connected.clone(),
        );
        let mqtt_bridge_connection_errors = Counter::default();
        registry.register(
            "mqtt_bridge_connection_errors",
            "Times the MQTT bridge lost or could not open its connection to the external broker",
            mqtt_bridge_connection_errors.clone(),
        );
        let alert_engine_active = Gauge::default();
        registry.register(
            "alert_engine_active",
            "1 while this process evaluates the alert rules (with Redis: the worker holding the lease)",
            alert_engine_active.clone(),
        );
        let alert_rules = Gauge::default();
        registry.register("alert_rules", "Alert rules this process evaluates", alert_rules.clone());
        let alert_instances = Gauge::default();
        registry.register(
            "alert_instances",
            "Alert rule instances (rule and matched series) this process evaluates",
            alert_instances.clone(),
        );
        let alert_transitions = Family::<StateLabels, Counter>::default();
        registry.register(
            "alert_transitions",
            "Alert state transitions persisted, by the state entered",
            alert_transitions.clone(),
        );
        let notification_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "notification_attempts",
            "Notification delivery attempts, by outcome (delivered, retry, failed)",
            notification_attempts.clone(),
        );
        let limit_refusals = Family::<LimitLabels, Counter>::default();
        registry.register(
            "tenant_limit_refused_samples",
            "Samples refused by a tenant's intake limit, by tenant and limit (samples_per_second, series)",
            limit_refusals.clone(),
        );
        let limit_delays = Family::<LimitLabels, Counter>::default();
        registry.register(
            "tenant_limit_delays",
            "MQTT batches whose acknowledgement waited for the tenant's rate limit, by tenant",
            limit_delays.clone(),
        );
        Self {
            registry: Arc::new(registry),
            http_requests,
            samples_accepted,
            samples_duplicate,
            ingest_rejected,
            queue_depth,
            write_batch_seconds,
            mqtt_messages,
            mqtt_dropped,
            mqtt_write_retries,
            mqtt_connections,
            mqtt_connections_refused,
            mqtt_bridge_connected,
            mqtt_bridge_connection_errors,
            alert_engine_active,
            alert_rules,
            alert_instances,
            alert_transitions,
            notification_attempts,
            limit_refusals,
            limit_delays,
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
