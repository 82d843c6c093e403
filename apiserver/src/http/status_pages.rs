//! `/api/v1/status-pages`: a tenant's public status pages (docs/status-pages.md). Reading needs
//! the `read` scope, changing them the `admin` scope. What the public sees is `status_public.rs`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use microdash_model::Scope;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::now_ms;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::http::ingest::Body;
use crate::http::status_public::{ComponentSpec, components_of, valid_slug};
use crate::storage::alerts::SpecKind;
use crate::storage::status_pages::StatusPageRecord;

/// Pages one tenant may have.
pub const MAX_PAGES: usize = 10;
/// Components one page may have.
pub const MAX_COMPONENTS: usize = 20;
/// Characters of a title.
pub const MAX_TITLE: usize = 100;
/// Characters of a component's name.
pub const MAX_COMPONENT_NAME: usize = 60;

/// A status page as its tenant sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusPageView {
    pub slug: String,
    pub title: String,
    pub components: Vec<ComponentSpec>,
    /// Where the public sees it (a path on this server).
    pub public_url: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct StatusPageList {
    pub pages: Vec<StatusPageView>,
}

/// What `PUT` takes (documentation; the handler reads the body by hand to name each bad field).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatusPageInput {
    /// 1 to 100 characters.
    title: String,
    /// 1 to 20, names unique within the page.
    components: Vec<ComponentSpec>,
}

fn view(record: StatusPageRecord) -> AppResult<StatusPageView> {
    let components = components_of(&record)?;
    Ok(StatusPageView {
        public_url: format!("/status/{}", record.slug),
        slug: record.slug,
        title: record.title,
        components,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

fn check_slug(slug: &str) -> AppResult<()> {
    if valid_slug(slug) {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "a slug is 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'",
        )
        .field("slug"))
    }
}

fn unprocessable(field: impl Into<String>, detail: impl Into<String>) -> AppError {
    AppError::new(StatusCode::UNPROCESSABLE_ENTITY, detail).field(field)
}

/// Blank characters besides the control characters (which are refused anyway): the ones JSON
/// Schema's `\s` means, listed so the contract's pattern (`contract::TEXT_PATTERN`) says the same.
pub fn is_blank(c: char) -> bool {
    matches!(
        c,
        ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// Text a person reads: not blank, no control characters, at most `max` characters (leading
/// and trailing blanks are dropped).
fn check_text(field: &str, value: Option<&Value>, max: usize) -> AppResult<String> {
    let text = match value {
        Some(Value::String(text)) => text,
        Some(_) => return Err(unprocessable(field, format!("`{field}` is a string"))),
        None => return Err(unprocessable(field, format!("`{field}` is required"))),
    };
    if text.chars().count() > max {
        return Err(unprocessable(field, format!("`{field}` is longer than {max} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(unprocessable(field, format!("`{field}` has control characters")));
    }
    let text = text.trim_matches(is_blank);
    if text.is_empty() {
        return Err(unprocessable(field, format!("`{field}` is empty")));
    }
    Ok(text.to_string())
}

/// Reads a `PUT` body, naming the first bad field. Keys of an answer (`slug`, `publicUrl`,
/// `createdAt`, `updatedAt`) may come back in an edited answer and are skipped (`slug` must be
/// the path's).
fn parse_body(slug: &str, body: &[u8]) -> AppResult<(String, Vec<ComponentSpec>)> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request(format!("malformed JSON: {e}")).field("body"))?;
    let Value::Object(map) = doc else {
        return Err(unprocessable("body", "the body is a JSON object"));
    };
    for (key, value) in &map {
        match key.as_str() {
            "title" | "components" => {}
            "publicUrl" if value.is_string() => {}
            "createdAt" | "updatedAt" if value.is_i64() || value.is_u64() => {}
            "publicUrl" | "createdAt" | "updatedAt" => {
                return Err(unprocessable(
                    key.as_str(),
                    format!("`{key}` is read-only: as the answer gave it, or omitted"),
                ));
            }
            "slug" if value.as_str() == Some(slug) => {}
            "slug" => {
                return Err(unprocessable(
                    "slug",
                    "the body's `slug` is not the path's; renaming is a DELETE and a PUT",
                ));
            }
            other => return Err(unprocessable(other, format!("unknown field `{other}`"))),
        }
    }
    let title = check_text("title", map.get("title"), MAX_TITLE)?;
    let items = match map.get("components") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(unprocessable("components", "`components` is an array")),
        None => return Err(unprocessable("components", "`components` is required")),
    };
    if items.is_empty() || items.len() > MAX_COMPONENTS {
        return Err(unprocessable("components", format!("a page has 1 to {MAX_COMPONENTS} components")));
    }
    let mut components: Vec<ComponentSpec> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("components[{i}]");
        let Value::Object(fields) = item else {
            return Err(unprocessable(at, "a component is an object with `name` and `rule`"));
        };
        if let Some(other) = fields.keys().find(|k| !matches!(k.as_str(), "name" | "rule")) {
            return Err(unprocessable(
                format!("{at}.{other}"),
                format!("unknown field `{other}` (a component has `name` and `rule`)"),
            ));
        }
        let name = check_text(&format!("{at}.name"), fields.get("name"), MAX_COMPONENT_NAME)?;
        if components.iter().any(|c| c.name == name) {
            return Err(unprocessable(format!("{at}.name"), format!("two components are named {name:?}")));
        }
        let rule = match fields.get("rule") {
            Some(Value::String(rule)) if !rule.is_empty() => rule.clone(),
            _ => {
                return Err(unprocessable(
                    format!("{at}.rule"),
                    "`rule` is the name of one of the tenant's alert rules",
                ));
            }
        };
        components.push(ComponentSpec { name, rule });
    }
    Ok((title, components))
}

#[utoipa::path(get, path = "/api/v1/status-pages", tag = "status pages", responses((status = 200, body = StatusPageList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<StatusPageList>> {
    let tenant = caller.require(Scope::Read)?;
    let pages =
        state.store.list_status_pages(tenant.tenant_id).await?.into_iter().map(view).collect::<AppResult<_>>()?;
    Ok(Json(StatusPageList { pages }))
}

#[utoipa::path(get, path = "/api/v1/status-pages/{slug}", tag = "status pages",
    params(("slug" = String, Path, description = "lowercase letters, digits and '-'")),
    responses((status = 200, body = StatusPageView)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> AppResult<Json<StatusPageView>> {
    let tenant = caller.require(Scope::Read)?;
    check_slug(&slug)?;
    let record = state
        .store
        .list_status_pages(tenant.tenant_id)
        .await?
        .into_iter()
        .find(|p| p.slug == slug)
        .ok_or_else(|| AppError::not_found(format!("no status page {slug:?}")))?;
    Ok(Json(view(record)?))
}

#[utoipa::path(put, path = "/api/v1/status-pages/{slug}", tag = "status pages", request_body = StatusPageInput,
    params(("slug" = String, Path, description = "lowercase letters, digits and '-'; unique across tenants")),
    responses((status = 200, body = StatusPageView, description = "Replaced"), (status = 201, body = StatusPageView, description = "Created"),
              (status = 409, description = "Another tenant has this slug, or the tenant has 10 pages already"), (status = 422)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    Body(body): Body,
) -> AppResult<(StatusCode, Json<StatusPageView>)> {
    let tenant = caller.require(Scope::Admin)?;
    check_slug(&slug)?;
    let (title, components) = parse_body(&slug, &body)?;
    let rules = state.store.list_specs(SpecKind::Rule, Some(tenant.tenant_id)).await?;
    for (i, c) in components.iter().enumerate() {
        if !rules.iter().any(|r| r.name == c.rule) {
            return Err(unprocessable(format!("components[{i}].rule"), format!("no alert rule named {:?}", c.rule)));
        }
    }
    let existing = state.store.list_status_pages(tenant.tenant_id).await?;
    if existing.len() >= MAX_PAGES && !existing.iter().any(|p| p.slug == slug) {
        return Err(AppError::new(StatusCode::CONFLICT, format!("a tenant has at most {MAX_PAGES} status pages")));
    }
    let now = now_ms();
    let record = StatusPageRecord {
        slug: slug.clone(),
        tenant_id: tenant.tenant_id,
        title,
        components: serde_json::to_string(&components).expect("serializes"),
        created_at: now,
        updated_at: now,
    };
    // Another tenant's slug is a conflict that says no more than "taken".
    let created = state.store.put_status_page(&record).await.map_err(|err| match err {
        crate::storage::StoreError::Conflict(_) => {
            AppError::new(StatusCode::CONFLICT, format!("the slug {slug:?} is taken; choose another")).field("slug")
        }
        other => other.into(),
    })?;
    state.status_pages.invalidate(&slug);
    let stored =
        state.store.list_status_pages(tenant.tenant_id).await?.into_iter().find(|p| p.slug == slug).unwrap_or(record);
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view(stored)?)))
}

#[utoipa::path(delete, path = "/api/v1/status-pages/{slug}", tag = "status pages",
    params(("slug" = String, Path)), responses((status = 204, description = "Deleted")))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(slug): Path<String>) -> AppResult<StatusCode> {
    let tenant = caller.require(Scope::Admin)?;
    check_slug(&slug)?;
    if !state.store.delete_status_page(tenant.tenant_id, &slug).await? {
        return Err(AppError::not_found(format!("no status page {slug:?}")));
    }
    state.status_pages.invalidate(&slug);
    Ok(StatusCode::NO_CONTENT)
}
