//! metav1 `Condition`s: one per `type`, `lastTransitionTime` kept while the status stays.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition to set: `type`, true/false, a CamelCase reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub type_: &'a str,
    pub ok: bool,
    pub reason: &'a str,
    pub message: String,
}

impl<'a> Wanted<'a> {
    pub fn yes(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Wanted { type_, ok: true, reason, message: message.into() }
    }
    pub fn no(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Wanted { type_, ok: false, reason, message: message.into() }
    }
}

/// The conditions after setting `wanted` over `previous`: other types are kept, and a
/// condition whose status did not change keeps its `lastTransitionTime`.
pub fn merge(previous: &[Condition], wanted: &[Wanted<'_>], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let mut out: Vec<Condition> =
        previous.iter().filter(|c| !wanted.iter().any(|w| w.type_ == c.type_)).cloned().collect();
    for w in wanted {
        let status = if w.ok { "True" } else { "False" }.to_string();
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == w.type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(Condition {
            type_: w.type_.to_string(),
            status,
            reason: w.reason.to_string(),
            message: w.message.chars().take(32_000).collect(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// True when the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// True when the condition of `type_` is already `False` with this message (no new Event needed).
pub fn is_false_with(conditions: &[Condition], type_: &str, message: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "False" && c.message == message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let first = merge(&[], &[Wanted::yes("Accepted", "Valid", "ok")], Some(1), t0);
        let same = merge(&first, &[Wanted::yes("Accepted", "Valid", "still ok")], Some(2), t1);
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].observed_generation, Some(2));
        assert_eq!(same[0].message, "still ok");
        let flipped = merge(&same, &[Wanted::no("Accepted", "Invalid", "bad")], Some(3), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn other_types_are_kept_and_sorted() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = merge(&[], &[Wanted::yes("Synced", "Synced", "")], Some(1), t0);
        let both = merge(&first, &[Wanted::no("Accepted", "Invalid", "x")], Some(1), t0);
        let types: Vec<&str> = both.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Accepted", "Synced"]);
        assert!(is_true(&both, "Synced"));
        assert!(!is_true(&both, "Accepted"));
    }
}
