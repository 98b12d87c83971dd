//! Bridges to other MQTT brokers, as mosquitto's `connection` sections: each
//! bridge holds one client session on the remote broker (MQTT 5, or 3.1.1 as
//! mosquitto's `bridge_protocol_version mqttv311`) and one MQTT 5 session on
//! this broker (in process, through the front-end's own connection code),
//! subscribes on each side to what its `topics` carry away from that side, and
//! publishes what arrives on the other side.
//!
//! Invariants:
//! - A forwarded message keeps the packet id its source gave it. Ids are unique
//!   among what one broker has in flight towards the bridge, and only that
//!   broker's messages go out on the other connection, so they are unique there
//!   too; and after a reconnect a message sent again by its source reaches the
//!   destination under the same id, which is what lets QoS 2 stay exactly once
//!   with no state kept by the bridge.
//! - At QoS 1 and 2 a message is acknowledged to the broker it came from only
//!   after the other broker acknowledged it (PUBACK, or PUBREC for QoS 2), so
//!   nothing either broker acknowledged is lost when the bridge, either broker or
//!   the link between them fails: both sessions are persistent, and what was not
//!   acknowledged is sent again by its broker when the bridge is back. At QoS 1
//!   a message may then arrive twice; at QoS 2 the destination knows the id
//!   (it holds it until PUBREL) and stores it once.
//! - QoS 2 is relayed step by step: PUBLISH → PUBLISH, PUBREC ← PUBREC,
//!   PUBREL → PUBREL, PUBCOMP ← PUBCOMP. A PUBREL the bridge knows nothing of
//!   (sent again after a reconnect) goes on to the destination, which answers it.
//! - When either side fails, both connections are dropped and made again with
//!   backoff (`reconnect_min` doubling up to `reconnect_max`), so no
//!   acknowledgement is ever sent on a connection other than the one its
//!   message came on.
//! - A `both` topic subscribes with No Local on each side, so what the bridge
//!   publishes on a broker does not come back to it. A 3.1.1 broker has no No
//!   Local: the bridge connects with mosquitto's bridge bit (protocol level
//!   0x84, `try_private`), which makes mosquitto treat its subscriptions so; a
//!   broker that refuses it gets a plain 3.1.1 CONNECT, and a `both` topic on it
//!   then gets its own messages back once.
//!
//! What it is not: no topic aliases.

mod link;
mod route;
mod tls;

pub use route::{BridgeTopic, Direction};
pub use tls::BridgeTls;

use crate::broker::MqttBroker;
use link::{Link, Wire};
use route::Side;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnAck, Connect};
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, Login, Packet,
    PingReq, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel,
    PubRelReason, Publish, PublishProperties, RetainForwardRule, Subscribe, SubscribeReasonCode,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// QoS 1 and 2 messages a bridge lets each broker have unacknowledged towards it
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
    /// The MQTT version spoken to the remote broker: `mqttv50` (the default) or
    /// `mqttv311`, mosquitto's `bridge_protocol_version` values.
    #[serde(default)]
    pub protocol_version: BridgeProtocol,
    /// With `mqttv311` or `mqttv31`: connect with the bridge bit (protocol level 0x84 or 0x83), as
    /// mosquitto's `try_private` (default true), so that a mosquitto on the
    /// other side neither sends back what the bridge published nor clears the
    /// retain flag. A broker that refuses it gets a plain 3.1.1 CONNECT.
    #[serde(default = "yes")]
    pub try_private: bool,
}

/// The MQTT version a bridge speaks to the remote broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BridgeProtocol {
    /// MQTT 5 (`mqttv50`).
    #[default]
    #[serde(rename = "mqttv50")]
    V5,
    /// MQTT 3.1.1 (`mqttv311`).
    #[serde(rename = "mqttv311")]
    V311,
    /// MQTT 3.1 (`mqttv31`): 3.1.1's packets with the CONNECT's protocol
    /// name `MQIsdp` and level 3 (the bridge's client id must then be at most
    /// 23 characters, which 3.1 brokers enforce).
    #[serde(rename = "mqttv31")]
    V31,
}

fn yes() -> bool {
    true
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
        let id = self.client_id();
        if self.protocol_version == BridgeProtocol::V31 && !(1..=23).contains(&id.len()) {
            return Err(what(format!(
                "MQTT 3.1 (protocol_version mqttv31) allows client ids of 1 to 23 characters; '{id}' has {} (set client_id)",
                id.len()
            )));
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
    #[error("{0} broker refused the connection: {1:?}")]
    Refused(&'static str, ConnectReturnCode),
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
    // Whether the remote broker still may be offered the bridge bit: a refusal
    // holds until the bridge is restarted, as in mosquitto.
    let mut private = config.try_private;
    loop {
        let connected = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            c = connect_both(&broker, &config, tls.as_ref(), &mut private) => c,
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

/// A message the bridge sent on one side, waiting there for its answer. Its
/// packet id (the map's key) is the one its source gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Sent at QoS 1: waits for PUBACK. `source_qos` is 1 or 2.
    Qos1 { source_qos: QoS },
    /// Sent at QoS 2: waits for PUBREC.
    Qos2,
    /// QoS 2, PUBREL sent on: waits for PUBCOMP.
    Released,
}

/// One side's connection and what the bridge sent on it.
struct End {
    link: Link,
    /// What the bridge sent on this side and waits on, by packet id.
    sent: HashMap<u16, Sent>,
    /// Publishes waiting for the peer's Receive Maximum, with their source's
    /// QoS.
    queue: VecDeque<(Publish, QoS)>,
    /// QoS 2 messages from this side that the bridge answered PUBREC for and
    /// whose PUBREL it answers itself: their copy went on at QoS 0 or 1, or was
    /// refused by the other broker.
    answer_rel: HashSet<u16>,
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

/// The connection to the remote broker, TCP then TLS when configured.
async fn open_remote(
    config: &BridgeConfig,
    tls: Option<&tls::Tls>,
) -> Result<Box<dyn link::Stream>, BridgeError> {
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&config.address),
    )
    .await
    .map_err(|_| BridgeError::Timeout("remote", "TCP connection"))?
    .map_err(|e| BridgeError::Io("remote", e))?;
    let _ = tcp.set_nodelay(true);
    Ok(match tls {
        None => Box::new(tcp),
        Some(t) => Box::new(
            tokio::time::timeout(CONNECT_TIMEOUT, t.connector.connect(t.name.clone(), tcp))
                .await
                .map_err(|_| BridgeError::Timeout("remote", "TLS handshake"))?
                .map_err(BridgeError::Tls)?,
        ),
    })
}

/// The remote broker's session: MQTT 5, or 3.1.1 with the bridge bit while
/// `private` holds, and without it once the broker refused it.
async fn connect_remote(
    config: &BridgeConfig,
    tls: Option<&tls::Tls>,
    private: &mut bool,
) -> Result<(Link, ConnAck), BridgeError> {
    let login = || login(&config.username, &config.password);
    if config.protocol_version == BridgeProtocol::V5 {
        let stream = open_remote(config, tls).await?;
        return Link::connect(
            "remote",
            Wire::V5,
            stream,
            connect_packet(config),
            login(),
            CONNECT_TIMEOUT,
        )
        .await;
    }
    let v31 = config.protocol_version == BridgeProtocol::V31;
    if *private {
        let stream = open_remote(config, tls).await?;
        let wire = Wire::V311 { bridge: true, v31 };
        match Link::connect(
            "remote",
            wire,
            stream,
            connect_packet(config),
            login(),
            CONNECT_TIMEOUT,
        )
        .await
        {
            // A 3.1.1 broker answers an unknown protocol level with return code
            // 1, or closes the connection.
            Err(BridgeError::Refused(_, ConnectReturnCode::UnsupportedProtocolVersion)) => {}
            Err(BridgeError::Closed(_)) => {}
            other => return other,
        }
        tracing::warn!(bridge = %config.name, address = %config.address, "MQTT bridge: the remote broker refused the bridge bit (try_private); connecting as a plain 3.1.1 (or 3.1) client, so a `both` topic gets its own messages back once");
        *private = false;
    }
    let stream = open_remote(config, tls).await?;
    Link::connect(
        "remote",
        Wire::V311 { bridge: false, v31 },
        stream,
        connect_packet(config),
        login(),
        CONNECT_TIMEOUT,
    )
    .await
}

async fn connect_both(
    broker: &Arc<MqttBroker>,
    config: &Arc<BridgeConfig>,
    tls: Option<&tls::Tls>,
    private: &mut bool,
) -> Result<Bridge, BridgeError> {
    let (remote, remote_ack) = connect_remote(config, tls, private).await?;
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
        Wire::V5,
        Box::new(ours),
        connect_packet(config),
        login(&config.local_username, &config.local_password),
        CONNECT_TIMEOUT,
    )
    .await?;
    let room = |ack: &ConnAck| {
        usize::from(
            ack.properties
                .as_ref()
                .and_then(|p| p.receive_max)
                .unwrap_or(u16::MAX),
        )
    };
    let end = |link, room| End {
        link,
        sent: HashMap::new(),
        queue: VecDeque::new(),
        answer_rel: HashSet::new(),
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
                qos: qos_of(t.qos),
                nolocal: true,
                preserve_retain: true,
                retain_forward_rule: RetainForwardRule::OnNewSubscribe,
            })
            .collect();
        if filters.is_empty() {
            continue;
        }
        bridge.ends[side.index()]
            .link
            .send(&Packet::Subscribe(Subscribe {
                // The bridge has nothing in flight on a new connection; its
                // publishes carry their sources' ids, which brokers hand out
                // from the lowest.
                pkid: u16::MAX,
                filters,
                properties: None,
            }))
            .await?;
    }
    Ok(bridge)
}

fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
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
            Packet::PubRec(rec) => self.on_pubrec(from, rec).await,
            Packet::PubRel(rel) => self.on_pubrel(from, rel.pkid).await,
            Packet::PubComp(comp) => self.on_pubcomp(from, comp.pkid).await,
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
            other => Err(BridgeError::Protocol(side, format!("unexpected {other:?}"))),
        }
    }

    async fn on_publish(&mut self, from: Side, p: Publish) -> Result<(), BridgeError> {
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let Some((entry, to_topic)) = self
            .config
            .topics
            .iter()
            .find_map(|t| t.map(from, &topic).map(|m| (t, m)))
        else {
            // Nothing of ours matches (a subscription this configuration no
            // longer has): done with it.
            tracing::debug!(bridge = %self.config.name, %topic, "MQTT bridge: no topic entry for a message, dropped");
            return self.ack_source(from, p.qos, p.pkid).await;
        };
        let qos = qos_of((p.qos as u8).min(entry.qos));
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
            // Sent again by its source after a reconnect: the destination may
            // have it already.
            dup: p.dup && qos != QoS::AtMostOnce,
            qos,
            retain: p.retain,
            topic: to_topic.into_bytes().into(),
            pkid: if qos == QoS::AtMostOnce { 0 } else { p.pkid },
            payload: p.payload,
            properties,
        };
        if qos == QoS::AtMostOnce {
            let to = &mut self.ends[from.other().index()];
            match to.link.send(&Packet::Publish(out)).await {
                Ok(()) => {}
                Err(BridgeError::TooLarge(size, max)) => {
                    tracing::warn!(bridge = %self.config.name, %topic, size, max, "MQTT bridge: message too large for the other broker, dropped");
                }
                Err(e) => return Err(e),
            }
            return self.ack_source(from, p.qos, p.pkid).await;
        }
        tracing::trace!(bridge = %self.config.name, from = ?from, %topic, pkid = p.pkid, dup = p.dup, ?qos, "MQTT bridge: forwarding");
        let to = &mut self.ends[from.other().index()];
        if to.sent.contains_key(&p.pkid) || to.queue.iter().any(|(q, _)| q.pkid == p.pkid) {
            // Its source sent it again while the first copy waits: the source
            // gets its answer when that copy's comes.
            return Ok(());
        }
        to.queue.push_back((out, p.qos));
        self.pump(from.other()).await
    }

    /// Sends queued publishes while the peer has room.
    async fn pump(&mut self, side: Side) -> Result<(), BridgeError> {
        loop {
            let end = &mut self.ends[side.index()];
            if end.sent.len() >= end.room {
                return Ok(());
            }
            let Some((out, source_qos)) = end.queue.pop_front() else {
                return Ok(());
            };
            let (pkid, qos) = (out.pkid, out.qos);
            match end.link.send(&Packet::Publish(out)).await {
                Ok(()) => {
                    let sent = if qos == QoS::ExactlyOnce {
                        Sent::Qos2
                    } else {
                        Sent::Qos1 { source_qos }
                    };
                    end.sent.insert(pkid, sent);
                }
                Err(BridgeError::TooLarge(size, max)) => {
                    // It will never fit: acknowledged to its broker, logged.
                    tracing::warn!(bridge = %self.config.name, size, max, "MQTT bridge: message too large for the other broker, dropped");
                    self.ack_source(side.other(), source_qos, pkid).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn on_puback(&mut self, from: Side, ack: PubAck) -> Result<(), BridgeError> {
        let end = &mut self.ends[from.index()];
        tracing::trace!(bridge = %self.config.name, side = end.link.side, pkid = ack.pkid, reason = ?ack.reason, "MQTT bridge: PUBACK");
        let Some(Sent::Qos1 { source_qos }) = end.sent.get(&ack.pkid).copied() else {
            return Ok(());
        };
        end.sent.remove(&ack.pkid);
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
        self.ack_source(from.other(), source_qos, ack.pkid).await?;
        self.pump(from).await
    }

    async fn on_pubrec(&mut self, from: Side, rec: PubRec) -> Result<(), BridgeError> {
        let end = &mut self.ends[from.index()];
        tracing::trace!(bridge = %self.config.name, side = end.link.side, pkid = rec.pkid, reason = ?rec.reason, "MQTT bridge: PUBREC");
        if end.sent.get(&rec.pkid) != Some(&Sent::Qos2) {
            return Ok(());
        }
        match rec.reason {
            PubRecReason::Success | PubRecReason::NoMatchingSubscribers => {
                // Stored there; its source may let go of it now. The PUBREL
                // comes from the source.
                self.send(
                    from.other(),
                    Packet::PubRec(PubRec {
                        pkid: rec.pkid,
                        reason: PubRecReason::Success,
                        properties: None,
                    }),
                )
                .await
            }
            PubRecReason::NotAuthorized
            | PubRecReason::TopicNameInvalid
            | PubRecReason::PayloadFormatInvalid => {
                // The exchange ended there: the bridge answers the source's
                // PUBREL itself.
                end.sent.remove(&rec.pkid);
                tracing::warn!(bridge = %self.config.name, side = end.link.side, reason = ?rec.reason, "MQTT bridge: message refused by the broker, dropped");
                self.ack_source(from.other(), QoS::ExactlyOnce, rec.pkid)
                    .await?;
                self.pump(from).await
            }
            other => Err(BridgeError::NotStored(end.link.side, format!("{other:?}"))),
        }
    }

    /// The source released a QoS 2 message: released at the destination too,
    /// unless the bridge answers for it.
    async fn on_pubrel(&mut self, from: Side, pkid: u16) -> Result<(), BridgeError> {
        if self.ends[from.index()].answer_rel.remove(&pkid) {
            return self.send(from, pubcomp(pkid)).await;
        }
        // Known or not (after a reconnect the bridge knows nothing, and the
        // destination holds the id until it is released), it goes on; it takes
        // room there until PUBCOMP.
        let to = from.other();
        self.ends[to.index()].sent.insert(pkid, Sent::Released);
        self.send(
            to,
            Packet::PubRel(PubRel {
                pkid,
                reason: PubRelReason::Success,
                properties: None,
            }),
        )
        .await
    }

    async fn on_pubcomp(&mut self, from: Side, pkid: u16) -> Result<(), BridgeError> {
        if self.ends[from.index()].sent.get(&pkid) != Some(&Sent::Released) {
            return Ok(());
        }
        self.ends[from.index()].sent.remove(&pkid);
        self.send(from.other(), pubcomp(pkid)).await?;
        self.pump(from).await
    }

    /// Acknowledges a message on the side it came from: PUBACK for QoS 1,
    /// PUBREC for QoS 2 (whose PUBREL the bridge then answers), nothing for 0.
    async fn ack_source(&mut self, side: Side, qos: QoS, pkid: u16) -> Result<(), BridgeError> {
        match qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => {
                self.send(
                    side,
                    Packet::PubAck(PubAck {
                        pkid,
                        reason: PubAckReason::Success,
                        properties: None,
                    }),
                )
                .await
            }
            QoS::ExactlyOnce => {
                self.ends[side.index()].answer_rel.insert(pkid);
                self.send(
                    side,
                    Packet::PubRec(PubRec {
                        pkid,
                        reason: PubRecReason::Success,
                        properties: None,
                    }),
                )
                .await
            }
        }
    }

    async fn send(&mut self, side: Side, packet: Packet) -> Result<(), BridgeError> {
        self.ends[side.index()].link.send(&packet).await
    }
}

fn pubcomp(pkid: u16) -> Packet {
    Packet::PubComp(PubComp {
        pkid,
        reason: PubCompReason::Success,
        properties: None,
    })
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
        assert_eq!(c.protocol_version, BridgeProtocol::V5);
        assert!(c.try_private);
        let c = config(
            r#"{"name": "old", "address": "emqx.lan:1883", "protocol_version": "mqttv311",
                "try_private": false, "topics": [{"pattern": "a/#", "qos": 2}]}"#,
        )
        .unwrap();
        assert_eq!(c.protocol_version, BridgeProtocol::V311);
        assert!(!c.try_private);
        assert_eq!(c.topics[0].qos, 2);

        for bad in [
            // No port, or not a number.
            r#"{"name": "b", "address": "host", "topics": [{"pattern": "a"}]}"#,
            r#"{"name": "b", "address": "host:x", "topics": [{"pattern": "a"}]}"#,
            // Nothing to carry.
            r#"{"name": "b", "address": "h:1", "topics": []}"#,
            // QoS 3.
            r#"{"name": "b", "address": "h:1", "topics": [{"pattern": "a", "qos": 3}]}"#,
            // MQTT 3.1 with the default client id of a long name (over 23).
            r#"{"name": "a-rather-long-bridge", "address": "h:1", "protocol_version": "mqttv31", "topics": [{"pattern": "a"}]}"#,
            // An MQTT version mosquitto does not name.
            r#"{"name": "b", "address": "h:1", "protocol_version": "5", "topics": [{"pattern": "a"}]}"#,
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
