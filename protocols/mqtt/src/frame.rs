//! One view of MQTT 3.1, 3.1.1 and 5.0 packets over `rmqtt-codec`'s types.
//!
//! The session layer is written once, against MQTT 5 semantics: incoming v3 packets
//! are lifted to [`In`], and outgoing [`Out`] packets are lowered to v3 (dropping
//! properties and reason strings, which v3 cannot carry).

use bytes::Bytes;
use bytestring::ByteString;
use rmqtt_codec::types::{Publish, QoS};
use rmqtt_codec::v5::{PublishProperties, RetainHandling, SubscriptionOptions, UserProperties};
use rmqtt_codec::{MqttPacket, v3, v5};
use std::num::NonZeroU16;

/// A will message from CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    pub payload: Bytes,
    /// MQTT 5 Will Delay Interval, seconds.
    pub delay: u32,
    /// MQTT 5 will properties (as publish properties).
    pub properties: PublishProperties,
}

/// CONNECT, whatever the version.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// 3 (3.1), 4 (3.1.1) or 5.
    pub level: u8,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub session_expiry: u32,
    pub receive_max: u16,
    pub max_packet_size: Option<u32>,
    pub topic_alias_max: u16,
    pub request_problem_info: bool,
    pub auth_method: Option<String>,
    /// MQTT 5 Authentication Data (the first message of `auth_method`).
    pub auth_data: Option<Bytes>,
    /// MQTT 5 Request Response Information.
    pub request_response_info: bool,
    pub will: Option<Will>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// A 3.1/3.1.1 CONNECT with the bridge bit on its protocol level (0x83 or
    /// 0x84, mosquitto's `try_private`): its subscriptions are No Local and
    /// Retain As Published, as mosquitto treats a bridge's.
    pub bridge: bool,
}

/// An incoming packet after CONNECT.
#[derive(Debug)]
pub enum In {
    Connect(Box<ConnectInfo>),
    Publish(Box<Publish>),
    PubAck(u16),
    PubRec(u16, u8),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        pkid: u16,
        id: Option<u32>,
        filters: Vec<(String, SubscriptionOptions)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    Ping,
    Disconnect {
        reason: u8,
        session_expiry: Option<u32>,
    },
    /// AUTH (enhanced authentication): its reason code, method and data.
    Auth {
        reason: u8,
        method: Option<String>,
        data: Option<Bytes>,
    },
    /// A packet only a server sends (CONNACK, SUBACK, ...).
    ServerOnly,
}

/// An outgoing packet.
#[derive(Debug, Clone)]
pub enum Out {
    ConnAck(Box<v5::ConnectAck>),
    Publish(Box<Publish>),
    PubAck(u16, u8, Option<String>),
    PubRec(u16, u8, Option<String>),
    PubRel(u16, u8),
    PubComp(u16, u8),
    SubAck(u16, Vec<u8>, Option<String>),
    UnsubAck(u16, Vec<u8>),
    PingResp,
    Disconnect(u8, Option<String>),
    /// AUTH (MQTT 5 re-authentication): reason code, method, data.
    Auth(u8, &'static str, Bytes),
}

fn nz(pkid: u16) -> NonZeroU16 {
    NonZeroU16::new(pkid).unwrap_or(NonZeroU16::MIN)
}

/// Lifts a decoded packet.
pub fn lift(packet: MqttPacket) -> In {
    match packet {
        MqttPacket::V3(p) => lift_v3(p),
        MqttPacket::V5(p) => lift_v5(p),
        MqttPacket::Version(_) => In::ServerOnly,
    }
}

fn lift_v3(p: v3::Packet) -> In {
    use v3::Packet as P;
    match p {
        P::Connect(c) => In::Connect(Box::new(ConnectInfo {
            level: c.protocol.level(),
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            // 3.1.1: a persistent session never expires; a clean one ends with the
            // connection.
            session_expiry: if c.clean_session { 0 } else { u32::MAX },
            receive_max: u16::MAX,
            max_packet_size: None,
            topic_alias_max: 0,
            request_problem_info: true,
            auth_method: None,
            auth_data: None,
            request_response_info: false,
            will: c.last_will.map(|w| Will {
                qos: w.qos,
                retain: w.retain,
                topic: w.topic.to_string(),
                payload: w.message,
                delay: 0,
                properties: PublishProperties::default(),
            }),
            client_id: c.client_id.to_string(),
            username: c.username.map(|u| u.to_string()),
            password: c.password,
            bridge: false,
        })),
        P::Publish(p) => In::Publish(p),
        P::PublishAck { packet_id } => In::PubAck(packet_id.get()),
        P::PublishReceived { packet_id } => In::PubRec(packet_id.get(), 0),
        P::PublishRelease { packet_id } => In::PubRel(packet_id.get()),
        P::PublishComplete { packet_id } => In::PubComp(packet_id.get()),
        P::Subscribe {
            packet_id,
            topic_filters,
        } => In::Subscribe {
            pkid: packet_id.get(),
            id: None,
            filters: topic_filters
                .into_iter()
                .map(|(f, qos)| {
                    (
                        f.to_string(),
                        SubscriptionOptions {
                            qos,
                            no_local: false,
                            retain_as_published: false,
                            retain_handling: RetainHandling::AtSubscribe,
                        },
                    )
                })
                .collect(),
        },
        P::Unsubscribe {
            packet_id,
            topic_filters,
        } => In::Unsubscribe {
            pkid: packet_id.get(),
            filters: topic_filters.into_iter().map(|f| f.to_string()).collect(),
        },
        P::PingRequest => In::Ping,
        P::Disconnect => In::Disconnect {
            reason: 0,
            session_expiry: None,
        },
        P::ConnectAck(_) | P::SubscribeAck { .. } | P::UnsubscribeAck { .. } | P::PingResponse => {
            In::ServerOnly
        }
    }
}

fn lift_v5(p: v5::Packet) -> In {
    use v5::Packet as P;
    match p {
        P::Connect(c) => In::Connect(Box::new(ConnectInfo {
            level: 5,
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            session_expiry: c.session_expiry_interval_secs,
            receive_max: c.receive_max.map(|r| r.get()).unwrap_or(u16::MAX),
            max_packet_size: c.max_packet_size.map(|m| m.get()),
            topic_alias_max: c.topic_alias_max,
            request_problem_info: c.request_problem_info,
            auth_method: c.auth_method.map(|m| m.to_string()),
            auth_data: c.auth_data,
            request_response_info: c.request_response_info,
            will: c.last_will.map(|w| Will {
                qos: w.qos,
                retain: w.retain,
                topic: w.topic.to_string(),
                payload: w.message,
                delay: w.will_delay_interval_sec.unwrap_or(0),
                properties: PublishProperties {
                    correlation_data: w.correlation_data,
                    message_expiry_interval: w.message_expiry_interval,
                    content_type: w.content_type,
                    user_properties: w.user_properties,
                    is_utf8_payload: w.is_utf8_payload.unwrap_or(false),
                    response_topic: w.response_topic,
                    ..Default::default()
                },
            }),
            client_id: c.client_id.to_string(),
            username: c.username.map(|u| u.to_string()),
            password: c.password,
            bridge: false,
        })),
        P::Publish(p) => In::Publish(p),
        P::PublishAck(a) => In::PubAck(a.packet_id.get()),
        P::PublishReceived(a) => In::PubRec(a.packet_id.get(), u8::from(a.reason_code)),
        P::PublishRelease(a) => In::PubRel(a.packet_id.get()),
        P::PublishComplete(a) => In::PubComp(a.packet_id.get()),
        P::Subscribe(s) => In::Subscribe {
            pkid: s.packet_id.get(),
            id: s.id.map(|i| i.get()),
            filters: s
                .topic_filters
                .into_iter()
                .map(|(f, o)| (f.to_string(), o))
                .collect(),
        },
        P::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.packet_id.get(),
            filters: u.topic_filters.into_iter().map(|f| f.to_string()).collect(),
        },
        P::PingRequest => In::Ping,
        P::Disconnect(d) => In::Disconnect {
            reason: u8::from(d.reason_code),
            session_expiry: d.session_expiry_interval_secs,
        },
        P::Auth(a) => In::Auth {
            reason: u8::from(a.reason_code),
            method: a.auth_method.map(|m| m.to_string()),
            data: a.auth_data,
        },
        P::ConnectAck(_) | P::SubscribeAck(_) | P::UnsubscribeAck(_) | P::PingResponse => {
            In::ServerOnly
        }
    }
}

fn rs(s: Option<String>) -> Option<ByteString> {
    s.map(ByteString::from)
}

/// Lowers an outgoing packet to the connection's version; `None` when v3 has no
/// such packet (a server DISCONNECT: v3 just closes).
pub fn lower(out: Out, v5: bool) -> Option<MqttPacket> {
    if v5 {
        lower_v5(out).map(MqttPacket::V5)
    } else {
        lower_v3(out).map(MqttPacket::V3)
    }
}

fn lower_v5(out: Out) -> Option<v5::Packet> {
    use v5::Packet as P;
    let ack = |pkid: u16, code: u8, reason: Option<String>| v5::PublishAck {
        packet_id: nz(pkid),
        reason_code: v5::PublishAckReason::try_from(code)
            .unwrap_or(v5::PublishAckReason::UnspecifiedError),
        properties: UserProperties::new(),
        reason_string: rs(reason),
    };
    let ack2 = |pkid: u16, code: u8| v5::PublishAck2 {
        packet_id: nz(pkid),
        reason_code: v5::PublishAck2Reason::try_from(code)
            .unwrap_or(v5::PublishAck2Reason::PacketIdNotFound),
        properties: UserProperties::new(),
        reason_string: None,
    };
    Some(match out {
        Out::ConnAck(c) => P::ConnectAck(c),
        Out::Publish(p) => P::Publish(p),
        Out::PubAck(pkid, code, reason) => P::PublishAck(ack(pkid, code, reason)),
        Out::PubRec(pkid, code, reason) => P::PublishReceived(ack(pkid, code, reason)),
        Out::PubRel(pkid, code) => P::PublishRelease(ack2(pkid, code)),
        Out::PubComp(pkid, code) => P::PublishComplete(ack2(pkid, code)),
        Out::SubAck(pkid, codes, reason) => P::SubscribeAck(v5::SubscribeAck {
            packet_id: nz(pkid),
            properties: UserProperties::new(),
            reason_string: rs(reason),
            status: codes
                .into_iter()
                .map(|c| {
                    v5::SubscribeAckReason::try_from(c)
                        .unwrap_or(v5::SubscribeAckReason::UnspecifiedError)
                })
                .collect(),
        }),
        Out::UnsubAck(pkid, codes) => P::UnsubscribeAck(v5::UnsubscribeAck {
            packet_id: nz(pkid),
            properties: UserProperties::new(),
            reason_string: None,
            status: codes
                .into_iter()
                .map(|c| {
                    v5::UnsubscribeAckReason::try_from(c)
                        .unwrap_or(v5::UnsubscribeAckReason::UnspecifiedError)
                })
                .collect(),
        }),
        Out::PingResp => P::PingResponse,
        Out::Disconnect(code, reason) => P::Disconnect(v5::Disconnect {
            reason_code: v5::DisconnectReasonCode::try_from(code)
                .unwrap_or(v5::DisconnectReasonCode::UnspecifiedError),
            session_expiry_interval_secs: None,
            server_reference: None,
            reason_string: rs(reason),
            user_properties: UserProperties::new(),
        }),
        Out::Auth(code, method, data) => P::Auth(v5::Auth {
            reason_code: v5::AuthReasonCode::try_from(code)
                .unwrap_or(v5::AuthReasonCode::ContinueAuth),
            auth_method: Some(bytestring::ByteString::from_static(method)),
            auth_data: Some(data),
            ..Default::default()
        }),
    })
}

fn lower_v3(out: Out) -> Option<v3::Packet> {
    use v3::Packet as P;
    Some(match out {
        Out::ConnAck(c) => P::ConnectAck(v3::ConnectAck {
            session_present: c.session_present,
            return_code: v3_connack_code(u8::from(c.reason_code)),
        }),
        Out::Publish(mut p) => {
            p.properties = None;
            P::Publish(p)
        }
        Out::PubAck(pkid, _, _) => P::PublishAck {
            packet_id: nz(pkid),
        },
        Out::PubRec(pkid, _, _) => P::PublishReceived {
            packet_id: nz(pkid),
        },
        Out::PubRel(pkid, _) => P::PublishRelease {
            packet_id: nz(pkid),
        },
        Out::PubComp(pkid, _) => P::PublishComplete {
            packet_id: nz(pkid),
        },
        Out::SubAck(pkid, codes, _) => P::SubscribeAck {
            packet_id: nz(pkid),
            status: codes
                .into_iter()
                .map(|c| match c {
                    0 => v3::SubscribeReturnCode::Success(QoS::AtMostOnce),
                    1 => v3::SubscribeReturnCode::Success(QoS::AtLeastOnce),
                    2 => v3::SubscribeReturnCode::Success(QoS::ExactlyOnce),
                    _ => v3::SubscribeReturnCode::Failure,
                })
                .collect(),
        },
        Out::UnsubAck(pkid, _) => P::UnsubscribeAck {
            packet_id: nz(pkid),
        },
        Out::PingResp => P::PingResponse,
        Out::Disconnect(..) | Out::Auth(..) => return None,
    })
}

/// Maps an MQTT 5 CONNACK reason code to the nearest 3.1.1 return code.
fn v3_connack_code(code: u8) -> v3::ConnectAckReason {
    use v3::ConnectAckReason as R;
    match code {
        0 => R::ConnectionAccepted,
        0x84 => R::UnacceptableProtocolVersion,
        0x85 => R::IdentifierRejected,
        0x86 => R::BadUserNameOrPassword,
        0x87 | 0x8A | 0x8C => R::NotAuthorized,
        _ => R::ServiceUnavailable,
    }
}

/// What the start of a connection's bytes says about the bridge bit.
#[derive(Debug, PartialEq, Eq)]
pub enum BridgeBit {
    /// Not all of the fixed header and protocol name are in yet.
    NeedMore,
    /// A CONNECT whose protocol level byte, at this offset, is 0x83 or 0x84.
    At(usize),
    /// Anything else (the version codec judges it).
    No,
}

/// Finds mosquitto's bridge bit: a CONNECT with protocol level 0x80 | 3 or
/// 0x80 | 4 (`try_private`). The caller clears it before the version codec
/// reads the level.
pub fn bridge_bit(buf: &[u8]) -> BridgeBit {
    let Some(&first) = buf.first() else {
        return BridgeBit::NeedMore;
    };
    if first != 0x10 {
        return BridgeBit::No;
    }
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return BridgeBit::NeedMore;
        };
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return BridgeBit::No;
        }
    }
    let (Some(&hi), Some(&lo)) = (buf.get(i), buf.get(i + 1)) else {
        return BridgeBit::NeedMore;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if name_len > 6 {
        return BridgeBit::No;
    }
    match buf.get(i + 2 + name_len) {
        None => BridgeBit::NeedMore,
        Some(0x83 | 0x84) => BridgeBit::At(i + 2 + name_len),
        Some(_) => BridgeBit::No,
    }
}

/// The flags byte of the CONNECT at the start of `buf`, once it is buffered (the
/// version codec has checked the fixed header and protocol name before).
pub fn connect_flags(buf: &[u8]) -> Option<u8> {
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        i += 1;
        if b & 0x80 == 0 || i > 4 {
            break;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]));
    buf.get(i + 2 + name_len + 1).copied()
}

/// Checks the CONNECT flags: the reserved bit (MQTT-3.1.2-3), will QoS and retain
/// without a will (MQTT-3.1.2-11, -13), will QoS 3 (MQTT-3.1.2-14) and, before
/// MQTT 5, a password without a user name (MQTT-3.1.2-22).
pub fn check_connect_flags(flags: u8, v5: bool) -> Result<(), &'static str> {
    let will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    if flags & 0x01 != 0 {
        return Err("reserved CONNECT flag is set");
    }
    if !will && (will_qos != 0 || will_retain) {
        return Err("will QoS or will retain set without a will");
    }
    if will_qos == 3 {
        return Err("will QoS 3");
    }
    if !v5 && flags & 0x40 != 0 && flags & 0x80 == 0 {
        return Err("password flag without the user name flag");
    }
    Ok(())
}

/// A v5 CONNACK with our defaults.
pub fn connack(reason: u8) -> v5::ConnectAck {
    v5::ConnectAck {
        reason_code: v5::ConnectAckReason::try_from(reason)
            .unwrap_or(v5::ConnectAckReason::UnspecifiedError),
        ..Default::default()
    }
}

/// A QoS as a number.
pub fn qos_num(q: QoS) -> u8 {
    q.value()
}

/// A number as a QoS (clamped).
pub fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The largest remaining length of a packet no larger than `max_packet` bytes.
///
/// A client's Maximum Packet Size counts the whole packet, fixed header included
/// (MQTT 5 §3.1.2.11.4). The codec's outbound limit bounds the remaining length,
/// and its setter takes off the largest fixed header (5 bytes) whatever the
/// packet's size: given the client's figure as it is, a message whose packet
/// fits with up to 3 bytes to spare was discarded (MQTT-3.1.2-25 only allows
/// that for a packet that does not fit). 0 when not even an empty packet fits.
pub fn max_remaining_length(max_packet: u32) -> u32 {
    fn varint_len(n: u32) -> u32 {
        match n {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            _ => 4,
        }
    }
    let mut rem = max_packet.saturating_sub(2);
    while rem > 0 && rem + 1 + varint_len(rem) > max_packet {
        rem -= 1;
    }
    rem
}

#[cfg(test)]
mod max_packet_tests {
    use super::*;

    /// First byte, the remaining length's bytes (7 bits each), the rest.
    fn total(rem: u32) -> u32 {
        let mut n = rem;
        let mut len = 1;
        while n >= 128 {
            n /= 128;
            len += 1;
        }
        1 + len + rem
    }

    #[test]
    fn the_largest_packet_allowed_fills_the_client_maximum_and_one_more_byte_does_not_fit() {
        for max in [
            3u32,
            64,
            129,
            130,
            131,
            16_386,
            16_387,
            16_388,
            2_097_155,
            268_435_460,
        ] {
            let rem = max_remaining_length(max);
            assert!(total(rem) <= max, "{max}: {rem} is too long");
            assert!(total(rem + 1) > max, "{max}: {} still fits", rem + 1);
        }
        assert_eq!(max_remaining_length(2), 0);
        assert_eq!(max_remaining_length(1), 0);
    }
}

#[cfg(test)]
mod connect_flag_tests {
    use super::*;

    #[test]
    fn the_bridge_bit_is_found_on_3_1_and_3_1_1_connects_only() {
        // 3.1.1 with the bit (mosquitto's try_private): the level's offset.
        let c = b"\x10\x10\x00\x04MQTT\x84\x02\x00\x3c\x00\x04test";
        assert_eq!(bridge_bit(c), BridgeBit::At(8));
        // 3.1 ("MQIsdp") with a two-byte remaining length.
        let c = b"\x10\x80\x01\x00\x06MQIsdp\x83\x02";
        assert_eq!(bridge_bit(c), BridgeBit::At(11));
        // Not yet buffered far enough, at every cut.
        let c = b"\x10\x10\x00\x04MQTT\x84";
        for cut in 0..c.len() {
            assert_eq!(bridge_bit(&c[..cut]), BridgeBit::NeedMore, "cut {cut}");
        }
        // Plain levels, MQTT 5 with the bit, another packet, a long name, a
        // remaining length of more than 4 bytes: left to the version codec.
        assert_eq!(bridge_bit(b"\x10\x10\x00\x04MQTT\x04"), BridgeBit::No);
        assert_eq!(bridge_bit(b"\x10\x10\x00\x04MQTT\x85"), BridgeBit::No);
        assert_eq!(bridge_bit(b"\x30\x10\x00\x04MQTT\x84"), BridgeBit::No);
        assert_eq!(bridge_bit(b"\x10\x10\x00\x07MQTTTTT\x84"), BridgeBit::No);
        assert_eq!(bridge_bit(b"\x10\xff\xff\xff\xff\x01"), BridgeBit::No);
    }

    #[test]
    fn flags_byte_is_found_once_buffered() {
        // CONNECT, remaining length 16, "MQTT", level 4, flags 0xC2.
        let c = b"\x10\x10\x00\x04MQTT\x04\xc2\x00\x3c\x00\x04test";
        assert_eq!(connect_flags(c), Some(0xC2));
        assert_eq!(connect_flags(&c[..8]), None);
        // Two-byte remaining length, "MQIsdp".
        let c = b"\x10\x80\x01\x00\x06MQIsdp\x03\x02";
        assert_eq!(connect_flags(c), Some(0x02));
    }

    #[test]
    fn wrong_flag_combinations_are_refused() {
        assert!(check_connect_flags(0x02, false).is_ok());
        assert!(check_connect_flags(0x02 | 0x04 | 0x10 | 0x20 | 0xC0, false).is_ok());
        assert!(check_connect_flags(0x03, true).is_err(), "reserved bit");
        assert!(
            check_connect_flags(0x04 | 0x18, true).is_err(),
            "will QoS 3"
        );
        assert!(
            check_connect_flags(0x08, true).is_err(),
            "will QoS without will"
        );
        assert!(
            check_connect_flags(0x20, false).is_err(),
            "will retain without will"
        );
        assert!(
            check_connect_flags(0x42, false).is_err(),
            "3.1.1 password alone"
        );
        assert!(check_connect_flags(0x42, true).is_ok(), "MQTT 5 allows it");
    }
}
