//! The bridge: reads `$share/microdash/metrics/#` from an external broker (Mosquitto, EMQX…)
//! at QoS 1, so several microdash workers split the messages between them.
//!
//! The session is persistent (`clean_session = false`, a stable client id) and acknowledgements
//! are manual: a message is acknowledged only after its samples are committed. While the
//! bridge is away, the broker keeps its messages; when it comes back, unacknowledged ones are
//! delivered again. The event loop reconnects by itself with exponential backoff.
//!
//! Mosquitto 2.0 keeps a persistent session's ordinary subscriptions across its own restart
//! but not its shared ones: until the bridge has subscribed again, the broker drops what is
//! published (measured with 2.0.11). `mqtt_shared_subscription: false` subscribes `metrics/#`
//! instead, for a single bridge that must not lose messages across broker restarts.
//!
//! One task polls the connection and never waits on the database; another gathers whatever
//! arrived into batches, commits up to `MAX_BATCHES_IN_FLIGHT` of them at once and
//! acknowledges them in arrival order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::config::BridgeSettings;
use super::{Inbound, Ingestor, Publisher, Source, Stopped, stopping};
use crate::telemetry::Telemetry;

/// Messages received and not yet acknowledged, at most; past it the connection is not read.
const MAX_UNACKED: usize = 20_000;
/// Messages committed together, at most.
const MAX_BATCH_MESSAGES: usize = 5_000;
/// Payload bytes committed together, at most: big messages make smaller batches, so decoding
/// one batch overlaps with writing the one before.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Batches being committed at once: one committing, one decoded and queued behind it.
const MAX_BATCHES_IN_FLIGHT: usize = 2;
/// Under a steady stream, batches start at most this often (see `commit_in_order`).
const BATCH_INTERVAL: Duration = Duration::from_millis(20);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The MQTT maximum. Payloads over `max_body_bytes` are dropped by the ingestor, acknowledged
/// and counted; were rumqttc to refuse the packet instead, the connection would break and the
/// same message come back on every reconnect.
const MAX_INCOMING_PACKET: usize = 268_435_455;

pub struct Bridge {
    settings: BridgeSettings,
    ingestor: Arc<Ingestor>,
    telemetry: Telemetry,
    shutdown: watch::Receiver<bool>,
}

type Received = (Publish, OwnedSemaphorePermit);

impl Bridge {
    pub fn new(
        settings: BridgeSettings,
        ingestor: Arc<Ingestor>,
        telemetry: Telemetry,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self { settings, ingestor, telemetry, shutdown }
    }

    fn options(&self) -> MqttOptions {
        let broker = &self.settings.broker;
        let mut options = MqttOptions::new(self.settings.client_id.clone(), broker.host.clone(), broker.port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(KEEP_ALIVE)
            .set_max_packet_size(MAX_INCOMING_PACKET, 64 * 1024);
        if let Some(username) = &broker.username {
            options.set_credentials(username.clone(), broker.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &self.settings.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls.clone())));
        }
        options
    }

    /// Runs until shutdown, then commits and acknowledges what already arrived and leaves.
    pub async fn run(self) {
        let broker = format!(
            "{}://{}:{}",
            if self.settings.broker.tls { "mqtts" } else { "mqtt" },
            self.settings.broker.host,
            self.settings.broker.port
        );
        let client_id = self.settings.client_id.clone();
        // Room for an acknowledgement of every unacknowledged message, so acking never waits.
        let (client, mut events) = AsyncClient::new(self.options(), MAX_UNACKED + 64);
        let (received, to_commit) = mpsc::unbounded_channel::<Received>();
        let mut committer = tokio::spawn(commit_in_order(to_commit, client.clone(), self.ingestor.clone()));
        let unacked = Arc::new(Semaphore::new(MAX_UNACKED));
        let mut stop = self.shutdown.clone();
        let mut retry = FIRST_RETRY;
        let topic = self.settings.topic;
        tracing::info!(%broker, %client_id, topic, "MQTT bridge starting.");
        loop {
            let event = tokio::select! {
                event = events.poll() => event,
                _ = stopping(&mut stop) => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    retry = FIRST_RETRY;
                    tracing::info!(%broker, %client_id, session_present = ack.session_present, "MQTT bridge connected.");
                    // Kept by a resumed session, needed by a new one; subscribing again is harmless.
                    if let Err(err) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                        tracing::error!(%err, "Could not request the MQTT subscription.");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                        tracing::error!(%broker, topic, "The MQTT broker refused the subscription: nothing will be ingested. Its ACL must let this user read metrics/# (see docs/mqtt.md).");
                    } else {
                        // Connected and subscribed: from now on the broker routes messages here.
                        self.telemetry.mqtt_bridge_connected.set(1);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let permit = tokio::select! {
                        permit = unacked.clone().acquire_owned() => permit.expect("never closed"),
                        _ = stopping(&mut stop) => break,
                    };
                    let _ = received.send((publish, permit));
                }
                Ok(_) => {}
                Err(err) => {
                    self.telemetry.mqtt_bridge_connected.set(0);
                    self.telemetry.mqtt_bridge_connection_errors.inc();
                    tracing::warn!(%broker, err = %error_chain(&err), retry_in = ?retry, "MQTT bridge connection failed; reconnecting.");
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stopping(&mut stop) => break,
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
        // Shutdown: let the committer finish what it has, keep polling so its acknowledgements
        // go out, then disconnect. Messages arriving meanwhile are not acknowledged: the broker
        // delivers them again.
        drop(received);
        loop {
            tokio::select! {
                _ = &mut committer => break,
                event = events.poll() => if event.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                },
            }
        }
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        self.telemetry.mqtt_bridge_connected.set(0);
        tracing::info!(%broker, "MQTT bridge stopped.");
    }
}

type Committing = Pin<Box<dyn Future<Output = (Result<(), Stopped>, Vec<Received>)> + Send>>;

/// Gathers received messages into batches, commits them and acknowledges in arrival order.
///
/// A batch starts when a slot is free and either it is full, or `BATCH_INTERVAL` has passed
/// since the last one started: a lone message goes at once, a stream of small ones is
/// committed in batches of what arrived in that time. What a commit costs depends mostly on
/// the series it touches (their pages are written to the database log on every commit), not
/// on the samples, so a stream of single-sample messages over 100 series committed as it
/// arrived (~90 per commit) spent most of the bridge's CPU in commits.
async fn commit_in_order(
    mut to_commit: mpsc::UnboundedReceiver<Received>,
    client: AsyncClient,
    ingestor: Arc<Ingestor>,
) {
    let mut committing: FuturesOrdered<Committing> = FuturesOrdered::new();
    let mut gathering: Vec<Received> = Vec::new();
    let mut bytes = 0usize;
    let mut open = true;
    let mut last_start = tokio::time::Instant::now() - BATCH_INTERVAL;
    loop {
        let full = gathering.len() >= MAX_BATCH_MESSAGES || bytes >= MAX_BATCH_BYTES;
        let slot = committing.len() < MAX_BATCHES_IN_FLIGHT;
        let due = full || !open || last_start.elapsed() >= BATCH_INTERVAL;
        if !gathering.is_empty() && slot && due {
            last_start = tokio::time::Instant::now();
            bytes = 0;
            committing.push_back(commit(ingestor.clone(), std::mem::take(&mut gathering)));
            continue;
        }
        if !open && gathering.is_empty() && committing.is_empty() {
            break;
        }
        tokio::select! {
            Some((result, batch)) = committing.next(), if !committing.is_empty() => {
                if result.is_err() {
                    // Stopping before the commit: unacknowledged, so delivered again.
                    continue;
                }
                for (publish, _permit) in batch {
                    // The request channel has room for every unacknowledged message, so
                    // `try_ack` normally succeeds without a wake-up per message.
                    let acked = match client.try_ack(&publish) {
                        Err(rumqttc::ClientError::TryRequest(_)) => client.ack(&publish).await,
                        other => other,
                    };
                    if let Err(err) = acked {
                        tracing::debug!(%err, "Could not acknowledge an MQTT message; it will be delivered again.");
                    }
                }
            }
            next = to_commit.recv(), if open && !full => {
                let Some(next) = next else {
                    open = false;
                    continue;
                };
                bytes += next.0.payload.len();
                gathering.push(next);
                // Whatever else is already here, without a wake-up per message.
                while gathering.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
                    match to_commit.try_recv() {
                        Ok(next) => {
                            bytes += next.0.payload.len();
                            gathering.push(next);
                        }
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(last_start + BATCH_INTERVAL), if !gathering.is_empty() && slot && !due => {}
        }
    }
}

/// Commits one batch; gives the publishes back (payloads taken out) for the acknowledgements.
/// A task of its own, so decoding the batches in flight can use every core.
fn commit(ingestor: Arc<Ingestor>, mut batch: Vec<Received>) -> Committing {
    let task = tokio::spawn(async move {
        let messages: Vec<Inbound> = batch
            .iter_mut()
            .map(|(publish, _)| Inbound {
                topic: std::mem::take(&mut publish.topic),
                payload: std::mem::take(&mut publish.payload),
            })
            .collect();
        let result = ingestor.ingest(Source::Bridge, Publisher::AnyTenant, &messages).await;
        (result, batch)
    });
    // A panic in the task loses no acknowledgement it should not: nothing is acknowledged.
    Box::pin(async move { task.await.unwrap_or_else(|_| (Err(Stopped), Vec::new())) })
}

/// An error and its causes on one line: "connection refused" is in the source, not the top.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
