//! The MCP server: assistants that speak the Model Context Protocol list metrics, query ranges,
//! read alerts and manage rules and channels through tools, per tenant, with the tenant's tokens.
//!
//! Every tool is a call of the HTTP API made with the caller's own credentials: in `serve`
//! through this process's router (`/mcp`, Streamable HTTP), in `microdash mcp` over HTTP to a
//! running server (stdio, for tools that start an MCP server as a subprocess). So a tool answers
//! exactly what the HTTP API answers, under the same scopes, tenant isolation, limits and
//! field-level errors; nothing here can widen them. A token sees the read tools with the `read`
//! scope and the mutating ones with `admin`, as the HTTP API decides for the same calls.

mod backend;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use microdash_model::Scope;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

pub use backend::{Backend, Remote};

use crate::http::AppState;
use crate::http::auth::Caller;

const INSTRUCTIONS: &str = "microdash stores a tenant's metrics (series of a metric name and labels) and evaluates \
alert rules on them. Start with `list_metrics`, then `latest_values` for what a metric is now or \
`query_range` for how it moved (times are Unix milliseconds; answers stay within a point budget). \
For alerts: `list_alerts` for what fires now, `alert_history` for when, `explain_rule` for why.";

/// Where the tools' calls go.
#[derive(Clone)]
enum Source {
    /// `serve`: this process's API router, with the credentials of each MCP request.
    InProcess(Router),
    /// `microdash mcp`: a running server.
    Remote(Remote),
}

/// The MCP server handler: stateless, one per session.
#[derive(Clone)]
pub struct McpServer {
    source: Source,
}

impl McpServer {
    fn backend(&self, context: &RequestContext<RoleServer>) -> Result<Backend, ErrorData> {
        match &self.source {
            Source::InProcess(router) => {
                let parts = context
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .ok_or_else(|| ErrorData::internal_error("the MCP request carries no HTTP request", None))?;
                Ok(Backend::in_process(router.clone(), &parts.headers))
            }
            Source::Remote(remote) => Ok(Backend::Remote(remote.clone())),
        }
    }

    /// The scopes of the caller's token, as the API reports them (`GET /api/v1/session`).
    async fn scopes(&self, backend: &Backend) -> Vec<Scope> {
        match backend.call(axum::http::Method::GET, "/api/v1/session", None).await {
            Ok(answer) if answer.is_success() => {
                serde_json::from_value(answer.body["scopes"].clone()).unwrap_or_default()
            }
            // The admin token acting on a tenant (X-Microdash-Tenant) has every scope.
            Ok(answer) if answer.status == 403 => vec![Scope::Read, Scope::Admin],
            _ => Vec::new(),
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("microdash", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let backend = self.backend(&context)?;
        let scopes = self.scopes(&backend).await;
        let tools = tools::TOOLS.iter().filter(|t| scopes.contains(&t.scope)).map(|t| t.tool.clone()).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let backend = self.backend(&context)?;
        let name = request.name.as_ref();
        tracing::debug!(tool = name, "MCP tool call.");
        match tools::call(&backend, name, request.arguments.unwrap_or_default()).await {
            Some(result) => Ok(result.into()),
            None => Err(ErrorData::invalid_params(format!("there is no tool {name:?}; see tools/list"), None)),
        }
    }
}

/// `/mcp` of `serve` (mounted by `http::app_with`): the token check, then the Streamable HTTP
/// service whose tools call `api`, the API router without `/mcp`.
pub fn routes(api: Router, state: &AppState) -> Router<AppState> {
    let service = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .service(http_service(api, shutdown_token(state)));
    Router::new().route_service("/mcp", service)
}

/// Cancelled when the server stops, so the sessions' open streams end and shutdown completes.
fn shutdown_token(state: &AppState) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    let mut stopped = state.shutdown.subscribe();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
            cancel.cancel();
        });
    }
    token
}

/// Streamable HTTP, the tools calling `api`. Sessions carry no credentials: every request is
/// authenticated by its own bearer token.
fn http_service(
    api: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let server = McpServer { source: Source::InProcess(api) };
    let mut config = StreamableHttpServerConfig::default()
        // Any Host: the server is reached by its Service name or a public name, and a DNS-rebound
        // page cannot send the bearer token, which every request needs (cookies are refused).
        .with_allowed_hosts(Vec::<String>::new())
        // Browsers' cross-origin requests are refused but for local tools (an inspector on
        // localhost).
        .with_allowed_origins(["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]);
    config.cancellation_token = shutdown;
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config)
}

/// In front of `/mcp`: a bearer token with the `read` scope (or the admin token naming a tenant),
/// checked before the protocol starts, so an unauthenticated client gets a 401 it can act on.
/// The dashboard's session cookie does not count here.
pub async fn require_token(
    caller: Result<Caller, crate::http::error::AppError>,
    request: Request,
    next: Next,
) -> Response {
    if !request.headers().contains_key(axum::http::header::AUTHORIZATION) {
        return crate::http::error::AppError::new(
            StatusCode::UNAUTHORIZED,
            "the MCP endpoint needs `Authorization: Bearer <token>` (a tenant token with the read scope)",
        )
        .into_response();
    }
    match caller.and_then(|caller| caller.require(Scope::Read)) {
        Ok(_) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

/// `microdash mcp`: the same tools over stdio, calling a running server with one token.
pub async fn serve_stdio(remote: Remote) -> anyhow::Result<()> {
    let backend = Backend::Remote(remote.clone());
    let answer = backend
        .call(axum::http::Method::GET, "/api/v1/session", None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; is the server running? set --url or MICRODASH_URL"))?;
    if answer.status == 401 {
        anyhow::bail!("{} refused the token (401): pass a tenant token with --token or MICRODASH_TOKEN", remote.base());
    }
    tracing::info!(url = %remote.base(), "MCP server on stdio; tools call the server above.");
    let service = McpServer { source: Source::Remote(remote) }.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
