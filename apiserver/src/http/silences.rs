//! `/api/v1/silences`: a tenant's maintenance windows (Alertmanager's silences). While a silence
//! is active, notifications of the alerts whose labels equal all of its matchers (`alertname`
//! is the rule's name) are not sent; transitions are still recorded, and an alert still firing
//! when the silence ends is notified then.
//!
//! `POST` makes an anonymous silence; `PUT /api/v1/silences/by-name/{name}` writes a named one
//! (what `microdash apply` and the operator's `Silence` resources do), updated in place when
//! written again (see `alerting::silences`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::{Scope, SilenceSpec};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::alerting::silences::{self, Outcome};
use crate::domain::now_ms;
use crate::http::AppState;
use crate::http::auth::{Caller, TenantCaller};
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::storage::alerts::SilenceRecord;

/// The input (`SilenceSpec`, schema `SilenceInput`) and the view are declared once, in the
/// model, for the server, `microdash apply` and the operator.
pub use microdash_model::silence::{SilenceState, SilenceView};

/// Ended silences stay listed this long (what was silenced yesterday is still worth seeing).
const LISTED_AFTER_END_MS: i64 = 7 * 24 * 3600 * 1000;

/// A stored silence as the API shows it at `now`.
pub fn view_of(s: SilenceRecord, now: i64) -> SilenceView {
    SilenceView {
        status: SilenceState::at(s.starts_at, s.ends_at, now),
        id: s.id,
        name: s.name,
        matchers: s.matchers,
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        comment: s.comment,
        created_by: s.created_by,
        created_at: s.created_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct SilenceList {
    pub silences: Vec<SilenceView>,
}

fn unprocessable(field: &str, detail: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, detail).field(field)
}

/// Reads a silence from a body, naming the offending field (a missing one included); a
/// `tenant` field must be the caller's own.
fn read_spec(body: &[u8], caller: &TenantCaller) -> AppResult<SilenceSpec> {
    let not_a_silence = |e: &dyn std::fmt::Display, field: &str| unprocessable(field, format!("not a silence: {e}"));
    let doc: Value = serde_json::from_slice(body).map_err(|e| not_a_silence(&e, "body"))?;
    if let Some(tenant) = doc.get("tenant")
        && tenant.as_str() != Some(caller.tenant.as_str())
    {
        return Err(unprocessable(
            "tenant",
            "`tenant` must be the token's own tenant (or omitted: over HTTP the token decides)",
        ));
    }
    serde_path_to_error::deserialize::<_, SilenceSpec>(doc).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // serde names a missing field in its message only ("missing field `comment`").
        let field = if path == "." { message.split('`').nth(1).unwrap_or("body").to_string() } else { path };
        not_a_silence(&message, &field)
    })
}

/// Checks and stores a silence, anonymous or named; answers what it did and the silence.
async fn write(
    state: &AppState,
    tenant: &TenantCaller,
    name: Option<&str>,
    body: &[u8],
) -> AppResult<(Outcome, SilenceView)> {
    let spec = read_spec(body, tenant)?;
    let now = now_ms();
    let plan = silences::plan(&state.store, tenant.tenant_id, name, &spec, now).await?;
    let outcome = silences::write(&state.store, &plan, now).await?;
    if outcome != Outcome::Unchanged {
        state.alerting.silences_changed();
    }
    Ok((outcome, view_of(plan.record, now)))
}

#[utoipa::path(post, path = "/api/v1/silences", tag = "alerting", request_body = SilenceSpec,
    responses((status = 201, body = SilenceView), (status = 422, body = crate::http::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<SilenceView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let (_, view) = write(&state, &tenant, None, &body).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/api/v1/silences", tag = "alerting", responses((status = 200, body = SilenceList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<SilenceList>> {
    let tenant = caller.require(Scope::Read)?;
    let now = now_ms();
    let silences = state.store.list_silences(Some(tenant.tenant_id), now - LISTED_AFTER_END_MS).await?;
    Ok(Json(SilenceList { silences: silences.into_iter().map(|s| view_of(s, now)).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerting",
    responses((status = 204, description = "expired now"), (status = 404, body = crate::http::error::Problem)))]
pub async fn expire(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    if state.store.expire_silence(tenant.tenant_id, &id, now_ms()).await? {
        state.alerting.silences_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("no active or pending silence {id:?}")))
    }
}

#[utoipa::path(get, path = "/api/v1/silences/by-name/{name}", tag = "alerting",
    responses((status = 200, body = SilenceView), (status = 404, body = crate::http::error::Problem)))]
pub async fn get_by_name(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<Json<SilenceView>> {
    let tenant = caller.require(Scope::Read)?;
    match state.store.get_silence_by_name(tenant.tenant_id, &name).await? {
        Some(silence) => Ok(Json(view_of(silence, now_ms()))),
        None => Err(AppError::not_found(format!("no silence named {name:?}"))),
    }
}

/// Creates the named silence, or updates it in place (same id); writing the same silence again
/// changes nothing. Relative times are resolved now, and an omitted `startsAt` of a silence that
/// has started keeps its start.
#[utoipa::path(put, path = "/api/v1/silences/by-name/{name}", tag = "alerting", request_body = SilenceSpec,
    responses((status = 200, body = SilenceView, description = "updated or unchanged"), (status = 201, body = SilenceView),
              (status = 422, body = crate::http::error::Problem)))]
pub async fn put_by_name(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<SilenceView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let (outcome, view) = write(&state, &tenant, Some(&name), &body).await?;
    let status = if outcome == Outcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)))
}

/// Expires the named silence now (it stays listed, ended, and keeps its name).
#[utoipa::path(delete, path = "/api/v1/silences/by-name/{name}", tag = "alerting",
    responses((status = 204, description = "expired now"), (status = 404, body = crate::http::error::Problem)))]
pub async fn expire_by_name(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    let expired = match state.store.get_silence_by_name(tenant.tenant_id, &name).await? {
        Some(silence) => state.store.expire_silence(tenant.tenant_id, &silence.id, now_ms()).await?,
        None => false,
    };
    if expired {
        state.alerting.silences_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("no active or pending silence named {name:?}")))
    }
}
