//! The outbox: notifications are rows written with their transition; this loop delivers the
//! due ones, records every attempt, and retries with exponential backoff.
//!
//! A crash never loses a notification (it is in the database before anyone is told) and never
//! repeats a delivered one (delivered rows are not sent again). The window between a receiver's
//! 2xx and our commit of "delivered" is covered by the `Idempotency-Key`, the same on every
//! attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use microdash_model::NotificationChannelSpec;
use tokio::sync::{Notify, Semaphore};

use crate::telemetry::{OutcomeLabels, Telemetry};

use super::payload::Payload;
use super::send_error::SendError;
use super::{email, webhook};
use crate::domain::now_ms;
use crate::outbound::OutboundPolicy;
use crate::storage::DynStore;
use crate::storage::alerts::{AttemptOutcome, AttemptRecord, NotificationRecord, SpecKind};

/// Retry policy of the delivery loop.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig { max_attempts: 10, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(300) }
    }
}

impl OutboxConfig {
    /// The wait after `failures` failed attempts.
    pub fn backoff_after(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Sends one attempt of a notification through its channel.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    /// Extra trusted CA certificates (PEM) for webhooks and SMTP, from `notify_ca_file`.
    ca_pem: Option<Arc<Vec<u8>>>,
    /// Where webhooks may go (checked before sending, on resolution and on every redirect).
    outbound: Arc<OutboundPolicy>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new(None, Default::default()).expect("no extra CA certificates to read")
    }
}

impl Notifier {
    /// `ca_pem`: certificates trusted besides the system's (a private CA of webhooks or SMTP);
    /// `outbound`: the non-public ranges webhooks may reach.
    pub fn new(ca_pem: Option<Vec<u8>>, outbound: OutboundPolicy) -> Result<Self, String> {
        let outbound = Arc::new(outbound);
        let mut builder = outbound.client_builder().connect_timeout(Duration::from_secs(5));
        if let Some(pem) = &ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("holds no PEM certificate".into());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| format!("the HTTP client: {e}"))?;
        Ok(Notifier { client, ca_pem: ca_pem.map(Arc::new), outbound })
    }

    /// Returns the status code on success (0 for SMTP).
    pub async fn send(&self, channel: &NotificationChannelSpec, n: &NotificationRecord) -> Result<u16, SendError> {
        if let Some(hook) = &channel.webhook {
            let url =
                url::Url::parse(hook.url.trim()).map_err(|e| SendError::permanent(format!("invalid URL: {e}")))?;
            self.outbound.check_url(&url).map_err(SendError::permanent)?;
            webhook::send(&self.client, hook, channel.webhook_timeout(), &n.idempotency_key, n.payload.as_bytes()).await
        } else if let Some(mail) = &channel.email {
            let payload: Payload = serde_json::from_str(&n.payload)
                .map_err(|e| SendError::permanent(format!("stored payload unreadable: {e}")))?;
            email::send(mail, &payload, self.ca_pem.as_deref().map(Vec::as_slice)).await.map(|()| 250)
        } else {
            Err(SendError::permanent("the channel has neither webhook nor email"))
        }
    }
}

/// One attempt from start to the recorded outcome: looks the channel up (its current spec, so
/// a fixed URL helps the next retry), sends, records.
pub async fn attempt(
    store: &DynStore,
    notifier: &Notifier,
    config: &OutboxConfig,
    n: &NotificationRecord,
) -> (AttemptRecord, AttemptOutcome) {
    let started = Instant::now();
    let at = now_ms();
    let result = match store.get_spec(SpecKind::Channel, n.tenant_id, &n.channel).await {
        Ok(Some(record)) => match serde_json::from_str::<NotificationChannelSpec>(&record.spec) {
            Ok(spec) => notifier.send(&spec, n).await,
            Err(e) => Err(SendError::permanent(format!("stored channel unreadable: {e}"))),
        },
        // A channel may be created after the rule that names it: keep trying for a while.
        Ok(None) => Err(SendError::temporary(None, format!("channel {:?} does not exist", n.channel))),
        Err(e) => Err(SendError::temporary(None, format!("database: {e}"))),
    };
    let failures = u32::try_from(n.attempts + 1).unwrap_or(u32::MAX);
    let (ok, status_code, error, outcome) = match result {
        Ok(code) => (true, Some(code).filter(|c| *c != 0), None, AttemptOutcome::Delivered),
        Err(e) if e.permanent || failures >= config.max_attempts => {
            (false, e.status_code, Some(e.message), AttemptOutcome::Failed)
        }
        Err(e) => {
            let wait = config.backoff_after(failures);
            (false, e.status_code, Some(e.message), AttemptOutcome::RetryAt(now_ms() + wait.as_millis() as i64))
        }
    };
    let record = AttemptRecord {
        notification_id: n.id,
        at,
        ok,
        status_code,
        error,
        duration_ms: started.elapsed().as_millis() as i64,
    };
    (record, outcome)
}

/// Delivers due notifications until the process stops. `wake` is notified when new rows are
/// written, so a fresh notification leaves at once instead of at the next poll.
pub async fn run(store: DynStore, notifier: Notifier, config: OutboxConfig, wake: Arc<Notify>, telemetry: Telemetry) {
    const BATCH: i64 = 100;
    let in_flight = Arc::new(Semaphore::new(16));
    loop {
        let now = now_ms();
        let due = match store.due_notifications(now, BATCH).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(%err, "Reading the outbox failed; will retry.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let full = due.len() as i64 == BATCH;
        for n in due {
            // The lease: longer than any attempt can take, so nobody else sends it meanwhile;
            // if this process dies mid-attempt, the row is due again once it expires.
            let lease_until = now + 60_000;
            match store.claim_notification(n.id, n.next_attempt_at, lease_until).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(%err, id = n.id, "Claiming a notification failed.");
                    continue;
                }
            }
            let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (store, notifier, config, wake) = (store.clone(), notifier.clone(), config.clone(), wake.clone());
            let telemetry = telemetry.clone();
            tokio::spawn(async move {
                let (record, outcome) = attempt(&store, &notifier, &config, &n).await;
                let label = match outcome {
                    AttemptOutcome::Delivered => "delivered",
                    AttemptOutcome::RetryAt(_) => "retry",
                    AttemptOutcome::Failed => "failed",
                };
                telemetry.notification_attempts.get_or_create(&OutcomeLabels { outcome: label }).inc();
                match &outcome {
                    AttemptOutcome::Delivered => {
                        tracing::info!(id = n.id, channel = %n.channel, state = %n.state, ms = record.duration_ms, "Notification delivered.")
                    }
                    AttemptOutcome::RetryAt(at) => {
                        tracing::warn!(id = n.id, channel = %n.channel, attempt = n.attempts + 1,
                        error = record.error.as_deref().unwrap_or(""), retry_in_ms = at - now_ms(), "Notification attempt failed; will retry.")
                    }
                    AttemptOutcome::Failed => {
                        tracing::error!(id = n.id, channel = %n.channel, attempts = n.attempts + 1,
                        error = record.error.as_deref().unwrap_or(""), "Notification failed for good.")
                    }
                }
                // Record until it sticks: a lost record would resend after the lease.
                for delay in [0u64, 200, 1000, 5000] {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    match store.finish_attempt(&record, outcome).await {
                        Ok(()) => break,
                        Err(err) => tracing::warn!(%err, id = n.id, "Recording a delivery attempt failed; retrying."),
                    }
                }
                drop(permit);
                if matches!(outcome, AttemptOutcome::RetryAt(_)) {
                    wake.notify_one();
                }
            });
        }
        if !full {
            let next = store
                .due_notifications(i64::MAX, 1)
                .await
                .ok()
                .and_then(|d| d.first().map(|n| n.next_attempt_at - now_ms()))
                .unwrap_or(1000)
                .clamp(5, 1000);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(next as u64)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c =
            OutboxConfig { max_attempts: 10, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(60) };
        let waits: Vec<u64> = (1..=8).map(|n| c.backoff_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(c.backoff_after(1000), Duration::from_secs(60));
    }
}
