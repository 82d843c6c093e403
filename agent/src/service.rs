//! Wiring: the collector on its interval, feeding the shipper through a channel, both
//! stopped by one signal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::collector::Collector;
use crate::config::{Config, Transport};
use crate::error::{Error, Result};
use crate::kube::Discovery;
use crate::sample::{Batch, BatchSeq, now_ms};
use crate::scrape::{Scraped, Scraper, Target};
use crate::shipper::{Shipper, ShipperOptions, Stats, stopped};
use crate::sink::{HttpSink, MqttSink, Sink};
use crate::spool::Spool;
use crate::systemd::{self, SystemdCollector};

/// Batches waiting for the shipper while it is busy with a slow send; beyond this the
/// collector waits, and a missed tick is skipped rather than bunched.
const BATCH_QUEUE: usize = 64;

/// The file in the spool directory where every collection records its time and the agent's
/// interval (`<unix ms> <interval ms>`), for `--health`, which so needs no `--interval` of its
/// own. Not a batch: the spool ignores it.
pub const HEARTBEAT_FILE: &str = "heartbeat";

/// How old the last collection may be before `--health` says the agent is stuck.
pub fn health_max_age(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(30))
}

/// Records a collection's time (write then rename: a reader never sees half a line).
fn write_heartbeat(dir: &Path, ts_ms: u64, interval: Duration) {
    let tmp = dir.join(format!("{HEARTBEAT_FILE}.new"));
    let written = std::fs::write(&tmp, format!("{ts_ms} {}", interval.as_millis()))
        .and_then(|()| std::fs::rename(&tmp, dir.join(HEARTBEAT_FILE)));
    if let Err(error) = written {
        debug!(%error, "Cannot write the heartbeat file.");
    }
}

/// `--health`: Ok with a sentence when the agent using `config`'s spool collected recently,
/// Err with the reason it is not healthy.
pub fn check_health(config: &Config) -> std::result::Result<String, String> {
    let path = config.spool_dir.join(HEARTBEAT_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("no heartbeat at {} ({e}): is the agent running with this spool dir?", path.display()))?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(last)), Some(Ok(interval_ms))) = (fields.next(), fields.next()) else {
        return Err(format!("{} does not hold a time and an interval: {text:?}", path.display()));
    };
    let age = Duration::from_millis(now_ms().saturating_sub(last));
    let max = health_max_age(Duration::from_millis(interval_ms));
    if age > max {
        return Err(format!(
            "the last collection was {} ago (more than {}): the agent is stuck or stopped",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(max)
        ));
    }
    Ok(format!("healthy: the last collection was {} ms ago", age.as_millis()))
}

/// The systemd collector of `config`: the host's bus under `--root`.
pub fn systemd_collector(config: &Config) -> SystemdCollector {
    SystemdCollector::new(
        config.systemd.clone(),
        systemd::bus_socket(config.root.as_deref()),
        systemd::timeout(config.interval),
    )
}

/// `--once`: one collection as a bulk request body, the systemd units' and the scrape
/// targets' samples included.
pub fn collect_once(config: &Config) -> Result<Batch> {
    let mut collector =
        Collector::new(&config.host_label, &config.proc_root, config.root.clone(), config.filters.clone())?;
    let ts = now_ms();
    let seq = BatchSeq::starting_after(None).next(ts);
    let samples = collector.collect(seq, ts as i64);
    let mut scraping = Scraping::new(config)?;
    // `enabled` rather than `may_collect()`: even without a bus, the collector says once why it is off.
    if scraping.scraper.is_none() && !config.systemd.enabled {
        return Ok(Batch::new(seq, samples));
    }
    let mut systemd = systemd_collector(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::config(format!("starting the async runtime: {e}")))?;
    let (mut extra, scraped) = runtime.block_on(async { tokio::join!(systemd.collect(), scraping.scrape()) });
    extra.extend(scraped);
    Ok(Batch::new(seq, collector.append_scraped(seq, ts as i64, samples, extra)))
}

/// A scrape must end before the next collection: at most the interval, and 10 s.
pub fn scrape_timeout(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(10))
}

/// The scrape targets of a collection loop and the client that fetches them.
pub struct Scraping {
    /// `None` without targets or discovery: an HTTP client (its TLS roots) costs the agent
    /// about a MiB of memory.
    pub scraper: Option<Scraper>,
    /// `--scrape`.
    pub targets: Vec<Target>,
    /// `--kube-node`: the node's annotated pods.
    pub discovery: Option<Discovery>,
}

impl Scraping {
    /// The `--scrape` targets and `--kube-node` discovery of `config`.
    pub fn new(config: &Config) -> Result<Self> {
        Ok(Self {
            scraper: (!config.scrape.is_empty() || config.kube.is_some())
                .then(|| Scraper::new(scrape_timeout(config.interval)))
                .transpose()?,
            targets: config.scrape.clone(),
            discovery: config.kube.clone().map(Discovery::new).transpose()?,
        })
    }

    /// One scrape of every target: the static ones and the pods discovery finds now.
    pub async fn scrape(&mut self) -> Vec<Scraped> {
        let Some(scraper) = &self.scraper else { return Vec::new() };
        let mut targets = self.targets.clone();
        if let Some(discovery) = &mut self.discovery {
            targets.extend_from_slice(discovery.targets().await);
        }
        scraper.scrape_all(&targets).await
    }
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
    let collector = Collector::new(&config.host_label, &config.proc_root, config.root.clone(), config.filters.clone())?;
    info!(
        host = %config.host_label,
        endpoint = %sink.endpoint(),
        interval = %humantime::format_duration(config.interval),
        spool = %config.spool_dir.display(),
        "Agent started."
    );

    let (batch_tx, batch_rx) = mpsc::channel(BATCH_QUEUE);
    let heartbeat = Some(config.spool_dir.clone());
    let scraping = Scraping::new(&config)?;
    let systemd = systemd_collector(&config);
    let collecting = tokio::spawn(collect_loop(
        collector,
        scraping,
        systemd,
        seq,
        config.interval,
        batch_tx,
        stop.clone(),
        heartbeat,
    ));
    let shipper = Shipper::new(sink, spool, ShipperOptions::default());
    let stats = shipper.run(batch_rx, stop).await;
    if let Err(error) = collecting.await {
        warn!(%error, "Collector task failed.");
    }
    Ok(stats)
}

/// Collects at every tick until stopped; a collection in progress finishes and is handed
/// over, so the shipper can spool it. A batch holds the host's samples, then systemd's, then
/// the scrape targets'.
#[allow(clippy::too_many_arguments)]
pub async fn collect_loop(
    mut collector: Collector,
    mut scraping: Scraping,
    mut systemd: SystemdCollector,
    mut seq: BatchSeq,
    interval: Duration,
    batches: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
    heartbeat: Option<PathBuf>,
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
        // The host is read on a blocking thread while the targets are scraped.
        let reading = tokio::task::spawn_blocking(move || {
            let samples = collector.collect(batch_seq, ts as i64);
            (collector, samples)
        });
        let (joined, mut extra, scraped) = tokio::join!(reading, systemd.collect(), scraping.scrape());
        extra.extend(scraped);
        let samples;
        (collector, samples) = match joined {
            Ok((collector, samples)) => {
                let samples = if extra.is_empty() {
                    samples
                } else {
                    collector.append_scraped(batch_seq, ts as i64, samples, extra)
                };
                (collector, samples)
            }
            Err(error) => {
                warn!(%error, "Collection failed; stopping the collector.");
                break;
            }
        };
        // One line per collection at DEBUG only: what a test or a person chasing a gap compares
        // with what the server stored.
        debug!(seq = batch_seq, ts, samples = samples.len(), "Collected.");
        if let Some(dir) = &heartbeat {
            write_heartbeat(dir, ts, interval);
        }
        if batches.send(Batch::new(batch_seq, samples)).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, FileConfig};

    fn config_with_spool(dir: &Path) -> Config {
        let cli = Cli { health: true, spool_dir: Some(dir.to_path_buf()), ..Cli::default() };
        Config::resolve(cli, FileConfig::default(), || Some("test".into())).unwrap()
    }

    #[test]
    fn health_needs_a_recent_heartbeat_in_the_spool_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_spool(dir.path());
        let missing = check_health(&config).unwrap_err();
        assert!(missing.contains("no heartbeat"), "{missing}");

        let ten_s = Duration::from_secs(10);
        write_heartbeat(dir.path(), now_ms(), ten_s);
        assert!(check_health(&config).unwrap().starts_with("healthy"));

        // Older than three intervals (at least 30 s): stuck.
        write_heartbeat(dir.path(), now_ms() - 31_000, ten_s);
        let stale = check_health(&config).unwrap_err();
        assert!(stale.contains("stuck or stopped"), "{stale}");
        // The agent's own interval counts, not the checker's: a 1-minute agent is fine at 2 minutes.
        write_heartbeat(dir.path(), now_ms() - 120_000, Duration::from_secs(60));
        assert!(check_health(&config).is_ok());

        std::fs::write(dir.path().join(HEARTBEAT_FILE), "garbage").unwrap();
        assert!(check_health(&config).unwrap_err().contains("does not hold a time"));
    }

    #[test]
    fn the_heartbeat_is_not_taken_for_a_spooled_batch() {
        let dir = tempfile::tempdir().unwrap();
        write_heartbeat(dir.path(), now_ms(), Duration::from_secs(10));
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len(), 0);
        assert!(dir.path().join(HEARTBEAT_FILE).exists());
    }
}
