//! The alert engine: a `CommitListener` that hands committed samples of watched metrics to one
//! evaluator task, which keeps each rule's windows in memory, steps each instance's state
//! machine on every sample and every second, and persists transitions with their
//! notifications in one transaction.
//!
//! Rule changes are applied one rule at a time, never by reloading everything: a write through
//! the API names its rule, a change made elsewhere (`microdash apply`, another process) is found
//! by comparing the stored rules' versions with the loaded ones. Changed rules wait in a set and
//! are loaded a few dozen at a time, between the samples (which always go first), so a burst of
//! ten thousand rule writes never holds back the evaluation of samples already committed. The
//! comparison's read of the stored rules runs on a task of its own, and its rows are applied in
//! steps.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use microdash_model::{AlertRuleSpec, NotificationChannelSpec};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc};
use utoipa::ToSchema;

use super::payload::{About, Payload, opaque_key, transition_key};
use crate::domain::alerting::{
    AlertState, Inhibitor, Instance, Notify as NotifyKind, Observation, Policy, Transition, Window, alert_label,
    inhibited_by, repeat_due, silence_matches,
};
use crate::domain::{Labels, Sample, now_ms};
use crate::pipeline::CommitListener;
use crate::storage::alerts::{
    AlertGroupRecord, InstanceRecord, NewInstance, NewNotification, SilenceRecord, SpecKind, SpecRecord,
    SpecsFingerprint, TransitionWrite,
};
use crate::storage::{
    Aggregation as QueryAggregation, DynStore, PointQuery, SeriesInfo, SeriesPoints, labels_key, labels_match,
};
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
/// Rules loaded in one step between samples: small enough that a sample waiting behind a step
/// waits tens of milliseconds, large enough that a burst of rule writes is loaded in seconds.
const LOAD_BATCH: usize = 32;
/// How far before its last read a sync reads the rules again: a writer that stamped
/// `updated_at` before that read but committed after it (a lock wait, a slower process) is
/// still read. One that took longer, or whose clock is behind by more, is caught by the count
/// (a new rule) but not an update.
const SYNC_OVERLAP_MS: i64 = 10_000;
/// Rows of a sync's read applied in one step (about 3 ms).
const SYNC_APPLY_ROWS: usize = 4096;
/// Instances a tick visits in one step before queued samples are served again. A tick over
/// 100 000 instances in one go took 35–100 ms, and a breach that arrived meanwhile waited for
/// all of it; a step of this many takes about 2 ms.
const TICK_STEP_INSTANCES: usize = 2048;

/// A tick walking the rules in steps.
#[derive(Default)]
struct TickPass {
    /// The last rule the previous step visited.
    after: Option<RuleKey>,
    /// Instances visited so far (the gauge is set when the pass ends).
    instances: i64,
}
/// Rules of one metric loaded in one step when a sync read their specs: their instances are read
/// and written in one statement each, and the refill reads the metric's series once for all of
/// them (5000 series took ~25 ms at 100 000 rules), so a larger step costs little more than a
/// small one. At 32 per step, the rules of a 10 000-rule `microdash apply -f` held the
/// evaluator several times as long in all.
const STAGED_BATCH: usize = 256;
/// From this many rules to load on, progress is logged (at most once a second).
const LOG_PROGRESS_FROM: usize = 1000;

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
    Samples {
        tenant_id: i64,
        samples: Vec<Sample>,
        at: i64,
    },
    /// One rule was written.
    Rule(RuleKey),
    /// One rule was deleted: it stops being evaluated at once.
    RuleDeleted(RuleKey),
    /// Some channel was written or deleted.
    Channels,
    /// A silence was created or expired.
    Silences,
    /// Compare everything stored with what is loaded.
    Sync,
}

/// tenant → metrics some rule evaluates (or will, once loaded).
type Watched = Arc<RwLock<HashMap<i64, HashSet<String>>>>;

/// What the rest of the server holds: the listener side, and ways to reach the evaluator.
pub struct AlertEngine {
    tx: mpsc::UnboundedSender<Event>,
    /// Read on the writer's path, so it must be cheap. A rule's metric is added before the rule
    /// is loaded (and before its windows are refilled from storage), so no committed sample of
    /// it falls between the refill and the evaluation.
    watched: Watched,
    /// Latest aggregate per instance id, for the alerts API (the database has the value of
    /// the last transition only).
    values: Arc<Mutex<HashMap<i64, f64>>>,
    events: broadcast::Sender<AlertEvent>,
}

impl CommitListener for AlertEngine {
    fn committed(&self, tenant_id: i64, samples: &[&Sample]) {
        let watched = self.watched.read().expect("watched poisoned");
        let Some(metrics) = watched.get(&tenant_id) else { return };
        let relevant: Vec<Sample> =
            samples.iter().filter(|s| metrics.contains(&*s.metric)).map(|s| (*s).clone()).collect();
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
        let evaluator = Evaluator::new(store, outbox, ownership, telemetry);
        let (watched, values, events) = (evaluator.watched.clone(), evaluator.values.clone(), evaluator.events.clone());
        let task = tokio::spawn(evaluator.run(rx));
        (Arc::new(AlertEngine { tx, watched, values, events }), task)
    }

    /// A rule was written (`metric` is its metric) or deleted (`None`): load that rule alone.
    pub fn rule_changed(&self, tenant_id: i64, name: &str, metric: Option<&str>) {
        if let Some(metric) = metric {
            self.watched.write().expect("watched poisoned").entry(tenant_id).or_default().insert(metric.to_string());
        }
        let key = (tenant_id, name.to_string());
        let _ = self.tx.send(if metric.is_some() { Event::Rule(key) } else { Event::RuleDeleted(key) });
    }

    /// A channel was written or deleted.
    pub fn channels_changed(&self) {
        let _ = self.tx.send(Event::Channels);
    }

    /// A silence was created or expired.
    pub fn silences_changed(&self) {
        let _ = self.tx.send(Event::Silences);
    }

    /// Compare every stored rule and channel with the loaded ones and load what differs.
    pub fn reload(&self) {
        let _ = self.tx.send(Event::Sync);
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

impl InstanceRuntime {
    /// A stored instance, with the window and last notifications it starts with.
    fn of(record: InstanceRecord, window: Window, last_notified: HashMap<String, i64>) -> Self {
        InstanceRuntime {
            id: record.id,
            labels: record.labels,
            window,
            instance: record.instance,
            seq: record.seq,
            last_notified,
        }
    }
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

/// The names of the loaded rules by tenant and metric, and within a metric by the value of each
/// rule's first label matcher: a sample is checked only against the rules that can match it
/// (ten thousand rules on `cpu.usage`, one per host, cost a sample one lookup, not ten thousand
/// label comparisons).
#[derive(Default)]
struct RuleIndex(HashMap<i64, HashMap<String, MetricRules>>);

#[derive(Default)]
struct MetricRules {
    /// Rules without matchers: every series of the metric.
    unfiltered: BTreeSet<String>,
    /// label → value → rules whose first matcher is `label = value`.
    by_label: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

impl RuleIndex {
    fn insert(&mut self, tenant_id: i64, name: &str, spec: &AlertRuleSpec) {
        let rules = self.0.entry(tenant_id).or_default().entry(spec.metric.clone()).or_default();
        match spec.matchers.iter().next() {
            Some((label, value)) => rules
                .by_label
                .entry(label.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(name.to_string()),
            None => rules.unfiltered.insert(name.to_string()),
        };
    }

    fn remove(&mut self, tenant_id: i64, name: &str, spec: &AlertRuleSpec) {
        let Some(metrics) = self.0.get_mut(&tenant_id) else { return };
        let Some(rules) = metrics.get_mut(&spec.metric) else { return };
        match spec.matchers.iter().next() {
            Some((label, value)) => {
                if let Some(values) = rules.by_label.get_mut(label) {
                    if let Some(names) = values.get_mut(value) {
                        names.remove(name);
                        if names.is_empty() {
                            values.remove(value);
                        }
                    }
                    if values.is_empty() {
                        rules.by_label.remove(label);
                    }
                }
            }
            None => {
                rules.unfiltered.remove(name);
            }
        }
        if rules.unfiltered.is_empty() && rules.by_label.is_empty() {
            metrics.remove(&spec.metric);
        }
        if metrics.is_empty() {
            self.0.remove(&tenant_id);
        }
    }

    /// Names of the rules that may match `sample` (their other matchers still to be checked).
    fn candidates<'a>(&'a self, tenant_id: i64, sample: &Sample, out: &mut Vec<&'a str>) {
        let Some(rules) = self.0.get(&tenant_id).and_then(|metrics| metrics.get(&*sample.metric)) else {
            return;
        };
        out.extend(rules.unfiltered.iter().map(String::as_str));
        for (label, values) in &rules.by_label {
            if let Some(names) = sample.labels.get(label).and_then(|value| values.get(value)) {
                out.extend(names.iter().map(String::as_str));
            }
        }
    }

    fn metrics(&self) -> HashMap<i64, HashSet<String>> {
        self.0.iter().map(|(tenant, metrics)| (*tenant, metrics.keys().cloned().collect())).collect()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The loaded rules by tenant and by each channel their spec lists, whether that channel exists
/// or groups now or not: a tick's group work visits the rules of the grouping channels only, and
/// a channel that starts grouping finds its rules here without anything else to update.
#[derive(Default)]
struct ChannelRules(HashMap<i64, HashMap<String, BTreeSet<RuleKey>>>);

impl ChannelRules {
    fn insert(&mut self, key: &RuleKey, spec: &AlertRuleSpec) {
        if spec.channels.is_empty() {
            return;
        }
        let channels = self.0.entry(key.0).or_default();
        for channel in &spec.channels {
            channels.entry(channel.clone()).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &RuleKey, spec: &AlertRuleSpec) {
        let Some(channels) = self.0.get_mut(&key.0) else { return };
        for channel in &spec.channels {
            if let Some(rules) = channels.get_mut(channel) {
                rules.remove(key);
                if rules.is_empty() {
                    channels.remove(channel);
                }
            }
        }
        if channels.is_empty() {
            self.0.remove(&key.0);
        }
    }

    /// The rules that list `channel` of the tenant.
    fn of(&self, tenant_id: i64, channel: &str) -> impl Iterator<Item = &RuleKey> {
        self.0.get(&tenant_id).and_then(|channels| channels.get(channel)).into_iter().flatten()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The notification channels by tenant and name, looked up without building a key.
#[derive(Default)]
struct Channels(HashMap<i64, HashMap<String, NotificationChannelSpec>>);

impl Channels {
    fn get(&self, tenant_id: i64, name: &str) -> Option<&NotificationChannelSpec> {
        self.0.get(&tenant_id)?.get(name)
    }

    fn insert(&mut self, tenant_id: i64, name: String, spec: NotificationChannelSpec) {
        self.0.entry(tenant_id).or_default().insert(name, spec);
    }

    /// The channel, if it groups (`groupBy`).
    fn grouping(&self, tenant_id: i64, name: &str) -> Option<&NotificationChannelSpec> {
        self.get(tenant_id, name).filter(|c| c.grouped())
    }

    /// Every grouping channel: (tenant, name, spec).
    fn all_grouping(&self) -> impl Iterator<Item = (i64, &str, &NotificationChannelSpec)> {
        self.0.iter().flat_map(|(tenant_id, channels)| {
            channels.iter().filter(|(_, c)| c.grouped()).map(|(name, c)| (*tenant_id, name.as_str(), c))
        })
    }
}

/// A rule found changed by a sync, read with the others in one query, waiting to be loaded.
struct Staged {
    updated_at: i64,
    spec: AlertRuleSpec,
    /// Its stored instances, when the sync read every instance at once (a start).
    instances: Option<Vec<InstanceRecord>>,
}

/// A large load under way (a start, a takeover, a big apply), for the progress log.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    logged: Instant,
}

/// The series of one metric and their recent points, read once for all the rules on that metric
/// in one load step, and handed to each rule by its matchers.
struct Refill {
    series: Vec<SeriesInfo>,
    /// Recent points by canonical label JSON; `None` when they could not be read in one query
    /// (too many): each rule then reads its own.
    points: Option<HashMap<String, Vec<(i64, f64)>>>,
    /// label → value → positions in `series`, for the labels the rules match on first.
    by_label: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl Refill {
    async fn read(
        store: &DynStore,
        tenant_id: i64,
        metric: &str,
        specs: &[&AlertRuleSpec],
        now: i64,
    ) -> crate::storage::Result<Self> {
        // The matchers every rule of the group shares narrow both reads.
        let mut common = specs.first().map(|s| s.matchers.clone()).unwrap_or_default();
        common.retain(|k, v| specs.iter().all(|s| s.matchers.get(k) == Some(v)));
        let series = store.series(tenant_id, metric, &common).await?;
        let window_ms = specs.iter().map(|s| s.window().as_millis() as i64).max().unwrap_or(0);
        let points = if window_ms > 0 {
            match store.query(&refill_query(tenant_id, metric, &common, window_ms, now)).await {
                Ok(points) => Some(points.into_iter().map(|sp| (labels_key(&sp.labels), sp.points)).collect()),
                Err(err) => {
                    tracing::debug!(%err, %metric, "The rules' windows are refilled one rule at a time.");
                    None
                }
            }
        } else {
            Some(HashMap::new())
        };
        let mut refill = Refill { series, points, by_label: HashMap::new() };
        for spec in specs {
            if let Some((label, _)) = spec.matchers.iter().next()
                && !refill.by_label.contains_key(label)
            {
                let mut values: HashMap<String, Vec<usize>> = HashMap::new();
                for (i, info) in refill.series.iter().enumerate() {
                    if let Some(value) = info.labels.get(label) {
                        values.entry(value.clone()).or_default().push(i);
                    }
                }
                refill.by_label.insert(label.clone(), values);
            }
        }
        Ok(refill)
    }

    /// The series `matchers` select.
    fn matching(&self, matchers: &crate::domain::Labels) -> Vec<&SeriesInfo> {
        let positions: Box<dyn Iterator<Item = usize>> = match matchers.iter().next() {
            Some((label, value)) => {
                Box::new(self.by_label.get(label).and_then(|values| values.get(value)).into_iter().flatten().copied())
            }
            None => Box::new(0..self.series.len()),
        };
        positions.map(|i| &self.series[i]).filter(|info| labels_match(&info.labels, matchers)).collect()
    }
}

fn refill_query(
    tenant_id: i64,
    metric: &str,
    matchers: &crate::domain::Labels,
    window_ms: i64,
    now: i64,
) -> PointQuery {
    PointQuery {
        tenant_id,
        metric: metric.to_string(),
        matchers: matchers.clone(),
        from: now - window_ms,
        to: now + 24 * 3600 * 1000,
        step: None,
        // Windows are rebuilt from raw samples; a window older than raw retention simply
        // starts empty.
        resolution: crate::storage::Resolution::Raw,
        agg: QueryAggregation::Last,
        max_points: REBUILD_MAX_POINTS,
        last_sample_times: false,
    }
}

struct Evaluator {
    store: DynStore,
    outbox: Arc<Notify>,
    watched: Watched,
    values: Arc<Mutex<HashMap<i64, f64>>>,
    events: broadcast::Sender<AlertEvent>,
    /// Ordered, so a tick can walk them in steps from where the last step stopped.
    rules: BTreeMap<RuleKey, RuleRuntime>,
    /// The tick under way: where its next step starts (`None`: no tick under way).
    tick_pass: Option<TickPass>,
    /// `TICK_STEP_INSTANCES` (smaller in tests).
    tick_step_instances: usize,
    index: RuleIndex,
    /// The loaded rules by the channels they list.
    by_channel: ChannelRules,
    /// Rules written, deleted or found changed, not loaded yet.
    pending: BTreeSet<RuleKey>,
    /// Rules deleted through the API and not loaded since: taken out of evaluation at once, and
    /// not put back by a batch that was being built when the deletion came.
    deleted: HashSet<RuleKey>,
    /// Pending rules whose spec a sync already read.
    staged: HashMap<RuleKey, Staged>,
    /// Staged rules by tenant and metric, the order they load in (a step loads rules of one metric).
    load_order: std::collections::VecDeque<RuleKey>,
    /// Compare everything stored with what is loaded before loading more.
    sync_wanted: bool,
    /// After a failed load, no new attempt before this time (ms).
    retry_after: i64,
    progress: Option<Progress>,
    channels: Channels,
    /// What holds back notifications: silences and firing inhibitors.
    mutes: Mutes,
    /// The loaded rules with `inhibits`.
    inhibiting: BTreeSet<RuleKey>,
    /// The alert groups of grouping channels (`groupBy`).
    groups: HashMap<GroupKey, Group>,
    /// Whether `groups` holds what the database says the groups' last notifications were.
    groups_loaded: bool,
    tenants: HashMap<i64, String>,
    /// What the last sync saw stored (`None`: no sync yet).
    fingerprint: Option<SpecsFingerprint>,
    /// The rules stored as far as this engine knows: every sync's reads, less those a load
    /// found deleted. Its size against the stored count reveals deletions made elsewhere.
    known: HashSet<RuleKey>,
    /// When the last sync read, less `SYNC_OVERLAP_MS`: the next sync reads only the rules
    /// written since. `None`: the next sync reads every rule.
    synced_since: Option<i64>,
    /// Syncs that read every rule (the first, and those after deletions made elsewhere).
    full_syncs: u64,
    /// A sync's read of the rules, under way on a task of its own.
    reading: Option<RuleRead>,
    /// `SYNC_APPLY_ROWS` (smaller in tests).
    sync_apply_rows: usize,
    /// The batch of rules being built, if any.
    loading: Option<Loading>,
    ownership: Ownership,
    /// Whether this process evaluates now (always, or while it holds the lease).
    active: bool,
    /// When the lease was last renewed.
    renewed_at: i64,
    telemetry: Telemetry,
}

/// A sync's read of the stored rules, on a task of its own: with 100 000 rules, reading the
/// tail of a burst of writes took 50–330 ms, and samples that arrived meanwhile waited for it.
/// The engine goes on evaluating and loading announced rules while it runs; what those touch
/// meanwhile is noted, and the read's (older) view of those rules is not applied.
struct RuleRead {
    /// The read; `None` once it returned.
    task: Option<tokio::task::JoinHandle<crate::storage::Result<ReadRules>>>,
    /// What it returned, being applied a step at a time.
    applying: Option<Applying>,
    /// Rules announced or read by a load since the read began, with whether the engine knew
    /// them to exist (`known`) when first touched.
    touched: HashMap<RuleKey, bool>,
}

/// A batch of rules being built on a task of its own.
struct Loading {
    task: tokio::task::JoinHandle<crate::storage::Result<Vec<(RuleKey, RuleRuntime)>>>,
    /// The batch (pending again if the load fails).
    keys: Vec<RuleKey>,
    /// The versions (`updated_at`) being built: a sync meanwhile need not stage them again.
    versions: HashMap<RuleKey, i64>,
    /// The batch's metrics, by tenant.
    metrics: HashMap<i64, HashSet<String>>,
    /// Samples of those metrics that arrived meanwhile (tenant, samples, commit time).
    held: Vec<(i64, Vec<Sample>, i64)>,
    started: Instant,
}

/// A sync's rows being applied, `SYNC_APPLY_ROWS` per step: the tail of a 100 000-rule
/// `microdash apply -f` is ~35 000 rows every two seconds, 45–70 ms of work in one go.
struct Applying {
    /// The read, its rows taken into `records`.
    read: ReadRules,
    records: std::vec::IntoIter<SpecRecord>,
    /// The rules among the rows applied so far.
    in_read: HashSet<RuleKey>,
    started: Instant,
}

/// What a sync's read found.
struct ReadRules {
    /// Every rule (a full read), or only those written at or after the sync's `since`.
    full: bool,
    /// When the read began (ms).
    read_at: i64,
    records: Vec<SpecRecord>,
    /// How many rules are stored, at the moment of `records`.
    total: i64,
}

/// Why an alert's notifications are held back: a silence (its id) or a firing rule that
/// inhibits it (the rule's name).
#[derive(Debug, Clone, Copy)]
enum Muted<'a> {
    Silence(&'a str),
    Inhibited(&'a str),
}

impl std::fmt::Display for Muted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Muted::Silence(id) => write!(f, "silence {id}"),
            Muted::Inhibited(rule) => write!(f, "rule {rule}"),
        }
    }
}

/// What can hold back an alert's notifications.
#[derive(Default)]
struct Mutes {
    /// Silences not ended yet, by tenant.
    silences: HashMap<i64, Vec<SilenceRecord>>,
    /// The rules with `inhibits` of each tenant and what of theirs fires now.
    inhibitors: HashMap<i64, Vec<Inhibitor>>,
}

impl Mutes {
    /// What holds back notifications of `rule`'s alert on `series` at `at`, if anything.
    fn of(&self, tenant_id: i64, (name, rule_labels): (&str, &Labels), series: &Labels, at: i64) -> Option<Muted<'_>> {
        let silenced = self.silences.get(&tenant_id).and_then(|silences| {
            silences.iter().find(|s| {
                s.starts_at <= at && at < s.ends_at && silence_matches(&s.matchers, name, rule_labels, series)
            })
        });
        if let Some(silence) = silenced {
            return Some(Muted::Silence(&silence.id));
        }
        self.inhibitors.get(&tenant_id).and_then(|i| inhibited_by(i, name, rule_labels, series)).map(Muted::Inhibited)
    }
}

/// (tenant, channel, the group's labels as canonical JSON).
type GroupKey = (i64, String, String);

/// An alert group of a grouping channel: the alerts whose `groupBy` labels have these values.
struct Group {
    labels: Labels,
    /// When the group is looked at next: `groupWait` after it formed, then every `groupInterval`.
    next_flush: i64,
    /// Instances seen firing since the last flush: one that stops before the next flush is
    /// listed there as resolved.
    seen_firing: BTreeSet<i64>,
    /// What the group's last notification said (none sent yet: `None`).
    last: Option<Flushed>,
}

struct Flushed {
    seq: i64,
    at: i64,
    firing: BTreeSet<i64>,
    resolved: BTreeSet<i64>,
}

impl Group {
    /// Whether the receiver was told, or is about to be, that the instance fires.
    fn knows(&self, id: i64) -> bool {
        self.seen_firing.contains(&id) || self.last.as_ref().is_some_and(|l| l.firing.contains(&id))
    }
}

/// The labels a channel groups an alert by: those of `group_by` it has (`alertname` = the
/// rule's name), or all of them for `...`.
fn group_labels(group_by: &[String], rule: &str, rule_labels: &Labels, series: &Labels) -> Labels {
    if group_by.iter().any(|l| l == "...") {
        let mut all = series.clone();
        all.extend(rule_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        all.insert("alertname".into(), rule.to_string());
        return all;
    }
    group_by
        .iter()
        .filter_map(|name| alert_label(name, rule, rule_labels, series).map(|v| (name.clone(), v.to_string())))
        .collect::<BTreeMap<_, _>>()
}

/// Whether a group's notification is due now, as Alertmanager's dedup stage decides: new firing
/// alerts, everything resolved, newly resolved alerts (with `sendResolved`), or `repeatInterval`
/// passed since the last one. Returns the reason, `true` for a repeat.
fn group_update_due(
    last: Option<&Flushed>,
    firing: &BTreeSet<i64>,
    resolved: &BTreeSet<i64>,
    send_resolved: bool,
    repeat_ms: Option<i64>,
    now: i64,
) -> Option<bool> {
    let Some(last) = last else { return (!firing.is_empty()).then_some(false) };
    if !firing.is_subset(&last.firing) {
        return Some(false);
    }
    if firing.is_empty() {
        return (!last.firing.is_empty()).then_some(false);
    }
    if send_resolved && !resolved.is_subset(&last.resolved) {
        return Some(false);
    }
    repeat_ms.is_some_and(|every| now - last.at >= every).then_some(true)
}

fn policy_of(spec: &AlertRuleSpec) -> Policy {
    Policy {
        for_ms: spec.for_duration().as_millis() as i64,
        keep_firing_for_ms: spec.keep_firing_for().as_millis() as i64,
        no_data: spec.no_data().map(|(state, after)| (state, after.as_millis() as i64)),
    }
}

/// A rule built from storage, before its new instances are written.
struct Built {
    rule: RuleRuntime,
    /// Series with recent data and no instance yet, in the order their instances are written.
    wanted: Vec<Wanted>,
    /// Stored points within the window, by series (label JSON).
    points: Vec<(String, Vec<(i64, f64)>)>,
}

struct Wanted {
    key: String,
    labels: Labels,
    instance: Instance,
    /// The series' newest sample.
    last: (i64, f64),
}

/// A load's task: refills the rules' windows (one read per metric for all of them), builds
/// them, and writes their new instances in one transaction.
async fn build_rules(
    store: DynStore,
    fresh: Vec<(RuleKey, i64, AlertRuleSpec)>,
    mut stored: Vec<Vec<InstanceRecord>>,
    last_notified: HashMap<i64, Vec<(String, i64)>>,
    now: i64,
) -> crate::storage::Result<Vec<(RuleKey, RuleRuntime)>> {
    let mut groups: HashMap<(i64, String), Vec<usize>> = HashMap::new();
    for (i, (key, _, spec)) in fresh.iter().enumerate() {
        groups.entry((key.0, spec.metric.clone())).or_default().push(i);
    }
    let mut built = Vec::with_capacity(fresh.len());
    for ((tenant_id, metric), members) in groups {
        let specs: Vec<&AlertRuleSpec> = members.iter().map(|&i| &fresh[i].2).collect();
        let refill = Refill::read(&store, tenant_id, &metric, &specs, now).await?;
        for i in members {
            let (key, updated_at, spec) = &fresh[i];
            let instances = std::mem::take(&mut stored[i]);
            let rule =
                build_rule(&store, key.clone(), *updated_at, spec.clone(), instances, &last_notified, &refill, now)
                    .await?;
            built.push((key.clone(), rule));
        }
    }
    // The new instances of the whole batch in one write.
    let new: Vec<NewInstance<'_>> = built
        .iter()
        .flat_map(|(key, b): &(RuleKey, Built)| {
            b.wanted.iter().map(move |w| NewInstance {
                tenant_id: key.0,
                rule: &key.1,
                labels: &w.labels,
                instance: &w.instance,
            })
        })
        .collect();
    let mut created = store.upsert_instances(&new).await?.into_iter();
    Ok(built
        .into_iter()
        .map(|(key, b)| {
            let n = b.wanted.len();
            (key, finish_rule(b, created.by_ref().take(n), now))
        })
        .collect())
}

/// A rule's runtime: its stored instances (dropping those whose series no longer match),
/// and what `finish_rule` completes it with: the instances its series with recent data need
/// (written for the whole batch at once) and the samples stored within its window.
#[allow(clippy::too_many_arguments)]
async fn build_rule(
    store: &DynStore,
    (tenant_id, name): RuleKey,
    updated_at: i64,
    spec: AlertRuleSpec,
    stored: Vec<InstanceRecord>,
    last_notified: &HashMap<i64, Vec<(String, i64)>>,
    refill: &Refill,
    now: i64,
) -> crate::storage::Result<Built> {
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
    for record in stored {
        if !labels_match(&record.labels, &rule.spec.matchers) {
            store.delete_instance(record.id).await?;
            continue;
        }
        let notified = last_notified.get(&record.id).cloned().unwrap_or_default().into_iter().collect();
        rule.instances.insert(labels_key(&record.labels), InstanceRuntime::of(record, Window::default(), notified));
    }
    let series = refill.matching(&rule.spec.matchers);
    let mut wanted = Vec::new();
    // Newest sample per series: the `last` value and when the series was last seen.
    for info in &series {
        let Some((ts, value)) = info.last else { continue };
        let key = labels_key(&info.labels);
        if let Some(existing) = rule.instances.get_mut(&key) {
            existing.instance.last_seen = Some(existing.instance.last_seen.unwrap_or(ts).max(ts));
            if window_ms == 0 {
                existing.window.push(ts, value);
            }
        } else if window_ms == 0 || now - ts <= window_ms {
            // A series with recent data but no instance yet (new rule): it gets one.
            wanted.push(Wanted { key, labels: info.labels.clone(), instance: Instance::new(ts), last: (ts, value) });
        }
    }
    let mut points = Vec::new();
    if window_ms > 0 {
        points = match &refill.points {
            Some(points) => series
                .iter()
                .filter_map(|info| {
                    let key = labels_key(&info.labels);
                    points.get(&key).map(|p| (key, p.clone()))
                })
                .collect(),
            None => {
                let query = refill_query(tenant_id, &rule.spec.metric, &rule.spec.matchers, window_ms, now);
                match store.query(&query).await {
                    Ok(read) => read.into_iter().map(|sp: SeriesPoints| (labels_key(&sp.labels), sp.points)).collect(),
                    Err(err) => {
                        tracing::warn!(%err, rule = %name, "Could not refill the rule's windows; they fill from new samples.");
                        Vec::new()
                    }
                }
            }
        };
    }
    Ok(Built { rule, wanted, points })
}

/// Completes a built rule with its new instances (`created`, in the order of `wanted`) and
/// refills its windows.
fn finish_rule(built: Built, created: impl Iterator<Item = InstanceRecord>, now: i64) -> RuleRuntime {
    let Built { mut rule, wanted, points } = built;
    for (wanted, record) in wanted.into_iter().zip(created) {
        let mut window = Window::default();
        if rule.window_ms == 0 {
            window.push(wanted.last.0, wanted.last.1);
        }
        rule.instances.insert(wanted.key, InstanceRuntime::of(record, window, HashMap::new()));
    }
    if rule.window_ms > 0 {
        let from = now - rule.window_ms;
        for (key, points) in points {
            if let Some(inst) = rule.instances.get_mut(&key) {
                for (ts, value) in points.into_iter().filter(|(ts, _)| *ts >= from) {
                    inst.window.push(ts, value);
                }
            }
        }
    }
    rule
}

/// What a task of the engine's (a sync's read, a batch's build) returned, once it has; never,
/// when there is none. A failed or cancelled task is an error message.
async fn task_done<T>(task: Option<&mut tokio::task::JoinHandle<crate::storage::Result<T>>>) -> Result<T, String> {
    match task {
        Some(task) => match task.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(err)) => Err(err.to_string()),
            Err(err) => Err(err.to_string()),
        },
        None => std::future::pending().await,
    }
}

impl Evaluator {
    fn new(store: DynStore, outbox: Arc<Notify>, ownership: Ownership, telemetry: Telemetry) -> Self {
        Evaluator {
            store,
            outbox,
            watched: Arc::new(RwLock::new(HashMap::new())),
            values: Arc::new(Mutex::new(HashMap::new())),
            events: broadcast::channel(1024).0,
            rules: BTreeMap::new(),
            tick_pass: None,
            tick_step_instances: TICK_STEP_INSTANCES,
            index: RuleIndex::default(),
            by_channel: ChannelRules::default(),
            pending: BTreeSet::new(),
            deleted: HashSet::new(),
            staged: HashMap::new(),
            load_order: std::collections::VecDeque::new(),
            sync_wanted: false,
            retry_after: 0,
            progress: None,
            channels: Channels::default(),
            mutes: Mutes::default(),
            inhibiting: BTreeSet::new(),
            groups: HashMap::new(),
            groups_loaded: false,
            tenants: HashMap::new(),
            fingerprint: None,
            known: HashSet::new(),
            synced_since: None,
            full_syncs: 0,
            reading: None,
            sync_apply_rows: SYNC_APPLY_ROWS,
            loading: None,
            active: matches!(ownership, Ownership::Always),
            telemetry,
            ownership,
            renewed_at: 0,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        if self.active {
            self.telemetry.alert_engine_active.set(1);
            self.sync_wanted = true;
        } else {
            self.keep_lease(now_ms()).await;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            let load = self.active
                && self.loading.is_none()
                && ((self.sync_wanted && self.reading.is_none()) || !self.pending.is_empty())
                && now_ms() >= self.retry_after;
            tokio::select! {
                // Samples first, then time (a tick, then its further steps), then loading
                // rules one batch at a time: queued samples never wait for more than one tick
                // step or one batch.
                biased;
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
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
                        let checked_at = now_ms();
                        match self.store.specs_fingerprint().await {
                            Ok(f) if Some(f) != self.fingerprint => self.sync_wanted = true,
                            // Nothing written since the last sync: the next one need not read
                            // what that sync's overlap would (the tail of an earlier burst).
                            // (Not while a read is under way: until it is applied, what it
                            // reads is not known here.)
                            Ok(_) if self.reading.is_some() => {}
                            Ok(_) => {
                                if let Some(since) = self.synced_since.as_mut() {
                                    *since = (*since).max(checked_at - SYNC_OVERLAP_MS);
                                }
                            }
                            Err(err) => tracing::warn!(%err, "Checking for rule changes failed."),
                        }
                    }
                    // A pass still under way (a busy second) is not started again.
                    if self.tick_pass.is_none() {
                        self.tick_pass = Some(TickPass::default());
                    }
                    self.tick_step(now_ms()).await;
                }
                () = std::future::ready(()), if self.active && self.tick_pass.is_some() => self.tick_step(now_ms()).await,
                read = task_done(self.reading.as_mut().and_then(|r| r.task.as_mut())) => {
                    self.read_returned(read, now_ms());
                }
                built = task_done(self.loading.as_mut().map(|l| &mut l.task)) => self.install(built, now_ms()).await,
                () = std::future::ready(()), if self.reading.as_ref().is_some_and(|r| r.applying.is_some()) => {
                    self.apply_step().await;
                }
                () = std::future::ready(()), if load => self.load_step(now_ms()).await,
            }
            // Back to the scheduler after every step. A task this one wakes (the outbox, told
            // of a transition's notification) waits in this worker's next-task slot, which the
            // other worker cannot take: while steps follow each other without a pause (a tick
            // pass over 100 000 instances, ~50 ms), it waited for all of them.
            tokio::task::yield_now().await;
        }
        if let (true, Ownership::Lease { owner, .. }) = (self.active, &self.ownership)
            && let Err(err) = self.store.release_lease(LEASE, owner).await
        {
            tracing::warn!(%err, "Could not release the alert engine lease; another worker takes over when it expires.");
        }
        tracing::info!("Alert engine stopped.");
    }

    /// Notes that a rule's stored spec is being read anew (announced, or read by a load) while
    /// a sync's read is under way.
    fn touch(&mut self, key: &RuleKey) {
        if let Some(reading) = self.reading.as_mut() {
            reading.touched.entry(key.clone()).or_insert_with(|| self.known.contains(key));
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Samples { tenant_id, samples, at } => {
                if self.active {
                    if let Some(loading) = self.loading.as_mut()
                        && let Some(metrics) = loading.metrics.get(&tenant_id)
                    {
                        let held: Vec<Sample> =
                            samples.iter().filter(|s| metrics.contains(&*s.metric)).cloned().collect();
                        if !held.is_empty() {
                            loading.held.push((tenant_id, held, at));
                        }
                    }
                    self.on_samples(tenant_id, &samples, at).await;
                }
            }
            Event::Rule(key) => {
                self.deleted.remove(&key);
                self.read_again(key);
            }
            Event::RuleDeleted(key) => {
                // It stops being evaluated now: a sample committed after the deletion's answer
                // must not fire it while its load waits behind a batch.
                self.remove_rule(&key);
                self.telemetry.alert_rules.set(self.rules.len() as i64);
                self.deleted.insert(key.clone());
                self.read_again(key);
            }
            Event::Channels => {
                if self.active
                    && let Err(err) = self.load_channels().await
                {
                    tracing::warn!(%err, "Reloading notification channels failed; will retry.");
                    self.sync_wanted = true;
                }
            }
            Event::Silences => {
                if self.active
                    && let Err(err) = self.load_silences().await
                {
                    tracing::warn!(%err, "Reloading silences failed; will retry.");
                    self.sync_wanted = true;
                }
            }
            Event::Sync => self.sync_wanted = true,
        }
    }

    async fn load_silences(&mut self) -> crate::storage::Result<()> {
        let mut silences: HashMap<i64, Vec<SilenceRecord>> = HashMap::new();
        for silence in self.store.list_silences(None, now_ms()).await? {
            silences.entry(silence.tenant_id).or_default().push(silence);
        }
        self.mutes.silences = silences;
        Ok(())
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
                    self.forget_rules();
                    self.sync_wanted = true;
                    self.active = true;
                    self.telemetry.alert_engine_active.set(1);
                    tracing::info!(%owner, "This worker now evaluates the alert rules; loading them.");
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

    fn forget_rules(&mut self) {
        self.rules.clear();
        self.tick_pass = None;
        self.index.clear();
        self.by_channel.clear();
        self.inhibiting.clear();
        self.mutes.inhibitors.clear();
        self.groups.clear();
        self.groups_loaded = false;
        self.pending.clear();
        self.staged.clear();
        self.load_order.clear();
        self.progress = None;
        self.fingerprint = None;
        self.known.clear();
        self.synced_since = None;
        if let Some(task) = self.reading.take().and_then(|r| r.task) {
            task.abort();
        }
        if let Some(loading) = self.loading.take() {
            loading.task.abort();
        }
    }

    fn step_down(&mut self) {
        self.active = false;
        self.telemetry.alert_engine_active.set(0);
        self.telemetry.alert_rules.set(0);
        self.telemetry.alert_instances.set(0);
        self.forget_rules();
        self.watched.write().expect("watched poisoned").clear();
    }

    /// One step of loading: a sync when one is wanted, then one batch of pending rules.
    async fn load_step(&mut self, now: i64) {
        if self.sync_wanted && self.reading.is_none() {
            let started = Instant::now();
            match self.begin_sync().await {
                Ok(()) => {
                    self.sync_wanted = false;
                    tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "Alert rule sync begun.");
                }
                Err(err) => return self.sync_failed(&err.to_string(), now),
            }
        }
        if self.pending.is_empty() && self.reading.is_some() {
            return;
        }
        let batch = self.next_batch();
        match self.begin_load(&batch, now).await {
            Ok(true) => {}
            Ok(false) => self.loaded(batch.len()),
            Err(err) => self.load_failed(&err.to_string(), batch, now),
        }
    }

    /// Progress after a batch of `rules` is loaded; once nothing is left to load, the watched
    /// metrics are those of the loaded rules.
    fn loaded(&mut self, rules: usize) {
        if let Some(progress) = &mut self.progress {
            progress.done += rules;
            if self.pending.is_empty() {
                let instances: usize = self.rules.values().map(|r| r.instances.len()).sum();
                tracing::info!(
                    rules = self.rules.len(),
                    instances,
                    seconds = format!("{:.1}", progress.started.elapsed().as_secs_f64()),
                    "Alert rules loaded."
                );
            } else if progress.logged.elapsed() >= Duration::from_secs(1) {
                progress.logged = Instant::now();
                tracing::info!(
                    "Loading alert rules: {} of {} ({} %).",
                    progress.done.min(progress.total),
                    progress.total,
                    100 * progress.done.min(progress.total) / progress.total.max(1)
                );
            }
        }
        if self.pending.is_empty() && self.loading.is_none() {
            self.progress = None;
            // Metrics of deleted rules stop being watched once nothing is left to load (while
            // rules are pending, their metrics must stay).
            *self.watched.write().expect("watched poisoned") = self.index.metrics();
            self.telemetry.alert_rules.set(self.rules.len() as i64);
        }
    }

    /// The rules to load in the next step: staged rules of one metric, in their load order, or
    /// else the first pending ones. They leave `pending`.
    fn next_batch(&mut self) -> Vec<RuleKey> {
        let mut batch = Vec::new();
        let mut metric: Option<(i64, &str)> = None;
        while let Some(key) = self.load_order.front() {
            let Some(staged) = self.staged.get(key).filter(|_| self.pending.contains(key)) else {
                self.load_order.pop_front();
                continue;
            };
            let this = (key.0, staged.spec.metric.as_str());
            if batch.len() >= STAGED_BATCH || metric.is_some_and(|m| m != this) {
                break;
            }
            metric = Some(this);
            batch.push(key.clone());
            self.load_order.pop_front();
        }
        if batch.is_empty() {
            batch = self.pending.iter().take(LOAD_BATCH).cloned().collect();
        }
        for key in &batch {
            self.pending.remove(key);
        }
        batch
    }

    async fn load_channels(&mut self) -> crate::storage::Result<()> {
        let mut channels = Channels::default();
        for record in self.store.list_specs(SpecKind::Channel, None).await? {
            match serde_json::from_str::<NotificationChannelSpec>(&record.spec) {
                Ok(spec) => {
                    channels.insert(record.tenant_id, record.name, spec);
                }
                Err(err) => tracing::error!(%err, channel = %record.name, "A stored channel is unreadable; skipped."),
            }
        }
        self.channels = channels;
        Ok(())
    }

    /// Begins comparing the stored rules with the loaded ones: reads channels, silences and
    /// tenant names, and starts reading the rules on a task of its own (`finish_sync` applies
    /// what it finds). After the first sync that read is only of the rules written since the
    /// last one; when that shows a stored count other than the rules this engine knows (a
    /// deletion made elsewhere), the next sync reads them all.
    async fn begin_sync(&mut self) -> crate::storage::Result<()> {
        // Before the rules are read: a write after this is seen by the next check.
        self.fingerprint = Some(self.store.specs_fingerprint().await?);
        self.tenants = self.store.list_tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
        self.load_channels().await?;
        self.load_silences().await?;
        if !self.groups_loaded {
            self.load_groups(now_ms()).await?;
        }
        let (store, since) = (self.store.clone(), self.synced_since);
        let task = tokio::spawn(async move {
            let read_at = now_ms();
            Ok(match since {
                Some(since) => {
                    let changes = store.list_specs_changed_since(SpecKind::Rule, since).await?;
                    ReadRules { full: false, read_at, records: changes.records, total: changes.total }
                }
                None => {
                    let records = store.list_specs(SpecKind::Rule, None).await?;
                    ReadRules { full: true, read_at, total: records.len() as i64, records }
                }
            })
        });
        self.reading = Some(RuleRead { task: Some(task), applying: None, touched: HashMap::new() });
        Ok(())
    }

    /// A sync's read returned: its rows are applied from the next step on.
    fn read_returned(&mut self, read: Result<ReadRules, String>, now: i64) {
        let mut read = match read {
            Ok(read) => read,
            Err(err) => return self.sync_failed(&err, now),
        };
        let Some(reading) = self.reading.as_mut() else { return };
        let records = std::mem::take(&mut read.records).into_iter();
        reading.task = None;
        reading.applying = Some(Applying { read, records, in_read: HashSet::new(), started: Instant::now() });
    }

    /// Applies the next rows of a sync's read: changed and new rules become pending (their
    /// metrics watched at once). Rules the engine announced or read itself since the read began
    /// are left to their loads, which read them later than this read did. After the last rows,
    /// deleted rules are dropped (a full read) or the stored count is checked (a read of what
    /// changed).
    async fn apply_step(&mut self) {
        let Some(RuleRead { applying: Some(applying), touched, .. }) = self.reading.as_mut() else { return };
        let mut chunk = Vec::with_capacity(self.sync_apply_rows.min(applying.records.len()));
        for record in applying.records.by_ref().take(self.sync_apply_rows) {
            let key = (record.tenant_id, record.name.clone());
            if touched.contains_key(&key) {
                // Still to be loaded: it exists (as far as this read knows), and the load
                // says otherwise if it is deleted.
                if self.pending.contains(&key) {
                    self.known.insert(key.clone());
                }
            } else {
                chunk.push(record);
            }
            applying.in_read.insert(key);
        }
        let done = applying.records.len() == 0;
        self.stage_records(chunk);
        if done {
            let reading = self.reading.take().expect("a read is being applied");
            let applying = reading.applying.expect("a read is being applied");
            self.finish_sync(applying, reading.touched).await;
        }
    }

    async fn finish_sync(&mut self, applied: Applying, touched: HashMap<RuleKey, bool>) {
        let Applying { read, in_read, started, .. } = applied;
        if read.full {
            self.full_syncs += 1;
            let gone: Vec<RuleKey> = self
                .rules
                .keys()
                .filter(|key| !in_read.contains(*key) && !touched.contains_key(*key))
                .cloned()
                .collect();
            for key in gone {
                self.remove_rule(&key);
            }
            self.known.retain(|key| in_read.contains(key) || touched.contains_key(key));
            self.synced_since = Some(read.read_at - SYNC_OVERLAP_MS);
        } else {
            // Whether each touched rule was stored when the rows were read: among them, or (not
            // written lately) as the engine knew it before touching it.
            let mut stored = self.known.len() as i64;
            for (key, was_known) in &touched {
                stored += i64::from(in_read.contains(key) || *was_known) - i64::from(self.known.contains(key));
            }
            if stored == read.total {
                self.synced_since = Some(read.read_at - SYNC_OVERLAP_MS);
            } else {
                tracing::debug!(known = stored, stored = read.total, "Reading every alert rule again.");
                self.synced_since = None;
                self.sync_wanted = true;
            }
        }
        // A start or takeover (nothing loaded yet) with many rules: their instances in one read
        // instead of one per rule. Not while rules are loaded: during a burst that read of every
        // instance held the evaluator for seconds.
        if self.rules.is_empty() && self.staged.len() >= LOAD_BATCH {
            match self.store.list_instances(None).await {
                Ok(list) => {
                    let mut stored: HashMap<RuleKey, Vec<InstanceRecord>> = HashMap::new();
                    for record in list {
                        stored.entry((record.tenant_id, record.rule.clone())).or_default().push(record);
                    }
                    for (key, staged) in self.staged.iter_mut() {
                        if !self.rules.contains_key(key) {
                            staged.instances = Some(stored.remove(key).unwrap_or_default());
                        }
                    }
                }
                // The rules then read their own instances as they load.
                Err(err) => tracing::warn!(%err, "Reading the alert instances at once failed; reading them per rule."),
            }
        }
        if self.pending.len() >= LOG_PROGRESS_FROM && self.progress.is_none() {
            tracing::info!(rules = self.pending.len(), "Loading alert rules.");
            self.progress =
                Some(Progress { total: self.pending.len(), done: 0, started: Instant::now(), logged: Instant::now() });
        }
        tracing::debug!(
            full = read.full,
            rows = in_read.len(),
            touched = touched.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "Alert rule sync applied."
        );
    }

    fn sync_failed(&mut self, err: &str, now: i64) {
        self.reading = None;
        tracing::warn!(%err, "Reading the alert rules failed; will retry.");
        self.fingerprint = None;
        self.sync_wanted = true;
        self.retry_after = now + 1000;
    }

    /// Stages the stored rules that differ from what is loaded or staged, watching their
    /// metrics from now on.
    fn stage_records(&mut self, records: Vec<SpecRecord>) {
        let mut watched = Vec::new();
        let mut newly_staged: Vec<(i64, String, String)> = Vec::new();
        for record in records {
            let key = (record.tenant_id, record.name.clone());
            self.known.insert(key.clone());
            let loaded = self.rules.get(&key).map(|r| r.updated_at);
            let staged = self.staged.get(&key).map(|s| s.updated_at);
            let building = self.loading.as_ref().and_then(|l| l.versions.get(&key)).copied();
            // Already pending without a staged spec (announced by the API): it is read when
            // its batch loads; parsing it here as well is wasted work during a burst.
            let announced = staged.is_none() && self.pending.contains(&key);
            let current = Some(record.updated_at);
            if loaded == current || staged == current || building == current || announced {
                continue;
            }
            match serde_json::from_str::<AlertRuleSpec>(&record.spec) {
                Ok(spec) => {
                    watched.push((record.tenant_id, spec.metric.clone()));
                    newly_staged.push((record.tenant_id, spec.metric.clone(), record.name.clone()));
                    self.staged.insert(key.clone(), Staged { updated_at: record.updated_at, spec, instances: None });
                    self.pending.insert(key);
                }
                Err(err) => tracing::error!(%err, rule = %record.name, "A stored rule is unreadable; skipped."),
            }
        }
        {
            let mut w = self.watched.write().expect("watched poisoned");
            for (tenant_id, metric) in watched {
                w.entry(tenant_id).or_default().insert(metric);
            }
        }
        newly_staged.sort_unstable();
        self.load_order.extend(newly_staged.into_iter().map(|(tenant_id, _, name)| (tenant_id, name)));
    }

    /// A rule the API wrote or deleted: a spec a sync read earlier may be stale now, so it is
    /// read again. Until then it is not known to exist (it may be a deletion): the next sync's
    /// read finds it if it still does.
    fn read_again(&mut self, key: RuleKey) {
        self.touch(&key);
        self.staged.remove(&key);
        self.known.remove(&key);
        self.pending.insert(key);
    }

    fn remove_rule(&mut self, key: &RuleKey) {
        if let Some(rule) = self.rules.remove(key) {
            self.index.remove(key.0, &key.1, &rule.spec);
            self.by_channel.remove(key, &rule.spec);
        }
        if self.inhibiting.remove(key) {
            self.refresh_inhibitors(key.0);
        }
    }

    /// Begins loading (or drops) the given rules: reads their specs and stored instances, and
    /// starts the task that refills their windows from storage (one read per metric for all of
    /// them) and builds them. True when that task runs (`install` completes the load).
    async fn begin_load(&mut self, keys: &[RuleKey], now: i64) -> crate::storage::Result<bool> {
        let mut fresh: Vec<(RuleKey, i64, AlertRuleSpec, Option<Vec<InstanceRecord>>)> = Vec::new();
        let mut unstaged = Vec::new();
        for key in keys {
            // This load reads what is stored now.
            self.deleted.remove(key);
            match self.staged.remove(key) {
                Some(staged) => fresh.push((key.clone(), staged.updated_at, staged.spec, staged.instances)),
                None => unstaged.push(key.clone()),
            }
        }
        for key in &unstaged {
            self.touch(key);
        }
        // Announced rules (no spec read yet): their specs in one read.
        let mut records: HashMap<RuleKey, SpecRecord> = HashMap::new();
        for record in self.store.get_specs(SpecKind::Rule, &unstaged).await? {
            records.insert((record.tenant_id, record.name.clone()), record);
        }
        for key in &unstaged {
            let Some(record) = records.remove(key) else {
                self.known.remove(key);
                self.remove_rule(key);
                continue;
            };
            self.known.insert(key.clone());
            if self.rules.get(key).is_some_and(|r| r.updated_at == record.updated_at) {
                continue;
            }
            match serde_json::from_str::<AlertRuleSpec>(&record.spec) {
                Ok(spec) => fresh.push((key.clone(), record.updated_at, spec, None)),
                Err(err) => {
                    tracing::error!(%err, rule = %key.1, "A stored rule is unreadable; skipped.");
                    self.remove_rule(key);
                }
            }
        }
        if fresh.is_empty() {
            return Ok(false);
        }
        if fresh.iter().any(|(key, ..)| !self.tenants.contains_key(&key.0)) {
            self.tenants = self.store.list_tenants().await?.into_iter().map(|t| (t.id, t.name)).collect();
        }
        // Watched before the windows are refilled: a sample committed after the refill's read
        // is then handed over, so none falls in between.
        {
            let mut w = self.watched.write().expect("watched poisoned");
            for (key, _, spec, _) in &fresh {
                w.entry(key.0).or_default().insert(spec.metric.clone());
            }
        }
        // Instances of the rules a sync did not stage with theirs, in one read. A rule loaded
        // before keeps its instances in the database too: they are read, as for a rule never
        // loaded.
        let unread: Vec<RuleKey> =
            fresh.iter().filter(|(_, _, _, instances)| instances.is_none()).map(|(key, ..)| key.clone()).collect();
        let mut read: HashMap<RuleKey, Vec<InstanceRecord>> = HashMap::new();
        for record in self.store.list_instances_of(&unread).await? {
            read.entry((record.tenant_id, record.rule.clone())).or_default().push(record);
        }
        let mut stored = Vec::with_capacity(fresh.len());
        for (key, _, _, instances) in &mut fresh {
            stored.push(instances.take().unwrap_or_else(|| read.remove(key).unwrap_or_default()));
        }
        let mut last_notified: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
        let instance_ids: Vec<i64> = stored.iter().flatten().map(|record| record.id).collect();
        for (instance_id, channel, at) in self.store.last_notifications_of(&instance_ids).await? {
            last_notified.entry(instance_id).or_default().push((channel, at));
        }
        // The refill (a read of each metric's series, 20–50 ms for 5000 of them) and the new
        // instances' write run on a task of their own; samples of these metrics that arrive
        // meanwhile are held and handed to the new rules once they are in place.
        let mut metrics: HashMap<i64, HashSet<String>> = HashMap::new();
        for (key, _, spec, _) in &fresh {
            metrics.entry(key.0).or_default().insert(spec.metric.clone());
        }
        let store = self.store.clone();
        let fresh: Vec<(RuleKey, i64, AlertRuleSpec)> = fresh.into_iter().map(|(k, u, s, _)| (k, u, s)).collect();
        let versions = fresh.iter().map(|(key, updated_at, _)| (key.clone(), *updated_at)).collect();
        let task = tokio::spawn(build_rules(store, fresh, stored, last_notified, now));
        self.loading =
            Some(Loading { task, keys: keys.to_vec(), versions, metrics, held: Vec::new(), started: Instant::now() });
        Ok(true)
    }

    /// Puts the rules a load built in place (an earlier version's instances keep their state,
    /// which may be newer than what the load read) and hands them the samples held meanwhile.
    async fn install(&mut self, built: Result<Vec<(RuleKey, RuleRuntime)>, String>, now: i64) {
        let Some(loading) = self.loading.take() else { return };
        let built = match built {
            Ok(built) => built,
            Err(err) => return self.load_failed(&err, loading.keys, now),
        };
        tracing::debug!(
            rules = loading.keys.len(),
            ms = loading.started.elapsed().as_secs_f64() * 1e3,
            "Alert rule batch."
        );
        let mut installed = HashSet::new();
        let mut inhibitors_changed = BTreeSet::new();
        for (key, mut rule) in built {
            if self.deleted.contains(&key) {
                // Deleted while it was built; its own load follows.
                continue;
            }
            if let Some(old) = self.rules.get(&key) {
                for (instance_key, inst) in rule.instances.iter_mut() {
                    if let Some(before) = old.instances.get(instance_key).filter(|b| b.id == inst.id) {
                        inst.instance = before.instance.clone();
                        inst.seq = before.seq;
                        inst.last_notified = before.last_notified.clone();
                    }
                }
            }
            self.remove_rule(&key);
            self.index.insert(key.0, &key.1, &rule.spec);
            self.by_channel.insert(&key, &rule.spec);
            if rule.spec.inhibits.is_some() {
                self.inhibiting.insert(key.clone());
                inhibitors_changed.insert(key.0);
            }
            installed.insert(key.clone());
            self.rules.insert(key, rule);
        }
        for tenant_id in inhibitors_changed {
            self.refresh_inhibitors(tenant_id);
        }
        self.telemetry.alert_rules.set(self.rules.len() as i64);
        for (tenant_id, samples, at) in loading.held {
            self.evaluate(tenant_id, &samples, at, Some(&installed)).await;
        }
        self.loaded(loading.keys.len());
    }

    fn load_failed(&mut self, err: &str, keys: Vec<RuleKey>, now: i64) {
        tracing::warn!(%err, rules = keys.len(), "Loading alert rules failed; will retry.");
        self.pending.extend(keys);
        self.retry_after = now + 1000;
    }

    async fn on_samples(&mut self, tenant_id: i64, samples: &[Sample], at: i64) {
        self.evaluate(tenant_id, samples, at, None).await;
    }

    /// Steps the instances the samples reach: of every rule, or `only` of the given ones.
    async fn evaluate(&mut self, tenant_id: i64, samples: &[Sample], at: i64, only: Option<&HashSet<RuleKey>>) {
        let mut work: Vec<(RuleKey, &Sample)> = Vec::new();
        let mut names = Vec::new();
        for sample in samples {
            names.clear();
            self.index.candidates(tenant_id, sample, &mut names);
            work.extend(
                names
                    .iter()
                    .map(|name| ((tenant_id, name.to_string()), sample))
                    .filter(|(key, _)| only.is_none_or(|only| only.contains(key))),
            );
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
                            InstanceRuntime::of(record, Window::default(), HashMap::new()),
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

    /// One step of the tick under way: time passes for the next `TICK_STEP_INSTANCES`
    /// instances (windows age, `for` and no-data timers run out, repeats fall due). The last
    /// step also sends the grouping channels' groups that are due.
    async fn tick_step(&mut self, now: i64) {
        let Some(pass) = self.tick_pass.as_mut() else { return };
        let from = match pass.after.take() {
            Some(key) => std::ops::Bound::Excluded(key),
            None => std::ops::Bound::Unbounded,
        };
        let mut transitions = Vec::new();
        let mut repeats = Vec::new();
        let mut resumes = Vec::new();
        let mut visited = 0usize;
        let mut stopped_after = None;
        for (key, rule) in self.rules.range_mut((from, std::ops::Bound::Unbounded)) {
            let (window_ms, policy) = (rule.window_ms, rule.policy);
            visited += rule.instances.len().max(1);
            pass.instances += rule.instances.len() as i64;
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
                } else if self.mutes.of(key.0, (&rule.name, &rule.spec.labels), &inst.labels, now).is_none() {
                    for channel in &rule.spec.channels {
                        let spec = self.channels.get(key.0, channel);
                        // A grouping channel's repeats and held-back alerts go with its groups.
                        if spec.is_some_and(|c| c.grouped()) {
                            continue;
                        }
                        // A problem whose notification was held back (a silence that has ended
                        // since) is sent now, under the key its transition would have had.
                        let problem = matches!(inst.instance.state, AlertState::Firing | AlertState::NoData);
                        let last = inst.last_notified.get(channel).copied();
                        if problem && inst.instance.active_since.is_some_and(|since| last.is_none_or(|l| l < since)) {
                            resumes.push((key.clone(), instance_key.clone(), channel.clone()));
                            continue;
                        }
                        let interval = spec.and_then(|c| c.repeat_interval()).map(|d| d.as_millis() as i64);
                        if repeat_due(inst.instance.state, inst.last_notified.get(channel).copied(), interval, now) {
                            repeats.push((key.clone(), instance_key.clone(), channel.clone()));
                        }
                    }
                }
            }
            if visited >= self.tick_step_instances {
                stopped_after = Some(key.clone());
                break;
            }
        }
        let finished = match stopped_after {
            Some(key) => {
                pass.after = Some(key);
                None
            }
            None => Some(pass.instances),
        };
        for (key, instance_key, t, before) in transitions {
            self.persist(&key, &instance_key, t, before).await;
        }
        for (key, instance_key, channel) in repeats {
            self.repeat(&key, &instance_key, &channel, now, true).await;
        }
        for (key, instance_key, channel) in resumes {
            self.repeat(&key, &instance_key, &channel, now, false).await;
        }
        if let Some(instances) = finished {
            self.tick_pass = None;
            self.telemetry.alert_instances.set(instances);
            self.flush_groups(now).await;
        }
    }

    /// Brings the grouping channels' groups up to date with the alerts, and sends each group
    /// whose time has come the notification it needs, if any: one notification listing the
    /// group's firing alerts and the ones resolved since the last, written with the group's new
    /// state in one transaction (the outbox then delivers it exactly once).
    async fn flush_groups(&mut self, now: i64) {
        if self.groups.is_empty() && self.channels.all_grouping().next().is_none() {
            return;
        }
        let mut members = self.group_members(now);
        let due: Vec<GroupKey> =
            self.groups.iter().filter(|(_, g)| g.next_flush <= now).map(|(k, _)| k.clone()).collect();
        for group_key in due {
            let Some(spec) = self.channels.grouping(group_key.0, &group_key.1).cloned() else {
                // The channel is gone or no longer groups.
                self.groups.remove(&group_key);
                continue;
            };
            let alerts = members.remove(&group_key).unwrap_or_default();
            let ids = |firing: bool| -> BTreeSet<i64> {
                alerts
                    .iter()
                    .filter(|(.., f)| *f == firing)
                    .filter_map(|(key, instance_key, _)| Some(self.rules.get(key)?.instances.get(instance_key)?.id))
                    .collect()
            };
            let (firing, resolved) = (ids(true), ids(false));
            let group = self.groups.get(&group_key).expect("due groups exist");
            let repeat_ms = spec.repeat_interval().map(|d| d.as_millis() as i64);
            let Some(repeat) =
                group_update_due(group.last.as_ref(), &firing, &resolved, spec.send_resolved(), repeat_ms, now)
            else {
                let group = self.groups.get_mut(&group_key).expect("due groups exist");
                if group.last.is_none() && firing.is_empty() {
                    // Fired and resolved before anyone was told.
                    self.groups.remove(&group_key);
                } else {
                    group.next_flush = now + spec.group_interval().as_millis() as i64;
                    group.seen_firing = firing;
                }
                continue;
            };
            let seq = group.last.as_ref().map_or(0, |l| l.seq) + 1;
            let done = firing.is_empty();
            let tenant = self.tenants.get(&group_key.0).cloned().unwrap_or_default();
            // Firing alerts first, then the resolved ones (left out without `sendResolved`).
            let mut listed: Vec<Payload> = Vec::new();
            for want_firing in [true, false] {
                for (key, instance_key, f) in &alerts {
                    if *f != want_firing || (!f && !spec.send_resolved()) {
                        continue;
                    }
                    let Some(rule) = self.rules.get(key) else { continue };
                    let Some(inst) = rule.instances.get(instance_key) else { continue };
                    let mut alert =
                        Payload::build(&self.about(rule, inst, now, None, false), &group_key.1, String::new());
                    if !f {
                        alert.state = AlertState::Resolved.as_str().to_string();
                        alert.ends_at = Some(super::payload::rfc3339(inst.instance.since));
                    }
                    listed.push(alert);
                }
            }
            let notification = (!listed.is_empty()).then(|| {
                let idempotency_key =
                    opaque_key(&format!("group\0{}\0{}\0{}\0{seq}", group_key.0, group_key.1, group_key.2));
                let payload = Payload::group(
                    &tenant,
                    &group_key.1,
                    group.labels.clone(),
                    listed,
                    idempotency_key.clone(),
                    now,
                    repeat,
                );
                NewNotification {
                    tenant_id: group_key.0,
                    channel: group_key.1.clone(),
                    instance_id: None,
                    rule: (!payload.rule.is_empty()).then(|| payload.rule.clone()),
                    state: payload.state.clone(),
                    idempotency_key,
                    payload: serde_json::to_string(&payload).expect("payloads serialize"),
                    created_at: now,
                }
            });
            let record = AlertGroupRecord {
                tenant_id: group_key.0,
                channel: group_key.1.clone(),
                labels: group.labels.clone(),
                seq,
                flushed_at: now,
                firing: firing.iter().copied().collect(),
                resolved: resolved.iter().copied().collect(),
            };
            match self.store.flush_alert_group(&record, notification.as_ref(), done).await {
                Ok(()) => {
                    tracing::info!(channel = %group_key.1, group = %group_key.2, firing = firing.len(),
                        resolved = resolved.len(), sent = notification.is_some(), repeat, "Alert group notification.");
                    if notification.is_some() {
                        self.outbox.notify_one();
                    }
                    if done {
                        self.groups.remove(&group_key);
                    } else {
                        let group = self.groups.get_mut(&group_key).expect("due groups exist");
                        group.next_flush = now + spec.group_interval().as_millis() as i64;
                        group.seen_firing = firing.clone();
                        group.last = Some(Flushed { seq, at: now, firing, resolved });
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, channel = %group_key.1, "Recording an alert group's notification failed; will retry.");
                    if let Some(group) = self.groups.get_mut(&group_key) {
                        group.next_flush = now + 1000;
                    }
                }
            }
        }
    }

    /// The alerts of each group of the grouping channels now, (rule, instance, firing), with
    /// the groups of alerts that start firing formed. Only the rules that list a grouping
    /// channel are visited.
    fn group_members(&mut self, now: i64) -> HashMap<GroupKey, Vec<(RuleKey, String, bool)>> {
        let mut members: HashMap<GroupKey, Vec<(RuleKey, String, bool)>> = HashMap::new();
        for (tenant_id, channel, spec) in self.channels.all_grouping() {
            for key in self.by_channel.of(tenant_id, channel) {
                let Some(rule) = self.rules.get(key) else { continue };
                for (instance_key, inst) in &rule.instances {
                    let problem = matches!(inst.instance.state, AlertState::Firing | AlertState::NoData);
                    let firing =
                        problem && self.mutes.of(key.0, (&rule.name, &rule.spec.labels), &inst.labels, now).is_none();
                    let labels = group_labels(&spec.group_by, &rule.name, &rule.spec.labels, &inst.labels);
                    let group_key = (key.0, channel.to_string(), labels_key(&labels));
                    if firing {
                        let group = self.groups.entry(group_key.clone()).or_insert_with(|| Group {
                            labels,
                            next_flush: now + spec.group_wait().as_millis() as i64,
                            seen_firing: BTreeSet::new(),
                            last: None,
                        });
                        group.seen_firing.insert(inst.id);
                    } else if problem || !self.groups.get(&group_key).is_some_and(|g| g.knows(inst.id)) {
                        // Muted, or never told: not part of the group's news.
                        continue;
                    }
                    members.entry(group_key).or_default().push((key.clone(), instance_key.clone(), firing));
                }
            }
        }
        members
    }

    /// Reads what the groups' last notifications were (a start or takeover).
    async fn load_groups(&mut self, now: i64) -> crate::storage::Result<()> {
        self.groups.clear();
        for record in self.store.list_alert_groups(None).await? {
            let Some(spec) = self.channels.grouping(record.tenant_id, &record.channel) else { continue };
            let next_flush = (record.flushed_at + spec.group_interval().as_millis() as i64).max(now);
            self.groups.insert(
                (record.tenant_id, record.channel, labels_key(&record.labels)),
                Group {
                    labels: record.labels,
                    next_flush,
                    seen_firing: BTreeSet::new(),
                    last: Some(Flushed {
                        seq: record.seq,
                        at: record.flushed_at,
                        firing: record.firing.into_iter().collect(),
                        resolved: record.resolved.into_iter().collect(),
                    }),
                },
            );
        }
        self.groups_loaded = true;
        Ok(())
    }

    /// Rebuilds the tenant's inhibitors from its rules with `inhibits` and their alerts.
    fn refresh_inhibitors(&mut self, tenant_id: i64) {
        let mut inhibitors = Vec::new();
        for key in self.inhibiting.range((tenant_id, String::new())..).take_while(|k| k.0 == tenant_id) {
            let Some(rule) = self.rules.get(key) else { continue };
            let Some(spec) = &rule.spec.inhibits else { continue };
            let mut inhibitor = Inhibitor::new(&rule.name, spec);
            for inst in rule.instances.values() {
                inhibitor.observe(inst.instance.state, &rule.spec.labels, &inst.labels);
            }
            inhibitors.push(inhibitor);
        }
        if inhibitors.is_empty() {
            self.mutes.inhibitors.remove(&tenant_id);
        } else {
            self.mutes.inhibitors.insert(tenant_id, inhibitors);
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
        // A silenced or inhibited transition is recorded, not sent (its FIRING is sent once the
        // silence ends or the inhibiting alert resolves while it still fires: `tick_step`).
        let muted = self.mutes.of(key.0, (&rule.name, &rule.spec.labels), &inst.labels, t.at);
        if let Some(kind) = t.notify()
            && muted.is_none()
        {
            for channel in &rule.spec.channels {
                let spec = self.channels.get(key.0, channel);
                // A grouping channel hears of it with its group (`flush_groups`).
                if spec.is_some_and(|c| c.grouped()) {
                    continue;
                }
                let send_resolved = spec.map(NotificationChannelSpec::send_resolved).unwrap_or(true);
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
                tracing::info!(rule = %rule.name, from = %t.from, to = %t.to, value = ?t.value, notifications = notifications.len(), muted_by = %muted.map(|m| m.to_string()).unwrap_or_default(), "Alert transition.");
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
                if self.inhibiting.contains(key) {
                    self.refresh_inhibitors(key.0);
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

    /// Queues a notification of the instance's current state: a repeat of a firing alert, or
    /// (`repeat` false) the held-back notification of its last transition, under that
    /// transition's key.
    async fn repeat(&mut self, key: &RuleKey, instance_key: &str, channel: &str, now: i64, repeat: bool) {
        let Some(rule) = self.rules.get(key) else { return };
        let Some(inst) = rule.instances.get(instance_key) else { return };
        let transition = transition_key(key.0, inst.id, inst.seq, channel);
        let idempotency_key = if repeat { format!("{transition}-repeat-{now}") } else { transition };
        let payload = Payload::build(&self.about(rule, inst, now, None, repeat), channel, idempotency_key.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[i64]) -> BTreeSet<i64> {
        list.iter().copied().collect()
    }

    fn flushed(firing: &[i64], resolved: &[i64], at: i64) -> Flushed {
        Flushed { seq: 1, at, firing: ids(firing), resolved: ids(resolved) }
    }

    #[test]
    fn a_group_is_notified_as_alertmanager_decides() {
        let due = |last: Option<&Flushed>, firing: &[i64], resolved: &[i64], send_resolved: bool, now: i64| {
            group_update_due(last, &ids(firing), &ids(resolved), send_resolved, Some(60_000), now)
        };
        // Never notified: only when something fires.
        assert_eq!(due(None, &[1, 2], &[], true, 0), Some(false));
        assert_eq!(due(None, &[], &[3], true, 0), None, "fired and resolved before anyone was told");
        let last = flushed(&[1, 2], &[], 0);
        // A new firing alert.
        assert_eq!(due(Some(&last), &[1, 2, 3], &[], true, 1000), Some(false));
        // Nothing changed; one of them stopped (and is not news without sendResolved).
        assert_eq!(due(Some(&last), &[1, 2], &[], true, 1000), None);
        assert_eq!(due(Some(&last), &[1], &[2], false, 1000), None);
        assert_eq!(due(Some(&last), &[1], &[2], true, 1000), Some(false));
        // All resolved: told regardless of sendResolved (it ends the group).
        assert_eq!(due(Some(&last), &[], &[1, 2], false, 1000), Some(false));
        // Already told about that resolution.
        assert_eq!(due(Some(&flushed(&[1], &[2], 0)), &[1], &[2], true, 1000), None);
        // The repeat interval.
        assert_eq!(due(Some(&last), &[1, 2], &[], true, 60_000), Some(true));
        assert_eq!(group_update_due(Some(&last), &ids(&[1, 2]), &ids(&[]), true, None, i64::MAX), None);
    }

    /// An evaluator on a fresh SQLite database with one tenant, driven by hand (no task, no
    /// clock): specs are written to the store and announced as the API would.
    struct Harness {
        _dir: tempfile::TempDir,
        ev: Evaluator,
        tenant: i64,
        /// Spec write times, increasing, so every write is a new version.
        written: i64,
    }

    impl Harness {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("s.db").display());
            let store = crate::storage::open(&url, false).await.unwrap();
            store.migrate().await.unwrap();
            let tenant = store.create_tenant("default", None).await.unwrap().id;
            let ev = Evaluator::new(store, Arc::new(Notify::new()), Ownership::Always, Telemetry::new());
            let mut h = Harness { _dir: dir, ev, tenant, written: now_ms() };
            h.ev.sync_wanted = true;
            h.load().await;
            h
        }

        async fn load(&mut self) {
            while self.ev.sync_wanted
                || !self.ev.pending.is_empty()
                || self.ev.reading.is_some()
                || self.ev.loading.is_some()
            {
                self.ev.load_step(now_ms()).await;
                self.finish_load().await;
                self.finish_read().await;
            }
            self.check_index();
        }

        /// Waits for the batch being built, if any, and puts it in place.
        async fn finish_load(&mut self) {
            if self.ev.loading.is_some() {
                let built = task_done(self.ev.loading.as_mut().map(|l| &mut l.task)).await;
                self.ev.install(built, now_ms()).await;
            }
        }

        /// Loads what is pending, leaving a sync's read alone.
        async fn load_pending(&mut self) {
            while !self.ev.pending.is_empty() || self.ev.loading.is_some() {
                self.ev.load_step(now_ms()).await;
                self.finish_load().await;
            }
        }

        /// Waits for the sync's read under way, if any, and applies it.
        async fn finish_read(&mut self) {
            if self.ev.reading.as_ref().is_some_and(|r| r.task.is_some()) {
                let read = task_done(self.ev.reading.as_mut().and_then(|r| r.task.as_mut())).await;
                self.ev.read_returned(read, now_ms());
            }
            while self.ev.reading.as_ref().is_some_and(|r| r.applying.is_some()) {
                self.ev.apply_step().await;
            }
        }

        async fn channel(&mut self, name: &str, group_by: &[&str]) {
            let spec = serde_json::json!({"webhook": {"url": "http://127.0.0.1:9/hook"}, "groupBy": group_by,
                                          "groupWait": "1s", "groupInterval": "1s", "repeatInterval": "0s"});
            self.written += 1;
            self.ev
                .store
                .put_spec(SpecKind::Channel, self.tenant, name, &spec.to_string(), self.written, false)
                .await
                .unwrap();
            self.ev.handle(Event::Channels).await;
        }

        async fn rule(&mut self, name: &str, channels: &[&str]) {
            let spec = serde_json::json!({"metric": "cpu", "for": "0s", "channels": channels,
                                          "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
            self.write_rule(name, &spec).await;
            self.load().await;
        }

        /// Stores rule `name` and announces it, as the API does.
        async fn write_rule(&mut self, name: &str, spec: &serde_json::Value) {
            self.written += 1;
            self.ev
                .store
                .put_spec(SpecKind::Rule, self.tenant, name, &spec.to_string(), self.written, false)
                .await
                .unwrap();
            self.ev.handle(Event::Rule((self.tenant, name.to_string()))).await;
        }

        async fn delete_rule(&mut self, name: &str) {
            assert!(self.ev.store.delete_spec(SpecKind::Rule, self.tenant, name).await.unwrap());
            self.ev.handle(Event::RuleDeleted((self.tenant, name.to_string()))).await;
            self.load().await;
        }

        /// Writes version 2 of rule `name` (label `v=2`), announces it and begins its batch.
        async fn begin_version_2(&mut self, name: &str) {
            let spec = serde_json::json!({"metric": "cpu", "for": "0s", "channels": [], "labels": {"v": "2"},
                                          "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
            self.write_rule(name, &spec).await;
            self.ev.load_step(now_ms()).await;
            assert!(self.ev.loading.is_some(), "the batch of {name} is being built");
        }

        /// How often `name` went to FIRING.
        async fn firing(&self, name: &str) -> usize {
            let history = self.ev.store.list_transitions(self.tenant, Some(name), None, 10).await.unwrap();
            history.iter().filter(|t| t.to == AlertState::Firing).count()
        }

        /// web-1's CPU at 95: every rule on `cpu` fires.
        async fn breach(&mut self, at: i64) {
            let sample = Sample {
                metric: "cpu".into(),
                labels: Labels::from([("host".to_string(), "web-1".to_string())]).into(),
                ts: at,
                value: 95.0,
                dedupe_id: None,
            };
            self.ev.on_samples(self.tenant, &[sample], at).await;
        }

        /// The channel-to-rules index is what the loaded rules' specs say, exactly.
        fn check_index(&self) {
            let mut rebuilt = ChannelRules::default();
            for (key, rule) in &self.ev.rules {
                rebuilt.insert(key, &rule.spec);
            }
            assert_eq!(self.ev.by_channel.0, rebuilt.0, "the channel index follows the rules");
        }

        /// (channel, rule) of the firing alerts of grouping channels, found as the engine
        /// finds them, after checking that walking every rule finds the same.
        fn grouped(&mut self, now: i64) -> BTreeSet<(String, String)> {
            let mut every_rule = BTreeSet::new();
            for (key, rule) in &self.ev.rules {
                for channel in &rule.spec.channels {
                    if self.ev.channels.grouping(key.0, channel).is_none() {
                        continue;
                    }
                    for inst in rule.instances.values() {
                        if matches!(inst.instance.state, AlertState::Firing | AlertState::NoData) {
                            every_rule.insert((channel.clone(), key.1.clone()));
                        }
                    }
                }
            }
            let found: BTreeSet<(String, String)> = self
                .ev
                .group_members(now)
                .into_iter()
                .flat_map(|((_, channel, _), alerts)| {
                    alerts.into_iter().filter(|(.., firing)| *firing).map(move |(key, ..)| (channel.clone(), key.1))
                })
                .collect();
            assert_eq!(found, every_rule, "the index finds what walking every rule finds");
            found
        }

        /// The rules named by the notifications of `channel`: grouped ones by their group's
        /// `alertname`, the others by their rule.
        async fn notified(&self, channel: &str) -> (BTreeSet<String>, BTreeSet<String>) {
            let (mut grouped, mut single) = (BTreeSet::new(), BTreeSet::new());
            for n in self.ev.store.list_notifications(self.tenant, Some(channel), 100).await.unwrap() {
                let payload: serde_json::Value = serde_json::from_str(&n.payload).unwrap();
                match payload["groupLabels"]["alertname"].as_str() {
                    Some(rule) => grouped.insert(rule.to_string()),
                    None => single.insert(n.rule.unwrap()),
                };
            }
            (grouped, single)
        }
    }

    fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        list.iter().map(|(c, r)| (c.to_string(), r.to_string())).collect()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[tokio::test]
    async fn groups_follow_rules_and_channels_as_they_change() {
        let mut h = Harness::new().await;
        let t0 = now_ms();
        // `team` does not group yet: its rules' alerts are sent one by one.
        h.channel("team", &[]).await;
        h.channel("plain", &[]).await;
        h.rule("a", &["team"]).await;
        h.rule("b", &["team", "plain"]).await;
        h.rule("c", &["plain"]).await;
        h.breach(t0).await;
        assert!(h.grouped(t0).is_empty());
        assert_eq!(h.notified("team").await, (names(&[]), names(&["a", "b"])));
        assert_eq!(h.notified("plain").await, (names(&[]), names(&["b", "c"])));

        // `team` starts grouping after its rules were loaded: they are found.
        h.channel("team", &["alertname"]).await;
        assert_eq!(h.grouped(t0 + 100), pairs(&[("team", "a"), ("team", "b")]));
        // A rule added after the channel groups.
        h.rule("d", &["team"]).await;
        h.breach(t0 + 200).await;
        assert_eq!(h.grouped(t0 + 300), pairs(&[("team", "a"), ("team", "b"), ("team", "d")]));
        h.ev.flush_groups(t0 + 2000).await;
        assert_eq!(h.notified("team").await, (names(&["a", "b", "d"]), names(&["a", "b"])));

        // A rule moved from the grouping channel to a plain one, and one deleted: neither is
        // grouped any more.
        h.rule("a", &["plain"]).await;
        h.delete_rule("b").await;
        assert_eq!(h.grouped(t0 + 3000), pairs(&[("team", "d")]));
        h.rule("e", &["team", "plain"]).await;
        h.breach(t0 + 3100).await;
        assert_eq!(h.grouped(t0 + 3200), pairs(&[("team", "d"), ("team", "e")]));
        h.ev.flush_groups(t0 + 5000).await;
        assert_eq!(h.notified("team").await, (names(&["a", "b", "d", "e"]), names(&["a", "b"])));
        assert_eq!(h.notified("plain").await, (names(&[]), names(&["b", "c", "e"])));
        let groups: BTreeSet<String> = h.ev.groups.values().map(|g| g.labels["alertname"].clone()).collect();
        assert_eq!(groups, names(&["d", "e"]), "the groups of the rules gone from the channel ended");

        // `plain` starts grouping; `team` stops.
        h.channel("plain", &["alertname"]).await;
        h.channel("team", &[]).await;
        assert_eq!(h.grouped(t0 + 6000), pairs(&[("plain", "a"), ("plain", "c"), ("plain", "e")]));

        // A takeover forgets everything and loads it again.
        h.ev.forget_rules();
        h.check_index();
        h.ev.sync_wanted = true;
        h.load().await;
        assert_eq!(h.grouped(t0 + 7000), pairs(&[("plain", "a"), ("plain", "c"), ("plain", "e")]));
    }

    #[tokio::test]
    async fn a_sync_reads_what_changed_and_still_sees_every_change_made_elsewhere() {
        let mut h = Harness::new().await;
        h.rule("a", &[]).await;
        h.rule("b", &[]).await;
        assert_eq!(h.ev.full_syncs, 1, "the first sync reads every rule");
        let elsewhere = |h: &mut Harness, name: &str, metric: &str| {
            h.written += 1;
            let spec = serde_json::json!({"metric": metric, "for": "0s", "channels": [],
                                          "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
            (SpecKind::Rule, h.tenant, name.to_string(), spec.to_string(), h.written)
        };
        let metrics = |h: &Harness| -> BTreeMap<String, String> {
            h.ev.rules.iter().map(|(k, r)| (k.1.clone(), r.spec.metric.clone())).collect()
        };
        // Written by another process (`microdash apply`, an API replica): not announced, found
        // by the sync the fingerprint asks for.
        for (name, metric) in [("c", "mem"), ("a", "disk")] {
            let (kind, tenant, name, spec, at) = elsewhere(&mut h, name, metric);
            h.ev.store.put_spec(kind, tenant, &name, &spec, at, false).await.unwrap();
        }
        h.ev.sync_wanted = true;
        h.load().await;
        let expected = [("a", "disk"), ("b", "cpu"), ("c", "mem")];
        assert_eq!(metrics(&h), expected.iter().map(|(n, m)| (n.to_string(), m.to_string())).collect());
        assert_eq!(h.ev.full_syncs, 1, "changes alone are read incrementally");

        // Deleted elsewhere: the stored count falls below what the engine knows, and it reads
        // every rule to find which.
        assert!(h.ev.store.delete_spec(SpecKind::Rule, h.tenant, "b").await.unwrap());
        h.ev.sync_wanted = true;
        h.load().await;
        let expected = [("a", "disk"), ("c", "mem")];
        assert_eq!(metrics(&h), expected.iter().map(|(n, m)| (n.to_string(), m.to_string())).collect());
        assert_eq!(h.ev.full_syncs, 2);

        // A deletion and a creation elsewhere within one check (the count stays): the creation
        // is read, and the deletion is found once the count tells.
        assert!(h.ev.store.delete_spec(SpecKind::Rule, h.tenant, "c").await.unwrap());
        let (kind, tenant, name, spec, at) = elsewhere(&mut h, "d", "net");
        h.ev.store.put_spec(kind, tenant, &name, &spec, at, false).await.unwrap();
        h.ev.sync_wanted = true;
        h.load().await;
        assert!(h.ev.rules.contains_key(&(h.tenant, "d".to_string())));
        assert!(!h.ev.rules.contains_key(&(h.tenant, "c".to_string())), "the count is one short: a full read");
        // Announced deletions and writes (the API) keep the count exact: no full read.
        let full = h.ev.full_syncs;
        h.delete_rule("a").await;
        h.rule("e", &[]).await;
        h.ev.sync_wanted = true;
        h.load().await;
        assert_eq!(h.ev.full_syncs, full);
        let names: BTreeSet<String> = h.ev.rules.keys().map(|k| k.1.clone()).collect();
        assert_eq!(names, self::names(&["d", "e"]));
    }

    #[tokio::test]
    async fn rules_changed_through_the_api_while_a_sync_reads_are_neither_lost_nor_brought_back() {
        // The sync's read runs beside the engine, which meanwhile loads what the API announces.
        // Whether that read saw the database before or after those changes, or its rows are
        // applied (a row per step here) partly before and partly after them, applying it leaves
        // exactly what is stored.
        for (read_first, applied_first) in [(true, 0), (true, 1), (false, 0)] {
            let mut h = Harness::new().await;
            h.ev.sync_apply_rows = 1;
            h.rule("a", &[]).await;
            h.rule("b", &[]).await;
            let spec = |metric: &str| {
                serde_json::json!({"metric": metric, "for": "0s", "channels": [],
                                   "condition": {"aggregation": "last", "op": ">", "threshold": 90}})
                .to_string()
            };
            // Written elsewhere (not announced): only the sync finds it.
            h.written += 1;
            h.ev.store.put_spec(SpecKind::Rule, h.tenant, "c", &spec("mem"), h.written, false).await.unwrap();
            let since = h.ev.synced_since.expect("the first sync is done");
            let read = |store: DynStore| async move {
                let read_at = now_ms();
                let changes = store.list_specs_changed_since(SpecKind::Rule, since).await.unwrap();
                ReadRules { full: false, read_at, records: changes.records, total: changes.total }
            };
            let (send, receive) = tokio::sync::oneshot::channel::<ReadRules>();
            let mut send = Some(send);
            if read_first {
                send.take().unwrap().send(read(h.ev.store.clone()).await).ok();
            }
            let task = tokio::spawn(async move { Ok(receive.await.expect("the test sends the read")) });
            h.ev.reading = Some(RuleRead { task: Some(task), applying: None, touched: HashMap::new() });
            h.ev.fingerprint = Some(h.ev.store.specs_fingerprint().await.unwrap());
            if applied_first > 0 {
                let read = task_done(h.ev.reading.as_mut().and_then(|r| r.task.as_mut())).await;
                h.ev.read_returned(read, now_ms());
                for _ in 0..applied_first {
                    h.ev.apply_step().await;
                }
                assert!(h.ev.reading.as_ref().is_some_and(|r| r.applying.is_some()), "rows are left to apply");
            }
            // Meanwhile, through the API: a new rule, a deletion, an update; each loaded.
            h.written += 1;
            h.ev.store.put_spec(SpecKind::Rule, h.tenant, "d", &spec("cpu"), h.written, false).await.unwrap();
            h.ev.handle(Event::Rule((h.tenant, "d".into()))).await;
            assert!(h.ev.store.delete_spec(SpecKind::Rule, h.tenant, "a").await.unwrap());
            h.ev.handle(Event::Rule((h.tenant, "a".into()))).await;
            h.written += 1;
            h.ev.store.put_spec(SpecKind::Rule, h.tenant, "b", &spec("disk"), h.written, false).await.unwrap();
            h.ev.handle(Event::Rule((h.tenant, "b".into()))).await;
            h.load_pending().await;
            if let Some(send) = send {
                send.send(read(h.ev.store.clone()).await).ok();
            }
            let full = h.ev.full_syncs;
            h.load().await;
            let rules: BTreeMap<String, String> =
                h.ev.rules.iter().map(|(k, r)| (k.1.clone(), r.spec.metric.clone())).collect();
            let expected = [("b", "disk"), ("c", "mem"), ("d", "cpu")];
            let expected: BTreeMap<String, String> =
                expected.iter().map(|(n, m)| (n.to_string(), m.to_string())).collect();
            let case = format!("read before the changes: {read_first}, rows applied before: {applied_first}");
            assert_eq!(rules, expected, "{case}");
            let known: BTreeSet<String> = h.ev.known.iter().map(|k| k.1.clone()).collect();
            assert_eq!(known, self::names(&["b", "c", "d"]), "{case}");
            // A read from before the changes agrees with the count. One from after the API's
            // deletion lacks the deleted rule, which the engine counts as stored when the read
            // began (a deletion before or after the read looks the same): it reads every rule
            // once.
            assert_eq!(h.ev.full_syncs, full + u64::from(!read_first), "{case}");
            let full = h.ev.full_syncs;
            // And the next sync finds nothing to do.
            h.ev.sync_wanted = true;
            h.load().await;
            assert_eq!(h.ev.full_syncs, full);
            assert!(h.ev.staged.is_empty() && h.ev.pending.is_empty());
        }
    }

    #[tokio::test]
    async fn samples_that_arrive_while_a_batch_is_built_reach_its_rules_once_they_are_in_place() {
        let mut h = Harness::new().await;
        let tenant = h.tenant;
        let sample = |at: i64| Event::Samples {
            tenant_id: tenant,
            samples: vec![Sample {
                metric: "cpu".into(),
                labels: Labels::from([("host".to_string(), "web-1".to_string())]).into(),
                ts: at,
                value: 95.0,
                dedupe_id: None,
            }],
            at,
        };
        // A new rule: announced, its batch begun; the breach comes in while it is built.
        h.written += 1;
        let spec = serde_json::json!({"metric": "cpu", "for": "0s", "channels": [],
                                      "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
        h.ev.store.put_spec(SpecKind::Rule, h.tenant, "hot", &spec.to_string(), h.written, false).await.unwrap();
        h.ev.handle(Event::Rule((h.tenant, "hot".into()))).await;
        h.ev.load_step(now_ms()).await;
        assert!(h.ev.loading.is_some(), "the batch is being built");
        let t0 = now_ms();
        h.ev.handle(sample(t0)).await;
        assert_eq!(h.firing("hot").await, 0, "not in place yet: nothing evaluated it");
        h.finish_load().await;
        assert_eq!(h.firing("hot").await, 1, "the held sample fired the rule once it was in place");

        // Back to normal; then a new version of the rule. While it is built (its instances read
        // as they were), the old version fires again; the new one takes that state over, and
        // the held sample does not fire it a second time.
        let mut fine = sample(t0 + 1);
        if let Event::Samples { samples, .. } = &mut fine {
            samples[0].value = 10.0;
        }
        h.ev.handle(fine).await;
        assert!(
            h.ev.rules[&(h.tenant, "hot".to_string())]
                .instances
                .values()
                .all(|i| i.instance.state != AlertState::Firing)
        );
        h.begin_version_2("hot").await;
        h.ev.handle(sample(t0 + 2)).await;
        assert_eq!(h.firing("hot").await, 2, "the old version fired meanwhile");
        h.finish_load().await;
        assert_eq!(h.firing("hot").await, 2, "no second transition for the same breach");
        let rule = &h.ev.rules[&(h.tenant, "hot".to_string())];
        assert_eq!(rule.spec.labels.get("v").map(String::as_str), Some("2"), "the new version is in place");
        assert!(rule.instances.values().all(|i| i.instance.state == AlertState::Firing));
        assert_eq!(rule.instances.len(), 1);
    }

    /// The API answered a deletion: a sample committed after that must not fire the rule, not
    /// even while its load waits behind a batch that is being built, nor when that batch holds
    /// an earlier version of it.
    #[tokio::test]
    async fn a_rule_deleted_through_the_api_stops_firing_at_once_even_while_a_batch_is_built() {
        let mut h = Harness::new().await;
        h.rule("gone", &[]).await;
        h.rule("kept", &[]).await;
        // A new version of `gone` is being built when the deletion comes.
        h.begin_version_2("gone").await;
        assert!(h.ev.store.delete_spec(SpecKind::Rule, h.tenant, "gone").await.unwrap());
        h.ev.handle(Event::RuleDeleted((h.tenant, "gone".into()))).await;

        h.breach(now_ms()).await;
        assert_eq!(h.firing("gone").await, 0, "a deleted rule fired");
        assert_eq!(h.firing("kept").await, 1);
        h.finish_load().await;
        assert!(!h.ev.rules.contains_key(&(h.tenant, "gone".to_string())), "the batch put it back");
        h.load().await;
        assert!(!h.ev.rules.contains_key(&(h.tenant, "gone".to_string())));
        assert_eq!(h.ev.telemetry.alert_rules.get(), 1);

        // Written again after its deletion: loaded as a new rule.
        h.rule("gone", &[]).await;
        assert!(h.ev.rules.contains_key(&(h.tenant, "gone".to_string())));
    }

    #[tokio::test]
    async fn a_tick_walks_the_instances_in_steps_and_each_once_per_pass() {
        let mut h = Harness::new().await;
        for name in ["a", "b", "c", "d", "e"] {
            h.rule(name, &[]).await;
        }
        let t0 = now_ms();
        h.breach(t0).await;
        h.ev.tick_step_instances = 2;
        h.ev.tick_pass = Some(TickPass::default());
        let mut steps = Vec::new();
        while let Some(pass) = &h.ev.tick_pass {
            steps.push(pass.after.as_ref().map(|k| k.1.clone()));
            h.ev.tick_step(t0 + 100).await;
        }
        // Two instances a step, each step from where the last stopped.
        assert_eq!(steps, [None, Some("b".to_string()), Some("d".to_string())]);
        assert_eq!(h.ev.telemetry.alert_instances.get(), 5, "the pass counted every instance once");
        // A rule deleted under a pass: the next step goes on from the next rule.
        h.ev.tick_pass = Some(TickPass::default());
        h.ev.tick_step(t0 + 200).await;
        h.delete_rule("c").await;
        h.ev.tick_step(t0 + 200).await;
        h.ev.tick_step(t0 + 200).await;
        assert!(h.ev.tick_pass.is_none());
        assert_eq!(h.ev.telemetry.alert_instances.get(), 4);
    }

    #[test]
    fn an_alert_is_grouped_by_the_labels_it_has() {
        let series = Labels::from([("host".to_string(), "web-1".to_string()), ("dc".to_string(), "eu".to_string())]);
        let rule_labels = Labels::from([("team".to_string(), "a".to_string())]);
        let by = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            group_labels(&names, "high-cpu", &rule_labels, &series)
        };
        assert_eq!(
            by(&["alertname", "team", "missing"]),
            Labels::from([("alertname".to_string(), "high-cpu".to_string()), ("team".to_string(), "a".to_string())])
        );
        assert_eq!(by(&["..."]).len(), 4, "every label and alertname");
    }
}
