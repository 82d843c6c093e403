//! MQTT transport: publish `{"samples":[...]}` to `metrics/{tenant}` at QoS 1; the broker's
//! PUBACK is the 2xx. Username = tenant, password = token.
//!
//! One publish at a time, and the event loop is polled only while waiting for its PUBACK, so
//! an acknowledgement always belongs to the batch in flight. After any failure the connection
//! is thrown away: rumqttc would otherwise re-send its unacknowledged publish on reconnect,
//! behind the spool's back and out of order.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};

use super::{Delivery, REQUEST_TIMEOUT};
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::sample::Batch;

/// A big host's batch is tens of KiB; rumqttc's default limit is 10 KiB.
const MAX_PACKET_BYTES: usize = 4 * 1024 * 1024;

pub struct MqttSink {
    options: MqttOptions,
    topic: String,
    endpoint: String,
    /// `None` until the first send and after a failure.
    /// Boxed: the event loop is large and the sink lives in an enum beside the HTTP one.
    connection: Option<Box<(AsyncClient, EventLoop)>>,
}

impl fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSink")
            .field("endpoint", &self.endpoint)
            .field("topic", &self.topic)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl MqttSink {
    /// `url` is `mqtt://host[:port]` or `mqtts://host[:port]` (TLS, trusting `ca_file`'s CAs
    /// or the public roots); `interval` sets the keep-alive so that an idle connection
    /// between two collections is not dropped by the broker.
    pub fn new(
        url: &str,
        tenant: &str,
        token: &Secret,
        host_label: &str,
        interval: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Error::config(format!("--mqtt `{url}`: {e}")))?;
        let (tls, port) = match parsed.scheme() {
            "mqtt" => (false, parsed.port().unwrap_or(1883)),
            "mqtts" => (true, parsed.port().unwrap_or(8883)),
            other => {
                return Err(Error::config(format!(
                    "--mqtt `{url}`: unknown scheme `{other}`, expected mqtt:// or mqtts://"
                )));
            }
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| Error::config(format!("--mqtt `{url}`: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // The pid keeps two agents that share a host label from taking over each other's session.
        let client_id = format!("microdash-agent-{host_label}-{}", std::process::id());
        let mut options = MqttOptions::new(client_id, host.clone(), port);
        options
            .set_credentials(tenant, token.0.clone())
            .set_clean_session(true)
            .set_keep_alive((interval * 3).clamp(Duration::from_secs(30), Duration::from_secs(3600)))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if tls {
            let config = super::tls::client_config(ca_file)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        Ok(Self {
            options,
            topic: format!("metrics/{tenant}"),
            endpoint: format!("{}://{host}:{port} topic metrics/{tenant}", parsed.scheme()),
            connection: None,
        })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub async fn send(&mut self, batch: &Batch) -> Delivery {
        let reused = self.connection.is_some();
        let started = std::time::Instant::now();
        let delivery = self.send_once(batch).await;
        // A kept connection may have been closed by the broker while idle: that fails at
        // once, and deserves one fresh try before the broker is called unavailable (should
        // the first publish have arrived after all, the dedupe ids absorb the repeat).
        if reused && matches!(delivery, Delivery::Failed { .. }) && started.elapsed() < REQUEST_TIMEOUT / 2 {
            return self.send_once(batch).await;
        }
        delivery
    }

    async fn send_once(&mut self, batch: &Batch) -> Delivery {
        let delivery = match tokio::time::timeout(REQUEST_TIMEOUT, self.publish(batch)).await {
            Ok(delivery) => delivery,
            Err(_) => Delivery::Failed { reason: format!("no PUBACK within {}s", REQUEST_TIMEOUT.as_secs()) },
        };
        if delivery != Delivery::Delivered {
            self.connection = None;
        }
        delivery
    }

    async fn publish(&mut self, batch: &Batch) -> Delivery {
        let (client, events) =
            &mut **self.connection.get_or_insert_with(|| Box::new(AsyncClient::new(self.options.clone(), 4)));
        if let Err(error) = client.publish(&self.topic, QoS::AtLeastOnce, false, batch.body.clone()).await {
            return Delivery::Failed { reason: error.to_string() };
        }
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Delivery::Delivered,
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(
                    code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
                )) => {
                    return Delivery::Rejected { reason: format!("MQTT broker refused the credentials: {code:?}") };
                }
                Err(error) => {
                    return Delivery::Failed { reason: super::http::error_chain(&error) };
                }
            }
        }
    }
}
