//! Wiring: the collector on its interval, feeding the shipper through a channel, both
//! stopped by one signal.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::collector::Collector;
use crate::config::{Config, Transport};
use crate::error::{Error, Result};
use crate::sample::{Batch, BatchSeq, now_ms};
use crate::shipper::{Shipper, ShipperOptions, Stats, stopped};
use crate::sink::{HttpSink, MqttSink, Sink};
use crate::spool::Spool;

/// Batches waiting for the shipper while it is busy with a slow send; beyond this the
/// collector waits, and a missed tick is skipped rather than bunched.
const BATCH_QUEUE: usize = 64;

/// `--once`: one collection as a bulk request body.
pub fn collect_once(config: &Config) -> Result<Batch> {
    let mut collector = Collector::new(&config.host_label, &config.proc_root, config.root.clone())?;
    let ts = now_ms();
    let seq = BatchSeq::starting_after(None).next(ts);
    Ok(Batch::new(seq, collector.collect(seq, ts as i64)))
}

/// Runs the agent until `stop` turns true; unsent batches are in the spool when it returns.
pub async fn run(config: Config, stop: watch::Receiver<bool>) -> Result<Stats> {
    let sink = match config.transport.clone() {
        Some(Transport::Http { server, token }) => {
            Sink::Http(HttpSink::new(&server, token, config.ca_file.as_deref())?)
        }
        Some(Transport::Mqtt { url, tenant, token }) => Sink::Mqtt(Box::new(MqttSink::new(
            &url,
            &tenant,
            &token,
            &config.host_label,
            config.interval,
            config.ca_file.as_deref(),
        )?)),
        None => return Err(Error::config("no destination: set --server URL --token T")),
    };
    let spool = Spool::open(&config.spool_dir, config.spool_max_bytes)?;
    let seq = BatchSeq::starting_after(spool.newest());
    let collector = Collector::new(&config.host_label, &config.proc_root, config.root.clone())?;
    info!(
        host = %config.host_label,
        endpoint = %sink.endpoint(),
        interval = %humantime::format_duration(config.interval),
        spool = %config.spool_dir.display(),
        "Agent started."
    );

    let (batch_tx, batch_rx) = mpsc::channel(BATCH_QUEUE);
    let collecting = tokio::spawn(collect_loop(collector, seq, config.interval, batch_tx, stop.clone()));
    let shipper = Shipper::new(sink, spool, ShipperOptions::default());
    let stats = shipper.run(batch_rx, stop).await;
    if let Err(error) = collecting.await {
        warn!(%error, "Collector task failed.");
    }
    Ok(stats)
}

/// Collects at every tick until stopped; a collection in progress finishes and is handed
/// over, so the shipper can spool it.
pub async fn collect_loop(
    mut collector: Collector,
    mut seq: BatchSeq,
    interval: Duration,
    batches: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            _ = ticker.tick() => {}
        }
        let ts = now_ms();
        let batch_seq = seq.next(ts);
        let joined = tokio::task::spawn_blocking(move || {
            let samples = collector.collect(batch_seq, ts as i64);
            (collector, samples)
        })
        .await;
        let samples;
        (collector, samples) = match joined {
            Ok(done) => done,
            Err(error) => {
                warn!(%error, "Collection failed; stopping the collector.");
                break;
            }
        };
        // One line per collection at DEBUG only: what a test or a person chasing a gap compares
        // with what the server stored.
        debug!(seq = batch_seq, ts, samples = samples.len(), "Collected.");
        if batches.send(Batch::new(batch_seq, samples)).await.is_err() {
            break;
        }
    }
}
