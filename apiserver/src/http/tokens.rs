//! A tenant's own tokens, for a caller with the tenant's `admin` scope (the dashboard's Tokens
//! page): list, create (optionally expiring), revoke. The same as the admin API's
//! `/api/v1/tenants/{name}/tokens`, limited to the caller's tenant; secrets are shown once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::AppState;
use crate::http::admin::{CreateToken, CreatedToken, json_body, make_token};
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult, Problem};
use crate::http::ingest::Body;
use crate::storage::TokenInfo;

#[derive(Serialize, ToSchema)]
pub struct OwnTokens {
    pub tokens: Vec<TokenInfo>,
    /// The id of the token this request came with (absent for the admin token): revoking it
    /// ends the caller's own session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    description = "The caller's tenant's tokens (needs the `admin` scope): id, prefix, scopes, created, expires, \
                   last used; never a secret nor its hash.",
    responses((status = 200, body = OwnTokens),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<OwnTokens>> {
    let tenant = caller.require(Scope::Admin)?;
    let tokens = state.store.list_tokens(tenant.tenant_id).await?;
    let current = tokens.iter().find(|t| t.token_id == tenant.token_id).map(|t| t.number);
    Ok(Json(OwnTokens { tokens, current }))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    description = "Creates a token of the caller's tenant (needs the `admin` scope); the secret is in this answer only.",
    responses((status = 201, body = CreatedToken),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    let tenant = caller.require(Scope::Admin)?;
    let input: CreateToken = json_body(&body)?;
    if input.token.is_some() {
        return Err(AppError::forbidden("registering a secret you hold needs the admin token").field("token"));
    }
    let answer = make_token(&state, &tenant.tenant, input).await?;
    tracing::info!(tenant = %tenant.tenant, token = answer.1.id, "Token created by the tenant.");
    Ok(answer)
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    description = "Revokes a token of the caller's tenant (needs the `admin` scope): refused on every surface within \
                   a second, its sessions, streams and MQTT sessions end. Revoking the caller's own token ends its \
                   session too.",
    params(("id" = i64, Path, description = "the token's id (from the list)")),
    responses((status = 204, description = "revoked"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    let number = id.parse::<i64>().map_err(|_| AppError::not_found(format!("token {id:?} not found")))?;
    let Some(token_id) = state.store.revoke_token(tenant.tenant_id, number).await? else {
        return Err(AppError::not_found(format!("token {number} not found")));
    };
    state.auth.token_revoked(tenant.tenant_id, token_id);
    tracing::info!(tenant = %tenant.tenant, token = number, "Token revoked by the tenant.");
    Ok(StatusCode::NO_CONTENT)
}
