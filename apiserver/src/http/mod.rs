//! The HTTP API: `app(state)` builds the router, apart from `main`, so tests can drive it.

pub mod admin;
pub mod alerts;
pub mod assets;
pub mod auth;
pub mod channels;
pub mod contract;
pub mod dashboards;
pub mod error;
pub mod exporters;
pub mod ingest;
pub mod ops;
pub mod params;
pub mod prometheus;
pub mod query;
pub mod rules;
pub mod session;
pub mod silences;
pub mod status_pages;
pub mod status_public;
pub mod stream;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use utoipa::OpenApi;

use contract::Contract;

use crate::auth::Auth;
use crate::config::Config;
use crate::domain::Limits;
use crate::live::LiveHub;
use crate::pipeline::Writer;
use crate::storage::DynStore;
use crate::telemetry::{HttpLabels, Telemetry};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub writer: Writer,
    pub config: Arc<Config>,
    pub limits: Arc<Limits>,
    pub telemetry: Telemetry,
    pub auth: Arc<Auth>,
    pub hub: Arc<LiveHub>,
    /// Each tenant's samples/s and series limits.
    pub intake: Arc<crate::limits::IntakeLimits>,
    /// What one tenant and all requests may hold at once (ingest bytes, streams, backfill).
    pub fairness: Arc<crate::fairness::Fairness>,
    /// Turns true when the server stops, so endless responses (SSE) end and shutdown completes.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub alerting: Arc<crate::alerting::Alerting>,
    /// The tenants' exporters, where this process runs them.
    pub exporters: crate::exporters::Exporters,
    /// The public status pages' cache and bounds.
    pub status_pages: Arc<status_public::PublicPages>,
}

impl AppState {
    pub fn new(store: DynStore, writer: Writer, config: Config, telemetry: Telemetry, hub: Arc<LiveHub>) -> Self {
        let intake = Arc::new(crate::limits::IntakeLimits::new(
            store.clone(),
            telemetry.clone(),
            config.tenant_rate_limit,
            config.max_batch_samples,
        ));
        Self {
            auth: Arc::new(Auth::new(store.clone(), config.admin_token.as_deref())),
            limits: Arc::new(config.limits()),
            fairness: Arc::new(crate::fairness::Fairness::new(&config)),
            config: Arc::new(config),
            store,
            writer,
            telemetry,
            hub,
            intake,
            shutdown: tokio::sync::watch::channel(false).0,
            alerting: Arc::new(crate::alerting::Alerting::default()),
            exporters: crate::exporters::Exporters::disabled(),
            status_pages: Arc::new(status_public::PublicPages::default()),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "microdash", description = "Multi-tenant metrics ingest, query, live stream and admin API."),
    paths(
        ingest::ingest_one, ingest::ingest_bulk, ingest::remote_write, ingest::influx_write,
        ingest::otlp_metrics, ingest::vm_import,
        query::metrics, query::series, query::query,
        stream::stream,
        session::login, session::whoami, session::logout,
        dashboards::list, dashboards::put, dashboards::delete,
        exporters::list, exporters::put, exporters::delete,
        status_pages::list, status_pages::get_one, status_pages::put, status_pages::delete,
        status_public::public_json,
        rules::list, rules::create, rules::get_one, rules::put, rules::delete,
        channels::list, channels::create, channels::get_one, channels::put, channels::delete, channels::test,
        channels::deliveries,
        alerts::list, alerts::history, alerts::stream,
        silences::create, silences::list, silences::expire, silences::get_by_name, silences::put_by_name,
        silences::expire_by_name,
        admin::create_tenant, admin::list_tenants, admin::get_tenant, admin::delete_tenant, admin::create_token, admin::list_tokens,
        admin::revoke_token, admin::set_retention, admin::set_limits,
        tokens::list, tokens::create, tokens::revoke,
        ops::healthz, ops::readyz, ops::metrics,
        prometheus::query, prometheus::query_form, prometheus::query_range, prometheus::query_range_form,
        prometheus::series, prometheus::series_form, prometheus::labels, prometheus::labels_form, prometheus::label_values,
        prometheus::metadata, prometheus::federate,
    ),
    components(schemas(error::Problem, prometheus::PromError)),
    tags((name = "alerting", description = "Alert rules, notification channels, alert states and deliveries"),
         (name = "exporters", description = "Pushes of a tenant's newest samples to an OTLP/HTTP receiver"),
         (name = "status pages", description = "Public status pages: a tenant's chosen components, their status from alert rules, read without a token"),
         (name = "prometheus", description = "Prometheus-compatible series metadata and federation (Prometheus names and answer shapes)")),
    modifiers(&BearerAuth, &Contract),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security =
            Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

pub fn app(state: AppState) -> Router {
    app_with(state, |_, _| Router::new())
}

/// The router plus `extra` routes that themselves call the API: `extra` gets the API router
/// (every route, its errors as problems, not counted again as requests) and adds its own routes
/// under the same layers. The server mounts the MCP endpoint this way (`mcp::routes`), so `http`
/// does not know of `mcp`.
pub fn app_with(state: AppState, extra: impl FnOnce(Router, &AppState) -> Router<AppState>) -> Router {
    let api = Router::new()
        .route("/api/v1/metrics", post(ingest::ingest_one).get(query::metrics))
        .route("/api/v1/metrics/bulk", post(ingest::ingest_bulk))
        .route("/api/v1/write", post(ingest::remote_write))
        .route("/api/v2/write", post(ingest::influx_write))
        .route("/api/v1/import", post(ingest::vm_import))
        .route("/v1/metrics", post(ingest::otlp_metrics))
        .route("/api/v1/series", get(query::series))
        .route("/api/v1/query", get(query::query))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/session", post(session::login).get(session::whoami).delete(session::logout))
        .route("/api/v1/dashboards", get(dashboards::list))
        .route("/api/v1/dashboards/{name}", axum::routing::put(dashboards::put).delete(dashboards::delete))
        .route("/api/v1/exporters", get(exporters::list))
        .route("/api/v1/exporters/{name}", axum::routing::put(exporters::put).delete(exporters::delete))
        .route("/api/v1/status-pages", get(status_pages::list))
        .route(
            "/api/v1/status-pages/{slug}",
            get(status_pages::get_one).put(status_pages::put).delete(status_pages::delete),
        )
        .route("/api/v1/rules", get(rules::list).post(rules::create))
        .route("/api/v1/rules/{name}", get(rules::get_one).put(rules::put).delete(rules::delete))
        .route("/api/v1/channels", get(channels::list).post(channels::create))
        .route("/api/v1/channels/{name}", get(channels::get_one).put(channels::put).delete(channels::delete))
        .route("/api/v1/channels/{name}/test", post(channels::test))
        .route("/api/v1/channels/{name}/deliveries", get(channels::deliveries))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/history", get(alerts::history))
        .route("/api/v1/alerts/stream", get(alerts::stream))
        .route("/api/v1/silences", get(silences::list).post(silences::create))
        .route("/api/v1/silences/{id}", axum::routing::delete(silences::expire))
        .route(
            "/api/v1/silences/by-name/{name}",
            get(silences::get_by_name).put(silences::put_by_name).delete(silences::expire_by_name),
        )
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/api/v1/tenants", post(admin::create_tenant).get(admin::list_tenants))
        .route("/api/v1/tenants/{name}", get(admin::get_tenant).delete(admin::delete_tenant))
        .route("/api/v1/tenants/{name}/tokens", post(admin::create_token).get(admin::list_tokens))
        .route("/api/v1/tenants/{name}/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .route("/api/v1/tenants/{name}/retention", axum::routing::put(admin::set_retention))
        .route("/api/v1/tenants/{name}/limits", axum::routing::put(admin::set_limits))
        .route("/api/v1/{*rest}", axum::routing::any(ops::api_not_found))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    // Prometheus' clients read Prometheus' error shape: the API under /prometheus/api answers it.
    let prometheus_api = Router::new()
        .route("/prometheus/api/v1/query", get(prometheus::query).post(prometheus::query_form))
        .route("/prometheus/api/v1/query_range", get(prometheus::query_range).post(prometheus::query_range_form))
        .route("/prometheus/api/v1/series", get(prometheus::series).post(prometheus::series_form))
        .route("/prometheus/api/v1/labels", get(prometheus::labels).post(prometheus::labels_form))
        .route("/prometheus/api/v1/metadata", get(prometheus::metadata))
        .route("/prometheus/api/v1/label/{name}/values", get(prometheus::label_values))
        .route("/prometheus/api/{*rest}", axum::routing::any(prometheus::not_served))
        .layer(middleware::map_response(prometheus::prometheus_errors))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    let routes = Router::new()
        .merge(api)
        .merge(prometheus_api)
        .route("/prometheus/federate", get(prometheus::federate))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        // The public status pages: no token (status_public.rs).
        .route("/status/{slug}", get(status_public::page))
        .route("/status/{slug}/badge/{file}", get(status_public::badge))
        .route("/status/{slug}/stream", get(status_public::stream))
        .route("/status-page.js", get(status_public::script))
        .fallback(assets::serve);
    let api = routes.clone().layer(middleware::map_response(error::problem_for_every_error)).with_state(state.clone());
    routes
        .merge(extra(api, &state))
        .layer(middleware::map_response(error::problem_for_every_error))
        .layer(middleware::map_response(security_headers))
        .layer(middleware::map_response(event_streams_through_proxies))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// What the dashboard may load and who may frame it: its own scripts, styles and API only
/// (inline styles for the chart library's positioning), never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Browser safety headers on every answer: a CSP and no framing, no MIME sniffing, no referrer.
async fn security_headers(mut response: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Every event stream (the live streams, the MCP endpoint's) as proxies should pass it: each
/// event at once, never buffered, cached or transformed. nginx buffers proxied answers by
/// default and reads `X-Accel-Buffering: no` as "not this one"; `no-transform` keeps compressing
/// proxies from holding events back.
async fn event_streams_through_proxies(mut response: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_stream {
        let headers = response.headers_mut();
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    }
    response
}

/// Counts every request by method, route template and status.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    state
        .telemetry
        .http_requests
        .get_or_create(&HttpLabels { method, route, status: response.status().as_u16() })
        .inc();
    response
}
