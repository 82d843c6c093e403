//! Running the operator: configuration, leader election, the controllers, and the small HTTP
//! server with `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::context::{Context, ServerSource};
use crate::controllers;
use crate::metrics::Metrics;
use crate::server::ServerApi;

/// The operator's settings: flags or `MICRODASH_*` environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "microdash-operator", version, about = "Kubernetes operator for microdash")]
pub struct Config {
    /// The microdash HTTP API, e.g. `http://microdash-api.microdash.svc:8080`. Unset = use the
    /// installation of a `MicroDash` resource (its api Service and admin-token Secret).
    #[arg(long, env = "MICRODASH_SERVER_URL")]
    pub server_url: Option<String>,
    /// The admin token of that server (with `--server-url`).
    #[arg(long, env = "MICRODASH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    #[arg(long, env = "MICRODASH_OPERATOR_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// How often synced rules, channels and tenants are read again from the server (state, drift).
    #[arg(long, env = "MICRODASH_OPERATOR_RESYNC", default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,
    /// Take the leader lease before acting, so that of several replicas only one acts.
    #[arg(long, env = "MICRODASH_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The namespace of the lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Watch rules, channels, silences and installations in this namespace only, and manage only the
    /// (cluster-wide) Tenants whose token Secret is in it.
    #[arg(long, env = "MICRODASH_OPERATOR_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// How long a deleted AlertRule, NotificationChannel, Silence or Tenant waits for a server that does
    /// not answer before it lets go (with a Warning Event `CleanupAbandoned` saying what may be
    /// left on the server). An installation that is gone or being deleted lets go at once.
    #[arg(long, env = "MICRODASH_OPERATOR_CLEANUP_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub cleanup_timeout: Duration,
    /// The ClusterRole (get and list on pods) the operator binds each installation's agent
    /// ServiceAccount to when `spec.agent.podDiscovery` is on; the chart ships it and lets the
    /// operator `bind` only that one.
    #[arg(long, env = "MICRODASH_OPERATOR_AGENT_CLUSTER_ROLE", default_value = crate::context::DEFAULT_AGENT_CLUSTER_ROLE)]
    pub agent_cluster_role: String,
    /// `text` or `json`.
    #[arg(long, env = "MICRODASH_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// Check the operator running with this `--listen` (a container's HEALTHCHECK): GET its
    /// `/healthz` on loopback, exit 0 on a 2xx answer and 1 otherwise.
    #[arg(long)]
    pub health: bool,
    /// Before an uninstall (the chart's pre-delete hook): stop the operator's Deployment
    /// (`--operator-deployment` in `POD_NAMESPACE`) and remove its finalizer from every
    /// AlertRule, NotificationChannel, Silence and Tenant it watches, then exit. Deletes nothing.
    #[arg(long)]
    pub release_finalizers: bool,
    /// The operator's Deployment, for `--release-finalizers`.
    #[arg(long, env = "MICRODASH_OPERATOR_DEPLOYMENT", default_value = "microdash-operator")]
    pub operator_deployment: String,
}

/// `--health`: asks the operator listening on `listen`'s port (on loopback) for `/healthz`.
pub async fn check_health(listen: SocketAddr) -> anyhow::Result<String> {
    let url = format!("http://127.0.0.1:{}/healthz", listen.port());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}: is the operator running with --listen {listen}?"))?;
    let status = answer.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(format!("healthy: {url} answered {status}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    microdash_model::parse_duration(text)
}

impl Config {
    pub fn server_source(&self) -> anyhow::Result<ServerSource> {
        match (&self.server_url, &self.admin_token) {
            (Some(url), Some(token)) => Ok(ServerSource::Fixed(ServerApi::new(url.clone(), token.clone()))),
            (Some(_), None) => anyhow::bail!("--server-url needs --admin-token (MICRODASH_ADMIN_TOKEN)"),
            (None, _) => Ok(ServerSource::Discover),
        }
    }
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    acting: Arc<AtomicBool>,
}

fn http_app(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                // A standby replica is ready too: it is healthy and waits for the lease.
                (StatusCode::OK, if h.acting.load(Ordering::Relaxed) { "leader" } else { "standby" })
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], h.metrics.encode())
            }),
        )
        .with_state(health)
}

/// Runs every controller until a shutdown signal.
pub async fn controllers(ctx: Arc<Context>) {
    tokio::join!(
        controllers::microdash::run(ctx.clone()),
        controllers::tenant::run(ctx.clone()),
        controllers::alert_rule::run(ctx.clone()),
        controllers::channel::run(ctx.clone()),
        controllers::silence::run(ctx),
    );
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let acting = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "Health and metrics listening.");
    let app = http_app(Health { metrics: metrics.clone(), acting: acting.clone() });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "The health and metrics server stopped.");
        }
    });
    let ctx = Context::new(
        client.clone(),
        config.server_source()?,
        metrics.clone(),
        config.resync,
        config.watch_namespace.clone(),
        config.cleanup_timeout,
        config.agent_cluster_role.clone(),
    );

    if !config.leader_election {
        tracing::info!("Leader election off: acting at once.");
        acting.store(true, Ordering::Relaxed);
        controllers(ctx).await;
        return Ok(());
    }
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("microdash-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client.clone(), "microdash-operator")
        .with_namespace(&config.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (mut leader, _lease_task) = manager.watch().await;
    tracing::info!(%identity, namespace = %config.lease_namespace, "Waiting for the leader lease.");
    while !*leader.borrow_and_update() {
        leader.changed().await?;
    }
    tracing::info!(%identity, "Holding the leader lease: acting.");
    metrics.leader.set(1);
    acting.store(true, Ordering::Relaxed);
    tokio::select! {
        _ = controllers(ctx) => Ok(()),
        _ = async {
            loop {
                if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                    break;
                }
            }
        } => {
            // Another replica may act from now on: stop at once rather than race it.
            tracing::error!(%identity, "Lost the leader lease; exiting so that one replica acts at a time.");
            std::process::exit(1)
        }
    }
}
