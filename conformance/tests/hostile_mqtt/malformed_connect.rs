//! Malformed CONNECT packets. MQTT 3.1.1 has no return code for a malformed packet:
//! the connection is closed without a CONNACK (as mosquitto does), never answered
//! with 0x03 "server unavailable", which makes clients retry as if the server were
//! down. MQTT 5 answers CONNACK 0x81 Malformed Packet and closes. The broker keeps
//! serving.

use crate::support::{Raw, lstr, packet, still_serves, varint};
use junction_conformance::mqtt_broker;

/// A CONNECT with `flags` and the payload fields after the client id, as given.
fn connect(level: u8, flags: u8, client_id: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut body = lstr(b"MQTT");
    body.push(level);
    body.push(flags);
    body.extend(60u16.to_be_bytes());
    if level == 5 {
        body.extend(varint(0));
    }
    body.extend(lstr(client_id));
    body.extend_from_slice(rest);
    packet(0x10, &body)
}

/// A will as it follows the client id (MQTT 5 adds empty will properties).
fn will(level: u8, topic: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if level == 5 {
        out.extend(varint(0));
    }
    out.extend(lstr(topic));
    out.extend(lstr(b"gone"));
    out
}

fn cases(level: u8) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("reserved flag set", connect(level, 0x03, b"c1", &[])),
        (
            "will QoS 3",
            connect(level, 0x02 | 0x04 | 0x18, b"c2", &will(level, b"w/t")),
        ),
        (
            "will QoS without a will",
            connect(level, 0x02 | 0x08, b"c3", &[]),
        ),
        (
            "will retain without a will",
            connect(level, 0x02 | 0x20, b"c4", &[]),
        ),
        (
            "user name flag without a user name",
            connect(level, 0x02 | 0x80, b"c5", &[]),
        ),
        (
            "client id not UTF-8",
            connect(level, 0x02, &[0xC3, 0x28], &[]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_malformed_connect_is_closed_without_connack() {
    let b = mqtt_broker().await;
    let mut all = cases(4);
    all.push((
        "password flag without the user name flag (MQTT-3.1.2-22)",
        connect(4, 0x02 | 0x40, b"c6", &lstr(b"secret")),
    ));
    all.push((
        "wildcard in the will topic",
        connect(4, 0x02 | 0x04, b"c7", &will(4, b"alarm/#")),
    ));
    for (what, bytes) in all {
        let mut raw = Raw::open(&b).await;
        raw.send(&bytes).await;
        let seen = raw.until_closed().await;
        assert!(
            seen.is_empty(),
            "{what}: closed without a CONNACK, got {seen:?}"
        );
    }
    still_serves(&b).await;
}

/// An empty client id with clean session 0 is not malformed: 3.1.1 answers it with
/// return code 2, identifier rejected (MQTT-3.1.3-8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_empty_client_id_without_clean_session_gets_code_2() {
    let b = mqtt_broker().await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect(4, 0x00, b"", &[])).await;
    let seen = raw.until_closed().await;
    assert_eq!(
        seen.iter()
            .map(|p| (p.kind(), p.body.clone()))
            .collect::<Vec<_>>(),
        vec![(2, vec![0, 2])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_malformed_connect_gets_connack_0x81() {
    let b = mqtt_broker().await;
    for (what, bytes) in cases(5) {
        let mut raw = Raw::open(&b).await;
        raw.send(&bytes).await;
        let seen = raw.until_closed().await;
        let acks: Vec<(u8, u8)> = seen.iter().map(|p| (p.kind(), p.body[1])).collect();
        assert_eq!(acks, vec![(2, 0x81)], "{what}: {seen:?}");
    }
    // A wildcard in the will topic: Topic Name invalid.
    let mut raw = Raw::open(&b).await;
    raw.send(&connect(5, 0x02 | 0x04, b"c7", &will(5, b"alarm/+")))
        .await;
    let seen = raw.until_closed().await;
    let acks: Vec<(u8, u8)> = seen.iter().map(|p| (p.kind(), p.body[1])).collect();
    assert_eq!(acks, vec![(2, 0x90)], "{seen:?}");
    still_serves(&b).await;
}

/// MQTT 5 allows a password without a user name (3.1.2.9): accepted when the
/// broker has no authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_password_without_user_name_is_allowed() {
    let b = mqtt_broker().await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect(5, 0x02 | 0x40, b"c8", &lstr(b"token")))
        .await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body[1], 0x00, "{ack:?}");
}
