//! The notification document: what a webhook receives as JSON and an email renders, written
//! into the outbox when the transition happens, so a later delivery sends what was true then.

use std::collections::BTreeMap;

use microdash_model::AlertRuleSpec;
use microdash_model::template::{self, Context};
use serde::{Deserialize, Serialize};

use crate::domain::Labels;
use crate::domain::alerting::AlertState;

/// Version of the payload shape; bumped on an incompatible change.
pub const PAYLOAD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: u32,
    /// The same on every attempt of this notification: receivers drop repeats by it.
    pub idempotency_key: String,
    pub tenant: String,
    pub rule: String,
    pub channel: String,
    /// FIRING, NODATA, RESOLVED, or TEST for `POST /api/v1/channels/{name}/test`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<String>,
    pub severity: String,
    pub metric: String,
    /// The condition as text, e.g. `avg(1m) > 90`.
    pub condition: String,
    pub value: Option<f64>,
    /// The series' labels with the rule's labels over them.
    pub labels: BTreeMap<String, String>,
    /// The rule's annotations, rendered.
    pub annotations: BTreeMap<String, String>,
    /// When the problem began (RFC 3339), for FIRING, NODATA and RESOLVED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When the problem ended, for RESOLVED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// When the transition happened (RFC 3339) and the same in Unix milliseconds.
    pub at: String,
    pub at_ms: i64,
    /// True for a reminder sent after `repeatInterval` while still firing.
    pub repeat: bool,
    /// A grouped channel's notification (`groupBy`): the group's label values. The fields above
    /// then describe the group: `state` FIRING while any alert fires, `rule`, `severity`,
    /// `metric`, `condition` and `annotations` when every alert shares them (empty otherwise),
    /// `labels` the labels every alert shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_labels: Option<BTreeMap<String, String>>,
    /// A grouped notification's alerts, each once: the firing ones, then the resolved ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<GroupedAlert>,
}

/// One alert of a grouped notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupedAlert {
    pub rule: String,
    /// FIRING, NODATA or RESOLVED.
    pub state: String,
    pub severity: String,
    pub metric: String,
    pub condition: String,
    pub value: Option<f64>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn condition_text(spec: &AlertRuleSpec) -> String {
    let c = &spec.condition;
    let agg = c.aggregation.as_str();
    let over = c.window.as_deref().map(|w| format!("{agg}({w})")).unwrap_or_else(|| agg.to_string());
    format!("{over} {} {}", c.op.as_str(), template::format_value(c.threshold))
}

/// What a notification is about.
pub struct About<'a> {
    pub tenant: &'a str,
    pub rule: &'a str,
    pub spec: &'a AlertRuleSpec,
    pub series_labels: &'a Labels,
    pub state: AlertState,
    pub previous: Option<AlertState>,
    pub value: Option<f64>,
    pub active_since: Option<i64>,
    pub at: i64,
    pub repeat: bool,
}

impl Payload {
    pub fn build(about: &About<'_>, channel: &str, idempotency_key: String) -> Payload {
        let mut labels = about.series_labels.clone();
        labels.extend(about.spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let severity = about.spec.severity().to_string();
        let ctx = Context {
            value: about.value,
            labels: &labels,
            rule: about.rule,
            severity: &severity,
            state: about.state.as_str(),
        };
        let annotations = about.spec.annotations.iter().map(|(k, t)| (k.clone(), template::render(t, &ctx))).collect();
        Payload {
            version: PAYLOAD_VERSION,
            idempotency_key,
            tenant: about.tenant.to_string(),
            rule: about.rule.to_string(),
            channel: channel.to_string(),
            state: about.state.as_str().to_string(),
            previous_state: about.previous.map(|s| s.as_str().to_string()),
            severity,
            metric: about.spec.metric.clone(),
            condition: condition_text(about.spec),
            value: about.value,
            labels,
            annotations,
            starts_at: about.active_since.map(rfc3339),
            ends_at: (about.state == AlertState::Resolved).then(|| rfc3339(about.at)),
            at: rfc3339(about.at),
            at_ms: about.at,
            repeat: about.repeat,
            group_labels: None,
            alerts: Vec::new(),
        }
    }

    /// A grouped channel's notification listing `alerts` (each built as for a single alert).
    pub fn group(
        tenant: &str,
        channel: &str,
        group_labels: BTreeMap<String, String>,
        alerts: Vec<Payload>,
        idempotency_key: String,
        at: i64,
        repeat: bool,
    ) -> Payload {
        fn shared<T: Clone + PartialEq>(alerts: &[Payload], field: impl Fn(&Payload) -> &T) -> Option<T> {
            let first = field(alerts.first()?);
            alerts.iter().all(|a| field(a) == first).then(|| first.clone())
        }
        let firing = alerts.iter().any(|a| a.state != "RESOLVED");
        let mut labels = alerts.first().map(|a| a.labels.clone()).unwrap_or_default();
        labels.retain(|k, v| alerts.iter().all(|a| a.labels.get(k) == Some(v)));
        let mut annotations = alerts.first().map(|a| a.annotations.clone()).unwrap_or_default();
        annotations.retain(|k, v| alerts.iter().all(|a| a.annotations.get(k) == Some(v)));
        let starts_at = alerts.iter().filter_map(|a| a.starts_at.clone()).min();
        Payload {
            version: PAYLOAD_VERSION,
            idempotency_key,
            tenant: tenant.to_string(),
            rule: shared(&alerts, |a| &a.rule).unwrap_or_default(),
            channel: channel.to_string(),
            state: if firing { "FIRING" } else { "RESOLVED" }.to_string(),
            previous_state: None,
            severity: shared(&alerts, |a| &a.severity).unwrap_or_default(),
            metric: shared(&alerts, |a| &a.metric).unwrap_or_default(),
            condition: shared(&alerts, |a| &a.condition).unwrap_or_default(),
            value: None,
            labels,
            annotations,
            starts_at,
            ends_at: (!firing).then(|| rfc3339(at)),
            at: rfc3339(at),
            at_ms: at,
            repeat,
            group_labels: Some(group_labels),
            alerts: alerts
                .into_iter()
                .map(|a| GroupedAlert {
                    rule: a.rule,
                    state: a.state,
                    severity: a.severity,
                    metric: a.metric,
                    condition: a.condition,
                    value: a.value,
                    labels: a.labels,
                    annotations: a.annotations,
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                })
                .collect(),
        }
    }

    /// The payload of a test notification for a channel.
    pub fn test(tenant: &str, channel: &str, idempotency_key: String, now: i64) -> Payload {
        Payload {
            version: PAYLOAD_VERSION,
            idempotency_key,
            tenant: tenant.to_string(),
            rule: "test".into(),
            channel: channel.to_string(),
            state: "TEST".into(),
            previous_state: None,
            severity: "info".into(),
            metric: "microdash.test".into(),
            condition: "a test notification".into(),
            value: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::from([(
                "summary".to_string(),
                format!("Test notification from microdash for channel {channel:?}."),
            )]),
            starts_at: None,
            ends_at: None,
            at: rfc3339(now),
            at_ms: now,
            repeat: false,
            group_labels: None,
            alerts: Vec::new(),
        }
    }

    /// One line for subjects and logs: `[FIRING] high-cpu (critical) host=web-1`.
    /// A group's: `[FIRING:3] high-cpu (critical) team=a`, its shared labels.
    pub fn headline(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let repeat = if self.repeat { " (repeat)" } else { "" };
        let state = match self.group_labels {
            Some(_) => {
                let firing = self.alerts.iter().filter(|a| a.state != "RESOLVED").count();
                format!("{}:{}", self.state, if firing > 0 { firing } else { self.alerts.len() })
            }
            None => self.state.clone(),
        };
        let rule = if self.rule.is_empty() { format!("{} alerts", self.alerts.len()) } else { self.rule.clone() };
        let severity = if self.severity.is_empty() { String::new() } else { format!(" ({})", self.severity) };
        format!("[{state}] {rule}{severity}{repeat} {}", labels.join(", ")).trim_end().to_string()
    }
}

/// The idempotency key of the notification of an instance's `seq`-th transition to `channel`.
pub fn transition_key(tenant_id: i64, instance_id: i64, seq: i64, channel: &str) -> String {
    opaque_key(&format!("{tenant_id}\0{instance_id}\0{seq}\0{channel}"))
}

/// `md-` and 32 hex digits of the SHA-256 of `identity`: the same for every attempt of one
/// notification (and for a replayed transition), and telling a receiver nothing about ids
/// (tenant and instance ids are the server's own business).
pub fn opaque_key(identity: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(identity.as_bytes());
    format!("md-{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AlertRuleSpec {
        serde_json::from_value(serde_json::json!({
            "metric": "cpu.usage", "condition": {"aggregation": "avg", "window": "1m", "op": ">", "threshold": 90},
            "severity": "critical", "labels": {"team": "a"},
            "annotations": {"summary": "CPU {{ $value }}% on {{ $labels.host }} ({{ $labels.team }})"}
        }))
        .unwrap()
    }

    #[test]
    fn a_firing_payload_carries_rendered_annotations_and_merged_labels() {
        let spec = spec();
        let labels = Labels::from([("host".to_string(), "web-1".to_string())]);
        let about = About {
            tenant: "default",
            rule: "high-cpu",
            spec: &spec,
            series_labels: &labels,
            state: AlertState::Firing,
            previous: Some(AlertState::Pending),
            value: Some(93.5),
            active_since: Some(1_764_104_400_000),
            at: 1_764_104_400_000,
            repeat: false,
        };
        let p = Payload::build(&about, "ops", transition_key(1, 7, 2, "ops"));
        assert_eq!(p.annotations["summary"], "CPU 93.5% on web-1 (a)");
        assert_eq!(p.labels.len(), 2);
        assert_eq!(p.condition, "avg(1m) > 90");
        // Opaque and stable: the same notification always has the same key, and no id shows.
        assert_eq!(p.idempotency_key, transition_key(1, 7, 2, "ops"));
        assert!(p.idempotency_key.starts_with("md-") && p.idempotency_key.len() == 35, "{}", p.idempotency_key);
        assert!(!p.idempotency_key.contains("-1-") && !p.idempotency_key.contains("ops"));
        assert_ne!(transition_key(1, 7, 2, "ops"), transition_key(2, 7, 2, "ops"));
        assert_eq!(p.starts_at.as_deref(), Some("2025-11-25T21:00:00.000Z"));
        assert_eq!(p.ends_at, None);
        assert_eq!(p.headline(), "[FIRING] high-cpu (critical) host=web-1, team=a");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["previousState"], "PENDING");
        assert_eq!(json["atMs"], 1_764_104_400_000i64);
    }

    #[test]
    fn a_group_payload_lists_its_alerts_and_what_they_share() {
        let spec = spec();
        let alert = |host: &str, state: AlertState, at: i64| {
            let labels = Labels::from([("host".to_string(), host.to_string())]);
            let about = About {
                tenant: "default",
                rule: "high-cpu",
                spec: &spec,
                series_labels: &labels,
                state,
                previous: None,
                value: Some(95.0),
                active_since: Some(at),
                at,
                repeat: false,
            };
            Payload::build(&about, "team", String::new())
        };
        let group_labels = BTreeMap::from([("alertname".to_string(), "high-cpu".to_string())]);
        let alerts = vec![
            alert("web-1", AlertState::Firing, 2_000),
            alert("web-2", AlertState::Firing, 1_000),
            alert("web-3", AlertState::Resolved, 3_000),
        ];
        let p = Payload::group("default", "team", group_labels.clone(), alerts, "md-k".into(), 5_000, false);
        assert_eq!(p.state, "FIRING");
        assert_eq!((p.rule.as_str(), p.severity.as_str()), ("high-cpu", "critical"));
        assert_eq!(p.labels, BTreeMap::from([("team".to_string(), "a".to_string())]), "only what all share");
        assert!(p.annotations.is_empty(), "the summaries differ per host");
        assert_eq!(p.starts_at.as_deref(), Some(rfc3339(1_000).as_str()), "the earliest");
        assert_eq!(p.alerts.len(), 3);
        assert_eq!(p.alerts[2].state, "RESOLVED");
        assert_eq!(p.headline(), "[FIRING:2] high-cpu (critical) team=a");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["groupLabels"]["alertname"], "high-cpu");
        assert_eq!(json["alerts"][0]["labels"]["host"], "web-1");
        let resolved = Payload::group(
            "default",
            "team",
            group_labels,
            vec![alert("web-3", AlertState::Resolved, 3_000)],
            "md-k2".into(),
            6_000,
            false,
        );
        assert_eq!((resolved.state.as_str(), resolved.ends_at.is_some()), ("RESOLVED", true));
        assert_eq!(resolved.headline(), "[RESOLVED:1] high-cpu (critical) host=web-3, team=a");
        // A single alert's payload has neither.
        let single = serde_json::to_value(alert("web-1", AlertState::Firing, 1)).unwrap();
        assert!(single.get("alerts").is_none() && single.get("groupLabels").is_none());
    }
}
