//! The server's answers about rules and channels, declared once: the server serializes them
//! (and documents them in its OpenAPI document, feature `openapi`), the operator reads them.
//!
//! A view is the spec's fields beside `name`, the timestamps and the server's own fields. The
//! specs refuse unknown fields (`deny_unknown_fields`), which `#[serde(flatten)]` cannot pass
//! on, so reading a view takes the view's own keys out first and reads the rest as the spec.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::{AlertRuleSpec, NotificationChannelSpec};

// The state of an alert instance (one rule × one series). (No doc comment: it would become
// the schema's description in the OpenAPI document.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum AlertState {
    Ok,
    Pending,
    Firing,
    Resolved,
    #[serde(rename = "NODATA")]
    NoData,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "OK",
            AlertState::Pending => "PENDING",
            AlertState::Firing => "FIRING",
            AlertState::Resolved => "RESOLVED",
            AlertState::NoData => "NODATA",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "OK" => AlertState::Ok,
            "PENDING" => AlertState::Pending,
            "FIRING" => AlertState::Firing,
            "RESOLVED" => AlertState::Resolved,
            "NODATA" => AlertState::NoData,
            _ => return None,
        })
    }

    /// How bad a state is, to summarise many instances by the worst one.
    pub fn severity_rank(self) -> u8 {
        match self {
            AlertState::Firing => 4,
            AlertState::NoData => 3,
            AlertState::Pending => 2,
            AlertState::Resolved => 1,
            AlertState::Ok => 0,
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule summarised by its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// The worst state among the rule's instances; OK when it has none.
    pub state: AlertState,
    /// Matched series so far.
    pub instances: usize,
    pub firing: usize,
}

// A rule as the server shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub name: String,
    /// The fields of the rule spec (metric, match, condition, for, …).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: AlertRuleSpec,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: RuleStatus,
}

// The channel's latest notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    pub status: String,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// A channel as the server shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub name: String,
    /// The channel spec fields (webhook or email, sendResolved, repeatInterval), secrets as `<set>`.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: NotificationChannelSpec,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<LastDelivery>,
}

/// Takes `key` out of a view's map and reads it.
fn take<T: DeserializeOwned, E: serde::de::Error>(map: &mut Map<String, Value>, key: &str) -> Result<T, E> {
    let value = map.remove(key).unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| E::custom(format!("{key}: {e}")))
}

/// The rest of a view's map, its own keys taken out, as the spec.
fn spec_of<T: DeserializeOwned, E: serde::de::Error>(map: Map<String, Value>) -> Result<T, E> {
    serde_json::from_value(Value::Object(map)).map_err(|e| E::custom(format!("the spec fields: {e}")))
}

impl<'de> Deserialize<'de> for RuleView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::deserialize(deserializer)?;
        let name = take(&mut map, "name")?;
        let created_at = take(&mut map, "createdAt")?;
        let updated_at = take(&mut map, "updatedAt")?;
        let status = take(&mut map, "status")?;
        Ok(RuleView { name, spec: spec_of(map)?, created_at, updated_at, status })
    }
}

impl<'de> Deserialize<'de> for ChannelView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = Map::deserialize(deserializer)?;
        let name = take(&mut map, "name")?;
        let created_at = take(&mut map, "createdAt")?;
        let updated_at = take(&mut map, "updatedAt")?;
        let last_delivery = take(&mut map, "lastDelivery")?;
        Ok(ChannelView { name, spec: spec_of(map)?, created_at, updated_at, last_delivery })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reads_back_what_the_server_writes() {
        let rule: AlertRuleSpec = serde_json::from_value(serde_json::json!({
            "metric": "cpu.usage", "match": {"host": "web-1"},
            "condition": {"aggregation": "avg", "window": "5m", "op": ">", "threshold": 90}, "for": "1m"
        }))
        .unwrap();
        let view = RuleView {
            name: "ns.high-cpu".into(),
            spec: rule,
            created_at: 1,
            updated_at: 2,
            status: RuleStatus { state: AlertState::Firing, instances: 3, firing: 1 },
        };
        let text = serde_json::to_string(&view).unwrap();
        assert!(text.contains(r#""createdAt":1"#) && text.contains(r#""state":"FIRING""#), "{text}");
        assert_eq!(serde_json::from_str::<RuleView>(&text).unwrap(), view);

        let channel: NotificationChannelSpec =
            serde_json::from_value(serde_json::json!({"webhook": {"url": "https://hooks.example/x"}})).unwrap();
        let view = ChannelView {
            name: "ns.pager".into(),
            spec: channel,
            created_at: 1,
            updated_at: 2,
            last_delivery: Some(LastDelivery { status: "failed".into(), at: 3, error: Some("HTTP 503".into()) }),
        };
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<ChannelView>(&text).unwrap(), view);
    }

    #[test]
    fn a_view_with_a_field_the_spec_lacks_is_an_error_that_names_it() {
        let text = r#"{"name":"r","createdAt":1,"updatedAt":2,"status":{"state":"OK","instances":0,"firing":0},
                      "metric":"m","condition":{"aggregation":"last","op":">","threshold":1},"future":true}"#;
        let err = serde_json::from_str::<RuleView>(text).unwrap_err().to_string();
        assert!(err.contains("future"), "{err}");
    }
}
