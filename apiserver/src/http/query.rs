//! Read endpoints: metric names, series, and points over a time range.

use axum::Json;
use axum::extract::{RawQuery, State};
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{now_ms, sample::is_valid_name};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::params::Params;
use crate::storage::{Aggregation, PointQuery, Resolution, SeriesInfo, SeriesPoints, choose_resolution};

/// Most buckets one query may ask for, so a tiny step over a long range is refused clearly.
const MAX_BUCKETS: i64 = 100_000;

#[derive(Serialize, ToSchema)]
pub struct MetricsResponse {
    pub metrics: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesResponse {
    pub metric: String,
    pub series: Vec<SeriesInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct QueryResponse {
    /// `raw`, `1m` or `5m`: where the points came from.
    pub resolution: &'static str,
    pub series: Vec<SeriesPoints>,
}

#[utoipa::path(get, path = "/api/v1/metrics", tag = "query", responses((status = 200, body = MetricsResponse)))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> AppResult<Json<MetricsResponse>> {
    let tenant = caller.require(Scope::Read)?;
    Ok(Json(MetricsResponse { metrics: state.store.metric_names(tenant.tenant_id).await? }))
}

fn metric_param(params: &Params) -> AppResult<String> {
    let metric = params.required("metric")?;
    if !is_valid_name(metric) {
        return Err(
            AppError::bad_request(format!("metric {metric:?} must match [a-zA-Z_][a-zA-Z0-9_.:-]*")).field("metric")
        );
    }
    Ok(metric.to_string())
}

#[utoipa::path(get, path = "/api/v1/series", tag = "query",
    params(("metric" = String, Query, description = "metric name"), ("match" = Option<String>, Query, description = "k=v,k2=v2")),
    responses((status = 200, body = SeriesResponse)))]
pub async fn series(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> AppResult<Json<SeriesResponse>> {
    let tenant = caller.require(Scope::Read)?;
    let params = Params::parse(raw.as_deref())?;
    let metric = metric_param(&params)?;
    let series = state.store.series(tenant.tenant_id, &metric, &params.matchers()?).await?;
    Ok(Json(SeriesResponse { metric, series }))
}

#[utoipa::path(get, path = "/api/v1/query", tag = "query",
    params(("metric" = String, Query), ("match" = Option<String>, Query, description = "k=v,k2=v2"),
           ("from" = Option<String>, Query, description = "Unix ms, RFC 3339, now, now-1h; default now-1h"),
           ("to" = Option<String>, Query, description = "default now"),
           ("step" = Option<String>, Query, description = "bucket width like 60s; omitted = raw points"),
           ("agg" = Option<String>, Query, description = "avg|min|max|sum|count|last (default avg)"),
           ("resolution" = Option<String>, Query, description = "auto (default: from range and step), raw, 1m or 5m")),
    responses((status = 200, body = QueryResponse)))]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> AppResult<Json<QueryResponse>> {
    let tenant = caller.require(Scope::Read)?;
    let params = Params::parse(raw.as_deref())?;
    let metric = metric_param(&params)?;
    let now = now_ms();
    let to = params.time("to", now)?.unwrap_or(now);
    let from = params.time("from", now)?.unwrap_or(to - 3_600_000);
    if from > to {
        return Err(AppError::bad_request("`from` must not be after `to`").field("from"));
    }
    let step = params.duration_ms("step")?;
    if let Some(step) = step
        && (to - from) / step > MAX_BUCKETS
    {
        return Err(AppError::bad_request(format!(
            "step is too small for this range: at most {MAX_BUCKETS} buckets per series"
        ))
        .field("step"));
    }
    let agg = match params.get("agg") {
        None => Aggregation::Avg,
        Some(text) => serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
            AppError::bad_request(format!("agg {text:?} must be one of avg, min, max, sum, count, last")).field("agg")
        })?,
    };
    let resolution = match params.get("resolution") {
        None | Some("auto") => {
            let raw_kept_since = now - state.config.retention_raw.as_millis() as i64;
            choose_resolution(from, to, step, raw_kept_since)
        }
        Some(text) => Resolution::parse(text).ok_or_else(|| {
            AppError::bad_request(format!("resolution {text:?} must be one of auto, raw, 1m, 5m")).field("resolution")
        })?,
    };
    let series = state
        .store
        .query(&PointQuery {
            tenant_id: tenant.tenant_id,
            metric,
            matchers: params.matchers()?,
            from,
            to,
            step,
            resolution,
            agg,
            max_points: state.config.max_query_points,
            last_sample_times: false,
        })
        .await?;
    Ok(Json(QueryResponse { resolution: resolution.as_str(), series }))
}
