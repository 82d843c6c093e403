//! What the alert engine, the outbox and the rule/channel API keep in the database.

use async_trait::async_trait;

use super::Result;
use crate::domain::Labels;
use crate::domain::alerting::{AlertState, Instance, Transition};

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

/// How many rules, channels and silences are stored and the newest `updated_at` of each: when
/// it differs from an earlier one, something was written or deleted since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecsFingerprint {
    pub rules: i64,
    pub rules_updated_at: i64,
    pub channels: i64,
    pub channels_updated_at: i64,
    pub silences: i64,
    pub silences_updated_at: i64,
}

/// The specs written since a time, and how many were stored at that moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecChanges {
    pub total: i64,
    pub records: Vec<SpecRecord>,
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

/// A silence: while `starts_at <= t < ends_at`, notifications of the tenant's alert instances
/// whose labels (with `alertname`) equal every matcher are not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRecord {
    pub tenant_id: i64,
    /// Random, 32 hex digits.
    pub id: String,
    /// The stable name of a silence written by name (`microdash apply`, a `Silence` resource,
    /// `PUT /api/v1/silences/by-name/{name}`), unique per tenant; `None` for one made by POST.
    pub name: Option<String>,
    pub matchers: Labels,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
}

/// What a group's last notification told a grouping channel: the instances it listed as firing
/// and as resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGroupRecord {
    pub tenant_id: i64,
    pub channel: String,
    /// The group's label values (those of the channel's `groupBy`).
    pub labels: Labels,
    /// Notifications the group has had.
    pub seq: i64,
    pub flushed_at: i64,
    pub firing: Vec<i64>,
    pub resolved: Vec<i64>,
}

/// An instance to insert unless its tenant, rule and labels have one.
#[derive(Debug, Clone, Copy)]
pub struct NewInstance<'a> {
    pub tenant_id: i64,
    pub rule: &'a str,
    pub labels: &'a Labels,
    pub instance: &'a Instance,
}

#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
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
    ) -> Result<bool>;
    async fn get_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<Option<SpecRecord>>;
    /// The stored specs of the given keys (tenant id, name), in no particular order; keys with
    /// no spec are left out. One statement: the engine reads a batch of announced rules at once.
    async fn get_specs(&self, kind: SpecKind, keys: &[(i64, String)]) -> Result<Vec<SpecRecord>>;
    /// The tenant's specs, or every tenant's when `tenant_id` is `None`, by name.
    async fn list_specs(&self, kind: SpecKind, tenant_id: Option<i64>) -> Result<Vec<SpecRecord>>;
    /// Deletes a spec; a rule takes its instances along (its history stays).
    async fn delete_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<bool>;
    /// Every tenant's specs written at or after `since` (Unix ms), oldest first, and how many
    /// there are in all at the same moment: what changed since an earlier read, when `since` is
    /// taken early enough to cover transactions that committed after a later one.
    async fn list_specs_changed_since(&self, kind: SpecKind, since: i64) -> Result<SpecChanges>;
    /// Changes whenever any rule, channel or silence changes, so other processes notice edits.
    async fn specs_fingerprint(&self) -> Result<SpecsFingerprint>;

    /// Stores a new silence; a `name` the tenant already uses is a `Conflict`.
    async fn create_silence(&self, silence: &SilenceRecord) -> Result<()>;
    /// The tenant's silence of that name, ended or not.
    async fn get_silence_by_name(&self, tenant_id: i64, name: &str) -> Result<Option<SilenceRecord>>;
    /// Rewrites a silence's matchers, times, comment and author (found by tenant and id); false
    /// when there is no such silence.
    async fn update_silence(&self, silence: &SilenceRecord, now: i64) -> Result<bool>;
    /// Silences of one tenant (or all) that end after `ended_after`, newest first.
    async fn list_silences(&self, tenant_id: Option<i64>, ended_after: i64) -> Result<Vec<SilenceRecord>>;
    /// Ends a silence at `now`; false when the tenant has no such silence or it already ended.
    async fn expire_silence(&self, tenant_id: i64, id: &str, now: i64) -> Result<bool>;

    /// Inserts an instance, or returns the one stored for the same tenant, rule and labels.
    async fn upsert_instance(
        &self,
        tenant_id: i64,
        rule: &str,
        labels: &Labels,
        instance: &Instance,
    ) -> Result<InstanceRecord> {
        let new = [NewInstance { tenant_id, rule, labels, instance }];
        Ok(self.upsert_instances(&new).await?.remove(0))
    }
    /// `upsert_instance` for each, in one transaction (a batch of rules loaded at once takes
    /// the write lock once, not once per instance); the records in the same order.
    async fn upsert_instances(&self, new: &[NewInstance<'_>]) -> Result<Vec<InstanceRecord>>;
    async fn list_instances(&self, tenant_id: Option<i64>) -> Result<Vec<InstanceRecord>>;
    /// The instances of one rule (the engine loading a rule it did not hold).
    async fn list_rule_instances(&self, tenant_id: i64, rule: &str) -> Result<Vec<InstanceRecord>>;
    /// The instances of the given rules (tenant id, rule name), in one statement.
    async fn list_instances_of(&self, rules: &[(i64, String)]) -> Result<Vec<InstanceRecord>>;
    async fn delete_instance(&self, id: i64) -> Result<()>;
    /// The instance's new state, the transition and its notifications, in one transaction.
    async fn record_transition(&self, write: TransitionWrite<'_>) -> Result<i64>;
    /// Newest first, before `before_id` when given.
    async fn list_transitions(
        &self,
        tenant_id: i64,
        rule: Option<&str>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TransitionRecord>>;

    /// Queues notifications; returns how many were new (a known key is skipped).
    async fn insert_notifications(&self, notifications: &[NewNotification]) -> Result<u64>;
    /// Every alert group's last notification state (of one tenant or all).
    async fn list_alert_groups(&self, tenant_id: Option<i64>) -> Result<Vec<AlertGroupRecord>>;
    /// Records a group's flush in one transaction: its notification (if one is sent) and what it
    /// said; `done` (nothing firing any more, the receiver told) forgets the group instead.
    async fn flush_alert_group(
        &self,
        group: &AlertGroupRecord,
        notification: Option<&NewNotification>,
        done: bool,
    ) -> Result<()>;
    /// Pending notifications due at `now`, oldest first.
    async fn due_notifications(&self, now: i64, limit: i64) -> Result<Vec<NotificationRecord>>;
    /// Takes a due notification for one attempt by moving `next_attempt_at` to `lease_until`;
    /// false when another process (or loop) took it first.
    async fn claim_notification(&self, id: i64, seen_next_attempt_at: i64, lease_until: i64) -> Result<bool>;
    /// Records an attempt and what follows it.
    async fn finish_attempt(&self, attempt: &AttemptRecord, outcome: AttemptOutcome) -> Result<()>;
    /// The tenant's notifications, newest first, optionally of one channel.
    async fn list_notifications(
        &self,
        tenant_id: i64,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>>;
    async fn list_attempts(&self, notification_ids: &[i64]) -> Result<Vec<AttemptRecord>>;
    /// (instance id, channel, created_at) of the newest notification per instance and channel,
    /// for these instances.
    async fn last_notifications_of(&self, instance_ids: &[i64]) -> Result<Vec<(i64, String, i64)>>;

    /// Takes or renews the lease `name` for `owner` until `until` when it is free, expired
    /// (`expires_at < now`) or already `owner`'s; false when another owner holds it.
    async fn acquire_lease(&self, name: &str, owner: &str, now: i64, until: i64) -> Result<bool>;
    /// Gives the lease up, if `owner` holds it, so another process takes over at once.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<()>;
}

/// A short stable digest of a label set's canonical JSON, for unique keys.
pub fn labels_hash(labels_json: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(labels_json.as_bytes())[..16])
}
