//! Authentication: bearer tokens and dashboard session cookies to a `Principal`.
//!
//! Tokens are looked up by their SHA-256 and compared in constant time. Recently seen tokens
//! are cached for a few seconds so ingest does not hit the database per request; revoking a
//! token therefore takes effect within `CACHE_TTL`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{Principal, TokenHash, now_ms};
use crate::storage::{DynStore, Result};

pub const SESSION_COOKIE: &str = "microdash_session";
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 100_000;

pub struct Auth {
    store: DynStore,
    admin: Option<TokenHash>,
    cache: Mutex<HashMap<TokenHash, (Principal, Instant)>>,
}

impl Auth {
    pub fn new(store: DynStore, admin_token: Option<&str>) -> Self {
        Self { store, admin: admin_token.map(TokenHash::of), cache: Mutex::new(HashMap::new()) }
    }

    /// Resolves a bearer token; `None` when it is unknown.
    pub async fn token(&self, secret: &str) -> Result<Option<Principal>> {
        let hash = TokenHash::of(secret);
        if let Some(admin) = &self.admin
            && admin.matches(&hash)
        {
            return Ok(Some(Principal::Admin));
        }
        if let Some((principal, at)) = self.cache.lock().expect("auth cache poisoned").get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(principal.clone()));
        }
        let found = self.store.find_token(&hash).await?;
        if let Some(principal) = &found {
            let mut cache = self.cache.lock().expect("auth cache poisoned");
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (principal.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Resolves a session cookie; `None` when unknown or expired.
    pub async fn session(&self, cookie: &str) -> Result<Option<Principal>> {
        let found = self.store.find_session(&TokenHash::of(cookie)).await?;
        Ok(found.filter(|s| s.expires_at > now_ms()).map(|s| s.principal))
    }

    /// Forget cached tokens, e.g. after a tenant was deleted.
    pub fn invalidate(&self) {
        self.cache.lock().expect("auth cache poisoned").clear();
    }
}
