//! `/api/v1/channels`: notification channels, a test send, and the delivery log. Secrets
//! (`hmacSecret`, the SMTP password) are never returned: answers show `<set>`, and sending
//! `<set>` back keeps the stored secret.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use microdash_model::{NotificationChannelSpec, Scope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::alerting::outbox;
use crate::alerting::payload::Payload;
use crate::alerting::service::{self, parse_spec};
use crate::domain::now_ms;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::http::rules::{name_in_body_matches, split_body};
use crate::storage::alerts::{
    AttemptOutcome, AttemptRecord, NewNotification, NotificationRecord, SpecKind, SpecRecord,
};

/// The views are declared once, in the model, for the server and the operator.
pub use microdash_model::views::{ChannelView, LastDelivery};

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelView>,
}

fn last_delivery(n: &NotificationRecord) -> LastDelivery {
    LastDelivery {
        status: n.status.as_str().to_string(),
        at: n.delivered_at.unwrap_or(n.created_at),
        error: n.last_error.clone(),
    }
}

async fn view(state: &AppState, record: SpecRecord) -> AppResult<ChannelView> {
    let spec: NotificationChannelSpec = serde_json::from_str(&record.spec)
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("stored channel unreadable: {e}")))?;
    let latest = state.store.list_notifications(record.tenant_id, Some(&record.name), 1).await?;
    Ok(ChannelView {
        name: record.name,
        spec: spec.redacted(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        last_delivery: latest.first().map(last_delivery),
    })
}

async fn load(state: &AppState, tenant_id: i64, name: &str) -> AppResult<SpecRecord> {
    state
        .store
        .get_spec(SpecKind::Channel, tenant_id, name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("channel {name:?} not found")))
}

#[utoipa::path(get, path = "/api/v1/channels", tag = "alerting", responses((status = 200, body = ChannelList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<ChannelList>> {
    let tenant = caller.require(Scope::Read)?;
    let mut channels = Vec::new();
    for record in state.store.list_specs(SpecKind::Channel, Some(tenant.tenant_id)).await? {
        channels.push(view(&state, record).await?);
    }
    Ok(Json(ChannelList { channels }))
}

#[utoipa::path(get, path = "/api/v1/channels/{name}", tag = "alerting",
    responses((status = 200, body = ChannelView), (status = 404, body = crate::http::error::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<Json<ChannelView>> {
    let tenant = caller.require(Scope::Read)?;
    let record = load(&state, tenant.tenant_id, &name).await?;
    Ok(Json(view(&state, record).await?))
}

#[utoipa::path(post, path = "/api/v1/channels", tag = "alerting", request_body(content = Object, description = "`name` and the channel spec fields"),
    responses((status = 201, body = ChannelView), (status = 409), (status = 422, body = crate::http::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<ChannelView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let (name, doc) = split_body(&body, &tenant)?;
    let name = name.ok_or_else(|| {
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "`name` is required beside the spec fields").field("name")
    })?;
    let spec: NotificationChannelSpec = parse_spec(doc)?;
    service::put_channel(&state.store, tenant.tenant_id, &name, spec, true).await?;
    state.alerting.channels_changed();
    let record = load(&state, tenant.tenant_id, &name).await?;
    Ok((StatusCode::CREATED, Json(view(&state, record).await?)))
}

#[utoipa::path(put, path = "/api/v1/channels/{name}", tag = "alerting", request_body(content = Object, description = "the channel spec fields"),
    responses((status = 200, body = ChannelView), (status = 201, body = ChannelView), (status = 422, body = crate::http::error::Problem)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<ChannelView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let (body_name, doc) = split_body(&body, &tenant)?;
    name_in_body_matches(&name, body_name.as_deref())?;
    let spec: NotificationChannelSpec = parse_spec(doc)?;
    let created = service::put_channel(&state.store, tenant.tenant_id, &name, spec, false).await?;
    state.alerting.channels_changed();
    let record = load(&state, tenant.tenant_id, &name).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view(&state, record).await?)))
}

#[utoipa::path(delete, path = "/api/v1/channels/{name}", tag = "alerting", responses((status = 204), (status = 404)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    if state.store.delete_spec(SpecKind::Channel, tenant.tenant_id, &name).await? {
        state.alerting.channels_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("channel {name:?} not found")))
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub at: i64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> Self {
        AttemptView {
            at: a.at,
            ok: a.ok,
            status_code: a.status_code,
            error: a.error.clone(),
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub ok: bool,
    pub idempotency_key: String,
    pub attempt: AttemptView,
}

#[utoipa::path(post, path = "/api/v1/channels/{name}/test", tag = "alerting",
    responses((status = 200, body = TestResult, description = "Sent once, no retries; `ok` tells whether it arrived"),
              (status = 404, body = crate::http::error::Problem)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> AppResult<Json<TestResult>> {
    let tenant = caller.require(Scope::Admin)?;
    load(&state, tenant.tenant_id, &name).await?;
    let now = now_ms();
    let key = crate::alerting::payload::opaque_key(&format!("{}\0test\0{}\0{}", tenant.tenant_id, name, uuid_like()));
    let payload = Payload::test(&tenant.tenant, &name, key.clone(), now);
    let new = NewNotification {
        tenant_id: tenant.tenant_id,
        channel: name.clone(),
        instance_id: None,
        rule: None,
        state: "TEST".into(),
        idempotency_key: key.clone(),
        payload: serde_json::to_string(&payload).expect("payloads serialize"),
        created_at: now,
    };
    // Recorded like any notification, so the test shows in the delivery log, but sent here,
    // once: claim it before the delivery loop could.
    state.store.insert_notifications(std::slice::from_ref(&new)).await?;
    let record = state
        .store
        .list_notifications(tenant.tenant_id, Some(&name), 20)
        .await?
        .into_iter()
        .find(|n| n.idempotency_key == key)
        .ok_or_else(|| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "the test notification vanished"))?;
    if !state.store.claim_notification(record.id, record.next_attempt_at, now + 60_000).await? {
        return Err(AppError::new(StatusCode::CONFLICT, "the test notification is already being sent"));
    }
    let single = outbox::OutboxConfig { max_attempts: 1, ..state.alerting.outbox.clone() };
    let (attempt, outcome) = outbox::attempt(&state.store, &state.alerting.notifier, &single, &record).await;
    state.store.finish_attempt(&attempt, outcome).await?;
    Ok(Json(TestResult {
        ok: outcome == AttemptOutcome::Delivered,
        idempotency_key: key,
        attempt: AttemptView::from(&attempt),
    }))
}

fn uuid_like() -> String {
    use rand::Rng;
    hex::encode(rand::rng().random::<[u8; 8]>())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// Identifies the delivery (the same key the receiver gets with every attempt); the
    /// server's own row id is not shown.
    pub idempotency_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// FIRING, NODATA, RESOLVED or TEST.
    pub state: String,
    /// pending, delivered or failed.
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    /// When the next attempt is due, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Deserialize, IntoParams)]
pub struct DeliveryParams {
    /// At most this many, newest first (default 50, at most 500).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/channels/{name}/deliveries", tag = "alerting", params(DeliveryParams),
    responses((status = 200, body = DeliveryList), (status = 404, body = crate::http::error::Problem)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<DeliveryParams>,
) -> AppResult<Json<DeliveryList>> {
    let tenant = caller.require(Scope::Read)?;
    load(&state, tenant.tenant_id, &name).await?;
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let notifications = state.store.list_notifications(tenant.tenant_id, Some(&name), limit).await?;
    let ids: Vec<i64> = notifications.iter().map(|n| n.id).collect();
    let attempts = state.store.list_attempts(&ids).await?;
    let deliveries = notifications
        .into_iter()
        .map(|n| DeliveryView {
            attempt_log: attempts.iter().filter(|a| a.notification_id == n.id).map(AttemptView::from).collect(),
            idempotency_key: n.idempotency_key,
            rule: n.rule,
            state: n.state,
            status: n.status.as_str().to_string(),
            attempts: n.attempts,
            created_at: n.created_at,
            delivered_at: n.delivered_at,
            next_attempt_at: (n.status == crate::storage::alerts::DeliveryStatus::Pending).then_some(n.next_attempt_at),
            last_error: n.last_error,
        })
        .collect();
    Ok(Json(DeliveryList { deliveries }))
}
