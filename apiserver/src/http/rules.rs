//! `/api/v1/rules`: the tenant's alert rules. Bodies are the ★ rule spec with `name` beside
//! the spec fields; the tenant comes from the token.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::{AlertRuleSpec, Scope};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::alerting::service::{self, parse_spec};
use crate::domain::alerting::AlertState;
use crate::http::AppState;
use crate::http::auth::{Caller, TenantCaller};
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::storage::alerts::{InstanceRecord, SpecKind, SpecRecord};

/// The views are declared once, in the model, for the server and the operator.
pub use microdash_model::views::{RuleStatus, RuleView};

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
}

/// Splits a body into the name beside the spec and the spec itself; a `tenant` field must
/// be the caller's own.
pub(crate) fn split_body(body: &[u8], caller: &TenantCaller) -> AppResult<(Option<String>, Value)> {
    let mut doc: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("malformed JSON: {e}")).field("body"))?;
    let Value::Object(map) = &mut doc else {
        return Err(AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "the body is a JSON object").field("body"));
    };
    let name = match map.remove("name") {
        None => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "`name` is a string").field("name")),
    };
    // What answers add beside the spec may come back in an edited answer: not part of the spec.
    for read_only in microdash_model::READ_ONLY_KEYS {
        map.remove(read_only);
    }
    match map.remove("tenant") {
        None => {}
        Some(Value::String(t)) if t == caller.tenant => {}
        Some(_) => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`tenant` must be the token's own tenant (or omitted: over HTTP the token decides)",
            )
            .field("tenant"));
        }
    }
    Ok((name, doc))
}

pub(crate) fn name_in_body_matches(path_name: &str, body_name: Option<&str>) -> AppResult<()> {
    match body_name {
        Some(n) if n != path_name => Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body names {n:?} but the path {path_name:?}; renaming is a DELETE and a POST"),
        )
        .field("name")),
        _ => Ok(()),
    }
}

fn status_of(instances: &[&InstanceRecord]) -> RuleStatus {
    let state = instances.iter().map(|i| i.instance.state).max_by_key(|s| s.severity_rank()).unwrap_or(AlertState::Ok);
    let firing = instances.iter().filter(|i| i.instance.state == AlertState::Firing).count();
    RuleStatus { state, instances: instances.len(), firing }
}

fn view(record: SpecRecord, instances: &[&InstanceRecord]) -> AppResult<RuleView> {
    let spec: AlertRuleSpec = serde_json::from_str(&record.spec)
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("stored rule unreadable: {e}")))?;
    Ok(RuleView {
        name: record.name,
        spec,
        created_at: record.created_at,
        updated_at: record.updated_at,
        status: status_of(instances),
    })
}

async fn load_view(state: &AppState, tenant_id: i64, name: &str) -> AppResult<RuleView> {
    let record = state
        .store
        .get_spec(SpecKind::Rule, tenant_id, name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("rule {name:?} not found")))?;
    // This rule's instances only: a write in a burst must not read the whole tenant's.
    let instances = state.store.list_rule_instances(tenant_id, name).await?;
    view(record, &instances.iter().collect::<Vec<_>>())
}

#[utoipa::path(get, path = "/api/v1/rules", tag = "alerting", responses((status = 200, body = RuleList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<RuleList>> {
    let tenant = caller.require(Scope::Read)?;
    let records = state.store.list_specs(SpecKind::Rule, Some(tenant.tenant_id)).await?;
    let instances = state.store.list_instances(Some(tenant.tenant_id)).await?;
    let mut by_rule: HashMap<&str, Vec<&InstanceRecord>> = HashMap::new();
    for i in &instances {
        by_rule.entry(i.rule.as_str()).or_default().push(i);
    }
    let rules = records
        .into_iter()
        .map(|r| {
            let mine = by_rule.get(r.name.as_str()).cloned().unwrap_or_default();
            view(r, &mine)
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Json(RuleList { rules }))
}

#[utoipa::path(get, path = "/api/v1/rules/{name}", tag = "alerting",
    responses((status = 200, body = RuleView), (status = 404, body = crate::http::error::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<Json<RuleView>> {
    let tenant = caller.require(Scope::Read)?;
    Ok(Json(load_view(&state, tenant.tenant_id, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/rules", tag = "alerting", request_body(content = Object, description = "`name` and the rule spec fields"),
    responses((status = 201, body = RuleView), (status = 409), (status = 422, body = crate::http::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<RuleView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let (name, doc) = split_body(&body, &tenant)?;
    let name = name.ok_or_else(|| {
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "`name` is required beside the spec fields").field("name")
    })?;
    let spec: AlertRuleSpec = parse_spec(doc)?;
    let metric = spec.metric.clone();
    service::put_rule(&state.store, tenant.tenant_id, &name, spec, true).await?;
    state.alerting.rule_changed(tenant.tenant_id, &name, Some(&metric));
    Ok((StatusCode::CREATED, Json(load_view(&state, tenant.tenant_id, &name).await?)))
}

#[utoipa::path(put, path = "/api/v1/rules/{name}", tag = "alerting", request_body(content = Object, description = "the rule spec fields"),
    responses((status = 200, body = RuleView), (status = 201, body = RuleView), (status = 422, body = crate::http::error::Problem)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<RuleView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let (body_name, doc) = split_body(&body, &tenant)?;
    name_in_body_matches(&name, body_name.as_deref())?;
    let spec: AlertRuleSpec = parse_spec(doc)?;
    let metric = spec.metric.clone();
    let created = service::put_rule(&state.store, tenant.tenant_id, &name, spec, false).await?;
    state.alerting.rule_changed(tenant.tenant_id, &name, Some(&metric));
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(load_view(&state, tenant.tenant_id, &name).await?)))
}

#[utoipa::path(delete, path = "/api/v1/rules/{name}", tag = "alerting", responses((status = 204), (status = 404)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    if state.store.delete_spec(SpecKind::Rule, tenant.tenant_id, &name).await? {
        state.alerting.rule_changed(tenant.tenant_id, &name, None);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("rule {name:?} not found")))
    }
}
