//! Delivery: sends each new batch, spools it when the server cannot take it, and replays the
//! spool oldest first once the server answers again. New batches queue behind spooled ones,
//! so the server always receives batches in collection order.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::sample::Batch;
use crate::sink::{Delivery, Sink};
use crate::spool::Spool;

/// Waits between retries after a failed send: doubling from `backoff_min` to `backoff_max`.
#[derive(Debug, Clone, Copy)]
pub struct ShipperOptions {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for ShipperOptions {
    fn default() -> Self {
        Self { backoff_min: Duration::from_secs(1), backoff_max: Duration::from_secs(60) }
    }
}

/// What happened to batches over the agent's life; logged at exit, read by tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// New batches the server took on the first try.
    pub sent: u64,
    /// Batches written to the spool.
    pub spooled: u64,
    /// Spooled batches the server took later.
    pub replayed: u64,
    /// Batches the server refused with a 4xx; they can never succeed.
    pub rejected: u64,
    /// Batches dropped to keep the spool under its size bound.
    pub dropped_spool_full: u64,
    /// Batches lost because the spool could not be written or read.
    pub lost_spool_error: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Nothing sent yet.
    Unknown,
    Up,
    Down,
}

pub struct Shipper {
    sink: Sink,
    spool: Spool,
    options: ShipperOptions,
    stats: Stats,
    link: Link,
    /// No send (and no replay) before this; set after a failure.
    retry_at: Instant,
    backoff: Duration,
    /// Drops since the last "spool full" summary; one log line per episode, not per batch.
    unlogged_drops: u64,
    /// The last rejection logged, so a repeated one is not logged again.
    last_rejection: Option<String>,
    spool_failing: bool,
}

impl Shipper {
    pub fn new(sink: Sink, spool: Spool, options: ShipperOptions) -> Self {
        Self {
            sink,
            spool,
            backoff: options.backoff_min,
            options,
            stats: Stats::default(),
            link: Link::Unknown,
            retry_at: Instant::now(),
            unlogged_drops: 0,
            last_rejection: None,
            spool_failing: false,
        }
    }

    /// Runs until `stop` turns true (or its sender goes away), then moves the batches still
    /// in `batches` to the spool; returns once the collector has dropped its sender.
    pub async fn run(mut self, mut batches: mpsc::Receiver<Batch>, mut stop: watch::Receiver<bool>) -> Stats {
        if !self.spool.is_empty() {
            info!(
                batches = self.spool.len(),
                bytes = self.spool.bytes(),
                dir = %self.spool.dir().display(),
                "Spool holds batches from an earlier run; replaying them first."
            );
        }
        loop {
            let replay_pending = !self.spool.is_empty();
            let flow = tokio::select! {
                biased;
                _ = stopped(&mut stop) => ControlFlow::Break(()),
                batch = batches.recv() => match batch {
                    Some(batch) => self.on_batch(batch, &mut stop).await,
                    None => ControlFlow::Break(()),
                },
                _ = tokio::time::sleep_until(self.retry_at), if replay_pending => {
                    self.replay(&mut batches, &mut stop).await
                }
            };
            if flow.is_break() {
                break;
            }
        }
        // Whatever was collected but not delivered waits in the spool for the next run.
        while let Some(batch) = batches.recv().await {
            self.spool_batch(&batch);
        }
        self.log_drops();
        info!(
            sent = self.stats.sent,
            replayed = self.stats.replayed,
            spooled = self.stats.spooled,
            left_in_spool = self.spool.len(),
            rejected = self.stats.rejected,
            dropped = self.stats.dropped_spool_full,
            "Shipper stopped."
        );
        self.stats
    }

    async fn on_batch(&mut self, batch: Batch, stop: &mut watch::Receiver<bool>) -> ControlFlow<()> {
        if !self.spool.is_empty() || Instant::now() < self.retry_at {
            // Older batches go first; the replay arm picks this one up in turn.
            self.spool_batch(&batch);
            return ControlFlow::Continue(());
        }
        let Some(delivery) = self.send(&batch, stop).await else {
            self.spool_batch(&batch);
            return ControlFlow::Break(());
        };
        match delivery {
            Delivery::Delivered => {
                self.stats.sent += 1;
                self.link_up();
            }
            Delivery::Rejected { reason } => self.rejected(batch.seq, reason),
            failure => {
                self.spool_batch(&batch);
                self.link_down(&failure);
            }
        }
        ControlFlow::Continue(())
    }

    /// Sends spooled batches oldest first until the spool is empty or a send fails.
    async fn replay(
        &mut self,
        batches: &mut mpsc::Receiver<Batch>,
        stop: &mut watch::Receiver<bool>,
    ) -> ControlFlow<()> {
        let mut replayed = 0;
        let flow = loop {
            // New batches join the queue behind the spooled ones, so a long replay neither
            // blocks the collector nor reorders batches.
            while let Ok(batch) = batches.try_recv() {
                self.spool_batch(&batch);
            }
            let Some(seq) = self.spool.oldest() else {
                break ControlFlow::Continue(());
            };
            let batch = match self.spool.read(seq) {
                Ok(batch) => batch,
                Err(error) => {
                    error!(%error, seq, "Cannot read a spooled batch; dropping it.");
                    self.stats.lost_spool_error += 1;
                    self.remove_spooled(seq);
                    continue;
                }
            };
            let Some(delivery) = self.send(&batch, stop).await else {
                break ControlFlow::Break(());
            };
            match delivery {
                Delivery::Delivered => {
                    self.remove_spooled(seq);
                    replayed += 1;
                    self.link_up();
                }
                Delivery::Rejected { reason } => {
                    self.rejected(seq, reason);
                    self.remove_spooled(seq);
                }
                failure => {
                    self.link_down(&failure);
                    break ControlFlow::Continue(());
                }
            }
        };
        if replayed > 0 {
            self.stats.replayed += replayed;
            info!(batches = replayed, remaining = self.spool.len(), "Replayed spooled batches.");
        }
        flow
    }

    /// `None` when stopped mid-send; the batch may or may not have arrived, and its dedupe
    /// ids make a later replay harmless either way.
    async fn send(&mut self, batch: &Batch, stop: &mut watch::Receiver<bool>) -> Option<Delivery> {
        tokio::select! {
            biased;
            _ = stopped(stop) => None,
            delivery = self.sink.send(batch) => Some(delivery),
        }
    }

    fn link_up(&mut self) {
        match self.link {
            Link::Up => {}
            Link::Unknown => info!(endpoint = %self.sink.endpoint(), "Connected to the server."),
            Link::Down => info!(
                endpoint = %self.sink.endpoint(),
                spooled = self.spool.len(),
                "Server reachable again."
            ),
        }
        self.link = Link::Up;
        self.backoff = self.options.backoff_min;
        self.retry_at = Instant::now();
        self.log_drops();
    }

    fn link_down(&mut self, failure: &Delivery) {
        let wait = match failure {
            // `Retry-After: 0` must not turn into a tight loop.
            Delivery::Throttled { retry_after: Some(wait), .. } => (*wait).max(self.options.backoff_min),
            _ => {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(self.options.backoff_max);
                wait
            }
        };
        self.retry_at = Instant::now() + wait;
        let reason = match failure {
            Delivery::Throttled { reason, .. } | Delivery::Failed { reason } => reason.clone(),
            other => format!("{other:?}"),
        };
        if self.link == Link::Down {
            debug!(%reason, retry_in = ?wait, "Server still unavailable.");
        } else {
            warn!(
                endpoint = %self.sink.endpoint(),
                %reason,
                retry_in = ?wait,
                spooled = self.spool.len(),
                "Server unavailable; spooling batches until it answers."
            );
            self.link = Link::Down;
        }
    }

    fn rejected(&mut self, seq: u64, reason: String) {
        self.stats.rejected += 1;
        if self.last_rejection.as_ref() == Some(&reason) {
            debug!(seq, %reason, "Server rejected a batch again; dropping it.");
        } else {
            error!(
                seq,
                %reason,
                "Server rejected a batch; dropping it, it can never succeed."
            );
            self.last_rejection = Some(reason);
        }
    }

    fn spool_batch(&mut self, batch: &Batch) {
        match self.spool.append(batch) {
            Ok(appended) => {
                if self.spool_failing {
                    info!(dir = %self.spool.dir().display(), "Spool writable again.");
                    self.spool_failing = false;
                }
                if !appended.dropped_self {
                    self.stats.spooled += 1;
                }
                let dropped = appended.dropped_oldest as u64 + u64::from(appended.dropped_self);
                if dropped > 0 {
                    if self.unlogged_drops == 0 {
                        warn!(
                            dir = %self.spool.dir().display(),
                            bytes = self.spool.bytes(),
                            "Spool full; dropping the oldest batches."
                        );
                    }
                    self.unlogged_drops += dropped;
                    self.stats.dropped_spool_full += dropped;
                }
            }
            Err(error) => {
                self.stats.lost_spool_error += 1;
                if !self.spool_failing {
                    error!(%error, "Cannot write to the spool; unsent batches are lost.");
                    self.spool_failing = true;
                }
            }
        }
    }

    fn remove_spooled(&mut self, seq: u64) {
        if let Err(error) = self.spool.remove(seq) {
            warn!(%error, seq, "Cannot delete a replayed spool file.");
        }
    }

    fn log_drops(&mut self) {
        if self.unlogged_drops > 0 {
            warn!(batches = self.unlogged_drops, "Dropped the oldest batches while the spool was full.");
            self.unlogged_drops = 0;
        }
    }
}

/// Resolves once `stop` is true or its sender is gone.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
