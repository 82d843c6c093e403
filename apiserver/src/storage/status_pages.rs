//! Public status pages (docs/status-pages.md): a tenant's title and chosen components under a
//! slug that is unique across tenants, since the public address names no tenant.

use async_trait::async_trait;

use super::Result;

/// A stored status page; `components` is the JSON array the API took.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPageRecord {
    pub slug: String,
    pub tenant_id: i64,
    pub title: String,
    pub components: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait StatusPageStore: Send + Sync {
    /// Creates or replaces the tenant's page `slug`; answers whether it was created. A slug
    /// another tenant holds is a `Conflict`.
    async fn put_status_page(&self, page: &StatusPageRecord) -> Result<bool>;
    /// The page `slug` of a live tenant, whoever's it is (the public pages look up by slug).
    async fn status_page(&self, slug: &str) -> Result<Option<StatusPageRecord>>;
    /// The tenant's pages, by slug.
    async fn list_status_pages(&self, tenant_id: i64) -> Result<Vec<StatusPageRecord>>;
    /// Deletes the tenant's page `slug`; answers whether there was one.
    async fn delete_status_page(&self, tenant_id: i64, slug: &str) -> Result<bool>;
}

/// Implements `StatusPageStore` for `$store` (which has `pool` and `begin_write`), with the
/// dialect points of `sql_alert_store!`.
macro_rules! sql_status_page_store {
    (
        store: $store:ty,
        row: $row:ty,
        sql: $sql:path,
        insert_ignore: $ignore:path $(,)?
    ) => {
        mod sql_status_page_impl {
            use async_trait::async_trait;
            use sqlx::Row;

            use super::*;
            use crate::storage::status_pages::{StatusPageRecord, StatusPageStore};
            use crate::storage::{Result, StoreError};

            const COLUMNS: &str = "p.slug, p.tenant_id, p.title, p.components, p.created_at, p.updated_at";

            fn page_of(row: &$row) -> Result<StatusPageRecord> {
                Ok(StatusPageRecord {
                    slug: row.try_get("slug")?,
                    tenant_id: row.try_get("tenant_id")?,
                    title: row.try_get("title")?,
                    components: row.try_get("components")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            #[async_trait]
            impl StatusPageStore for $store {
                async fn put_status_page(&self, page: &StatusPageRecord) -> Result<bool> {
                    // Insert first: a new slug needs no read; a taken one is then either the
                    // tenant's own (updated) or another's (a conflict).
                    let mut tx = self.begin_write().await?;
                    let inserted = sqlx::query(&$sql(&$ignore(
                        "INSERT INTO status_pages (slug, tenant_id, title, components, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                        "slug",
                    )))
                    .bind(&page.slug)
                    .bind(page.tenant_id)
                    .bind(&page.title)
                    .bind(&page.components)
                    .bind(page.created_at)
                    .bind(page.updated_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        let owner: Option<i64> =
                            sqlx::query_scalar(&$sql("SELECT tenant_id FROM status_pages WHERE slug = ?"))
                                .bind(&page.slug)
                                .fetch_optional(&mut *tx)
                                .await?;
                        if owner != Some(page.tenant_id) {
                            return Err(StoreError::Conflict(format!("status page {:?}", page.slug)));
                        }
                        sqlx::query(&$sql(
                            "UPDATE status_pages SET title = ?, components = ?, updated_at = ? \
                             WHERE slug = ? AND tenant_id = ?",
                        ))
                        .bind(&page.title)
                        .bind(&page.components)
                        .bind(page.updated_at)
                        .bind(&page.slug)
                        .bind(page.tenant_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(inserted == 1)
                }

                async fn status_page(&self, slug: &str) -> Result<Option<StatusPageRecord>> {
                    let row = sqlx::query(&$sql(&format!(
                        "SELECT {COLUMNS} FROM status_pages p JOIN tenants t ON t.id = p.tenant_id \
                         WHERE p.slug = ? AND t.deleted_at IS NULL"
                    )))
                    .bind(slug)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(page_of).transpose()
                }

                async fn list_status_pages(&self, tenant_id: i64) -> Result<Vec<StatusPageRecord>> {
                    let rows = sqlx::query(&$sql(&format!(
                        "SELECT {COLUMNS} FROM status_pages p WHERE p.tenant_id = ? ORDER BY p.slug"
                    )))
                    .bind(tenant_id)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(page_of).collect()
                }

                async fn delete_status_page(&self, tenant_id: i64, slug: &str) -> Result<bool> {
                    Ok(sqlx::query(&$sql("DELETE FROM status_pages WHERE tenant_id = ? AND slug = ?"))
                        .bind(tenant_id)
                        .bind(slug)
                        .execute(self.writes())
                        .await?
                        .rows_affected()
                        > 0)
                }
            }
        }
    };
}

pub(crate) use sql_status_page_store;
