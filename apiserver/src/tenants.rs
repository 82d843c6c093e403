//! Tenant and token use cases, shared by the admin API and the CLI.

use microdash_model::{Scope, validate_tenant_name};

use crate::domain::Token;
use crate::storage::tenancy::PURGE_CHUNK;
use crate::storage::{DynStore, StoreError, TenantRecord, TokenInfo};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("a token needs at least one scope (ingest, read, admin)")]
    NoScopes,
    #[error("expires_in: {0}")]
    InvalidExpiry(String),
    #[error("token: {0}")]
    InvalidToken(&'static str),
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
    store.create_token(tenant.id, &token.hash(), &token.display_prefix(), &Scope::ALL, None).await?;
    Ok((tenant, token))
}

/// The longest `expires_in`: 100 years (and nothing that overflows a millisecond timestamp).
const MAX_EXPIRES_IN_MS: i64 = 100 * 365 * 86_400_000;

/// Parses an `expires_in` like `30d`, `12h` or `3s` into milliseconds: at least 1 s, at most
/// 100 years.
pub fn parse_expires_in(text: &str) -> Result<i64, TenantError> {
    let parsed = humantime::parse_duration(text.trim())
        .map_err(|e| TenantError::InvalidExpiry(format!("{text:?} is not a duration like 30d, 12h or 3s ({e})")))?;
    let ms = i64::try_from(parsed.as_millis()).unwrap_or(i64::MAX);
    if ms < 1_000 {
        return Err(TenantError::InvalidExpiry("must be at least 1s".into()));
    }
    if ms > MAX_EXPIRES_IN_MS {
        return Err(TenantError::InvalidExpiry("must be at most 100 years (36500d)".into()));
    }
    Ok(ms)
}

/// A token that was just made: its ids and expiry, and the secret (shown once).
#[derive(Debug)]
pub struct NewToken {
    /// Its number within the tenant: the `id` shown and revoked by.
    pub number: i64,
    pub token: Token,
    pub expires_at: Option<i64>,
}

/// Creates another token for an existing tenant; `expires_in` like `30d` (None = never).
pub async fn create_token(
    store: &DynStore,
    tenant: &str,
    scopes: &[Scope],
    expires_in: Option<&str>,
) -> Result<NewToken, TenantError> {
    register_token(store, tenant, Token::generate(), scopes, expires_in).await
}

/// Registers a token somebody already holds (an operator's Secret after the database was
/// restored or the tenant recreated) instead of generating one. The secret must be a strong one
/// ([`Token::from_secret`]); one that is registered already, to this tenant or another, is a
/// `Conflict`.
pub async fn register_token(
    store: &DynStore,
    tenant: &str,
    token: Token,
    scopes: &[Scope],
    expires_in: Option<&str>,
) -> Result<NewToken, TenantError> {
    if scopes.is_empty() {
        return Err(TenantError::NoScopes);
    }
    let expires_in = expires_in.map(parse_expires_in).transpose()?;
    let record = store.get_tenant(tenant).await?.ok_or_else(|| StoreError::NotFound(format!("tenant {tenant:?}")))?;
    if store.find_token(&token.hash()).await?.is_some() {
        return Err(StoreError::Conflict("a token with this secret".into()).into());
    }
    let expires_at = expires_in.map(|ms| crate::domain::now_ms().saturating_add(ms));
    let ids = store.create_token(record.id, &token.hash(), &token.display_prefix(), scopes, expires_at).await?;
    Ok(NewToken { number: ids.number, token, expires_at })
}

/// The tokens of a tenant (never their secrets).
pub async fn list_tokens(store: &DynStore, tenant: &str) -> Result<Vec<TokenInfo>, TenantError> {
    let record = store.get_tenant(tenant).await?.ok_or_else(|| StoreError::NotFound(format!("tenant {tenant:?}")))?;
    Ok(store.list_tokens(record.id).await?)
}

/// Revokes the token numbered `number` of a tenant: refused everywhere within a second, its
/// streams and MQTT sessions closed. Answers the tenant's id and the token's own id;
/// `NotFound` when the tenant has no such token.
pub async fn revoke_token(store: &DynStore, tenant: &str, number: i64) -> Result<(i64, i64), TenantError> {
    let record = store.get_tenant(tenant).await?.ok_or_else(|| StoreError::NotFound(format!("tenant {tenant:?}")))?;
    let Some(token_id) = store.revoke_token(record.id, number).await? else {
        return Err(StoreError::NotFound(format!("token {number} of tenant {tenant:?}")).into());
    };
    Ok((record.id, token_id))
}

/// Deletes a tenant: hidden and its tokens revoked at once (every server process closes its
/// streams and MQTT sessions within a second), its data removed in chunks of
/// `PURGE_CHUNK` rows; `progress` hears the rows removed so far. False when there is no such
/// tenant.
pub async fn delete_tenant(store: &DynStore, name: &str, mut progress: impl FnMut(u64)) -> Result<bool, TenantError> {
    let Some(id) = store.mark_tenant_deleted(name).await? else { return Ok(false) };
    purge_tenant(store, id, &mut progress).await?;
    Ok(true)
}

/// Removes what a tenant marked deleted still owns, chunk by chunk.
pub async fn purge_tenant(store: &DynStore, id: i64, progress: &mut impl FnMut(u64)) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let n = store.purge_deleted_tenant(id, PURGE_CHUNK).await?;
        if n == 0 {
            return Ok(removed);
        }
        removed += n;
        progress(removed);
        // Let writers in between chunks, those of other processes too (the CLI purges while
        // the server writes; on SQLite they share one write lock).
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
