//! `/api/v1/silences`: a tenant's maintenance windows (Alertmanager's silences). While a silence
//! is active, notifications of the alerts whose labels equal all of its matchers (`alertname`
//! is the rule's name) are not sent; transitions are still recorded, and an alert still firing
//! when the silence ends is notified then.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::now_ms;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::http::params::{MAX_TIME_MS, parse_time};
use crate::storage::alerts::SilenceRecord;

/// Matchers per silence, at most.
const MAX_MATCHERS: usize = 20;
/// Longest comment and author, in characters.
const MAX_COMMENT: usize = 1000;
const MAX_AUTHOR: usize = 200;
/// Ended silences stay listed this long (what was silenced yesterday is still worth seeing).
const LISTED_AFTER_END_MS: i64 = 7 * 24 * 3600 * 1000;

/// A time as the API takes it: Unix ms, or a string (RFC 3339, `now`, `now+2h`, `now-5m`).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TimeInput {
    Ms(i64),
    Text(String),
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceInput {
    /// Label equality matchers, at least one; `alertname` matches the rule's name.
    pub matchers: BTreeMap<String, String>,
    /// Default: now.
    #[serde(default)]
    pub starts_at: Option<TimeInput>,
    pub ends_at: TimeInput,
    pub comment: String,
    pub created_by: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SilenceView {
    pub id: String,
    pub matchers: BTreeMap<String, String>,
    /// Unix ms.
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
    /// `pending` (starts later), `active` or `expired`.
    pub status: &'static str,
}

impl SilenceView {
    pub fn of(s: SilenceRecord, now: i64) -> Self {
        let status = if now < s.starts_at {
            "pending"
        } else if now < s.ends_at {
            "active"
        } else {
            "expired"
        };
        SilenceView {
            id: s.id,
            matchers: s.matchers,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: s.comment,
            created_by: s.created_by,
            created_at: s.created_at,
            status,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SilenceList {
    pub silences: Vec<SilenceView>,
}

fn time_of(field: &str, input: &TimeInput, now: i64) -> AppResult<i64> {
    let parsed = match input {
        TimeInput::Ms(ms) => Some(*ms).filter(|t| (0..=MAX_TIME_MS).contains(t)),
        TimeInput::Text(text) => match text.strip_prefix("now+") {
            Some(ahead) => humantime::parse_duration(ahead)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .and_then(|ms| now.checked_add(ms))
                .filter(|t| *t <= MAX_TIME_MS),
            None => parse_time(text, now),
        },
    };
    parsed.ok_or_else(|| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` must be Unix milliseconds, an RFC 3339 time, `now`, `now+2h` or `now-5m`"),
        )
        .field(field)
    })
}

fn unprocessable(field: &str, detail: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, detail).field(field)
}

#[utoipa::path(post, path = "/api/v1/silences", tag = "alerting", request_body = SilenceInput,
    responses((status = 201, body = SilenceView), (status = 422, body = crate::http::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<SilenceView>)> {
    let tenant = caller.require(Scope::Admin)?;
    let input: SilenceInput = serde_json::from_slice(&body).map_err(|e| {
        let field = e.to_string().split('`').nth(1).unwrap_or("body").to_string();
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("not a silence: {e}")).field(field)
    })?;
    let now = now_ms();
    if input.matchers.is_empty() {
        return Err(unprocessable("matchers", "at least one matcher (a silence of everything is not one)"));
    }
    if input.matchers.len() > MAX_MATCHERS {
        return Err(unprocessable("matchers", format!("at most {MAX_MATCHERS} matchers")));
    }
    if let Some((name, _)) =
        input.matchers.iter().find(|(k, v)| k.is_empty() || v.is_empty() || k.len() > 255 || v.len() > 1024)
    {
        return Err(unprocessable(
            "matchers",
            format!("matcher {name:?}: names and values are non-empty (names up to 255 bytes, values up to 1024)"),
        ));
    }
    let starts_at = match &input.starts_at {
        Some(t) => time_of("startsAt", t, now)?,
        None => now,
    };
    let ends_at = time_of("endsAt", &input.ends_at, now)?;
    if ends_at <= starts_at.max(now) {
        return Err(unprocessable("endsAt", "must be after startsAt and in the future"));
    }
    let comment = input.comment.trim();
    if comment.is_empty() || comment.chars().count() > MAX_COMMENT {
        return Err(unprocessable("comment", format!("says why, in 1 to {MAX_COMMENT} characters")));
    }
    let author = input.created_by.trim();
    if author.is_empty() || author.chars().count() > MAX_AUTHOR {
        return Err(unprocessable("createdBy", format!("names who silences, in 1 to {MAX_AUTHOR} characters")));
    }
    let record = SilenceRecord {
        tenant_id: tenant.tenant_id,
        id: hex::encode(rand::random::<[u8; 16]>()),
        matchers: input.matchers,
        starts_at,
        ends_at,
        comment: comment.to_string(),
        created_by: author.to_string(),
        created_at: now,
    };
    state.store.create_silence(&record).await?;
    state.alerting.silences_changed();
    Ok((StatusCode::CREATED, Json(SilenceView::of(record, now))))
}

#[utoipa::path(get, path = "/api/v1/silences", tag = "alerting", responses((status = 200, body = SilenceList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<SilenceList>> {
    let tenant = caller.require(Scope::Read)?;
    let now = now_ms();
    let silences = state.store.list_silences(Some(tenant.tenant_id), now - LISTED_AFTER_END_MS).await?;
    Ok(Json(SilenceList { silences: silences.into_iter().map(|s| SilenceView::of(s, now)).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerting",
    responses((status = 204, description = "expired now"), (status = 404, body = crate::http::error::Problem)))]
pub async fn expire(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    if state.store.expire_silence(tenant.tenant_id, &id, now_ms()).await? {
        state.alerting.silences_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(format!("no active or pending silence {id:?}")))
    }
}
