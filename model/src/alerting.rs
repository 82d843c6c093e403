//! Alert rules and notification channels: the ★ shapes of docs/DESIGN.md, shared by the HTTP API,
//! `microdash apply` and the `AlertRule` / `NotificationChannel` CRDs.
//!
//! Plain structs, `Option`s, maps and unit enums only, so the CRD schema stays structural.
//! Durations are strings (`90s`, `5m`) read by [`crate::parse_duration`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{is_valid_name, parse_duration, template};

/// The longest window a condition may aggregate over: windows live in memory.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The most channels one rule may notify.
pub const MAX_CHANNELS: usize = 16;

/// An alert rule: a condition over the series of one metric, evaluated per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRuleSpec {
    /// The tenant the rule belongs to. Required in YAML and CRDs; over HTTP it comes from the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The metric whose series are evaluated, e.g. `cpu.usage`.
    pub metric: String,
    /// Label equality matchers; omitted = every series of the metric.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (`0s` = at once).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_duration: Option<String>,
    /// How long a firing alert keeps firing after the condition stops holding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// Free text such as `critical`, `warning` or `info`; defaults to `warning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// What happens when a matched series stops reporting; omitted = nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataSpec>,
    /// Names of notification channels of the same tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Added to every notification, over the series' own labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Texts for people, with `{{ $value }}` and `{{ $labels.NAME }}` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// While an alert of this rule fires, it mutes the alerts of the tenant's other rules that
    /// `match` and share its values of the `equal` labels (Alertmanager's inhibition): a host-down
    /// alert silences that host's CPU and disk alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibits: Option<InhibitSpec>,
}

/// Which alerts a firing alert of the rule mutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InhibitSpec {
    /// Label equality matchers on the muted alerts' labels (`alertname` is a rule's name);
    /// omitted = every other rule's alerts.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
    /// Labels whose values the muted alert must share with the firing one, e.g. `[host]`;
    /// omitted = every matching alert of the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equal: Vec<String>,
}

/// `aggregation` of the samples within `window`, compared with `threshold` by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub aggregation: Aggregation,
    /// Required except for `last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub op: ComparisonOp,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    // The newest sample.
    Last,
    Avg,
    Min,
    Max,
    Sum,
    // How many samples arrived in the window.
    Count,
    // Per-second increase over the window, counter resets accounted for.
    Rate,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Last => "last",
            Aggregation::Avg => "avg",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::Rate => "rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ComparisonOp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl ComparisonOp {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            ComparisonOp::Gt => value > threshold,
            ComparisonOp::Ge => value >= threshold,
            ComparisonOp::Lt => value < threshold,
            ComparisonOp::Le => value <= threshold,
            ComparisonOp::Eq => value == threshold,
            ComparisonOp::Ne => value != threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonOp::Gt => ">",
            ComparisonOp::Ge => ">=",
            ComparisonOp::Lt => "<",
            ComparisonOp::Le => "<=",
            ComparisonOp::Eq => "==",
            ComparisonOp::Ne => "!=",
        }
    }
}

/// No-data handling: once no sample arrived for `after`, the instance takes `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoDataSpec {
    #[serde(default = "NoDataState::default_state")]
    pub state: NoDataState,
    pub after: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum NoDataState {
    // A state of its own, notified like a firing alert.
    #[serde(rename = "NODATA")]
    NoData,
    // Treat silence as the condition not holding (a firing alert resolves).
    Ok,
    // Treat silence as the condition holding (fires without waiting for `for`).
    Firing,
}

impl NoDataState {
    fn default_state() -> Self {
        NoDataState::NoData
    }
}

/// Where notifications go: exactly one of `webhook` and `email`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationChannelSpec {
    /// The tenant the channel belongs to. Required in YAML and CRDs; over HTTP it comes from the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSpec>,
    /// Also notify when an alert resolves (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
    /// Notify again while an alert keeps firing, this often (default `4h`; `0s` = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Group notifications by these alert labels (`alertname` is the rule's name; `...` = every
    /// label): one notification lists a group's alerts, as Alertmanager's `group_by`. Omitted =
    /// one notification per alert transition, at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// With `groupBy`: how long a new group waits for more alerts before its first notification
    /// (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// With `groupBy`: how long after a group's notification the next one about alerts added to
    /// or resolved in the group may follow (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
}

/// The most labels a channel may group by.
pub const MAX_GROUP_BY: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// `http://` or `https://` URL that receives a JSON POST.
    pub url: String,
    /// When set, each request carries `X-Microdash-Signature: sha256=HEX` (HMAC-SHA256 of the body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
    /// Extra request headers, e.g. an `Authorization` the receiver expects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long one attempt may take (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSpec {
    pub to: Vec<String>,
    pub from: String,
    pub smtp: SmtpSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpSpec {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Default `starttls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    // Plain SMTP upgraded with STARTTLS (required, never silently skipped).
    Starttls,
    // TLS from the first byte (SMTPS).
    Tls,
    // No encryption: only for a relay on the same host or network.
    None,
}

impl SmtpSpec {
    pub fn tls(&self) -> SmtpTls {
        self.tls.unwrap_or(SmtpTls::Starttls)
    }
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls() {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

/// One thing wrong with a spec, named by its path in the spec (e.g. `condition.window`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Everything wrong with a spec, in field order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }
    fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
    fn duration(&mut self, field: &str, text: Option<&str>) -> Option<Duration> {
        let text = text?;
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.add(field, e);
                None
            }
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        f.write_str(&texts.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}

/// Rule and channel names: a Kubernetes object name (a DNS-1123 subdomain: at most 253
/// characters, dot-separated parts of lowercase letters, digits and '-' that start and end with
/// a letter or digit), so every AlertRule's and NotificationChannel's name
/// is one, and so is the operator's `NAMESPACE.NAME` for them; also a URL path segment.
pub fn validate_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters long".into());
    }
    if !name.split('.').all(crate::is_label) {
        return Err("must contain only lowercase letters, digits, '-' and '.', and each '.'-separated part \
                    must start and end with a letter or digit"
            .into());
    }
    Ok(())
}

fn check_labels(errors: &mut ValidationErrors, field: &str, labels: &BTreeMap<String, String>) {
    if labels.len() > 32 {
        errors.add(field, "at most 32 entries");
    }
    for (key, value) in labels {
        if !is_valid_name(key) || key.len() > 100 {
            errors.add(format!("{field}.{key}"), "keys match [a-zA-Z_][a-zA-Z0-9_.:-]* and are at most 100 bytes");
        } else if value.len() > 1024 {
            errors.add(format!("{field}.{key}"), "values are at most 1024 bytes");
        }
    }
}

/// Label names: valid, unique, at most [`MAX_GROUP_BY`]; `...` (every label) alone when allowed.
fn check_label_names(errors: &mut ValidationErrors, field: &str, names: &[String], all_allowed: bool) {
    if names.len() > MAX_GROUP_BY {
        errors.add(field, format!("at most {MAX_GROUP_BY} labels"));
    }
    for (i, name) in names.iter().enumerate() {
        if all_allowed && name == "..." {
            if names.len() > 1 {
                errors.add(format!("{field}[{i}]"), "`...` (every label) stands alone");
            }
        } else if !is_valid_name(name) || name.len() > 100 {
            errors.add(format!("{field}[{i}]"), format!("{name:?}: a label name matches [a-zA-Z_][a-zA-Z0-9_.:-]*"));
        } else if names[..i].contains(name) {
            errors.add(format!("{field}[{i}]"), format!("{name:?} is listed twice"));
        }
    }
}

impl AlertRuleSpec {
    /// Checks every field; the errors name each offending field.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(tenant) = &self.tenant
            && let Err(e) = crate::validate_tenant_name(tenant)
        {
            errors.add("tenant", e);
        }
        if self.metric.is_empty() || self.metric.len() > 200 || !is_valid_name(&self.metric) {
            errors.add("metric", "a metric name matches [a-zA-Z_][a-zA-Z0-9_.:-]* and is at most 200 bytes");
        }
        check_labels(&mut errors, "match", &self.matchers);
        if !self.condition.threshold.is_finite() {
            errors.add("condition.threshold", "must be a finite number");
        }
        match (self.condition.aggregation, self.condition.window.as_deref()) {
            (Aggregation::Last, None) => {}
            (aggregation, None) => errors.add(
                "condition.window",
                format!("`{}` needs a window, e.g. 1m (only `last` works without one)", aggregation.as_str()),
            ),
            (_, Some(text)) => {
                if let Some(window) = errors.duration("condition.window", Some(text)) {
                    if window < Duration::from_secs(1) {
                        errors.add("condition.window", "must be at least 1s");
                    } else if window > MAX_WINDOW {
                        errors.add("condition.window", "must be at most 24h");
                    }
                }
            }
        }
        errors.duration("for", self.for_duration.as_deref());
        errors.duration("keepFiringFor", self.keep_firing_for.as_deref());
        if let Some(severity) = &self.severity
            && (severity.is_empty() || severity.len() > 32 || !is_valid_name(severity))
        {
            errors.add("severity", "a short word such as critical, warning or info");
        }
        if let Some(no_data) = &self.no_data
            && let Some(after) = errors.duration("noData.after", Some(&no_data.after))
            && after < Duration::from_secs(1)
        {
            errors.add("noData.after", "must be at least 1s");
        }
        if self.channels.len() > MAX_CHANNELS {
            errors.add("channels", format!("at most {MAX_CHANNELS} channels"));
        }
        for (i, channel) in self.channels.iter().enumerate() {
            if let Err(e) = validate_object_name(channel) {
                errors.add(format!("channels[{i}]"), format!("{channel:?}: a channel name {e}"));
            } else if self.channels[..i].contains(channel) {
                errors.add(format!("channels[{i}]"), format!("{channel:?} is listed twice"));
            }
        }
        check_labels(&mut errors, "labels", &self.labels);
        check_labels(&mut errors, "annotations", &self.annotations);
        if let Some(inhibits) = &self.inhibits {
            check_labels(&mut errors, "inhibits.match", &inhibits.matchers);
            check_label_names(&mut errors, "inhibits.equal", &inhibits.equal, false);
        }
        for (key, text) in &self.annotations {
            if let Err(e) = template::parse(text) {
                errors.add(format!("annotations.{key}"), e);
            }
        }
        errors.into_result()
    }

    /// `for`, zero when omitted. Call after `validate`.
    pub fn for_duration(&self) -> Duration {
        self.for_duration.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or_default()
    }
    /// `keepFiringFor`, zero when omitted. Call after `validate`.
    pub fn keep_firing_for(&self) -> Duration {
        self.keep_firing_for.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or_default()
    }
    /// The condition's window, zero for `last` without one. Call after `validate`.
    pub fn window(&self) -> Duration {
        self.condition.window.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or_default()
    }
    /// The no-data state and delay, if configured. Call after `validate`.
    pub fn no_data(&self) -> Option<(NoDataState, Duration)> {
        let spec = self.no_data.as_ref()?;
        Some((spec.state, parse_duration(&spec.after).ok()?))
    }
    pub fn severity(&self) -> &str {
        self.severity.as_deref().unwrap_or("warning")
    }
}

impl NotificationChannelSpec {
    /// Checks every field; the errors name each offending field.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(tenant) = &self.tenant
            && let Err(e) = crate::validate_tenant_name(tenant)
        {
            errors.add("tenant", e);
        }
        match (&self.webhook, &self.email) {
            (Some(_), Some(_)) => errors.add("webhook", "set either `webhook` or `email`, not both"),
            (None, None) => errors.add("webhook", "set `webhook` (url) or `email` (to, from, smtp)"),
            _ => {}
        }
        if let Some(webhook) = &self.webhook {
            let url = webhook.url.trim();
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
            match rest {
                Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) => {}
                _ => errors.add("webhook.url", "an absolute http:// or https:// URL"),
            }
            if webhook.hmac_secret.as_deref().is_some_and(str::is_empty) {
                errors.add("webhook.hmacSecret", "must not be empty; omit it to send unsigned requests");
            }
            for (name, value) in &webhook.headers {
                let token_ok = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token_ok {
                    errors.add(format!("webhook.headers.{name}"), "not a valid HTTP header name");
                } else if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                    errors.add(format!("webhook.headers.{name}"), "a header value is one line");
                }
            }
            if let Some(timeout) = errors.duration("webhook.timeout", webhook.timeout.as_deref())
                && (timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60))
            {
                errors.add("webhook.timeout", "between 100ms and 60s");
            }
        }
        if let Some(email) = &self.email {
            if email.to.is_empty() {
                errors.add("email.to", "at least one address");
            }
            for (i, to) in email.to.iter().enumerate() {
                if !looks_like_address(to) {
                    errors.add(format!("email.to[{i}]"), format!("{to:?} is not an email address"));
                }
            }
            if !looks_like_address(&email.from) {
                errors.add("email.from", format!("{:?} is not an email address", email.from));
            }
            let host = email.smtp.host.trim();
            if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
                errors.add("email.smtp.host", "a host name or IP address");
            }
            if email.smtp.port == Some(0) {
                errors.add("email.smtp.port", "between 1 and 65535");
            }
            if email.smtp.password.is_some() && email.smtp.username.is_none() {
                errors.add("email.smtp.username", "a password needs a username");
            }
        }
        errors.duration("repeatInterval", self.repeat_interval.as_deref());
        check_label_names(&mut errors, "groupBy", &self.group_by, true);
        if self.group_by.is_empty() {
            for (field, value) in [("groupWait", &self.group_wait), ("groupInterval", &self.group_interval)] {
                if value.is_some() {
                    errors.add(field, "only applies with `groupBy`; name the labels to group by");
                }
            }
        }
        if let Some(wait) = errors.duration("groupWait", self.group_wait.as_deref())
            && wait > Duration::from_secs(3600)
        {
            errors.add("groupWait", "at most 1h");
        }
        if let Some(interval) = errors.duration("groupInterval", self.group_interval.as_deref())
            && interval < Duration::from_secs(1)
        {
            errors.add("groupInterval", "must be at least 1s");
        }
        errors.into_result()
    }

    /// Whether notifications are grouped (`groupBy` set).
    pub fn grouped(&self) -> bool {
        !self.group_by.is_empty()
    }
    /// `groupWait`, default 30 s. Call after `validate`.
    pub fn group_wait(&self) -> Duration {
        self.group_wait.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(Duration::from_secs(30))
    }
    /// `groupInterval`, default 5 min. Call after `validate`.
    pub fn group_interval(&self) -> Duration {
        self.group_interval.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(Duration::from_secs(300))
    }

    pub fn send_resolved(&self) -> bool {
        self.send_resolved.unwrap_or(true)
    }
    /// `None` = never repeat. Call after `validate`.
    pub fn repeat_interval(&self) -> Option<Duration> {
        let interval = match self.repeat_interval.as_deref() {
            Some(text) => parse_duration(text).ok()?,
            None => Duration::from_secs(4 * 3600),
        };
        (!interval.is_zero()).then_some(interval)
    }
    pub fn webhook_timeout(&self) -> Duration {
        self.webhook
            .as_ref()
            .and_then(|w| w.timeout.as_deref())
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(Duration::from_secs(5))
    }
    /// The same spec with secrets replaced by `<set>`, for answers and logs.
    pub fn redacted(&self) -> Self {
        let mut spec = self.clone();
        if let Some(webhook) = &mut spec.webhook
            && webhook.hmac_secret.is_some()
        {
            webhook.hmac_secret = Some(SECRET_PLACEHOLDER.into());
        }
        if let Some(email) = &mut spec.email
            && email.smtp.password.is_some()
        {
            email.smtp.password = Some(SECRET_PLACEHOLDER.into());
        }
        spec
    }
    /// Where a secret reads `<set>` (a redacted spec sent back unchanged), keeps `previous`'s secret.
    pub fn keep_secrets_from(&mut self, previous: &NotificationChannelSpec) {
        if let (Some(webhook), Some(old)) = (&mut self.webhook, &previous.webhook)
            && webhook.hmac_secret.as_deref() == Some(SECRET_PLACEHOLDER)
        {
            webhook.hmac_secret = old.hmac_secret.clone();
        }
        if let (Some(email), Some(old)) = (&mut self.email, &previous.email)
            && email.smtp.password.as_deref() == Some(SECRET_PLACEHOLDER)
        {
            email.smtp.password = old.smtp.password.clone();
        }
    }
}

/// What answers show instead of a secret.
pub const SECRET_PLACEHOLDER: &str = "<set>";

/// A loose check: one `@`, something on both sides, no spaces or angle brackets. The SMTP server
/// has the last word.
fn looks_like_address(text: &str) -> bool {
    let text = text.trim();
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !text.contains(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AlertRuleSpec {
        AlertRuleSpec {
            tenant: None,
            metric: "cpu.usage".into(),
            matchers: BTreeMap::from([("host".into(), "web-1".into())]),
            condition: Condition {
                aggregation: Aggregation::Avg,
                window: Some("1m".into()),
                op: ComparisonOp::Gt,
                threshold: 90.0,
            },
            for_duration: Some("2m".into()),
            keep_firing_for: Some("0s".into()),
            severity: Some("critical".into()),
            no_data: Some(NoDataSpec { state: NoDataState::NoData, after: "5m".into() }),
            channels: vec!["ops-webhook".into(), "ops-mail".into()],
            labels: BTreeMap::from([("team".into(), "a".into())]),
            annotations: BTreeMap::from([("summary".into(), "CPU {{ $value }}% on {{ $labels.host }}".into())]),
            inhibits: None,
        }
    }

    fn fields(errors: ValidationErrors) -> Vec<String> {
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_design_example_rule_reads_and_validates() {
        let json = r#"{"tenant":"default","metric":"cpu.usage","match":{"host":"web-1"},
            "condition":{"aggregation":"avg","window":"1m","op":">","threshold":90},
            "for":"2m","keepFiringFor":"0s","severity":"critical","noData":{"state":"NODATA","after":"5m"},
            "channels":["ops-webhook","ops-mail"],"labels":{"team":"a"},
            "annotations":{"summary":"CPU {{ $value }}% on {{ $labels.host }}"}}"#;
        let spec: AlertRuleSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec, AlertRuleSpec { tenant: Some("default".into()), ..rule() });
        spec.validate().unwrap();
        assert_eq!(spec.for_duration(), Duration::from_secs(120));
        assert_eq!(spec.window(), Duration::from_secs(60));
        assert_eq!(spec.no_data(), Some((NoDataState::NoData, Duration::from_secs(300))));
        // And back: camelCase, `for`, `match`, operators as symbols.
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["for"], "2m");
        assert_eq!(back["match"]["host"], "web-1");
        assert_eq!(back["condition"]["op"], ">");
        assert_eq!(back["noData"]["state"], "NODATA");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<AlertRuleSpec>(
            r#"{"metric":"m","condition":{"aggregation":"last","op":">","threshold":1},"forr":"1m"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `forr`"), "{err}");
    }

    #[test]
    fn object_names_are_kubernetes_names_so_namespace_dot_name_fits() {
        for ok in [
            "a",
            "high-cpu",
            "team-a.high-cpu",
            "a.b.c",
            &"x".repeat(200),
            &format!("{}.{}", "n".repeat(63), "r".repeat(189)),
        ] {
            assert_eq!(validate_object_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "High", "a..b", ".a", "a.", "-a.b", "a-.b", "a_b", "a/b", "é", &"x".repeat(254)] {
            assert!(validate_object_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn every_rule_mistake_names_its_field() {
        let mut bad = rule();
        bad.tenant = Some("Team A".into());
        bad.metric = "9cpu".into();
        bad.matchers.insert("bad key".into(), "x".into());
        bad.condition.window = Some("1 minute".into());
        bad.condition.threshold = f64::NAN;
        bad.for_duration = Some("2".into());
        bad.keep_firing_for = Some("x".into());
        bad.severity = Some("very bad".into());
        bad.no_data = Some(NoDataSpec { state: NoDataState::Ok, after: "0s".into() });
        bad.channels = vec!["Ops".into(), "a".into(), "a".into()];
        bad.annotations.insert("description".into(), "{{ $labels }}".into());
        assert_eq!(
            fields(bad.validate().unwrap_err()),
            [
                "tenant",
                "metric",
                "match.bad key",
                "condition.threshold",
                "condition.window",
                "for",
                "keepFiringFor",
                "severity",
                "noData.after",
                "channels[0]",
                "channels[2]",
                "annotations.description",
            ]
        );
    }

    #[test]
    fn windows_are_needed_except_for_last_and_bounded() {
        let mut spec = rule();
        spec.condition.window = None;
        assert_eq!(fields(spec.validate().unwrap_err()), ["condition.window"]);
        spec.condition.aggregation = Aggregation::Last;
        spec.validate().unwrap();
        spec.condition.aggregation = Aggregation::Rate;
        spec.condition.window = Some("25h".into());
        assert!(spec.validate().unwrap_err().to_string().contains("at most 24h"));
    }

    fn webhook() -> NotificationChannelSpec {
        NotificationChannelSpec {
            tenant: Some("default".into()),
            webhook: Some(WebhookSpec {
                url: "https://hooks.example.com/x".into(),
                hmac_secret: Some("s3cret".into()),
                headers: BTreeMap::new(),
                timeout: None,
            }),
            email: None,
            send_resolved: Some(true),
            repeat_interval: Some("4h".into()),
            group_by: Vec::new(),
            group_wait: None,
            group_interval: None,
        }
    }

    #[test]
    fn grouping_reads_defaults_and_names_each_mistake() {
        let grouped: NotificationChannelSpec = serde_json::from_str(
            r#"{"webhook":{"url":"https://hooks.example.com/x"},"groupBy":["alertname","host"],"groupWait":"10s"}"#,
        )
        .unwrap();
        grouped.validate().unwrap();
        assert!(grouped.grouped() && !webhook().grouped());
        assert_eq!(grouped.group_wait(), Duration::from_secs(10));
        assert_eq!(grouped.group_interval(), Duration::from_secs(300));
        let all = NotificationChannelSpec { group_by: vec!["...".into()], ..webhook() };
        all.validate().unwrap();
        let bad = NotificationChannelSpec {
            group_by: vec!["host".into(), "host".into(), "bad label".into(), "...".into()],
            group_wait: Some("2h".into()),
            group_interval: Some("0s".into()),
            ..webhook()
        };
        assert_eq!(
            fields(bad.validate().unwrap_err()),
            ["groupBy[1]", "groupBy[2]", "groupBy[3]", "groupWait", "groupInterval"]
        );
        let ungrouped = NotificationChannelSpec { group_wait: Some("10s".into()), ..webhook() };
        assert_eq!(fields(ungrouped.validate().unwrap_err()), ["groupWait"]);
    }

    #[test]
    fn an_inhibiting_rule_reads_and_names_each_mistake() {
        let json = r#"{"metric":"up","condition":{"aggregation":"last","op":"<","threshold":1},
            "inhibits":{"match":{"severity":"warning"},"equal":["host"]}}"#;
        let spec: AlertRuleSpec = serde_json::from_str(json).unwrap();
        spec.validate().unwrap();
        let inhibits = spec.inhibits.as_ref().unwrap();
        assert_eq!(inhibits.equal, ["host"]);
        assert_eq!(inhibits.matchers["severity"], "warning");
        let bad = AlertRuleSpec {
            inhibits: Some(InhibitSpec { matchers: BTreeMap::new(), equal: vec!["...".into(), "x y".into()] }),
            ..rule()
        };
        assert_eq!(fields(bad.validate().unwrap_err()), ["inhibits.equal[0]", "inhibits.equal[1]"]);
    }

    #[test]
    fn the_design_example_channels_read_and_validate() {
        let mail: NotificationChannelSpec = serde_json::from_str(
            r#"{"tenant":"default","email":{"to":["ops@example.com"],"from":"microdash@example.com",
                "smtp":{"host":"smtp.example.com","port":587,"tls":"starttls","username":"u","password":"p"}}}"#,
        )
        .unwrap();
        mail.validate().unwrap();
        assert!(mail.send_resolved());
        assert_eq!(mail.repeat_interval(), Some(Duration::from_secs(4 * 3600)));
        assert_eq!(mail.email.as_ref().unwrap().smtp.port(), 587);
        let hook: NotificationChannelSpec = serde_json::from_str(
            r#"{"tenant":"default","webhook":{"url":"https://hooks.example.com/x","hmacSecret":"s3cret"},
                "sendResolved":true,"repeatInterval":"4h"}"#,
        )
        .unwrap();
        assert_eq!(hook, webhook());
        hook.validate().unwrap();
        assert_eq!(hook.webhook_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn every_channel_mistake_names_its_field() {
        let neither = NotificationChannelSpec { webhook: None, ..webhook() };
        assert_eq!(fields(neither.validate().unwrap_err()), ["webhook"]);
        let mut bad = webhook();
        let hook = bad.webhook.as_mut().unwrap();
        hook.url = "ftp://x".into();
        hook.hmac_secret = Some(String::new());
        hook.headers.insert("Bad Header".into(), "v".into());
        hook.timeout = Some("2m".into());
        bad.repeat_interval = Some("often".into());
        assert_eq!(
            fields(bad.validate().unwrap_err()),
            ["webhook.url", "webhook.hmacSecret", "webhook.headers.Bad Header", "webhook.timeout", "repeatInterval"]
        );
        let mail = NotificationChannelSpec {
            webhook: None,
            email: Some(EmailSpec {
                to: vec!["nobody".into()],
                from: "a@b@c".into(),
                smtp: SmtpSpec {
                    host: "".into(),
                    port: Some(0),
                    tls: None,
                    username: None,
                    password: Some("p".into()),
                },
            }),
            ..webhook()
        };
        assert_eq!(
            fields(mail.validate().unwrap_err()),
            ["email.to[0]", "email.from", "email.smtp.host", "email.smtp.port", "email.smtp.username"]
        );
    }

    #[test]
    fn secrets_are_redacted_and_a_placeholder_keeps_the_old_secret() {
        let spec = webhook();
        let shown = spec.redacted();
        assert_eq!(shown.webhook.as_ref().unwrap().hmac_secret.as_deref(), Some(SECRET_PLACEHOLDER));
        let mut sent_back = shown.clone();
        sent_back.keep_secrets_from(&spec);
        assert_eq!(sent_back, spec);
        assert_eq!(NotificationChannelSpec { repeat_interval: Some("0s".into()), ..spec }.repeat_interval(), None);
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn schemas_are_structural_and_use_the_yaml_names() {
        let rule = serde_json::to_value(schemars::schema_for!(AlertRuleSpec)).unwrap();
        let props = &rule["properties"];
        for name in ["metric", "match", "condition", "for", "keepFiringFor", "noData", "channels", "annotations"] {
            assert!(props.get(name).is_some(), "rule schema lacks {name}: {props}");
        }
        let text = rule.to_string();
        // Unit enums stay plain `enum`s of strings (a documented variant would become a `oneOf`).
        assert!(!text.contains("oneOf"), "{text}");
        let channel = serde_json::to_value(schemars::schema_for!(NotificationChannelSpec)).unwrap();
        assert!(channel["properties"].get("repeatInterval").is_some());
    }
}
