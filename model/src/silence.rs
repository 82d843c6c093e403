//! Silences (maintenance windows): the shape the HTTP API, `microdash apply` (`kind: Silence`)
//! and the `Silence` CRD share, and the server's answer about one.
//!
//! While a silence is active, notifications of the tenant's alerts whose labels equal all of
//! its matchers (`alertname` is the rule's name) are not sent. Times are Unix milliseconds or
//! text (RFC 3339, `now`, `now+2h`, `now-5m`); relative ones are resolved when the silence is
//! written (see [`SilenceSpec::window`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::alerting::{FieldError, ValidationErrors};
use crate::time::parse_time_ahead;

/// Matchers per silence, at most.
pub const MAX_MATCHERS: usize = 20;
/// Longest comment, in characters.
pub const MAX_COMMENT: usize = 1000;
/// Longest author (`createdBy`), in characters.
pub const MAX_AUTHOR: usize = 200;

/// What a time field accepts, for messages.
const TIME_FORMS: &str = "Unix milliseconds, an RFC 3339 time, `now`, `now+2h` or `now-5m`";

/// A time as a silence takes it: Unix ms, or text (RFC 3339, `now`, `now+2h`, `now-5m`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = TimeInput))]
#[serde(untagged)]
pub enum SilenceTime {
    Ms(i64),
    Text(String),
}

impl SilenceTime {
    /// Unix ms, relative text resolved against `now`; `None` when it is not a time.
    pub fn resolve(&self, now: i64) -> Option<i64> {
        match self {
            SilenceTime::Ms(ms) => Some(*ms).filter(|t| (0..=crate::time::MAX_TIME_MS).contains(t)),
            SilenceTime::Text(text) => parse_time_ahead(text.trim(), now),
        }
    }

    /// Whether its value depends on when it is read (`now`, `now+2h`, `now-5m`).
    pub fn is_relative(&self) -> bool {
        matches!(self, SilenceTime::Text(text) if text.trim().starts_with("now"))
    }
}

/// An integer or a string, as Kubernetes' `IntOrString` says it (`x-kubernetes-int-or-string`),
/// which keeps a CRD's schema structural.
impl JsonSchema for SilenceTime {
    fn schema_name() -> Cow<'static, str> {
        "SilenceTime".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Unix milliseconds, or an RFC 3339 time, `now`, `now+2h` or `now-5m` (relative times are \
                            resolved when the silence is written)",
            "x-kubernetes-int-or-string": true
        })
    }
}

/// A silence as it is written: over HTTP (`POST /api/v1/silences`, `PUT
/// /api/v1/silences/by-name/{name}`), in a `kind: Silence` document of `microdash apply` and in
/// a `Silence` resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = SilenceInput))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceSpec {
    /// The tenant the silence belongs to. Required in YAML and CRDs; over HTTP it comes from the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Label equality matchers, at least one; `alertname` matches the rule's name.
    pub matchers: BTreeMap<String, String>,
    /// Default: now (and, for a named silence that has started already, the time it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<SilenceTime>,
    pub ends_at: SilenceTime,
    /// Why: shown beside the silenced alerts.
    pub comment: String,
    /// Who silences (a name or an address).
    pub created_by: String,
}

impl SilenceSpec {
    /// Checks every field that does not depend on the clock; the errors name each offending
    /// field (`matchers`, `startsAt`, `endsAt`, `comment`, `createdBy`).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        let mut add = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
        if let Some(tenant) = &self.tenant
            && let Err(e) = crate::validate_tenant_name(tenant)
        {
            add("tenant", e);
        }
        if self.matchers.is_empty() {
            add("matchers", "at least one matcher (a silence of everything is not one)".into());
        } else if self.matchers.len() > MAX_MATCHERS {
            add("matchers", format!("at most {MAX_MATCHERS} matchers"));
        } else if let Some((name, _)) =
            self.matchers.iter().find(|(k, v)| k.is_empty() || v.is_empty() || k.len() > 255 || v.len() > 1024)
        {
            add(
                "matchers",
                format!("matcher {name:?}: names and values are non-empty (names up to 255 bytes, values up to 1024)"),
            );
        }
        // Any clock will do to tell a time from something else.
        let starts = self.starts_at.as_ref().map(|t| t.resolve(0));
        if starts == Some(None) {
            add("startsAt", format!("must be {TIME_FORMS}"));
        }
        let ends = self.ends_at.resolve(0);
        if ends.is_none() {
            add("endsAt", format!("must be {TIME_FORMS}"));
        }
        let absolute = |t: Option<&SilenceTime>| t.is_some_and(|t| !t.is_relative());
        if let (Some(Some(starts)), Some(ends)) = (starts, ends)
            && absolute(self.starts_at.as_ref())
            && absolute(Some(&self.ends_at))
            && ends <= starts
        {
            add("endsAt", "must be after startsAt".into());
        }
        let comment = self.comment.trim();
        if comment.is_empty() || comment.chars().count() > MAX_COMMENT {
            add("comment", format!("says why, in 1 to {MAX_COMMENT} characters"));
        }
        let author = self.created_by.trim();
        if author.is_empty() || author.chars().count() > MAX_AUTHOR {
            add("createdBy", format!("names who silences, in 1 to {MAX_AUTHOR} characters"));
        }
        if errors.is_empty() { Ok(()) } else { Err(ValidationErrors(errors)) }
    }

    /// `startsAt` and `endsAt` as Unix ms, relative times resolved against `now` (an omitted
    /// start is `now`). Call after `validate`; says nothing about their order.
    pub fn window(&self, now: i64) -> Result<(i64, i64), ValidationErrors> {
        let bad = |field: &str| {
            ValidationErrors(vec![FieldError { field: field.into(), message: format!("must be {TIME_FORMS}") }])
        };
        let starts = match &self.starts_at {
            Some(t) => t.resolve(now).ok_or_else(|| bad("startsAt"))?,
            None => now,
        };
        let ends = self.ends_at.resolve(now).ok_or_else(|| bad("endsAt"))?;
        Ok((starts, ends))
    }
}

// Where a silence stands at a moment. (Plain comments, as for `AlertState`: doc comments would
// become descriptions in the OpenAPI document.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    // Starts later.
    Pending,
    Active,
    // Ended (or was expired).
    Expired,
}

impl SilenceState {
    pub fn at(starts_at: i64, ends_at: i64, now: i64) -> Self {
        if now < starts_at {
            SilenceState::Pending
        } else if now < ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// A silence as the server shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SilenceView {
    pub id: String,
    /// The stable name of a silence written by name (`microdash apply`, a `Silence` resource,
    /// `PUT /api/v1/silences/by-name/{name}`); absent for one created by `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub matchers: BTreeMap<String, String>,
    /// Unix ms.
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
    /// `pending` (starts later), `active` or `expired`.
    pub status: SilenceState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SilenceSpec {
        serde_json::from_value(serde_json::json!({
            "matchers": {"alertname": "high-cpu", "host": "web-1"},
            "endsAt": "now+2h", "comment": "replacing a disk", "createdBy": "ops@example.com"
        }))
        .unwrap()
    }

    fn fields(errors: ValidationErrors) -> Vec<String> {
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn times_are_milliseconds_or_text_and_relative_ones_resolve_against_now() {
        let mut s = spec();
        s.validate().unwrap();
        assert_eq!(s.window(1000).unwrap(), (1000, 1000 + 2 * 3600 * 1000));
        s.starts_at = Some(SilenceTime::Ms(5000));
        s.ends_at = SilenceTime::Text("2025-11-25T21:00:00Z".into());
        assert_eq!(s.window(0).unwrap(), (5000, 1_764_104_400_000));
        assert!(!s.ends_at.is_relative());
        assert!(SilenceTime::Text("now-5m".into()).is_relative());
        let yaml_like: SilenceSpec = serde_json::from_str(
            r#"{"tenant": "default", "matchers": {"host": "a"}, "startsAt": 1764100800000,
                "endsAt": "2025-11-25T21:00:00Z", "comment": "c", "createdBy": "me"}"#,
        )
        .unwrap();
        assert_eq!(yaml_like.starts_at, Some(SilenceTime::Ms(1_764_100_800_000)));
        yaml_like.validate().unwrap();
        // And back: numbers stay numbers.
        assert_eq!(serde_json::to_value(&yaml_like).unwrap()["startsAt"], 1_764_100_800_000i64);
    }

    #[test]
    fn every_mistake_names_its_field() {
        let bad = SilenceSpec {
            tenant: Some("Team A".into()),
            matchers: BTreeMap::from([("host".into(), String::new())]),
            starts_at: Some(SilenceTime::Text("soon".into())),
            ends_at: SilenceTime::Ms(-1),
            comment: "  ".into(),
            created_by: "x".repeat(201),
        };
        assert_eq!(
            fields(bad.validate().unwrap_err()),
            ["tenant", "matchers", "startsAt", "endsAt", "comment", "createdBy"]
        );
        let none = SilenceSpec { matchers: BTreeMap::new(), ..spec() };
        assert_eq!(fields(none.validate().unwrap_err()), ["matchers"]);
        let backwards = SilenceSpec {
            starts_at: Some(SilenceTime::Text("2025-11-25T21:00:00Z".into())),
            ends_at: SilenceTime::Text("2025-11-25T20:00:00Z".into()),
            ..spec()
        };
        assert_eq!(fields(backwards.validate().unwrap_err()), ["endsAt"]);
        let unknown = serde_json::from_str::<SilenceSpec>(
            r#"{"matchers": {"a": "b"}, "endsAt": "now+1h", "comment": "c", "createdBy": "me", "x": 1}"#,
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("unknown field `x`"), "{unknown}");
    }

    #[test]
    fn states_follow_the_clock() {
        assert_eq!(SilenceState::at(10, 20, 5), SilenceState::Pending);
        assert_eq!(SilenceState::at(10, 20, 10), SilenceState::Active);
        assert_eq!(SilenceState::at(10, 20, 20), SilenceState::Expired);
        assert_eq!(serde_json::to_value(SilenceState::Active).unwrap(), "active");
    }

    #[test]
    fn the_crd_schema_of_a_time_is_int_or_string() {
        let schema = serde_json::to_value(schemars::schema_for!(SilenceSpec)).unwrap();
        let ends = &schema["properties"]["endsAt"];
        assert_eq!(ends["x-kubernetes-int-or-string"], true, "{schema}");
        assert!(schema["required"].as_array().unwrap().iter().any(|r| r == "endsAt"));
    }
}
