//! Bridges to other MQTT brokers, as mosquitto's `connection` sections: each
//! bridge holds one MQTT 5 client session on the remote broker and one on this
//! broker (in process, through the front-end's own connection code), subscribes
//! on each side to what its `topics` carry away from that side, and publishes
//! what arrives on the other side.
//!
//! Invariants:
//! - At QoS 1 a message is acknowledged to the broker it came from only after
//!   the other broker acknowledged it (PUBACK), so nothing either broker
//!   acknowledged is lost when the bridge, either broker or the link between
//!   them fails: both sessions are persistent (Clean Start 0), and what was not
//!   acknowledged is sent again by its broker when the bridge is back (at least
//!   once: a message may then arrive twice).
//! - When either side fails, both connections are dropped and made again with
//!   backoff (`reconnect_min` doubling up to `reconnect_max`), so no
//!   acknowledgement is ever sent on a connection other than the one its
//!   message came on.
//! - A `both` topic subscribes with No Local on each side, so what the bridge
//!   publishes on a broker does not come back to it.
//!
//! What it is not: no QoS 2 (1 is at least once), no topic aliases, and no
//! MQTT 3.1.1 remote brokers.

mod link;
mod route;
mod tls;

pub use route::{BridgeTopic, Direction};
pub use tls::BridgeTls;

use crate::broker::MqttBroker;
use link::Link;
use route::Side;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Connect, ConnectProperties, Disconnect, DisconnectReasonCode, Filter, Login, Packet, PingReq,
    PubAck, PubAckReason, Publish, PublishProperties, RetainForwardRule, Subscribe,
    SubscribeReasonCode,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// QoS 1 messages a bridge lets each broker have unacknowledged towards it
/// (the Receive Maximum it announces), and so at most queued per side.
const RECEIVE_MAXIMUM: u16 = 64;
/// How long a connection attempt (TCP, then CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bridge to another MQTT broker (`[[mqtt.bridges]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// The bridge's name, for logs and the default client id.
    pub name: String,
    /// The remote broker, `host:port`.
    pub address: String,
    /// Client id on both brokers (`junction-bridge-<name>` by default). It names
    /// the persistent sessions that keep what is in flight across reconnects.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name on the remote broker.
    #[serde(default)]
    pub username: Option<String>,
    /// Password on the remote broker.
    #[serde(default)]
    pub password: Option<String>,
    /// User name on this broker, when it requires credentials.
    #[serde(default)]
    pub local_username: Option<String>,
    /// Password on this broker.
    #[serde(default)]
    pub local_password: Option<String>,
    /// Keep-alive of both connections.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// How long both sessions outlive the bridge's connections: what the
    /// brokers queue for the bridge while it is away.
    #[serde(default = "default_session_expiry", with = "humantime_serde")]
    pub session_expiry: Duration,
    /// First wait before connecting again after a failure.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest wait between attempts (the wait doubles from `reconnect_min`).
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// What the bridge carries.
    pub topics: Vec<BridgeTopic>,
    /// TLS to the remote broker (none: plain TCP).
    #[serde(default)]
    pub tls: Option<BridgeTls>,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(60)
}
fn default_session_expiry() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

impl BridgeConfig {
    /// The client id on both brokers.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("junction-bridge-{}", self.name))
    }

    /// What is wrong with this bridge's settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        let what = |e: String| format!("mqtt.bridges '{}': {e}", self.name);
        if self.name.is_empty() {
            return Err("mqtt.bridges: a bridge needs a name".into());
        }
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(what(format!("address '{}' is not host:port", self.address))),
        }
        if self.topics.is_empty() {
            return Err(what("no topics".into()));
        }
        if self.keep_alive.as_secs() > u64::from(u16::MAX) {
            return Err(what("keep_alive is over 65535 s".into()));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(what(
                "reconnect_min must be more than 0 and at most reconnect_max".into(),
            ));
        }
        for t in &self.topics {
            t.check().map_err(what)?;
        }
        self.load_tls().map_err(what)?;
        Ok(())
    }

    fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h)
    }

    /// The TLS connector, when the bridge has `tls`: its files read now.
    fn load_tls(&self) -> Result<Option<tls::Tls>, String> {
        self.tls
            .as_ref()
            .map(|t| t.load(self.host()).map_err(|e| format!("tls: {e}")))
            .transpose()
    }
}

/// Why a bridge's connections ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BridgeError {
    #[error("{0} broker: {1}")]
    Io(&'static str, std::io::Error),
    #[error("{0} broker closed the connection")]
    Closed(&'static str),
    #[error("{0} broker refused the connection: {1}")]
    Refused(&'static str, String),
    #[error("{0} broker broke the protocol: {1}")]
    Protocol(&'static str, String),
    #[error("{0} broker: no {1} in time")]
    Timeout(&'static str, &'static str),
    #[error("{0} broker disconnected the bridge: {1}")]
    Disconnected(&'static str, String),
    #[error("{0} broker did not store a message: {1}")]
    NotStored(&'static str, String),
    #[error("packet of {0} bytes over the peer's maximum of {1}")]
    TooLarge(u32, u32),
    #[error("remote broker: TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

/// Starts every bridge; each runs until the broker shuts down.
pub fn spawn(broker: &Arc<MqttBroker>, bridges: Vec<BridgeConfig>) {
    for config in bridges {
        let b = broker.clone();
        broker.tracker.spawn(run(b, Arc::new(config)));
    }
}

/// Connects, forwards until a side fails, waits, and connects again.
async fn run(broker: Arc<MqttBroker>, config: Arc<BridgeConfig>) {
    let mut wait = config.reconnect_min;
    // Read once, as mosquitto does; the configuration check read them too.
    let tls = match config.load_tls() {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(bridge = %config.name, error = %e, "MQTT bridge not started");
            return;
        }
    };
    loop {
        let connected = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            c = connect_both(&broker, &config, tls.as_ref()) => c,
        };
        match connected {
            Ok(mut bridge) => {
                tracing::info!(bridge = %config.name, address = %config.address, "MQTT bridge connected");
                wait = config.reconnect_min;
                match bridge.forward(&broker).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(bridge = %config.name, error = %e, "MQTT bridge down, connecting again in {wait:?}")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(bridge = %config.name, address = %config.address, error = %e, "MQTT bridge cannot connect, trying again in {wait:?}");
            }
        }
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(config.reconnect_max);
    }
}

/// One side's connection and what the bridge sent on it.
struct End {
    link: Link,
    /// Our packet id → the packet id of the message on the other side that
    /// waits for this PUBACK (`None` for a QoS 0 original).
    inflight: HashMap<u16, Option<u16>>,
    /// QoS 1 publishes waiting for the peer's Receive Maximum.
    queue: VecDeque<(Publish, Option<u16>)>,
    /// The peer's Receive Maximum.
    room: usize,
    last_in: Instant,
}

/// What woke the forwarding loop. It lives for one turn of the loop, on the
/// stack, as large as the `Result<Packet, _>` a read returns: boxing the packet
/// would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Event {
    Stop,
    Packet(Side, Packet),
    Tick,
}

struct Bridge {
    config: Arc<BridgeConfig>,
    ends: [End; 2],
    /// Ours, or lower where a broker said so (Server Keep Alive).
    keep_alive: Duration,
}

fn connect_packet(config: &BridgeConfig) -> Connect {
    Connect {
        keep_alive: config.keep_alive.as_secs() as u16,
        client_id: config.client_id(),
        clean_start: false,
        properties: Some(ConnectProperties {
            session_expiry_interval: Some(
                u32::try_from(config.session_expiry.as_secs()).unwrap_or(u32::MAX),
            ),
            receive_maximum: Some(RECEIVE_MAXIMUM),
            ..ConnectProperties::new()
        }),
    }
}

fn login(user: &Option<String>, password: &Option<String>) -> Option<Login> {
    user.as_ref()
        .map(|u| Login::new(u.clone(), password.clone().unwrap_or_default()))
}

async fn connect_both(
    broker: &Arc<MqttBroker>,
    config: &Arc<BridgeConfig>,
    tls: Option<&tls::Tls>,
) -> Result<Bridge, BridgeError> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&config.address),
    )
    .await
    .map_err(|_| BridgeError::Timeout("remote", "TCP connection"))?
    .map_err(|e| BridgeError::Io("remote", e))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn link::Stream> = match tls {
        None => Box::new(tcp),
        Some(t) => Box::new(
            tokio::time::timeout(CONNECT_TIMEOUT, t.connector.connect(t.name.clone(), tcp))
                .await
                .map_err(|_| BridgeError::Timeout("remote", "TLS handshake"))?
                .map_err(BridgeError::Tls)?,
        ),
    };
    let (remote, remote_ack) = Link::connect(
        "remote",
        stream,
        connect_packet(config),
        login(&config.username, &config.password),
        CONNECT_TIMEOUT,
    )
    .await?;
    // This broker's side: the front-end's own connection code over a pipe.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    {
        let b = broker.clone();
        let here = SocketAddr::from(([127, 0, 0, 1], 0));
        broker
            .tracker
            .spawn(async move { b.handle(theirs, here).await });
    }
    let (local, local_ack) = Link::connect(
        "local",
        Box::new(ours),
        connect_packet(config),
        login(&config.local_username, &config.local_password),
        CONNECT_TIMEOUT,
    )
    .await?;
    let room = |ack: &rumqttc::v5::mqttbytes::v5::ConnAck| {
        usize::from(
            ack.properties
                .as_ref()
                .and_then(|p| p.receive_max)
                .unwrap_or(u16::MAX),
        )
    };
    let end = |link, room| End {
        link,
        inflight: HashMap::new(),
        queue: VecDeque::new(),
        room,
        last_in: Instant::now(),
    };
    let keep_alive = [&local_ack, &remote_ack]
        .iter()
        .filter_map(|a| a.properties.as_ref().and_then(|p| p.server_keep_alive))
        .filter(|k| *k > 0)
        .map(|k| Duration::from_secs(u64::from(k)))
        .fold(config.keep_alive, Duration::min);
    let mut bridge = Bridge {
        config: config.clone(),
        ends: [end(local, room(&local_ack)), end(remote, room(&remote_ack))],
        keep_alive,
    };
    // Subscribed on every connect: a session the broker lost (or a new one)
    // gets its subscriptions back; on a kept session it changes nothing, and
    // retained messages go out only for a new subscription.
    for side in [Side::Local, Side::Remote] {
        let filters: Vec<Filter> = config
            .topics
            .iter()
            .filter(|t| t.carries_from(side))
            .map(|t| Filter {
                path: t.filter_on(side),
                qos: if t.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                nolocal: true,
                preserve_retain: true,
                retain_forward_rule: RetainForwardRule::OnNewSubscribe,
            })
            .collect();
        if filters.is_empty() {
            continue;
        }
        let end = &mut bridge.ends[side.index()];
        let pkid = end.link.next_pkid(|_| false);
        end.link
            .send(&Packet::Subscribe(Subscribe {
                pkid,
                filters,
                properties: None,
            }))
            .await?;
    }
    Ok(bridge)
}

impl Bridge {
    /// Forwards until a side fails (`Err`) or the broker shuts down (`Ok`).
    async fn forward(&mut self, broker: &Arc<MqttBroker>) -> Result<(), BridgeError> {
        let keep_alive = self.keep_alive.max(Duration::from_secs(1));
        let mut ping = tokio::time::interval(keep_alive / 2);
        ping.tick().await;
        loop {
            let event = {
                let [local, remote] = &mut self.ends;
                tokio::select! {
                    _ = broker.shutdown.cancelled() => Event::Stop,
                    p = local.link.read() => Event::Packet(Side::Local, p?),
                    p = remote.link.read() => Event::Packet(Side::Remote, p?),
                    _ = ping.tick() => Event::Tick,
                }
            };
            match event {
                Event::Stop => {
                    for end in &mut self.ends {
                        let _ = end
                            .link
                            .send(&Packet::Disconnect(Disconnect {
                                reason_code: DisconnectReasonCode::NormalDisconnection,
                                properties: None,
                            }))
                            .await;
                    }
                    return Ok(());
                }
                Event::Packet(from, packet) => {
                    self.ends[from.index()].last_in = Instant::now();
                    self.on_packet(from, packet).await?;
                }
                Event::Tick => {
                    for end in &mut self.ends {
                        if end.last_in.elapsed() > keep_alive * 3 / 2 {
                            return Err(BridgeError::Timeout(
                                end.link.side,
                                "packet within the keep-alive",
                            ));
                        }
                        end.link.send(&Packet::PingReq(PingReq)).await?;
                    }
                }
            }
        }
    }

    async fn on_packet(&mut self, from: Side, packet: Packet) -> Result<(), BridgeError> {
        let side = self.ends[from.index()].link.side;
        match packet {
            Packet::Publish(p) => self.on_publish(from, p).await,
            Packet::PubAck(ack) => self.on_puback(from, ack).await,
            Packet::SubAck(ack) => {
                for code in ack.return_codes {
                    if !matches!(code, SubscribeReasonCode::Success(_)) {
                        tracing::warn!(bridge = %self.config.name, side, ?code, "MQTT bridge subscription refused");
                    }
                }
                Ok(())
            }
            Packet::PingResp(_) => Ok(()),
            Packet::Disconnect(d) => Err(BridgeError::Disconnected(
                side,
                format!("{:?}", d.reason_code),
            )),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                Err(BridgeError::Protocol(
                    side,
                    "QoS 2 flow on a bridge that subscribes at QoS 1 at most".into(),
                ))
            }
            other => Err(BridgeError::Protocol(side, format!("unexpected {other:?}"))),
        }
    }

    async fn on_publish(&mut self, from: Side, p: Publish) -> Result<(), BridgeError> {
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let source_pkid = (p.qos != QoS::AtMostOnce).then_some(p.pkid);
        if p.qos == QoS::ExactlyOnce {
            return Err(BridgeError::Protocol(
                self.ends[from.index()].link.side,
                "a QoS 2 message on a bridge that subscribes at QoS 1 at most".into(),
            ));
        }
        let Some((entry, to_topic)) = self
            .config
            .topics
            .iter()
            .find_map(|t| t.map(from, &topic).map(|m| (t, m)))
        else {
            // Nothing of ours matches (a subscription this configuration no
            // longer has): done with it.
            tracing::debug!(bridge = %self.config.name, %topic, "MQTT bridge: no topic entry for a message, dropped");
            return self.ack(from, source_pkid).await;
        };
        let qos = if entry.qos == 0 || p.qos == QoS::AtMostOnce {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let properties = p.properties.map(|pp| PublishProperties {
            payload_format_indicator: pp.payload_format_indicator,
            message_expiry_interval: pp.message_expiry_interval,
            topic_alias: None,
            response_topic: pp.response_topic,
            correlation_data: pp.correlation_data,
            user_properties: pp.user_properties,
            subscription_identifiers: Vec::new(),
            content_type: pp.content_type,
        });
        let out = Publish {
            dup: false,
            qos,
            retain: p.retain,
            topic: to_topic.into_bytes().into(),
            pkid: 0,
            payload: p.payload,
            properties,
        };
        let to = &mut self.ends[from.other().index()];
        if qos == QoS::AtMostOnce {
            match to.link.send(&Packet::Publish(out)).await {
                Ok(()) => {}
                Err(BridgeError::TooLarge(size, max)) => {
                    tracing::warn!(bridge = %self.config.name, %topic, size, max, "MQTT bridge: message too large for the other broker, dropped");
                }
                Err(e) => return Err(e),
            }
            return self.ack(from, source_pkid).await;
        }
        tracing::trace!(bridge = %self.config.name, from = ?from, %topic, ?source_pkid, dup = p.dup, "MQTT bridge: forwarding");
        to.queue.push_back((out, source_pkid));
        self.pump(from.other()).await
    }

    /// Sends queued publishes while the peer has room.
    async fn pump(&mut self, side: Side) -> Result<(), BridgeError> {
        loop {
            let end = &mut self.ends[side.index()];
            if end.inflight.len() >= end.room {
                return Ok(());
            }
            let Some((mut out, source_pkid)) = end.queue.pop_front() else {
                return Ok(());
            };
            let inflight = &end.inflight;
            out.pkid = end.link.next_pkid(|id| inflight.contains_key(&id));
            let pkid = out.pkid;
            match end.link.send(&Packet::Publish(out)).await {
                Ok(()) => {
                    end.inflight.insert(pkid, source_pkid);
                }
                Err(BridgeError::TooLarge(size, max)) => {
                    // It will never fit: acknowledged to its broker, logged.
                    tracing::warn!(bridge = %self.config.name, size, max, "MQTT bridge: message too large for the other broker, dropped");
                    self.ack(side.other(), source_pkid).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn on_puback(&mut self, from: Side, ack: PubAck) -> Result<(), BridgeError> {
        let end = &mut self.ends[from.index()];
        tracing::trace!(bridge = %self.config.name, side = end.link.side, pkid = ack.pkid, reason = ?ack.reason, "MQTT bridge: PUBACK");
        let Some(source_pkid) = end.inflight.remove(&ack.pkid) else {
            return Ok(());
        };
        match ack.reason {
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {}
            // Refused for what it is: it would be refused again. Logged, and
            // done with on its own side as mosquitto does.
            PubAckReason::NotAuthorized
            | PubAckReason::TopicNameInvalid
            | PubAckReason::PayloadFormatInvalid => {
                tracing::warn!(bridge = %self.config.name, side = end.link.side, reason = ?ack.reason, "MQTT bridge: message refused by the broker, dropped");
            }
            // Not stored for now (storage, quota): not acknowledged at its
            // source; the connections are made again and it comes back.
            other => {
                return Err(BridgeError::NotStored(end.link.side, format!("{other:?}")));
            }
        }
        self.ack(from.other(), source_pkid).await?;
        self.pump(from).await
    }

    /// Acknowledges a message on the side it came from (nothing for QoS 0).
    async fn ack(&mut self, side: Side, pkid: Option<u16>) -> Result<(), BridgeError> {
        match pkid {
            Some(pkid) => {
                self.ends[side.index()]
                    .link
                    .send(&Packet::PubAck(PubAck {
                        pkid,
                        reason: PubAckReason::Success,
                        properties: None,
                    }))
                    .await
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<BridgeConfig, String> {
        let c: BridgeConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn settings_take_defaults_and_bad_ones_are_refused() {
        let c = config(
            r#"{"name": "legacy", "address": "mosquitto.lan:1883",
                "topics": [{"pattern": "sensors/#", "direction": "both", "qos": 1}]}"#,
        )
        .unwrap();
        assert_eq!(c.client_id(), "junction-bridge-legacy");
        assert_eq!(c.keep_alive, Duration::from_secs(60));
        assert_eq!(c.reconnect_min, Duration::from_secs(1));
        assert_eq!(c.reconnect_max, Duration::from_secs(30));
        assert_eq!(c.topics[0].direction, Direction::Both);
        assert_eq!(c.topics[0].local_prefix, "");

        for bad in [
            // No port, or not a number.
            r#"{"name": "b", "address": "host", "topics": [{"pattern": "a"}]}"#,
            r#"{"name": "b", "address": "host:x", "topics": [{"pattern": "a"}]}"#,
            // Nothing to carry.
            r#"{"name": "b", "address": "h:1", "topics": []}"#,
            // QoS 2.
            r#"{"name": "b", "address": "h:1", "topics": [{"pattern": "a", "qos": 2}]}"#,
            // Unknown direction, unknown key.
            r#"{"name": "b", "address": "h:1", "topics": [{"pattern": "a", "direction": "up"}]}"#,
            r#"{"name": "b", "address": "h:1", "topic": [{"pattern": "a"}]}"#,
            // No name.
            r#"{"name": "", "address": "h:1", "topics": [{"pattern": "a"}]}"#,
        ] {
            assert!(config(bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn tls_settings_are_read_when_checked_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let with = |tls: &str| {
            config(&format!(
                r#"{{"name": "b", "address": "mosquitto.lan:8883", "tls": {tls},
                    "topics": [{{"pattern": "a"}}]}}"#
            ))
        };
        let missing = dir.path().join("missing.pem");
        let e = with(&format!(r#"{{"ca_file": "{}"}}"#, missing.display())).unwrap_err();
        assert!(
            e.contains("missing.pem") && e.starts_with("mqtt.bridges 'b': tls:"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = with(&format!(r#"{{"ca_file": "{}"}}"#, junk.display())).unwrap_err();
        assert!(
            e.contains("junk.pem") && e.contains("no certificate"),
            "{e}"
        );
        // An unknown key.
        assert!(with(r#"{"ca_file": "x", "insecure": true}"#).is_err());
    }
}
