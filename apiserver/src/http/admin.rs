//! Tenant administration with the admin token (`MICRODASH_ADMIN_TOKEN`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::token::{Token, parse_scopes};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::Problem;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::storage::{Retention, TenantRecord, TokenInfo};
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

/// A JSON object into `T`. Only an object: serde would also fill a struct from an array of its
/// fields in order (`[null, null]`), which the API does not document and must not take.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> AppResult<T> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AppError::bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(AppError::bad_request("invalid JSON body: expected a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| AppError::bad_request(format!("invalid JSON body: {e}")))
}

impl From<TenantError> for AppError {
    fn from(err: TenantError) -> Self {
        match err {
            TenantError::InvalidName { .. } => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).field("name")
            }
            TenantError::NoScopes => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).field("scopes"),
            TenantError::InvalidExpiry(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).field("expires_in")
            }
            TenantError::InvalidToken(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()).field("token")
            }
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

#[utoipa::path(delete, path = "/api/v1/tenants/{name}", tag = "admin",
    description = "Deletes the tenant with everything it owned. It is gone at once: its name is free again, its \
                   tokens and sessions stop working and its live streams and MQTT sessions close (on every server \
                   process within a second). Its samples, rollups, series, dedupe ids and alert history are then \
                   removed in the background, in chunks of 5000 rows. Ids are never reused, so nothing of it ever \
                   shows up in a tenant created later.",
    responses((status = 204, description = "deleted"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    caller.require_admin()?;
    let Some(id) = state.store.mark_tenant_deleted(&name).await? else {
        return Err(AppError::not_found(format!("tenant {name:?} not found")));
    };
    state.auth.tenant_deleted(id);
    state.status_pages.forget_tenant(id);
    tracing::info!(tenant = %name, "Tenant deleted; removing its data in the background.");
    tokio::spawn(purge_in_background(state.store.clone(), name, id));
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a deleted tenant's rows chunk by chunk, logging progress.
pub async fn purge_in_background(store: crate::storage::DynStore, name: String, id: i64) {
    let mut logged = std::time::Instant::now();
    let mut progress = |removed: u64| {
        if logged.elapsed() >= std::time::Duration::from_secs(5) {
            logged = std::time::Instant::now();
            tracing::info!(tenant = %name, removed, "Removing a deleted tenant's data.");
        }
    };
    match tenants::purge_tenant(&store, id, &mut progress).await {
        Ok(removed) => tracing::info!(tenant = %name, removed, "A deleted tenant's data is gone."),
        Err(err) => {
            tracing::warn!(tenant = %name, %err, "Removing a deleted tenant's data failed; the next start resumes it.")
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Any of ingest, read, admin.
    pub scopes: Vec<String>,
    /// How long the token works, e.g. `30d`, `12h`, `3s` (1 s to 100 years); absent = forever.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// Registers this secret instead of generating one: for a token already handed out whose
    /// record was lost (a restored database, a recreated tenant), as the Kubernetes operator does
    /// for a Tenant's Secret. At least 32 characters, no whitespace; 409 when it is registered
    /// already.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token's number within its tenant, to list or revoke it.
    pub id: i64,
    pub tenant: String,
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Unix milliseconds; absent = never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Shown only in this answer.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{name}/tokens", tag = "admin", request_body = CreateToken,
    responses((status = 201, body = CreatedToken),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json",
               description = "The secret in `token` is registered already"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_admin()?;
    let input: CreateToken = json_body(&body)?;
    make_token(&state, &name, input).await
}

/// Creates a token of `tenant` as `input` asks, or registers the secret it holds; answers 201
/// with the secret (shown this once).
pub(crate) async fn make_token(
    state: &AppState,
    tenant: &str,
    input: CreateToken,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    let scopes = parse_scopes(&input.scopes.join(","))
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).field("scopes"))?;
    let created = match input.token.as_deref() {
        None => tenants::create_token(&state.store, tenant, &scopes, input.expires_in.as_deref()).await?,
        Some(secret) => {
            let token = Token::from_secret(secret).map_err(TenantError::InvalidToken)?;
            tenants::register_token(&state.store, tenant, token, &scopes, input.expires_in.as_deref()).await?
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: created.number,
            tenant: tenant.to_string(),
            scopes,
            expires_at: created.expires_at,
            token: created.token.expose().to_string(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/tokens", tag = "admin",
    description = "The tenant's tokens: id, prefix, scopes, when created, when they expire and when last used (to \
                   within a few seconds). Never a secret nor its hash.",
    responses((status = 200, body = TokenList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<Json<TokenList>> {
    caller.require_admin()?;
    Ok(Json(TokenList { tokens: tenants::list_tokens(&state.store, &name).await? }))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{name}/tokens/{id}", tag = "admin",
    description = "Revokes a token: refused on every surface within a second (every server process), its dashboard \
                   sessions end, its live streams and MQTT sessions close.",
    params(("name" = String, Path), ("id" = i64, Path, description = "the token's id (from the list)")),
    responses((status = 204, description = "revoked"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    caller.require_admin()?;
    let Ok(number) = id.parse::<i64>() else {
        return Err(AppError::not_found(format!("token {id:?} of tenant {name:?} not found")));
    };
    let (tenant_id, token_id) = tenants::revoke_token(&state.store, &name, number).await?;
    state.auth.token_revoked(tenant_id, token_id);
    tracing::info!(tenant = %name, token = number, "Token revoked.");
    Ok(StatusCode::NO_CONTENT)
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
    // 100 years; a larger value once came back negative and deleted everything.
    const MAX_RETENTION_MS: u128 = 100 * 365 * 86_400_000;
    if parsed.as_millis() > MAX_RETENTION_MS {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: must be at most 100 years (36500d); leave it out to keep the server's default"),
        )
        .field(field));
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

/// A tenant's intake limits; a limit left out (or `null`) is the server's default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    /// Samples per second, 1 to 4294967295: the long-run rate; one second's worth may come at
    /// once. Over it, ingest answers 429 with Retry-After (MQTT: the acknowledgement waits).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4294967295u64)]
    pub samples_per_second: Option<f64>,
    /// Distinct series, 1 to 1000000000. Past it, samples of new series are refused (422) and
    /// those of existing series still stored.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000000)]
    pub series: Option<f64>,
}

/// A whole number in 1..=max (JSON has one number type: `45.0` is 45, `4.5` is refused).
fn limit_value(field: &str, value: Option<f64>, max: i64) -> AppResult<Option<i64>> {
    match value {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 && v >= 1.0 && v <= max as f64 => Ok(Some(v as i64)),
        Some(_) => Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{field}: must be a whole number between 1 and {max}; leave it out (or null) for the server's default"
            ),
        )
        .field(field)),
    }
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/limits", tag = "admin", request_body = LimitsInput,
    responses((status = 200, body = TenantRecord, description = "The limits apply at once here, within 2 s on other servers"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<Json<TenantRecord>> {
    caller.require_admin()?;
    let input: LimitsInput = json_body(&body)?;
    let limits = crate::storage::TenantLimits {
        samples_per_second: limit_value("samples_per_second", input.samples_per_second, u32::MAX as i64)?,
        series: limit_value("series", input.series, 1_000_000_000)?,
    };
    state.store.set_limits(&name, &limits).await?;
    // Read back for the answer; also how a name that is no (live) tenant is told apart.
    let Some(tenant) = state.store.get_tenant(&name).await? else {
        return Err(AppError::not_found(format!("tenant {name:?} not found")));
    };
    state.intake.changed(tenant.id);
    tracing::info!(tenant = %name, ?limits, "Tenant limits set.");
    Ok(Json(tenant))
}
