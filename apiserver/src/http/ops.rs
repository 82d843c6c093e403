//! Liveness, readiness, self-metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use utoipa::OpenApi;

use crate::http::error::AppError;
use crate::http::{ApiDoc, AppState};

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses((status = 200, description = "The database answers"), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready", "queue_depth": state.writer.depth()}))),
        Err(err) => {
            tracing::warn!(%err, "Not ready: the database does not answer.");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "reason": "database"})))
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", description = "OpenMetrics text exposition")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.telemetry.queue_depth.set(state.writer.depth() as i64);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.telemetry.encode())
}

pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

pub async fn api_not_found() -> AppError {
    AppError::not_found("no such API endpoint; see /openapi.json")
}
