//! A test harness for [`MqttChannel`] with no socket: tests and the fuzzer
//! make a channel from a CONNECT, feed it packets (values or raw bytes, decoded
//! by the server's codec), hand over what its mailbox collects, move its clock,
//! and read back what it sent, decoded by a client-side codec (`rumqttc`'s),
//! so that the encoder is checked by a decoder that is not its own.
//!
//! The session is set up as the connection driver sets it up
//! ([`crate::connection::admit`]: client id rules, takeover, the session
//! resumed and stored, CONNACK), and ended as the driver ends it
//! ([`MqttChannel::put_away`], [`MqttChannel::release`]). What the driver does
//! with the socket and the timers, the harness does step by step:
//!
//! - [`ChannelHarness::send`] / [`ChannelHarness::send_packet`] /
//!   [`ChannelHarness::send_bytes`]: a packet read, then everything already in
//!   the mailbox handed over (as the driver's loop does after each read);
//! - [`ChannelHarness::handover`]: what the mailbox holds now;
//! - [`ChannelHarness::wait_events`] / [`ChannelHarness::wait_packets`]: waits,
//!   up to [`WAIT_BOUND`], until so many events arrived or so many packets were
//!   sent (storage completions come from the engine's writer thread): it counts,
//!   it never sleeps a fixed time;
//! - [`ChannelHarness::tick`]: the clock moves on (keep-alive).
//!
//! Not a public API: `#[doc(hidden)]`, for `tests/` and `fuzz/` only. Its packet
//! fields are the protocol's, named as MQTT names them, so they go undocumented.
#![allow(missing_docs)]

pub mod invariants;

use super::{Close, End, MqttChannel};
use crate::broker::MqttBroker;
use crate::connection::{Admitted, admit};
use crate::frame::{lift, max_remaining_length};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::{Protocol, Publish, QoS};
use rmqtt_codec::v5::{PublishProperties, RetainHandling, SubscriptionOptions, UserProperties};
use rmqtt_codec::{MqttCodec, MqttPacket, v3, v5};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

pub use rmqtt_codec;

/// The longest [`ChannelHarness::wait_events`] and
/// [`ChannelHarness::wait_packets`] wait before they panic.
pub const WAIT_BOUND: Duration = Duration::from_secs(10);

/// With `JUNCTION_HARNESS_STACKS=<file>` set, a wait that passed half of
/// [`WAIT_BOUND`] appends every thread's stack (gdb) to that file: a stall's
/// cause while it lasts. A diagnostic for long fuzz runs; nothing else sets it.
fn dump_stacks() {
    let Some(file) = std::env::var_os("JUNCTION_HARNESS_STACKS") else {
        return;
    };
    let out = std::process::Command::new("gdb")
        .args([
            "-p",
            &std::process::id().to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .output();
    if let Ok(out) = out {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
        {
            let _ = writeln!(f, "=== stall, pid {}", std::process::id());
            let _ = f.write_all(&out.stdout);
        }
    }
}

/// The will of a [`ClientConnect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 Will Delay Interval, seconds.
    pub delay: Option<u32>,
}

/// The CONNECT a harness starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnect {
    /// MQTT 5 (else 3.1.1).
    pub v5: bool,
    pub client_id: String,
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval (3.1.1: a clean session is 0, else never
    /// expires).
    pub session_expiry: u32,
    /// MQTT 5 Receive Maximum (none: 65535).
    pub receive_maximum: Option<u16>,
    pub keep_alive: u16,
    /// MQTT 5 Topic Alias Maximum.
    pub topic_alias_maximum: u16,
    /// MQTT 5 Maximum Packet Size.
    pub max_packet_size: Option<u32>,
    pub request_problem_info: bool,
    pub will: Option<ClientWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

impl ClientConnect {
    /// An MQTT 5 CONNECT: clean start, no session expiry, no keep-alive.
    pub fn v5(client_id: &str) -> Self {
        ClientConnect {
            v5: true,
            client_id: client_id.to_owned(),
            clean_start: true,
            session_expiry: 0,
            receive_maximum: None,
            keep_alive: 0,
            topic_alias_maximum: 0,
            max_packet_size: None,
            request_problem_info: true,
            will: None,
            username: None,
            password: None,
        }
    }

    /// An MQTT 3.1.1 CONNECT: clean session, no keep-alive.
    pub fn v311(client_id: &str) -> Self {
        ClientConnect {
            v5: false,
            ..ClientConnect::v5(client_id)
        }
    }

    /// The packet, as the server's codec decodes it.
    pub fn packet(&self) -> MqttPacket {
        if self.v5 {
            MqttPacket::V5(v5::Packet::Connect(Box::new(v5::Connect {
                clean_start: self.clean_start,
                keep_alive: self.keep_alive,
                session_expiry_interval_secs: self.session_expiry,
                auth_method: None,
                auth_data: None,
                request_problem_info: self.request_problem_info,
                request_response_info: false,
                receive_max: self.receive_maximum.and_then(NonZeroU16::new),
                topic_alias_max: self.topic_alias_maximum,
                user_properties: UserProperties::new(),
                max_packet_size: self.max_packet_size.and_then(NonZeroU32::new),
                last_will: self.will.as_ref().map(|w| v5::LastWill {
                    qos: qos(w.qos),
                    retain: w.retain,
                    topic: ByteString::from(w.topic.clone()),
                    message: w.payload.clone(),
                    will_delay_interval_sec: w.delay,
                    correlation_data: None,
                    message_expiry_interval: None,
                    content_type: None,
                    user_properties: UserProperties::new(),
                    is_utf8_payload: None,
                    response_topic: None,
                }),
                client_id: ByteString::from(self.client_id.clone()),
                username: self.username.clone().map(ByteString::from),
                password: self.password.clone(),
                cert: None,
            })))
        } else {
            MqttPacket::V3(v3::Packet::Connect(Box::new(v3::Connect {
                protocol: Protocol(4),
                clean_session: self.clean_start,
                keep_alive: self.keep_alive,
                last_will: self.will.as_ref().map(|w| v3::LastWill {
                    qos: qos(w.qos),
                    retain: w.retain,
                    topic: ByteString::from(w.topic.clone()),
                    message: w.payload.clone(),
                }),
                client_id: ByteString::from(self.client_id.clone()),
                username: self.username.clone().map(ByteString::from),
                password: self.password.clone(),
                cert: None,
            })))
        }
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A packet a client sends after CONNECT, in the connection's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPacket {
    /// `pkid` is ignored at QoS 0 and must not be 0 at QoS 1/2. `topic_alias`
    /// (MQTT 5) with an empty topic uses an alias set before.
    Publish {
        topic: String,
        qos: u8,
        pkid: u16,
        payload: Bytes,
        retain: bool,
        dup: bool,
        topic_alias: Option<u16>,
    },
    PubAck(u16),
    /// Packet id and (MQTT 5) reason code.
    PubRec(u16, u8),
    PubRel(u16),
    PubComp(u16),
    /// Filters with their QoS; `id`: MQTT 5 Subscription Identifier.
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
        id: Option<u32>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// Reason code and (MQTT 5) Session Expiry Interval.
    Disconnect {
        code: u8,
        session_expiry: Option<u32>,
    },
    /// A CONNECT on a connection past CONNECT (a protocol error).
    Connect(Box<ClientConnect>),
}

impl ClientPacket {
    /// A publish with no retain, DUP or alias.
    pub fn publish(topic: &str, qos: u8, pkid: u16, payload: &'static [u8]) -> Self {
        ClientPacket::Publish {
            topic: topic.to_owned(),
            qos,
            pkid,
            payload: Bytes::from_static(payload),
            retain: false,
            dup: false,
            topic_alias: None,
        }
    }

    /// A SUBSCRIBE of one filter.
    pub fn subscribe(pkid: u16, filter: &str, qos: u8) -> Self {
        ClientPacket::Subscribe {
            pkid,
            filters: vec![(filter.to_owned(), qos)],
            id: None,
        }
    }

    /// The packet as `rmqtt-codec` decodes it, for MQTT 5 or 3.1.1.
    pub fn packet(&self, v5: bool) -> MqttPacket {
        let id = |pkid: u16| NonZeroU16::new(pkid).unwrap_or(NonZeroU16::MIN);
        if let ClientPacket::Connect(c) = self {
            let mut p = c.packet();
            if let (false, MqttPacket::V5(v5::Packet::Connect(c5))) = (v5, &p) {
                // A v5 CONNECT on a 3.1.1 connection is a 3.1.1 CONNECT there.
                p = ClientConnect {
                    v5: false,
                    clean_start: c5.clean_start,
                    ..(**c).clone()
                }
                .packet();
            }
            return p;
        }
        if v5 {
            use v5::Packet as P;
            let ack = |pkid: u16, code: u8| v5::PublishAck {
                packet_id: id(pkid),
                reason_code: v5::PublishAckReason::try_from(code)
                    .unwrap_or(v5::PublishAckReason::UnspecifiedError),
                properties: UserProperties::new(),
                reason_string: None,
            };
            let ack2 = |pkid: u16| v5::PublishAck2 {
                packet_id: id(pkid),
                reason_code: v5::PublishAck2Reason::Success,
                properties: UserProperties::new(),
                reason_string: None,
            };
            MqttPacket::V5(match self {
                ClientPacket::Publish {
                    topic,
                    qos: q,
                    pkid,
                    payload,
                    retain,
                    dup,
                    topic_alias,
                } => P::Publish(Box::new(Publish {
                    dup: *dup,
                    retain: *retain,
                    qos: qos(*q),
                    topic: ByteString::from(topic.clone()),
                    packet_id: if *q > 0 { NonZeroU16::new(*pkid) } else { None },
                    payload: payload.clone(),
                    properties: Some(PublishProperties {
                        topic_alias: topic_alias.and_then(NonZeroU16::new),
                        ..PublishProperties::default()
                    }),
                })),
                ClientPacket::PubAck(p) => P::PublishAck(ack(*p, 0)),
                ClientPacket::PubRec(p, code) => P::PublishReceived(ack(*p, *code)),
                ClientPacket::PubRel(p) => P::PublishRelease(ack2(*p)),
                ClientPacket::PubComp(p) => P::PublishComplete(ack2(*p)),
                ClientPacket::Subscribe {
                    pkid,
                    filters,
                    id: sub_id,
                } => P::Subscribe(v5::Subscribe {
                    packet_id: id(*pkid),
                    id: sub_id.and_then(NonZeroU32::new),
                    user_properties: UserProperties::new(),
                    topic_filters: filters
                        .iter()
                        .map(|(f, q)| {
                            (
                                ByteString::from(f.clone()),
                                SubscriptionOptions {
                                    qos: qos(*q),
                                    no_local: false,
                                    retain_as_published: false,
                                    retain_handling: RetainHandling::AtSubscribe,
                                },
                            )
                        })
                        .collect(),
                }),
                ClientPacket::Unsubscribe { pkid, filters } => P::Unsubscribe(v5::Unsubscribe {
                    packet_id: id(*pkid),
                    user_properties: UserProperties::new(),
                    topic_filters: filters
                        .iter()
                        .map(|f| ByteString::from(f.clone()))
                        .collect(),
                }),
                ClientPacket::PingReq => P::PingRequest,
                ClientPacket::Disconnect {
                    code,
                    session_expiry,
                } => P::Disconnect(v5::Disconnect {
                    reason_code: v5::DisconnectReasonCode::try_from(*code)
                        .unwrap_or(v5::DisconnectReasonCode::UnspecifiedError),
                    session_expiry_interval_secs: *session_expiry,
                    server_reference: None,
                    reason_string: None,
                    user_properties: UserProperties::new(),
                }),
                ClientPacket::Connect(_) => unreachable!("handled above"),
            })
        } else {
            use v3::Packet as P;
            MqttPacket::V3(match self {
                ClientPacket::Publish {
                    topic,
                    qos: q,
                    pkid,
                    payload,
                    retain,
                    dup,
                    ..
                } => P::Publish(Box::new(Publish {
                    dup: *dup,
                    retain: *retain,
                    qos: qos(*q),
                    topic: ByteString::from(topic.clone()),
                    packet_id: if *q > 0 { NonZeroU16::new(*pkid) } else { None },
                    payload: payload.clone(),
                    properties: None,
                })),
                ClientPacket::PubAck(p) => P::PublishAck { packet_id: id(*p) },
                ClientPacket::PubRec(p, _) => P::PublishReceived { packet_id: id(*p) },
                ClientPacket::PubRel(p) => P::PublishRelease { packet_id: id(*p) },
                ClientPacket::PubComp(p) => P::PublishComplete { packet_id: id(*p) },
                ClientPacket::Subscribe { pkid, filters, .. } => P::Subscribe {
                    packet_id: id(*pkid),
                    topic_filters: filters
                        .iter()
                        .map(|(f, q)| (ByteString::from(f.clone()), qos(*q)))
                        .collect(),
                },
                ClientPacket::Unsubscribe { pkid, filters } => P::Unsubscribe {
                    packet_id: id(*pkid),
                    topic_filters: filters
                        .iter()
                        .map(|f| ByteString::from(f.clone()))
                        .collect(),
                },
                ClientPacket::PingReq => P::PingRequest,
                ClientPacket::Disconnect { .. } => P::Disconnect,
                ClientPacket::Connect(_) => unreachable!("handled above"),
            })
        }
    }
}

/// CONNACK as a client reads it (MQTT 5 properties `None` for 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// The reason code (3.1.1: its return code).
    pub code: u8,
    pub receive_maximum: Option<u16>,
    pub server_keep_alive: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub max_packet_size: Option<u32>,
    pub session_expiry: Option<u32>,
    pub assigned_client_id: Option<String>,
}

/// A PUBLISH as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    /// Empty when the topic alias stands for it.
    pub topic: String,
    /// 0 at QoS 0.
    pub pkid: u16,
    pub payload: Bytes,
    pub topic_alias: Option<u16>,
    pub subscription_ids: Vec<usize>,
}

/// A packet the server sent, as a client reads it. Reason codes are MQTT 5's
/// (0 for 3.1.1, which has none; a 3.1.1 SUBACK's return codes are 0, 1, 2
/// and 0x80, an UNSUBACK's list is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPacket {
    ConnAck(ConnAck),
    Publish(Delivery),
    PubAck { pkid: u16, code: u8 },
    PubRec { pkid: u16, code: u8 },
    PubRel { pkid: u16, code: u8 },
    PubComp { pkid: u16, code: u8 },
    SubAck { pkid: u16, codes: Vec<u8> },
    UnsubAck { pkid: u16, codes: Vec<u8> },
    PingResp,
    Disconnect { code: u8 },
}

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// DISCONNECT 0x00: the will is discarded.
    Normal,
    /// Any other DISCONNECT, a dropped socket or an error: the will goes out.
    WithWill,
    /// Another connection took the client id.
    TakenOver,
    /// The broker is stopping.
    Shutdown,
}

/// The channel said the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub ending: Ending,
    /// The driver would read and drop what the client still sends for a moment
    /// so that the DISCONNECT arrives.
    pub drain: bool,
}

impl From<Close> for Closed {
    fn from(c: Close) -> Self {
        Closed {
            ending: match c.end {
                End::Normal => Ending::Normal,
                End::WithWill => Ending::WithWill,
                End::TakenOver => Ending::TakenOver,
                End::Shutdown => Ending::Shutdown,
            },
            drain: c.drain,
        }
    }
}

/// A CONNECT refused: the CONNACK's reason code and why (a malformed CONNECT
/// gets none over 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: u8,
    pub why: String,
    pub malformed: bool,
}

/// One channel with no socket. Dropping it ends the connection as a lost
/// socket does (with the will), unless the channel ended it before.
pub struct ChannelHarness {
    broker: Arc<MqttBroker>,
    channel: Option<MqttChannel>,
    conn_id: u64,
    done: CancellationToken,
    v5: bool,
    /// The server's codec, for raw client bytes.
    decoder: MqttCodec,
    raw_in: BytesMut,
    /// What the channel encoded, not yet decoded.
    out: BytesMut,
    received: VecDeque<ServerPacket>,
    sent_total: usize,
    events_total: usize,
    now: Instant,
    closed: Option<Closed>,
}

impl ChannelHarness {
    /// Runs the handshake for `connect` (from 127.0.0.1) and sends CONNACK.
    pub async fn connect(
        broker: &Arc<MqttBroker>,
        connect: &ClientConnect,
    ) -> Result<Self, Refused> {
        Self::connect_packet(broker, connect.packet()).await
    }

    /// Runs the handshake for a CONNECT packet value.
    pub async fn connect_packet(
        broker: &Arc<MqttBroker>,
        packet: MqttPacket,
    ) -> Result<Self, Refused> {
        let v5 = matches!(packet, MqttPacket::V5(_));
        let crate::frame::In::Connect(info) = lift(packet) else {
            return Err(Refused {
                code: 0x82,
                why: "not a CONNECT".to_owned(),
                malformed: true,
            });
        };
        let max = max_remaining_length(broker.options.max_packet_size);
        let codec = if v5 {
            MqttCodec::V5(v5::Codec::new(max, 0))
        } else {
            MqttCodec::V3(v3::Codec::new(max))
        };
        // No socket: the handshake has nothing to read or write here (enhanced
        // authentication, which would, is not offered by the harness).
        let mut framed = crate::io::MqttIo::new(tokio::io::empty(), codec);
        let remote = SocketAddr::from(([127, 0, 0, 1], 1));
        let Admitted {
            mut channel,
            ack,
            conn_id,
            done,
            ..
        } = admit(broker, &mut framed, v5, *info, remote, None)
            .await
            .map_err(|r| Refused {
                code: r.code,
                why: r.why,
                malformed: r.malformed,
            })?;
        // The harness's clock starts when the channel's keep-alive does.
        let now = channel.last_in();
        let connected = channel.connected(ack);
        let mut h = ChannelHarness {
            broker: broker.clone(),
            channel: Some(channel),
            conn_id,
            done,
            v5,
            decoder: std::mem::replace(
                framed.codec_mut(),
                MqttCodec::Version(rmqtt_codec::version::VersionCodec),
            ),
            raw_in: BytesMut::new(),
            out: BytesMut::new(),
            received: VecDeque::new(),
            sent_total: 0,
            events_total: 0,
            now,
            closed: None,
        };
        if let Err(c) = connected {
            h.closed = Some(c.into());
        }
        h.decode_out();
        Ok(h)
    }

    /// MQTT 5 (else 3.1.1).
    pub fn is_v5(&self) -> bool {
        self.v5
    }

    /// How the connection ended, once the channel ended it.
    pub fn closed(&self) -> Option<Closed> {
        self.closed
    }

    /// The harness's clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A packet from the client, then what the mailbox holds.
    pub fn send(&mut self, packet: ClientPacket) -> Result<(), Closed> {
        self.send_packet(packet.packet(self.v5))
    }

    /// Packets read together, in one burst: the driver feeds them all before it
    /// looks at the mailbox, so nothing stored meanwhile is seen in between.
    pub fn send_burst(&mut self, packets: Vec<ClientPacket>) -> Result<(), Closed> {
        for p in packets {
            self.send_in_burst(p)?;
        }
        self.handover().map(|_| ())
    }

    /// A packet read with more to come in the same burst: the mailbox is not
    /// looked at before the next one (see [`Self::send_burst`]).
    pub fn send_in_burst(&mut self, packet: ClientPacket) -> Result<(), Closed> {
        let p = packet.packet(self.v5);
        self.frame(Ok(p))
    }

    /// A decoded packet from the client, then what the mailbox holds.
    pub fn send_packet(&mut self, packet: MqttPacket) -> Result<(), Closed> {
        self.frame(Ok(packet))?;
        self.handover().map(|_| ())
    }

    /// Raw bytes from the client, decoded by the server's codec as the
    /// connection decodes them (a decode error goes to the channel too), then
    /// what the mailbox holds. An incomplete packet waits for more bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        self.raw_in.extend_from_slice(bytes);
        loop {
            match self.decoder.decode(&mut self.raw_in) {
                Ok(Some((packet, _))) => self.frame(Ok(packet))?,
                Ok(None) => break,
                Err(e) => {
                    self.raw_in.clear();
                    self.frame(Err(e))?;
                    break;
                }
            }
        }
        self.handover().map(|_| ())
    }

    fn frame(&mut self, frame: Result<MqttPacket, DecodeError>) -> Result<(), Closed> {
        if let Some(c) = self.closed {
            return Err(c);
        }
        let now = self.now;
        let step = match self.channel.as_mut() {
            Some(ch) => ch.on_frame(frame, now),
            None => return Err(self.closed.unwrap_or(GONE)),
        };
        self.after(step)
    }

    fn after(&mut self, step: super::Step) -> Result<(), Closed> {
        let r = step.map_err(Closed::from);
        if let Err(c) = r {
            self.closed = Some(c);
        }
        self.decode_out();
        r
    }

    /// The clock moves on by `by`; a client silent past its keep-alive (and
    /// half again) is disconnected.
    pub fn tick(&mut self, by: Duration) -> Result<(), Closed> {
        if let Some(c) = self.closed {
            return Err(c);
        }
        self.now += by;
        let now = self.now;
        let step = match self.channel.as_mut() {
            Some(ch) => ch.tick(now),
            None => return Err(GONE),
        };
        self.after(step)
    }

    /// When the channel's keep-alive runs out, from the harness's clock.
    pub fn keep_alive_left(&self) -> Option<Duration> {
        let d = self.channel.as_ref()?.keep_alive_deadline()?;
        Some(d.saturating_duration_since(self.now))
    }

    /// Hands the channel everything in the mailbox now, as the driver does:
    /// the count of dropped live messages first, then each event. Returns how
    /// many events were handed over.
    pub fn handover(&mut self) -> Result<usize, Closed> {
        if let Some(c) = self.closed {
            return Err(c);
        }
        let Some(ch) = self.channel.as_mut() else {
            return Err(GONE);
        };
        let (events, dropped) = ch.mailbox().take();
        let n = events.len();
        self.events_total += n;
        let mut step = ch.on_mailbox(dropped);
        if step.is_ok() {
            for e in events {
                step = ch.on_event(e);
                if step.is_err() {
                    break;
                }
            }
        }
        self.after(step)?;
        Ok(n)
    }

    /// Events handed over so far.
    pub fn events_total(&self) -> usize {
        self.events_total
    }

    /// Waits until `n` more events have been handed over (storage completions
    /// arrive from the engine's writer thread). Panics after [`WAIT_BOUND`].
    pub async fn wait_events(&mut self, n: usize) -> Result<(), Closed> {
        let goal = self.events_total + n;
        let deadline = tokio::time::Instant::now() + WAIT_BOUND;
        loop {
            self.handover()?;
            if self.events_total >= goal {
                return Ok(());
            }
            self.wait_mailbox(deadline, || {
                format!("{n} mailbox events expected within {WAIT_BOUND:?}")
            })
            .await;
        }
    }

    /// Waits for the mailbox to get something, up to [`WAIT_BOUND`], and hands
    /// it over: false when nothing came.
    pub async fn wait_for_more(&mut self) -> Result<bool, Closed> {
        if self.handover()? > 0 {
            return Ok(true);
        }
        let Some(mailbox) = self.channel.as_ref().map(|c| c.mailbox()) else {
            return Err(GONE);
        };
        let half = WAIT_BOUND / 2;
        let mut came = tokio::time::timeout(half, mailbox.wait()).await.is_ok();
        if !came {
            dump_stacks();
            came = tokio::time::timeout(half, mailbox.wait()).await.is_ok();
        }
        self.handover()?;
        Ok(came)
    }

    /// Waits until the server has sent `n` packets not yet read, handing over
    /// mailbox events as they come, and returns every packet not yet read.
    /// Stops early when the connection ends. Panics after [`WAIT_BOUND`].
    pub async fn wait_packets(&mut self, n: usize) -> Vec<ServerPacket> {
        let deadline = tokio::time::Instant::now() + WAIT_BOUND;
        loop {
            if self.handover().is_err() || self.received.len() >= n {
                return self.packets();
            }
            let have = self.received.clone();
            self.wait_mailbox(deadline, || {
                format!("{n} packets expected within {WAIT_BOUND:?}; got {have:?}")
            })
            .await;
        }
    }

    async fn wait_mailbox(
        &mut self,
        deadline: tokio::time::Instant,
        what: impl FnOnce() -> String,
    ) {
        let Some(mailbox) = self.channel.as_ref().map(|c| c.mailbox()) else {
            return;
        };
        if tokio::time::timeout_at(deadline, mailbox.wait())
            .await
            .is_err()
        {
            panic!("{}", what());
        }
    }

    /// The packets the server sent and the test has not read yet.
    pub fn packets(&mut self) -> Vec<ServerPacket> {
        self.decode_out();
        self.received.drain(..).collect()
    }

    /// Packets the server sent in all.
    pub fn sent_total(&mut self) -> usize {
        self.decode_out();
        self.sent_total
    }

    fn decode_out(&mut self) {
        if let Some(ch) = self.channel.as_mut() {
            let pending = ch.wire().pending().split();
            self.out.unsplit(pending);
        }
        while !self.out.is_empty() {
            let packet = if self.v5 {
                decode_v5(&mut self.out)
            } else {
                decode_v311(&mut self.out)
            };
            self.sent_total += 1;
            self.received.push_back(packet);
        }
    }

    /// Ends the connection as the driver does once the socket is closed (with
    /// the will if the channel did not end it first), and returns how it ended.
    pub fn finish(mut self) -> Closed {
        self.end()
    }

    fn end(&mut self) -> Closed {
        let closed = self.closed.unwrap_or(Closed {
            ending: Ending::WithWill,
            drain: false,
        });
        if let Some(mut ch) = self.channel.take() {
            let end = match closed.ending {
                Ending::Normal => End::Normal,
                Ending::WithWill => End::WithWill,
                Ending::TakenOver => End::TakenOver,
                Ending::Shutdown => End::Shutdown,
            };
            let put_away = ch.put_away(end);
            ch.release(put_away, self.conn_id);
            self.done.cancel();
        }
        let _ = &self.broker;
        closed
    }
}

impl Drop for ChannelHarness {
    fn drop(&mut self) {
        self.end();
    }
}

const GONE: Closed = Closed {
    ending: Ending::WithWill,
    drain: false,
};

/// A whole packet from the channel's encoder, read by `rumqttc`'s MQTT 5
/// decoder. Panics when it cannot be read: the server wrote a bad packet.
fn decode_v5(buf: &mut BytesMut) -> ServerPacket {
    use rumqttc::v5::mqttbytes::v5 as c;
    let packet = match c::Packet::read(buf, None) {
        Ok(p) => p,
        Err(e) => panic!("the server wrote a packet rumqttc cannot read: {e:?} ({buf:02x?})"),
    };
    match packet {
        c::Packet::ConnAck(a) => {
            let p = a.properties;
            ServerPacket::ConnAck(ConnAck {
                session_present: a.session_present,
                code: connack_code_v5(a.code),
                receive_maximum: p.as_ref().and_then(|p| p.receive_max),
                server_keep_alive: p.as_ref().and_then(|p| p.server_keep_alive),
                topic_alias_maximum: p.as_ref().and_then(|p| p.topic_alias_max),
                max_packet_size: p.as_ref().and_then(|p| p.max_packet_size),
                session_expiry: p.as_ref().and_then(|p| p.session_expiry_interval),
                assigned_client_id: p.and_then(|p| p.assigned_client_identifier),
            })
        }
        c::Packet::Publish(p) => {
            let props = p.properties.unwrap_or_default();
            ServerPacket::Publish(Delivery {
                dup: p.dup,
                qos: p.qos as u8,
                retain: p.retain,
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                pkid: p.pkid,
                payload: p.payload,
                topic_alias: props.topic_alias,
                subscription_ids: props.subscription_identifiers,
            })
        }
        c::Packet::PubAck(a) => ServerPacket::PubAck {
            pkid: a.pkid,
            code: puback_code(a.reason),
        },
        c::Packet::PubRec(a) => ServerPacket::PubRec {
            pkid: a.pkid,
            code: pubrec_code(a.reason),
        },
        c::Packet::PubRel(a) => ServerPacket::PubRel {
            pkid: a.pkid,
            code: match a.reason {
                c::PubRelReason::Success => 0,
                c::PubRelReason::PacketIdentifierNotFound => 0x92,
            },
        },
        c::Packet::PubComp(a) => ServerPacket::PubComp {
            pkid: a.pkid,
            code: match a.reason {
                c::PubCompReason::Success => 0,
                c::PubCompReason::PacketIdentifierNotFound => 0x92,
            },
        },
        c::Packet::SubAck(a) => ServerPacket::SubAck {
            pkid: a.pkid,
            codes: a.return_codes.into_iter().map(suback_code).collect(),
        },
        c::Packet::UnsubAck(a) => ServerPacket::UnsubAck {
            pkid: a.pkid,
            codes: a.reasons.into_iter().map(unsuback_code).collect(),
        },
        c::Packet::PingResp(_) => ServerPacket::PingResp,
        c::Packet::Disconnect(d) => ServerPacket::Disconnect {
            code: d.reason_code as u8,
        },
        other => panic!("the server sent a packet only a client sends: {other:?}"),
    }
}

/// A whole packet read by `rumqttc`'s MQTT 3.1.1 decoder.
fn decode_v311(buf: &mut BytesMut) -> ServerPacket {
    use rumqttc::mqttbytes::v4 as c;
    let packet = match c::Packet::read(buf, usize::MAX) {
        Ok(p) => p,
        Err(e) => panic!("the server wrote a packet rumqttc cannot read: {e:?} ({buf:02x?})"),
    };
    match packet {
        c::Packet::ConnAck(a) => ServerPacket::ConnAck(ConnAck {
            session_present: a.session_present,
            code: a.code as u8,
            receive_maximum: None,
            server_keep_alive: None,
            topic_alias_maximum: None,
            max_packet_size: None,
            session_expiry: None,
            assigned_client_id: None,
        }),
        c::Packet::Publish(p) => ServerPacket::Publish(Delivery {
            dup: p.dup,
            qos: p.qos as u8,
            retain: p.retain,
            topic: p.topic,
            pkid: p.pkid,
            payload: p.payload,
            topic_alias: None,
            subscription_ids: Vec::new(),
        }),
        c::Packet::PubAck(a) => ServerPacket::PubAck {
            pkid: a.pkid,
            code: 0,
        },
        c::Packet::PubRec(a) => ServerPacket::PubRec {
            pkid: a.pkid,
            code: 0,
        },
        c::Packet::PubRel(a) => ServerPacket::PubRel {
            pkid: a.pkid,
            code: 0,
        },
        c::Packet::PubComp(a) => ServerPacket::PubComp {
            pkid: a.pkid,
            code: 0,
        },
        c::Packet::SubAck(a) => ServerPacket::SubAck {
            pkid: a.pkid,
            codes: a
                .return_codes
                .into_iter()
                .map(|c| match c {
                    c::SubscribeReasonCode::Success(q) => q as u8,
                    c::SubscribeReasonCode::Failure => 0x80,
                })
                .collect(),
        },
        c::Packet::UnsubAck(a) => ServerPacket::UnsubAck {
            pkid: a.pkid,
            codes: Vec::new(),
        },
        c::Packet::PingResp => ServerPacket::PingResp,
        other => panic!("the server sent a packet only a client sends: {other:?}"),
    }
}

fn connack_code_v5(c: rumqttc::v5::mqttbytes::v5::ConnectReturnCode) -> u8 {
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as R;
    match c {
        R::Success => 0x00,
        R::RefusedProtocolVersion => 0x01,
        R::BadClientId => 0x02,
        R::ServiceUnavailable => 0x03,
        R::UnspecifiedError => 0x80,
        R::MalformedPacket => 0x81,
        R::ProtocolError => 0x82,
        R::ImplementationSpecificError => 0x83,
        R::UnsupportedProtocolVersion => 0x84,
        R::ClientIdentifierNotValid => 0x85,
        R::BadUserNamePassword => 0x86,
        R::NotAuthorized => 0x87,
        R::ServerUnavailable => 0x88,
        R::ServerBusy => 0x89,
        R::Banned => 0x8A,
        R::BadAuthenticationMethod => 0x8C,
        R::TopicNameInvalid => 0x90,
        R::PacketTooLarge => 0x95,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
        R::RetainNotSupported => 0x9A,
        R::QoSNotSupported => 0x9B,
        R::UseAnotherServer => 0x9C,
        R::ServerMoved => 0x9D,
        R::ConnectionRateExceeded => 0x9F,
    }
}

fn puback_code(r: rumqttc::v5::mqttbytes::v5::PubAckReason) -> u8 {
    use rumqttc::v5::mqttbytes::v5::PubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn pubrec_code(r: rumqttc::v5::mqttbytes::v5::PubRecReason) -> u8 {
    use rumqttc::v5::mqttbytes::v5::PubRecReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn suback_code(r: rumqttc::v5::mqttbytes::v5::SubscribeReasonCode) -> u8 {
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
    match r {
        R::Success(q) => q as u8,
        R::Failure | R::Unspecified => 0x80,
        R::ImplementationSpecific => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicFilterInvalid => 0x8F,
        R::PkidInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::SharedSubscriptionsNotSupported => 0x9E,
        R::SubscriptionIdNotSupported => 0xA1,
        R::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

fn unsuback_code(r: rumqttc::v5::mqttbytes::v5::UnsubAckReason) -> u8 {
    use rumqttc::v5::mqttbytes::v5::UnsubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoSubscriptionExisted => 0x11,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicFilterInvalid => 0x8F,
        R::PacketIdentifierInUse => 0x91,
    }
}
