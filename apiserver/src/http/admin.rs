//! Tenant administration with the admin token (`MICRODASH_ADMIN_TOKEN`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::token::parse_scopes;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::storage::{Retention, TenantRecord};
use crate::tenants::{self, TenantError};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTenant {
    pub name: String,
    #[serde(default, alias = "display_name")]
    pub display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedTenant {
    #[serde(flatten)]
    pub tenant: TenantRecord,
    /// The tenant's first token (all scopes). Shown only in this answer.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantRecord>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Any of ingest, read, admin.
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub tenant: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Shown only in this answer.
    pub token: String,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> AppResult<T> {
    serde_json::from_slice(body).map_err(|e| AppError::bad_request(format!("invalid JSON body: {e}")))
}

impl From<TenantError> for AppError {
    fn from(err: TenantError) -> Self {
        match err {
            TenantError::InvalidName { .. } => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).field("name")
            }
            TenantError::NoScopes => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).field("scopes"),
            TenantError::Store(e) => e.into(),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "admin", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = 409), (status = 422)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<CreatedTenant>)> {
    caller.require_admin()?;
    let input: CreateTenant = json_body(&body)?;
    let (tenant, token) = tenants::create_tenant(&state.store, &input.name, input.display_name.as_deref()).await?;
    tracing::info!(tenant = %tenant.name, "Tenant created.");
    Ok((StatusCode::CREATED, Json(CreatedTenant { tenant, token: token.expose().to_string() })))
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "admin", responses((status = 200, body = TenantList)))]
pub async fn list_tenants(State(state): State<AppState>, caller: Caller) -> AppResult<Json<TenantList>> {
    caller.require_admin()?;
    Ok(Json(TenantList { tenants: state.store.list_tenants().await? }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}", tag = "admin", responses((status = 200, body = TenantRecord), (status = 404)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<Json<TenantRecord>> {
    caller.require_admin()?;
    state
        .store
        .get_tenant(&name)
        .await?
        .map(Json)
        .ok_or_else(|| AppError::not_found(format!("tenant {name:?} not found")))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}", tag = "admin", responses((status = 204), (status = 404)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    caller.require_admin()?;
    if !state.store.delete_tenant(&name).await? {
        return Err(AppError::not_found(format!("tenant {name:?} not found")));
    }
    state.auth.invalidate();
    tracing::info!(tenant = %name, "Tenant deleted.");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/tokens", tag = "admin", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 404), (status = 422)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_admin()?;
    let input: CreateToken = json_body(&body)?;
    let scopes = parse_scopes(&input.scopes.join(","))
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).field("scopes"))?;
    let token = tenants::create_token(&state.store, &name, &scopes).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { tenant: name, scopes, token: token.expose().to_string() })))
}

/// Retention overrides of one tenant; durations like `3d`, `12h`; null or absent = default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionInput {
    #[serde(default)]
    pub raw: Option<String>,
    #[serde(default, rename = "1m")]
    pub one_minute: Option<String>,
    #[serde(default, rename = "5m")]
    pub five_minutes: Option<String>,
}

fn duration_ms(field: &str, text: Option<&str>) -> AppResult<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let parsed = humantime::parse_duration(text).map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {text:?} is not a duration like 7d or 12h ({e})"),
        )
        .field(field)
    })?;
    if parsed.as_secs() < 60 {
        return Err(
            AppError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{field}: must be at least 1m")).field(field)
        );
    }
    Ok(Some(parsed.as_millis() as i64))
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/retention", tag = "admin", request_body = RetentionInput,
    responses((status = 200, body = TenantRecord), (status = 404), (status = 422)))]
pub async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<Json<TenantRecord>> {
    caller.require_admin()?;
    let input: RetentionInput = json_body(&body)?;
    let retention = Retention {
        raw_ms: duration_ms("raw", input.raw.as_deref())?,
        m1_ms: duration_ms("1m", input.one_minute.as_deref())?,
        m5_ms: duration_ms("5m", input.five_minutes.as_deref())?,
    };
    if !state.store.set_retention(&name, &retention).await? {
        return Err(AppError::not_found(format!("tenant {name:?} not found")));
    }
    get_tenant(State(state), caller, Path(name)).await
}
