//! The Prometheus-compatible API under `/prometheus` (issue 18): PromQL (`query`,
//! `query_range`), the metadata endpoints a Prometheus client or Grafana asks first (`series`,
//! `labels`, `label/{name}/values`) and the federation endpoint Prometheus scrapes (`federate`),
//! per tenant with the same tokens as the rest of the API. Names and selectors are Prometheus' (`domain/promql.rs` maps them).
//!
//! Answers are Prometheus' own shapes: `{"status":"success","data":…}`, and every error of
//! `/prometheus/api/` as `{"status":"error","errorType":…,"error":…}` (Prometheus clients read
//! those fields, not problem+json). `query` and `query_range` evaluate the PromQL subset of
//! `domain/promql_eval.rs` over raw samples; what it does not serve is refused by name.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use microdash_model::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::promql::{LOOKBACK_MS, Selector, exposition, format_value, prometheus_labels, prometheus_name};
use crate::domain::promql_eval::{self, Data, EvalError, Needed, Series, Value};
use crate::domain::{Labels, now_ms};
use crate::http::AppState;
use crate::http::auth::{Caller, TenantCaller};
use crate::http::error::{AppError, AppResult, OwnErrorShape};
use crate::http::params::{MAX_TIME_MS, Params};
use crate::series_select::{self, SelectError};
use crate::storage::{Aggregation, PointQuery, Resolution};

/// Most series one request may select; past it the request is refused and asked to narrow.
pub const MAX_SERIES: usize = 100_000;

/// `{"status":"success","data":[…]}` with a list of names or values.
#[derive(Serialize, ToSchema)]
pub struct PromStrings {
    /// Always `success`.
    pub status: &'static str,
    pub data: Vec<String>,
}

/// `{"status":"success","data":[{…labels}]}`: each series' labels, with `__name__`.
#[derive(Serialize, ToSchema)]
pub struct PromSeries {
    /// Always `success`.
    pub status: &'static str,
    #[schema(value_type = Vec<std::collections::HashMap<String, String>>)]
    pub data: Vec<Labels>,
}

/// Prometheus' error answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PromError {
    /// Always `error`.
    pub status: String,
    /// `bad_data`, `execution`, `not_found`, `unavailable`, `internal`, `unauthorized` or `forbidden`.
    #[serde(rename = "errorType")]
    pub error_type: String,
    pub error: String,
}

/// A POST's `application/x-www-form-urlencoded` body, read as bytes (its own type, so the
/// OpenAPI document takes the form schema its operation declares).
pub struct FormBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(FormBody).map_err(IntoResponse::into_response)
    }
}

/// The parameters of a POST: its query string and its form body, as Prometheus merges them.
fn form_params(raw: Option<&str>, body: &Bytes) -> AppResult<Params> {
    let form =
        std::str::from_utf8(body).map_err(|_| AppError::bad_request("the form body is not UTF-8").field("body"))?;
    if form.trim().is_empty() {
        return Err(AppError::bad_request(
            "a POST carries its parameters as an application/x-www-form-urlencoded body; this one is empty (or use GET)",
        )
        .field("body"));
    }
    let joined = [raw.unwrap_or(""), form.trim()].into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join("&");
    Params::parse(Some(&joined))
}

/// The form of `POST …/query`.
#[derive(Deserialize, ToSchema)]
pub struct QueryForm {
    /// A PromQL expression.
    pub query: String,
    /// Unix seconds or RFC 3339; default now.
    pub time: Option<String>,
}

/// The form of `POST …/query_range`.
#[derive(Deserialize, ToSchema)]
pub struct QueryRangeForm {
    pub query: String,
    pub start: String,
    pub end: String,
    /// Seconds or a duration like `30s`.
    pub step: String,
}

/// The form of `POST …/series`.
#[derive(Deserialize, ToSchema)]
pub struct SeriesForm {
    /// One series selector (a form may repeat `match[]`).
    #[serde(rename = "match[]")]
    pub matches: String,
    pub start: Option<String>,
    pub end: Option<String>,
}

/// The form of `POST …/labels`.
#[derive(Deserialize, ToSchema)]
pub struct LabelsForm {
    /// Only the labels of the series this selector matches.
    #[serde(rename = "match[]")]
    pub matches: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
}

fn selectors(params: &Params) -> AppResult<Vec<Selector>> {
    params
        .all("match[]")
        .into_iter()
        .map(|text| Selector::parse(text).map_err(|e| AppError::bad_request(e).field("match[]")))
        .collect()
}

/// A time as Prometheus takes it: Unix seconds (with a fraction) or RFC 3339; in ms.
fn prom_time(params: &Params, name: &str) -> AppResult<Option<i64>> {
    let Some(text) = params.get(name) else { return Ok(None) };
    let ms = text
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
        .map(|s| (s * 1000.0).round())
        .filter(|ms| (0.0..=MAX_TIME_MS as f64).contains(ms))
        .map(|ms| ms as i64)
        .or_else(|| crate::domain::sample::parse_rfc3339_ms(text).filter(|ms| (0..=MAX_TIME_MS).contains(ms)));
    ms.map(Some).ok_or_else(|| {
        AppError::bad_request(format!("`{name}` {text:?} must be Unix seconds or an RFC 3339 time")).field(name)
    })
}

fn limit(params: &Params) -> AppResult<usize> {
    match params.get("limit") {
        None | Some("0") => Ok(MAX_SERIES),
        Some(text) => match text.parse::<i32>() {
            Ok(n) if n >= 0 => Ok((n as usize).min(MAX_SERIES)),
            _ => Err(AppError::bad_request(format!(
                "`limit` {text:?} must be a whole number 0..=2147483647 (0: no limit)"
            ))
            .field("limit")),
        },
    }
}

/// A selected series: its Prometheus labels and its newest sample.
struct Selected {
    labels: Labels,
    last: Option<(i64, f64)>,
}

/// The tenant's series that any of `selectors` matches, in Prometheus' names (`series_select`).
async fn select(
    state: &AppState,
    tenant: &TenantCaller,
    selectors: &[Selector],
    since: Option<i64>,
) -> AppResult<Vec<Selected>> {
    match series_select::matching(&state.store, tenant.tenant_id, selectors, since, MAX_SERIES).await {
        Ok(found) => Ok(found.into_iter().map(|m| Selected { labels: m.prometheus, last: m.last }).collect()),
        Err(SelectError::TooMany(max)) => {
            Err(AppError::bad_request(format!("the selectors match more than {max} series; narrow them"))
                .field("match[]"))
        }
        Err(SelectError::Store(e)) => Err(e.into()),
    }
}

/// Every series (`{__name__=~".+"}`), for `labels` and `label values` without `match[]`.
fn everything() -> Vec<Selector> {
    vec![Selector::parse(r#"{__name__=~".+"}"#).expect("a valid selector")]
}

#[utoipa::path(get, path = "/prometheus/api/v1/series", tag = "prometheus",
    params(("match[]" = Vec<String>, Query, description = "series selector, repeatable: `up{job=~\"node|api\"}`"),
           ("start" = Option<String>, Query, description = "Unix seconds or RFC 3339: series with a sample at or after it"),
           ("end" = Option<String>, Query, description = "accepted, not used: series are not filtered by their oldest sample"),
           ("limit" = Option<i32>, Query, minimum = 0, description = "at most this many series (0: no limit)")),
    responses((status = 200, body = PromSeries), (status = 400, body = PromError)))]
pub async fn series(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> AppResult<Response> {
    series_of(state, caller, Params::parse(raw.as_deref())?).await
}

#[utoipa::path(post, path = "/prometheus/api/v1/series", tag = "prometheus",
    request_body(content = SeriesForm, content_type = "application/x-www-form-urlencoded",
                 description = "the GET's parameters as a form (how Grafana sends long selectors)"),
    responses((status = 200, body = PromSeries), (status = 400, body = PromError)))]
pub async fn series_form(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    FormBody(body): FormBody,
) -> AppResult<Response> {
    series_of(state, caller, form_params(raw.as_deref(), &body)?).await
}

async fn series_of(state: AppState, caller: Caller, params: Params) -> AppResult<Response> {
    let tenant = caller.require(Scope::Read)?;
    let selectors = selectors(&params)?;
    if selectors.is_empty() {
        return Err(AppError::bad_request("at least one `match[]` selector is required").field("match[]"));
    }
    let (since, _) = (prom_time(&params, "start")?, prom_time(&params, "end")?);
    let limit = limit(&params)?;
    let mut data: Vec<Labels> =
        select(&state, &tenant, &selectors, since).await?.into_iter().map(|s| s.labels).collect();
    data.sort();
    data.dedup();
    data.truncate(limit);
    Ok(axum::Json(PromSeries { status: "success", data }).into_response())
}

#[utoipa::path(get, path = "/prometheus/api/v1/labels", tag = "prometheus",
    params(("match[]" = Option<Vec<String>>, Query, description = "only the labels of these series"),
           ("start" = Option<String>, Query), ("end" = Option<String>, Query),
           ("limit" = Option<i32>, Query, minimum = 0)),
    responses((status = 200, body = PromStrings), (status = 400, body = PromError)))]
pub async fn labels(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> AppResult<Response> {
    labels_of(state, caller, Params::parse(raw.as_deref())?).await
}

#[utoipa::path(post, path = "/prometheus/api/v1/labels", tag = "prometheus",
    request_body(content = LabelsForm, content_type = "application/x-www-form-urlencoded",
                 description = "the GET's parameters as a form"),
    responses((status = 200, body = PromStrings), (status = 400, body = PromError)))]
pub async fn labels_form(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    FormBody(body): FormBody,
) -> AppResult<Response> {
    labels_of(state, caller, form_params(raw.as_deref(), &body)?).await
}

async fn labels_of(state: AppState, caller: Caller, params: Params) -> AppResult<Response> {
    let tenant = caller.require(Scope::Read)?;
    let mut selectors = selectors(&params)?;
    if selectors.is_empty() {
        selectors = everything();
    }
    let (since, _) = (prom_time(&params, "start")?, prom_time(&params, "end")?);
    let limit = limit(&params)?;
    let names: BTreeSet<String> =
        select(&state, &tenant, &selectors, since).await?.into_iter().flat_map(|s| s.labels.into_keys()).collect();
    Ok(axum::Json(PromStrings { status: "success", data: names.into_iter().take(limit).collect() }).into_response())
}

#[utoipa::path(get, path = "/prometheus/api/v1/label/{name}/values", tag = "prometheus",
    params(("name" = String, Path, description = "a Prometheus label name, or `__name__` for the metric names"),
           ("match[]" = Option<Vec<String>>, Query, description = "only the values on these series"),
           ("start" = Option<String>, Query), ("end" = Option<String>, Query),
           ("limit" = Option<i32>, Query, minimum = 0)),
    responses((status = 200, body = PromStrings), (status = 400, body = PromError)))]
pub async fn label_values(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> AppResult<Response> {
    let tenant = caller.require(Scope::Read)?;
    let params = Params::parse(raw.as_deref())?;
    let selectors = selectors(&params)?;
    let (since, _) = (prom_time(&params, "start")?, prom_time(&params, "end")?);
    let limit = limit(&params)?;
    let values: BTreeSet<String> = if name == "__name__" && selectors.is_empty() && since.is_none() {
        // The metric names alone: no series need to be read.
        state.store.metric_names(tenant.tenant_id).await?.iter().map(|m| prometheus_name(m)).collect()
    } else {
        let selectors = if selectors.is_empty() { everything() } else { selectors };
        select(&state, &tenant, &selectors, since)
            .await?
            .into_iter()
            .filter_map(|mut s| s.labels.remove(&name))
            .collect()
    };
    Ok(axum::Json(PromStrings { status: "success", data: values.into_iter().take(limit).collect() }).into_response())
}

#[utoipa::path(get, path = "/prometheus/federate", tag = "prometheus",
    params(("match[]" = Vec<String>, Query, description = "series selector, repeatable; without one the answer is empty, as Prometheus' /federate")),
    responses((status = 200, content_type = "text/plain", body = String,
               description = "The newest sample (at most 5 minutes old) of each selected series, in the text exposition format with timestamps")))]
pub async fn federate(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> AppResult<Response> {
    let tenant = caller.require(Scope::Read)?;
    let params = Params::parse(raw.as_deref())?;
    let selectors = selectors(&params)?;
    let since = now_ms() - LOOKBACK_MS;
    let series: Vec<(Labels, (i64, f64))> = if selectors.is_empty() {
        Vec::new()
    } else {
        select(&state, &tenant, &selectors, Some(since))
            .await?
            .into_iter()
            .filter_map(|s| Some((s.labels, s.last?)))
            .collect()
    };
    let mut response = exposition(&series).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

/// `{"status":"success","data":{}}`: metric metadata (type, help, unit).
#[derive(Serialize, ToSchema)]
pub struct PromMetadata {
    /// Always `success`.
    pub status: &'static str,
    /// Metric name → its metadata; always empty: microdash keeps no metadata (remote_write's and
    /// OTLP's are not stored).
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Prometheus' `metric` and `limit` are accepted and change nothing: there is no metadata.
#[utoipa::path(get, path = "/prometheus/api/v1/metadata", tag = "prometheus",
    responses((status = 200, body = PromMetadata)))]
pub async fn metadata(caller: Caller) -> AppResult<Response> {
    caller.require(Scope::Read)?;
    Ok(axum::Json(PromMetadata { status: "success", data: serde_json::Map::new() }).into_response())
}

/// Most steps of one range query, as Prometheus allows.
const MAX_STEPS: i64 = 11_000;

/// `{"status":"success","data":{"resultType":…,"result":…}}`.
#[derive(Serialize, ToSchema)]
pub struct PromQueryResult {
    /// Always `success`.
    pub status: &'static str,
    pub data: PromQueryData,
}

#[derive(Serialize, ToSchema)]
pub struct PromQueryData {
    /// `vector` or `scalar` for an instant query, `matrix` for a range query.
    #[serde(rename = "resultType")]
    pub result_type: &'static str,
    /// Prometheus' result: `[{"metric":{…},"value":[t,"v"]}]`, `[t,"v"]` or
    /// `[{"metric":{…},"values":[[t,"v"],…]}]`, times in Unix seconds.
    pub result: serde_json::Value,
}

fn eval_error(e: EvalError) -> AppError {
    AppError::new(
        if e.kind == "bad_data" { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY },
        e.message,
    )
    .field("query")
}

/// `[t_seconds, "value"]`, a whole second written as Prometheus writes it (`1700000000`, not
/// `1700000000.0`).
fn point(t: i64, v: f64) -> serde_json::Value {
    let seconds = if t % 1000 == 0 { serde_json::json!(t / 1000) } else { serde_json::json!(t as f64 / 1000.0) };
    serde_json::json!([seconds, format_value(v)])
}

/// Where the samples of `[from, to]` are read: raw samples where they are kept
/// (`retention_raw`), before that the last sample of each minute (the 1m rollup), before that of
/// each 5 minutes: every point is a sample that was written, at its own time.
fn segments(from: i64, to: i64, now: i64, config: &crate::config::Config) -> Vec<(Resolution, i64, i64)> {
    let raw_since = now - config.retention_raw.as_millis() as i64;
    let one_minute_since = now - config.retention_1m.as_millis() as i64;
    let mut out = Vec::new();
    let five = (from, to.min(one_minute_since.min(raw_since) - 1));
    let one = (from.max(one_minute_since), to.min(raw_since - 1));
    let raw = (from.max(raw_since), to);
    for (resolution, (a, b)) in [(Resolution::FiveMinutes, five), (Resolution::OneMinute, one), (Resolution::Raw, raw)]
    {
        if a <= b {
            out.push((resolution, a, b));
        }
    }
    out
}

/// The samples each selector of the query needs from the tenant's series (see `segments`); at
/// most `max_query_points` points in all.
async fn fetch(state: &AppState, tenant: &TenantCaller, needs: &[Needed]) -> AppResult<Data> {
    let metrics = state.store.metric_names(tenant.tenant_id).await?;
    let now = now_ms();
    let mut data = Data::new();
    let mut total = 0usize;
    for need in needs {
        let mut series: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
        let segments = segments(need.from.max(0), need.to.min(MAX_TIME_MS), now, &state.config);
        for metric in &metrics {
            if !need.selector.may_select_metric(&prometheus_name(metric)) {
                continue;
            }
            for &(resolution, from, to) in &segments {
                let found = state
                    .store
                    .query(&PointQuery {
                        tenant_id: tenant.tenant_id,
                        metric: metric.clone(),
                        matchers: Labels::new(),
                        from,
                        to,
                        step: None,
                        resolution,
                        agg: Aggregation::Last,
                        max_points: state.config.max_query_points,
                        last_sample_times: true,
                    })
                    .await?;
                for s in found {
                    let labels = prometheus_labels(metric, &s.labels);
                    if need.selector.matches(&labels) {
                        let points = s.points.into_iter().filter(|(ts, _)| (from..=to).contains(ts));
                        let kept = series.entry(labels).or_default();
                        let before = kept.len();
                        kept.extend(points);
                        total += kept.len() - before;
                    }
                }
                if total > state.config.max_query_points {
                    return Err(AppError::bad_request(format!(
                        "the query reads more than {} samples; narrow its selectors or its range",
                        state.config.max_query_points
                    ))
                    .field("query"));
                }
            }
        }
        let series = series.into_iter().filter(|(_, points)| !points.is_empty());
        data.insert(need.key.clone(), series.map(|(labels, points)| Series { labels, points }).collect());
    }
    Ok(data)
}

/// A step or duration as Prometheus takes it: seconds (with a fraction) or `30s`, `5m`, `1h`.
fn prom_duration(params: &Params, name: &str) -> AppResult<Option<i64>> {
    let Some(text) = params.get(name) else { return Ok(None) };
    let ms = text
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite())
        .map(|s| (s * 1000.0).round())
        .filter(|ms| *ms >= 1.0 && *ms <= MAX_TIME_MS as f64)
        .map(|ms| ms as i64)
        .or_else(|| {
            humantime::parse_duration(text)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .filter(|ms| (1..=MAX_TIME_MS).contains(ms))
        });
    ms.map(Some).ok_or_else(|| {
        AppError::bad_request(format!("`{name}` {text:?} must be a positive duration: seconds or like 30s, 5m"))
            .field(name)
    })
}

#[utoipa::path(get, path = "/prometheus/api/v1/query", tag = "prometheus",
    params(("query" = String, Query, description = "a PromQL expression (the subset in the README)"),
           ("time" = Option<String>, Query, description = "Unix seconds or RFC 3339; default now")),
    responses((status = 200, body = PromQueryResult), (status = 400, body = PromError), (status = 422, body = PromError)))]
pub async fn query(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> AppResult<Response> {
    query_of(state, caller, Params::parse(raw.as_deref())?).await
}

#[utoipa::path(post, path = "/prometheus/api/v1/query", tag = "prometheus",
    request_body(content = QueryForm, content_type = "application/x-www-form-urlencoded",
                 description = "the GET's parameters as a form (Grafana's default)"),
    responses((status = 200, body = PromQueryResult), (status = 400, body = PromError), (status = 422, body = PromError)))]
pub async fn query_form(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    FormBody(body): FormBody,
) -> AppResult<Response> {
    query_of(state, caller, form_params(raw.as_deref(), &body)?).await
}

async fn query_of(state: AppState, caller: Caller, params: Params) -> AppResult<Response> {
    let tenant = caller.require(Scope::Read)?;
    let expr = promql_eval::parse(params.required("query")?).map_err(eval_error)?;
    let t = prom_time(&params, "time")?.unwrap_or_else(now_ms);
    let needs = promql_eval::needs(&expr, t, t).map_err(eval_error)?;
    let data = fetch(&state, &tenant, &needs).await?;
    let (result_type, result) = match promql_eval::instant(&expr, &data, t).map_err(eval_error)? {
        Value::Scalar(v) => ("scalar", point(t, v)),
        Value::Vector(mut vector) => {
            vector.sort_by(|a, b| a.0.cmp(&b.0));
            let result =
                vector.into_iter().map(|(metric, v)| serde_json::json!({"metric": metric, "value": point(t, v)}));
            ("vector", serde_json::Value::Array(result.collect()))
        }
    };
    Ok(axum::Json(PromQueryResult { status: "success", data: PromQueryData { result_type, result } }).into_response())
}

#[utoipa::path(get, path = "/prometheus/api/v1/query_range", tag = "prometheus",
    params(("query" = String, Query, description = "a PromQL expression (the subset in the README)"),
           ("start" = String, Query, description = "Unix seconds or RFC 3339"),
           ("end" = String, Query, description = "Unix seconds or RFC 3339"),
           ("step" = String, Query, description = "seconds or a duration like 30s; at most 11000 steps")),
    responses((status = 200, body = PromQueryResult), (status = 400, body = PromError), (status = 422, body = PromError)))]
pub async fn query_range(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> AppResult<Response> {
    query_range_of(state, caller, Params::parse(raw.as_deref())?).await
}

#[utoipa::path(post, path = "/prometheus/api/v1/query_range", tag = "prometheus",
    request_body(content = QueryRangeForm, content_type = "application/x-www-form-urlencoded",
                 description = "the GET's parameters as a form (Grafana's default)"),
    responses((status = 200, body = PromQueryResult), (status = 400, body = PromError), (status = 422, body = PromError)))]
pub async fn query_range_form(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    FormBody(body): FormBody,
) -> AppResult<Response> {
    query_range_of(state, caller, form_params(raw.as_deref(), &body)?).await
}

async fn query_range_of(state: AppState, caller: Caller, params: Params) -> AppResult<Response> {
    let tenant = caller.require(Scope::Read)?;
    let expr = promql_eval::parse(params.required("query")?).map_err(eval_error)?;
    let missing = |name: &str| AppError::bad_request(format!("the `{name}` parameter is required")).field(name);
    let start = prom_time(&params, "start")?.ok_or_else(|| missing("start"))?;
    let end = prom_time(&params, "end")?.ok_or_else(|| missing("end"))?;
    let step = prom_duration(&params, "step")?.ok_or_else(|| missing("step"))?;
    if end < start {
        return Err(AppError::bad_request("`end` must not be before `start`").field("end"));
    }
    if (end - start) / step >= MAX_STEPS {
        return Err(AppError::bad_request(format!(
            "more than {MAX_STEPS} steps per series: raise `step` (at least {} s for this range)",
            (end - start) / MAX_STEPS / 1000 + 1
        ))
        .field("step"));
    }
    let needs = promql_eval::needs(&expr, start, end).map_err(eval_error)?;
    let data = fetch(&state, &tenant, &needs).await?;
    let series = promql_eval::range(&expr, &data, start, end, step).map_err(eval_error)?;
    let result = series.into_iter().map(|(metric, points)| {
        let values: Vec<serde_json::Value> = points.into_iter().map(|(t, v)| point(t, v)).collect();
        serde_json::json!({"metric": metric, "values": values})
    });
    let data = PromQueryData { result_type: "matrix", result: serde_json::Value::Array(result.collect()) };
    Ok(axum::Json(PromQueryResult { status: "success", data }).into_response())
}

/// What is not served under `/prometheus/api/`: said plainly, in Prometheus' error shape.
pub async fn not_served(uri: axum::http::Uri) -> AppError {
    AppError::not_found(format!(
        "{} is not part of microdash's Prometheus API; served are /prometheus/api/v1/query, /query_range, /series, \
         /labels, /label/{{name}}/values and /prometheus/federate",
        uri.path()
    ))
}

/// Every error answer of `/prometheus/api/` in Prometheus' shape (the status code is kept): the
/// problem+json the shared machinery (authentication, the database, the handlers) answers is
/// rewritten with its `detail` as `error`.
pub async fn prometheus_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
    let error_type = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "bad_data",
        // Prometheus answers a query that fails while it is evaluated with 422 `execution`.
        StatusCode::UNPROCESSABLE_ENTITY => "execution",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => "not_found",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "internal",
    };
    let body = serde_json::to_vec(&PromError { status: "error".into(), error_type: error_type.into(), error: detail })
        .expect("serializes");
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(OwnErrorShape);
    Response::from_parts(parts, axum::body::Body::from(body))
}
