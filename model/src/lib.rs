//! Domain types shared by the microdash server, its CLI and the Kubernetes operator.
//!
//! One definition of each spec, so the same YAML works with `microdash apply` and as a CRD.

use std::fmt;
use std::str::FromStr;

pub mod alerting;
pub mod duration;
pub mod silence;
pub mod template;
pub mod time;
pub mod views;

pub use alerting::{
    Aggregation, AlertRuleSpec, ComparisonOp, Condition, EmailSpec, FieldError, InhibitSpec, NoDataSpec, NoDataState,
    NotificationChannelSpec, SECRET_PLACEHOLDER, SmtpSpec, SmtpTls, ValidationErrors, WebhookSpec,
};
pub use duration::{format_duration, parse_duration};
pub use silence::{SilenceSpec, SilenceState, SilenceTime, SilenceView};
pub use views::AlertState;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The header in which the admin token names the tenant it acts on (the Kubernetes operator
/// manages a tenant's rules and channels this way). HTTP header names are case-insensitive.
pub const TENANT_HEADER: &str = "x-microdash-tenant";

/// The keys a rule or channel answer carries beside its spec (and `name`): an edited answer
/// sent back is still a valid spec once they are dropped.
pub const READ_ONLY_KEYS: [&str; 4] = ["createdAt", "updatedAt", "status", "lastDelivery"];

/// What a token may do. A token belongs to exactly one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Write samples (HTTP ingest, MQTT publish).
    Ingest,
    /// Read metrics, series, queries, the live stream, alerts.
    Read,
    /// Manage the tenant's own rules, channels, dashboards and tokens.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a scope name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScope(pub String);

impl fmt::Display for UnknownScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scope {:?}: expected one of ingest, read, admin", self.0)
    }
}

impl std::error::Error for UnknownScope {}

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "ingest" => Ok(Scope::Ingest),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(UnknownScope(other.to_string())),
        }
    }
}

/// Rules for tenant names: DNS-label-like so a name is also a valid Kubernetes object name,
/// an MQTT topic level and a URL path segment without escaping.
pub fn validate_tenant_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long".into());
    }
    if !is_label(name) {
        return Err(
            "must contain only lowercase letters, digits and '-', and start and end with a letter or digit".into()
        );
    }
    Ok(())
}

/// A non-empty run of lowercase letters, digits and '-' that starts and ends with a letter or
/// digit: a tenant name, and each '.'-separated part of a rule or channel name.
pub(crate) fn is_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A metric name or label key: `[a-zA-Z_][a-zA-Z0-9_.:-]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// A tenant as the admin API and the `Tenant` resource describe it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// A human-friendly name shown in the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// How long each resolution of the tenant's data is kept; omitted = the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<TenantRetention>,
    /// Intake limits of the tenant; omitted = the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TenantLimits>,
}

/// Retention overrides of one tenant, durations such as `3d` or `12h` (at least `1m`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRetention {
    /// Raw samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// One-minute rollups.
    #[serde(default, rename = "1m", skip_serializing_if = "Option::is_none")]
    pub one_minute: Option<String>,
    /// Five-minute rollups.
    #[serde(default, rename = "5m", skip_serializing_if = "Option::is_none")]
    pub five_minutes: Option<String>,
}

/// Intake limits of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantLimits {
    /// Samples per second (the long-run rate; one second's worth may come at once). Over it,
    /// HTTP ingest answers 429 and MQTT acknowledgements wait. Omitted = the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295u64))]
    pub samples_per_second: Option<u64>,
    /// Distinct series. Past it, samples of new series are refused; existing series keep
    /// being accepted. Omitted = no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub series: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_their_names() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn tenant_names_are_dns_labels() {
        assert!(validate_tenant_name("team-a").is_ok());
        assert!(validate_tenant_name("default").is_ok());
        for bad in ["", "-a", "a-", "Team", "a_b", "a/b", "ä", &"x".repeat(64)] {
            assert!(validate_tenant_name(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
