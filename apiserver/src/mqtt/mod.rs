//! MQTT ingestion: an embedded broker (`broker`) or a bridge from an external one (`bridge`),
//! both feeding the same validation, dedupe and durable pipeline as HTTP through `Ingestor`.
//!
//! The contract both keep: a QoS 1 message is acknowledged only after its samples are
//! committed (or after it was found unusable, counted and logged: redelivering garbage would
//! only loop). A message that could not be committed is never acknowledged, so the sender or
//! the broker delivers it again.

pub mod bridge;
pub mod broker;
pub mod config;
pub mod topics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Auth;
use crate::config::Config;
use crate::domain::{Limits, Sample, now_ms};
use crate::limits::IntakeLimits;
use crate::pipeline::{SubmitError, Writer};
use crate::storage::DynStore;
use crate::telemetry::{MqttDropLabels, MqttLabels, Telemetry};
use bridge::Bridge;
use broker::Broker;
use config::BridgeSettings;
use topics::{DropReason, decode_payload, parse_topic};

/// Where messages come from; the `source` label of the MQTT metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Embedded,
    Bridge,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Embedded => "embedded",
            Source::Bridge => "bridge",
        }
    }
}

/// Who published: the bridge trusts the external broker's ACL and reads the tenant from the
/// topic; an embedded-broker client may publish only for the tenant it logged in as.
#[derive(Debug, Clone, Copy)]
pub enum Publisher<'a> {
    AnyTenant,
    Tenant { id: i64, name: &'a str },
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub payload: Bytes,
}

/// The server is stopping before the messages were committed: acknowledge none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is stopping")]
pub struct Stopped;

/// Turns MQTT messages into committed samples; shared by the broker's connections and the bridge.
pub struct Ingestor {
    writer: Writer,
    tenants: TenantDirectory,
    limits: Limits,
    telemetry: Telemetry,
    intake: Option<Arc<crate::limits::IntakeLimits>>,
    /// `max_body_bytes`: one payload may be as large as one HTTP body.
    max_payload_bytes: usize,
    shutdown: watch::Receiver<bool>,
    drop_log: LogBudget,
}

/// How long a failed commit waits before the next try, at most.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

impl Ingestor {
    pub fn new(
        store: DynStore,
        writer: Writer,
        limits: Limits,
        telemetry: Telemetry,
        intake: Option<Arc<crate::limits::IntakeLimits>>,
        max_payload_bytes: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            writer,
            tenants: TenantDirectory { store, cache: Mutex::new(HashMap::new()), auth: None },
            limits,
            telemetry,
            intake,
            max_payload_bytes,
            shutdown,
            drop_log: LogBudget::new(20),
        }
    }

    /// Tells the tenant directory which tenants were deleted (by any process), so a cached id
    /// of one is looked up again at once instead of after its TTL.
    pub fn watching_deletions(mut self, auth: Arc<crate::auth::Auth>) -> Self {
        self.tenants.auth = Some(auth);
        self
    }

    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// Commits the samples of every usable message and drops (counts and logs) the rest.
    /// Returns once all of them may be acknowledged; `Err(Stopped)` when the server stops
    /// first, and then none may be.
    pub async fn ingest(&self, source: Source, publisher: Publisher<'_>, messages: &[Inbound]) -> Result<(), Stopped> {
        self.telemetry
            .mqtt_messages
            .get_or_create(&MqttLabels { source: source.as_str() })
            .inc_by(messages.len() as u64);
        let mut tenants: Vec<i64> = Vec::new();
        let mut groups: Vec<Vec<&Inbound>> = Vec::new();
        // A batch names few tenants: look each up once.
        let mut seen: Vec<(&str, i64)> = Vec::new();
        for message in messages {
            let known = parse_topic(&message.topic)
                .filter(|_| message.payload.len() <= self.max_payload_bytes)
                .and_then(|topic| seen.iter().find(|(name, _)| *name == topic.tenant).map(|(_, id)| *id));
            let verdict = match known {
                Some(id) => Ok(id),
                None => {
                    let verdict = self.tenant_of(publisher, message).await?;
                    if let (Ok(id), Some(topic)) = (&verdict, parse_topic(&message.topic)) {
                        seen.push((topic.tenant, *id));
                    }
                    verdict
                }
            };
            match verdict {
                Ok(tenant_id) => match tenants.iter().position(|t| *t == tenant_id) {
                    Some(i) => groups[i].push(message),
                    None => {
                        tenants.push(tenant_id);
                        groups.push(vec![message]);
                    }
                },
                Err((reason, detail)) => self.dropped(source, &message.topic, reason, &detail),
            }
        }
        for (tenant_id, group) in tenants.into_iter().zip(groups) {
            self.commit(source, tenant_id, &group).await?;
        }
        Ok(())
    }

    /// Tells a message dropped by the caller (too large to even read) apart in the metrics.
    pub fn dropped(&self, source: Source, topic: &str, reason: DropReason, detail: &str) {
        self.telemetry
            .mqtt_dropped
            .get_or_create(&MqttDropLabels { source: source.as_str(), reason: reason.as_str() })
            .inc();
        if self.drop_log.take() {
            let topic: String = topic.chars().take(200).collect();
            tracing::warn!(source = source.as_str(), %topic, reason = reason.as_str(), %detail, "Dropped an MQTT message.");
        }
    }

    /// The tenant a message is for, or why it is dropped.
    async fn tenant_of(
        &self,
        publisher: Publisher<'_>,
        message: &Inbound,
    ) -> Result<Result<i64, (DropReason, String)>, Stopped> {
        if message.payload.len() > self.max_payload_bytes {
            return Ok(Err((
                DropReason::Oversize,
                format!("{} bytes; the limit is {} (max_body_bytes)", message.payload.len(), self.max_payload_bytes),
            )));
        }
        let Some(topic) = parse_topic(&message.topic) else {
            return Ok(Err((DropReason::BadTopic, "expected metrics/{tenant} or metrics/{tenant}/{metric}".into())));
        };
        let name = match publisher {
            Publisher::Tenant { id, name } if name == topic.tenant => return Ok(Ok(id)),
            Publisher::Tenant { name, .. } => {
                return Ok(Err((
                    DropReason::ForbiddenTopic,
                    format!("a client of tenant {name:?} may publish only under metrics/{name}/"),
                )));
            }
            Publisher::AnyTenant => topic.tenant,
        };
        let mut wait = Duration::from_millis(100);
        loop {
            match self.tenants.id_of(name).await {
                Ok(Some(id)) => return Ok(Ok(id)),
                Ok(None) => return Ok(Err((DropReason::UnknownTenant, "no such tenant".into()))),
                Err(err) => {
                    // Not the message's fault, so it is not dropped: wait for the store.
                    tracing::warn!(%err, retry_in = ?wait, "Looking up the tenant of an MQTT message failed; retrying.");
                    let mut stop = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping(&mut stop) => return Err(Stopped),
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
    }

    /// Decodes one tenant's messages and commits their samples, retrying failed commits.
    async fn commit(&self, source: Source, tenant_id: i64, messages: &[&Inbound]) -> Result<(), Stopped> {
        let mut wait = Duration::from_millis(100);
        let mut first_try = true;
        loop {
            let mut samples = self.decode(source, messages, first_try);
            if let Some(intake) = &self.intake
                && let Some(refusal) = intake.check_series(tenant_id, &samples).await
            {
                // MQTT 3.1.1 cannot refuse one message: like any unusable sample, these are
                // acknowledged, counted (tenant_limit_refused_samples) and logged.
                if first_try && self.drop_log.take() {
                    tracing::warn!(
                        source = source.as_str(),
                        tenant_id,
                        refused = refusal.refused.len(),
                        limit = refusal.limit,
                        examples = ?refusal.examples,
                        "Dropped MQTT samples of new series: the tenant is at its series limit."
                    );
                }
                samples = crate::limits::without(samples, &refusal.refused);
            }
            first_try = false;
            match self.submit(tenant_id, samples).await {
                Ok(()) => return Ok(()),
                Err(SubmitError::ShuttingDown) => return Err(Stopped),
                // Deleted meanwhile: nothing of it can ever be stored, so retrying would only
                // hold the messages (and, before, fail the whole shared commit for everybody).
                Err(SubmitError::TenantGone) => {
                    self.tenants.forget_id(tenant_id);
                    for message in messages {
                        self.dropped(source, &message.topic, DropReason::UnknownTenant, "the tenant was deleted");
                    }
                    return Ok(());
                }
                Err(err) => {
                    self.telemetry.mqtt_write_retries.get_or_create(&MqttLabels { source: source.as_str() }).inc();
                    tracing::warn!(source = source.as_str(), %err, retry_in = ?wait, "Committing MQTT samples failed; not acknowledged, retrying.");
                    let mut stop = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping(&mut stop) => return Err(Stopped),
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        }
    }

    /// The samples of all messages, dropping the unusable ones (counted once, on the first
    /// try). A retry decodes the messages again instead of keeping copies of the samples.
    fn decode(&self, source: Source, messages: &[&Inbound], count_drops: bool) -> Vec<Sample> {
        let now = now_ms();
        let mut samples = Vec::with_capacity(messages.len());
        for message in messages {
            let Some(topic) = parse_topic(&message.topic) else { continue };
            match decode_payload(topic, &message.payload, &self.limits, now) {
                Ok(mut decoded) => samples.append(&mut decoded),
                Err(err) if count_drops => {
                    self.dropped(source, &message.topic, DropReason::from(&err), &err.to_string())
                }
                Err(_) => {}
            }
        }
        samples
    }

    /// Waits for the tenant's rate limit and for room in the queue, then for the commit; in
    /// chunks that each fit the queue and the rate limiter's burst.
    async fn submit(&self, tenant_id: i64, mut samples: Vec<Sample>) -> Result<(), SubmitError> {
        let chunk = self.limits.max_batch_samples.max(1);
        let mut commits = Vec::new();
        while !samples.is_empty() {
            let rest = if samples.len() > chunk { samples.split_off(chunk) } else { Vec::new() };
            if let Some(intake) = &self.intake {
                // MQTT's way to refuse a rate: the acknowledgement waits.
                intake.wait_rate(tenant_id, samples.len()).await;
            }
            // Queued together, so the writer may commit them in one transaction. Not cut short
            // at shutdown: the writer drains its queue before it stops, so this ends, and
            // cutting it short could only turn a commit into a redelivery.
            commits.push(self.writer.submit_waiting(tenant_id, samples));
            samples = rest;
        }
        futures_util::future::try_join_all(commits).await?;
        Ok(())
    }
}

/// Resolves once the server is stopping (and stays resolved). Returns nothing, so no lock
/// guard of the watch is held across a `select!` handler.
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Tenant names from topics to ids, cached: the bridge sees the same few names all day, and
/// garbage names must not each cost a database query.
struct TenantDirectory {
    store: DynStore,
    cache: Mutex<HashMap<String, (Option<i64>, Instant)>>,
    /// Tells which tenants were deleted: a cached id of one is looked up again at once.
    auth: Option<Arc<crate::auth::Auth>>,
}

const TENANT_TTL: Duration = Duration::from_secs(30);
const UNKNOWN_TENANT_TTL: Duration = Duration::from_secs(5);
const TENANT_CACHE_MAX: usize = 10_000;

impl TenantDirectory {
    /// Forgets the names that led to a deleted tenant, so a tenant created under the same name
    /// is looked up again.
    fn forget_id(&self, tenant_id: i64) {
        self.cache.lock().expect("tenant cache poisoned").retain(|_, (id, _)| *id != Some(tenant_id));
    }

    async fn id_of(&self, name: &str) -> crate::storage::Result<Option<i64>> {
        if let Some((id, at)) = self.cache.lock().expect("tenant cache poisoned").get(name) {
            let ttl = if id.is_some() { TENANT_TTL } else { UNKNOWN_TENANT_TTL };
            let deleted = id.zip(self.auth.as_ref()).is_some_and(|(id, auth)| auth.tenant_is_deleted(id));
            if at.elapsed() < ttl && !deleted {
                return Ok(*id);
            }
        }
        let id = self.store.get_tenant(name).await?.map(|t| t.id);
        let mut cache = self.cache.lock().expect("tenant cache poisoned");
        if cache.len() >= TENANT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(name.to_string(), (id, Instant::now()));
        Ok(id)
    }
}

/// At most `per_second` log lines a second: a flood of garbage is counted in full but logged
/// only in part.
struct LogBudget {
    per_second: u64,
    /// The current second (high bits) and lines logged in it (low 16 bits).
    state: AtomicU64,
}

impl LogBudget {
    fn new(per_second: u64) -> Self {
        Self { per_second, state: AtomicU64::new(0) }
    }

    fn take(&self) -> bool {
        let second = (now_ms() / 1000) as u64;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (at, used) = (current >> 16, current & 0xffff);
            let next = if at == second {
                if used >= self.per_second {
                    return false;
                }
                current + 1
            } else {
                (second << 16) | 1
            };
            match self.state.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// What the MQTT side needs of the server: the same store, pipeline, limits and auth as HTTP.
pub struct Services {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub writer: Writer,
    pub limits: Arc<Limits>,
    pub telemetry: Telemetry,
    pub auth: Arc<Auth>,
    pub intake: Arc<IntakeLimits>,
    /// Turns true when the server stops.
    pub shutdown: watch::Sender<bool>,
}

/// Starts the bridge when `mqtt_url` is set, else the embedded broker unless `mqtt_listen` is
/// off. The task ends after `shutdown`, once what it received is committed and acknowledged.
pub async fn start(services: Services) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Services { config, store, writer, limits, telemetry, auth, intake, shutdown } = services;
    let ingestor = || {
        Arc::new(
            Ingestor::new(
                store.clone(),
                writer.clone(),
                (*limits).clone(),
                telemetry.clone(),
                Some(intake.clone()),
                config.max_body_bytes,
                shutdown.subscribe(),
            )
            .watching_deletions(auth.clone()),
        )
    };
    if let Some(settings) = BridgeSettings::from_config(&config)? {
        let bridge = Bridge::new(settings, ingestor(), telemetry.clone(), shutdown.subscribe());
        return Ok(Some(tokio::spawn(bridge.run())));
    }
    let Some(addr) = config.mqtt_listen else { return Ok(None) };
    let broker = Broker::bind(addr, ingestor(), auth.clone(), telemetry.clone(), shutdown.subscribe())
        .await
        .with_context(|| {
            format!("cannot listen on {addr} (mqtt_listen / MICRODASH_MQTT_LISTEN; `off` disables the embedded broker)")
        })?;
    let local = broker.local_addr()?;
    tracing::info!(mqtt_listen = %local, "MQTT broker listening: publish to metrics/{{tenant}}[/{{metric}}] with username = tenant, password = an ingest token.");
    Ok(Some(tokio::spawn(broker.run())))
}

#[cfg(test)]
mod tests;
