//! The alert state machine and the window arithmetic behind it: pure, no I/O, no clock.
//!
//! One [`Instance`] per rule × matched series. The engine feeds it an [`Observation`] on every
//! sample of its series and on every tick, and persists the [`Transition`] it returns:
//!
//! ```text
//!            holds (for > 0)          held for `for`
//!   OK ───────────────────▶ PENDING ───────────────▶ FIRING
//!    ▲  ◀──── stops holding ───┘                      │  stops holding
//!    │                                                │  (for `keepFiringFor`)
//!    └──────────────── RESOLVED ◀─────────────────────┘
//!   holds with for = 0: OK/RESOLVED ──▶ FIRING at once
//!   no sample for `noData.after`: any ──▶ NODATA; data back ──▶ FIRING/PENDING or RESOLVED
//! ```

use std::collections::{BTreeMap, HashSet, VecDeque};

use microdash_model::{Aggregation, InhibitSpec, NoDataState};

/// The states, shared with the operator through the model (the server's views name them).
pub use microdash_model::AlertState;

/// The time-related settings of a rule, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub no_data: Option<(NoDataState, i64)>,
}

/// What the engine learned since the last step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// A sample of the series arrived; the condition's aggregate is now `value`.
    Sample { value: f64, holds: bool },
    /// Time passed. `current` is the aggregate recomputed now (samples may have left the
    /// window), `None` when the window is empty.
    Tick { current: Option<(f64, bool)> },
}

/// A change of state, as it is persisted and notified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub from: AlertState,
    pub to: AlertState,
    pub at: i64,
    pub value: Option<f64>,
}

/// What a transition means for channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// Something is wrong: FIRING or NODATA.
    Problem,
    /// It is over: sent to channels with `sendResolved`.
    Resolved,
}

impl Transition {
    pub fn notify(&self) -> Option<Notify> {
        match self.to {
            AlertState::Firing | AlertState::NoData => Some(Notify::Problem),
            AlertState::Resolved => Some(Notify::Resolved),
            AlertState::Ok | AlertState::Pending => None,
        }
    }
}

/// The state of one rule instance; everything here is persisted with each transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub state: AlertState,
    /// When the current state was entered.
    pub since: i64,
    /// When the condition started holding, while it keeps holding (for `for`).
    pub pending_since: Option<i64>,
    /// When the condition stopped holding while FIRING (for `keepFiringFor`).
    pub clear_since: Option<i64>,
    /// When the current problem (FIRING or NODATA) began; the `startsAt` of notifications.
    pub active_since: Option<i64>,
    /// The aggregate at the last evaluation.
    pub value: Option<f64>,
    /// When the last sample arrived (for no-data).
    pub last_seen: Option<i64>,
}

impl Instance {
    /// A new instance, OK, whose series was just seen.
    pub fn new(now: i64) -> Self {
        Instance {
            state: AlertState::Ok,
            since: now,
            pending_since: None,
            clear_since: None,
            active_since: None,
            value: None,
            last_seen: Some(now),
        }
    }

    /// Advances the instance to `now`; returns the transition, if the state changed.
    pub fn step(&mut self, now: i64, observation: Observation, policy: &Policy) -> Option<Transition> {
        match observation {
            Observation::Sample { value, holds } => {
                self.last_seen = Some(now);
                self.value = Some(value);
                self.evaluate(now, holds, policy)
            }
            Observation::Tick { current } => {
                if let Some((state, after)) = policy.no_data
                    && now - self.last_seen.unwrap_or(self.since) >= after
                {
                    return self.no_data(now, state, policy);
                }
                match current {
                    Some((value, holds)) => {
                        self.value = Some(value);
                        self.evaluate(now, holds, policy)
                    }
                    None => self.time_passes(now, policy),
                }
            }
        }
    }

    fn evaluate(&mut self, now: i64, holds: bool, policy: &Policy) -> Option<Transition> {
        if holds {
            self.clear_since = None;
            match self.state {
                AlertState::Ok | AlertState::Resolved | AlertState::NoData if policy.for_ms <= 0 => {
                    self.go(AlertState::Firing, now)
                }
                AlertState::Ok | AlertState::Resolved | AlertState::NoData => {
                    let t = self.go(AlertState::Pending, now);
                    self.pending_since = Some(now);
                    t
                }
                AlertState::Pending => self.fire_when_held(now, policy),
                AlertState::Firing => None,
            }
        } else {
            self.pending_since = None;
            match self.state {
                AlertState::Ok => None,
                AlertState::Pending => self.go(AlertState::Ok, now),
                AlertState::Resolved => self.go(AlertState::Ok, now),
                AlertState::NoData => self.go(AlertState::Resolved, now),
                AlertState::Firing => {
                    let cleared = *self.clear_since.get_or_insert(now);
                    self.resolve_when_kept(now, cleared, policy)
                }
            }
        }
    }

    /// A tick without a value to evaluate: only the clocks of `for` (while the condition is
    /// known to hold), `keepFiringFor` and RESOLVED's one-tick stay move on.
    fn time_passes(&mut self, now: i64, policy: &Policy) -> Option<Transition> {
        match self.state {
            AlertState::Pending => self.fire_when_held(now, policy),
            AlertState::Firing => match self.clear_since {
                Some(cleared) => self.resolve_when_kept(now, cleared, policy),
                None => None,
            },
            AlertState::Resolved => self.go(AlertState::Ok, now),
            AlertState::Ok | AlertState::NoData => None,
        }
    }

    fn fire_when_held(&mut self, now: i64, policy: &Policy) -> Option<Transition> {
        let started = *self.pending_since.get_or_insert(self.since);
        (now - started >= policy.for_ms).then(|| self.go(AlertState::Firing, now)).flatten()
    }

    fn resolve_when_kept(&mut self, now: i64, cleared: i64, policy: &Policy) -> Option<Transition> {
        (now - cleared >= policy.keep_firing_for_ms).then(|| self.go(AlertState::Resolved, now)).flatten()
    }

    fn no_data(&mut self, now: i64, state: NoDataState, policy: &Policy) -> Option<Transition> {
        match state {
            NoDataState::NoData if self.state == AlertState::NoData => None,
            NoDataState::NoData => self.go(AlertState::NoData, now),
            NoDataState::Ok => self.evaluate(now, false, policy),
            NoDataState::Firing if self.state == AlertState::Firing => None,
            NoDataState::Firing => self.go(AlertState::Firing, now),
        }
    }

    fn go(&mut self, to: AlertState, now: i64) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.since = now;
        match to {
            AlertState::Firing | AlertState::NoData => {
                self.pending_since = None;
                self.clear_since = None;
                // A problem that changes shape (NODATA → FIRING) is still the same problem.
                if !matches!(from, AlertState::Firing | AlertState::NoData) {
                    self.active_since = Some(now);
                }
            }
            AlertState::Ok | AlertState::Pending => {
                self.clear_since = None;
                self.active_since = None;
            }
            AlertState::Resolved => {
                self.pending_since = None;
                self.clear_since = None;
            }
        }
        Some(Transition { from, to, at: now, value: self.value })
    }
}

/// True when a still-firing alert should be notified again.
pub fn repeat_due(state: AlertState, last_notified: Option<i64>, interval_ms: Option<i64>, now: i64) -> bool {
    matches!(state, AlertState::Firing | AlertState::NoData)
        && matches!((last_notified, interval_ms), (Some(last), Some(every)) if every > 0 && now - last >= every)
}

/// Whether a silence's `matchers` select an alert of rule `rule` on a series: every matcher
/// equals the alert's label of that name. An alert's labels are the series' labels with the
/// rule's `labels` over them, and `alertname`, the rule's name (as in Alertmanager).
pub fn silence_matches(
    matchers: &BTreeMap<String, String>,
    rule: &str,
    rule_labels: &BTreeMap<String, String>,
    series_labels: &BTreeMap<String, String>,
) -> bool {
    matchers.iter().all(|(name, value)| alert_label(name, rule, rule_labels, series_labels) == Some(value.as_str()))
}

/// An alert's label `name`: `alertname` is the rule's name, the rule's labels go over the series'.
pub fn alert_label<'a>(
    name: &str,
    rule: &'a str,
    rule_labels: &'a BTreeMap<String, String>,
    series_labels: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    if name == "alertname" {
        Some(rule)
    } else {
        rule_labels.get(name).or_else(|| series_labels.get(name)).map(String::as_str)
    }
}

/// The values of `names` among an alert's labels; an absent label counts as empty, as in
/// Alertmanager's `equal`.
pub fn alert_label_values(
    names: &[String],
    rule: &str,
    rule_labels: &BTreeMap<String, String>,
    series_labels: &BTreeMap<String, String>,
) -> Vec<String> {
    names.iter().map(|n| alert_label(n, rule, rule_labels, series_labels).unwrap_or_default().to_string()).collect()
}

/// A rule with `inhibits` and the `equal` label values of its alerts that fire now: while one of
/// them fires, the tenant's other rules' alerts that match and share those values are muted.
#[derive(Debug, Clone)]
pub struct Inhibitor {
    pub rule: String,
    pub spec: InhibitSpec,
    firing: HashSet<Vec<String>>,
}

impl Inhibitor {
    pub fn new(rule: &str, spec: &InhibitSpec) -> Self {
        Inhibitor { rule: rule.to_string(), spec: spec.clone(), firing: HashSet::new() }
    }

    /// Takes in an alert of the rule: it inhibits while it is a problem (FIRING or NODATA).
    pub fn observe(
        &mut self,
        state: AlertState,
        rule_labels: &BTreeMap<String, String>,
        series_labels: &BTreeMap<String, String>,
    ) {
        if matches!(state, AlertState::Firing | AlertState::NoData) {
            self.firing.insert(alert_label_values(&self.spec.equal, &self.rule, rule_labels, series_labels));
        }
    }

    pub fn is_firing(&self) -> bool {
        !self.firing.is_empty()
    }

    /// Whether it mutes an alert of `rule` (never its own rule's alerts).
    pub fn mutes(
        &self,
        rule: &str,
        rule_labels: &BTreeMap<String, String>,
        series_labels: &BTreeMap<String, String>,
    ) -> bool {
        rule != self.rule
            && !self.firing.is_empty()
            && silence_matches(&self.spec.matchers, rule, rule_labels, series_labels)
            && self.firing.contains(&alert_label_values(&self.spec.equal, rule, rule_labels, series_labels))
    }
}

/// The first of `inhibitors` that mutes an alert of `rule` on `series_labels`, by rule name.
pub fn inhibited_by<'a>(
    inhibitors: &'a [Inhibitor],
    rule: &str,
    rule_labels: &BTreeMap<String, String>,
    series_labels: &BTreeMap<String, String>,
) -> Option<&'a str> {
    inhibitors.iter().find(|i| i.mutes(rule, rule_labels, series_labels)).map(|i| i.rule.as_str())
}

/// The recent samples of one series, in time order, as far back as the condition's window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    points: VecDeque<(i64, f64)>,
}

/// A window never holds more points than this: a chatty series cannot exhaust memory.
pub const MAX_WINDOW_POINTS: usize = 100_000;

impl Window {
    /// Adds a sample (late ones are put in order; a repeated timestamp replaces the value).
    pub fn push(&mut self, ts: i64, value: f64) {
        match self.points.back() {
            Some(&(last, _)) if ts < last => {
                let at = self.points.partition_point(|&(t, _)| t < ts);
                if self.points.get(at).is_some_and(|&(t, _)| t == ts) {
                    self.points[at].1 = value;
                } else {
                    self.points.insert(at, (ts, value));
                }
            }
            Some(&(last, _)) if ts == last => {
                if let Some(back) = self.points.back_mut() {
                    back.1 = value;
                }
            }
            _ => self.points.push_back((ts, value)),
        }
        if self.points.len() > MAX_WINDOW_POINTS {
            self.points.pop_front();
        }
    }

    /// Forgets what is older than `now - window_ms`; for `last` (window 0) keeps the newest.
    pub fn prune(&mut self, now: i64, window_ms: i64) {
        if window_ms <= 0 {
            while self.points.len() > 1 {
                self.points.pop_front();
            }
            return;
        }
        let oldest = now - window_ms;
        while self.points.front().is_some_and(|&(t, _)| t <= oldest) {
            self.points.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The aggregate of the points in the window; `None` when there is nothing to aggregate
    /// (`count` of an empty window is 0, `rate` needs two points).
    pub fn aggregate(&self, aggregation: Aggregation) -> Option<f64> {
        let values = self.points.iter().map(|&(_, v)| v);
        match aggregation {
            Aggregation::Count => Some(self.points.len() as f64),
            _ if self.points.is_empty() => None,
            Aggregation::Last => self.points.back().map(|&(_, v)| v),
            Aggregation::Sum => Some(values.sum()),
            Aggregation::Avg => Some(values.sum::<f64>() / self.points.len() as f64),
            Aggregation::Min => values.reduce(f64::min),
            Aggregation::Max => values.reduce(f64::max),
            Aggregation::Rate => {
                let (first_ts, _) = *self.points.front()?;
                let (last_ts, _) = *self.points.back()?;
                if last_ts <= first_ts {
                    return None;
                }
                // A drop means the counter restarted from zero: count from the new value.
                let mut increase = 0.0;
                let mut previous: Option<f64> = None;
                for value in values {
                    if let Some(p) = previous {
                        increase += if value >= p { value - p } else { value };
                    }
                    previous = Some(value);
                }
                Some(increase * 1000.0 / (last_ts - first_ts) as f64)
            }
        }
    }
}

#[cfg(test)]
mod tests;
