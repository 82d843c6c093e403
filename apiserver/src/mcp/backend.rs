//! Where a tool's HTTP calls go: the API router of this process (in `serve`, with the
//! credentials of the MCP request), or a running server over HTTP (`microdash mcp`).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::http::auth::TENANT_HEADER;

/// The most an answer of the API may hold for a tool (a query answer is bounded by the point
/// budget long before this).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// An answer of the HTTP API: its status and its JSON body (`null` when it has none, e.g. 204).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A running microdash server and the token to call it with.
#[derive(Clone)]
pub struct Remote {
    client: reqwest::Client,
    base: url::Url,
    token: String,
}

impl Remote {
    pub fn new(base: url::Url, token: String) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("microdash-mcp/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Self { client, base, token })
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }
}

pub enum Backend {
    /// This process's API router, called with these credential headers.
    InProcess {
        router: Router,
        credentials: HeaderMap,
    },
    Remote(Remote),
}

impl Backend {
    /// The router with the credentials of an MCP request: its bearer token and, for the admin
    /// token, the tenant it acts on. Nothing else of the request is passed on.
    pub fn in_process(router: Router, headers: &HeaderMap) -> Self {
        let mut credentials = HeaderMap::new();
        for name in [header::AUTHORIZATION.as_str(), TENANT_HEADER] {
            if let Some(value) = headers.get(name) {
                credentials.insert(axum::http::HeaderName::from_static(name), value.clone());
            }
        }
        Self::InProcess { router, credentials }
    }

    /// Calls `path_and_query` (already encoded) with an optional JSON body.
    pub async fn call(&self, method: Method, path_and_query: &str, body: Option<&Value>) -> Result<Answer, String> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("a Value serializes"));
        let (status, raw) = match self {
            Backend::InProcess { router, credentials } => {
                let mut request = Request::builder().method(method).uri(path_and_query);
                for (name, value) in credentials {
                    request = request.header(name, value);
                }
                if bytes.is_some() {
                    request = request.header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                let request = request
                    .body(bytes.map(Body::from).unwrap_or_else(Body::empty))
                    .map_err(|e| format!("could not build the request: {e}"))?;
                let response = router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
                let status = response.status().as_u16();
                let raw = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| format!("could not read the answer: {e}"))?;
                (status, raw)
            }
            Backend::Remote(remote) => {
                let url = remote.base.join(path_and_query.trim_start_matches('/')).map_err(|e| e.to_string())?;
                let mut request = remote
                    .client
                    .request(reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("a valid method"), url)
                    .bearer_auth(&remote.token);
                if let Some(bytes) = bytes {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
                }
                let response = request.send().await.map_err(|e| format!("{} did not answer: {e}", remote.base))?;
                let status = response.status().as_u16();
                let raw = response.bytes().await.map_err(|e| format!("could not read the answer: {e}"))?;
                (status, raw)
            }
        };
        let body = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
        };
        Ok(Answer { status, body })
    }
}
