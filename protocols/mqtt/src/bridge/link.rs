//! One side of a bridge: an MQTT client connection over any byte stream, with
//! rumqttc's packet codecs (`mqttbytes`) and no state of its own beyond the read
//! buffer. The bridge decides what is sent and acknowledged; nothing here resends
//! or acknowledges behind its back (rumqttc's event loop would).
//!
//! The bridge speaks MQTT 5 packets. A link to a 3.1.1 broker turns them into
//! 3.1.1 packets on the way out and back on the way in: properties are dropped,
//! and reason codes are success or the 3.1.1 return code's MQTT 5 twin.

use super::BridgeError;
use bytes::{BufMut, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::Error as CodecError;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PubAck, PubAckReason, PubComp,
    PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason, Publish, SubAck,
    SubscribeReasonCode,
};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream a link runs over: TCP to the remote broker, an in-memory pipe
/// to this one.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How long a write may block before the link is given up (and reconnected).
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// The largest packet read from a 3.1.1 broker (MQTT's own limit).
const MAX_V4_PACKET: usize = 268_435_455 + 5;

/// The protocol a link speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    V5,
    /// MQTT 3.1.1; `bridge`: the CONNECT says protocol level 0x84, the bridge
    /// bit mosquitto's `try_private` sets, so that the broker neither sends
    /// back what the bridge published nor clears the retain flag.
    V311 {
        bridge: bool,
        /// MQTT 3.1: the same packets, but the CONNECT names protocol
        /// `MQIsdp`, level 3.
        v31: bool,
    },
}

pub(crate) struct Link {
    /// "local" or "remote", for logs and errors.
    pub side: &'static str,
    wire: Wire,
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The largest packet the peer accepts (its Maximum Packet Size).
    max_out: Option<u32>,
}

impl Link {
    /// Sends CONNECT and waits for a successful CONNACK.
    pub async fn connect(
        side: &'static str,
        wire: Wire,
        stream: Box<dyn Stream>,
        connect: Connect,
        login: Option<Login>,
        limit: Duration,
    ) -> Result<(Link, ConnAck), BridgeError> {
        let mut link = Link {
            side,
            wire,
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            max_out: None,
        };
        link.send(&Packet::Connect(connect, None, login)).await?;
        let ack = match tokio::time::timeout(limit, link.read()).await {
            Err(_) => return Err(BridgeError::Timeout(side, "CONNACK")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Packet::ConnAck(ack))) => ack,
            Ok(Ok(other)) => {
                return Err(BridgeError::Protocol(
                    side,
                    format!("expected CONNACK, got {other:?}"),
                ));
            }
        };
        if ack.code != ConnectReturnCode::Success {
            return Err(BridgeError::Refused(side, ack.code));
        }
        link.max_out = ack.properties.as_ref().and_then(|p| p.max_packet_size);
        Ok((link, ack))
    }

    /// The next packet. Cancel safe: bytes read stay buffered.
    pub async fn read(&mut self) -> Result<Packet, BridgeError> {
        loop {
            if !self.rbuf.is_empty() {
                let read = match self.wire {
                    Wire::V5 => match Packet::read(&mut self.rbuf, None) {
                        Ok(p) => Some(Ok(p)),
                        Err(CodecError::InsufficientBytes(_)) => None,
                        Err(e) => Some(Err(e.to_string())),
                    },
                    Wire::V311 { .. } => match v4::Packet::read(&mut self.rbuf, MAX_V4_PACKET) {
                        Ok(p) => Some(from_v4(p)),
                        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => None,
                        Err(e) => Some(Err(e.to_string())),
                    },
                };
                match read {
                    Some(Ok(p)) => return Ok(p),
                    Some(Err(e)) => return Err(BridgeError::Protocol(self.side, e)),
                    None => {}
                }
            }
            self.rbuf.reserve(4096);
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err(BridgeError::Closed(self.side)),
                Ok(_) => {}
                Err(e) => return Err(BridgeError::Io(self.side, e)),
            }
        }
    }

    /// Writes one packet out. A packet over the peer's Maximum Packet Size is
    /// `Err(TooLarge)`: the caller drops that message, the link stays up.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), BridgeError> {
        self.wbuf.clear();
        match self.wire {
            Wire::V5 => match packet.write(&mut self.wbuf, self.max_out) {
                Ok(_) => {}
                Err(CodecError::OutgoingPacketTooLarge { pkt_size, max }) => {
                    return Err(BridgeError::TooLarge(pkt_size, max));
                }
                Err(e) => return Err(BridgeError::Protocol(self.side, e.to_string())),
            },
            Wire::V311 { bridge, v31 } => {
                let out = to_v4(packet).map_err(|e| BridgeError::Protocol(self.side, e))?;
                out.write(&mut self.wbuf, usize::MAX)
                    .map_err(|e| BridgeError::Protocol(self.side, e.to_string()))?;
                if matches!(out, v4::Packet::Connect(_)) {
                    if v31 {
                        self.wbuf = connect_as_v31(&self.wbuf);
                    }
                    if bridge {
                        let level = connect_level_offset(&self.wbuf);
                        self.wbuf[level] |= 0x80;
                    }
                }
            }
        }
        let side = self.side;
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(WRITE_DEADLINE, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BridgeError::Io(side, e)),
            Err(_) => Err(BridgeError::Timeout(side, "a write")),
        }
    }
}

/// How many bytes an encoded packet's remaining length takes (1 to 4).
fn remaining_length_bytes(packet: &[u8]) -> usize {
    packet[1..]
        .iter()
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(4, |i| i + 1)
}

/// Where the protocol level byte is in an encoded CONNECT: after the fixed
/// header's type byte, its remaining length (1 to 4 bytes) and the protocol
/// name (its 2-byte length and "MQTT" or "MQIsdp").
fn connect_level_offset(connect: &[u8]) -> usize {
    let at = 1 + remaining_length_bytes(connect);
    let name = u16::from_be_bytes([connect[at], connect[at + 1]]) as usize;
    at + 2 + name
}

/// A 3.1.1 CONNECT made a 3.1 one: protocol name `MQIsdp` instead of `MQTT`
/// and level 3 instead of 4 (the rest of the packet is the same in both).
fn connect_as_v31(connect: &[u8]) -> BytesMut {
    let at = 1 + remaining_length_bytes(connect);
    // The variable header after the name and level: flags, keep alive, payload.
    let rest = &connect[at + 7..];
    let len = 8 + 1 + rest.len();
    let mut out = BytesMut::with_capacity(len + 5);
    out.put_u8(connect[0]);
    let mut n = len;
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
    out.put_slice(&[0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3]);
    out.put_slice(rest);
    out
}

fn qos_to_v4(q: QoS) -> rumqttc::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos_from_v4(q: rumqttc::mqttbytes::QoS) -> QoS {
    match q {
        rumqttc::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// A bridge's MQTT 5 packet as MQTT 3.1.1 (the bridge sends no others).
fn to_v4(packet: &Packet) -> Result<v4::Packet, String> {
    Ok(match packet {
        Packet::Connect(c, _, login) => v4::Packet::Connect(v4::Connect {
            protocol: rumqttc::mqttbytes::Protocol::V4,
            keep_alive: c.keep_alive,
            client_id: c.client_id.clone(),
            clean_session: c.clean_start,
            last_will: None,
            login: login
                .as_ref()
                .map(|l| v4::Login::new(l.username.clone(), l.password.clone())),
        }),
        Packet::Publish(p) => v4::Packet::Publish(v4::Publish {
            dup: p.dup,
            qos: qos_to_v4(p.qos),
            retain: p.retain,
            topic: String::from_utf8(p.topic.to_vec()).map_err(|_| "topic is not UTF-8")?,
            pkid: p.pkid,
            payload: p.payload.clone(),
        }),
        Packet::PubAck(a) => v4::Packet::PubAck(v4::PubAck::new(a.pkid)),
        Packet::PubRec(a) => v4::Packet::PubRec(v4::PubRec::new(a.pkid)),
        Packet::PubRel(a) => v4::Packet::PubRel(v4::PubRel::new(a.pkid)),
        Packet::PubComp(a) => v4::Packet::PubComp(v4::PubComp::new(a.pkid)),
        Packet::Subscribe(s) => v4::Packet::Subscribe(v4::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| v4::SubscribeFilter::new(f.path.clone(), qos_to_v4(f.qos)))
                .collect(),
        }),
        Packet::PingReq(_) => v4::Packet::PingReq,
        Packet::Disconnect(_) => v4::Packet::Disconnect,
        other => return Err(format!("{other:?} has no MQTT 3.1.1 form here")),
    })
}

/// A 3.1.1 packet from the broker as the MQTT 5 packet the bridge reads.
fn from_v4(packet: v4::Packet) -> Result<Packet, String> {
    Ok(match packet {
        v4::Packet::ConnAck(a) => Packet::ConnAck(ConnAck {
            session_present: a.session_present,
            code: match a.code {
                v4::ConnectReturnCode::Success => ConnectReturnCode::Success,
                v4::ConnectReturnCode::RefusedProtocolVersion => {
                    ConnectReturnCode::UnsupportedProtocolVersion
                }
                v4::ConnectReturnCode::BadClientId => ConnectReturnCode::ClientIdentifierNotValid,
                v4::ConnectReturnCode::ServiceUnavailable => ConnectReturnCode::ServerUnavailable,
                v4::ConnectReturnCode::BadUserNamePassword => {
                    ConnectReturnCode::BadUserNamePassword
                }
                v4::ConnectReturnCode::NotAuthorized => ConnectReturnCode::NotAuthorized,
            },
            properties: None,
        }),
        v4::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos_from_v4(p.qos),
            retain: p.retain,
            topic: p.topic.into_bytes().into(),
            pkid: p.pkid,
            payload: p.payload,
            properties: None,
        }),
        v4::Packet::PubAck(a) => Packet::PubAck(PubAck {
            pkid: a.pkid,
            reason: PubAckReason::Success,
            properties: None,
        }),
        v4::Packet::PubRec(a) => Packet::PubRec(PubRec {
            pkid: a.pkid,
            reason: PubRecReason::Success,
            properties: None,
        }),
        v4::Packet::PubRel(a) => Packet::PubRel(PubRel {
            pkid: a.pkid,
            reason: PubRelReason::Success,
            properties: None,
        }),
        v4::Packet::PubComp(a) => Packet::PubComp(PubComp {
            pkid: a.pkid,
            reason: PubCompReason::Success,
            properties: None,
        }),
        v4::Packet::SubAck(a) => Packet::SubAck(SubAck {
            pkid: a.pkid,
            return_codes: a
                .return_codes
                .into_iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => {
                        SubscribeReasonCode::Success(qos_from_v4(q))
                    }
                    v4::SubscribeReasonCode::Failure => SubscribeReasonCode::Failure,
                })
                .collect(),
            properties: None,
        }),
        v4::Packet::PingResp => Packet::PingResp(rumqttc::v5::mqttbytes::v5::PingResp),
        other => return Err(format!("unexpected {other:?} from a 3.1.1 broker")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_bit_lands_on_the_protocol_level() {
        let connect = Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: "b".repeat(200),
                clean_start: false,
                properties: None,
            },
            None,
            None,
        );
        let v4 = to_v4(&connect).unwrap();
        let mut buf = BytesMut::new();
        v4.write(&mut buf, usize::MAX).unwrap();
        // 212 bytes of remaining length: two length bytes.
        assert_eq!(buf[1] & 0x80, 0x80);
        let at = connect_level_offset(&buf);
        assert_eq!(&buf[at - 4..at], b"MQTT");
        assert_eq!(buf[at], 4);
    }

    #[test]
    fn a_31_connect_names_mqisdp_level_3_with_the_rest_unchanged() {
        for id_len in [1, 23, 130] {
            let connect = Packet::Connect(
                Connect {
                    keep_alive: 30,
                    client_id: "c".repeat(id_len),
                    clean_start: false,
                    properties: None,
                },
                None,
                Some(Login {
                    username: "u".into(),
                    password: "p".into(),
                }),
            );
            let mut v311 = BytesMut::new();
            to_v4(&connect)
                .unwrap()
                .write(&mut v311, usize::MAX)
                .unwrap();
            let v31 = connect_as_v31(&v311);
            // mosquitto's decoder of 3.1 CONNECTs, in effect: the name, the
            // level, then the same flags, keep alive and payload.
            let at = 1 + remaining_length_bytes(&v31);
            assert_eq!(&v31[at..at + 8], b"\0\x06MQIsdp");
            assert_eq!(v31[at + 8], 3);
            assert_eq!(connect_level_offset(&v31), at + 8);
            let at311 = 1 + remaining_length_bytes(&v311);
            assert_eq!(&v31[at + 9..], &v311[at311 + 7..]);
            // The remaining length says what follows it.
            let mut len = 0usize;
            for (i, b) in v31[1..at].iter().enumerate() {
                len |= ((b & 0x7f) as usize) << (7 * i);
            }
            assert_eq!(len, v31.len() - at, "client id of {id_len}");
        }
    }

    #[test]
    fn a_311_exchange_reads_back_as_mqtt_5() {
        let mut buf = BytesMut::new();
        v4::Packet::PubRec(v4::PubRec::new(7))
            .write(&mut buf, usize::MAX)
            .unwrap();
        v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::RefusedProtocolVersion,
            false,
        ))
        .write(&mut buf, usize::MAX)
        .unwrap();
        let rec = from_v4(v4::Packet::read(&mut buf, MAX_V4_PACKET).unwrap()).unwrap();
        assert!(matches!(rec, Packet::PubRec(PubRec { pkid: 7, .. })));
        let ack = from_v4(v4::Packet::read(&mut buf, MAX_V4_PACKET).unwrap()).unwrap();
        assert!(matches!(
            ack,
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::UnsupportedProtocolVersion,
                ..
            })
        ));
    }
}
