//! The `Caller` extractor: who is calling, from `Authorization: Bearer` or the session cookie.
//!
//! The admin token may act on one tenant's data (rules, channels, alerts, …) when the request
//! names it in `X-Microdash-Tenant`: that is how the Kubernetes operator manages a tenant's
//! rules without holding the tenant's own token. A tenant token never crosses to another tenant.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use microdash_model::Scope;

use crate::auth::SESSION_COOKIE;
use crate::domain::Principal;
use crate::http::AppState;
use crate::http::error::{AppError, AppResult};
use crate::telemetry::reason;

/// The tenant that the admin token acts on, named in this header.
pub use microdash_model::TENANT_HEADER;

pub struct Caller(pub Principal, Option<TenantCaller>);

/// A tenant-scoped caller, after its scope was checked.
pub struct TenantCaller {
    pub tenant_id: i64,
    pub tenant: String,
    pub token_id: i64,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> AppResult<TenantCaller> {
        match &self.0 {
            Principal::Tenant { tenant_id, tenant, token_id, scopes, .. } => {
                if scopes.contains(&scope) {
                    Ok(TenantCaller { tenant_id: *tenant_id, tenant: tenant.clone(), token_id: *token_id })
                } else {
                    Err(AppError::forbidden(format!("this token lacks the `{scope}` scope")))
                }
            }
            Principal::Admin => match &self.1 {
                Some(acting) => {
                    Ok(TenantCaller { tenant_id: acting.tenant_id, tenant: acting.tenant.clone(), token_id: 0 })
                }
                None => Err(AppError::forbidden(
                    "the admin token manages tenants; for a tenant's data name it in X-Microdash-Tenant \
                     or use a token of the tenant",
                )),
            },
        }
    }

    /// Resolves when this caller's access ends: its token revoked or expired, or its tenant
    /// (also the one the admin acts on) deleted. Never for the admin alone.
    pub fn until_revoked(&self, auth: &crate::auth::Auth) -> futures_util::future::BoxFuture<'static, ()> {
        match (&self.0, &self.1) {
            (Principal::Tenant { tenant_id, token_id, expires_at, .. }, _) => {
                Box::pin(auth.until_revoked(*tenant_id, Some(*token_id), *expires_at))
            }
            (Principal::Admin, Some(acting)) => Box::pin(auth.until_revoked(acting.tenant_id, None, None)),
            (Principal::Admin, None) => Box::pin(std::future::pending()),
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

/// Whether `Origin` names the origin the request was sent to (its `Host`, or the
/// `X-Forwarded-Host` of a reverse proxy that rewrote it; a cross-origin page cannot set either).
pub fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(authority) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|origin| origin.split_once("://").map(|(_, authority)| authority.trim_end_matches('/')))
    else {
        return false;
    };
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    [header_value(header::HOST.as_str()), header_value("x-forwarded-host"), uri.authority().map(|a| a.as_str())]
        .into_iter()
        .flatten()
        .any(|host| host.trim().eq_ignore_ascii_case(authority))
}

/// A write authenticated by the dashboard's session cookie must come from the dashboard's own
/// origin and carry JSON, so that no other page, not even one of the same site (where
/// `SameSite=Strict` does not help), can make it with the user's cookie (CSRF). Reads, and
/// every request with `Authorization: Bearer`, are not affected.
fn check_cookie_write(parts: &Parts) -> AppResult<()> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if !same_origin(&parts.headers, &parts.uri) {
        return Err(AppError::forbidden(
            "cross-origin write refused: a request with the dashboard's session cookie must come from the \
             dashboard's own origin (its Origin header); API clients send Authorization: Bearer",
        )
        .field("Origin"));
    }
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if has_body && !json {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a write with the dashboard's session cookie must send Content-Type: application/json",
        )
        .field("Content-Type"));
    }
    Ok(())
}

/// The secret an `Authorization` value carries, empty when it carries none: `Bearer`, or `Token`
/// (how InfluxDB clients and Telegraf send it); or `Basic` with the token as the password, the
/// user name unread (Grafana's and Prometheus' basic auth, and `https://any:TOKEN@host` URLs of
/// tools that take no header, such as promtool).
fn secret_in(value: &str) -> String {
    if let Some(encoded) = ["Basic ", "basic "].iter().find_map(|scheme| value.strip_prefix(scheme)) {
        use base64::Engine;
        return base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| pair.split_once(':').map(|(_, password)| password.trim().to_string()))
            .unwrap_or_default();
    }
    ["Bearer ", "bearer ", "Token ", "token "]
        .iter()
        .find_map(|scheme| value.strip_prefix(scheme))
        .unwrap_or("")
        .trim()
        .to_string()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(secret_in);
        let principal = match bearer.as_deref() {
            Some("") => {
                state.telemetry.reject(reason::UNAUTHORIZED);
                return Err(AppError::unauthorized(
                    "the Authorization header must be `Bearer <token>` (or Basic with the token as the password)",
                ));
            }
            Some(secret) => state.auth.token(secret).await?,
            None => match cookie_value(&parts.headers, SESSION_COOKIE) {
                Some(cookie) => {
                    if let Err(refusal) = check_cookie_write(parts) {
                        state.telemetry.reject(reason::CROSS_ORIGIN);
                        return Err(refusal);
                    }
                    state.auth.session(cookie).await?
                }
                None => {
                    state.telemetry.reject(reason::UNAUTHORIZED);
                    return Err(AppError::unauthorized(
                        "missing credentials: send `Authorization: Bearer <token>` or log in to the dashboard",
                    ));
                }
            },
        };
        let acting_on = match parts.headers.get(TENANT_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| {
                        AppError::bad_request("X-Microdash-Tenant must be a tenant name").field(TENANT_HEADER)
                    })?
                    .trim()
                    .to_string(),
            ),
        };
        match principal {
            Some(Principal::Admin) if acting_on.is_some() => {
                let name = acting_on.unwrap_or_default();
                let record = state
                    .store
                    .get_tenant(&name)
                    .await?
                    .ok_or_else(|| AppError::not_found(format!("tenant {name:?} not found")))?;
                let acting = TenantCaller { tenant_id: record.id, tenant: record.name, token_id: 0 };
                Ok(Caller(Principal::Admin, Some(acting)))
            }
            // A tenant token may name its own tenant, never another (and learns nothing about it).
            Some(Principal::Tenant { tenant, .. }) if acting_on.as_deref().is_some_and(|name| name != tenant) => {
                Err(AppError::forbidden("only the admin token may act on another tenant (X-Microdash-Tenant)"))
            }
            Some(p) => Ok(Caller(p, None)),
            None => {
                state.telemetry.reject(reason::UNAUTHORIZED);
                Err(AppError::unauthorized("invalid token or expired session"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::secret_in;

    #[test]
    fn the_token_is_read_from_bearer_token_and_basic_passwords_only() {
        assert_eq!(secret_in("Bearer md_abc "), "md_abc");
        assert_eq!(secret_in("Token md_abc"), "md_abc");
        // base64("fleet:md_abc") and base64(":md_abc"): the password is the token.
        assert_eq!(secret_in("Basic ZmxlZXQ6bWRfYWJj"), "md_abc");
        assert_eq!(secret_in("Basic Om1kX2FiYw=="), "md_abc");
        // No password, not base64, another scheme: no secret (answered 401).
        assert_eq!(secret_in("Basic ZmxlZXQ="), "");
        assert_eq!(secret_in("Basic !!!"), "");
        assert_eq!(secret_in("Digest md_abc"), "");
    }
}
