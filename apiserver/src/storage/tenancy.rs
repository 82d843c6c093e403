//! Tenancy over time: deleting a tenant in bounded chunks, the token lifecycle (list, expiry,
//! revocation, last use) and the `auth_events` log every server process polls, so that a
//! deletion or revocation made anywhere (the CLI, another replica) reaches them all within a
//! second.
//!
//! Deleting a tenant is two steps. `mark_tenant_deleted` hides it at once, in one small
//! transaction: the tenant row gets `deleted_at` and gives its name up (`~<id>`, which no
//! tenant name can be), its tokens, sessions, rules, channels, dashboards and pending
//! notifications go, and an auth event is written. From then on nothing reads or writes the
//! tenant: lookups skip marked tenants, and the write path refuses their batches. Then
//! `purge_deleted_tenant` removes the rest (samples, rollups, dedupe ids, alert history,
//! outbox, series), at most `limit` rows per call and transaction, and the tenant row last.
//! Ids are never reused, so even a purge cut short by a crash cannot show the rows to
//! anybody else; the server finishes it after its next start.

use async_trait::async_trait;
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use super::Result;
use crate::domain::TokenHash;

/// Rows per chunk of a tenant's purge: one short transaction each.
pub const PURGE_CHUNK: i64 = 5_000;

/// A token as the admin sees it: never its secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenInfo {
    /// The token's number within its tenant (1, 2, 3, …; never given twice): what the APIs,
    /// the CLI and the dashboard show and revoke by.
    #[serde(rename = "id")]
    pub number: i64,
    /// The server's own id of the token (sessions, auth events, caches); never shown.
    #[serde(skip)]
    pub token_id: i64,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; absent = never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Unix milliseconds, to within a few seconds; absent = never used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

/// The two ids of a token just stored: the server's own (`token_id`, global, never shown) and
/// its number within the tenant (shown as its `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIds {
    pub token_id: i64,
    pub number: i64,
}

/// A deleted tenant (`token_id` = None) or a revoked token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthEvent {
    pub id: i64,
    pub tenant_id: i64,
    pub token_id: Option<i64>,
}

#[async_trait]
pub trait TenancyStore: Send + Sync {
    /// Hides the tenant at once and revokes its tokens; returns its id, `None` when there is
    /// no such (live) tenant.
    async fn mark_tenant_deleted(&self, name: &str) -> Result<Option<i64>>;
    /// Deletes at most about `limit` rows of a marked tenant; returns how many. 0 means done:
    /// the tenant row itself is gone.
    async fn purge_deleted_tenant(&self, tenant_id: i64, limit: i64) -> Result<u64>;
    /// Tenants marked deleted whose purge has not finished.
    async fn deleted_tenants(&self) -> Result<Vec<i64>>;

    /// Stores a token's hash; answers its ids (the next number of the tenant's, never one given
    /// before). `expires_at`: Unix ms; `None` = never expires.
    async fn create_token(
        &self,
        tenant_id: i64,
        hash: &TokenHash,
        prefix: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
    ) -> Result<TokenIds>;
    async fn list_tokens(&self, tenant_id: i64) -> Result<Vec<TokenInfo>>;
    /// Deletes the tenant's token numbered `number` (and its sessions) and writes an auth
    /// event; answers the token's own id, `None` when the tenant has no such token.
    async fn revoke_token(&self, tenant_id: i64, number: i64) -> Result<Option<i64>>;
    /// Records `(token id, used at)`; a later time only ever moves `last_used_at` forward.
    async fn touch_tokens(&self, used: &[(i64, i64)]) -> Result<()>;

    /// Sets the intake limits of a live tenant (nothing when there is no such tenant).
    async fn set_limits(&self, name: &str, limits: &super::TenantLimits) -> Result<()>;
    /// The name and intake limits of a live tenant; `None` when it does not exist (any more).
    async fn limits_of(&self, tenant_id: i64) -> Result<Option<(String, super::TenantLimits)>>;
    /// `(metric, labels JSON)` of every series of the tenant, for the series cap.
    async fn series_keys(&self, tenant_id: i64) -> Result<Vec<(String, String)>>;

    /// The tenant's exporters, `(name, spec JSON)` by name.
    async fn list_exporters(&self, tenant_id: i64) -> Result<Vec<(String, String)>>;
    /// Every live tenant's exporters: `(tenant id, tenant name, exporter name, spec JSON)`.
    async fn all_exporters(&self) -> Result<Vec<(i64, String, String, String)>>;
    /// Creates or replaces an exporter; answers whether it was created.
    async fn put_exporter(&self, tenant_id: i64, name: &str, spec: &str, now: i64) -> Result<bool>;
    /// Deletes an exporter; answers whether there was one.
    async fn delete_exporter(&self, tenant_id: i64, name: &str) -> Result<bool>;

    /// Auth events after `after`, oldest first.
    async fn auth_events_after(&self, after: i64) -> Result<Vec<AuthEvent>>;
    /// The newest auth event id (0 when none).
    async fn last_auth_event(&self) -> Result<i64>;
    /// Forgets auth events written before `before` (Unix ms).
    async fn prune_auth_events(&self, before: i64) -> Result<u64>;
}

/// `DELETE … WHERE key IN (SELECT key … LIMIT ?)` (SQLite, PostgreSQL).
pub(crate) fn chunk_by_subquery(table: &str, key: &str, filter: &str) -> String {
    format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {filter} LIMIT ?)")
}

/// `DELETE … LIMIT ?` (MariaDB, which has no LIMIT in an IN subquery).
pub(crate) fn chunk_by_limit(table: &str, _key: &str, filter: &str) -> String {
    format!("DELETE FROM {table} WHERE {filter} LIMIT ?")
}

/// What a tenant owns besides samples and rollups, purged in this order: the tables keyed
/// by its series come first (in `purge_deleted_tenant`), the series themselves last.
pub(crate) const OWNED: [(&str, &str); 5] = [
    ("dedupe", "tenant_id, dedupe_id"),
    ("notifications", "id"),
    ("alert_transitions", "id"),
    ("alert_instances", "id"),
    ("series", "id"),
];

/// Implements `TenancyStore` for `$store` (which has `pool` and `begin_write`). `series_keys`:
/// the query of `(metric, labels)` of a tenant's series, which must decode as text.
macro_rules! sql_tenancy_store {
    (
        store: $store:ty,
        db: $db:ty,
        sql: $sql:path,
        chunk: $chunk:path,
        series_keys: $series_keys:expr $(,)?
    ) => {
        mod sql_tenancy_impl {
            use async_trait::async_trait;
            use microdash_model::Scope;
            use sqlx::Row;

            use super::*;
            use crate::domain::TokenHash;
            use crate::domain::token::parse_scopes;
            use crate::storage::tenancy::{AuthEvent, OWNED, TenancyStore, TokenIds, TokenInfo};
            use crate::storage::{Resolution, Result, Store, StoreError};

            #[async_trait]
            impl TenancyStore for $store {
                async fn mark_tenant_deleted(&self, name: &str) -> Result<Option<i64>> {
                    let now = crate::domain::now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some(id) = sqlx::query_scalar::<_, i64>(&$sql(
                        "SELECT id FROM tenants WHERE name = ? AND deleted_at IS NULL",
                    ))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?
                    else {
                        return Ok(None);
                    };
                    sqlx::query(&$sql("UPDATE tenants SET deleted_at = ?, name = ? WHERE id = ?"))
                        .bind(now)
                        .bind(format!("~{id}"))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    // Small tables, gone in this transaction: nothing may act for the tenant
                    // any more (tokens take their sessions along).
                    for table in [
                        "tokens",
                        "alert_rules",
                        "notification_channels",
                        "silences",
                        "alert_groups",
                        "dashboards",
                        "exporters",
                        "status_pages",
                    ] {
                        sqlx::query(&$sql(&format!("DELETE FROM {table} WHERE tenant_id = ?")))
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(&$sql("DELETE FROM notifications WHERE tenant_id = ? AND status = 'pending'"))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&$sql("INSERT INTO auth_events (tenant_id, token_id, at) VALUES (?, NULL, ?)"))
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    self.series_ids.forget_tenant(id);
                    if let Some(head) = self.head.get() {
                        head.forget_tenant(id);
                    }
                    Ok(Some(id))
                }

                async fn purge_deleted_tenant(&self, tenant_id: i64, limit: i64) -> Result<u64> {
                    let marked: Option<i64> =
                        sqlx::query_scalar(&$sql("SELECT id FROM tenants WHERE id = ? AND deleted_at IS NOT NULL"))
                            .bind(tenant_id)
                            .fetch_optional(&self.pool)
                            .await?;
                    if marked.is_none() {
                        return Ok(0);
                    }
                    for resolution in [Resolution::Raw, Resolution::OneMinute, Resolution::FiveMinutes] {
                        let n = Store::purge(self, tenant_id, resolution, i64::MAX, limit).await?;
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                    for resolution in [Resolution::Raw, Resolution::OneMinute, Resolution::FiveMinutes] {
                        let n = crate::storage::chunk_store::ChunkStore::purge_chunks(self, tenant_id, resolution, i64::MAX, limit)
                            .await?;
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                    for (table, key) in OWNED {
                        let _gate = self.purge_gate().await;
                        let n = sqlx::query(&$sql(&$chunk(table, key, "tenant_id = ?")))
                            .bind(tenant_id)
                            .bind(limit)
                            .execute(self.writes())
                            .await?
                            .rows_affected();
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                    // Anything left (rows that cascade) goes with the tenant row.
                    let _gate = self.purge_gate().await;
                    sqlx::query(&$sql("DELETE FROM tenants WHERE id = ? AND deleted_at IS NOT NULL"))
                        .bind(tenant_id)
                        .execute(self.writes())
                        .await?;
                    Ok(0)
                }

                async fn deleted_tenants(&self) -> Result<Vec<i64>> {
                    Ok(sqlx::query_scalar("SELECT id FROM tenants WHERE deleted_at IS NOT NULL ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn create_token(
                    &self,
                    tenant_id: i64,
                    hash: &TokenHash,
                    prefix: &str,
                    scopes: &[Scope],
                    expires_at: Option<i64>,
                ) -> Result<TokenIds> {
                    // The tenant row's counter, bumped in the token's transaction: the row lock
                    // (or SQLite's single writer) keeps two creations from taking one number,
                    // and a revoked token's number is never handed out again.
                    let mut tx = self.begin_write().await?;
                    sqlx::query(&$sql("UPDATE tenants SET token_seq = token_seq + 1 WHERE id = ?"))
                        .bind(tenant_id)
                        .execute(&mut *tx)
                        .await?;
                    let number: i64 = sqlx::query_scalar(&$sql("SELECT token_seq FROM tenants WHERE id = ?"))
                        .bind(tenant_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    // RETURNING: SQLite 3.35+, PostgreSQL, MariaDB 10.5+.
                    let token_id: i64 = sqlx::query_scalar(&$sql(
                        "INSERT INTO tokens (tenant_id, hash, prefix, scopes, created_at, expires_at, tenant_seq) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    ))
                    .bind(tenant_id)
                    .bind(&hash.0[..])
                    .bind(prefix)
                    .bind(crate::domain::token::format_scopes(scopes))
                    .bind(crate::domain::now_ms())
                    .bind(expires_at)
                    .bind(number)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(TokenIds { token_id, number })
                }

                async fn list_tokens(&self, tenant_id: i64) -> Result<Vec<TokenInfo>> {
                    let rows = sqlx::query(&$sql(
                        "SELECT id, tenant_seq, prefix, scopes, created_at, expires_at, last_used_at FROM tokens \
                         WHERE tenant_id = ? ORDER BY tenant_seq",
                    ))
                    .bind(tenant_id)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            let scopes: String = row.try_get("scopes")?;
                            Ok(TokenInfo {
                                number: row.try_get("tenant_seq")?,
                                token_id: row.try_get("id")?,
                                prefix: row.try_get("prefix")?,
                                scopes: parse_scopes(&scopes)
                                    .map_err(StoreError::corrupt)?,
                                created_at: row.try_get("created_at")?,
                                expires_at: row.try_get("expires_at")?,
                                last_used_at: row.try_get("last_used_at")?,
                            })
                        })
                        .collect()
                }

                async fn revoke_token(&self, tenant_id: i64, number: i64) -> Result<Option<i64>> {
                    let mut tx = self.begin_write().await?;
                    let Some(token_id) = sqlx::query_scalar::<_, i64>(&$sql(
                        "SELECT id FROM tokens WHERE tenant_id = ? AND tenant_seq = ?",
                    ))
                    .bind(tenant_id)
                    .bind(number)
                    .fetch_optional(&mut *tx)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let deleted = sqlx::query(&$sql("DELETE FROM tokens WHERE id = ?"))
                        .bind(token_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        return Ok(None);
                    }
                    sqlx::query(&$sql("INSERT INTO auth_events (tenant_id, token_id, at) VALUES (?, ?, ?)"))
                        .bind(tenant_id)
                        .bind(token_id)
                        .bind(crate::domain::now_ms())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(token_id))
                }

                async fn touch_tokens(&self, used: &[(i64, i64)]) -> Result<()> {
                    for &(id, at) in used {
                        sqlx::query(&$sql(
                            "UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                        ))
                        .bind(at)
                        .bind(id)
                        .bind(at)
                        .execute(self.writes())
                        .await?;
                    }
                    Ok(())
                }

                async fn set_limits(&self, name: &str, limits: &crate::storage::TenantLimits) -> Result<()> {
                    sqlx::query(&$sql(
                        "UPDATE tenants SET limit_samples_per_second = ?, limit_series = ? \
                         WHERE name = ? AND deleted_at IS NULL",
                    ))
                    .bind(limits.samples_per_second)
                    .bind(limits.series)
                    .bind(name)
                    .execute(self.writes())
                    .await?;
                    Ok(())
                }

                async fn limits_of(&self, tenant_id: i64) -> Result<Option<(String, crate::storage::TenantLimits)>> {
                    let row = sqlx::query(&$sql(
                        "SELECT name, limit_samples_per_second, limit_series FROM tenants \
                         WHERE id = ? AND deleted_at IS NULL",
                    ))
                    .bind(tenant_id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|row| {
                        let limits = crate::storage::TenantLimits {
                            samples_per_second: row.try_get("limit_samples_per_second")?,
                            series: row.try_get("limit_series")?,
                        };
                        Ok((row.try_get("name")?, limits))
                    })
                    .transpose()
                }

                async fn series_keys(&self, tenant_id: i64) -> Result<Vec<(String, String)>> {
                    Ok(sqlx::query_as(&$sql($series_keys)).bind(tenant_id).fetch_all(&self.pool).await?)
                }

                async fn auth_events_after(&self, after: i64) -> Result<Vec<AuthEvent>> {
                    let rows = sqlx::query(&$sql(
                        "SELECT id, tenant_id, token_id FROM auth_events WHERE id > ? ORDER BY id LIMIT 10000",
                    ))
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(AuthEvent {
                                id: row.try_get("id")?,
                                tenant_id: row.try_get("tenant_id")?,
                                token_id: row.try_get("token_id")?,
                            })
                        })
                        .collect()
                }

                async fn last_auth_event(&self) -> Result<i64> {
                    let id: Option<i64> =
                        sqlx::query_scalar("SELECT MAX(id) FROM auth_events").fetch_one(&self.pool).await?;
                    Ok(id.unwrap_or(0))
                }

                async fn list_exporters(&self, tenant_id: i64) -> Result<Vec<(String, String)>> {
                    let rows = sqlx::query(&$sql("SELECT name, spec FROM exporters WHERE tenant_id = ? ORDER BY name"))
                        .bind(tenant_id)
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("spec")?))).collect()
                }

                async fn all_exporters(&self) -> Result<Vec<(i64, String, String, String)>> {
                    let rows = sqlx::query(
                        "SELECT e.tenant_id, t.name AS tenant, e.name, e.spec FROM exporters e \
                         JOIN tenants t ON t.id = e.tenant_id WHERE t.deleted_at IS NULL ORDER BY e.tenant_id, e.name",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter()
                        .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("tenant")?, r.try_get("name")?, r.try_get("spec")?)))
                        .collect()
                }

                async fn put_exporter(&self, tenant_id: i64, name: &str, spec: &str, now: i64) -> Result<bool> {
                    let mut tx = self.begin_write().await?;
                    let exists = sqlx::query_scalar::<_, i64>(&$sql(
                        "SELECT tenant_id FROM exporters WHERE tenant_id = ? AND name = ?",
                    ))
                    .bind(tenant_id)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                    let sql = if exists {
                        "UPDATE exporters SET spec = ?, updated_at = ? WHERE tenant_id = ? AND name = ?"
                    } else {
                        "INSERT INTO exporters (spec, updated_at, tenant_id, name) VALUES (?, ?, ?, ?)"
                    };
                    sqlx::query(&$sql(sql)).bind(spec).bind(now).bind(tenant_id).bind(name).execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(!exists)
                }

                async fn delete_exporter(&self, tenant_id: i64, name: &str) -> Result<bool> {
                    Ok(sqlx::query(&$sql("DELETE FROM exporters WHERE tenant_id = ? AND name = ?"))
                        .bind(tenant_id)
                        .bind(name)
                        .execute(self.writes())
                        .await?
                        .rows_affected()
                        > 0)
                }

                async fn prune_auth_events(&self, before: i64) -> Result<u64> {
                    Ok(sqlx::query(&$sql("DELETE FROM auth_events WHERE at < ?"))
                        .bind(before)
                        .execute(self.writes())
                        .await?
                        .rows_affected())
                }
            }
        }
    };
}

pub(crate) use sql_tenancy_store;
