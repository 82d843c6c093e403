//! `microdash-operator`: reconciles MicroDash, Tenant, AlertRule, NotificationChannel and Silence
//! resources.

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
    if config.release_finalizers {
        let client = kube::Client::try_default().await?;
        let said = microdash_operator::uninstall::release_finalizers(
            client,
            &config.lease_namespace,
            &config.operator_deployment,
            config.watch_namespace.as_deref(),
        )
        .await?;
        for line in said {
            tracing::info!("{line}");
        }
        return Ok(());
    }
    run(config).await
}
