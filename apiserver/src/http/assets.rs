//! The dashboard: built assets embedded in the binary (or read from `dashboard_dir`), with
//! index.html for any other path so client-side routes survive a reload.

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::http::AppState;

#[derive(RustEmbed)]
#[folder = "../dashboard/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><title>microdash</title><body style=\"font-family:sans-serif\">\
<h1>microdash</h1><p>The dashboard was not built into this binary. Run <code>make dashboard</code> and rebuild, \
or start with <code>--dashboard-dir dashboard/dist</code>.</p><p>The API is at <code>/api/v1</code>, \
its description at <a href=\"/openapi.json\">/openapi.json</a>.</p></body>";

pub async fn serve(State(state): State<AppState>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(response) = file(&state, path).await {
        return response;
    }
    // Files with an extension that do not exist are real 404s; anything else is a route.
    if path.rsplit('/').next().is_some_and(|last| last.contains('.')) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match file(&state, "index.html").await {
        Some(index) => index,
        None => Html(NOT_BUILT).into_response(),
    }
}

async fn file(state: &AppState, path: &str) -> Option<Response> {
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let bytes: Vec<u8> = match &state.config.dashboard_dir {
        Some(dir) => tokio::fs::read(dir.join(path)).await.ok()?,
        None => Assets::get(path)?.data.into_owned(),
    };
    Some(
        ([(header::CONTENT_TYPE, mime.as_ref().to_string()), (header::CACHE_CONTROL, cache.to_string())], bytes)
            .into_response(),
    )
}
