//! `microdash-agent`: see `--help` and the README.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use microdash_agent::config::{Cli, Config};
use microdash_agent::sample::SampleBatchBody;
use microdash_agent::service;
use tokio::sync::watch;
use tracing::info;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal; journald and kubectl logs get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The cause chain, without the backtrace anyhow adds when RUST_BACKTRACE is set.
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let check_only = cli.check_config;
    let config = Config::load(cli)?;
    if config.health {
        let healthy = service::check_health(&config).map_err(|reason| anyhow::anyhow!("unhealthy: {reason}"))?;
        println!("{healthy}");
        return Ok(());
    }
    if check_only {
        println!("{config:#?}");
        return Ok(());
    }
    if config.once {
        let batch = service::collect_once(&config)?;
        let body = SampleBatchBody { samples: batch.samples()? };
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }

    // Two cores are plenty: the agent waits on a timer and on one request at a time.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut agent = tokio::spawn(service::run(config, stop_rx));
        tokio::select! {
            // The agent only ends by itself when it cannot start (spool dir, transport).
            finished = &mut agent => {
                finished.context("agent task")??;
                return Ok(());
            }
            signal = shutdown_signal() => {
                signal?;
                info!("Stopping; unsent batches go to the spool.");
                let _ = stop_tx.send(true);
            }
        }
        agent.await.context("agent task")??;
        Ok(())
    })
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
