//! A connection beyond the listener's share of file descriptors: read its CONNECT
//! (for the protocol version), answer CONNACK 0x97 Quota exceeded (3.1.1: 0x03,
//! server unavailable, the nearest code), then close. The same answer as a
//! connection beyond the broker's `max_connections`.

use crate::connection::send_connack_error;
use crate::io::MqttIo;
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use rmqtt_codec::{MqttCodec, MqttPacket, v3, v5};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a refused client has to send its CONNECT.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// Refuses one connection; `max_packet_size` bounds what is read.
pub(crate) async fn refuse<S>(stream: S, remote: SocketAddr, max_packet_size: u32)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = MqttIo::new(stream, MqttCodec::Version(VersionCodec));
    let Ok(Some(Ok((MqttPacket::Version(version), _)))) =
        tokio::time::timeout(CONNECT_WAIT, framed.next()).await
    else {
        return;
    };
    *framed.codec_mut() = match version {
        ProtocolVersion::MQTT3 => MqttCodec::V3(v3::Codec::new(max_packet_size)),
        ProtocolVersion::MQTT5 => MqttCodec::V5(v5::Codec::new(max_packet_size, 0)),
    };
    let v5 = version == ProtocolVersion::MQTT5;
    if !matches!(
        tokio::time::timeout(CONNECT_WAIT, framed.next()).await,
        Ok(Some(Ok(_)))
    ) {
        return;
    }
    tracing::debug!(%remote, "MQTT CONNECT refused: the listener is at its connection limit");
    send_connack_error(
        &mut framed,
        v5,
        0x97,
        "the MQTT listener is at its connection limit",
    )
    .await;
}
