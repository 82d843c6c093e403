//! The alert engine: a `CommitListener` that hands committed samples of watched metrics to one
//! evaluator task, which keeps each rule's windows in memory, steps each instance's state
//! machine on every sample and every second, and persists transitions with their
//! notifications in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use microdash_model::{AlertRuleSpec, NotificationChannelSpec};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc};
use utoipa::ToSchema;

use super::payload::{About, Payload, transition_key};
use crate::domain::alerting::{
    AlertState, Instance, Notify as NotifyKind, Observation, Policy, Transition, Window, repeat_due,
};
use crate::domain::{Labels, Sample, now_ms};
use crate::pipeline::CommitListener;
use crate::storage::alerts::{NewNotification, SpecKind, TransitionWrite};
use crate::storage::{Aggregation as QueryAggregation, DynStore, PointQuery, labels_key, labels_match};
use crate::telemetry::{StateLabels, Telemetry};

/// How often time-based transitions (`for`, `keepFiringFor`, no-data, repeats) are checked.
pub const TICK: Duration = Duration::from_secs(1);
/// How often the database is asked whether rules or channels changed (edits by `apply` or
/// another process); edits through this process's API are seen at once.
const RELOAD_CHECK_EVERY_TICKS: u32 = 2;
/// Most raw points read per rule when windows are rebuilt at start.
const REBUILD_MAX_POINTS: usize = 500_000;
/// The lease that makes one worker of a distributed installation the evaluator.
const LEASE: &str = "alert-engine";

/// Who evaluates. One process (embedded mode): always this one. Several workers sharing a
/// Redis queue: the one holding the `alert-engine` lease in the database, renewed every tick;
/// when it stops renewing (killed, cut off), another worker takes over once the lease expires,
/// rebuilding every rule's instances and windows from the database. Every worker hears every
/// committed sample (Redis pub/sub), so the evaluator sees the whole stream.
#[derive(Debug, Clone)]
pub enum Ownership {
    Always,
    Lease { owner: String, ttl: Duration },
}

/// A transition as the live stream and the dashboard see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertEvent {
    #[serde(skip)]
    pub tenant_id: i64,
    pub id: i64,
    pub rule: String,
    pub labels: Labels,
    pub from: AlertState,
    pub to: AlertState,
    pub value: Option<f64>,
    pub at: i64,
}

enum Event {
    Samples { tenant_id: i64, samples: Vec<Sample>, at: i64 },
    Reload,
}

/// What the rest of the server holds: the listener side, and ways to reach the evaluator.
pub struct AlertEngine {
    tx: mpsc::UnboundedSender<Event>,
    /// tenant → metrics some rule evaluates; read on the writer's path, so it must be cheap.
    watched: Arc<RwLock<HashMap<i64, HashSet<String>>>>,
    /// Reloads asked for or running: while any is, every sample is handed over, so a sample
    /// right after a rule change is never dropped by a stale `watched` (it is queued behind
    /// the reload and evaluated with the new rules).
    reloading: Arc<AtomicUsize>,
    /// Latest aggregate per instance id, for the alerts API (the database has the value of
    /// the last transition only).
    values: Arc<Mutex<HashMap<i64, f64>>>,
    events: broadcast::Sender<AlertEvent>,
}

impl CommitListener for AlertEngine {
    fn committed(&self, tenant_id: i64, samples: &[&Sample]) {
        if self.reloading.load(Ordering::Acquire) > 0 {
            let all: Vec<Sample> = samples.iter().map(|s| (*s).clone()).collect();
            let _ = self.tx.send(Event::Samples { tenant_id, samples: all, at: now_ms() });
            return;
        }
        let watched = self.watched.read().expect("watched poisoned");
        let Some(metrics) = watched.get(&tenant_id) else { return };
        let relevant: Vec<Sample> =
            samples.iter().filter(|s| metrics.contains(s.metric.as_str())).map(|s| (*s).clone()).collect();
        drop(watched);
        if !relevant.is_empty() {
            let _ = self.tx.send(Event::Samples { tenant_id, samples: relevant, at: now_ms() });
        }
    }
}

impl AlertEngine {
    /// Starts the evaluator task. `outbox` is woken after each transition with notifications.
    pub fn start(
        store: DynStore,
        outbox: Arc<Notify>,
        ownership: Ownership,
        telemetry: Telemetry,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let watched = Arc::new(RwLock::new(HashMap::new()));
        let values = Arc::new(Mutex::new(HashMap::new()));
        // The first load counts as a reload in progress.
        let reloading = Arc::new(AtomicUsize::new(1));
        let (events, _) = broadcast::channel(1024);
        let evaluator = Evaluator {
            store,
            outbox,
            watched: watched.clone(),
            reloading: reloading.clone(),
            values: values.clone(),
            events: events.clone(),
            rules: HashMap::new(),
            by_metric: HashMap::new(),
            channels: HashMap::new(),
            tenants: HashMap::new(),
            fingerprint: String::new(),
            active: matches!(ownership, Ownership::Always),
            telemetry,
            ownership,
            renewed_at: 0,
        };
        let task = tokio::spawn(evaluator.run(rx));
        (Arc::new(AlertEngine { tx, watched, reloading, values, events }), task)
    }

    /// Rules or channels changed: reload them now.
    pub fn reload(&self) {
        self.reloading.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send(Event::Reload);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }

    pub fn current_value(&self, instance_id: i64) -> Option<f64> {
        self.values.lock().expect("values poisoned").get(&instance_id).copied()
    }
}

struct InstanceRuntime {
    id: i64,
    labels: Labels,
    window: Window,
    instance: Instance,
    seq: i64,
    /// channel → when it was last notified about this instance (for repeats).
    last_notified: HashMap<String, i64>,
}

struct RuleRuntime {
    tenant_id: i64,
    name: String,
    spec: AlertRuleSpec,
    updated_at: i64,
    policy: Policy,
    window_ms: i64,
    /// By canonical label JSON.
    instances: HashMap<String, InstanceRuntime>,
}

type RuleKey = (i64, String);

struct Evaluator {
    store: DynStore,
    outbox: Arc<Notify>,
    watched: Arc<RwLock<HashMap<i64, HashSet<String>>>>,
    reloading: Arc<AtomicUsize>,
    values: Arc<Mutex<HashMap<i64, f64>>>,
    events: broadcast::Sender<AlertEvent>,
    rules: HashMap<RuleKey, RuleRuntime>,
    /// (tenant, metric) → names of the rules on it.
    by_metric: HashMap<(i64, String), Vec<String>>,
    channels: HashMap<RuleKey, NotificationChannelSpec>,
    tenants: HashMap<i64, String>,
    fingerprint: String,
    ownership: Ownership,
    /// Whether this process evaluates now (always, or while it holds the lease).
    active: bool,
    /// When the lease was last renewed.
    renewed_at: i64,
    telemetry: Telemetry,
}

fn policy_of(spec: &AlertRuleSpec) -> Policy {
    Policy {
        for_ms: spec.for_duration().as_millis() as i64,
        keep_firing_for_ms: spec.keep_firing_for().as_millis() as i64,
        no_data: spec.no_data().map(|(state, after)| (state, after.as_millis() as i64)),
    }
}

impl Evaluator {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        if self.active {
            self.telemetry.alert_engine_active.set(1);
            // Until the first load succeeds nothing can be evaluated; keep trying.
            while let Err(err) = self.reload(now_ms()).await {
                tracing::warn!(%err, "Loading alert rules failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        } else {
            self.keep_lease(now_ms()).await;
        }
        self.reloading.fetch_sub(1, Ordering::AcqRel);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                biased;
                event = rx.recv() => match event {
                    Some(Event::Samples { tenant_id, samples, at }) => {
                        if self.active {
                            self.on_samples(tenant_id, &samples, at).await;
                        }
                    }
                    Some(Event::Reload) => {
                        if self.active && let Err(err) = self.reload(now_ms()).await {
                            tracing::warn!(%err, "Reloading alert rules failed; will retry.");
                            self.fingerprint.clear();
                        }
                        self.reloading.fetch_sub(1, Ordering::AcqRel);
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    if matches!(self.ownership, Ownership::Lease { .. }) {
                        self.keep_lease(now_ms()).await;
                    }
                    if !self.active {
                        continue;
                    }
                    if ticks.is_multiple_of(RELOAD_CHECK_EVERY_TICKS) {
                        match self.store.specs_fingerprint().await {
                            Ok(f) if f != self.fingerprint => {
                                // Samples committed while this runs are queued behind it (they may
                                // also be in the refilled windows: a repeated timestamp replaces).
                                self.reloading.fetch_add(1, Ordering::AcqRel);
                                if let Err(err) = self.reload(now_ms()).await {
                                    tracing::warn!(%err, "Reloading alert rules failed; will retry.");
                                }
                                self.reloading.fetch_sub(1, Ordering::AcqRel);
                            }
                            Ok(_) => {}
                            Err(err) => tracing::warn!(%err, "Checking for rule changes failed."),
                        }
                    }
                    self.on_tick(now_ms()).await;
                }
            }
        }
        if let (true, Ownership::Lease { owner, .. }) = (self.active, &self.ownership)
            && let Err(err) = self.store.release_lease(LEASE, owner).await
        {
            tracing::warn!(%err, "Could not release the alert engine lease; another worker takes over when it expires.");
        }
        tracing::info!("Alert engine stopped.");
    }

    /// Takes or renews the evaluator lease; starts or stops evaluating when that changes.
    async fn keep_lease(&mut self, now: i64) {
        let Ownership::Lease { owner, ttl } = &self.ownership else { return };
        let (owner, ttl_ms) = (owner.clone(), ttl.as_millis() as i64);
        match self.store.acquire_lease(LEASE, &owner, now, now + ttl_ms).await {
            Ok(true) => {
                self.renewed_at = now;
                if !self.active {
                    // Whatever another worker did meanwhile is in the database: start afresh.
                    self.rules.clear();
                    self.fingerprint.clear();
                    match self.reload(now).await {
                        Ok(()) => {
                            self.active = true;
                            self.telemetry.alert_engine_active.set(1);
                            tracing::info!(%owner, rules = self.rules.len(), "This worker now evaluates the alert rules.");
                        }
                        Err(err) => tracing::warn!(%err, "Loading alert rules failed; will retry."),
                    }
                }
            }
            Ok(false) => {
                if self.active {
                    tracing::warn!(%owner, "Another worker took the alert engine lease; this one stops evaluating.");
                    self.step_down();
                }
            }
            Err(err) => {
                // Cannot renew: stop before the lease can have expired for the others.
                if self.active && now - self.renewed_at > ttl_ms / 2 {
                    tracing::warn!(%err, "Cannot renew the alert engine lease; this worker stops evaluating.");
                    self.step_down();
                }
            }
        }
    }

    fn step_down(&mut self) {
        self.active = false;
        self.telemetry.alert_engine_active.set(0);
        self.telemetry.alert_rules.set(0);
        self.rules.clear();
        self.by_metric.clear();
        self.fingerprint.clear();
        self.watched.write().expect("watched poisoned").clear();
    }

    /// Loads rules, channels and tenants; keeps the runtime of unchanged rules, rebuilds the rest.
    async fn reload(&mut self, now: i64) -> crate::storage::Result<()> {
        let fingerprint = self.store.specs_fingerprint().await?;
        self.tenants = self.store.list_tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
        self.channels.clear();
        for record in self.store.list_specs(SpecKind::Channel, None).await? {
            match serde_json::from_str::<NotificationChannelSpec>(&record.spec) {
                Ok(spec) => {
                    self.channels.insert((record.tenant_id, record.name), spec);
                }
                Err(err) => tracing::error!(%err, channel = %record.name, "A stored channel is unreadable; skipped."),
            }
        }
        let records = self.store.list_specs(SpecKind::Rule, None).await?;
        let mut stored_instances: HashMap<RuleKey, Vec<_>> = HashMap::new();
        let mut seen: HashSet<RuleKey> = HashSet::new();
        let mut fresh_rules = Vec::new();
        for record in records {
            let key = (record.tenant_id, record.name.clone());
            seen.insert(key.clone());
            if self.rules.get(&key).is_some_and(|r| r.updated_at == record.updated_at) {
                continue;
            }
            match serde_json::from_str::<AlertRuleSpec>(&record.spec) {
                Ok(spec) => fresh_rules.push((key, record.updated_at, spec)),
                Err(err) => tracing::error!(%err, rule = %record.name, "A stored rule is unreadable; skipped."),
            }
        }
        self.rules.retain(|key, _| seen.contains(key));
        if !fresh_rules.is_empty() {
            for record in self.store.list_instances(None).await? {
                stored_instances.entry((record.tenant_id, record.rule.clone())).or_default().push(record);
            }
            let last_notified = self.store.last_notifications().await?;
            for (key, updated_at, spec) in fresh_rules {
                let rule = self
                    .build_rule(key.clone(), updated_at, spec, stored_instances.remove(&key), &last_notified, now)
                    .await?;
                self.rules.insert(key, rule);
            }
        }
        self.by_metric.clear();
        let mut watched: HashMap<i64, HashSet<String>> = HashMap::new();
        for ((tenant_id, name), rule) in &self.rules {
            self.by_metric.entry((*tenant_id, rule.spec.metric.clone())).or_default().push(name.clone());
            watched.entry(*tenant_id).or_default().insert(rule.spec.metric.clone());
        }
        *self.watched.write().expect("watched poisoned") = watched;
        self.fingerprint = fingerprint;
        self.telemetry.alert_rules.set(self.rules.len() as i64);
        tracing::debug!(rules = self.rules.len(), channels = self.channels.len(), "Alert rules loaded.");
        Ok(())
    }

    /// A rule's runtime: its stored instances (dropping those whose series no longer match),
    /// and windows refilled from the samples stored within the window.
    async fn build_rule(
        &self,
        (tenant_id, name): RuleKey,
        updated_at: i64,
        spec: AlertRuleSpec,
        stored: Option<Vec<crate::storage::alerts::InstanceRecord>>,
        last_notified: &[(i64, String, i64)],
        now: i64,
    ) -> crate::storage::Result<RuleRuntime> {
        let window_ms = spec.window().as_millis() as i64;
        let mut rule = RuleRuntime {
            tenant_id,
            name: name.clone(),
            policy: policy_of(&spec),
            window_ms,
            updated_at,
            instances: HashMap::new(),
            spec,
        };
        for record in stored.unwrap_or_default() {
            if !labels_match(&record.labels, &rule.spec.matchers) {
                self.store.delete_instance(record.id).await?;
                continue;
            }
            let notified = last_notified
                .iter()
                .filter(|(id, _, _)| *id == record.id)
                .map(|(_, channel, at)| (channel.clone(), *at))
                .collect();
            rule.instances.insert(
                labels_key(&record.labels),
                InstanceRuntime {
                    id: record.id,
                    labels: record.labels,
                    window: Window::default(),
                    instance: record.instance,
                    seq: record.seq,
                    last_notified: notified,
                },
            );
        }
        // Newest sample per series: the `last` value and when the series was last seen.
        let series = self.store.series(tenant_id, &rule.spec.metric, &rule.spec.matchers).await?;
        let points = if window_ms > 0 {
            self.store
                .query(&PointQuery {
                    tenant_id,
                    metric: rule.spec.metric.clone(),
                    matchers: rule.spec.matchers.clone(),
                    from: now - window_ms,
                    to: now + 24 * 3600 * 1000,
                    step: None,
                    // Windows are rebuilt from raw samples; a window older than raw retention
                    // simply starts empty.
                    resolution: crate::storage::Resolution::Raw,
                    agg: QueryAggregation::Last,
                    max_points: REBUILD_MAX_POINTS,
                    last_sample_times: false,
                })
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(%err, rule = %name, "Could not refill the rule's windows; they fill from new samples.");
                    Vec::new()
                })
        } else {
            Vec::new()
        };
        for info in series {
            let Some((ts, value)) = info.last else { continue };
            let key = labels_key(&info.labels);
            if let Some(existing) = rule.instances.get_mut(&key) {
                existing.instance.last_seen = Some(existing.instance.last_seen.unwrap_or(ts).max(ts));
                if window_ms == 0 {
                    existing.window.push(ts, value);
                }
            } else if window_ms == 0 || now - ts <= window_ms {
                // A series with recent data but no instance yet (new rule): it gets one now.
                let record = self.store.upsert_instance(tenant_id, &name, &info.labels, &Instance::new(ts)).await?;
                let mut window = Window::default();
                if window_ms == 0 {
                    window.push(ts, value);
                }
                rule.instances.insert(
                    key,
                    InstanceRuntime {
                        id: record.id,
                        labels: record.labels,
                        window,
                        instance: record.instance,
                        seq: record.seq,
                        last_notified: HashMap::new(),
                    },
                );
            }
        }
        for sp in points {
            if let Some(inst) = rule.instances.get_mut(&labels_key(&sp.labels)) {
                for (ts, value) in sp.points {
                    inst.window.push(ts, value);
                }
            }
        }
        Ok(rule)
    }

    async fn on_samples(&mut self, tenant_id: i64, samples: &[Sample], at: i64) {
        let mut work: Vec<(RuleKey, &Sample)> = Vec::new();
        for sample in samples {
            if let Some(names) = self.by_metric.get(&(tenant_id, sample.metric.clone())) {
                for name in names {
                    work.push(((tenant_id, name.clone()), sample));
                }
            }
        }
        for (key, sample) in work {
            let Some(rule) = self.rules.get(&key) else { continue };
            if !labels_match(&sample.labels, &rule.spec.matchers) {
                continue;
            }
            let instance_key = labels_key(&sample.labels);
            if !rule.instances.contains_key(&instance_key) {
                match self.store.upsert_instance(tenant_id, &key.1, &sample.labels, &Instance::new(at)).await {
                    Ok(record) => {
                        let rule = self.rules.get_mut(&key).expect("checked above");
                        rule.instances.insert(
                            instance_key.clone(),
                            InstanceRuntime {
                                id: record.id,
                                labels: record.labels,
                                window: Window::default(),
                                instance: record.instance,
                                seq: record.seq,
                                last_notified: HashMap::new(),
                            },
                        );
                    }
                    Err(err) => {
                        tracing::warn!(%err, rule = %key.1, "Creating a rule instance failed; the sample is not evaluated.");
                        continue;
                    }
                }
            }
            let rule = self.rules.get_mut(&key).expect("checked above");
            let (window_ms, policy) = (rule.window_ms, rule.policy);
            let inst = rule.instances.get_mut(&instance_key).expect("inserted above");
            inst.window.push(sample.ts, sample.value);
            inst.window.prune(at, window_ms);
            let current = {
                let c = &rule.spec.condition;
                inst.window.aggregate(c.aggregation).map(|v| (v, c.op.holds(v, c.threshold)))
            };
            let before = inst.instance.clone();
            let transition = match current {
                Some((value, holds)) => {
                    self.values.lock().expect("values poisoned").insert(inst.id, value);
                    inst.instance.step(at, Observation::Sample { value, holds }, &policy)
                }
                None => {
                    inst.instance.last_seen = Some(at);
                    None
                }
            };
            if let Some(t) = transition {
                self.persist(&key, &instance_key, t, before).await;
            }
        }
    }

    async fn on_tick(&mut self, now: i64) {
        let mut transitions = Vec::new();
        let mut repeats = Vec::new();
        for (key, rule) in self.rules.iter_mut() {
            let (window_ms, policy) = (rule.window_ms, rule.policy);
            for (instance_key, inst) in rule.instances.iter_mut() {
                inst.window.prune(now, window_ms);
                let current = {
                    let c = &rule.spec.condition;
                    inst.window.aggregate(c.aggregation).map(|v| (v, c.op.holds(v, c.threshold)))
                };
                if let Some((value, _)) = current {
                    self.values.lock().expect("values poisoned").insert(inst.id, value);
                }
                let before = inst.instance.clone();
                if let Some(t) = inst.instance.step(now, Observation::Tick { current }, &policy) {
                    transitions.push((key.clone(), instance_key.clone(), t, before));
                } else {
                    for channel in &rule.spec.channels {
                        let interval = self
                            .channels
                            .get(&(key.0, channel.clone()))
                            .map(|c| c.repeat_interval().map(|d| d.as_millis() as i64))
                            .unwrap_or(None);
                        if repeat_due(inst.instance.state, inst.last_notified.get(channel).copied(), interval, now) {
                            repeats.push((key.clone(), instance_key.clone(), channel.clone()));
                        }
                    }
                }
            }
        }
        for (key, instance_key, t, before) in transitions {
            self.persist(&key, &instance_key, t, before).await;
        }
        for (key, instance_key, channel) in repeats {
            self.repeat(&key, &instance_key, &channel, now).await;
        }
    }

    fn about<'a>(
        &'a self,
        rule: &'a RuleRuntime,
        inst: &'a InstanceRuntime,
        at: i64,
        previous: Option<AlertState>,
        repeat: bool,
    ) -> About<'a> {
        About {
            tenant: self.tenants.get(&rule.tenant_id).map(String::as_str).unwrap_or(""),
            rule: &rule.name,
            spec: &rule.spec,
            series_labels: &inst.labels,
            state: inst.instance.state,
            previous,
            value: inst.instance.value,
            active_since: inst.instance.active_since,
            at,
            repeat,
        }
    }

    /// Writes the transition with its notifications; on failure, puts the instance back as it
    /// was so the next evaluation makes (and writes) the same transition again.
    async fn persist(&mut self, key: &RuleKey, instance_key: &str, t: Transition, before: Instance) {
        let Some(rule) = self.rules.get(key) else { return };
        let Some(inst) = rule.instances.get(instance_key) else { return };
        let seq = inst.seq + 1;
        let mut notifications = Vec::new();
        if let Some(kind) = t.notify() {
            for channel in &rule.spec.channels {
                let send_resolved = self
                    .channels
                    .get(&(key.0, channel.clone()))
                    .map(NotificationChannelSpec::send_resolved)
                    .unwrap_or(true);
                if kind == NotifyKind::Resolved && !send_resolved {
                    continue;
                }
                let idempotency_key = transition_key(key.0, inst.id, seq, channel);
                let payload = Payload::build(
                    &self.about(rule, inst, t.at, Some(t.from), false),
                    channel,
                    idempotency_key.clone(),
                );
                notifications.push(NewNotification {
                    tenant_id: key.0,
                    channel: channel.clone(),
                    instance_id: Some(inst.id),
                    rule: Some(rule.name.clone()),
                    state: t.to.as_str().to_string(),
                    idempotency_key,
                    payload: serde_json::to_string(&payload).expect("payloads serialize"),
                    created_at: t.at,
                });
            }
        }
        let write = TransitionWrite {
            instance_id: inst.id,
            tenant_id: key.0,
            rule: &rule.name,
            labels: &inst.labels,
            instance: &inst.instance,
            seq,
            transition: &t,
            notifications: &notifications,
        };
        match self.store.record_transition(write).await {
            Ok(id) => {
                self.telemetry.alert_transitions.get_or_create(&StateLabels { state: t.to.as_str() }).inc();
                tracing::info!(rule = %rule.name, from = %t.from, to = %t.to, value = ?t.value, notifications = notifications.len(), "Alert transition.");
                let event = AlertEvent {
                    tenant_id: key.0,
                    id,
                    rule: rule.name.clone(),
                    labels: inst.labels.clone(),
                    from: t.from,
                    to: t.to,
                    value: t.value,
                    at: t.at,
                };
                let rule = self.rules.get_mut(key).expect("present above");
                let inst = rule.instances.get_mut(instance_key).expect("present above");
                inst.seq = seq;
                for n in &notifications {
                    inst.last_notified.insert(n.channel.clone(), t.at);
                }
                if !notifications.is_empty() {
                    self.outbox.notify_one();
                }
                let _ = self.events.send(event);
            }
            Err(err) => {
                tracing::error!(%err, rule = %rule.name, from = %t.from, to = %t.to, "Persisting an alert transition failed; it will be retried.");
                if let Some(inst) = self.rules.get_mut(key).and_then(|r| r.instances.get_mut(instance_key)) {
                    inst.instance = before;
                }
            }
        }
    }

    async fn repeat(&mut self, key: &RuleKey, instance_key: &str, channel: &str, now: i64) {
        let Some(rule) = self.rules.get(key) else { return };
        let Some(inst) = rule.instances.get(instance_key) else { return };
        let idempotency_key = format!("{}-repeat-{now}", transition_key(key.0, inst.id, inst.seq, channel));
        let payload = Payload::build(&self.about(rule, inst, now, None, true), channel, idempotency_key.clone());
        let notification = NewNotification {
            tenant_id: key.0,
            channel: channel.to_string(),
            instance_id: Some(inst.id),
            rule: Some(rule.name.clone()),
            state: inst.instance.state.as_str().to_string(),
            idempotency_key,
            payload: serde_json::to_string(&payload).expect("payloads serialize"),
            created_at: now,
        };
        match self.store.insert_notifications(std::slice::from_ref(&notification)).await {
            Ok(_) => {
                if let Some(inst) = self.rules.get_mut(key).and_then(|r| r.instances.get_mut(instance_key)) {
                    inst.last_notified.insert(channel.to_string(), now);
                }
                self.outbox.notify_one();
            }
            Err(err) => tracing::warn!(%err, rule = %key.1, "Queueing a repeat notification failed; will retry."),
        }
    }
}
