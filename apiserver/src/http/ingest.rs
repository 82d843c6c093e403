//! `POST /api/v1/metrics` and `POST /api/v1/metrics/bulk`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{Sample, now_ms};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::ingest::{IngestError, parse_bulk, parse_single};
use crate::pipeline::SubmitError;
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
              (status = 400, body = crate::http::error::Problem), (status = 401), (status = 413), (status = 422),
              (status = 429), (status = 503)))]
pub async fn ingest_one(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    let tenant = caller.require(Scope::Ingest)?;
    let sample = parse_single(&body, &state.limits, now_ms()).map_err(|e| rejected(&state, e))?;
    accept(&state, tenant.tenant_id, vec![sample]).await
}

#[utoipa::path(post, path = "/api/v1/metrics/bulk", tag = "ingest", request_body = BulkInput,
    responses((status = 202, body = IngestResponse, description = "Stored durably"),
              (status = 400, body = crate::http::error::Problem), (status = 401), (status = 413), (status = 422),
              (status = 429), (status = 503)))]
pub async fn ingest_bulk(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    let tenant = caller.require(Scope::Ingest)?;
    let samples = parse_bulk(&body, &state.limits, now_ms()).map_err(|e| rejected(&state, e))?;
    accept(&state, tenant.tenant_id, samples).await
}

fn rejected(state: &AppState, err: IngestError) -> AppError {
    state.telemetry.reject(match err {
        IngestError::Malformed(_) => reason::MALFORMED,
        IngestError::Sample { .. } => reason::INVALID_SAMPLE,
        IngestError::BatchTooLarge { .. } => reason::BATCH_TOO_LARGE,
    });
    err.into()
}

/// Rate limit, then queue and wait for the commit.
async fn accept(
    state: &AppState,
    tenant_id: i64,
    samples: Vec<Sample>,
) -> AppResult<(StatusCode, Json<IngestResponse>)> {
    if let (Some(limiter), Some(n)) = (&state.rate_limiter, NonZeroU32::new(samples.len() as u32)) {
        match limiter.check_key_n(&tenant_id, n) {
            Ok(Ok(())) => {}
            Ok(Err(not_until)) => {
                state.telemetry.reject(reason::RATE_LIMITED);
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "this tenant is limited to {} samples/s; retry after the delay",
                        state.config.tenant_rate_limit
                    ),
                )
                .retry_after(wait.as_secs_f64().ceil() as u64));
            }
            Err(_) => {
                return Err(AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the batch is larger than this tenant's rate limit allows at once; split it",
                ));
            }
        }
    }
    match state.writer.submit(tenant_id, samples).await {
        Ok(outcome) => Ok((
            StatusCode::ACCEPTED,
            Json(IngestResponse { accepted: outcome.accepted, duplicates: outcome.duplicates }),
        )),
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
