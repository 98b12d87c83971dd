//! Packets over the Maximum Packet Size: MQTT 5 gets DISCONNECT 0x95 (CONNACK 0x95
//! for a CONNECT), 3.1.1 a close; a packet that only announces a huge length is
//! refused on its header, without waiting for the bytes. The broker keeps serving.

use crate::support::{Raw, connect_v4, connect_v5, publish_raw, still_serves};
use junction_conformance::mqtt_broker_with;

fn reasons(seen: &[crate::support::RawPacket], kind: u8) -> Vec<u8> {
    seen.iter()
        .filter(|p| p.kind() == kind)
        .map(|p| {
            if kind == 2 {
                p.body[1]
            } else {
                p.disconnect_reason()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_publish_gets_disconnect_0x95_or_a_close() {
    let b = mqtt_broker_with(|c| c.mqtt.max_packet_size = 1024).await;
    let big = vec![b'x'; 2000];
    let mut raw = Raw::connected(&b, &connect_v5("big5", true, 60, &[])).await;
    raw.send(&publish_raw(b"big/t", 1, 1, false, false, &big, Some(&[])))
        .await;
    let seen = raw.until_closed().await;
    assert_eq!(reasons(&seen, 14), vec![0x95], "{seen:?}");
    assert!(seen.iter().all(|p| p.kind() == 14), "no PUBACK: {seen:?}");

    let mut raw = Raw::connected(&b, &connect_v4("big4", true, 60)).await;
    raw.send(&publish_raw(b"big/t", 1, 1, false, false, &big, None))
        .await;
    let seen = raw.until_closed().await;
    assert!(seen.is_empty(), "3.1.1 is closed, no PUBACK: {seen:?}");
    still_serves(&b).await;
}

/// Only the fixed header of a 256 MiB PUBLISH is sent: refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_huge_length_is_refused_on_the_header() {
    let b = mqtt_broker_with(|c| c.mqtt.max_packet_size = 1024).await;
    let mut raw = Raw::connected(&b, &connect_v5("huge5", true, 60, &[])).await;
    raw.send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    let seen = raw.until_closed().await;
    assert_eq!(reasons(&seen, 14), vec![0x95], "{seen:?}");
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_connect_gets_connack_0x95_or_a_close() {
    let b = mqtt_broker_with(|c| c.mqtt.max_packet_size = 1024).await;
    let id = "i".repeat(2000);
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5(&id, true, 60, &[])).await;
    let seen = raw.until_closed().await;
    assert_eq!(reasons(&seen, 2), vec![0x95], "{seen:?}");

    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4(&id, true, 60)).await;
    let seen = raw.until_closed().await;
    assert!(
        seen.is_empty(),
        "3.1.1 is closed without a CONNACK: {seen:?}"
    );
    still_serves(&b).await;
}
