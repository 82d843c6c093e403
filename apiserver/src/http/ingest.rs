//! `POST /api/v1/metrics` and `POST /api/v1/metrics/bulk`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{Sample, now_ms};
use crate::fairness::IngestPermit;
use crate::http::AppState;
use crate::http::auth::{Caller, TenantCaller};
use crate::http::error::{AppError, AppResult};
use crate::ingest::influx::{self, Precision};
use crate::ingest::otlp;
use crate::ingest::prometheus::{self, DecodeError};
use crate::ingest::vm_import;
use crate::ingest::{IngestError, Refusals, parse_bulk, parse_single};
use crate::limits::{self, RateRefusal};
use crate::pipeline::SubmitError;
use crate::storage::WriteOutcome;
use crate::telemetry::reason;

/// The request body, with the body-size limit answered as problem+json.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(Body).map_err(|rejection| {
            state.telemetry.reject(reason::BODY_TOO_LARGE);
            AppError::from(rejection)
        })
    }
}

/// A sample as clients send it (documentation only; parsing is in `crate::ingest`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SampleInput {
    /// `[a-zA-Z_][a-zA-Z0-9_.:-]*`
    #[schema(example = "cpu.usage")]
    metric: String,
    /// A finite number.
    value: f64,
    /// Unix milliseconds or an RFC 3339 string; defaults to the time of receipt.
    #[schema(value_type = Option<String>, example = 1764104400000i64)]
    ts: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    /// Repeats within the dedupe window are counted as duplicates and not stored again.
    dedupe_id: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BulkInput {
    samples: Vec<SampleInput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    pub accepted: usize,
    pub duplicates: usize,
}

#[utoipa::path(post, path = "/api/v1/metrics", tag = "ingest", request_body = SampleInput,
    responses((status = 202, body = IngestResponse, description = "Stored durably"),
              (status = 400, body = crate::http::error::Problem), (status = 401), (status = 413), (status = 422,
              description = "An invalid sample, or new series past the tenant's series limit (the samples \
              of existing series were stored; `accepted` and `refused` say how many)"),
              (status = 429, description = "Over the tenant's samples_per_second; see Retry-After"), (status = 503)))]
pub async fn ingest_one(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    let tenant = caller.require(Scope::Ingest)?;
    let (body, _permit) = read_body(&state, &tenant, request).await?;
    let sample = parse_single(&body, &state.limits, now_ms()).map_err(|e| rejected(&state, e))?;
    accept(&state, &tenant, vec![sample]).await
}

#[utoipa::path(post, path = "/api/v1/metrics/bulk", tag = "ingest", request_body = BulkInput,
    responses((status = 202, body = IngestResponse, description = "Stored durably"),
              (status = 400, body = crate::http::error::Problem), (status = 401), (status = 413), (status = 422,
              description = "An invalid sample, or new series past the tenant's series limit (the samples \
              of existing series were stored; `accepted` and `refused` say how many)"),
              (status = 429, description = "Over the tenant's samples_per_second; see Retry-After"), (status = 503)))]
pub async fn ingest_bulk(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    let tenant = caller.require(Scope::Ingest)?;
    let (body, _permit) = read_body(&state, &tenant, request).await?;
    let samples = parse_bulk(&body, &state.limits, now_ms()).map_err(|e| rejected(&state, e))?;
    accept(&state, &tenant, samples).await
}

/// Reads the body once the tenant and the server have room for it (`crate::fairness`); the
/// permit is held until the request is answered.
async fn read_body(state: &AppState, tenant: &TenantCaller, request: Request) -> AppResult<(Bytes, IngestPermit)> {
    let max = state.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = declared.unwrap_or(max).clamp(1, max);
    let Some(permit) = state.fairness.ingest(tenant.tenant_id, bytes).await else {
        state.telemetry.reject(reason::RATE_LIMITED);
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant {:?} has {} bytes of requests in flight, its limit (max_inflight_ingest_bytes_per_tenant); \
                 retry once earlier requests are answered",
                tenant.tenant,
                state.fairness.ingest_bytes_per_tenant.capacity()
            ),
        )
        .retry_after(1)
        .limit("inflight_bytes", None, None));
    };
    let Body(body) = Body::from_request(request, state).await?;
    Ok((body, permit))
}

/// A protobuf body (remote_write, OTLP), documentation only (`crate::ingest` reads them).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct BinaryBody(Vec<u8>);

/// How large a compressed body (snappy, gzip) may become once inflated.
fn max_inflated(state: &AppState) -> usize {
    state.config.max_body_bytes.saturating_mul(8)
}

/// 413 for a body with more samples than `max_batch_samples` (`count` so far).
fn too_many(state: &AppState, count: usize) -> AppError {
    state.telemetry.reject(reason::BATCH_TOO_LARGE);
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body has more than {count} samples; the limit is {} (max_batch_samples): split it",
            state.limits.max_batch_samples
        ),
    )
    .field("body")
}

/// `read_body`, then inflated when it is gzip-compressed (`Content-Encoding: gzip`).
async fn read_maybe_gzip(
    state: &AppState,
    tenant: &TenantCaller,
    request: Request,
) -> AppResult<(Vec<u8>, IngestPermit)> {
    let gzip = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let (body, permit) = read_body(state, tenant, request).await?;
    let body = if gzip { gunzip(&body, max_inflated(state))? } else { body.to_vec() };
    Ok((body, permit))
}

/// `read_maybe_gzip` for the line formats: a body of whitespace alone is refused, naming
/// `what` its lines should have been.
async fn read_lines(
    state: &AppState,
    tenant: &TenantCaller,
    request: Request,
    what: &str,
) -> AppResult<(Vec<u8>, IngestPermit)> {
    let (body, permit) = read_maybe_gzip(state, tenant, request).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request(format!("the body has no lines of {what}")).field("body"));
    }
    Ok((body, permit))
}

#[utoipa::path(post, path = "/api/v1/write", tag = "ingest",
    request_body(content = BinaryBody, content_type = "application/x-protobuf",
        description = "Prometheus remote_write 1.0: a snappy-compressed (block format) protobuf WriteRequest. \
            `__name__` is the metric, the other labels are labels; staleness markers are skipped."),
    responses((status = 202, body = IngestResponse, description = "Stored durably"),
              (status = 400, body = crate::http::error::Problem, description = "Not a snappy-compressed WriteRequest, \
                  or some samples were refused (the others were stored; Prometheus does not retry a 4xx)"),
              (status = 401), (status = 413), (status = 415),
              (status = 422, description = "New series past the tenant's series limit (the samples of existing \
                  series were stored)"),
              (status = 429, description = "Over the tenant's samples_per_second; see Retry-After (Prometheus retries)"),
              (status = 503, description = "Overloaded; see Retry-After (Prometheus retries)")))]
pub async fn remote_write(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    let tenant = caller.require(Scope::Ingest)?;
    if let Some(kind) = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !kind.starts_with("application/x-protobuf")
    {
        state.telemetry.reject(reason::MALFORMED);
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("remote_write takes application/x-protobuf (snappy-compressed), not {kind:?}; JSON goes to /api/v1/metrics/bulk"),
        )
        .field("Content-Type"));
    }
    let (body, _permit) = read_body(&state, &tenant, request).await?;
    let decoded = prometheus::decode(&body, max_inflated(&state), &state.limits, now_ms()).map_err(|err| {
        state.telemetry.reject(reason::MALFORMED);
        let status = match err {
            DecodeError::TooLarge { .. } | DecodeError::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DecodeError::Snappy(_) | DecodeError::Protobuf(_) => StatusCode::BAD_REQUEST,
        };
        AppError::new(status, err.to_string()).field("body")
    })?;
    drop(body);
    let (refused, first) = (decoded.refused, decoded.first_refusal);
    let answer = accept(&state, &tenant, decoded.samples).await?;
    match first {
        None => Ok(answer),
        Some((series, error)) => {
            state.telemetry.reject(reason::INVALID_SAMPLE);
            let (_, Json(stored)) = answer;
            Err(AppError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{refused} sample(s) refused, the first of {series}: {}: {}; the other {} sample(s) were stored",
                    error.field,
                    error.reason,
                    stored.accepted + stored.duplicates
                ),
            )
            .field(error.field))
        }
    }
}

/// A body in InfluxDB line protocol, documentation only (`crate::ingest::influx` reads it).
#[derive(ToSchema)]
#[schema(value_type = String, example = "cpu,host=web-1 usage_idle=99.5,usage_user=0.25 1764104400000000000")]
#[allow(dead_code)]
pub struct LineProtocolBody(String);

#[derive(utoipa::IntoParams)]
#[allow(dead_code)]
pub struct InfluxWriteParams {
    /// `ns` (default), `us`, `ms` or `s`: the unit of the lines' timestamps.
    pub precision: Option<String>,
    /// Accepted for the clients' sake and not used: the token says the tenant.
    pub org: Option<String>,
    /// Accepted for the clients' sake and not used.
    pub bucket: Option<String>,
}

#[utoipa::path(post, path = "/api/v2/write", tag = "ingest", params(InfluxWriteParams),
    request_body(content = LineProtocolBody, content_type = "text/plain",
        description = "InfluxDB line protocol (Telegraf's outputs.influxdb_v2, the InfluxDB client libraries), \
            optionally gzip-compressed. Each field is a sample of `{measurement}.{field}`, tags are labels. \
            The token in `Authorization: Token …` or `Bearer …`."),
    responses((status = 204, description = "Stored durably"),
              (status = 400, body = crate::http::error::Problem, description = "Some lines were refused (the \
                  others were stored), or the body is not gzip or text"),
              (status = 401), (status = 413),
              (status = 422, description = "New series past the tenant's series limit (the samples of existing \
                  series were stored)"),
              (status = 429, description = "Over the tenant's samples_per_second; see Retry-After"),
              (status = 503, description = "Overloaded; see Retry-After")))]
pub async fn influx_write(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    request: Request,
) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Ingest)?;
    let params = crate::http::params::Params::parse(raw.as_deref())?;
    let precision = Precision::parse(params.get("precision")).ok_or_else(|| {
        AppError::bad_request(format!(
            "precision {:?} is not one of ns, us, ms, s",
            params.get("precision").unwrap_or_default()
        ))
        .field("precision")
    })?;
    let (body, _permit) = read_lines(&state, &tenant, request, "line protocol").await?;
    let text = String::from_utf8(body).map_err(|e| {
        AppError::bad_request(format!("the body is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
            .field("body")
    })?;
    let decoded = influx::decode(&text, precision, &state.limits, now_ms()).map_err(|count| too_many(&state, count))?;
    drop(text);
    let (_, Json(stored)) = accept(&state, &tenant, decoded.samples).await?;
    partial_write(&state, decoded.refused, &stored, "line(s) or field(s)")
}

/// 204 when every line was taken; otherwise 400 naming the first refused line, after the
/// valid samples were stored (InfluxDB's and VictoriaMetrics' partial writes).
fn partial_write(state: &AppState, refused: Refusals, stored: &IngestResponse, what: &str) -> AppResult<StatusCode> {
    match refused.first {
        None => Ok(StatusCode::NO_CONTENT),
        Some((line, why)) => {
            state.telemetry.reject(reason::INVALID_SAMPLE);
            Err(AppError::bad_request(format!(
                "partial write: {} {what} refused, the first on line {line}: {why}; the other {} \
                 sample(s) were stored",
                refused.count,
                stored.accepted + stored.duplicates
            ))
            .field(format!("line {line}")))
        }
    }
}

/// VictoriaMetrics' JSON lines (documentation only; `crate::ingest::vm_import` reads them).
#[derive(ToSchema)]
#[schema(value_type = String, example = "{\"metric\":{\"__name__\":\"up\",\"job\":\"node\"},\"values\":[1],\"timestamps\":[1764104400000]}")]
#[allow(dead_code)]
pub struct ImportLinesBody(String);

#[utoipa::path(post, path = "/api/v1/import", tag = "ingest",
    request_body(content = ImportLinesBody, content_type = "application/x-ndjson",
        description = "VictoriaMetrics' JSON line format (what its `/api/v1/export` writes), \
            optionally gzip-compressed: one series a line, `{\"metric\":{\"__name__\":…, labels…}, \
            \"values\":[…], \"timestamps\":[…]}` with Unix milliseconds. `__name__` is the metric, the other \
            keys are labels."),
    responses((status = 204, description = "Stored durably"),
              (status = 400, body = crate::http::error::Problem, description = "Some lines or samples were refused \
                  (the others were stored; the answer names the first line), or the body is not gzip"),
              (status = 401), (status = 413),
              (status = 422, description = "New series past the tenant's series limit (the samples of existing \
                  series were stored)"),
              (status = 429, description = "Over the tenant's samples_per_second; see Retry-After"),
              (status = 503, description = "Overloaded; see Retry-After")))]
pub async fn vm_import(State(state): State<AppState>, caller: Caller, request: Request) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Ingest)?;
    let (body, _permit) = read_lines(&state, &tenant, request, "JSON").await?;
    let decoded = vm_import::decode(&body, &state.limits, now_ms()).map_err(|count| too_many(&state, count))?;
    drop(body);
    let (_, Json(stored)) = accept(&state, &tenant, decoded.samples).await?;
    partial_write(&state, decoded.refused, &stored, "line(s) or sample(s)")
}

#[utoipa::path(post, path = "/v1/metrics", tag = "ingest",
    request_body(content = BinaryBody, content_type = "application/x-protobuf",
        description = "OTLP/HTTP metrics: an ExportMetricsServiceRequest as protobuf (or `application/json`), \
            optionally gzip. Gauges and sums are samples; histograms `.count`, `.sum`, `.bucket{le}`; summaries \
            `.count`, `.sum` and `{quantile}`; resource and point attributes are labels."),
    responses((status = 200, description = "Stored durably: an ExportMetricsServiceResponse, with \
                  `partial_success` naming rejected data points (the others were stored)"),
              (status = 400, body = crate::http::error::Problem, description = "Not an ExportMetricsServiceRequest"),
              (status = 401), (status = 413), (status = 415),
              (status = 422, description = "New series past the tenant's series limit"),
              (status = 429, description = "Over the tenant's samples_per_second; see Retry-After (exporters retry)"),
              (status = 503, description = "Overloaded; see Retry-After (exporters retry)")))]
pub async fn otlp_metrics(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    use prost::Message;
    let tenant = caller.require(Scope::Ingest)?;
    let kind = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = if kind.starts_with("application/x-protobuf") {
        otlp::Encoding::Protobuf
    } else if kind.starts_with("application/json") {
        otlp::Encoding::Json
    } else {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("OTLP/HTTP takes application/x-protobuf or application/json, not {kind:?}"),
        )
        .field("Content-Type"));
    };
    let (body, _permit) = read_maybe_gzip(&state, &tenant, request).await?;
    let decoded = otlp::decode(&body, encoding, &state.limits, now_ms()).map_err(|why| {
        state.telemetry.reject(reason::MALFORMED);
        AppError::bad_request(why).field("body")
    })?;
    drop(body);
    if decoded.samples.len() > state.limits.max_batch_samples {
        state.telemetry.reject(reason::BATCH_TOO_LARGE);
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request has {} samples; the limit is {} (max_batch_samples): export smaller batches",
                decoded.samples.len(),
                state.limits.max_batch_samples
            ),
        )
        .field("body"));
    }
    let (rejected, first) = (decoded.rejected, decoded.first_rejection);
    let _stored = accept(&state, &tenant, decoded.samples).await?;
    let answer = ExportMetricsServiceResponse {
        partial_success: first.map(|why| ExportMetricsPartialSuccess {
            rejected_data_points: rejected,
            error_message: format!("{rejected} data point(s) rejected, the first: {why}"),
        }),
    };
    Ok(match encoding {
        otlp::Encoding::Protobuf => {
            ([(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec()).into_response()
        }
        otlp::Encoding::Json => Json(answer).into_response(),
    })
}

/// Inflates a gzip body, refusing more than `limit` bytes before they are held.
fn gunzip(body: &[u8], limit: usize) -> AppResult<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| {
        AppError::bad_request(format!("Content-Encoding is gzip but the body is not: {e}")).field("body")
    })?;
    if out.len() > limit {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body inflates to more than {limit} bytes (max_body_bytes × 8)"),
        )
        .field("body"));
    }
    Ok(out)
}

fn rejected(state: &AppState, err: IngestError) -> AppError {
    state.telemetry.reject(match err {
        IngestError::Malformed(_) => reason::MALFORMED,
        IngestError::Sample { .. } => reason::INVALID_SAMPLE,
        IngestError::BatchTooLarge { .. } => reason::BATCH_TOO_LARGE,
    });
    err.into()
}

/// The tenant's limits (rate, then series), then queue and wait for the commit.
async fn accept(
    state: &AppState,
    tenant: &TenantCaller,
    mut samples: Vec<Sample>,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    let tenant_id = tenant.tenant_id;
    if let Err(refusal) = state.intake.check_rate(tenant_id, samples.len()).await {
        state.telemetry.reject(reason::RATE_LIMITED);
        return Err(rate_refused(&tenant.tenant, samples.len(), refusal));
    }
    let series_refusal = state.intake.check_series(tenant_id, &samples).await;
    if let Some(refusal) = &series_refusal {
        state.telemetry.reject(reason::SERIES_LIMITED);
        samples = limits::without(samples, &refusal.refused);
    }
    let outcome = submit(state, tenant_id, samples).await?;
    match series_refusal {
        None => Ok((
            StatusCode::ACCEPTED,
            Json(IngestResponse { accepted: outcome.accepted, duplicates: outcome.duplicates }),
        )),
        Some(refusal) => Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "tenant {:?} is at its limit of {} series: {} sample(s) of new series were refused ({}{}); \
                     the {} sample(s) of existing series were stored. Raise the tenant's `series` limit \
                     (PUT /api/v1/tenants/{{name}}/limits) or stop sending new series",
                tenant.tenant,
                refusal.limit,
                refusal.refused.len(),
                refusal.examples.join(", "),
                if refusal.refused.len() > refusal.examples.len() { ", …" } else { "" },
                outcome.accepted + outcome.duplicates,
            ),
        )
        .limit(limits::name::SERIES, Some(outcome.accepted), Some(refusal.refused.len()))),
    }
}

/// 429 (or 413 for a request that can never fit) naming the tenant's rate limit.
fn rate_refused(tenant: &str, count: usize, refusal: RateRefusal) -> AppError {
    match refusal {
        RateRefusal::Later { per_second, retry_after } => {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant {tenant:?} is limited to {per_second} samples/s (samples_per_second); \
                     nothing from this request was stored, retry after {secs} s"
                ),
            )
            .retry_after(secs)
        }
        RateRefusal::TooLarge { per_second, burst } => AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request has {count} samples, more than tenant {tenant:?} may send at once ({burst}; its \
                 rate is {per_second} samples/s): split it into requests of at most {burst} samples"
            ),
        )
        .field("samples"),
    }
    .limit(limits::name::RATE, None, Some(count))
}

async fn submit(state: &AppState, tenant_id: i64, samples: Vec<Sample>) -> AppResult<WriteOutcome> {
    match state.writer.submit(tenant_id, samples).await {
        Ok(outcome) => Ok(outcome),
        Err(err) => {
            state.telemetry.reject(match err {
                SubmitError::Overloaded | SubmitError::ShuttingDown => reason::OVERLOADED,
                SubmitError::WriteFailed(_) => reason::WRITE_FAILED,
                SubmitError::TenantGone => reason::UNAUTHORIZED,
            });
            Err(err.into())
        }
    }
}
