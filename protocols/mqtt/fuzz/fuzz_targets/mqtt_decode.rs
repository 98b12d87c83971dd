//! The MQTT decoder as the server runs it: version detection on the first packet,
//! then the v3 or v5 codec on everything after it. Must never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use rmqtt_codec::{v3, v5, MqttCodec, MqttPacket};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut codec = MqttCodec::Version(VersionCodec);
    let version = match codec.decode(&mut buf) {
        Ok(Some((MqttPacket::Version(v), _))) => v,
        _ => return,
    };
    codec = match version {
        ProtocolVersion::MQTT3 => MqttCodec::V3(v3::Codec::new(64 * 1024)),
        ProtocolVersion::MQTT5 => MqttCodec::V5(v5::Codec::new(64 * 1024, 0)),
    };
    for _ in 0..64 {
        match codec.decode(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
});
