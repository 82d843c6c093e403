//! The dashboard: built assets embedded in the binary (or read from `dashboard_dir`), with
//! index.html for any other path so client-side routes survive a reload. The build leaves a
//! Brotli (`.br`) and a gzip (`.gz`) copy beside each text file (`dashboard/scripts/compress.mjs`);
//! the best one the browser accepts is sent, so nothing is compressed per request.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
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

/// The precompressed copies, best first: (content coding, file suffix).
const PRECOMPRESSED: [(&str, &str); 2] = [("br", ".br"), ("gzip", ".gz")];

pub async fn serve(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(response) = file(&state, path, accept).await {
        return response;
    }
    // Files with an extension that do not exist are real 404s; anything else is a route.
    if path.rsplit('/').next().is_some_and(|last| last.contains('.')) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match file(&state, "index.html", accept).await {
        Some(index) => index,
        None => Html(NOT_BUILT).into_response(),
    }
}

async fn read(state: &AppState, path: &str) -> Option<Vec<u8>> {
    match &state.config.dashboard_dir {
        Some(dir) => tokio::fs::read(dir.join(path)).await.ok(),
        None => Assets::get(path).map(|f| f.data.into_owned()),
    }
}

async fn file(state: &AppState, path: &str, accept_encoding: &str) -> Option<Response> {
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut headers =
        vec![(header::CONTENT_TYPE, mime.as_ref().to_string()), (header::CACHE_CONTROL, cache.to_string())];
    let mut body = None;
    for (coding, suffix) in PRECOMPRESSED {
        if accepts(accept_encoding, coding)
            && let Some(bytes) = read(state, &format!("{path}{suffix}")).await
        {
            headers.push((header::CONTENT_ENCODING, coding.to_string()));
            body = Some(bytes);
            break;
        }
    }
    let body = match body {
        Some(bytes) => bytes,
        None => read(state, path).await?,
    };
    // Caches keep a copy per encoding; a compressed copy asked for by name is just a file.
    if !PRECOMPRESSED.iter().any(|(_, suffix)| path.ends_with(suffix)) {
        headers.push((header::VARY, "accept-encoding".to_string()));
    }
    let mut response = body.into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    Some(response)
}

/// Whether an `Accept-Encoding` value accepts `coding`: named with a non-zero weight, or
/// covered by `*` when not named (RFC 9110, section 12.5.3).
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut wildcard = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let weight = parts
            .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
        if name.eq_ignore_ascii_case(coding) {
            return weight > 0.0;
        }
        if name == "*" {
            wildcard = Some(weight > 0.0);
        }
    }
    wildcard.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::accepts;

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip, deflate, br, zstd", "gzip"));
        assert!(!accepts("gzip, deflate", "br"));
        assert!(!accepts("", "gzip"));
        assert!(!accepts("br;q=0, gzip", "br"));
        assert!(accepts("br;q=0.5", "br"));
        assert!(accepts("*", "br"));
        assert!(!accepts("*;q=0", "gzip"));
        assert!(!accepts("br;q=0, *", "br"));
        assert!(accepts("BR; Q=1", "br"));
        assert!(!accepts("br;q=nonsense", "br"));
    }
}
