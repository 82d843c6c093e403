//! Authentication: bearer tokens and dashboard session cookies to a `Principal`, and the end
//! of a principal's access (token revoked or expired, tenant deleted).
//!
//! Tokens are looked up by their SHA-256 and compared in constant time. Recently seen tokens
//! are cached for a few seconds so ingest does not hit the database per request. No cache
//! outlives a revocation: every revocation and tenant deletion writes a row to `auth_events`
//! in its own transaction, and each server process polls that table every
//! `POLL_INTERVAL` (one indexed query), whoever made the change (this process, another
//! replica, or `microdash tenant delete` / `token revoke` on the database directly). An
//! event drops the cached entries at once and adds the tenant or token to the revoked sets,
//! which a lookup already in flight checks before it answers, and which every open stream and
//! MQTT session waits on (`until_revoked`) to close. Expiry is checked on every use, cached
//! or not, and ends open streams and sessions at the expiry time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::domain::{Principal, TokenHash, now_ms};
use crate::storage::{AuthEvent, DynStore, Result};

pub const SESSION_COOKIE: &str = "microdash_session";
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 100_000;
/// How often `auth_events` is polled: a revocation elsewhere takes effect within this.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the last use of tokens is written.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);
/// Auth events are kept this long (a process polls them every `POLL_INTERVAL`).
const EVENTS_KEPT_MS: i64 = 86_400_000;

/// Tenants deleted and tokens revoked while this process runs. Ids are never reused, so the
/// sets only ever grow, by one id per deletion or revocation.
#[derive(Debug, Default)]
pub struct Revoked {
    tenants: HashSet<i64>,
    tokens: HashSet<i64>,
}

impl Revoked {
    pub fn covers(&self, tenant_id: i64, token_id: Option<i64>) -> bool {
        self.tenants.contains(&tenant_id) || token_id.is_some_and(|t| self.tokens.contains(&t))
    }

    pub fn tenant(&self, tenant_id: i64) -> bool {
        self.tenants.contains(&tenant_id)
    }
}

pub struct Auth {
    store: DynStore,
    admin: Option<TokenHash>,
    cache: Mutex<HashMap<TokenHash, (Principal, Instant)>>,
    revoked: watch::Sender<Revoked>,
    /// Token id → when it was last used, not yet written.
    used: Mutex<HashMap<i64, i64>>,
}

/// A tenant principal's token expiry is past.
fn expired(principal: &Principal, now: i64) -> bool {
    matches!(principal, Principal::Tenant { expires_at: Some(at), .. } if *at <= now)
}

impl Auth {
    pub fn new(store: DynStore, admin_token: Option<&str>) -> Self {
        Self {
            store,
            admin: admin_token.map(TokenHash::of),
            cache: Mutex::new(HashMap::new()),
            revoked: watch::channel(Revoked::default()).0,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// False when the principal's tenant was deleted or its token revoked or expired.
    fn usable(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Admin => true,
            Principal::Tenant { tenant_id, token_id, .. } => {
                !expired(principal, now_ms()) && !self.revoked.borrow().covers(*tenant_id, Some(*token_id))
            }
        }
    }

    fn record_use(&self, principal: &Principal) {
        if let Principal::Tenant { token_id, .. } = principal {
            self.used.lock().expect("auth use poisoned").insert(*token_id, now_ms());
        }
    }

    /// Resolves a bearer token; `None` when it is unknown, revoked or expired, or its tenant
    /// was deleted.
    pub async fn token(&self, secret: &str) -> Result<Option<Principal>> {
        let hash = TokenHash::of(secret);
        if let Some(admin) = &self.admin
            && admin.matches(&hash)
        {
            return Ok(Some(Principal::Admin));
        }
        let cached = self
            .cache
            .lock()
            .expect("auth cache poisoned")
            .get(&hash)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(principal, _)| principal.clone());
        let found = match cached {
            Some(principal) => Some(principal),
            None => {
                let found = self.store.find_token(&hash).await?;
                if let Some(principal) = &found {
                    let mut cache = self.cache.lock().expect("auth cache poisoned");
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(hash, (principal.clone(), Instant::now()));
                }
                found
            }
        };
        // Checked after the lookup too: a revocation may have arrived while it ran.
        let found = found.filter(|p| self.usable(p));
        if let Some(principal) = &found {
            self.record_use(principal);
        }
        Ok(found)
    }

    /// Resolves a session cookie; `None` when unknown or expired, or when its token was
    /// revoked or expired or its tenant deleted.
    pub async fn session(&self, cookie: &str) -> Result<Option<Principal>> {
        let found = self.store.find_session(&TokenHash::of(cookie)).await?;
        let found = found.filter(|s| s.expires_at > now_ms()).map(|s| s.principal).filter(|p| self.usable(p));
        if let Some(principal) = &found {
            self.record_use(principal);
        }
        Ok(found)
    }

    /// Applies deletions and revocations: cached entries go, open streams and sessions close.
    pub fn apply(&self, events: &[AuthEvent]) {
        if events.is_empty() {
            return;
        }
        self.revoked.send_modify(|revoked| {
            for event in events {
                match event.token_id {
                    Some(token) => revoked.tokens.insert(token),
                    None => revoked.tenants.insert(event.tenant_id),
                };
            }
        });
        let revoked = self.revoked.borrow();
        self.cache.lock().expect("auth cache poisoned").retain(|_, (principal, _)| match principal {
            Principal::Tenant { tenant_id, token_id, .. } => !revoked.covers(*tenant_id, Some(*token_id)),
            Principal::Admin => true,
        });
        drop(revoked);
        for event in events.iter().filter(|e| e.token_id.is_none()) {
            self.store.forget_tenant(event.tenant_id);
        }
    }

    /// Applies a tenant deletion made by this process at once (the poll would within
    /// `POLL_INTERVAL`).
    pub fn tenant_deleted(&self, tenant_id: i64) {
        self.apply(&[AuthEvent { id: 0, tenant_id, token_id: None }]);
    }

    /// Applies a token revocation made by this process at once.
    pub fn token_revoked(&self, tenant_id: i64, token_id: i64) {
        self.apply(&[AuthEvent { id: 0, tenant_id, token_id: Some(token_id) }]);
    }

    /// True when the tenant was deleted while this process runs.
    pub fn tenant_is_deleted(&self, tenant_id: i64) -> bool {
        self.revoked.borrow().tenant(tenant_id)
    }

    /// Resolves when the tenant is deleted, the token (when given) revoked, or `expires_at`
    /// (Unix ms) reached: streams and MQTT sessions end with it.
    pub fn until_revoked(
        &self,
        tenant_id: i64,
        token_id: Option<i64>,
        expires_at: Option<i64>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut revoked = self.revoked.subscribe();
        async move {
            let expiry = async {
                match expires_at {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)).await
                    }
                    None => std::future::pending().await,
                }
            };
            let gone = async {
                if revoked.wait_for(|r| r.covers(tenant_id, token_id)).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = expiry => {}
                _ = gone => {}
            }
        }
    }

    /// Forget cached tokens.
    pub fn invalidate(&self) {
        self.cache.lock().expect("auth cache poisoned").clear();
    }

    /// Polls `auth_events` every `POLL_INTERVAL` and writes the last use of tokens every
    /// `TOUCH_INTERVAL`, until the process exits.
    pub fn start_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut last = loop {
                match auth.store.last_auth_event().await {
                    Ok(id) => break id,
                    Err(err) => {
                        tracing::warn!(%err, "Reading auth events failed; retrying.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut touched = Instant::now();
            let mut pruned: Option<Instant> = None;
            loop {
                tick.tick().await;
                match auth.store.auth_events_after(last).await {
                    Ok(events) => {
                        if let Some(newest) = events.last() {
                            last = newest.id;
                            tracing::info!(events = events.len(), "Applying token revocations and tenant deletions.");
                            auth.apply(&events);
                        }
                    }
                    Err(err) => tracing::debug!(%err, "Polling auth events failed; will retry."),
                }
                if touched.elapsed() >= TOUCH_INTERVAL {
                    touched = Instant::now();
                    let used: Vec<(i64, i64)> = auth.used.lock().expect("auth use poisoned").drain().collect();
                    if !used.is_empty()
                        && let Err(err) = auth.store.touch_tokens(&used).await
                    {
                        tracing::debug!(%err, "Recording the last use of tokens failed.");
                    }
                }
                if pruned.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                    pruned = Some(Instant::now());
                    if let Err(err) = auth.store.prune_auth_events(now_ms() - EVENTS_KEPT_MS).await {
                        tracing::debug!(%err, "Pruning old auth events failed.");
                    }
                }
            }
        })
    }
}
