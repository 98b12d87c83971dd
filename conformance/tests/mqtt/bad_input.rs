//! Bad input on a raw socket: garbage, a bad remaining length, a wildcard or
//! invalid UTF-8 in a PUBLISH topic, a second CONNECT, a packet before CONNECT,
//! an unknown protocol level. Each gets the spec's answer (MQTT 5: a DISCONNECT
//! with its reason code; 3.1.1: a close), and the broker keeps serving.

use crate::support::{
    DISCONNECT, Raw, RawPacket, connect_v4, connect_v5, lstr, packet, publish_raw, still_serves,
};
use junction_conformance::mqtt_broker;

fn disconnect_reasons(seen: &[RawPacket]) -> Vec<u8> {
    seen.iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_first_bytes_are_closed() {
    let b = mqtt_broker().await;
    let mut raw = Raw::open(&b).await;
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let seen = raw.until_closed().await;
    assert!(
        seen.iter().all(|p| p.kind() == 2),
        "only a CONNACK refusal at most: {seen:?}"
    );
    let mut raw = Raw::open(&b).await;
    raw.send(&[0xFF; 64]).await;
    raw.until_closed().await;
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_before_connect_is_closed() {
    let b = mqtt_broker().await;
    let mut raw = Raw::open(&b).await;
    raw.send(&publish_raw(b"a/b", 0, 0, false, false, b"x", None))
        .await;
    raw.until_closed().await;
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_remaining_length_is_closed() {
    let b = mqtt_broker().await;
    // In CONNECT: five continuation bytes is not a remaining length.
    let mut raw = Raw::open(&b).await;
    raw.send(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    raw.until_closed().await;
    // After CONNECT, v3.1.1 and 5.
    let mut raw = Raw::connected(&b, &connect_v4("badlen4", true, 60)).await;
    raw.send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    let seen = raw.until_closed().await;
    assert!(seen.is_empty(), "3.1.1 is just closed: {seen:?}");
    let mut raw = Raw::connected(&b, &connect_v5("badlen5", true, 60, &[])).await;
    raw.send(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    let seen = raw.until_closed().await;
    let reasons = disconnect_reasons(&seen);
    assert!(reasons.iter().all(|r| *r >= 0x80), "{seen:?}");
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_in_publish_topic() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("wild5", true, 60, &[])).await;
    raw.send(&publish_raw(b"a/+/c", 1, 1, false, false, b"x", Some(&[])))
        .await;
    let seen = raw.until_closed().await;
    assert_eq!(
        disconnect_reasons(&seen),
        vec![0x90],
        "Topic Name Invalid: {seen:?}"
    );

    let mut raw = Raw::connected(&b, &connect_v5("wild5h", true, 60, &[])).await;
    raw.send(&publish_raw(b"a/#", 0, 0, false, false, b"x", Some(&[])))
        .await;
    let seen = raw.until_closed().await;
    assert_eq!(disconnect_reasons(&seen), vec![0x90], "{seen:?}");

    let mut raw = Raw::connected(&b, &connect_v4("wild4", true, 60)).await;
    raw.send(&publish_raw(b"a/#", 1, 1, false, false, b"x", None))
        .await;
    let seen = raw.until_closed().await;
    assert!(seen.is_empty(), "3.1.1 is just closed, no PUBACK: {seen:?}");
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_topic() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("utf5", true, 60, &[])).await;
    raw.send(&publish_raw(
        &[b'a', b'/', 0xC3, 0x28],
        1,
        1,
        false,
        false,
        b"x",
        Some(&[]),
    ))
    .await;
    let seen = raw.until_closed().await;
    let reasons = disconnect_reasons(&seen);
    assert!(
        reasons == vec![0x81] || reasons == vec![0x90],
        "Malformed Packet (or Topic Name Invalid) expected: {seen:?}"
    );
    let mut raw = Raw::connected(&b, &connect_v4("utf4", true, 60)).await;
    raw.send(&publish_raw(&[0xFF, 0xFE], 1, 1, false, false, b"x", None))
        .await;
    let seen = raw.until_closed().await;
    assert!(seen.is_empty(), "no PUBACK for an invalid topic: {seen:?}");
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_is_a_protocol_error() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("twice5", true, 60, &[])).await;
    raw.send(&connect_v5("twice5", true, 60, &[])).await;
    let seen = raw.until_closed().await;
    assert_eq!(disconnect_reasons(&seen), vec![0x82], "{seen:?}");
    let mut raw = Raw::connected(&b, &connect_v4("twice4", true, 60)).await;
    raw.send(&connect_v4("twice4", true, 60)).await;
    let seen = raw.until_closed().await;
    assert!(seen.is_empty(), "3.1.1 is just closed: {seen:?}");
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_level_gets_connack_0x01() {
    let b = mqtt_broker().await;
    let mut body = lstr(b"MQTT");
    body.extend([7, 0x02, 0, 60]);
    body.extend(lstr(b"level7"));
    let mut raw = Raw::open(&b).await;
    raw.send(&packet(0x10, &body)).await;
    let seen = raw.until_closed().await;
    assert_eq!(
        seen.first().map(|p| (p.kind(), p.body.clone())),
        Some((2, vec![0, 1])),
        "{seen:?}"
    );
    still_serves(&b).await;
}

/// MQTT 3.1 (`MQIsdp`, level 3) is served on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt31_connect_is_accepted() {
    let b = mqtt_broker().await;
    let mut body = lstr(b"MQIsdp");
    body.extend([3, 0x02, 0, 60]);
    body.extend(lstr(b"old-client"));
    let mut raw = Raw::open(&b).await;
    raw.send(&packet(0x10, &body)).await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body, vec![0, 0]);
    raw.send(&DISCONNECT).await;
    raw.until_closed().await;
}

/// A client may not send server packets (here a SUBACK): protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_packet_from_client_is_a_protocol_error() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("suback5", true, 60, &[])).await;
    raw.send(&packet(0x90, &[0, 1, 0, 0])).await;
    let seen = raw.until_closed().await;
    let reasons = disconnect_reasons(&seen);
    assert!(reasons == vec![0x82] || reasons == vec![0x81], "{seen:?}");
    still_serves(&b).await;
}

/// QoS 3 in a PUBLISH, a QoS 1 PUBLISH with packet id 0 and a SUBSCRIBE with no
/// filter are malformed: MQTT 5 gets a DISCONNECT with an error reason, 3.1.1 a
/// close; the broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_publish_and_subscribe() {
    let b = mqtt_broker().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("qos 3", packet(0x36, &[0, 1, b't', 0, 1, 0, b'x'])),
        ("packet id 0", packet(0x32, &[0, 1, b't', 0, 0, 0, b'x'])),
        ("subscribe without filters", packet(0x82, &[0, 1, 0])),
        (
            "subscribe with bad flags",
            packet(0x80, &[0, 1, 0, 0, 1, b't', 1]),
        ),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connected(&b, &connect_v5("malformed5", true, 60, &[])).await;
        raw.send(&bytes).await;
        let seen = raw.until_closed().await;
        let reasons = disconnect_reasons(&seen);
        assert!(
            reasons.len() == 1 && reasons[0] >= 0x80 && seen.iter().all(|p| p.kind() == 14),
            "{what}: {seen:?}"
        );
    }
    still_serves(&b).await;
}
