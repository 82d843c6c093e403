//! Transports: sending one batch, and what the answer means for that batch.

mod http;
mod mqtt;
pub mod tls;

use std::time::Duration;

pub use http::HttpSink;
pub use mqtt::MqttSink;

use crate::sample::Batch;

/// Connecting should be quick; a slow answer is still better than a replay.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the server's answer (HTTP response, MQTT PUBACK).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The fate of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx: the server holds the samples durably.
    Delivered,
    /// 429 or 503: the server is up but asks to wait, possibly saying how long.
    Throttled { reason: String, retry_after: Option<Duration> },
    /// Connection error, timeout, 408 or 5xx: worth retrying later.
    Failed { reason: String },
    /// Any other 4xx (or a redirect), or a broker refusing the credentials: this batch can
    /// never succeed as it is. `reason` carries the server's problem+json `detail`.
    Rejected { reason: String },
}

/// Where batches go.
#[derive(Debug)]
pub enum Sink {
    Http(HttpSink),
    /// Boxed: rumqttc's options are large, more so with its TLS feature.
    Mqtt(Box<MqttSink>),
}

impl Sink {
    pub async fn send(&mut self, batch: &Batch) -> Delivery {
        match self {
            Sink::Http(http) => http.send(batch).await,
            Sink::Mqtt(mqtt) => mqtt.send(batch).await,
        }
    }

    /// For logs: where the batches go (no secrets).
    pub fn endpoint(&self) -> String {
        match self {
            Sink::Http(http) => http.url.to_string(),
            Sink::Mqtt(mqtt) => mqtt.endpoint(),
        }
    }
}
