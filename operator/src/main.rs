//! `microdash-operator`: reconciles MicroDash, Tenant, AlertRule and NotificationChannel resources.

use clap::Parser;
use microdash_operator::run::{Config, check_health, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if config.health {
        println!("{}", check_health(config.listen).await?);
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("MICRODASH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    if config.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    run(config).await
}
