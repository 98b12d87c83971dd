//! One side of a bridge: an MQTT 5 client connection over any byte stream, with
//! rumqttc's packet codec (`mqttbytes`) and no state of its own beyond the read
//! buffer. The bridge decides what is sent and acknowledged; nothing here resends
//! or acknowledges behind its back (rumqttc's event loop would).

use super::BridgeError;
use bytes::BytesMut;
use rumqttc::v5::mqttbytes::Error as CodecError;
use rumqttc::v5::mqttbytes::v5::{ConnAck, Connect, ConnectReturnCode, Login, Packet};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream a link runs over: TCP to the remote broker, an in-memory pipe
/// to this one.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How long a write may block before the link is given up (and reconnected).
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) struct Link {
    /// "local" or "remote", for logs and errors.
    pub side: &'static str,
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The largest packet the peer accepts (its Maximum Packet Size).
    max_out: Option<u32>,
    next_pkid: u16,
}

impl Link {
    /// Sends CONNECT and waits for a successful CONNACK.
    pub async fn connect(
        side: &'static str,
        stream: Box<dyn Stream>,
        connect: Connect,
        login: Option<Login>,
        limit: Duration,
    ) -> Result<(Link, ConnAck), BridgeError> {
        let mut link = Link {
            side,
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            max_out: None,
            next_pkid: 0,
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
            return Err(BridgeError::Refused(side, format!("{:?}", ack.code)));
        }
        link.max_out = ack.properties.as_ref().and_then(|p| p.max_packet_size);
        Ok((link, ack))
    }

    /// The next packet. Cancel safe: bytes read stay buffered.
    pub async fn read(&mut self) -> Result<Packet, BridgeError> {
        loop {
            if !self.rbuf.is_empty() {
                match Packet::read(&mut self.rbuf, None) {
                    Ok(p) => return Ok(p),
                    Err(CodecError::InsufficientBytes(_)) => {}
                    Err(e) => return Err(BridgeError::Protocol(self.side, e.to_string())),
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
        match packet.write(&mut self.wbuf, self.max_out) {
            Ok(_) => {}
            Err(CodecError::OutgoingPacketTooLarge { pkt_size, max }) => {
                return Err(BridgeError::TooLarge(pkt_size, max));
            }
            Err(e) => return Err(BridgeError::Protocol(self.side, e.to_string())),
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

    /// A packet id that `in_use` does not hold (never 0).
    pub fn next_pkid(&mut self, in_use: impl Fn(u16) -> bool) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !in_use(self.next_pkid) {
                return self.next_pkid;
            }
        }
    }
}
