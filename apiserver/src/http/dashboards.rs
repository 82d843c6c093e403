//! Saved dashboards: one JSON document per name and tenant, written by the dashboard UI.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{now_ms, sample::is_valid_name};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;

/// A dashboard may not be larger than this once serialized.
const MAX_DASHBOARD_BYTES: usize = 256 * 1024;

#[derive(Serialize, ToSchema)]
pub struct DashboardList {
    #[schema(value_type = Vec<Object>)]
    pub dashboards: Vec<Value>,
}

#[utoipa::path(get, path = "/api/v1/dashboards", tag = "dashboards", responses((status = 200, body = DashboardList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<DashboardList>> {
    let tenant = caller.require(Scope::Read)?;
    let bodies = state.store.list_dashboards(tenant.tenant_id).await?;
    let dashboards = bodies.iter().filter_map(|b| serde_json::from_str(b).ok()).collect();
    Ok(Json(DashboardList { dashboards }))
}

fn check_name(name: &str) -> AppResult<()> {
    if name.len() > 100 || !is_valid_name(name) {
        return Err(AppError::bad_request("dashboard names match [a-zA-Z_][a-zA-Z0-9_.:-]* and are at most 100 bytes")
            .field("name"));
    }
    Ok(())
}

#[utoipa::path(put, path = "/api/v1/dashboards/{name}", tag = "dashboards", request_body(content = Object),
    responses((status = 200), (status = 422)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<Json<Value>> {
    let tenant = caller.require(Scope::Admin)?;
    check_name(&name)?;
    if body.len() > MAX_DASHBOARD_BYTES {
        return Err(AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "a dashboard may be at most 256 KiB"));
    }
    let mut doc: Value =
        serde_json::from_slice(&body).map_err(|e| AppError::bad_request(format!("malformed JSON: {e}")))?;
    let Value::Object(map) = &mut doc else {
        return Err(AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "a dashboard is a JSON object"));
    };
    if !map.get("panels").is_some_and(Value::is_array) {
        return Err(AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "`panels` must be an array").field("panels"));
    }
    map.insert("name".into(), Value::String(name.clone()));
    state.store.put_dashboard(tenant.tenant_id, &name, &doc.to_string(), now_ms()).await?;
    Ok(Json(doc))
}

#[utoipa::path(delete, path = "/api/v1/dashboards/{name}", tag = "dashboards", responses((status = 204), (status = 404)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    if state.store.delete_dashboard(tenant.tenant_id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("dashboard {name:?} not found")))
    }
}
