//! The `microdash` command line: `serve`, `migrate`, `compact`, `tenant`, `token`, `mcp`, `apply`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigLayer};
use crate::domain::token::parse_scopes;
use crate::storage;
use crate::storage::chunk_store::{Compacted, compact_before};
use crate::tenants;

#[derive(Parser)]
#[command(name = "microdash", version, about = "Multi-tenant observability micro-dashboard", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (API, dashboard, ingest pipeline).
    Serve(Box<ServeArgs>),
    /// Apply database migrations, then convert the samples that an older version kept as rows
    /// into compressed chunks (resumable: run it again after an interruption), and exit.
    Migrate(MigrateArgs),
    /// Compact the raw samples of every closed 2 h window into compressed chunks now, and give
    /// the freed space back (a running server does this every retention interval).
    Compact(DbArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Exit 0 when a running server answers its readiness check, 1 otherwise (for container
    /// healthchecks, which have no curl in a slim image).
    Health {
        /// The URL to GET; a 2xx answer is healthy.
        #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run the MCP server over stdio (for assistants and tools that start an MCP server as a
    /// subprocess): its tools call a running microdash server with one tenant token.
    Mcp(McpArgs),
    /// Create or update alert rules, notification channels and silences from YAML (the CRD
    /// format: `kind: AlertRule|NotificationChannel|Silence`, `metadata.name`, `spec.tenant`),
    /// several documents separated by `---`. A silence's `metadata.name` is its stable name:
    /// applying it again updates that silence; relative times (`now+2h`) are resolved at each
    /// apply. A running server picks changes up within seconds.
    Apply {
        /// The YAML file, or `-` for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// YAML file with the same keys as the flags (snake_case); flags and env win over it.
    #[arg(long, env = "MICRODASH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate flags, environment and file, print the effective configuration, and exit.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub layer: ConfigLayer,
}

#[derive(Args)]
pub struct McpArgs {
    /// The running server's base URL.
    #[arg(long, env = "MICRODASH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: url::Url,
    /// A tenant token: `read` for the read tools, plus `admin` for rules and channels.
    #[arg(long, env = "MICRODASH_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Apply the schema only; a running server (or `microdash compact`) converts the rows later.
    #[arg(long)]
    pub schema_only: bool,
}

/// What the database commands need: where the database is.
#[derive(Args)]
pub struct DbArgs {
    #[arg(long, env = "MICRODASH_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "MICRODASH_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its first token (all scopes).
    Create {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a tenant with all its data.
    Delete {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token for a tenant and print it.
    Create {
        #[arg(long)]
        tenant: String,
        /// ingest, read or admin; repeat or separate with commas.
        #[arg(long = "scope", value_delimiter = ',', default_values_t = ["ingest".to_string(), "read".to_string()])]
        scopes: Vec<String>,
        /// How long the token works, e.g. 30d, 12h or 3s; without it, forever.
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's tokens: id, prefix, scopes, created, expires, last used (never secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by its id (see `token list`); running servers refuse it within a second
    /// and close its streams and MQTT sessions.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// A Unix millisecond time as RFC 3339 (UTC, seconds), or `-`.
fn show_time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

fn not_found(tenant: &str) -> impl Fn(tenants::TenantError) -> anyhow::Error + '_ {
    move |e| match e {
        tenants::TenantError::Store(storage::StoreError::NotFound(what)) if what.starts_with("tenant") => {
            anyhow::anyhow!("tenant {tenant:?} does not exist; create it with `microdash tenant create {tenant}`")
        }
        tenants::TenantError::Store(storage::StoreError::NotFound(what)) => {
            anyhow::anyhow!("{what} does not exist (see `microdash token list --tenant {tenant}`)")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

pub fn resolve_config(file: Option<&PathBuf>, layer: ConfigLayer) -> anyhow::Result<Config> {
    let file_layer = match file {
        Some(path) => ConfigLayer::from_file(path)?,
        None => ConfigLayer::default(),
    };
    let config = Config::resolve(layer.over(file_layer))?;
    // The components check their own settings: the MQTT bridge parses its URL and reads its
    // TLS files now, so a mistake stops the start (and `--check-config`).
    crate::mqtt::config::BridgeSettings::from_config(&config)?;
    Ok(config)
}

async fn open_store(db: DbArgs) -> anyhow::Result<storage::DynStore> {
    let config =
        resolve_config(db.config.as_ref(), ConfigLayer { database_url: db.database_url, ..Default::default() })?;
    crate::server::prepare_sqlite_dir(&config.database_url)?;
    let store = storage::open(&config.database_url, config.sqlite_sync == "full").await?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// Moves the rows of every closed window into chunks (`retention::compact_with_progress`) with a
/// progress bar, or a line per tenth of the work when stderr is not a terminal (a container's
/// log), then gives the freed space back. Every step is its own transaction: an interrupted run
/// loses nothing, and the next one carries on from there.
async fn compact_all(store: &storage::DynStore, announce: bool) -> anyhow::Result<Compacted> {
    let now = crate::domain::now_ms();
    let todo = store.rows_before(compact_before(now)).await?;
    if todo == 0 {
        return Ok(Compacted::default());
    }
    if announce {
        eprintln!(
            "{todo} samples and rollup buckets of closed windows are rows; converting them into chunks. Each step \
             is committed: an interrupted run loses nothing, and running it again resumes."
        );
    }
    let bar = indicatif::ProgressBar::new(todo).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:32} {percent:>3}% · {pos}/{len} rows · {msg} · {elapsed}, eta {eta}",
        )
        .expect("a valid template"),
    );
    let mut next_tenth = 1;
    let total = crate::retention::compact_with_progress(store, now, |_, total| {
        let moved = (total.samples + total.buckets).min(todo);
        bar.set_position(moved);
        bar.set_message(format!("{} chunks", total.chunks));
        if bar.is_hidden() && moved * 10 / todo >= next_tenth {
            next_tenth = moved * 10 / todo + 1;
            eprintln!("Converting: {}% ({moved} of {todo} rows, {} chunks so far)", moved * 100 / todo, total.chunks);
        }
    })
    .await?;
    bar.finish_and_clear();
    store.reclaim_space().await?;
    Ok(total)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let ServeArgs { config, check_config, layer } = *args;
            let config = resolve_config(config.as_ref(), layer)?;
            if check_config {
                print!("{}", config.to_redacted_yaml());
                return Ok(());
            }
            crate::server::serve(config).await
        }
        Command::Mcp(McpArgs { url, token }) => {
            // Standard output carries the protocol: logs go to standard error, warnings only
            // unless MICRODASH_LOG says otherwise.
            let filter = tracing_subscriber::EnvFilter::try_from_env("MICRODASH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
            let mut base = url;
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            crate::mcp::serve_stdio(crate::mcp::Remote::new(base, token)?).await
        }
        Command::Health { url, timeout } => {
            let client = reqwest::Client::builder().timeout(timeout).build()?;
            let response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            if !status.is_success() {
                anyhow::bail!("GET {url} answered {status}: {}", response.text().await.unwrap_or_default().trim());
            }
            Ok(())
        }
        Command::Migrate(MigrateArgs { db, schema_only }) => {
            let store = open_store(db).await?;
            eprintln!("Migrations applied.");
            if !schema_only {
                let started = std::time::Instant::now();
                let total = compact_all(&store, true).await?;
                if total.samples + total.buckets > 0 {
                    eprintln!(
                        "Converted {} raw samples and {} rollup buckets into {} chunks in {:.1} s.",
                        total.samples,
                        total.buckets,
                        total.chunks,
                        started.elapsed().as_secs_f64()
                    );
                }
                let spinner = indicatif::ProgressBar::new_spinner().with_message(
                    "Checking that freed space goes back to the disk (an SQLite file from an older version is \
                     rewritten once, which needs free space of its size)",
                );
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                let rewritten = store.enable_reclaim().await?;
                spinner.finish_and_clear();
                if rewritten {
                    eprintln!("Rewrote the database file: the space compaction frees now goes back to the disk.");
                }
            }
            store.close().await;
            Ok(())
        }
        Command::Compact(db) => {
            let store = open_store(db).await?;
            let started = std::time::Instant::now();
            let total = compact_all(&store, false).await?;
            store.close().await;
            eprintln!(
                "Compacted {} raw samples and {} rollup buckets into {} chunks in {:.1} s.",
                total.samples,
                total.buckets,
                total.chunks,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { name, display_name, db }) => {
            let store = open_store(db).await?;
            let (tenant, token) = tenants::create_tenant(&store, &name, display_name.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("Created tenant {:?}. Its token (all scopes) is shown once:", tenant.name);
            println!("{}", token.expose());
            Ok(())
        }
        Command::Tenant(TenantCommand::List { db }) => {
            let store = open_store(db).await?;
            for t in store.list_tenants().await? {
                println!("{}\t{}", t.name, t.display_name.unwrap_or_default());
            }
            Ok(())
        }
        Command::Tenant(TenantCommand::Delete { name, db }) => {
            let store = open_store(db).await?;
            let mut shown = std::time::Instant::now();
            let deleted = tenants::delete_tenant(&store, &name, |removed| {
                if shown.elapsed() >= std::time::Duration::from_secs(1) {
                    shown = std::time::Instant::now();
                    eprintln!("Removing tenant {name:?}: {removed} rows so far…");
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !deleted {
                anyhow::bail!("tenant {name:?} does not exist (see `microdash tenant list`)");
            }
            eprintln!("Deleted tenant {name:?} and all its data.");
            Ok(())
        }
        Command::Apply { file, db } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let store = open_store(db).await?;
            for line in crate::alerting::apply::apply(&store, &text).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Token(TokenCommand::Create { tenant, scopes, expires_in, db }) => {
            let scopes = parse_scopes(&scopes.join(",")).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let store = open_store(db).await?;
            let created =
                tenants::create_token(&store, &tenant, &scopes, expires_in.as_deref()).await.map_err(|e| match e {
                    tenants::TenantError::InvalidExpiry(reason) => anyhow::anyhow!("--expires-in {reason}"),
                    other => not_found(&tenant)(other),
                })?;
            let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            let expiry = match created.expires_at {
                Some(_) => format!(", expiring {}", show_time(created.expires_at)),
                None => String::new(),
            };
            eprintln!(
                "Created token {} for tenant {tenant:?} with scopes {}{expiry}. It is shown once:",
                created.number,
                names.join(",")
            );
            println!("{}", created.token.expose());
            Ok(())
        }
        Command::Token(TokenCommand::List { tenant, db }) => {
            let store = open_store(db).await?;
            let tokens = tenants::list_tokens(&store, &tenant).await.map_err(not_found(&tenant))?;
            println!("ID\tPREFIX\tSCOPES\tCREATED\tEXPIRES\tLAST USED");
            for t in tokens {
                let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    t.number,
                    t.prefix,
                    scopes.join(","),
                    show_time(Some(t.created_at)),
                    show_time(t.expires_at),
                    show_time(t.last_used_at)
                );
            }
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { tenant, id, db }) => {
            let store = open_store(db).await?;
            tenants::revoke_token(&store, &tenant, id).await.map_err(not_found(&tenant))?;
            eprintln!("Revoked token {id} of tenant {tenant:?}; running servers refuse it within a second.");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Each command's help says what that command does (once, `health` carried `apply`'s text
    /// and `apply` the description of its database flags).
    #[test]
    fn every_command_has_its_own_help() {
        let cli = Cli::command();
        let about = |name: &str| {
            cli.find_subcommand(name).and_then(|c| c.get_about()).map(|a| a.to_string()).unwrap_or_default()
        };
        assert!(about("health").starts_with("Exit 0 when a running server answers"), "{}", about("health"));
        assert!(about("apply").starts_with("Create or update alert rules"), "{}", about("apply"));
        let mut seen = std::collections::HashSet::new();
        for sub in cli.get_subcommands() {
            let text = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!text.is_empty(), "{} has no help", sub.get_name());
            assert!(seen.insert(text), "{} repeats another command's help", sub.get_name());
        }
    }

    /// The configuration the commands run with includes the components' own checks: a bad
    /// bridge URL stops `serve` (and `--check-config`) naming its key.
    #[test]
    fn resolving_the_configuration_runs_the_components_checks() {
        let layer = crate::config::ConfigLayer { mqtt_url: Some("http://broker".into()), ..Default::default() };
        let err = super::resolve_config(None, layer).unwrap_err().to_string();
        assert!(err.contains("mqtt_url"), "{err}");
    }
}
