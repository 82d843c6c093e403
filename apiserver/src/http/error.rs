//! One error type for every handler, answered as `application/problem+json` (RFC 9457).

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ingest::IngestError;
use crate::pipeline::SubmitError;
use crate::storage::StoreError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and title say what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The offending field, e.g. `labels.host` or `value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Index of the offending sample in a bulk request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Every offending field of a rule or channel, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<microdash_model::FieldError>,
    /// The tenant's intake limit that refused the request: `samples_per_second` or `series`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
    /// Samples of the request stored anyway (a series-limit refusal stores the samples of
    /// existing series).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<usize>,
    /// Samples of the request refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<usize>,
}

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub detail: String,
    pub field: Option<String>,
    pub index: Option<usize>,
    pub retry_after_secs: Option<u64>,
    pub errors: Vec<microdash_model::FieldError>,
    /// Set when a tenant's limit refused the request (boxed: errors stay small).
    pub limit: Option<Box<LimitRefusal>>,
}

/// Which tenant limit refused a request, and what of it was stored anyway.
#[derive(Debug, Default)]
pub struct LimitRefusal {
    pub limit: &'static str,
    pub accepted: Option<usize>,
    pub refused: Option<usize>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            field: None,
            index: None,
            retry_after_secs: None,
            errors: Vec::new(),
            limit: None,
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    /// Names the tenant limit that refused the request.
    pub fn limit(mut self, limit: &'static str, accepted: Option<usize>, refused: Option<usize>) -> Self {
        self.limit = Some(Box::new(LimitRefusal { limit, accepted, refused }));
        self
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            field: self.field,
            index: self.index,
            errors: self.errors,
            limit: self.limit.as_ref().map(|l| l.limit),
            accepted: self.limit.as_ref().and_then(|l| l.accepted),
            refused: self.limit.as_ref().and_then(|l| l.refused),
        };
        let body = serde_json::to_vec(&problem).expect("problem serializes");
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"microdash\""));
        }
        response
    }
}

impl From<IngestError> for AppError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Malformed(detail) => AppError::bad_request(format!("malformed JSON: {detail}")),
            IngestError::Sample { index, error } => {
                let detail = match index {
                    Some(i) => format!("sample {i}: {}: {}", error.field, error.reason),
                    None => format!("{}: {}", error.field, error.reason),
                };
                let mut e = AppError::new(StatusCode::UNPROCESSABLE_ENTITY, detail).field(error.field);
                e.index = index;
                e
            }
            IngestError::BatchTooLarge { count, limit } => AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the batch has {count} samples; the limit is {limit} (max_batch_samples): split it into smaller requests"),
            )
            .field("samples"),
        }
    }
}

impl From<SubmitError> for AppError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::Overloaded => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ingest queue is full; nothing from this request was stored, retry after the delay",
            )
            .retry_after(1),
            SubmitError::WriteFailed(_) => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database could not store the samples; nothing from this request was stored, retry after the delay",
            )
            .retry_after(5),
            SubmitError::TenantGone => {
                AppError::unauthorized("the tenant of this token was deleted; nothing was stored")
            }
            SubmitError::ShuttingDown => {
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; retry").retry_after(1)
            }
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => AppError::new(StatusCode::CONFLICT, format!("{what} already exists")),
            StoreError::NotFound(what) => AppError::not_found(format!("{what} not found")),
            StoreError::TooManyPoints(n) => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the query would read more than {} points; narrow the range, add label matchers or pass a step",
                    n.saturating_sub(1)
                ),
            ),
            other => {
                tracing::error!(err = %other, "Storage error.");
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable; retry later")
                    .retry_after(5)
            }
        }
    }
}

impl From<crate::alerting::service::SpecError> for AppError {
    fn from(err: crate::alerting::service::SpecError) -> Self {
        use crate::alerting::service::SpecError;
        match err {
            SpecError::Store(store) => store.into(),
            other => {
                let errors = other.errors();
                let mut e = AppError::new(StatusCode::UNPROCESSABLE_ENTITY, other.to_string());
                e.field = errors.first().map(|f| f.field.clone());
                e.errors = errors;
                e
            }
        }
    }
}

impl From<BytesRejection> for AppError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(status, "the request body is larger than max_body_bytes; send smaller batches")
        } else {
            AppError::new(status, format!("could not read the request body: {rejection}"))
        }
    }
}

/// Marks an error answer in the shape of a peer's API (Prometheus' `{"status":"error",…}` under
/// `/prometheus/api/`), which that API's clients read: `problem_for_every_error` leaves it alone.
#[derive(Clone, Copy)]
pub struct OwnErrorShape;

/// Turns every error answer that is not problem+json yet (axum's own rejections of a query
/// string, path or body, a 405, a 404 of the router) into one, keeping its status and headers
/// (`Allow`, `Retry-After`, …); the plain text becomes the detail, and the parameter it names
/// (`limit: invalid digit…`) the field.
pub async fn problem_for_every_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem || response.extensions().get::<OwnErrorShape>().is_some() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let field = ["Failed to deserialize query string: ", "Failed to deserialize the JSON body into the target type: "]
        .iter()
        .find_map(|prefix| detail.strip_prefix(prefix))
        .and_then(|rest| rest.split_once(':'))
        .map(|(field, _)| field.trim().to_string())
        .filter(|f| !f.is_empty() && !f.contains(' '));
    let mut error = AppError::new(status, detail);
    error.field = field;
    let mut problem = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DatabaseError;

    #[test]
    fn storage_failures_are_503_with_a_retry_and_say_nothing_of_the_database() {
        for err in [
            StoreError::Database(DatabaseError::new("connection refused")),
            StoreError::corrupt("expected value at line 1 column 1"),
            StoreError::Migrate("checksum mismatch".into()),
        ] {
            let app = AppError::from(err);
            assert_eq!(app.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(app.retry_after_secs, Some(5));
            assert_eq!(app.detail, "the database is unavailable; retry later");
        }
        assert_eq!(AppError::from(StoreError::Conflict("tenant \"a\"".into())).status, StatusCode::CONFLICT);
    }
}
