//! The SQLite side of `AlertStore`: rules, channels, instances, transitions and the outbox.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row};

use super::SqliteStore;
use crate::alerting::domain::{AlertState, Instance};
use crate::domain::Labels;
use crate::storage::alerts::{
    AlertStore, AttemptOutcome, AttemptRecord, DeliveryStatus, InstanceRecord, NewNotification, NotificationRecord,
    SpecKind, SpecRecord, TransitionRecord, TransitionWrite, labels_hash,
};
use crate::storage::{Result, StoreError, labels_key};

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

fn state_of(text: &str) -> Result<AlertState> {
    AlertState::parse(text).ok_or_else(|| decode_err(std::io::Error::other(format!("unknown alert state {text:?}"))))
}

fn labels_of(row: &SqliteRow) -> Result<Labels> {
    serde_json::from_str(row.try_get::<&str, _>("labels")?).map_err(decode_err)
}

fn spec_of(row: &SqliteRow) -> Result<SpecRecord> {
    Ok(SpecRecord {
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        spec: row.try_get("spec")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const INSTANCE_COLUMNS: &str = "id, tenant_id, rule, labels, state, since, pending_since, clear_since, active_since, \
                                value, last_seen, seq";

fn instance_of(row: &SqliteRow) -> Result<InstanceRecord> {
    Ok(InstanceRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        rule: row.try_get("rule")?,
        labels: labels_of(row)?,
        instance: Instance {
            state: state_of(row.try_get("state")?)?,
            since: row.try_get("since")?,
            pending_since: row.try_get("pending_since")?,
            clear_since: row.try_get("clear_since")?,
            active_since: row.try_get("active_since")?,
            value: row.try_get("value")?,
            last_seen: row.try_get("last_seen")?,
        },
        seq: row.try_get("seq")?,
    })
}

const NOTIFICATION_COLUMNS: &str = "id, tenant_id, channel, instance_id, rule, state, idempotency_key, payload, status, \
                                    attempts, next_attempt_at, created_at, delivered_at, last_error";

fn notification_of(row: &SqliteRow) -> Result<NotificationRecord> {
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        channel: row.try_get("channel")?,
        instance_id: row.try_get("instance_id")?,
        rule: row.try_get("rule")?,
        state: row.try_get("state")?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: row.try_get("payload")?,
        status: DeliveryStatus::parse(row.try_get("status")?),
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
        last_error: row.try_get("last_error")?,
    })
}

async fn insert_notifications(conn: &mut sqlx::SqliteConnection, notifications: &[NewNotification]) -> Result<u64> {
    let mut inserted = 0;
    for n in notifications {
        let result = sqlx::query(
            "INSERT INTO notifications (tenant_id, channel, instance_id, rule, state, idempotency_key, payload, \
             status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(n.tenant_id)
        .bind(&n.channel)
        .bind(n.instance_id)
        .bind(&n.rule)
        .bind(&n.state)
        .bind(&n.idempotency_key)
        .bind(&n.payload)
        .bind(n.created_at)
        .bind(n.created_at)
        .execute(&mut *conn)
        .await?;
        inserted += result.rows_affected();
    }
    Ok(inserted)
}

#[async_trait]
impl AlertStore for SqliteStore {
    fn supports_alerting(&self) -> bool {
        true
    }

    async fn put_spec(
        &self,
        kind: SpecKind,
        tenant_id: i64,
        name: &str,
        spec: &str,
        now: i64,
        create_only: bool,
    ) -> Result<bool> {
        let table = kind.table();
        let mut tx = self.pool.begin().await?;
        let exists: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 FROM {table} WHERE tenant_id = ? AND name = ?"))
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        match exists {
            Some(_) if create_only => return Err(StoreError::Conflict(format!("{} {name:?}", kind.noun()))),
            Some(_) => {
                sqlx::query(&format!("UPDATE {table} SET spec = ?, updated_at = ? WHERE tenant_id = ? AND name = ?"))
                    .bind(spec)
                    .bind(now)
                    .bind(tenant_id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query(&format!(
                    "INSERT INTO {table} (tenant_id, name, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                ))
                .bind(tenant_id)
                .bind(name)
                .bind(spec)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(exists.is_none())
    }

    async fn get_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<Option<SpecRecord>> {
        let row = sqlx::query(&format!(
            "SELECT tenant_id, name, spec, created_at, updated_at FROM {} WHERE tenant_id = ? AND name = ?",
            kind.table()
        ))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(spec_of).transpose()
    }

    async fn list_specs(&self, kind: SpecKind, tenant_id: Option<i64>) -> Result<Vec<SpecRecord>> {
        let sql = format!(
            "SELECT tenant_id, name, spec, created_at, updated_at FROM {} WHERE (? IS NULL OR tenant_id = ?) \
             ORDER BY tenant_id, name",
            kind.table()
        );
        let rows = sqlx::query(&sql).bind(tenant_id).bind(tenant_id).fetch_all(&self.pool).await?;
        rows.iter().map(spec_of).collect()
    }

    async fn delete_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(&format!("DELETE FROM {} WHERE tenant_id = ? AND name = ?", kind.table()))
            .bind(tenant_id)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if kind == SpecKind::Rule {
            sqlx::query("DELETE FROM alert_instances WHERE tenant_id = ? AND rule = ?")
                .bind(tenant_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn specs_fingerprint(&self) -> Result<String> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM alert_rules) AS rc, (SELECT COALESCE(MAX(updated_at), 0) FROM alert_rules) AS ru, \
                    (SELECT COUNT(*) FROM notification_channels) AS cc, \
                    (SELECT COALESCE(MAX(updated_at), 0) FROM notification_channels) AS cu",
        )
        .fetch_one(&self.pool)
        .await?;
        let parts: [i64; 4] = [row.try_get("rc")?, row.try_get("ru")?, row.try_get("cc")?, row.try_get("cu")?];
        Ok(format!("{}/{}/{}/{}", parts[0], parts[1], parts[2], parts[3]))
    }

    async fn upsert_instance(
        &self,
        tenant_id: i64,
        rule: &str,
        labels: &Labels,
        instance: &Instance,
    ) -> Result<InstanceRecord> {
        let labels_json = labels_key(labels);
        let hash = labels_hash(&labels_json);
        sqlx::query(
            "INSERT INTO alert_instances (tenant_id, rule, labels, labels_hash, state, since, pending_since, \
             clear_since, active_since, value, last_seen, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) \
             ON CONFLICT (tenant_id, rule, labels_hash) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(rule)
        .bind(&labels_json)
        .bind(&hash)
        .bind(instance.state.as_str())
        .bind(instance.since)
        .bind(instance.pending_since)
        .bind(instance.clear_since)
        .bind(instance.active_since)
        .bind(instance.value)
        .bind(instance.last_seen)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE tenant_id = ? AND rule = ? AND labels_hash = ?"
        ))
        .bind(tenant_id)
        .bind(rule)
        .bind(&hash)
        .fetch_one(&self.pool)
        .await?;
        instance_of(&row)
    }

    async fn list_instances(&self, tenant_id: Option<i64>) -> Result<Vec<InstanceRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE (? IS NULL OR tenant_id = ?) ORDER BY rule, labels"
        ))
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(instance_of).collect()
    }

    async fn delete_instance(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM alert_instances WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn record_transition(&self, w: TransitionWrite<'_>) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let i = w.instance;
        sqlx::query(
            "UPDATE alert_instances SET state = ?, since = ?, pending_since = ?, clear_since = ?, active_since = ?, \
             value = ?, last_seen = ?, seq = ? WHERE id = ?",
        )
        .bind(i.state.as_str())
        .bind(i.since)
        .bind(i.pending_since)
        .bind(i.clear_since)
        .bind(i.active_since)
        .bind(i.value)
        .bind(i.last_seen)
        .bind(w.seq)
        .bind(w.instance_id)
        .execute(&mut *tx)
        .await?;
        let id = sqlx::query(
            "INSERT INTO alert_transitions (tenant_id, instance_id, rule, labels, from_state, to_state, value, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(w.tenant_id)
        .bind(w.instance_id)
        .bind(w.rule)
        .bind(labels_key(w.labels))
        .bind(w.transition.from.as_str())
        .bind(w.transition.to.as_str())
        .bind(w.transition.value)
        .bind(w.transition.at)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        insert_notifications(&mut tx, w.notifications).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_transitions(
        &self,
        tenant_id: i64,
        rule: Option<&str>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TransitionRecord>> {
        let rows = sqlx::query(
            "SELECT id, rule, labels, from_state, to_state, value, at FROM alert_transitions \
             WHERE tenant_id = ? AND (? IS NULL OR rule = ?) AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(tenant_id)
        .bind(rule)
        .bind(rule)
        .bind(before_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TransitionRecord {
                    id: row.try_get("id")?,
                    rule: row.try_get("rule")?,
                    labels: labels_of(row)?,
                    from: state_of(row.try_get("from_state")?)?,
                    to: state_of(row.try_get("to_state")?)?,
                    value: row.try_get("value")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    async fn insert_notifications(&self, notifications: &[NewNotification]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = insert_notifications(&mut tx, notifications).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn due_notifications(&self, now: i64, limit: i64) -> Result<Vec<NotificationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= ? \
             ORDER BY next_attempt_at, id LIMIT ?"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notification_of).collect()
    }

    async fn claim_notification(&self, id: i64, seen_next_attempt_at: i64, lease_until: i64) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE notifications SET next_attempt_at = ? WHERE id = ? AND status = 'pending' AND next_attempt_at = ?",
        )
        .bind(lease_until)
        .bind(id)
        .bind(seen_next_attempt_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn finish_attempt(&self, a: &AttemptRecord, outcome: AttemptOutcome) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (notification_id, at, ok, status_code, error, duration_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(a.notification_id)
        .bind(a.at)
        .bind(a.ok)
        .bind(a.status_code.map(i64::from))
        .bind(&a.error)
        .bind(a.duration_ms)
        .execute(&mut *tx)
        .await?;
        let (status, next, delivered_at) = match outcome {
            AttemptOutcome::Delivered => (DeliveryStatus::Delivered, a.at, Some(a.at)),
            AttemptOutcome::RetryAt(at) => (DeliveryStatus::Pending, at, None),
            AttemptOutcome::Failed => (DeliveryStatus::Failed, a.at, None),
        };
        sqlx::query(
            "UPDATE notifications SET status = ?, attempts = attempts + 1, next_attempt_at = ?, delivered_at = ?, \
             last_error = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(next)
        .bind(delivered_at)
        .bind(&a.error)
        .bind(a.notification_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_notifications(
        &self,
        tenant_id: i64,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = ? AND (? IS NULL OR channel = ?) \
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(tenant_id)
        .bind(channel)
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notification_of).collect()
    }

    async fn list_attempts(&self, notification_ids: &[i64]) -> Result<Vec<AttemptRecord>> {
        if notification_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::new(
            "SELECT notification_id, at, ok, status_code, error, duration_ms FROM delivery_attempts \
             WHERE notification_id IN (",
        );
        let mut list = qb.separated(", ");
        for id in notification_ids {
            list.push_bind(*id);
        }
        qb.push(") ORDER BY id");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let code: Option<i64> = row.try_get("status_code")?;
                Ok(AttemptRecord {
                    notification_id: row.try_get("notification_id")?,
                    at: row.try_get("at")?,
                    ok: row.try_get("ok")?,
                    status_code: code.and_then(|c| u16::try_from(c).ok()),
                    error: row.try_get("error")?,
                    duration_ms: row.try_get("duration_ms")?,
                })
            })
            .collect()
    }

    async fn last_notifications(&self) -> Result<Vec<(i64, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT instance_id, channel, MAX(created_at) FROM notifications WHERE instance_id IS NOT NULL \
             GROUP BY instance_id, channel",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
