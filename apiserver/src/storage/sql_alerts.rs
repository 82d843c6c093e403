//! `AlertStore` for every SQL backend: rules, channels, instances, transitions and the outbox.
//!
//! The statements are the same on SQLite, PostgreSQL and MariaDB/MySQL except for a few
//! dialect points, which each backend passes to `sql_alert_store!`:
//! - `sql`: turns `?` placeholders into the backend's (`$1, $2, …` on PostgreSQL);
//! - `text`: reads a nullable text column (MariaDB reports `utf8mb4_bin` columns as binary);
//! - `insert_ignore`: an INSERT that skips a row whose unique key exists.

use crate::domain::alerting::AlertState;
use crate::storage::{Result, StoreError};

pub(crate) fn state_of(text: &str) -> Result<AlertState> {
    AlertState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown alert state {text:?}")))
}

/// `?` placeholders as they are (SQLite, MariaDB).
pub(crate) fn question_marks(sql: &str) -> String {
    sql.to_string()
}

/// `?` placeholders numbered `$1, $2, …` (PostgreSQL). No statement here has a `?` in a literal.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `INSERT … ON CONFLICT (key) DO NOTHING` (SQLite, PostgreSQL).
pub(crate) fn on_conflict_do_nothing(insert: &str, key: &str) -> String {
    format!("{insert} ON CONFLICT ({key}) DO NOTHING")
}

/// `INSERT IGNORE …` (MariaDB/MySQL).
pub(crate) fn insert_ignore(insert: &str, _key: &str) -> String {
    insert.replacen("INSERT INTO", "INSERT IGNORE INTO", 1)
}

/// `INSERT … ON CONFLICT (key) DO UPDATE SET c = excluded.c, …` (SQLite, PostgreSQL).
pub(crate) fn on_conflict_update(insert: &str, key: &str, columns: &[&str]) -> String {
    let set: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    format!("{insert} ON CONFLICT ({key}) DO UPDATE SET {}", set.join(", "))
}

/// `INSERT … ON DUPLICATE KEY UPDATE c = VALUES(c), …` (MariaDB/MySQL).
pub(crate) fn on_duplicate_key_update(insert: &str, _key: &str, columns: &[&str]) -> String {
    let set: Vec<String> = columns.iter().map(|c| format!("{c} = VALUES({c})")).collect();
    format!("{insert} ON DUPLICATE KEY UPDATE {}", set.join(", "))
}

/// Implements `AlertStore` for `$store` (which has a `pool: sqlx::Pool<$db>`).
macro_rules! sql_alert_store {
    (
        store: $store:ty,
        db: $db:ty,
        row: $row:ty,
        sql: $sql:path,
        text: $text_opt:path,
        insert_ignore: $ignore:path $(,)?
    ) => {
        mod sql_alerts_impl {
            use std::collections::HashMap;

            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};

            use super::*;
            use crate::domain::alerting::Instance;
            use crate::domain::Labels;
            use crate::storage::alerts::{
                AlertGroupRecord, AlertStore, AttemptOutcome, AttemptRecord, DeliveryStatus, InstanceRecord, NewInstance, NewNotification,
                NotificationRecord, SilenceRecord, SpecChanges, SpecKind, SpecRecord, SpecsFingerprint, TransitionRecord, TransitionWrite, labels_hash,
            };
            use crate::storage::sql_alerts::state_of;
            use crate::storage::{Result, StoreError, labels_key};

            type Conn = <$db as sqlx::Database>::Connection;

            fn text(row: &$row, column: &str) -> Result<String> {
                $text_opt(row, column)?
                    .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
            }

            /// A count or time the query cast to text (their integer types differ per backend).
            fn number(row: &$row, column: &str) -> Result<i64> {
                let t = text(row, column)?;
                t.trim().parse().map_err(|_| StoreError::Corrupt(format!("{column} is not a number: {t}")))
            }

            fn labels_of(row: &$row) -> Result<Labels> {
                serde_json::from_str(&text(row, "labels")?).map_err(StoreError::corrupt)
            }

            fn spec_of(row: &$row) -> Result<SpecRecord> {
                Ok(SpecRecord {
                    tenant_id: row.try_get("tenant_id")?,
                    name: text(row, "name")?,
                    spec: text(row, "spec")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            fn silence_of(row: &$row) -> Result<SilenceRecord> {
                Ok(SilenceRecord {
                    tenant_id: row.try_get("tenant_id")?,
                    id: text(row, "id")?,
                    name: $text_opt(row, "name")?,
                    matchers: serde_json::from_str(&text(row, "matchers")?).map_err(StoreError::corrupt)?,
                    starts_at: row.try_get("starts_at")?,
                    ends_at: row.try_get("ends_at")?,
                    comment: text(row, "comment")?,
                    created_by: text(row, "created_by")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            const SILENCE_COLUMNS: &str =
                "tenant_id, id, name, matchers, starts_at, ends_at, comment, created_by, created_at";

            const INSTANCE_COLUMNS: &str = "id, tenant_id, rule, labels, state, since, pending_since, clear_since, \
                                            active_since, value, last_seen, seq";

            fn instance_of(row: &$row) -> Result<InstanceRecord> {
                Ok(InstanceRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    rule: text(row, "rule")?,
                    labels: labels_of(row)?,
                    instance: Instance {
                        state: state_of(&text(row, "state")?)?,
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

            const NOTIFICATION_COLUMNS: &str = "id, tenant_id, channel, instance_id, rule, state, idempotency_key, \
                                                payload, status, attempts, next_attempt_at, created_at, delivered_at, \
                                                last_error";

            fn optional_text(row: &$row, column: &str) -> Result<Option<String>> {
                $text_opt(row, column)
            }

            fn notification_of(row: &$row) -> Result<NotificationRecord> {
                Ok(NotificationRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    channel: text(row, "channel")?,
                    instance_id: row.try_get("instance_id")?,
                    rule: optional_text(row, "rule")?,
                    state: text(row, "state")?,
                    idempotency_key: text(row, "idempotency_key")?,
                    payload: text(row, "payload")?,
                    status: DeliveryStatus::parse(&text(row, "status")?),
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    created_at: row.try_get("created_at")?,
                    delivered_at: row.try_get("delivered_at")?,
                    last_error: optional_text(row, "last_error")?,
                })
            }

            async fn insert_notifications(conn: &mut Conn, notifications: &[NewNotification]) -> Result<u64> {
                let sql = $sql(&$ignore(
                    "INSERT INTO notifications (tenant_id, channel, instance_id, rule, state, idempotency_key, \
                     payload, status, attempts, next_attempt_at, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    "idempotency_key",
                ));
                let mut inserted = 0;
                for n in notifications {
                    let result = sqlx::query(&sql)
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

            /// `WHERE tenant_id = ?` when a tenant is given, every row otherwise.
            fn tenant_filter<'a>(qb: &mut QueryBuilder<'a, $db>, tenant_id: Option<i64>) {
                match tenant_id {
                    Some(id) => {
                        qb.push(" WHERE tenant_id = ").push_bind(id);
                    }
                    None => {
                        qb.push(" WHERE 1 = 1");
                    }
                }
            }

            /// `(tenant_id = ? AND <column> = ?) OR …` for the given keys (not empty): each an
            /// equality on the table's leading key columns, so every one is an index lookup.
            fn keys_filter<'a>(qb: &mut QueryBuilder<'a, $db>, column: &str, keys: &'a [(i64, String)]) {
                for (i, (tenant_id, name)) in keys.iter().enumerate() {
                    if i > 0 {
                        qb.push(" OR ");
                    }
                    qb.push("(tenant_id = ").push_bind(*tenant_id);
                    qb.push(format!(" AND {column} = ")).push_bind(name.as_str()).push(")");
                }
            }

            #[async_trait]
            impl AlertStore for $store {
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
                    // Insert first: a new name needs no read, an existing one falls through to the update.
                    let mut tx = self.begin_write().await?;
                    let inserted = sqlx::query(&$sql(&$ignore(
                        &format!(
                            "INSERT INTO {table} (tenant_id, name, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                        ),
                        "tenant_id, name",
                    )))
                    .bind(tenant_id)
                    .bind(name)
                    .bind(spec)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        if create_only {
                            return Err(StoreError::Conflict(format!("{} {name:?}", kind.noun())));
                        }
                        sqlx::query(&$sql(&format!(
                            "UPDATE {table} SET spec = ?, updated_at = ? WHERE tenant_id = ? AND name = ?"
                        )))
                        .bind(spec)
                        .bind(now)
                        .bind(tenant_id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(inserted == 1)
                }

                async fn get_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<Option<SpecRecord>> {
                    let row = sqlx::query(&$sql(&format!(
                        "SELECT tenant_id, name, spec, created_at, updated_at FROM {} WHERE tenant_id = ? AND name = ?",
                        kind.table()
                    )))
                    .bind(tenant_id)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(spec_of).transpose()
                }

                async fn get_specs(&self, kind: SpecKind, keys: &[(i64, String)]) -> Result<Vec<SpecRecord>> {
                    if keys.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut qb = QueryBuilder::<$db>::new(format!(
                        "SELECT tenant_id, name, spec, created_at, updated_at FROM {} WHERE ",
                        kind.table()
                    ));
                    keys_filter(&mut qb, "name", keys);
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter().map(spec_of).collect()
                }

                async fn list_specs(&self, kind: SpecKind, tenant_id: Option<i64>) -> Result<Vec<SpecRecord>> {
                    let mut qb = QueryBuilder::<$db>::new(format!(
                        "SELECT tenant_id, name, spec, created_at, updated_at FROM {}",
                        kind.table()
                    ));
                    tenant_filter(&mut qb, tenant_id);
                    qb.push(" ORDER BY tenant_id, name");
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter().map(spec_of).collect()
                }

                async fn delete_spec(&self, kind: SpecKind, tenant_id: i64, name: &str) -> Result<bool> {
                    let mut tx = self.begin_write().await?;
                    let deleted = sqlx::query(&$sql(&format!(
                        "DELETE FROM {} WHERE tenant_id = ? AND name = ?",
                        kind.table()
                    )))
                    .bind(tenant_id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if kind == SpecKind::Rule {
                        sqlx::query(&$sql("DELETE FROM alert_instances WHERE tenant_id = ? AND rule = ?"))
                            .bind(tenant_id)
                            .bind(name)
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        sqlx::query(&$sql("DELETE FROM alert_groups WHERE tenant_id = ? AND channel = ?"))
                            .bind(tenant_id)
                            .bind(name)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(deleted > 0)
                }

                async fn list_specs_changed_since(&self, kind: SpecKind, since: i64) -> Result<SpecChanges> {
                    // One statement, so the count and the rows are of one moment (a second
                    // statement could see writes the first did not).
                    let rows = sqlx::query(&$sql(&format!(
                        "SELECT CAST(t.total AS CHAR(20)) AS total, r.tenant_id, r.name, r.spec, r.created_at, r.updated_at \
                         FROM (SELECT COUNT(*) AS total FROM {table}) t LEFT JOIN {table} r ON r.updated_at >= ? \
                         ORDER BY r.updated_at",
                        table = kind.table()
                    )))
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut changes = SpecChanges { total: 0, records: Vec::with_capacity(rows.len()) };
                    for row in &rows {
                        changes.total = number(row, "total")?;
                        if row.try_get::<Option<i64>, _>("tenant_id")?.is_some() {
                            changes.records.push(spec_of(row)?);
                        }
                    }
                    Ok(changes)
                }

                async fn specs_fingerprint(&self) -> Result<SpecsFingerprint> {
                    // COUNT and MAX come back as different integer types per backend; as text
                    // they read the same everywhere.
                    let row = sqlx::query(
                        "SELECT CAST((SELECT COUNT(*) FROM alert_rules) AS CHAR(20)) AS rc, \
                                CAST((SELECT COALESCE(MAX(updated_at), 0) FROM alert_rules) AS CHAR(20)) AS ru, \
                                CAST((SELECT COUNT(*) FROM notification_channels) AS CHAR(20)) AS cc, \
                                CAST((SELECT COALESCE(MAX(updated_at), 0) FROM notification_channels) AS CHAR(20)) AS cu, \
                                CAST((SELECT COUNT(*) FROM silences) AS CHAR(20)) AS sc, \
                                CAST((SELECT COALESCE(MAX(updated_at), 0) FROM silences) AS CHAR(20)) AS su",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(SpecsFingerprint {
                        rules: number(&row, "rc")?,
                        rules_updated_at: number(&row, "ru")?,
                        channels: number(&row, "cc")?,
                        channels_updated_at: number(&row, "cu")?,
                        silences: number(&row, "sc")?,
                        silences_updated_at: number(&row, "su")?,
                    })
                }

                async fn create_silence(&self, s: &SilenceRecord) -> Result<()> {
                    let matchers = serde_json::to_string(&s.matchers).expect("labels serialize");
                    // A name the tenant uses already skips the row (NULL names never collide).
                    let inserted = sqlx::query(&$sql(&$ignore(
                        "INSERT INTO silences (tenant_id, id, name, matchers, starts_at, ends_at, comment, created_by, \
                         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tenant_id, name",
                    )))
                    .bind(s.tenant_id)
                    .bind(&s.id)
                    .bind(&s.name)
                    .bind(matchers)
                    .bind(s.starts_at)
                    .bind(s.ends_at)
                    .bind(&s.comment)
                    .bind(&s.created_by)
                    .bind(s.created_at)
                    .bind(s.created_at)
                    .execute(self.writes())
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        return Err(StoreError::Conflict(format!("silence {:?}", s.name.as_deref().unwrap_or(&s.id))));
                    }
                    Ok(())
                }

                async fn get_silence_by_name(&self, tenant_id: i64, name: &str) -> Result<Option<SilenceRecord>> {
                    let row = sqlx::query(&$sql(&format!(
                        "SELECT {SILENCE_COLUMNS} FROM silences WHERE tenant_id = ? AND name = ?"
                    )))
                    .bind(tenant_id)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(silence_of).transpose()
                }

                async fn update_silence(&self, s: &SilenceRecord, now: i64) -> Result<bool> {
                    let matchers = serde_json::to_string(&s.matchers).expect("labels serialize");
                    let updated = sqlx::query(&$sql(
                        "UPDATE silences SET matchers = ?, starts_at = ?, ends_at = ?, comment = ?, created_by = ?, \
                         updated_at = ? WHERE tenant_id = ? AND id = ?",
                    ))
                    .bind(matchers)
                    .bind(s.starts_at)
                    .bind(s.ends_at)
                    .bind(&s.comment)
                    .bind(&s.created_by)
                    .bind(now)
                    .bind(s.tenant_id)
                    .bind(&s.id)
                    .execute(self.writes())
                    .await?
                    .rows_affected();
                    Ok(updated > 0)
                }

                async fn list_silences(&self, tenant_id: Option<i64>, ended_after: i64) -> Result<Vec<SilenceRecord>> {
                    let mut qb = QueryBuilder::<$db>::new(format!("SELECT {SILENCE_COLUMNS} FROM silences"));
                    tenant_filter(&mut qb, tenant_id);
                    qb.push(" AND ends_at > ").push_bind(ended_after).push(" ORDER BY created_at DESC, id");
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter().map(silence_of).collect()
                }

                async fn expire_silence(&self, tenant_id: i64, id: &str, now: i64) -> Result<bool> {
                    let done = sqlx::query(&$sql(
                        "UPDATE silences SET ends_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND ends_at > ?",
                    ))
                    .bind(now)
                    .bind(now)
                    .bind(tenant_id)
                    .bind(id)
                    .bind(now)
                    .execute(self.writes())
                    .await?
                    .rows_affected();
                    Ok(done > 0)
                }

                async fn upsert_instances(&self, new: &[NewInstance<'_>]) -> Result<Vec<InstanceRecord>> {
                    if new.is_empty() {
                        return Ok(Vec::new());
                    }
                    let keyed: Vec<(String, String)> = new
                        .iter()
                        .map(|n| {
                            let json = labels_key(n.labels);
                            let hash = labels_hash(&json);
                            (json, hash)
                        })
                        .collect();
                    let mut tx = self.begin_write().await?;
                    for (n, (json, hash)) in new.iter().zip(&keyed) {
                        sqlx::query(&$sql(&$ignore(
                            "INSERT INTO alert_instances (tenant_id, rule, labels, labels_hash, state, since, \
                             pending_since, clear_since, active_since, value, last_seen, seq) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                            "tenant_id, rule, labels_hash",
                        )))
                        .bind(n.tenant_id)
                        .bind(n.rule)
                        .bind(json)
                        .bind(hash)
                        .bind(n.instance.state.as_str())
                        .bind(n.instance.since)
                        .bind(n.instance.pending_since)
                        .bind(n.instance.clear_since)
                        .bind(n.instance.active_since)
                        .bind(n.instance.value)
                        .bind(n.instance.last_seen)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    // Read back (new or already there), a few hundred keys per statement.
                    let mut stored: HashMap<(i64, String, String), InstanceRecord> = HashMap::new();
                    let positions: Vec<usize> = (0..new.len()).collect();
                    for chunk in positions.chunks(300) {
                        let mut qb = QueryBuilder::<$db>::new(format!(
                            "SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE "
                        ));
                        for (j, &i) in chunk.iter().enumerate() {
                            if j > 0 {
                                qb.push(" OR ");
                            }
                            qb.push("(tenant_id = ").push_bind(new[i].tenant_id);
                            qb.push(" AND rule = ").push_bind(new[i].rule);
                            qb.push(" AND labels_hash = ").push_bind(keyed[i].1.as_str()).push(")");
                        }
                        for row in qb.build().fetch_all(&self.pool).await? {
                            let record = instance_of(&row)?;
                            stored.insert((record.tenant_id, record.rule.clone(), labels_key(&record.labels)), record);
                        }
                    }
                    new.iter()
                        .zip(keyed)
                        .map(|(n, (json, _))| {
                            stored.get(&(n.tenant_id, n.rule.to_string(), json)).cloned().ok_or_else(|| {
                                // Its rule was deleted meanwhile (which takes its instances along).
                                StoreError::NotFound(format!("alert instance of rule {:?}", n.rule))
                            })
                        })
                        .collect()
                }

                async fn list_instances(&self, tenant_id: Option<i64>) -> Result<Vec<InstanceRecord>> {
                    let mut qb = QueryBuilder::<$db>::new(format!("SELECT {INSTANCE_COLUMNS} FROM alert_instances"));
                    tenant_filter(&mut qb, tenant_id);
                    qb.push(" ORDER BY rule, labels");
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter().map(instance_of).collect()
                }

                async fn list_rule_instances(&self, tenant_id: i64, rule: &str) -> Result<Vec<InstanceRecord>> {
                    let rows = sqlx::query(&$sql(&format!(
                        "SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE tenant_id = ? AND rule = ? ORDER BY labels"
                    )))
                    .bind(tenant_id)
                    .bind(rule)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(instance_of).collect()
                }

                async fn list_instances_of(&self, rules: &[(i64, String)]) -> Result<Vec<InstanceRecord>> {
                    if rules.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut qb =
                        QueryBuilder::<$db>::new(format!("SELECT {INSTANCE_COLUMNS} FROM alert_instances WHERE "));
                    keys_filter(&mut qb, "rule", rules);
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter().map(instance_of).collect()
                }

                async fn delete_instance(&self, id: i64) -> Result<()> {
                    sqlx::query(&$sql("DELETE FROM alert_instances WHERE id = ?")).bind(id).execute(self.writes()).await?;
                    Ok(())
                }

                async fn record_transition(&self, w: TransitionWrite<'_>) -> Result<i64> {
                    let mut tx = self.begin_write().await?;
                    let i = w.instance;
                    sqlx::query(&$sql(
                        "UPDATE alert_instances SET state = ?, since = ?, pending_since = ?, clear_since = ?, \
                         active_since = ?, value = ?, last_seen = ?, seq = ? WHERE id = ?",
                    ))
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
                    // Numbered per tenant: one process evaluates alerts (the lease), and the
                    // unique (tenant_id, tenant_seq) index refuses a duplicate number anyway.
                    let id: i64 = sqlx::query_scalar(&$sql(
                        "INSERT INTO alert_transitions (tenant_id, instance_id, rule, labels, from_state, to_state, \
                         value, at, tenant_seq) \
                         SELECT ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(MAX(tenant_seq), 0) + 1 FROM alert_transitions \
                         WHERE tenant_id = ? RETURNING tenant_seq",
                    ))
                    .bind(w.tenant_id)
                    .bind(w.instance_id)
                    .bind(w.rule)
                    .bind(labels_key(w.labels))
                    .bind(w.transition.from.as_str())
                    .bind(w.transition.to.as_str())
                    .bind(w.transition.value)
                    .bind(w.transition.at)
                    .bind(w.tenant_id)
                    .fetch_one(&mut *tx)
                    .await?;
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
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT tenant_seq, rule, labels, from_state, to_state, value, at FROM alert_transitions \
                         WHERE tenant_id = ",
                    );
                    qb.push_bind(tenant_id);
                    if let Some(rule) = rule {
                        qb.push(" AND rule = ").push_bind(rule.to_string());
                    }
                    if let Some(before) = before_id {
                        qb.push(" AND tenant_seq < ").push_bind(before);
                    }
                    qb.push(" ORDER BY tenant_seq DESC LIMIT ").push_bind(limit);
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter()
                        .map(|row| {
                            Ok(TransitionRecord {
                                id: row.try_get("tenant_seq")?,
                                rule: text(row, "rule")?,
                                labels: labels_of(row)?,
                                from: state_of(&text(row, "from_state")?)?,
                                to: state_of(&text(row, "to_state")?)?,
                                value: row.try_get("value")?,
                                at: row.try_get("at")?,
                            })
                        })
                        .collect()
                }

                async fn insert_notifications(&self, notifications: &[NewNotification]) -> Result<u64> {
                    let mut tx = self.begin_write().await?;
                    let n = insert_notifications(&mut tx, notifications).await?;
                    tx.commit().await?;
                    Ok(n)
                }

                async fn list_alert_groups(&self, tenant_id: Option<i64>) -> Result<Vec<AlertGroupRecord>> {
                    let mut qb = QueryBuilder::<$db>::new(
                        "SELECT tenant_id, channel, labels, seq, flushed_at, firing, resolved FROM alert_groups",
                    );
                    tenant_filter(&mut qb, tenant_id);
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter()
                        .map(|row| {
                            let ids = |column: &str| -> Result<Vec<i64>> {
                                serde_json::from_str(&text(row, column)?).map_err(StoreError::corrupt)
                            };
                            Ok(AlertGroupRecord {
                                tenant_id: row.try_get("tenant_id")?,
                                channel: text(row, "channel")?,
                                labels: labels_of(row)?,
                                seq: row.try_get("seq")?,
                                flushed_at: row.try_get("flushed_at")?,
                                firing: ids("firing")?,
                                resolved: ids("resolved")?,
                            })
                        })
                        .collect()
                }

                async fn flush_alert_group(
                    &self,
                    g: &AlertGroupRecord,
                    notification: Option<&NewNotification>,
                    done: bool,
                ) -> Result<()> {
                    let labels = labels_key(&g.labels);
                    let hash = labels_hash(&labels);
                    let mut tx = self.begin_write().await?;
                    if let Some(n) = notification {
                        insert_notifications(&mut tx, std::slice::from_ref(n)).await?;
                    }
                    sqlx::query(&$sql("DELETE FROM alert_groups WHERE tenant_id = ? AND channel = ? AND group_hash = ?"))
                        .bind(g.tenant_id)
                        .bind(&g.channel)
                        .bind(&hash)
                        .execute(&mut *tx)
                        .await?;
                    if !done {
                        sqlx::query(&$sql(
                            "INSERT INTO alert_groups (tenant_id, channel, group_hash, labels, seq, flushed_at, \
                             firing, resolved) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        ))
                        .bind(g.tenant_id)
                        .bind(&g.channel)
                        .bind(&hash)
                        .bind(&labels)
                        .bind(g.seq)
                        .bind(g.flushed_at)
                        .bind(serde_json::to_string(&g.firing).expect("ids serialize"))
                        .bind(serde_json::to_string(&g.resolved).expect("ids serialize"))
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn due_notifications(&self, now: i64, limit: i64) -> Result<Vec<NotificationRecord>> {
                    let rows = sqlx::query(&$sql(&format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                         WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
                    )))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(notification_of).collect()
                }

                async fn claim_notification(&self, id: i64, seen_next_attempt_at: i64, lease_until: i64) -> Result<bool> {
                    let result = sqlx::query(&$sql(
                        "UPDATE notifications SET next_attempt_at = ? \
                         WHERE id = ? AND status = 'pending' AND next_attempt_at = ?",
                    ))
                    .bind(lease_until)
                    .bind(id)
                    .bind(seen_next_attempt_at)
                    .execute(self.writes())
                    .await?;
                    Ok(result.rows_affected() == 1)
                }

                async fn finish_attempt(&self, a: &AttemptRecord, outcome: AttemptOutcome) -> Result<()> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(&$sql(
                        "INSERT INTO delivery_attempts (notification_id, at, ok, status_code, error, duration_ms) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    ))
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
                    sqlx::query(&$sql(
                        "UPDATE notifications SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
                         delivered_at = ?, last_error = ? WHERE id = ?",
                    ))
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
                    let mut qb = QueryBuilder::<$db>::new(format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = "
                    ));
                    qb.push_bind(tenant_id);
                    if let Some(channel) = channel {
                        qb.push(" AND channel = ").push_bind(channel.to_string());
                    }
                    qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
                    let rows = qb.build().fetch_all(&self.pool).await?;
                    rows.iter().map(notification_of).collect()
                }

                async fn list_attempts(&self, notification_ids: &[i64]) -> Result<Vec<AttemptRecord>> {
                    if notification_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut qb = QueryBuilder::<$db>::new(
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
                                error: optional_text(row, "error")?,
                                duration_ms: row.try_get("duration_ms")?,
                            })
                        })
                        .collect()
                }

                async fn acquire_lease(&self, name: &str, owner: &str, now: i64, until: i64) -> Result<bool> {
                    // Leases of the whole installation use tenant 0, which no tenant has.
                    let taken = sqlx::query(&$sql(
                        "UPDATE alert_leases SET owner = ?, expires_at = ? \
                         WHERE tenant_id = 0 AND rule = ? AND (owner = ? OR expires_at < ?)",
                    ))
                    .bind(owner)
                    .bind(until)
                    .bind(name)
                    .bind(owner)
                    .bind(now)
                    .execute(self.writes())
                    .await?
                    .rows_affected();
                    if taken == 1 {
                        return Ok(true);
                    }
                    let inserted = sqlx::query(&$sql(&$ignore(
                        "INSERT INTO alert_leases (tenant_id, rule, owner, expires_at) VALUES (0, ?, ?, ?)",
                        "tenant_id, rule",
                    )))
                    .bind(name)
                    .bind(owner)
                    .bind(until)
                    .execute(self.writes())
                    .await?
                    .rows_affected();
                    if inserted == 1 {
                        return Ok(true);
                    }
                    // MariaDB counts an UPDATE that changes nothing as 0 rows: ask who holds it.
                    let row = sqlx::query(&$sql("SELECT owner FROM alert_leases WHERE tenant_id = 0 AND rule = ?"))
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(match row {
                        Some(row) => text(&row, "owner")? == owner,
                        None => false,
                    })
                }

                async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
                    sqlx::query(&$sql("DELETE FROM alert_leases WHERE tenant_id = 0 AND rule = ? AND owner = ?"))
                        .bind(name)
                        .bind(owner)
                        .execute(self.writes())
                        .await?;
                    Ok(())
                }

                async fn last_notifications_of(&self, instance_ids: &[i64]) -> Result<Vec<(i64, String, i64)>> {
                    let mut out = Vec::new();
                    // A batch of rules can hold many instances: a statement per 500 stays far
                    // below every database's limit of bound values.
                    for chunk in instance_ids.chunks(500) {
                        let mut qb = QueryBuilder::<$db>::new(
                            "SELECT instance_id, channel, MAX(created_at) AS at FROM notifications WHERE instance_id IN (",
                        );
                        let mut list = qb.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        qb.push(") GROUP BY instance_id, channel");
                        for row in qb.build().fetch_all(&self.pool).await? {
                            out.push((row.try_get("instance_id")?, text(&row, "channel")?, row.try_get("at")?));
                        }
                    }
                    Ok(out)
                }
            }
        }
    };
}

pub(crate) use sql_alert_store;
