//! The `Caller` extractor: who is calling, from `Authorization: Bearer` or the session cookie.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use microdash_model::Scope;

use crate::auth::SESSION_COOKIE;
use crate::domain::Principal;
use crate::http::AppState;
use crate::http::error::{AppError, AppResult};
use crate::telemetry::reason;

pub struct Caller(pub Principal);

/// A tenant-scoped caller, after its scope was checked.
pub struct TenantCaller {
    pub tenant_id: i64,
    pub tenant: String,
    pub token_id: i64,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> AppResult<TenantCaller> {
        match &self.0 {
            Principal::Tenant { tenant_id, tenant, token_id, scopes } => {
                if scopes.contains(&scope) {
                    Ok(TenantCaller { tenant_id: *tenant_id, tenant: tenant.clone(), token_id: *token_id })
                } else {
                    Err(AppError::forbidden(format!("this token lacks the `{scope}` scope")))
                }
            }
            Principal::Admin => {
                Err(AppError::forbidden("the admin token manages tenants only; use a token of the tenant for its data"))
            }
        }
    }

    pub fn require_admin(&self) -> AppResult<()> {
        match self.0 {
            Principal::Admin => Ok(()),
            _ => Err(AppError::forbidden("this endpoint needs the admin token (MICRODASH_ADMIN_TOKEN)")),
        }
    }
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or("").trim());
        let principal = match bearer {
            Some("") => {
                state.telemetry.reject(reason::UNAUTHORIZED);
                return Err(AppError::unauthorized("the Authorization header must be `Bearer <token>`"));
            }
            Some(secret) => state.auth.token(secret).await?,
            None => match cookie_value(&parts.headers, SESSION_COOKIE) {
                Some(cookie) => state.auth.session(cookie).await?,
                None => {
                    state.telemetry.reject(reason::UNAUTHORIZED);
                    return Err(AppError::unauthorized(
                        "missing credentials: send `Authorization: Bearer <token>` or log in to the dashboard",
                    ));
                }
            },
        };
        match principal {
            Some(p) => Ok(Caller(p)),
            None => {
                state.telemetry.reject(reason::UNAUTHORIZED);
                Err(AppError::unauthorized("invalid token or expired session"))
            }
        }
    }
}
