//! The embedded MQTT broker: an ingest-only MQTT 3.1.1 server on `mqtt_listen`.
//!
//! Clients log in with username = tenant and password = a token with the `ingest` scope, and
//! may publish only under `metrics/{their tenant}` and `metrics/{their tenant}/{metric}`.
//! Nothing is routed to subscribers: a SUBSCRIBE is answered with a failure code.
//!
//! Why our own listener and not rumqttd: rumqttd acknowledges a QoS 1 PUBLISH as soon as it is
//! in its in-memory log, before any consumer saw it, so a crash right after the PUBACK would
//! lose a message the device already forgot. Its auth hook (a synchronous username/password
//! callback) cannot ask our token store, and it has no per-client publish ACL. Here the PUBACK
//! is written only after `Writer` committed the samples, the login is our token check, and the
//! topic check is one comparison. The packets are encoded and decoded by rumqttc's `mqttbytes`
//! (the MQTT 3.1.1 codec of the client the bridge uses), so this module is only the session
//! logic. MQTT 5 clients are refused with "unsupported protocol version"; use 3.1.1.
//!
//! Per connection, what arrived while no batch could start is one batch: committed together,
//! then acknowledged in order. Up to `MAX_BATCHES_IN_FLIGHT` batches are committed
//! concurrently; meanwhile the socket is still read and the next batch gathers up to
//! `MAX_GATHER_BYTES` of payload, so batches grow with the load (a commit's cost is shared by
//! more samples) and reading overlaps with writing. Past that the socket is not read, and TCP
//! slows the client down.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use microdash_model::Scope;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::topics::DropReason;
use super::{Inbound, Ingestor, Publisher, Source, Stopped, stopping};
use crate::auth::Auth;
use crate::domain::Principal;
use crate::telemetry::{ReasonLabels, Telemetry};

/// A client that connects but says nothing is dropped after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A CONNECT carries an id, a will and credentials: small.
const MAX_CONNECT_BYTES: usize = 64 * 1024;
/// Batches of one connection being committed at once.
const MAX_BATCHES_IN_FLIGHT: usize = 8;
/// Payload bytes gathered for the next batch while `MAX_BATCHES_IN_FLIGHT` are committing.
const MAX_GATHER_BYTES: usize = 1 << 20;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// Room for the fixed and variable header around a payload of the largest allowed size.
const HEADER_ALLOWANCE: usize = 2 + 65_535 + 2 + 5;

/// A bound listener, ready to `run`.
pub struct Broker {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    ingestor: Arc<Ingestor>,
    auth: Arc<Auth>,
    telemetry: Telemetry,
    shutdown: watch::Receiver<bool>,
    /// Largest packet read whole; a larger PUBLISH is skipped and counted as oversize.
    max_packet: usize,
}

impl Broker {
    pub async fn bind(
        addr: SocketAddr,
        ingestor: Arc<Ingestor>,
        auth: Arc<Auth>,
        telemetry: Telemetry,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(addr).await?;
        let max_packet = ingestor.max_payload_bytes() + HEADER_ALLOWANCE;
        Ok(Broker { listener, shared: Arc::new(Shared { ingestor, auth, telemetry, shutdown, max_packet }) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts clients until shutdown, then waits for every connection to finish committing
    /// and acknowledging what it already received.
    pub async fn run(self) {
        let mut connections = JoinSet::new();
        let mut stop = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve(stream, peer, self.shared.clone()));
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%err, "Accepting an MQTT connection failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stopping(&mut stop) => break,
            }
        }
        drop(self.listener);
        while connections.join_next().await.is_some() {}
        tracing::info!("MQTT broker stopped.");
    }
}

/// Why a connection ended early; logged at debug, counted when it is a refused login.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("refused: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("no CONNECT within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error("no packet within 1.5 × the keep-alive")]
    KeepAliveExpired,
    #[error("the token was revoked or expired, or its tenant deleted")]
    Revoked,
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let login = match tokio::time::timeout(CONNECT_TIMEOUT, accept(&mut stream, &mut buf, &shared)).await {
        Ok(Ok(login)) => login,
        Ok(Err(closed)) => return refused(&shared, peer, closed),
        Err(_) => return refused(&shared, peer, Closed::ConnectTimeout),
    };
    shared.telemetry.mqtt_connections.inc();
    tracing::debug!(%peer, tenant = %login.tenant, client_id = %login.client_id, "MQTT client connected.");
    let mut session = Session::new(stream, buf, login, shared.clone());
    let result = session.run().await;
    shared.telemetry.mqtt_connections.dec();
    let Session { login, .. } = session;
    match result {
        Ok(()) => tracing::debug!(%peer, tenant = %login.tenant, client_id = %login.client_id, "MQTT client left."),
        Err(err) => {
            tracing::debug!(%peer, tenant = %login.tenant, client_id = %login.client_id, %err, "MQTT connection closed.")
        }
    }
}

fn refused(shared: &Shared, peer: SocketAddr, closed: Closed) {
    let reason = match &closed {
        Closed::Refused(ConnectReturnCode::BadUserNamePassword) => "bad_credentials",
        Closed::Refused(ConnectReturnCode::NotAuthorized) => "not_authorized",
        Closed::Refused(ConnectReturnCode::ServiceUnavailable) => "unavailable",
        Closed::Refused(_) | Closed::Protocol(_) => "protocol",
        Closed::ConnectTimeout | Closed::KeepAliveExpired => "timeout",
        Closed::Revoked => "revoked",
        Closed::Io(_) => "io",
    };
    shared.telemetry.mqtt_connections_refused.get_or_create(&ReasonLabels { reason }).inc();
    tracing::info!(%peer, reason, %closed, "MQTT connection refused.");
}

/// A client that logged in.
struct Login {
    tenant_id: i64,
    tenant: String,
    token_id: i64,
    /// Unix ms when the token expires: the session ends then.
    expires_at: Option<i64>,
    client_id: String,
    keep_alive: Duration,
}

/// Reads the CONNECT, checks the login and answers with a CONNACK.
async fn accept(stream: &mut TcpStream, buf: &mut BytesMut, shared: &Shared) -> Result<Login, Closed> {
    let frame_len = loop {
        match frame(buf, MAX_CONNECT_BYTES) {
            Frame::Complete(len) => break len,
            Frame::Incomplete => {
                buf.reserve(4096);
                if stream.read_buf(buf).await? == 0 {
                    return Err(Closed::Protocol("closed before CONNECT".into()));
                }
            }
            Frame::Oversize { .. } | Frame::Malformed => return Err(Closed::Protocol("bad CONNECT".into())),
        }
    };
    if buf[0] >> 4 != 1 {
        return Err(Closed::Protocol("the first packet is not CONNECT".into()));
    }
    if let Some(level) = protocol_level(&buf[..frame_len])
        && level != 4
    {
        // 3.1 (MQIsdp) and 5 are not spoken here. A v5 client reads a v5 CONNACK: reason 0x84.
        let answer: &[u8] = if level == 5 { &[0x20, 0x03, 0x00, 0x84, 0x00] } else { &[0x20, 0x02, 0x00, 0x01] };
        stream.write_all(answer).await?;
        return Err(Closed::Refused(ConnectReturnCode::RefusedProtocolVersion));
    }
    let connect = match Packet::read(buf, MAX_CONNECT_BYTES) {
        Ok(Packet::Connect(connect)) => connect,
        Ok(_) => return Err(Closed::Protocol("the first packet is not CONNECT".into())),
        Err(err) => return Err(Closed::Protocol(format!("bad CONNECT: {err}"))),
    };
    let verdict = if connect.client_id.is_empty() && !connect.clean_session {
        Err(ConnectReturnCode::BadClientId)
    } else {
        check_login(&connect, shared).await
    };
    match verdict {
        Ok((tenant_id, tenant, token_id, expires_at)) => {
            // Our session state is always empty (no subscriptions, nothing to send), so it is
            // "present" whenever the client asks to keep one. Saying so matters: a client told
            // that no session exists discards the QoS 1 messages it had not seen acknowledged
            // instead of sending them again.
            send(stream, Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, !connect.clean_session))).await?;
            Ok(Login {
                tenant_id,
                tenant,
                token_id,
                expires_at,
                client_id: connect.client_id,
                keep_alive: Duration::from_secs(connect.keep_alive.into()),
            })
        }
        Err(code) => {
            send(stream, Packet::ConnAck(ConnAck::new(code, false))).await?;
            Err(Closed::Refused(code))
        }
    }
}

/// Username = tenant, password = a token of that tenant with the `ingest` scope.
async fn check_login(connect: &Connect, shared: &Shared) -> Result<(i64, String, i64, Option<i64>), ConnectReturnCode> {
    let Some(login) = &connect.login else { return Err(ConnectReturnCode::BadUserNamePassword) };
    match shared.auth.token(&login.password).await {
        Ok(Some(Principal::Tenant { tenant_id, tenant, scopes, token_id, expires_at })) => {
            // A valid token of another tenant or without `ingest` gets the same answer, which
            // says nothing about which tenant it belongs to.
            if tenant == login.username && scopes.contains(&Scope::Ingest) {
                Ok((tenant_id, tenant, token_id, expires_at))
            } else {
                Err(ConnectReturnCode::NotAuthorized)
            }
        }
        Ok(Some(Principal::Admin)) => Err(ConnectReturnCode::NotAuthorized),
        Ok(None) => Err(ConnectReturnCode::BadUserNamePassword),
        Err(err) => {
            tracing::warn!(%err, "Checking an MQTT login failed.");
            Err(ConnectReturnCode::ServiceUnavailable)
        }
    }
}

/// The protocol level byte of a CONNECT frame, when it is there.
fn protocol_level(frame: &[u8]) -> Option<u8> {
    let header_len = 1 + frame[1..].iter().take(4).position(|b| b & 0x80 == 0)? + 1;
    let rest = frame.get(header_len..)?;
    let name_len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    rest.get(2 + name_len).copied()
}

/// What the start of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Incomplete,
    /// A whole packet of this many bytes.
    Complete(usize),
    /// A packet larger than allowed: `header_len` bytes of fixed header, then `remaining`.
    Oversize {
        header_len: usize,
        remaining: usize,
    },
    Malformed,
}

fn frame(buf: &[u8], max_packet: usize) -> Frame {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else { return Frame::Incomplete };
        remaining |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            let header_len = 2 + i;
            return if header_len + remaining > max_packet {
                Frame::Oversize { header_len, remaining }
            } else if buf.len() >= header_len + remaining {
                Frame::Complete(header_len + remaining)
            } else {
                Frame::Incomplete
            };
        }
    }
    Frame::Malformed
}

/// What to answer once a message's batch is committed.
#[derive(Debug, Clone, Copy)]
enum Ack {
    PubAck(u16),
    PubRec(u16),
}

type Committing = Pin<Box<dyn Future<Output = (Result<(), Stopped>, Vec<Ack>)> + Send>>;

/// A logged-in connection.
struct Session {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
    login: Login,
    shared: Arc<Shared>,
    committing: FuturesOrdered<Committing>,
    /// The batch being gathered from the bytes at hand.
    messages: Vec<Inbound>,
    /// Payload bytes in `messages`.
    gathered_bytes: usize,
    acks: Vec<Ack>,
    /// QoS 2 packet ids received and not yet released: a repeat is acknowledged, not stored.
    qos2_open: HashSet<u16>,
    /// Bytes of an oversize PUBLISH still to be thrown away as they arrive.
    skip: usize,
    /// Stop reading (DISCONNECT, shutdown or end of stream); finish what is committing.
    draining: bool,
}

impl Session {
    fn new(stream: TcpStream, buf: BytesMut, login: Login, shared: Arc<Shared>) -> Self {
        Session {
            stream,
            buf,
            out: BytesMut::with_capacity(4096),
            login,
            shared,
            committing: FuturesOrdered::new(),
            messages: Vec::new(),
            gathered_bytes: 0,
            acks: Vec::new(),
            qos2_open: HashSet::new(),
            skip: 0,
            draining: false,
        }
    }

    async fn run(&mut self) -> Result<(), Closed> {
        let mut stop = self.shared.shutdown.clone();
        // The session ends at once when its token is revoked or expires or its tenant is
        // deleted (MQTT 3.1.1 has no DISCONNECT from the server: the connection closes).
        let revoked =
            self.shared.auth.until_revoked(self.login.tenant_id, Some(self.login.token_id), self.login.expires_at);
        tokio::pin!(revoked);
        // MQTT: the server may drop a client silent for 1.5 × its keep-alive (0 = never).
        let keep_alive = (!self.login.keep_alive.is_zero()).then(|| self.login.keep_alive.mul_f32(1.5));
        let idle = tokio::time::sleep(keep_alive.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(idle);
        // Bytes that came with the CONNECT.
        self.take_packets()?;
        self.flush().await?;
        loop {
            if self.draining {
                self.start_batch(false);
            }
            if self.draining && self.committing.is_empty() {
                return Ok(());
            }
            let can_read = !self.draining
                && (self.committing.len() < MAX_BATCHES_IN_FLIGHT || self.gathered_bytes < MAX_GATHER_BYTES);
            self.buf.reserve(READ_CHUNK);
            tokio::select! {
                Some((result, acks)) = self.committing.next(), if !self.committing.is_empty() => {
                    // Stopped: the samples are not durable, so no acknowledgement; the client
                    // sends them again when it reconnects.
                    result.map_err(|_| Closed::Protocol("server stopping".into()))?;
                    for ack in acks {
                        let packet = match ack {
                            Ack::PubAck(pkid) => Packet::PubAck(PubAck::new(pkid)),
                            Ack::PubRec(pkid) => Packet::PubRec(PubRec::new(pkid)),
                        };
                        packet.write(&mut self.out, usize::MAX).map_err(|e| Closed::Protocol(e.to_string()))?;
                    }
                    // A slot is free: what gathered meanwhile starts committing.
                    self.start_batch(false);
                    self.flush().await?;
                    // Not reading while every slot was busy is our doing, not the client's silence.
                    if let Some(keep_alive) = keep_alive {
                        idle.as_mut().reset(tokio::time::Instant::now() + keep_alive);
                    }
                }
                read = self.stream.read_buf(&mut self.buf), if can_read => {
                    if read? == 0 {
                        self.draining = true;
                        continue;
                    }
                    if let Some(keep_alive) = keep_alive {
                        idle.as_mut().reset(tokio::time::Instant::now() + keep_alive);
                    }
                    self.take_packets()?;
                    self.flush().await?;
                }
                _ = &mut idle, if keep_alive.is_some() && can_read => return Err(Closed::KeepAliveExpired),
                _ = stopping(&mut stop), if !self.draining => self.draining = true,
                _ = &mut revoked => return Err(Closed::Revoked),
            }
        }
    }

    /// Handles every whole packet in the buffer; the publishes become one committing batch.
    fn take_packets(&mut self) -> Result<(), Closed> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len());
                self.buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    break;
                }
            }
            if self.draining {
                break;
            }
            match frame(&self.buf, self.shared.max_packet) {
                Frame::Incomplete => break,
                Frame::Malformed => return Err(Closed::Protocol("malformed remaining length".into())),
                Frame::Oversize { header_len, remaining } => {
                    if !self.skip_oversize(header_len, remaining)? {
                        break;
                    }
                }
                Frame::Complete(_) => {
                    let packet = Packet::read(&mut self.buf, self.shared.max_packet)
                        .map_err(|e| Closed::Protocol(format!("bad packet: {e}")))?;
                    self.handle(packet)?;
                }
            }
        }
        self.start_batch(false);
        Ok(())
    }

    fn handle(&mut self, packet: Packet) -> Result<(), Closed> {
        let reply = match packet {
            Packet::Publish(publish) => {
                self.gathered_bytes += publish.payload.len();
                let message = Inbound { topic: publish.topic, payload: publish.payload };
                match publish.qos {
                    QoS::AtMostOnce => self.messages.push(message),
                    QoS::AtLeastOnce => {
                        self.messages.push(message);
                        self.acks.push(Ack::PubAck(publish.pkid));
                    }
                    QoS::ExactlyOnce => {
                        if self.qos2_open.insert(publish.pkid) {
                            self.messages.push(message);
                        }
                        self.acks.push(Ack::PubRec(publish.pkid));
                    }
                }
                None
            }
            Packet::PubRel(release) => {
                self.qos2_open.remove(&release.pkid);
                Some(Packet::PubComp(PubComp::new(release.pkid)))
            }
            Packet::Subscribe(subscribe) => {
                tracing::debug!(tenant = %self.login.tenant, "Refused a SUBSCRIBE: this broker only ingests.");
                let codes = vec![SubscribeReasonCode::Failure; subscribe.filters.len()];
                Some(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
            }
            Packet::Unsubscribe(unsubscribe) => Some(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))),
            Packet::PingReq => Some(Packet::PingResp),
            Packet::Disconnect => {
                self.draining = true;
                None
            }
            Packet::Connect(_) => return Err(Closed::Protocol("a second CONNECT".into())),
            // We never publish to clients, so there is nothing of theirs to acknowledge.
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => None,
            other => return Err(Closed::Protocol(format!("unexpected {:?}", other))),
        };
        if let Some(packet) = reply {
            packet.write(&mut self.out, usize::MAX).map_err(|e| Closed::Protocol(e.to_string()))?;
        }
        Ok(())
    }

    /// Reads the topic and packet id of a PUBLISH too large to hold, counts it as dropped,
    /// acknowledges it in turn and throws its bytes away as they arrive. False when the
    /// headers are not all here yet.
    fn skip_oversize(&mut self, header_len: usize, remaining: usize) -> Result<bool, Closed> {
        let byte1 = self.buf[0];
        if byte1 >> 4 != 3 {
            return Err(Closed::Protocol(format!("a packet of {remaining} bytes is over the limit")));
        }
        let qos = (byte1 >> 1) & 0b11;
        let Some(topic_len) =
            self.buf.get(header_len..header_len + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            return Ok(false);
        };
        let needed = header_len + 2 + topic_len + if qos > 0 { 2 } else { 0 };
        if self.buf.len() < needed {
            return Ok(false);
        }
        let topic = String::from_utf8_lossy(&self.buf[header_len + 2..header_len + 2 + topic_len]).into_owned();
        let pkid = (qos > 0).then(|| u16::from_be_bytes([self.buf[needed - 2], self.buf[needed - 1]]));
        let detail =
            format!("a PUBLISH of {remaining} bytes; the limit is {} (max_body_bytes)", self.shared.max_packet);
        self.shared.ingestor.dropped(Source::Embedded, &topic, DropReason::Oversize, &detail);
        // Acknowledged after the batches before it, like any other message.
        self.start_batch(true);
        let ack = match (qos, pkid) {
            (1, Some(pkid)) => Some(Ack::PubAck(pkid)),
            (2, Some(pkid)) => Some(Ack::PubRec(pkid)),
            _ => None,
        };
        if let Some(ack) = ack {
            self.committing.push_back(Box::pin(std::future::ready((Ok(()), vec![ack]))));
        }
        let total = header_len + remaining;
        let here = self.buf.len().min(total);
        self.buf.advance(here);
        self.skip = total - here;
        Ok(true)
    }

    fn has_gathered(&self) -> bool {
        !self.messages.is_empty() || !self.acks.is_empty()
    }

    /// Starts committing the gathered messages when a slot is free, or now when `force`d (an
    /// acknowledgement must be queued behind them). Draining, they start whatever the slots
    /// say: nothing more will gather.
    fn start_batch(&mut self, force: bool) {
        if !self.has_gathered() || (!force && !self.draining && self.committing.len() >= MAX_BATCHES_IN_FLIGHT) {
            return;
        }
        self.gathered_bytes = 0;
        let messages = std::mem::take(&mut self.messages);
        let acks = std::mem::take(&mut self.acks);
        let ingestor = self.shared.ingestor.clone();
        let (id, tenant) = (self.login.tenant_id, self.login.tenant.clone());
        // A task of its own, so decoding the batches in flight can use every core.
        let task = tokio::spawn(async move {
            let publisher = Publisher::Tenant { id, name: &tenant };
            if messages.is_empty() { Ok(()) } else { ingestor.ingest(Source::Embedded, publisher, &messages).await }
        });
        self.committing.push_back(Box::pin(async move { (task.await.unwrap_or(Err(Stopped)), acks) }));
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

async fn send(stream: &mut TcpStream, packet: Packet) -> Result<(), Closed> {
    let mut out = BytesMut::with_capacity(16);
    packet.write(&mut out, usize::MAX).map_err(|e| Closed::Protocol(e.to_string()))?;
    stream.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_by_their_remaining_length() {
        assert_eq!(frame(&[], 100), Frame::Incomplete);
        assert_eq!(frame(&[0xc0, 0x00], 100), Frame::Complete(2));
        assert_eq!(frame(&[0x30, 0x05, 1, 2], 100), Frame::Incomplete);
        assert_eq!(frame(&[0x30, 0x80, 0x01], 1000), Frame::Incomplete);
        assert_eq!(frame(&[0x30, 0x80, 0x01], 100), Frame::Oversize { header_len: 3, remaining: 128 });
        assert_eq!(frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX), Frame::Malformed);
    }

    #[test]
    fn the_protocol_level_is_read_from_a_connect() {
        let mut out = BytesMut::new();
        Packet::Connect(Connect::new("c")).write(&mut out, usize::MAX).unwrap();
        assert_eq!(protocol_level(&out), Some(4));
        assert_eq!(protocol_level(&[0x10, 0x02, 0x00]), None);
    }
}
