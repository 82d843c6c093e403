//! `microdash serve`: wires storage, the pipeline, the live hub, HTTP and MQTT, then runs until a
//! signal, draining everything accepted before it exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::alerting::Alerting;
use crate::alerting::engine::{AlertEngine, Ownership};
use crate::alerting::outbox::{self, Notifier, OutboxConfig};
use crate::config::{Config, Role};
use crate::domain::now_ms;
use crate::http::{AppState, app_with};
use crate::live::LiveHub;
use crate::pipeline::{CommitListener, Writer, WriterConfig};
use crate::storage::{self, DynStore};
use crate::telemetry::Telemetry;
use crate::tenants;

pub const DEFAULT_TENANT: &str = "default";

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MICRODASH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}

/// SQLite creates the file but not its folder.
pub fn prepare_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else { return Ok(()) };
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the database folder {}", parent.display()))?;
    }
    Ok(())
}

/// On first start, creates tenant `default`, prints its token once and keeps it in a 0600 file.
async fn bootstrap_default_tenant(store: &DynStore, config: &Config) -> anyhow::Result<()> {
    if !store.list_tenants().await?.is_empty() {
        return Ok(());
    }
    let chosen = match &config.default_tenant_token {
        Some(secret) => {
            Some(crate::domain::Token::from_secret(secret).map_err(|r| anyhow::anyhow!("default_tenant_token {r}"))?)
        }
        None => None,
    };
    let given = chosen.is_some();
    let token = chosen.unwrap_or_else(crate::domain::Token::generate);
    let token = match tenants::create_tenant_with_token(store, DEFAULT_TENANT, Some("Default"), token).await {
        Ok((_, token)) => token,
        // Another process of the same installation created it a moment ago.
        Err(tenants::TenantError::Store(crate::storage::StoreError::Conflict(_))) => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    if given {
        tracing::info!("Created tenant \"default\" with the token of default_tenant_token.");
        return Ok(());
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let path = config.data_dir.join("default-tenant.token");
    write_private(&path, token.expose()).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "Created tenant \"default\". Its token (shown once; also saved to {}):\n{}",
        path.display(),
        token.expose()
    );
    Ok(())
}

fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), role = ?config.role, database = %crate::config::redact_url(&config.database_url), "Starting microdash.");
    prepare_sqlite_dir(&config.database_url)?;
    let store = storage::open(&config.database_url, config.sqlite_sync == "full").await?;
    store.migrate().await.context("applying database migrations")?;
    bootstrap_default_tenant(&store, &config).await?;

    let telemetry = Telemetry::new();
    let hub = Arc::new(LiveHub::new(65_536, 10_000));
    let alerting = start_alerting(&store, &config, &telemetry);
    // Who hears about committed samples: in-process, straight from the writer; with Redis, from
    // the pub/sub channel every worker publishes its commits to (so the live hub of every
    // process, and the alert evaluator, see every worker's samples, once).
    let mut listeners: Vec<Arc<dyn CommitListener>> = vec![hub.clone()];
    if let Some(engine) = &alerting.engine {
        listeners.push(engine.clone());
    }
    let writer_config = WriterConfig {
        queue_capacity: config.queue_capacity,
        max_group_samples: 100_000,
        dedupe_window: config.dedupe_window,
    };
    let distributed = config.redis_url.is_some();
    let (writer, writer_task) = match &config.redis_url {
        None => match head_wal_dir(&config) {
            Some(dir) => {
                Writer::start_with_head(store.clone(), writer_config, telemetry.clone(), listeners, &dir).await?
            }
            None => Writer::start(store.clone(), writer_config, telemetry.clone(), listeners),
        },
        Some(url) => {
            // Workers write; every process hears about their commits over pub/sub.
            tokio::spawn(crate::pipeline::redis::subscribe_live(url.clone(), listeners));
            let task = if config.role == Role::Api {
                tokio::spawn(async {})
            } else {
                let consumer = format!("{}-{}", hostname(), std::process::id());
                tracing::info!(%consumer, "Worker role: consuming the Redis ingest stream.");
                tokio::spawn(crate::pipeline::redis::run_worker(
                    url.clone(),
                    consumer,
                    store.clone(),
                    WriterConfig { max_group_samples: config.worker_batch_samples, ..writer_config.clone() },
                    telemetry.clone(),
                    Vec::new(),
                ))
            };
            let producer = crate::pipeline::redis::Producer::new(url, &writer_config)
                .await
                .with_context(|| format!("connecting to Redis at {} (redis_url)", crate::config::redact_url(url)))?;
            (Writer::redis(producer), task)
        }
    };
    let purge = tokio::spawn(purge_dedupe_forever(store.clone(), config.dedupe_window));

    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!("cannot listen on {} (listen / MICRODASH_LISTEN); is another server running there?", config.listen)
    })?;
    let local = listener.local_addr()?;
    let shown = if local.ip().is_unspecified() { format!("localhost:{}", local.port()) } else { local.to_string() };

    let retention = tokio::spawn(crate::retention::run_forever(store.clone(), std::sync::Arc::new(config.clone())));
    let mut state = AppState::new(store.clone(), writer, config, telemetry, hub);
    state.alerting = Arc::new(alerting);
    // Exporters run beside the alert engine (role all or worker).
    if state.config.role != Role::Api {
        let outbound = state.config.outbound_policy().expect("checked when the configuration was read");
        state.exporters = crate::exporters::Exporters::start(store.clone(), Arc::new(outbound));
    }
    // Revocations and deletions made anywhere reach this process within a second.
    let auth_watcher = state.auth.start_watcher();
    let trimmer = state.fairness.start_trimmer();
    tokio::spawn(resume_tenant_purges(store.clone()));
    let mqtt = if state.config.role != Role::Worker {
        crate::mqtt::start(crate::mqtt::Services {
            config: state.config.clone(),
            store: state.store.clone(),
            writer: state.writer.clone(),
            limits: state.limits.clone(),
            telemetry: state.telemetry.clone(),
            auth: state.auth.clone(),
            intake: state.intake.clone(),
            shutdown: state.shutdown.clone(),
        })
        .await?
    } else {
        None
    };
    tracing::info!(listen = %local, "Listening. Dashboard: http://{shown}/  API: http://{shown}/api/v1  OpenAPI: http://{shown}/openapi.json");
    let stop = state.shutdown.clone();
    axum::serve(listener, app_with(state, crate::mcp::routes))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("Shutdown requested: finishing requests, closing live streams.");
            let _ = stop.send(true);
        })
        .await?;
    // The MQTT side saw the same signal: it commits and acknowledges what it received, then
    // drops its Writer handles.
    if let Some(mqtt) = mqtt {
        let _ = mqtt.await;
    }
    // Every handler is done and dropped its Writer handle: the writer drains and exits.
    tracing::info!("Stopping: committing what is queued.");
    purge.abort();
    retention.abort();
    auth_watcher.abort();
    trimmer.abort();
    if distributed {
        // A worker acknowledges only what it committed: stopping it mid-batch leaves that
        // batch pending in Redis for the next worker.
        writer_task.abort();
    }
    let _ = writer_task.await;
    store.close().await;
    tracing::info!("Stopped.");
    Ok(())
}

/// Where the embedded writer keeps the head's log: `head_wal_dir`, else beside an SQLite file;
/// `None` (every sample a row) for an in-memory SQLite or a server database without the key.
pub fn head_wal_dir(config: &Config) -> Option<std::path::PathBuf> {
    if let Some(dir) = &config.head_wal_dir {
        return Some(dir.clone());
    }
    let rest = config.database_url.strip_prefix("sqlite://").or_else(|| config.database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") || rest.contains("mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(format!("{path}.head-wal")))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "microdash".into())
}

/// Starts the alert engine and the outbox delivery loop where this process evaluates alerts
/// (role `all` or `worker`). Both run until the process exits: the outbox is durable, so
/// whatever is in flight at exit is sent after the next start.
fn start_alerting(store: &DynStore, config: &Config, telemetry: &Telemetry) -> Alerting {
    let ca = config
        .notify_ca_file
        .as_ref()
        .map(|path| std::fs::read(path).expect("checked when the configuration was read"));
    let outbound = config.outbound_policy().expect("checked when the configuration was read");
    let notifier = Notifier::new(ca, outbound).expect("checked when the configuration was read");
    let outbox_config = OutboxConfig {
        max_attempts: config.notify_max_attempts,
        backoff: config.notify_backoff,
        max_backoff: config.notify_max_backoff,
    };
    if config.role == Role::Api {
        return Alerting { engine: None, notifier, outbox: outbox_config };
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(outbox::run(store.clone(), notifier.clone(), outbox_config.clone(), wake.clone(), telemetry.clone()));
    let ownership = if config.redis_url.is_some() {
        let owner = format!("{}-{}-{}", hostname(), std::process::id(), rand::random::<u32>());
        Ownership::Lease { owner, ttl: config.alert_lease_ttl }
    } else {
        Ownership::Always
    };
    let (engine, _task) = AlertEngine::start(store.clone(), wake, ownership, telemetry.clone());
    Alerting { engine: Some(engine), notifier, outbox: outbox_config }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

/// Finishes removing the data of tenants deleted before a stop (or by `microdash tenant
/// delete` that was interrupted).
async fn resume_tenant_purges(store: DynStore) {
    match store.deleted_tenants().await {
        Ok(ids) => {
            for id in ids {
                crate::http::admin::purge_in_background(store.clone(), format!("~{id}"), id).await;
            }
        }
        Err(err) => tracing::warn!(%err, "Looking for deleted tenants to purge failed."),
    }
}

/// Forgets expired dedupe ids in small chunks so ingest never waits long on this.
async fn purge_dedupe_forever(store: DynStore, window: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let before = now_ms() - window.as_millis() as i64;
        loop {
            match store.purge_dedupe(before, 5_000).await {
                Ok(5_000) => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(%err, "Purging old dedupe ids failed; will retry.");
                    break;
                }
            }
        }
    }
}
