//! The state machine, transition by transition, as named scenarios.

use super::AlertState::{Firing, NoData, Ok, Pending, Resolved};
use super::*;

const S: i64 = 1000;

fn policy() -> Policy {
    Policy { for_ms: 0, keep_firing_for_ms: 0, no_data: None }
}

fn with_for(seconds: i64) -> Policy {
    Policy { for_ms: seconds * S, ..policy() }
}

fn breach(value: f64) -> Observation {
    Observation::Sample { value, holds: true }
}

fn fine(value: f64) -> Observation {
    Observation::Sample { value, holds: false }
}

fn tick() -> Observation {
    Observation::Tick { current: None }
}

/// An instance being driven through time, recording every transition.
struct Scenario {
    instance: Instance,
    policy: Policy,
    now: i64,
    log: Vec<(AlertState, AlertState, i64)>,
}

impl Scenario {
    fn new(policy: Policy) -> Self {
        Scenario { instance: Instance::new(0), policy, now: 0, log: Vec::new() }
    }
    fn in_state(mut self, state: AlertState) -> Self {
        self.instance.state = state;
        if matches!(state, Firing | NoData) {
            self.instance.active_since = Some(0);
        }
        if state == Pending {
            self.instance.pending_since = Some(0);
        }
        self
    }
    /// Moves the clock to `seconds` and observes.
    fn at(&mut self, seconds: i64, observation: Observation) -> Option<AlertState> {
        self.now = seconds * S;
        let t = self.instance.step(self.now, observation, &self.policy);
        if let Some(t) = t {
            assert_eq!(t.at, self.now);
            assert_ne!(t.from, t.to);
            self.log.push((t.from, t.to, seconds));
        }
        t.map(|t| t.to)
    }
    fn state(&self) -> AlertState {
        self.instance.state
    }
}

#[test]
fn a_breach_with_for_zero_fires_at_once() {
    let mut s = Scenario::new(policy());
    assert_eq!(s.at(1, breach(95.0)), Some(Firing));
    assert_eq!(s.instance.active_since, Some(S));
    assert_eq!(s.instance.value, Some(95.0));
    assert_eq!(s.at(2, breach(96.0)), None, "still firing: no new transition");
}

#[test]
fn with_for_a_breach_pends_then_fires_once_it_held_long_enough() {
    let mut s = Scenario::new(with_for(60));
    assert_eq!(s.at(0, breach(95.0)), Some(Pending));
    assert_eq!(s.at(30, breach(95.0)), None);
    assert_eq!(s.at(59, tick()), None, "a tick before `for` elapsed changes nothing");
    assert_eq!(s.at(60, tick()), Some(Firing), "the ticker fires it without a new sample");
    assert_eq!(s.log, [(Ok, Pending, 0), (Pending, Firing, 60)]);
}

#[test]
fn a_sample_can_also_complete_for() {
    let mut s = Scenario::new(with_for(10));
    s.at(0, breach(1.0));
    assert_eq!(s.at(10, breach(1.0)), Some(Firing));
}

#[test]
fn pending_returns_to_ok_when_the_condition_stops_holding() {
    let mut s = Scenario::new(with_for(60));
    s.at(0, breach(95.0));
    assert_eq!(s.at(10, fine(50.0)), Some(Ok));
    assert_eq!(s.instance.pending_since, None);
}

#[test]
fn firing_resolves_then_returns_to_ok() {
    let mut s = Scenario::new(policy());
    s.at(0, breach(95.0));
    assert_eq!(s.at(5, fine(50.0)), Some(Resolved));
    assert_eq!(s.instance.active_since, Some(0), "RESOLVED still knows when the problem began");
    assert_eq!(s.at(6, tick()), Some(Ok), "RESOLVED lasts one tick");
    assert_eq!(s.instance.active_since, None);
    assert_eq!(s.log, [(Ok, Firing, 0), (Firing, Resolved, 5), (Resolved, Ok, 6)]);
}

#[test]
fn resolved_goes_to_ok_on_a_fine_sample_too() {
    let mut s = Scenario::new(policy()).in_state(Resolved);
    assert_eq!(s.at(1, fine(1.0)), Some(Ok));
}

#[test]
fn keep_firing_for_holds_the_alert_after_the_condition_stops() {
    let mut s = Scenario::new(Policy { keep_firing_for_ms: 30 * S, ..policy() });
    s.at(0, breach(95.0));
    assert_eq!(s.at(10, fine(50.0)), None, "keeps firing");
    assert_eq!(s.instance.clear_since, Some(10 * S));
    assert_eq!(s.at(39, tick()), None);
    assert_eq!(s.at(40, tick()), Some(Resolved));
}

#[test]
fn keep_firing_for_also_elapses_through_fine_samples() {
    let mut s = Scenario::new(Policy { keep_firing_for_ms: 30 * S, ..policy() });
    s.at(0, breach(95.0));
    s.at(10, fine(50.0));
    assert_eq!(s.at(20, fine(50.0)), None, "the clock started at the first fine sample");
    assert_eq!(s.at(40, fine(50.0)), Some(Resolved));
}

#[test]
fn flapping_within_keep_firing_for_never_resolves() {
    let mut s = Scenario::new(Policy { keep_firing_for_ms: 30 * S, ..policy() });
    s.at(0, breach(95.0));
    for second in (10..300).step_by(20) {
        assert_eq!(s.at(second, fine(50.0)), None);
        assert_eq!(s.at(second + 10, breach(95.0)), None);
        assert_eq!(s.instance.clear_since, None, "a breach restarts the keepFiringFor clock");
    }
    assert_eq!(s.log, [(Ok, Firing, 0)], "one notification for the whole flapping episode");
}

#[test]
fn flapping_around_the_threshold_restarts_the_for_clock() {
    let mut s = Scenario::new(with_for(60));
    s.at(0, breach(95.0));
    s.at(50, fine(50.0));
    s.at(55, breach(95.0));
    assert_eq!(s.at(100, tick()), None, "only 45 s since the breach came back");
    assert_eq!(s.at(115, tick()), Some(Firing));
    assert_eq!(s.log, [(Ok, Pending, 0), (Pending, Ok, 50), (Ok, Pending, 55), (Pending, Firing, 115)]);
}

#[test]
fn without_keep_firing_for_flapping_notifies_each_time() {
    let mut s = Scenario::new(policy());
    s.at(0, breach(95.0));
    s.at(1, fine(50.0));
    s.at(2, breach(95.0));
    assert_eq!(s.log, [(Ok, Firing, 0), (Firing, Resolved, 1), (Resolved, Firing, 2)]);
}

#[test]
fn resolved_with_for_pends_again() {
    let mut s = Scenario::new(with_for(10)).in_state(Resolved);
    assert_eq!(s.at(1, breach(95.0)), Some(Pending));
}

fn no_data_after(seconds: i64, state: NoDataState) -> Policy {
    Policy { no_data: Some((state, seconds * S)), ..with_for(120) }
}

#[test]
fn every_state_goes_to_nodata_when_the_series_goes_silent() {
    for start in [Ok, Pending, Firing, Resolved] {
        let mut s = Scenario::new(no_data_after(60, NoDataState::NoData)).in_state(start);
        assert_ne!(s.at(59, tick()), Some(NoData), "{start}: not yet (RESOLVED moves on to OK)");
        assert_eq!(s.at(60, tick()), Some(NoData), "{start}");
        assert_eq!(s.at(61, tick()), None, "{start}: NODATA is entered once");
    }
}

#[test]
fn nodata_keeps_the_start_of_a_firing_problem() {
    let mut s = Scenario::new(no_data_after(60, NoDataState::NoData)).in_state(Firing);
    s.at(60, tick());
    assert_eq!(s.instance.active_since, Some(0));
    let mut s = Scenario::new(no_data_after(60, NoDataState::NoData));
    s.at(60, tick());
    assert_eq!(s.instance.active_since, Some(60 * S), "a new problem starts now");
}

#[test]
fn a_sample_after_nodata_re_evaluates() {
    // Back and breaching, with `for`: PENDING.
    let mut s = Scenario::new(no_data_after(60, NoDataState::NoData)).in_state(NoData);
    assert_eq!(s.at(100, breach(95.0)), Some(Pending));
    // Back and breaching, `for` 0: FIRING.
    let mut s = Scenario::new(Policy { for_ms: 0, ..no_data_after(60, NoDataState::NoData) }).in_state(NoData);
    assert_eq!(s.at(100, breach(95.0)), Some(Firing));
    // Back and fine: the no-data problem resolves, then OK.
    let mut s = Scenario::new(no_data_after(60, NoDataState::NoData)).in_state(NoData);
    assert_eq!(s.at(100, fine(1.0)), Some(Resolved));
    assert_eq!(s.at(101, tick()), Some(Ok));
}

#[test]
fn nodata_as_ok_resolves_a_firing_alert() {
    let mut s = Scenario::new(no_data_after(60, NoDataState::Ok)).in_state(Firing);
    assert_eq!(s.at(60, tick()), Some(Resolved));
    assert_eq!(s.at(61, tick()), Some(Ok));
    assert_eq!(s.at(62, tick()), None);
    let mut s = Scenario::new(no_data_after(60, NoDataState::Ok)).in_state(Pending);
    assert_eq!(s.at(60, tick()), Some(Ok));
}

#[test]
fn nodata_as_firing_fires_without_waiting_for_for() {
    let mut s = Scenario::new(no_data_after(60, NoDataState::Firing));
    assert_eq!(s.at(60, tick()), Some(Firing));
    assert_eq!(s.at(61, tick()), None);
    assert_eq!(s.at(62, fine(1.0)), Some(Resolved), "data back and fine");
}

#[test]
fn without_nodata_a_silent_series_keeps_its_state() {
    let mut s = Scenario::new(policy()).in_state(Firing);
    assert_eq!(s.at(100_000, tick()), None);
    assert_eq!(s.state(), Firing);
}

#[test]
fn ticks_reevaluate_windows_that_changed() {
    // An average that drops below the threshold as old samples leave the window.
    let mut s = Scenario::new(policy());
    s.at(0, breach(95.0));
    assert_eq!(s.at(61, Observation::Tick { current: Some((40.0, false)) }), Some(Resolved));
    assert_eq!(s.instance.value, Some(40.0));
}

/// Every state × every kind of observation, with `for` 0 and 10 s: the complete table.
#[test]
fn the_complete_transition_table() {
    use Expect::*;
    #[derive(Debug, Clone, Copy)]
    enum Expect {
        Stay,
        To(AlertState),
    }
    let observations: [(&str, Observation); 4] = [
        ("breach", breach(95.0)),
        ("fine", fine(1.0)),
        ("tick", tick()),
        ("silent", tick()), // with no-data due
    ];
    // Rows: state; columns: breach, fine, tick, silent — for `for` = 0, then `for` = 10 s.
    let table_for_zero = [
        (Ok, [To(Firing), Stay, Stay, To(NoData)]),
        (Pending, [To(Firing), To(Ok), To(Firing), To(NoData)]),
        (Firing, [Stay, To(Resolved), Stay, To(NoData)]),
        (Resolved, [To(Firing), To(Ok), To(Ok), To(NoData)]),
        (NoData, [To(Firing), To(Resolved), Stay, Stay]),
    ];
    let table_for_ten = [
        (Ok, [To(Pending), Stay, Stay, To(NoData)]),
        (Pending, [Stay, To(Ok), Stay, To(NoData)]),
        (Firing, [Stay, To(Resolved), Stay, To(NoData)]),
        (Resolved, [To(Pending), To(Ok), To(Ok), To(NoData)]),
        (NoData, [To(Pending), To(Resolved), Stay, Stay]),
    ];
    for (for_ms, table) in [(0, table_for_zero), (10 * S, table_for_ten)] {
        for (start, row) in table {
            for ((name, observation), expect) in observations.iter().zip(row) {
                let no_data = Some((NoDataState::NoData, if *name == "silent" { 5 * S } else { 3600 * S }));
                let policy = Policy { for_ms, keep_firing_for_ms: 0, no_data };
                let mut instance = Instance::new(0);
                instance.state = start;
                instance.pending_since = (start == Pending).then_some(4 * S);
                let got = instance.step(5 * S, *observation, &policy).map(|t| t.to);
                let want = match expect {
                    Stay => None,
                    To(state) => Some(state),
                };
                assert_eq!(got, want, "for={for_ms} {start} + {name}");
            }
        }
    }
}

#[test]
fn which_transitions_notify() {
    let t = |from, to| Transition { from, to, at: 0, value: None };
    assert_eq!(t(Ok, Firing).notify(), Some(Notify::Problem));
    assert_eq!(t(Ok, NoData).notify(), Some(Notify::Problem));
    assert_eq!(t(Firing, Resolved).notify(), Some(Notify::Resolved));
    assert_eq!(t(Ok, Pending).notify(), None);
    assert_eq!(t(Pending, Ok).notify(), None);
    assert_eq!(t(Resolved, Ok).notify(), None);
}

#[test]
fn repeats_are_due_only_while_firing_and_after_the_interval() {
    assert!(repeat_due(Firing, Some(0), Some(60 * S), 60 * S));
    assert!(!repeat_due(Firing, Some(0), Some(60 * S), 59 * S));
    assert!(!repeat_due(Firing, Some(0), None, 3600 * S), "repeatInterval 0s: never");
    assert!(!repeat_due(Firing, None, Some(S), 3600 * S), "never notified: nothing to repeat");
    assert!(!repeat_due(Resolved, Some(0), Some(S), 3600 * S));
    assert!(repeat_due(NoData, Some(0), Some(S), S));
}

#[test]
fn states_round_trip_through_their_names() {
    for state in [Ok, Pending, Firing, Resolved, NoData] {
        assert_eq!(AlertState::parse(state.as_str()), Some(state));
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
    assert!(Firing.severity_rank() > NoData.severity_rank());
}

fn window(points: &[(i64, f64)]) -> Window {
    let mut w = Window::default();
    for &(ts, v) in points {
        w.push(ts, v);
    }
    w
}

#[test]
fn window_aggregations() {
    let w = window(&[(1000, 10.0), (2000, 30.0), (3000, 20.0)]);
    assert_eq!(w.aggregate(Aggregation::Last), Some(20.0));
    assert_eq!(w.aggregate(Aggregation::Avg), Some(20.0));
    assert_eq!(w.aggregate(Aggregation::Min), Some(10.0));
    assert_eq!(w.aggregate(Aggregation::Max), Some(30.0));
    assert_eq!(w.aggregate(Aggregation::Sum), Some(60.0));
    assert_eq!(w.aggregate(Aggregation::Count), Some(3.0));
    let empty = Window::default();
    assert_eq!(empty.aggregate(Aggregation::Avg), None);
    assert_eq!(empty.aggregate(Aggregation::Count), Some(0.0), "no samples is a count");
}

#[test]
fn rate_is_per_second_and_survives_counter_resets() {
    let w = window(&[(0, 100.0), (10_000, 200.0)]);
    assert_eq!(w.aggregate(Aggregation::Rate), Some(10.0));
    // 100 → 200 (+100), reset to 50 (+50), → 150 (+100): 250 over 20 s.
    let w = window(&[(0, 100.0), (10_000, 200.0), (15_000, 50.0), (20_000, 150.0)]);
    assert_eq!(w.aggregate(Aggregation::Rate), Some(12.5));
    assert_eq!(window(&[(0, 1.0)]).aggregate(Aggregation::Rate), None, "one point has no rate");
}

#[test]
fn windows_prune_by_time_and_keep_late_samples_in_order() {
    let mut w = window(&[(1000, 1.0), (3000, 3.0)]);
    w.push(2000, 2.0);
    w.push(3000, 4.0);
    assert_eq!(w.aggregate(Aggregation::Last), Some(4.0), "same ts: last write wins");
    assert_eq!(w.len(), 3);
    w.prune(4000, 2500);
    assert_eq!(w.aggregate(Aggregation::Min), Some(2.0), "1000 left the window");
    w.prune(4000, 0);
    assert_eq!(w.len(), 1, "`last` keeps only the newest");
    w.prune(100_000, 1000);
    assert!(w.is_empty());
}

#[test]
fn a_silence_matches_on_alertname_and_the_alerts_labels_with_the_rules_labels_over_the_series() {
    let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let series = labels(&[("host", "web-1"), ("team", "series-team")]);
    let rule_labels = labels(&[("team", "a")]);
    let matches = |m: &[(&str, &str)]| silence_matches(&labels(m), "high-cpu", &rule_labels, &series);
    assert!(matches(&[("alertname", "high-cpu"), ("host", "web-1")]));
    assert!(matches(&[("host", "web-1")]), "without alertname: every rule of the host");
    assert!(matches(&[("team", "a")]), "the rule's label wins over the series'");
    assert!(!matches(&[("team", "series-team")]));
    assert!(!matches(&[("alertname", "high-mem"), ("host", "web-1")]));
    assert!(!matches(&[("host", "web-2")]));
    assert!(!matches(&[("zone", "")]), "a label the alert lacks is not an empty one");
}

#[test]
fn an_inhibitor_mutes_other_rules_alerts_that_share_its_equal_labels_while_it_fires() {
    use std::collections::BTreeMap;
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let spec =
        microdash_model::InhibitSpec { matchers: labels(&[("severity", "warning")]), equal: vec!["host".into()] };
    let mut down = Inhibitor::new("host-down", &spec);
    let warning = labels(&[("severity", "warning")]);
    let web1 = labels(&[("host", "web-1")]);
    let web2 = labels(&[("host", "web-2")]);
    // Not firing: mutes nothing.
    assert!(!down.mutes("high-cpu", &warning, &web1));
    down.observe(Pending, &BTreeMap::new(), &web1);
    assert!(!down.is_firing(), "only FIRING and NODATA inhibit");
    down.observe(Firing, &BTreeMap::new(), &web1);
    assert!(down.is_firing());
    assert!(down.mutes("high-cpu", &warning, &web1));
    // Another host, another severity, or its own rule: not muted.
    assert!(!down.mutes("high-cpu", &warning, &web2));
    assert!(!down.mutes("high-cpu", &labels(&[("severity", "critical")]), &web1));
    assert!(!down.mutes("host-down", &warning, &web1));
    let all = [down];
    assert_eq!(inhibited_by(&all, "disk-full", &warning, &web1), Some("host-down"));
    assert_eq!(inhibited_by(&all, "disk-full", &warning, &web2), None);
    // An absent `equal` label counts as empty on both sides.
    let mut any = Inhibitor::new(
        "maintenance",
        &microdash_model::InhibitSpec { matchers: BTreeMap::new(), equal: vec!["dc".into()] },
    );
    any.observe(NoData, &BTreeMap::new(), &web1);
    assert!(any.mutes("high-cpu", &warning, &web2));
    assert!(!any.mutes("high-cpu", &warning, &labels(&[("dc", "eu")])));
}
