//! Server configuration: flags win over `MICRODASH_*` environment variables, which win over
//! the optional YAML file; defaults live in one place (`Config::default`) and every value is
//! validated at start with an error that names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Limits;

/// One layer of configuration: what a flag, env var or the file sets. `None` = not set here.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Address for the HTTP API and dashboard.
    #[arg(long, env = "MICRODASH_LISTEN")]
    pub listen: Option<String>,
    /// Where data lives: `sqlite://PATH` (default `sqlite://./data/microdash.db`).
    #[arg(long, env = "MICRODASH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder for local state such as the default tenant's token file.
    #[arg(long, env = "MICRODASH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Redis for the distributed queue and live hub (unset = in-process).
    #[arg(long, env = "MICRODASH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// External MQTT broker to bridge from (unset = embedded broker).
    #[arg(long, env = "MICRODASH_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// Address of the embedded MQTT broker, or `off`.
    #[arg(long, env = "MICRODASH_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// Client id of the bridge's persistent session (default `microdash-{hostname}`).
    #[arg(long, env = "MICRODASH_MQTT_CLIENT_ID")]
    pub mqtt_client_id: Option<String>,
    /// Read `$share/microdash/metrics/#` (true, default: several workers split the messages) or
    /// `metrics/#` (false: one bridge; survives restarts of brokers that do not persist shared
    /// subscriptions, such as Mosquitto 2.0).
    #[arg(long, env = "MICRODASH_MQTT_SHARED_SUBSCRIPTION")]
    pub mqtt_shared_subscription: Option<bool>,
    /// CA certificates (PEM) that an `mqtts://` broker must chain to (default: the system's).
    #[arg(long, env = "MICRODASH_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require mutual TLS.
    #[arg(long, env = "MICRODASH_MQTT_CLIENT_CERT_FILE")]
    pub mqtt_client_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `mqtt_client_cert_file`.
    #[arg(long, env = "MICRODASH_MQTT_CLIENT_KEY_FILE")]
    pub mqtt_client_key_file: Option<PathBuf>,
    /// Which parts run in this process: all, api or worker.
    #[arg(long, env = "MICRODASH_ROLE")]
    pub role: Option<String>,
    /// The token that manages tenants over the admin API (unset = admin API disabled).
    #[arg(long, env = "MICRODASH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The token tenant `default` gets when the first start creates it (unset = a random one,
    /// printed once and written to `data_dir/default-tenant.token`).
    #[arg(long, env = "MICRODASH_DEFAULT_TENANT_TOKEN", hide_env_values = true)]
    pub default_tenant_token: Option<String>,
    /// Serve the dashboard from this folder instead of the copy built into the binary.
    #[arg(long, env = "MICRODASH_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, env = "MICRODASH_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most samples in one bulk request.
    #[arg(long, env = "MICRODASH_MAX_BATCH_SAMPLES")]
    pub max_batch_samples: Option<usize>,
    /// Most labels on one sample.
    #[arg(long, env = "MICRODASH_MAX_LABELS")]
    pub max_labels: Option<usize>,
    /// Longest metric name in bytes.
    #[arg(long, env = "MICRODASH_MAX_METRIC_NAME_LEN")]
    pub max_metric_name_len: Option<usize>,
    /// Longest label value in bytes.
    #[arg(long, env = "MICRODASH_MAX_LABEL_VALUE_LEN")]
    pub max_label_value_len: Option<usize>,
    /// How far in the future a sample's timestamp may be (e.g. `10m`).
    #[arg(long, env = "MICRODASH_MAX_FUTURE", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub max_future: Option<Duration>,
    /// Samples accepted but not yet committed, before ingest answers 503.
    #[arg(long, env = "MICRODASH_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// With Redis: samples a worker reads from the stream and commits in one transaction, at
    /// most (bounds the worker's memory; a larger batch shares a commit's cost more widely).
    #[arg(long, env = "MICRODASH_WORKER_BATCH_SAMPLES")]
    pub worker_batch_samples: Option<usize>,
    /// How long a `dedupe_id` is remembered (e.g. `24h`).
    #[arg(long, env = "MICRODASH_DEDUPE_WINDOW", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub dedupe_window: Option<Duration>,
    /// Samples per second each tenant may send (0 = unlimited).
    #[arg(long, env = "MICRODASH_TENANT_RATE_LIMIT")]
    pub tenant_rate_limit: Option<u32>,
    /// Request bodies read and being ingested at once, in bytes, across tenants (HTTP ingest
    /// waits for room before it reads a body): bounds the server's memory under a burst.
    #[arg(long, env = "MICRODASH_MAX_INFLIGHT_INGEST_BYTES")]
    pub max_inflight_ingest_bytes: Option<usize>,
    /// The same, per tenant; a tenant over it gets 429 (its other requests are still in flight).
    #[arg(long, env = "MICRODASH_MAX_INFLIGHT_INGEST_BYTES_PER_TENANT")]
    pub max_inflight_ingest_bytes_per_tenant: Option<usize>,
    /// Live streams (samples and alerts, SSE) one tenant may hold open at once.
    #[arg(long, env = "MICRODASH_MAX_STREAMS_PER_TENANT")]
    pub max_streams_per_tenant: Option<usize>,
    /// Most raw points one query may read.
    #[arg(long, env = "MICRODASH_MAX_QUERY_POINTS")]
    pub max_query_points: Option<usize>,
    /// SQLite `synchronous`: `normal` survives a crash of the process, `full` also power loss.
    #[arg(long, env = "MICRODASH_SQLITE_SYNC")]
    pub sqlite_sync: Option<String>,
    /// The folder of the in-memory head's write-ahead log (embedded mode). SQLite: defaults to
    /// `<database file>.head-wal` beside the file; PostgreSQL and MariaDB use the head only when
    /// this is set (a local disk), else every sample is written as a row.
    #[arg(long, env = "MICRODASH_HEAD_WAL_DIR")]
    pub head_wal_dir: Option<PathBuf>,
    /// How long raw samples are kept (e.g. `7d`); tenants may override.
    #[arg(long, env = "MICRODASH_RETENTION_RAW", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub retention_raw: Option<Duration>,
    /// How long 1-minute rollups are kept (e.g. `30d`).
    #[arg(long, env = "MICRODASH_RETENTION_1M", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub retention_1m: Option<Duration>,
    /// How long 5-minute rollups are kept (e.g. `400d`).
    #[arg(long, env = "MICRODASH_RETENTION_5M", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub retention_5m: Option<Duration>,
    /// How often the retention job runs (e.g. `1m`).
    #[arg(long, env = "MICRODASH_RETENTION_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub retention_interval: Option<Duration>,
    /// How long after a start the first retention and compaction pass waits (e.g. `30s`;
    /// default: `retention_interval`, at most 30 s).
    #[arg(long, env = "MICRODASH_RETENTION_START_DELAY", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub retention_start_delay: Option<Duration>,
    /// How long a dashboard login lasts (e.g. `12h`).
    #[arg(long, env = "MICRODASH_SESSION_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub session_ttl: Option<Duration>,
    /// Mark the session cookie `Secure` (set when serving over HTTPS, e.g. behind a proxy).
    #[arg(long, env = "MICRODASH_COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,
    /// Log format: text or json.
    #[arg(long, env = "MICRODASH_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Attempts to deliver one alert notification before it is marked failed.
    #[arg(long, env = "MICRODASH_NOTIFY_MAX_ATTEMPTS")]
    pub notify_max_attempts: Option<u32>,
    /// The wait after a failed delivery attempt; it doubles after each further failure (e.g. `1s`).
    #[arg(long, env = "MICRODASH_NOTIFY_BACKOFF", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub notify_backoff: Option<Duration>,
    /// The longest wait between two delivery attempts (e.g. `5m`).
    #[arg(long, env = "MICRODASH_NOTIFY_MAX_BACKOFF", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub notify_max_backoff: Option<Duration>,
    /// CA certificates (PEM) trusted for webhooks and SMTP besides the system's (a private CA).
    #[arg(long, env = "MICRODASH_NOTIFY_CA_FILE")]
    pub notify_ca_file: Option<PathBuf>,
    /// With Redis: how long the worker that evaluates alerts holds its lease without renewing
    /// it (it renews every second); another worker takes over after that (e.g. `10s`).
    #[arg(long, env = "MICRODASH_ALERT_LEASE_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub alert_lease_ttl: Option<Duration>,
    /// Non-public ranges webhooks may reach (comma-separated CIDRs, e.g. `10.96.0.0/12`);
    /// loopback, private, link-local (metadata) and other local addresses are refused otherwise.
    #[arg(long, env = "MICRODASH_OUTBOUND_ALLOW")]
    pub outbound_allow: Option<String>,
}

macro_rules! merge_layers {
    ($high:expr, $low:expr, $($field:ident),*) => {
        ConfigLayer { $($field: $high.$field.or($low.$field)),* }
    };
}

impl ConfigLayer {
    /// Values set in `self` win; the rest come from `lower`.
    pub fn over(self, lower: ConfigLayer) -> ConfigLayer {
        merge_layers!(
            self,
            lower,
            listen,
            database_url,
            data_dir,
            redis_url,
            mqtt_url,
            mqtt_listen,
            mqtt_client_id,
            mqtt_shared_subscription,
            mqtt_ca_file,
            mqtt_client_cert_file,
            mqtt_client_key_file,
            role,
            admin_token,
            default_tenant_token,
            dashboard_dir,
            max_body_bytes,
            max_batch_samples,
            max_labels,
            max_metric_name_len,
            max_label_value_len,
            max_future,
            queue_capacity,
            worker_batch_samples,
            dedupe_window,
            tenant_rate_limit,
            max_inflight_ingest_bytes,
            max_inflight_ingest_bytes_per_tenant,
            max_streams_per_tenant,
            max_query_points,
            sqlite_sync,
            head_wal_dir,
            retention_raw,
            retention_1m,
            retention_5m,
            retention_interval,
            retention_start_delay,
            session_ttl,
            cookie_secure,
            log_format,
            notify_max_attempts,
            notify_backoff,
            notify_max_backoff,
            notify_ca_file,
            alert_lease_ttl,
            outbound_allow
        )
    }

    /// Reads a YAML file of the same keys.
    pub fn from_file(path: &Path) -> Result<ConfigLayer, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("--config", format!("cannot read {}: {e}", path.display())))?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::new("--config", format!("{}: {e}", path.display())))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    All,
    Api,
    Worker,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub redis_url: Option<String>,
    /// The external broker the bridge reads from; `None` = the embedded broker.
    pub mqtt_url: Option<String>,
    /// `None` when the embedded broker is off (also whenever `mqtt_url` is set).
    pub mqtt_listen: Option<SocketAddr>,
    pub mqtt_client_id: Option<String>,
    pub mqtt_shared_subscription: bool,
    pub mqtt_ca_file: Option<PathBuf>,
    pub mqtt_client_cert_file: Option<PathBuf>,
    pub mqtt_client_key_file: Option<PathBuf>,
    pub role: Role,
    #[serde(serialize_with = "redact")]
    pub admin_token: Option<String>,
    #[serde(serialize_with = "redact")]
    pub default_tenant_token: Option<String>,
    pub dashboard_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_batch_samples: usize,
    pub max_labels: usize,
    pub max_metric_name_len: usize,
    pub max_label_value_len: usize,
    #[serde(serialize_with = "short_duration")]
    pub max_future: Duration,
    pub queue_capacity: usize,
    pub worker_batch_samples: usize,
    #[serde(serialize_with = "short_duration")]
    pub dedupe_window: Duration,
    pub tenant_rate_limit: u32,
    pub max_inflight_ingest_bytes: usize,
    pub max_inflight_ingest_bytes_per_tenant: usize,
    pub max_streams_per_tenant: usize,
    pub max_query_points: usize,
    pub sqlite_sync: String,
    pub head_wal_dir: Option<PathBuf>,
    #[serde(serialize_with = "short_duration")]
    pub retention_raw: Duration,
    #[serde(serialize_with = "short_duration")]
    pub retention_1m: Duration,
    #[serde(serialize_with = "short_duration")]
    pub retention_5m: Duration,
    #[serde(serialize_with = "short_duration")]
    pub retention_interval: Duration,
    #[serde(serialize_with = "short_duration")]
    pub retention_start_delay: Duration,
    #[serde(serialize_with = "short_duration")]
    pub session_ttl: Duration,
    pub cookie_secure: bool,
    pub log_format: String,
    pub notify_max_attempts: u32,
    #[serde(serialize_with = "short_duration")]
    pub notify_backoff: Duration,
    #[serde(serialize_with = "short_duration")]
    pub notify_max_backoff: Duration,
    pub notify_ca_file: Option<PathBuf>,
    #[serde(serialize_with = "short_duration")]
    pub alert_lease_ttl: Duration,
    /// CIDRs, comma-separated; empty = public addresses only.
    pub outbound_allow: String,
}

fn redact<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// A configuration key and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: &str, reason: impl Into<String>) -> Self {
        Self { key: key.to_string(), reason: reason.into() }
    }
}

impl Default for Config {
    fn default() -> Self {
        let limits = Limits::default();
        Config {
            listen: "0.0.0.0:8080".parse().expect("valid default"),
            database_url: "sqlite://./data/microdash.db".into(),
            data_dir: PathBuf::from("./data"),
            redis_url: None,
            mqtt_url: None,
            mqtt_listen: Some("0.0.0.0:1883".parse().expect("valid default")),
            mqtt_client_id: None,
            mqtt_shared_subscription: true,
            mqtt_ca_file: None,
            mqtt_client_cert_file: None,
            mqtt_client_key_file: None,
            role: Role::All,
            admin_token: None,
            default_tenant_token: None,
            dashboard_dir: None,
            max_body_bytes: 8 * 1024 * 1024,
            max_batch_samples: limits.max_batch_samples,
            max_labels: limits.max_labels,
            max_metric_name_len: limits.max_metric_name_len,
            max_label_value_len: limits.max_label_value_len,
            max_future: Duration::from_millis(limits.max_future_ms as u64),
            queue_capacity: 1_000_000,
            worker_batch_samples: 10_000,
            dedupe_window: Duration::from_secs(24 * 3600),
            tenant_rate_limit: 1_000_000,
            // Four bodies of the default maximum size at once, two of them one tenant's: the
            // memory bound of a burst is about 24 times this (README, "Memory under load").
            max_inflight_ingest_bytes: 32 * 1024 * 1024,
            max_inflight_ingest_bytes_per_tenant: 16 * 1024 * 1024,
            max_streams_per_tenant: 100,
            max_query_points: 2_000_000,
            sqlite_sync: "normal".into(),
            head_wal_dir: None,
            retention_raw: Duration::from_secs(7 * 86_400),
            retention_1m: Duration::from_secs(30 * 86_400),
            retention_5m: Duration::from_secs(400 * 86_400),
            retention_interval: Duration::from_secs(60),
            retention_start_delay: Duration::from_secs(30),
            session_ttl: Duration::from_secs(12 * 3600),
            cookie_secure: false,
            log_format: "text".into(),
            notify_max_attempts: 10,
            notify_backoff: Duration::from_secs(1),
            notify_max_backoff: Duration::from_secs(300),
            notify_ca_file: None,
            alert_lease_ttl: Duration::from_secs(10),
            outbound_allow: String::new(),
        }
    }
}

impl Config {
    /// Builds the effective configuration from the merged layers, validating every key.
    pub fn resolve(layer: ConfigLayer) -> Result<Config, ConfigError> {
        let d = Config::default();
        let listen = match layer.listen {
            Some(text) => text
                .parse()
                .map_err(|_| ConfigError::new("listen", format!("{text:?} is not an address like 0.0.0.0:8080")))?,
            None => d.listen,
        };
        let mqtt_listen = match layer.mqtt_listen.as_deref() {
            Some("off") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ConfigError::new("mqtt_listen", format!("{text:?} is not an address like 0.0.0.0:1883 or `off`"))
            })?),
            None => d.mqtt_listen,
        };
        // One MQTT source per process: the embedded broker, or the bridge to an external one.
        let mqtt_listen = match (&layer.mqtt_url, &layer.mqtt_listen) {
            (None, _) => mqtt_listen,
            (Some(_), Some(text)) if text != "off" => {
                return Err(ConfigError::new(
                    "mqtt_listen",
                    "the embedded broker runs only without mqtt_url; unset one of them (or set mqtt_listen to off)",
                ));
            }
            (Some(_), _) => None,
        };
        if let Some(id) = &layer.mqtt_client_id
            && (id.is_empty() || id.len() > 65535)
        {
            return Err(ConfigError::new("mqtt_client_id", "must be 1 to 65535 bytes long"));
        }
        let role = match layer.role.as_deref() {
            None | Some("all") => Role::All,
            Some("api") => Role::Api,
            Some("worker") => Role::Worker,
            Some(other) => return Err(ConfigError::new("role", format!("{other:?} is not one of all, api, worker"))),
        };
        let database_url = layer.database_url.unwrap_or(d.database_url);
        if !["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(ConfigError::new(
                "database_url",
                format!(
                    "{} is not supported: use sqlite://PATH, postgres://USER:PASSWORD@HOST/DB or mysql://USER:PASSWORD@HOST/DB (MariaDB)",
                    redact_url(&database_url)
                ),
            ));
        }
        if let Some(url) = &layer.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::new(
                "redis_url",
                format!("{} must start with redis:// or rediss://", redact_url(url)),
            ));
        }
        if role != Role::All && layer.redis_url.is_none() {
            return Err(ConfigError::new(
                "role",
                "api and worker processes share work through Redis: set redis_url (MICRODASH_REDIS_URL), or use role `all`",
            ));
        }
        if role != Role::All && database_url.starts_with("sqlite:") {
            return Err(ConfigError::new(
                "role",
                "api and worker processes need a shared database: set database_url to postgres:// or mysql://",
            ));
        }
        let sqlite_sync = layer.sqlite_sync.unwrap_or(d.sqlite_sync);
        if !matches!(sqlite_sync.as_str(), "normal" | "full") {
            return Err(ConfigError::new("sqlite_sync", format!("{sqlite_sync:?} is not one of normal, full")));
        }
        if layer.head_wal_dir.is_some() && layer.redis_url.is_some() {
            return Err(ConfigError::new(
                "head_wal_dir",
                "is for the embedded mode: with redis_url the Redis stream is the log and workers write rows; unset one of them",
            ));
        }
        if layer.head_wal_dir.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::new("head_wal_dir", "is empty: give a folder on a local disk"));
        }
        let log_format = layer.log_format.unwrap_or(d.log_format);
        if !matches!(log_format.as_str(), "text" | "json") {
            return Err(ConfigError::new("log_format", format!("{log_format:?} is not one of text, json")));
        }
        if let Some(token) = &layer.admin_token
            && token.len() < 16
        {
            return Err(ConfigError::new("admin_token", "must be at least 16 characters (use a long random string)"));
        }
        let config = Config {
            listen,
            database_url,
            data_dir: layer.data_dir.unwrap_or(d.data_dir),
            redis_url: layer.redis_url,
            mqtt_url: layer.mqtt_url,
            mqtt_listen,
            mqtt_client_id: layer.mqtt_client_id,
            mqtt_shared_subscription: layer.mqtt_shared_subscription.unwrap_or(d.mqtt_shared_subscription),
            mqtt_ca_file: layer.mqtt_ca_file,
            mqtt_client_cert_file: layer.mqtt_client_cert_file,
            mqtt_client_key_file: layer.mqtt_client_key_file,
            role,
            admin_token: layer.admin_token,
            default_tenant_token: layer.default_tenant_token,
            dashboard_dir: layer.dashboard_dir,
            max_body_bytes: at_least("max_body_bytes", layer.max_body_bytes.unwrap_or(d.max_body_bytes), 1024)?,
            max_batch_samples: at_least(
                "max_batch_samples",
                layer.max_batch_samples.unwrap_or(d.max_batch_samples),
                1,
            )?,
            max_labels: at_least("max_labels", layer.max_labels.unwrap_or(d.max_labels), 0)?,
            max_metric_name_len: at_least(
                "max_metric_name_len",
                layer.max_metric_name_len.unwrap_or(d.max_metric_name_len),
                1,
            )?,
            max_label_value_len: at_least(
                "max_label_value_len",
                layer.max_label_value_len.unwrap_or(d.max_label_value_len),
                1,
            )?,
            max_future: layer.max_future.unwrap_or(d.max_future),
            queue_capacity: at_least("queue_capacity", layer.queue_capacity.unwrap_or(d.queue_capacity), 1)?,
            worker_batch_samples: at_least(
                "worker_batch_samples",
                layer.worker_batch_samples.unwrap_or(d.worker_batch_samples),
                crate::pipeline::redis::ENTRY_SAMPLES,
            )?,
            dedupe_window: layer.dedupe_window.unwrap_or(d.dedupe_window),
            tenant_rate_limit: layer.tenant_rate_limit.unwrap_or(d.tenant_rate_limit),
            max_inflight_ingest_bytes: at_least(
                "max_inflight_ingest_bytes",
                layer.max_inflight_ingest_bytes.unwrap_or(d.max_inflight_ingest_bytes),
                1024,
            )?,
            max_inflight_ingest_bytes_per_tenant: at_least(
                "max_inflight_ingest_bytes_per_tenant",
                layer.max_inflight_ingest_bytes_per_tenant.unwrap_or(d.max_inflight_ingest_bytes_per_tenant),
                1024,
            )?,
            max_streams_per_tenant: at_least(
                "max_streams_per_tenant",
                layer.max_streams_per_tenant.unwrap_or(d.max_streams_per_tenant),
                1,
            )?,
            max_query_points: at_least("max_query_points", layer.max_query_points.unwrap_or(d.max_query_points), 1)?,
            sqlite_sync,
            head_wal_dir: layer.head_wal_dir,
            retention_raw: layer.retention_raw.unwrap_or(d.retention_raw),
            retention_1m: layer.retention_1m.unwrap_or(d.retention_1m),
            retention_5m: layer.retention_5m.unwrap_or(d.retention_5m),
            retention_interval: layer
                .retention_interval
                .unwrap_or(d.retention_interval)
                .max(Duration::from_millis(100)),
            retention_start_delay: layer.retention_start_delay.unwrap_or_else(|| {
                layer.retention_interval.unwrap_or(d.retention_interval).min(d.retention_start_delay)
            }),
            session_ttl: layer.session_ttl.unwrap_or(d.session_ttl),
            cookie_secure: layer.cookie_secure.unwrap_or(d.cookie_secure),
            log_format,
            notify_max_attempts: at_least(
                "notify_max_attempts",
                layer.notify_max_attempts.unwrap_or(d.notify_max_attempts) as usize,
                1,
            )? as u32,
            notify_backoff: layer.notify_backoff.unwrap_or(d.notify_backoff),
            notify_max_backoff: layer.notify_max_backoff.unwrap_or(d.notify_max_backoff),
            notify_ca_file: layer.notify_ca_file,
            alert_lease_ttl: layer.alert_lease_ttl.unwrap_or(d.alert_lease_ttl),
            outbound_allow: layer.outbound_allow.unwrap_or(d.outbound_allow),
        };
        config.outbound_policy()?;
        if let Some(token) = &config.default_tenant_token
            && let Err(reason) = crate::domain::Token::from_secret(token)
        {
            return Err(ConfigError::new("default_tenant_token", reason));
        }
        if let Some(path) = &config.notify_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::new("notify_ca_file", format!("cannot read {}: {e}", path.display())))?;
            crate::alerting::outbox::Notifier::new(Some(pem), Default::default())
                .map_err(|e| ConfigError::new("notify_ca_file", e))?;
        }
        if config.alert_lease_ttl < Duration::from_secs(3) {
            return Err(ConfigError::new(
                "alert_lease_ttl",
                "must be at least 3s: the evaluating worker renews its lease every second",
            ));
        }
        if config.queue_capacity < config.max_batch_samples {
            return Err(ConfigError::new(
                "queue_capacity",
                format!("must be at least max_batch_samples ({}) so one full batch fits", config.max_batch_samples),
            ));
        }
        if config.queue_capacity > u32::MAX as usize {
            return Err(ConfigError::new("queue_capacity", "must be below 4294967295"));
        }
        Ok(config)
    }

    /// Where webhooks may go besides public addresses (`outbound_allow`).
    pub fn outbound_policy(&self) -> Result<crate::outbound::OutboundPolicy, ConfigError> {
        crate::outbound::OutboundPolicy::parse(&self.outbound_allow).map_err(|e| ConfigError::new("outbound_allow", e))
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_metric_name_len: self.max_metric_name_len,
            max_label_value_len: self.max_label_value_len,
            max_labels: self.max_labels,
            max_batch_samples: self.max_batch_samples,
            max_future_ms: self.max_future.as_millis() as i64,
            ..Limits::default()
        }
    }

    /// The effective configuration as YAML, secrets redacted.
    pub fn to_redacted_yaml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = redact_url(&shown.database_url);
        shown.redis_url = shown.redis_url.as_deref().map(redact_url);
        shown.mqtt_url = shown.mqtt_url.as_deref().map(redact_url);
        serde_saphyr::to_string(&shown).expect("config serializes")
    }
}

fn at_least(key: &str, value: usize, min: usize) -> Result<usize, ConfigError> {
    if value < min {
        return Err(ConfigError::new(key, format!("must be at least {min}")));
    }
    Ok(value)
}

/// Hides the password of `scheme://user:password@host`.
/// A duration as its shortest text (`400d`, `1h30m`), which the configuration file reads back
/// (humantime's own text of 400 days was `1year 1month 4days 7h 26m 24s`).
fn short_duration<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&microdash_model::format_duration(*duration))
}

pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_contract() {
        let c = Config::resolve(ConfigLayer::default()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.database_url, "sqlite://./data/microdash.db");
        assert_eq!(c.mqtt_listen.unwrap().to_string(), "0.0.0.0:1883");
        assert_eq!(c.role, Role::All);
    }

    #[test]
    fn an_external_broker_turns_the_embedded_one_off() {
        let c =
            Config::resolve(ConfigLayer { mqtt_url: Some("mqtt://broker:1883".into()), ..Default::default() }).unwrap();
        assert_eq!(c.mqtt_listen, None);
        let yaml = Config::resolve(ConfigLayer { mqtt_url: Some("mqtt://u:pw@broker".into()), ..Default::default() })
            .unwrap()
            .to_redacted_yaml();
        assert!(yaml.contains("mqtt://u:<redacted>@broker") && !yaml.contains("pw@"), "{yaml}");
    }

    #[test]
    fn higher_layers_win() {
        let flags = ConfigLayer { listen: Some("127.0.0.1:1".into()), ..Default::default() };
        let file = ConfigLayer { listen: Some("127.0.0.1:2".into()), max_labels: Some(3), ..Default::default() };
        let c = Config::resolve(flags.over(file)).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.max_labels, 3);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (ConfigLayer { listen: Some("nope".into()), ..Default::default() }, "listen"),
            (ConfigLayer { role: Some("boss".into()), ..Default::default() }, "role"),
            (ConfigLayer { mqtt_listen: Some("x".into()), ..Default::default() }, "mqtt_listen"),
            (ConfigLayer { admin_token: Some("short".into()), ..Default::default() }, "admin_token"),
            (ConfigLayer { queue_capacity: Some(10), ..Default::default() }, "queue_capacity"),
            (ConfigLayer { max_body_bytes: Some(1), ..Default::default() }, "max_body_bytes"),
            (ConfigLayer { database_url: Some("oracle://x".into()), ..Default::default() }, "database_url"),
            (
                ConfigLayer {
                    mqtt_url: Some("mqtt://broker".into()),
                    mqtt_listen: Some("0.0.0.0:1883".into()),
                    ..Default::default()
                },
                "mqtt_listen",
            ),
        ];
        for (layer, key) in cases {
            assert_eq!(Config::resolve(layer).unwrap_err().key, key);
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9\nlisten_port: 3\n").unwrap();
        let err = ConfigLayer::from_file(&path).unwrap_err();
        assert!(err.reason.contains("listen_port"), "{err}");
        std::fs::write(&path, "listen: 127.0.0.1:9\ndedupe_window: 2h\n").unwrap();
        let layer = ConfigLayer::from_file(&path).unwrap();
        assert_eq!(layer.dedupe_window, Some(Duration::from_secs(7200)));
    }

    /// `--check-config` shows durations as a person writes them, and the printed YAML reads
    /// back as a configuration file with the same values.
    #[test]
    fn printed_durations_are_short_and_read_back() {
        let config =
            Config::resolve(ConfigLayer { dedupe_window: Some(Duration::from_secs(5400)), ..Default::default() })
                .unwrap();
        let yaml = config.to_redacted_yaml();
        for line in ["retention_5m: 400d", "retention_raw: 7d", "dedupe_window: 1h30m", "max_future: 10m"] {
            assert!(yaml.lines().any(|l| l == line), "{line} in:\n{yaml}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("printed.yaml");
        let durations: String = yaml
            .lines()
            .filter(|l| {
                ["retention_", "dedupe_window", "max_future", "session_ttl", "notify_", "alert_lease_ttl"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, &durations).unwrap();
        let again = Config::resolve(ConfigLayer::from_file(&path).unwrap()).unwrap();
        assert_eq!(
            (again.retention_5m, again.dedupe_window, again.notify_max_backoff),
            (config.retention_5m, config.dedupe_window, config.notify_max_backoff)
        );
    }

    #[test]
    fn printed_config_has_no_secrets() {
        let c =
            Config::resolve(ConfigLayer { admin_token: Some("super-secret-admin-token".into()), ..Default::default() })
                .unwrap();
        let yaml = c.to_redacted_yaml();
        assert!(!yaml.contains("super-secret"), "{yaml}");
        assert!(yaml.contains("<redacted>"));
        assert_eq!(redact_url("mysql://u:pw@db:3306/x"), "mysql://u:<redacted>@db:3306/x");
    }
}
