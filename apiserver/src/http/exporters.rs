//! A tenant's exporters (issue 18): pushes of its newest samples to an OTLP/HTTP receiver, set by
//! a tenant admin. The spec and its checks are `domain/exporter.rs`; `exporters.rs` runs them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::exporter::ExporterSpec;
use crate::domain::now_ms;
use crate::exporters::ExporterStatus;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;

/// Exporters one tenant may have.
const MAX_EXPORTERS: usize = 10;

/// An exporter as the API shows it: its header values are never shown.
#[derive(Serialize, ToSchema)]
pub struct ExporterView {
    pub name: String,
    pub endpoint: String,
    /// The names of the headers sent (their values are secrets and never shown).
    pub headers: Vec<String>,
    pub interval: String,
    #[serde(rename = "match")]
    pub selectors: Vec<String>,
    /// How its pushes went, as the process that runs exporters (role `all` or `worker`) saw them
    /// since it started; absent when asked of a process that does not run them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ExporterStatus>,
}

#[derive(Serialize, ToSchema)]
pub struct ExporterList {
    pub exporters: Vec<ExporterView>,
}

fn view(state: &AppState, tenant_id: i64, name: String, spec: ExporterSpec) -> ExporterView {
    let status = state.exporters.status(tenant_id, &name);
    ExporterView {
        name,
        endpoint: spec.endpoint,
        headers: spec.headers.into_keys().collect(),
        interval: spec.interval,
        selectors: spec.selectors,
        status,
    }
}

#[utoipa::path(get, path = "/api/v1/exporters", tag = "exporters", responses((status = 200, body = ExporterList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<ExporterList>> {
    let tenant = caller.require(Scope::Read)?;
    let rows = state.store.list_exporters(tenant.tenant_id).await?;
    let exporters = rows
        .into_iter()
        .filter_map(|(name, spec)| {
            serde_json::from_str(&spec).ok().map(|spec| view(&state, tenant.tenant_id, name, spec))
        })
        .collect();
    Ok(Json(ExporterList { exporters }))
}

/// An exporter's name follows the tenant names' rule (a DNS label), as the contract's pattern says.
fn check_name(name: &str) -> AppResult<()> {
    microdash_model::validate_tenant_name(name)
        .map_err(|why| AppError::bad_request(format!("an exporter name {why}")).field("name"))
}

#[utoipa::path(put, path = "/api/v1/exporters/{name}", tag = "exporters", request_body = ExporterSpec,
    params(("name" = String, Path, description = "lowercase letters, digits and '-'")),
    responses((status = 200, body = ExporterView, description = "Replaced"), (status = 201, body = ExporterView, description = "Created"),
              (status = 409, description = "The tenant has 10 exporters already"), (status = 422)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<Response> {
    let tenant = caller.require(Scope::Admin)?;
    check_name(&name)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request(format!("malformed JSON: {e}")).field("body"))?;
    let spec: ExporterSpec = serde_json::from_value(value)
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("not an exporter: {e}")).field("body"))?;
    let checked = spec.check().map_err(|errors| {
        let mut e =
            AppError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{}: {}", errors[0].field, errors[0].message))
                .field(errors[0].field.clone());
        e.errors = errors;
        e
    })?;
    let outbound =
        state.config.outbound_policy().map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Err(why) = outbound.check_url(&checked.endpoint) {
        return Err(AppError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("endpoint: {why}")).field("endpoint"));
    }
    let existing = state.store.list_exporters(tenant.tenant_id).await?;
    if existing.len() >= MAX_EXPORTERS && !existing.iter().any(|(n, _)| *n == name) {
        return Err(AppError::new(StatusCode::CONFLICT, format!("a tenant has at most {MAX_EXPORTERS} exporters")));
    }
    let text = serde_json::to_string(&spec).expect("serializes");
    let created = state.store.put_exporter(tenant.tenant_id, &name, &text, now_ms()).await?;
    state.exporters.changed();
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view(&state, tenant.tenant_id, name, spec))).into_response())
}

#[utoipa::path(delete, path = "/api/v1/exporters/{name}", tag = "exporters",
    params(("name" = String, Path)), responses((status = 204, description = "Deleted")))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    check_name(&name)?;
    if !state.store.delete_exporter(tenant.tenant_id, &name).await? {
        return Err(AppError::not_found(format!("no exporter named {name}")));
    }
    state.exporters.changed();
    Ok(StatusCode::NO_CONTENT)
}
