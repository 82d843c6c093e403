//! Tenant and token use cases, shared by the admin API and the CLI.

use microdash_model::{Scope, validate_tenant_name};

use crate::domain::Token;
use crate::storage::{DynStore, StoreError, TenantRecord};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("a token needs at least one scope (ingest, read, admin)")]
    NoScopes,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a tenant and its first token, which carries every scope of the tenant.
pub async fn create_tenant(
    store: &DynStore,
    name: &str,
    display_name: Option<&str>,
) -> Result<(TenantRecord, Token), TenantError> {
    create_tenant_with_token(store, name, display_name, Token::generate()).await
}

/// Creates a tenant whose first token (every scope) is `token`.
pub async fn create_tenant_with_token(
    store: &DynStore,
    name: &str,
    display_name: Option<&str>,
    token: Token,
) -> Result<(TenantRecord, Token), TenantError> {
    validate_tenant_name(name).map_err(|reason| TenantError::InvalidName { name: name.to_string(), reason })?;
    let tenant = store.create_tenant(name, display_name).await?;
    store.create_token(tenant.id, &token.hash(), &token.display_prefix(), &Scope::ALL).await?;
    Ok((tenant, token))
}

/// Creates another token for an existing tenant.
pub async fn create_token(store: &DynStore, tenant: &str, scopes: &[Scope]) -> Result<Token, TenantError> {
    if scopes.is_empty() {
        return Err(TenantError::NoScopes);
    }
    let record = store.get_tenant(tenant).await?.ok_or_else(|| StoreError::NotFound(format!("tenant {tenant:?}")))?;
    let token = Token::generate();
    store.create_token(record.id, &token.hash(), &token.display_prefix(), scopes).await?;
    Ok(token)
}
