//! What the alert engine, the outbox and the rule/channel API keep in the database.

use super::StoreError;
use async_trait::async_trait;

use super::Result;
use crate::alerting::domain::{AlertState, Instance, Transition};
use crate::domain::Labels;

/// Which kind of spec a row holds: both are a JSON document per tenant and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    Rule,
    Channel,
}

impl SpecKind {
    pub fn table(self) -> &'static str {
        match self {
            SpecKind::Rule => "alert_rules",
            SpecKind::Channel => "notification_channels",
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            SpecKind::Rule => "rule",
            SpecKind::Channel => "channel",
        }
    }
}

/// A stored rule or channel; `spec` is its JSON without `tenant`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecRecord {
    pub tenant_id: i64,
    pub name: String,
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A rule instance as stored: which rule and series, and its state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub id: i64,
    pub tenant_id: i64,
    pub rule: String,
    pub labels: Labels,
    pub instance: Instance,
    /// Transitions so far; the next one is `seq + 1`.
    pub seq: i64,
}

/// A transition to persist, with the instance's new state and the notifications it causes,
/// all in one transaction.
pub struct TransitionWrite<'a> {
    pub instance_id: i64,
    pub tenant_id: i64,
    pub rule: &'a str,
    pub labels: &'a Labels,
    pub instance: &'a Instance,
    pub seq: i64,
    pub transition: &'a Transition,
    pub notifications: &'a [NewNotification],
}

/// A notification for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub tenant_id: i64,
    pub channel: String,
    pub instance_id: Option<i64>,
    pub rule: Option<String>,
    /// FIRING, NODATA, RESOLVED or TEST.
    pub state: String,
    /// Unique: inserting a key twice keeps the first row, so a replayed transition never
    /// queues a second notification.
    pub idempotency_key: String,
    pub payload: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
    pub fn parse(text: &str) -> Self {
        match text {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRecord {
    pub id: i64,
    pub tenant_id: i64,
    pub channel: String,
    pub instance_id: Option<i64>,
    pub rule: Option<String>,
    pub state: String,
    pub idempotency_key: String,
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

/// One try at delivering a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub notification_id: i64,
    pub at: i64,
    pub ok: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(i64),
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRecord {
    pub id: i64,
    pub rule: String,
    pub labels: Labels,
    pub from: AlertState,
    pub to: AlertState,
    pub value: Option<f64>,
    pub at: i64,
}

#[async_trait]
#[allow(unused_variables)]
pub trait AlertStore: Send + Sync + 'static {
    /// Whether this backend stores rules, channels and alerts yet; when not, every method
    /// answers `Unsupported` and the server runs without alerting.
    fn supports_alerting(&self) -> bool {
        false
    }

    /// Stores a rule or channel; with `create_only`, an existing one is a `Conflict`.
    /// Returns true when it was created.
    async fn put_spec(
        &self,
        kind: SpecKind,
        tenant_id: i64,
        name: &str,
        spec: &str,
        now: i64,
        create_only: bool,
    ) -> Result<bool> {
        Err(StoreError::Unsupported("alerting"))
    }
    async fn get_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<Option<SpecRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// The tenant's specs, or every tenant's when `tenant_id` is `None`, by name.
    async fn list_specs(&self, kind: SpecKind, tenant_id: Option<i64>) -> Result<Vec<SpecRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// Deletes a spec; a rule takes its instances along (its history stays).
    async fn delete_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<bool> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// Changes whenever any rule or channel changes, so other processes notice edits.
    async fn specs_fingerprint(&self) -> Result<String> {
        Err(StoreError::Unsupported("alerting"))
    }

    /// Inserts an instance, or returns the one stored for the same tenant, rule and labels.
    async fn upsert_instance(
        &self,
        tenant_id: i64,
        rule: &str,
        labels: &Labels,
        instance: &Instance,
    ) -> Result<InstanceRecord> {
        Err(StoreError::Unsupported("alerting"))
    }
    async fn list_instances(&self, tenant_id: Option<i64>) -> Result<Vec<InstanceRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }
    async fn delete_instance(&self, id: i64) -> Result<()> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// The instance's new state, the transition and its notifications, in one transaction.
    async fn record_transition(&self, write: TransitionWrite<'_>) -> Result<i64> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// Newest first, before `before_id` when given.
    async fn list_transitions(
        &self,
        tenant_id: i64,
        rule: Option<&str>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TransitionRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }

    /// Queues notifications; returns how many were new (a known key is skipped).
    async fn insert_notifications(&self, notifications: &[NewNotification]) -> Result<u64> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// Pending notifications due at `now`, oldest first.
    async fn due_notifications(&self, now: i64, limit: i64) -> Result<Vec<NotificationRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// Takes a due notification for one attempt by moving `next_attempt_at` to `lease_until`;
    /// false when another process (or loop) took it first.
    async fn claim_notification(&self, id: i64, seen_next_attempt_at: i64, lease_until: i64) -> Result<bool> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// Records an attempt and what follows it.
    async fn finish_attempt(&self, attempt: &AttemptRecord, outcome: AttemptOutcome) -> Result<()> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// The tenant's notifications, newest first, optionally of one channel.
    async fn list_notifications(
        &self,
        tenant_id: i64,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }
    async fn list_attempts(&self, notification_ids: &[i64]) -> Result<Vec<AttemptRecord>> {
        Err(StoreError::Unsupported("alerting"))
    }
    /// (instance id, channel, created_at) of the newest notification per instance and channel.
    async fn last_notifications(&self) -> Result<Vec<(i64, String, i64)>> {
        Err(StoreError::Unsupported("alerting"))
    }
}

/// A short stable digest of a label set's canonical JSON, for unique keys.
pub fn labels_hash(labels_json: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(labels_json.as_bytes())[..16])
}
