//! Dashboard login: a token is exchanged for an HttpOnly session cookie, so the browser never
//! keeps a long-lived token where scripts can read it, nor puts one in a URL.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use microdash_model::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::SESSION_COOKIE;
use crate::domain::{Principal, Token, TokenHash, now_ms};
use crate::http::AppState;
use crate::http::auth::{Caller, cookie_value};
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub tenant: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
}

fn info(principal: &Principal) -> AppResult<SessionInfo> {
    match principal {
        Principal::Tenant { tenant, scopes, .. } => Ok(SessionInfo { tenant: tenant.clone(), scopes: scopes.clone() }),
        Principal::Admin => {
            Err(AppError::forbidden("the admin token cannot log in to the dashboard; use a tenant token"))
        }
    }
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie is ASCII")
}

#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = Login, security(()),
    description = "Exchanges a tenant token (in the body) for an HttpOnly session cookie.",
    responses((status = 200, body = SessionInfo, headers(("Set-Cookie" = String, description = "the session cookie"))),
              (status = 400), (status = 401), (status = 403), (status = 413), (status = 415), (status = 503)))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Body(body): Body,
) -> AppResult<Response> {
    // No other page logs a browser in to a session of its choosing (login CSRF).
    if headers.contains_key(header::ORIGIN) && !crate::http::auth::same_origin(&headers, &uri) {
        return Err(
            AppError::forbidden("cross-origin login refused: log in from the dashboard's own origin").field("Origin")
        );
    }
    let login: Login = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request(format!("expected {{\"token\":\"…\"}}: {e}")).field("token"))?;
    let principal =
        state.auth.token(login.token.trim()).await?.ok_or_else(|| {
            AppError::unauthorized("Invalid token: check that you copied the whole token").field("token")
        })?;
    let session_info = info(&principal)?;
    if !principal.has_scope(Scope::Read) {
        return Err(AppError::forbidden("this token lacks the `read` scope needed by the dashboard").field("token"));
    }
    let Principal::Tenant { token_id, .. } = principal else { unreachable!("info() refused the admin") };
    let secret = Token::generate();
    let ttl = state.config.session_ttl;
    state.store.create_session(&secret.hash(), token_id, now_ms() + ttl.as_millis() as i64).await?;
    let mut response = Json(session_info).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, secret.expose(), ttl.as_secs()));
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/session", tag = "session", responses((status = 200, body = SessionInfo), (status = 401)))]
pub async fn whoami(caller: Caller) -> AppResult<Json<SessionInfo>> {
    Ok(Json(info(&caller.0)?))
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "session", security(()),
    description = "Ends the session of the cookie sent, if any, and clears the cookie; needs no credentials.",
    responses((status = 204, headers(("Set-Cookie" = String, description = "clears the session cookie"))), (status = 503)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let value = cookie_value(&headers, SESSION_COOKIE);
    if let Some(value) = value {
        state.store.delete_session(&TokenHash::of(value)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}
